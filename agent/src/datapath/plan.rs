//! Which path reaches each remote pod CIDR: host-gw, VXLAN over the IPv4
//! underlay, or VXLAN over the IPv6 underlay.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::Backend;
use crate::model::NodeInfo;

/// How one remote CIDR is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Path {
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
pub(super) struct Peer {
    pub(super) node: String,
    pub(super) cidr: IpNet,
    pub(super) path: Path,
}

/// Chooses the path to every remote pod CIDR. `onlink` tells whether an
/// address is inside a subnet of the uplink. Problems go to `errors`.
pub(super) fn plan(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::test_node;

    #[test]
    fn backends_choose_paths() {
        let nodes = [
            test_node("a", "192.168.50.10", &["10.244.1.0/24"]),
            test_node(
                "b",
                "192.168.50.11,fd50::11",
                &["10.244.2.0/24", "fd44:2::/64"],
            ),
            test_node("c", "192.168.60.10", &["10.244.3.0/24"]),
            test_node("d", "192.168.60.11", &[]),
            test_node("e", "192.168.50.12", &["10.244.1.128/25"]),
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
}
