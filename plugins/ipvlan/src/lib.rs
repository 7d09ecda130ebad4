//! `ipvlan`: the container gets an ipvlan of a node interface (`master`,
//! default: the default route's device; when chained without `master`, the
//! single interface of the previous result). ipvlan links share the
//! master's MAC. Addresses come from `ipam`, or, chained without `ipam`,
//! from the previous result.

use cni_skel::{CmdArgs, Command, Plugin};
use cni_spec::error::CniResult;
use cni_spec::{Error, Interface, Result};
use kit::Undo;
use netlink::{Family, IpvlanMode, Link, LinkKind, LinkSpec, Socket};
use netns::NetNs;
use serde::Deserialize;

/// The ipvlan plugin as the CNI skeleton runs it: creates the pod's ipvlan
/// on ADD, deletes it on DEL.
pub struct Ipvlan;

#[derive(Debug, Clone, Deserialize)]
struct Conf {
    #[serde(default)]
    master: String,
    #[serde(default)]
    mode: String,
    /// 0 = the kernel's choice (the master's MTU).
    #[serde(default)]
    mtu: i64,
    #[serde(rename = "linkInContainer", default, deserialize_with = "flex")]
    link_in_container: bool,
}

fn flex<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    cni_spec::conf::bool_or_string(d)
}

struct Network {
    master: Link,
    mode: IpvlanMode,
    mtu: Option<u32>,
    in_container: bool,
    ipam: Option<String>,
    prev: Option<Result>,
}

fn mode_from_str(s: &str) -> CniResult<IpvlanMode> {
    match s {
        "" | "l2" => Ok(IpvlanMode::L2),
        "l3" => Ok(IpvlanMode::L3),
        "l3s" => Ok(IpvlanMode::L3s),
        _ => Err(Error::invalid_config(format!("unknown ipvlan mode: {s:?}"))),
    }
}

fn mode_name(m: IpvlanMode) -> &'static str {
    match m {
        IpvlanMode::L2 => "l2",
        IpvlanMode::L3 => "l3",
        IpvlanMode::L3s => "l3s",
    }
}

/// The device of the first default route in the main table.
fn default_route_iface(sock: &Socket) -> CniResult<String> {
    let routes = sock.routes(Family::All, Some(254)).map_err(kit::err)?;
    for r in routes.iter().filter(|r| r.dst.is_none()) {
        let Some(oif) = r.oif else { continue };
        if let Some(l) = sock.link_by_index(oif).map_err(kit::err)? {
            return Ok(l.name);
        }
    }
    Err(Error::invalid_config("no default route interface found"))
}

/// The config only (DEL, GC, STATUS).
fn parse(args: &CmdArgs) -> CniResult<(Conf, Option<String>)> {
    let c: Conf = args.parse_conf()?;
    mode_from_str(&c.mode)?;
    let ipam = args
        .conf
        .ipam_type()
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    Ok((c, ipam))
}

/// ADD and CHECK: master resolved where it lives, MTU checked.
fn load(args: &CmdArgs, cns: &Socket) -> CniResult<Network> {
    let (c, ipam) = parse(args)?;
    let prev = args.conf.prev_result()?;
    let host;
    let lookup = if c.link_in_container {
        cns
    } else {
        host = Socket::route().map_err(kit::err)?;
        &host
    };
    let name = if !c.master.is_empty() {
        c.master.clone()
    } else if let Some(p) = &prev {
        match p.interfaces.as_slice() {
            [one] if !one.name.is_empty() => one.name.clone(),
            _ => {
                return Err(Error::invalid_config(
                    "chained master failure. PrevResult lacks a single named interface",
                ))
            }
        }
    } else {
        default_route_iface(lookup)?
    };
    let master = lookup
        .link_by_name(&name)
        .map_err(kit::err)?
        .ok_or_else(|| {
            Error::invalid_config(format!("failed to lookup master {name:?}: Link not found"))
        })?;
    if c.mtu < 0 || c.mtu > i64::from(master.mtu) {
        return Err(Error::invalid_config(format!(
            "invalid MTU {}, must be [0, master MTU({})]",
            c.mtu, master.mtu
        )));
    }
    Ok(Network {
        master,
        mode: mode_from_str(&c.mode)?,
        mtu: (c.mtu > 0).then_some(c.mtu as u32),
        in_container: c.link_in_container,
        ipam,
        prev,
    })
}

fn create_ipvlan(
    creator: &Socket,
    cont: &Socket,
    cns: &NetNs,
    n: &Network,
    ifname: &str,
) -> CniResult<Link> {
    if cont.link_by_name(ifname).map_err(kit::err)?.is_some() {
        return Err(Error::internal(format!(
            "container interface {ifname:?} already exists in {}",
            cns.path().display()
        )));
    }
    let spec = LinkSpec {
        mtu: n.mtu,
        parent: Some(n.master.index),
        netns_fd: if n.in_container { None } else { Some(cns.fd()) },
        ..LinkSpec::new(ifname, LinkKind::Ipvlan(n.mode))
    };
    creator
        .create_link(&spec)
        .map_err(|e| Error::io(format!("failed to create ipvlan: {e}")))?;
    cont.link_by_name(ifname)
        .map_err(kit::err)?
        .ok_or_else(|| Error::internal(format!("failed to refetch ipvlan {ifname:?}")))
}

impl Plugin for Ipvlan {
    fn name(&self) -> &'static str {
        "ipvlan"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let cns = kit::open_ns(args.require_netns()?)?;
        let cont = Socket::route_in(&cns).map_err(kit::err)?;
        let n = load(args, &cont)?;
        if n.ipam.is_none() && n.prev.is_none() {
            return Err(Error::invalid_config(
                "ipvlan needs an ipam section, or a prevResult when chained",
            ));
        }
        let host;
        let creator = if n.in_container {
            &cont
        } else {
            host = Socket::route().map_err(kit::err)?;
            &host
        };
        let mut undo = Undo::new();
        let link = create_ipvlan(creator, &cont, &cns, &n, &args.ifname)?;
        {
            let cont = &cont;
            let index = link.index;
            undo.push("delete ipvlan", move || cont.delete_link(index));
        }
        let mut result = Result::new(args.version());
        if let Some(ipam) = n.ipam.as_deref() {
            let r = cni_invoke::ipam_add(ipam, args)?;
            undo.push("release IPAM address", move || {
                cni_invoke::delegate(ipam, Command::Del, args, &args.stdin)
            });
            result.adopt_ipam(r, 0);
        } else if let Some(p) = &n.prev {
            // Chained: the previous result's addresses, routes and DNS.
            result.ips = p.ips.clone();
            result.routes = p.routes.clone();
            for ip in &mut result.ips {
                ip.interface = Some(0);
            }
        }
        result.interfaces = vec![Interface {
            name: link.name.clone(),
            mac: kit::mac::format(&link.mac),
            sandbox: args.netns.clone(),
            ..Default::default()
        }];
        if result.ips.is_empty() {
            cont.set_link_up(link.index)
                .map_err(|e| Error::io(format!("failed to set {:?} UP: {e}", args.ifname)))?;
        } else {
            kit::configure_iface(&cont, &link, &result, &kit::IfaceOptions::default())
                .map_err(Error::from)?;
        }
        result.dns = match (&n.ipam, &n.prev) {
            (None, Some(p)) => p.dns.clone(),
            _ => args.conf.dns.clone().unwrap_or_default(),
        };
        undo.commit();
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let (_, ipam) = parse(args)?;
        Ok(kit::veth::del_link_and_ipam(args, ipam.as_deref())?)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let cns = kit::open_ns(args.require_netns()?)?;
        let cont = Socket::route_in(&cns).map_err(kit::err)?;
        let n = load(args, &cont)?;
        if let Some(ipam) = &n.ipam {
            cni_invoke::delegate(ipam, Command::Check, args, &args.stdin)?;
        }
        let prev = n
            .prev
            .clone()
            .ok_or_else(|| Error::invalid_config("required prevResult missing"))?;
        let c = kit::iface::prev_container_link(&cont, &prev, &args.ifname, &args.netns)?;
        let Some(mode) = c.ipvlan_mode() else {
            return Err(Error::internal(format!(
                "Error: Container interface {} not of type ipvlan",
                c.name
            )));
        };
        if mode != n.mode {
            return Err(Error::internal(format!(
                "Container IPVlan mode {} does not match expected value: {}",
                mode_name(mode),
                mode_name(n.mode)
            )));
        }
        let parent_ok =
            c.link == Some(n.master.index) && c.link_netnsid.is_some() != n.in_container;
        if !parent_ok {
            return Err(Error::internal(format!(
                "container ipvlan {} is not on master {:?}",
                c.name, n.master.name
            )));
        }
        kit::validate_iface_ips(&cont, &c, &prev).map_err(Error::from)?;
        kit::validate_routes(&cont, &prev).map_err(Error::from)?;
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        kit::pass_to_ipam(parse(args)?.1.as_deref(), Command::Gc, args)
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        kit::pass_to_ipam(parse(args)?.1.as_deref(), Command::Status, args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_and_default_to_l2() {
        assert_eq!(mode_from_str("").ok(), Some(IpvlanMode::L2));
        for m in ["l2", "l3", "l3s"] {
            assert_eq!(mode_name(mode_from_str(m).expect("known")), m);
        }
        let e = mode_from_str("bridge").expect_err("unknown");
        assert_eq!(e.code, cni_spec::ErrorCode::InvalidConfig as u32);
    }
}
