//! Masquerade: rule layout, idempotence, concurrency and real traffic.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Instant;

use ipnet::IpNet;
use nft::{rulesets::masq, Family, Nft};
use testutil::TestNs;

fn net(s: &str) -> IpNet {
    s.parse().expect("net")
}

#[test]
fn masquerade_rewrites_pod_traffic_to_the_node_address() {
    let t = common::Topo::new(41);
    let nft = Nft::open_in(t.node.ns()).expect("open");
    let listener = common::listen_tcp(&t.outside, &format!("{}:9000", t.outside_ip()));
    let to = format!("{}:9000", t.outside_ip());

    // Without masquerade the outside cannot answer (no route back).
    assert!(common::tcp_roundtrip(&t.pod, &listener, &to).is_none());

    masq::ensure(&nft, "net41", &[net("10.41.0.0/24")]).expect("ensure");
    let (peer, back) = common::tcp_roundtrip(&t.pod, &listener, &to).expect("masqueraded");
    assert_eq!(peer.ip().to_string(), t.node_out_side());
    assert_eq!(back, "pong");

    // Traffic inside the subnet is not masqueraded: the node itself sees
    // the pod's own address.
    let local = common::listen_tcp(&t.node, &format!("{}:9001", t.node_pod_side()));
    let (peer, _) = common::tcp_roundtrip(&t.pod, &local, &format!("{}:9001", t.node_pod_side()))
        .expect("inside subnet");
    assert_eq!(peer.ip().to_string(), t.pod_ip());

    // Removing the network's rules stops masquerading.
    masq::remove(&nft, "net41").expect("remove");
    assert!(masq::list(&nft).expect("list").is_empty());
    assert!(common::tcp_roundtrip(&t.pod, &listener, &to).is_none());
}

#[test]
fn ensure_is_idempotent_and_lists_and_removes_per_network() {
    let ns = TestNs::new("nmq");
    let nft = Nft::open_in(ns.ns()).expect("open");
    let (a4, a6, b4) = (net("10.1.0.0/16"), net("fd00:1::/64"), net("10.2.0.0/16"));
    masq::ensure(&nft, "a", &[a4, a6]).expect("ensure a");
    masq::ensure(&nft, "a", &[a4, a6]).expect("ensure a again");
    masq::ensure(&nft, "b", &[net("10.2.3.4/16")]).expect("ensure b");
    let mut l = masq::list(&nft).expect("list");
    l.sort();
    assert_eq!(
        l,
        vec![("a".into(), a4), ("a".into(), a6), ("b".into(), b4)]
    );
    let rules = nft
        .rules(Family::Inet, masq::TABLE, Some(masq::CHAIN))
        .expect("rules");
    assert_eq!(rules.len(), 3);

    // Cross-check with the nft CLI.
    let text = ns.exec(&["nft", "list", "table", "inet", "rcni-nat"]);
    for want in [
        "type nat hook postrouting priority srcnat; policy accept;",
        "ip saddr 10.1.0.0/16 ip daddr != 10.1.0.0/16 ip daddr != 224.0.0.0/4 masquerade comment \"rcni:a:10.1.0.0/16\"",
        "ip6 saddr fd00:1::/64 ip6 daddr != fd00:1::/64 ip6 daddr != ff00::/8 masquerade comment \"rcni:a:fd00:1::/64\"",
        "comment \"rcni:b:10.2.0.0/16\"",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let j: serde_json::Value =
        serde_json::from_str(&ns.exec(&["nft", "-j", "list", "ruleset"])).expect("json");
    let comments: Vec<String> = j["nftables"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|o| o["rule"]["comment"].as_str().map(String::from))
        .collect();
    assert_eq!(comments.len(), 3);

    // Adding a subnet to an existing network adds only that rule.
    masq::ensure(&nft, "a", &[a4, a6, net("10.9.0.0/24")]).expect("grow");
    assert_eq!(masq::list(&nft).expect("list").len(), 4);

    masq::remove(&nft, "a").expect("remove a");
    masq::remove(&nft, "a").expect("remove a twice");
    assert_eq!(masq::list(&nft).expect("list"), vec![("b".into(), b4)]);
    // Removing from a namespace without the table is fine too.
    let empty = TestNs::new("nmq0");
    let nft0 = Nft::open_in(empty.ns()).expect("open");
    masq::remove(&nft0, "x").expect("remove without table");
    assert!(masq::list(&nft0).expect("list").is_empty());
}

#[test]
fn concurrent_ensure_adds_each_rule_once() {
    let ns = TestNs::new("nmc");
    let path = ns.path();
    std::thread::scope(|s| {
        for i in 0..8 {
            let path = path.clone();
            s.spawn(move || {
                let nsh = netns::NetNs::open(&path).expect("open ns");
                let nft = Nft::open_in(&nsh).expect("open");
                let n = format!("n{}", i % 2);
                masq::ensure(&nft, &n, &[net(&format!("10.{}.0.0/24", i % 2))]).expect("ensure");
            });
        }
    });
    let nft = Nft::open_in(ns.ns()).expect("open");
    let mut l = masq::list(&nft).expect("list");
    l.sort();
    assert_eq!(
        l,
        vec![
            ("n0".into(), net("10.0.0.0/24")),
            ("n1".into(), net("10.1.0.0/24"))
        ]
    );
}

#[test]
fn ensure_cost_when_present_vs_absent() {
    let ns = TestNs::new("nmt");
    let nft = Nft::open_in(ns.ns()).expect("open");
    let t0 = Instant::now();
    masq::ensure(&nft, "a", &[net("10.1.0.0/16")]).expect("ensure");
    let absent = t0.elapsed();
    // Other networks' rules in the same chain.
    for i in 0..50 {
        masq::ensure(
            &nft,
            &format!("o{i}"),
            &[net(&format!("10.{}.0.0/24", 100 + i))],
        )
        .expect("ensure other");
    }
    let n = 200;
    let t0 = Instant::now();
    for _ in 0..n {
        masq::ensure(&nft, "a", &[net("10.1.0.0/16")]).expect("ensure");
    }
    let present = t0.elapsed() / n;
    eprintln!("masq::ensure absent (first, creates table): {absent:?}; present (51 rules in chain): {present:?}");
}
