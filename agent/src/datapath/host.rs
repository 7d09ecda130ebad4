//! What the host has: the uplink and its subnets, and the facts node
//! records are screened against.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use netlink::route::RT_TABLE_MAIN;
use netlink::{Family, Link, Socket};

use super::{Error, Result, RTPROT_RCNI, VXLAN6_DEV, VXLAN_DEV};
use crate::safety::HostFacts;

pub(super) fn subnets_of(sock: &Socket, index: u32) -> Result<Vec<IpNet>> {
    Ok(sock
        .addresses(Some(index), Family::All)?
        .into_iter()
        .filter(|a| !matches!(a.addr, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
        .filter_map(|a| IpNet::new(a.addr, a.prefix).ok())
        .filter(|n| n.prefix_len() < n.max_prefix_len())
        .map(|n| n.trunc())
        .collect())
}

/// The uplink: the named interface, else the one holding `node_ip`, else
/// the one of the default route.
pub(super) fn find_uplink(sock: &Socket, name: Option<&str>, node_ip: IpAddr) -> Result<Link> {
    if let Some(name) = name {
        return sock
            .link_by_name(name)?
            .ok_or_else(|| Error::NoUplink(format!("interface {name:?} does not exist")));
    }
    if let Some(a) = sock
        .addresses(None, Family::of(node_ip))?
        .into_iter()
        .find(|a| a.addr == node_ip)
    {
        if let Some(l) = sock.link_by_index(a.index)? {
            return Ok(l);
        }
    }
    let default = sock
        .routes(Family::of(node_ip), Some(RT_TABLE_MAIN))?
        .into_iter()
        .find(|r| r.is_default() && r.oif.is_some());
    if let Some(oif) = default.and_then(|r| r.oif) {
        if let Some(l) = sock.link_by_index(oif)? {
            return Ok(l);
        }
    }
    Err(Error::NoUplink(format!(
        "no interface holds {node_ip} and there is no default route; use --uplink"
    )))
}

/// What the host has that node records must not touch (see
/// [`crate::safety::screen`]): its addresses and their subnets (the agent's own
/// VXLAN device excepted), the main table's routes of other protocols
/// (default routes excepted), and what the agent routes now.
pub(super) fn host_facts(sock: &Socket) -> Result<HostFacts> {
    let vx = sock.link_by_name(VXLAN_DEV)?.map(|l| l.index);
    let vx6 = sock.link_by_name(VXLAN6_DEV)?.map(|l| l.index);
    let mut facts = HostFacts::default();
    for a in sock.addresses(None, Family::All)? {
        if Some(a.index) == vx || Some(a.index) == vx6 {
            continue;
        }
        facts.addresses.push(a.addr);
        if let Ok(n) = IpNet::new(a.addr, a.prefix) {
            facts.connected.push(n.trunc());
        }
    }
    let routes = sock.routes(Family::All, Some(RT_TABLE_MAIN))?;
    let vx_neigh = match vx {
        Some(i) => sock.neighbours(Some(i), Family::All)?,
        None => Vec::new(),
    };
    for r in &routes {
        let Some(dst) = r.dst.and_then(|(ip, p)| IpNet::new(ip, p).ok()) else {
            continue;
        };
        if r.protocol != Some(RTPROT_RCNI) {
            if dst.prefix_len() > 0 {
                facts.foreign_routes.push(dst.trunc());
            }
            continue;
        }
        let Some(gw) = r.gateway else { continue };
        if vx6.is_some() && r.oif == vx6 {
            // The IPv6 overlay's MACs hold only part of the node address.
            continue;
        }
        if vx.is_some() && r.oif == vx {
            // Overlay: the gateway is the VTEP, whose neighbour entry
            // carries the node address in its MAC.
            let node = vx_neigh
                .iter()
                .find(|n| n.ip == Some(gw))
                .and_then(|n| n.mac.as_deref())
                .filter(|m| m.len() == 6)
                .map(|m| IpAddr::V4(Ipv4Addr::new(m[2], m[3], m[4], m[5])));
            if let Some(ip) = node {
                facts.installed.push((dst.trunc(), ip));
            }
        } else {
            facts.installed.push((dst.trunc(), gw));
        }
    }
    Ok(facts)
}
