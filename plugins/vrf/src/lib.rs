//! `vrf` (meta, chained): puts the pod's interface into a VRF inside the
//! pod's namespace. The VRF `vrfname` is created (or reused), with `table`
//! or the first routing table no other VRF there uses; the interface is
//! enslaved and its addresses and routes kept, the routes moved into the
//! VRF's table. DEL releases the interface and removes the VRF when no
//! other interface is in it. The previous result passes through.

use cni_skel::{CmdArgs, Plugin};
use cni_spec::error::CniResult;
use cni_spec::{Error, Result};
use kit::ops::LinkOps;
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
fn free_table(s: &dyn LinkOps) -> CniResult<u32> {
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
fn ensure_vrf(s: &dyn LinkOps, c: &Conf) -> CniResult<(Link, bool)> {
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
        return Ok((l, false));
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
    if let Err(e) = s.set_link_up(l.index) {
        // Made here: not left behind.
        let _ = s.delete_link(l.index);
        return Err(Error::io(format!(
            "could not set vrf {:?} up: {e}",
            c.vrfname
        )));
    }
    Ok((l, true))
}

/// Enslaves `link` to `vrf`, putting back the addresses the kernel drops
/// (IPv6 ones go with the link's down/up cycle) and re-adding the link's
/// routes of the main table in the VRF's table.
fn enslave(s: &dyn LinkOps, link: &Link, vrf: &Link, table: u32) -> CniResult<()> {
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
        add_core(&s, &c, &args.ifname)?;
        Ok(prev)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let c = parse(args)?;
        let Some(path) = args.netns_path() else {
            return Ok(());
        };
        let cns = match NetNs::open(path) {
            Ok(ns) => ns,
            Err(e) if e.is_gone() => return Ok(()),
            Err(e) => return Err(Error::io(format!("failed to open netns: {e}"))),
        };
        let s = Socket::route_in(&cns).map_err(kit::err)?;
        del_core(&s, &c, &args.ifname)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let c = parse(args)?;
        args.conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("missing prevResult from earlier plugin"))?;
        let cns = kit::open_ns(args.require_netns()?)?;
        let s = Socket::route_in(&cns).map_err(kit::err)?;
        check_core(&s, &c, &args.ifname)
    }
}

/// ADD on the seam: the pod's `ifname` into the VRF (made when missing,
/// and removed again with the enslaving undone on failure).
fn add_core(s: &dyn LinkOps, c: &Conf, ifname: &str) -> CniResult<()> {
    let link = s
        .link_by_name(ifname)
        .map_err(kit::err)?
        .ok_or_else(|| Error::internal(format!("failed to find interface {ifname:?}")))?;
    let (vrf, created) = ensure_vrf(s, c)?;
    let table = vrf.vrf_table().unwrap_or(c.table);
    if let Err(e) = enslave(s, &link, &vrf, table) {
        let _ = s.set_nomaster(link.index);
        if created {
            let _ = s.delete_link(vrf.index);
        }
        return Err(e);
    }
    Ok(())
}

/// DEL on the seam: `ifname` out of the VRF, the VRF gone once empty; a
/// VRF already gone is success.
fn del_core(s: &dyn LinkOps, c: &Conf, ifname: &str) -> CniResult<()> {
    let Some(vrf) = s.link_by_name(&c.vrfname).map_err(kit::err)? else {
        return Ok(());
    };
    if vrf.vrf_table().is_none() {
        return Ok(());
    }
    if let Some(l) = s.link_by_name(ifname).map_err(kit::err)? {
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

/// CHECK on the seam: the VRF with its table, `ifname` in it.
fn check_core(s: &dyn LinkOps, c: &Conf, ifname: &str) -> CniResult<()> {
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
        .link_by_name(ifname)
        .map_err(kit::err)?
        .ok_or_else(|| Error::internal(format!("failed to find interface {ifname:?}")))?;
    if l.master != Some(vrf.index) {
        return Err(Error::internal(format!(
            "interface {ifname:?} is not in vrf {:?}",
            c.vrfname
        )));
    }
    Ok(())
}

#[cfg(test)]
mod fake_tests {
    //! The verb cores on the recording fake, without root; vrf needs the
    //! VM lane for its namespace tests. The fake's links carry no
    //! IFLA_INFO_DATA, so a VRF it made reports no table of its own.
    use super::*;
    use kit::ops::fake::RecordingNet;

    fn conf() -> Conf {
        Conf {
            vrfname: "vrf0".into(),
            table: 100,
        }
    }

    #[test]
    fn a_refused_vrf_up_removes_the_vrf_it_made_with_code_5() {
        let net = RecordingNet::new();
        net.add_existing("eth0");
        net.fail_next("up", kit::ops::fake::errno::EPERM);
        let e = add_core(&net, &conf(), "eth0").expect_err("refused");
        assert_eq!(e.code, 5, "{e:?}");
        assert!(net.holds_only(&["eth0"]), "{:?}", net.lines());
    }

    #[test]
    fn add_makes_the_vrf_up_then_enslaves_the_interface_and_brings_it_up_again() {
        let net = RecordingNet::new();
        let i = net.add_existing("eth0");
        add_core(&net, &conf(), "eth0").expect("ADD");
        let v = net.index_of("vrf0");
        assert_eq!(
            net.lines(),
            vec![
                "get eth0".to_string(),
                "get vrf0".to_string(),
                "create vrf0 vrf".to_string(),
                "get vrf0".to_string(),
                format!("up {v}"),
                format!("addresses Some({i}) All"),
                "routes All Some(254)".to_string(),
                format!("master {i} {v}"),
                format!("addresses Some({i}) All"),
                format!("up {i}"),
            ]
        );
    }

    #[test]
    fn a_refused_enslaving_releases_the_interface_and_removes_the_new_vrf_with_code_5() {
        let net = RecordingNet::new();
        let i = net.add_existing("eth0");
        net.fail_next("master", kit::ops::fake::errno::EBUSY);
        let e = add_core(&net, &conf(), "eth0").expect_err("refused");
        assert_eq!(e.code, 5, "{e:?}");
        assert!(net.lines().contains(&format!("nomaster {i}")));
        assert!(net.holds_only(&["eth0"]), "the VRF it made is gone");
    }

    #[test]
    fn a_missing_pod_interface_is_code_999_before_any_vrf_is_made() {
        let net = RecordingNet::new();
        let e = add_core(&net, &conf(), "eth0").expect_err("no eth0");
        assert_eq!(
            (e.code, e.msg.as_str()),
            (999, "failed to find interface \"eth0\"")
        );
        assert_eq!(net.lines(), vec!["get eth0"]);
    }

    #[test]
    fn del_when_the_vrf_is_already_gone_succeeds() {
        let net = RecordingNet::new();
        net.add_existing("eth0");
        del_core(&net, &conf(), "eth0").expect("DEL");
        assert_eq!(net.lines(), vec!["get vrf0"]);
    }

    #[test]
    fn check_of_a_missing_vrf_or_a_non_vrf_is_code_999() {
        let net = RecordingNet::new();
        let e = check_core(&net, &conf(), "eth0").expect_err("no vrf");
        assert_eq!((e.code, e.msg.as_str()), (999, "vrf \"vrf0\" not found"));
        net.add_existing("vrf0");
        let e = check_core(&net, &conf(), "eth0").expect_err("not a vrf");
        assert_eq!(e.msg, "\"vrf0\" is not a vrf");
    }
}
