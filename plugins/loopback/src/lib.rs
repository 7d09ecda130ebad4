//! `loopback`: brings `lo` up inside the sandbox.

use cni_skel::{CmdArgs, Plugin};
use cni_spec::error::CniResult;
use cni_spec::{Error, ErrorCode, Interface, IpConfig, Result};
use netlink::Socket;
use netns::NetNs;

/// The loopback plugin as the CNI skeleton runs it: sets `lo` up on ADD and
/// down on DEL.
pub struct Loopback;

fn open_sandbox(netns_path: &std::path::Path) -> CniResult<Socket> {
    let ns = NetNs::open(netns_path).map_err(|e| {
        Error::new(
            ErrorCode::UnknownContainer,
            format!("failed to open netns: {e}"),
        )
    })?;
    Socket::route_in(&ns)
        .map_err(|e| Error::io(format!("netlink in {}: {e}", netns_path.display())))
}

fn lo(sock: &Socket) -> CniResult<netlink::Link> {
    sock.link_by_name("lo")
        .map_err(kit::err)?
        .ok_or_else(|| Error::io("sandbox has no loopback interface"))
}

impl Plugin for Loopback {
    fn name(&self) -> &'static str {
        "loopback"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let sock = open_sandbox(args.require_netns()?)?;
        let link = lo(&sock)?;
        sock.set_link_up(link.index).map_err(kit::err)?;
        // The first address of each family actually on lo (none for IPv6
        // when the sandbox has it disabled); anything non-loopback there
        // is refused, as the reference does.
        let mut firsts = Vec::new();
        for family in [netlink::Family::V4, netlink::Family::V6] {
            let addrs = sock.addresses(Some(link.index), family).map_err(kit::err)?;
            if let Some(bad) = addrs.iter().find(|a| !a.addr.is_loopback()) {
                return Err(Error::internal(format!(
                    "loopback interface found with non-loopback address \"{}\"",
                    bad.addr
                )));
            }
            if let Some(a) = addrs.first() {
                firsts.push((a.addr, a.prefix));
            }
        }

        // Chained after another plugin: pass its result through untouched.
        if let Some(prev) = args.conf.prev_result()? {
            return Ok(prev);
        }
        let mut r = Result::new(args.version());
        r.interfaces.push(Interface {
            name: "lo".into(),
            mac: "00:00:00:00:00:00".into(),
            sandbox: args.netns.clone(),
            ..Default::default()
        });
        for (addr, prefix) in firsts {
            r.ips.push(IpConfig {
                interface: Some(0),
                address: ipnet::IpNet::new(addr, prefix)
                    .map_err(|e| Error::internal(format!("{addr}/{prefix}: {e}")))?,
                gateway: None,
            });
        }
        Ok(r)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        // Nothing to undo when the sandbox is already gone (containerd's
        // second DEL comes without a netns).
        let Some(path) = args.netns_path() else {
            return Ok(());
        };
        let ns = match NetNs::open(path) {
            Ok(ns) => ns,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => {
                return Err(kit::err(
                    kit::Error::NetNs(e).context("failed to open netns"),
                ))
            }
        };
        let sock = Socket::route_in(&ns).map_err(kit::err)?;
        let link = lo(&sock)?;
        sock.set_link_down(link.index).map_err(kit::err)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let sock = open_sandbox(args.require_netns()?)?;
        let link = lo(&sock)?;
        if !link.up {
            return Err(Error::internal("loopback interface is down"));
        }
        Ok(())
    }
}
