//! Identifiers bounded for nftables comments; the bound itself is
//! [`cni_spec::ident::bounded`], shared with file names elsewhere.

pub use cni_spec::ident::bounded;
use std::borrow::Cow;

/// Budget of a network name inside an nftables comment.
pub const COMMENT_NETWORK_MAX: usize = 64;
/// Budget of a container id inside an nftables comment.
pub const COMMENT_CONTAINER_MAX: usize = 96;

/// The forms of a network name and a container id written into nftables
/// comments (`rcni:NET:ID:IFNAME` stays under the kernel's 255 bytes:
/// interface names have at most 15).
pub fn comment_tags<'a>(network: &'a str, container_id: &'a str) -> (Cow<'a, str>, Cow<'a, str>) {
    (
        bounded(network, COMMENT_NETWORK_MAX),
        bounded(container_id, COMMENT_CONTAINER_MAX),
    )
}
