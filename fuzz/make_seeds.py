#!/usr/bin/env python3
"""Writes the committed seed corpus (fuzz/corpus/<target>/): a few real
inputs per target. Run from anywhere; re-running rewrites the same files."""
import json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


ipam = {"type": "host-local", "subnet": "10.22.0.0/16", "rangeStart": "10.22.0.10",
        "gateway": "10.22.0.1", "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/tmp/x"}
prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/run/netns/p"}],
        "ips": [{"address": "10.22.0.5/16", "gateway": "10.22.0.1", "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.22.0.1"]}}
# Order of PLUGINS in fuzz_targets/plugin_config.rs.
confs = [
    {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True, "mtu": 1400,
     "vlan": 5, "vlanTrunk": [{"minID": 10, "maxID": 12}], "macspoofchk": True, "ipam": ipam},
    {"type": "ptp", "ipMasq": True, "mtu": 1400, "ipam": ipam},
    {"type": "tap", "mac": "02:00:00:00:00:01", "mtu": 1400, "multiQueue": True, "ipam": ipam},
    {"type": "macvlan", "master": "eth0", "mode": "bridge", "ipam": ipam},
    {"type": "bandwidth", "ingressRate": 1000000, "ingressBurst": 10000, "egressRate": 1000000,
     "egressBurst": 10000, "prevResult": prev},
    {"type": "sbr", "prevResult": prev},
    {"type": "tuning", "mtu": 1400, "mac": "02:00:00:00:00:02", "promisc": True,
     "sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1"}, "prevResult": prev},
    {"type": "host-local", "ipam": {**ipam, "ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]]}},
    {"type": "static", "ipam": {"type": "static", "addresses": [{"address": "10.1.2.3/24", "gateway": "10.1.2.1"}],
                                "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["8.8.8.8"]}}},
    {"type": "dhcp", "ipam": {"type": "dhcp", "provide": [{"option": "host-name", "fromArg": "K8S_POD_NAME"}],
                              "request": [{"option": "classless-static-routes", "skipDefault": False}]}},
    {"type": "portmap", "snat": True, "runtimeConfig": {"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "10.0.0.1"}]},
     "prevResult": prev},
    {"type": "firewall", "backend": "nftables", "ingressPolicy": "same-bridge", "prevResult": prev},
    {"type": "host-device", "device": "eth1"},
]
for i, c in enumerate(confs):
    full = {"cniVersion": "1.0.0", "name": "seednet", **c}
    put("plugin_config", f"{i:02}-{c['type']}", bytes([i]) + json.dumps(full).encode())
    put("conf_list", f"conf-{c['type']}", json.dumps(full))
put("conf_list", "list", json.dumps({"cniVersion": "1.1.0", "name": "seednet", "plugins": [
    {"type": "bridge", "ipam": ipam}, {"type": "portmap", "capabilities": {"portMappings": True}}]}))

versions = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
old = {"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.5/24", "gateway": "10.1.0.1",
       "routes": [{"dst": "0.0.0.0/0"}]}, "ip6": {"ip": "fd00::5/64"}, "dns": {"nameservers": ["10.1.0.1"]}}
put("result_convert", "v020", bytes([1]) + json.dumps(old).encode())
for i, v in [(3, "0.3.1"), (5, "1.0.0"), (6, "1.1.0")]:
    r = dict(prev, cniVersion=v)
    if v.startswith("0.3"):
        r["ips"] = [dict(r["ips"][0], version="4")]
    put("result_convert", f"v{v}", bytes([i]) + json.dumps(r).encode())

for n, a in [("k8s", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc"),
             ("ip", "IP=10.1.2.3,fd00::3;MAC=02:00:00:00:00:09"), ("empty", "")]:
    put("cni_args", n, a)


def nlattr(ty, payload):
    ln = 4 + len(payload)
    return struct.pack("=HH", ln, ty) + payload + b"\0" * ((4 - ln % 4) % 4)


def nlmsg(ty, flags, payload):
    return struct.pack("=IHHII", 16 + len(payload), ty, flags, 1, 0) + payload


# RTM_NEWLINK (16): ifinfomsg + IFLA_IFNAME(3) + IFLA_MTU(4) + IFLA_ADDRESS(1)
# + IFLA_LINKINFO(18){IFLA_INFO_KIND(1)="veth"}; RTM_NEWADDR (20); NLMSG_DONE.
link = struct.pack("=BxHiII", 0, 1, 7, 0x1043, 0) + nlattr(3, b"eth0\0") + nlattr(4, struct.pack("=I", 1500)) \
    + nlattr(1, bytes([2, 0, 0, 0, 0, 1])) + nlattr(18, nlattr(1, b"veth\0"))
addr = struct.pack("=BBBBI", 2, 24, 0, 0, 7) + nlattr(1, bytes([10, 1, 0, 5])) + nlattr(2, bytes([10, 1, 0, 5]))
route = struct.pack("=BBBBBBBBI", 2, 24, 0, 0, 254, 3, 253, 1, 0) + nlattr(1, bytes([10, 1, 0, 0])) + nlattr(4, struct.pack("=I", 7))
err = struct.pack("=i", -17) + nlmsg(16, 0x405, b"")[:16]
put("netlink_messages", "link-addr-done", nlmsg(16, 2, link) + nlmsg(20, 2, addr) + nlmsg(3, 2, struct.pack("=i", 0)))
put("netlink_messages", "route", nlmsg(24, 2, route))
put("netlink_messages", "error-ack", nlmsg(2, 0x100, err + nlattr(1, b"File exists\0")))

# nftables: NFT_MSG_NEWTABLE = (10 << 8) | 0, NEWRULE = (10 << 8) | 6,
# NEWSETELEM = (10 << 8) | 12; payload nfgenmsg(family, version, res_id).
nfgen = struct.pack("=BBH", 1, 0, 0)
table = nfgen + nlattr(1, b"rcni-portmap\0") + nlattr(2, struct.pack(">I", 0))
rule = nfgen + nlattr(1, b"rcni-portmap\0") + nlattr(2, b"dnat\0") + nlattr(3, struct.pack(">Q", 4)) \
    + nlattr(7, bytes([0, 18]) + b"rcni:net:cid:eth0\0")
elem = nfgen + nlattr(2, b"rcni-portmap\0") + nlattr(1, b"any4\0") + nlattr(3, nlattr(1, nlattr(1, nlattr(1, bytes([6, 0, 0, 0, 0x1f, 0x90, 0, 0])))))
put("nft_list", "table-rule-elem", nlmsg(10 << 8, 2, table) + nlmsg((10 << 8) | 6, 2, rule) + nlmsg((10 << 8) | 12, 2, elem))
put("nft_list", "comment", "rcni:seednet:cid-1:eth0")
put("nft_list", "masq-comment", "rcni-masq:seednet:10.22.0.0/16")


def dhcp(op_type, opts):
    hdr = struct.pack(">BBBBIHH4s4s4s4s16s64s128s", 2, 1, 6, 0, 0x1234, 0, 0x8000,
                      bytes(4), bytes([10, 1, 0, 5]), bytes([10, 1, 0, 1]), bytes(4),
                      bytes([2, 0, 0, 0, 0, 1]) + bytes(10), bytes(64), bytes(128))
    body = b"\x63\x82\x53\x63" + bytes([53, 1, op_type])
    for code, val in opts:
        body += bytes([code, len(val)]) + val
    return hdr + body + b"\xff"


ack = dhcp(5, [(54, bytes([10, 1, 0, 1])), (51, struct.pack(">I", 3600)), (1, bytes([255, 255, 255, 0])),
               (3, bytes([10, 1, 0, 1])), (6, bytes([10, 1, 0, 1])),
               (121, bytes([24, 10, 2, 0, 10, 1, 0, 1, 0, 10, 1, 0, 1])), (33, bytes([10, 3, 0, 0, 10, 1, 0, 1]))])
put("dhcp_packet", "ack", ack)
put("dhcp_packet", "offer", dhcp(2, [(54, bytes([10, 1, 0, 1])), (51, struct.pack(">I", 60))]))
put("dhcp_packet", "classless", bytes([24, 10, 2, 0, 10, 1, 0, 1, 0, 10, 1, 0, 1]))

dconf = {"cniVersion": "1.0.0", "name": "seednet", "type": "macvlan",
         "ipam": {"type": "dhcp", "provide": [{"option": "host-name", "fromArg": "K8S_POD_NAME"}]}}
for m in ["allocate", "release", "check", "status", "gc"]:
    req = {"method": m, "containerId": "c1", "netns": "/run/netns/p", "ifname": "eth0",
           "args": "K8S_POD_NAME=web-0", "config": dconf}
    if m == "gc":
        req["keep"] = [["c1", "eth0"]]
    put("dhcp_request", m, json.dumps(req) + "\n")
