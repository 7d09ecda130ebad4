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
use kit::ops::LinkOps;
use kit::podlink;
use kit::{NetworkMasq, Teardown, Undo};
use netlink::{AddressOptions, Socket};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;

/// The ptp plugin as the CNI skeleton runs it: creates the routed veth pair
/// and its host-side routes on ADD, removes them on DEL.
pub struct Ptp;

/// The order DEL takes the pod link and the address in (as the reference: the address is never handed out while its old interface still exists).
const DEL_ORDER: podlink::DelOrder = podlink::DelOrder::LinkFirst;

#[derive(Debug, Clone, Deserialize)]
struct Conf {
    #[serde(default)]
    name: String,
    #[serde(default)]
    mtu: u32,
    #[serde(rename = "ipMasq", default, deserialize_with = "flex")]
    ip_masq: bool,
    #[serde(rename = "ipMasqBackend", default)]
    _ip_masq_backend: Option<String>,
    /// rcni: TX/RX queues per veth end (default 1; 0 = the kernel's
    /// default of one per CPU).
    #[serde(rename = "vethQueues", default = "kit::veth::default_queues")]
    veth_queues: u32,
    /// rcni: where attachment records live (default /run/cni/rcni).
    #[serde(rename = "stateDir", default)]
    state_dir: Option<PathBuf>,
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
    let ipam = podlink::ipam_type(args)
        .ok_or_else(|| Error::invalid_config("ptp needs an ipam section with a type"))?;
    Ok(Network { conf: c, ipam })
}

fn host_bits(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

impl Plugin for Ptp {
    fn name(&self) -> &'static str {
        "ptp"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let n = load(args)?;
        let ns = podlink::Namespaces::open(args)?;
        let ipam = podlink::delegated(Some(&n.ipam), args);
        let veth = podlink::RealVethNode::new(&ns, args, n.conf.state_dir.as_deref(), &n.conf.name);
        add_core(ns.call(args, &ipam), &n, &RealNode(&ns.host), &veth)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let n = load(args)?;
        let mut td = podlink::del_steps(args, Some(&n.ipam), DEL_ORDER);
        let dir = n.conf.state_dir.as_deref();
        podlink::masq_del_step(&mut td, n.conf.ip_masq, dir, &n.conf.name, args);
        Ok(td.finish()?)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let n = load(args)?;
        cni_invoke::delegate(&n.ipam, Command::Check, args, &args.stdin)?;
        let prev = podlink::prev_required(args, "Required prevResult missing")?;
        let ns = podlink::Namespaces::open(args)?;
        check_core(ns.seam(), &prev, args)
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

/// What ptp's ADD does on the node besides links, addresses, routes and
/// the steps of every veth plugin: sysctls.
trait NodeSide {
    /// Turns on forwarding for the families the pod has.
    fn forward(&self, v4: bool, v6: bool) -> CniResult<()>;
    /// Best effort: no DAD on the host veth's link-local address.
    fn no_dad(&self, host_veth: &str);
}

/// [`NodeSide`] on the real node.
struct RealNode<'a>(&'a Socket);

impl NodeSide for RealNode<'_> {
    fn forward(&self, v4: bool, v6: bool) -> CniResult<()> {
        kit::enable_ip_forward(self.0, v4, v6).map_err(Error::from)
    }
    fn no_dad(&self, host_veth: &str) {
        let _ = kit::sysctl_set(&format!("net/ipv6/conf/{host_veth}/accept_dad"), "0");
    }
}

/// ADD on the seam: IPAM's addresses (each with a gateway), forwarding,
/// the veth pair (through `cx.at.host`, its peer in the pod), the pod's
/// addresses without prefix routes and its routes via the gateway, the
/// gateway on the host end and a host route to the pod, masquerade. Undone
/// on failure.
fn add_core<'a>(
    cx: podlink::Call<'a>,
    n: &Network,
    node: &dyn NodeSide,
    veth: &'a dyn podlink::VethNode,
) -> CniResult<Result> {
    let (host, cont, args) = (cx.at.host, cx.at.cont, cx.args);
    let mut undo = Undo::new();
    let ipam = cx
        .ipam
        .ok_or_else(|| Error::invalid_config("ptp needs an ipam section with a type"))?;
    let r = podlink::ipam_add(ipam, &mut undo)?;
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
    node.forward(v4, v6)?;

    let mtu = (n.conf.mtu > 0).then_some(n.conf.mtu);
    let pair = cx
        .setup_veth(
            &kit::veth::VethOptions {
                mtu,
                mac: None,
                host_up: true,
                master: None,
                queues: kit::veth::queues_from_config(n.conf.veth_queues),
            },
            veth,
        )
        .map_err(Error::from)?;
    let host_index = pair.host.index;
    undo.push("delete veth", move || host.delete_link(host_index));
    // The host veth routes for the pod: no DAD on its link-local address
    // (generated once the container end goes up, below). While that is
    // tentative the node sends no neighbour solicitation for packets it
    // forwards to the pod, and IPv6 traffic to a new pod stalls 1-2 s.
    if v6 {
        node.no_dad(&pair.host.name);
    }

    // Container side: addresses without their subnet route, link up,
    // the gateway on-link, the subnet and the IPAM routes via it.
    let c = &pair.container;
    cont.set_link_up(c.index).map_err(kit::err)?;
    for ip in &result.ips {
        let a = ip.address;
        // Turns IPv6 back on if the pod disabled it (as the reference).
        kit::iface::add_address(
            cont,
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
        add_route(cont, &on_link)?;
        let net = a.trunc();
        if net.prefix_len() != host_bits(gw) {
            let via = netlink::Route::to(net.addr(), net.prefix_len())
                .dev(c.index)
                .via(gw)
                .src(a.addr());
            add_route(cont, &via)?;
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
        let mut route = kit::result_route(r, c.index, gw);
        if r.gw.is_some_and(|g| needs_onlink(g, &result.ips)) {
            route = route.onlink();
        }
        add_route(cont, &route)?;
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
        add_route(host, &r)?;
    }

    if n.conf.ip_masq {
        veth.masq_attach(podlink::subnets_of(&result))?;
        undo.push("forget masquerade attachment", move || veth.masq_detach());
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
        podlink::pod_interface(c, &args.netns),
    ];
    if let Some(dns) = &args.conf.dns {
        if !dns.is_empty() {
            result.dns = dns.clone();
        }
    }
    veth.wait_up(host_index, c.index)?;
    undo.commit();
    Ok(result)
}

/// CHECK on the seam: the pod's veth against prevResult, and its peer on
/// the node among prevResult's host interfaces.
fn check_core(at: podlink::Seam<'_>, prev: &Result, args: &CmdArgs) -> CniResult<()> {
    let ifname = &args.ifname;
    let c_if = podlink::prev_iface(prev, ifname, &args.netns, || {
        format!("interface {ifname} not in prevResult")
    })?;
    let c = podlink::check_pod_link(at.cont, ifname, podlink::is_veth, "veth", &c_if.mac)?;
    let peer = c.link.unwrap_or(0);
    let host_ok = prev
        .interfaces
        .iter()
        .filter(|i| i.sandbox.is_empty())
        .any(|i| {
            matches!(at.host.link_by_name(&i.name), Ok(Some(h)) if h.index == peer && podlink::is_veth(&h))
        });
    if !host_ok {
        return Err(Error::internal("CNI veth created for ptp was not found"));
    }
    podlink::check_ips_routes(at.cont, &c, prev)
}

/// Whether an IPAM route's gateway `g` must be marked on-link: it lies in
/// one of the pod's subnets but is not a ptp gateway. The reference adds
/// IPAM routes while the pod's subnet route still exists (it removes it
/// afterwards), so such a gateway is accepted there and the route stays,
/// resolved on the pod's link; without a subnet route the kernel wants
/// `onlink` for the same route.
fn needs_onlink(g: IpAddr, ips: &[cni_spec::IpConfig]) -> bool {
    ips.iter().all(|i| i.gateway != Some(g)) && ips.iter().any(|i| i.address.contains(&g))
}

fn add_route(sock: &dyn LinkOps, r: &netlink::Route) -> CniResult<()> {
    // Alongside other interfaces' routes to the same destination (a second
    // attachment's default route), as the reference's RouteAddEcmp.
    match sock.add_route_alongside(r) {
        Ok(()) => Ok(()),
        Err(e) if e.is_exists() => Ok(()),
        Err(e) => Err(kit::err(e)),
    }
}

#[cfg(test)]
mod fake_tests {
    //! The verb cores on the recording fakes, without root: one fake for
    //! both namespaces (the veth's peer lands in it too), a recording node.
    use super::*;
    use kit::ops::fake::{self, call, cmd_args, FakeIpam, RecordingNet, RecordingVethNode};
    use std::cell::RefCell;

    #[derive(Default)]
    struct FakeNode {
        log: RefCell<Vec<String>>,
    }

    impl NodeSide for FakeNode {
        fn forward(&self, v4: bool, v6: bool) -> CniResult<()> {
            self.log.borrow_mut().push(format!("forward {v4} {v6}"));
            Ok(())
        }
        fn no_dad(&self, host_veth: &str) {
            self.log.borrow_mut().push(format!("no_dad {host_veth}"));
        }
    }

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"n","type":"ptp","ipMasq":true,
        "ipam":{"type":"fake"}}"#;

    fn setup() -> (RecordingNet, CmdArgs, Network, FakeIpam, FakeNode) {
        let args = cmd_args(CONF);
        let n = load(&args).expect("config loads");
        let ipam = FakeIpam::v4("10.7.0.5/24", "10.7.0.1");
        (RecordingNet::new(), args, n, ipam, FakeNode::default())
    }

    fn add(
        net: &RecordingNet,
        args: &CmdArgs,
        n: &Network,
        ipam: &FakeIpam,
        node: &FakeNode,
    ) -> CniResult<Result> {
        let veth = RecordingVethNode { net };
        add_core(call(net, args, Some(ipam)), n, node, &veth)
    }

    #[test]
    fn add_makes_the_pair_routes_the_pod_via_the_gateway_and_waits_last() {
        let (net, args, n, ipam, node) = setup();
        let r = add(&net, &args, &n, &ipam, &node).expect("ADD");
        let host = kit::veth::host_veth_name("ctr", "eth0", 0);
        let (h, c) = (net.index_of(&host), net.index_of("eth0"));
        assert_eq!(
            net.lines(),
            vec![
                format!("create {host} peer eth0"),
                "get eth0".to_string(),
                format!("node no_ra {host}"),
                format!("up {c}"),
                format!("addr {c} 10.7.0.5/24"),
                format!("route 10.7.0.1/32 dev {c}"),
                format!("route 10.7.0.0/24 via 10.7.0.1 dev {c}"),
                format!("route 0.0.0.0/0 via 10.7.0.1 dev {c}"),
                format!("addr {h} 10.7.0.1/32"),
                format!("route 10.7.0.5/32 dev {h}"),
                "node masq [10.7.0.0/24]".to_string(),
                "node wait".to_string(),
            ]
        );
        assert_eq!(*node.log.borrow(), vec!["forward true false"]);
        assert_eq!(r.interfaces[0].name, host);
        assert_eq!(r.ips[0].interface, Some(1));
    }

    #[test]
    fn a_refused_host_route_removes_the_pair_the_record_and_the_address_with_code_5() {
        let (net, args, n, ipam, node) = setup();
        net.fail_next("route 10.7.0.5/32", fake::errno::ENETDOWN);
        let e = add(&net, &args, &n, &ipam, &node).expect_err("refused");
        assert_eq!(e.code, 5, "{e:?}");
        fake::assert_all_undone(&net, &ipam, &[]);
        // The masquerade record comes after the host route: never made,
        // so never taken back.
        let lines = net.lines();
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("node masq") || l == "node unmasq"),
            "{lines:?}"
        );
    }

    #[test]
    fn only_a_gateway_elsewhere_in_the_pods_subnet_is_marked_on_link() {
        let ips: Vec<cni_spec::IpConfig> = serde_json::from_str(
            r#"[{"address":"10.1.0.5/24","gateway":"10.1.0.1"},
                {"address":"fd00:1::5/64","gateway":"fd00:1::1"}]"#,
        )
        .expect("ips");
        let on = |g: &str| needs_onlink(g.parse().expect("ip"), &ips);
        assert!(on("10.1.0.254") && on("fd00:1::fe"));
        assert!(!on("10.1.0.1") && !on("fd00:1::1"));
        assert!(!on("10.2.0.1") && !on("fd00:2::1"));
    }

    #[test]
    fn a_gatewayless_ipam_answer_is_code_7_and_released() {
        let (net, args, n, mut ipam, node) = setup();
        ipam.result.ips[0].gateway = None;
        let e = add(&net, &args, &n, &ipam, &node).expect_err("no gw");
        assert_eq!(e.code, 7, "{e:?}");
        fake::assert_all_undone(&net, &ipam, &[]);
    }

    #[test]
    fn an_ifname_already_in_the_pod_is_code_999_with_nothing_left() {
        let (net, args, n, ipam, node) = setup();
        net.add_existing("eth0");
        let e = add(&net, &args, &n, &ipam, &node).expect_err("taken");
        assert_eq!(e.code, 999, "{e:?}");
        fake::assert_all_undone(&net, &ipam, &["eth0"]);
    }

    #[test]
    fn del_of_a_pair_already_gone_still_releases_the_address() {
        let (net, _, _, ipam, _) = setup();
        let td = kit::podlink::del_teardown(Some(&net), None, "eth0", Some(&ipam), DEL_ORDER);
        td.finish().expect("DEL");
        assert_eq!(ipam.calls(), vec!["ipam del"]);
    }

    #[test]
    fn check_fails_with_999_when_the_host_end_or_the_pod_end_is_gone() {
        let (net, args, n, ipam, node) = setup();
        let r = add(&net, &args, &n, &ipam, &node).expect("ADD");
        let host = kit::veth::host_veth_name("ctr", "eth0", 0);
        check_core(fake::seam(&net), &r, &args).expect("CHECK of what ADD made");
        let routes = net.routes.take();
        let e = check_core(fake::seam(&net), &r, &args).expect_err("routes gone");
        assert!(e.msg.starts_with("Failed to find route"), "{}", e.msg);
        net.routes.replace(routes);
        net.remove(&host);
        let e = check_core(fake::seam(&net), &r, &args).expect_err("host end gone");
        assert_eq!(
            (e.code, e.msg.as_str()),
            (999, "CNI veth created for ptp was not found")
        );
        net.remove("eth0");
        let e = check_core(fake::seam(&net), &r, &args).expect_err("pod end gone");
        assert_eq!(e.msg, "Interface name eth0 not found");
    }
}
