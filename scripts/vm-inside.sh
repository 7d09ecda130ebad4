#!/bin/sh
# Runs inside the VM that `scripts/dev.sh vmtest` boots (kernel 6.1, the
# host's root filesystem read-only over 9p, /tmp and /var/lib writable).
# $1: a plan file, one test run a line: <label> <executable> [args...]
# $2: where to write the overall exit status (the VM's own exit status is
#     not trusted to carry it).
# A module that does not load is a failure, never a skip.
plan=$1
status_file=$2
echo 1 >"$status_file"
echo "vm: kernel $(uname -r)"
fail=0
for m in veth bridge 8021q ipvlan dummy vrf macvlan macvtap tun ifb vxlan \
  sch_fq_codel sch_tbf sch_ingress cls_matchall cls_u32 act_mirred \
  nf_tables nft_chain_nat nft_masq nft_redir nft_ct nft_fib_inet \
  iptable_filter iptable_nat ip6table_filter ip6table_nat xt_comment \
  xt_conntrack xt_MASQUERADE br_netfilter; do
  if ! modprobe "$m" 2>/dev/null && ! grep -q "/$m.ko" "/lib/modules/$(uname -r)/modules.builtin" 2>/dev/null; then
    echo "vm: FAILED to load module $m"
    fail=1
  fi
done
# br_netfilter: the firewall tests switch bridge-nf-call-iptables on in
# their own namespaces, as kube-proxy nodes do.
mkdir -p /run/netns /run/cni /var/lib/cni
ip link set lo up
export RUST_BACKTRACE=1
while read -r label exe args; do
  case "$label" in ''|'#'*) continue ;; esac
  start=$(date +%s)
  echo "vm: ==== $label: $exe $args"
  # shellcheck disable=SC2086
  if "$exe" $args; then r=ok; else r=FAILED; fail=1; fi
  echo "vm: ==== $label $r ($(($(date +%s) - start)) s)"
done <"$plan"
echo "$fail" >"$status_file"
exit "$fail"
