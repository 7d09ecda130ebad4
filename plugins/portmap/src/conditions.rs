//! `conditionsV4`/`conditionsV6` in nftables syntax, as the reference's
//! nftables backend takes them: the list's strings joined by spaces form
//! match expressions that every forwarded connection must satisfy. rcni
//! builds its own netlink rules, so it understands the expressions it can
//! express there and refuses any other with code 7 naming the field:
//!
//! - `ip saddr|daddr [==|!=] ADDR[/LEN]` (in `conditionsV4`),
//!   `ip6 saddr|daddr [==|!=] ADDR[/LEN]` (in `conditionsV6`);
//! - `[meta] iifname|oifname [==|!=] NAME` (exact names, quoted or not).
//!
//! A list whose first string starts with `-` or `!` is in iptables syntax,
//! the only one the reference had before its nftables backend. The matches
//! with the same meaning are translated: `[!] -s|--source ADDR[/LEN]`,
//! `[!] -d|--destination ADDR[/LEN]`, `[!] -i|--in-interface NAME`,
//! `[!] -o|--out-interface NAME` (exact names). Any other iptables match
//! (`-p`, `-m …`, a `+` wildcard) is refused with code 2, naming it.

use cni_spec::error::CniResult;
use cni_spec::{Error, ErrorCode};
use ipnet::IpNet;
use nft::rulesets::portmap::Condition;
use std::net::IpAddr;

const SUPPORTED: &str =
    "supported: ip/ip6 saddr|daddr [!=] ADDR[/LEN], [meta] iifname|oifname [!=] NAME";

/// The conditions of `field` (`conditionsV4` when `!v6`); empty when the
/// list is absent or empty.
pub fn parse(field: &str, list: Option<&[String]>, v6: bool) -> CniResult<Vec<Condition>> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    if list
        .first()
        .is_some_and(|s| s.starts_with('-') || s.starts_with('!'))
    {
        return parse_iptables(field, list, v6);
    }
    let joined = list.join(" ");
    let mut toks = joined.split_whitespace().peekable();
    let bad = |what: String| Error::invalid_config(format!("{field}: {what} ({SUPPORTED})"));
    let mut out = Vec::new();
    while let Some(t) = toks.next() {
        match t {
            "ip" | "ip6" => {
                let fam_v6 = t == "ip6";
                if fam_v6 != v6 {
                    return Err(bad(format!(
                        "{t:?} matches {} traffic only",
                        if fam_v6 { "IPv6" } else { "IPv4" }
                    )));
                }
                let dst = match toks.next() {
                    Some("saddr") => false,
                    Some("daddr") => true,
                    other => {
                        return Err(bad(format!(
                            "unsupported expression \"{t} {}\"",
                            other.unwrap_or("")
                        )))
                    }
                };
                let negate = operator(&mut toks);
                let value = toks
                    .next()
                    .ok_or_else(|| bad(format!("\"{t}\" without an address")))?;
                let net = prefix(value, v6).map_err(bad)?;
                out.push(Condition::Addr { dst, net, negate });
            }
            "meta" | "iifname" | "oifname" => {
                let key = if t == "meta" {
                    toks.next().unwrap_or("")
                } else {
                    t
                };
                let output = match key {
                    "iifname" => false,
                    "oifname" => true,
                    other => return Err(bad(format!("unsupported expression \"meta {other}\""))),
                };
                let negate = operator(&mut toks);
                let raw = toks
                    .next()
                    .ok_or_else(|| bad(format!("\"{key}\" without a name")))?;
                let name = raw
                    .strip_prefix('"')
                    .and_then(|r| r.strip_suffix('"'))
                    .unwrap_or(raw);
                if !netlink::valid_ifname(name) || name.contains('*') {
                    return Err(bad(format!("{raw:?} is not an interface name")));
                }
                out.push(Condition::Ifname {
                    output,
                    name: name.to_string(),
                    negate,
                });
            }
            other => return Err(bad(format!("unsupported expression at {other:?}"))),
        }
    }
    Ok(out)
}

/// `list` in iptables syntax (each string one argument, as the reference
/// passes them to iptables; a string holding spaces is split).
fn parse_iptables(field: &str, list: &[String], v6: bool) -> CniResult<Vec<Condition>> {
    let unsupported = |what: &str| {
        Error::new(
            ErrorCode::UnsupportedField,
            format!(
                "{field}: the iptables match {what:?} has no equivalent in rcni; supported: \
                 [!] -s/-d ADDR[/LEN], [!] -i/-o NAME, or nftables syntax ({SUPPORTED})"
            ),
        )
    };
    let bad = |what: String| Error::invalid_config(format!("{field}: {what}"));
    let mut toks = list.iter().flat_map(|s| s.split_whitespace());
    let mut out = Vec::new();
    while let Some(mut t) = toks.next() {
        let negate = t == "!";
        if negate {
            t = toks.next().ok_or_else(|| bad("\"!\" at the end".into()))?;
        }
        let value = |toks: &mut dyn Iterator<Item = &str>| {
            toks.next()
                .map(str::to_string)
                .ok_or_else(|| bad(format!("{t:?} without a value")))
        };
        match t {
            "-s" | "--source" | "--src" | "-d" | "--destination" | "--dst" => {
                let v = value(&mut toks)?;
                let net = prefix(&v, v6).map_err(bad)?;
                let dst = matches!(t, "-d" | "--destination" | "--dst");
                out.push(Condition::Addr { dst, net, negate });
            }
            "-i" | "--in-interface" | "-o" | "--out-interface" => {
                let name = value(&mut toks)?;
                if name.ends_with('+') {
                    return Err(unsupported(&format!("{t} {name}")));
                }
                if !netlink::valid_ifname(&name) {
                    return Err(bad(format!("{name:?} is not an interface name")));
                }
                let output = matches!(t, "-o" | "--out-interface");
                out.push(Condition::Ifname {
                    output,
                    name,
                    negate,
                });
            }
            other => return Err(unsupported(other)),
        }
    }
    Ok(out)
}

/// An optional `==`/`!=` (`eq`/`ne`); true for a negation.
fn operator<'a>(toks: &mut std::iter::Peekable<impl Iterator<Item = &'a str>>) -> bool {
    match toks.peek().copied() {
        Some("!=") | Some("ne") => {
            toks.next();
            true
        }
        Some("==") | Some("eq") => {
            toks.next();
            false
        }
        _ => false,
    }
}

/// `s` as a prefix of the family (host bits dropped, as nft does), or what
/// is wrong with it.
fn prefix(s: &str, v6: bool) -> Result<IpNet, String> {
    let net = match s.parse::<IpNet>() {
        Ok(n) => Some(n.trunc()),
        Err(_) => s.parse::<IpAddr>().ok().map(IpNet::from),
    };
    net.filter(|n| n.addr().is_ipv6() == v6).ok_or_else(|| {
        format!(
            "{s:?} is not an {} address or prefix",
            if v6 { "IPv6" } else { "IPv4" }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nftables_expressions_rcni_can_express() {
        let c = parse(
            "conditionsV4",
            Some(&v(&["ip saddr 10.9.0.0/16", "iifname", "!=", "\"eth1\""])),
            false,
        )
        .expect("ok");
        assert_eq!(
            c,
            vec![
                Condition::Addr {
                    dst: false,
                    net: "10.9.0.0/16".parse().expect("net"),
                    negate: false
                },
                Condition::Ifname {
                    output: false,
                    name: "eth1".into(),
                    negate: true
                }
            ]
        );
        let c = parse(
            "conditionsV6",
            Some(&v(&["ip6 daddr != fd00::1", "meta oifname lo"])),
            true,
        )
        .expect("ok");
        assert_eq!(c.len(), 2);
        // Host bits are masked off as nft does.
        let c = parse("conditionsV4", Some(&v(&["ip saddr 10.9.3.4/16"])), false).expect("ok");
        assert_eq!(
            c[0],
            Condition::Addr {
                dst: false,
                net: "10.9.0.0/16".parse().expect("net"),
                negate: false
            }
        );
        assert!(parse("conditionsV4", Some(&[]), false)
            .expect("empty")
            .is_empty());
        assert!(parse("conditionsV4", None, false).expect("none").is_empty());
    }

    #[test]
    fn everything_else_is_refused_naming_the_field() {
        for (field, items, v6) in [
            ("conditionsV4", v(&["ip6 saddr ::1"]), false),
            ("conditionsV6", v(&["ip saddr 10.0.0.1"]), true),
            ("conditionsV4", v(&["ip saddr 10.0.0.0/33"]), false),
            (
                "conditionsV4",
                v(&["ip saddr { 10.0.0.1, 10.0.0.2 }"]),
                false,
            ),
            ("conditionsV4", v(&["tcp dport 80"]), false),
            ("conditionsV4", v(&["ip saddr"]), false),
            ("conditionsV4", v(&["iifname eth*"]), false),
            ("conditionsV4", v(&["meta mark 1"]), false),
            ("conditionsV4", v(&["ip protocol tcp"]), false),
        ] {
            let e = parse(field, Some(&items), v6).expect_err("refused");
            assert_eq!(e.code, 7, "{items:?}: {}", e.msg);
            assert!(e.msg.starts_with(field), "{}", e.msg);
        }
        let e = parse("conditionsV4", Some(&v(&["-p", "tcp"])), false).expect_err("iptables");
        assert_eq!(e.code, 2);
        assert!(e.msg.contains("\"-p\""), "{}", e.msg);
        let e = parse(
            "conditionsV6",
            Some(&v(&["-m", "addrtype", "--dst-type", "LOCAL"])),
            true,
        )
        .expect_err("iptables");
        assert_eq!(e.code, 2);
        assert!(e.msg.contains("conditionsV6"), "{}", e.msg);
        let e = parse("conditionsV4", Some(&v(&["-i", "eth+"])), false).expect_err("wildcard");
        assert_eq!(e.code, 2);
        for bad in [
            v(&["-s"]),
            v(&["-s", "10.0.0.0/33"]),
            v(&["!"]),
            v(&["-o", "a/b"]),
        ] {
            let e = parse("conditionsV4", Some(&bad), false).expect_err("bad");
            assert_eq!(e.code, 7, "{bad:?}: {}", e.msg);
        }
    }

    #[test]
    fn iptables_matches_with_an_nftables_equivalent_are_translated() {
        let c = parse(
            "conditionsV4",
            Some(&v(&[
                "-s",
                "10.9.3.4/16",
                "!",
                "-d",
                "192.0.2.1",
                "-i eth0",
            ])),
            false,
        )
        .expect("ok");
        assert_eq!(
            c,
            vec![
                Condition::Addr {
                    dst: false,
                    net: "10.9.0.0/16".parse().expect("net"),
                    negate: false
                },
                Condition::Addr {
                    dst: true,
                    net: "192.0.2.1/32".parse().expect("net"),
                    negate: true
                },
                Condition::Ifname {
                    output: false,
                    name: "eth0".into(),
                    negate: false
                },
            ]
        );
        let c = parse(
            "conditionsV6",
            Some(&v(&["!", "--source", "fd00::/8", "--out-interface", "lo"])),
            true,
        )
        .expect("ok");
        assert_eq!(c.len(), 2);
        let e = parse("conditionsV6", Some(&v(&["-s", "10.0.0.1"])), true).expect_err("family");
        assert_eq!(e.code, 7);
    }
}
