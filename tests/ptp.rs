//! ptp in real namespaces: every spec version, routed pod-to-pod traffic
//! through the node, masquerade to an outside namespace, cleanup after
//! failures.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::ops::Deref;
use testutil::{merge, per_version, tcp_exchange, Call, Outside, PluginEnv, TestNs};

/// The ptp plugin in its node namespace; host-local from rcni, else
/// Debian's reference one.
struct Env(PluginEnv);

impl Deref for Env {
    type Target = PluginEnv;
    fn deref(&self) -> &PluginEnv {
        &self.0
    }
}

impl Env {
    fn new(tag: &str) -> Env {
        Env(testutil::plugin_env!("ptp", tag).with_reference_fallback())
    }

    fn conf(&self, v: &str, subnet: &str, extra: Value) -> Value {
        let mut c = self.base_conf(v);
        c["stateDir"] = json!(self.state_dir.path());
        c["ipam"] = self.host_local(subnet);
        c["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}]);
        merge(&mut c, &extra);
        c
    }
}

fn veth_names(ns: &TestNs) -> Vec<String> {
    ns.link_names()
        .into_iter()
        .filter(|n| n.starts_with("veth"))
        .collect()
}

fn routes(ns: &TestNs) -> Vec<(String, String)> {
    ns.ip_json(&["route", "show"])
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["dst"].as_str().unwrap_or("").to_string(),
                        r["gateway"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

per_version!(add_check_del_del_every_version, |v| {
    let env = Env::new("ptv");
    let pod = TestNs::new("ptp");
    let conf = env.conf(v, "10.40.0.0/24", json!({"mtu": 1450}));
    let res = env.call("ADD", "ctr-p", &pod.path(), &conf).ok();
    assert_eq!(res["cniVersion"], v);
    if !testutil::is_legacy(v) {
        assert_eq!(res["interfaces"].as_array().map(Vec::len), Some(2), "{res}");
        assert_eq!(res["interfaces"][1]["name"], "eth0");
        assert_eq!(res["ips"][0]["interface"], 1);
    }
    // Container: the address, no on-link subnet route, the gateway
    // on-link, subnet and default via the gateway.
    let a = pod.ip_json(&["addr", "show", "dev", "eth0"]);
    assert_eq!(a[0]["mtu"], 1450);
    let r = routes(&pod);
    assert!(r.contains(&("10.40.0.1".into(), String::new())), "{r:?}");
    assert!(
        r.contains(&("10.40.0.0/24".into(), "10.40.0.1".into())),
        "{r:?}"
    );
    assert!(r.contains(&("default".into(), "10.40.0.1".into())), "{r:?}");
    // Node: the gateway on the host veth, a /32 route to the pod.
    let hosts = veth_names(&env.node);
    assert_eq!(hosts.len(), 1);
    let h = env.node.ip_json(&["addr", "show", "dev", &hosts[0]]);
    assert_eq!(h[0]["mtu"], 1450);
    // One queue per veth end by default (vethQueues).
    let hd = env.node.ip_json(&["-d", "link", "show", "dev", &hosts[0]]);
    let cd = pod.ip_json(&["-d", "link", "show", "dev", "eth0"]);
    assert_eq!(hd[0]["num_tx_queues"], 1, "{hd}");
    assert_eq!(cd[0]["num_rx_queues"], 1, "{cd}");
    assert!(h[0]["addr_info"].as_array().is_some_and(|x| x
        .iter()
        .any(|i| i["local"] == "10.40.0.1" && i["prefixlen"] == 32)));
    let pod_ip = env.allocated()[0].clone();
    assert!(routes(&env.node).contains(&(pod_ip, String::new())));

    if testutil::has_check(v) {
        let mut with_prev = conf.clone();
        with_prev["prevResult"] = res.clone();
        env.call("CHECK", "ctr-p", &pod.path(), &with_prev).ok();
    }
    env.call("DEL", "ctr-p", &pod.path(), &conf).ok();
    assert!(veth_names(&env.node).is_empty());
    assert!(env.allocated().is_empty());
    env.call("DEL", "ctr-p", &pod.path(), &conf).ok();
    env.call_with(Call::new("DEL", "ctr-p", &pod.path(), &conf.to_string()).netns(""))
        .ok();
});

#[test]
fn pods_talk_through_the_node_and_masquerade_outside() {
    let env = Env::new("ptt");
    let world = Outside::uplink(&env.node, 89).ns;

    let conf = env.conf("1.1.0", "10.41.0.0/24", json!({"ipMasq": true}));
    let a = TestNs::new("pta");
    let b = TestNs::new("ptb");
    let ra = env.call("ADD", "ctr-a", &a.path(), &conf).ok();
    let rb = env.call("ADD", "ctr-b", &b.path(), &conf).ok();
    let ip = |r: &Value| {
        r["ips"][0]["address"]
            .as_str()
            .expect("ip")
            .split('/')
            .next()
            .expect("a")
            .to_string()
    };
    assert_eq!(tcp_exchange(&a, &b, &ip(&rb), 7200), ip(&ra));
    assert_eq!(
        tcp_exchange(&a, &world, "192.168.89.2", 7201),
        "192.168.89.1"
    );
    env.call("DEL", "ctr-a", &a.path(), &conf).ok();
    env.call("DEL", "ctr-b", &b.path(), &conf).ok();
    let nft = testutil::command_in(Some(env.node.ns()), "nft")
        .args(["list", "table", "inet", "rcni-nat"])
        .output()
        .expect("nft");
    assert!(!String::from_utf8_lossy(&nft.stdout).contains("masquerade"));
    assert!(veth_names(&env.node).is_empty());
}

/// An IPAM route whose gateway is another address of the pod's subnet (not
/// the ptp gateway): the reference accepts it (it adds IPAM routes while
/// the subnet is still on-link), so rcni does too, marking it on-link.
#[test]
fn ipam_route_via_another_address_of_the_subnet_is_kept() {
    let env = Env::new("ptr");
    for (k, subnet, dst, gw) in [
        (4, "10.44.0.0/24", "192.168.77.0/24", "10.44.0.254"),
        (6, "fd00:44::/64", "fd00:77::/64", "fd00:44::fe"),
    ] {
        let pod = TestNs::new("ptr");
        let conf = env.conf("1.0.0", subnet, json!({}));
        let mut conf = conf;
        conf["ipam"]["routes"] = json!([{"dst": dst, "gw": gw}]);
        let res = env.call("ADD", "ctr-r", &pod.path(), &conf).ok();
        assert_eq!(res["routes"][0]["gw"], gw, "{res}");
        let r = pod.ip_json(&[&format!("-{k}"), "route", "show", dst]);
        assert_eq!(r[0]["gateway"], gw, "{r}");
        assert_eq!(r[0]["dev"], "eth0", "{r}");
        let mut with_prev = conf.clone();
        with_prev["prevResult"] = res.clone();
        env.call("CHECK", "ctr-r", &pod.path(), &with_prev).ok();
        env.call("DEL", "ctr-r", &pod.path(), &conf).ok();
        assert!(veth_names(&env.node).is_empty());
        assert!(env.allocated().is_empty());
    }
    // A gateway outside every subnet of the pod stays refused, as in the
    // reference: the kernel cannot reach it.
    let pod = TestNs::new("ptr");
    let mut conf = env.conf("1.0.0", "10.44.0.0/24", json!({}));
    conf["ipam"]["routes"] = json!([{"dst": "192.168.77.0/24", "gw": "10.45.0.1"}]);
    let out = env.call("ADD", "ctr-r", &pod.path(), &conf);
    assert_eq!(out.err_code(), 5, "{}", out.stdout);
    assert!(veth_names(&env.node).is_empty());
    assert!(env.allocated().is_empty());
}

#[test]
fn failure_after_ipam_leaves_nothing() {
    let env = Env::new("pte");
    let pod = TestNs::new("pte");
    pod.exec(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
    ]);
    let conf = env.conf("1.0.0", "10.42.0.0/24", json!({}));
    let out = env.call("ADD", "ctr-e", &pod.path(), &conf);
    assert_ne!(out.code, 0);
    assert!(env.allocated().is_empty());
    assert!(veth_names(&env.node).is_empty());
    let pod2 = TestNs::new("ptf");
    let mut call = Call::new("ADD", "ctr-f", &pod2.path(), &conf.to_string());
    call.env
        .push(("RCNI_INJECT_FAILURE".into(), "after-setup".into()));
    assert_ne!(env.call_with(call).code, 0);
    assert!(env.allocated().is_empty());
    assert!(veth_names(&env.node).is_empty());
    assert!(!pod2.link_names().contains(&"eth0".to_string()));
}

/// Sends one router advertisement (router lifetime 1800 s) from `ns`'s
/// `eth0` to all nodes on the link.
fn send_router_advertisement(ns: &TestNs) {
    let script = "import socket,struct\n\
s=socket.socket(socket.AF_INET6,socket.SOCK_RAW,socket.IPPROTO_ICMPV6)\n\
i=socket.if_nametoindex('eth0')\n\
s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_MULTICAST_HOPS,255)\n\
s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_MULTICAST_IF,i)\n\
s.sendto(struct.pack('!BBHBBHII',134,0,0,64,0,1800,0,0),('ff02::1',0,0,i))\n";
    ns.exec(&["python3", "-c", script]);
}

/// The node's IPv6 default routes, waiting up to 2 s for one to appear.
fn node_default_v6(node: &TestNs) -> String {
    for _ in 0..20 {
        let r = node.exec(&["ip", "-6", "route", "show", "default"]);
        if !r.trim().is_empty() {
            return r;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    String::new()
}

#[test]
fn a_pods_router_advertisement_does_not_become_the_nodes_default_route() {
    // An IPv4-only pod: the node keeps IPv6 forwarding off, where an
    // interface with accept_ra 1 would take a pod's advertisement as its
    // router's. The reference sets accept_ra 0 on the host end; so must we.
    let env = Env::new("ptr");
    let pod = TestNs::new("ptr");
    pod.exec(&["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"]);
    let conf = env.conf("1.0.0", "10.41.0.0/24", json!({}));
    let res = env.call("ADD", "ctr-ra", &pod.path(), &conf).ok();
    let host = res["interfaces"][0]["name"].as_str().unwrap().to_string();
    assert_eq!(
        env.node
            .exec(&["sysctl", "-n", "net.ipv6.conf.all.forwarding"])
            .trim(),
        "0"
    );
    let key = format!("net.ipv6.conf.{host}.accept_ra");
    assert_eq!(env.node.exec(&["sysctl", "-n", &key]).trim(), "0");
    send_router_advertisement(&pod);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let r = env.node.exec(&["ip", "-6", "route", "show", "default"]);
    assert!(r.trim().is_empty(), "a pod became the node's router: {r}");
    // The same advertisement is taken once the host end accepts them:
    // the check above is not vacuous.
    env.node.exec(&["sysctl", "-qw", &format!("{key}=1")]);
    send_router_advertisement(&pod);
    let r = node_default_v6(&env.node);
    assert!(r.contains(&host), "{r}");
    env.call("DEL", "ctr-ra", &pod.path(), &conf).ok();
}
