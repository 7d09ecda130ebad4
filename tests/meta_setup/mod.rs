//! Shared setup of the meta-plugin tests (tuning, sbr, bandwidth): a node
//! namespace and a pod namespace joined by a veth pair with addresses, and
//! a hand-written prevResult describing it, as bridge/ptp would report.

#![allow(dead_code)]

use serde_json::Value;
use testutil::{unique, TestNs};

pub struct Pair {
    pub node: TestNs,
    pub pod: TestNs,
    /// Host-side veth name (in `node`).
    pub host_if: String,
    /// Container-side name (in `pod`).
    pub pod_if: String,
    pub node_ip: String,
    pub pod_ip: String,
    pub prefix: u8,
}

impl Pair {
    /// node:`vh…` 10.77.0.1/24 <-> pod:`eth0` 10.77.0.2/24, both up, with a
    /// default route in the pod via the node.
    pub fn new(tag: &str) -> Pair {
        let node = TestNs::new(&format!("{tag}n"));
        let pod = TestNs::new(&format!("{tag}p"));
        let host_if = unique("vh");
        let pod_if = "eth0".to_string();
        node.exec(&[
            "ip",
            "link",
            "add",
            &host_if,
            "type",
            "veth",
            "peer",
            "name",
            &pod_if,
            "netns",
            pod.name(),
        ]);
        let p = Pair {
            node,
            pod,
            host_if,
            pod_if,
            node_ip: "10.77.0.1".into(),
            pod_ip: "10.77.0.2".into(),
            prefix: 24,
        };
        let n_cidr = format!("{}/{}", p.node_ip, p.prefix);
        let p_cidr = format!("{}/{}", p.pod_ip, p.prefix);
        p.node
            .exec(&["ip", "addr", "add", &n_cidr, "dev", &p.host_if]);
        p.node.exec(&["ip", "link", "set", &p.host_if, "up"]);
        p.pod
            .exec(&["ip", "addr", "add", &p_cidr, "dev", &p.pod_if]);
        p.pod.exec(&["ip", "link", "set", &p.pod_if, "up"]);
        p.pod
            .exec(&["ip", "route", "add", "default", "via", &p.node_ip]);
        p
    }

    pub fn mac_of(ns: &TestNs, ifname: &str) -> String {
        ns.ip_json(&["link", "show", ifname])[0]["address"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The prevResult bridge/ptp would have produced, in version `v`.
    pub fn prev_result(&self, v: &str) -> Value {
        let mut r = cni_spec::Result::new(v);
        r.interfaces.push(cni_spec::Interface {
            name: self.host_if.clone(),
            mac: Self::mac_of(&self.node, &self.host_if),
            ..Default::default()
        });
        r.interfaces.push(cni_spec::Interface {
            name: self.pod_if.clone(),
            mac: Self::mac_of(&self.pod, &self.pod_if),
            sandbox: self.pod.path().display().to_string(),
            ..Default::default()
        });
        r.ips.push(cni_spec::IpConfig {
            interface: Some(1),
            address: format!("{}/{}", self.pod_ip, self.prefix)
                .parse()
                .expect("cidr"),
            gateway: Some(self.node_ip.parse().expect("ip")),
        });
        r.routes.push(cni_spec::Route::new(
            "0.0.0.0/0".parse().expect("net"),
            Some(self.node_ip.parse().expect("ip")),
        ));
        r.to_value(v).expect("prevResult in version")
    }

    /// `conf` with `cniVersion`, `name` and `prevResult` filled in.
    pub fn conf(&self, v: &str, name: &str, ty: &str, mut extra: Value) -> String {
        extra["cniVersion"] = v.into();
        extra["name"] = name.into();
        extra["type"] = ty.into();
        extra["prevResult"] = self.prev_result(v);
        extra.to_string()
    }
}

pub use testutil::has_check;
