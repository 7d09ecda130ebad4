//! The real `rcni-agent --once` on one node (a network namespace whose
//! uplink `eth0` is a veth on 192.168.50.0/24, its peer in the same
//! namespace) facing faults in its datapath: a foreign VXLAN device
//! holding the agent's VNI and port, a socket holding its UDP port, an
//! `--mtu` the uplink cannot carry over VXLAN, and duplicate routes of the
//! agent's protocol. A fault of the overlay costs only the peers that need
//! it: departed peers' routes still go, host-gw peers are still routed,
//! masquerade, forwarding and the CNI config are still set up, and the
//! round fails (exit status 1). No packet leaves the namespace. Build the
//! `rcni` binary first (`cargo build -p rcni`).

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use testutil::{command_in, TempDir, TestNs};

const A_IP: &str = "192.168.50.10";

/// Node "a": its namespace (removed on drop, also when a test panics) and
/// its directories.
struct Node {
    ns: TestNs,
    conf: TempDir,
    bin: TempDir,
    files: TempDir,
}

fn sh(ns: &TestNs, cmd: &str) {
    let argv: Vec<&str> = cmd.split_whitespace().collect();
    ns.exec(&argv);
}

impl Node {
    fn new(tag: &str) -> Node {
        let ns = TestNs::new(tag);
        // The other end stays in the namespace, up, without addresses.
        sh(&ns, "ip link add eth0 mtu 1500 type veth peer name lan0");
        sh(&ns, &format!("ip addr add {A_IP}/24 dev eth0"));
        sh(&ns, "ip link set lan0 up");
        sh(&ns, "ip link set eth0 up");
        Node {
            ns,
            conf: TempDir::new("conf"),
            bin: TempDir::new("bin"),
            files: TempDir::new("nodes"),
        }
    }

    /// Writes a nodes file: (name, addresses, pod CIDRs) per node.
    fn nodes_file(&self, file: &str, nodes: &[(&str, &[&str], &[&str])]) -> PathBuf {
        let list: Vec<Value> = nodes
            .iter()
            .map(|(n, ips, cidrs)| json!({"name": n, "addresses": ips, "podCIDRs": cidrs}))
            .collect();
        let p = self.files.path().join(file);
        std::fs::write(&p, serde_json::to_vec(&list).expect("json")).expect("write nodes");
        p
    }

    /// `rcni-agent --once` as node "a"; its exit code and stderr.
    fn agent_once(&self, file: &Path, extra: &[&str]) -> (Option<i32>, String) {
        let out = command_in(Some(self.ns.ns()), env!("CARGO_BIN_EXE_rcni-agent"))
            .arg("--node-name")
            .arg("a")
            .arg("--source")
            .arg(format!("file:{}", file.display()))
            .arg("--cni-conf-dir")
            .arg(self.conf.path())
            .arg("--cni-bin-dir")
            .arg(self.bin.path())
            .arg("--rcni")
            .arg(testutil::rcni_bin())
            .arg("--once")
            .args(extra)
            .output()
            .expect("run rcni-agent");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Like [`Node::agent_once`], asserting success.
    fn agent_ok(&self, file: &Path, extra: &[&str]) -> String {
        let (code, err) = self.agent_once(file, extra);
        assert_eq!(code, Some(0), "agent failed:\n{err}");
        err
    }

    fn conflist_path(&self) -> PathBuf {
        self.conf.path().join("10-rcni.conflist")
    }

    fn conflist(&self) -> Value {
        let raw = std::fs::read(self.conflist_path()).expect("conflist written");
        serde_json::from_slice(&raw).expect("conflist json")
    }

    fn has_link(&self, name: &str) -> bool {
        self.ns.link_names().iter().any(|l| l == name)
    }

    /// The masquerade table and IPv4 forwarding, both set up by every
    /// round that gets past the routes.
    fn assert_masquerade_and_forwarding(&self) {
        let nft = self
            .ns
            .exec(&["nft", "list", "table", "inet", "rcni-agent"]);
        assert!(nft.contains("masquerade"), "{nft}");
        let fwd = self.ns.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]);
        assert_eq!(fwd.trim(), "1");
    }
}

/// The agent's routes (proto 82) as "dst via gw dev DEV metric N", sorted.
fn agent_routes(ns: &TestNs) -> Vec<String> {
    let mut out = Vec::new();
    for fam in ["-4", "-6"] {
        let v = ns.ip_json(&[fam, "route", "show", "proto", "82"]);
        for r in v.as_array().expect("routes") {
            let onlink = r["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "onlink"));
            out.push(format!(
                "{} via {} dev {}{} metric {}",
                r["dst"].as_str().unwrap_or("?"),
                r["gateway"].as_str().unwrap_or("-"),
                r["dev"].as_str().unwrap_or("?"),
                if onlink { " onlink" } else { "" },
                r["metric"].as_u64().unwrap_or(0)
            ));
        }
    }
    out.sort();
    out
}

/// Everything of a link an owner set up: settings, addresses, FDB.
fn link_state(ns: &TestNs, dev: &str) -> String {
    ns.exec(&["ip", "-d", "link", "show", dev])
        + &ns.exec(&["ip", "addr", "show", dev])
        + &ns.exec(&["bridge", "fdb", "show", "dev", dev])
}

/// Every route of the node that is not the agent's: neither of its
/// protocol nor on its device; host routes of IPv6 link-local addresses
/// (the kernel's, added when it gets to them) left out.
fn foreign_routes(ns: &TestNs) -> Vec<String> {
    let mut out = Vec::new();
    for fam in ["-4", "-6"] {
        let v = ns.ip_json(&[fam, "route", "show", "table", "all"]);
        for r in v.as_array().expect("routes") {
            let ll_host =
                r["table"] == "local" && r["dst"].as_str().is_some_and(|d| d.starts_with("fe80:"));
            let ours = r["protocol"] == "82" || r["protocol"] == 82 || r["dev"] == "rcni.vxlan";
            if !ours && !ll_host {
                out.push(r.to_string());
            }
        }
    }
    out.sort();
    out
}

const A: (&str, &[&str], &[&str]) = ("a", &[A_IP], &["10.244.1.0/24"]);
/// On-link: host-gw.
const B: (&str, &[&str], &[&str]) = ("b", &["192.168.50.11"], &["10.244.2.0/24"]);
/// Off-link: VXLAN.
const C: (&str, &[&str], &[&str]) = ("c", &["192.168.60.10"], &["10.244.3.0/24"]);
/// On-link: host-gw; the one that departs.
const D: (&str, &[&str], &[&str]) = ("d", &["192.168.50.12"], &["10.244.4.0/24"]);

const B_ROUTE: &str = "10.244.2.0/24 via 192.168.50.11 dev eth0 metric 0";
const C_ROUTE: &str = "10.244.3.0/24 via 10.244.3.0 dev rcni.vxlan onlink metric 0";
const D_ROUTE: &str = "10.244.4.0/24 via 192.168.50.12 dev eth0 metric 0";

#[test]
fn foreign_vxlan_device_with_our_vni_costs_only_the_overlay_peers() {
    let node = Node::new("fvx");
    let ns = &node.ns;
    let abd = node.nodes_file("abd.json", &[A, B, D]);
    node.agent_ok(&abd, &[]);
    assert_eq!(agent_routes(ns), [B_ROUTE, D_ROUTE]);

    // Another overlay (flannel's defaults) takes VNI 1 on port 8472, the
    // agent's defaults, with an address and an FDB entry of its own.
    sh(
        ns,
        &format!("ip link add flannel.1 type vxlan id 1 dstport 8472 local {A_IP} dev eth0"),
    );
    sh(ns, "ip addr add 10.250.0.0/32 dev flannel.1");
    sh(ns, "ip link set flannel.1 up");
    sh(
        ns,
        "bridge fdb append 00:00:00:00:00:00 dev flannel.1 dst 192.168.60.99",
    );
    let flannel = link_state(ns, "flannel.1");
    let foreign = foreign_routes(ns);
    std::fs::remove_file(node.conflist_path()).expect("remove conflist");

    // D departs, C (off-link, needs the overlay) arrives.
    let abc = node.nodes_file("abc.json", &[A, B, C]);
    let (code, err) = node.agent_once(&abc, &[]);
    assert_eq!(code, Some(1), "the round must fail:\n{err}");
    assert!(
        err.contains(
            "error: rcni.vxlan not set up: the VXLAN device \"flannel.1\" already uses VNI 1 on UDP port 8472"
        ),
        "{err}"
    );
    assert!(
        err.contains("--vxlan-vni") && err.contains("--vxlan-port"),
        "{err}"
    );
    assert!(
        err.contains(
            "error: node c: 10.244.3.0/24 needs rcni.vxlan, which is not set up; not routed"
        ),
        "{err}"
    );
    // The rest of the round: D's route gone, B's kept, masquerade,
    // forwarding and the CNI config set up.
    assert!(err.contains("removed route 10.244.4.0/24"), "{err}");
    assert_eq!(agent_routes(ns), [B_ROUTE]);
    assert!(!node.has_link("rcni.vxlan"));
    node.assert_masquerade_and_forwarding();
    let conf = node.conflist();
    assert_eq!(
        conf["plugins"][0]["ipam"]["ranges"],
        json!([[{"subnet": "10.244.1.0/24"}]])
    );
    // The MTU the overlay will need once it works.
    assert_eq!(conf["plugins"][0]["mtu"], 1450);
    // The other overlay is untouched.
    assert_eq!(link_state(ns, "flannel.1"), flannel);
    assert_eq!(foreign_routes(ns), foreign);

    // Following the advice: another VNI, and C is reached.
    let err = node.agent_ok(&abc, &["--vxlan-vni", "2"]);
    assert!(err.contains("created rcni.vxlan vni 2"), "{err}");
    assert_eq!(agent_routes(ns), [B_ROUTE, C_ROUTE]);
    assert_eq!(link_state(ns, "flannel.1"), flannel);
    assert_eq!(foreign_routes(ns), foreign);
}

#[test]
fn mtu_the_uplink_cannot_carry_over_vxlan_refuses_only_the_overlay() {
    let node = Node::new("mtu");
    let ns = &node.ns;
    let abc = node.nodes_file("abc.json", &[A, B, C]);
    // Without --mtu: the uplink's minus the overhead.
    node.agent_ok(&abc, &[]);
    assert_eq!(agent_routes(ns), [B_ROUTE, C_ROUTE]);
    let vx = &ns.ip_json(&["-d", "link", "show", "rcni.vxlan"])[0];
    assert_eq!(vx["mtu"], 1450, "{vx}");
    std::fs::remove_file(node.conflist_path()).expect("remove conflist");

    // --mtu 1500 on a 1500-byte uplink: refused with both numbers, never
    // sent to the kernel; the overlay and C's route go, the rest stands.
    let (code, err) = node.agent_once(&abc, &["--mtu", "1500"]);
    assert_eq!(code, Some(1), "the round must fail:\n{err}");
    assert!(
        err.contains(
            "error: rcni.vxlan not set up: --mtu 1500 is too large: the uplink eth0 has MTU 1500, which leaves 1450 after 50 bytes of VXLAN-over-IPv4 encapsulation"
        ),
        "{err}"
    );
    assert!(!err.contains("Invalid argument"), "{err}");
    assert!(
        err.contains(
            "error: node c: 10.244.3.0/24 needs rcni.vxlan, which is not set up; not routed"
        ),
        "{err}"
    );
    assert!(err.contains("deleted rcni.vxlan"), "{err}");
    assert_eq!(agent_routes(ns), [B_ROUTE]);
    assert!(!node.has_link("rcni.vxlan"));
    node.assert_masquerade_and_forwarding();
    // The refused --mtu does not reach the pods: they get what VXLAN over
    // this uplink carries.
    assert_eq!(node.conflist()["plugins"][0]["mtu"], 1450);

    // An --mtu that fits sets the device up with it.
    node.agent_ok(&abc, &["--mtu", "1450"]);
    assert_eq!(agent_routes(ns), [B_ROUTE, C_ROUTE]);
    let vx = &ns.ip_json(&["-d", "link", "show", "rcni.vxlan"])[0];
    assert_eq!(vx["mtu"], 1450, "{vx}");
    let flags = vx["flags"].as_array().expect("flags");
    assert!(flags.iter().any(|f| f == "UP"), "{vx}");
    assert_eq!(node.conflist()["plugins"][0]["mtu"], 1450);
}

#[test]
fn udp_port_held_by_a_socket_costs_only_the_overlay_peers() {
    let node = Node::new("udp");
    let ns = &node.ns;
    // A socket of another program on the VXLAN port, inside the node.
    let held = ns.run(|| std::net::UdpSocket::bind("0.0.0.0:8472").expect("bind 8472"));
    let abc = node.nodes_file("abc.json", &[A, B, C]);
    let (code, err) = node.agent_once(&abc, &[]);
    assert_eq!(code, Some(1), "the round must fail:\n{err}");
    assert!(
        err.contains(
            "something else holds UDP port 8472; give the overlay another port with --vxlan-port"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "error: node c: 10.244.3.0/24 needs rcni.vxlan, which is not set up; not routed"
        ),
        "{err}"
    );
    assert_eq!(agent_routes(ns), [B_ROUTE]);
    assert!(!node.has_link("rcni.vxlan"));
    node.assert_masquerade_and_forwarding();
    assert_eq!(node.conflist()["plugins"][0]["mtu"], 1450);

    // The port free again, the next round sets the overlay up.
    drop(held);
    node.agent_ok(&abc, &[]);
    assert_eq!(agent_routes(ns), [B_ROUTE, C_ROUTE]);
}

#[test]
fn duplicate_agent_routes_with_another_metric_are_removed() {
    let node = Node::new("dup");
    let ns = &node.ns;
    sh(ns, "ip addr add fd50::10/64 dev eth0 nodad");
    let a: (&str, &[&str], &[&str]) = ("a", &[A_IP, "fd50::10"], &["10.244.1.0/24", "fd44:1::/64"]);
    let b: (&str, &[&str], &[&str]) = (
        "b",
        &["192.168.50.11", "fd50::11"],
        &["10.244.2.0/24", "fd44:2::/64"],
    );
    let ab = node.nodes_file("ab.json", &[a, b]);
    node.agent_ok(&ab, &[]);
    let wanted = [
        B_ROUTE.to_string(),
        "fd44:2::/64 via fd50::11 dev eth0 metric 1024".to_string(),
    ];
    assert_eq!(agent_routes(ns), wanted);

    // Duplicates of the agent's protocol next to its routes: another
    // gateway and metric, the same gateway and another metric, IPv6 too.
    sh(
        ns,
        "ip route add 10.244.2.0/24 via 192.168.50.96 metric 50 proto 82",
    );
    sh(
        ns,
        "ip route add 10.244.2.0/24 via 192.168.50.11 metric 60 proto 82",
    );
    sh(
        ns,
        "ip -6 route add fd44:2::/64 via fd50::96 metric 50 proto 82",
    );
    assert_eq!(agent_routes(ns).len(), 5);
    let eth0 = &ns.ip_json(&["link", "show", "eth0"])[0]["ifindex"];
    let err = node.agent_ok(&ab, &[]);
    for removed in [
        format!("removed route 10.244.2.0/24 via 192.168.50.96 dev #{eth0} metric 50"),
        format!("removed route 10.244.2.0/24 via 192.168.50.11 dev #{eth0} metric 60"),
        format!("removed route fd44:2::/64 via fd50::96 dev #{eth0} metric 50"),
    ] {
        assert!(err.contains(&removed), "{removed}\n{err}");
    }
    assert_eq!(agent_routes(ns), wanted);
    // Nothing left to do.
    let err = node.agent_ok(&ab, &[]);
    assert!(err.contains(": 0 changes"), "{err}");

    // Only a route with another metric left: it goes, the wanted one comes.
    sh(ns, "ip route del 10.244.2.0/24 proto 82");
    sh(
        ns,
        "ip route add 10.244.2.0/24 via 192.168.50.11 metric 70 proto 82",
    );
    let err = node.agent_ok(&ab, &[]);
    assert!(
        err.contains(&format!(
            "removed route 10.244.2.0/24 via 192.168.50.11 dev #{eth0} metric 70"
        )),
        "{err}"
    );
    assert!(
        err.contains("set route 10.244.2.0/24 via 192.168.50.11"),
        "{err}"
    );
    assert_eq!(agent_routes(ns), wanted);
}
