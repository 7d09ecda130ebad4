//! sbr in real namespaces, every spec version: a per-interface table, a
//! `from <ip>` rule, the interface's routes moved into the table, traffic
//! sourced from the IP following it, and DEL taking it all away.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod meta_setup;

use meta_setup::{has_check, Pair};
use serde_json::{json, Value};
use testutil::{command_in, per_version, run_plugin, Call, PluginDir, TestNs};

/// Rules other than the three defaults, as (src, table).
fn extra_rules(ns: &TestNs) -> Vec<(String, String)> {
    ns.ip_json(&["rule", "show"])
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| r["src"] != "all")
                .map(|r| {
                    (
                        r["src"].as_str().unwrap_or("").to_string(),
                        r["table"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Routes of `table` as "dst via gw dev" strings.
fn routes(ns: &TestNs, table: &str) -> Vec<String> {
    let out = command_in(Some(ns.ns()), "ip")
        .args(["-j", "-4", "route", "show", "table", table])
        .output()
        .expect("ip route");
    // A table that never existed is an error: report it as empty.
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]));
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    format!(
                        "{} via {} dev {}",
                        r["dst"].as_str().unwrap_or(""),
                        r["gateway"].as_str().unwrap_or("-"),
                        r["dev"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One ping from the pod to the node, optionally sourced from `src`.
fn ping_from(p: &Pair, src: Option<&str>) -> bool {
    let mut cmd = command_in(Some(p.pod.ns()), "ping");
    cmd.args(["-c", "1", "-W", "1"]);
    if let Some(s) = src {
        cmd.args(["-I", s]);
    }
    cmd.arg(&p.node_ip)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn route_get_from(pod: &TestNs, from: &str) -> Value {
    pod.ip_json(&["route", "get", "192.0.2.77", "from", from])[0].clone()
}

per_version!(add_check_del_del_every_version, |v| {
    let bin = PluginDir::install(std::path::Path::new(env!("CARGO_BIN_EXE_rcni")));
    let p = Pair::new("sb");
    assert!(extra_rules(&p.pod).is_empty());
    let main_before = routes(&p.pod, "main");
    assert_eq!(main_before.len(), 2, "{main_before:?}");

    let conf = p.conf(v, "sbrnet", "sbr", json!({}));
    let add = Call::new("ADD", "ctr1", &p.pod.path(), &conf);
    let res = run_plugin(bin.path(), "sbr", &add, Some(p.node.ns())).ok();
    assert_eq!(res["cniVersion"], v);
    if !testutil::is_legacy(v) {
        assert_eq!(res["ips"][0]["address"], "10.77.0.2/24");
        assert_eq!(res["interfaces"][1]["name"], "eth0");
    } else {
        assert_eq!(res["ip4"]["ip"], "10.77.0.2/24");
    }

    // Rule and table 100 (the first free one).
    assert_eq!(
        extra_rules(&p.pod),
        vec![("10.77.0.2".to_string(), "100".to_string())]
    );
    let mut t100 = routes(&p.pod, "100");
    t100.sort();
    assert_eq!(
        t100,
        vec![
            "10.77.0.0/24 via - dev eth0",
            "default via 10.77.0.1 dev eth0"
        ]
    );
    // The routes were moved: main no longer routes via eth0.
    assert!(
        routes(&p.pod, "main").is_empty(),
        "{:?}",
        routes(&p.pod, "main")
    );

    // A packet sourced from the pod IP follows table 100 …
    let got = route_get_from(&p.pod, "10.77.0.2");
    assert_eq!(got["table"], "100", "{got}");
    assert_eq!(got["gateway"], "10.77.0.1");
    assert_eq!(got["dev"], "eth0");
    // … and so does real traffic, while unsourced traffic has no route.
    assert!(ping_from(&p, Some("10.77.0.2")));
    assert!(!ping_from(&p, None));

    if has_check(v) {
        let check = Call::new("CHECK", "ctr1", &p.pod.path(), &conf);
        run_plugin(bin.path(), "sbr", &check, Some(p.node.ns())).ok();
        p.pod
            .exec(&["ip", "rule", "del", "from", "10.77.0.2", "table", "100"]);
        let out = run_plugin(bin.path(), "sbr", &check, Some(p.node.ns()));
        assert_ne!(out.code, 0);
        assert!(out.stdout.contains("10.77.0.2"), "{}", out.stdout);
        p.pod
            .exec(&["ip", "rule", "add", "from", "10.77.0.2", "table", "100"]);
    }

    let del = Call::new("DEL", "ctr1", &p.pod.path(), &conf);
    run_plugin(bin.path(), "sbr", &del, Some(p.node.ns())).ok();
    assert!(extra_rules(&p.pod).is_empty(), "{:?}", extra_rules(&p.pod));
    assert!(
        routes(&p.pod, "100").is_empty(),
        "{:?}",
        routes(&p.pod, "100")
    );
    run_plugin(bin.path(), "sbr", &del, Some(p.node.ns())).ok();
    run_plugin(bin.path(), "sbr", &del.clone().netns(""), Some(p.node.ns())).ok();
    let gone = del.clone().netns("/run/netns/rcni-test-does-not-exist");
    run_plugin(bin.path(), "sbr", &gone, Some(p.node.ns())).ok();
});

#[test]
fn skips_tables_in_use_and_pins_a_table() {
    let bin = PluginDir::install(std::path::Path::new(env!("CARGO_BIN_EXE_rcni")));
    let p = Pair::new("st");
    // Table 100 has a rule, 101 a route: sbr must take 102.
    p.pod
        .exec(&["ip", "rule", "add", "from", "192.0.2.1", "table", "100"]);
    p.pod.exec(&[
        "ip",
        "route",
        "add",
        "198.51.100.0/24",
        "dev",
        "eth0",
        "table",
        "101",
    ]);
    let conf = p.conf("1.1.0", "sbrnet", "sbr", json!({}));
    let add = Call::new("ADD", "ctr1", &p.pod.path(), &conf);
    run_plugin(bin.path(), "sbr", &add, Some(p.node.ns())).ok();
    assert!(extra_rules(&p.pod).contains(&("10.77.0.2".to_string(), "102".to_string())));
    assert_eq!(route_get_from(&p.pod, "10.77.0.2")["table"], "102");
    let del = Call::new("DEL", "ctr1", &p.pod.path(), &conf);
    run_plugin(bin.path(), "sbr", &del, Some(p.node.ns())).ok();
    // Only what sbr made is gone.
    assert_eq!(
        extra_rules(&p.pod),
        vec![("192.0.2.1".to_string(), "100".to_string())]
    );
    assert_eq!(
        routes(&p.pod, "101"),
        vec!["198.51.100.0/24 via - dev eth0"]
    );
    assert!(routes(&p.pod, "102").is_empty());

    // A pinned table: only the rule is added; the table's contents are the
    // user's and survive DEL.
    let p = Pair::new("sp");
    p.pod.exec(&[
        "ip",
        "route",
        "add",
        "default",
        "via",
        "10.77.0.1",
        "dev",
        "eth0",
        "table",
        "500",
    ]);
    let conf = p.conf("1.1.0", "sbrnet", "sbr", json!({"table": 500}));
    let add = Call::new("ADD", "ctr1", &p.pod.path(), &conf);
    run_plugin(bin.path(), "sbr", &add, Some(p.node.ns())).ok();
    assert_eq!(
        extra_rules(&p.pod),
        vec![("10.77.0.2".to_string(), "500".to_string())]
    );
    assert_eq!(routes(&p.pod, "main").len(), 2, "main untouched");
    assert_eq!(route_get_from(&p.pod, "10.77.0.2")["table"], "500");
    let check = Call::new("CHECK", "ctr1", &p.pod.path(), &conf);
    run_plugin(bin.path(), "sbr", &check, Some(p.node.ns())).ok();
    let del = Call::new("DEL", "ctr1", &p.pod.path(), &conf);
    run_plugin(bin.path(), "sbr", &del, Some(p.node.ns())).ok();
    assert!(extra_rules(&p.pod).is_empty());
    assert_eq!(
        routes(&p.pod, "500"),
        vec!["default via 10.77.0.1 dev eth0"]
    );
}

#[test]
fn malformed_config_is_refused_and_changes_nothing() {
    let bin = PluginDir::install(std::path::Path::new(env!("CARGO_BIN_EXE_rcni")));
    let p = Pair::new("sm");
    let main_before = routes(&p.pod, "main");
    for extra in [
        json!({"table": "x"}),
        json!({"table": -1}),
        json!({"gateways": ["not-an-ip"]}),
        json!({"gateways": ["10.0.0.1", "10.0.0.2"]}),
    ] {
        let conf = p.conf("1.0.0", "sbrnet", "sbr", extra.clone());
        let add = Call::new("ADD", "ctr1", &p.pod.path(), &conf);
        assert_eq!(
            run_plugin(bin.path(), "sbr", &add, Some(p.node.ns())).err_code(),
            7,
            "{extra}"
        );
    }
    // Not chained, or a prevResult without IPs.
    let plain = json!({"cniVersion":"1.0.0","name":"sbrnet","type":"sbr"});
    let add = Call::new("ADD", "ctr1", &p.pod.path(), &plain.to_string());
    assert_eq!(
        run_plugin(bin.path(), "sbr", &add, Some(p.node.ns())).err_code(),
        7
    );
    let mut no_ips = plain.clone();
    no_ips["prevResult"] = json!({"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}]});
    let add = Call::new("ADD", "ctr1", &p.pod.path(), &no_ips.to_string());
    assert_eq!(
        run_plugin(bin.path(), "sbr", &add, Some(p.node.ns())).err_code(),
        7
    );
    // An interface that is not there: the error leaves nothing behind.
    let conf = p.conf("1.0.0", "sbrnet", "sbr", json!({}));
    let add = Call::new("ADD", "ctr1", &p.pod.path(), &conf).ifname("eth9");
    let out = run_plugin(bin.path(), "sbr", &add, Some(p.node.ns()));
    assert_ne!(out.code, 0);

    assert!(extra_rules(&p.pod).is_empty(), "{:?}", extra_rules(&p.pod));
    assert_eq!(routes(&p.pod, "main"), main_before);
}
