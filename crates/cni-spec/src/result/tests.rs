use super::*;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn sample() -> Result {
    Result {
        cni_version: "1.1.0".into(),
        interfaces: vec![
            Interface {
                name: "cni0".into(),
                mac: "aa:bb:cc:dd:ee:01".into(),
                ..Default::default()
            },
            Interface {
                name: "eth0".into(),
                mac: "aa:bb:cc:dd:ee:02".into(),
                mtu: Some(1400),
                sandbox: "/run/netns/p".into(),
                ..Default::default()
            },
        ],
        ips: vec![
            IpConfig {
                interface: Some(1),
                address: "10.1.0.5/24".parse().expect("net"),
                gateway: Some("10.1.0.1".parse().expect("gw")),
            },
            IpConfig {
                interface: Some(1),
                address: "10.2.0.5/24".parse().expect("net"),
                gateway: None,
            },
            IpConfig {
                interface: Some(1),
                address: "fd00::5/64".parse().expect("net"),
                gateway: Some("fd00::1".parse().expect("gw")),
            },
        ],
        routes: vec![
            Route {
                mtu: Some(1300),
                table: Some(100),
                ..Route::new(
                    "0.0.0.0/0".parse().expect("r"),
                    Some("10.1.0.1".parse().expect("gw")),
                )
            },
            Route::new("::/0".parse().expect("r"), None),
        ],
        dns: Dns {
            nameservers: vec!["10.1.0.1".into()],
            search: vec!["example.test".into()],
            ..Default::default()
        },
    }
}

#[test]
fn golden_every_version() {
    let r = sample();
    let golden = [
        (
            "1.1.0",
            r#"{"cniVersion":"1.1.0","interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:01"},{"name":"eth0","mac":"aa:bb:cc:dd:ee:02","mtu":1400,"sandbox":"/run/netns/p"}],"ips":[{"interface":1,"address":"10.1.0.5/24","gateway":"10.1.0.1"},{"interface":1,"address":"10.2.0.5/24"},{"interface":1,"address":"fd00::5/64","gateway":"fd00::1"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1","mtu":1300,"table":100},{"dst":"::/0"}],"dns":{"nameservers":["10.1.0.1"],"search":["example.test"]}}"#,
        ),
        (
            "1.0.0",
            r#"{"cniVersion":"1.0.0","interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:01"},{"name":"eth0","mac":"aa:bb:cc:dd:ee:02","sandbox":"/run/netns/p"}],"ips":[{"interface":1,"address":"10.1.0.5/24","gateway":"10.1.0.1"},{"interface":1,"address":"10.2.0.5/24"},{"interface":1,"address":"fd00::5/64","gateway":"fd00::1"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"},{"dst":"::/0"}],"dns":{"nameservers":["10.1.0.1"],"search":["example.test"]}}"#,
        ),
        (
            "0.4.0",
            r#"{"cniVersion":"0.4.0","interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:01"},{"name":"eth0","mac":"aa:bb:cc:dd:ee:02","sandbox":"/run/netns/p"}],"ips":[{"version":"4","interface":1,"address":"10.1.0.5/24","gateway":"10.1.0.1"},{"version":"4","interface":1,"address":"10.2.0.5/24"},{"version":"6","interface":1,"address":"fd00::5/64","gateway":"fd00::1"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"},{"dst":"::/0"}],"dns":{"nameservers":["10.1.0.1"],"search":["example.test"]}}"#,
        ),
        (
            "0.2.0",
            r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.1.0.5/24","gateway":"10.1.0.1","routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"}]},"ip6":{"ip":"fd00::5/64","gateway":"fd00::1","routes":[{"dst":"::/0"}]},"dns":{"nameservers":["10.1.0.1"],"search":["example.test"]}}"#,
        ),
    ];
    for (v, want) in golden {
        assert_eq!(r.to_json(v).expect("encode"), want, "version {v}");
        // And every golden text parses back to what printing it again gives.
        let back = Result::from_slice(want.as_bytes(), v).expect("decode");
        assert_eq!(back.to_json(v).expect("encode again"), want, "reparse {v}");
    }
    for v in ["0.3.0", "0.3.1"] {
        let s = r.to_json(v).expect("encode");
        assert!(s.contains(r#""version":"4""#), "{v}: {s}");
    }
    assert!(r
        .to_json("0.1.0")
        .expect("010")
        .starts_with(r#"{"cniVersion":"0.1.0","ip4""#));
    assert_eq!(r.to_json("0.5.0").expect_err("unknown").code, 1);
}

#[test]
fn empty_dns_printed_as_object() {
    let r = Result::new("1.0.0");
    assert_eq!(
        r.to_json("1.0.0").expect("e"),
        r#"{"cniVersion":"1.0.0","dns":{}}"#
    );
}

#[test]
fn a_v04_address_without_its_version_field_is_read() {
    for v in ["0.3.0", "0.3.1", "0.4.0"] {
        let text = format!(
            r#"{{"cniVersion":"{v}","ips":[{{"address":"10.1.0.2/24"}},{{"address":"fd00::2/64"}}]}}"#
        );
        let r = Result::from_slice(text.as_bytes(), v).expect("libcni reads it");
        assert_eq!(r.ips.len(), 2);
        let out = r.to_json(v).expect("print");
        assert!(
            out.contains(r#""version":"4""#) && out.contains(r#""version":"6""#),
            "{out}"
        );
    }
}

#[test]
fn missing_version_uses_fallback() {
    let r = Result::from_slice(br#"{"ip4":{"ip":"10.0.0.2/24"}}"#, "0.2.0").expect("parse");
    assert_eq!(r.cni_version, "0.2.0");
    assert_eq!(r.ips.len(), 1);
    assert_eq!(
        Result::from_slice(b"not json", "1.0.0")
            .expect_err("bad")
            .code,
        6
    );
    assert_eq!(
        Result::from_slice(
            br#"{"cniVersion":"1.0.0","ips":[{"address":"nope"}]}"#,
            "1.0.0"
        )
        .expect_err("bad")
        .code,
        6
    );
}

#[test]
fn validate_interface_index() {
    let mut r = sample();
    assert!(r.validate().is_ok());
    r.ips[0].interface = Some(7);
    assert_eq!(r.validate().expect_err("bad").code, 7);
}

// ---- properties ---------------------------------------------------------

fn arb_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, p)| IpNet::new(Ipv4Addr::from(a).into(), p).expect("v4")),
        (any::<u128>(), 0u8..=128)
            .prop_map(|(a, p)| IpNet::new(Ipv6Addr::from(a).into(), p).expect("v6")),
    ]
}

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::from(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::from(Ipv6Addr::from(a))),
    ]
}

fn arb_result() -> impl Strategy<Value = Result> {
    let iface = (
        "[a-z0-9]{1,15}",
        proptest::option::of(1u32..9000),
        "[a-z/]{0,8}",
    )
        .prop_map(|(name, mtu, sandbox)| Interface {
            name,
            mac: "02:00:00:00:00:01".into(),
            mtu,
            sandbox,
            ..Default::default()
        });
    let route = (
        arb_net(),
        proptest::option::of(arb_ip()),
        proptest::option::of(0u32..1000),
    )
        .prop_map(|(dst, gw, table)| Route {
            table,
            ..Route::new(dst, gw)
        });
    (
        proptest::collection::vec(iface, 0..3),
        proptest::collection::vec((arb_net(), proptest::option::of(arb_ip())), 0..4),
        proptest::collection::vec(route, 0..4),
        proptest::collection::vec("[0-9.]{1,15}", 0..3),
    )
        .prop_map(|(interfaces, ips, routes, ns)| {
            let n = interfaces.len();
            Result {
                cni_version: "1.1.0".into(),
                ips: ips
                    .into_iter()
                    .enumerate()
                    .map(|(i, (address, gateway))| IpConfig {
                        interface: if n == 0 { None } else { Some(i % n) },
                        address,
                        gateway,
                    })
                    .collect(),
                interfaces,
                routes,
                dns: Dns {
                    nameservers: ns,
                    ..Default::default()
                },
            }
        })
}

proptest! {
    /// 1.1.0 is the canonical form: nothing is lost going through it.
    #[test]
    fn v11_round_trip_is_lossless(r in arb_result()) {
        let back = r.convert("1.1.0").expect("convert");
        prop_assert_eq!(back, r);
    }

    /// Every version's text parses back and prints identically (a fixpoint),
    /// and up-converting to 1.1.0 and back down changes nothing.
    #[test]
    fn every_version_is_a_fixpoint(r in arb_result()) {
        for v in crate::ALL_VERSIONS {
            let down = r.to_json(v).expect("down");
            let parsed = Result::from_slice(down.as_bytes(), v).expect("parse");
            prop_assert_eq!(&parsed.to_json(v).expect("again"), &down);
            let up = parsed.convert("1.1.0").expect("up");
            prop_assert_eq!(up.to_json(v).expect("down again"), down);
        }
    }

    /// Between 0.3.0 and 1.0.0 only the 1.1.0 extras are lost.
    #[test]
    fn v04_keeps_everything_but_v11_extras(r in arb_result()) {
        for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
            let c = r.convert(v).expect("convert");
            prop_assert_eq!(c.ips.clone(), r.ips.clone());
            prop_assert_eq!(c.interfaces.len(), r.interfaces.len());
            prop_assert_eq!(c.routes.len(), r.routes.len());
            prop_assert!(c.routes.iter().all(|x| x.table.is_none()));
            prop_assert!(c.interfaces.iter().all(|x| x.mtu.is_none()));
        }
    }

    /// 0.2.0 keeps exactly the first address of each family.
    #[test]
    fn v02_keeps_first_of_each_family(r in arb_result()) {
        let c = r.convert("0.2.0").expect("convert");
        let first4 = r.ips.iter().find(|i| i.address.addr().is_ipv4()).map(|i| i.address);
        let first6 = r.ips.iter().find(|i| i.address.addr().is_ipv6()).map(|i| i.address);
        let want: Vec<IpNet> = [first4, first6].into_iter().flatten().collect();
        let got: Vec<IpNet> = c.ips.iter().map(|i| i.address).collect();
        prop_assert_eq!(got, want);
        prop_assert!(c.interfaces.is_empty());
        prop_assert!(c.ips.iter().all(|i| i.interface.is_none()));
    }
}

#[test]
fn empty_route_gateway_is_none() {
    let r: Route = serde_json::from_str(r#"{"dst":"0.0.0.0/0","gw":""}"#).unwrap();
    assert_eq!(r.gw, None);
    let r: Route = serde_json::from_str(r#"{"dst":"0.0.0.0/0","gw":"10.0.0.1"}"#).unwrap();
    assert_eq!(r.gw, Some("10.0.0.1".parse().unwrap()));
    assert!(serde_json::from_str::<Route>(r#"{"dst":"0.0.0.0/0","gw":"x"}"#).is_err());
}
