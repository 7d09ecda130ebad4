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
    /// Creates a link (no echo).
    fn create_link(&self, spec: &LinkSpec) -> netlink::Result<()>;
    /// The routes of a family, of one table or all.
    fn routes(&self, family: Family, table: Option<u32>) -> netlink::Result<Vec<Route>>;
    /// Renames a link.
    fn set_name(&self, index: u32, name: &str) -> netlink::Result<()>;
    /// Sets a link's MTU.
    fn set_mtu(&self, index: u32, mtu: u32) -> netlink::Result<()>;
    /// Sets a link's MAC.
    fn set_mac(&self, index: u32, mac: &[u8]) -> netlink::Result<()>;
    /// Enslaves a link to `master`.
    fn set_master(&self, index: u32, master: u32) -> netlink::Result<()>;
    /// Deletes the link named `name`; `false` when there was none.
    fn delete_link_by_name(&self, name: &str) -> netlink::Result<bool>;
    /// Sets a macvlan's broadcast queue length.
    fn set_macvlan_bc_queue_len(&self, index: u32, len: u32) -> netlink::Result<()>;
    /// Every link of the namespace.
    fn links(&self) -> netlink::Result<Vec<Link>>;
    /// Adds a route (fails when it exists).
    fn add_route(&self, r: &Route) -> netlink::Result<()>;
    /// Releases a link from its master.
    fn set_nomaster(&self, index: u32) -> netlink::Result<()>;
    /// Sets a link down.
    fn set_link_down(&self, index: u32) -> netlink::Result<()>;
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
    fn create_link(&self, spec: &LinkSpec) -> netlink::Result<()> {
        netlink::Socket::create_link(self, spec)
    }
    fn routes(&self, family: Family, table: Option<u32>) -> netlink::Result<Vec<Route>> {
        netlink::Socket::routes(self, family, table)
    }
    fn set_name(&self, index: u32, name: &str) -> netlink::Result<()> {
        netlink::Socket::set_name(self, index, name)
    }
    fn set_mtu(&self, index: u32, mtu: u32) -> netlink::Result<()> {
        netlink::Socket::set_mtu(self, index, mtu)
    }
    fn set_mac(&self, index: u32, mac: &[u8]) -> netlink::Result<()> {
        netlink::Socket::set_mac(self, index, mac)
    }
    fn set_master(&self, index: u32, master: u32) -> netlink::Result<()> {
        netlink::Socket::set_master(self, index, master)
    }
    fn delete_link_by_name(&self, name: &str) -> netlink::Result<bool> {
        netlink::Socket::delete_link_by_name(self, name)
    }
    fn set_macvlan_bc_queue_len(&self, index: u32, len: u32) -> netlink::Result<()> {
        netlink::Socket::set_macvlan_bc_queue_len(self, index, len)
    }
    fn links(&self) -> netlink::Result<Vec<Link>> {
        netlink::Socket::links(self)
    }
    fn add_route(&self, r: &Route) -> netlink::Result<()> {
        netlink::Socket::add_route(self, r)
    }
    fn set_nomaster(&self, index: u32) -> netlink::Result<()> {
        netlink::Socket::set_nomaster(self, index)
    }
    fn set_link_down(&self, index: u32) -> netlink::Result<()> {
        netlink::Socket::set_link_down(self, index)
    }
}

/// A recording fake of one namespace's links, for unit tests (this crate's,
/// and a plugin's with the `fake` feature as a dev-dependency).
#[cfg(any(test, feature = "fake"))]
pub mod fake {
    use super::*;
    use std::cell::RefCell;

    /// The link of `links` with index `index`: the lookup every fake of
    /// a namespace (this one, `routing::fake::FakeHost`) answers with.
    pub fn link_at(links: &RefCell<Vec<Link>>, index: u32) -> Option<Link> {
        links.borrow().iter().find(|l| l.index == index).cloned()
    }

    /// A global-scope address without flags, as the fakes hold them.
    pub fn address(index: u32, addr: IpAddr, prefix: u8) -> Address {
        Address {
            index,
            addr,
            prefix,
            scope: 0,
            flags: 0,
            label: None,
            broadcast: None,
        }
    }

    /// The addresses of `addrs` on link `index` (or all), of `family`.
    pub fn addresses_of(
        addrs: &RefCell<Vec<Address>>,
        index: Option<u32>,
        family: Family,
    ) -> Vec<Address> {
        addrs
            .borrow()
            .iter()
            .filter(|a| index.is_none_or(|i| i == a.index))
            .filter(|a| family == Family::All || family == Family::of(a.addr))
            .cloned()
            .collect()
    }

    /// The link of `links` named `name`.
    pub fn link_named(links: &RefCell<Vec<Link>>, name: &str) -> Option<Link> {
        links.borrow().iter().find(|l| l.name == name).cloned()
    }

    /// Records every operation as a line (`create veth… peer eth0`,
    /// `up 7`, `addr 7 10.0.0.2/24`, `route 0.0.0.0/0 via 10.0.0.1`, ...),
    /// keeps the links it made, and fails the operations it was told to.
    #[derive(Default)]
    pub struct RecordingNet {
        /// Every operation, in order, as a line, and the planned refusals.
        plan: crate::routing::fake::Plan,
        /// The links the fake holds (made by it or seeded by a test).
        pub links: RefCell<Vec<Link>>,
        /// Whether create_link_echo echoes (kernels ≥ 6.3) or not.
        pub no_echo: bool,
        /// The addresses added so far.
        pub addrs: RefCell<Vec<Address>>,
        /// The routes added so far (what `routes` lists, for CHECK).
        pub routes: RefCell<Vec<Route>>,
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
            self.plan.fail_next(op, errno);
        }

        /// Logs a step of a fake next to this one (a node's), so that it
        /// reads in order with the netlink operations.
        pub fn note(&self, line: String) {
            self.plan.note(line);
        }

        /// Adds a link as if it had been there before.
        pub fn add_existing(&self, name: &str) -> u32 {
            self.add_link(Link {
                name: name.into(),
                ..Default::default()
            })
        }

        /// Adds `link` (its index replaced by a fresh one) as if it had
        /// been there before; returns the index.
        pub fn add_link(&self, link: Link) -> u32 {
            let index = self.alloc();
            self.links.borrow_mut().push(Link { index, ..link });
            index
        }

        /// A fake holding a node interface `name` (MTU 1500), to be a
        /// master; returns its index too.
        pub fn with_master(name: &str) -> (RecordingNet, u32) {
            let net = RecordingNet::new();
            let index = net.add_link(Link {
                name: name.into(),
                mtu: 1500,
                ..Default::default()
            });
            (net, index)
        }

        /// Forgets the operations recorded so far.
        pub fn forget(&self) {
            self.plan.forget();
        }

        /// Removes the link `name` behind the plugin's back.
        pub fn remove(&self, name: &str) {
            self.links.borrow_mut().retain(|l| l.name != name);
        }

        /// Makes the link `name` of kind `kind` behind the plugin's back.
        pub fn retype(&self, name: &str, kind: &str) {
            for l in self
                .links
                .borrow_mut()
                .iter_mut()
                .filter(|l| l.name == name)
            {
                l.kind = Some(kind.into());
            }
        }

        /// The index of the link `name`; 0 (no link's index) when there
        /// is none.
        pub fn index_of(&self, name: &str) -> u32 {
            self.link(name).map_or(0, |l| l.index)
        }

        /// The link named `name`, as the fake holds it.
        pub fn link(&self, name: &str) -> Option<Link> {
            link_named(&self.links, name)
        }

        /// Whether every link the fake holds is one of `names` (what a
        /// test seeded): nothing made is left behind.
        pub fn holds_only(&self, names: &[&str]) -> bool {
            self.links
                .borrow()
                .iter()
                .all(|l| names.contains(&l.name.as_str()))
        }

        /// The operations recorded so far.
        pub fn lines(&self) -> Vec<String> {
            self.plan.lines()
        }

        fn alloc(&self) -> u32 {
            let mut n = self.next_index.borrow_mut();
            *n += 1;
            *n
        }

        fn record(&self, line: String) -> netlink::Result<()> {
            self.plan
                .op(line, true)
                .map_err(|(op, errno)| crate::routing::fake::kernel(op, errno))
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
            let kind = spec.kind.name();
            let what = match kind {
                "veth" => String::new(),
                k => format!(" {k}"),
            };
            let parent = spec
                .parent
                .map(|p| format!(" parent {p}"))
                .unwrap_or_default();
            self.record(format!("create {}{what}{peer}{master}{parent}", spec.name))?;
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
            let mut peer_index = None;
            if let Some(peer) = peer_name {
                let index = self.alloc();
                peer_index = Some(index);
                self.links.borrow_mut().push(Link {
                    index,
                    name: peer,
                    kind: Some("veth".into()),
                    // The host end's index, as the kernel reports a peer.
                    link: Some(index + 1),
                    mac: vec![2, 0, 0, 0, 0, 2],
                    ..Default::default()
                });
            }
            let link = Link {
                index: self.alloc(),
                name: spec.name.clone(),
                kind: Some(kind.into()),
                master: spec.master,
                link: spec.parent.or(peer_index),
                mtu: spec.mtu.unwrap_or(1500),
                mac: spec.mac.clone().unwrap_or_else(|| vec![2, 0, 0, 0, 0, 1]),
                up: spec.up,
                ..Default::default()
            };
            self.links.borrow_mut().push(link.clone());
            Ok((!self.no_echo).then_some(link))
        }
        fn link_by_name(&self, name: &str) -> netlink::Result<Option<Link>> {
            self.record(format!("get {name}"))?;
            Ok(link_named(&self.links, name))
        }
        fn link_by_index(&self, index: u32) -> netlink::Result<Option<Link>> {
            self.record(format!("get #{index}"))?;
            Ok(link_at(&self.links, index))
        }
        fn delete_link(&self, index: u32) -> netlink::Result<bool> {
            self.record(format!("delete {index}"))?;
            let mut links = self.links.borrow_mut();
            let before = links.len();
            // A veth takes its peer with it.
            let peer = links
                .iter()
                .find(|l| l.index == index && l.kind.as_deref() == Some("veth"))
                .and_then(|l| l.link);
            links.retain(|l| l.index != index && Some(l.index) != peer);
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
            self.record(format!("addr {index} {addr}/{prefix}"))?;
            self.addrs.borrow_mut().push(address(index, addr, prefix));
            Ok(())
        }
        fn addresses(&self, index: Option<u32>, family: Family) -> netlink::Result<Vec<Address>> {
            self.record(format!("addresses {index:?} {family:?}"))?;
            Ok(addresses_of(&self.addrs, index, family))
        }
        fn add_route_alongside(&self, r: &Route) -> netlink::Result<()> {
            self.record(format!("route {}", crate::routing::fake::route_path(r)))?;
            self.routes.borrow_mut().push(r.clone());
            Ok(())
        }
        fn netns_path(&self) -> Option<&Path> {
            None
        }
        fn create_link(&self, spec: &LinkSpec) -> netlink::Result<()> {
            self.create_link_echo(spec).map(drop)
        }
        fn routes(&self, family: Family, table: Option<u32>) -> netlink::Result<Vec<Route>> {
            self.record(format!("routes {family:?} {table:?}"))?;
            let routes = self.routes.borrow();
            Ok(routes
                .iter()
                .filter(|r| family.includes(r.family) && table.is_none_or(|t| r.table == t))
                .cloned()
                .collect())
        }
        fn set_name(&self, index: u32, name: &str) -> netlink::Result<()> {
            self.record(format!("rename {index} {name}"))?;
            self.edit(index, |l| l.name = name.into());
            Ok(())
        }
        fn set_mtu(&self, index: u32, mtu: u32) -> netlink::Result<()> {
            self.record(format!("mtu {index} {mtu}"))?;
            self.edit(index, |l| l.mtu = mtu);
            Ok(())
        }
        fn set_mac(&self, index: u32, mac: &[u8]) -> netlink::Result<()> {
            self.record(format!("mac {index} {}", crate::mac::format(mac)))?;
            self.edit(index, |l| l.mac = mac.to_vec());
            Ok(())
        }
        fn set_master(&self, index: u32, master: u32) -> netlink::Result<()> {
            self.record(format!("master {index} {master}"))?;
            self.edit(index, |l| l.master = Some(master));
            Ok(())
        }
        fn delete_link_by_name(&self, name: &str) -> netlink::Result<bool> {
            self.record(format!("delete {name}"))?;
            let mut links = self.links.borrow_mut();
            let before = links.len();
            links.retain(|l| l.name != name);
            Ok(links.len() != before)
        }
        fn set_macvlan_bc_queue_len(&self, index: u32, len: u32) -> netlink::Result<()> {
            self.record(format!("bcqueuelen {index} {len}"))
        }
        fn links(&self) -> netlink::Result<Vec<Link>> {
            self.record("links".into())?;
            Ok(self.links.borrow().clone())
        }
        fn add_route(&self, r: &Route) -> netlink::Result<()> {
            self.add_route_alongside(r)
        }
        fn set_nomaster(&self, index: u32) -> netlink::Result<()> {
            self.record(format!("nomaster {index}"))?;
            self.edit(index, |l| l.master = None);
            Ok(())
        }
        fn set_link_down(&self, index: u32) -> netlink::Result<()> {
            self.record(format!("down {index}"))?;
            self.edit(index, |l| l.up = false);
            Ok(())
        }
    }

    impl RecordingNet {
        fn edit(&self, index: u32, f: impl FnOnce(&mut Link)) {
            if let Some(l) = self
                .links
                .borrow_mut()
                .iter_mut()
                .find(|l| l.index == index)
            {
                f(l);
            }
        }
    }

    /// The kernel's refusals a test plans with [`RecordingNet::fail_next`]
    /// (plugin crates reach no `libc` themselves).
    pub mod errno {
        pub use libc::{EADDRNOTAVAIL, EBUSY, EEXIST, EINVAL, ENETDOWN, ENETUNREACH, EPERM};
    }

    /// A recording fake of the IPAM plugin: ADD hands out `result` (or
    /// fails with `fail_add`), every call is logged as `ipam add` /
    /// `ipam del`.
    pub struct FakeIpam {
        /// What ADD returns.
        pub result: cni_spec::Result,
        /// The error ADD returns instead, when set.
        pub fail_add: Option<cni_spec::Error>,
        /// The calls, in order.
        pub log: RefCell<Vec<String>>,
    }

    impl FakeIpam {
        /// [`FakeIpam::handing_out`] from literals; one that does not parse
        /// gives an IPAM with no address (the test then fails on that).
        pub fn v4(addr: &str, gw: &str) -> FakeIpam {
            match (addr.parse(), gw.parse()) {
                (Ok(a), Ok(g)) => FakeIpam::handing_out(a, g),
                _ => FakeIpam {
                    result: cni_spec::Result::new("1.0.0"),
                    fail_add: None,
                    log: RefCell::default(),
                },
            }
        }

        /// An IPAM that hands out `addr` with gateway `gw` and a default
        /// route.
        pub fn handing_out(addr: ipnet::Ipv4Net, gw: std::net::Ipv4Addr) -> FakeIpam {
            let mut r = cni_spec::Result::new("1.0.0");
            r.ips.push(cni_spec::IpConfig {
                interface: None,
                address: addr.into(),
                gateway: Some(gw.into()),
            });
            r.routes
                .push(cni_spec::Route::new(ipnet::IpNet::default(), None));
            FakeIpam {
                result: r,
                fail_add: None,
                log: RefCell::default(),
            }
        }

        /// The calls so far.
        pub fn calls(&self) -> Vec<String> {
            self.log.borrow().clone()
        }
    }

    impl crate::podlink::IpamOps for FakeIpam {
        fn add(&self) -> cni_spec::error::CniResult<cni_spec::Result> {
            self.log.borrow_mut().push("ipam add".into());
            match &self.fail_add {
                Some(e) => Err(e.clone()),
                None => Ok(self.result.clone()),
            }
        }
        fn del(&self) -> cni_spec::error::CniResult<()> {
            self.log.borrow_mut().push("ipam del".into());
            Ok(())
        }
    }

    /// The test's own network namespace, for the fd a link spec carries
    /// (the fake ignores it).
    ///
    /// # Panics
    /// When the test cannot open its own namespace (no /proc).
    pub fn own_ns() -> &'static netns::NetNs {
        static OWN: std::sync::OnceLock<netns::NetNs> = std::sync::OnceLock::new();
        OWN.get_or_init(|| match netns::NetNs::current() {
            Ok(ns) => ns,
            Err(e) => panic!("a test cannot open its own netns: {e}"),
        })
    }

    /// The seam with `net` as both the node's and the pod's namespace (a
    /// link created "into the pod" lands in the same fake).
    pub fn seam(net: &RecordingNet) -> crate::podlink::Seam<'_> {
        crate::podlink::Seam {
            host: net,
            cont: net,
            cns: own_ns(),
        }
    }

    /// An ADD invocation of a plugin for a unit test: `conf` (JSON) as stdin,
    /// container `ctr`, interface `eth0`, namespace path `/run/netns/fake`.
    pub fn cmd_args(conf: &str) -> cni_skel::CmdArgs {
        cni_skel::CmdArgs {
            command: cni_skel::Command::Add,
            container_id: "ctr".into(),
            netns: "/run/netns/fake".into(),
            ifname: "eth0".into(),
            args: String::new(),
            path: Vec::new(),
            stdin: conf.as_bytes().to_vec(),
            // A broken config fails the plugin's own parse of `stdin`.
            conf: serde_json::from_str(conf).unwrap_or_default(),
        }
    }

    /// A fake node for a plugin with a master: the fake holding `eth9`
    /// (MTU 1500, index `master`) and an ADD of `conf`.
    pub struct Node {
        /// Both namespaces.
        pub net: RecordingNet,
        /// The ADD.
        pub args: cni_skel::CmdArgs,
        /// The index of `eth9`.
        pub master: u32,
    }

    /// A [`Node`] for `conf`.
    pub fn node(conf: &str) -> Node {
        let (net, master) = RecordingNet::with_master("eth9");
        Node {
            net,
            args: cmd_args(conf),
            master,
        }
    }

    /// A plugin's config loader, as `load(args, host, cont)`.
    pub type Loader<N> =
        fn(&cni_skel::CmdArgs, &dyn LinkOps, &dyn LinkOps) -> cni_spec::error::CniResult<N>;

    impl Node {
        /// Runs the plugin's `load` on this node, then forgets its lookups.
        pub fn load<N>(&self, load: Loader<N>) -> cni_spec::error::CniResult<N> {
            let r = load(&self.args, &self.net, &self.net);
            self.net.forget();
            r
        }
    }

    /// A recording [`crate::podlink::VethNode`]: its steps land in the
    /// log of `net` (`node masq [...]`, `node unmasq`, `node wait`,
    /// `node no_ra NAME`; the host
    /// end's `up` of [`crate::podlink::VethNode::host_up_and_wait`] through
    /// `net` itself), so that they read in order with the netlink
    /// operations.
    pub struct RecordingVethNode<'a> {
        /// The fake whose log is written.
        pub net: &'a RecordingNet,
    }

    impl RecordingVethNode<'_> {
        fn note(&self, line: String) {
            self.net.note(line);
        }
    }

    impl crate::podlink::VethNode for RecordingVethNode<'_> {
        fn masq_attach(&self, subnets: Vec<ipnet::IpNet>) -> cni_spec::error::CniResult<()> {
            self.note(format!("node masq {subnets:?}"));
            Ok(())
        }
        fn masq_detach(&self) -> crate::Result<()> {
            self.note("node unmasq".into());
            Ok(())
        }
        fn wait_up(&self, _: u32, _: u32) -> cni_spec::error::CniResult<()> {
            self.note("node wait".into());
            Ok(())
        }
        fn host_up_and_wait(&self, host: u32, _: u32) -> cni_spec::error::CniResult<()> {
            crate::ops::LinkOps::set_link_up(self.net, host).map_err(crate::err)?;
            self.note("node wait".into());
            Ok(())
        }
        fn ignore_router_advertisements(&self, host_veth: &str) {
            self.note(format!("node no_ra {host_veth}"));
        }
    }

    /// Asserts a failed ADD took everything back: `net` holds only the
    /// links the test `seeded`, and `ipam` released what it handed out.
    pub fn assert_all_undone(net: &RecordingNet, ipam: &FakeIpam, seeded: &[&str]) {
        assert!(
            net.holds_only(seeded),
            "left behind: {:?}",
            net.links.borrow()
        );
        assert_eq!(ipam.calls(), vec!["ipam add", "ipam del"]);
    }

    /// `args` for CHECK, with `prev` as its prevResult.
    pub fn with_prev(args: &cni_skel::CmdArgs, prev: &cni_spec::Result) -> cni_skel::CmdArgs {
        let mut a = args.clone();
        a.command = cni_skel::Command::Check;
        a.conf.prev_result = prev.to_value(&prev.cni_version).ok();
        a
    }

    /// A call on the fake `net` (both namespaces) with `ipam`.
    pub fn call<'a>(
        net: &'a RecordingNet,
        args: &'a cni_skel::CmdArgs,
        ipam: Option<&'a FakeIpam>,
    ) -> crate::podlink::Call<'a> {
        crate::podlink::Call {
            at: seam(net),
            args,
            ipam: ipam.map(|i| i as &dyn crate::podlink::IpamOps),
        }
    }
}
