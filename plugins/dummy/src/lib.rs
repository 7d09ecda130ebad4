//! `dummy`: the container gets a dummy interface (no lower device, no
//! peer), with the addresses and routes of its `ipam` section.

use cni_skel::{CmdArgs, Command, Plugin};
use cni_spec::error::CniResult;
use cni_spec::{Error, Interface, Result};
use kit::Undo;
use netlink::{LinkKind, LinkSpec, Socket};

/// The dummy plugin as the CNI skeleton runs it: creates the pod's dummy
/// interface on ADD, deletes it and releases its addresses on DEL.
pub struct Dummy;

/// The IPAM plugin's type; the reference requires one.
fn ipam(args: &CmdArgs) -> CniResult<String> {
    let _: serde_json::Value = args.parse_conf()?;
    args.conf
        .ipam_type()
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .ok_or_else(|| Error::invalid_config("dummy interface requires an IPAM configuration"))
}

impl Plugin for Dummy {
    fn name(&self) -> &'static str {
        "dummy"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let ipam = ipam(args)?;
        let cns = kit::open_ns(args.require_netns()?)?;
        let cont = Socket::route_in(&cns).map_err(kit::err)?;
        if cont.link_by_name(&args.ifname).map_err(kit::err)?.is_some() {
            return Err(Error::internal(format!(
                "container interface {:?} already exists in {}",
                args.ifname,
                cns.path().display()
            )));
        }
        cont.create_link(&LinkSpec::new(&args.ifname, LinkKind::Dummy))
            .map_err(|e| Error::io(format!("failed to create dummy: {e}")))?;
        let link = cont
            .link_by_name(&args.ifname)
            .map_err(kit::err)?
            .ok_or_else(|| Error::internal(format!("failed to refetch dummy {:?}", args.ifname)))?;
        let mut undo = Undo::new();
        {
            let cont = &cont;
            let index = link.index;
            undo.push("delete dummy", move || cont.delete_link(index));
        }
        let r = cni_invoke::ipam_add(&ipam, args)?;
        {
            let ipam = ipam.clone();
            undo.push("release IPAM address", move || {
                cni_invoke::delegate(&ipam, Command::Del, args, &args.stdin)
            });
        }
        let mut result = Result::new(args.version());
        result.interfaces = vec![Interface {
            name: link.name.clone(),
            mac: kit::mac::format(&link.mac),
            sandbox: args.netns.clone(),
            ..Default::default()
        }];
        result.adopt_ipam(r, 0);
        if result.ips.is_empty() {
            return Err(Error::internal("IPAM plugin returned missing IP config"));
        }
        kit::configure_iface(&cont, &link, &result, &kit::IfaceOptions::default())
            .map_err(Error::from)?;
        result.dns = args.conf.dns.clone().unwrap_or_default();
        undo.commit();
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let ipam = ipam(args)?;
        Ok(kit::veth::del_link_and_ipam(args, Some(&ipam))?)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let ipam = ipam(args)?;
        let cns = kit::open_ns(args.require_netns()?)?;
        let cont = Socket::route_in(&cns).map_err(kit::err)?;
        cni_invoke::delegate(&ipam, Command::Check, args, &args.stdin)?;
        let prev = args
            .conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("required prevResult missing"))?;
        let c = kit::iface::prev_container_link(&cont, &prev, &args.ifname, &args.netns)?;
        if c.kind.as_deref() != Some("dummy") {
            return Err(Error::internal(format!(
                "error: Container interface {} not of type dummy",
                c.name
            )));
        }
        kit::validate_iface_ips(&cont, &c, &prev).map_err(Error::from)?;
        kit::validate_routes(&cont, &prev).map_err(Error::from)?;
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        cni_invoke::delegate(&ipam(args)?, Command::Gc, args, &args.stdin)
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        cni_invoke::delegate(&ipam(args)?, Command::Status, args, &args.stdin)
    }
}
