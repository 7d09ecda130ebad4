//! The node's data path: routes to the other nodes' pod CIDRs, the VXLAN
//! overlay for nodes off our L2 segment, masquerade for traffic leaving the
//! cluster, and IP forwarding.
//!
//! [`reconcile`] is a pure function of its input and the kernel state of
//! the calling thread's network namespace: it reads what is there, changes
//! only what differs, and reports every change. A second call with the same
//! input changes nothing.
//!
//! What the agent owns, and therefore may delete:
//! - routes in the main table with protocol [`RTPROT_RCNI`] (0x52, "R"),
//!   shown by `ip route` as `proto 82`;
//! - the devices [`VXLAN_DEV`] and [`VXLAN6_DEV`] and every FDB entry,
//!   neighbour and address on them (IPv6 link-local ones excepted);
//! - the nftables table `inet rcni-agent`.
//!
//! A route of ours is kept only when it is exactly one that is wanted
//! (destination, next hop, device and metric); duplicates go.
//!
//! A VXLAN device that cannot be set up (another device holds its VNI and
//! port, `--mtu` leaves no room for the encapsulation on the uplink, the
//! kernel refuses a request) costs only the peers that need it: the error
//! and those peers are reported, their routes go, and every other route,
//! the masquerade rules and forwarding are still reconciled.
//!
//! Routing per remote pod CIDR:
//! - *host-gw*: the remote node's address is inside a subnet of one of the
//!   uplink's addresses: `CIDR via NODE_IP dev UPLINK proto 82`.
//! - *VXLAN* (IPv4 only): `CIDR via VTEP dev rcni.vxlan onlink proto 82`,
//!   where VTEP is the remote CIDR's network address, a permanent
//!   neighbour `VTEP lladdr MAC(NODE_IP)` and an FDB entry
//!   `MAC(NODE_IP) dst NODE_IP`. The MAC is derived from the node address
//!   ([`vtep_mac`]), so nodes exchange nothing beyond what the source
//!   already carries. Our own device has address `OUR_CIDR.network/32`
//!   and MAC `vtep_mac(OUR_NODE_IP)`.
//!
//! IPv6 pod CIDRs get host-gw routes when the peer has an on-link IPv6
//! address; otherwise they ride the same VXLAN device over the IPv4
//! underlay: `CIDR6 via CIDR6.network dev rcni.vxlan onlink`, a permanent
//! neighbour `CIDR6.network lladdr MAC(NODE_IP4)`, our device holding
//! `OUR_CIDR6.network/128`.
//!
//! A peer with IPv6 addresses only, off our segment, is reached over the
//! second device [`VXLAN6_DEV`] on the IPv6 underlay (local = our IPv6
//! address, MTU = uplink − [`VXLAN6_OVERHEAD`], MACs from [`vtep_mac_of`]),
//! with the same per-peer FDB entry, neighbour and route as above.

mod host;
mod masquerade;
mod own;
mod plan;
mod routes;
mod sysctl;
mod vxlan;

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use netlink::{Route, Socket};

use crate::model::NodeInfo;
use crate::safety;

pub use masquerade::{cluster_networks, masquerade_rules};
pub use own::own_facts;
pub use vxlan::{vtep_ip, vtep_mac, vtep_mac_of};

use host::{find_uplink, host_facts, subnets_of};
use masquerade::sync_masquerade;
use plan::{plan, Path};
use routes::sync_routes;
use sysctl::ensure_forwarding;
use vxlan::{ensure_vxlan, overlay_mtu, sync_fdb, sync_neighbours, Device};

/// The route protocol that marks the agent's routes.
pub const RTPROT_RCNI: u8 = 0x52;
/// The VXLAN device the agent owns.
pub const VXLAN_DEV: &str = "rcni.vxlan";
/// The VXLAN device over the IPv6 underlay (peers with IPv6 addresses only).
pub const VXLAN6_DEV: &str = "rcni.vxlan6";
/// VXLAN over IPv6: outer IPv6 (40) + UDP (8) + VXLAN (8) + inner Ethernet (14).
pub const VXLAN6_OVERHEAD: u32 = 70;
/// VXLAN over IPv4: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
pub const VXLAN_OVERHEAD: u32 = 50;
/// The agent's nftables table (family inet).
pub const NFT_TABLE: &str = "rcni-agent";
/// Its NAT chain.
pub const NFT_CHAIN: &str = "postrouting";
const NFT_COMMENT_PREFIX: &str = "rcni-agent:";

/// How remote pod CIDRs are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// host-gw for on-link nodes, VXLAN for the others.
    #[default]
    Auto,
    /// host-gw only; off-link nodes are reported as errors.
    HostGw,
    /// VXLAN for every IPv4 CIDR (IPv6 still host-gw).
    Vxlan,
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Backend, String> {
        match s {
            "auto" => Ok(Backend::Auto),
            "host-gw" => Ok(Backend::HostGw),
            "vxlan" => Ok(Backend::Vxlan),
            other => Err(format!(
                "unknown backend {other:?} (expected auto, host-gw or vxlan)"
            )),
        }
    }
}

/// Settings of [`reconcile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatapathOptions {
    /// How remote pod CIDRs are reached (`--backend`).
    pub backend: Backend,
    /// The interface towards the other nodes; default: the one holding
    /// this node's address, else the one of the default route.
    pub uplink: Option<String>,
    /// The cluster's pod networks (one per family); empty: the union of
    /// every node's pod CIDRs.
    pub cluster_cidr: Vec<IpNet>,
    /// `--vxlan-vni`: the VXLAN network identifier.
    pub vxlan_vni: u32,
    /// `--vxlan-port`: the VXLAN UDP port.
    pub vxlan_port: u16,
    /// `--mtu`: the pods' MTU (and the VXLAN device's), instead of the
    /// uplink's minus the overlay overhead.
    pub mtu: Option<u32>,
}

impl Default for DatapathOptions {
    fn default() -> Self {
        DatapathOptions {
            backend: Backend::Auto,
            uplink: None,
            cluster_cidr: Vec::new(),
            vxlan_vni: 1,
            vxlan_port: 8472,
            mtu: None,
        }
    }
}

/// What a reconcile found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// One line per change made to the kernel.
    pub changes: Vec<String>,
    /// Problems with single peers, or with an overlay device and so with
    /// the peers that need it (the rest was still reconciled).
    pub errors: Vec<String>,
    /// Node entries refused by [`safety::screen`]; they change nothing.
    pub refused: Vec<String>,
    /// The interface towards the other nodes.
    pub uplink: String,
    /// The uplink's MTU.
    pub uplink_mtu: u32,
    /// Set when at least one peer needs VXLAN (also when its device could
    /// not be set up this round: pods made meanwhile fit it once it is).
    pub vxlan_mtu: Option<u32>,
    /// `--mtu`, if given.
    pub mtu_override: Option<u32>,
    /// Remote pod CIDRs routed directly (host-gw).
    pub peers_host_gw: usize,
    /// Remote pod CIDRs routed over VXLAN.
    pub peers_vxlan: usize,
}

impl Report {
    /// The MTU pods should use: the VXLAN MTU as soon as any peer needs the
    /// overlay (or the backend is `vxlan`), else the uplink's.
    pub fn pod_mtu(&self, backend: Backend) -> u32 {
        if let Some(m) = self.mtu_override {
            return m;
        }
        match (self.vxlan_mtu, backend) {
            (Some(m), _) => m,
            (None, Backend::Vxlan) => self.uplink_mtu.saturating_sub(VXLAN_OVERHEAD),
            (None, _) => self.uplink_mtu,
        }
    }
}

/// Why [`reconcile`] could not set up the datapath.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This node is not in the node list.
    #[error("node {0:?} is not in the node list")]
    UnknownNode(String),
    /// This node has no address.
    #[error("node {0:?} has no address")]
    NoAddress(String),
    /// A link the datapath needs is missing: the uplink (the named one, or
    /// none holds the node's address or the default route) or the VXLAN
    /// device just made.
    #[error("no uplink: {0}")]
    NoUplink(String),
    /// A netlink request failed.
    #[error(transparent)]
    Netlink(#[from] netlink::Error),
    /// A VXLAN device cannot work as configured: another device holds its
    /// VNI and port, or `--mtu` does not fit the uplink. Only the peers
    /// that need that device go unrouted; the message says what to do.
    #[error("{0}")]
    Overlay(String),
    /// An nftables transaction failed.
    #[error("nftables: {0}")]
    Nft(#[from] nft::Error),
    /// A file (sysctl) could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// The result of datapath operations.
pub type Result<T> = std::result::Result<T, Error>;

// FNV-1a: a stable fingerprint of a rule's content for its comment, so a
// changed rule set is noticed without decoding expressions.
use rcni_os::fnv1a;

/// Removes what the agent set up in the calling thread's namespace: its
/// routes (protocol 82, main table), its VXLAN devices (with their FDB and
/// neighbour entries) and its masquerade table. Forwarding sysctls stay
/// (other software may rely on them). Goes on after a failure; every step
/// is in the report, failures in its errors.
pub fn uninstall() -> Result<Report> {
    let mut report = Report::default();
    let sock = Socket::route()?;
    if let Err(e) = sync_routes(&sock, &[], &mut report) {
        report.errors.push(format!("routes: {e}"));
    }
    for dev in [VXLAN_DEV, VXLAN6_DEV] {
        let deleted = match sock.link_by_name(dev) {
            Ok(Some(l)) => sock.delete_link(l.index),
            Ok(None) => Ok(false),
            Err(e) => Err(e),
        };
        match deleted {
            Ok(true) => report.changes.push(format!("deleted {dev}")),
            Ok(false) => {}
            Err(e) => report.errors.push(format!("{dev}: {e}")),
        }
    }
    if let Err(e) = sync_masquerade(&[], &mut report) {
        report.errors.push(format!("masquerade: {e}"));
    }
    Ok(report)
}

/// Reconciles the calling thread's network namespace with `nodes`.
pub fn reconcile(this_node: &str, nodes: &[NodeInfo], opts: &DatapathOptions) -> Result<Report> {
    let me = nodes
        .iter()
        .find(|n| n.name == this_node)
        .ok_or_else(|| Error::UnknownNode(this_node.to_string()))?;
    let node_ip = me
        .addresses
        .iter()
        .copied()
        .find(IpAddr::is_ipv4)
        .or_else(|| me.addresses.first().copied())
        .ok_or_else(|| Error::NoAddress(this_node.to_string()))?;
    let sock = Socket::route()?;
    let uplink = find_uplink(&sock, opts.uplink.as_deref(), node_ip)?;
    let subnets = subnets_of(&sock, uplink.index)?;
    let own: Vec<IpNet> = me.pod_cidrs.iter().map(IpNet::trunc).collect();

    let mut report = Report {
        uplink: uplink.name.clone(),
        uplink_mtu: uplink.mtu,
        mtu_override: opts.mtu,
        ..Default::default()
    };
    let host = host_facts(&sock)?;
    let screened = safety::screen(this_node, nodes, &opts.cluster_cidr, &host);
    report.refused = screened.refused;
    let nodes = &screened.nodes[..];
    let onlink = |ip: IpAddr| subnets.iter().any(|s| s.contains(&ip));
    let mut peers = plan(
        this_node,
        nodes,
        &own,
        opts.backend,
        &onlink,
        &mut report.errors,
    );

    // The overlay needs our IPv4 address (the underlay) and a pod CIDR of
    // our own in the family of the CIDRs it carries (their VTEP address).
    let local_v4 = match node_ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    };
    let local_v6 = me.addresses.iter().find_map(|a| match a {
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 != 0xfe80 => Some(*v6),
        _ => None,
    });
    peers.retain(|p| {
        let has_own = own.iter().any(|o| o.addr().is_ipv4() == p.cidr.addr().is_ipv4());
        let ok = match p.path {
            Path::HostGw { .. } => true,
            Path::Vxlan { .. } => local_v4.is_some() && has_own,
            Path::Vxlan6 { .. } => local_v6.is_some() && has_own,
        };
        if !ok {
            report.errors.push(format!(
                "node {}: {} needs VXLAN, which needs a node address of the underlay's family and a pod CIDR of its family on this node",
                p.node, p.cidr
            ));
        }
        ok
    });
    let vx_peers: Vec<(IpNet, IpAddr)> = peers
        .iter()
        .filter_map(|p| match p.path {
            Path::Vxlan { node_ip } => Some((p.cidr, IpAddr::V4(node_ip))),
            _ => None,
        })
        .collect();
    let vx6_peers: Vec<(IpNet, IpAddr)> = peers
        .iter()
        .filter_map(|p| match p.path {
            Path::Vxlan6 { node_ip } => Some((p.cidr, IpAddr::V6(node_ip))),
            _ => None,
        })
        .collect();

    // An overlay that cannot be set up costs only the peers that need it:
    // its error is reported, and the routes, masquerade and forwarding of
    // everything else are still reconciled.
    let overlay = |dev: &str,
                   vx_peers: &[(IpNet, IpAddr)],
                   local: Option<IpAddr>,
                   own: &[IpNet],
                   overhead: u32,
                   report: &mut Report|
     -> Option<u32> {
        let (false, Some(local)) = (vx_peers.is_empty(), local) else {
            return None;
        };
        let set_up = |report: &mut Report| -> Result<u32> {
            // A refused --mtu is not handed to pods either: they get what
            // the overlay can carry, so they still fit once it is fixed.
            let (mtu, refused) = match overlay_mtu(opts.mtu, &uplink, overhead) {
                Ok(m) => (m, None),
                Err(e) => {
                    report.mtu_override = None;
                    (overlay_mtu(None, &uplink, overhead)?, Some(e))
                }
            };
            report.vxlan_mtu = Some(report.vxlan_mtu.map_or(mtu, |m| m.min(mtu)));
            if let Some(e) = refused {
                return Err(e);
            }
            let device = Device {
                name: dev,
                local,
                mtu,
            };
            ensure_vxlan(&sock, opts, &uplink, &device, own, report)
        };
        let idx = match set_up(report) {
            Ok(idx) => idx,
            Err(e) => {
                report.errors.push(format!("{dev} not set up: {e}"));
                return None;
            }
        };
        // The device stands: a failed forwarding or neighbour entry is
        // reported (the round fails and the next one retries) but does not
        // take the overlay, and every peer routed over it, down.
        if let Err(e) = sync_fdb(&sock, dev, idx, vx_peers, report) {
            report
                .errors
                .push(format!("{dev}: forwarding entries: {e}"));
        }
        if let Err(e) = sync_neighbours(&sock, dev, idx, vx_peers, report) {
            report.errors.push(format!("{dev}: neighbour entries: {e}"));
        }
        Some(idx)
    };
    let vx_index = overlay(
        VXLAN_DEV,
        &vx_peers,
        local_v4.map(IpAddr::V4),
        &own,
        VXLAN_OVERHEAD,
        &mut report,
    );
    let own6: Vec<IpNet> = own.iter().filter(|c| c.addr().is_ipv6()).copied().collect();
    let vx6_index = overlay(
        VXLAN6_DEV,
        &vx6_peers,
        local_v6.map(IpAddr::V6),
        &own6,
        VXLAN6_OVERHEAD,
        &mut report,
    );

    let mut want: Vec<Route> = Vec::new();
    for p in &peers {
        let (ip, prefix) = (p.cidr.network(), p.cidr.prefix_len());
        let (dev, index) = match p.path {
            Path::HostGw { node_ip } => {
                report.peers_host_gw += 1;
                let r = Route::to(ip, prefix).via(node_ip).dev(uplink.index);
                want.push(r.protocol(RTPROT_RCNI));
                continue;
            }
            Path::Vxlan { .. } => (VXLAN_DEV, vx_index),
            Path::Vxlan6 { .. } => (VXLAN6_DEV, vx6_index),
        };
        // Its device failed (the reason is in the errors already): the
        // peer is refused this round, and a route it had goes below.
        let Some(vx) = index else {
            report.errors.push(format!(
                "node {}: {} needs {dev}, which is not set up; not routed",
                p.node, p.cidr
            ));
            continue;
        };
        report.peers_vxlan += 1;
        let r = Route::to(ip, prefix).via(vtep_ip(&p.cidr)).dev(vx).onlink();
        want.push(r.protocol(RTPROT_RCNI));
    }
    sync_routes(&sock, &want, &mut report)?;

    // A device no peer is routed over goes (with a failed overlay's
    // leftovers); failing that is one more error, not the end of the round.
    for (dev, index) in [(VXLAN_DEV, vx_index), (VXLAN6_DEV, vx6_index)] {
        if index.is_some() {
            continue;
        }
        let deleted = match sock.link_by_name(dev) {
            Ok(Some(l)) => sock.delete_link(l.index),
            Ok(None) => Ok(false),
            Err(e) => Err(e),
        };
        match deleted {
            Ok(true) => report
                .changes
                .push(format!("deleted {dev}: no peer is routed over it")),
            Ok(false) => {}
            Err(e) => report.errors.push(format!("{dev}: {e}")),
        }
    }

    sync_masquerade(&cluster_networks(opts, nodes), &mut report)?;
    let v6 = nodes
        .iter()
        .flat_map(|n| &n.pod_cidrs)
        .any(|c| c.addr().is_ipv6());
    ensure_forwarding("/proc/sys/net/ipv4/ip_forward", &mut report)?;
    if v6 {
        ensure_forwarding("/proc/sys/net/ipv6/conf/all/forwarding", &mut report)?;
    }
    Ok(report)
}

#[cfg(test)]
fn test_node(name: &str, ip: &str, cidrs: &[&str]) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        addresses: ip.split(',').map(|a| a.parse().unwrap()).collect(),
        pod_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names() {
        assert_eq!("host-gw".parse::<Backend>(), Ok(Backend::HostGw));
        assert!("bgp".parse::<Backend>().is_err());
        let r = Report {
            uplink_mtu: 1500,
            ..Default::default()
        };
        assert_eq!(r.pod_mtu(Backend::Auto), 1500);
        assert_eq!(r.pod_mtu(Backend::Vxlan), 1450);
        let r = Report {
            mtu_override: Some(1400),
            ..r
        };
        assert_eq!(r.pod_mtu(Backend::Vxlan), 1400);
    }
}
