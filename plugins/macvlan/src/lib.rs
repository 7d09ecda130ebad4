//! `macvlan`: the container gets a macvlan on a node interface (`master`),
//! with its own MAC on the master's L2 segment. No host-side device, no
//! routing on the node: the pod sits directly on the master's network.
//! Without an `ipam` section the link only comes up (L2 only).

#[doc(hidden)]
pub mod fuzzing;
use cni_skel::{CmdArgs, Plugin};
use cni_spec::conf::bool_or_string as flex;
use cni_spec::error::CniResult;
use cni_spec::runtime_config::{ArgsMac, MacOnly};
use cni_spec::{Error, Result};
use kit::ops::LinkOps;
use kit::podlink;
use kit::Undo;
use netlink::{Link, LinkKind, LinkSpec, MacvlanMode};
use serde::Deserialize;

/// The macvlan plugin as the CNI skeleton runs it: creates the pod's
/// macvlan on ADD, deletes it on DEL.
pub struct Macvlan;

/// The order DEL takes the pod link and the address in (as the reference: the address is never handed out while its old interface still exists).
const DEL_ORDER: podlink::DelOrder = podlink::DelOrder::LinkFirst;

#[derive(Debug, Clone, Deserialize)]
struct Conf {
    /// Empty: the interface of the default route (in the container's
    /// namespace with `linkInContainer`).
    #[serde(default)]
    master: String,
    #[serde(default)]
    mode: String,
    /// 0 = inherit the master's MTU.
    #[serde(default)]
    mtu: i64,
    #[serde(default)]
    mac: String,
    #[serde(rename = "linkInContainer", default, deserialize_with = "flex")]
    link_in_container: bool,
    /// Broadcast queue length (IFLA_MACVLAN_BC_QUEUE_LEN, Linux 5.11+);
    /// 0: the kernel's default.
    #[serde(default)]
    bcqueuelen: u32,
    /// rcni: `args.cni.mac` as the bridge plugin reads it (the reference
    /// macvlan ignores this section).
    #[serde(default)]
    args: Option<ArgsMac>,
    #[serde(rename = "runtimeConfig", default)]
    runtime_config: Option<MacOnly>,
}

/// The config with master resolved and MTU, mode and MAC validated.
struct Network {
    master: Link,
    mode: MacvlanMode,
    mtu: Option<u32>,
    mac: Option<[u8; 6]>,
    in_container: bool,
    ipam: Option<String>,
    bcqueuelen: u32,
}

fn mode_from_str(s: &str) -> CniResult<MacvlanMode> {
    match s {
        "" | "bridge" => Ok(MacvlanMode::Bridge),
        "private" => Ok(MacvlanMode::Private),
        "vepa" => Ok(MacvlanMode::Vepa),
        "passthru" => Ok(MacvlanMode::Passthru),
        _ => Err(Error::invalid_config(format!(
            "unknown macvlan mode: {s:?}"
        ))),
    }
}

fn mode_name(m: MacvlanMode) -> &'static str {
    match m {
        MacvlanMode::Private => "private",
        MacvlanMode::Vepa => "vepa",
        MacvlanMode::Bridge => "bridge",
        MacvlanMode::Passthru => "passthru",
        MacvlanMode::Source => "source",
    }
}

/// Parses the config only: what DEL, GC and STATUS need (no master lookup,
/// so that they work after the master is gone).
fn parse(args: &CmdArgs) -> CniResult<(Conf, Option<String>)> {
    let c: Conf = args.parse_conf()?;
    Ok((c, podlink::ipam_type(args)))
}

/// ADD and CHECK: the parsed config plus the master looked up where it
/// lives (`host`, or `cont` with linkInContainer), and the MTU checked
/// against it.
fn load(args: &CmdArgs, host: &dyn LinkOps, cont: &dyn LinkOps) -> CniResult<Network> {
    let (c, ipam) = parse(args)?;
    let lookup = if c.link_in_container { cont } else { host };
    let name = if c.master.is_empty() {
        podlink::default_route_iface(lookup)?
    } else {
        c.master.clone()
    };
    let master = podlink::master(lookup, &name, c.mtu)?;
    let mode = mode_from_str(&c.mode)?;
    // MAC precedence: config, then CNI_ARGS MAC=, then args.cni.mac, then
    // runtimeConfig.mac (the last one given wins).
    let env = args.cni_args()?;
    env.check_known(&["MAC", "IP"])?;
    let mac = kit::mac::requested([
        Some(c.mac.as_str()),
        env.get("MAC"),
        c.args.as_ref().map(|a| a.cni.mac.as_str()),
        c.runtime_config.as_ref().map(|r| r.mac.as_str()),
    ])
    .map_err(|(s, e)| Error::invalid_config(format!("invalid args {s} for MAC addr: {e}")))?;
    let mtu = (c.mtu > 0).then_some(c.mtu as u32);
    Ok(Network {
        master,
        mode,
        mtu,
        mac,
        in_container: c.link_in_container,
        ipam,
        bcqueuelen: c.bcqueuelen,
    })
}

/// A temporary name for the fallback below, unique enough per call.
fn temp_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(kit::os::pid());
    format!("mvtmp{:08x}", h.finish() as u32)
}

/// Creates the macvlan as `ifname` directly inside the container namespace:
/// never visible in the node namespace, no rename step. The parent is
/// resolved in the namespace the request is sent from (the node's, or the
/// pod's with linkInContainer).
fn create_macvlan(at: podlink::Seam<'_>, n: &Network, ifname: &str) -> CniResult<Link> {
    let (creator, cont, cns) = (at.master_side(n.in_container), at.cont, at.cns);
    let spec = |name: &str| LinkSpec {
        mtu: n.mtu,
        mac: n.mac.map(|m| m.to_vec()),
        parent: Some(n.master.index),
        netns_fd: Some(cns.fd()),
        ..LinkSpec::new(name, LinkKind::Macvlan(n.mode))
    };
    let exists = || podlink::exists_in_pod(ifname, cns.path());
    match creator.create_link(&spec(ifname)) {
        Ok(()) => {}
        Err(e) if e.is_exists() => {
            if cont.link_by_name(ifname).map_err(kit::err)?.is_some() {
                return Err(exists());
            }
            // Older kernels checked the new name in the creating namespace
            // (the reason the reference always uses a temporary name):
            // create under a temporary name, then rename in the container.
            let tmp = temp_name();
            creator
                .create_link(&spec(&tmp))
                .map_err(|e| Error::io(format!("failed to create macvlan: {e}")))?;
            let l = cont
                .link_by_name(&tmp)
                .map_err(kit::err)?
                .ok_or_else(|| Error::internal(format!("macvlan {tmp:?} vanished")))?;
            if let Err(e) = cont.set_name(l.index, ifname) {
                let _ = cont.delete_link(l.index);
                return Err(Error::io(format!(
                    "failed to rename macvlan to {ifname:?}: {e}"
                )));
            }
        }
        Err(e) => return Err(Error::io(format!("failed to create macvlan: {e}"))),
    }
    podlink::refetch(cont, ifname, "macvlan")
}

/// Applies `bcqueuelen` to the new macvlan and reads it back. Kernels
/// before 5.11 ignore the attribute silently (the reference then goes on
/// without it); rcni refuses instead, so that a pod never runs with a
/// setting it asked for and did not get.
fn set_bc_queue_len(cont: &dyn LinkOps, index: u32, len: u32) -> CniResult<()> {
    cont.set_macvlan_bc_queue_len(index, len)
        .map_err(|e| Error::io(format!("failed to set bcqueuelen {len}: {e}")))?;
    let l = cont
        .link_by_index(index)
        .map_err(kit::err)?
        .ok_or_else(|| Error::internal(format!("macvlan #{index} vanished")))?;
    match l.macvlan_bc_queue_len() {
        Some(got) if got == len => Ok(()),
        Some(got) => Err(Error::io(format!(
            "bcqueuelen {len} asked for, the kernel keeps {got}"
        ))),
        None => Err(Error::new(
            cni_spec::ErrorCode::UnsupportedField,
            format!(
                "bcqueuelen is not supported by this kernel (Linux {}): \
                 the macvlan broadcast queue length needs Linux 5.11 or newer",
                kernel_release()
            ),
        )),
    }
}

/// `uname -r` of the running kernel, for error messages.
fn kernel_release() -> String {
    kit::os::read_to_string(std::path::Path::new("/proc/sys/kernel/osrelease"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

impl Plugin for Macvlan {
    kit::one_link_verbs!("macvlan", load, check_core, parse, DEL_ORDER);

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let ifname = args.ifname.as_str();
        let (ns, n) = podlink::open_with(args, load)?;
        let ipam = podlink::delegated(n.ipam.as_deref(), args);
        // Announce the pod's addresses on the segment as the link comes
        // up (gratuitous ARP / unsolicited NA), so neighbours holding a
        // stale entry for a reused address learn the new MAC at once.
        let announce = || {
            let _ = ns.cns.run(|| {
                let _ = kit::sysctl_set(&format!("net/ipv4/conf/{ifname}/arp_notify"), "1");
                let _ = kit::sysctl_set(&format!("net/ipv6/conf/{ifname}/ndisc_notify"), "1");
            });
        };
        let mut result = add_core(ns.call(args, &ipam), &n, announce)?;
        // As the reference: the DNS of the network config, not IPAM's.
        result.dns = args.conf.dns.clone().unwrap_or_default();
        Ok(result)
    }
}

/// ADD on the seam: the macvlan made in the pod (through the node's
/// namespace, or the pod's with linkInContainer), its broadcast queue
/// length, then IPAM's addresses (after `announce`) or only the link up.
/// Undone on failure.
fn add_core(cx: podlink::Call<'_>, n: &Network, announce: impl FnOnce()) -> CniResult<Result> {
    let cont = cx.at.cont;
    let mut undo = Undo::new();
    let link = create_macvlan(cx.at, n, &cx.args.ifname)?;
    podlink::undo_link(&mut undo, cont, &link, "macvlan");
    if n.bcqueuelen > 0 {
        set_bc_queue_len(cont, link.index, n.bcqueuelen)?;
    }
    let mut result = Result::new(cx.args.version());
    result.interfaces = vec![podlink::pod_interface(&link, &cx.args.netns)];
    let opts = kit::IfaceOptions {
        addresses_first: true,
        ..Default::default()
    };
    podlink::address_or_up(
        cont,
        &link,
        cx.ipam,
        &mut undo,
        &mut result,
        announce,
        &opts,
    )?;
    if cni_skel::failure_injected("after-setup") {
        return Err(Error::internal("injected failure at after-setup"));
    }
    undo.commit();
    Ok(result)
}

/// CHECK on the seam: the pod's macvlan against prevResult and the config.
fn check_core(cont: &dyn LinkOps, n: &Network, args: &CmdArgs) -> CniResult<()> {
    let prev = podlink::prev_required(args, "required prevResult missing")?;
    let (ifname, sandbox) = (&args.ifname, &args.netns);
    let c_if = podlink::prev_iface(&prev, ifname, sandbox, || {
        format!("no interface {ifname:?} with sandbox {sandbox} in prevResult")
    })?;
    let c = podlink::pod_link(cont, &c_if.name, || {
        format!(
            "container Interface name in prevResult: {} not found",
            c_if.name
        )
    })?;
    let Some(mode) = c
        .macvlan_mode()
        .filter(|_| c.kind.as_deref() == Some("macvlan"))
    else {
        return Err(podlink::not_of_type(&c, "error", "macvlan"));
    };
    if mode != n.mode {
        return Err(Error::internal(format!(
            "container macvlan mode {} does not match expected value: {}",
            mode_name(mode),
            mode_name(n.mode)
        )));
    }
    // rcni: the broadcast queue length asked for, where one was.
    if n.bcqueuelen > 0 && c.macvlan_bc_queue_len() != Some(n.bcqueuelen) {
        return Err(Error::internal(format!(
            "container macvlan {} bcqueuelen {:?} does not match expected value: {}",
            c.name,
            c.macvlan_bc_queue_len(),
            n.bcqueuelen
        )));
    }
    // rcni: also the parent. It lives in the node namespace unless
    // linkInContainer, and the kernel then reports its netns id.
    podlink::check_parent(&c, &n.master, n.in_container, "macvlan")?;
    podlink::check_mac_ips_routes(cont, &c, &c_if.mac, &prev, "interface")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_and_default_to_bridge() {
        assert_eq!(mode_from_str("").ok(), Some(MacvlanMode::Bridge));
        for m in ["bridge", "private", "vepa", "passthru"] {
            let parsed = mode_from_str(m).expect("known mode");
            assert_eq!(mode_name(parsed), m);
        }
        let e = mode_from_str("source").expect_err("not offered by the reference");
        assert_eq!(e.code, cni_spec::ErrorCode::InvalidConfig as u32);
    }
}

#[cfg(test)]
mod fake_tests {
    //! The verb cores on the recording fakes: operation order, undo, error
    //! codes, without root. The namespace tests stay the ground truth.
    use super::*;
    use kit::ops::fake::{self, call, with_prev, FakeIpam, RecordingNet};

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"n","type":"macvlan",
        "master":"eth9","ipam":{"type":"fake"}}"#;

    /// A fake node with master `eth9` (one fake for both namespaces), the
    /// loaded config, and the operations so far forgotten.
    fn node(conf: &str) -> (RecordingNet, Network, CmdArgs, u32) {
        let f = fake::node(conf);
        let n = f.load(load).expect("config loads");
        (f.net, n, f.args, f.master)
    }

    fn ipam() -> FakeIpam {
        FakeIpam::v4("10.1.0.5/24", "10.1.0.1")
    }

    #[test]
    fn add_creates_the_macvlan_in_the_pod_then_addresses_it_before_bringing_it_up() {
        let (net, n, args, master) = node(CONF);
        let ipam = ipam();
        let r = add_core(call(&net, &args, Some(&ipam)), &n, || {}).expect("ADD");
        let i = net.index_of("eth0");
        assert_eq!(
            net.lines(),
            vec![
                format!("create eth0 macvlan parent {master}"),
                "get eth0".to_string(),
                format!("addr {i} 10.1.0.5/24"),
                format!("up {i}"),
                format!("route 0.0.0.0/0 via 10.1.0.1 dev {i}"),
            ]
        );
        assert_eq!(ipam.calls(), vec!["ipam add"]);
        assert_eq!(r.interfaces[0].name, "eth0");
        assert_eq!(r.ips[0].interface, Some(0));
    }

    #[test]
    fn add_without_ipam_only_brings_the_link_up() {
        let conf = r#"{"cniVersion":"1.0.0","name":"n","type":"macvlan","master":"eth9"}"#;
        let (net, n, args, _) = node(conf);
        add_core(call(&net, &args, None), &n, || {}).expect("ADD");
        let i = net.index_of("eth0");
        assert_eq!(net.lines().last(), Some(&format!("up {i}")));
    }

    #[test]
    fn a_route_the_kernel_refuses_undoes_the_link_and_the_address_with_code_5() {
        let (net, n, args, _) = node(CONF);
        let ipam = ipam();
        net.fail_next("route", fake::errno::ENETUNREACH);
        let e = add_core(call(&net, &args, Some(&ipam)), &n, || {}).expect_err("refused");
        assert_eq!(e.code, 5, "{e:?}");
        fake::assert_all_undone(&net, &ipam, &["eth9"]);
    }

    #[test]
    fn a_refused_creation_is_code_5_and_asks_ipam_for_nothing() {
        let (net, n, args, _) = node(CONF);
        let ipam = ipam();
        net.fail_next("create", fake::errno::EPERM);
        let e = add_core(call(&net, &args, Some(&ipam)), &n, || {}).expect_err("refused");
        assert_eq!(e.code, 5, "{e:?}");
        assert!(ipam.calls().is_empty());
        assert!(net.holds_only(&["eth9"]));
    }

    #[test]
    fn an_ifname_already_in_the_pod_is_code_999_and_is_left_alone() {
        let (net, n, args, _) = node(CONF);
        net.add_existing("eth0");
        let e = add_core(call(&net, &args, None), &n, || {}).expect_err("taken");
        assert_eq!(e.code, 999, "{e:?}");
        assert!(e.msg.contains("already exists"), "{e:?}");
        assert!(net.link("eth0").is_some());
        assert!(!net.lines().iter().any(|l| l.starts_with("delete")));
    }

    #[test]
    fn an_ipam_failure_undoes_the_link_and_keeps_ipams_code() {
        let (net, n, args, _) = node(CONF);
        let mut ipam = ipam();
        ipam.fail_add = Some(Error::new(cni_spec::ErrorCode::TryAgainLater, "busy"));
        let e = add_core(call(&net, &args, Some(&ipam)), &n, || {}).expect_err("IPAM");
        assert_eq!(e.code, 11);
        assert!(net.holds_only(&["eth9"]));
    }

    #[test]
    fn del_of_a_link_already_gone_succeeds_and_still_releases_the_address() {
        let net = RecordingNet::new();
        let ipam = ipam();
        kit::podlink::del_teardown(Some(&net), None, "eth0", Some(&ipam), DEL_ORDER)
            .finish()
            .expect("DEL");
        assert_eq!(net.lines(), vec!["delete eth0"]);
        assert_eq!(ipam.calls(), vec!["ipam del"]);
    }

    #[test]
    fn check_of_a_missing_interface_is_code_999() {
        let (net, n, args, _) = node(CONF);
        let ipam = ipam();
        let r = add_core(call(&net, &args, Some(&ipam)), &n, || {}).expect("ADD");
        net.remove("eth0");
        let e = check_core(&net, &n, &with_prev(&args, &r)).expect_err("missing");
        assert_eq!(e.code, 999);
        assert_eq!(
            e.msg,
            "container Interface name in prevResult: eth0 not found"
        );
    }

    #[test]
    fn check_of_an_interface_of_another_kind_is_code_999() {
        let (net, n, args, _) = node(CONF);
        let ipam = ipam();
        let r = add_core(call(&net, &args, Some(&ipam)), &n, || {}).expect("ADD");
        net.retype("eth0", "dummy");
        let e = check_core(&net, &n, &with_prev(&args, &r)).expect_err("wrong kind");
        assert_eq!(e.code, 999);
        assert_eq!(e.msg, "error: Container interface eth0 not of type macvlan");
    }
}
