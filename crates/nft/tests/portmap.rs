//! Port mapping: layout, real TCP/UDP traffic, hairpin, localhost, DEL/GC.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, UdpSocket};
use std::time::Instant;

use nft::rulesets::portmap::{self, Mapping, Options, Proto};
use nft::{Family, Nft};
use testutil::TestNs;

fn mapping(t: &common::Topo, id: &str, proto: Proto, host_port: u16, pod_port: u16) -> Mapping {
    Mapping {
        network: "pmnet".into(),
        container_id: id.into(),
        ifname: "eth0".into(),
        proto,
        host_ip: None,
        host_port,
        pod_ip: t.pod_ip().parse().expect("ip"),
        pod_port,
    }
}

#[test]
fn host_port_reaches_the_pod_tcp_udp_hairpin_localhost() {
    let t = common::Topo::new(51);
    let nft = Nft::open_in(t.node.ns()).expect("open");
    let web = common::listen_tcp(&t.pod, "0.0.0.0:80");
    let dns = t
        .pod
        .run(|| UdpSocket::bind("0.0.0.0:53"))
        .expect("udp bind");
    let node = t.node_out_side();

    // Nothing mapped yet: the node port is closed.
    assert!(common::tcp_roundtrip(&t.outside, &web, &format!("{node}:8080")).is_none());

    portmap::add(
        &nft,
        &[
            mapping(&t, "c1", Proto::Tcp, 8080, 80),
            mapping(&t, "c1", Proto::Udp, 5353, 53),
        ],
        &Options::default(),
    )
    .expect("add");

    // Outside -> node:8080 -> pod:80; the pod sees the real client.
    let (peer, back) =
        common::tcp_roundtrip(&t.outside, &web, &format!("{node}:8080")).expect("tcp dnat");
    assert_eq!(peer.ip().to_string(), t.outside_ip());
    assert_eq!(back, "pong");
    let from = common::udp_roundtrip(&t.outside, &dns, &format!("{node}:5353")).expect("udp dnat");
    assert_eq!(from.ip().to_string(), t.outside_ip());

    // Hairpin: the pod reaches its own host port, masqueraded to the node.
    let (peer, _) = common::tcp_roundtrip(&t.pod, &web, &format!("{node}:8080")).expect("hairpin");
    assert_eq!(peer.ip().to_string(), t.node_pod_side());

    // Localhost on the node (needs route_localnet on the pod-facing link).
    t.node
        .exec(&["sysctl", "-qw", "net.ipv4.conf.vpod.route_localnet=1"]);
    let (peer, _) = common::tcp_roundtrip(&t.node, &web, "127.0.0.1:8080").expect("localhost");
    assert_eq!(peer.ip().to_string(), t.node_pod_side());

    // The nft CLI reads the layout and the commented elements.
    let text = t
        .node
        .exec(&["nft", "list", "table", "inet", "rcni-portmap"]);
    for want in [
        "dnat ip to meta l4proto . th dport map @any4",
        "dnat ip to ip daddr . meta l4proto . th dport map @hostip4",
        "fib daddr type local jump dnat",
        "tcp . 8080 comment \"rcni:pmnet:c1:eth0\" : 10.51.0.2 . 80",
        "udp . 5353 comment \"rcni:pmnet:c1:eth0\" : 10.51.0.2 . 53",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let listed = portmap::list(&nft).expect("list");
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&mapping(&t, "c1", Proto::Tcp, 8080, 80)));

    // A second container cannot take the same host port.
    let mut other = mapping(&t, "c2", Proto::Tcp, 8080, 81);
    other.pod_ip = "10.51.0.3".parse().expect("ip");
    let e = portmap::add(&nft, &[other], &Options::default()).expect_err("conflict");
    assert!(e.to_string().contains("8080/tcp"), "{e}");
    // Re-adding the same container is idempotent.
    portmap::add(
        &nft,
        &[mapping(&t, "c1", Proto::Tcp, 8080, 80)],
        &Options::default(),
    )
    .expect("re-add");

    // DEL removes everything of the attachment; traffic stops.
    let n = portmap::remove_container(&nft, "pmnet", "c1", "eth0").expect("remove");
    assert!(n >= 2, "{n}");
    assert!(portmap::list(&nft).expect("list").is_empty());
    assert!(common::tcp_roundtrip(&t.outside, &web, &format!("{node}:8080")).is_none());
    assert_eq!(
        portmap::remove_container(&nft, "pmnet", "c1", "eth0").expect("again"),
        0
    );
}

#[test]
fn host_ip_and_masq_all() {
    let t = common::Topo::new(52);
    let nft = Nft::open_in(t.node.ns()).expect("open");
    let web = common::listen_tcp(&t.pod, "0.0.0.0:80");
    let node = t.node_out_side();
    let mut m = mapping(&t, "c1", Proto::Tcp, 9090, 80);
    m.host_ip = Some(node.parse().expect("ip"));
    portmap::add(
        &nft,
        &[m],
        &Options {
            snat: true,
            masq_all: true,
            pod_links: Vec::new(),
        },
    )
    .expect("add");
    // masqAll: even outside clients appear as the node.
    let (peer, _) = common::tcp_roundtrip(&t.outside, &web, &format!("{node}:9090")).expect("dnat");
    assert_eq!(peer.ip().to_string(), t.node_pod_side());
    // Bound to the host IP: another local address of the node does not map.
    let other_local = t.node_pod_side();
    assert!(common::tcp_roundtrip(&t.pod, &web, &format!("{other_local}:9090")).is_none());
}

#[test]
fn gc_keeps_only_listed_attachments() {
    let ns = TestNs::new("pgc");
    let nft = Nft::open_in(ns.ns()).expect("open");
    let mk = |id: &str, port: u16, pod: &str| Mapping {
        network: "n".into(),
        container_id: id.into(),
        ifname: "eth0".into(),
        proto: Proto::Tcp,
        host_ip: None,
        host_port: port,
        pod_ip: pod.parse::<IpAddr>().expect("ip"),
        pod_port: 80,
    };
    portmap::add(&nft, &[mk("a", 1001, "10.0.0.2")], &Options::default()).expect("a");
    portmap::add(&nft, &[mk("b", 1002, "10.0.0.3")], &Options::default()).expect("b");
    portmap::add(&nft, &[mk("c", 1003, "fd00::3")], &Options::default()).expect("c");
    let removed = portmap::gc(&nft, "n", &[("b".into(), "eth0".into())]).expect("gc");
    assert!(removed >= 2);
    let left = portmap::list(&nft).expect("list");
    assert_eq!(left, vec![mk("b", 1002, "10.0.0.3")]);
    // The table stays; its chains are intact.
    assert_eq!(
        nft.chains(Family::Inet, portmap::TABLE)
            .expect("chains")
            .len(),
        4
    );
}

#[test]
fn add_cost_does_not_grow_with_mapped_ports() {
    let ns = TestNs::new("pct");
    let nft = Nft::open_in(ns.ns()).expect("open");
    let mk = |i: u32| Mapping {
        network: "n".into(),
        container_id: format!("ctr{i}"),
        ifname: "eth0".into(),
        proto: Proto::Tcp,
        host_port: 10000 + i as u16,
        host_ip: None,
        pod_ip: IpAddr::from([10, 1, (i / 250) as u8, (i % 250) as u8 + 2]),
        pod_port: 80,
    };
    let t0 = Instant::now();
    portmap::add(&nft, &[mk(0)], &Options::default()).expect("first");
    let first = t0.elapsed();
    let t0 = Instant::now();
    portmap::add(&nft, &[mk(1)], &Options::default()).expect("second");
    let with_one = t0.elapsed();
    let bulk: Vec<Mapping> = (2..1002).map(mk).collect();
    portmap::add(&nft, &bulk, &Options::default()).expect("bulk");
    let n = 50;
    let t0 = Instant::now();
    for i in 0..n {
        portmap::add(&nft, &[mk(2000 + i)], &Options::default()).expect("add");
    }
    let with_1000 = t0.elapsed() / n;
    let t0 = Instant::now();
    portmap::remove_container(&nft, "n", "ctr5", "eth0").expect("remove");
    let del = t0.elapsed();
    eprintln!(
        "portmap::add: table creation {first:?}, 1 existing {with_one:?}, 1000 existing {with_1000:?}; remove_container with ~1050 mapped {del:?}"
    );
    assert_eq!(portmap::list(&nft).expect("list").len(), 1051);
}
