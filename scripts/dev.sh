#!/usr/bin/env bash
# One entry for a fresh Debian 12 machine, as root:
#   bash scripts/dev.sh demo   build rcni and run the demo on its embedded config
#   bash scripts/dev.sh test   install test dependencies and run the whole suite
#   bash scripts/dev.sh build  the static release binary
#   bash scripts/dev.sh bench  rcni vs the reference plugins, side by side
#   bash scripts/dev.sh vmtest the kernel-dependent tests in a VM (Debian's 6.1)
#   bash scripts/dev.sh setup  only install what is needed
set -euo pipefail
cd "$(dirname "$0")/.."

# iproute2: tests cross-check kernel state with `ip -j`; procps: tests set
# sysctls in their namespaces with `sysctl`; nftables/iptables:
# tests read rule sets; containernetworking-plugins: the reference plugins the
# interop tests and the benchmark compare against. podman, crun, conmon,
# catatonit, containerd, runc: the runtime suites (tests/runtimes), which run
# them inside namespaces of their own; protobuf-compiler: the CRI client's
# gRPC definitions are generated at build time (k8s-cri).
# musl-tools: the C compiler ring (multus's TLS) needs for the musl release
# build of the plugins binary.
APT_PACKAGES=(iproute2 iputils-ping nftables iptables containernetworking-plugins
  procps ca-certificates curl gcc g++ libc6-dev musl-tools dnsmasq-base python3
  etcd-server etcd-client
  qemu-system-x86 linux-image-amd64 busybox-static python3-venv kmod
  podman crun conmon catatonit containerd runc protobuf-compiler util-linux tar
  netavark)

# The VM lane: virtme-ng (PyPI) boots Debian's kernel with this machine's
# root filesystem shared read-only, in its own venv.
VM_VENV=${RCNI_VM_VENV:-/opt/rcni-vm-venv}

setup() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ ! -x "$VM_VENV/bin/vng" ]; then
    python3 -m venv "$VM_VENV"
    "$VM_VENV/bin/pip" install -q virtme-ng
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      export PATH="$HOME/.cargo/bin:$PATH"
    else
      # Debian 12's own rustc is too old for this workspace.
      curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
      export PATH="$HOME/.cargo/bin:$PATH"
    fi
  fi
  # `test` runs cargo fmt and clippy: a rustup toolchain installed with the
  # minimal profile elsewhere has neither (a no-op when both are there).
  if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy >/dev/null 2>&1 ||
      echo "note: could not add rustfmt/clippy with rustup" >&2
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "rcni needs root: it creates network namespaces and links" >&2
    exit 1
  fi
}

# Release builds are static. musl is preferred: its start-up runs no CPU
# feature detection (glibc's cpuid probing costs ~0.15 ms per process in a
# VM, where each cpuid traps), and a plugin runs once per pod. Without the
# musl target (no rustup, or offline) it falls back to glibc's static
# flavour. The explicit --target keeps the flags off build scripts and
# proc-macros either way.
release_target() {
  local host arch
  host=$(rustc -vV | sed -n 's/^host: //p')
  arch=${host%%-*}
  if [ "${RCNI_LIBC:-musl}" = musl ] && command -v rustup >/dev/null 2>&1; then
    if rustup target list --installed 2>/dev/null | grep -qx "$arch-unknown-linux-musl" ||
      rustup target add "$arch-unknown-linux-musl" >/dev/null 2>&1; then
      echo "$arch-unknown-linux-musl"
      return
    fi
    echo "note: no $arch-unknown-linux-musl target; building against static glibc" >&2
  fi
  echo "$host"
}

# The node agent and the rcni it ships in its image (deploy/Containerfile,
# FROM scratch): both static against glibc on the host's gnu target, into
# target/<host>/release. The musl target is not used for them: ring (the
# agent's TLS) needs a C compiler for its target, and the image wants the
# two built alike. agent/tests/image.rs builds the image from these.
agent_static_build() {
  local host
  host=$(rustc -vV | sed -n 's/^host: //p')
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --target "$host" -p rcni -p rcni-agent
  AGENT_DIR="target/$host/release"
}

release_build() {
  local target
  target=$(release_target)
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --target "$target" "$@"
  RELEASE_DIR="target/$target/release"
}

# Standing fuzz suite (fuzz/, cargo-fuzz on libFuzzer). Each target runs
# for $1 seconds (default 20) from the committed seed corpus
# fuzz/corpus/<target>/; new inputs go to a scratch dir, never into the
# repository. A crash fails the run and its input is copied into
# fuzz/corpus/<target>/ (commit it with the fix). Builds with `-s none` (no
# sanitizer): that is what lets the stable toolchain build it; cargo-fuzz
# passes only stable codegen flags then. FUZZ_SUMMARY=file collects one
# "RELIABILITY suite=fuzz target=... execs=..." line per target.
fuzz_all() {
  local secs=${1:-20} t scratch log execs failed=0
  command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
  (cd fuzz && cargo fuzz build -s none -O)
  for t in $(cd fuzz && cargo fuzz list); do
    scratch=$(mktemp -d)
    log=$(mktemp)
    mkdir -p "fuzz/artifacts/$t"
    if (cd fuzz && cargo fuzz run "$t" -s none -O "$scratch" "corpus/$t" -- \
      -max_total_time="$secs" -artifact_prefix="artifacts/$t/" -print_final_stats=1) >"$log" 2>&1; then
      execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
      echo "fuzz $t: ${execs:-?} executions in ${secs}s, no crash"
      if [ -n "${FUZZ_SUMMARY:-}" ]; then
        echo "RELIABILITY suite=fuzz target=$t execs=${execs:-0} crashes=0" >>"$FUZZ_SUMMARY"
      fi
    else
      failed=1
      tail -40 "$log" >&2
      for a in fuzz/artifacts/"$t"/*; do
        [ -f "$a" ] || continue
        cp "$a" "fuzz/corpus/$t/"
        echo "fuzz $t: CRASH; input kept as fuzz/corpus/$t/$(basename "$a") (commit it with the fix)" >&2
      done
    fi
    rm -rf "$scratch" "$log"
  done
  return $failed
}

# RELIABILITY.md from the standing suites' own summary lines: fuzz
# executions per target, SIGKILLs, concurrent operations, hostile input rows
# and what was left behind.
reliability() {
  local out summary
  summary=$(mktemp)
  FUZZ_SUMMARY=$summary fuzz_all "${1:-20}"
  for t in fault_injection concurrency hostile_input; do
    out=$(cargo test --test "$t" -- --nocapture 2>&1) || {
      echo "$out" | tail -60 >&2
      exit 1
    }
    echo "$out" | grep -a '^RELIABILITY ' >>"$summary"
  done
  python3 scripts/reliability.py "$summary" >RELIABILITY.md
  rm -f "$summary"
  echo "wrote RELIABILITY.md"
}

# The VM lane's plan: which test executables run inside the VM, with which
# arguments. VM-only tests (link types, qdiscs and classifiers the host
# kernel lacks) are #[ignore]d on the host with a "VM lane:" reason and run
# here with --ignored. Of the existing plugins' namespace suites a subset
# runs (TCG is 5-10x slower than the host, more when the CPUs are shared):
# each plugin's every-spec-version test plus the tests whose netlink or
# nftables messages the every-version test does not send.
VM_PLAN=(
  "netlink-lib netlink lib --ignored"
  "vlan-dummy rcni test:vlan --include-ignored"
  "ipvlan rcni test:ipvlan --include-ignored"
  "vrf rcni test:vrf --include-ignored"
  "bridge-vlan rcni test:bridge --include-ignored vlan_"
  "bridge rcni test:bridge add_check_del_del_every_version two_pods_talk macspoofchk ipmasq_hides"
  "ptp rcni test:ptp add_check_del_del_every_version pods_talk_through_the_node"
  "macvlan rcni test:macvlan add_check_del_del_every_version_with_pod_to_pod_tcp bcqueuelen"
  "host_device rcni test:host_device moves_the_device_in_and_back_for_every_version"
  "tap rcni test:tap add_check_del_del_every_version"
  "firewall rcni test:firewall iptables_nft_drop_policy_auto_detected_every_version nftables_isolation_policies"
  "bandwidth rcni test:bandwidth add_check_del_del_every_version"
  "tuning rcni test:tuning add_check_del_del_every_version"
  "sbr rcni test:sbr add_check_del_del_every_version"
  "chain rcni test:chain five_plugin_chain"
)

# Kernel the lane boots: Debian's newest installed linux-image-amd64.
vm_kernel() {
  local k
  k=$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -n 1)
  [ -n "$k" ] || { echo "vmtest: no /boot/vmlinuz-*-amd64 (install linux-image-amd64)" >&2; exit 1; }
  echo "$k"
}

vmtest() {
  local t0 kernel work plan status json entry label pkg kind rest exe rc
  t0=$(date +%s)
  kernel=$(vm_kernel)
  json=$(mktemp)
  cargo build -p rcni
  cargo test --no-run --message-format=json -p rcni -p netlink >"$json"
  work=$(mktemp -d /tmp/rcni-vm.XXXXXX)
  plan="$work/plan"
  status="$work/status"
  : >"$plan"
  for entry in "${VM_PLAN[@]}"; do
    read -r label pkg kind rest <<<"$entry"
    # RCNI_VM_ONLY="label ...": run only these entries of the plan.
    if [ -n "${RCNI_VM_ONLY:-}" ] && [[ " $RCNI_VM_ONLY " != *" $label "* ]]; then
      continue
    fi
    exe=$(python3 - "$json" "$pkg" "$kind" <<'PY'
import json, sys
path, pkg, kind = sys.argv[1:4]
want_kind, _, want_name = kind.partition(":")
for line in open(path):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    t = m["target"]
    pid = m.get("package_id", "")
    if not (pid.split("#")[0].endswith("/" + pkg) or ("#" + pkg + "@") in pid or pid.startswith(pkg + " ")):
        continue
    if want_kind in t["kind"] and (not want_name or t["name"] == want_name):
        print(m["executable"])
        break
PY
)
    [ -n "$exe" ] || { echo "vmtest: no test executable for $label ($pkg $kind)" >&2; exit 1; }
    echo "$label $exe $rest ${RCNI_VM_TEST_ARGS:---test-threads 2}" >>"$plan"
  done
  rm -f "$json"
  echo "vmtest: booting $kernel (TCG) for $(wc -l <"$plan") test executables"
  # Through a pipe: the guest's console output reopens the lane's stdout,
  # which would truncate a log file the caller redirected it to.
  set +e
  PATH="$VM_VENV/bin:$PATH" vng --run "$kernel" --disable-kvm --force-9p \
    --memory "${RCNI_VM_MEMORY:-2G}" --cpus "${RCNI_VM_CPUS:-2}" \
    --rwdir /tmp --overlay-rwdir /var/lib --overlay-rwdir /run \
    --exec "sh $PWD/scripts/vm-inside.sh $plan $status" </dev/null 2>&1 | cat
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$(cat "$status" 2>/dev/null)" != 0 ]; then
    echo "vmtest: FAILED (vng exit $rc; status $(cat "$status" 2>/dev/null || echo missing))" >&2
    rm -rf "$work"
    echo "vmtest: wall time $(($(date +%s) - t0)) s"
    exit 1
  fi
  rm -rf "$work"
  echo "vmtest: passed; wall time $(($(date +%s) - t0)) s"
}

case "${1:-}" in
  setup)
    setup
    ;;
  build)
    setup
    release_build --bin rcni
    agent_static_build
    echo "built $RELEASE_DIR/rcni (install it with: $RELEASE_DIR/rcni install --bin-dir /opt/cni/bin)"
    echo "built $AGENT_DIR/rcni-agent and $AGENT_DIR/rcni, static, for the image (deploy/Containerfile, deploy/README.md)"
    ;;
  demo)
    setup
    release_build --bin rcni
    "$RELEASE_DIR/rcni" demo
    ;;
  test)
    setup
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    # Plugins reach the kernel and files only through the kit (issue 11).
    bash scripts/check-plugin-os.sh
    cargo build -p rcni -p rcni-bench
    # agent/tests/image.rs builds the agent's image from these.
    agent_static_build
    cargo test --workspace --all-targets
    cargo test --workspace --doc
    # Standing fuzz suite, bounded: 8 targets x 15 s plus the build (~2 min
    # cold), under 4 minutes in all.
    fuzz_all 15
    # Keep the benchmark tool working (never a pass/fail on time).
    ./target/debug/rcni-bench --quick --only start,bridge,host-local,kernel,rss,density,walk
    # What the host kernel lacks, and the plugins on Debian's 6.1.
    vmtest
    ;;
  vmtest)
    setup
    vmtest
    ;;
  bench)
    # Side-by-side with the reference plugins; writes BENCHMARKS.md,
    # benchmarks.json and benchmarks.svg at the repository root.
    setup
    release_build -p rcni -p rcni-bench
    shift
    "$RELEASE_DIR/rcni-bench" --json benchmarks.json --svg benchmarks.svg \
      --markdown BENCHMARKS.md "$@"
    ;;
  fuzz)
    # bash scripts/dev.sh fuzz [SECONDS per target, default 20]
    setup
    fuzz_all "${2:-20}"
    ;;
  reliability)
    # Runs the standing suites and rewrites RELIABILITY.md with their figures.
    setup
    reliability "${2:-20}"
    ;;
  *)
    echo "usage: bash scripts/dev.sh demo|test|vmtest|build|bench|setup" >&2
    exit 2
    ;;
esac
