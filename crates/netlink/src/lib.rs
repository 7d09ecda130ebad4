//! Synchronous rtnetlink, hand-rolled over raw `libc` netlink sockets.
//!
//! Only this crate talks rtnetlink; plugins compose its typed operations.
//! A [`Socket`] is bound to one network namespace when it is opened
//! ([`Socket::route_in`]) and every operation on it acts there, so callers
//! never switch thread namespaces. The [`msg`] builder/parser and the
//! socket are protocol-agnostic so the nf_tables crate reuses them.
//!
//! Typed operations are methods on [`Socket`], grouped by module: links,
//! addresses, routes, rules, neighbours/FDB and tc. `tuntap` creates
//! tun/tap devices through `/dev/net/tun`.
//!
//! # Example
//!
//! A veth pair between two throwaway namespaces, addressed and routed
//! (needs root):
//!
//! ```
//! # fn main() -> netlink::Result<()> {
//! use netlink::{Family, Route, Socket};
//! use std::net::IpAddr;
//! let ip = |s: &str| s.parse::<IpAddr>().expect("address");
//!
//! let node = netns::create_anonymous()?;
//! let pod = netns::create_anonymous()?;
//! let (n, p) = (Socket::route_in(&node)?, Socket::route_in(&pod)?);
//! // eth0 in the pod, its peer created directly in the node's namespace.
//! p.create_veth("eth0", "veth1234", Some(node.fd()), Some(1400), None, None)?;
//! let eth0 = p.link_by_name("eth0")?.expect("just created");
//! let peer = n.link_by_name("veth1234")?.expect("created with it");
//! assert_eq!(eth0.link, Some(peer.index));
//!
//! p.add_address(eth0.index, ip("10.88.0.5"), 24)?;
//! p.set_link_up(eth0.index)?;
//! p.add_route(&Route::default_for(Family::V4).via(ip("10.88.0.1")))?;
//! let routes = p.routes(Family::V4, None)?;
//! assert!(routes.iter().any(|r| r.is_default() && r.gateway == Some(ip("10.88.0.1"))));
//!
//! // Deleting one end removes the pair; the namespaces go with their handles.
//! assert!(n.delete_link(peer.index)?);
//! assert!(p.link_by_name("eth0")?.is_none());
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod addr;
pub mod alias;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod link;
pub mod msg;
pub mod neigh;
pub mod netconf;
pub mod route;
pub mod rule;
pub mod socket;
pub mod tc;
pub mod tuntap;

#[cfg(test)]
mod testns;

use std::net::IpAddr;

pub use addr::{Address, AddressOptions};
pub use error::{Error, Result};
pub use link::{
    format_mac, valid_ifname, BridgePortInfo, BridgePortOptions, BridgeVlan, IpvlanMode, Link,
    LinkKind, LinkSpec, LinkWatch, MacvlanMode, OperState, Vxlan,
};
pub use neigh::{FdbEntry, Neighbour};
pub use route::{Route, RouteKind};
pub use rule::{Rule, RuleAction};
pub use socket::Socket;
pub use tc::{Psched, Qdisc, Redirect, RedirectMatch, Tbf, TbfInfo};
pub use tuntap::{TunTap, TunTapSpec};

/// Address family selector for dumps and routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// Both (AF_UNSPEC) – only meaningful as a dump filter.
    #[default]
    All,
    /// IPv4 (AF_INET).
    V4,
    /// IPv6 (AF_INET6).
    V6,
}

impl Family {
    /// The AF_* value.
    pub fn raw(self) -> u8 {
        match self {
            Family::All => libc::AF_UNSPEC as u8,
            Family::V4 => libc::AF_INET as u8,
            Family::V6 => libc::AF_INET6 as u8,
        }
    }

    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// True when `ip` belongs to this family (always for [`Family::All`]).
    pub fn matches(self, ip: IpAddr) -> bool {
        self.includes(Family::of(ip))
    }

    /// True when `other` is this family (always for [`Family::All`]).
    pub fn includes(self, other: Family) -> bool {
        self == Family::All || self == other
    }
}
