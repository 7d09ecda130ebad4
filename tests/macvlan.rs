//! macvlan in real namespaces: a node namespace whose master (a veth) leads
//! to a "switch" namespace with a bridge, pods on the master in every spec
//! version, real traffic per mode, CHECK/DEL semantics, refusals that leave
//! nothing behind, and a side-by-side run with the reference binary.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::path::Path;
use std::time::{Duration, Instant};
use testutil::{
    merge_removing_nulls, per_version, tcp_exchange, Call, Outcome, Outside, PluginEnv, TestNs,
};

const REFERENCE: &str = "/usr/lib/cni/macvlan";

/// macvlan in a node namespace whose master (a veth) leads to a "switch"
/// namespace.
struct Env {
    kit: PluginEnv,
    switch: TestNs,
    master: String,
}

impl Deref for Env {
    type Target = PluginEnv;
    fn deref(&self) -> &PluginEnv {
        &self.kit
    }
}

impl Env {
    /// The node's master `mv…` is one end of a veth; the other end is a
    /// port of bridge `br0` in the switch namespace.
    fn new(tag: &str) -> Env {
        let kit = testutil::plugin_env!("macvlan", tag);
        let switch = Outside::new(&kit.node, "msw", "mv", "sw0");
        switch
            .ns
            .exec(&["ip", "link", "add", "br0", "type", "bridge"]);
        switch
            .ns
            .exec(&["ip", "link", "set", "sw0", "master", "br0"]);
        switch.ns.exec(&["ip", "link", "set", "br0", "up"]);
        Env {
            kit,
            switch: switch.ns,
            master: switch.node_end,
        }
    }

    fn conf(&self, v: &str, subnet: &str, extra: Value) -> Value {
        let mut c = self.base_conf(v);
        c["master"] = json!(self.master);
        c["ipam"] = self.host_local(subnet);
        c["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}]);
        merge_removing_nulls(&mut c, &extra);
        c
    }

    /// The Debian reference plugin, with the reference host-local.
    fn reference(&self, cmd: &str, id: &str, pod: &Path, conf: &Value) -> Outcome {
        self.kit
            .reference("macvlan", Call::new(cmd, id, pod, &conf.to_string()))
    }

    fn master_index(&self) -> u64 {
        self.node.ip_json(&["link", "show", "dev", &self.master])[0]["ifindex"]
            .as_u64()
            .expect("master ifindex")
    }
}

/// `ip -d link show IFNAME` in `ns`.
fn link(ns: &TestNs, ifname: &str) -> Value {
    ns.ip_json(&["-d", "link", "show", "dev", ifname])[0].clone()
}

fn mode(l: &Value) -> &str {
    assert_eq!(l["linkinfo"]["info_kind"], "macvlan", "{l}");
    l["linkinfo"]["info_data"]["mode"].as_str().unwrap_or("")
}

/// Global addresses on `ifname` as "addr/prefix".
fn global_addrs(ns: &TestNs, ifname: &str) -> Vec<String> {
    let a = ns.ip_json(&["addr", "show", "dev", ifname]);
    a[0]["addr_info"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter(|i| i["scope"] == "global")
                .map(|i| format!("{}/{}", i["local"].as_str().unwrap_or(""), i["prefixlen"]))
                .collect()
        })
        .unwrap_or_default()
}

fn routes(ns: &TestNs) -> Vec<(String, String, String)> {
    ns.ip_json(&["route", "show"])
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["dst"].as_str().unwrap_or("").to_string(),
                        r["gateway"].as_str().unwrap_or("").to_string(),
                        r["dev"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn ip_of(r: &Value) -> String {
    r["ips"][0]["address"]
        .as_str()
        .expect("ips[0].address")
        .split('/')
        .next()
        .expect("address")
        .to_string()
}

/// True when a TCP connection from `from` to a listener in `to` cannot be
/// made (refused would mean the packets arrived: that counts as reachable).
fn tcp_blocked(from: &TestNs, to: &TestNs, addr: &str, port: u16) -> bool {
    let ip: std::net::IpAddr = addr.parse().expect("address");
    let _listener = to.run(|| TcpListener::bind(SocketAddr::new(ip, port)).expect("bind"));
    let target = SocketAddr::new(ip, port);
    from.run(
        || match TcpStream::connect_timeout(&target, Duration::from_millis(1500)) {
            Ok(_) => false,
            Err(e) => {
                assert_ne!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
                true
            }
        },
    )
}

fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

per_version!(add_check_del_del_every_version_with_pod_to_pod_tcp, |v| {
    let env = Env::new("mva");
    let master_index = env.master_index();
    let a = TestNs::new("mpa");
    let b = TestNs::new("mpb");
    let conf = env.conf(
        v,
        "10.60.0.0/24",
        json!({"mtu": 1400, "dns": {"nameservers": ["10.60.0.53"]}}),
    );
    let ra = env.call("ADD", "ctr-a", &a.path(), &conf).ok();
    let rb = env.call("ADD", "ctr-b", &b.path(), &conf).ok();
    assert_eq!(ra["cniVersion"], v);
    assert_eq!(ra["dns"]["nameservers"][0], "10.60.0.53", "{ra}");
    for (pod, r) in [(&a, &ra), (&b, &rb)] {
        let l = link(pod, "eth0");
        assert_eq!(mode(&l), "bridge");
        assert_eq!(l["mtu"], 1400);
        assert_eq!(l["link_index"], master_index, "{l}");
        assert!(l["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP")));
        let addrs = global_addrs(pod, "eth0");
        assert_eq!(addrs.len(), 1, "{addrs:?}");
        assert!(addrs[0].starts_with("10.60.0.") && addrs[0].ends_with("/24"));
        assert!(routes(pod).contains(&("default".into(), "10.60.0.1".into(), "eth0".into())));
        if testutil::is_legacy(v) {
            assert_eq!(r["ip4"]["ip"], addrs[0].as_str(), "{r}");
        } else {
            let ifs = r["interfaces"].as_array().expect("interfaces");
            assert_eq!(ifs.len(), 1, "{r}");
            assert_eq!(ifs[0]["name"], "eth0");
            assert_eq!(ifs[0]["sandbox"], pod.path().display().to_string());
            assert_eq!(ifs[0]["mac"], l["address"], "{r}");
            assert_eq!(r["ips"][0]["interface"], 0);
            assert_eq!(r["ips"][0]["address"], addrs[0].as_str());
            assert_eq!(r["ips"][0]["gateway"], "10.60.0.1");
            assert_eq!(r["routes"][0]["dst"], "0.0.0.0/0");
        }
    }
    assert_eq!(env.node.link_names().len(), 2, "nothing new on the node");
    let (ia, ib) = if testutil::is_legacy(v) {
        let s = |r: &Value| {
            r["ip4"]["ip"].as_str().expect("ip4")[..]
                .split('/')
                .next()
                .expect("a")
                .to_string()
        };
        (s(&ra), s(&rb))
    } else {
        (ip_of(&ra), ip_of(&rb))
    };
    assert_eq!(tcp_exchange(&a, &b, &ib, 7300), ia);

    if testutil::has_check(v) {
        env.call("CHECK", "ctr-a", &a.path(), &with_prev(&conf, &ra))
            .ok();
        // CHECK sees a mode or MAC that differs from the kernel's.
        let mut c = with_prev(&conf, &ra);
        c["mode"] = json!("private");
        assert_ne!(env.call("CHECK", "ctr-a", &a.path(), &c).code, 0);
        let mut prev = ra.clone();
        prev["interfaces"][0]["mac"] = json!("02:00:00:00:00:01");
        assert_ne!(
            env.call("CHECK", "ctr-a", &a.path(), &with_prev(&conf, &prev))
                .code,
            0
        );
        // CHECK notices a missing address.
        b.exec(&["ip", "addr", "flush", "dev", "eth0", "scope", "global"]);
        assert_ne!(
            env.call("CHECK", "ctr-b", &b.path(), &with_prev(&conf, &rb))
                .code,
            0
        );
    }
    for (id, pod) in [("ctr-a", &a), ("ctr-b", &b)] {
        env.call("DEL", id, &pod.path(), &conf).ok();
        assert!(!pod.link_names().contains(&"eth0".to_string()));
        env.call("DEL", id, &pod.path(), &conf).ok();
        env.call_with(Call::new("DEL", id, &pod.path(), &conf.to_string()).netns(""))
            .ok();
    }
    assert!(env.allocated().is_empty(), "{:?}", env.allocated());
    // DEL for a namespace that is gone.
    let gone = {
        let p = TestNs::new("mpg");
        p.path()
    };
    env.call("DEL", "ctr-g", &gone, &conf).ok();
});

#[test]
fn modes_private_isolates_vepa_hairpins_passthru_takes_the_master() {
    let env = Env::new("mvm");
    env.switch
        .exec(&["ip", "addr", "add", "10.61.0.254/24", "dev", "br0"]);
    for m in ["private", "vepa", "passthru", "bridge"] {
        let p = TestNs::new("mpm");
        let conf = env.conf("1.1.0", "10.61.0.0/24", json!({"mode": m}));
        let r = env.call("ADD", "ctr-m", &p.path(), &conf).ok();
        assert_eq!(mode(&link(&p, "eth0")), m);
        env.call("CHECK", "ctr-m", &p.path(), &with_prev(&conf, &r))
            .ok();
        // Every mode reaches the segment beyond the master.
        assert_eq!(
            tcp_exchange(&p, &env.switch, "10.61.0.254", 7310),
            ip_of(&r)
        );
        env.call("DEL", "ctr-m", &p.path(), &conf).ok();
    }

    // private: two pods on one master cannot reach each other, even when
    // the switch would hairpin.
    let conf = env.conf("1.1.0", "10.61.0.0/24", json!({"mode": "private"}));
    let a = TestNs::new("mpa");
    let b = TestNs::new("mpb");
    env.call("ADD", "ctr-a", &a.path(), &conf).ok();
    let rb = env.call("ADD", "ctr-b", &b.path(), &conf).ok();
    assert!(tcp_blocked(&a, &b, &ip_of(&rb), 7311));
    env.call("DEL", "ctr-a", &a.path(), &conf).ok();
    env.call("DEL", "ctr-b", &b.path(), &conf).ok();

    // vepa: pod-to-pod frames leave through the master; they come back
    // only when the switch port hairpins.
    let conf = env.conf("1.1.0", "10.61.0.0/24", json!({"mode": "vepa"}));
    env.call("ADD", "ctr-a", &a.path(), &conf).ok();
    let rb = env.call("ADD", "ctr-b", &b.path(), &conf).ok();
    assert!(tcp_blocked(&a, &b, &ip_of(&rb), 7312));
    env.switch.exec(&[
        "ip",
        "link",
        "set",
        "sw0",
        "type",
        "bridge_slave",
        "hairpin",
        "on",
    ]);
    // The failed attempt left an incomplete neighbour entry; start over.
    a.exec(&["ip", "neigh", "flush", "all"]);
    let ia = global_addrs(&a, "eth0")[0]
        .split('/')
        .next()
        .expect("a")
        .to_string();
    assert_eq!(tcp_exchange(&a, &b, &ip_of(&rb), 7313), ia);
    env.call("DEL", "ctr-a", &a.path(), &conf).ok();
    env.call("DEL", "ctr-b", &b.path(), &conf).ok();
    assert!(env.allocated().is_empty());
}

#[test]
fn mac_from_config_cni_args_args_and_runtime_config_last_wins() {
    let env = Env::new("mvc");
    let p = TestNs::new("mpc");
    let base = env.conf("1.0.0", "10.62.0.0/24", json!({"mac": "02:aa:00:00:00:01"}));
    let mut with_args = base.clone();
    with_args["args"] = json!({"cni": {"mac": "02:aa:00:00:00:03"}});
    let mut with_rt = with_args.clone();
    with_rt["runtimeConfig"] = json!({"mac": "02:aa:00:00:00:04"});
    let cases = [
        (&base, "", "02:aa:00:00:00:01"),
        (
            &base,
            "IgnoreUnknown=1;MAC=02:aa:00:00:00:02",
            "02:aa:00:00:00:02",
        ),
        (
            &with_args,
            "IgnoreUnknown=1;MAC=02:aa:00:00:00:02",
            "02:aa:00:00:00:03",
        ),
        (
            &with_rt,
            "IgnoreUnknown=1;MAC=02:aa:00:00:00:02",
            "02:aa:00:00:00:04",
        ),
    ];
    for (conf, cni_args, want) in cases {
        let r = env
            .call_with(Call::new("ADD", "ctr-c", &p.path(), &conf.to_string()).args(cni_args))
            .ok();
        assert_eq!(r["interfaces"][0]["mac"], want, "{cni_args}: {r}");
        assert_eq!(link(&p, "eth0")["address"], want);
        env.call_with(
            Call::new(
                "CHECK",
                "ctr-c",
                &p.path(),
                &with_prev(conf, &r).to_string(),
            )
            .args(cni_args),
        )
        .ok();
        env.call("DEL", "ctr-c", &p.path(), conf).ok();
    }
    // A malformed MAC is a config error; nothing is made.
    let mut bad = base.clone();
    bad["mac"] = json!("02:zz:00:00:00:01");
    assert_eq!(env.call("ADD", "ctr-c", &p.path(), &bad).err_code(), 7);
    assert!(!p.link_names().contains(&"eth0".to_string()));
    assert!(env.allocated().is_empty());
}

#[test]
fn bad_mtu_and_missing_master_are_refused_leaving_nothing() {
    let env = Env::new("mvr");
    let p = TestNs::new("mpr");
    let refused = |conf: Value, what: &str| {
        let out = env.call("ADD", "ctr-r", &p.path(), &conf);
        assert_eq!(out.err_code(), 7, "{what}: {}", out.stdout);
        assert_eq!(p.link_names(), vec!["lo".to_string()], "{what}");
        assert!(env.allocated().is_empty(), "{what}");
        out.json()["msg"].as_str().unwrap_or("").to_string()
    };
    let msg = refused(
        env.conf("1.0.0", "10.63.0.0/24", json!({"mtu": 9000})),
        "mtu above the master's",
    );
    assert!(msg.contains("master MTU(1500)"), "{msg}");
    refused(
        env.conf("1.0.0", "10.63.0.0/24", json!({"mtu": -1})),
        "negative mtu",
    );
    let msg = refused(
        env.conf("1.0.0", "10.63.0.0/24", json!({"master": "nosuch0"})),
        "missing master",
    );
    assert!(msg.contains("nosuch0"), "{msg}");
    refused(
        env.conf("1.0.0", "10.63.0.0/24", json!({"mode": "sideways"})),
        "unknown mode",
    );
    // Without a master and without a default route there is nothing to use.
    let msg = refused(
        env.conf("1.0.0", "10.63.0.0/24", json!({"master": null})),
        "no default route",
    );
    assert!(msg.contains("default route"), "{msg}");
    // The master's own MTU is fine.
    let conf = env.conf("1.0.0", "10.63.0.0/24", json!({"mtu": 1500}));
    env.call("ADD", "ctr-r", &p.path(), &conf).ok();
    assert_eq!(link(&p, "eth0")["mtu"], 1500);
    env.call("DEL", "ctr-r", &p.path(), &conf).ok();
}

#[test]
fn default_master_is_the_default_route_interface() {
    let env = Env::new("mvd");
    env.node
        .exec(&["ip", "addr", "add", "10.64.0.1/24", "dev", &env.master]);
    env.node
        .exec(&["ip", "route", "add", "default", "via", "10.64.0.254"]);
    let p = TestNs::new("mpd");
    let conf = env.conf("1.0.0", "10.64.0.0/24", json!({"master": null}));
    let r = env.call("ADD", "ctr-d", &p.path(), &conf).ok();
    assert_eq!(link(&p, "eth0")["link_index"], env.master_index());
    env.call("CHECK", "ctr-d", &p.path(), &with_prev(&conf, &r))
        .ok();
    env.call("DEL", "ctr-d", &p.path(), &conf).ok();
}

#[test]
fn link_in_container_uses_a_master_inside_the_pod() {
    let env = Env::new("mvl");
    let p = TestNs::new("mpl");
    p.exec(&[
        "ip", "link", "add", "cm0", "type", "veth", "peer", "name", "cm0p",
    ]);
    p.exec(&["ip", "link", "set", "cm0", "up"]);
    p.exec(&["ip", "link", "set", "cm0p", "up"]);
    let conf = env.conf(
        "1.1.0",
        "10.65.0.0/24",
        json!({"master": "cm0", "linkInContainer": true}),
    );
    let r = env.call("ADD", "ctr-l", &p.path(), &conf).ok();
    let l = link(&p, "eth0");
    assert_eq!(mode(&l), "bridge");
    assert_eq!(l["link"], "cm0", "parent in the same namespace: {l}");
    assert!(l["link_netnsid"].is_null(), "{l}");
    env.call("CHECK", "ctr-l", &p.path(), &with_prev(&conf, &r))
        .ok();
    // The same prevResult against the node's master of another name fails.
    let mut elsewhere = with_prev(&conf, &r);
    elsewhere["master"] = json!(env.master);
    elsewhere["linkInContainer"] = json!(false);
    assert_ne!(env.call("CHECK", "ctr-l", &p.path(), &elsewhere).code, 0);
    env.call("DEL", "ctr-l", &p.path(), &conf).ok();
    env.call("DEL", "ctr-l", &p.path(), &conf).ok();
    assert!(p.link_names().contains(&"cm0".to_string()));
    assert!(!p.link_names().contains(&"eth0".to_string()));
    // The node's master is not looked for in the pod.
    let mut node_master = conf.clone();
    node_master["master"] = json!(env.master);
    assert_eq!(
        env.call("ADD", "ctr-l", &p.path(), &node_master).err_code(),
        7
    );
    assert!(env.allocated().is_empty());
}

#[test]
fn without_ipam_the_link_comes_up_without_addresses() {
    let env = Env::new("mvn");
    let p = TestNs::new("mpn");
    let conf = env.conf("1.1.0", "unused", json!({"ipam": null}));
    let r = env.call("ADD", "ctr-n", &p.path(), &conf).ok();
    assert_eq!(r["interfaces"][0]["name"], "eth0", "{r}");
    assert!(r.get("ips").is_none(), "{r}");
    let l = link(&p, "eth0");
    assert!(l["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP")));
    assert!(global_addrs(&p, "eth0").is_empty());
    env.call("CHECK", "ctr-n", &p.path(), &with_prev(&conf, &r))
        .ok();
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    env.call("GC", "", &p.path(), &gc).ok();
    env.call("STATUS", "", &p.path(), &conf).ok();
    env.call("DEL", "ctr-n", &p.path(), &conf).ok();
    env.call("DEL", "ctr-n", &p.path(), &conf).ok();
    assert!(!p.link_names().contains(&"eth0".to_string()));
}

#[test]
fn gc_and_status_go_to_ipam() {
    let env = Env::new("mvg");
    let p = TestNs::new("mpg");
    let conf = env.conf("1.1.0", "10.66.0.0/24", json!({}));
    env.call("ADD", "ctr-g", &p.path(), &conf).ok();
    env.call("STATUS", "", &p.path(), &conf).ok();
    let mut keep = conf.clone();
    keep["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-g", "ifname": "eth0"}]);
    env.call("GC", "", &p.path(), &keep).ok();
    assert_eq!(env.allocated().len(), 1);
    let mut drop_all = conf.clone();
    drop_all["cni.dev/valid-attachments"] = json!([]);
    env.call("GC", "", &p.path(), &drop_all).ok();
    assert!(env.allocated().is_empty());
    env.call("DEL", "ctr-g", &p.path(), &conf).ok();
}

#[test]
fn failures_after_creation_leave_nothing() {
    let env = Env::new("mve");
    let conf = env.conf("1.0.0", "10.67.0.0/24", json!({}));
    // The interface name is taken in the pod.
    let p = TestNs::new("mpe");
    p.exec(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
    ]);
    assert_ne!(env.call("ADD", "ctr-e", &p.path(), &conf).code, 0);
    assert!(link(&p, "eth0")["linkinfo"]["info_kind"] == "veth");
    assert!(env.allocated().is_empty());
    // A failure after IPAM and configuration.
    let q = TestNs::new("mpf");
    let mut call = Call::new("ADD", "ctr-f", &q.path(), &conf.to_string());
    call.env
        .push(("RCNI_INJECT_FAILURE".into(), "after-setup".into()));
    assert_ne!(env.call_with(call).code, 0);
    assert_eq!(q.link_names(), vec!["lo".to_string()]);
    assert!(env.allocated().is_empty());
    // IPAM itself failing (an exhausted /30) removes the link.
    let tiny = env.conf("1.0.0", "10.67.1.0/30", json!({}));
    let r1 = TestNs::new("mph");
    env.call("ADD", "ctr-h", &r1.path(), &tiny).ok();
    let out = env.call("ADD", "ctr-i", &q.path(), &tiny);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert_eq!(q.link_names(), vec!["lo".to_string()]);
    env.call("DEL", "ctr-h", &r1.path(), &tiny).ok();
    assert!(env.allocated().is_empty());
}

/// A new pod that takes over an address announces it: a neighbour that
/// talked to the previous holder learns the new MAC at once instead of
/// sending to the old one until its entry goes stale.
#[test]
fn gratuitous_arp_updates_neighbours_when_an_address_moves() {
    let env = Env::new("mvp");
    let conf = env.conf("1.0.0", "10.68.0.0/24", json!({}));
    let a = TestNs::new("mpa");
    let b = TestNs::new("mpb");
    let c = TestNs::new("mpc");
    let ra = env.call("ADD", "ctr-a", &a.path(), &conf).ok();
    let moved = "10.68.0.50";
    let args = format!("IP={moved}");
    let rb = env
        .call_with(Call::new("ADD", "ctr-b", &b.path(), &conf.to_string()).args(&args))
        .ok();
    assert_eq!(tcp_exchange(&a, &b, moved, 7320), ip_of(&ra));
    let neigh = || {
        a.ip_json(&["neigh", "show", moved, "dev", "eth0"])[0]["lladdr"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(neigh(), rb["interfaces"][0]["mac"].as_str().expect("mac"));
    env.call("DEL", "ctr-b", &b.path(), &conf).ok();
    let rc = env
        .call_with(Call::new("ADD", "ctr-c", &c.path(), &conf.to_string()).args(&args))
        .ok();
    let new_mac = rc["interfaces"][0]["mac"]
        .as_str()
        .expect("mac")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(2);
    while neigh() != new_mac {
        assert!(
            Instant::now() < deadline,
            "neighbour still has {} instead of {new_mac}",
            neigh()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for (id, p) in [("ctr-a", &a), ("ctr-c", &c)] {
        env.call("DEL", id, &p.path(), &conf).ok();
    }
}

/// The same config through the reference binary and through rcni: same
/// result shape, same kernel state, each one's CHECK and DEL accept the
/// other's pod, and the two pods talk.
#[test]
fn matches_the_reference_plugin_side_by_side() {
    // scripts/dev.sh setup installs the reference plugins; without them
    // this comparison must fail, not pass unseen.
    assert!(
        Path::new(REFERENCE).exists(),
        "{REFERENCE} missing: apt-get install containernetworking-plugins"
    );
    let env = Env::new("mvx");
    let v = "1.0.0"; // the newest version Debian's reference speaks
    let conf = env.conf(
        v,
        "10.69.0.0/24",
        json!({"mtu": 1450, "mode": "bridge", "dns": {"nameservers": ["10.69.0.53"]}}),
    );
    let rp = TestNs::new("mpr");
    let op = TestNs::new("mpo");
    let refr = env.reference("ADD", "ctr-ref", &rp.path(), &conf).ok();
    let ours = env.call("ADD", "ctr-our", &op.path(), &conf).ok();

    // Result: identical apart from the per-pod values.
    let normalise = |r: &Value, pod: &TestNs| {
        let mut r = r.clone();
        assert_eq!(
            r["interfaces"][0]["sandbox"],
            pod.path().display().to_string()
        );
        assert_eq!(
            r["interfaces"][0]["mac"],
            link(pod, "eth0")["address"],
            "{r}"
        );
        r["interfaces"][0]["sandbox"] = json!("SANDBOX");
        r["interfaces"][0]["mac"] = json!("MAC");
        r["ips"][0]["address"] = json!("ADDR");
        r
    };
    assert_eq!(normalise(&ours, &op), normalise(&refr, &rp));

    // Kernel state in the two pods. Known difference: the reference
    // creates the macvlan with txqueuelen 0 (a zero-valued Go struct
    // field), rcni keeps the kernel's default; with the macvlan's
    // noqueue qdisc the queue length is never used.
    let kernel = |pod: &TestNs| {
        let l = link(pod, "eth0");
        let routes: Vec<_> = pod
            .ip_json(&["route", "show", "dev", "eth0"])
            .as_array()
            .expect("routes")
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r["prefsrc"] = json!("SRC");
                r
            })
            .collect();
        let notify = pod.run(|| {
            std::fs::read_to_string("/proc/sys/net/ipv4/conf/eth0/arp_notify").expect("sysctl")
        });
        json!({
            "kind": l["linkinfo"]["info_kind"],
            "mode": l["linkinfo"]["info_data"]["mode"],
            "mtu": l["mtu"],
            "flags": l["flags"],
            "operstate": l["operstate"],
            "link_index": l["link_index"],
            "netnsid_set": !l["link_netnsid"].is_null(),
            "addr_count": global_addrs(pod, "eth0").len(),
            "routes": routes,
            "arp_notify": notify.trim(),
        })
    };
    assert_eq!(kernel(&op), kernel(&rp));

    // Drop-in: rcni CHECKs the reference's pod, the reference rcni's.
    env.call("CHECK", "ctr-ref", &rp.path(), &with_prev(&conf, &refr))
        .ok();
    env.reference("CHECK", "ctr-our", &op.path(), &with_prev(&conf, &ours))
        .ok();
    // Both host-locals share the store, so the pods got distinct addresses.
    assert_eq!(tcp_exchange(&op, &rp, &ip_of(&refr), 7330), ip_of(&ours));
    // And each DELs the other's pod.
    env.call("DEL", "ctr-ref", &rp.path(), &conf).ok();
    env.reference("DEL", "ctr-our", &op.path(), &conf).ok();
    assert!(!rp.link_names().contains(&"eth0".to_string()));
    assert!(!op.link_names().contains(&"eth0".to_string()));
    assert!(env.allocated().is_empty());

    // L2 only: the same result shape.
    let l2 = env.conf(v, "unused", json!({"ipam": null}));
    let refr = env.reference("ADD", "ctr-ref", &rp.path(), &l2).ok();
    let ours = env.call("ADD", "ctr-our", &op.path(), &l2).ok();
    assert_eq!(normalise_l2(&ours), normalise_l2(&refr));
    assert_eq!(kernel(&op)["flags"], kernel(&rp)["flags"]);
    env.reference("DEL", "ctr-ref", &rp.path(), &l2).ok();
    env.call("DEL", "ctr-our", &op.path(), &l2).ok();
}

fn normalise_l2(r: &Value) -> Value {
    let mut r = r.clone();
    r["interfaces"][0]["sandbox"] = json!("SANDBOX");
    r["interfaces"][0]["mac"] = json!("MAC");
    r
}

#[test]
fn bcqueuelen_is_set_on_the_link_and_checked() {
    let env = Env::new("mvq");
    let p = TestNs::new("mpq");
    let conf = env.conf("1.1.0", "10.78.3.0/24", json!({"bcqueuelen": 1234}));
    let r = env.call("ADD", "ctr-q", &p.path(), &conf).ok();
    // Read back over rtnetlink in the pod: IFLA_MACVLAN_BC_QUEUE_LEN.
    let got = p.run(|| {
        let s = netlink::Socket::route().expect("socket");
        let l = s
            .link_by_name("eth0")
            .expect("dump")
            .expect("eth0 in the pod");
        l.macvlan_bc_queue_len()
    });
    assert_eq!(got, Some(1234));
    env.call("CHECK", "ctr-q", &p.path(), &with_prev(&conf, &r))
        .ok();
    // CHECK with another value than the link's fails.
    let other = env.conf("1.1.0", "10.78.3.0/24", json!({"bcqueuelen": 99}));
    let o = env.call("CHECK", "ctr-q", &p.path(), &with_prev(&other, &r));
    o.err_code();
    let e = o.json();
    assert!(
        e["msg"].as_str().unwrap_or("").contains("bcqueuelen"),
        "{e}"
    );
    env.call("DEL", "ctr-q", &p.path(), &conf).ok();
    env.call("DEL", "ctr-q", &p.path(), &conf).ok();
    assert!(!p.link_names().contains(&"eth0".to_string()));
    assert!(env.allocated().is_empty());

    // Not a u32: refused before anything is made.
    for bad in [json!(-1), json!("big"), json!(4294967296u64)] {
        let c = env.conf("1.1.0", "10.78.3.0/24", json!({"bcqueuelen": bad}));
        let o = env.call("ADD", "ctr-q2", &p.path(), &c);
        assert_eq!(o.err_code(), 7, "{}", o.stdout);
        let e = o.json();
        assert!(
            e["msg"].as_str().unwrap_or("").contains("bcqueuelen"),
            "{e}"
        );
    }
    assert!(!p.link_names().contains(&"eth0".to_string()));
    assert!(env.allocated().is_empty());
}
