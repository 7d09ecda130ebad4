//! Conditional mappings: the portmap plugin's `conditionsV4`/`conditionsV6`
//! (nftables match expressions, as the reference's nftables backend takes
//! them). A mapping whose family has conditions is not a map element: it is
//! one rule of its own in the regular chain `dnat_cond`, which the `dnat`
//! chain jumps to after its map lookups:
//!
//! ```text
//! chain dnat      { ... map lookups ...; jump dnat_cond comment "rcni-portmap-conditions" }
//! chain dnat_cond { <conditions> [ip daddr HOSTIP] meta l4proto P th dport HP dnat ip to POD:PORT comment "rcni:NET:ID:IF" }
//! ```
//!
//! So the conditions restrict only the mappings of the attachment whose
//! config carries them (the reference prefixes them to its one entry rule,
//! where the last ADD's conditions apply to every pod). Masquerade elements
//! (hairpin, localhost, masqAll) are the same as for unconditional mappings.
//! The chain and the jump are made on first use, so tables made before
//! this existed work unchanged.

use super::{
    attachment_matcher, check, comment, elements, host_ip, layout, parse_comment, stale_matcher, v,
    Mapping, Options, TABLE,
};
use crate::expr::{CmpOp, Expr, MetaKey, Reg};
use crate::{Batch, Chain, Error, Family, Nft, Result, Rule, SetName};
use ipnet::IpNet;

/// The chain of conditional mappings.
pub const COND_CHAIN: &str = "dnat_cond";
/// Comment of the `dnat` chain's jump to [`COND_CHAIN`].
const JUMP_COMMENT: &str = "rcni-portmap-conditions";
const RETRIES: usize = 10;

/// One match of a condition list; every one must hold (nft's implicit and).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `ip|ip6 saddr|daddr [!=] PREFIX`.
    Addr {
        /// `daddr` rather than `saddr`.
        dst: bool,
        /// The prefix matched (its family picks `ip` or `ip6`).
        net: IpNet,
        /// `!=` rather than `==`.
        negate: bool,
    },
    /// `iifname|oifname [!=] NAME` (exact name).
    Ifname {
        /// `oifname` rather than `iifname`.
        output: bool,
        /// The interface name.
        name: String,
        /// `!=` rather than `==`.
        negate: bool,
    },
}

fn ifname_match(r: Rule, output: bool, name: &str, negate: bool) -> Rule {
    let mut data = vec![0u8; 16];
    let n = name.len().min(15);
    data[..n].copy_from_slice(&name.as_bytes()[..n]);
    let key = if output {
        MetaKey::OifName
    } else {
        MetaKey::IifName
    };
    r.expr(Expr::Meta { key, dreg: Reg(0) }).expr(Expr::Cmp {
        sreg: Reg(0),
        op: if negate { CmpOp::Neq } else { CmpOp::Eq },
        data,
    })
}

/// The rule of one conditional mapping.
pub fn conditional_rule(m: &Mapping, conds: &[Condition]) -> Rule {
    let mut r = Rule::new().nfproto(v(m.pod_ip));
    for c in conds {
        r = match c {
            Condition::Addr {
                dst: false,
                net,
                negate: false,
            } => r.saddr(*net),
            Condition::Addr {
                dst: false,
                net,
                negate: true,
            } => r.saddr_not(*net),
            Condition::Addr {
                dst: true,
                net,
                negate: false,
            } => r.daddr(*net),
            Condition::Addr {
                dst: true,
                net,
                negate: true,
            } => r.daddr_not(*net),
            Condition::Ifname {
                output,
                name,
                negate,
            } => ifname_match(r, *output, name, *negate),
        };
    }
    if let Some(h) = host_ip(m) {
        r = r.daddr(IpNet::from(h));
    }
    r.l4proto(m.proto.number())
        .dport(m.host_port)
        .dnat(m.pod_ip, Some(m.pod_port))
        .comment(comment(&m.network, &m.container_id, &m.ifname))
}

/// (comment, handle) of every rule of [`COND_CHAIN`].
fn cond_rules(nft: &Nft) -> Result<Vec<(String, u64)>> {
    Ok(nft
        .rules(Family::Inet, TABLE, Some(COND_CHAIN))?
        .into_iter()
        .filter_map(|r| Some((r.comment?, r.handle)))
        .collect())
}

fn commit_retrying(
    nft: &Nft,
    build: impl Fn(&[(String, u64)]) -> Result<Option<Batch>>,
) -> Result<()> {
    nft.commit_fresh(RETRIES, || build(&cond_rules(nft)?))
}

/// Adds conditional mappings (usually one attachment's): each with the
/// conditions of its address family from `conds_v4`/`conds_v6`, which must
/// not be empty for a family that has mappings here. Re-adding the same
/// attachment replaces its rules. A host port held by another attachment
/// in the unconditional maps is refused, as for [`super::add`]. One
/// transaction (after the table is made, the first time).
pub fn add_conditional(
    nft: &Nft,
    mappings: &[Mapping],
    conds_v4: &[Condition],
    conds_v6: &[Condition],
    opts: &Options,
) -> Result<()> {
    let conds_of = |m: &Mapping| {
        if m.pod_ip.is_ipv4() {
            conds_v4
        } else {
            conds_v6
        }
    };
    for m in mappings {
        check(m)?;
        if conds_of(m).is_empty() {
            return Err(Error::Invalid {
                what: format!("conditional mapping of port {}", m.host_port),
                detail: "no conditions for its address family".into(),
            });
        }
    }
    if mappings.is_empty() {
        return Ok(());
    }
    if !nft.table_exists(Family::Inet, TABLE)? {
        let mut b = Batch::new();
        layout(&mut b);
        match nft.commit(&b) {
            Err(e) if !e.is_exists() => return Err(e),
            _ => {}
        }
    }
    // The same key in an unconditional map, held by someone else.
    for m in mappings {
        let mut all = elements(m, opts);
        if all.is_empty() {
            continue;
        }
        let (set, dnat) = all.remove(0);
        for x in nft.set_elements(Family::Inet, TABLE, &set)? {
            if x.key == dnat.key && x.comment != dnat.comment {
                return Err(Error::Invalid {
                    what: format!("host port mapping {}/{}", m.host_port, m.proto.as_str()),
                    detail: format!(
                        "already taken in set \"{set}\" by {}",
                        x.comment.as_deref().unwrap_or("an uncommented element")
                    ),
                });
            }
        }
    }
    let own: Vec<String> = mappings
        .iter()
        .map(|m| comment(&m.network, &m.container_id, &m.ifname))
        .collect();
    commit_retrying(nft, |have| {
        let mut b = Batch::new();
        b.add_chain(Family::Inet, TABLE, &Chain::regular(COND_CHAIN));
        let jumps = nft
            .rules(Family::Inet, TABLE, Some("dnat"))?
            .into_iter()
            .any(|r| r.comment.as_deref() == Some(JUMP_COMMENT));
        if !jumps {
            b.add_rule(
                Family::Inet,
                TABLE,
                "dnat",
                &Rule::new().jump(COND_CHAIN).comment(JUMP_COMMENT),
            );
        }
        for (c, h) in have {
            if own.contains(c) {
                b.del_rule(Family::Inet, TABLE, COND_CHAIN, *h);
            }
        }
        let mut masq: Vec<(String, Vec<crate::Element>)> = Vec::new();
        for m in mappings {
            b.add_rule(
                Family::Inet,
                TABLE,
                COND_CHAIN,
                &conditional_rule(m, conds_of(m)),
            );
            for (set, e) in elements(m, opts).into_iter().skip(1) {
                match masq.iter_mut().find(|(s, _)| *s == set) {
                    Some((_, l)) => {
                        if !l.iter().any(|x| x.key == e.key) {
                            l.push(e)
                        }
                    }
                    None => masq.push((set, vec![e])),
                }
            }
        }
        for (set, list) in &masq {
            b.add_elements(SetName::new(Family::Inet, TABLE, set), list);
        }
        Ok(Some(b))
    })
}

fn remove_cond_where(nft: &Nft, gone: impl Fn(&str, &str, &str) -> bool) -> Result<usize> {
    if !nft.table_exists(Family::Inet, TABLE)? {
        return Ok(0);
    }
    let doomed = |have: &[(String, u64)]| -> Vec<u64> {
        have.iter()
            .filter(|(c, _)| parse_comment(c).is_some_and(|(n, id, i)| gone(n, id, i)))
            .map(|(_, h)| *h)
            .collect()
    };
    let count = doomed(&cond_rules(nft)?).len();
    if count == 0 {
        return Ok(0);
    }
    commit_retrying(nft, |have| {
        Ok(Batch::deleting_rules(
            Family::Inet,
            TABLE,
            COND_CHAIN,
            doomed(have),
        ))
    })?;
    Ok(count)
}

/// Removes the conditional mappings of one attachment (its masquerade
/// elements go with [`super::remove_container`]); none is fine.
pub fn remove_conditional(
    nft: &Nft,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Result<usize> {
    remove_cond_where(nft, attachment_matcher(network, container_id, ifname))
}

/// GC: the conditional mappings of `network` whose (container id, ifname)
/// is not in `keep`.
pub fn gc_conditional(nft: &Nft, network: &str, keep: &[(String, String)]) -> Result<usize> {
    remove_cond_where(nft, stale_matcher(network, keep))
}

/// How many conditional mapping rules one attachment has.
pub fn count_conditional(
    nft: &Nft,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Result<usize> {
    let want = comment(network, container_id, ifname);
    Ok(cond_rules(nft)?.iter().filter(|(c, _)| *c == want).count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rulesets::portmap::Proto;

    #[test]
    fn a_conditional_rule_matches_then_dnats() {
        let m = Mapping {
            network: "n".into(),
            container_id: "c".into(),
            ifname: "eth0".into(),
            proto: Proto::Tcp,
            host_ip: None,
            host_port: 8080,
            pod_ip: "10.1.0.2".parse().expect("ip"),
            pod_port: 80,
        };
        let conds = [
            Condition::Addr {
                dst: false,
                net: "10.9.0.0/16".parse().expect("net"),
                negate: false,
            },
            Condition::Ifname {
                output: false,
                name: "eth1".into(),
                negate: true,
            },
        ];
        let r = conditional_rule(&m, &conds);
        assert_eq!(r.comment.as_deref(), Some("rcni:n:c:eth0"));
        assert!(r.exprs.iter().any(|e| matches!(
            e,
            Expr::Cmp {
                op: CmpOp::Neq,
                data,
                ..
            } if data.starts_with(b"eth1\0")
        )));
        assert!(matches!(r.exprs.last(), Some(Expr::Nat { .. })));
    }
}
