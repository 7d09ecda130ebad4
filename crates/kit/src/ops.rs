//! The seam under the recipes: the link, address and route operations the
//! veth core and interface configuration need, as a trait. The real
//! implementation is `netlink::Socket` (bound to one namespace); tests use
//! a recording fake (`fake::RecordingNet`, under `cfg(test)` or the `fake`
//! feature) to check
//! the order of operations, the undo on failure and the error codes without
//! root. The namespace tests stay the ground truth.

use netlink::{Address, AddressOptions, Family, Link, LinkSpec, Route};
use std::net::IpAddr;
use std::path::Path;

/// Link, address and route operations in one network namespace.
pub trait LinkOps {
    /// Creates a link; returns it when the kernel echoes it back.
    fn create_link_echo(&self, spec: &LinkSpec) -> netlink::Result<Option<Link>>;
    /// The link named `name`, if any.
    fn link_by_name(&self, name: &str) -> netlink::Result<Option<Link>>;
    /// The link with index `index`, if any.
    fn link_by_index(&self, index: u32) -> netlink::Result<Option<Link>>;
    /// Deletes a link; `false` when there was none.
    fn delete_link(&self, index: u32) -> netlink::Result<bool>;
    /// Sets a link up.
    fn set_link_up(&self, index: u32) -> netlink::Result<()>;
    /// Adds an address to a link.
    fn add_address_with(
        &self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
        opts: &AddressOptions,
    ) -> netlink::Result<()>;
    /// The addresses of a link (or of all links), of a family.
    fn addresses(&self, index: Option<u32>, family: Family) -> netlink::Result<Vec<Address>>;
    /// Adds a route next to other links' routes to the same destination.
    fn add_route_alongside(&self, r: &Route) -> netlink::Result<()>;
    /// The namespace these operations act in (`None`: the caller's).
    fn netns_path(&self) -> Option<&Path>;
}

impl LinkOps for netlink::Socket {
    fn create_link_echo(&self, spec: &LinkSpec) -> netlink::Result<Option<Link>> {
        netlink::Socket::create_link_echo(self, spec)
    }
    fn link_by_name(&self, name: &str) -> netlink::Result<Option<Link>> {
        netlink::Socket::link_by_name(self, name)
    }
    fn link_by_index(&self, index: u32) -> netlink::Result<Option<Link>> {
        netlink::Socket::link_by_index(self, index)
    }
    fn delete_link(&self, index: u32) -> netlink::Result<bool> {
        netlink::Socket::delete_link(self, index)
    }
    fn set_link_up(&self, index: u32) -> netlink::Result<()> {
        netlink::Socket::set_link_up(self, index)
    }
    fn add_address_with(
        &self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
        opts: &AddressOptions,
    ) -> netlink::Result<()> {
        netlink::Socket::add_address_with(self, index, addr, prefix, opts)
    }
    fn addresses(&self, index: Option<u32>, family: Family) -> netlink::Result<Vec<Address>> {
        netlink::Socket::addresses(self, index, family)
    }
    fn add_route_alongside(&self, r: &Route) -> netlink::Result<()> {
        netlink::Socket::add_route_alongside(self, r)
    }
    fn netns_path(&self) -> Option<&Path> {
        netlink::Socket::netns_path(self)
    }
}

/// A recording fake of one namespace's links, for unit tests (this crate's,
/// and a plugin's with the `fake` feature as a dev-dependency).
#[cfg(any(test, feature = "fake"))]
pub mod fake {
    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;

    /// Records every operation as a line (`create veth… peer eth0`,
    /// `up 7`, `addr 7 10.0.0.2/24`, `route 0.0.0.0/0 via 10.0.0.1`, ...),
    /// keeps the links it made, and fails the operations it was told to.
    #[derive(Default)]
    pub struct RecordingNet {
        /// Every operation, in order, as a line.
        pub log: RefCell<Vec<String>>,
        /// The links the fake holds (made by it or seeded by a test).
        pub links: RefCell<Vec<Link>>,
        /// (operation prefix, errno): the next operation whose log line
        /// starts with the prefix fails with the errno, once.
        fail: RefCell<VecDeque<(String, i32)>>,
        /// Whether create_link_echo echoes (kernels ≥ 6.3) or not.
        pub no_echo: bool,
        next_index: RefCell<u32>,
    }

    impl RecordingNet {
        /// A fake with no links and no planned failures.
        pub fn new() -> RecordingNet {
            RecordingNet {
                next_index: RefCell::new(10),
                ..Default::default()
            }
        }

        /// A fake whose link creation is not echoed (kernels before 6.3).
        pub fn without_echo() -> RecordingNet {
            RecordingNet {
                no_echo: true,
                ..RecordingNet::new()
            }
        }

        /// Makes the next operation starting with `op` fail with `errno`.
        pub fn fail_next(&self, op: &str, errno: i32) {
            self.fail.borrow_mut().push_back((op.to_string(), errno));
        }

        /// Adds a link as if it had been there before.
        pub fn add_existing(&self, name: &str) -> u32 {
            let index = self.alloc();
            self.links.borrow_mut().push(Link {
                index,
                name: name.into(),
                ..Default::default()
            });
            index
        }

        /// The operations recorded so far.
        pub fn lines(&self) -> Vec<String> {
            self.log.borrow().clone()
        }

        fn alloc(&self) -> u32 {
            let mut n = self.next_index.borrow_mut();
            *n += 1;
            *n
        }

        fn record(&self, line: String) -> netlink::Result<()> {
            let mut fail = self.fail.borrow_mut();
            let hit = fail.iter().position(|(p, _)| line.starts_with(p.as_str()));
            self.log.borrow_mut().push(line.clone());
            match hit.and_then(|i| fail.remove(i)) {
                Some((_, errno)) => Err(netlink::Error::Kernel {
                    op: line,
                    errno,
                    ext: None,
                }),
                None => Ok(()),
            }
        }
    }

    impl LinkOps for RecordingNet {
        fn create_link_echo(&self, spec: &LinkSpec) -> netlink::Result<Option<Link>> {
            let peer = match &spec.kind {
                netlink::LinkKind::Veth { peer_name, .. } => format!(" peer {peer_name}"),
                _ => String::new(),
            };
            let master = spec
                .master
                .map(|m| format!(" master {m}"))
                .unwrap_or_default();
            self.record(format!("create {}{peer}{master}", spec.name))?;
            let peer_name = match &spec.kind {
                netlink::LinkKind::Veth { peer_name, .. } => Some(peer_name.clone()),
                _ => None,
            };
            let taken = |n: &str| self.links.borrow().iter().any(|l| l.name == n);
            if taken(&spec.name) || peer_name.as_deref().is_some_and(taken) {
                return Err(netlink::Error::Kernel {
                    op: format!("create {}", spec.name),
                    errno: libc::EEXIST,
                    ext: None,
                });
            }
            // The peer lands in this same fake: use one fake for both
            // namespaces, or a second one to have the peer "vanish".
            if let Some(peer) = peer_name {
                let index = self.alloc();
                self.links.borrow_mut().push(Link {
                    index,
                    name: peer,
                    kind: Some("veth".into()),
                    ..Default::default()
                });
            }
            let link = Link {
                index: self.alloc(),
                name: spec.name.clone(),
                kind: Some("veth".into()),
                master: spec.master,
                up: spec.up,
                ..Default::default()
            };
            self.links.borrow_mut().push(link.clone());
            Ok((!self.no_echo).then_some(link))
        }
        fn link_by_name(&self, name: &str) -> netlink::Result<Option<Link>> {
            self.record(format!("get {name}"))?;
            Ok(self.links.borrow().iter().find(|l| l.name == name).cloned())
        }
        fn link_by_index(&self, index: u32) -> netlink::Result<Option<Link>> {
            self.record(format!("get #{index}"))?;
            Ok(self
                .links
                .borrow()
                .iter()
                .find(|l| l.index == index)
                .cloned())
        }
        fn delete_link(&self, index: u32) -> netlink::Result<bool> {
            self.record(format!("delete {index}"))?;
            let mut links = self.links.borrow_mut();
            let before = links.len();
            links.retain(|l| l.index != index);
            Ok(links.len() != before)
        }
        fn set_link_up(&self, index: u32) -> netlink::Result<()> {
            self.record(format!("up {index}"))?;
            if let Some(l) = self
                .links
                .borrow_mut()
                .iter_mut()
                .find(|l| l.index == index)
            {
                l.up = true;
            }
            Ok(())
        }
        fn add_address_with(
            &self,
            index: u32,
            addr: IpAddr,
            prefix: u8,
            _opts: &AddressOptions,
        ) -> netlink::Result<()> {
            self.record(format!("addr {index} {addr}/{prefix}"))
        }
        fn addresses(&self, index: Option<u32>, family: Family) -> netlink::Result<Vec<Address>> {
            self.record(format!("addresses {index:?} {family:?}"))?;
            Ok(Vec::new())
        }
        fn add_route_alongside(&self, r: &Route) -> netlink::Result<()> {
            let dst = r
                .dst
                .map(|(a, p)| format!("{a}/{p}"))
                .unwrap_or_else(|| "default".into());
            let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
            let dev = r.oif.map(|o| format!(" dev {o}")).unwrap_or_default();
            self.record(format!("route {dst}{via}{dev}"))
        }
        fn netns_path(&self) -> Option<&Path> {
            None
        }
    }
}
