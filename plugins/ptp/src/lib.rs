//! `ptp`: a veth pair per container, routed instead of bridged. The
//! container keeps its IPAM address but gets no on-link subnet route: it
//! reaches the gateway (an address on the host veth) through an on-link
//! host route and everything else via that gateway. The host routes the
//! pod's address to the veth.

#[doc(hidden)]
pub mod fuzzing;
use cni_skel::{CmdArgs, Command, Plugin};
use cni_spec::conf::bool_or_string as flex;
use cni_spec::error::CniResult;
use cni_spec::{Error, Interface, Result};
use ipnet::IpNet;
use kit::{NetworkMasq, Teardown, Undo};
use netlink::{AddressOptions, Socket};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;

/// The ptp plugin as the CNI skeleton runs it: creates the routed veth pair
/// and its host-side routes on ADD, removes them on DEL.
pub struct Ptp;

#[derive(Debug, Clone, Deserialize)]
struct Conf {
    #[serde(default)]
    name: String,
    #[serde(rename = "ipMasq", default, deserialize_with = "flex")]
    ip_masq: bool,
    #[serde(rename = "ipMasqBackend", default)]
    _ip_masq_backend: Option<String>,
    #[serde(default)]
    mtu: u32,
    /// rcni: where attachment records live (default /run/cni/rcni).
    #[serde(rename = "stateDir", default)]
    state_dir: Option<PathBuf>,
    /// rcni: TX/RX queues per veth end (default 1; 0 = the kernel's
    /// default of one per CPU).
    #[serde(rename = "vethQueues", default = "kit::veth::default_queues")]
    veth_queues: u32,
}

struct Network {
    conf: Conf,
    ipam: String,
}

fn load(args: &CmdArgs) -> CniResult<Network> {
    let mut c: Conf = args.parse_conf()?;
    if c.name.is_empty() {
        c.name = args.conf.name.clone();
    }
    let ipam = args
        .conf
        .ipam_type()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::invalid_config("ptp needs an ipam section with a type"))?
        .to_string();
    Ok(Network { conf: c, ipam })
}

fn host_bits(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn subnets_of(result: &Result) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = Vec::new();
    for ip in &result.ips {
        let s = ip.address.trunc();
        if !v.contains(&s) {
            v.push(s);
        }
    }
    v
}

impl Plugin for Ptp {
    fn name(&self) -> &'static str {
        "ptp"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let n = load(args)?;
        let cns = kit::open_ns(args.require_netns()?)?;
        let host = Socket::route().map_err(kit::err)?;
        let cont = Socket::route_in(&cns).map_err(kit::err)?;
        let mut undo = Undo::new();

        let ipam = n.ipam.as_str();
        let r = cni_invoke::ipam_add(ipam, args)?;
        undo.push("release IPAM address", move || {
            cni_invoke::delegate(ipam, Command::Del, args, &args.stdin)
        });
        let mut result = Result::new(args.version());
        result.ips = r.ips;
        result.routes = r.routes;
        result.dns = r.dns;
        for ip in &mut result.ips {
            ip.interface = Some(1);
            if ip.gateway.is_none() {
                return Err(Error::invalid_config(format!(
                    "ptp needs a gateway for {} from IPAM",
                    ip.address
                )));
            }
        }
        let v4 = result.ips.iter().any(|i| i.address.addr().is_ipv4());
        let v6 = result.ips.iter().any(|i| i.address.addr().is_ipv6());
        kit::enable_ip_forward(&host, v4, v6).map_err(Error::from)?;

        let mtu = (n.conf.mtu > 0).then_some(n.conf.mtu);
        let pair = kit::veth::setup_veth(
            &host,
            &cont,
            &cns,
            &args.container_id,
            &args.ifname,
            &kit::veth::VethOptions {
                mtu,
                mac: None,
                host_up: true,
                master: None,
                queues: kit::veth::queues_from_config(n.conf.veth_queues),
            },
        )
        .map_err(Error::from)?;
        let host_index = pair.host.index;
        {
            let host = &host;
            undo.push("delete veth", move || host.delete_link(host_index));
        }
        // The host veth routes for the pod: no DAD on its link-local address
        // (generated once the container end goes up, below). While that is
        // tentative the node sends no neighbour solicitation for packets it
        // forwards to the pod, and IPv6 traffic to a new pod stalls 1-2 s.
        if v6 {
            let _ = kit::sysctl_set(&format!("net/ipv6/conf/{}/accept_dad", pair.host.name), "0");
        }

        // Container side: addresses without their subnet route, link up,
        // the gateway on-link, the subnet and the IPAM routes via it.
        let c = &pair.container;
        cont.set_link_up(c.index).map_err(kit::err)?;
        for ip in &result.ips {
            let a = ip.address;
            // Turns IPv6 back on if the pod disabled it (as the reference).
            kit::iface::add_address(
                &cont,
                c,
                a.addr(),
                a.prefix_len(),
                &AddressOptions {
                    nodad: true,
                    noprefixroute: true,
                    ..Default::default()
                },
            )
            .map_err(kit::err)?;
        }
        for ip in &result.ips {
            let a = ip.address;
            let Some(gw) = ip.gateway else { continue };
            let on_link = netlink::Route::to(gw, host_bits(gw))
                .dev(c.index)
                .scope(netlink::addr::RT_SCOPE_LINK)
                .src(a.addr());
            add_route(&cont, &on_link)?;
            let net = a.trunc();
            if net.prefix_len() != host_bits(gw) {
                let via = netlink::Route::to(net.addr(), net.prefix_len())
                    .dev(c.index)
                    .via(gw)
                    .src(a.addr());
                add_route(&cont, &via)?;
            }
        }
        let gw4 = result
            .ips
            .iter()
            .find(|i| i.address.addr().is_ipv4())
            .and_then(|i| i.gateway);
        let gw6 = result
            .ips
            .iter()
            .find(|i| i.address.addr().is_ipv6())
            .and_then(|i| i.gateway);
        for r in &result.routes {
            let gw = r.gw.or(if r.dst.addr().is_ipv4() { gw4 } else { gw6 });
            let mut route = netlink::Route::to(r.dst.addr(), r.dst.prefix_len()).dev(c.index);
            if let Some(gw) = gw {
                route = route.via(gw);
            }
            if let Some(m) = r.mtu {
                route = route.mtu(m);
            }
            if let Some(p) = r.priority {
                route = route.metric(p);
            }
            add_route(&cont, &route)?;
        }

        // Host side: the gateway address on the veth, a route to the pod.
        for ip in &result.ips {
            let Some(gw) = ip.gateway else { continue };
            match host.add_address_with(
                host_index,
                gw,
                host_bits(gw),
                &AddressOptions {
                    nodad: true,
                    ..Default::default()
                },
            ) {
                Ok(()) => {}
                Err(e) if e.is_exists() => {}
                Err(e) => return Err(kit::err(e)),
            }
            let pod = ip.address.addr();
            let r = netlink::Route::to(pod, host_bits(pod))
                .dev(host_index)
                .scope(netlink::addr::RT_SCOPE_LINK);
            add_route(&host, &r)?;
        }

        if n.conf.ip_masq {
            let masq = NetworkMasq::new(n.conf.state_dir.as_deref(), &n.conf.name);
            masq.attach(&args.container_id, &args.ifname, subnets_of(&result))
                .map_err(Error::from)?;
            undo.push("forget masquerade attachment", move || {
                masq.detach(&args.container_id, &args.ifname)
            });
        }
        if cni_skel::failure_injected("after-setup") {
            return Err(Error::internal("injected failure at after-setup"));
        }

        result.interfaces = vec![
            Interface {
                name: pair.host.name.clone(),
                mac: kit::mac::format(&pair.host.mac),
                ..Default::default()
            },
            Interface {
                name: c.name.clone(),
                mac: kit::mac::format(&c.mac),
                sandbox: args.netns.clone(),
                ..Default::default()
            },
        ];
        if let Some(dns) = &args.conf.dns {
            if !dns.is_empty() {
                result.dns = dns.clone();
            }
        }
        kit::wait_operational(
            &[(&host, host_index), (&cont, c.index)],
            std::time::Duration::from_millis(200),
        )
        .map_err(Error::from)?;
        undo.commit();
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let n = load(args)?;
        let mut td = Teardown::new();
        td.step(kit::iface::delete_pod_link(args.netns_path(), &args.ifname));
        td.step(cni_invoke::delegate(
            &n.ipam,
            Command::Del,
            args,
            &args.stdin,
        ));
        if n.conf.ip_masq {
            let masq = NetworkMasq::new(n.conf.state_dir.as_deref(), &n.conf.name);
            td.step(masq.detach(&args.container_id, &args.ifname));
        }
        Ok(td.finish()?)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let n = load(args)?;
        cni_invoke::delegate(&n.ipam, Command::Check, args, &args.stdin)?;
        let prev = args
            .conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("Required prevResult missing"))?;
        let cns = kit::open_ns(args.require_netns()?)?;
        let cont = Socket::route_in(&cns).map_err(kit::err)?;
        let host = Socket::route().map_err(kit::err)?;
        let c_if = prev
            .interfaces
            .iter()
            .find(|i| i.name == args.ifname && i.sandbox == args.netns)
            .ok_or_else(|| {
                Error::internal(format!("interface {} not in prevResult", args.ifname))
            })?;
        let c = cont
            .link_by_name(&args.ifname)
            .map_err(kit::err)?
            .ok_or_else(|| Error::internal(format!("Interface name {} not found", args.ifname)))?;
        if c.kind.as_deref() != Some("veth") {
            return Err(Error::internal(format!(
                "Error: Container interface {} not of type veth",
                c.name
            )));
        }
        if !c_if.mac.is_empty() && c_if.mac != kit::mac::format(&c.mac) {
            return Err(Error::internal(format!(
                "Interface {} Mac {} doesn't match container Mac: {}",
                c.name,
                c_if.mac,
                kit::mac::format(&c.mac)
            )));
        }
        let peer = c.link.unwrap_or(0);
        let host_ok = prev
            .interfaces
            .iter()
            .filter(|i| i.sandbox.is_empty())
            .any(|i| {
                matches!(host.link_by_name(&i.name), Ok(Some(h)) if h.index == peer && h.kind.as_deref() == Some("veth"))
            });
        if !host_ok {
            return Err(Error::internal("CNI veth created for ptp was not found"));
        }
        kit::validate_iface_ips(&cont, &c, &prev).map_err(Error::from)?;
        kit::validate_routes(&cont, &prev).map_err(Error::from)?;
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        let n = load(args)?;
        let mut td = Teardown::new();
        td.step(cni_invoke::delegate(
            &n.ipam,
            Command::Gc,
            args,
            &args.stdin,
        ));
        let masq = NetworkMasq::new(n.conf.state_dir.as_deref(), &n.conf.name);
        td.step(masq.gc(n.conf.ip_masq, &args.conf.gc_attachments()));
        Ok(td.finish()?)
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        let n = load(args)?;
        cni_invoke::delegate(&n.ipam, Command::Status, args, &args.stdin)
    }
}

fn add_route(sock: &Socket, r: &netlink::Route) -> CniResult<()> {
    // Alongside other interfaces' routes to the same destination (a second
    // attachment's default route), as the reference's RouteAddEcmp.
    match sock.add_route_alongside(r) {
        Ok(()) => Ok(()),
        Err(e) if e.is_exists() => Ok(()),
        Err(e) => Err(kit::err(e)),
    }
}
