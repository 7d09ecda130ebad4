//! The seam under the meta plugins that act on one namespace's routing
//! policy, traffic control and link attributes (sbr, bandwidth, tuning),
//! next to [`crate::ops::LinkOps`] (the link plugins' seam). Three traits,
//! each implemented by `netlink::Socket`:
//!
//! - [`RoutingOps`]: rules, routes and addresses (sbr);
//! - [`ShapingOps`]: qdiscs, filters and the IFB device (bandwidth);
//! - [`LinkAttrOps`]: MAC, MTU, promiscuous/all-multicast mode, queue length
//!   (tuning).
//!
//! The recording fake [`fake::FakeHost`] (under `cfg(test)` or the `fake`
//! feature) implements all three over in-memory links, addresses, rules,
//! routes and qdiscs, logs every change as a line and fails the operations a
//! test plans, so a plugin's core can be unit-tested without root.

use netlink::tc::Filter;
use netlink::{Address, Family, Link, Qdisc, Redirect, Route, Rule, Tbf};

/// Looking a link up, which every seam here needs.
pub trait LinkLookup {
    /// The link named `name`, if any.
    fn link_by_name(&self, name: &str) -> netlink::Result<Option<Link>>;
    /// The link with index `index`, if any.
    fn link_by_index(&self, index: u32) -> netlink::Result<Option<Link>>;
}

/// A link's MTU and transmit queue length, which both bandwidth (its IFB
/// follows the pod's) and tuning set.
pub trait LinkSizes: LinkLookup {
    /// Sets a link's MTU.
    fn set_mtu(&self, index: u32, mtu: u32) -> netlink::Result<()>;
    /// Sets a link's transmit queue length.
    fn set_txqlen(&self, index: u32, qlen: u32) -> netlink::Result<()>;
}

/// Routing rules, routes and addresses of one namespace.
pub trait RoutingOps: LinkLookup {
    /// The addresses of a link (or of all links), of a family.
    fn addresses(&self, index: Option<u32>, family: Family) -> netlink::Result<Vec<Address>>;
    /// The routing rules of a family.
    fn rules(&self, family: Family) -> netlink::Result<Vec<Rule>>;
    /// Adds a rule.
    fn add_rule(&self, r: &Rule) -> netlink::Result<()>;
    /// Deletes a rule; `false` when there was none.
    fn del_rule(&self, r: &Rule) -> netlink::Result<bool>;
    /// The routes of a family (of one table, or all).
    fn routes(&self, family: Family, table: Option<u32>) -> netlink::Result<Vec<Route>>;
    /// Adds a route (EEXIST when it is there).
    fn add_route(&self, r: &Route) -> netlink::Result<()>;
    /// Adds or replaces a route.
    fn replace_route(&self, r: &Route) -> netlink::Result<()>;
    /// Deletes a route; `false` when there was none.
    fn del_route(&self, r: &Route) -> netlink::Result<bool>;
    /// The route the kernel would take to `dst` (`ip route get`).
    fn route_get(&self, dst: std::net::IpAddr) -> netlink::Result<Option<Route>>;
}

/// Traffic control and the IFB device of one namespace.
pub trait ShapingOps: LinkSizes {
    /// The qdiscs of a link (or of all links).
    fn qdiscs(&self, index: Option<u32>) -> netlink::Result<Vec<Qdisc>>;
    /// Adds (or replaces) a tbf qdisc at the root of a link.
    fn add_tbf(&self, index: u32, handle: u32, tbf: &Tbf, replace: bool) -> netlink::Result<()>;
    /// Adds the ingress qdisc of a link.
    fn add_ingress_qdisc(&self, index: u32) -> netlink::Result<()>;
    /// Redirects everything arriving on `index` to the egress of `target`.
    fn add_redirect_filter(&self, index: u32, redirect: &Redirect) -> netlink::Result<()>;
    /// Deletes the root qdisc of a link; `false` when there was none.
    fn del_root_qdisc(&self, index: u32) -> netlink::Result<bool>;
    /// Deletes the ingress qdisc of a link; `false` when there was none.
    fn del_ingress_qdisc(&self, index: u32) -> netlink::Result<bool>;
    /// The filters of a link under a parent.
    fn filters(&self, index: u32, parent: u32) -> netlink::Result<Vec<Filter>>;
    /// Every link.
    fn links(&self) -> netlink::Result<Vec<Link>>;
    /// Deletes a link; `false` when there was none.
    fn delete_link(&self, index: u32) -> netlink::Result<bool>;
    /// Creates an IFB device.
    fn create_ifb(&self, name: &str) -> netlink::Result<()>;
    /// Deletes a link by name; `false` when there was none.
    fn delete_link_by_name(&self, name: &str) -> netlink::Result<bool>;
    /// Sets a link's alias.
    fn set_alias(&self, index: u32, alias: &str) -> netlink::Result<()>;
    /// Sets a link up.
    fn set_link_up(&self, index: u32) -> netlink::Result<()>;
}

/// The link attributes tuning changes.
pub trait LinkAttrOps: LinkSizes {
    /// Sets a link's MAC address.
    fn set_mac(&self, index: u32, mac: &[u8]) -> netlink::Result<()>;
    /// Sets or clears promiscuous mode.
    fn set_promisc(&self, index: u32, on: bool) -> netlink::Result<()>;
    /// Sets or clears all-multicast mode.
    fn set_allmulti(&self, index: u32, on: bool) -> netlink::Result<()>;
}

use netlink::Socket;

impl LinkLookup for Socket {
    fn link_by_name(&self, name: &str) -> netlink::Result<Option<Link>> {
        Socket::link_by_name(self, name)
    }
    fn link_by_index(&self, index: u32) -> netlink::Result<Option<Link>> {
        Socket::link_by_index(self, index)
    }
}

impl RoutingOps for Socket {
    fn addresses(&self, index: Option<u32>, family: Family) -> netlink::Result<Vec<Address>> {
        Socket::addresses(self, index, family)
    }
    fn rules(&self, family: Family) -> netlink::Result<Vec<Rule>> {
        Socket::rules(self, family)
    }
    fn add_rule(&self, r: &Rule) -> netlink::Result<()> {
        Socket::add_rule(self, r)
    }
    fn del_rule(&self, r: &Rule) -> netlink::Result<bool> {
        Socket::del_rule(self, r)
    }
    fn routes(&self, family: Family, table: Option<u32>) -> netlink::Result<Vec<Route>> {
        Socket::routes(self, family, table)
    }
    fn add_route(&self, r: &Route) -> netlink::Result<()> {
        Socket::add_route(self, r)
    }
    fn replace_route(&self, r: &Route) -> netlink::Result<()> {
        Socket::replace_route(self, r)
    }
    fn del_route(&self, r: &Route) -> netlink::Result<bool> {
        Socket::del_route(self, r)
    }
    fn route_get(&self, dst: std::net::IpAddr) -> netlink::Result<Option<Route>> {
        Socket::route_get(self, dst)
    }
}

impl ShapingOps for Socket {
    fn qdiscs(&self, index: Option<u32>) -> netlink::Result<Vec<Qdisc>> {
        Socket::qdiscs(self, index)
    }
    fn add_tbf(&self, index: u32, handle: u32, tbf: &Tbf, replace: bool) -> netlink::Result<()> {
        Socket::add_tbf(self, index, handle, tbf, replace)
    }
    fn add_ingress_qdisc(&self, index: u32) -> netlink::Result<()> {
        Socket::add_ingress_qdisc(self, index)
    }
    fn add_redirect_filter(&self, index: u32, redirect: &Redirect) -> netlink::Result<()> {
        Socket::add_redirect_filter(self, index, redirect)
    }
    fn del_root_qdisc(&self, index: u32) -> netlink::Result<bool> {
        Socket::del_root_qdisc(self, index)
    }
    fn del_ingress_qdisc(&self, index: u32) -> netlink::Result<bool> {
        Socket::del_ingress_qdisc(self, index)
    }
    fn filters(&self, index: u32, parent: u32) -> netlink::Result<Vec<Filter>> {
        Socket::filters(self, index, parent)
    }
    fn links(&self) -> netlink::Result<Vec<Link>> {
        Socket::links(self)
    }
    fn delete_link(&self, index: u32) -> netlink::Result<bool> {
        Socket::delete_link(self, index)
    }
    fn create_ifb(&self, name: &str) -> netlink::Result<()> {
        Socket::create_ifb(self, name)
    }
    fn delete_link_by_name(&self, name: &str) -> netlink::Result<bool> {
        Socket::delete_link_by_name(self, name)
    }
    fn set_alias(&self, index: u32, alias: &str) -> netlink::Result<()> {
        Socket::set_alias(self, index, alias)
    }
    fn set_link_up(&self, index: u32) -> netlink::Result<()> {
        Socket::set_link_up(self, index)
    }
}

impl LinkAttrOps for Socket {
    fn set_mac(&self, index: u32, mac: &[u8]) -> netlink::Result<()> {
        Socket::set_mac(self, index, mac)
    }
    fn set_promisc(&self, index: u32, on: bool) -> netlink::Result<()> {
        Socket::set_promisc(self, index, on)
    }
    fn set_allmulti(&self, index: u32, on: bool) -> netlink::Result<()> {
        Socket::set_allmulti(self, index, on)
    }
}

impl LinkSizes for Socket {
    fn set_mtu(&self, index: u32, mtu: u32) -> netlink::Result<()> {
        Socket::set_mtu(self, index, mtu)
    }
    fn set_txqlen(&self, index: u32, qlen: u32) -> netlink::Result<()> {
        Socket::set_txqlen(self, index, qlen)
    }
}

/// Recording fakes for unit tests (this crate's, and a plugin's with the
/// `fake` feature as a dev-dependency).
#[cfg(any(test, feature = "fake"))]
pub mod fake {
    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;

    /// The log and the planned failures a recording fake shares with its
    /// tests: every change is one line; a planned failure makes the next
    /// operation whose line starts with its prefix fail once, with an errno.
    /// Reads (`get NAME`, `rules`, `routes`, `qdiscs`, ...) can be failed
    /// too but are not logged.
    #[derive(Default)]
    pub struct Plan {
        log: RefCell<Vec<String>>,
        fail: RefCell<VecDeque<(String, i32)>>,
    }

    impl Plan {
        /// Makes the next operation starting with `op` fail with `errno`.
        pub fn fail_next(&self, op: &str, errno: i32) {
            self.fail.borrow_mut().push_back((op.to_string(), errno));
        }
        /// The changes recorded so far.
        pub fn lines(&self) -> Vec<String> {
            self.log.borrow().clone()
        }
        /// Logs a line no operation made (another fake's step).
        pub fn note(&self, line: String) {
            self.log.borrow_mut().push(line);
        }
        /// Forgets the lines recorded so far.
        pub fn forget(&self) {
            self.log.borrow_mut().clear();
        }
        /// Records a change (`log`) or a read, failing it as planned.
        pub fn op(&self, line: String, log: bool) -> Result<(), (String, i32)> {
            let mut fail = self.fail.borrow_mut();
            let hit = fail.iter().position(|(p, _)| line.starts_with(p.as_str()));
            if log {
                self.log.borrow_mut().push(line.clone());
            }
            match hit.and_then(|i| fail.remove(i)) {
                Some((_, errno)) => Err((line, errno)),
                None => Ok(()),
            }
        }
    }

    /// A kernel refusal of `op` with `errno`, as a planned failure reads.
    pub(crate) fn kernel(op: String, errno: i32) -> netlink::Error {
        netlink::Error::Kernel {
            op,
            errno,
            ext: None,
        }
    }

    /// Removes the items `gone` selects; how many there were.
    pub(crate) fn remove_where<T>(items: &RefCell<Vec<T>>, gone: impl Fn(&T) -> bool) -> usize {
        let mut items = items.borrow_mut();
        let before = items.len();
        items.retain(|x| !gone(x));
        before - items.len()
    }

    fn prefix(p: Option<(std::net::IpAddr, u8)>) -> String {
        p.map(|(a, l)| format!("{a}/{l}"))
            .unwrap_or_else(|| "all".into())
    }

    /// A rule as a log line's tail: `from 10.0.0.2/32 table 100`.
    pub fn rule_text(r: &Rule) -> String {
        format!("from {} table {}", prefix(r.src), r.table)
    }

    /// A route as a log line's tail: `default via 10.0.0.1 dev 11 table 100`.
    pub fn route_text(r: &Route) -> String {
        format!("{} table {}", route_path(r), r.table)
    }

    /// A route's destination, gateway and device: `default via 10.0.0.1
    /// dev 11` (the link fake's log line, which has no tables).
    pub fn route_path(r: &Route) -> String {
        let dst = r
            .dst
            .map(|(a, p)| format!("{a}/{p}"))
            .unwrap_or_else(|| "default".into());
        let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        let dev = r.oif.map(|o| format!(" dev {o}")).unwrap_or_default();
        format!("{dst}{via}{dev}")
    }

    /// One namespace in memory: links, addresses, rules, routes and qdiscs,
    /// changed by the operations of [`RoutingOps`], [`ShapingOps`] and
    /// [`LinkAttrOps`] and logged as lines (`rule add from 10.0.0.2/32
    /// table 100`, `route replace 10.0.0.0/24 dev 11 table 100`, `tbf 11
    /// rate 125 burst 10`, `ifb bwp…`, `mtu 12 1500`, ...).
    #[derive(Default)]
    pub struct FakeHost {
        /// The log and the planned failures.
        pub plan: Plan,
        /// The links.
        pub links: RefCell<Vec<Link>>,
        /// The addresses.
        pub addrs: RefCell<Vec<Address>>,
        /// The routing rules.
        pub rules: RefCell<Vec<Rule>>,
        /// The routes.
        pub routes: RefCell<Vec<Route>>,
        /// The qdiscs.
        pub qdiscs: RefCell<Vec<Qdisc>>,
        /// The tc filters.
        pub filters: RefCell<Vec<Filter>>,
        next_index: RefCell<u32>,
    }

    impl FakeHost {
        /// An empty namespace.
        pub fn new() -> FakeHost {
            FakeHost {
                next_index: RefCell::new(10),
                ..Default::default()
            }
        }

        /// Adds a link as if it had been there; returns its index.
        pub fn add_link(&self, name: &str, kind: &str) -> u32 {
            let mut n = self.next_index.borrow_mut();
            *n += 1;
            self.links.borrow_mut().push(Link {
                index: *n,
                name: name.into(),
                kind: Some(kind.into()),
                mtu: 1500,
                txqlen: 1000,
                ..Default::default()
            });
            *n
        }

        /// Adds an address to link `index` as if it had been there.
        pub fn add_addr(&self, index: u32, addr: std::net::IpAddr, prefix: u8) {
            self.addrs
                .borrow_mut()
                .push(crate::ops::fake::address(index, addr, prefix));
        }

        /// Makes the next operation starting with `op` fail with `errno`.
        pub fn fail_next(&self, op: &str, errno: i32) {
            self.plan.fail_next(op, errno);
        }

        /// The changes recorded so far.
        pub fn lines(&self) -> Vec<String> {
            self.plan.lines()
        }

        /// The link named `name`, as the fake holds it now.
        pub fn link(&self, name: &str) -> Option<Link> {
            crate::ops::fake::link_named(&self.links, name)
        }

        fn change(&self, line: String) -> netlink::Result<()> {
            self.plan.op(line, true).map_err(|(l, e)| kernel(l, e))
        }

        fn read(&self, line: String) -> netlink::Result<()> {
            self.plan.op(line, false).map_err(|(l, e)| kernel(l, e))
        }

        /// Removes a link with its qdiscs and filters, as the kernel does.
        fn drop_link(&self, index: u32) -> bool {
            remove_where(&self.qdiscs, |q| q.index == index);
            remove_where(&self.filters, |f| f.index == index);
            remove_where(&self.links, |l| l.index == index) != 0
        }

        fn edit_link(&self, index: u32, f: impl FnOnce(&mut Link)) -> netlink::Result<()> {
            match self
                .links
                .borrow_mut()
                .iter_mut()
                .find(|l| l.index == index)
            {
                Some(l) => {
                    f(l);
                    Ok(())
                }
                None => Err(kernel(format!("change link {index}"), libc::ENODEV)),
            }
        }
    }

    impl LinkLookup for FakeHost {
        fn link_by_name(&self, name: &str) -> netlink::Result<Option<Link>> {
            self.read(format!("get {name}"))?;
            Ok(self.link(name))
        }
        fn link_by_index(&self, index: u32) -> netlink::Result<Option<Link>> {
            self.read(format!("get #{index}"))?;
            Ok(crate::ops::fake::link_at(&self.links, index))
        }
    }

    impl RoutingOps for FakeHost {
        fn addresses(&self, index: Option<u32>, family: Family) -> netlink::Result<Vec<Address>> {
            self.read(format!("addresses {index:?}"))?;
            Ok(crate::ops::fake::addresses_of(&self.addrs, index, family))
        }
        fn rules(&self, family: Family) -> netlink::Result<Vec<Rule>> {
            self.read("rules".into())?;
            Ok(self
                .rules
                .borrow()
                .iter()
                .filter(|r| family == Family::All || r.family == family)
                .cloned()
                .collect())
        }
        fn add_rule(&self, r: &Rule) -> netlink::Result<()> {
            self.change(format!("rule add {}", rule_text(r)))?;
            self.rules.borrow_mut().push(r.clone());
            Ok(())
        }
        fn del_rule(&self, r: &Rule) -> netlink::Result<bool> {
            self.change(format!("rule del {}", rule_text(r)))?;
            Ok(0 != remove_where(&self.rules, |x| x == r))
        }
        fn routes(&self, family: Family, table: Option<u32>) -> netlink::Result<Vec<Route>> {
            self.read("routes".into())?;
            Ok(self
                .routes
                .borrow()
                .iter()
                .filter(|r| family == Family::All || r.family == family)
                .filter(|r| table.is_none_or(|t| r.table == t))
                .cloned()
                .collect())
        }
        fn add_route(&self, r: &Route) -> netlink::Result<()> {
            self.change(format!("route add {}", route_text(r)))?;
            if self.routes.borrow().contains(r) {
                return Err(kernel(format!("add route {}", route_text(r)), libc::EEXIST));
            }
            self.routes.borrow_mut().push(r.clone());
            Ok(())
        }
        fn replace_route(&self, r: &Route) -> netlink::Result<()> {
            self.change(format!("route replace {}", route_text(r)))?;
            let mut routes = self.routes.borrow_mut();
            routes.retain(|x| !(x.table == r.table && x.dst == r.dst && x.family == r.family));
            routes.push(r.clone());
            Ok(())
        }
        fn del_route(&self, r: &Route) -> netlink::Result<bool> {
            self.change(format!("route del {}", route_text(r)))?;
            Ok(0 != remove_where(&self.routes, |x| x == r))
        }
        fn route_get(&self, dst: std::net::IpAddr) -> netlink::Result<Option<Route>> {
            self.read(format!("route get {dst}"))?;
            // The longest prefix of the main table holding `dst`.
            let contains = |r: &Route| match r.dst {
                None => Family::of(dst) == r.family,
                Some((net, len)) => ipnet::IpNet::new(net, len).is_ok_and(|n| n.contains(&dst)),
            };
            Ok(self
                .routes
                .borrow()
                .iter()
                .filter(|r| r.table == 254 && contains(r))
                .max_by_key(|r| r.dst.map_or(0, |(_, l)| l))
                .cloned())
        }
    }

    impl ShapingOps for FakeHost {
        fn qdiscs(&self, index: Option<u32>) -> netlink::Result<Vec<Qdisc>> {
            self.read("qdiscs".into())?;
            Ok(self
                .qdiscs
                .borrow()
                .iter()
                .filter(|q| index.is_none_or(|i| q.index == i))
                .cloned()
                .collect())
        }
        fn add_tbf(
            &self,
            index: u32,
            handle: u32,
            tbf: &Tbf,
            replace: bool,
        ) -> netlink::Result<()> {
            self.change(format!("tbf {index} rate {} burst {}", tbf.rate, tbf.burst))?;
            let mut qs = self.qdiscs.borrow_mut();
            if replace {
                qs.retain(|q| !(q.index == index && q.kind == "tbf"));
            }
            qs.push(Qdisc {
                index,
                handle,
                parent: netlink::tc::TC_H_ROOT,
                kind: "tbf".into(),
                tbf: Some(netlink::tc::TbfInfo {
                    rate: tbf.rate,
                    limit: tbf.limit.unwrap_or(0),
                    buffer_ticks: 0,
                }),
            });
            Ok(())
        }
        fn add_ingress_qdisc(&self, index: u32) -> netlink::Result<()> {
            self.change(format!("ingress {index}"))?;
            self.qdiscs.borrow_mut().push(Qdisc {
                index,
                handle: netlink::tc::handle(0xffff, 0),
                parent: netlink::tc::TC_H_INGRESS,
                kind: "ingress".into(),
                tbf: None,
            });
            Ok(())
        }
        fn add_redirect_filter(&self, index: u32, redirect: &Redirect) -> netlink::Result<()> {
            self.change(format!("redirect {index} -> {}", redirect.target))?;
            self.filters.borrow_mut().push(Filter {
                index,
                parent: redirect.parent,
                handle: 0,
                kind: "u32".into(),
                prio: redirect.prio,
                protocol: 3,
            });
            Ok(())
        }
        fn filters(&self, index: u32, parent: u32) -> netlink::Result<Vec<Filter>> {
            self.read("filters".into())?;
            Ok(self
                .filters
                .borrow()
                .iter()
                .filter(|f| f.index == index && f.parent == parent)
                .cloned()
                .collect())
        }
        fn links(&self) -> netlink::Result<Vec<Link>> {
            self.read("links".into())?;
            Ok(self.links.borrow().clone())
        }
        fn delete_link(&self, index: u32) -> netlink::Result<bool> {
            self.change(format!("delete #{index}"))?;
            Ok(self.drop_link(index))
        }
        fn del_root_qdisc(&self, index: u32) -> netlink::Result<bool> {
            self.change(format!("qdisc del root {index}"))?;
            Ok(0 != remove_where(&self.qdiscs, |q| {
                q.index == index && q.parent == netlink::tc::TC_H_ROOT
            }))
        }
        fn del_ingress_qdisc(&self, index: u32) -> netlink::Result<bool> {
            self.change(format!("qdisc del ingress {index}"))?;
            Ok(0 != remove_where(&self.qdiscs, |q| q.index == index && q.kind == "ingress"))
        }
        fn create_ifb(&self, name: &str) -> netlink::Result<()> {
            self.change(format!("ifb {name}"))?;
            if self.link(name).is_some() {
                return Err(kernel(format!("create {name}"), libc::EEXIST));
            }
            self.add_link(name, "ifb");
            Ok(())
        }
        fn delete_link_by_name(&self, name: &str) -> netlink::Result<bool> {
            self.change(format!("delete {name}"))?;
            match self.link(name) {
                Some(l) => Ok(self.drop_link(l.index)),
                None => Ok(false),
            }
        }
        fn set_alias(&self, index: u32, alias: &str) -> netlink::Result<()> {
            self.change(format!("alias {index} {alias}"))?;
            self.edit_link(index, |l| l.alias = Some(alias.into()))
        }
        fn set_link_up(&self, index: u32) -> netlink::Result<()> {
            self.change(format!("up {index}"))?;
            self.edit_link(index, |l| l.up = true)
        }
    }

    impl LinkAttrOps for FakeHost {
        fn set_mac(&self, index: u32, mac: &[u8]) -> netlink::Result<()> {
            self.change(format!("mac {index} {}", netlink::format_mac(mac)))?;
            self.edit_link(index, |l| l.mac = mac.to_vec())
        }
        fn set_promisc(&self, index: u32, on: bool) -> netlink::Result<()> {
            self.change(format!("promisc {index} {on}"))?;
            self.edit_link(index, |l| l.promisc = on)
        }
        fn set_allmulti(&self, index: u32, on: bool) -> netlink::Result<()> {
            self.change(format!("allmulti {index} {on}"))?;
            self.edit_link(index, |l| l.allmulti = on)
        }
    }

    impl LinkSizes for FakeHost {
        fn set_mtu(&self, index: u32, mtu: u32) -> netlink::Result<()> {
            self.change(format!("mtu {index} {mtu}"))?;
            self.edit_link(index, |l| l.mtu = mtu)
        }
        fn set_txqlen(&self, index: u32, qlen: u32) -> netlink::Result<()> {
            self.change(format!("txqlen {index} {qlen}"))?;
            self.edit_link(index, |l| l.txqlen = qlen)
        }
    }
}
