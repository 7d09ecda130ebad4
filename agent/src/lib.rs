//! The rcni node agent: takes this node's pod CIDR from the cluster, writes
//! the node's CNI configuration, installs the plugins, routes pod traffic
//! between nodes (host-gw routes on a shared L2 segment, VXLAN otherwise)
//! and masquerades traffic leaving the cluster.

pub mod args;
pub mod cniconf;
pub mod datapath;
pub mod health;
pub mod model;
pub mod safety;
pub mod source;
