//! `vlan`: the container gets an 802.1Q sub-interface (`vlanId`) of a node
//! interface (`master`, or one in the pod's namespace with
//! `linkInContainer`). Without an `ipam` section the link only comes up.

use cni_skel::{CmdArgs, Command, Plugin};
use cni_spec::error::CniResult;
use cni_spec::{Error, Interface, Result};
use kit::Undo;
use netlink::{Link, LinkKind, LinkSpec, Socket};
use netns::NetNs;
use serde::Deserialize;

/// The vlan plugin as the CNI skeleton runs it: creates the pod's 802.1Q
/// sub-interface on ADD, deletes it on DEL.
pub struct Vlan;

#[derive(Debug, Clone, Deserialize)]
struct Conf {
    #[serde(default)]
    master: String,
    #[serde(rename = "vlanId", default)]
    vlan_id: i64,
    /// 0 = inherit the master's MTU.
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
    id: u16,
    mtu: u32,
    in_container: bool,
    ipam: Option<String>,
}

/// The config only (DEL, GC, STATUS): no master lookup.
fn parse(args: &CmdArgs) -> CniResult<(Conf, Option<String>)> {
    let c: Conf = args.parse_conf()?;
    if c.master.is_empty() {
        return Err(Error::invalid_config(
            "\"master\" field is required. It specifies the host interface name to create the VLAN for.",
        ));
    }
    if !(0..=4094).contains(&c.vlan_id) {
        return Err(Error::invalid_config(format!(
            "invalid VLAN ID {} (must be between 0 and 4094 inclusive)",
            c.vlan_id
        )));
    }
    let ipam = args
        .conf
        .ipam_type()
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    Ok((c, ipam))
}

/// ADD and CHECK: the master looked up where it lives, the MTU checked.
fn load(args: &CmdArgs, cns: &Socket) -> CniResult<Network> {
    let (c, ipam) = parse(args)?;
    let host;
    let lookup = if c.link_in_container {
        cns
    } else {
        host = Socket::route().map_err(kit::err)?;
        &host
    };
    let master = lookup
        .link_by_name(&c.master)
        .map_err(kit::err)?
        .ok_or_else(|| {
            Error::invalid_config(format!(
                "failed to lookup master {:?}: Link not found",
                c.master
            ))
        })?;
    if c.mtu < 0 || c.mtu > i64::from(master.mtu) {
        return Err(Error::invalid_config(format!(
            "invalid MTU {}, must be [0, master MTU({})]",
            c.mtu, master.mtu
        )));
    }
    let mtu = if c.mtu == 0 { master.mtu } else { c.mtu as u32 };
    Ok(Network {
        master,
        id: c.vlan_id as u16,
        mtu,
        in_container: c.link_in_container,
        ipam,
    })
}

fn create_vlan(
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
        mtu: Some(n.mtu),
        parent: Some(n.master.index),
        netns_fd: if n.in_container { None } else { Some(cns.fd()) },
        ..LinkSpec::new(ifname, LinkKind::Vlan { id: n.id })
    };
    creator
        .create_link(&spec)
        .map_err(|e| Error::io(format!("failed to create vlan: {e}")))?;
    cont.link_by_name(ifname)
        .map_err(kit::err)?
        .ok_or_else(|| Error::internal(format!("failed to refetch vlan {ifname:?}")))
}

impl Plugin for Vlan {
    fn name(&self) -> &'static str {
        "vlan"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let cns = kit::open_ns(args.require_netns()?)?;
        let cont = Socket::route_in(&cns).map_err(kit::err)?;
        let n = load(args, &cont)?;
        let host;
        let creator = if n.in_container {
            &cont
        } else {
            host = Socket::route().map_err(kit::err)?;
            &host
        };
        let mut undo = Undo::new();
        let link = create_vlan(creator, &cont, &cns, &n, &args.ifname)?;
        {
            let cont = &cont;
            let index = link.index;
            undo.push("delete vlan", move || cont.delete_link(index));
        }
        let mut result = Result::new(args.version());
        result.interfaces = vec![Interface {
            name: link.name.clone(),
            mac: kit::mac::format(&link.mac),
            sandbox: args.netns.clone(),
            ..Default::default()
        }];
        if let Some(ipam) = n.ipam.as_deref() {
            let r = cni_invoke::ipam_add(ipam, args)?;
            undo.push("release IPAM address", move || {
                cni_invoke::delegate(ipam, Command::Del, args, &args.stdin)
            });
            result.adopt_ipam(r, 0);
            kit::configure_iface(&cont, &link, &result, &kit::IfaceOptions::default())
                .map_err(Error::from)?;
        } else {
            cont.set_link_up(link.index)
                .map_err(|e| Error::io(format!("failed to set {:?} UP: {e}", args.ifname)))?;
        }
        result.dns = args.conf.dns.clone().unwrap_or_default();
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
        let prev = args
            .conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("required prevResult missing"))?;
        let c = kit::iface::prev_container_link(&cont, &prev, &args.ifname, &args.netns)?;
        let Some(id) = c.vlan_id() else {
            return Err(Error::internal(format!(
                "error: Container interface {} not of type vlan",
                c.name
            )));
        };
        if id != n.id {
            return Err(Error::internal(format!(
                "Error: vlan {} configured vlanId is {}, current value is {}",
                c.name, n.id, id
            )));
        }
        if c.mtu != n.mtu {
            return Err(Error::internal(format!(
                "Error: vlan {} configured MTU is {}, current value is {}",
                c.name, n.mtu, c.mtu
            )));
        }
        let parent_ok =
            c.link == Some(n.master.index) && c.link_netnsid.is_some() != n.in_container;
        if !parent_ok {
            return Err(Error::internal(format!(
                "container vlan {} is not on master {:?}",
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
