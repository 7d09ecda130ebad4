//! macspoofchk with real frames: a container that changes its MAC is cut
//! off from the bridge; its legitimate MAC passes.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nft::rulesets::spoofchk::{self, Port};
use nft::Nft;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;
use testutil::{unique, TestNs};

fn mac_of(ns: &TestNs, dev: &str) -> [u8; 6] {
    let v = ns.ip_json(&["link", "show", dev]);
    let s = v[0]["address"].as_str().expect("address").to_string();
    let mut out = [0u8; 6];
    for (i, part) in s.split(':').enumerate().take(6) {
        out[i] = u8::from_str_radix(part, 16).expect("hex");
    }
    out
}

/// One connection attempt from `pod` to `listener` (in `node`).
fn connects(pod: &TestNs, to: SocketAddr, listener: &TcpListener) -> bool {
    let ok = pod.run(|| TcpStream::connect_timeout(&to, Duration::from_millis(800)).is_ok());
    if ok {
        let _ = listener.accept();
    }
    ok
}

#[test]
fn spoofed_source_mac_is_dropped_and_the_real_one_passes() {
    let node = TestNs::new("sn");
    let pod = TestNs::new("sp");
    let host = unique("vs");
    node.exec(&["ip", "link", "add", "br0", "type", "bridge"]);
    node.exec(&["ip", "addr", "add", "10.61.0.1/24", "dev", "br0"]);
    node.exec(&["ip", "link", "set", "br0", "up"]);
    node.exec(&[
        "ip",
        "link",
        "add",
        &host,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        pod.name(),
    ]);
    node.exec(&["ip", "link", "set", &host, "master", "br0", "up"]);
    pod.exec(&["ip", "addr", "add", "10.61.0.2/24", "dev", "eth0"]);
    pod.exec(&["ip", "link", "set", "eth0", "up"]);
    let to: SocketAddr = "10.61.0.1:7070".parse().expect("addr");
    let listener = node.run(|| TcpListener::bind(to)).expect("bind");
    // A brand-new veth drops what it is given until the kernel attaches
    // its qdisc (from a work queue): the baseline gets a few tries.
    assert!((0..5).any(|_| connects(&pod, to, &listener)), "baseline");

    let nft = Nft::open_in(node.ns()).expect("nft");
    let port = Port {
        network: "spoofnet".into(),
        container_id: "ctr1".into(),
        ifname: "eth0".into(),
        host_veth: host.clone(),
        mac: mac_of(&pod, "eth0"),
    };
    spoofchk::add(&nft, &port).expect("add");
    spoofchk::add(&nft, &port).expect("add again replaces");
    assert!(spoofchk::exists(&nft, "spoofnet", "ctr1", "eth0").expect("exists"));
    let listing = node.exec(&["nft", "list", "table", "bridge", spoofchk::TABLE]);
    assert_eq!(listing.matches("ether saddr !=").count(), 1, "{listing}");
    assert!(listing.contains("drop"), "{listing}");
    assert!(
        connects(&pod, to, &listener),
        "the container's own MAC passes"
    );

    // The container forges another source MAC.
    pod.exec(&["ip", "link", "set", "eth0", "address", "02:de:ad:be:ef:01"]);
    node.exec(&["ip", "neigh", "flush", "dev", "br0"]);
    assert!(!connects(&pod, to, &listener), "a spoofed MAC is dropped");

    spoofchk::remove(&nft, "spoofnet", "ctr1", "eth0").expect("remove");
    spoofchk::remove(&nft, "spoofnet", "ctr1", "eth0").expect("remove twice");
    assert!(!spoofchk::exists(&nft, "spoofnet", "ctr1", "eth0").expect("exists"));
    node.exec(&["ip", "neigh", "flush", "dev", "br0"]);
    assert!(
        connects(&pod, to, &listener),
        "without the check the new MAC works"
    );

    // GC removes checks of attachments no longer valid, and only those.
    spoofchk::add(&nft, &port).expect("add");
    let other = Port {
        container_id: "ctr2".into(),
        ..port.clone()
    };
    spoofchk::add(&nft, &other).expect("add other");
    let removed = spoofchk::gc(&nft, "spoofnet", &[("ctr2".into(), "eth0".into())]).expect("gc");
    assert_eq!(removed, 1);
    assert!(spoofchk::exists(&nft, "spoofnet", "ctr2", "eth0").expect("kept"));
    assert!(!spoofchk::exists(&nft, "spoofnet", "ctr1", "eth0").expect("gone"));
}
