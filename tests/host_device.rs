//! host-device in real namespaces: a veth end in the node namespace plays
//! the host device (its peer, in a "far" namespace, is the wire's other
//! side). Every spec version, every selector, real TCP over the moved
//! device, DEL handing it back, failures leaving the node as it was, and
//! the Debian reference binary run the same way for comparison.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::ops::Deref;
use std::path::Path;
use testutil::{merge, per_version, tcp_exchange, Call, Outcome, PluginEnv, TestNs};

const REFERENCE: &str = "/usr/lib/cni/host-device";

/// host-device in a node namespace; the devices are veth ends whose peers
/// sit in the "far" namespace.
struct Env {
    kit: PluginEnv,
    far: TestNs,
}

impl Deref for Env {
    type Target = PluginEnv;
    fn deref(&self) -> &PluginEnv {
        &self.kit
    }
}

impl Env {
    fn new(tag: &str) -> Env {
        let kit = testutil::plugin_env!("host-device", tag);
        Env {
            kit,
            far: TestNs::new("far"),
        }
    }

    /// A veth end called `name` in the node whose peer sits in the far
    /// namespace with `far_addr` (CIDR); returns the device's MAC.
    fn device(&self, name: &str, far_addr: &str) -> String {
        let peer = testutil::unique("pr");
        self.node.add_veth(name, &self.far, &peer);
        self.node.exec(&["ip", "link", "set", name, "up"]);
        self.far
            .exec(&["ip", "addr", "add", far_addr, "dev", &peer]);
        self.far.exec(&["ip", "link", "set", &peer, "up"]);
        link(&self.node, name)["address"]
            .as_str()
            .expect("mac")
            .to_string()
    }

    fn conf(&self, v: &str, selector: Value, subnet: Option<&str>) -> Value {
        let mut c = self.base_conf(v);
        merge(&mut c, &selector);
        if let Some(subnet) = subnet {
            c["ipam"] = self.host_local(subnet);
            c["ipam"]["rangeStart"] = json!(subnet.replace(".0/24", ".10"));
            c["dns"] = json!({"nameservers": ["10.1.1.1"]});
        }
        c
    }

    /// Runs `plugin` in the node through `ip netns exec`, which also mounts
    /// a sysfs of the node namespace (what `kernelpath` and `pciBusID` read).
    fn run(&self, plugin: &str, call: &Call) -> Outcome {
        let prog = if plugin == "reference" {
            Path::new(REFERENCE).to_path_buf()
        } else {
            self.bin.path().join(plugin)
        };
        self.ip_netns_exec(&prog, call)
    }

    /// Runs the plugin as [`Env::run`] does, with a fake auxiliary bus: in
    /// the private mount namespace of `ip netns exec`, a tmpfs covers
    /// `/sys/bus` (this kernel has no auxiliary bus) holding
    /// `auxiliary/devices/<id>/net/<netdev>` for each `(id, netdev)` (no
    /// `net/` entry for `None`). The plugin reads its fixed sysfs paths; the
    /// machine's /sys is never touched, the tmpfs vanishes with the process.
    fn run_with_aux(&self, call: &Call, aux: &[(&str, Option<&str>)]) -> Outcome {
        let mut script = String::from("set -e\nmount -t tmpfs rcni-test-sys /sys/bus\n");
        for (id, dev) in aux {
            let dir = format!("/sys/bus/auxiliary/devices/{id}/net");
            script.push_str(&format!("mkdir -p '{dir}'\n"));
            if let Some(d) = dev {
                script.push_str(&format!("mkdir '{dir}/{d}'\n"));
            }
        }
        script.push_str("exec \"$0\"\n");
        let prog = self.bin.path().join("host-device").display().to_string();
        self.ip_netns_exec_argv(
            &[
                "/usr/bin/unshare".into(),
                "--mount".into(),
                "--propagation".into(),
                "private".into(),
                "/bin/sh".into(),
                "-c".into(),
                script,
                prog,
            ],
            call,
        )
    }

    fn call(&self, cmd: &str, pod: &Path, ifname: &str, conf: &Value) -> Outcome {
        self.run(
            "host-device",
            &Call::new(cmd, "ctr1", pod, &conf.to_string()).ifname(ifname),
        )
    }
}

/// `ip -d link show NAME` as JSON (Null when absent).
fn link(ns: &TestNs, name: &str) -> Value {
    ns.ip_json(&["-d", "link", "show"])
        .as_array()
        .and_then(|a| a.iter().find(|l| l["ifname"] == name).cloned())
        .unwrap_or(Value::Null)
}

fn is_up(l: &Value) -> bool {
    l["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"))
}

fn addrs(ns: &TestNs, dev: &str) -> Vec<String> {
    ns.ip_json(&["addr", "show", "dev", dev])
        .as_array()
        .and_then(|a| a.first().cloned())
        .and_then(|l| l["addr_info"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
        .collect()
}

per_version!(
    moves_the_device_in_and_back_for_every_version_and_selector,
    |v| {
        let env = Env::new("hd");
        let i = testutil::ALL_SPEC_VERSIONS
            .iter()
            .position(|x| *x == v)
            .expect("a spec version") as u16
            + 1;
        let port = 40100 + i;
        let subnet = format!("10.77.{i}.0/24");
        let far_ip = format!("10.77.{i}.1");
        // Names sort before "lo": the kernelpath lookup takes the first
        // virtual device listed in the node's sysfs.
        let dev = testutil::unique("hd");
        let mac = env.device(&dev, &format!("{far_ip}/24"));
        let pod = TestNs::new("pod");
        let selector = match i % 3 {
            0 => json!({"device": dev}),
            1 => json!({"hwaddr": mac.to_uppercase()}),
            _ => json!({"kernelpath": "/sys/devices/virtual"}),
        };
        eprintln!("   selector {selector}");
        let conf = env.conf(v, selector, Some(&subnet));

        let r = env.call("ADD", &pod.path(), "net1", &conf).ok();
        assert_eq!(r["cniVersion"], v);
        let pod_ip = format!("10.77.{i}.10");
        if testutil::is_legacy(v) {
            assert_eq!(r["ip4"]["ip"], format!("{pod_ip}/24"), "{r}");
        } else {
            assert_eq!(
                r["interfaces"],
                json!([{"name": "net1", "mac": mac, "sandbox": pod.path()}]),
                "{r}"
            );
            assert_eq!(r["ips"][0]["address"], format!("{pod_ip}/24"));
            assert_eq!(r["ips"][0]["interface"], 0);
        }
        assert_eq!(r["dns"]["nameservers"], json!(["10.1.1.1"]));

        // Gone from the node, in the pod as net1: up, addressed, alias set.
        assert!(link(&env.node, &dev).is_null(), "still on the node");
        let l = link(&pod, "net1");
        assert!(is_up(&l), "{l}");
        assert_eq!(l["address"], mac.as_str());
        assert_eq!(l["ifalias"], dev.as_str(), "{l}");
        assert_eq!(addrs(&pod, "net1"), vec![format!("{pod_ip}/24")]);
        assert_eq!(env.allocated(), vec![pod_ip.clone()]);

        // Real traffic over the moved device, both ways.
        assert_eq!(tcp_exchange(&pod, &env.far, &far_ip, port), pod_ip);
        assert_eq!(tcp_exchange(&env.far, &pod, &pod_ip, port), far_ip);

        if !(testutil::is_legacy(v) || v.starts_with("0.3")) {
            let mut c = conf.clone();
            c["prevResult"] = r.clone();
            env.call("CHECK", &pod.path(), "net1", &c).ok();
            // A different MAC in prevResult is caught.
            c["prevResult"]["interfaces"][0]["mac"] = json!("02:00:00:00:00:01");
            env.call("CHECK", &pod.path(), "net1", &c).err_code();
        }

        env.call("DEL", &pod.path(), "net1", &conf).ok();
        // Back under its name, down and without the alias, as the
        // reference leaves it; the address was released.
        let l = link(&env.node, &dev);
        assert!(!l.is_null(), "not back on the node");
        assert!(!is_up(&l), "{l}");
        assert!(l.get("ifalias").is_none(), "{l}");
        assert_eq!(l["address"], mac.as_str());
        assert!(link(&pod, "net1").is_null());
        assert!(env.allocated().is_empty());

        // Idempotent: again, and as containerd's second DEL (no netns).
        env.call("DEL", &pod.path(), "net1", &conf).ok();
        env.call("DEL", Path::new(""), "net1", &conf).ok();
        assert!(!link(&env.node, &dev).is_null());
        env.node.exec(&["ip", "link", "del", &dev]);
    }
);

#[test]
fn same_result_and_kernel_state_as_the_reference() {
    // scripts/dev.sh setup installs the reference plugins; without them
    // this comparison must fail, not pass unseen.
    assert!(
        Path::new(REFERENCE).exists(),
        "{REFERENCE} missing: apt-get install containernetworking-plugins"
    );
    let env = Env::new("hdr");
    let mut seen = Vec::new();
    for plugin in ["reference", "host-device"] {
        let dev = testutil::unique("hd");
        let mac = env.device(&dev, "10.78.0.1/24");
        let pod = TestNs::new("pod");
        let conf = env.conf("1.0.0", json!({"device": dev}), None);
        let call = |cmd: &str| {
            env.run(
                plugin,
                &Call::new(cmd, "ctr1", &pod.path(), &conf.to_string()).ifname("net1"),
            )
        };
        let r = call("ADD").ok();
        assert_eq!(
            r,
            json!({"cniVersion": "1.0.0",
                   "interfaces": [{"name": "net1", "mac": mac, "sandbox": pod.path()}],
                   "dns": {}}),
            "{plugin}"
        );
        let in_pod = is_up(&link(&pod, "net1"));
        call("DEL").ok();
        let back = link(&env.node, &dev);
        seen.push((plugin, in_pod, back.is_null(), is_up(&back)));
        env.node.exec(&["ip", "link", "del", &dev]);
    }
    // Up in the pod; back on the node after DEL, down: as the reference.
    assert_eq!(seen[0].1, seen[1].1, "{seen:?}");
    assert_eq!(seen[0].2, seen[1].2, "{seen:?}");
    assert_eq!(seen[0].3, seen[1].3, "{seen:?}");
    assert_eq!(seen[1], ("host-device", true, false, false));
}

#[test]
fn selectors_matching_nothing_change_nothing() {
    let env = Env::new("hdn");
    let dev = testutil::unique("hd");
    env.device(&dev, "10.79.0.1/24");
    let pod = TestNs::new("pod");
    let node_before = env.node.link_names();
    let pod_before = pod.link_names();
    // A PCI device with a (non-DPDK) driver but no network interface.
    let non_net_pci = std::fs::read_dir("/sys/bus/pci/devices")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.join("driver").exists()
                && !p.join("net").exists()
                && !std::fs::read_dir(p)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|e| e.path().join("net").exists())
        })
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let mut cases = vec![
        // A device that is not there: an I/O failure (5); a selector that
        // cannot name one: a bad config (7).
        (json!({"device": "nosuchdev0"}), "Link not found", 5),
        (json!({"hwaddr": "02:de:ad:be:ef:00"}), "failed to find", 5),
        (json!({"hwaddr": "not-a-mac"}), "failed to parse MAC", 7),
        (json!({"kernelpath": "/tmp"}), "must be absolute", 7),
        (
            json!({"kernelpath": "/sys/devices/nosuchdir"}),
            "failed to find network devices",
            5,
        ),
        (
            json!({"pciBusID": "0000:99:1f.7"}),
            "error with host device",
            5,
        ),
        (
            json!({"runtimeConfig": {"deviceID": "0000:99:1f.7"}}),
            "not found or unsupported",
            5,
        ),
    ];
    match &non_net_pci {
        Some(p) => cases.push((json!({"pciBusID": p}), "no net directory", 5)),
        None => eprintln!("skipped: no PCI device without a netdev on this machine"),
    }
    for (sel, want, code) in cases {
        let conf = env.conf("1.0.0", sel.clone(), Some("10.79.0.0/24"));
        let out = env.call("ADD", &pod.path(), "net1", &conf);
        assert_eq!(out.err_code(), code, "{sel}: {}", out.stdout);
        assert!(out.stdout.contains(want), "{sel}: {}", out.stdout);
        assert_eq!(env.node.link_names(), node_before, "{sel}");
        assert_eq!(pod.link_names(), pod_before, "{sel}");
        assert!(is_up(&link(&env.node, &dev)), "{sel}");
        assert!(env.allocated().is_empty(), "{sel}");
    }
}

#[test]
fn no_selector_is_invalid_config_and_the_first_of_several_wins() {
    let env = Env::new("hds");
    let dev = testutil::unique("hd");
    let mac = env.device(&dev, "10.80.0.1/24");
    let pod = TestNs::new("pod");
    let before = env.node.link_names();
    for sel in [json!({}), json!({"device": "", "hwaddr": null})] {
        let conf = env.conf("1.0.0", sel.clone(), None);
        let out = env.call("ADD", &pod.path(), "net1", &conf);
        assert_eq!(out.err_code(), 7, "{sel}: {}", out.stdout);
        assert!(out.stdout.contains("specify"), "{}", out.stdout);
    }
    // Several selectors: the reference's order decides (device first), so
    // a runtime's deviceID next to a configured device does not matter.
    let several = json!({"device": dev, "hwaddr": "02:00:00:00:00:99",
        "kernelpath": "/sys/devices/virtual/net/nope",
        "runtimeConfig": {"deviceID": "0000:00:01.0"}});
    let conf = env.conf("1.0.0", several, None);
    let r = env.call("ADD", &pod.path(), "net1", &conf).ok();
    assert_eq!(r["interfaces"][0]["mac"], mac.to_lowercase(), "{r}");
    assert!(pod.link_names().contains(&"net1".to_string()));
    env.call("DEL", &pod.path(), "net1", &conf).ok();
    assert_eq!(env.node.link_names(), before);
    // A wrongly typed field is named; dpdkMode must be a boolean.
    for (sel, field) in [
        (json!({"device": 5}), "device"),
        (json!({"device": dev, "dpdkMode": "yes"}), "dpdkMode"),
    ] {
        let out = env.call("ADD", &pod.path(), "net1", &env.conf("1.0.0", sel, None));
        assert_eq!(out.err_code(), 7, "{}", out.stdout);
        assert!(out.stdout.contains(field), "{}", out.stdout);
    }
    assert_eq!(env.node.link_names(), before);
    assert_eq!(pod.link_names(), vec!["lo"]);
}

#[test]
fn dpdk_mode_leaves_the_device_alone() {
    // As the reference: with dpdkMode set (and no PCI address to decide
    // it) the device is someone else's business; ADD reports no interface.
    let env = Env::new("hdd");
    let dev = testutil::unique("hd");
    env.device(&dev, "10.81.0.1/24");
    let pod = TestNs::new("pod");
    let conf = env.conf("1.0.0", json!({"device": dev, "dpdkMode": true}), None);
    let r = env.call("ADD", &pod.path(), "net1", &conf).ok();
    assert_eq!(r, json!({"cniVersion": "1.0.0", "dns": {}}));
    assert!(is_up(&link(&env.node, &dev)));
    assert_eq!(pod.link_names(), vec!["lo"]);
    env.call("DEL", &pod.path(), "net1", &conf).ok();
    assert!(is_up(&link(&env.node, &dev)));
}

#[test]
fn del_succeeds_when_the_pod_namespace_is_gone() {
    let env = Env::new("hdg");
    let dev = testutil::unique("hd");
    env.device(&dev, "10.82.0.1/24");
    let pod = TestNs::new("pod");
    let path = pod.path();
    let conf = env.conf("1.0.0", json!({"device": dev}), Some("10.82.0.0/24"));
    env.call("ADD", &path, "net1", &conf).ok();
    assert_eq!(env.allocated().len(), 1);
    drop(pod);
    // A veth is virtual: the kernel destroyed it with the namespace (a
    // physical device would have gone back to the initial namespace).
    assert!(link(&env.node, &dev).is_null());
    env.call("DEL", &path, "net1", &conf).ok();
    env.call("DEL", Path::new(""), "net1", &conf).ok();
    assert!(env.allocated().is_empty(), "address released");
}

#[test]
fn failed_add_puts_the_device_back_as_it_was() {
    let env = Env::new("hdf");
    let dev = testutil::unique("hd");
    let mac = env.device(&dev, "10.83.0.1/24");
    let pod = TestNs::new("pod");
    let conf = env.conf("1.0.0", json!({"device": dev}), Some("10.83.0.0/24"));

    // A failure after IPAM and the move.
    let mut call = Call::new("ADD", "ctr1", &pod.path(), &conf.to_string()).ifname("net1");
    call.env
        .push(("RCNI_INJECT_FAILURE".into(), "after-setup".into()));
    env.run("host-device", &call).err_code();
    let l = link(&env.node, &dev);
    assert!(is_up(&l), "up again as before: {l}");
    assert_eq!(l["address"], mac.as_str());
    assert!(l.get("ifalias").is_none(), "{l}");
    assert_eq!(pod.link_names(), vec!["lo"]);
    assert!(env.allocated().is_empty(), "address released");

    // CNI_IFNAME already taken in the pod: refused inside the throwaway
    // namespace, nothing reaches the pod or stays renamed.
    pod.exec(&["ip", "link", "add", "net1", "type", "bridge"]);
    let out = env.call("ADD", &pod.path(), "net1", &conf);
    assert_ne!(out.code, 0, "{}", out.stdout);
    let l = link(&env.node, &dev);
    assert!(is_up(&l) && l.get("ifalias").is_none(), "{l}");
    assert_eq!(pod.link_names(), vec!["lo", "net1"]);
    // DEL of that foreign net1 (no alias) touches nothing.
    env.call("DEL", &pod.path(), "net1", &conf).err_code();
    assert_eq!(pod.link_names(), vec!["lo", "net1"]);
}

#[test]
fn node_name_may_exist_in_the_pod_and_ifname_on_the_node() {
    // The renames happen in a private namespace: a device called eth0 on
    // the node joins a pod that already has an eth0, and comes back even
    // though the node meanwhile has a net1 of its own.
    let env = Env::new("hdc");
    env.device("eth0", "10.84.0.1/24");
    let pod = TestNs::new("pod");
    pod.exec(&["ip", "link", "add", "eth0", "type", "bridge"]);
    let conf = env.conf("1.0.0", json!({"device": "eth0"}), Some("10.84.0.0/24"));
    env.call("ADD", &pod.path(), "net1", &conf).ok();
    env.node
        .exec(&["ip", "link", "add", "net1", "type", "bridge"]);
    assert_eq!(link(&pod, "net1")["ifalias"], "eth0");
    assert_eq!(
        tcp_exchange(&pod, &env.far, "10.84.0.1", 40200),
        "10.84.0.10"
    );
    env.call("DEL", &pod.path(), "net1", &conf).ok();
    assert!(!link(&env.node, "eth0").is_null());
    assert_eq!(pod.link_names(), vec!["lo", "eth0"]);
}

#[test]
fn auxiliary_bus_device_id_moves_its_netdev_in_and_back() {
    let env = Env::new("hda");
    let dev = testutil::unique("hd");
    let mac = env.device(&dev, "10.76.0.1/24");
    let pod = TestNs::new("pod");
    let id = "mlx5_core.sf.7";
    let empty = "mlx5_core.sf.8";
    let aux = [(id, Some(dev.as_str())), (empty, None)];
    // deviceID beats a configured pciBusID (which does not exist here).
    let conf = |device_id: &str| {
        env.conf(
            "1.1.0",
            json!({"pciBusID": "0000:99:1f.7", "runtimeConfig": {"deviceID": device_id}}),
            Some("10.76.0.0/24"),
        )
    };
    let call = |cmd: &str, conf: &Value| {
        env.run_with_aux(
            &Call::new(cmd, "ctr1", &pod.path(), &conf.to_string()).ifname("net1"),
            &aux,
        )
    };
    let node_before = env.node.link_names();

    // An auxiliary device without a netdev: refused, nothing moved.
    let out = call("ADD", &conf(empty));
    assert_eq!(out.err_code(), 999, "{}", out.stdout);
    assert!(
        out.stdout.contains("failed to find network device"),
        "{}",
        out.stdout
    );
    assert_eq!(env.node.link_names(), node_before);
    assert!(link(&pod, "net1").is_null());
    assert!(env.allocated().is_empty());

    // Without the fake bus the same ID is unknown.
    let c = conf(id);
    let out = env.call("ADD", &pod.path(), "net1", &c);
    assert_eq!(out.err_code(), 5, "{}", out.stdout);
    assert!(
        out.stdout.contains("not found or unsupported"),
        "{}",
        out.stdout
    );

    let r = call("ADD", &c).ok();
    assert_eq!(
        r["interfaces"],
        json!([{"name": "net1", "mac": mac, "sandbox": pod.path()}]),
        "{r}"
    );
    assert!(link(&env.node, &dev).is_null(), "still on the node");
    let l = link(&pod, "net1");
    assert!(is_up(&l), "{l}");
    assert_eq!(l["ifalias"], dev.as_str(), "{l}");
    assert_eq!(addrs(&pod, "net1"), vec!["10.76.0.10/24".to_string()]);
    assert_eq!(
        tcp_exchange(&pod, &env.far, "10.76.0.1", 40290),
        "10.76.0.10"
    );
    let mut chk = c.clone();
    chk["prevResult"] = r.clone();
    call("CHECK", &chk).ok();

    call("DEL", &c).ok();
    assert!(!link(&env.node, &dev).is_null(), "not back on the node");
    assert!(link(&pod, "net1").is_null());
    assert!(env.allocated().is_empty());
    call("DEL", &c).ok();
    env.node.exec(&["ip", "link", "del", &dev]);
}
