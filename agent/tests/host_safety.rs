//! `rcni-agent --once` on one node namespace whose host state must survive
//! the agent: an own pod CIDR the host already uses (the uplink's subnet)
//! is refused before anything is done (no plugin installed, no conflist,
//! route or rule), and turning IPv6 forwarding on keeps router
//! advertisements accepted (`accept_ra` 1 → 2). Build the `rcni` binary
//! first (`cargo build -p rcni`).

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;

use serde_json::json;
use testutil::{command_in, TempDir, TestNs};

/// A node namespace with an uplink `eth0` (192.168.70.5/24, fd70::5/64;
/// its peer in a second namespace) that accepts router advertisements.
struct Node {
    ns: TestNs,
    _peer: TestNs,
    conf: TempDir,
    bin: TempDir,
    files: TempDir,
}

impl Node {
    fn new(tag: &str) -> Node {
        let ns = TestNs::new(tag);
        let peer = TestNs::new("hsp");
        let sh = |n: &TestNs, cmd: &str| {
            let argv: Vec<&str> = cmd.split_whitespace().collect();
            n.exec(&argv);
        };
        sh(
            &ns,
            &format!(
                "ip link add eth0 type veth peer name up0 netns {}",
                peer.name()
            ),
        );
        sh(&ns, "sysctl -qw net.ipv6.conf.eth0.accept_ra=1");
        sh(&ns, "sysctl -qw net.ipv6.conf.all.forwarding=0");
        sh(&ns, "ip addr add 192.168.70.5/24 dev eth0");
        sh(&ns, "ip addr add fd70::5/64 dev eth0 nodad");
        sh(&ns, "ip link set eth0 up");
        sh(&peer, "ip link set up0 up");
        Node {
            ns,
            _peer: peer,
            conf: TempDir::new("hsc"),
            bin: TempDir::new("hsb"),
            files: TempDir::new("hsf"),
        }
    }

    /// `rcni-agent --once` with this node's record holding `cidrs`.
    fn agent_once(&self, cidrs: &[&str], extra: &[&str]) -> Output {
        self.agent_with_peers(cidrs, &[], extra)
    }

    /// `rcni-agent --once` with this node's record and `peers` (name,
    /// address, pod CIDR).
    fn agent_with_peers(
        &self,
        cidrs: &[&str],
        peers: &[(&str, &str, &str)],
        extra: &[&str],
    ) -> Output {
        let file = self.files.path().join("nodes.json");
        let mut list =
            vec![json!({"name": "a", "addresses": ["192.168.70.5", "fd70::5"], "podCIDRs": cidrs})];
        for (name, ip, cidr) in peers {
            list.push(json!({"name": name, "addresses": [ip], "podCIDRs": [cidr]}));
        }
        std::fs::write(&file, json!(list).to_string()).expect("nodes file");
        command_in(Some(self.ns.ns()), env!("CARGO_BIN_EXE_rcni-agent"))
            .args(["--node-name", "a", "--source"])
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
            .expect("run rcni-agent")
    }

    fn sysctl(&self, key: &str) -> String {
        self.ns.exec(&["sysctl", "-n", key]).trim().to_string()
    }
}

#[test]
fn an_own_pod_cidr_on_the_uplinks_subnet_is_refused_before_anything() {
    let n = Node::new("hsa");
    let out = n.agent_once(&["192.168.70.0/24"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("pod CIDR 192.168.70.0/24 overlaps the subnet 192.168.70.0/24 of eth0"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(n.conf.path())
            .expect("conf dir")
            .next()
            .is_none(),
        "no conflist written"
    );
    assert!(
        std::fs::read_dir(n.bin.path())
            .expect("bin dir")
            .next()
            .is_none(),
        "no plugin installed"
    );
    for fam in ["-4", "-6"] {
        let ours =
            n.ns.exec(&["ip", fam, "route", "show", "table", "all", "proto", "82"]);
        assert!(ours.trim().is_empty(), "{ours}");
    }
    assert!(!n
        .ns
        .link_names()
        .iter()
        .any(|l| l == "cni0" || l.starts_with("rcni")));
    assert!(!n.ns.exec(&["nft", "list", "tables"]).contains("rcni"));
    assert_eq!(n.sysctl("net.ipv6.conf.all.forwarding"), "0");

    // A cluster CIDR that does not hold it is named too.
    let out = n.agent_once(&["10.9.1.0/24"], &["--cluster-cidr", "10.244.0.0/16"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("is not inside the cluster CIDR 10.244.0.0/16"),
        "{err}"
    );
}

#[test]
fn ipv6_forwarding_on_keeps_router_advertisements_accepted() {
    let n = Node::new("hsr");
    assert_eq!(n.sysctl("net.ipv6.conf.eth0.accept_ra"), "1");
    let default_before = n.sysctl("net.ipv6.conf.default.accept_ra");
    let out = n.agent_once(&["10.244.1.0/24", "fd44:1::/64"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(n.sysctl("net.ipv6.conf.all.forwarding"), "1", "{err}");
    assert_eq!(n.sysctl("net.ipv6.conf.eth0.accept_ra"), "2", "{err}");
    assert!(err.contains("accept_ra = 2"), "{err}");
    // Interfaces made later (pod veths) must not start accepting
    // advertisements: the default entry is not touched.
    assert_eq!(
        n.sysctl("net.ipv6.conf.default.accept_ra"),
        default_before,
        "{err}"
    );
    assert!(!err.contains("default/accept_ra"), "{err}");
    // A second round changes nothing more.
    let out = n.agent_once(&["10.244.1.0/24", "fd44:1::/64"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("accept_ra"), "{err}");
}

#[test]
fn uninstall_removes_the_agents_routes_devices_table_and_conflist() {
    let n = Node::new("hsu");
    // b shares the uplink's subnet (host-gw), c does not (VXLAN).
    let peers = [
        ("b", "192.168.70.6", "10.244.2.0/24"),
        ("c", "192.168.80.10", "10.244.3.0/24"),
    ];
    let out = n.agent_with_peers(&["10.244.1.0/24"], &peers, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = |n: &Node| {
        n.ns.exec(&["ip", "route", "show", "table", "all", "proto", "82"])
    };
    assert!(
        ours(&n).contains("10.244.2.0/24") && ours(&n).contains("10.244.3.0/24"),
        "{}",
        ours(&n)
    );
    assert!(n.ns.link_names().iter().any(|l| l == "rcni.vxlan"));
    assert!(n.ns.exec(&["nft", "list", "tables"]).contains("rcni-agent"));
    let conf = n.conf.path().join("10-rcni.conflist");
    assert!(conf.exists());
    let plugins = std::fs::read_dir(n.bin.path()).expect("bin dir").count();
    assert!(plugins > 0);

    for round in 0..2 {
        let out = command_in(Some(n.ns.ns()), env!("CARGO_BIN_EXE_rcni-agent"))
            .args([
                "--node-name",
                "a",
                "--source",
                "file:/nonexistent",
                "--uninstall",
            ])
            .arg("--cni-conf-dir")
            .arg(n.conf.path())
            .arg("--cni-bin-dir")
            .arg(n.bin.path())
            .output()
            .expect("run rcni-agent --uninstall");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "round {round}: {err}");
        assert!(ours(&n).trim().is_empty(), "{}", ours(&n));
        assert!(!n.ns.link_names().iter().any(|l| l.starts_with("rcni.")));
        assert!(!n.ns.exec(&["nft", "list", "tables"]).contains("rcni-agent"));
        assert!(!conf.exists());
        // The uplink and its own routes are as they were; the plugins stay.
        assert!(n
            .ns
            .exec(&["ip", "route"])
            .contains("192.168.70.0/24 dev eth0"));
        assert_eq!(
            std::fs::read_dir(n.bin.path()).expect("bin dir").count(),
            plugins
        );
    }
}
