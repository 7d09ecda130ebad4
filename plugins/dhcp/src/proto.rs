//! The plugin ↔ daemon protocol: one JSON request line, one JSON reply
//! line, over the unix socket. Ours alone: the reference daemon speaks Go
//! net/rpc, so an rcni plugin needs an rcni daemon and vice versa.

use cni_spec::{IpConfig, Route};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Allocate,
    Release,
    Check,
    Status,
    Gc,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub method: Method,
    #[serde(rename = "containerId", default)]
    pub container_id: String,
    #[serde(default)]
    pub netns: String,
    #[serde(default)]
    pub ifname: String,
    /// CNI_ARGS (for `provide` options taken from it).
    #[serde(default)]
    pub args: String,
    /// The network configuration the plugin got on stdin.
    #[serde(default)]
    pub config: serde_json::Value,
    /// GC: the (containerId, ifname) pairs to keep.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lease {
    pub ip: Option<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<cni_spec::Error>,
}

/// Longest request line the daemon reads.
pub const MAX_LINE: u64 = 1 << 20;
