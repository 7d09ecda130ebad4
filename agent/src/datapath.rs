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

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use ipnet::IpNet;
use netlink::neigh::NUD_PERMANENT;
use netlink::route::RT_TABLE_MAIN;
use netlink::{Family, FdbEntry, Link, LinkKind, LinkSpec, Route, Socket, Vxlan};

use crate::model::NodeInfo;
use crate::safety::{self, HostFacts};

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
    pub backend: Backend,
    /// The interface towards the other nodes; default: the one holding
    /// this node's address, else the one of the default route.
    pub uplink: Option<String>,
    /// The cluster's pod networks (one per family); empty: the union of
    /// every node's pod CIDRs.
    pub cluster_cidr: Vec<IpNet>,
    pub vxlan_vni: u32,
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
    /// Problems with single peers (the rest was still reconciled).
    pub errors: Vec<String>,
    /// Node entries refused by [`safety::screen`]; they change nothing.
    pub refused: Vec<String>,
    pub uplink: String,
    pub uplink_mtu: u32,
    /// Set when at least one peer is reached over VXLAN.
    pub vxlan_mtu: Option<u32>,
    /// `--mtu`, if given.
    pub mtu_override: Option<u32>,
    /// Remote pod CIDRs routed per backend.
    pub peers_host_gw: usize,
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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("node {0:?} is not in the node list")]
    UnknownNode(String),
    #[error("node {0:?} has no address")]
    NoAddress(String),
    #[error("no uplink: {0}")]
    NoUplink(String),
    #[error(transparent)]
    Netlink(#[from] netlink::Error),
    #[error("nftables: {0}")]
    Nft(#[from] nft::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// The VTEP MAC of a node: `0a:58:` followed by its IPv4 address (a
/// locally administered unicast address).
pub fn vtep_mac(node_ip: Ipv4Addr) -> [u8; 6] {
    let o = node_ip.octets();
    [0x0a, 0x58, o[0], o[1], o[2], o[3]]
}

/// The VTEP MAC of a node on either underlay: [`vtep_mac`] for IPv4;
/// for IPv6 `0a:59:` followed by four bytes of a hash (FNV-1a) of the whole
/// address (its last bytes alone repeat across subnets: `fd50::10`,
/// `fd60::10`).
pub fn vtep_mac_of(node_ip: IpAddr) -> [u8; 6] {
    match node_ip {
        IpAddr::V4(v4) => vtep_mac(v4),
        IpAddr::V6(v6) => {
            let h = fnv1a(&v6.octets()).to_be_bytes();
            [0x0a, 0x59, h[0], h[1], h[2], h[3]]
        }
    }
}

/// The VTEP address of a pod CIDR: its network address.
pub fn vtep_ip(cidr: &IpNet) -> IpAddr {
    cidr.network()
}

/// How one remote CIDR is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Path {
    HostGw {
        node_ip: IpAddr,
    },
    Vxlan {
        node_ip: Ipv4Addr,
    },
    /// Over the IPv6 underlay (a peer without IPv4 address).
    Vxlan6 {
        node_ip: std::net::Ipv6Addr,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Peer {
    node: String,
    cidr: IpNet,
    path: Path,
}

/// Chooses the path to every remote pod CIDR. `onlink` tells whether an
/// address is inside a subnet of the uplink. Problems go to `errors`.
fn plan(
    this_node: &str,
    nodes: &[NodeInfo],
    own: &[IpNet],
    backend: Backend,
    onlink: &dyn Fn(IpAddr) -> bool,
    errors: &mut Vec<String>,
) -> Vec<Peer> {
    let mut peers = Vec::new();
    for n in nodes.iter().filter(|n| n.name != this_node) {
        for cidr in n.pod_cidrs.iter().map(IpNet::trunc) {
            if own.iter().any(|o| o.contains(&cidr) || cidr.contains(o)) {
                errors.push(format!(
                    "node {}: pod CIDR {cidr} overlaps this node's; ignored",
                    n.name
                ));
                continue;
            }
            if peers.iter().any(|p: &Peer| p.cidr == cidr) {
                errors.push(format!(
                    "node {}: pod CIDR {cidr} is also another node's; ignored",
                    n.name
                ));
                continue;
            }
            // IPv6 pod CIDRs of a node without an on-link IPv6 address go
            // over the IPv4 underlay's VXLAN (the overlay carries any inner
            // family).
            let v4_underlay = n.addresses.iter().find_map(|a| match a {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            });
            let same_family = n.address_for(&cidr);
            let v6_needs_overlay = cidr.addr().is_ipv6() && !same_family.is_some_and(onlink);
            if let (true, Some(v4), false) =
                (v6_needs_overlay, v4_underlay, backend == Backend::HostGw)
            {
                peers.push(Peer {
                    node: n.name.clone(),
                    cidr,
                    path: Path::Vxlan { node_ip: v4 },
                });
                continue;
            }
            let Some(node_ip) = same_family else {
                errors.push(format!(
                    "node {}: no address of the family of {cidr}; not routed",
                    n.name
                ));
                continue;
            };
            let on = onlink(node_ip);
            let path = match (backend, node_ip, on) {
                (Backend::HostGw, _, true) | (Backend::Auto, _, true) => Path::HostGw { node_ip },
                (Backend::Vxlan, IpAddr::V6(_), true) => Path::HostGw { node_ip },
                (Backend::HostGw, _, false) => {
                    errors.push(format!(
                        "node {}: {node_ip} is not on-link; backend host-gw cannot reach {cidr}",
                        n.name
                    ));
                    continue;
                }
                (_, IpAddr::V6(v6), false) => Path::Vxlan6 { node_ip: v6 },
                (_, IpAddr::V4(v4), _) => Path::Vxlan { node_ip: v4 },
            };
            peers.push(Peer {
                node: n.name.clone(),
                cidr,
                path,
            });
        }
    }
    peers
}

/// The cluster networks to masquerade from: the configured ones, else the
/// union of every pod CIDR (adjacent ones merged).
pub fn cluster_networks(opts: &DatapathOptions, nodes: &[NodeInfo]) -> Vec<IpNet> {
    if !opts.cluster_cidr.is_empty() {
        return opts.cluster_cidr.iter().map(IpNet::trunc).collect();
    }
    let all: Vec<IpNet> = nodes
        .iter()
        .flat_map(|n| n.pod_cidrs.iter().map(IpNet::trunc))
        .collect();
    IpNet::aggregate(&all)
}

/// The masquerade rules: per cluster network S, traffic from S to anything
/// outside every cluster network of S's family (and not multicast).
pub fn masquerade_rules(cluster: &[IpNet]) -> Vec<nft::Rule> {
    let mut rules = Vec::new();
    for s in cluster {
        let same: Vec<IpNet> = cluster
            .iter()
            .filter(|c| c.addr().is_ipv4() == s.addr().is_ipv4())
            .copied()
            .collect();
        let multicast: IpNet = if s.addr().is_ipv4() {
            IpNet::V4(ipnet::Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4))
        } else {
            IpNet::V6(ipnet::Ipv6Net::new_assert(
                [0xff00, 0, 0, 0, 0, 0, 0, 0].into(),
                8,
            ))
        };
        let mut r = nft::Rule::new().saddr(*s);
        let mut desc = format!("{s}");
        for d in same.iter().chain(std::iter::once(&multicast)) {
            r = r.daddr_not(*d);
            desc.push_str(&format!(" !{d}"));
        }
        rules.push(r.masquerade().comment(format!(
            "{NFT_COMMENT_PREFIX}{s}:{:016x}",
            fnv1a(desc.as_bytes())
        )));
    }
    rules
}

/// FNV-1a: a stable fingerprint of a rule's content for its comment, so
/// a changed rule set is noticed without decoding expressions.
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn subnets_of(sock: &Socket, index: u32) -> Result<Vec<IpNet>> {
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
fn find_uplink(sock: &Socket, name: Option<&str>, node_ip: IpAddr) -> Result<Link> {
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
/// [`safety::screen`]): its addresses and their subnets (the agent's own
/// VXLAN device excepted), the main table's routes of other protocols
/// (default routes excepted), and what the agent routes now.
fn host_facts(sock: &Socket) -> Result<HostFacts> {
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

    let overlay = |dev: &str,
                   vx_peers: &[(IpNet, IpAddr)],
                   local: Option<IpAddr>,
                   own: &[IpNet],
                   overhead: u32,
                   report: &mut Report|
     -> Result<Option<u32>> {
        let (false, Some(local)) = (vx_peers.is_empty(), local) else {
            return Ok(None);
        };
        let mtu = opts
            .mtu
            .unwrap_or_else(|| uplink.mtu.saturating_sub(overhead));
        report.vxlan_mtu = Some(report.vxlan_mtu.map_or(mtu, |m| m.min(mtu)));
        let device = Device {
            name: dev,
            local,
            mtu,
        };
        let idx = ensure_vxlan(&sock, opts, &uplink, &device, own, report)?;
        sync_fdb(&sock, dev, idx, vx_peers, report)?;
        sync_neighbours(&sock, dev, idx, vx_peers, report)?;
        Ok(Some(idx))
    };
    let vx_index = overlay(
        VXLAN_DEV,
        &vx_peers,
        local_v4.map(IpAddr::V4),
        &own,
        VXLAN_OVERHEAD,
        &mut report,
    )?;
    let own6: Vec<IpNet> = own.iter().filter(|c| c.addr().is_ipv6()).copied().collect();
    let vx6_index = overlay(
        VXLAN6_DEV,
        &vx6_peers,
        local_v6.map(IpAddr::V6),
        &own6,
        VXLAN6_OVERHEAD,
        &mut report,
    )?;

    let mut want: Vec<Route> = Vec::new();
    for p in &peers {
        let (ip, prefix) = (p.cidr.network(), p.cidr.prefix_len());
        let dev = match p.path {
            Path::HostGw { .. } => None,
            Path::Vxlan { .. } => Some(vx_index),
            Path::Vxlan6 { .. } => Some(vx6_index),
        };
        let r = match (&p.path, dev) {
            (Path::HostGw { node_ip }, _) => {
                report.peers_host_gw += 1;
                Route::to(ip, prefix).via(*node_ip).dev(uplink.index)
            }
            (_, Some(Some(vx))) => {
                report.peers_vxlan += 1;
                Route::to(ip, prefix).via(vtep_ip(&p.cidr)).dev(vx).onlink()
            }
            (_, _) => continue,
        };
        want.push(r.protocol(RTPROT_RCNI));
    }
    sync_routes(&sock, &want, &mut report)?;

    for (dev, index) in [(VXLAN_DEV, vx_index), (VXLAN6_DEV, vx6_index)] {
        if index.is_none() {
            if let Some(l) = sock.link_by_name(dev)? {
                sock.delete_link(l.index)?;
                report
                    .changes
                    .push(format!("deleted {dev}: no peer needs it"));
            }
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

fn vxlan_matches(l: &Link, want: &Vxlan) -> bool {
    use netlink::link::{
        IFLA_VXLAN_ID, IFLA_VXLAN_LEARNING, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LOCAL6,
        IFLA_VXLAN_PORT,
    };
    if l.kind.as_deref() != Some("vxlan") {
        return false;
    }
    let a = l.info_attrs();
    a.get(IFLA_VXLAN_ID).and_then(|x| x.u32()) == Some(want.vni)
        && a.get(IFLA_VXLAN_LOCAL)
            .or_else(|| a.get(IFLA_VXLAN_LOCAL6))
            .and_then(|x| x.ip())
            == want.local
        && a.get(IFLA_VXLAN_PORT).and_then(|x| x.be16()) == want.port
        && a.get(IFLA_VXLAN_LINK).and_then(|x| x.u32()) == want.underlying
        && a.get(IFLA_VXLAN_LEARNING).and_then(|x| x.u8()) == Some(0)
}

/// One VXLAN device: its name, local underlay address and MTU.
struct Device<'a> {
    name: &'a str,
    local: IpAddr,
    mtu: u32,
}

fn ensure_vxlan(
    sock: &Socket,
    opts: &DatapathOptions,
    uplink: &Link,
    device: &Device,
    own: &[IpNet],
    report: &mut Report,
) -> Result<u32> {
    let (dev, local, mtu) = (device.name, device.local, device.mtu);
    let want = Vxlan {
        vni: opts.vxlan_vni,
        local: Some(local),
        port: Some(opts.vxlan_port),
        underlying: Some(uplink.index),
        learning: Some(false),
        ..Default::default()
    };
    let mac = vtep_mac_of(local);
    let existing = sock.link_by_name(dev)?;
    let link = match existing {
        Some(l) if vxlan_matches(&l, &want) => l,
        other => {
            if let Some(l) = other {
                sock.delete_link(l.index)?;
                report
                    .changes
                    .push(format!("deleted {dev}: settings changed"));
            }
            let spec = LinkSpec::new(dev, LinkKind::Vxlan(want.clone()))
                .mtu(mtu)
                .mac(&mac);
            sock.create_link(&spec)?;
            report.changes.push(format!(
                "created {dev} vni {} port {} local {local} dev {} mtu {mtu}",
                opts.vxlan_vni, opts.vxlan_port, uplink.name
            ));
            sock.link_by_name(dev)?
                .ok_or_else(|| Error::NoUplink(format!("{dev} vanished right after creation")))?
        }
    };
    if link.mtu != mtu {
        sock.set_mtu(link.index, mtu)?;
        report
            .changes
            .push(format!("set {dev} mtu {} -> {mtu}", link.mtu));
    }
    if link.mac != mac {
        sock.set_mac(link.index, &mac)?;
        report
            .changes
            .push(format!("set {dev} address {}", netlink::format_mac(&mac)));
    }
    // One VTEP address per family of our pod CIDRs (the first of each):
    // the network address, /32 or /128. IPv6 link-local addresses are the
    // kernel's and stay.
    let mut vteps: Vec<(IpAddr, u8)> = Vec::new();
    for c in own {
        if !vteps.iter().any(|(v, _)| v.is_ipv4() == c.addr().is_ipv4()) {
            vteps.push((vtep_ip(c), c.max_prefix_len()));
        }
    }
    let addrs: Vec<netlink::Address> = sock
        .addresses(Some(link.index), Family::All)?
        .into_iter()
        .filter(|a| !matches!(a.addr, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
        .collect();
    for a in &addrs {
        if !vteps.contains(&(a.addr, a.prefix)) {
            sock.del_address(link.index, a.addr, a.prefix)?;
            report
                .changes
                .push(format!("removed {}/{} from {dev}", a.addr, a.prefix));
        }
    }
    for (vtep, prefix) in &vteps {
        if !addrs.iter().any(|a| a.addr == *vtep && a.prefix == *prefix) {
            let options = netlink::addr::AddressOptions {
                nodad: vtep.is_ipv6(),
                ..Default::default()
            };
            sock.add_address_with(link.index, *vtep, *prefix, &options)?;
            report
                .changes
                .push(format!("added {vtep}/{prefix} to {dev}"));
        }
    }
    if !link.up {
        sock.set_link_up(link.index)?;
        report.changes.push(format!("set {dev} up"));
    }
    Ok(link.index)
}

fn sync_fdb(
    sock: &Socket,
    dev: &str,
    vx: u32,
    peers: &[(IpNet, IpAddr)],
    report: &mut Report,
) -> Result<()> {
    let want: BTreeMap<[u8; 6], IpAddr> = peers
        .iter()
        .map(|(_, ip)| (vtep_mac_of(*ip), *ip))
        .collect();
    let have = sock.fdb(Some(vx))?;
    for e in &have {
        let (Some(mac), Some(dst)) = (e.mac.as_deref(), e.ip) else {
            continue;
        };
        let wanted = <[u8; 6]>::try_from(mac)
            .ok()
            .and_then(|m| want.get(&m))
            .is_some_and(|ip| *ip == dst);
        if !wanted {
            sock.del_fdb(&FdbEntry::new(vx, mac).dst(dst))?;
            report.changes.push(format!(
                "removed fdb {} dst {dst} dev {dev}",
                netlink::format_mac(mac)
            ));
        }
    }
    for (mac, ip) in &want {
        let present = have.iter().any(|e| {
            e.mac.as_deref() == Some(&mac[..]) && e.ip == Some(*ip) && e.state & NUD_PERMANENT != 0
        });
        if !present {
            sock.replace_fdb(&FdbEntry::new(vx, mac).dst(*ip))?;
            report.changes.push(format!(
                "added fdb {} dst {ip} dev {dev}",
                netlink::format_mac(mac)
            ));
        }
    }
    Ok(())
}

fn sync_neighbours(
    sock: &Socket,
    dev: &str,
    vx: u32,
    peers: &[(IpNet, IpAddr)],
    report: &mut Report,
) -> Result<()> {
    let want: BTreeMap<IpAddr, [u8; 6]> = peers
        .iter()
        .map(|(cidr, ip)| (vtep_ip(cidr), vtep_mac_of(*ip)))
        .collect();
    let have = sock.neighbours(Some(vx), Family::All)?;
    for n in &have {
        let Some(ip) = n.ip else { continue };
        // The kernel's own IPv6 link-local and multicast entries stay.
        if let IpAddr::V6(v6) = ip {
            if v6.segments()[0] & 0xffc0 == 0xfe80 || v6.is_multicast() {
                continue;
            }
        }
        if !want.contains_key(&ip) {
            sock.del_neighbour(vx, ip)?;
            report
                .changes
                .push(format!("removed neighbour {ip} dev {dev}"));
        }
    }
    for (ip, mac) in &want {
        let present = have.iter().any(|n| {
            n.ip == Some(*ip) && n.mac.as_deref() == Some(&mac[..]) && n.state & NUD_PERMANENT != 0
        });
        if !present {
            sock.replace_neighbour(vx, *ip, mac)?;
            report.changes.push(format!(
                "added neighbour {ip} lladdr {} dev {dev}",
                netlink::format_mac(mac)
            ));
        }
    }
    Ok(())
}

fn same_route(a: &Route, b: &Route) -> bool {
    a.dst == b.dst && a.gateway == b.gateway && a.oif == b.oif && a.onlink == b.onlink
}

fn describe_route(r: &Route) -> String {
    let mut s = match r.dst {
        Some((ip, p)) => format!("{ip}/{p}"),
        None => "default".into(),
    };
    if let Some(gw) = r.gateway {
        s.push_str(&format!(" via {gw}"));
    }
    if let Some(oif) = r.oif {
        s.push_str(&format!(" dev #{oif}"));
    }
    if r.onlink {
        s.push_str(" onlink");
    }
    s
}

fn sync_routes(sock: &Socket, want: &[Route], report: &mut Report) -> Result<()> {
    let mut have = sock.routes(Family::V4, Some(RT_TABLE_MAIN))?;
    have.extend(sock.routes(Family::V6, Some(RT_TABLE_MAIN))?);
    have.retain(|r| r.protocol == Some(RTPROT_RCNI));
    for r in &have {
        let keep = want.iter().any(|w| same_route(w, r));
        let replaced = want.iter().any(|w| w.dst == r.dst);
        if !keep && !replaced {
            // A route of ours without a destination is a default route
            // (older versions could make one): it goes too.
            let (ip, prefix) = r.dst.unwrap_or(match r.family {
                Family::V6 => (IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
                _ => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            });
            let mut d = Route::to(ip, prefix).protocol(RTPROT_RCNI);
            d.oif = r.oif;
            d.priority = r.priority;
            sock.del_route(&d)?;
            report
                .changes
                .push(format!("removed route {}", describe_route(r)));
        }
    }
    for w in want {
        if have.iter().any(|r| same_route(w, r)) {
            continue;
        }
        // Replace only a route of ours; anything else is created
        // exclusively, so a route of another owner is never overwritten.
        let ours = have.iter().any(|r| r.dst == w.dst);
        let done = if ours {
            sock.replace_route(w)
        } else {
            sock.add_route(w)
        };
        match done {
            Ok(()) => report
                .changes
                .push(format!("set route {}", describe_route(w))),
            Err(e) if e.errno() == Some(libc::EEXIST) => report.errors.push(format!(
                "route {}: another route to it exists and is not the agent's; left alone",
                describe_route(w)
            )),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn sync_masquerade(cluster: &[IpNet], report: &mut Report) -> Result<()> {
    use nft::{Batch, Chain, ChainType, Family as NftFamily, Hook};
    let nft = nft::Nft::open()?;
    let rules = masquerade_rules(cluster);
    let want: Vec<Option<String>> = rules.iter().map(|r| r.comment.clone()).collect();
    let exists = nft.table_exists(NftFamily::Inet, NFT_TABLE)?;
    let have: Vec<Option<String>> = nft
        .rules(NftFamily::Inet, NFT_TABLE, Some(NFT_CHAIN))?
        .into_iter()
        .map(|r| r.comment)
        .collect();
    let chain_ok = exists
        && nft
            .chains(NftFamily::Inet, NFT_TABLE)?
            .iter()
            .any(|c| c.name == NFT_CHAIN);
    if rules.is_empty() {
        if exists {
            let mut b = Batch::new();
            b.del_table(NftFamily::Inet, NFT_TABLE);
            nft.commit(&b)?;
            report
                .changes
                .push(format!("deleted nft table inet {NFT_TABLE}"));
        }
        return Ok(());
    }
    if chain_ok && have == want {
        return Ok(());
    }
    let mut b = Batch::new();
    b.add_table(NftFamily::Inet, NFT_TABLE).add_chain(
        NftFamily::Inet,
        NFT_TABLE,
        &Chain::base(
            NFT_CHAIN,
            ChainType::Nat,
            Hook::Postrouting,
            nft::priority::SRCNAT,
        ),
    );
    b.flush_chain(NftFamily::Inet, NFT_TABLE, NFT_CHAIN);
    for r in &rules {
        b.add_rule(NftFamily::Inet, NFT_TABLE, NFT_CHAIN, r);
    }
    nft.commit(&b)?;
    let nets: Vec<String> = cluster.iter().map(|c| c.to_string()).collect();
    report.changes.push(format!(
        "set masquerade in inet {NFT_TABLE}: from {} to outside",
        nets.join(", ")
    ));
    Ok(())
}

fn ensure_forwarding(path: &str, report: &mut Report) -> Result<()> {
    let io = |what: String| move |source| Error::Io { what, source };
    let cur = std::fs::read_to_string(path).map_err(io(format!("read {path}")))?;
    if cur.trim() != "1" {
        std::fs::write(path, "1").map_err(io(format!("write {path}")))?;
        report.changes.push(format!("set {path} = 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: &str, cidrs: &[&str]) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            addresses: ip.split(',').map(|a| a.parse().unwrap()).collect(),
            pod_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn ipv6_vtep_macs_differ_where_the_last_bytes_match() {
        let a = vtep_mac_of("fd50::10".parse().unwrap());
        let c = vtep_mac_of("fd60::10".parse().unwrap());
        assert_ne!(a, c);
        assert_eq!(a[..2], [0x0a, 0x59]);
        assert_eq!(a, vtep_mac_of("fd50::10".parse().unwrap()));
    }

    #[test]
    fn mac_from_node_address() {
        assert_eq!(
            vtep_mac("192.168.50.10".parse().unwrap()),
            [0x0a, 0x58, 192, 168, 50, 10]
        );
        assert_eq!(
            vtep_ip(&"10.244.3.0/24".parse().unwrap()),
            "10.244.3.0".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn backends_choose_paths() {
        let nodes = [
            node("a", "192.168.50.10", &["10.244.1.0/24"]),
            node(
                "b",
                "192.168.50.11,fd50::11",
                &["10.244.2.0/24", "fd44:2::/64"],
            ),
            node("c", "192.168.60.10", &["10.244.3.0/24"]),
            node("d", "192.168.60.11", &[]),
            node("e", "192.168.50.12", &["10.244.1.128/25"]),
        ];
        let onlink = |ip: IpAddr| ip.to_string().starts_with("192.168.50.") || ip.is_ipv6();
        let own = vec!["10.244.1.0/24".parse().unwrap()];
        let mut errs = Vec::new();
        let auto = plan("a", &nodes, &own, Backend::Auto, &onlink, &mut errs);
        let kinds: Vec<(String, bool)> = auto
            .iter()
            .map(|p| (p.cidr.to_string(), matches!(p.path, Path::Vxlan { .. })))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("10.244.2.0/24".into(), false),
                ("fd44:2::/64".into(), false),
                ("10.244.3.0/24".into(), true)
            ]
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("overlaps"));

        let mut errs = Vec::new();
        let hg = plan("a", &nodes, &own, Backend::HostGw, &onlink, &mut errs);
        assert_eq!(hg.len(), 2);
        assert!(errs.iter().any(|e| e.contains("not on-link")), "{errs:?}");

        let mut errs = Vec::new();
        let vx = plan("a", &nodes, &own, Backend::Vxlan, &onlink, &mut errs);
        let vxlan: Vec<bool> = vx
            .iter()
            .map(|p| matches!(p.path, Path::Vxlan { .. }))
            .collect();
        assert_eq!(vxlan, vec![true, false, true]);
    }

    #[test]
    fn masquerade_excludes_the_cluster() {
        let nodes = [
            node("a", "192.168.50.10", &["10.244.0.0/24"]),
            node("b", "192.168.50.11", &["10.244.1.0/24", "fd44:2::/64"]),
            node("c", "192.168.60.10", &["10.244.3.0/24"]),
        ];
        let nets = cluster_networks(&DatapathOptions::default(), &nodes);
        let s: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
        assert_eq!(s, ["10.244.0.0/23", "10.244.3.0/24", "fd44:2::/64"]);
        let rules = masquerade_rules(&nets);
        assert_eq!(rules.len(), 3);
        let c0 = rules[0].comment.clone().unwrap();
        assert!(c0.starts_with("rcni-agent:10.244.0.0/23:"), "{c0}");
        // A different cluster changes the fingerprint of the same source.
        let other = masquerade_rules(&nets[..1]);
        assert_ne!(other[0].comment, rules[0].comment);

        let opts = DatapathOptions {
            cluster_cidr: vec!["10.244.0.0/16".parse().unwrap()],
            ..Default::default()
        };
        assert_eq!(
            cluster_networks(&opts, &nodes),
            vec!["10.244.0.0/16".parse::<IpNet>().unwrap()]
        );
    }

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
