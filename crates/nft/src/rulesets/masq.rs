//! Per-network masquerade, as the bridge and ptp plugins' `ipMasq` needs.
//!
//! Layout: table `inet rcni-nat`, base chain `postrouting` (type nat, hook
//! postrouting, priority srcnat), one rule per (network, subnet):
//!
//! ```text
//! ip saddr SUBNET ip daddr != SUBNET ip daddr != 224.0.0.0/4 masquerade comment "rcni:NET:SUBNET"
//! ip6 saddr SUBNET ip6 daddr != SUBNET ip6 daddr != ff00::/8 masquerade comment "rcni:NET:SUBNET"
//! ```
//!
//! Masquerade is per network, not per container: after the first pod of a
//! network, [`ensure`] costs one dump of one chain and changes nothing.
//! Concurrent callers are safe: a missing rule is added in a transaction
//! bound to the ruleset generation read before the check, so two plugins
//! racing to add the same rule cannot both succeed (the loser re-reads and
//! finds it).
//!
//! [`remove`] deletes the network's rules and leaves the table and chain in
//! place: an empty nat chain costs nothing per packet worth measuring, and
//! keeping it avoids racing a concurrent [`ensure`] of another network.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::{Batch, Chain, ChainType, Error, Family, Hook, Nft, Result, Rule};

/// The table masquerade owns (family `inet`).
pub const TABLE: &str = "rcni-nat";
/// Its base chain (srcnat).
pub const CHAIN: &str = "postrouting";
const PREFIX: &str = "rcni:";
/// Attempts when the ruleset keeps changing under us.
const RETRIES: usize = 10;

/// The comment that identifies a network's rule for one subnet.
pub fn comment(network: &str, subnet: IpNet) -> String {
    format!("{PREFIX}{network}:{}", subnet.trunc())
}

/// Parses a comment written by [`comment`].
pub fn parse_comment(c: &str) -> Option<(String, IpNet)> {
    let rest = c.strip_prefix(PREFIX)?;
    let (net, subnet) = rest.split_once(':')?;
    Some((net.to_string(), subnet.parse().ok()?))
}

fn check_network(network: &str) -> Result<()> {
    if network.is_empty() || network.contains(':') || network.len() > 200 {
        return Err(Error::Invalid {
            what: format!("network name {network:?}"),
            detail: "must be non-empty, at most 200 bytes, without ':'".into(),
        });
    }
    Ok(())
}

/// The masquerade rule for one subnet.
pub fn rule(network: &str, subnet: IpNet) -> Rule {
    let subnet = subnet.trunc();
    let multicast: IpNet = match subnet.addr() {
        IpAddr::V4(_) => IpNet::V4(ipnet::Ipv4Net::new_assert([224, 0, 0, 0].into(), 4)),
        IpAddr::V6(_) => IpNet::V6(ipnet::Ipv6Net::new_assert(
            [0xff00, 0, 0, 0, 0, 0, 0, 0].into(),
            8,
        )),
    };
    Rule::new()
        .saddr(subnet)
        .daddr_not(subnet)
        .daddr_not(multicast)
        .masquerade()
        .comment(comment(network, subnet))
}

fn present(nft: &Nft) -> Result<Vec<(String, IpNet, u64)>> {
    Ok(nft
        .rules(Family::Inet, TABLE, Some(CHAIN))?
        .into_iter()
        .filter_map(|r| {
            let (n, s) = parse_comment(r.comment.as_deref()?)?;
            Some((n, s, r.handle))
        })
        .collect())
}

fn missing(have: &[(String, IpNet, u64)], network: &str, subnets: &[IpNet]) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = Vec::new();
    for s in subnets.iter().map(|s| s.trunc()) {
        let found = have.iter().any(|(n, h, _)| n == network && *h == s);
        if !found && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Makes sure `network` masquerades traffic from each of `subnets` to
/// destinations outside it. Idempotent; at most one transaction.
pub fn ensure(nft: &Nft, network: &str, subnets: &[IpNet]) -> Result<()> {
    check_network(network)?;
    // Cheap path: one dump of one chain.
    if missing(&present(nft)?, network, subnets).is_empty() {
        return Ok(());
    }
    nft.commit_fresh(RETRIES, || {
        let todo = missing(&present(nft)?, network, subnets);
        if todo.is_empty() {
            return Ok(None);
        }
        let mut b = Batch::new();
        b.add_table(Family::Inet, TABLE).add_chain(
            Family::Inet,
            TABLE,
            &Chain::base(
                CHAIN,
                ChainType::Nat,
                Hook::Postrouting,
                crate::priority::SRCNAT,
            ),
        );
        for s in todo {
            b.add_rule(Family::Inet, TABLE, CHAIN, &rule(network, s));
        }
        Ok(Some(b))
    })
}

/// Removes every masquerade rule of `network`. Succeeds when there is none.
pub fn remove(nft: &Nft, network: &str) -> Result<()> {
    nft.commit_fresh(RETRIES, || {
        let handles = present(nft)?
            .into_iter()
            .filter(|(n, _, _)| n == network)
            .map(|(_, _, h)| h);
        Ok(Batch::deleting_rules(Family::Inet, TABLE, CHAIN, handles))
    })
}

/// Every (network, subnet) with a masquerade rule.
pub fn list(nft: &Nft) -> Result<Vec<(String, IpNet)>> {
    Ok(present(nft)?.into_iter().map(|(n, s, _)| (n, s)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_roundtrip() {
        let s: IpNet = "fd00::5/64".parse().expect("net");
        let c = comment("mynet", s);
        assert_eq!(c, "rcni:mynet:fd00::/64");
        assert_eq!(parse_comment(&c), Some(("mynet".into(), s.trunc())));
        assert_eq!(parse_comment("other"), None);
        assert!(check_network("a:b").is_err());
    }
}
