//! What the agent knows about the cluster, whatever the source (Kubernetes
//! Node objects, etcd, or a file): each node's name, addresses and pod
//! CIDRs. Sources produce it; the data path reconciles the node against it.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's name (Kubernetes `metadata.name`).
    pub name: String,
    /// Its addresses reachable from other nodes (Kubernetes `InternalIP`
    /// entries), first preferred.
    pub addresses: Vec<IpAddr>,
    /// The pod subnets assigned to it (Kubernetes `spec.podCIDRs`, or
    /// `spec.podCIDR`); empty while none is assigned yet.
    #[serde(rename = "podCIDRs")]
    pub pod_cidrs: Vec<IpNet>,
}

impl NodeInfo {
    /// The first address of the family of `cidr`, to route that CIDR to.
    pub fn address_for(&self, cidr: &IpNet) -> Option<IpAddr> {
        self.addresses
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == cidr.addr().is_ipv4())
    }
}

/// Where node information comes from. Sources are polled: the agent asks
/// for the full list and reconciles against it, so a missed change is
/// corrected on the next round.
pub trait NodeSource {
    /// A short description for logs (`kubernetes https://…`, `etcd …`).
    fn describe(&self) -> String;
    /// Every node of the cluster, this one included.
    fn nodes(&mut self) -> Result<Vec<NodeInfo>, SourceError>;
}

/// A source could not answer.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct SourceError {
    pub source_name: String,
    pub message: String,
}

impl SourceError {
    pub fn new(source_name: impl Into<String>, message: impl Into<String>) -> SourceError {
        SourceError {
            source_name: source_name.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_of_the_cidr_family() {
        let n = NodeInfo {
            name: "n1".into(),
            addresses: vec!["fd00::1".parse().unwrap(), "192.168.1.10".parse().unwrap()],
            pod_cidrs: vec!["10.244.1.0/24".parse().unwrap()],
        };
        assert_eq!(
            n.address_for(&n.pod_cidrs[0]),
            Some("192.168.1.10".parse().unwrap())
        );
        let j = serde_json::to_value(&n).unwrap();
        assert_eq!(j["podCIDRs"][0], "10.244.1.0/24");
    }
}
