//! loopback in real namespaces, every spec version.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use testutil::{per_version, run_plugin, Call, PluginDir, TestNs};

fn conf(v: &str) -> String {
    format!(r#"{{"cniVersion":"{v}","name":"lonet","type":"loopback"}}"#)
}

fn lo_state(pod: &TestNs) -> (bool, Vec<String>) {
    let links = pod.ip_json(&["addr", "show", "lo"]);
    let lo = &links[0];
    let up = lo["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"));
    let addrs = lo["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| format!("{}/{}", x["local"].as_str().unwrap_or(""), x["prefixlen"]))
                .collect()
        })
        .unwrap_or_default();
    (up, addrs)
}

per_version!(add_check_del_del_every_version, |v| {
    let bin = PluginDir::install(std::path::Path::new(env!("CARGO_BIN_EXE_rcni")));
    let node = TestNs::new("lon");
    let pod = TestNs::new("lop");
    pod.exec(&["ip", "link", "set", "lo", "down"]);
    assert!(!lo_state(&pod).0);
    let add = Call::new("ADD", "ctr1", &pod.path(), &conf(v)).ifname("lo");
    let res = run_plugin(bin.path(), "loopback", &add, Some(node.ns())).ok();
    assert_eq!(res["cniVersion"], v);
    let (up, addrs) = lo_state(&pod);
    assert!(up, "lo is up after ADD");
    assert!(addrs.contains(&"127.0.0.1/8".to_string()), "{addrs:?}");
    if testutil::is_legacy(v) {
        assert_eq!(res["ip4"]["ip"], "127.0.0.1/8");
        assert_eq!(res["ip6"]["ip"], "::1/128");
    } else {
        assert_eq!(res["interfaces"][0]["name"], "lo");
        assert_eq!(res["ips"][0]["address"], "127.0.0.1/8");
        assert_eq!(res["ips"][1]["address"], "::1/128");
    }

    if testutil::has_check(v) {
        let mut with_prev: serde_json::Value = serde_json::from_str(&conf(v)).expect("conf");
        with_prev["prevResult"] = res.clone();
        let check = Call::new("CHECK", "ctr1", &pod.path(), &with_prev.to_string()).ifname("lo");
        run_plugin(bin.path(), "loopback", &check, Some(node.ns())).ok();
    }

    let del = Call::new("DEL", "ctr1", &pod.path(), &conf(v)).ifname("lo");
    run_plugin(bin.path(), "loopback", &del, Some(node.ns())).ok();
    assert!(!lo_state(&pod).0, "lo is down after DEL");
    run_plugin(bin.path(), "loopback", &del, Some(node.ns())).ok();
    // containerd's second DEL: no netns at all.
    run_plugin(
        bin.path(),
        "loopback",
        &del.clone().netns(""),
        Some(node.ns()),
    )
    .ok();
    // A netns that no longer exists.
    let gone = del.clone().netns("/run/netns/rcni-test-does-not-exist");
    run_plugin(bin.path(), "loopback", &gone, Some(node.ns())).ok();
});

#[test]
fn check_fails_when_lo_is_down() {
    let bin = PluginDir::install(std::path::Path::new(env!("CARGO_BIN_EXE_rcni")));
    let pod = TestNs::new("loc");
    pod.exec(&["ip", "link", "set", "lo", "down"]);
    let c = r#"{"cniVersion":"1.0.0","name":"lonet","type":"loopback","prevResult":{"cniVersion":"1.0.0"}}"#;
    let check = Call::new("CHECK", "ctr1", &pod.path(), c).ifname("lo");
    let out = run_plugin(bin.path(), "loopback", &check, None);
    assert_ne!(out.code, 0);
    assert!(out.json()["msg"].as_str().unwrap_or("").contains("down"));
}

#[test]
fn add_with_missing_netns_is_an_error_object() {
    let bin = PluginDir::install(std::path::Path::new(env!("CARGO_BIN_EXE_rcni")));
    let add = Call::new(
        "ADD",
        "ctr1",
        std::path::Path::new("/run/netns/rcni-test-nope"),
        &conf("1.0.0"),
    );
    let out = run_plugin(bin.path(), "loopback", &add, None);
    assert_eq!(out.err_code(), 3);
}

#[test]
fn version_answers_every_spec_version() {
    let bin = PluginDir::install(std::path::Path::new(env!("CARGO_BIN_EXE_rcni")));
    let call = Call::new("VERSION", "", std::path::Path::new(""), "");
    let v = run_plugin(bin.path(), "loopback", &call, None).ok();
    let got: Vec<&str> = v["supportedVersions"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|x| x.as_str())
        .collect();
    assert_eq!(got, testutil::ALL_SPEC_VERSIONS);
}

/// In a chain, loopback passes the previous result through untouched, and
/// without IPv6 in the sandbox it reports only 127.0.0.1/8.
#[test]
fn chained_add_passes_prev_result_through() {
    let bin = PluginDir::install(std::path::Path::new(env!("CARGO_BIN_EXE_rcni")));
    let pod = TestNs::new("lch");
    let prev = serde_json::json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": pod.path().display().to_string()}],
        "ips": [{"address": "10.9.8.7/24", "interface": 0}]
    });
    let c = serde_json::json!({"cniVersion": "1.0.0", "name": "lonet", "type": "loopback", "prevResult": prev});
    let add = Call::new("ADD", "ctr1", &pod.path(), &c.to_string()).ifname("lo");
    let res = run_plugin(bin.path(), "loopback", &add, None).ok();
    assert_eq!(res["ips"][0]["address"], "10.9.8.7/24", "{res}");
    assert_eq!(res["interfaces"][0]["name"], "eth0", "{res}");
    assert_eq!(res["ips"].as_array().map(Vec::len), Some(1), "{res}");
    assert!(lo_state(&pod).0, "lo is still brought up");

    let pod = TestNs::new("lv4");
    pod.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    pod.exec(&["sysctl", "-qw", "net.ipv6.conf.lo.disable_ipv6=1"]);
    let add = Call::new("ADD", "ctr2", &pod.path(), &conf("1.0.0")).ifname("lo");
    let res = run_plugin(bin.path(), "loopback", &add, None).ok();
    let ips: Vec<&str> = res["ips"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["address"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ips, ["127.0.0.1/8"], "{res}");
}
