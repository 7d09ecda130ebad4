//! The rule sets rcni's plugins own, built on the protocol layer of this
//! crate: policy, kept apart from the nf_tables messages that carry it.
//!
//! - [`portmap`]: `inet rcni-portmap`, host-port DNAT through maps (the
//!   portmap plugin), with per-attachment conditions.
//! - [`masq`]: `inet rcni-nat`, per-network masquerade (bridge and ptp
//!   `ipMasq`).
//! - [`spoofchk`]: `bridge rcni-spoofchk`, a pod port's source MAC
//!   (bridge `macspoofchk`).

pub mod masq;
pub mod portmap;
pub mod spoofchk;
