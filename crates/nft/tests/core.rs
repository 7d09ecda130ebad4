//! Kernel round trips inside throwaway namespaces (root; CI runs as root).

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nft::*;
use testutil::TestNs;

fn nft_json(ns: &TestNs) -> serde_json::Value {
    let out = ns.exec(&["nft", "-j", "list", "ruleset"]);
    serde_json::from_str(&out).expect("nft -j output")
}

fn nft_text(ns: &TestNs) -> String {
    ns.exec(&["nft", "list", "ruleset"])
}

#[test]
fn tables_chains_rules_sets_roundtrip() {
    let ns = TestNs::new("nftc");
    let nft = Nft::open_in(ns.ns()).expect("open");
    let net: ipnet::IpNet = "10.88.0.0/16".parse().expect("net");
    let net6: ipnet::IpNet = "fd00:88::/64".parse().expect("net6");
    let mut b = Batch::new();
    b.add_table(Family::Inet, "t")
        .add_chain(
            Family::Inet,
            "t",
            &Chain::base("post", ChainType::Nat, Hook::Postrouting, priority::SRCNAT),
        )
        .add_chain(
            Family::Inet,
            "t",
            &Chain::base("fwd", ChainType::Filter, Hook::Forward, priority::FILTER),
        )
        .add_chain(Family::Inet, "t", &Chain::regular("sub"))
        .add_set(
            Family::Inet,
            "t",
            &SetSpec::set("ports", &[DataType::InetService]),
        )
        .add_set(
            Family::Inet,
            "t",
            &SetSpec::map(
                "pm",
                &[
                    DataType::Ipv4Addr,
                    DataType::InetProto,
                    DataType::InetService,
                ],
                &[DataType::Ipv4Addr, DataType::InetService],
            ),
        )
        .add_rule(
            Family::Inet,
            "t",
            "post",
            &Rule::new()
                .saddr(net)
                .daddr_not(net)
                .daddr_not("224.0.0.0/4".parse().expect("mc"))
                .counter()
                .masquerade()
                .comment("hello v4"),
        )
        .add_rule(
            Family::Inet,
            "t",
            "post",
            &Rule::new()
                .saddr(net6)
                .daddr_not(net6)
                .masquerade()
                .comment("hello v6"),
        )
        .add_rule(
            Family::Inet,
            "t",
            "fwd",
            &Rule::new()
                .ct_state(expr::ct_state::ESTABLISHED | expr::ct_state::RELATED)
                .accept(),
        )
        .add_rule(
            Family::Inet,
            "t",
            "fwd",
            &Rule::new().iifname("cni0").oifname("eth0").jump("sub"),
        )
        .add_rule(
            Family::Inet,
            "t",
            "sub",
            &Rule::new()
                .l4proto(IPPROTO_TCP)
                .dport(22)
                .mark(0x2000, 0x2000)
                .drop(),
        )
        .add_rule(
            Family::Inet,
            "t",
            "sub",
            &Rule::new()
                .expr(Expr::Payload {
                    base: PayloadBase::Transport,
                    offset: 2,
                    len: 2,
                    dreg: Reg(0),
                })
                .expr(Expr::Lookup {
                    set: "ports".into(),
                    sreg: Reg(0),
                    dreg: None,
                    invert: false,
                })
                .set_mark_bits(0x4000)
                .ret(),
        )
        .add_elements(
            SetName::new(Family::Inet, "t", "ports"),
            &[
                Element::new(&[Value::Port(80)]),
                Element::new(&[Value::Port(443)]).comment("https"),
            ],
        )
        .add_elements(
            SetName::new(Family::Inet, "t", "pm"),
            &[Element::map(
                &[
                    Value::Ip("192.168.1.1".parse().expect("ip")),
                    Value::Proto(IPPROTO_TCP),
                    Value::Port(8080),
                ],
                &[Value::Ip("10.88.0.5".parse().expect("ip")), Value::Port(80)],
            )
            .comment("rcni:net:ctr1:eth0")],
        );
    nft.commit(&b).expect("commit");

    let tables = nft.tables().expect("tables");
    assert!(tables
        .iter()
        .any(|t| t.name == "t" && t.family == Family::Inet));
    let chains = nft.chains(Family::Inet, "t").expect("chains");
    let post = chains.iter().find(|c| c.name == "post").expect("post");
    assert_eq!(post.hook, Some((4, 100)));
    assert_eq!(post.kind.as_deref(), Some("nat"));
    let rules = nft.rules(Family::Inet, "t", Some("post")).expect("rules");
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].comment.as_deref(), Some("hello v4"));
    assert!(rules[0].exprs.contains(&"masq".to_string()));
    assert!(rules[0].handle > 0);
    let all = nft.rules(Family::Inet, "t", None).expect("all rules");
    assert_eq!(all.len(), 6);

    let elems = nft.set_elements(Family::Inet, "t", "pm").expect("elems");
    assert_eq!(elems.len(), 1);
    assert_eq!(elems[0].comment.as_deref(), Some("rcni:net:ctr1:eth0"));
    assert_eq!(
        elems[0].data.as_deref(),
        Some(&[10, 88, 0, 5, 0, 80, 0, 0][..])
    );

    // The nft CLI understands what we wrote.
    let text = nft_text(&ns);
    eprintln!("{text}");
    for want in [
        "ip saddr 10.88.0.0/16 ip daddr != 10.88.0.0/16 ip daddr != 224.0.0.0/4 counter packets 0 bytes 0 masquerade comment \"hello v4\"",
        "ip6 saddr fd00:88::/64 ip6 daddr != fd00:88::/64 masquerade comment \"hello v6\"",
        "type nat hook postrouting priority srcnat; policy accept;",
        "ct state established,related accept",
        "iifname \"cni0\" oifname \"eth0\" jump sub",
        "tcp dport 22 meta mark & 0x00002000 == 0x00002000 drop",
        "192.168.1.1 . tcp . 8080 comment \"rcni:net:ctr1:eth0\" : 10.88.0.5 . 80",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let j = nft_json(&ns);
    let n_rules = j["nftables"]
        .as_array()
        .expect("array")
        .iter()
        .filter(|o| o.get("rule").is_some())
        .count();
    assert_eq!(n_rules, 6);

    // Delete one rule by handle, a set element, then the table.
    let mut b = Batch::new();
    b.del_rule(Family::Inet, "t", "post", rules[1].handle)
        .del_elements(
            SetName::new(Family::Inet, "t", "ports"),
            &[Element::new(&[Value::Port(80)])],
        );
    nft.commit(&b).expect("delete");
    assert_eq!(
        nft.rules(Family::Inet, "t", Some("post"))
            .expect("rules")
            .len(),
        1
    );
    assert_eq!(
        nft.set_elements(Family::Inet, "t", "ports")
            .expect("e")
            .len(),
        1
    );
    let mut b = Batch::new();
    b.del_table(Family::Inet, "t");
    nft.commit(&b).expect("delete table");
    assert!(!nft.table_exists(Family::Inet, "t").expect("exists"));
}

#[test]
fn failed_transaction_applies_nothing_and_names_the_object() {
    let ns = TestNs::new("nftf");
    let nft = Nft::open_in(ns.ns()).expect("open");
    let mut b = Batch::new();
    b.add_table(Family::Inet, "good").add_rule(
        Family::Inet,
        "rcni-nat",
        "postrouting",
        &Rule::new().accept(),
    );
    let e = nft.commit(&b).expect_err("missing table");
    let msg = e.to_string();
    assert!(
        msg.starts_with("failed to add rule to chain \"postrouting\" of table inet rcni-nat"),
        "{msg}"
    );
    assert!(msg.contains("No such file or directory"), "{msg}");
    assert!(e.is_not_found());
    // Atomic: the table of the same batch was not created.
    assert!(!nft.table_exists(Family::Inet, "good").expect("get"));
    // The socket still works afterwards.
    let mut b = Batch::new();
    b.add_table(Family::Inet, "good");
    nft.commit(&b).expect("commit");
    assert!(nft.table_exists(Family::Inet, "good").expect("get"));
}

#[test]
fn stale_generation_is_refused() {
    let ns = TestNs::new("nftg");
    let nft = Nft::open_in(ns.ns()).expect("open");
    let g = nft.genid().expect("genid");
    let mut b = Batch::new();
    b.add_table(Family::Inet, "a");
    nft.commit_at(&b, g).expect("fresh generation");
    let mut b = Batch::new();
    b.add_table(Family::Inet, "b");
    let e = nft.commit_at(&b, g).expect_err("stale");
    assert!(e.is_restart(), "{e}");
    assert!(!nft.table_exists(Family::Inet, "b").expect("get"));
    nft.commit_at(&b, nft.genid().expect("genid"))
        .expect("retry");
}

#[test]
fn commit_fresh_rebuilds_after_a_concurrent_change_and_gives_up_after_its_tries() {
    let ns = TestNs::new("nftf");
    let nft = Nft::open_in(ns.ns()).expect("open");
    let other = Nft::open_in(ns.ns()).expect("open");
    let bump = |name: &str| {
        let mut b = Batch::new();
        b.add_table(Family::Inet, name);
        other.commit(&b).expect("concurrent change");
    };
    // A change between the build and the commit: the first attempt is
    // refused, the second (rebuilt on the new generation) lands.
    let mut builds = 0;
    nft.commit_fresh(3, || {
        builds += 1;
        if builds == 1 {
            bump("x1");
        }
        let mut b = Batch::new();
        b.add_table(Family::Inet, "mine");
        Ok(Some(b))
    })
    .expect("second attempt");
    assert_eq!(builds, 2);
    assert!(nft.table_exists(Family::Inet, "mine").expect("get"));

    // A change before every commit: `tries` builds (at least one), then the
    // last ERESTART.
    for (tries, want) in [(2, 2), (0, 1)] {
        let mut builds = 0;
        let e = nft
            .commit_fresh(tries, || {
                builds += 1;
                bump(&format!("y{tries}{builds}"));
                let mut b = Batch::new();
                b.add_table(Family::Inet, "never");
                Ok(Some(b))
            })
            .expect_err("always stale");
        assert!(e.is_restart(), "{e}");
        assert_eq!(builds, want);
    }
    assert!(!nft.table_exists(Family::Inet, "never").expect("get"));
    // Nothing to do: no commit at all.
    nft.commit_fresh(1, || Ok(None)).expect("nothing");
}
