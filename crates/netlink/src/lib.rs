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
//! ```no_run
//! # fn main() -> netlink::Result<()> {
//! let host = netns::NetNs::current()?;
//! let pod = netns::NetNs::open("/run/netns/pod")?;
//! let s = netlink::Socket::route_in(&pod)?;
//! // eth0 in the pod, its peer created directly in the host namespace.
//! s.create_veth("eth0", "veth1234", Some(host.fd()), Some(1500), None, None)?;
//! let eth0 = s.link_by_name("eth0")?.expect("just created");
//! s.add_address(eth0.index, "10.88.0.5".parse().unwrap(), 16)?;
//! s.set_link_up(eth0.index)?;
//! s.add_route(&netlink::Route::default_for(netlink::Family::V4).via("10.88.0.1".parse().unwrap()))?;
//! # Ok(())
//! # }
//! ```

pub mod addr;
pub mod alias;
pub mod error;
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
    format_mac, parse_mac, valid_ifname, BridgePortInfo, BridgePortOptions, BridgeVlan, IpvlanMode,
    Link, LinkKind, LinkSpec, MacvlanMode, OperState, Vxlan,
};
pub use neigh::{FdbEntry, Neighbour};
pub use route::{Route, RouteKind};
pub use rule::{Rule, RuleAction};
pub use socket::Socket;
pub use tc::{Psched, Qdisc, RedirectMatch, Tbf, TbfInfo};
pub use tuntap::{TunTap, TunTapSpec};

/// Address family selector for dumps and routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// Both (AF_UNSPEC) – only meaningful as a dump filter.
    #[default]
    All,
    V4,
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

    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn matches(self, ip: IpAddr) -> bool {
        self == Family::All || self == Family::of(ip)
    }
}
