//! `p2p`: a point-to-point CNI plugin built only on rcni's public crates.
//!
//! ADD asks the IPAM plugin named in the config for addresses, creates a veth
//! pair whose one end lands in the pod as `CNI_IFNAME`, gives the pod its
//! address (without a subnet route) and the node end each gateway address,
//! and routes the pod through the gateway. DEL removes the pair and releases
//! the addresses; CHECK, GC and STATUS are checked or delegated to IPAM.

use cni_skel::{CmdArgs, Command, Plugin};
use cni_spec::error::CniResult;
use cni_spec::{Error, Interface, IpConfig, Result};
use netlink::addr::RT_SCOPE_LINK;
use netlink::{AddressOptions, Family, Link, Route, Socket};
use netns::NetNs;
use std::net::IpAddr;

/// The plugin's own configuration fields; the common ones (`cniVersion`,
/// `name`, `ipam`, `prevResult`, ...) are already parsed in `args.conf`.
#[derive(serde::Deserialize)]
struct Conf {
    /// MTU of both veth ends; the kernel's default when absent.
    mtu: Option<u32>,
}

struct P2p;

fn main() {
    cni_skel::plugin_main(&P2p)
}

/// The IPAM plugin's `type`, which this plugin requires.
fn ipam_type(args: &CmdArgs) -> CniResult<&str> {
    args.conf
        .ipam_type()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::invalid_config("p2p needs an ipam section with a type"))
}

/// The pod's namespace; one that cannot be opened is an unknown container
/// (code 3), as the kit maps it.
fn open_pod(args: &CmdArgs) -> CniResult<NetNs> {
    Ok(kit::open_ns(args.require_netns()?)?)
}

/// The node end's name: stable per attachment, at most 15 bytes.
fn host_name(args: &CmdArgs) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&args.container_id, &args.ifname).hash(&mut h);
    format!("p2p{:08x}", h.finish() as u32)
}

fn full(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// Creates the pair and configures both ends from the IPAM result (whose
/// addresses all have a gateway); returns the node end and the pod end.
fn plumb(
    args: &CmdArgs,
    pod: &NetNs,
    mtu: Option<u32>,
    res: &Result,
) -> netlink::Result<[Link; 2]> {
    let (node, inner) = (Socket::route()?, Socket::route_in(pod)?);
    let host = host_name(args);
    node.create_veth(&host, &args.ifname, Some(pod.fd()), mtu, None, None)?;
    let (Some(h), Some(c)) = (node.link_by_name(&host)?, inner.link_by_name(&args.ifname)?) else {
        return Err(netlink::Error::Malformed {
            op: "create veth".into(),
            detail: "an end is missing".into(),
        });
    };
    let no_dad = AddressOptions { nodad: true, ..Default::default() };
    let pod_opts = AddressOptions { noprefixroute: true, ..no_dad };
    node.set_link_up(h.index)?;
    inner.set_link_up(c.index)?;
    for ip in &res.ips {
        let (pod_ip, gw) = (ip.address.addr(), ip.gateway.unwrap_or(ip.address.addr()));
        // Pod: its address without the subnet route, the gateway on-link.
        inner.add_address_with(c.index, pod_ip, ip.address.prefix_len(), &pod_opts)?;
        inner.add_route(&Route::to(gw, full(gw)).dev(c.index).scope(RT_SCOPE_LINK).src(pod_ip))?;
        // Node: the gateway address on its end, the pod's address routed there.
        match node.add_address_with(h.index, gw, full(gw), &no_dad) {
            Err(e) if !e.is_exists() => return Err(e),
            _ => {}
        }
        node.add_route(&Route::to(pod_ip, full(pod_ip)).dev(h.index).scope(RT_SCOPE_LINK))?;
    }
    for r in &res.routes {
        let same_family = |i: &&IpConfig| i.address.addr().is_ipv4() == r.dst.addr().is_ipv4();
        let mut route = Route::to(r.dst.addr(), r.dst.prefix_len()).dev(c.index);
        if let Some(gw) = r.gw.or_else(|| res.ips.iter().find(same_family)?.gateway) {
            route = route.via(gw);
        }
        inner.add_route(&route)?;
    }
    Ok([h, c])
}

impl Plugin for P2p {
    fn name(&self) -> &'static str {
        "p2p"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let conf: Conf = args.parse_conf()?;
        let ipam = ipam_type(args)?;
        let pod = open_pod(args)?;
        let mut result = cni_invoke::ipam_add(ipam, args)?;
        result.cni_version = args.version().to_string();
        let plumbed = if result.ips.iter().any(|ip| ip.gateway.is_none()) {
            Err(Error::invalid_config("p2p needs a gateway for every address from IPAM"))
        } else {
            plumb(args, &pod, conf.mtu, &result).map_err(kit::err)
        };
        let [h, c] = match plumbed {
            Ok(links) => links,
            Err(e) => {
                // Leave nothing behind: the pair (both ends) and the addresses.
                if let Ok(node) = Socket::route() {
                    let _ = node.delete_link_by_name(&host_name(args));
                }
                let _ = cni_invoke::delegate(ipam, Command::Del, args, &args.stdin);
                return Err(e);
            }
        };
        let sandbox = args.netns.clone();
        result.interfaces = vec![
            Interface { name: h.name, mac: kit::mac::format(&h.mac), ..Default::default() },
            Interface {
                name: c.name,
                mac: kit::mac::format(&c.mac),
                sandbox,
                ..Default::default()
            },
        ];
        result.ips.iter_mut().for_each(|ip| ip.interface = Some(1));
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let ipam = ipam_type(args)?;
        // Both steps run even if one fails; the error carries the most
        // significant code (the IPAM plugin's own, if it failed).
        let mut td = kit::Teardown::new();
        // Deleting either end removes the pair; the pod may already be gone.
        td.step(Socket::route().and_then(|node| node.delete_link_by_name(&host_name(args))));
        td.step(cni_invoke::delegate(ipam, Command::Del, args, &args.stdin));
        Ok(td.finish()?)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        cni_invoke::delegate(ipam_type(args)?, Command::Check, args, &args.stdin)?;
        let prev = args.conf.prev_result()?;
        let prev = prev.ok_or_else(|| Error::invalid_config("Required prevResult missing"))?;
        let inner = Socket::route_in(&open_pod(args)?).map_err(kit::err)?;
        let missing = |what: &str| Error::internal(format!("{what} is missing"));
        let c = inner.link_by_name(&args.ifname).map_err(kit::err)?;
        let c = c.ok_or_else(|| missing(&args.ifname))?;
        let h = Socket::route().map_err(kit::err)?.link_by_name(&host_name(args));
        if h.map_err(kit::err)?.is_none_or(|h| c.link != Some(h.index)) {
            return Err(missing("the node end of the veth pair"));
        }
        let have = inner.addresses(Some(c.index), Family::All).map_err(kit::err)?;
        match prev.ips.iter().find(|ip| !have.iter().any(|a| a.addr == ip.address.addr())) {
            Some(ip) => Err(missing(&format!("address {} on {}", ip.address, c.name))),
            None => Ok(()),
        }
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        cni_invoke::delegate(ipam_type(args)?, Command::Gc, args, &args.stdin)
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        cni_invoke::delegate(ipam_type(args)?, Command::Status, args, &args.stdin)
    }
}
