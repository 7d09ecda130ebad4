//! `sbr`: source-based routing for the container interface, a chained
//! plugin.
//!
//! For each IP of the interface in prevResult: a routing table of its own
//! (the first table from 100 up that no rule and no route uses), a rule
//! `from <ip> lookup <table>`, a default route via the gateway in that
//! table, and the interface's routes moved from the main table into it (as
//! the reference does). With `table` set, only the rules are added and the
//! table's contents are left to the user. DEL removes the rules whose source
//! is an address of the interface and this interface's routes in the tables
//! they pointed to.

#[doc(hidden)]
pub mod fuzzing;
use cni_skel::{CmdArgs, Plugin};
use cni_spec::error::CniResult;
use cni_spec::{Error, ErrorCode, IpConfig, Result};
use ipnet::IpNet;
use kit::routing::RoutingOps;
use kit::Teardown;
use netlink::{Family, Route, Rule, Socket};
use netns::NetNs;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

/// The first table the reference considers.
pub const FIRST_TABLE: u32 = 100;
const RT_TABLE_MAIN: u32 = 254;

/// The sbr plugin as the CNI skeleton runs it: adds the pod interface's
/// source-based rules and routing table on ADD, removes them on DEL.
pub struct Sbr;

#[derive(Debug, Clone, Default, Deserialize)]
struct SbrConf {
    /// Pin the table: only rules are added.
    #[serde(default)]
    table: Option<u32>,
    /// Static gateways (one per family) used instead of prevResult's.
    #[serde(default)]
    gateways: Vec<String>,
}

struct Gateways {
    v4: Option<IpAddr>,
    v6: Option<IpAddr>,
}

impl SbrConf {
    fn load(args: &CmdArgs) -> CniResult<SbrConf> {
        let c: SbrConf = args.parse_conf()?;
        c.static_gateways()?;
        Ok(c)
    }

    fn static_gateways(&self) -> CniResult<Gateways> {
        let mut g = Gateways { v4: None, v6: None };
        if self.gateways.len() > 2 {
            return Err(Error::invalid_config(
                "gateways may list at most two addresses (one IPv4, one IPv6)",
            ));
        }
        for s in &self.gateways {
            let ip: IpAddr = s
                .parse()
                .map_err(|_| Error::invalid_config(format!("invalid static gateway {s:?}")))?;
            let slot = if ip.is_ipv4() { &mut g.v4 } else { &mut g.v6 };
            if slot.replace(ip).is_some() {
                return Err(Error::invalid_config(format!(
                    "gateways lists two addresses of the family of {ip}"
                )));
            }
        }
        Ok(g)
    }
}

fn full_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// The IPs of prevResult that belong to `ifname` (an IP without an
/// interface index is assumed to, as the reference does).
fn ips_for(prev: &Result, ifname: &str) -> CniResult<Vec<IpConfig>> {
    if prev.ips.is_empty() {
        return Err(Error::invalid_config(format!(
            "no IP addresses supplied on interface {ifname}"
        )));
    }
    Ok(prev
        .ips
        .iter()
        .filter(|ip| match ip.interface {
            None => true,
            Some(i) => prev.interfaces.get(i).is_none_or(|x| x.name == ifname),
        })
        .cloned()
        .collect())
}

/// Serialises sbr calls on one namespace (table choice is read-then-write),
/// like the reference's lock on the netns file. Released on drop.
struct NsLock;

impl NsLock {
    fn take(path: &Path) -> CniResult<kit::os::Lock> {
        kit::os::Lock::exclusive(path, false)
            .map_err(|e| Error::io(format!("failed to lock {}: {e}", path.display())))
    }
}

/// First table at or above `from` that no rule points to and no route is in.
fn free_table(rules: &[Rule], routes: &[Route], from: u32) -> u32 {
    let used: BTreeSet<u32> = rules
        .iter()
        .map(|r| r.table)
        .chain(routes.iter().map(|r| r.table))
        .collect();
    (from..).find(|t| !used.contains(t)).unwrap_or(from)
}

fn source_rule(ip: IpAddr, table: u32) -> Rule {
    Rule::new(Family::of(ip))
        .from(ip, full_prefix(ip))
        .table(table)
}

/// Does `route` go with this address: its source or gateway is in the
/// address's subnet, or it names neither (a plain device route).
fn belongs_to(route: &Route, addr: &IpNet) -> bool {
    if route.family != Family::of(addr.addr()) {
        return false;
    }
    match (route.src, route.gateway) {
        (None, None) => true,
        (src, gw) => {
            src.is_some_and(|s| addr.contains(&s)) || gw.is_some_and(|g| addr.contains(&g))
        }
    }
}

/// The rules (source, table) one ADD made, in `done` as they are made,
/// so a failure takes back exactly those.
fn setup_tables(
    sock: &dyn RoutingOps,
    ips: &[IpConfig],
    ifname: &str,
    gws: &Gateways,
    done: &mut Vec<(IpAddr, u32)>,
) -> CniResult<()> {
    let rules = sock.rules(Family::All).map_err(kit::err)?;
    let mut routes = sock.routes(Family::All, None).map_err(kit::err)?;
    let link = sock
        .link_by_name(ifname)
        .map_err(kit::err)?
        .ok_or_else(|| Error::io(format!("cannot find network interface {ifname}")))?;
    let main: Vec<Route> = routes
        .iter()
        .filter(|r| r.table == RT_TABLE_MAIN && r.oif == Some(link.index))
        .cloned()
        .collect();

    let mut moved: Vec<&Route> = Vec::new();
    let mut table = free_table(&rules, &routes, FIRST_TABLE);
    for ip in ips {
        let addr = ip.address.addr();
        sock.add_rule(&source_rule(addr, table)).map_err(kit::err)?;
        done.push((addr, table));

        let gw = match addr {
            IpAddr::V4(_) => gws.v4,
            IpAddr::V6(_) => gws.v6,
        }
        .or(ip.gateway);
        if let Some(gw) = gw {
            let def = Route::default_for(Family::of(addr))
                .via(gw)
                .dev(link.index)
                .table(table);
            match sock.add_route(&def) {
                Ok(()) => {}
                Err(e) if e.is_exists() => {}
                Err(e) => {
                    return Err(Error::io(format!(
                        "failed to add default route via {gw} to table {table}: {e}"
                    )))
                }
            }
            routes.push(def);
        }
        for r in main.iter().filter(|r| belongs_to(r, &ip.address)) {
            let mut copy = r.clone();
            copy.table = table;
            sock.replace_route(&copy).map_err(kit::err)?;
            moved.push(r);
            routes.push(copy);
        }
        table = free_table(&rules, &routes, table + 1);
    }
    // Moved, not copied: the main table no longer routes via this
    // interface (several addresses may share a route, so delete last).
    for r in moved {
        let _ = sock.del_route(r);
    }
    Ok(())
}

/// Takes back the rules in `done` and, when this call chose their tables
/// (free when chosen), the routes it put there for `ifname`. Another ADD's
/// rules and tables are left alone.
fn take_back(sock: &dyn RoutingOps, ifname: &str, done: &[(IpAddr, u32)], own_tables: bool) {
    for (ip, t) in done {
        let _ = sock.del_rule(&source_rule(*ip, *t));
    }
    if !own_tables {
        return;
    }
    let tables: BTreeSet<u32> = done.iter().map(|(_, t)| *t).collect();
    let (Ok(Some(link)), Ok(routes)) = (sock.link_by_name(ifname), sock.routes(Family::All, None))
    else {
        return;
    };
    for r in routes
        .iter()
        .filter(|r| tables.contains(&r.table) && r.oif == Some(link.index))
    {
        let _ = sock.del_route(r);
    }
}

/// The rule sources DEL and CHECK look for: the interface's addresses now,
/// plus the IPs prevResult lists (in case an address was already removed).
fn known_sources(
    sock: &dyn RoutingOps,
    ifname: &str,
    prev: Option<&Result>,
) -> CniResult<(Option<u32>, Vec<IpAddr>)> {
    let mut out = Vec::new();
    let link = sock.link_by_name(ifname).map_err(kit::err)?;
    if let Some(l) = &link {
        for a in sock
            .addresses(Some(l.index), Family::All)
            .map_err(kit::err)?
        {
            out.push(a.addr);
        }
    }
    if let Some(p) = prev {
        if let Ok(ips) = ips_for(p, ifname) {
            out.extend(ips.iter().map(|i| i.address.addr()));
        }
    }
    out.sort();
    out.dedup();
    Ok((link.map(|l| l.index), out))
}

fn open_sandbox(path: &Path) -> CniResult<(NetNs, Socket)> {
    let ns = NetNs::open(path).map_err(|e| {
        Error::new(
            ErrorCode::UnknownContainer,
            format!("failed to open netns: {e}"),
        )
    })?;
    let sock = Socket::route_in(&ns).map_err(kit::err)?;
    Ok((ns, sock))
}

/// ADD's work in the sandbox: the rules (and, without a pinned table, the
/// tables) of `ips`; on failure, what this call made is taken back.
fn add_rules(
    sock: &dyn RoutingOps,
    conf: &SbrConf,
    gws: &Gateways,
    ips: &[IpConfig],
    ifname: &str,
) -> CniResult<()> {
    let mut done = Vec::new();
    let outcome = match conf.table {
        Some(t) => ips.iter().try_for_each(|ip| {
            let addr = ip.address.addr();
            sock.add_rule(&source_rule(addr, t)).map_err(kit::err)?;
            done.push((addr, t));
            Ok(())
        }),
        None => setup_tables(sock, ips, ifname, gws, &mut done),
    };
    if let Err(e) = outcome {
        take_back(sock, ifname, &done, conf.table.is_none());
        return Err(e);
    }
    Ok(())
}

/// DEL's work in the sandbox: the rules of the interface's addresses (and
/// of prevResult's) and the routes of the tables they pointed to.
fn del_rules(
    sock: &dyn RoutingOps,
    conf: &SbrConf,
    ifname: &str,
    prev: Option<&Result>,
) -> CniResult<()> {
    let (_, sources) = known_sources(sock, ifname, prev)?;
    tidy(sock, ifname, conf.table, &sources)
}

/// CHECK's work in the sandbox: a rule per address and, for tables sbr
/// chose, routes via the interface in each.
fn check_rules(
    sock: &dyn RoutingOps,
    conf: &SbrConf,
    ips: &[IpConfig],
    ifname: &str,
) -> CniResult<()> {
    let link = sock
        .link_by_name(ifname)
        .map_err(kit::err)?
        .ok_or_else(|| Error::internal(format!("cannot find network interface {}", ifname)))?;
    let rules = sock.rules(Family::All).map_err(kit::err)?;
    let routes = sock.routes(Family::All, None).map_err(kit::err)?;
    for ip in ips {
        let addr = ip.address.addr();
        let rule = rules
            .iter()
            .find(|r| {
                r.src == Some((addr, full_prefix(addr))) && conf.table.is_none_or(|t| r.table == t)
            })
            .ok_or_else(|| Error::internal(format!("no source-based routing rule for {addr}")))?;
        if conf.table.is_none()
            && !routes
                .iter()
                .any(|r| r.table == rule.table && r.oif == Some(link.index))
        {
            return Err(Error::internal(format!(
                "routing table {} of {addr} has no routes via {}",
                rule.table, ifname
            )));
        }
    }
    Ok(())
}

impl Plugin for Sbr {
    fn name(&self) -> &'static str {
        "sbr"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let conf = SbrConf::load(args)?;
        let gws = conf.static_gateways()?;
        let prev = args
            .conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("sbr must be called as a chained plugin"))?;
        let ips = ips_for(&prev, &args.ifname)?;
        let path = args.require_netns()?;
        let (_ns, sock) = open_sandbox(path)?;
        let _lock = NsLock::take(path)?;
        add_rules(&sock, &conf, &gws, &ips, &args.ifname)?;
        Ok(prev)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let conf = SbrConf::load(args)?;
        let prev = args.conf.prev_result().ok().flatten();
        let Some(path) = args.netns_path() else {
            return Ok(());
        };
        let ns = match NetNs::open(path) {
            Ok(ns) => ns,
            Err(e) if e.is_gone() => return Ok(()),
            Err(e) => return Err(Error::io(format!("failed to open netns: {e}"))),
        };
        let sock = Socket::route_in(&ns).map_err(kit::err)?;
        let _lock = NsLock::take(path)?;
        del_rules(&sock, &conf, &args.ifname, prev.as_ref())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let conf = SbrConf::load(args)?;
        let prev = args
            .conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("sbr must be called as a chained plugin"))?;
        let ips = ips_for(&prev, &args.ifname)?;
        let (_ns, sock) = open_sandbox(args.require_netns()?)?;
        check_rules(&sock, &conf, &ips, &args.ifname)
    }
}

/// Deletes the rules whose source is one of `sources` (of table `pinned`
/// only, if set) and, for tables sbr chose, the interface's routes in the
/// tables they pointed to. Keeps going after failures.
fn tidy(
    sock: &dyn RoutingOps,
    ifname: &str,
    pinned: Option<u32>,
    sources: &[IpAddr],
) -> CniResult<()> {
    let rules = sock.rules(Family::All).map_err(kit::err)?;
    let mut td = Teardown::new();
    let mut tables = BTreeSet::new();
    for r in &rules {
        let Some((src, len)) = r.src else { continue };
        if len != full_prefix(src) || !sources.contains(&src) {
            continue;
        }
        if pinned.is_some_and(|t| t != r.table) {
            continue;
        }
        match sock.del_rule(r) {
            Ok(_) => {
                tables.insert(r.table);
            }
            Err(e) => td.push(e),
        }
    }
    if pinned.is_none() && !tables.is_empty() {
        if let Some(link) = sock.link_by_name(ifname).map_err(kit::err)? {
            let routes = sock.routes(Family::All, None).map_err(kit::err)?;
            for r in routes
                .iter()
                .filter(|r| tables.contains(&r.table) && r.oif == Some(link.index))
            {
                td.step(sock.del_route(r));
            }
        }
    }
    Ok(td.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(t: u32) -> Rule {
        Rule::new(Family::V4).table(t)
    }

    #[test]
    fn first_free_table() {
        let route = Route::default_for(Family::V4).table(101);
        assert_eq!(free_table(&[], &[], 100), 100);
        assert_eq!(
            free_table(&[rule(100), rule(254)], std::slice::from_ref(&route), 100),
            102
        );
        assert_eq!(free_table(&[rule(100)], &[route], 102), 102);
    }

    #[test]
    fn route_ownership() {
        let addr: IpNet = "10.1.0.5/24".parse().expect("net");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let subnet = Route::to(ip("10.1.0.0"), 24).src(ip("10.1.0.5"));
        let via = Route::to(ip("10.9.0.0"), 16).via(ip("10.1.0.1"));
        let other = Route::to(ip("10.9.0.0"), 16).via(ip("10.2.0.1"));
        let plain = Route::to(ip("10.8.0.0"), 16);
        let v6 = Route::to(ip("fe80::"), 64);
        assert!(belongs_to(&subnet, &addr));
        assert!(belongs_to(&via, &addr));
        assert!(!belongs_to(&other, &addr));
        assert!(belongs_to(&plain, &addr));
        assert!(!belongs_to(&v6, &addr));
    }

    #[test]
    fn ips_of_the_interface_only() {
        let mut r = Result::new("1.0.0");
        for n in ["veth0", "eth0", "net1"] {
            r.interfaces.push(cni_spec::Interface {
                name: n.into(),
                ..Default::default()
            });
        }
        for (i, a) in [
            (Some(1), "10.0.0.2/24"),
            (Some(2), "10.1.0.2/24"),
            (None, "10.2.0.2/24"),
        ] {
            r.ips.push(IpConfig {
                interface: i,
                address: a.parse().expect("net"),
                gateway: None,
            });
        }
        let got: Vec<String> = ips_for(&r, "eth0")
            .expect("ips")
            .iter()
            .map(|i| i.address.to_string())
            .collect();
        assert_eq!(got, vec!["10.0.0.2/24", "10.2.0.2/24"]);
        assert_eq!(
            ips_for(&Result::new("1.0.0"), "eth0")
                .expect_err("none")
                .code,
            7
        );
    }
}

/// The verb cores on the recording fake: operation order, undo and error
/// codes without root (the namespace tests in tests/sbr.rs stay the ground
/// truth).
#[cfg(test)]
mod fake_tests {
    use super::*;
    use kit::ops::fake::errno;
    use kit::routing::fake::FakeHost;

    /// A sandbox with `eth0` (10.0.0.2/24) and its subnet route in main.
    fn sandbox() -> (FakeHost, u32) {
        let ns = FakeHost::new();
        let eth0 = ns.add_link("eth0", "veth");
        let ip: IpAddr = "10.0.0.2".parse().expect("ip");
        ns.add_addr(eth0, ip, 24);
        let mut subnet = Route::to("10.0.0.0".parse().expect("ip"), 24)
            .src(ip)
            .dev(eth0);
        subnet.table = RT_TABLE_MAIN;
        ns.routes.borrow_mut().push(subnet);
        (ns, eth0)
    }

    fn prev() -> Result {
        let mut r = Result::new("1.0.0");
        r.interfaces.push(cni_spec::Interface {
            name: "eth0".into(),
            sandbox: "/run/netns/x".into(),
            ..Default::default()
        });
        r.ips.push(IpConfig {
            interface: Some(0),
            address: "10.0.0.2/24".parse().expect("net"),
            gateway: Some("10.0.0.1".parse().expect("ip")),
        });
        r
    }

    fn add(ns: &FakeHost, conf: &SbrConf) -> CniResult<()> {
        let prev = prev();
        let ips = ips_for(&prev, "eth0")?;
        let gws = conf.static_gateways()?;
        add_rules(ns, conf, &gws, &ips, "eth0")
    }

    #[test]
    fn add_makes_the_rule_then_the_default_route_then_moves_the_subnet_route() {
        let (ns, eth0) = sandbox();
        add(&ns, &SbrConf::default()).expect("add");
        assert_eq!(
            ns.lines(),
            vec![
                "rule add from 10.0.0.2/32 table 100".to_string(),
                format!("route add default via 10.0.0.1 dev {eth0} table 100"),
                format!("route replace 10.0.0.0/24 dev {eth0} table 100"),
                format!("route del 10.0.0.0/24 dev {eth0} table 254"),
            ]
        );
        assert!(ns.routes.borrow().iter().all(|r| r.table == 100));
    }

    #[test]
    fn add_picks_the_first_table_no_rule_or_route_uses() {
        let (ns, _) = sandbox();
        ns.rules
            .borrow_mut()
            .push(Rule::new(Family::V4).table(FIRST_TABLE));
        add(&ns, &SbrConf::default()).expect("add");
        assert_eq!(ns.lines()[0], "rule add from 10.0.0.2/32 table 101");
    }

    #[test]
    fn a_refused_route_move_fails_add_with_code_5_and_takes_back_rule_and_table() {
        let (ns, eth0) = sandbox();
        ns.fail_next("route replace", errno::EPERM);
        let e = add(&ns, &SbrConf::default()).expect_err("refused");
        assert_eq!(e.code, 5, "{e}");
        let lines = ns.lines();
        assert_eq!(
            lines[3..],
            [
                "rule del from 10.0.0.2/32 table 100".to_string(),
                format!("route del default via 10.0.0.1 dev {eth0} table 100"),
            ]
        );
        assert!(ns.rules.borrow().is_empty());
        assert!(ns.routes.borrow().iter().all(|r| r.table == RT_TABLE_MAIN));
    }

    #[test]
    fn a_failing_second_add_takes_back_only_what_it_made() {
        let (ns, _) = sandbox();
        add(&ns, &SbrConf::default()).expect("first add");
        let before_rules = ns.rules.borrow().clone();
        let in_100 = |ns: &FakeHost| {
            ns.routes
                .borrow()
                .iter()
                .filter(|r| r.table == FIRST_TABLE)
                .count()
        };
        let routes_100 = in_100(&ns);
        assert!(routes_100 > 0);
        ns.fail_next("route add default", errno::EPERM);
        let e = add(&ns, &SbrConf::default()).expect_err("refused");
        assert_eq!(e.code, 5, "{e}");
        assert!(
            ns.lines()
                .iter()
                .any(|l| l == "rule del from 10.0.0.2/32 table 101"),
            "{:?}",
            ns.lines()
        );
        assert_eq!(*ns.rules.borrow(), before_rules);
        assert_eq!(in_100(&ns), routes_100);
    }

    #[test]
    fn a_refused_default_route_fails_add_with_code_5_and_leaves_no_rule() {
        let (ns, _) = sandbox();
        ns.fail_next("route add default", errno::EPERM);
        let e = add(&ns, &SbrConf::default()).expect_err("refused");
        assert_eq!(e.code, 5, "{e}");
        assert!(e.msg.contains("failed to add default route"), "{e}");
        assert!(ns.rules.borrow().is_empty());
    }

    #[test]
    fn an_existing_default_route_in_the_table_is_not_an_error() {
        let (ns, _) = sandbox();
        ns.fail_next("route add default", errno::EEXIST);
        add(&ns, &SbrConf::default()).expect("EEXIST is fine");
        assert_eq!(ns.rules.borrow().len(), 1);
    }

    #[test]
    fn with_a_pinned_table_add_only_adds_rules_and_a_refusal_takes_them_back() {
        let (ns, _) = sandbox();
        let conf = SbrConf {
            table: Some(42),
            ..Default::default()
        };
        add(&ns, &conf).expect("add");
        assert_eq!(ns.lines(), vec!["rule add from 10.0.0.2/32 table 42"]);

        let (ns, _) = sandbox();
        ns.fail_next("rule add", errno::EPERM);
        let e = add(&ns, &conf).expect_err("refused");
        assert_eq!(e.code, 5, "{e}");
        assert!(ns.rules.borrow().is_empty());
        assert!(ns.routes.borrow().iter().all(|r| r.table == RT_TABLE_MAIN));

        // With two addresses the second rule is refused: the first one,
        // already added, is taken back.
        let (ns, _) = sandbox();
        let mut prev = prev();
        prev.ips.push(IpConfig {
            interface: Some(0),
            address: "fd00::2/64".parse().expect("net"),
            gateway: None,
        });
        let ips = ips_for(&prev, "eth0").expect("ips");
        ns.fail_next("rule add from fd00::2", errno::EPERM);
        let gws = conf.static_gateways().expect("gateways");
        let e = add_rules(&ns, &conf, &gws, &ips, "eth0").expect_err("refused");
        assert_eq!(e.code, 5, "{e}");
        assert!(ns.rules.borrow().is_empty(), "{:?}", ns.lines());
        assert!(
            ns.lines()
                .iter()
                .any(|l| l.starts_with("rule del from 10.0.0.2/32")),
            "{:?}",
            ns.lines()
        );
    }

    #[test]
    fn del_removes_the_rule_and_the_interface_routes_of_its_table() {
        let (ns, _) = sandbox();
        add(&ns, &SbrConf::default()).expect("add");
        let before = ns.lines().len();
        del_rules(&ns, &SbrConf::default(), "eth0", Some(&prev())).expect("del");
        assert_eq!(ns.lines()[before], "rule del from 10.0.0.2/32 table 100");
        assert!(ns.rules.borrow().is_empty());
        assert!(ns.routes.borrow().is_empty());
    }

    #[test]
    fn del_of_rules_and_interface_already_gone_succeeds_without_changes() {
        let ns = FakeHost::new();
        del_rules(&ns, &SbrConf::default(), "eth0", Some(&prev())).expect("del");
        del_rules(&ns, &SbrConf::default(), "eth0", None).expect("del again");
        assert!(ns.lines().is_empty());
    }

    #[test]
    fn del_keeps_going_after_a_refusal_and_reports_code_5() {
        let (ns, _) = sandbox();
        add(&ns, &SbrConf::default()).expect("add");
        ns.fail_next("rule del", errno::EPERM);
        let e = del_rules(&ns, &SbrConf::default(), "eth0", Some(&prev())).expect_err("refused");
        assert_eq!(e.code, 5, "{e}");
    }

    #[test]
    fn check_without_the_rule_or_the_interface_fails_with_code_999() {
        let (ns, _) = sandbox();
        let prev = prev();
        let ips = ips_for(&prev, "eth0").expect("ips");
        let e = check_rules(&ns, &SbrConf::default(), &ips, "eth0").expect_err("no rule");
        assert_eq!(e.code, 999);
        assert!(e.msg.contains("no source-based routing rule"), "{e}");
        let e = check_rules(&FakeHost::new(), &SbrConf::default(), &ips, "eth0")
            .expect_err("no interface");
        assert_eq!(e.code, 999);
        add(&ns, &SbrConf::default()).expect("add");
        check_rules(&ns, &SbrConf::default(), &ips, "eth0").expect("in place");
        ns.routes.borrow_mut().clear();
        let e = check_rules(&ns, &SbrConf::default(), &ips, "eth0").expect_err("no routes");
        assert_eq!(e.code, 999);
    }
}
