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
use kit::podlink;
use kit::{NetworkMasq, ResultExt, Teardown, Undo};
use netlink::{BridgePortOptions, Link, Socket};
use netns::NetNs;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;

/// The bridge plugin as the CNI skeleton runs it: plugs the pod into a
/// node bridge through a veth pair on ADD, unplugs it on DEL.
pub struct Bridge;

/// The order DEL takes the pod link and the address in (as the reference: the address is never handed out while its old interface still exists).
const DEL_ORDER: podlink::DelOrder = podlink::DelOrder::LinkFirst;

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
    /// Whether the pod's port carries VLANs (`vlan` or `vlanTrunk`): the
    /// bridge then filters by VLAN and the port gets its VLAN entries.
    fn uses_vlans(&self) -> bool {
        self.conf.vlan != 0 || self.conf.vlan_trunk.is_some()
    }

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

/// The config as parsed, before the checks only creating needs.
fn parse(args: &CmdArgs) -> CniResult<Conf> {
    let mut c: Conf = args.parse_conf()?;
    if c.name.is_empty() {
        c.name = args.conf.name.clone();
    }
    Ok(c)
}

/// DEL's view of the config: what deleting uses. A VLAN ID or bridge name
/// ADD refuses must not make the attachment undeletable (runtimes call DEL
/// after a failed ADD, with the same config); the reference does not check
/// the bridge name on DEL either.
fn load_for_del(args: &CmdArgs) -> CniResult<Network> {
    Ok(Network {
        conf: parse(args)?,
        ipam: podlink::ipam_type(args),
        mac_text: String::new(),
        vlans: Vec::new(),
    })
}

fn load(args: &CmdArgs) -> CniResult<Network> {
    let mut c = parse(args)?;
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
    let ipam = podlink::ipam_type(args);
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
        // With a VLAN, the gateway lives on `<bridge>.<vlan>`: a name the
        // kernel must accept, checked before anything is made.
        if n.conf.is_gw && n.conf.vlan != 0 {
            vlan_gateway_name(&n.conf.bridge, n.conf.vlan as u16)?;
        }
        let ns = podlink::Namespaces::open(args)?;
        let ipam = podlink::delegated(n.ipam.as_deref(), args);
        let node = RealNode {
            ns: &ns,
            n: &n,
            args,
        };
        let veth = podlink::RealVethNode::new(&ns, args, n.conf.state_dir.as_deref(), &n.conf.name);
        add_core(ns.call(args, &ipam), &n, mac, &node, &veth)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let n = load_for_del(args)?;
        let mut td = podlink::del_steps(args, n.ipam.as_deref(), DEL_ORDER);
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
        let dir = n.conf.state_dir.as_deref();
        podlink::masq_del_step(&mut td, n.conf.ip_masq, dir, &n.conf.name, args);
        Ok(td.finish()?)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let n = load(args)?;
        kit::pass_to_ipam(n.ipam.as_deref(), Command::Check, args)?;
        let prev = podlink::prev_required(args, "Required prevResult missing")?;
        let ns = podlink::Namespaces::open(args)?;
        let vlans = |h: &Link| check_port_vlans(&ns.host, h.index, &h.name, &n);
        check_core(ns.seam(), &n, &prev, args, &vlans)?;
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
        let keep = podlink::gc_keep(args);
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

/// CHECK on the seam: the bridge and the pod's veth against prevResult,
/// the host end a port of the bridge (its VLANs through `port_vlans`), the
/// pod's addresses and routes.
fn check_core(
    at: podlink::Seam<'_>,
    n: &Network,
    prev: &Result,
    args: &CmdArgs,
    port_vlans: &dyn Fn(&Link) -> CniResult<()>,
) -> CniResult<()> {
    let br_if = prev
        .interfaces
        .iter()
        .find(|i| i.name == n.conf.bridge && i.sandbox.is_empty())
        .ok_or_else(|| Error::internal(format!("bridge {} not in prevResult", n.conf.bridge)))?;
    let br = at
        .host
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
        if listed && at.host.link_by_name(&name).map_err(kit::err)?.is_none() {
            return Err(Error::internal(format!(
                "vlan gateway {name} of bridge {} was not found",
                n.conf.bridge
            )));
        }
    }

    let ifname = &args.ifname;
    let c_if = podlink::prev_iface(prev, ifname, &args.netns, || {
        format!("CNI created interface in container {ifname} not found")
    })?;
    let c = podlink::check_pod_link(at.cont, ifname, podlink::is_veth, "veth", &c_if.mac)?;
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
        let Some(h) = at.host.link_by_name(&i.name).map_err(kit::err)? else {
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
        if n.uses_vlans() {
            port_vlans(&h)?;
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
    podlink::check_ips_routes(at.cont, &c, prev)
}

/// What bridge's ADD does besides the veth pair, the pod's addresses and
/// routes, the host end's state and the steps of every veth plugin: the
/// bridge itself, port VLANs and flags, the MAC spoof check, container
/// sysctls and the gateway.
trait BridgeNode {
    /// The bridge, made when missing.
    fn ensure_bridge(&self) -> CniResult<Link>;
    /// The port's VLANs and hairpin / isolation flags.
    fn port_setup(&self, port: u32) -> CniResult<()>;
    /// Adds the MAC spoof check for the pod's `mac` behind `host_veth`.
    fn spoofchk_add(&self, host_veth: &str, mac: [u8; 6]) -> CniResult<()>;
    /// Removes it again (undo).
    fn spoofchk_remove(&self) -> kit::Result<()>;
    /// The pod side's sysctls, and the link up with `arp_notify` where
    /// netlink can (then `link.up` is set).
    fn container_up(&self, link: &mut Link) -> CniResult<()>;
    /// The gateway addresses `gws` on the bridge (or the VLAN's gateway
    /// link, returned to be listed) and forwarding.
    fn gateway(&self, br: &Link, gws: &[IpNet]) -> CniResult<Option<Link>>;
}

/// [`BridgeNode`] on the real node.
struct RealNode<'a> {
    ns: &'a podlink::Namespaces,
    n: &'a Network,
    args: &'a CmdArgs,
}

impl BridgeNode for RealNode<'_> {
    fn ensure_bridge(&self) -> CniResult<Link> {
        let c = &self.n.conf;
        kit::ensure_bridge(
            &self.ns.host,
            &c.bridge,
            &kit::BridgeOptions {
                mtu: (c.mtu > 0).then_some(c.mtu),
                promisc: c.promisc_mode,
                vlan_filtering: self.n.uses_vlans(),
            },
        )
        .map_err(|e| Error::from(e).details(format!("failed to create bridge {:?}", c.bridge)))
    }

    fn port_setup(&self, port: u32) -> CniResult<()> {
        let (host, c) = (&self.ns.host, &self.n.conf);
        if self.n.uses_vlans() {
            program_port_vlans(host, port, self.n)?;
        }
        if c.hairpin_mode || c.port_isolation {
            host.set_bridge_port(
                port,
                &BridgePortOptions {
                    hairpin: c.hairpin_mode.then_some(true),
                    isolated: c.port_isolation.then_some(true),
                    ..Default::default()
                },
            )
            .map_err(kit::err)?;
        }
        Ok(())
    }

    fn spoofchk_add(&self, host_veth: &str, mac: [u8; 6]) -> CniResult<()> {
        let nft = nft::Nft::open().context("macspoofchk")?;
        nft::rulesets::spoofchk::add(
            &nft,
            &nft::rulesets::spoofchk::Port {
                network: self.n.conf.name.clone(),
                container_id: self.args.container_id.clone(),
                ifname: self.args.ifname.clone(),
                host_veth: host_veth.to_string(),
                mac,
            },
        )
        .context("macspoofchk")?;
        Ok(())
    }

    fn spoofchk_remove(&self) -> kit::Result<()> {
        let a = self.args;
        nft::Nft::open()
            .and_then(|nft| {
                nft::rulesets::spoofchk::remove(&nft, &self.n.conf.name, &a.container_id, &a.ifname)
            })
            .map_err(kit::Error::from)
    }

    fn container_up(&self, link: &mut Link) -> CniResult<()> {
        let (ns, ifname) = (self.ns, &self.args.ifname);
        container_sysctls_and_up(&ns.cns, &ns.cont, link, ifname, self.n.conf.enabledad)
    }

    fn gateway(&self, br: &Link, gws: &[IpNet]) -> CniResult<Option<Link>> {
        let (host, n) = (&self.ns.host, self.n);
        let vlan_gw = if n.conf.vlan != 0 {
            Some(ensure_vlan_gateway(host, br, n)?)
        } else {
            None
        };
        let (on, what) = match &vlan_gw {
            Some(l) => (
                l,
                format!(
                    "failed to set vlan interface {:?} for bridge with addr",
                    l.name
                ),
            ),
            None => (
                br,
                format!("failed to set bridge addr on {:?}", n.conf.bridge),
            ),
        };
        let mut added = false;
        for gw in gws {
            added |= kit::ensure_gateway_addr(host, on, *gw, n.conf.force_address)
                .map_err(|e| Error::from(e).details(what.clone()))?;
        }
        // A bridge someone else made (ours are pinned at creation) gets
        // its MAC pinned with its first gateway address, as the
        // reference does, so the pods' gateway MAC stays put.
        if added && vlan_gw.is_none() {
            kit::pin_bridge_mac(host, br.index)
                .map_err(|e| Error::from(e).details("could not set bridge's mac"))?;
        }
        let v4 = gws.iter().any(|g| g.addr().is_ipv4());
        let v6 = gws.iter().any(|g| g.addr().is_ipv6());
        kit::enable_ip_forward(host, v4, v6).map_err(Error::from)?;
        Ok(vlan_gw)
    }
}

/// Whether IPAM plugin `ipam_type` allocates without sending anything on
/// the pod's link (so the link may stay without carrier while it runs).
fn ipam_is_local(ipam_type: &str) -> bool {
    matches!(ipam_type, "host-local" | "static")
}

/// ADD on the seam: the bridge, the veth pair (host end down, enslaved),
/// the port's setup, the spoof check, IPAM, the pod's end (sysctls, up,
/// addresses, routes), the gateway, masquerade, and last the host end up.
/// Undone on failure.
fn add_core<'a>(
    cx: podlink::Call<'a>,
    n: &Network,
    mac: Option<[u8; 6]>,
    node: &'a dyn BridgeNode,
    veth: &'a dyn podlink::VethNode,
) -> CniResult<Result> {
    let (host, cont, args) = (cx.at.host, cx.at.cont, cx.args);
    let br = node.ensure_bridge()?;

    let mut undo = Undo::new();
    let mut result = Result::new(args.version());

    let pair = cx
        .setup_veth(
            &kit::veth::VethOptions {
                mtu: (n.conf.mtu > 0).then_some(n.conf.mtu),
                mac: mac.as_ref().map(|m| &m[..]),
                // Up last (below): see there.
                host_up: false,
                master: Some(br.index),
                queues: kit::veth::queues_from_config(n.conf.veth_queues),
            },
            veth,
        )
        .map_err(Error::from)?;
    let host_index = pair.host.index;
    undo.push("delete veth", move || host.delete_link(host_index));
    if pair.host.master != Some(br.index) {
        host.set_master(host_index, br.index).map_err(|e| {
            Error::io(format!(
                "failed to connect {:?} to bridge {:?}: {e}",
                pair.host.name, n.conf.bridge
            ))
        })?;
    }
    node.port_setup(host_index)?;

    if n.conf.macspoofchk {
        let mac: [u8; 6] = pair.container.mac.as_slice().try_into().map_err(|_| {
            Error::internal(format!(
                "container interface MAC {:?} is not 6 bytes",
                pair.container.mac
            ))
        })?;
        node.spoofchk_add(&pair.host.name, mac)?;
        undo.push("remove MAC spoof check", move || node.spoofchk_remove());
    }

    // An IPAM that talks on the link (dhcp, or one not known to be local)
    // needs carrier on the pod's end while it runs: the host end comes up
    // now, not last.
    let host_up_early = n.ipam.as_deref().is_some_and(|t| !ipam_is_local(t));
    if host_up_early {
        host.set_link_up(host_index).map_err(kit::err)?;
    }

    // IPAM after the links exist, as the reference orders it: parallel
    // ADDs then overlap their kernel work with each other's turn on the
    // IPAM lock. The undo stack releases the address (and the links) if
    // a later step fails.
    if let Some(ipam) = cx.ipam {
        let r = podlink::ipam_add(ipam, &mut undo)?;
        result.ips = r.ips;
        result.routes = r.routes;
        result.dns = r.dns;
    }
    let gws = calc_gateways(&mut result, n);

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
        podlink::pod_interface(&cont_link, &args.netns),
    ];
    if cx.ipam.is_some() {
        node.container_up(&mut cont_link)?;
        kit::configure_iface(
            cont,
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
        if n.conf.is_gw && !gws.is_empty() {
            // As the reference: the pods' gateway for their VLAN is the
            // `<bridge>.<vlan>` end of a veth whose other end is a bridge
            // port on that VLAN, listed after the pod's interfaces.
            if let Some(gw_link) = node.gateway(&br, &gws)? {
                result.interfaces.push(Interface {
                    name: gw_link.name.clone(),
                    mac: kit::mac::format(&gw_link.mac),
                    ..Default::default()
                });
            }
        }
        if n.conf.ip_masq {
            veth.masq_attach(podlink::subnets_of(&result))?;
            undo.push("forget masquerade attachment", move || veth.masq_detach());
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
    // request made after it waiting 2-4 ms. So no request follows
    // carrier: the pod's addresses, routes and the gateway come before
    // it, and the wait for both ends to be operational listens for the
    // link-watch work's notifications instead of asking (it ends before
    // the flood starts).
    // The bridge MAC may have followed a port (ours included: it was
    // enslaved at creation) if someone else made the bridge: read it
    // before carrier too.
    if let Some(br_now) = host.link_by_name(&n.conf.bridge).map_err(kit::err)? {
        result.interfaces[0].mac = kit::mac::format(&br_now.mac);
    }
    if let Some(dns) = &args.conf.dns {
        if !dns.is_empty() {
            result.dns = dns.clone();
        }
    }
    match (host_up_early, cont_link.up) {
        (false, true) => veth.host_up_and_wait(host_index, cont_link.index)?,
        (false, false) => host.set_link_up(host_index).map_err(kit::err)?,
        (true, true) => veth.wait_up(host_index, cont_link.index)?,
        (true, false) => {}
    }
    undo.commit();
    Ok(result)
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

#[cfg(test)]
mod fake_tests {
    //! The verb cores on the recording fakes, without root: one fake for
    //! both namespaces, and a node whose steps land in the same log, so
    //! that the order of everything ADD does reads as one list.
    use super::*;
    use kit::ops::fake::{self, call, cmd_args, FakeIpam, RecordingNet, RecordingVethNode};

    struct FakeNode<'a> {
        net: &'a RecordingNet,
        /// The node step that fails (code 5), if any.
        fail: Option<&'static str>,
    }

    impl FakeNode<'_> {
        fn step(&self, what: &str) -> CniResult<()> {
            self.net.note(format!("node {what}"));
            match self.fail {
                Some(f) if what.starts_with(f) => Err(Error::io(format!("{what} refused"))),
                _ => Ok(()),
            }
        }
    }

    impl BridgeNode for FakeNode<'_> {
        fn ensure_bridge(&self) -> CniResult<Link> {
            self.step("bridge")?;
            if self.net.link("cni0").is_none() {
                self.net.add_link(Link {
                    name: "cni0".into(),
                    kind: Some("bridge".into()),
                    ..Default::default()
                });
            }
            Ok(self.net.link("cni0").expect("just made"))
        }
        fn port_setup(&self, port: u32) -> CniResult<()> {
            self.step(&format!("port {port}"))
        }
        fn spoofchk_add(&self, _: &str, _: [u8; 6]) -> CniResult<()> {
            self.step("spoofchk")
        }
        fn spoofchk_remove(&self) -> kit::Result<()> {
            self.net.note("node unspoof".into());
            Ok(())
        }
        fn container_up(&self, link: &mut Link) -> CniResult<()> {
            self.step("container up")?;
            link.up = true;
            Ok(())
        }
        fn gateway(&self, _: &Link, gws: &[IpNet]) -> CniResult<Option<Link>> {
            self.step(&format!("gateway {gws:?}"))?;
            Ok(None)
        }
    }

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","isGateway":true,
        "ipMasq":true,"macspoofchk":true,"ipam":{"type":"host-local"}}"#;

    fn add(net: &RecordingNet, ipam: &FakeIpam, fail: Option<&'static str>) -> CniResult<Result> {
        let args = cmd_args(CONF);
        let n = load(&args).expect("config loads");
        let node = FakeNode { net, fail };
        add_core(
            call(net, &args, Some(ipam)),
            &n,
            None,
            &node,
            &RecordingVethNode { net },
        )
    }

    #[test]
    fn add_brings_the_host_end_up_only_after_addresses_routes_and_gateway() {
        let net = RecordingNet::new();
        let ipam = FakeIpam::v4("10.8.0.5/24", "10.8.0.1");
        let r = add(&net, &ipam, None).expect("ADD");
        let host = kit::veth::host_veth_name("ctr", "eth0", 0);
        let (b, h, c) = (
            net.index_of("cni0"),
            net.index_of(&host),
            net.index_of("eth0"),
        );
        assert_eq!(
            net.lines(),
            vec![
                "node bridge".to_string(),
                format!("create {host} peer eth0 master {b}"),
                "get eth0".to_string(),
                format!("node no_ra {host}"),
                format!("node port {h}"),
                "node spoofchk".to_string(),
                "node container up".to_string(),
                format!("addr {c} 10.8.0.5/24"),
                format!("route 0.0.0.0/0 via 10.8.0.1 dev {c}"),
                "node gateway [10.8.0.1/24]".to_string(),
                "node masq [10.8.0.0/24]".to_string(),
                "get cni0".to_string(),
                format!("up {h}"),
                "node wait".to_string(),
            ]
        );
        let names: Vec<&str> = r.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, vec!["cni0", host.as_str(), "eth0"]);
    }

    #[test]
    fn a_dhcp_ipam_runs_with_the_host_end_already_up() {
        // DHCP needs the pod's end to carry its exchange: carrier first.
        let net = RecordingNet::new();
        let ipam = FakeIpam::v4("10.8.0.5/24", "10.8.0.1");
        let conf = CONF.replace(r#""type":"host-local""#, r#""type":"dhcp""#);
        let args = cmd_args(&conf);
        let n = load(&args).expect("config loads");
        let node = FakeNode {
            net: &net,
            fail: None,
        };
        add_core(
            call(&net, &args, Some(&ipam)),
            &n,
            None,
            &node,
            &RecordingVethNode { net: &net },
        )
        .expect("ADD");
        let h = net.index_of(&kit::veth::host_veth_name("ctr", "eth0", 0));
        let lines = net.lines();
        let up = lines.iter().position(|l| *l == format!("up {h}"));
        let addr = lines.iter().position(|l| l.starts_with("addr "));
        assert!(up.is_some() && up < addr, "{lines:?}");
        assert_eq!(lines.iter().filter(|l| l.starts_with("up ")).count(), 1);
    }

    #[test]
    fn a_refused_route_undoes_spoof_check_veth_and_address_and_never_brings_the_host_end_up() {
        let net = RecordingNet::new();
        let ipam = FakeIpam::v4("10.8.0.5/24", "10.8.0.1");
        net.fail_next("route", fake::errno::ENETUNREACH);
        let e = add(&net, &ipam, None).expect_err("refused");
        assert_eq!(e.code, 5, "{e:?}");
        fake::assert_all_undone(&net, &ipam, &["cni0"]);
        let lines = net.lines();
        assert!(lines.contains(&"node unspoof".to_string()));
        assert!(!lines.iter().any(|l| l.starts_with("up ")), "{lines:?}");
    }

    #[test]
    fn a_failed_gateway_keeps_its_code_and_undoes_everything_but_the_bridge() {
        let net = RecordingNet::new();
        let ipam = FakeIpam::v4("10.8.0.5/24", "10.8.0.1");
        let e = add(&net, &ipam, Some("gateway")).expect_err("refused");
        assert_eq!(e.code, 5, "{e:?}");
        fake::assert_all_undone(&net, &ipam, &["cni0"]);
        assert!(!net.lines().contains(&"node masq [10.8.0.0/24]".to_string()));
    }

    #[test]
    fn an_ifname_already_in_the_pod_is_code_999_before_ipam() {
        let net = RecordingNet::new();
        net.add_existing("eth0");
        let ipam = FakeIpam::v4("10.8.0.5/24", "10.8.0.1");
        let e = add(&net, &ipam, None).expect_err("taken");
        assert_eq!(e.code, 999, "{e:?}");
        assert!(ipam.calls().is_empty());
        assert!(net.holds_only(&["cni0", "eth0"]));
    }

    #[test]
    fn del_of_a_pair_already_gone_still_releases_the_address() {
        let net = RecordingNet::new();
        let ipam = FakeIpam::v4("10.8.0.5/24", "10.8.0.1");
        let td = kit::podlink::del_teardown(Some(&net), None, "eth0", Some(&ipam), DEL_ORDER);
        td.finish().expect("DEL");
        assert_eq!(ipam.calls(), vec!["ipam del"]);
    }

    #[test]
    fn check_of_a_missing_or_non_veth_pod_interface_is_code_999() {
        let net = RecordingNet::new();
        let ipam = FakeIpam::v4("10.8.0.5/24", "10.8.0.1");
        let r = add(&net, &ipam, None).expect("ADD");
        let args = cmd_args(CONF);
        let n = load(&args).expect("config loads");
        let no_vlans = |_: &Link| Ok(());
        net.retype("eth0", "dummy");
        let e = check_core(fake::seam(&net), &n, &r, &args, &no_vlans).expect_err("not veth");
        assert_eq!(e.msg, "Error: Container interface eth0 not of type veth");
        net.remove("eth0");
        let e = check_core(fake::seam(&net), &n, &r, &args, &no_vlans).expect_err("gone");
        assert_eq!(
            (e.code, e.msg.as_str()),
            (999, "Interface name eth0 not found")
        );
    }
}
