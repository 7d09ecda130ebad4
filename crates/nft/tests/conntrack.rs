//! ctnetlink round trips inside a throwaway namespace (root).

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, UdpSocket};
use std::time::Duration;

use nft::conntrack::Conntrack;
use nft::expr::ct_state;
use nft::{priority, Batch, Chain, ChainType, Family, Hook, IpVersion, Nft, Rule, IPPROTO_UDP};
use testutil::TestNs;

/// A rule with a ct expression makes the namespace track connections (a
/// base chain alone does not).
fn enable_conntrack(ns: &TestNs) {
    let nft = Nft::open_in(ns.ns()).expect("open nft");
    let mut b = Batch::new();
    b.add_table(Family::Inet, "ct")
        .add_chain(
            Family::Inet,
            "ct",
            &Chain::base("out", ChainType::Filter, Hook::Output, priority::FILTER),
        )
        .add_rule(
            Family::Inet,
            "ct",
            "out",
            &Rule::new().ct_state(ct_state::NEW).counter(),
        );
    nft.commit(&b).expect("commit");
}

/// Sends one datagram from an address bound to `bind` to `to` inside `ns`; returns the
/// client's actual source port.
fn send(ns: &TestNs, bind: &str, to: &str) -> u16 {
    let (bind, to) = (bind.to_string(), to.to_string());
    ns.run(move || {
        let s = UdpSocket::bind(bind.as_str()).expect("bind client");
        s.send_to(b"x", to.as_str()).expect("send");
        s.local_addr().expect("local").port()
    })
}

#[test]
fn lists_and_deletes_udp_entries_by_destination_port() {
    let ns = TestNs::new("ctk");
    let ct = Conntrack::open_in(ns.ns()).expect("open conntrack");
    // Nothing tracked yet (conntrack never ran here): empty, not an error.
    assert!(ct.entries(IpVersion::V4).expect("dump v4").is_empty());

    enable_conntrack(&ns);
    let servers: Vec<UdpSocket> = ["127.0.0.1:7001", "127.0.0.1:7002", "[::1]:7001"]
        .iter()
        .map(|a| ns.run(|| UdpSocket::bind(a)).expect("bind server"))
        .collect();
    for s in &servers {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
    }
    let p1 = send(&ns, "127.0.0.1:0", "127.0.0.1:7001");
    let p2 = send(&ns, "127.0.0.1:0", "127.0.0.1:7002");
    let p6 = send(&ns, "[::1]:0", "[::1]:7001");
    let mut buf = [0u8; 4];
    for s in &servers {
        s.recv_from(&mut buf).expect("datagram delivered");
    }

    let v4 = ct.entries(IpVersion::V4).expect("dump v4");
    let e1 = v4
        .iter()
        .find(|e| e.orig.src_port == Some(p1))
        .expect("entry for the first datagram");
    assert_eq!(e1.orig.proto, IPPROTO_UDP);
    assert_eq!(e1.orig.dst, "127.0.0.1".parse::<IpAddr>().expect("ip"));
    assert_eq!(e1.orig.dst_port, Some(7001));
    assert!(e1.id.is_some());
    let reply = e1.reply.expect("reply tuple");
    assert_eq!(reply.src_port, Some(7001));
    assert_eq!(reply.dst_port, Some(p1));
    let v6 = ct.entries(IpVersion::V6).expect("dump v6");
    assert!(v6.iter().any(|e| e.orig.src_port == Some(p6)), "{v6:?}");
    assert!(v6.iter().all(|e| e.orig.src.is_ipv6()));

    // Only IPv4 UDP to 7001 goes; 7002 and the IPv6 entry stay.
    assert_eq!(
        ct.delete_udp_to_ports(IpVersion::V4, &[7001, 9999])
            .expect("delete"),
        1
    );
    let v4 = ct.entries(IpVersion::V4).expect("dump v4");
    assert!(!v4.iter().any(|e| e.orig.src_port == Some(p1)), "{v4:?}");
    assert!(v4.iter().any(|e| e.orig.src_port == Some(p2)), "{v4:?}");
    let v6 = ct.entries(IpVersion::V6).expect("dump v6");
    assert!(v6.iter().any(|e| e.orig.src_port == Some(p6)), "{v6:?}");
    // Idempotent; deleting an entry that is gone is not an error.
    assert_eq!(
        ct.delete_udp_to_ports(IpVersion::V4, &[7001])
            .expect("again"),
        0
    );
    assert!(!ct.delete(e1).expect("delete gone entry"));
    assert_eq!(
        ct.delete_udp_to_ports(IpVersion::V6, &[7001]).expect("v6"),
        1
    );
    assert_eq!(ct.delete_udp_to_ports(IpVersion::V4, &[]).expect("none"), 0);
}
