//! firewall in real namespaces, with real TCP traffic, every spec version.
//!
//! Topology built by hand (no bridge plugin), all inside per-test
//! namespaces:
//!
//! ```text
//!   pod1 10.50.0.2 ─┐                      ┌─ vout 10.52.0.1 ── outside 10.52.0.2
//!   pod2 10.50.0.3 ─┤ bra 10.50.0.1  node  │
//!   pod3 10.51.0.2 ── brb 10.51.0.1  (ip_forward=1, bridge-nf-call-iptables=1)
//! ```
//!
//! An accept in rcni's own nftables table cannot override a drop policy of
//! another base chain (every base chain on the hook must accept), so the
//! "forward policy DROP" cases are iptables policies (iptables-nft, which
//! is itself an nftables base chain in table `ip filter`, and
//! iptables-legacy); the nftables backend is proven on isolation and
//! bookkeeping.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use testutil::{per_version, run_plugin, Call, Outcome, PluginDir, TestNs};

const PORT: u16 = 8080;

struct Pod {
    ns: TestNs,
    ip: &'static str,
    bridge: &'static str,
    _listener: TcpListener,
}

struct Topo {
    node: TestNs,
    outside: TestNs,
    _out_listener: TcpListener,
    pods: Vec<Pod>,
}

fn listen(ns: &TestNs, ip: &str) -> TcpListener {
    let addr: SocketAddr = format!("{ip}:{PORT}").parse().expect("addr");
    ns.run(|| TcpListener::bind(addr)).expect("listen")
}

impl Topo {
    fn new() -> Topo {
        let node = TestNs::new("fwn");
        let outside = TestNs::new("fwo");
        node.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        node.exec(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]);
        for (br, addr) in [("bra", "10.50.0.1/24"), ("brb", "10.51.0.1/24")] {
            node.exec(&["ip", "link", "add", br, "type", "bridge"]);
            node.exec(&["ip", "addr", "add", addr, "dev", br]);
            node.exec(&["ip", "link", "set", br, "up"]);
        }
        node.exec(&[
            "ip",
            "link",
            "add",
            "vout",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            outside.name(),
        ]);
        node.exec(&["ip", "addr", "add", "10.52.0.1/24", "dev", "vout"]);
        node.exec(&["ip", "link", "set", "vout", "up"]);
        outside.exec(&["ip", "addr", "add", "10.52.0.2/24", "dev", "eth0"]);
        outside.exec(&["ip", "link", "set", "eth0", "up"]);
        outside.exec(&["ip", "route", "add", "default", "via", "10.52.0.1"]);
        let out_listener = listen(&outside, "10.52.0.2");

        let mut pods = Vec::new();
        for (i, (ip, br, gw)) in [
            ("10.50.0.2", "bra", "10.50.0.1"),
            ("10.50.0.3", "bra", "10.50.0.1"),
            ("10.51.0.2", "brb", "10.51.0.1"),
        ]
        .into_iter()
        .enumerate()
        {
            let ns = TestNs::new("fwp");
            let host = format!("vp{}", i + 1);
            node.exec(&[
                "ip",
                "link",
                "add",
                &host,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ]);
            node.exec(&["ip", "link", "set", &host, "master", br, "up"]);
            ns.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            ns.exec(&["ip", "link", "set", "eth0", "up"]);
            ns.exec(&["ip", "route", "add", "default", "via", gw]);
            let l = listen(&ns, ip);
            pods.push(Pod {
                ns,
                ip,
                bridge: br,
                _listener: l,
            });
        }
        node.wait_links_operational();
        outside.wait_links_operational();
        for p in &pods {
            p.ns.wait_links_operational();
        }
        let t = Topo {
            node,
            outside,
            _out_listener: out_listener,
            pods,
        };
        // Without any firewall everything reaches everything. The topology
        // is brand new (bridges coming up, neighbours unresolved) and the
        // suite runs in parallel, so the baseline gets a few tries.
        assert!(
            t.reach_eventually(&t.outside, t.pods[0].ip),
            "baseline outside -> pod1"
        );
        assert!(
            t.reach_eventually(&t.pods[2].ns, t.pods[0].ip),
            "baseline pod3 -> pod1"
        );
        assert!(
            t.reach_eventually(&t.pods[1].ns, t.pods[0].ip),
            "baseline pod2 -> pod1"
        );
        t
    }

    /// A TCP connection from `from` to `ip:PORT` completes.
    fn reach(&self, from: &TestNs, ip: &str) -> bool {
        let addr: SocketAddr = format!("{ip}:{PORT}").parse().expect("addr");
        from.run(|| TcpStream::connect_timeout(&addr, Duration::from_millis(400)).is_ok())
    }

    fn reach_eventually(&self, from: &TestNs, ip: &str) -> bool {
        (0..8).any(|_| self.reach(from, ip))
    }

    fn run(&self, bin: &Path, call: &Call) -> Outcome {
        run_plugin(bin, "firewall", call, Some(self.node.ns()))
    }

    fn nft_ruleset(&self) -> String {
        self.node.exec(&["nft", "list", "ruleset"])
    }
}

fn has_interfaces(v: &str) -> bool {
    !testutil::is_legacy(v)
}

/// A hand-written prevResult of what a bridge plugin would report.
fn prev(v: &str, pod: &Pod) -> Value {
    let addr = format!("{}/24", pod.ip);
    if !has_interfaces(v) {
        return json!({"cniVersion": v, "ip4": {"ip": addr}});
    }
    let mut ip = json!({"address": addr, "interface": 2});
    if !v.starts_with('1') {
        ip["version"] = json!("4");
    }
    json!({
        "cniVersion": v,
        "interfaces": [
            {"name": pod.bridge},
            {"name": "vethhost"},
            {"name": "eth0", "sandbox": pod.ns.path().display().to_string()}
        ],
        "ips": [ip]
    })
}

fn conf(v: &str, extra: Value, prev: Option<Value>) -> String {
    let mut c = json!({"cniVersion": v, "name": "fwnet", "type": "firewall"});
    if let (Some(obj), Value::Object(e)) = (c.as_object_mut(), extra) {
        obj.extend(e);
        if let Some(p) = prev {
            obj.insert("prevResult".into(), p);
        }
    }
    c.to_string()
}

fn cid(i: usize) -> String {
    format!("ctr{i}")
}

impl Topo {
    fn add(&self, bin: &Path, v: &str, i: usize, extra: &Value) -> Value {
        let p = &self.pods[i];
        let c = conf(v, extra.clone(), Some(prev(v, p)));
        self.run(bin, &Call::new("ADD", &cid(i), &p.ns.path(), &c))
            .ok()
    }
    fn del(&self, bin: &Path, v: &str, i: usize, extra: &Value) {
        let p = &self.pods[i];
        let c = conf(v, extra.clone(), Some(prev(v, p)));
        self.run(bin, &Call::new("DEL", &cid(i), &p.ns.path(), &c))
            .ok();
    }
    fn check(&self, bin: &Path, v: &str, i: usize, extra: &Value) -> Outcome {
        let p = &self.pods[i];
        let c = conf(v, extra.clone(), Some(prev(v, p)));
        self.run(bin, &Call::new("CHECK", &cid(i), &p.ns.path(), &c))
    }
}

fn rcni() -> PluginDir {
    PluginDir::install(Path::new(env!("CARGO_BIN_EXE_rcni")))
}

// The host's iptables FORWARD policy is DROP (iptables-nft, as Docker
// leaves it): nothing is forwarded to or from pods until ADD; with no
// `backend` configured the plugin detects this and uses the iptables path.
// As in the reference, ADD accepts what the pod sends and the replies to
// it; new connections from outside stay subject to the host's policy.
// DEL closes the pod again and leaves the other pod's rules alone.
per_version!(iptables_nft_drop_policy_auto_detected_every_version, |v| {
    let bin = rcni();
    let t = Topo::new();
    t.node.exec(&["iptables-nft", "-P", "FORWARD", "DROP"]);
    let open = json!({});
    let (p1, p3) = (&t.pods[0], &t.pods[2]);
    assert!(
        !t.reach(&p1.ns, "10.52.0.2"),
        "{v}: pod1 -> outside closed before ADD"
    );
    assert!(
        !t.reach(&p3.ns, p1.ip),
        "{v}: pod3 -> pod1 closed before ADD"
    );
    let res = t.add(bin.path(), v, 0, &open);
    assert_eq!(res["cniVersion"], v, "prevResult passed through");
    if has_interfaces(v) {
        assert_eq!(res["ips"][0]["address"], "10.50.0.2/24");
    } else {
        assert_eq!(res["ip4"]["ip"], "10.50.0.2/24");
    }
    assert!(t.reach(&p1.ns, "10.52.0.2"), "{v}: pod1 -> outside");
    assert!(t.reach(&p1.ns, p3.ip), "{v}: pod1 -> pod3 (other bridge)");
    assert!(
        !t.reach(&t.outside, p1.ip),
        "{v}: new inbound stays host policy"
    );
    assert!(!t.reach(&p3.ns, "10.52.0.2"), "{v}: pod3 still closed");
    let rules = t.node.exec(&["iptables-nft", "-S", "CNI-FORWARD"]);
    assert!(
        rules.contains("rcni-fw:fwnet:ctr0:eth0:open:-:in:10.50.0.2"),
        "{rules}"
    );
    assert!(
        !t.nft_ruleset().contains("rcni-firewall"),
        "no nftables table on the iptables path"
    );

    t.add(bin.path(), v, 2, &open);
    assert!(t.reach(&p3.ns, "10.52.0.2"), "{v}: pod3 -> outside");
    assert!(t.reach(&p3.ns, p1.ip), "{v}: pod3 -> pod1");
    if testutil::has_check(v) {
        t.check(bin.path(), v, 0, &open).ok();
    }

    t.del(bin.path(), v, 0, &open);
    assert!(!t.reach(&p1.ns, "10.52.0.2"), "{v}: pod1 closed after DEL");
    assert!(t.reach(&p3.ns, "10.52.0.2"), "{v}: pod3 untouched by DEL");
    let rules = t.node.exec(&["iptables-nft", "-S", "CNI-FORWARD"]);
    assert!(!rules.contains(":ctr0:"), "{rules}");
    assert!(rules.contains(":ctr2:"), "{rules}");
    if testutil::has_check(v) {
        assert_ne!(t.check(bin.path(), v, 0, &open).code, 0, "CHECK after DEL");
    }
    // Second DEL, and containerd's DEL without netns and prevResult.
    t.del(bin.path(), v, 0, &open);
    let bare = conf(v, json!({}), None);
    t.run(bin.path(), &Call::new("DEL", &cid(0), Path::new(""), &bare))
        .ok();
    t.del(bin.path(), v, 2, &open);
    assert!(!t.reach(&p3.ns, "10.52.0.2"), "{v}: pod3 closed");
});

/// `backend: iptables` on a host using iptables-legacy with policy DROP.
#[test]
fn iptables_legacy_explicit_backend() {
    let bin = rcni();
    let t = Topo::new();
    t.node.exec(&["iptables-legacy", "-P", "FORWARD", "DROP"]);
    let ipt = json!({"backend": "iptables"});
    for v in ["0.3.1", "1.1.0"] {
        assert!(
            !t.reach(&t.pods[0].ns, "10.52.0.2"),
            "{v}: closed before ADD"
        );
        t.add(bin.path(), v, 0, &ipt);
        assert!(t.reach(&t.pods[0].ns, "10.52.0.2"), "{v}: pod1 -> outside");
        let rules = t.node.exec(&["iptables-legacy", "-S", "CNI-FORWARD"]);
        assert!(rules.contains("rcni-fw:fwnet:ctr0:eth0"), "{rules}");
        assert!(!t
            .node
            .exec(&["nft", "list", "tables"])
            .contains("ip filter"));
        t.del(bin.path(), v, 0, &ipt);
        t.del(bin.path(), v, 0, &ipt);
        assert!(
            !t.reach(&t.pods[0].ns, "10.52.0.2"),
            "{v}: closed after DEL"
        );
    }
}

/// ingressPolicy on the nftables backend (the default on a host without
/// iptables): `same-bridge` drops traffic between two isolating bridges
/// and nothing else; `isolated` also drops pod-to-pod on one bridge.
#[test]
fn nftables_isolation_policies() {
    let bin = rcni();
    let t = Topo::new();
    for v in ["0.3.0", "0.4.0", "1.0.0", "1.1.0"] {
        let same = json!({"ingressPolicy": "same-bridge"});
        t.add(bin.path(), v, 0, &same);
        // Only bra isolates so far: pod3 (brb) still reaches pod1.
        assert!(
            t.reach(&t.pods[2].ns, t.pods[0].ip),
            "{v}: brb not isolating yet"
        );
        t.add(bin.path(), v, 2, &same);
        assert!(
            !t.reach(&t.pods[2].ns, t.pods[0].ip),
            "{v}: brb -> bra dropped"
        );
        assert!(
            !t.reach(&t.pods[0].ns, t.pods[2].ip),
            "{v}: bra -> brb dropped"
        );
        assert!(
            t.reach(&t.pods[1].ns, t.pods[0].ip),
            "{v}: same bridge open"
        );
        assert!(t.reach(&t.outside, t.pods[0].ip), "{v}: uplink -> pod open");
        assert!(
            t.reach(&t.pods[0].ns, "10.52.0.2"),
            "{v}: pod -> uplink open"
        );
        if testutil::has_check(v) {
            t.check(bin.path(), v, 0, &same).ok();
        }
        let rs = t.nft_ruleset();
        assert!(rs.contains("rcni-fw-iso:bra:from") && rs.contains("rcni-fw-iso:brb:to"));

        // isolated on bra: pod2 -> pod1 (bridged) is dropped too.
        let iso = json!({"ingressPolicy": "isolated"});
        t.add(bin.path(), v, 1, &iso);
        assert!(
            !t.reach(&t.pods[1].ns, t.pods[0].ip),
            "{v}: same bridge isolated"
        );
        assert!(t.reach(&t.outside, t.pods[0].ip), "{v}: uplink still open");

        // Removing the last isolating pod of a bridge removes its rules.
        t.del(bin.path(), v, 1, &iso);
        assert!(t.reach(&t.pods[1].ns, t.pods[0].ip), "{v}: self drop gone");
        assert!(
            !t.reach(&t.pods[2].ns, t.pods[0].ip),
            "{v}: still same-bridge"
        );
        t.del(bin.path(), v, 2, &same);
        assert!(
            t.reach(&t.pods[2].ns, t.pods[0].ip),
            "{v}: brb no longer isolating"
        );
        t.del(bin.path(), v, 0, &same);
        let rs = t.nft_ruleset();
        assert!(
            !rs.contains("rcni-fw:") && !rs.contains("rcni-fw-iso:"),
            "{rs}"
        );
    }
}

/// The same policies on the iptables path (FORWARD policy DROP).
#[test]
fn iptables_isolation_policies() {
    let bin = rcni();
    let t = Topo::new();
    t.node.exec(&["iptables-nft", "-P", "FORWARD", "DROP"]);
    let v = "1.0.0";
    let same = json!({"ingressPolicy": "same-bridge"});
    for i in 0..3 {
        t.add(bin.path(), v, i, &same);
    }
    assert!(!t.reach(&t.pods[2].ns, t.pods[0].ip), "brb -> bra dropped");
    assert!(!t.reach(&t.pods[0].ns, t.pods[2].ip), "bra -> brb dropped");
    assert!(t.reach(&t.pods[1].ns, t.pods[0].ip), "same bridge open");
    assert!(t.reach(&t.pods[0].ns, "10.52.0.2"), "pod -> uplink open");
    t.check(bin.path(), v, 0, &same).ok();
    let iso = json!({"ingressPolicy": "isolated"});
    t.add(bin.path(), v, 1, &iso);
    assert!(
        !t.reach(&t.pods[1].ns, t.pods[0].ip),
        "same bridge isolated"
    );
    assert!(t.reach(&t.pods[1].ns, "10.52.0.2"), "pod2 -> uplink open");
    t.check(bin.path(), v, 1, &iso).ok();
    for i in 0..3 {
        t.del(bin.path(), v, i, &same);
    }
    assert!(
        !t.reach(&t.pods[0].ns, "10.52.0.2"),
        "closed again after DEL"
    );
}

/// GC removes the rules of attachments not listed as valid, on both
/// backends, and keeps the listed ones (and other networks' rules).
#[test]
fn gc_removes_stale_attachments() {
    let bin = rcni();
    let t = Topo::new();
    let v = "1.1.0";
    // nftables backend.
    let nft = json!({"backend": "nftables"});
    for i in 0..3 {
        t.add(bin.path(), v, i, &nft);
    }
    let other = conf(v, json!({}), Some(prev(v, &t.pods[1]))).replace("\"fwnet\"", "\"othernet\"");
    t.run(
        bin.path(),
        &Call::new("ADD", "ctr9", &t.pods[1].ns.path(), &other),
    )
    .ok();
    let gc = |extra: &Value| {
        let mut c: Value = serde_json::from_str(&conf(v, extra.clone(), None)).expect("json");
        c["cni.dev/valid-attachments"] = json!([{"containerID": "ctr1", "ifname": "eth0"}]);
        t.run(
            bin.path(),
            &Call::new("GC", "", Path::new(""), &c.to_string()),
        )
        .ok();
    };
    gc(&nft);
    let rs = t.nft_ruleset();
    assert!(!rs.contains(":ctr0:") && !rs.contains(":ctr2:"), "{rs}");
    assert!(rs.contains("rcni-fw:fwnet:ctr1:"), "{rs}");
    assert!(
        rs.contains("rcni-fw:othernet:ctr9:"),
        "other network kept: {rs}"
    );

    // iptables path: stale pod loses its traffic.
    t.node.exec(&["iptables-nft", "-P", "FORWARD", "DROP"]);
    let auto = json!({});
    t.add(bin.path(), v, 0, &auto);
    t.add(bin.path(), v, 1, &auto);
    let out = "10.52.0.2";
    assert!(t.reach(&t.pods[0].ns, out) && t.reach(&t.pods[1].ns, out));
    gc(&auto);
    assert!(!t.reach(&t.pods[0].ns, out), "stale pod1 closed by GC");
    assert!(t.reach(&t.pods[1].ns, out), "valid pod2 kept");
    let rules = t.node.exec(&["iptables-nft", "-S", "CNI-FORWARD"]);
    assert!(
        !rules.contains(":ctr0:") && rules.contains(":ctr1:"),
        "{rules}"
    );
}

/// CHECK: passes after ADD, fails when a rule was removed behind the
/// plugin's back or prevResult names another address.
#[test]
fn check_detects_missing_rules() {
    let bin = rcni();
    let t = Topo::new();
    let nft = json!({"backend": "nftables"});
    for v in ["0.4.0", "1.0.0", "1.1.0"] {
        t.add(bin.path(), v, 0, &nft);
        t.check(bin.path(), v, 0, &nft).ok();
        // prevResult of another pod: its rules are not there.
        let c = conf(v, nft.clone(), Some(prev(v, &t.pods[2])));
        let o = t.run(
            bin.path(),
            &Call::new("CHECK", &cid(0), &t.pods[0].ns.path(), &c),
        );
        assert_ne!(o.code, 0, "{v}: CHECK with other addresses");
        // Delete one rule by hand.
        let listing = t.node.exec(&[
            "nft",
            "-a",
            "list",
            "chain",
            "inet",
            "rcni-firewall",
            "forward",
        ]);
        let handle = listing
            .lines()
            .find(|l| l.contains("rcni-fw:fwnet:ctr0:eth0:open:-:out:"))
            .and_then(|l| l.rsplit("# handle ").next())
            .map(|h| h.trim().to_string())
            .expect("rule with handle");
        t.node.exec(&[
            "nft",
            "delete",
            "rule",
            "inet",
            "rcni-firewall",
            "forward",
            "handle",
            &handle,
        ]);
        let o = t.check(bin.path(), v, 0, &nft);
        assert_ne!(o.code, 0, "{v}: CHECK after a rule vanished");
        assert!(o.stdout.contains("not found"), "{}", o.stdout);
        t.del(bin.path(), v, 0, &nft);
        assert!(
            !t.nft_ruleset().contains("rcni-fw:"),
            "{v}: DEL removed the rest"
        );
    }
}

/// Malformed configurations fail with the right code and change nothing.
#[test]
fn malformed_config_leaves_nothing() {
    let bin = rcni();
    let t = Topo::new();
    let p = &t.pods[0];
    let run = |c: &str| t.run(bin.path(), &Call::new("ADD", "ctr0", &p.ns.path(), c));
    let v = "1.0.0";
    let pr = Some(prev(v, p));
    for (extra, code) in [
        (json!({"ingressPolicy": "closed"}), 7),
        (json!({"backend": "firewalld"}), 7),
        (json!({"backend": "pf"}), 7),
        (json!({"backend": 5}), 7),
        (json!({"iptablesAdminChainName": "bad name"}), 7),
    ] {
        let o = run(&conf(v, extra.clone(), pr.clone()));
        assert_eq!(o.err_code(), code, "{extra}: {}", o.stdout);
    }
    // No prevResult.
    assert_eq!(run(&conf(v, json!({}), None)).err_code(), 7);
    // An isolating policy without interfaces in prevResult (0.2.0 shape).
    let c = conf(
        "0.2.0",
        json!({"ingressPolicy": "same-bridge"}),
        Some(prev("0.2.0", p)),
    );
    assert_eq!(run(&c).err_code(), 7);
    // Not JSON at all.
    assert_eq!(run("{not json").err_code(), 6);
    // The DEL a runtime sends after such a refused ADD succeeds: it looks
    // for rules of this attachment everywhere (there are none).
    for extra in [
        json!({"ingressPolicy": "closed"}),
        json!({"backend": "pf"}),
        json!({"iptablesAdminChainName": "a-chain-name-longer-than-28-chars"}),
    ] {
        let bad = conf(v, extra.clone(), None);
        let o = t.run(bin.path(), &Call::new("DEL", "ctr0", &p.ns.path(), &bad));
        assert_eq!(o.code, 0, "{extra}: {}", o.stdout);
    }
    // A config that does not parse still fails DEL.
    let bad = conf(v, json!({"backend": 5}), None);
    let o = t.run(bin.path(), &Call::new("DEL", "ctr0", &p.ns.path(), &bad));
    assert_eq!(o.err_code(), 7);

    assert!(!t.nft_ruleset().contains("rcni"), "no table created");
    let ipt = t.node.exec(&["iptables-nft", "-S"]);
    assert!(!ipt.contains("CNI-"), "{ipt}");
    assert!(!t
        .node
        .exec(&["cat", "/proc/net/ip_tables_names"])
        .contains("filter"));
}

/// STATUS answers ready (1.1.0) on a host where nftables works.
#[test]
fn status_ok() {
    let bin = rcni();
    let node = TestNs::new("fws");
    for extra in [
        json!({}),
        json!({"backend": "nftables"}),
        json!({"backend": "iptables"}),
    ] {
        let c = conf("1.1.0", extra, None);
        run_plugin(
            bin.path(),
            "firewall",
            &Call::new("STATUS", "", Path::new(""), &c),
            Some(node.ns()),
        )
        .ok();
    }
}

/// Concurrent ADDs and DELs on the nftables backend: the generation check
/// serialises them; every attachment ends up with exactly its two rules,
/// and after the DELs none is left.
#[test]
fn nftables_concurrent_calls() {
    let bin = rcni();
    let t = Topo::new();
    let v = "1.0.0";
    let nft = json!({"backend": "nftables", "ingressPolicy": "same-bridge"});
    let p = &t.pods[0];
    let ids: Vec<String> = (0..8).map(|i| format!("par{i}")).collect();
    let call = |cmd: &str, id: &str| {
        let c = conf(v, nft.clone(), Some(prev(v, p)));
        Call::new(cmd, id, &p.ns.path(), &c)
    };
    std::thread::scope(|s| {
        for id in &ids {
            let c = call("ADD", id);
            let (bin, t) = (bin.path(), &t);
            s.spawn(move || t.run(bin, &c).ok());
        }
    });
    let rs = t.nft_ruleset();
    for id in &ids {
        assert_eq!(
            rs.matches(&format!("rcni-fw:fwnet:{id}:")).count(),
            2,
            "{rs}"
        );
    }
    assert_eq!(rs.matches("rcni-fw-iso:bra:from").count(), 1, "{rs}");
    std::thread::scope(|s| {
        for id in &ids {
            let c = call("DEL", id);
            let (bin, t) = (bin.path(), &t);
            s.spawn(move || t.run(bin, &c).ok());
        }
    });
    let rs = t.nft_ruleset();
    assert!(
        !rs.contains("rcni-fw:") && !rs.contains("rcni-fw-iso:"),
        "{rs}"
    );
}

/// Concurrent ADDs and DELs on the iptables backend: each call reads the
/// table and applies its changes with one `iptables-restore`; a call whose
/// listing went stale (a chain appeared, a rule went) retries. Every
/// attachment ends with exactly its two rules, the shared chains and
/// jumps exist once, and after the DELs no per-pod rule is left.
#[test]
fn iptables_concurrent_calls() {
    let bin = rcni();
    let t = Topo::new();
    t.node.exec(&["iptables-nft", "-P", "FORWARD", "DROP"]);
    let v = "1.0.0";
    let ipt = json!({"backend": "iptables", "ingressPolicy": "same-bridge"});
    let p = &t.pods[0];
    let ids: Vec<String> = (0..8).map(|i| format!("ipar{i}")).collect();
    let call = |cmd: &str, id: &str| {
        let c = conf(v, ipt.clone(), Some(prev(v, p)));
        Call::new(cmd, id, &p.ns.path(), &c)
    };
    std::thread::scope(|s| {
        for id in &ids {
            let c = call("ADD", id);
            let (bin, t) = (bin.path(), &t);
            s.spawn(move || {
                let out = t.run(bin, &c);
                assert_eq!(out.code, 0, "{}", out.stdout);
            });
        }
    });
    let rules = t.node.exec(&["iptables-nft", "-S"]);
    for id in &ids {
        assert_eq!(
            rules.matches(&format!("rcni-fw:fwnet:{id}:")).count(),
            2,
            "{rules}"
        );
    }
    assert_eq!(rules.matches("-j CNI-FORWARD").count(), 1, "{rules}");
    assert_eq!(rules.matches("-j CNI-ADMIN").count(), 1, "{rules}");
    assert_eq!(rules.matches("-A FORWARD").count(), 2, "{rules}");
    std::thread::scope(|s| {
        for id in &ids {
            let c = call("DEL", id);
            let (bin, t) = (bin.path(), &t);
            s.spawn(move || {
                let out = t.run(bin, &c);
                assert_eq!(out.code, 0, "{}", out.stdout);
            });
        }
    });
    let rules = t.node.exec(&["iptables-nft", "-S"]);
    assert!(!rules.contains("rcni-fw:"), "{rules}");
}
