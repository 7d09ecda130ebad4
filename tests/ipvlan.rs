//! ipvlan in real namespaces (VM lane: the host kernel lacks ipvlan). The
//! node's master (a veth) leads to a "switch" namespace whose end holds
//! 10.x.0.254; pods in every spec version and mode talk to each other and
//! to the switch, CHECK, DEL twice, nothing left; chained without `ipam`;
//! side by side with Debian's reference ipvlan.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::ops::Deref;
use std::path::Path;
use testutil::{
    merge_removing_nulls, per_version, tcp_exchange, Call, Outcome, Outside, PluginEnv, TestNs,
};

/// ipvlan in a node namespace whose master (a veth) leads to a "switch"
/// namespace holding `peer_cidr`.
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
    fn new(tag: &str, peer_cidr: &str) -> Env {
        let kit = testutil::plugin_env!("ipvlan", tag);
        let switch = Outside::new(&kit.node, "isw", "iv", "sw0");
        switch.peer_addr(peer_cidr);
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
        c["ipam"]["rangeEnd"] = json!(subnet.replace(".0/24", ".200"));
        merge_removing_nulls(&mut c, &extra);
        c
    }

    fn reference(&self, cmd: &str, id: &str, pod: &Path, conf: &Value) -> Outcome {
        self.kit
            .reference("ipvlan", Call::new(cmd, id, pod, &conf.to_string()))
    }
}

fn link(ns: &TestNs, ifname: &str) -> Value {
    ns.ip_json(&["-d", "link", "show", "dev", ifname])[0].clone()
}

fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

fn addr_of(r: &Value) -> String {
    let cidr = r["ips"][0]["address"]
        .as_str()
        .or_else(|| r["ip4"]["ip"].as_str())
        .unwrap_or_else(|| panic!("no address in {r}"));
    cidr.split('/').next().expect("addr").to_string()
}

per_version!(
    #[ignore = "VM lane: needs ipvlan; run by scripts/dev.sh vmtest"]
    ipvlan_every_version_two_pods_talk_check_del_twice,
    |v| {
        let env = Env::new("iva", "10.67.0.254/24");
        let before = env.node.link_names();
        let master_mac = link(&env.node, &env.master)["address"].clone();
        let a = TestNs::new("ipa");
        let b = TestNs::new("ipb");
        let conf = env.conf(v, "10.67.0.0/24", json!({"mtu": 1400}));
        let ra = env.call("ADD", "ctr-a", &a.path(), &conf).ok();
        let rb = env.call("ADD", "ctr-b", &b.path(), &conf).ok();
        assert_eq!(ra["cniVersion"], v);
        for pod in [&a, &b] {
            let l = link(pod, "eth0");
            assert_eq!(l["linkinfo"]["info_kind"], "ipvlan", "{l}");
            assert_eq!(l["linkinfo"]["info_data"]["mode"], "l2", "{l}");
            assert_eq!(l["mtu"], 1400);
            assert_eq!(l["address"], master_mac, "ipvlan shares the master's MAC");
        }
        let (ia, ib) = (addr_of(&ra), addr_of(&rb));
        assert_eq!(tcp_exchange(&a, &b, &ib, 7500), ia);
        assert_eq!(tcp_exchange(&b, &env.switch, "10.67.0.254", 7501), ib);
        if testutil::has_check(v) {
            env.call("CHECK", "ctr-a", &a.path(), &with_prev(&conf, &ra))
                .ok();
            let mut l3 = with_prev(&conf, &ra);
            l3["mode"] = json!("l3");
            assert_ne!(env.call("CHECK", "ctr-a", &a.path(), &l3).code, 0);
        }
        assert_eq!(env.node.link_names(), before, "nothing new on the node");
        for (id, pod) in [("ctr-a", &a), ("ctr-b", &b)] {
            env.call("DEL", id, &pod.path(), &conf).ok();
            env.call("DEL", id, &pod.path(), &conf).ok();
            assert!(!pod.link_names().contains(&"eth0".to_string()));
        }
        assert!(env.allocated().is_empty());
    }
);

#[test]
#[ignore = "VM lane: needs ipvlan; run by scripts/dev.sh vmtest"]
fn ipvlan_l3_and_l3s_pods_talk() {
    let env = Env::new("ivl", "10.68.0.254/24");
    for mode in ["l3", "l3s"] {
        let a = TestNs::new("ila");
        let b = TestNs::new("ilb");
        let conf = env.conf("1.0.0", "10.68.0.0/24", json!({"mode": mode}));
        let ra = env.call("ADD", "ctr-a", &a.path(), &conf).ok();
        let rb = env.call("ADD", "ctr-b", &b.path(), &conf).ok();
        assert_eq!(link(&a, "eth0")["linkinfo"]["info_data"]["mode"], mode);
        assert_eq!(tcp_exchange(&a, &b, &addr_of(&rb), 7510), addr_of(&ra));
        env.call("CHECK", "ctr-a", &a.path(), &with_prev(&conf, &ra))
            .ok();
        env.call("DEL", "ctr-a", &a.path(), &conf).ok();
        env.call("DEL", "ctr-b", &b.path(), &conf).ok();
    }
    assert!(env.allocated().is_empty());
}

#[test]
#[ignore = "VM lane: needs ipvlan; run by scripts/dev.sh vmtest"]
fn ipvlan_chained_without_ipam_uses_prev_result() {
    let env = Env::new("ivc", "10.69.0.254/24");
    let pod = TestNs::new("icp");
    let prev = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": env.master}],
        "ips": [{"address": "10.69.0.7/24", "interface": 0}],
        "dns": {"nameservers": ["10.69.0.53"]},
    });
    // No master either: the previous result's single interface.
    let conf = with_prev(
        &env.conf(
            "1.0.0",
            "10.69.0.0/24",
            json!({"ipam": null, "master": null}),
        ),
        &prev,
    );
    let r = env.call("ADD", "ctr-c", &pod.path(), &conf).ok();
    assert_eq!(r["ips"][0]["address"], "10.69.0.7/24", "{r}");
    assert_eq!(r["ips"][0]["interface"], 0);
    assert_eq!(r["interfaces"][0]["name"], "eth0");
    assert_eq!(r["dns"]["nameservers"][0], "10.69.0.53");
    assert_eq!(
        tcp_exchange(&pod, &env.switch, "10.69.0.254", 7520),
        "10.69.0.7"
    );
    env.call("DEL", "ctr-c", &pod.path(), &conf).ok();
    env.call("DEL", "ctr-c", &pod.path(), &conf).ok();
    assert!(!pod.link_names().contains(&"eth0".to_string()));
    // Neither ipam nor a prevResult: a config error, nothing made.
    let bare = env.conf("1.0.0", "10.69.0.0/24", json!({"ipam": null}));
    assert_eq!(env.call("ADD", "ctr-n", &pod.path(), &bare).err_code(), 7);
    assert!(!pod.link_names().contains(&"eth0".to_string()));
    let bad = env.conf("1.0.0", "10.69.0.0/24", json!({"mode": "bridge"}));
    assert_eq!(env.call("ADD", "ctr-n", &pod.path(), &bad).err_code(), 7);
    assert!(env.allocated().is_empty());
}

#[test]
#[ignore = "VM lane: needs ipvlan; run by scripts/dev.sh vmtest"]
fn ipvlan_side_by_side_with_reference() {
    let env = Env::new("ivx", "10.70.0.254/24");
    let conf = env.conf("1.0.0", "10.70.0.0/24", json!({}));
    let rp = TestNs::new("ixr");
    let op = TestNs::new("ixo");
    let refr = env.reference("ADD", "ctr-ref", &rp.path(), &conf).ok();
    let ours = env.call("ADD", "ctr-our", &op.path(), &conf).ok();
    let (lr, lo) = (link(&rp, "eth0"), link(&op, "eth0"));
    for k in ["mtu", "address", "linkinfo"] {
        assert_eq!(lr[k], lo[k], "{k}");
    }
    // Pods of the two implementations talk to each other.
    assert_eq!(
        tcp_exchange(&op, &rp, &addr_of(&refr), 7530),
        addr_of(&ours)
    );
    env.call("CHECK", "ctr-ref", &rp.path(), &with_prev(&conf, &refr))
        .ok();
    env.reference("CHECK", "ctr-our", &op.path(), &with_prev(&conf, &ours))
        .ok();
    env.call("DEL", "ctr-ref", &rp.path(), &conf).ok();
    env.reference("DEL", "ctr-our", &op.path(), &conf).ok();
    assert!(!rp.link_names().contains(&"eth0".to_string()));
    assert!(!op.link_names().contains(&"eth0".to_string()));
    assert!(env.allocated().is_empty());
}
