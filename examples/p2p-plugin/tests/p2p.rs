//! The example plugin in real namespaces: a node namespace runs the plugin
//! (and host-local, the rcni binary linked under that name), a pod namespace
//! receives the veth end. Every spec version: ADD, traffic both ways, CHECK,
//! GC and STATUS where the version has them, DEL twice, nothing left.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::path::Path;
use testutil::{
    for_each_version, run_plugin, tcp_exchange, Call, Outcome, PluginDir, TempDir, TestNs,
};

struct Env {
    bin: PluginDir,
    node: TestNs,
    ipam_dir: TempDir,
    net: String,
}

impl Env {
    fn new(tag: &str) -> Env {
        let bin = PluginDir::install(&testutil::rcni_bin());
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_p2p"), bin.path().join("p2p"))
            .expect("link p2p into the plugin dir");
        Env {
            bin,
            node: TestNs::new(tag),
            ipam_dir: TempDir::new("p2p-ipam"),
            net: format!("net-{}", testutil::unique(tag)),
        }
    }

    fn conf(&self, v: &str, subnet: &str) -> Value {
        json!({
            "cniVersion": v,
            "name": self.net,
            "type": "p2p",
            "mtu": 1400,
            "ipam": {
                "type": "host-local",
                "subnet": subnet,
                "dataDir": self.ipam_dir.path(),
                "routes": [{"dst": "0.0.0.0/0"}],
            }
        })
    }

    fn call(&self, cmd: &str, id: &str, pod: &Path, conf: &Value) -> Outcome {
        let call = Call::new(cmd, id, pod, &conf.to_string());
        run_plugin(self.bin.path(), "p2p", &call, Some(self.node.ns()))
    }

    /// Addresses host-local holds for this network.
    fn allocated(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.ipam_dir.path().join(&self.net)) else {
            return vec![];
        };
        rd.flatten()
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }

    fn node_veths(&self) -> Vec<String> {
        let names = self.node.link_names();
        names.into_iter().filter(|n| n.starts_with("p2p")).collect()
    }
}

#[test]
fn add_traffic_check_del_every_version() {
    let env = Env::new("p2pv");
    for_each_version(|v| {
        let pod = TestNs::new("p2pp");
        let conf = env.conf(v, "10.61.0.0/24");
        let res = env.call("ADD", "ctr-a", &pod.path(), &conf).ok();
        assert_eq!(res["cniVersion"], v);
        let ip = env.allocated();
        assert_eq!(ip.len(), 1, "{ip:?}");
        let pod_ip = ip[0].clone();
        let addr = if v.starts_with("0.1") || v.starts_with("0.2") {
            &res["ip4"]["ip"]
        } else {
            assert_eq!(res["interfaces"].as_array().map(Vec::len), Some(2), "{res}");
            assert_eq!(res["interfaces"][1]["name"], "eth0");
            assert_eq!(res["interfaces"][1]["sandbox"], pod.path().display().to_string());
            assert_eq!(res["ips"][0]["interface"], 1);
            &res["ips"][0]["address"]
        };
        assert_eq!(addr, &format!("{pod_ip}/24"), "{res}");

        // Kernel state: the pod's address and MTU, default route via the
        // gateway; the node end holds the gateway.
        let a = pod.ip_json(&["addr", "show", "dev", "eth0"]);
        assert_eq!(a[0]["mtu"], 1400);
        assert!(a[0]["addr_info"].to_string().contains(&pod_ip), "{a}");
        let r = pod.ip_json(&["route", "show", "default"]);
        assert_eq!(r[0]["gateway"], "10.61.0.1", "{r}");
        let hosts = env.node_veths();
        assert_eq!(hosts.len(), 1, "{hosts:?}");
        let h = env.node.ip_json(&["addr", "show", "dev", &hosts[0]]);
        assert!(h[0]["addr_info"].to_string().contains("10.61.0.1"), "{h}");

        // Real traffic: ping to the gateway, TCP both ways.
        env.node.wait_links_operational();
        pod.wait_links_operational();
        pod.exec(&["ping", "-c", "1", "-W", "2", "10.61.0.1"]);
        assert_eq!(tcp_exchange(&env.node, &pod, &pod_ip, 7001), "10.61.0.1");
        assert_eq!(tcp_exchange(&pod, &env.node, "10.61.0.1", 7002), pod_ip);

        if cni_spec::version::at_least(v, "0.4.0") {
            let mut with_prev = conf.clone();
            with_prev["prevResult"] = res.clone();
            env.call("CHECK", "ctr-a", &pod.path(), &with_prev).ok();
            // CHECK notices a missing interface.
            pod.exec(&["ip", "link", "set", "eth0", "name", "eth9"]);
            assert_eq!(env.call("CHECK", "ctr-a", &pod.path(), &with_prev).err_code(), 999);
            pod.exec(&["ip", "link", "set", "eth9", "name", "eth0"]);
        }
        if cni_spec::version::at_least(v, "1.1.0") {
            env.call("STATUS", "", Path::new(""), &conf).ok();
            // GC with this attachment still valid keeps its address.
            let mut gc = conf.clone();
            gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-a", "ifname": "eth0"}]);
            env.call("GC", "", Path::new(""), &gc).ok();
            assert_eq!(env.allocated(), vec![pod_ip.clone()]);
        }

        env.call("DEL", "ctr-a", &pod.path(), &conf).ok();
        env.call("DEL", "ctr-a", &pod.path(), &conf).ok();
        assert!(env.node_veths().is_empty());
        assert!(!pod.link_names().iter().any(|n| n == "eth0"));
        assert!(env.allocated().is_empty());
        let left = env.node.ip_json(&["route", "show", "table", "all"]).to_string();
        assert!(!left.contains(&pod_ip) && !left.contains("10.61.0.1"), "{left}");
    });
}

#[test]
fn gc_releases_stale_addresses() {
    let env = Env::new("p2pg");
    let pod = TestNs::new("p2pq");
    let conf = env.conf("1.1.0", "10.62.0.0/24");
    env.call("ADD", "ctr-g", &pod.path(), &conf).ok();
    assert_eq!(env.allocated().len(), 1);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    env.call("GC", "", Path::new(""), &gc).ok();
    assert!(env.allocated().is_empty());
    env.call("DEL", "ctr-g", &pod.path(), &conf).ok();
    assert!(env.node_veths().is_empty());
}

#[test]
fn bad_input_leaves_nothing() {
    let env = Env::new("p2pe");
    let pod = TestNs::new("p2pf");
    // No IPAM section: invalid configuration (code 7).
    let mut conf = env.conf("1.0.0", "10.63.0.0/24");
    let no_ipam = {
        conf.as_object_mut().map(|o| o.remove("ipam"));
        conf.clone()
    };
    assert_eq!(env.call("ADD", "ctr-e", &pod.path(), &no_ipam).err_code(), 7);
    // A pod namespace that does not exist: code 3, no address taken.
    let conf = env.conf("1.0.0", "10.63.0.0/24");
    let gone = Path::new("/run/netns/p2p-no-such-namespace");
    assert_eq!(env.call("ADD", "ctr-e", gone, &conf).err_code(), 3);
    // The pod already has an `eth0`: setup fails after IPAM, and both the
    // pair and the address are undone.
    pod.exec(&["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "x0"]);
    assert_ne!(env.call("ADD", "ctr-e", &pod.path(), &conf).code, 0);
    assert!(env.allocated().is_empty());
    assert!(env.node_veths().is_empty());
}
