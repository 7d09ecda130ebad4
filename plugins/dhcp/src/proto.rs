//! The plugin ↔ daemon protocol: one JSON request line, one JSON reply
//! line, over the unix socket. Ours alone: the reference daemon speaks Go
//! net/rpc, so an rcni plugin needs an rcni daemon and vice versa.

use cni_spec::{IpConfig, Route};
use serde::{Deserialize, Serialize};

/// What the plugin asks of the daemon, one per CNI verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// ADD: acquire a lease (or return the one held) for the attachment.
    Allocate,
    /// DEL: release the attachment's lease.
    Release,
    /// CHECK: return the lease still held.
    Check,
    /// STATUS: answers once the daemon is up.
    Status,
    /// GC: release every lease of the network not in `keep`.
    Gc,
}

/// One request line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// The verb.
    pub method: Method,
    /// CNI_CONTAINERID.
    #[serde(rename = "containerId", default)]
    pub container_id: String,
    /// CNI_NETNS, made absolute.
    #[serde(default)]
    pub netns: String,
    /// CNI_IFNAME.
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

/// A lease as the plugin puts it into its result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lease {
    /// The leased address, with the router (if any) as its gateway.
    pub ip: Option<IpConfig>,
    /// The ACK's classless routes, else its static routes and a default
    /// route via the router.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// One reply line: a lease, an error, or neither (success without a
/// lease).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// The lease of ALLOCATE and CHECK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// Why the request failed, as the plugin passes it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<cni_spec::Error>,
}

/// Longest request line the daemon reads.
pub const MAX_LINE: u64 = 1 << 20;
