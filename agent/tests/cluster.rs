//! The real `rcni-agent --once` on three "nodes" (network namespaces):
//! A and B share an L2 segment (a bridge in a "switch" namespace,
//! 192.168.50.0/24), C sits on 192.168.60.0/24 behind a "router"
//! namespace, which also leads to an "outside" host (192.168.70.2). The
//! router knows nothing of pod CIDRs: A↔B must use host-gw routes, A/B↔C
//! the VXLAN overlay, and pods reach the outside only when masqueraded.
//! Pods are made with the conflist the agent wrote, through the plugins
//! it installed. Build the `rcni` binary first (`cargo build -p rcni`).

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

mod common;

use common::etcd::Etcd;
use serde_json::{json, Value};
use testutil::{command_in, run_plugin, tcp_exchange, Call, TempDir, TestNs};

const A_IP: &str = "192.168.50.10";
const B_IP: &str = "192.168.50.11";
const C_IP: &str = "192.168.60.10";

struct Node {
    name: &'static str,
    ns: TestNs,
    conf: TempDir,
    bin: TempDir,
    ipam: TempDir,
    state: TempDir,
}

struct Cluster {
    // Declared first: dropped (deleted) before the namespaces they live in.
    pods: Vec<TestNs>,
    nodes: Vec<Node>,
    _switch: TestNs,
    router: TestNs,
    outside: TestNs,
    files: TempDir,
}

fn sh(ns: &TestNs, cmd: &str) {
    let argv: Vec<&str> = cmd.split_whitespace().collect();
    ns.exec(&argv);
}

impl Cluster {
    fn new() -> Cluster {
        let switch = TestNs::new("sw");
        let router = TestNs::new("rt");
        let outside = TestNs::new("out");
        let sw = switch.name().to_string();
        sh(&switch, "ip link add br0 type bridge");
        sh(&switch, "ip link set br0 up");
        let mut nodes = Vec::new();
        for (name, tag) in [("a", "na"), ("b", "nb"), ("c", "nc")] {
            nodes.push(Node {
                name,
                ns: TestNs::new(tag),
                conf: TempDir::new("conf"),
                bin: TempDir::new("bin"),
                ipam: TempDir::new("ipam"),
                state: TempDir::new("st"),
            });
        }
        // A, B and the router's first leg on the switch.
        for (ns, port, addr) in [
            (&nodes[0].ns, "pa", A_IP),
            (&nodes[1].ns, "pb", B_IP),
            (&router, "pr", "192.168.50.1"),
        ] {
            let ifname = if port == "pr" { "e50" } else { "eth0" };
            sh(
                ns,
                &format!("ip link add {ifname} type veth peer name {port} netns {sw}"),
            );
            sh(&switch, &format!("ip link set {port} master br0 up"));
            sh(ns, &format!("ip addr add {addr}/24 dev {ifname}"));
            sh(ns, &format!("ip link set {ifname} up"));
        }
        // C and the outside host each on their own router leg.
        for (ns, leg, net) in [(&nodes[2].ns, "e60", "60"), (&outside, "e70", "70")] {
            sh(
                &router,
                &format!(
                    "ip link add {leg} type veth peer name eth0 netns {}",
                    ns.name()
                ),
            );
            sh(
                &router,
                &format!("ip addr add 192.168.{net}.1/24 dev {leg}"),
            );
            sh(&router, &format!("ip link set {leg} up"));
            let host = if net == "60" { "10" } else { "2" };
            sh(ns, &format!("ip addr add 192.168.{net}.{host}/24 dev eth0"));
            sh(ns, "ip link set eth0 up");
            sh(ns, &format!("ip route add default via 192.168.{net}.1"));
        }
        for n in &nodes[..2] {
            sh(&n.ns, "ip route add default via 192.168.50.1");
        }
        sh(&router, "sysctl -qw net.ipv4.ip_forward=1");
        Cluster {
            pods: Vec::new(),
            nodes,
            _switch: switch,
            router,
            outside,
            files: TempDir::new("nodes"),
        }
    }

    fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .expect("known node")
    }

    /// Writes a nodes file with the given nodes and returns its path.
    fn nodes_file(&self, file: &str, which: &[&str]) -> PathBuf {
        let all = [
            ("a", A_IP, "10.244.1.0/24"),
            ("b", B_IP, "10.244.2.0/24"),
            ("c", C_IP, "10.244.3.0/24"),
        ];
        let list: Vec<Value> = all
            .iter()
            .filter(|(n, _, _)| which.contains(n))
            .map(|(n, ip, cidr)| json!({"name": n, "addresses": [ip], "podCIDRs": [cidr]}))
            .collect();
        let p = self.files.path().join(file);
        std::fs::write(&p, serde_json::to_vec(&list).expect("json")).expect("write nodes");
        p
    }

    fn agent_cmd(&self, node: &str, file: &Path, extra: &[&str]) -> Command {
        self.agent_cmd_source(node, &format!("file:{}", file.display()), extra)
    }

    fn agent_cmd_source(&self, node: &str, source: &str, extra: &[&str]) -> Command {
        let n = self.node(node);
        let mut cmd = command_in(Some(n.ns.ns()), env!("CARGO_BIN_EXE_rcni-agent"));
        cmd.arg("--node-name")
            .arg(node)
            .arg("--source")
            .arg(source)
            .arg("--cni-conf-dir")
            .arg(n.conf.path())
            .arg("--cni-bin-dir")
            .arg(n.bin.path())
            .arg("--rcni")
            .arg(testutil::rcni_bin())
            .args(extra);
        cmd
    }

    /// `rcni-agent --once` on `node`; asserts success, returns stderr.
    fn agent_once(&self, node: &str, file: &Path, extra: &[&str]) -> String {
        let out: Output = self
            .agent_cmd(node, file, extra)
            .arg("--once")
            .output()
            .expect("run rcni-agent");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "agent on {node} failed:\n{err}");
        err
    }

    /// A pod on `node` made with the agent's conflist; returns its IPv4.
    fn pod(&mut self, node: &str) -> (usize, String) {
        let (i, ips) = self.pod_ips(node);
        (i, ips[0].clone())
    }

    /// A pod on `node` made with the agent's conflist; all its addresses.
    fn pod_ips(&mut self, node: &str) -> (usize, Vec<String>) {
        let pod = TestNs::new("pod");
        let n = self.node(node);
        let list: Value = serde_json::from_slice(
            &std::fs::read(n.conf.path().join("10-rcni.conflist")).expect("conflist"),
        )
        .expect("conflist json");
        let mut conf = list["plugins"][0].clone();
        conf["cniVersion"] = list["cniVersion"].clone();
        conf["name"] = list["name"].clone();
        // Keep the test's state out of /var/lib.
        conf["ipam"]["dataDir"] = json!(n.ipam.path());
        conf["stateDir"] = json!(n.state.path());
        let mut call = Call::new(
            "ADD",
            &format!("pod-{node}"),
            &pod.path(),
            &conf.to_string(),
        );
        call.path = n.bin.path().display().to_string();
        let res = run_plugin(n.bin.path(), "bridge", &call, Some(n.ns.ns())).ok();
        let ips: Vec<String> = res["ips"]
            .as_array()
            .expect("ips")
            .iter()
            .map(|i| {
                i["address"]
                    .as_str()
                    .expect("pod address")
                    .split('/')
                    .next()
                    .expect("ip")
                    .to_string()
            })
            .collect();
        assert!(!ips.is_empty(), "{res}");
        self.pods.push(pod);
        (self.pods.len() - 1, ips)
    }
}

fn json_of(ns: &TestNs, argv: &[&str]) -> Value {
    let out = ns.exec(argv);
    if out.trim().is_empty() {
        return json!([]);
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{argv:?}: {e}: {out}"))
}

/// The agent's routes (proto 82) as "dst gw dev [onlink]" strings, sorted.
fn agent_routes(ns: &TestNs) -> Vec<String> {
    let mut v = json_of(ns, &["ip", "-j", "route", "show", "proto", "82"]);
    let v6 = json_of(ns, &["ip", "-j", "-6", "route", "show", "proto", "82"]);
    if let (Some(all), Some(more)) = (v.as_array_mut(), v6.as_array()) {
        all.extend(more.iter().cloned());
    }
    let mut out: Vec<String> = v
        .as_array()
        .expect("routes")
        .iter()
        .map(|r| {
            let onlink = r["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "onlink"));
            format!(
                "{} via {} dev {}{}",
                r["dst"].as_str().unwrap_or("?"),
                r["gateway"].as_str().unwrap_or("-"),
                r["dev"].as_str().unwrap_or("?"),
                if onlink { " onlink" } else { "" }
            )
        })
        .collect();
    out.sort();
    out
}

fn fdb(ns: &TestNs) -> Vec<String> {
    let v = json_of(ns, &["bridge", "-j", "fdb", "show", "dev", "rcni.vxlan"]);
    let mut out: Vec<String> = v
        .as_array()
        .expect("fdb")
        .iter()
        .map(|e| {
            format!(
                "{} dst {}",
                e["mac"].as_str().unwrap_or("?"),
                e["dst"].as_str().unwrap_or("-")
            )
        })
        .collect();
    out.sort();
    out
}

fn neighbours(ns: &TestNs) -> Vec<String> {
    let v = json_of(ns, &["ip", "-j", "neigh", "show", "dev", "rcni.vxlan"]);
    let mut out: Vec<String> = v
        .as_array()
        .expect("neigh")
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["dst"].as_str().unwrap_or("?"),
                e["lladdr"].as_str().unwrap_or("?"),
                e["state"]
            )
        })
        .collect();
    out.sort();
    out
}

fn has_vxlan(ns: &TestNs) -> bool {
    ns.link_names().iter().any(|l| l == "rcni.vxlan")
}

/// Everything the agent manages, for before/after comparisons.
fn snapshot(ns: &TestNs) -> String {
    let vx = if has_vxlan(ns) {
        ns.exec(&["ip", "-d", "link", "show", "rcni.vxlan"])
            + &ns.exec(&["ip", "-4", "addr", "show", "rcni.vxlan"])
            + &format!("{:?}{:?}", fdb(ns), neighbours(ns))
    } else {
        String::new()
    };
    format!(
        "{:?}\n{vx}\n{}",
        agent_routes(ns),
        ns.exec(&["nft", "list", "table", "inet", "rcni-agent"])
    )
}

fn vxlan_details(ns: &TestNs) -> Value {
    json_of(ns, &["ip", "-j", "-d", "link", "show", "rcni.vxlan"])[0].clone()
}

#[test]
fn three_nodes_host_gw_vxlan_masquerade() {
    let mut cl = Cluster::new();
    let all = cl.nodes_file("all.json", &["a", "b", "c"]);
    // A names the cluster CIDR; B and C derive it from the pod CIDRs.
    let first_a = cl.agent_once("a", &all, &["--cluster-cidr", "10.244.0.0/16"]);
    assert!(first_a.contains("created rcni.vxlan"), "{first_a}");
    cl.agent_once("b", &all, &[]);
    cl.agent_once("c", &all, &[]);

    // Routes: host-gw between A and B, the overlay to and from C.
    assert_eq!(
        agent_routes(&cl.node("a").ns),
        [
            "10.244.2.0/24 via 192.168.50.11 dev eth0",
            "10.244.3.0/24 via 10.244.3.0 dev rcni.vxlan onlink"
        ]
    );
    assert_eq!(
        agent_routes(&cl.node("b").ns),
        [
            "10.244.1.0/24 via 192.168.50.10 dev eth0",
            "10.244.3.0/24 via 10.244.3.0 dev rcni.vxlan onlink"
        ]
    );
    assert_eq!(
        agent_routes(&cl.node("c").ns),
        [
            "10.244.1.0/24 via 10.244.1.0 dev rcni.vxlan onlink",
            "10.244.2.0/24 via 10.244.2.0 dev rcni.vxlan onlink"
        ]
    );
    // The VXLAN device, its FDB and neighbours.
    let vx = vxlan_details(&cl.node("a").ns);
    assert_eq!(vx["mtu"], 1450, "{vx}");
    assert_eq!(vx["address"], "0a:58:c0:a8:32:0a", "{vx}");
    let info = &vx["linkinfo"]["info_data"];
    assert_eq!(info["id"], 1, "{vx}");
    assert_eq!(info["port"], 8472, "{vx}");
    assert_eq!(info["local"], A_IP, "{vx}");
    assert_eq!(info["learning"], false, "{vx}");
    let addrs = cl
        .node("a")
        .ns
        .exec(&["ip", "-4", "-o", "addr", "show", "rcni.vxlan"]);
    assert!(addrs.contains("10.244.1.0/32"), "{addrs}");
    assert_eq!(
        fdb(&cl.node("a").ns),
        ["0a:58:c0:a8:3c:0a dst 192.168.60.10"]
    );
    assert_eq!(
        neighbours(&cl.node("a").ns),
        ["10.244.3.0 0a:58:c0:a8:3c:0a [\"PERMANENT\"]"]
    );
    assert_eq!(
        fdb(&cl.node("c").ns),
        [
            "0a:58:c0:a8:32:0a dst 192.168.50.10",
            "0a:58:c0:a8:32:0b dst 192.168.50.11"
        ]
    );
    assert_eq!(
        neighbours(&cl.node("c").ns),
        [
            "10.244.1.0 0a:58:c0:a8:32:0a [\"PERMANENT\"]",
            "10.244.2.0 0a:58:c0:a8:32:0b [\"PERMANENT\"]"
        ]
    );
    for n in ["a", "b", "c"] {
        let fwd = cl
            .node(n)
            .ns
            .exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]);
        assert_eq!(fwd.trim(), "1", "ip_forward on {n}");
    }

    // The CNI config and the installed plugins.
    let conf: Value = serde_json::from_slice(
        &std::fs::read(cl.node("a").conf.path().join("10-rcni.conflist")).expect("read"),
    )
    .expect("json");
    let br = &conf["plugins"][0];
    assert_eq!(br["type"], "bridge");
    assert_eq!(br["bridge"], "cni0");
    assert_eq!(
        (br["isGateway"].clone(), br["isDefaultGateway"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(br["ipMasq"], false);
    assert_eq!(br["mtu"], 1450, "VXLAN peer present");
    assert_eq!(br["ipam"]["ranges"], json!([[{"subnet": "10.244.1.0/24"}]]));
    assert_eq!(conf["plugins"][1]["type"], "portmap");
    assert_eq!(conf["plugins"][1]["capabilities"]["portMappings"], true);
    assert_eq!(conf["plugins"][1]["snat"], true);
    for p in ["rcni", "bridge", "host-local", "portmap"] {
        let path = cl.node("a").bin.path().join(p);
        assert!(path.exists(), "{} installed", path.display());
    }

    // Pods on each node, made with that config and those plugins.
    let (pa, ip_a) = cl.pod("a");
    let (pb, ip_b) = cl.pod("b");
    let (pc, ip_c) = cl.pod("c");
    assert_eq!(
        (ip_a.as_str(), ip_b.as_str(), ip_c.as_str()),
        ("10.244.1.2", "10.244.2.2", "10.244.3.2")
    );
    // Pod to pod keeps the pod address: host-gw A↔B, VXLAN A↔C and B↔C.
    assert_eq!(tcp_exchange(&cl.pods[pa], &cl.pods[pb], &ip_b, 7001), ip_a);
    assert_eq!(tcp_exchange(&cl.pods[pb], &cl.pods[pa], &ip_a, 7002), ip_b);
    assert_eq!(tcp_exchange(&cl.pods[pa], &cl.pods[pc], &ip_c, 7003), ip_a);
    assert_eq!(tcp_exchange(&cl.pods[pc], &cl.pods[pa], &ip_a, 7004), ip_c);
    assert_eq!(tcp_exchange(&cl.pods[pb], &cl.pods[pc], &ip_c, 7005), ip_b);
    // Leaving the cluster: the outside host sees the node's address.
    assert_eq!(
        tcp_exchange(&cl.pods[pa], &cl.outside, "192.168.70.2", 7006),
        A_IP
    );
    assert_eq!(
        tcp_exchange(&cl.pods[pc], &cl.outside, "192.168.70.2", 7007),
        C_IP
    );

    // A second round changes nothing, not even the config file.
    for (n, extra) in [
        ("a", &["--cluster-cidr", "10.244.0.0/16"][..]),
        ("c", &[][..]),
    ] {
        let ns = &cl.node(n).ns;
        let conf_path = cl.node(n).conf.path().join("10-rcni.conflist");
        let mtime = std::fs::metadata(&conf_path)
            .expect("conf")
            .modified()
            .expect("mtime");
        let before = snapshot(ns);
        let err = cl.agent_once(n, &all, extra);
        assert!(err.contains(": 0 changes"), "{err}");
        assert!(!err.contains("wrote"), "{err}");
        assert_eq!(snapshot(ns), before, "state of {n} changed");
        let mtime2 = std::fs::metadata(&conf_path)
            .expect("conf")
            .modified()
            .expect("mtime");
        assert_eq!(mtime, mtime2);
    }

    // C without B: B's route, FDB entry and neighbour go, the device stays.
    let without_b = cl.nodes_file("nob.json", &["a", "c"]);
    let err = cl.agent_once("c", &without_b, &[]);
    assert!(err.contains("removed route 10.244.2.0/24"), "{err}");
    assert_eq!(
        agent_routes(&cl.node("c").ns),
        ["10.244.1.0/24 via 10.244.1.0 dev rcni.vxlan onlink"]
    );
    assert_eq!(
        fdb(&cl.node("c").ns),
        ["0a:58:c0:a8:32:0a dst 192.168.50.10"]
    );
    assert_eq!(
        neighbours(&cl.node("c").ns),
        ["10.244.1.0 0a:58:c0:a8:32:0a [\"PERMANENT\"]"]
    );
    assert!(has_vxlan(&cl.node("c").ns));

    // A without C: no VXLAN peer left, so the device goes too, and pods
    // get the uplink's MTU again.
    let without_c = cl.nodes_file("noc.json", &["a", "b"]);
    let err = cl.agent_once("a", &without_c, &["--cluster-cidr", "10.244.0.0/16"]);
    assert!(err.contains("deleted rcni.vxlan"), "{err}");
    assert_eq!(
        agent_routes(&cl.node("a").ns),
        ["10.244.2.0/24 via 192.168.50.11 dev eth0"]
    );
    assert!(!has_vxlan(&cl.node("a").ns));
    let conf: Value = serde_json::from_slice(
        &std::fs::read(cl.node("a").conf.path().join("10-rcni.conflist")).expect("read"),
    )
    .expect("json");
    assert_eq!(conf["plugins"][0]["mtu"], 1500);
    // host-gw still carries A↔B.
    assert_eq!(tcp_exchange(&cl.pods[pa], &cl.pods[pb], &ip_b, 7008), ip_a);
}

/// Kills the agent if the test fails before it stops.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigterm_leaves_routes_in_place_and_host_gw_refuses_off_link() {
    let cl = Cluster::new();
    let all = cl.nodes_file("all.json", &["a", "b", "c"]);
    let child = cl
        .agent_cmd("a", &all, &[])
        // Flags from the environment, as a DaemonSet may give them.
        .env("RCNI_AGENT_BACKEND", "host-gw")
        .env("RCNI_AGENT_INTERVAL", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn agent");
    let mut running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent_routes(&cl.node("a").ns).is_empty() {
        assert!(Instant::now() < deadline, "agent set no route");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = i32::try_from(running.0.id()).expect("pid");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours;
    // `pid` is our own child, not yet reaped (`running` holds it), so it
    // cannot name another process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = running.0.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "agent ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let mut err = String::new();
    if let Some(mut e) = running.0.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(err.contains("is not on-link; backend host-gw"), "{err}");
    assert!(err.contains("stopping"), "{err}");
    // host-gw: B routed, C refused, no overlay; all still there after exit.
    assert_eq!(
        agent_routes(&cl.node("a").ns),
        ["10.244.2.0/24 via 192.168.50.11 dev eth0"]
    );
    assert!(!has_vxlan(&cl.node("a").ns));
    // --once reports the refused peer with a failing exit code.
    let out = cl
        .agent_cmd("a", &all, &["--backend", "host-gw", "--once"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
}

/// Every route of the node in every table except the agent's own
/// (protocol 82), as `ip -j route show table all` prints them, sorted.
/// The host routes of IPv6 link-local addresses are left out: the kernel
/// adds them when its address autoconfiguration gets to it, whatever the
/// agent does.
fn foreign_routes(ns: &TestNs) -> Vec<String> {
    let mut out = Vec::new();
    for fam in ["-4", "-6"] {
        let v = json_of(ns, &["ip", "-j", fam, "route", "show", "table", "all"]);
        for r in v.as_array().expect("routes") {
            let ll_host =
                r["table"] == "local" && r["dst"].as_str().is_some_and(|d| d.starts_with("fe80:"));
            if r["protocol"] != "82" && r["protocol"] != 82 && !ll_host {
                out.push(r.to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn hostile_node_records_change_none_of_the_host_routes() {
    let cl = Cluster::new();
    let a = &cl.node("a").ns;
    // An IPv6 uplink address and default route, for `::/0` to aim at.
    sh(a, "ip addr add fd50::10/64 dev eth0 nodad");
    sh(a, "ip -6 route add default via fd50::1 dev eth0");
    let legit = cl.nodes_file("legit.json", &["a", "b", "c"]);
    cl.agent_once("a", &legit, &[]);
    let routes_before = foreign_routes(a);
    let agent_before = snapshot(a);
    assert_eq!(
        agent_routes(a),
        [
            "10.244.2.0/24 via 192.168.50.11 dev eth0",
            "10.244.3.0/24 via 10.244.3.0 dev rcni.vxlan onlink"
        ]
    );

    let mut list: Vec<Value> =
        serde_json::from_slice(&std::fs::read(&legit).expect("read")).expect("json");
    for (name, addr, cidrs) in [
        ("evil-uplink", "192.168.50.66", &["192.168.50.0/24"][..]),
        ("evil-v6", "fd50::66", &["::/0"][..]),
        ("evil-all", "192.168.50.67", &["0.0.0.0/0"][..]),
        ("evil-half", "192.168.50.68", &["0.0.0.0/1"][..]),
        (
            "evil-split",
            "192.168.50.69",
            &["0.0.0.0/5", "128.0.0.0/1"][..],
        ),
        ("evil-b", "192.168.50.70", &["10.244.2.0/24"][..]),
        ("evil-bcast", "255.255.255.255", &["10.244.7.0/24"][..]),
        ("evil-self", A_IP, &["10.244.8.0/24"][..]),
        ("evil-garbage", "192.168.50.71", &["10.244.300.0/24"][..]),
    ] {
        list.push(json!({"name": name, "addresses": [addr], "podCIDRs": cidrs}));
    }
    let hostile = cl.files.path().join("hostile.json");
    std::fs::write(&hostile, serde_json::to_vec(&list).expect("json")).expect("write");

    let err = cl.agent_once("a", &hostile, &[]);
    for what in [
        "node evil-uplink: pod CIDR 192.168.50.0/24 overlaps this host's connected subnet",
        "node evil-v6: pod CIDR ::/0 is a default route",
        "node evil-all: pod CIDR 0.0.0.0/0 is a default route",
        "node evil-half: pod CIDR 0.0.0.0/1 is shorter than /16",
        "node evil-split: pod CIDR 0.0.0.0/5 is shorter",
        "node evil-split: pod CIDR 128.0.0.0/1 is shorter",
        "node evil-b: pod CIDR 10.244.2.0/24 overlaps 10.244.2.0/24 of node b",
        "node evil-bcast: address 255.255.255.255 is in the reserved range",
        "node evil-self: address 192.168.50.10 is this host's own address",
        "node evil-garbage: pod CIDR \"10.244.300.0/24\"",
    ] {
        assert!(err.contains(&format!("refused: {what}")), "{what}\n{err}");
    }
    // Nothing of the host changed, and nothing of the agent's either: the
    // legitimate peers keep their routes, the masquerade rules stay.
    assert_eq!(foreign_routes(a), routes_before);
    assert_eq!(snapshot(a), agent_before);
    let nft = a.exec(&["nft", "list", "table", "inet", "rcni-agent"]);
    assert!(!nft.contains("0.0.0.0/0") && !nft.contains("::/0"), "{nft}");

    // A route of another owner to a peer's CIDR is neither replaced nor
    // shadowed: B refuses C's CIDR and leaves the static route alone.
    let b = &cl.node("b").ns;
    sh(
        b,
        "ip route add 10.244.3.0/24 via 192.168.50.1 proto static",
    );
    let b_before = foreign_routes(b);
    let err = cl.agent_once("b", &legit, &[]);
    assert!(
        err.contains("refused: node c: pod CIDR 10.244.3.0/24 overlaps the route 10.244.3.0/24"),
        "{err}"
    );
    assert_eq!(foreign_routes(b), b_before);
    assert_eq!(
        agent_routes(b),
        ["10.244.1.0/24 via 192.168.50.10 dev eth0"]
    );

    // In the loop, a refusal is logged once, not every round.
    let child = cl
        .agent_cmd("a", &hostile, &["--interval", "1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn agent");
    let mut running = Running(child);
    std::thread::sleep(Duration::from_millis(2500));
    let pid = i32::try_from(running.0.id()).expect("pid");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours;
    // `pid` is our own child, not yet reaped (`running` holds it), so it
    // cannot name another process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = running.0.wait().expect("wait");
    assert!(status.success(), "{status}");
    let mut log = String::new();
    if let Some(mut e) = running.0.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut log);
    }
    assert_eq!(log.matches("refused: node evil-b:").count(), 1, "{log}");
    assert_eq!(foreign_routes(a), routes_before);
    assert_eq!(snapshot(a), agent_before);
}

/// The pod CIDRs a node routes to (destinations of its protocol 82 routes).
fn routed_cidrs(ns: &TestNs) -> Vec<String> {
    agent_routes(ns)
        .iter()
        .filter_map(|r| r.split(' ').next().map(String::from))
        .collect()
}

#[test]
fn etcd_allocation_in_loop_mode_and_a_lost_node() {
    let mut cl = Cluster::new();
    // A real etcd on the router, reachable from every node.
    let etcd = Etcd::start_in(cl.router.name(), "192.168.50.1");
    let source = format!("etcd:{}", etcd.url);
    let logs = TempDir::new("logs");
    let ttl = 2;
    let mut agents = Vec::new();
    for (n, ip) in [("a", A_IP), ("b", B_IP), ("c", C_IP)] {
        let log = std::fs::File::create(logs.path().join(n)).expect("log");
        let child = cl
            .agent_cmd_source(
                n,
                &source,
                &[
                    "--cluster-cidr",
                    "10.244.0.0/16",
                    "--node-cidr-mask-size",
                    "24",
                    "--node-ip",
                    ip,
                    "--lease-ttl",
                    &ttl.to_string(),
                    // Changes must come through the watch.
                    "--interval",
                    "60",
                    // Loopback of the node's own namespace.
                    "--health-addr",
                    "127.0.0.1:9871",
                ],
            )
            .stderr(log)
            .spawn()
            .expect("spawn agent");
        agents.push(Running(child));
    }
    let log_of = |n: &str| std::fs::read_to_string(logs.path().join(n)).unwrap_or_default();
    let all_logs = || {
        format!(
            "a:\n{}\nb:\n{}\nc:\n{}",
            log_of("a"),
            log_of("b"),
            log_of("c")
        )
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = ["a", "b", "c"].iter().all(|n| {
            routed_cidrs(&cl.node(n).ns).len() == 2
                && cl.node(n).conf.path().join("10-rcni.conflist").exists()
        });
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "agents did not converge\n{}",
            all_logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Three different /24s of the cluster CIDR, each node routing the
    // other two.
    let mut every: Vec<String> = ["a", "b", "c"]
        .iter()
        .flat_map(|n| routed_cidrs(&cl.node(n).ns))
        .collect();
    every.sort();
    every.dedup();
    assert_eq!(every.len(), 3, "{every:?}");
    assert!(every
        .iter()
        .all(|c| c.starts_with("10.244.") && c.ends_with(".0/24")));
    let c_cidr = every
        .iter()
        .find(|c| !routed_cidrs(&cl.node("c").ns).contains(c))
        .expect("C's own CIDR")
        .clone();
    for n in ["a", "b", "c"] {
        assert!(
            log_of(n).contains(&format!("registered node {n} with pod CIDRs 10.244.")),
            "{}",
            all_logs()
        );
    }

    // Health, readiness and metrics on each node's loopback.
    let a = &cl.node("a").ns;
    let curl = |path: &str| {
        a.exec(&[
            "curl",
            "-s",
            "-w",
            " %{http_code}",
            &format!("http://127.0.0.1:9871{path}"),
        ])
    };
    assert_eq!(curl("/healthz"), "ok\n 200");
    assert_eq!(curl("/readyz"), "ok\n 200");
    let metrics = curl("/metrics");
    assert!(
        metrics.contains("rcni_agent_peers{backend=\"host-gw\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rcni_agent_peers{backend=\"vxlan\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rcni_agent_reconciles_total{result=\"ok\"} "),
        "{metrics}"
    );
    assert!(metrics.contains("rcni_agent_ready 1\n"), "{metrics}");

    // Pods made with the configs the agents wrote talk across host-gw and
    // VXLAN with their own addresses.
    let (pa, ip_a) = cl.pod("a");
    let (pb, ip_b) = cl.pod("b");
    let (pc, ip_c) = cl.pod("c");
    assert!(
        ip_c.starts_with(c_cidr.trim_end_matches("0/24")),
        "{ip_c} in {c_cidr}"
    );
    assert_eq!(tcp_exchange(&cl.pods[pa], &cl.pods[pb], &ip_b, 7101), ip_a);
    assert_eq!(tcp_exchange(&cl.pods[pa], &cl.pods[pc], &ip_c, 7102), ip_a);
    assert_eq!(tcp_exchange(&cl.pods[pc], &cl.pods[pb], &ip_b, 7103), ip_c);

    // A record written by hand reaches A and B through the watch within a
    // second (the interval is 60 s), and so does its removal.
    let wait_for = |want: bool, what: &str| {
        let t0 = Instant::now();
        loop {
            let done = ["a", "b"].iter().all(|n| {
                routed_cidrs(&cl.node(n).ns).contains(&"10.244.200.0/24".to_string()) == want
            });
            if done {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "{what} did not arrive\n{}",
                all_logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    etcd.put(
        "/rcni/nodes/d",
        r#"{"name":"d","addresses":["192.168.50.20"],"podCIDRs":["10.244.200.0/24"]}"#,
    );
    let took = wait_for(true, "the new node");
    eprintln!("a new node reached A and B after {took:?}");
    assert!(took <= Duration::from_secs(1), "{took:?}");
    let out = etcd
        .ctl(None)
        .args(["del", "/rcni/nodes/d"])
        .output()
        .expect("etcdctl");
    assert!(out.status.success());
    let took = wait_for(false, "the removal");
    eprintln!("a removed node left A and B after {took:?}");
    assert!(took <= Duration::from_secs(1), "{took:?}");

    // C's agent dies: its lease expires, its record goes, and A and B
    // drop its route, FDB entry and neighbour. Two clocks: etcd's (the
    // record goes TTL after C's last keepalive, found by etcd's expiry
    // sweep, which runs every 500 ms) and the agents' (the watch reports
    // the deletion, the next round removes the routes), so a slow sweep
    // on a loaded machine is told apart from a slow agent.
    let mut watch = etcd
        .ctl(None)
        .args(["watch", "/rcni/nodes/c"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("etcdctl watch");
    let watch_out = watch.stdout.take().expect("watch stdout");
    let watch = Running(watch);
    let (deleted_tx, deleted_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(watch_out).lines() {
            match line {
                Ok(l) if l.trim() == "DELETE" => {
                    let _ = deleted_tx.send(Instant::now());
                    return;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    // etcdctl's watch is open once a write shows up in it.
    std::thread::sleep(Duration::from_millis(300));
    let _ = agents[2].0.kill();
    let _ = agents[2].0.wait();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(ttl + 4);
    loop {
        let gone = ["a", "b"].iter().all(|n| {
            let ns = &cl.node(n).ns;
            !routed_cidrs(ns).contains(&c_cidr)
                && (!has_vxlan(ns) || (fdb(ns).is_empty() && neighbours(ns).is_empty()))
        });
        if gone {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "C's routes stayed\n{}",
            all_logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = Instant::now();
    drop(watch);
    let deleted = deleted_rx
        .recv_timeout(Duration::from_secs(1))
        .expect("etcd reported the deletion of C's record");
    let (expiry, reaction) = (deleted - t0, done.saturating_duration_since(deleted));
    eprintln!(
        "node loss reached A and B after {:?}: record expired after {expiry:?} \
         (lease TTL {ttl} s), routes gone {reaction:?} later",
        done - t0
    );
    // etcd: the lease runs out at most TTL after the kill, and its sweep
    // (every 500 ms) finds it: the record goes within TTL + 1 s.
    assert!(
        expiry <= Duration::from_secs(ttl + 1),
        "etcd took {expiry:?} to expire a {ttl} s lease"
    );
    // The agents: a removed record reaches the data path within 1 s.
    assert!(
        reaction <= Duration::from_secs(1),
        "took {reaction:?} after the record went\n{}",
        all_logs()
    );
    // A↔B is untouched.
    assert_eq!(tcp_exchange(&cl.pods[pa], &cl.pods[pb], &ip_b, 7104), ip_a);

    // etcd goes away: the data path stays as it was.
    let mut etcd = etcd;
    let before = snapshot(&cl.node("a").ns);
    etcd.stop();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(snapshot(&cl.node("a").ns), before, "{}", all_logs());
    assert_eq!(tcp_exchange(&cl.pods[pa], &cl.pods[pb], &ip_b, 7105), ip_a);
    // It comes back: the agents reconnect (with back-off), keep their
    // subnets, and see changes again.
    etcd.restart();
    etcd.put(
        "/rcni/nodes/e",
        r#"{"name":"e","addresses":["192.168.50.21"],"podCIDRs":["10.244.201.0/24"]}"#,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !["a", "b"]
        .iter()
        .all(|n| routed_cidrs(&cl.node(n).ns).contains(&"10.244.201.0/24".to_string()))
    {
        assert!(Instant::now() < deadline, "no recovery\n{}", all_logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(tcp_exchange(&cl.pods[pa], &cl.pods[pb], &ip_b, 7106), ip_a);
    let out = etcd
        .ctl(None)
        .args(["get", "--prefix", "/rcni/nodes/", "--keys-only"])
        .output()
        .expect("etcdctl");
    let keys = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        keys.contains("/rcni/nodes/a") && keys.contains("/rcni/nodes/b"),
        "{keys}"
    );

    // A TCP stream between pods on A and B survives a restart of A's
    // agent, which changes nothing on A.
    use std::io::{Read, Write};
    let listener =
        cl.pods[pb].run(|| std::net::TcpListener::bind(("0.0.0.0", 7300)).expect("bind"));
    let target: std::net::SocketAddr = format!("{ip_b}:7300").parse().expect("addr");
    let mut client = cl.pods[pa].run(|| {
        std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5)).expect("connect")
    });
    let (mut server, _) = listener.accept().expect("accept");
    for s in [&client, &server] {
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
    }
    let mut exchange = |msg: &[u8]| {
        client.write_all(msg).expect("send");
        let mut got = vec![0; msg.len()];
        server.read_exact(&mut got).expect("receive");
        server.write_all(&got).expect("echo");
        let mut back = vec![0; msg.len()];
        client.read_exact(&mut back).expect("echo back");
        assert_eq!(back, msg);
    };
    exchange(b"before the restart");
    let before = snapshot(&cl.node("a").ns);
    let routes_before = foreign_routes(&cl.node("a").ns);
    let _ = agents[0].0.kill();
    let _ = agents[0].0.wait();
    exchange(b"while no agent runs");
    let log = std::fs::File::create(logs.path().join("a2")).expect("log");
    let child = cl
        .agent_cmd_source(
            "a",
            &source,
            &[
                "--cluster-cidr",
                "10.244.0.0/16",
                "--node-cidr-mask-size",
                "24",
                "--node-ip",
                A_IP,
                "--lease-ttl",
                &ttl.to_string(),
                "--interval",
                "60",
            ],
        )
        .stderr(log)
        .spawn()
        .expect("spawn agent");
    agents[0] = Running(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log_of("a2").contains("node a with pod CIDRs")
        || !log_of("a2").contains("watch: started")
    {
        assert!(Instant::now() < deadline, "{}", log_of("a2"));
        std::thread::sleep(Duration::from_millis(50));
    }
    exchange(b"after the restart");
    assert_eq!(snapshot(&cl.node("a").ns), before, "{}", log_of("a2"));

    // Hostile records in etcd change none of A's routes.
    for (name, cidrs) in [
        ("evil-uplink", json!(["192.168.50.0/24"])),
        ("evil-v6", json!(["::/0", "0.0.0.0/1"])),
        ("evil-b", json!(routed_cidrs(&cl.node("a").ns))),
    ] {
        let rec = json!({"name": name, "addresses": ["192.168.50.66"], "podCIDRs": cidrs});
        etcd.put(&format!("/rcni/nodes/{name}"), &rec.to_string());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !log_of("a2").contains("refused: node evil-b") {
        assert!(Instant::now() < deadline, "{}", log_of("a2"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(foreign_routes(&cl.node("a").ns), routes_before);
    assert_eq!(snapshot(&cl.node("a").ns), before, "{}", log_of("a2"));
    exchange(b"with hostile records around");
    drop(agents);
    drop(etcd);
}

#[test]
fn ipv6_pods_over_the_ipv4_overlay() {
    let mut cl = Cluster::new();
    let list = json!([
        {"name": "a", "addresses": [A_IP], "podCIDRs": ["10.244.1.0/24", "fd44:1::/64"]},
        {"name": "b", "addresses": [B_IP], "podCIDRs": ["10.244.2.0/24", "fd44:2::/64"]},
        {"name": "c", "addresses": [C_IP], "podCIDRs": ["10.244.3.0/24", "fd44:3::/64"]},
    ]);
    let file = cl.files.path().join("dual.json");
    std::fs::write(&file, list.to_string()).expect("write");
    for n in ["a", "b"] {
        cl.agent_once(n, &file, &[]);
    }
    // --mtu overrides the pods' and the device's MTU.
    cl.agent_once("c", &file, &["--mtu", "1400"]);
    assert_eq!(vxlan_details(&cl.node("c").ns)["mtu"], 1400);
    let conf: Value = serde_json::from_slice(
        &std::fs::read(cl.node("c").conf.path().join("10-rcni.conflist")).expect("read"),
    )
    .expect("json");
    assert_eq!(conf["plugins"][0]["mtu"], 1400);
    assert_eq!(
        conf["plugins"][0]["ipam"]["ranges"],
        json!([[{"subnet": "10.244.3.0/24"}], [{"subnet": "fd44:3::/64"}]])
    );
    // The nodes have IPv4 addresses only: every IPv6 pod CIDR goes over
    // the VXLAN device (IPv6 VTEP = the CIDR's network address), IPv4
    // stays host-gw between A and B.
    assert_eq!(
        agent_routes(&cl.node("a").ns),
        [
            "10.244.2.0/24 via 192.168.50.11 dev eth0",
            "10.244.3.0/24 via 10.244.3.0 dev rcni.vxlan onlink",
            "fd44:2::/64 via fd44:2:: dev rcni.vxlan onlink",
            "fd44:3::/64 via fd44:3:: dev rcni.vxlan onlink",
        ]
    );
    let a = &cl.node("a").ns;
    let addrs = a.exec(&["ip", "-o", "addr", "show", "rcni.vxlan"]);
    assert!(
        addrs.contains("10.244.1.0/32") && addrs.contains("fd44:1::/128"),
        "{addrs}"
    );
    assert_eq!(
        fdb(a),
        [
            "0a:58:c0:a8:32:0b dst 192.168.50.11",
            "0a:58:c0:a8:3c:0a dst 192.168.60.10"
        ]
    );
    let neigh = neighbours(a);
    assert!(
        neigh.contains(&"fd44:3:: 0a:58:c0:a8:3c:0a [\"PERMANENT\"]".to_string()),
        "{neigh:?}"
    );
    let fwd = a.exec(&["cat", "/proc/sys/net/ipv6/conf/all/forwarding"]);
    assert_eq!(fwd.trim(), "1");

    let (pa, ips_a) = cl.pod_ips("a");
    let (pb, ips_b) = cl.pod_ips("b");
    let (pc, ips_c) = cl.pod_ips("c");
    let v6 = |ips: &[String]| {
        ips.iter()
            .find(|i| i.contains(':'))
            .expect("an IPv6 address")
            .clone()
    };
    let (a6, b6, c6) = (v6(&ips_a), v6(&ips_b), v6(&ips_c));
    assert!(
        a6.starts_with("fd44:1::") && c6.starts_with("fd44:3::"),
        "{a6} {c6}"
    );
    // IPv6 pod to pod across the overlay keeps the pod address, both ways,
    // on the same segment and behind the router; IPv4 still works.
    assert_eq!(tcp_exchange(&cl.pods[pa], &cl.pods[pc], &c6, 7201), a6);
    assert_eq!(tcp_exchange(&cl.pods[pc], &cl.pods[pa], &a6, 7202), c6);
    assert_eq!(tcp_exchange(&cl.pods[pa], &cl.pods[pb], &b6, 7203), a6);
    assert_eq!(
        tcp_exchange(&cl.pods[pb], &cl.pods[pc], &ips_c[0], 7204),
        ips_b[0]
    );

    // A second round changes nothing.
    let a = &cl.node("a").ns;
    let before = snapshot(a);
    let err = cl.agent_once("a", &file, &[]);
    assert!(err.contains(": 0 changes"), "{err}");
    assert_eq!(snapshot(a), before);
}

#[test]
fn ipv6_underlay_vxlan6_with_ipv6_only_nodes() {
    let mut cl = Cluster::new();
    // An IPv6 underlay next to the IPv4 one: A and B on fd50::/64, C on
    // fd60::/64 behind the router.
    for (n, addr, gw) in [
        ("a", "fd50::10", "fd50::1"),
        ("b", "fd50::11", "fd50::1"),
        ("c", "fd60::10", "fd60::1"),
    ] {
        let ns = &cl.node(n).ns;
        sh(ns, &format!("ip addr add {addr}/64 dev eth0 nodad"));
        sh(ns, &format!("ip -6 route add default via {gw} dev eth0"));
    }
    sh(&cl.router, "ip addr add fd50::1/64 dev e50 nodad");
    sh(&cl.router, "ip addr add fd60::1/64 dev e60 nodad");
    sh(&cl.router, "sysctl -qw net.ipv6.conf.all.forwarding=1");
    let list = json!([
        {"name": "a", "addresses": ["fd50::10"], "podCIDRs": ["fd44:1::/64"]},
        {"name": "b", "addresses": ["fd50::11"], "podCIDRs": ["fd44:2::/64"]},
        {"name": "c", "addresses": ["fd60::10"], "podCIDRs": ["fd44:3::/64"]},
    ]);
    let file = cl.files.path().join("v6.json");
    std::fs::write(&file, list.to_string()).expect("write");
    for n in ["a", "b", "c"] {
        cl.agent_once(n, &file, &[]);
    }
    assert_eq!(
        agent_routes(&cl.node("a").ns),
        [
            "fd44:2::/64 via fd50::11 dev eth0",
            "fd44:3::/64 via fd44:3:: dev rcni.vxlan6 onlink",
        ]
    );
    assert_eq!(
        agent_routes(&cl.node("c").ns),
        [
            "fd44:1::/64 via fd44:1:: dev rcni.vxlan6 onlink",
            "fd44:2::/64 via fd44:2:: dev rcni.vxlan6 onlink",
        ]
    );
    let a = &cl.node("a").ns;
    assert!(!has_vxlan(a));
    let dev = json_of(a, &["ip", "-j", "-d", "link", "show", "rcni.vxlan6"])[0].clone();
    assert_eq!(dev["mtu"], 1430, "IPv6 underlay overhead 70: {dev}");
    let fdb6 = json_of(a, &["bridge", "-j", "fdb", "show", "dev", "rcni.vxlan6"]);
    let dsts: Vec<&str> = fdb6
        .as_array()
        .expect("fdb")
        .iter()
        .filter_map(|e| e["dst"].as_str())
        .collect();
    assert_eq!(dsts, ["fd60::10"], "{fdb6}");
    let conf: Value = serde_json::from_slice(
        &std::fs::read(cl.node("a").conf.path().join("10-rcni.conflist")).expect("read"),
    )
    .expect("json");
    assert_eq!(conf["plugins"][0]["mtu"], 1430);

    let (pa, ips_a) = cl.pod_ips("a");
    let (pb, ips_b) = cl.pod_ips("b");
    let (pc, ips_c) = cl.pod_ips("c");
    assert_eq!(
        tcp_exchange(&cl.pods[pa], &cl.pods[pc], &ips_c[0], 7301),
        ips_a[0]
    );
    assert_eq!(
        tcp_exchange(&cl.pods[pc], &cl.pods[pa], &ips_a[0], 7302),
        ips_c[0]
    );
    assert_eq!(
        tcp_exchange(&cl.pods[pb], &cl.pods[pa], &ips_a[0], 7303),
        ips_b[0]
    );

    let a = &cl.node("a").ns;
    let before = (
        agent_routes(a),
        a.exec(&["bridge", "fdb", "show", "dev", "rcni.vxlan6"]),
    );
    let err = cl.agent_once("a", &file, &[]);
    assert!(err.contains(": 0 changes"), "{err}");
    assert_eq!(
        (
            agent_routes(a),
            a.exec(&["bridge", "fdb", "show", "dev", "rcni.vxlan6"])
        ),
        before
    );
}

#[test]
fn once_with_etcd_allocation_leaves_the_lease_to_expire_and_keeps_the_subnet() {
    let cl = Cluster::new();
    let etcd = Etcd::start_in(cl.router.name(), "192.168.50.1");
    let source = format!("etcd:{}", etcd.url);
    // A record written by hand holds the first /24.
    etcd.put(
        "/rcni/nodes/hand",
        r#"{"name":"hand","addresses":["192.168.50.99"],"podCIDRs":["10.244.0.0/24"]}"#,
    );
    let ttl = 2;
    let once = || {
        let out = cl
            .agent_cmd_source(
                "a",
                &source,
                &[
                    "--cluster-cidr",
                    "10.244.0.0/16",
                    "--node-cidr-mask-size",
                    "24",
                    "--node-ip",
                    A_IP,
                    "--lease-ttl",
                    &ttl.to_string(),
                    "--once",
                ],
            )
            .output()
            .expect("run rcni-agent");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        err
    };
    let conf_cidrs = || {
        let conf: Value = serde_json::from_slice(
            &std::fs::read(cl.node("a").conf.path().join("10-rcni.conflist")).expect("conflist"),
        )
        .expect("json");
        conf["plugins"][0]["ipam"]["ranges"].clone()
    };
    let record = || -> Value {
        let out = etcd
            .ctl(None)
            .args(["get", "/rcni/nodes/a", "-w", "json"])
            .output()
            .expect("etcdctl");
        serde_json::from_slice(&out.stdout).expect("etcdctl json")
    };

    let log = once();
    assert!(
        log.contains("registered node a with pod CIDRs 10.244.1.0/24"),
        "{log}"
    );
    assert_eq!(conf_cidrs(), json!([[{"subnet": "10.244.1.0/24"}]]));
    assert_eq!(
        agent_routes(&cl.node("a").ns),
        ["10.244.0.0/24 via 192.168.50.99 dev eth0"]
    );
    // The record is on a lease nobody renews once the round is over: it
    // goes TTL later (plus etcd's expiry sweep).
    let r = record();
    assert_ne!(r["kvs"][0]["lease"].as_i64().unwrap_or(0), 0, "{r}");
    let t0 = Instant::now();
    while record()["kvs"].as_array().is_some_and(|k| !k.is_empty()) {
        assert!(
            t0.elapsed() < Duration::from_secs(ttl + 3),
            "the record of a --once run stayed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The first /24 is free again, but the next run asks for the subnet of
    // the config it wrote, so the node's pods keep their network.
    let out = etcd
        .ctl(None)
        .args(["del", "/rcni/nodes/hand"])
        .output()
        .expect("etcdctl");
    assert!(out.status.success());
    let log = once();
    assert!(
        log.contains("registered node a with pod CIDRs 10.244.1.0/24"),
        "{log}"
    );
    assert_eq!(conf_cidrs(), json!([[{"subnet": "10.244.1.0/24"}]]));
    // The hand-written node is gone, and so is its route.
    assert!(agent_routes(&cl.node("a").ns).is_empty());
}

#[test]
fn etcd_allocation_dual_stack_in_loop_mode_and_egress() {
    let mut cl = Cluster::new();
    // IPv6 next to IPv4 on the underlay: A and B on fd50::/64, C on
    // fd60::/64 behind the router.
    for (n, addr, gw) in [
        ("a", "fd50::10", "fd50::1"),
        ("b", "fd50::11", "fd50::1"),
        ("c", "fd60::10", "fd60::1"),
    ] {
        let ns = &cl.node(n).ns;
        sh(ns, &format!("ip addr add {addr}/64 dev eth0 nodad"));
        sh(ns, &format!("ip -6 route add default via {gw} dev eth0"));
    }
    sh(&cl.router, "ip addr add fd50::1/64 dev e50 nodad");
    sh(&cl.router, "ip addr add fd60::1/64 dev e60 nodad");
    sh(&cl.router, "sysctl -qw net.ipv6.conf.all.forwarding=1");
    let etcd = Etcd::start_in(cl.router.name(), "192.168.50.1");
    let source = format!("etcd:{}", etcd.url);
    let logs = TempDir::new("logs");
    let mut agents = Vec::new();
    for (n, ip, ip6) in [
        ("a", A_IP, "fd50::10"),
        ("b", B_IP, "fd50::11"),
        ("c", C_IP, "fd60::10"),
    ] {
        let log = std::fs::File::create(logs.path().join(n)).expect("log");
        let node_ip = format!("{ip},{ip6}");
        let child = cl
            .agent_cmd_source(
                n,
                &source,
                &[
                    "--cluster-cidr",
                    "10.244.0.0/16,fd44::/48",
                    "--node-cidr-mask-size",
                    "24,64",
                    "--node-ip",
                    &node_ip,
                    "--interval",
                    "60",
                ],
            )
            .stderr(log)
            .spawn()
            .expect("spawn agent");
        agents.push(Running(child));
    }
    let all_logs = || {
        ["a", "b", "c"]
            .iter()
            .map(|n| {
                let l = std::fs::read_to_string(logs.path().join(n)).unwrap_or_default();
                format!("{n}:\n{l}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !["a", "b", "c"].iter().all(|n| {
        routed_cidrs(&cl.node(n).ns).len() == 4
            && cl.node(n).conf.path().join("10-rcni.conflist").exists()
    }) {
        assert!(
            Instant::now() < deadline,
            "agents did not converge\n{}",
            all_logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Each node allocated one /24 and one /64; A reaches B host-gw in both
    // families, C over the overlay (IPv6 too: C's IPv6 address is off-link,
    // so its IPv6 pod CIDR rides the IPv4 underlay).
    let own = |n: &str| -> Vec<String> {
        let conf: Value = serde_json::from_slice(
            &std::fs::read(cl.node(n).conf.path().join("10-rcni.conflist")).expect("conflist"),
        )
        .expect("json");
        conf["plugins"][0]["ipam"]["ranges"]
            .as_array()
            .expect("ranges")
            .iter()
            .map(|set| set[0]["subnet"].as_str().expect("subnet").to_string())
            .collect()
    };
    let (b, c) = (own("b"), own("c"));
    assert!(
        b[0].starts_with("10.244.") && b[1].starts_with("fd44:"),
        "{b:?}"
    );
    let mut want_a = vec![
        format!("{} via {B_IP} dev eth0", b[0]),
        format!("{} via fd50::11 dev eth0", b[1]),
        format!(
            "{} via {} dev rcni.vxlan onlink",
            c[0],
            c[0].trim_end_matches("/24")
        ),
        format!(
            "{} via {} dev rcni.vxlan onlink",
            c[1],
            c[1].trim_end_matches("/64")
        ),
    ];
    want_a.sort();
    assert_eq!(agent_routes(&cl.node("a").ns), want_a, "{}", all_logs());

    // Pods made with the configs the agents wrote: TCP in both families
    // across host-gw and VXLAN keeps the pod addresses.
    let (pa, ips_a) = cl.pod_ips("a");
    let (pb, ips_b) = cl.pod_ips("b");
    let (pc, ips_c) = cl.pod_ips("c");
    for (from, from_ips, to, to_ips, port) in [
        (pa, &ips_a, pb, &ips_b, 7401),
        (pa, &ips_a, pc, &ips_c, 7403),
        (pc, &ips_c, pb, &ips_b, 7405),
    ] {
        assert_eq!(from_ips.len(), 2, "{from_ips:?}");
        for fam in 0..2 {
            let port = port + fam as u16;
            assert_eq!(
                tcp_exchange(&cl.pods[from], &cl.pods[to], &to_ips[fam], port),
                from_ips[fam]
            );
        }
    }
    // Leaving the cluster: the outside host sees the node's address.
    assert_eq!(
        tcp_exchange(&cl.pods[pa], &cl.outside, "192.168.70.2", 7410),
        A_IP
    );
    assert_eq!(
        tcp_exchange(&cl.pods[pc], &cl.outside, "192.168.70.2", 7411),
        C_IP
    );
}

/// A Node object of the Kubernetes API.
fn k8s_node(name: &str, ip: &str, cidr: &str) -> Value {
    json!({"metadata": {"name": name},
           "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
           "status": {"addresses": [{"type": "InternalIP", "address": ip}]}})
}

/// The fake API server's state: nodes and their change history.
#[derive(Default)]
struct Api {
    rv: u64,
    nodes: Vec<Value>,
    /// (resourceVersion, event type, object)
    events: Vec<(u64, &'static str, Value)>,
}

impl Api {
    fn add(&mut self, name: &str, ip: &str, cidr: &str) {
        self.rv += 1;
        let mut node = k8s_node(name, ip, cidr);
        node["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.nodes.push(node.clone());
        self.events.push((self.rv, "ADDED", node));
    }
}

#[test]
fn kubernetes_watch_and_api_outage_in_loop_mode() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let cl = Cluster::new();
    let api = Arc::new(Mutex::new(Api::default()));
    {
        let mut a = api.lock().expect("api");
        a.add("a", A_IP, "10.244.1.0/24");
        a.add("b", B_IP, "10.244.2.0/24");
        a.add("c", C_IP, "10.244.3.0/24");
    }
    let down = Arc::new(AtomicBool::new(false));
    // A fake API server on node A's loopback (no real kube-apiserver can be
    // installed here): list with a resourceVersion; watch from a version
    // streams the later events (waiting up to 300 ms for one) or a
    // bookmark; 503 to everything while "down".
    let (state, d) = (api.clone(), down.clone());
    let server = cl.node("a").ns.run(move || {
        common::serve(move |r| {
            if d.load(Ordering::SeqCst) {
                return (503, r#"{"kind":"Status","code":503}"#.to_string());
            }
            if r.query("watch").as_deref() != Some("1") {
                let a = state.lock().expect("api");
                let list = json!({"kind": "NodeList",
                                  "metadata": {"resourceVersion": a.rv.to_string()},
                                  "items": a.nodes});
                return (200, list.to_string());
            }
            let from: u64 = r
                .query("resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let deadline = Instant::now() + Duration::from_millis(300);
            loop {
                {
                    let a = state.lock().expect("api");
                    let new: Vec<String> = a
                        .events
                        .iter()
                        .filter(|(rv, _, _)| *rv > from)
                        .map(|(_, kind, obj)| json!({"type": kind, "object": obj}).to_string())
                        .collect();
                    if !new.is_empty() {
                        return (200, new.join("\n") + "\n");
                    }
                    if Instant::now() > deadline {
                        let mark = json!({"type": "BOOKMARK", "object": {"kind": "Node",
                                          "metadata": {"resourceVersion": a.rv.to_string()}}});
                        return (200, format!("{mark}\n"));
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    });
    let kubeconfig = cl.files.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: t\n\
             clusters:\n- name: t\n  cluster:\n    server: {}\n\
             contexts:\n- name: t\n  context:\n    cluster: t\n    user: u\n\
             users:\n- name: u\n  user: {{}}\n",
            server.url()
        ),
    )
    .expect("kubeconfig");
    let logs = TempDir::new("logs");
    let log_path = logs.path().join("a");
    let child = cl
        .agent_cmd_source(
            "a",
            &format!("kubernetes:{}", kubeconfig.display()),
            // Changes must come through the watch.
            &["--interval", "60"],
        )
        .stderr(std::fs::File::create(&log_path).expect("log"))
        .spawn()
        .expect("spawn agent");
    let _agent = Running(child);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let a = &cl.node("a").ns;
    let wait_for = |cidr: &str, within: Duration| {
        let t0 = Instant::now();
        while !routed_cidrs(a).contains(&cidr.to_string()) {
            assert!(t0.elapsed() < within, "{cidr} not routed\n{}", log());
            std::thread::sleep(Duration::from_millis(10));
        }
        t0.elapsed()
    };
    wait_for("10.244.3.0/24", Duration::from_secs(15));
    assert_eq!(routed_cidrs(a).len(), 2);

    // A node joins: the watch brings it to A's data path within 1 s.
    api.lock()
        .expect("api")
        .add("e", "192.168.50.21", "10.244.5.0/24");
    let took = wait_for("10.244.5.0/24", Duration::from_secs(5));
    eprintln!("a new Node reached A after {took:?}");
    assert!(took <= Duration::from_secs(1), "{took:?}");
    // The round that routed it goes on to the masquerade rules: the
    // snapshot below must not be taken halfway through it.
    let t0 = Instant::now();
    while !snapshot(a).contains("ip daddr != 10.244.5.0/24") {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "masquerade not updated\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // The API server goes away (503 to everything), and a node joins
    // meanwhile: nothing on A changes.
    down.store(true, Ordering::SeqCst);
    let before = snapshot(a);
    api.lock()
        .expect("api")
        .add("d", "192.168.50.20", "10.244.4.0/24");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(snapshot(a), before, "{}", log());
    assert!(log().contains("watch: HTTP 503"), "{}", log());
    // It comes back: the watch (after its back-off) resumes from the last
    // version it saw, and a round that failed is retried with back-off (the
    // watch may have delivered the new node's event to a round whose list
    // then failed), well before the 60 s resync.
    down.store(false, Ordering::SeqCst);
    let took = wait_for("10.244.4.0/24", Duration::from_secs(15));
    eprintln!("after the outage, the missed Node reached A after {took:?}");
    assert_eq!(routed_cidrs(a).len(), 4);
}
