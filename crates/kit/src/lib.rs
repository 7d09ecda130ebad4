//! Shared recipes every rcni plugin reuses (what Go's `pkg/ip` and
//! `pkg/ipam` helpers are to the reference plugins): veth pairs created
//! straight into the container, race-free bridges, interface configuration
//! from a CNI result, sysctls inside a namespace, MAC helpers, an undo stack
//! for failed ADDs, and per-network attachment state.

pub mod attach;
pub mod bridge;
pub mod error;
pub mod filter;
pub mod iface;
pub mod mac;
pub mod masq;
pub mod ops;
/// The OS layer (files, locks, processes, hashes), from `rcni-os`.
pub use rcni_os as os;
pub mod packet;
pub mod podlink;
pub mod procsys;
pub mod routing;
pub mod sysctl;
pub mod undo;
pub mod veth;

pub use attach::{Attachment, Attachments, DEFAULT_STATE_ROOT};
pub use bridge::{ensure_bridge, ensure_gateway_addr, pin_bridge_mac, BridgeOptions};
pub use error::{err, Error, Result, ResultExt, Teardown};
pub use iface::{
    configure_iface, result_route, validate_iface_ips, validate_routes, wait_operational,
    IfaceOptions,
};
pub use masq::{MasqBackend, NetworkMasq};
pub use sysctl::{enable_ip_forward, sysctl_get, sysctl_set};
pub use undo::Undo;
pub use veth::{host_veth_name, setup_veth, VethPair};

/// GC and STATUS of a plugin whose only state beyond its links is its
/// IPAM's: the verb goes to the IPAM plugin when the config names one, with
/// the plugin's own stdin; without one there is nothing to do.
pub fn pass_to_ipam(
    ipam: Option<&str>,
    verb: cni_skel::Command,
    args: &cni_skel::CmdArgs,
) -> cni_spec::error::CniResult<()> {
    match ipam {
        Some(ipam) => cni_invoke::delegate(ipam, verb, args, &args.stdin),
        None => Ok(()),
    }
}

/// Opens the container's network namespace; a path that cannot be opened
/// means the container is unknown (code 3).
pub fn open_ns(path: &std::path::Path) -> Result<netns::NetNs> {
    netns::NetNs::open(path).map_err(Error::UnknownContainer)
}
