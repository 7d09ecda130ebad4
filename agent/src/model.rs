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

/// Reads one node record (`{"name", "addresses", "podCIDRs"}`) leniently:
/// an address or pod CIDR that does not parse is left out and named in the
/// returned problems, so one bad field never loses the node, and one bad
/// node never loses the list. Only a record without a name is an error.
pub fn node_from_json(v: &serde_json::Value) -> Result<(NodeInfo, Vec<String>), String> {
    let name = v
        .get("name")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| "a node record without a \"name\"".to_string())?
        .to_string();
    let mut problems = Vec::new();
    let strings = |field: &str, problems: &mut Vec<String>| -> Vec<String> {
        match v.get(field) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|x| match x.as_str() {
                    Some(s) => Some(s.trim().to_string()),
                    None => {
                        problems.push(format!("node {name}: {field}: {x} is not a string"));
                        None
                    }
                })
                .collect(),
            Some(other) => {
                problems.push(format!("node {name}: {field}: {other} is not a list"));
                Vec::new()
            }
        }
    };
    let mut node = NodeInfo {
        name: name.clone(),
        addresses: Vec::new(),
        pod_cidrs: Vec::new(),
    };
    for a in strings("addresses", &mut problems) {
        match a.parse::<IpAddr>() {
            Ok(ip) if !node.addresses.contains(&ip) => node.addresses.push(ip),
            Ok(_) => {}
            Err(e) => problems.push(format!("node {name}: address {a:?}: {e}; skipped")),
        }
    }
    for c in strings("podCIDRs", &mut problems) {
        match c.parse::<IpNet>() {
            Ok(net) if !node.pod_cidrs.contains(&net.trunc()) => node.pod_cidrs.push(net.trunc()),
            Ok(_) => {}
            Err(e) => problems.push(format!("node {name}: pod CIDR {c:?}: {e}; skipped")),
        }
    }
    Ok((node, problems))
}

/// Where node information comes from. The agent asks for the full list
/// and reconciles against it, every round, so a missed change is corrected
/// on the next one; a source that can watch ([`NodeSource::watch`]) only
/// makes the next round come at once.
pub trait NodeSource {
    /// A short description for logs (`kubernetes https://…`, `etcd …`).
    fn describe(&self) -> String;
    /// Every node of the cluster, this one included.
    fn nodes(&mut self) -> Result<Vec<NodeInfo>, SourceError>;
    /// The entries the last [`NodeSource::nodes`] skipped because they
    /// could not be read (one bad entry never fails the whole list).
    fn skipped(&self) -> Vec<String> {
        Vec::new()
    }
    /// Keeps this node's registration up (etcd allocation: register, keep
    /// the lease alive); called before every round and often in between.
    /// Lines to log.
    fn maintain(&mut self) -> Result<Vec<String>, SourceError> {
        Ok(Vec::new())
    }
    /// Starts watching for changes, if the source can: a message on the
    /// channel means "something changed, list again" (the list stays the
    /// truth; the periodic round stays the safety net).
    fn watch(&mut self) -> Option<std::sync::mpsc::Receiver<String>> {
        None
    }
}

/// A source could not answer.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct SourceError {
    /// The source that failed (its [`NodeSource::describe`]).
    pub source_name: String,
    /// What went wrong.
    pub message: String,
}

impl SourceError {
    /// An error of the source `source_name`.
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
        let (back, problems) = node_from_json(&j).unwrap();
        assert_eq!((back, problems), (n, vec![]));
    }

    #[test]
    fn lenient_records_skip_bad_fields() {
        let v = serde_json::json!({"name": "x",
            "addresses": ["192.168.1.300", "192.168.1.3", 7],
            "podCIDRs": ["10.244.3.0/24", "10.244.4.0/33", "10.244.5.1/24"]});
        let (n, problems) = node_from_json(&v).unwrap();
        assert_eq!(n.addresses, vec!["192.168.1.3".parse::<IpAddr>().unwrap()]);
        let c: Vec<String> = n.pod_cidrs.iter().map(|c| c.to_string()).collect();
        assert_eq!(c, ["10.244.3.0/24", "10.244.5.0/24"]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(node_from_json(&serde_json::json!({"addresses": []})).is_err());
        let (n, _) = node_from_json(&serde_json::json!({"name": "y"})).unwrap();
        assert!(n.addresses.is_empty() && n.pod_cidrs.is_empty());
    }
}
