//! What the plugins that give the pod one link share (macvlan, ipvlan,
//! vlan, dummy, tap, host-device, and the veth plugins' container side):
//! the master lookup, creation inside the pod, the IPAM step of an ADD, the
//! CHECK of the container interface against prevResult, and DEL / GC /
//! STATUS tails. Everything that talks to the kernel goes through
//! [`LinkOps`], and IPAM through [`IpamOps`], so that a plugin's verb core
//! runs on the recording fakes in unit tests.

use crate::ops::LinkOps;
use crate::undo::Undo;
use cni_skel::{CmdArgs, Command};
use cni_spec::error::CniResult;
use cni_spec::{Error, Interface, Result};
use netlink::{Family, Link, LinkSpec};

/// The IPAM plugin of a network, as an ADD core sees it.
pub trait IpamOps {
    /// ADD: the addresses (at least one, or an error).
    fn add(&self) -> CniResult<Result>;
    /// DEL: releases what ADD allocated.
    fn del(&self) -> CniResult<()>;
}

/// The IPAM plugin `plugin`, delegated to with the plugin's own stdin.
pub struct Delegated<'a> {
    /// The IPAM plugin's type.
    pub plugin: &'a str,
    /// The plugin's invocation.
    pub args: &'a CmdArgs,
}

impl IpamOps for Delegated<'_> {
    fn add(&self) -> CniResult<Result> {
        cni_invoke::ipam_add(self.plugin, self.args)
    }
    fn del(&self) -> CniResult<()> {
        cni_invoke::delegate(self.plugin, Command::Del, self.args, &self.args.stdin)
    }
}

/// The IPAM plugin named in the network config, if any (`ipam.type`).
pub fn ipam_type(args: &CmdArgs) -> Option<String> {
    args.conf
        .ipam_type()
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// Runs IPAM's ADD and registers its release on `undo`.
pub fn ipam_add<'a>(ipam: &'a dyn IpamOps, undo: &mut Undo<'a>) -> CniResult<Result> {
    let r = ipam.add()?;
    undo.push("release IPAM address", move || ipam.del());
    Ok(r)
}

/// The device of the first default route in the main table, IPv4 before
/// IPv6 (the order the kernel dumps them, which the reference relies on).
pub fn default_route_iface<S: LinkOps + ?Sized>(sock: &S) -> CniResult<String> {
    let routes = sock.routes(Family::All, Some(254)).map_err(crate::err)?;
    for r in routes.iter().filter(|r| r.dst.is_none()) {
        // A multipath default route has no single device: keep looking.
        let Some(oif) = r.oif else { continue };
        if let Some(l) = sock.link_by_index(oif).map_err(crate::err)? {
            return Ok(l.name);
        }
    }
    Err(Error::invalid_config("no default route interface found"))
}

/// The master `name` looked up through `sock` (the node's namespace, or the
/// pod's with `linkInContainer`), with the config's `mtu` checked against
/// it (0 = inherit).
pub fn master<S: LinkOps + ?Sized>(sock: &S, name: &str, mtu: i64) -> CniResult<Link> {
    let master = sock
        .link_by_name(name)
        .map_err(crate::err)?
        .ok_or_else(|| {
            Error::invalid_config(format!("failed to lookup master {name:?}: Link not found"))
        })?;
    if mtu < 0 || mtu > i64::from(master.mtu) {
        return Err(Error::invalid_config(format!(
            "invalid MTU {mtu}, must be [0, master MTU({})]",
            master.mtu
        )));
    }
    Ok(master)
}

/// The two namespaces of a one-link plugin's ADD and CHECK, as the seam:
/// the node's (`host`), the pod's (`cont`) and the pod's namespace handle
/// (its fd goes into link specs; its path into messages).
#[derive(Clone, Copy)]
pub struct Seam<'a> {
    /// The node's namespace.
    pub host: &'a dyn LinkOps,
    /// The pod's namespace.
    pub cont: &'a dyn LinkOps,
    /// The pod's namespace handle.
    pub cns: &'a netns::NetNs,
}

impl<'a> Seam<'a> {
    /// Where the master lives and the creating request goes: the node's
    /// namespace, or the pod's with `linkInContainer`.
    pub fn master_side(&self, in_container: bool) -> &'a dyn LinkOps {
        if in_container {
            self.cont
        } else {
            self.host
        }
    }

    /// The namespace fd a link created from the node must carry (none when
    /// it is created in the pod already).
    pub fn pod_fd(&self, in_container: bool) -> Option<std::os::fd::RawFd> {
        (!in_container).then(|| self.cns.fd())
    }
}

/// The real namespaces of an ADD or CHECK: the pod's opened from
/// `CNI_NETNS` (code 3 when it cannot be), sockets in it and in the node's.
pub struct Namespaces {
    /// The pod's namespace.
    pub cns: netns::NetNs,
    /// A socket in the pod's namespace.
    pub cont: netlink::Socket,
    /// A socket in the node's namespace.
    pub host: netlink::Socket,
}

impl Namespaces {
    /// Opens the pod's namespace of `args` and both sockets.
    pub fn open(args: &CmdArgs) -> CniResult<Namespaces> {
        let cns = crate::open_ns(args.require_netns()?)?;
        let cont = netlink::Socket::route_in(&cns).map_err(crate::err)?;
        let host = netlink::Socket::route().map_err(crate::err)?;
        Ok(Namespaces { cns, cont, host })
    }

    /// The seam over these namespaces.
    pub fn seam(&self) -> Seam<'_> {
        Seam {
            host: &self.host,
            cont: &self.cont,
            cns: &self.cns,
        }
    }
}

/// One ADD or CHECK of a one-link plugin on the seam: the namespaces, the
/// invocation and the IPAM plugin (if any).
#[derive(Clone, Copy)]
pub struct Call<'a> {
    /// The namespaces.
    pub at: Seam<'a>,
    /// The invocation.
    pub args: &'a CmdArgs,
    /// The IPAM plugin, if the config names one.
    pub ipam: Option<&'a dyn IpamOps>,
}

impl Call<'_> {
    /// The pod's veth pair for this call ([`crate::veth::setup_veth`]):
    /// the host end in `at.host`, `args.ifname` in the pod. The host end
    /// ignores router advertisements from then on, through `node`, as the
    /// reference's veth setup leaves every host end.
    pub fn setup_veth(
        &self,
        opts: &crate::veth::VethOptions<'_>,
        node: &dyn VethNode,
    ) -> crate::Result<crate::veth::VethPair> {
        let (at, args) = (self.at, self.args);
        let pair = crate::veth::setup_veth(
            at.host,
            at.cont,
            at.cns,
            &args.container_id,
            &args.ifname,
            opts,
        )?;
        node.ignore_router_advertisements(&pair.host.name);
        Ok(pair)
    }
}

/// `ipam` (the plugin's type, if any) as delegated IPAM of `args`.
pub fn delegated<'a>(ipam: Option<&'a str>, args: &'a CmdArgs) -> Option<Delegated<'a>> {
    ipam.map(|plugin| Delegated { plugin, args })
}

impl Namespaces {
    /// The call over these namespaces with `ipam` (from [`delegated`]).
    pub fn call<'a>(&'a self, args: &'a CmdArgs, ipam: &'a Option<Delegated<'a>>) -> Call<'a> {
        Call {
            at: self.seam(),
            args,
            ipam: ipam.as_ref().map(|i| i as &dyn IpamOps),
        }
    }
}

/// The node-side steps a veth plugin's ADD takes besides netlink: the
/// masquerade record of the pod's subnets and the wait for carrier.
pub trait VethNode {
    /// Records the pod's subnets for masquerading.
    fn masq_attach(&self, subnets: Vec<ipnet::IpNet>) -> CniResult<()>;
    /// Forgets them again (undo).
    fn masq_detach(&self) -> crate::Result<()>;
    /// Waits until both veth ends can carry traffic.
    fn wait_up(&self, host_index: u32, cont_index: u32) -> CniResult<()>;
    /// Brings the host end up (the pod's end is up already: this gives
    /// both carrier) and waits until both ends can carry traffic.
    fn host_up_and_wait(&self, host_index: u32, cont_index: u32) -> CniResult<()>;
    /// Best effort: the host end `host_veth` ignores router advertisements
    /// (`accept_ra` 0), as the reference sets it. Otherwise, on a node
    /// without IPv6 forwarding, a pod could send one and become the node's
    /// IPv6 default gateway.
    fn ignore_router_advertisements(&self, host_veth: &str);
}

/// How long ADD waits for a veth's ends to become operational.
const OPER_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);

/// [`VethNode`] on the real node: the network's masquerade records
/// (`state_dir`, `network`) and the namespaces' sockets.
pub struct RealVethNode<'a> {
    /// The namespaces.
    pub ns: &'a Namespaces,
    /// The invocation (container id and interface of the record).
    pub args: &'a CmdArgs,
    /// The network's masquerade records.
    pub masq: crate::NetworkMasq,
}

impl<'a> RealVethNode<'a> {
    /// The node of `args` for the network `network` (records under
    /// `state_dir`).
    pub fn new(
        ns: &'a Namespaces,
        args: &'a CmdArgs,
        state_dir: Option<&std::path::Path>,
        network: &str,
    ) -> RealVethNode<'a> {
        RealVethNode {
            ns,
            args,
            masq: crate::NetworkMasq::new(state_dir, network),
        }
    }
}

impl VethNode for RealVethNode<'_> {
    fn masq_attach(&self, subnets: Vec<ipnet::IpNet>) -> CniResult<()> {
        let a = self.args;
        self.masq
            .attach(&a.container_id, &a.ifname, subnets)
            .map_err(Error::from)
    }

    fn masq_detach(&self) -> crate::Result<()> {
        self.masq.detach(&self.args.container_id, &self.args.ifname)
    }

    fn wait_up(&self, host_index: u32, cont_index: u32) -> CniResult<()> {
        crate::wait_operational(
            &[(&self.ns.host, host_index), (&self.ns.cont, cont_index)],
            OPER_UP_TIMEOUT,
        )
        .map_err(Error::from)
    }

    fn ignore_router_advertisements(&self, host_veth: &str) {
        // The node's namespace is this thread's: the sysctl is its own.
        // IPv6 may be off there (no such file): nothing to ignore then.
        let _ = crate::sysctl_set(&format!("net/ipv6/conf/{host_veth}/accept_ra"), "0");
    }

    fn host_up_and_wait(&self, host_index: u32, cont_index: u32) -> CniResult<()> {
        let (host, cont) = (&self.ns.host, &self.ns.cont);
        // Both namespaces' notifications are watched from before carrier,
        // so the link-watch work's "operationally up" cannot be missed; the
        // wait then never queues behind whatever takes the RTNL lock next.
        let watches = host
            .watch_links()
            .and_then(|h| Ok((h, cont.watch_links()?)));
        host.set_link_up(host_index).map_err(crate::err)?;
        let Ok((on_host, in_pod)) = watches else {
            return self.wait_up(host_index, cont_index);
        };
        let deadline = std::time::Instant::now() + OPER_UP_TIMEOUT;
        // Not up by the deadline is not an error, as with the polling wait:
        // the pod works, its first packets may be retransmitted.
        on_host
            .until_oper_up(host_index, deadline)
            .and_then(|_| in_pod.until_oper_up(cont_index, deadline))
            .map_err(crate::err)?;
        Ok(())
    }
}

/// CHECK: the error for a pod link of another kind than `kind`; `word`
/// starts the message as the plugin words it ("Error" or "error").
pub fn not_of_type(c: &Link, word: &str, kind: &str) -> Error {
    Error::internal(format!(
        "{word}: Container interface {} not of type {kind}",
        c.name
    ))
}

/// Opens the namespaces of `args` and loads the config with `load(args,
/// host, cont)`.
pub fn open_with<N>(
    args: &CmdArgs,
    load: impl FnOnce(&CmdArgs, &dyn LinkOps, &dyn LinkOps) -> CniResult<N>,
) -> CniResult<(Namespaces, N)> {
    let ns = Namespaces::open(args)?;
    let n = load(args, &ns.host, &ns.cont)?;
    Ok((ns, n))
}

/// The error for a pod interface name that is taken (code 999).
pub fn exists_in_pod(ifname: &str, ns_path: &std::path::Path) -> Error {
    Error::internal(format!(
        "container interface {ifname:?} already exists in {}",
        ns_path.display()
    ))
}

/// Creates `spec` (named `ifname`, landing in the pod) after checking the
/// pod has no `ifname` yet, and reads it back from the pod; `what` names
/// the kind in messages. A kernel refusal is code 5.
pub fn create_in_pod(
    at: Seam<'_>,
    in_container: bool,
    spec: &LinkSpec,
    what: &str,
) -> CniResult<Link> {
    let ifname = spec.name.as_str();
    if at.cont.link_by_name(ifname).map_err(crate::err)?.is_some() {
        return Err(exists_in_pod(ifname, at.cns.path()));
    }
    at.master_side(in_container)
        .create_link(spec)
        .map_err(|e| Error::io(format!("failed to create {what}: {e}")))?;
    refetch(at.cont, ifname, what)
}

/// The pod link `ifname`, read back after its creation.
pub fn refetch<C: LinkOps + ?Sized>(cont: &C, ifname: &str, what: &str) -> CniResult<Link> {
    cont.link_by_name(ifname)
        .map_err(crate::err)?
        .ok_or_else(|| Error::internal(format!("failed to refetch {what} {ifname:?}")))
}

/// Registers the deletion of the new pod link on `undo`.
pub fn undo_link<'a, C: LinkOps + ?Sized>(
    undo: &mut Undo<'a>,
    cont: &'a C,
    link: &Link,
    what: &str,
) {
    let index = link.index;
    undo.push(format!("delete {what}"), move || cont.delete_link(index));
}

/// The result's entry for the pod's link.
pub fn pod_interface(link: &Link, sandbox: &str) -> Interface {
    Interface {
        name: link.name.clone(),
        mac: crate::mac::format(&link.mac),
        sandbox: sandbox.to_string(),
        ..Default::default()
    }
}

/// The addressing step of a one-link ADD: with IPAM, its addresses and
/// routes become the result's (for interface 0), `announce` runs (the
/// plugin's best-effort sysctls), and the link is configured with `opts`;
/// without, the link only comes up.
pub fn address_or_up<'a, C: LinkOps + ?Sized>(
    cont: &C,
    link: &Link,
    ipam: Option<&'a dyn IpamOps>,
    undo: &mut Undo<'a>,
    result: &mut Result,
    announce: impl FnOnce(),
    opts: &crate::IfaceOptions,
) -> CniResult<()> {
    let Some(ipam) = ipam else {
        return up_only(cont, link);
    };
    result.adopt_ipam(ipam_add(ipam, undo)?, 0);
    announce();
    crate::configure_iface(cont, link, result, opts).map_err(Error::from)
}

/// Brings the pod link up, for an ADD without addresses (code 5 when the
/// kernel refuses).
pub fn up_only<C: LinkOps + ?Sized>(cont: &C, link: &Link) -> CniResult<()> {
    cont.set_link_up(link.index)
        .map_err(|e| Error::io(format!("failed to set {:?} UP: {e}", link.name)))
}

/// CHECK: `prevResult`, required (`msg` is the plugin's wording).
pub fn prev_required(args: &CmdArgs, msg: &str) -> CniResult<Result> {
    args.conf
        .prev_result()?
        .ok_or_else(|| Error::invalid_config(msg.to_string()))
}

/// CHECK: the container interface `ifname` in `sandbox` as `prev` lists it;
/// `missing` words the error when it does not (code 999).
pub fn prev_iface<'p>(
    prev: &'p Result,
    ifname: &str,
    sandbox: &str,
    missing: impl FnOnce() -> String,
) -> CniResult<&'p Interface> {
    prev.interfaces
        .iter()
        .find(|i| i.name == ifname && i.sandbox == sandbox)
        .ok_or_else(|| Error::internal(missing()))
}

/// CHECK: the pod link `name`, which must exist (`missing`: the message).
pub fn pod_link<C: LinkOps + ?Sized>(
    cont: &C,
    name: &str,
    missing: impl FnOnce() -> String,
) -> CniResult<Link> {
    cont.link_by_name(name)
        .map_err(crate::err)?
        .ok_or_else(|| Error::internal(missing()))
}

/// CHECK: a link made on `master` still sits on it (the master lives in
/// the node's namespace unless `in_container`; the kernel then reports its
/// netns id).
pub fn check_parent(c: &Link, master: &Link, in_container: bool, what: &str) -> CniResult<()> {
    if c.link == Some(master.index) && c.link_netnsid.is_some() != in_container {
        return Ok(());
    }
    Err(Error::internal(format!(
        "container {what} {} is not on master {:?}",
        c.name, master.name
    )))
}

/// CHECK of the pod's link `ifname` as `cont` sees it: it exists
/// ("Interface name … not found"), `is_kind` holds for it ("not of type
/// `kind`"), and its MAC is `want_mac` (unchecked when empty), all code
/// 999 as the reference words them.
pub fn check_pod_link<C: LinkOps + ?Sized>(
    cont: &C,
    ifname: &str,
    is_kind: impl FnOnce(&Link) -> bool,
    kind: &str,
    want_mac: &str,
) -> CniResult<Link> {
    let l = pod_link(cont, ifname, || {
        format!("Interface name {ifname} not found")
    })?;
    if !is_kind(&l) {
        return Err(not_of_type(&l, "Error", kind));
    }
    check_mac(&l, want_mac, "Interface")?;
    Ok(l)
}

/// Whether `l` is a veth.
pub fn is_veth(l: &Link) -> bool {
    l.kind.as_deref() == Some("veth")
}

/// CHECK's tail for the pod's link `c`: the MAC prevResult lists for it
/// ([`check_mac`]), then its addresses and the routes of `prev`.
pub fn check_mac_ips_routes<C: LinkOps + ?Sized>(
    cont: &C,
    c: &Link,
    want: &str,
    prev: &Result,
    word: &str,
) -> CniResult<()> {
    check_mac(c, want, word)?;
    check_ips_routes(cont, c, prev)
}

/// CHECK: the MAC prevResult lists for `c` (`want`, unchecked when empty);
/// `word` starts the message, as each plugin words it.
pub fn check_mac(c: &Link, want: &str, word: &str) -> CniResult<()> {
    let have = crate::mac::format(&c.mac);
    if !want.is_empty() && want != have {
        return Err(Error::internal(format!(
            "{word} {} Mac {want} doesn't match container Mac: {have}",
            c.name
        )));
    }
    Ok(())
}

/// CHECK: the addresses of `prev` on `c`, and its routes.
pub fn check_ips_routes<C: LinkOps + ?Sized>(cont: &C, c: &Link, prev: &Result) -> CniResult<()> {
    crate::validate_iface_ips(cont, c, prev).map_err(Error::from)?;
    crate::validate_routes(cont, prev).map_err(Error::from)?;
    Ok(())
}

/// The order a plugin's DEL takes its two steps in, as its reference
/// counterpart does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelOrder {
    /// The address is released, then the pod link deleted.
    IpamFirst,
    /// The pod link is deleted, then the address released (so the address
    /// is never handed out while its old interface still exists).
    LinkFirst,
}

/// DEL's steps for a plugin with one link in the pod: the pod link and the
/// IPAM release, in the plugin's `order`, each even if the other fails; the
/// teardown goes on with the plugin's own steps.
pub fn del_steps(args: &CmdArgs, ipam: Option<&str>, order: DelOrder) -> crate::Teardown {
    // A failed open is reported, and the teardown goes on (IPAM).
    let (pod, open_error) = match crate::iface::open_pod(args.netns_path()) {
        Ok(s) => (s, None),
        Err(e) => (None, Some(e)),
    };
    let ipam = delegated(ipam, args);
    del_teardown(
        pod.as_ref().map(|s| s as &dyn LinkOps),
        open_error,
        &args.ifname,
        ipam.as_ref().map(|i| i as &dyn IpamOps),
        order,
    )
}

/// The subnets of `result`'s addresses, each once, in order (what a
/// masquerade record holds).
pub fn subnets_of(result: &Result) -> Vec<ipnet::IpNet> {
    let mut v: Vec<ipnet::IpNet> = Vec::new();
    for ip in &result.ips {
        let s = ip.address.trunc();
        if !v.contains(&s) {
            v.push(s);
        }
    }
    v
}

/// GC: the attachments the runtime keeps (`cni.dev/valid-attachments`),
/// as (container id, interface) pairs.
pub fn gc_keep(args: &CmdArgs) -> Vec<(String, String)> {
    args.conf
        .gc_attachments()
        .into_iter()
        .map(|a| (a.container_id, a.ifname))
        .collect()
}

/// DEL's step for a network that masquerades (`on`): forgets the pod's
/// record among the network's (`network`, under `state_dir`).
pub fn masq_del_step(
    td: &mut crate::Teardown,
    on: bool,
    state_dir: Option<&std::path::Path>,
    network: &str,
    args: &CmdArgs,
) {
    if on {
        let masq = crate::NetworkMasq::new(state_dir, network);
        td.step(masq.detach(&args.container_id, &args.ifname));
    }
}

/// DEL of a plugin whose only state is one link in the pod and an IPAM
/// allocation: [`del_steps`], nothing after.
pub fn del_one_link(args: &CmdArgs, ipam: Option<&str>, order: DelOrder) -> crate::Result<()> {
    del_steps(args, ipam, order).finish()
}

/// DEL on the seam: deletes `ifname` through `pod` (`None`: no namespace,
/// nothing to delete; `open_error`: the namespace could not be opened) and
/// releases the address, in the plugin's `order`, both even
/// if the other fails: a [`crate::Teardown`], where IPAM's own code wins
/// over a generic 5. A link already gone is success. The teardown is
/// returned for the plugin's own further steps.
pub fn del_teardown(
    pod: Option<&dyn LinkOps>,
    open_error: Option<crate::Error>,
    ifname: &str,
    ipam: Option<&dyn IpamOps>,
    order: DelOrder,
) -> crate::Teardown {
    let mut td = crate::Teardown::new();
    let release = |td: &mut crate::Teardown| {
        if let Some(ipam) = ipam {
            td.step(ipam.del());
        }
    };
    if order == DelOrder::IpamFirst {
        release(&mut td);
    }
    if let Some(e) = open_error {
        td.push(e);
    }
    if let Some(s) = pod {
        td.step(crate::iface::delete_link_named(s, ifname));
    }
    if order == DelOrder::LinkFirst {
        release(&mut td);
    }
    td
}

/// NAME, DEL, CHECK, GC and STATUS of a one-link plugin with a master, as
/// the `Plugin` methods: `one_link_verbs!(name, load, check, parse, order)`.
/// `parse` maps the `CmdArgs` to `CniResult<(Conf, Option<String>)>` (the
/// config parsed as the plugin does, and the IPAM plugin's type). DEL releases the
/// address and deletes the pod link in the plugin's `order` (a
/// [`DelOrder`]), both even if the other fails. CHECK opens the
/// namespaces, runs `load(args, host, cont)` (its `Network` has an `ipam:
/// Option<String>`), IPAM's CHECK, then `check(cont, &network, args)`. GC
/// and STATUS go to IPAM.
#[macro_export]
macro_rules! one_link_verbs {
    ($name:literal, $load:path, $check:path, $parse:path, $order:expr) => {
        fn name(&self) -> &'static str {
            $name
        }

        fn del(&self, args: &cni_skel::CmdArgs) -> cni_spec::error::CniResult<()> {
            let ipam = $parse(args)?.1;
            Ok($crate::podlink::del_one_link(
                args,
                ipam.as_deref(),
                $order,
            )?)
        }

        fn check(&self, args: &cni_skel::CmdArgs) -> cni_spec::error::CniResult<()> {
            let (ns, n) = $crate::podlink::open_with(args, $load)?;
            $crate::pass_to_ipam(n.ipam.as_deref(), cni_skel::Command::Check, args)?;
            $check(&ns.cont, &n, args)
        }

        $crate::ipam_gc_and_status!(|args| $parse(args).map(|p| p.1));
    };
}

/// GC and STATUS of a plugin whose only state beyond its links is its
/// IPAM's, as the two `Plugin` methods; `$ipam` maps the `CmdArgs` to
/// `CniResult<Option<String>>` (the config parsed as the plugin does).
#[macro_export]
macro_rules! ipam_gc_and_status {
    ($ipam:expr) => {
        fn gc(&self, args: &cni_skel::CmdArgs) -> cni_spec::error::CniResult<()> {
            let ipam: cni_spec::error::CniResult<Option<String>> = $ipam(args);
            $crate::pass_to_ipam(ipam?.as_deref(), cni_skel::Command::Gc, args)
        }

        fn status(&self, args: &cni_skel::CmdArgs) -> cni_spec::error::CniResult<()> {
            let ipam: cni_spec::error::CniResult<Option<String>> = $ipam(args);
            $crate::pass_to_ipam(ipam?.as_deref(), cni_skel::Command::Status, args)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::fake::RecordingNet;

    /// An IPAM whose release lands in the fake's log, so its place among
    /// the netlink operations shows.
    struct NotedIpam<'a>(&'a RecordingNet);

    impl IpamOps for NotedIpam<'_> {
        fn add(&self) -> CniResult<Result> {
            Err(Error::internal("not used"))
        }
        fn del(&self) -> CniResult<()> {
            self.0.note("ipam del".into());
            Ok(())
        }
    }

    fn del_lines(order: DelOrder) -> Vec<String> {
        let net = RecordingNet::new();
        net.add_existing("eth0");
        let ipam = NotedIpam(&net);
        del_teardown(Some(&net), None, "eth0", Some(&ipam), order)
            .finish()
            .expect("DEL");
        assert!(net.holds_only(&[]));
        net.lines()
    }

    #[test]
    fn del_takes_its_two_steps_in_the_order_asked() {
        assert_eq!(
            del_lines(DelOrder::IpamFirst),
            vec!["ipam del", "delete eth0"]
        );
        assert_eq!(
            del_lines(DelOrder::LinkFirst),
            vec!["delete eth0", "ipam del"]
        );
    }

    #[test]
    fn a_namespace_that_cannot_be_opened_still_releases_the_address() {
        let net = RecordingNet::new();
        let ipam = NotedIpam(&net);
        let open = crate::Error::io(
            "cannot open",
            std::io::Error::from_raw_os_error(libc::EACCES),
        );
        let e = del_teardown(None, Some(open), "eth0", Some(&ipam), DelOrder::LinkFirst)
            .finish()
            .expect_err("reported");
        assert!(e.to_string().contains("cannot open"), "{e}");
        assert_eq!(net.lines(), vec!["ipam del"]);
    }
}
