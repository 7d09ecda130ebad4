//! vrf chained after ptp in real namespaces (VM lane: the host kernel
//! lacks vrf). The pod's interface lands in a VRF of the pod's namespace,
//! its addresses kept and its routes in the VRF's table, traffic through
//! the VRF reaches the node; CHECK; DEL releases the interface and removes
//! the VRF with its last member; side by side with Debian's reference vrf.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::ops::Deref;
use std::path::Path;
use testutil::{merge, per_version, Call, Outcome, PluginEnv, TestNs};

/// ptp then vrf in a node namespace; `call` names the plugin.
struct Env(PluginEnv);

impl Deref for Env {
    type Target = PluginEnv;
    fn deref(&self) -> &PluginEnv {
        &self.0
    }
}

impl Env {
    fn new(tag: &str) -> Env {
        Env(testutil::plugin_env!("ptp", tag))
    }

    fn ptp(&self, v: &str, subnet: &str) -> Value {
        let mut c = self.base_conf(v);
        c["ipam"] = self.host_local(subnet);
        c["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}]);
        c
    }

    fn vrf(&self, v: &str, prev: &Value, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": v,
            "name": self.net,
            "type": "vrf",
            "vrfname": "blue",
            "prevResult": prev,
        });
        merge(&mut c, &extra);
        c
    }

    fn call(
        &self,
        plugin: &str,
        cmd: &str,
        id: &str,
        pod: &Path,
        ifname: &str,
        conf: &Value,
    ) -> Outcome {
        let call = Call::new(cmd, id, pod, &conf.to_string()).ifname(ifname);
        self.call_plugin(plugin, call)
    }

    fn reference(&self, cmd: &str, id: &str, pod: &Path, ifname: &str, conf: &Value) -> Outcome {
        let call = Call::new(cmd, id, pod, &conf.to_string()).ifname(ifname);
        self.0.reference("vrf", call)
    }
}

fn link(ns: &TestNs, ifname: &str) -> Value {
    ns.ip_json(&["-d", "link", "show", "dev", ifname])[0].clone()
}

fn vrf_table(ns: &TestNs, name: &str) -> u64 {
    link(ns, name)["linkinfo"]["info_data"]["table"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} is no vrf"))
}

fn gateway(r: &Value) -> String {
    r["ips"][0]["gateway"]
        .as_str()
        .or_else(|| r["ip4"]["gateway"].as_str())
        .unwrap_or_else(|| panic!("no gateway in {r}"))
        .to_string()
}

fn has_default_via(ns: &TestNs, table: &str, gw: &str) -> bool {
    ns.ip_json(&["route", "show", "table", table])
        .as_array()
        .is_some_and(|rs| {
            rs.iter()
                .any(|r| r["dst"] == "default" && r["gateway"] == gw)
        })
}

per_version!(
    #[ignore = "VM lane: needs vrf; run by scripts/dev.sh vmtest"]
    vrf_every_version_moves_routes_check_del_twice,
    |v| {
        let env = Env::new("vra");
        if testutil::is_legacy(v) {
            return; // no prevResult to chain on
        }
        let pod = TestNs::new("vrp");
        let ptp = env.ptp(v, "10.71.0.0/24");
        let r = env
            .call("ptp", "ADD", "ctr-v", &pod.path(), "eth0", &ptp)
            .ok();
        let conf = env.vrf(v, &r, json!({}));
        let out = env
            .call("vrf", "ADD", "ctr-v", &pod.path(), "eth0", &conf)
            .ok();
        assert_eq!(out, r, "the previous result passes through");
        let l = link(&pod, "eth0");
        assert_eq!(l["master"], "blue", "{l}");
        let table = vrf_table(&pod, "blue").to_string();
        let gw = gateway(&r);
        assert!(
            has_default_via(&pod, &table, &gw),
            "routes live in table {table}"
        );
        assert!(!has_default_via(&pod, "main", &gw), "and no longer in main");
        let a = pod.ip_json(&["addr", "show", "dev", "eth0"]).to_string();
        assert!(a.contains("10.71.0."), "address kept: {a}");
        // Traffic through the VRF reaches the node's end of the ptp link.
        pod.exec(&["ping", "-c", "1", "-W", "5", "-I", "blue", &gw]);
        if testutil::has_check(v) {
            env.call("vrf", "CHECK", "ctr-v", &pod.path(), "eth0", &conf)
                .ok();
            let other = env.vrf(
                v,
                &r,
                json!({"table": table.parse::<u32>().expect("t") + 1}),
            );
            assert_ne!(
                env.call("vrf", "CHECK", "ctr-v", &pod.path(), "eth0", &other)
                    .code,
                0
            );
        }
        env.call("vrf", "DEL", "ctr-v", &pod.path(), "eth0", &conf)
            .ok();
        env.call("vrf", "DEL", "ctr-v", &pod.path(), "eth0", &conf)
            .ok();
        assert!(link(&pod, "eth0")["master"].is_null());
        assert!(
            !pod.link_names().contains(&"blue".to_string()),
            "vrf removed"
        );
        env.call("ptp", "DEL", "ctr-v", &pod.path(), "eth0", &ptp)
            .ok();
    }
);

#[test]
#[ignore = "VM lane: needs vrf; run by scripts/dev.sh vmtest"]
fn vrf_is_shared_and_goes_with_its_last_member() {
    let env = Env::new("vrs");
    let pod = TestNs::new("vrs");
    let p0 = env.ptp("1.0.0", "10.72.0.0/24");
    let p1 = env.ptp("1.0.0", "10.73.0.0/24");
    let r0 = env
        .call("ptp", "ADD", "ctr-s", &pod.path(), "eth0", &p0)
        .ok();
    let r1 = env
        .call("ptp", "ADD", "ctr-s", &pod.path(), "eth1", &p1)
        .ok();
    let c0 = env.vrf("1.0.0", &r0, json!({"table": 1234}));
    let c1 = env.vrf("1.0.0", &r1, json!({"table": 1234}));
    env.call("vrf", "ADD", "ctr-s", &pod.path(), "eth0", &c0)
        .ok();
    env.call("vrf", "ADD", "ctr-s", &pod.path(), "eth1", &c1)
        .ok();
    assert_eq!(vrf_table(&pod, "blue"), 1234);
    assert_eq!(link(&pod, "eth1")["master"], "blue");
    // Another table for the same VRF is refused.
    let bad = env.vrf("1.0.0", &r1, json!({"table": 99}));
    assert_ne!(
        env.call("vrf", "ADD", "ctr-s", &pod.path(), "eth1", &bad)
            .code,
        0
    );
    env.call("vrf", "DEL", "ctr-s", &pod.path(), "eth0", &c0)
        .ok();
    assert!(
        pod.link_names().contains(&"blue".to_string()),
        "eth1 still in it"
    );
    env.call("vrf", "DEL", "ctr-s", &pod.path(), "eth1", &c1)
        .ok();
    assert!(!pod.link_names().contains(&"blue".to_string()));
    env.call("ptp", "DEL", "ctr-s", &pod.path(), "eth0", &p0)
        .ok();
    env.call("ptp", "DEL", "ctr-s", &pod.path(), "eth1", &p1)
        .ok();
    // Without prevResult or vrfname: config errors.
    let mut none = env.vrf("1.0.0", &r0, json!({}));
    none.as_object_mut().expect("obj").remove("prevResult");
    assert_eq!(
        env.call("vrf", "ADD", "ctr-s", &pod.path(), "eth0", &none)
            .err_code(),
        7
    );
}

#[test]
#[ignore = "VM lane: needs vrf; run by scripts/dev.sh vmtest"]
fn vrf_side_by_side_with_reference() {
    let env = Env::new("vrx");
    let rp = TestNs::new("vrxr");
    let op = TestNs::new("vrxo");
    let ptp = env.ptp("1.0.0", "10.74.0.0/24");
    let rr = env
        .call("ptp", "ADD", "ctr-r", &rp.path(), "eth0", &ptp)
        .ok();
    let ro = env
        .call("ptp", "ADD", "ctr-o", &op.path(), "eth0", &ptp)
        .ok();
    let cr = env.vrf("1.0.0", &rr, json!({"table": 500}));
    let co = env.vrf("1.0.0", &ro, json!({"table": 500}));
    env.reference("ADD", "ctr-r", &rp.path(), "eth0", &cr).ok();
    env.call("vrf", "ADD", "ctr-o", &op.path(), "eth0", &co)
        .ok();
    for pod in [&rp, &op] {
        assert_eq!(link(pod, "eth0")["master"], "blue");
        assert_eq!(vrf_table(pod, "blue"), 500);
    }
    // rcni keeps the default route (in the VRF's table). Debian's reference
    // (1.1.1) drops routes via a gateway when it enslaves: not compared.
    assert!(has_default_via(&op, "500", &gateway(&ro)));
    let _ = has_default_via(&rp, "500", &gateway(&rr));
    env.call("vrf", "CHECK", "ctr-r", &rp.path(), "eth0", &cr)
        .ok();
    env.reference("CHECK", "ctr-o", &op.path(), "eth0", &co)
        .ok();
    env.call("vrf", "DEL", "ctr-r", &rp.path(), "eth0", &cr)
        .ok();
    env.reference("DEL", "ctr-o", &op.path(), "eth0", &co).ok();
    for pod in [&rp, &op] {
        assert!(!pod.link_names().contains(&"blue".to_string()));
    }
    env.call("ptp", "DEL", "ctr-r", &rp.path(), "eth0", &ptp)
        .ok();
    env.call("ptp", "DEL", "ctr-o", &op.path(), "eth0", &ptp)
        .ok();
}
