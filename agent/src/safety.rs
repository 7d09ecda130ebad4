//! Screening of the node list before anything reaches the kernel.
//!
//! A node record is data from the cluster, not from this host: a wrong or
//! hostile one must never take over the host's own traffic. [`screen`]
//! returns the node list with every entry the agent refuses removed, and
//! one line per refusal. A refused entry is skipped on its own; the rest of
//! the list is still used.
//!
//! Another node's pod CIDR is refused when it
//! - is a default route (`0.0.0.0/0`, `::/0`);
//! - lies outside the cluster CIDR of its family (`--cluster-cidr`), or,
//!   when none is configured for that family, is shorter than
//!   [`MIN_PREFIX_V4`] / [`MIN_PREFIX_V6`];
//! - overlaps a reserved range (loopback, link-local, multicast, `0/8`,
//!   `240/4`, IPv4-mapped IPv6);
//! - overlaps this node's own pod CIDRs;
//! - overlaps a subnet of an address of this host (a connected route);
//! - overlaps a route of the main table the agent does not own (any
//!   protocol but 82), the default route excepted;
//! - overlaps another node's pod CIDR. Of two overlapping claims the one
//!   this host already routes (same CIDR, same node address) keeps its
//!   route; when neither or both are routed, both are refused.
//!
//! This node's own pod CIDR ([`own_cidr_problem`]) must be inside the
//! cluster CIDR of its family when one is configured, not a default route
//! nor a reserved range, and must not overlap a subnet or a route of the
//! host outside the pods' bridge and the agent's overlay: the node would
//! otherwise put the uplink's network on its bridge. The one route overlap
//! allowed is a broad route holding the whole declared cluster CIDR (a
//! VPN's `10.0.0.0/8`): the pods are carved out of it on purpose. The agent
//! does nothing with a node whose own CIDR is refused.
//!
//! A node address is refused unless it is unicast (not unspecified,
//! loopback, multicast, limited or subnet broadcast, link-local, `0/8`,
//! `240/4`, IPv4-mapped) and not one of this host's own addresses. A pod
//! CIDR whose node has no accepted address of its family is refused too
//! (an IPv6 one only when the node has no accepted IPv4 address either:
//! it can ride the IPv4 overlay).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::model::NodeInfo;

/// The shortest IPv4 pod CIDR accepted without a `--cluster-cidr` of
/// that family.
pub const MIN_PREFIX_V4: u8 = 16;
/// The shortest IPv6 pod CIDR accepted without a `--cluster-cidr` of
/// that family.
pub const MIN_PREFIX_V6: u8 = 48;

/// What the host has that node records must not touch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Every address of this host (any interface).
    pub addresses: Vec<IpAddr>,
    /// The subnets of those addresses.
    pub connected: Vec<IpNet>,
    /// Destinations of routes the agent does not own (default excluded).
    pub foreign_routes: Vec<IpNet>,
    /// What the agent routes now: (pod CIDR, node address).
    pub installed: Vec<(IpNet, IpAddr)>,
}

/// The node list with refused entries removed, and why they were.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Screened {
    /// The entries kept, with refused CIDRs and addresses dropped.
    pub nodes: Vec<NodeInfo>,
    /// One line per refusal.
    pub refused: Vec<String>,
}

fn v4net(a: [u8; 4], p: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from(a), p))
}

fn v6net(a: [u16; 8], p: u8) -> IpNet {
    IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(a), p))
}

/// Ranges no pod CIDR may touch.
fn reserved() -> Vec<IpNet> {
    vec![
        v4net([0, 0, 0, 0], 8),
        v4net([127, 0, 0, 0], 8),
        v4net([169, 254, 0, 0], 16),
        v4net([224, 0, 0, 0], 4),
        v4net([240, 0, 0, 0], 4),
        v6net([0, 0, 0, 0, 0, 0, 0, 0], 128),
        v6net([0, 0, 0, 0, 0, 0, 0, 1], 128),
        v6net([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
        v6net([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        v6net([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
    ]
}

/// Whether two networks share an address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// "is not inside the cluster CIDR …" when a cluster CIDR of `cidr`'s
/// family is configured and none holds it.
fn outside_cluster(cidr: &IpNet, cluster: &[IpNet]) -> Option<String> {
    let fam: Vec<String> = cluster
        .iter()
        .filter(|c| c.addr().is_ipv4() == cidr.addr().is_ipv4())
        .map(|c| c.to_string())
        .collect();
    let inside = cluster.iter().any(|c| c.contains(cidr));
    (!fam.is_empty() && !inside)
        .then(|| format!("is not inside the cluster CIDR {}", fam.join(", ")))
}

/// Why `cidr` (already truncated) cannot be a remote node's pod CIDR,
/// looking at the cluster and the host only (not at other nodes).
pub fn cidr_problem(
    cidr: &IpNet,
    cluster: &[IpNet],
    own: &[IpNet],
    host: &HostFacts,
) -> Option<String> {
    if cidr.prefix_len() == 0 {
        return Some("is a default route".into());
    }
    match outside_cluster(cidr, cluster) {
        Some(why) => return Some(why),
        None if !cluster
            .iter()
            .any(|c| c.addr().is_ipv4() == cidr.addr().is_ipv4()) =>
        {
            let min = if cidr.addr().is_ipv4() {
                MIN_PREFIX_V4
            } else {
                MIN_PREFIX_V6
            };
            if cidr.prefix_len() < min {
                return Some(format!(
                    "is shorter than /{min} (the minimum without a cluster CIDR)"
                ));
            }
        }
        None => {}
    }
    if let Some(r) = reserved().iter().find(|r| overlaps(r, cidr)) {
        return Some(format!("overlaps the reserved range {r}"));
    }
    if let Some(o) = own.iter().find(|o| overlaps(o, cidr)) {
        return Some(format!("overlaps this node's pod CIDR {o}"));
    }
    if let Some(s) = host.connected.iter().find(|s| overlaps(s, cidr)) {
        return Some(format!("overlaps this host's connected subnet {s}"));
    }
    if let Some(r) = host.foreign_routes.iter().find(|r| overlaps(r, cidr)) {
        return Some(format!(
            "overlaps the route {r}, which the agent does not own"
        ));
    }
    None
}

/// What on this host this node's own pod CIDRs must not collide with:
/// addresses and routes on links other than the pods' bridge and the
/// agent's own overlay devices, routes the agent does not own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnFacts {
    /// (subnet of an address, its link's name), for every address on a
    /// link that is not the pods' bridge or the agent's overlay.
    pub subnets: Vec<(IpNet, String)>,
    /// (destination, link name or "-") of main-table routes the agent does
    /// not own, on links that are not the pods' bridge or its overlay, the
    /// default routes excepted.
    pub routes: Vec<(IpNet, String)>,
}

/// Why `cidr` (already truncated) cannot be this node's own pod CIDR: the
/// node would put it on the pods' bridge, route and masquerade it, so it
/// must be a plain private range of the cluster that nothing else on the
/// host uses (an uplink's subnet, a route someone else made).
pub fn own_cidr_problem(cidr: &IpNet, cluster: &[IpNet], host: &OwnFacts) -> Option<String> {
    if cidr.prefix_len() == 0 {
        return Some("is a default route".into());
    }
    if let Some(why) = outside_cluster(cidr, cluster) {
        return Some(why);
    }
    if let Some(r) = reserved().iter().find(|r| overlaps(r, cidr)) {
        return Some(format!("overlaps the reserved range {r}"));
    }
    if let Some((s, link)) = host.subnets.iter().find(|(s, _)| overlaps(s, cidr)) {
        return Some(format!("overlaps the subnet {s} of {link}"));
    }
    // A broad route that holds the whole declared cluster CIDR (a VPN's
    // 10.0.0.0/8, a 0.0.0.0/1) is one the cluster carves its pods out of
    // on purpose: the bridge's more specific route only takes the pods'
    // share. Any other overlap would send part of the pods' traffic away.
    let carved_from = |r: &IpNet| {
        cluster
            .iter()
            .any(|c| c.contains(cidr) && r.contains(c) && r != c)
    };
    if let Some((r, link)) = host
        .routes
        .iter()
        .find(|(r, _)| overlaps(r, cidr) && !carved_from(r))
    {
        return Some(format!(
            "overlaps the route {r} (dev {link}), which the agent does not own"
        ));
    }
    None
}

/// Why `ip` cannot be a remote node's address.
pub fn address_problem(ip: &IpAddr, host: &HostFacts) -> Option<String> {
    let bad_range = reserved()
        .iter()
        .find(|r| r.contains(ip))
        .map(|r| format!("is in the reserved range {r}"));
    if bad_range.is_some() {
        return bad_range;
    }
    if host.addresses.contains(ip) {
        return Some("is this host's own address".into());
    }
    if ip.is_ipv4() {
        for s in &host.connected {
            if s.addr().is_ipv4() && s.prefix_len() <= 30 && s.contains(ip) {
                if *ip == s.network() {
                    return Some(format!("is the network address of {s}"));
                }
                if *ip == s.broadcast() {
                    return Some(format!("is the broadcast address of {s}"));
                }
            }
        }
    }
    None
}

/// The node list as the data path may use it (see the module docs).
/// `this_node` and its entry are kept as they are.
pub fn screen(
    this_node: &str,
    nodes: &[NodeInfo],
    cluster: &[IpNet],
    host: &HostFacts,
) -> Screened {
    let mut out = Screened::default();
    let own: Vec<IpNet> = nodes
        .iter()
        .filter(|n| n.name == this_node)
        .flat_map(|n| n.pod_cidrs.iter().map(IpNet::trunc))
        .collect();
    // Claims that pass the per-entry checks: (node index, cidr, address).
    let mut claims: Vec<(usize, IpNet, IpAddr)> = Vec::new();
    let mut cleaned: Vec<NodeInfo> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        if n.name == this_node {
            cleaned.push(n.clone());
            continue;
        }
        let mut addresses = Vec::new();
        for a in &n.addresses {
            match address_problem(a, host) {
                Some(why) => out
                    .refused
                    .push(format!("node {}: address {a} {why}; not used", n.name)),
                None => addresses.push(*a),
            }
        }
        let node = NodeInfo {
            name: n.name.clone(),
            addresses,
            pod_cidrs: Vec::new(),
        };
        for cidr in n.pod_cidrs.iter().map(IpNet::trunc) {
            if let Some(why) = cidr_problem(&cidr, cluster, &own, host) {
                out.refused
                    .push(format!("node {}: pod CIDR {cidr} {why}; refused", n.name));
                continue;
            }
            // IPv6 pod CIDRs may ride the IPv4 overlay.
            let underlay = node.address_for(&cidr).or_else(|| {
                cidr.addr()
                    .is_ipv6()
                    .then(|| node.addresses.iter().copied().find(IpAddr::is_ipv4))
                    .flatten()
            });
            let Some(ip) = underlay else {
                out.refused.push(format!(
                    "node {}: pod CIDR {cidr} has no usable node address of its family; refused",
                    n.name
                ));
                continue;
            };
            claims.push((i, cidr, ip));
        }
        cleaned.push(node);
    }
    let installed = |c: &IpNet, ip: &IpAddr| host.installed.contains(&(*c, *ip));
    for (k, (i, cidr, ip)) in claims.iter().enumerate() {
        let rivals: Vec<&(usize, IpNet, IpAddr)> = claims
            .iter()
            .enumerate()
            .filter(|(j, (other, c, _))| *j != k && other != i && overlaps(c, cidr))
            .map(|(_, x)| x)
            .collect();
        let wins = rivals.is_empty()
            || (installed(cidr, ip) && !rivals.iter().any(|(_, c, a)| installed(c, a)));
        let name = &nodes[*i].name;
        if wins {
            if let Some(n) = cleaned.iter_mut().find(|n| &n.name == name) {
                if !n.pod_cidrs.contains(cidr) {
                    n.pod_cidrs.push(*cidr);
                }
            }
        } else {
            let others: Vec<String> = rivals
                .iter()
                .map(|(j, c, _)| format!("{} of node {}", c, nodes[*j].name))
                .collect();
            out.refused.push(format!(
                "node {name}: pod CIDR {cidr} overlaps {}; refused",
                others.join(", ")
            ));
        }
    }
    out.nodes = cleaned;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cidr_is_refused_when_the_host_uses_it() {
        let facts = OwnFacts {
            subnets: vec![("192.168.70.0/24".parse().unwrap(), "eth0".into())],
            routes: vec![("172.20.0.0/16".parse().unwrap(), "wg0".into())],
        };
        let cluster: Vec<IpNet> = vec!["10.244.0.0/16".parse().unwrap()];
        let why = |c: &str, cl: &[IpNet]| own_cidr_problem(&c.parse().unwrap(), cl, &facts);
        assert_eq!(why("10.244.1.0/24", &cluster), None);
        assert_eq!(
            why("192.168.70.0/24", &[]).as_deref(),
            Some("overlaps the subnet 192.168.70.0/24 of eth0")
        );
        assert!(why("192.168.70.0/24", &cluster)
            .unwrap()
            .contains("cluster CIDR"));
        assert!(why("172.20.5.0/24", &[])
            .unwrap()
            .contains("route 172.20.0.0/16 (dev wg0)"));
        // Inside a declared cluster CIDR that the route holds whole, the
        // pods are carved out of the broad route on purpose.
        let cl172: Vec<IpNet> = vec!["172.20.128.0/17".parse().unwrap()];
        assert_eq!(why("172.20.130.0/24", &cl172), None);
        // A route inside the CIDR, equal to it, or holding only part of
        // the cluster CIDR is refused all the same.
        let narrow = OwnFacts {
            subnets: vec![],
            routes: vec![
                ("10.244.1.128/25".parse().unwrap(), "wg0".into()),
                ("10.244.2.0/24".parse().unwrap(), "eth1".into()),
                ("10.244.8.0/21".parse().unwrap(), "eth2".into()),
            ],
        };
        let why_n = |c: &str| own_cidr_problem(&c.parse().unwrap(), &cluster, &narrow);
        assert!(why_n("10.244.1.0/24").unwrap().contains("10.244.1.128/25"));
        assert!(why_n("10.244.2.0/24").unwrap().contains("10.244.2.0/24"));
        assert!(why_n("10.244.9.0/24").unwrap().contains("10.244.8.0/21"));
        assert_eq!(why_n("10.244.3.0/24"), None);
        assert!(why("0.0.0.0/0", &[]).unwrap().contains("default route"));
        assert!(why("127.0.0.0/24", &[]).unwrap().contains("reserved"));
        assert_eq!(
            why("fd44:1::/64", &cluster),
            None,
            "no IPv6 cluster CIDR given"
        );
    }

    fn node(name: &str, ips: &[&str], cidrs: &[&str]) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            addresses: ips.iter().map(|a| a.parse().unwrap()).collect(),
            pod_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
        }
    }

    fn host() -> HostFacts {
        HostFacts {
            addresses: vec![
                "192.168.50.10".parse().unwrap(),
                "fd50::10".parse().unwrap(),
                "10.244.1.1".parse().unwrap(),
            ],
            connected: vec![
                "192.168.50.0/24".parse().unwrap(),
                "fd50::/64".parse().unwrap(),
                "10.244.1.0/24".parse().unwrap(),
            ],
            foreign_routes: vec![
                "172.16.0.0/12".parse().unwrap(),
                "10.96.0.0/12".parse().unwrap(),
            ],
            installed: vec![(
                "10.244.2.0/24".parse().unwrap(),
                "192.168.50.11".parse().unwrap(),
            )],
        }
    }

    fn cidrs(s: &Screened, name: &str) -> Vec<String> {
        s.nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.pod_cidrs.iter().map(|c| c.to_string()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn hostile_cidrs_are_refused_one_by_one() {
        let nodes = vec![
            node("a", &["192.168.50.10"], &["10.244.1.0/24"]),
            node("b", &["192.168.50.11"], &["10.244.2.0/24"]),
            node(
                "evil",
                &["192.168.50.66", "fd50::66"],
                &[
                    "192.168.50.0/24",
                    "::/0",
                    "0.0.0.0/0",
                    "0.0.0.0/1",
                    "0.0.0.0/5",
                    "128.0.0.0/1",
                    "10.244.2.0/24",
                    "10.244.2.128/25",
                    "10.244.0.0/16",
                    "172.16.5.0/24",
                    "127.0.0.0/16",
                    "fe80::/64",
                    "10.244.9.0/24",
                ],
            ),
        ];
        let s = screen("a", &nodes, &[], &host());
        assert_eq!(cidrs(&s, "b"), ["10.244.2.0/24"]);
        assert_eq!(cidrs(&s, "evil"), ["10.244.9.0/24"]);
        assert_eq!(cidrs(&s, "a"), ["10.244.1.0/24"]);
        let all = s.refused.join("\n");
        for (cidr, why) in [
            ("192.168.50.0/24", "connected subnet"),
            ("::/0", "default route"),
            ("0.0.0.0/0", "default route"),
            ("0.0.0.0/1", "shorter than /16"),
            ("0.0.0.0/5", "shorter than /16"),
            ("128.0.0.0/1", "shorter than /16"),
            ("10.244.2.0/24", "overlaps 10.244.2.0/24 of node b"),
            ("10.244.2.128/25", "of node b"),
            ("10.244.0.0/16", "this node's pod CIDR"),
            ("172.16.5.0/24", "does not own"),
            ("127.0.0.0/16", "reserved"),
            ("fe80::/64", "reserved"),
        ] {
            assert!(
                s.refused
                    .iter()
                    .any(|r| r.contains(&format!("pod CIDR {cidr} ")) && r.contains(why)),
                "{cidr}: {why}\n{all}"
            );
        }
        assert_eq!(s.refused.len(), 12, "{all}");
    }

    #[test]
    fn cluster_cidr_bounds_claims() {
        let cluster: Vec<IpNet> = vec!["10.244.0.0/16".parse().unwrap()];
        let nodes = vec![
            node("a", &["192.168.50.10"], &["10.244.1.0/24"]),
            node(
                "c",
                &["192.168.60.10", "fd60::10"],
                &["10.245.3.0/24", "10.244.3.0/24", "fd44:3::/64", "fd44::/40"],
            ),
        ];
        let s = screen("a", &nodes, &cluster, &host());
        // IPv6 has no cluster CIDR here: the /48 minimum applies.
        assert_eq!(cidrs(&s, "c"), ["10.244.3.0/24", "fd44:3::/64"]);
        assert!(s.refused[0].contains("not inside the cluster CIDR 10.244.0.0/16"));
        assert!(s.refused[1].contains("shorter than /48"));
    }

    #[test]
    fn bad_addresses_are_not_used() {
        let nodes = vec![
            node("a", &["192.168.50.10"], &["10.244.1.0/24"]),
            node("bc", &["255.255.255.255"], &["10.244.4.0/24"]),
            node("me", &["192.168.50.10"], &["10.244.5.0/24"]),
            node("net", &["192.168.50.255", "fd50::77"], &["10.244.6.0/24"]),
            node(
                "mc",
                &["224.0.0.5", "ff02::1"],
                &["10.244.7.0/24", "fd44:7::/64"],
            ),
            node("ok", &["0.0.0.0", "192.168.60.20"], &["10.244.8.0/24"]),
        ];
        let s = screen("a", &nodes, &[], &host());
        for n in ["bc", "me", "net", "mc"] {
            assert!(cidrs(&s, n).is_empty(), "{n}: {:?}", s.refused);
        }
        assert_eq!(cidrs(&s, "ok"), ["10.244.8.0/24"]);
        let all = s.refused.join("\n");
        assert!(
            all.contains("255.255.255.255 is in the reserved range 240.0.0.0/4"),
            "{all}"
        );
        assert!(
            all.contains("192.168.50.10 is this host's own address"),
            "{all}"
        );
        assert!(
            all.contains("192.168.50.255 is the broadcast address"),
            "{all}"
        );
        assert!(
            all.contains("ff02::1 is in the reserved range ff00::/8"),
            "{all}"
        );
        assert!(all.contains("0.0.0.0 is in the reserved range"), "{all}");
        assert!(all.contains("no usable node address"), "{all}");
        // "net" keeps its valid IPv6 address.
        let net = s.nodes.iter().find(|n| n.name == "net").unwrap();
        assert_eq!(net.addresses, vec!["fd50::77".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn overlapping_claims_without_an_incumbent_are_both_refused() {
        let nodes = vec![
            node("a", &["192.168.50.10"], &["10.244.1.0/24"]),
            node("x", &["192.168.50.21"], &["10.244.7.0/24"]),
            node("y", &["192.168.50.22"], &["10.244.7.0/25"]),
            // The incumbent of 10.244.2.0/24 is b at .11; this one is not.
            node("b2", &["192.168.50.12"], &["10.244.2.0/24"]),
        ];
        let s = screen("a", &nodes, &[], &host());
        assert!(cidrs(&s, "x").is_empty());
        assert!(cidrs(&s, "y").is_empty());
        // Alone, b2's claim does not conflict with any listed node.
        assert_eq!(cidrs(&s, "b2"), ["10.244.2.0/24"]);
        assert_eq!(s.refused.len(), 2, "{:?}", s.refused);
    }
}
