//! `vrf` (meta, chained): puts the pod's interface into a VRF inside the
//! pod's namespace. The VRF `vrfname` is created (or reused), with `table`
//! or the first routing table no other VRF there uses; the interface is
//! enslaved and its addresses and routes kept, the routes moved into the
//! VRF's table. DEL releases the interface and removes the VRF when no
//! other interface is in it. The previous result passes through.

use cni_skel::{CmdArgs, Plugin};
use cni_spec::error::CniResult;
use cni_spec::{Error, Result};
use netlink::{Family, Link, LinkKind, LinkSpec, Socket};
use netns::NetNs;
use serde::Deserialize;

/// The vrf plugin as the CNI skeleton runs it: enslaves the pod interface
/// to its VRF on ADD, releases it (and an emptied VRF) on DEL.
pub struct Vrf;

#[derive(Debug, Clone, Deserialize)]
struct Conf {
    #[serde(default)]
    vrfname: String,
    /// 0: chosen.
    #[serde(default)]
    table: u32,
}

fn parse(args: &CmdArgs) -> CniResult<Conf> {
    let c: Conf = args.parse_conf()?;
    if c.vrfname.is_empty() {
        return Err(Error::invalid_config(
            "configuration is expected to have a valid vrf name",
        ));
    }
    Ok(c)
}

/// The first table id from 1 that neither another VRF nor any route of
/// this namespace uses (main, local and default are never free).
fn free_table(s: &Socket) -> CniResult<u32> {
    let mut used: Vec<u32> = s
        .links()
        .map_err(kit::err)?
        .iter()
        .filter_map(Link::vrf_table)
        .collect();
    used.extend(
        s.routes(Family::All, None)
            .map_err(kit::err)?
            .iter()
            .map(|r| r.table),
    );
    (1..u32::MAX)
        .find(|t| !(253..=255).contains(t) && !used.contains(t))
        .ok_or_else(|| Error::internal("no free routing table"))
}

/// The VRF device, created when missing; a given table must match.
fn ensure_vrf(s: &Socket, c: &Conf) -> CniResult<Link> {
    if let Some(l) = s.link_by_name(&c.vrfname).map_err(kit::err)? {
        let Some(t) = l.vrf_table() else {
            return Err(Error::internal(format!(
                "interface {:?} exists and is not a vrf",
                c.vrfname
            )));
        };
        if c.table != 0 && t != c.table {
            return Err(Error::internal(format!(
                "vrf {:?} found but table mismatch: want {}, have {t}",
                c.vrfname, c.table
            )));
        }
        return Ok(l);
    }
    let table = if c.table == 0 {
        free_table(s)?
    } else {
        c.table
    };
    s.create_link(&LinkSpec::new(&c.vrfname, LinkKind::Vrf { table }))
        .map_err(|e| Error::io(format!("could not add vrf {:?}: {e}", c.vrfname)))?;
    let l = s
        .link_by_name(&c.vrfname)
        .map_err(kit::err)?
        .ok_or_else(|| Error::internal(format!("vrf {:?} vanished", c.vrfname)))?;
    s.set_link_up(l.index)
        .map_err(|e| Error::io(format!("could not set vrf {:?} up: {e}", c.vrfname)))?;
    Ok(l)
}

/// Enslaves `link` to `vrf`, putting back the addresses the kernel drops
/// (IPv6 ones go with the link's down/up cycle) and re-adding the link's
/// routes of the main table in the VRF's table.
fn enslave(s: &Socket, link: &Link, vrf: &Link, table: u32) -> CniResult<()> {
    let addrs: Vec<_> = s
        .addresses(Some(link.index), Family::All)
        .map_err(kit::err)?
        .into_iter()
        .filter(|a| a.scope != netlink::addr::RT_SCOPE_LINK)
        .collect();
    let routes: Vec<_> = s
        .routes(Family::All, Some(254))
        .map_err(kit::err)?
        .into_iter()
        .filter(|r| r.oif == Some(link.index))
        .collect();
    s.set_master(link.index, vrf.index)
        .map_err(|e| Error::io(format!("failed to set {:?} master: {e}", link.name)))?;
    let now = s
        .addresses(Some(link.index), Family::All)
        .map_err(kit::err)?;
    for a in &addrs {
        if now.iter().any(|n| n.addr == a.addr) {
            continue;
        }
        let opts = netlink::AddressOptions {
            nodad: true,
            ..Default::default()
        };
        match s.add_address_with(link.index, a.addr, a.prefix, &opts) {
            Ok(()) => {}
            Err(e) if e.is_exists() => {}
            Err(e) => return Err(Error::io(format!("failed to restore {}: {e}", a.addr))),
        }
    }
    s.set_link_up(link.index).map_err(kit::err)?;
    // Device routes first, then those via a gateway: a gateway must be
    // reachable in the VRF's table before a route can use it. Passes repeat
    // while they make progress (a gateway reached through another gateway).
    let mut pending: Vec<_> = routes
        .into_iter()
        .map(|mut r| {
            r.table = table;
            r.protocol = None;
            r
        })
        .collect();
    pending.sort_by_key(|r| r.gateway.is_some());
    loop {
        let mut failed = Vec::new();
        let mut last_err = None;
        let before = pending.len();
        for r in pending {
            match s.add_route(&r) {
                Ok(()) => {}
                Err(e) if e.is_exists() => {}
                Err(e) => {
                    last_err = Some(format!("failed to move route {r:?}: {e}"));
                    failed.push(r);
                }
            }
        }
        if failed.is_empty() {
            break;
        }
        if failed.len() == before {
            return Err(Error::io(last_err.unwrap_or_default()));
        }
        pending = failed;
    }
    Ok(())
}

impl Plugin for Vrf {
    fn name(&self) -> &'static str {
        "vrf"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let c = parse(args)?;
        let prev = args
            .conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("missing prevResult from earlier plugin"))?;
        let cns = kit::open_ns(args.require_netns()?)?;
        let s = Socket::route_in(&cns).map_err(kit::err)?;
        let link = s
            .link_by_name(&args.ifname)
            .map_err(kit::err)?
            .ok_or_else(|| {
                Error::internal(format!("failed to find interface {:?}", args.ifname))
            })?;
        let created = s.link_by_name(&c.vrfname).map_err(kit::err)?.is_none();
        let vrf = ensure_vrf(&s, &c)?;
        let table = vrf.vrf_table().unwrap_or(c.table);
        if let Err(e) = enslave(&s, &link, &vrf, table) {
            let _ = s.set_nomaster(link.index);
            if created {
                let _ = s.delete_link(vrf.index);
            }
            return Err(e);
        }
        Ok(prev)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let c = parse(args)?;
        let Some(path) = args.netns_path() else {
            return Ok(());
        };
        let cns = match NetNs::open(path) {
            Ok(ns) => ns,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(Error::io(format!("failed to open netns: {e}"))),
        };
        let s = Socket::route_in(&cns).map_err(kit::err)?;
        let Some(vrf) = s.link_by_name(&c.vrfname).map_err(kit::err)? else {
            return Ok(());
        };
        if vrf.vrf_table().is_none() {
            return Ok(());
        }
        if let Some(l) = s.link_by_name(&args.ifname).map_err(kit::err)? {
            if l.master == Some(vrf.index) {
                s.set_nomaster(l.index).map_err(kit::err)?;
            }
        }
        let members = s
            .links()
            .map_err(kit::err)?
            .iter()
            .filter(|l| l.master == Some(vrf.index))
            .count();
        if members == 0 {
            s.delete_link(vrf.index).map_err(kit::err)?;
        }
        Ok(())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let c = parse(args)?;
        args.conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("missing prevResult from earlier plugin"))?;
        let cns = kit::open_ns(args.require_netns()?)?;
        let s = Socket::route_in(&cns).map_err(kit::err)?;
        let vrf = s
            .link_by_name(&c.vrfname)
            .map_err(kit::err)?
            .ok_or_else(|| Error::internal(format!("vrf {:?} not found", c.vrfname)))?;
        let Some(t) = vrf.vrf_table() else {
            return Err(Error::internal(format!("{:?} is not a vrf", c.vrfname)));
        };
        if c.table != 0 && c.table != t {
            return Err(Error::internal(format!(
                "vrf {:?} has table {t}, want {}",
                c.vrfname, c.table
            )));
        }
        let l = s
            .link_by_name(&args.ifname)
            .map_err(kit::err)?
            .ok_or_else(|| {
                Error::internal(format!("failed to find interface {:?}", args.ifname))
            })?;
        if l.master != Some(vrf.index) {
            return Err(Error::internal(format!(
                "interface {:?} is not in vrf {:?}",
                args.ifname, c.vrfname
            )));
        }
        Ok(())
    }
}
