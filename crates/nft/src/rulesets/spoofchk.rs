//! MAC spoof check for the bridge plugin's `macspoofchk`: frames a
//! container sends into the bridge must carry the MAC the plugin gave it.
//!
//! Layout: table `bridge rcni-macspoofchk`, base chain `prerouting` (type
//! filter, hook prerouting, priority -300, before the bridge's own nat),
//! one rule per attachment:
//!
//! ```text
//! iifname "vethX" ether saddr != MAC drop comment "rcni:NET:CONTAINER:IFNAME"
//! ```
//!
//! The comment lets DEL (which may come without a netns or prevResult) and
//! GC find the rule. ADD and DEL are one transaction each, bound to the
//! ruleset generation read before the check, so concurrent calls are safe.

use crate::ident::comment_tags;
use crate::{Batch, Chain, ChainType, Error, Family, Hook, Nft, Result, Rule};

/// The table macspoofchk owns (family `bridge`).
pub const TABLE: &str = "rcni-macspoofchk";
/// Its base chain.
pub const CHAIN: &str = "prerouting";
const PREFIX: &str = "rcni:";
const PRIORITY: i32 = -300;
const RETRIES: usize = 10;

/// One container interface on a bridge port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The CNI network name.
    pub network: String,
    /// The container.
    pub container_id: String,
    /// The container's interface.
    pub ifname: String,
    /// The host side of the veth (where the container's frames enter).
    pub host_veth: String,
    /// The only source MAC the port may send from.
    pub mac: [u8; 6],
}

/// The rule's comment; long names are bounded (see [`crate::ident`]), and
/// every lookup compares bounded forms.
fn comment(network: &str, container_id: &str, ifname: &str) -> String {
    let (n, c) = comment_tags(network, container_id);
    format!("{PREFIX}{n}:{c}:{ifname}")
}

fn parse_comment(c: &str) -> Option<(String, String, String)> {
    let rest = c.strip_prefix(PREFIX)?;
    let mut it = rest.splitn(3, ':');
    Some((
        it.next()?.to_string(),
        it.next()?.to_string(),
        it.next()?.to_string(),
    ))
}

fn check_names(p: &Port) -> Result<()> {
    for (what, v) in [("network", &p.network), ("container id", &p.container_id)] {
        if v.is_empty() || v.contains(':') {
            return Err(Error::Invalid {
                what: format!("{what} {v:?}"),
                detail: "must be non-empty and without ':'".into(),
            });
        }
    }
    Ok(())
}

/// The rule for one port.
pub fn rule(p: &Port) -> Rule {
    Rule::new()
        .iifname(&p.host_veth)
        .ether_saddr_not(p.mac)
        .drop()
        .comment(comment(&p.network, &p.container_id, &p.ifname))
}

/// (network, container id, ifname, handle) of every rule present.
fn present(nft: &Nft) -> Result<Vec<(String, String, String, u64)>> {
    if !nft.table_exists(Family::Bridge, TABLE)? {
        return Ok(Vec::new());
    }
    Ok(nft
        .rules(Family::Bridge, TABLE, Some(CHAIN))?
        .into_iter()
        .filter_map(|r| {
            let (n, c, i) = parse_comment(r.comment.as_deref()?)?;
            Some((n, c, i, r.handle))
        })
        .collect())
}

fn commit_retrying(
    nft: &Nft,
    build: impl Fn(&[(String, String, String, u64)]) -> Option<Batch>,
) -> Result<()> {
    nft.commit_fresh(RETRIES, || Ok(build(&present(nft)?)))
}

/// Installs the check for `p`, replacing an older rule of the same
/// attachment. One transaction.
pub fn add(nft: &Nft, p: &Port) -> Result<()> {
    check_names(p)?;
    let (network, container_id) = comment_tags(&p.network, &p.container_id);
    commit_retrying(nft, |have| {
        let mut b = Batch::new();
        b.add_table(Family::Bridge, TABLE).add_chain(
            Family::Bridge,
            TABLE,
            &Chain::base(CHAIN, ChainType::Filter, Hook::Prerouting, PRIORITY),
        );
        for (n, c, i, h) in have {
            if *n == network && *c == container_id && *i == p.ifname {
                b.del_rule(Family::Bridge, TABLE, CHAIN, *h);
            }
        }
        b.add_rule(Family::Bridge, TABLE, CHAIN, &rule(p));
        Some(b)
    })
}

/// Removes the check of one attachment; nothing to remove is fine.
pub fn remove(nft: &Nft, network: &str, container_id: &str, ifname: &str) -> Result<()> {
    let (network, container_id) = comment_tags(network, container_id);
    let (network, container_id) = (network.as_ref(), container_id.as_ref());
    commit_retrying(nft, |have| {
        let handles = have
            .iter()
            .filter(|(n, c, i, _)| n == network && c == container_id && i == ifname)
            .map(|(_, _, _, h)| *h);
        Batch::deleting_rules(Family::Bridge, TABLE, CHAIN, handles)
    })
}

/// Whether the attachment's check is installed.
pub fn exists(nft: &Nft, network: &str, container_id: &str, ifname: &str) -> Result<bool> {
    let (network, container_id) = comment_tags(network, container_id);
    let (network, container_id) = (network.as_ref(), container_id.as_ref());
    Ok(present(nft)?
        .iter()
        .any(|(n, c, i, _)| n == network && c == container_id && i == ifname))
}

/// Removes the checks of `network` whose (container id, ifname) is not in
/// `keep`. Returns how many were removed.
pub fn gc(nft: &Nft, network: &str, keep: &[(String, String)]) -> Result<usize> {
    let network = comment_tags(network, "").0;
    let network = network.as_ref();
    let keep: Vec<(String, String)> = keep
        .iter()
        .map(|(c, i)| (comment_tags("", c).1.into_owned(), i.clone()))
        .collect();
    let stale = |have: &[(String, String, String, u64)]| -> Vec<u64> {
        have.iter()
            .filter(|(n, c, i, _)| n == network && !keep.iter().any(|(kc, ki)| kc == c && ki == i))
            .map(|(_, _, _, h)| *h)
            .collect()
    };
    let count = stale(&present(nft)?).len();
    commit_retrying(nft, |have| {
        Batch::deleting_rules(Family::Bridge, TABLE, CHAIN, stale(have))
    })?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_roundtrip() {
        let c = comment("net", "abc", "eth0");
        assert_eq!(
            parse_comment(&c),
            Some(("net".into(), "abc".into(), "eth0".into()))
        );
        let bad = Port {
            network: "a:b".into(),
            container_id: "c".into(),
            ifname: "eth0".into(),
            host_veth: "veth0".into(),
            mac: [2, 0, 0, 0, 0, 1],
        };
        assert!(check_names(&bad).is_err());
    }
}
