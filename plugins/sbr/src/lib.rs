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

fn setup_tables(
    sock: &Socket,
    ips: &[IpConfig],
    ifname: &str,
    gws: &Gateways,
) -> CniResult<Vec<(IpAddr, u32)>> {
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

    let mut done = Vec::new();
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
    Ok(done)
}

/// The rule sources DEL and CHECK look for: the interface's addresses now,
/// plus the IPs prevResult lists (in case an address was already removed).
fn known_sources(
    sock: &Socket,
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

        let outcome = match conf.table {
            Some(t) => {
                let mut done = Vec::new();
                let mut failed = None;
                for ip in &ips {
                    let addr = ip.address.addr();
                    match sock.add_rule(&source_rule(addr, t)) {
                        Ok(()) => done.push((addr, t)),
                        Err(e) => {
                            failed = Some(kit::err(e));
                            break;
                        }
                    }
                }
                match failed {
                    None => Ok(done),
                    Some(e) => Err((e, done)),
                }
            }
            None => setup_tables(&sock, &ips, &args.ifname, &gws).map_err(|e| (e, Vec::new())),
        };
        if let Err((e, done)) = outcome {
            // Take back the rules this call added; with tables chosen here,
            // also whatever they already hold for this interface.
            let (_, sources) = known_sources(&sock, &args.ifname, Some(&prev)).unwrap_or_default();
            let _ = tidy(&sock, &args.ifname, conf.table, &sources);
            for (ip, t) in done {
                let _ = sock.del_rule(&source_rule(ip, t));
            }
            return Err(e);
        }
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
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(Error::io(format!("failed to open netns: {e}"))),
        };
        let sock = Socket::route_in(&ns).map_err(kit::err)?;
        let _lock = NsLock::take(path)?;
        let (_, sources) = known_sources(&sock, &args.ifname, prev.as_ref())?;
        tidy(&sock, &args.ifname, conf.table, &sources)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let conf = SbrConf::load(args)?;
        let prev = args
            .conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("sbr must be called as a chained plugin"))?;
        let ips = ips_for(&prev, &args.ifname)?;
        let (_ns, sock) = open_sandbox(args.require_netns()?)?;
        let link = sock
            .link_by_name(&args.ifname)
            .map_err(kit::err)?
            .ok_or_else(|| {
                Error::internal(format!("cannot find network interface {}", args.ifname))
            })?;
        let rules = sock.rules(Family::All).map_err(kit::err)?;
        let routes = sock.routes(Family::All, None).map_err(kit::err)?;
        for ip in &ips {
            let addr = ip.address.addr();
            let rule = rules
                .iter()
                .find(|r| {
                    r.src == Some((addr, full_prefix(addr)))
                        && conf.table.is_none_or(|t| r.table == t)
                })
                .ok_or_else(|| {
                    Error::internal(format!("no source-based routing rule for {addr}"))
                })?;
            if conf.table.is_none()
                && !routes
                    .iter()
                    .any(|r| r.table == rule.table && r.oif == Some(link.index))
            {
                return Err(Error::internal(format!(
                    "routing table {} of {addr} has no routes via {}",
                    rule.table, args.ifname
                )));
            }
        }
        Ok(())
    }
}

/// Deletes the rules whose source is one of `sources` (of table `pinned`
/// only, if set) and, for tables sbr chose, the interface's routes in the
/// tables they pointed to. Keeps going after failures.
fn tidy(sock: &Socket, ifname: &str, pinned: Option<u32>, sources: &[IpAddr]) -> CniResult<()> {
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
