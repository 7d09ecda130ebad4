//! The host facts this node's own pod CIDRs are screened against
//! ([`crate::safety::own_cidr_problem`]).

use std::collections::HashMap;

use ipnet::IpNet;
use netlink::route::RT_TABLE_MAIN;
use netlink::{Family, Socket};

use super::{Result, RTPROT_RCNI, VXLAN6_DEV, VXLAN_DEV};
use crate::cniconf::BRIDGE;
use crate::safety::OwnFacts;

/// Addresses and foreign routes of the calling thread's namespace, leaving
/// out the pods' bridge and the agent's overlay devices (they carry the
/// node's pod CIDR by design) and link-local addresses.
pub fn own_facts() -> Result<OwnFacts> {
    let sock = Socket::route()?;
    let names: HashMap<u32, String> = sock
        .links()?
        .into_iter()
        .map(|l| (l.index, l.name))
        .collect();
    let ours = |index: Option<u32>| {
        index
            .and_then(|i| names.get(&i))
            .is_some_and(|n| n == BRIDGE || n == VXLAN_DEV || n == VXLAN6_DEV)
    };
    let name_of = |index: Option<u32>| {
        index
            .and_then(|i| names.get(&i).cloned())
            .unwrap_or_else(|| "-".into())
    };
    let mut facts = OwnFacts::default();
    for a in sock.addresses(None, Family::All)? {
        let link_local = match a.addr {
            std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local(),
            std::net::IpAddr::V6(v6) => v6.is_loopback() || v6.segments()[0] & 0xffc0 == 0xfe80,
        };
        if link_local || ours(Some(a.index)) {
            continue;
        }
        if let Ok(n) = IpNet::new(a.addr, a.prefix) {
            facts.subnets.push((n.trunc(), name_of(Some(a.index))));
        }
    }
    for r in sock.routes(Family::All, Some(RT_TABLE_MAIN))? {
        if r.protocol == Some(RTPROT_RCNI) || ours(r.oif) {
            continue;
        }
        let Some(dst) = r.dst.and_then(|(ip, p)| IpNet::new(ip, p).ok()) else {
            continue;
        };
        let link_local = match dst.addr() {
            std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local(),
            std::net::IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80 || v6.is_multicast(),
        };
        if dst.prefix_len() > 0 && !link_local {
            facts.routes.push((dst.trunc(), name_of(r.oif)));
        }
    }
    Ok(facts)
}
