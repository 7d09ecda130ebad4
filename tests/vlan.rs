//! vlan and dummy in real namespaces (VM lane: the host kernel has neither
//! 8021q nor dummy). A node namespace whose master (a veth) leads to a
//! "switch" namespace holding the tagged peer `sw0.<id>`; pods in every
//! spec version reach it over the tag, CHECK, DEL twice, nothing left;
//! side by side with Debian's reference vlan.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::ops::Deref;
use std::path::Path;
use testutil::{merge, per_version, tcp_exchange, Call, Outcome, Outside, PluginEnv, TestNs};

/// vlan or dummy in a node namespace whose master (a veth) leads to a
/// "switch" namespace.
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
    /// Master `vl…` in the node; its peer `sw0` in the switch carries
    /// `sw0.<id>` with the address .254 of `subnet`'s /24.
    fn new(tag: &str, id: u16, peer_cidr: &str) -> Env {
        let kit = testutil::plugin_env!("vlan", tag);
        let switch = Outside::new(&kit.node, "vsw", "vl", "sw0");
        let tagged = format!("sw0.{id}");
        switch.ns.exec(&[
            "ip",
            "link",
            "add",
            "link",
            "sw0",
            "name",
            &tagged,
            "type",
            "vlan",
            "id",
            &id.to_string(),
        ]);
        switch
            .ns
            .exec(&["ip", "addr", "add", peer_cidr, "dev", &tagged]);
        switch.ns.exec(&["ip", "link", "set", &tagged, "up"]);
        Env {
            kit,
            switch: switch.ns,
            master: switch.node_end,
        }
    }

    fn conf(&self, v: &str, plugin: &str, subnet: &str, extra: Value) -> Value {
        let mut c = json!({"cniVersion": v, "name": self.net, "type": plugin});
        c["ipam"] = self.host_local(subnet);
        c["ipam"]["rangeEnd"] = json!(subnet.replace(".0/24", ".200"));
        if plugin == "vlan" {
            c["master"] = json!(self.master);
        }
        merge(&mut c, &extra);
        c
    }

    fn call(&self, plugin: &str, cmd: &str, id: &str, pod: &Path, conf: &Value) -> Outcome {
        self.call_plugin(plugin, Call::new(cmd, id, pod, &conf.to_string()))
    }

    fn reference(&self, plugin: &str, cmd: &str, id: &str, pod: &Path, conf: &Value) -> Outcome {
        self.kit
            .reference(plugin, Call::new(cmd, id, pod, &conf.to_string()))
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

/// The pod's address from a result of any version.
fn addr_of(r: &Value) -> String {
    let cidr = r["ips"][0]["address"]
        .as_str()
        .or_else(|| r["ip4"]["ip"].as_str())
        .unwrap_or_else(|| panic!("no address in {r}"));
    cidr.split('/').next().expect("addr").to_string()
}

per_version!(
    #[ignore = "VM lane: needs 8021q; run by scripts/dev.sh vmtest"]
    vlan_every_version_reaches_tagged_peer_check_del_twice,
    |v| {
        let env = Env::new("vla", 42, "10.62.0.254/24");
        let before = env.node.link_names();
        let pod = TestNs::new("vpa");
        let conf = env.conf(
            v,
            "vlan",
            "10.62.0.0/24",
            json!({"vlanId": 42, "mtu": 1400}),
        );
        let r = env.call("vlan", "ADD", "ctr-a", &pod.path(), &conf).ok();
        assert_eq!(r["cniVersion"], v);
        let l = link(&pod, "eth0");
        assert_eq!(l["linkinfo"]["info_kind"], "vlan", "{l}");
        assert_eq!(l["linkinfo"]["info_data"]["id"], 42, "{l}");
        assert_eq!(l["mtu"], 1400);
        if !testutil::is_legacy(v) {
            assert_eq!(r["interfaces"][0]["name"], "eth0");
            assert_eq!(r["interfaces"][0]["mac"], l["address"], "{r}");
        }
        let ip = addr_of(&r);
        // Real traffic over the tag, both ways.
        assert_eq!(tcp_exchange(&pod, &env.switch, "10.62.0.254", 7410), ip);
        assert_eq!(tcp_exchange(&env.switch, &pod, &ip, 7411), "10.62.0.254");
        if testutil::has_check(v) {
            env.call("vlan", "CHECK", "ctr-a", &pod.path(), &with_prev(&conf, &r))
                .ok();
            // Another id than the kernel's is noticed.
            let mut other = with_prev(&conf, &r);
            other["vlanId"] = json!(43);
            assert_ne!(
                env.call("vlan", "CHECK", "ctr-a", &pod.path(), &other).code,
                0
            );
        }
        assert_eq!(env.node.link_names(), before, "nothing new on the node");
        env.call("vlan", "DEL", "ctr-a", &pod.path(), &conf).ok();
        env.call("vlan", "DEL", "ctr-a", &pod.path(), &conf).ok();
        assert!(!pod.link_names().contains(&"eth0".to_string()));
        assert!(env.allocated().is_empty());
    }
);

#[test]
#[ignore = "VM lane: needs 8021q; run by scripts/dev.sh vmtest"]
fn vlan_refusals_leave_nothing() {
    let env = Env::new("vlr", 7, "10.63.0.254/24");
    let pod = TestNs::new("vlr");
    for (extra, code) in [
        (json!({"vlanId": 4095}), 7),
        (json!({"vlanId": -1}), 7),
        (json!({"vlanId": 7, "mtu": 9000}), 7),
        (json!({"vlanId": 7, "master": "nonexistent0"}), 7),
    ] {
        let conf = env.conf("1.0.0", "vlan", "10.63.0.0/24", extra.clone());
        let out = env.call("vlan", "ADD", "ctr-r", &pod.path(), &conf);
        assert_eq!(out.err_code(), code, "{extra}: {}", out.stdout);
        assert!(!pod.link_names().contains(&"eth0".to_string()));
        assert!(env.allocated().is_empty());
    }
}

#[test]
#[ignore = "VM lane: needs 8021q; run by scripts/dev.sh vmtest"]
fn vlan_side_by_side_with_reference() {
    // The kernel allows one vlan of an id per master, so the two
    // attachments take turns: the reference's, checked and deleted by
    // rcni, then rcni's, checked and deleted by the reference.
    let env = Env::new("vlx", 9, "10.64.0.254/24");
    let conf = env.conf("1.0.0", "vlan", "10.64.0.0/24", json!({"vlanId": 9}));
    let rp = TestNs::new("vlxr");
    let op = TestNs::new("vlxo");
    let refr = env
        .reference("vlan", "ADD", "ctr-ref", &rp.path(), &conf)
        .ok();
    let lr = link(&rp, "eth0");
    assert_eq!(
        tcp_exchange(&rp, &env.switch, "10.64.0.254", 7421),
        addr_of(&refr)
    );
    env.call(
        "vlan",
        "CHECK",
        "ctr-ref",
        &rp.path(),
        &with_prev(&conf, &refr),
    )
    .ok();
    env.call("vlan", "DEL", "ctr-ref", &rp.path(), &conf).ok();
    assert!(!rp.link_names().contains(&"eth0".to_string()));
    let ours = env.call("vlan", "ADD", "ctr-our", &op.path(), &conf).ok();
    let lo = link(&op, "eth0");
    for k in ["mtu", "linkinfo"] {
        assert_eq!(lr[k], lo[k], "{k}");
    }
    assert_eq!(refr["interfaces"][0]["name"], ours["interfaces"][0]["name"]);
    assert_eq!(
        tcp_exchange(&op, &env.switch, "10.64.0.254", 7420),
        addr_of(&ours)
    );
    env.reference(
        "vlan",
        "CHECK",
        "ctr-our",
        &op.path(),
        &with_prev(&conf, &ours),
    )
    .ok();
    env.reference("vlan", "DEL", "ctr-our", &op.path(), &conf)
        .ok();
    assert!(!op.link_names().contains(&"eth0".to_string()));
    assert!(env.allocated().is_empty());
}

per_version!(
    #[ignore = "VM lane: needs dummy; run by scripts/dev.sh vmtest"]
    dummy_every_version_check_del_twice,
    |v| {
        let env = Env::new("dma", 5, "10.65.0.254/24");
        let pod = TestNs::new("dpa");
        let conf = env.conf(v, "dummy", "10.66.0.0/24", json!({}));
        let r = env.call("dummy", "ADD", "ctr-d", &pod.path(), &conf).ok();
        assert_eq!(r["cniVersion"], v);
        let l = link(&pod, "eth0");
        assert_eq!(l["linkinfo"]["info_kind"], "dummy", "{l}");
        let ip = addr_of(&r);
        let a = pod.ip_json(&["addr", "show", "dev", "eth0"]);
        assert!(a.to_string().contains(&ip), "{a}");
        // The address answers locally (a real socket on the dummy).
        assert_eq!(tcp_exchange(&pod, &pod, &ip, 7430), ip);
        if testutil::has_check(v) {
            env.call(
                "dummy",
                "CHECK",
                "ctr-d",
                &pod.path(),
                &with_prev(&conf, &r),
            )
            .ok();
        }
        env.call("dummy", "DEL", "ctr-d", &pod.path(), &conf).ok();
        env.call("dummy", "DEL", "ctr-d", &pod.path(), &conf).ok();
        assert!(!pod.link_names().contains(&"eth0".to_string()));
        assert!(env.allocated().is_empty());
    }
);

/// dummy without IPAM: a config error, nothing made.
#[test]
#[ignore = "VM lane: needs dummy; run by scripts/dev.sh vmtest"]
fn dummy_without_ipam_is_refused() {
    let env = Env::new("dmn", 5, "10.65.0.254/24");
    let pod = TestNs::new("dpn");
    let mut conf = env.conf("1.0.0", "dummy", "10.66.0.0/24", json!({}));
    conf.as_object_mut().expect("obj").remove("ipam");
    assert_eq!(
        env.call("dummy", "ADD", "ctr-n", &pod.path(), &conf)
            .err_code(),
        7
    );
    assert!(!pod.link_names().contains(&"eth0".to_string()));
}
