//! `bridge`: connects the container to a Linux bridge on the host through a
//! veth pair, optionally making the bridge the pods' gateway and
//! masquerading their traffic. Reads like the reference's cmdAdd: config →
//! IPAM → links → container side → host side → result; every step that
//! creates something registers its undo.

#[doc(hidden)]
pub mod fuzzing;
use cni_skel::{CmdArgs, Command, Plugin};
use cni_spec::conf::bool_or_string as flex;
use cni_spec::error::CniResult;
use cni_spec::runtime_config::{ArgsMac, MacOnly};
use cni_spec::{Error, Interface, Result};
use ipnet::IpNet;
use kit::{NetworkMasq, ResultExt, Teardown, Undo};
use netlink::{BridgePortOptions, Link, Socket};
use netns::NetNs;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;

/// The bridge plugin as the CNI skeleton runs it: plugs the pod into a
/// node bridge through a veth pair on ADD, unplugs it on DEL.
pub struct Bridge;

fn default_bridge() -> String {
    "cni0".into()
}

#[derive(Debug, Clone, Deserialize)]
struct VlanTrunk {
    #[serde(rename = "minID")]
    min_id: Option<i64>,
    #[serde(rename = "maxID")]
    max_id: Option<i64>,
    id: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
struct Conf {
    #[serde(default)]
    name: String,
    #[serde(default = "default_bridge")]
    bridge: String,
    #[serde(rename = "isGateway", default, deserialize_with = "flex")]
    is_gw: bool,
    #[serde(rename = "isDefaultGateway", default, deserialize_with = "flex")]
    is_default_gw: bool,
    #[serde(rename = "forceAddress", default, deserialize_with = "flex")]
    force_address: bool,
    #[serde(rename = "ipMasq", default, deserialize_with = "flex")]
    ip_masq: bool,
    /// The reference chooses iptables or nftables; rcni always uses nftables.
    #[serde(rename = "ipMasqBackend", default)]
    _ip_masq_backend: Option<String>,
    #[serde(default)]
    mtu: u32,
    #[serde(rename = "hairpinMode", default, deserialize_with = "flex")]
    hairpin_mode: bool,
    #[serde(rename = "promiscMode", default, deserialize_with = "flex")]
    promisc_mode: bool,
    #[serde(default)]
    vlan: i64,
    #[serde(rename = "vlanTrunk", default)]
    vlan_trunk: Option<Vec<VlanTrunk>>,
    /// Keep the default VLAN 1 on a VLAN port (upstream's default is
    /// false since 1.8).
    #[serde(rename = "preserveDefaultVlan", default, deserialize_with = "flex")]
    preserve_default_vlan: bool,
    #[serde(default, deserialize_with = "flex")]
    macspoofchk: bool,
    #[serde(default, deserialize_with = "flex")]
    enabledad: bool,
    #[serde(
        rename = "disableContainerInterface",
        default,
        deserialize_with = "flex"
    )]
    disable_container_interface: bool,
    #[serde(rename = "portIsolation", default, deserialize_with = "flex")]
    port_isolation: bool,
    #[serde(default)]
    args: Option<ArgsMac>,
    #[serde(rename = "runtimeConfig", default)]
    runtime_config: Option<MacOnly>,
    /// rcni: where attachment records live (default /run/cni/rcni).
    #[serde(rename = "stateDir", default)]
    state_dir: Option<PathBuf>,
    /// rcni: TX/RX queues per veth end (default 1; 0 = the kernel's
    /// default of one per CPU).
    #[serde(rename = "vethQueues", default = "kit::veth::default_queues")]
    veth_queues: u32,
}

/// The parsed config with the derived values.
struct Network {
    conf: Conf,
    ipam: Option<String>,
    /// The requested MAC, as given: parsed only by ADD, so that a bad one
    /// never stops DEL from tearing the attachment down.
    mac_text: String,
    vlans: Vec<u16>,
}

impl Network {
    fn mac(&self) -> CniResult<Option<[u8; 6]>> {
        if self.mac_text.is_empty() {
            return Ok(None);
        }
        kit::mac::parse(&self.mac_text)
            .map(Some)
            .map_err(Error::from)
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::invalid_config(msg)
}

fn collect_trunk(trunk: &[VlanTrunk]) -> CniResult<Vec<u16>> {
    let ok = |v: i64| (1..=4094).contains(&v);
    let mut out = std::collections::BTreeSet::new();
    for t in trunk {
        match (t.min_id, t.max_id) {
            (Some(lo), Some(hi)) => {
                if !ok(lo) {
                    return Err(invalid("incorrect trunk minID parameter"));
                }
                if !ok(hi) {
                    return Err(invalid("incorrect trunk maxID parameter"));
                }
                if hi < lo {
                    return Err(invalid("minID is greater than maxID in trunk parameter"));
                }
                out.extend((lo..=hi).map(|v| v as u16));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "minID and maxID should be configured simultaneously, minID is missing",
                ))
            }
            (Some(_), None) => {
                return Err(invalid(
                    "minID and maxID should be configured simultaneously, maxID is missing",
                ))
            }
            (None, None) => {}
        }
        if let Some(id) = t.id {
            if !ok(id) {
                return Err(invalid("incorrect trunk id parameter"));
            }
            out.insert(id as u16);
        }
    }
    Ok(out.into_iter().collect())
}

/// The port VLANs a config asks for: `vlan` as the native VLAN (pvid,
/// untagged), every trunk id tagged.
fn wanted_vlans(n: &Network) -> Vec<netlink::BridgeVlan> {
    let mut out = Vec::new();
    if n.conf.vlan != 0 {
        out.push(netlink::BridgeVlan {
            vid: n.conf.vlan as u16,
            pvid: true,
            untagged: true,
        });
    }
    for &vid in n.vlans.iter().filter(|&&v| i64::from(v) != n.conf.vlan) {
        out.push(netlink::BridgeVlan {
            vid,
            pvid: false,
            untagged: false,
        });
    }
    out
}

/// Puts the host end of the veth into its VLANs; drops the default VLAN 1
/// unless `preserveDefaultVlan` (or unless it is one of those asked for).
fn program_port_vlans(host: &Socket, port: u32, n: &Network) -> CniResult<()> {
    let wanted = wanted_vlans(n);
    if !n.conf.preserve_default_vlan && !wanted.iter().any(|v| v.vid == 1) {
        match host.bridge_vlan_del(port, 1) {
            Ok(()) => {}
            Err(e) if e.errno() == Some(2) => {} // ENOENT: not in VLAN 1
            Err(e) => return Err(Error::io(format!("failed to remove default VLAN 1: {e}"))),
        }
    }
    for v in &wanted {
        host.bridge_vlan_add(port, v)
            .map_err(|e| Error::io(format!("failed to add VLAN {} to port: {e}", v.vid)))?;
    }
    Ok(())
}

/// CHECK: the port carries every VLAN asked for, with the right flags.
fn check_port_vlans(host: &Socket, port: u32, name: &str, n: &Network) -> CniResult<()> {
    let have = host.bridge_vlans(port).map_err(kit::err)?;
    for want in wanted_vlans(n) {
        if !have.contains(&want) {
            return Err(Error::internal(format!(
                "bridge port {name} lacks VLAN {} (pvid {}, untagged {}): has {have:?}",
                want.vid, want.pvid, want.untagged
            )));
        }
    }
    Ok(())
}

fn load(args: &CmdArgs) -> CniResult<Network> {
    let mut c: Conf = args.parse_conf()?;
    if c.name.is_empty() {
        c.name = args.conf.name.clone();
    }
    if !(0..=4094).contains(&c.vlan) {
        return Err(invalid(format!(
            "invalid VLAN ID {} (must be between 0 and 4094)",
            c.vlan
        )));
    }
    let vlans = match &c.vlan_trunk {
        Some(t) => collect_trunk(t)?,
        None => Vec::new(),
    };
    if !netlink::valid_ifname(&c.bridge) {
        return Err(invalid(format!("invalid bridge name {:?}", c.bridge)));
    }
    // MAC: CNI_ARGS, then args.cni.mac, then runtimeConfig.mac (last wins).
    let env = args.cni_args()?;
    env.check_known(&["MAC", "IP"])?;
    let mac_s = kit::mac::last_requested([
        env.get("MAC"),
        c.args.as_ref().map(|a| a.cni.mac.as_str()),
        c.runtime_config.as_ref().map(|r| r.mac.as_str()),
    ])
    .unwrap_or("")
    .to_string();
    let ipam = args
        .conf
        .ipam_type()
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    if c.is_default_gw {
        c.is_gw = true;
    }
    Ok(Network {
        conf: c,
        ipam,
        mac_text: mac_s,
        vlans,
    })
}

/// `<bridge>.<vlan>`, the reference's name for a VLAN's gateway link;
/// refused (code 7) when it does not fit an interface name.
fn vlan_gateway_name(bridge: &str, vid: u16) -> CniResult<String> {
    let name = format!("{bridge}.{vid}");
    if !netlink::valid_ifname(&name) {
        return Err(invalid(format!(
            "isGateway with vlan {vid}: the gateway link {name:?} is not a valid interface name \
             (at most 15 bytes); choose a shorter bridge name"
        )));
    }
    Ok(name)
}

/// The gateway link of the config's VLAN, made on first use: a veth pair in
/// the node, `<bridge>.<vlan>` (up, for the gateway addresses) and a peer
/// enslaved to the bridge with the VLAN as its native, untagged VLAN (the
/// default VLAN 1 dropped unless `preserveDefaultVlan`). Shared by every pod
/// of the VLAN and kept on DEL, like the bridge itself and as the reference.
fn ensure_vlan_gateway(host: &Socket, br: &Link, n: &Network) -> CniResult<Link> {
    let vid = n.conf.vlan as u16;
    let name = vlan_gateway_name(&br.name, vid)?;
    if let Some(l) = host.link_by_name(&name).map_err(kit::err)? {
        return Ok(l);
    }
    let port_name = kit::veth::host_veth_name(&name, "vlan-gateway", 0);
    let spec = netlink::LinkSpec {
        mtu: Some(br.mtu),
        queues: Some(1),
        master: Some(br.index),
        up: true,
        ..netlink::LinkSpec::new(
            port_name.clone(),
            netlink::LinkKind::Veth {
                peer_name: name.clone(),
                peer_mac: None,
                peer_mtu: Some(br.mtu),
                peer_netns_fd: None,
            },
        )
    };
    match host.create_link(&spec) {
        Ok(()) => {}
        // A concurrent ADD of the same VLAN made it first.
        Err(e) if e.is_exists() => {
            return host
                .link_by_name(&name)
                .map_err(kit::err)?
                .ok_or_else(|| Error::io(format!("failed to create vlan gateway {name:?}: {e}")))
        }
        Err(e) => {
            return Err(Error::io(format!(
                "failed to create vlan gateway {name:?}: {e}"
            )))
        }
    }
    let made = (|| {
        let port = host
            .link_by_name(&port_name)
            .map_err(kit::err)?
            .ok_or_else(|| Error::internal(format!("vlan gateway port {port_name:?} vanished")))?;
        if port.master != Some(br.index) {
            host.set_master(port.index, br.index).map_err(kit::err)?;
        }
        // Only the native VLAN: a trunk of the pod's config is not the
        // gateway's (the reference passes none either).
        if !n.conf.preserve_default_vlan && vid != 1 {
            match host.bridge_vlan_del(port.index, 1) {
                Ok(()) => {}
                Err(e) if e.errno() == Some(2) => {}
                Err(e) => {
                    return Err(Error::io(format!(
                        "failed to remove default VLAN 1 from {port_name:?}: {e}"
                    )))
                }
            }
        }
        host.bridge_vlan_add(
            port.index,
            &netlink::BridgeVlan {
                vid,
                pvid: true,
                untagged: true,
            },
        )
        .map_err(|e| Error::io(format!("failed to add VLAN {vid} to {port_name:?}: {e}")))?;
        let gw = host
            .link_by_name(&name)
            .map_err(kit::err)?
            .ok_or_else(|| Error::internal(format!("vlan gateway {name:?} vanished")))?;
        host.set_link_up(gw.index).map_err(kit::err)?;
        Ok(Link { up: true, ..gw })
    })();
    if made.is_err() {
        if let Ok(Some(p)) = host.link_by_name(&port_name) {
            let _ = host.delete_link(p.index);
        }
    }
    made
}

/// The gateway addresses to put on the bridge, per family, and the
/// default routes to add, as the reference's calcGateways does.
fn calc_gateways(result: &mut Result, n: &Network) -> Vec<IpNet> {
    let mut gws = Vec::new();
    let mut have_default = [false, false];
    for ip in result.ips.iter_mut() {
        ip.interface = Some(2);
        let addr = ip.address;
        let fam = usize::from(addr.addr().is_ipv6());
        if ip.gateway.is_none() && n.conf.is_gw {
            ip.gateway = first_host(&addr);
        }
        if n.conf.is_default_gw {
            let zero: IpAddr = if fam == 0 {
                IpAddr::from([0u8; 4])
            } else {
                IpAddr::from([0u16; 8])
            };
            if !have_default[fam] {
                have_default[fam] = result
                    .routes
                    .iter()
                    .any(|r| r.gw.is_some() && r.dst.prefix_len() == 0 && r.dst.addr() == zero);
            }
            if !have_default[fam] {
                if let Ok(dst) = IpNet::new(zero, 0) {
                    result.routes.push(cni_spec::Route::new(dst, ip.gateway));
                }
                have_default[fam] = true;
            }
        }
        if n.conf.is_gw {
            if let Some(gw) = ip.gateway {
                if let Ok(g) = IpNet::new(gw, addr.prefix_len()) {
                    gws.push(g);
                }
            }
        }
    }
    gws
}

/// The network address + 1.
fn first_host(n: &IpNet) -> Option<IpAddr> {
    match n.network() {
        IpAddr::V4(a) => Some(IpAddr::from(u32::from(a).checked_add(1)?.to_be_bytes())),
        IpAddr::V6(a) => Some(IpAddr::from(u128::from(a).checked_add(1)?.to_be_bytes())),
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

/// Container-side sysctls, run on a thread inside the container namespace.
/// The reference's container sysctls (errors ignored, as there). IPv6 DAD
/// has no netlink setter and must be set before the link goes up; then
/// `arp_notify` is set over netlink in the RTM_SETLINK that brings the link
/// up (no /proc/sys lookup), with the /proc write as fallback.
fn container_sysctls_and_up(
    ns: &NetNs,
    cont: &Socket,
    link: &mut Link,
    ifname: &str,
    dad: bool,
) -> CniResult<()> {
    ns.run(|| {
        if dad {
            let _ = kit::sysctl_set(&format!("net/ipv6/conf/{ifname}/enhanced_dad"), "1");
            let _ = kit::sysctl_set(&format!("net/ipv6/conf/{ifname}/accept_dad"), "1");
        } else {
            let _ = kit::sysctl_set(&format!("net/ipv6/conf/{ifname}/accept_dad"), "0");
        }
    })
    .map_err(kit::err)?;
    let conf = [(netlink::link::IPV4_DEVCONF_ARP_NOTIFY, 1)];
    if cont.set_link_ipv4_conf(link.index, true, &conf).is_ok() {
        link.up = true;
        return Ok(());
    }
    ns.run(|| {
        let _ = kit::sysctl_set(&format!("net/ipv4/conf/{ifname}/arp_notify"), "1");
    })
    .map_err(kit::err)
}

fn failure_injected(point: &str) -> CniResult<()> {
    if cni_skel::failure_injected(point) {
        return Err(Error::internal(format!("injected failure at {point}")));
    }
    Ok(())
}

impl Plugin for Bridge {
    fn name(&self) -> &'static str {
        "bridge"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let n = load(args)?;
        let mac = n.mac()?;
        if n.conf.hairpin_mode && n.conf.promisc_mode {
            return Err(invalid(
                "cannot set hairpin mode and promiscuous mode at the same time",
            ));
        }
        if n.conf.disable_container_interface && n.ipam.is_some() {
            return Err(invalid(
                "disableContainerInterface cannot be used together with IPAM",
            ));
        }
        // Find the IPAM plugin before the bridge exists: a bad `ipam.type`
        // must not leave a bridge behind.
        if let Some(ipam) = &n.ipam {
            cni_invoke::find_in_path(ipam, &args.path)?;
        }
        let want_vlan = n.conf.vlan != 0 || n.conf.vlan_trunk.is_some();
        // With a VLAN, the gateway lives on `<bridge>.<vlan>`: a name the
        // kernel must accept, checked before anything is made.
        if n.conf.is_gw && n.conf.vlan != 0 {
            vlan_gateway_name(&n.conf.bridge, n.conf.vlan as u16)?;
        }
        let netns_path = args.require_netns()?;
        let cns = kit::open_ns(netns_path)?;
        let host = Socket::route().map_err(kit::err)?;
        let cont = Socket::route_in(&cns).map_err(kit::err)?;

        let br = kit::ensure_bridge(
            &host,
            &n.conf.bridge,
            &kit::BridgeOptions {
                mtu: (n.conf.mtu > 0).then_some(n.conf.mtu),
                promisc: n.conf.promisc_mode,
                vlan_filtering: want_vlan,
            },
        )
        .map_err(|e| {
            Error::from(e).details(format!("failed to create bridge {:?}", n.conf.bridge))
        })?;

        let mut undo = Undo::new();
        let mut result = Result::new(args.version());

        let pair = kit::veth::setup_veth(
            &host,
            &cont,
            &cns,
            &args.container_id,
            &args.ifname,
            &kit::veth::VethOptions {
                mtu: (n.conf.mtu > 0).then_some(n.conf.mtu),
                mac: mac.as_ref().map(|m| &m[..]),
                // Up last (below): see there.
                host_up: false,
                master: Some(br.index),
                queues: kit::veth::queues_from_config(n.conf.veth_queues),
            },
        )
        .map_err(Error::from)?;
        let host_index = pair.host.index;
        {
            let host = &host;
            undo.push("delete veth", move || host.delete_link(host_index));
        }
        if pair.host.master != Some(br.index) {
            host.set_master(host_index, br.index).map_err(|e| {
                Error::io(format!(
                    "failed to connect {:?} to bridge {:?}: {e}",
                    pair.host.name, n.conf.bridge
                ))
            })?;
        }
        if want_vlan {
            program_port_vlans(&host, host_index, &n)?;
        }
        if n.conf.hairpin_mode || n.conf.port_isolation {
            host.set_bridge_port(
                host_index,
                &BridgePortOptions {
                    hairpin: n.conf.hairpin_mode.then_some(true),
                    isolated: n.conf.port_isolation.then_some(true),
                    ..Default::default()
                },
            )
            .map_err(kit::err)?;
        }

        if n.conf.macspoofchk {
            let mac: [u8; 6] = pair.container.mac.as_slice().try_into().map_err(|_| {
                Error::internal(format!(
                    "container interface MAC {:?} is not 6 bytes",
                    pair.container.mac
                ))
            })?;
            let nft = nft::Nft::open().context("macspoofchk")?;
            nft::rulesets::spoofchk::add(
                &nft,
                &nft::rulesets::spoofchk::Port {
                    network: n.conf.name.clone(),
                    container_id: args.container_id.clone(),
                    ifname: args.ifname.clone(),
                    host_veth: pair.host.name.clone(),
                    mac,
                },
            )
            .context("macspoofchk")?;
            let name = n.conf.name.clone();
            undo.push("remove MAC spoof check", move || {
                nft::Nft::open().and_then(|nft| {
                    nft::rulesets::spoofchk::remove(&nft, &name, &args.container_id, &args.ifname)
                })
            });
        }

        // IPAM after the links exist, as the reference orders it: parallel
        // ADDs then overlap their kernel work with each other's turn on the
        // IPAM lock. The undo stack releases the address (and the links) if
        // a later step fails.
        if let Some(ipam) = &n.ipam {
            let r = cni_invoke::ipam_add(ipam, args)?;
            undo.push("release IPAM address", move || {
                cni_invoke::delegate(ipam, Command::Del, args, &args.stdin)
            });
            result.ips = r.ips;
            result.routes = r.routes;
            result.dns = r.dns;
        }
        let gws = calc_gateways(&mut result, &n);

        let mut cont_link: Link = pair.container.clone();
        result.interfaces = vec![
            Interface {
                name: br.name.clone(),
                mac: kit::mac::format(&br.mac),
                ..Default::default()
            },
            Interface {
                name: pair.host.name.clone(),
                mac: kit::mac::format(&pair.host.mac),
                ..Default::default()
            },
            Interface {
                name: cont_link.name.clone(),
                mac: kit::mac::format(&cont_link.mac),
                sandbox: args.netns.clone(),
                ..Default::default()
            },
        ];
        if n.ipam.is_some() {
            container_sysctls_and_up(&cns, &cont, &mut cont_link, &args.ifname, n.conf.enabledad)?;
            kit::configure_iface(
                &cont,
                &cont_link,
                &result,
                &kit::IfaceOptions {
                    dad: n.conf.enabledad,
                    keep_down: false,
                    addresses_first: false,
                },
            )
            .map_err(Error::from)?;
            cont_link.up = true;
            if n.conf.is_gw && n.conf.vlan != 0 && !gws.is_empty() {
                // As the reference: the pods' gateway for their VLAN is the
                // `<bridge>.<vlan>` end of a veth whose other end is a bridge
                // port on that VLAN, listed after the pod's interfaces.
                let gw_link = ensure_vlan_gateway(&host, &br, &n)?;
                result.interfaces.push(Interface {
                    name: gw_link.name.clone(),
                    mac: kit::mac::format(&gw_link.mac),
                    ..Default::default()
                });
                for gw in &gws {
                    kit::ensure_gateway_addr(&host, &gw_link, *gw, n.conf.force_address).map_err(
                        |e| {
                            Error::from(e).details(format!(
                                "failed to set vlan interface {:?} for bridge with addr",
                                gw_link.name
                            ))
                        },
                    )?;
                }
                let v4 = gws.iter().any(|g| g.addr().is_ipv4());
                let v6 = gws.iter().any(|g| g.addr().is_ipv6());
                kit::enable_ip_forward(&host, v4, v6).map_err(Error::from)?;
            } else if n.conf.is_gw {
                for gw in &gws {
                    kit::ensure_gateway_addr(&host, &br, *gw, n.conf.force_address).map_err(
                        |e| {
                            Error::from(e).details(format!(
                                "failed to set bridge addr on {:?}",
                                n.conf.bridge
                            ))
                        },
                    )?;
                }
                let v4 = gws.iter().any(|g| g.addr().is_ipv4());
                let v6 = gws.iter().any(|g| g.addr().is_ipv6());
                kit::enable_ip_forward(&host, v4, v6).map_err(Error::from)?;
            }
            if n.conf.ip_masq {
                let masq = NetworkMasq::new(n.conf.state_dir.as_deref(), &n.conf.name);
                masq.attach(&args.container_id, &args.ifname, subnets_of(&result))
                    .map_err(Error::from)?;
                undo.push("forget masquerade attachment", move || {
                    masq.detach(&args.container_id, &args.ifname)
                });
            }
        } else if !n.conf.disable_container_interface {
            cont.set_link_up(cont_link.index).map_err(kit::err)?;
            cont_link.up = true;
        }
        failure_injected("after-setup")?;
        // The host end comes up last, so the pod's end gets carrier only
        // now. Carrier is what starts the pod's IPv6 announcements (router
        // solicitation, MLD reports; at once, as DAD is off): the bridge
        // floods each to every port from a work item that holds the RTNL
        // lock, and on a bridge with 1000 ports that kept each netlink
        // request made after it waiting about 4 ms. Made before carrier,
        // the pod's addresses, routes and the gateway need no request after
        // it; the flood then runs beside the rest of this call.
        host.set_link_up(host_index).map_err(kit::err)?;

        // The bridge MAC may have followed a port if someone else made it.
        if let Some(br_now) = host.link_by_name(&n.conf.bridge).map_err(kit::err)? {
            result.interfaces[0].mac = kit::mac::format(&br_now.mac);
        }
        if let Some(dns) = &args.conf.dns {
            if !dns.is_empty() {
                result.dns = dns.clone();
            }
        }
        if cont_link.up {
            kit::wait_operational(
                &[(&host, host_index), (&cont, cont_link.index)],
                std::time::Duration::from_millis(200),
            )
            .map_err(Error::from)?;
        }
        undo.commit();
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let n = load(args)?;
        let mut td = Teardown::new();
        td.step(kit::iface::delete_pod_link(args.netns_path(), &args.ifname));
        if let Some(ipam) = &n.ipam {
            td.step(cni_invoke::delegate(ipam, Command::Del, args, &args.stdin));
        }
        if n.conf.macspoofchk {
            td.step(nft::Nft::open().and_then(|nft| {
                nft::rulesets::spoofchk::remove(
                    &nft,
                    &n.conf.name,
                    &args.container_id,
                    &args.ifname,
                )
            }));
        }
        if n.conf.ip_masq {
            let masq = NetworkMasq::new(n.conf.state_dir.as_deref(), &n.conf.name);
            td.step(masq.detach(&args.container_id, &args.ifname));
        }
        Ok(td.finish()?)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let n = load(args)?;
        if let Some(ipam) = &n.ipam {
            cni_invoke::delegate(ipam, Command::Check, args, &args.stdin)?;
        }
        let prev = args
            .conf
            .prev_result()?
            .ok_or_else(|| invalid("Required prevResult missing"))?;
        let host = Socket::route().map_err(kit::err)?;
        let cns = kit::open_ns(args.require_netns()?)?;
        let cont = Socket::route_in(&cns).map_err(kit::err)?;

        let br_if = prev
            .interfaces
            .iter()
            .find(|i| i.name == n.conf.bridge && i.sandbox.is_empty())
            .ok_or_else(|| {
                Error::internal(format!("bridge {} not in prevResult", n.conf.bridge))
            })?;
        let br = host
            .link_by_name(&br_if.name)
            .map_err(kit::err)?
            .ok_or_else(|| {
                Error::internal(format!(
                    "CNI created bridge {} in host namespace was not found",
                    n.conf.bridge
                ))
            })?;
        if br.kind.as_deref() != Some("bridge") {
            return Err(Error::internal(format!(
                "Interface {} does not have link type of bridge",
                br.name
            )));
        }
        if !br_if.mac.is_empty() && br_if.mac != kit::mac::format(&br.mac) {
            return Err(Error::internal(format!(
                "Bridge interface {} Mac doesn't match: {}",
                br.name, br_if.mac
            )));
        }
        if br.promisc != n.conf.promisc_mode {
            return Err(Error::internal(format!(
                "Bridge interface {} configured Promisc Mode {} doesn't match current state: {}",
                br.name, n.conf.promisc_mode, br.promisc
            )));
        }

        // The VLAN's gateway link, where the result lists one.
        if n.conf.is_gw && n.conf.vlan != 0 {
            let name = vlan_gateway_name(&n.conf.bridge, n.conf.vlan as u16)?;
            let listed = prev
                .interfaces
                .iter()
                .any(|i| i.name == name && i.sandbox.is_empty());
            if listed && host.link_by_name(&name).map_err(kit::err)?.is_none() {
                return Err(Error::internal(format!(
                    "vlan gateway {name} of bridge {} was not found",
                    n.conf.bridge
                )));
            }
        }

        let c_if = prev
            .interfaces
            .iter()
            .find(|i| i.name == args.ifname && i.sandbox == args.netns)
            .ok_or_else(|| {
                Error::internal(format!(
                    "CNI created interface in container {} not found",
                    args.ifname
                ))
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
        // The host end: a veth in prevResult whose peer is the container
        // interface and whose master is the bridge.
        let peer = c.link.ok_or_else(|| {
            Error::internal(format!(
                "Unable to obtain veth peer index for veth {}",
                c.name
            ))
        })?;
        let mut found = false;
        for i in prev
            .interfaces
            .iter()
            .filter(|i| i.sandbox.is_empty() && i.name != br.name)
        {
            let Some(h) = host.link_by_name(&i.name).map_err(kit::err)? else {
                continue;
            };
            if h.kind.as_deref() != Some("veth") || h.index != peer {
                continue;
            }
            if h.link != Some(c.index) || h.master != Some(br.index) {
                continue;
            }
            if !i.mac.is_empty() && i.mac != kit::mac::format(&h.mac) {
                return Err(Error::internal(format!(
                    "Interface {} Mac doesn't match: {} not found",
                    h.name, i.mac
                )));
            }
            if n.conf.vlan != 0 || n.conf.vlan_trunk.is_some() {
                check_port_vlans(&host, h.index, &h.name, &n)?;
            }
            found = true;
            break;
        }
        if !found {
            return Err(Error::internal(format!(
                "CNI veth created for bridge {} was not found",
                n.conf.bridge
            )));
        }
        kit::validate_iface_ips(&cont, &c, &prev).map_err(Error::from)?;
        kit::validate_routes(&cont, &prev).map_err(Error::from)?;
        if n.conf.macspoofchk {
            let nft = nft::Nft::open().context("macspoofchk")?;
            if !nft::rulesets::spoofchk::exists(
                &nft,
                &n.conf.name,
                &args.container_id,
                &args.ifname,
            )
            .context("macspoofchk")?
            {
                return Err(Error::internal(format!(
                    "MAC spoof check rule for {} {} is missing",
                    args.container_id, args.ifname
                )));
            }
        }
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        let n = load(args)?;
        let mut td = Teardown::new();
        if let Some(ipam) = &n.ipam {
            td.step(cni_invoke::delegate(ipam, Command::Gc, args, &args.stdin));
        }
        // Spoof checks of attachments no longer valid (cheap when the
        // table does not exist).
        let keep: Vec<(String, String)> = args
            .conf
            .gc_attachments()
            .into_iter()
            .map(|a| (a.container_id, a.ifname))
            .collect();
        td.step(
            nft::Nft::open().and_then(|nft| nft::rulesets::spoofchk::gc(&nft, &n.conf.name, &keep)),
        );
        let masq = NetworkMasq::new(n.conf.state_dir.as_deref(), &n.conf.name);
        td.step(masq.gc(n.conf.ip_masq, &args.conf.gc_attachments()));
        Ok(td.finish()?)
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        kit::pass_to_ipam(load(args)?.ipam.as_deref(), Command::Status, args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_collects_sorted_unique() {
        let t: Vec<VlanTrunk> =
            serde_json::from_str(r#"[{"minID":10,"maxID":12},{"id":11},{"id":5}]"#).expect("json");
        assert_eq!(collect_trunk(&t).expect("ok"), vec![5, 10, 11, 12]);
        let bad: Vec<VlanTrunk> = serde_json::from_str(r#"[{"maxID":3}]"#).expect("json");
        assert!(collect_trunk(&bad).is_err());
        let bad: Vec<VlanTrunk> = serde_json::from_str(r#"[{"minID":5,"maxID":3}]"#).expect("json");
        assert!(collect_trunk(&bad).is_err());
    }

    #[test]
    fn gateway_is_first_host() {
        let n: IpNet = "10.1.2.7/24".parse().expect("net");
        assert_eq!(first_host(&n), Some("10.1.2.1".parse().expect("ip")));
        let n: IpNet = "fd00::7/64".parse().expect("net");
        assert_eq!(first_host(&n), Some("fd00::1".parse().expect("ip")));
    }
}
