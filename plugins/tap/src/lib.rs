//! `tap`: a persistent tap device created inside the container namespace,
//! for a VM or userspace stack in the pod to open by name. Optionally a
//! port of an existing bridge in that namespace, optionally with IPAM
//! addresses. Follows the reference's cmdAdd: tap first, then IPAM.

#[doc(hidden)]
pub mod fuzzing;
use cni_skel::{CmdArgs, Plugin};
use cni_spec::conf::bool_or_string as flex;
use cni_spec::error::CniResult;
use cni_spec::runtime_config::MacOnly;
use cni_spec::{Error, ErrorCode, Result};
use kit::ops::LinkOps;
use kit::podlink;
use kit::Undo;
use netlink::tuntap::{self, Mode, TunTapSpec};
use netlink::Link;
use netns::NetNs;
use serde::Deserialize;

/// The tap plugin as the CNI skeleton runs it: creates the pod's tap
/// device on ADD, deletes it on DEL.
pub struct Tap;

/// The order DEL takes the pod link and the address in (as the reference).
const DEL_ORDER: podlink::DelOrder = podlink::DelOrder::IpamFirst;

#[derive(Debug, Clone, Deserialize)]
struct Conf {
    #[serde(rename = "multiQueue", default, deserialize_with = "flex")]
    multi_queue: bool,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    mac: String,
    #[serde(default)]
    owner: Option<u32>,
    #[serde(default)]
    group: Option<u32>,
    #[serde(rename = "selinuxContext", default)]
    selinux_context: String,
    /// A bridge that already exists in the container namespace.
    #[serde(default)]
    bridge: String,
    #[serde(rename = "runtimeConfig", default)]
    runtime_config: Option<MacOnly>,
}

struct Network {
    conf: Conf,
    ipam: Option<String>,
    mac: Option<[u8; 6]>,
}

fn load(args: &CmdArgs) -> CniResult<Network> {
    let c: Conf = args.parse_conf()?;
    // MAC: the config, then CNI_ARGS MAC, then runtimeConfig.mac (last wins).
    let env = args.cni_args()?;
    env.check_known(&["MAC"])?;
    let mac = kit::mac::requested([
        Some(c.mac.as_str()),
        env.get("MAC"),
        c.runtime_config.as_ref().map(|r| r.mac.as_str()),
    ])
    .map_err(|(_, e)| Error::from(e))?;
    if !c.bridge.is_empty() && !netlink::valid_ifname(&c.bridge) {
        return Err(Error::invalid_config(format!(
            "invalid bridge name {:?}",
            c.bridge
        )));
    }
    let ipam = podlink::ipam_type(args);
    Ok(Network { conf: c, ipam, mac })
}

/// The creation flags the reference ends up with: its netlink path (taken
/// when both owner and group are set) asks for IFF_VNET_HDR, plus
/// IFF_NO_PI with multi-queue; its `ip tuntap` path asks for IFF_NO_PI.
/// Whoever attaches later sets its own PI/VNET_HDR flags; only the tap
/// type and IFF_MULTI_QUEUE must match.
fn tap_spec(c: &Conf, ifname: &str) -> TunTapSpec {
    let vnet_hdr = c.owner.is_some() && c.group.is_some();
    let mut spec = TunTapSpec::new(ifname, Mode::Tap);
    spec.persist = true;
    spec.owner = c.owner;
    spec.group = c.group;
    spec.multi_queue = c.multi_queue;
    spec.vnet_hdr = vnet_hdr;
    spec.no_pi = !vnet_hdr || c.multi_queue;
    spec
}

fn selinux_enabled() -> bool {
    kit::os::exists(std::path::Path::new("/sys/fs/selinux/enforce"))
}

/// With `selinuxContext` the reference sets the exec label of its thread
/// and creates the tap with `ip tuntap add`: the tun device takes the label
/// of the task that creates it, and a label only applies across exec. Done
/// the same way here, on a thread of its own so that the label never leaks
/// into later execs (the IPAM plugin).
fn create_labelled(ns: &NetNs, c: &Conf, ifname: &str) -> CniResult<()> {
    let ctx = c.selinux_context.as_str();
    let work = || -> CniResult<()> {
        let label = kit::os::write_existing(
            std::path::Path::new("/proc/thread-self/attr/exec"),
            ctx.as_bytes(),
        );
        if let Err(e) = label {
            if !selinux_enabled() {
                return Err(Error::new(
                    ErrorCode::UnsupportedField,
                    format!(
                        "selinuxContext {ctx:?}: failed set socket label: {e} \
                         (SELinux is not enabled on this host)"
                    ),
                ));
            }
            return Err(Error::io(format!("failed set socket label {ctx:?}: {e}")));
        }
        let mut argv: Vec<String> = ["tuntap", "add", "mode", "tap", "name", ifname]
            .map(String::from)
            .to_vec();
        if c.multi_queue {
            argv.push("multi_queue".into());
        }
        if let Some(u) = c.owner {
            argv.extend(["user".into(), u.to_string()]);
        }
        if let Some(g) = c.group {
            argv.extend(["group".into(), g.to_string()]);
        }
        let out = kit::os::run("ip", &argv, None)
            .map_err(|e| Error::io(format!("failed to run ip tuntap add: {e}")))?;
        if !out.success() {
            return Err(Error::io(format!(
                "failed to create tap {ifname:?} with ip tuntap add: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.run(work)
                .map_err(|e| Error::io(format!("failed to enter netns: {e}")))?
        })
        .join()
        .unwrap_or_else(|_| Err(Error::internal("tap creation thread panicked")))
    })
}

fn create_tap(ns: &NetNs, c: &Conf, ifname: &str) -> CniResult<()> {
    if !c.selinux_context.is_empty() {
        return create_labelled(ns, c, ifname);
    }
    match tuntap::create(&tap_spec(c, ifname), Some(ns)) {
        // Persistent: the device stays when the queue file closes here.
        Ok(_files) => Ok(()),
        Err(e) if e.is_exists() => Err(Error::internal(format!(
            "container interface {ifname:?} already exists in netns {}",
            ns.path().display()
        ))),
        Err(e) => Err(kit::err(e)),
    }
}

/// IFLA_INFO_DATA attributes of a tun device.
const IFLA_TUN_OWNER: u16 = 1;
const IFLA_TUN_GROUP: u16 = 2;
const IFLA_TUN_TYPE: u16 = 3;
const IFLA_TUN_MULTI_QUEUE: u16 = 7;
const IFF_TAP: u8 = 2;

fn is_tap(l: &Link) -> bool {
    l.kind.as_deref() == Some("tun")
        && l.info_attrs()
            .get(IFLA_TUN_TYPE)
            .and_then(|a| a.u8())
            .is_some_and(|t| t == IFF_TAP)
}

impl Plugin for Tap {
    fn name(&self) -> &'static str {
        "tap"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let n = load(args)?;
        let ns = podlink::Namespaces::open(args)?;
        let ipam = podlink::delegated(n.ipam.as_deref(), args);
        let ifname = args.ifname.as_str();
        let create = || create_tap(&ns.cns, &n.conf, ifname);
        // Best effort, as the reference: announce the address on up.
        let announce = || {
            let key = format!("net/ipv4/conf/{ifname}/arp_notify");
            let _ = ns.cns.run(|| kit::sysctl_set(&key, "1"));
        };
        let mut result = add_core(ns.call(args, &ipam), &n, create, announce)?;
        // The reference reports the config's DNS only, not the IPAM's.
        result.dns = args.conf.dns.clone().unwrap_or_default();
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        // Gone netns or tap (or none given) is success.
        let ipam = load(args)?.ipam;
        Ok(podlink::del_one_link(args, ipam.as_deref(), DEL_ORDER)?)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let n = load(args)?;
        kit::pass_to_ipam(n.ipam.as_deref(), cni_skel::Command::Check, args)?;
        let prev = podlink::prev_required(args, "Required prevResult missing")?;
        let c_if = podlink::prev_iface(&prev, &args.ifname, &args.netns, || {
            format!(
                "Sandbox in prevResult  doesn't match configured netns: {}",
                args.netns
            )
        })?;
        let ns = podlink::Namespaces::open(args)?;
        check_core(&ns.cont, &n, &prev, &c_if.mac, args)
    }

    kit::ipam_gc_and_status!(|args| load(args).map(|n| n.ipam));
}

/// ADD on the seam: the tap made by `create` (a tun/tap ioctl or `ip
/// tuntap`, in the pod), its MTU, MAC and bridge, up, then IPAM's
/// addresses (after `announce`). Undone on failure.
fn add_core(
    cx: podlink::Call<'_>,
    n: &Network,
    create: impl FnOnce() -> CniResult<()>,
    announce: impl FnOnce(),
) -> CniResult<Result> {
    let (sock, ifname) = (cx.at.cont, cx.args.ifname.as_str());
    let mut undo = Undo::new();
    create()?;
    undo.push("delete tap", move || sock.delete_link_by_name(ifname));
    let index = sock
        .link_by_name(ifname)
        .map_err(kit::err)?
        .ok_or_else(|| Error::io(format!("failed to refetch tap {ifname:?}")))?
        .index;
    if n.conf.mtu > 0 {
        sock.set_mtu(index, n.conf.mtu).map_err(kit::err)?;
    }
    if let Some(mac) = &n.mac {
        sock.set_mac(index, mac).map_err(kit::err)?;
    }
    if !n.conf.bridge.is_empty() {
        let br = sock
            .link_by_name(&n.conf.bridge)
            .map_err(kit::err)?
            .ok_or_else(|| {
                Error::io(format!(
                    "failed to get bridge {}: not found in netns {}",
                    n.conf.bridge, cx.args.netns
                ))
            })?;
        sock.set_master(index, br.index).map_err(|e| {
            Error::io(format!(
                "failed to set tap {ifname} as a port of bridge {}: {e}",
                n.conf.bridge
            ))
        })?;
    }
    sock.set_link_up(index).map_err(kit::err)?;
    let link = sock
        .link_by_index(index)
        .map_err(kit::err)?
        .ok_or_else(|| Error::io(format!("tap {ifname:?} vanished")))?;

    let mut result = Result::new(cx.args.version());
    result.interfaces = vec![podlink::pod_interface(&link, &cx.args.netns)];
    if let Some(ipam) = cx.ipam {
        result.adopt_ipam(podlink::ipam_add(ipam, &mut undo)?, 0);
        announce();
        kit::configure_iface(sock, &link, &result, &kit::IfaceOptions::default())
            .map_err(Error::from)?;
    }
    if cni_skel::failure_injected("after-setup") {
        return Err(Error::internal("injected failure at after-setup"));
    }
    undo.commit();
    Ok(result)
}

/// CHECK on the seam: the pod's tap against prevResult (`prev`, whose
/// entry for it lists `want_mac`) and the config.
fn check_core(
    sock: &dyn LinkOps,
    n: &Network,
    prev: &Result,
    want_mac: &str,
    args: &CmdArgs,
) -> CniResult<()> {
    let l = podlink::check_pod_link(sock, &args.ifname, is_tap, "tap", want_mac)?;
    let attrs = l.info_attrs();
    let mq = attrs
        .get(IFLA_TUN_MULTI_QUEUE)
        .and_then(|a| a.u8())
        .is_some_and(|v| v != 0);
    if mq != n.conf.multi_queue {
        return Err(Error::internal(format!(
            "tap {} multi_queue is {mq}, config says {}",
            l.name, n.conf.multi_queue
        )));
    }
    for (what, want, attr) in [
        ("owner", n.conf.owner, IFLA_TUN_OWNER),
        ("group", n.conf.group, IFLA_TUN_GROUP),
    ] {
        let Some(want) = want else { continue };
        let have = attrs.get(attr).and_then(|a| a.u32());
        if have != Some(want) {
            return Err(Error::internal(format!(
                "tap {} {what} is {have:?}, config says {want}",
                l.name
            )));
        }
    }
    if !n.conf.bridge.is_empty() {
        let br = sock.link_by_name(&n.conf.bridge).map_err(kit::err)?;
        if br.is_none() || br.map(|b| b.index) != l.master {
            return Err(Error::internal(format!(
                "tap {} is not a port of bridge {}",
                l.name, n.conf.bridge
            )));
        }
    }
    podlink::check_ips_routes(sock, &l, prev)
}

#[cfg(test)]
mod fake_tests {
    //! The verb cores on the recording fakes, without root. The tap itself
    //! is made by a tun ioctl, not netlink: here `create` puts a tun link
    //! into the fake.
    use super::*;
    use kit::ops::fake::{self, call, cmd_args, FakeIpam, RecordingNet};

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"n","type":"tap","mtu":1400,
        "mac":"02:00:00:00:00:42","bridge":"br0","ipam":{"type":"fake"}}"#;

    fn tap_into(net: &RecordingNet) -> impl FnOnce() -> CniResult<()> + '_ {
        move || {
            net.add_link(Link {
                name: "eth0".into(),
                kind: Some("tun".into()),
                ..Default::default()
            });
            Ok(())
        }
    }

    fn setup() -> (RecordingNet, Network, CmdArgs, u32) {
        let net = RecordingNet::new();
        let br = net.add_existing("br0");
        let args = cmd_args(CONF);
        let n = load(&args).expect("config loads");
        (net, n, args, br)
    }

    #[test]
    fn add_sets_mtu_mac_and_bridge_before_up_then_addresses_the_tap() {
        let (net, n, args, br) = setup();
        let ipam = FakeIpam::v4("10.5.0.5/24", "10.5.0.1");
        let cx = call(&net, &args, Some(&ipam));
        let r = add_core(cx, &n, tap_into(&net), || {}).expect("ADD");
        let i = net.index_of("eth0");
        assert_eq!(
            net.lines(),
            vec![
                "get eth0".to_string(),
                format!("mtu {i} 1400"),
                format!("mac {i} 02:00:00:00:00:42"),
                "get br0".to_string(),
                format!("master {i} {br}"),
                format!("up {i}"),
                format!("get #{i}"),
                format!("addr {i} 10.5.0.5/24"),
                format!("route 0.0.0.0/0 via 10.5.0.1 dev {i}"),
            ]
        );
        assert_eq!(r.interfaces[0].mac, "02:00:00:00:00:42");
    }

    #[test]
    fn a_refused_bridge_port_deletes_the_tap_with_code_5_before_ipam() {
        let (net, n, args, _) = setup();
        let ipam = FakeIpam::v4("10.5.0.5/24", "10.5.0.1");
        net.fail_next("master", fake::errno::EBUSY);
        let cx = call(&net, &args, Some(&ipam));
        let e = add_core(cx, &n, tap_into(&net), || {}).expect_err("refused");
        assert_eq!(e.code, 5, "{e:?}");
        assert_eq!(net.lines().last().map(String::as_str), Some("delete eth0"));
        assert!(net.holds_only(&["br0"]));
        assert!(ipam.calls().is_empty());
    }

    #[test]
    fn a_failed_route_undoes_the_tap_and_the_address() {
        let (net, n, args, _) = setup();
        let ipam = FakeIpam::v4("10.5.0.5/24", "10.5.0.1");
        net.fail_next("route", fake::errno::ENETUNREACH);
        let cx = call(&net, &args, Some(&ipam));
        let e = add_core(cx, &n, tap_into(&net), || {}).expect_err("refused");
        assert_eq!(e.code, 5, "{e:?}");
        fake::assert_all_undone(&net, &ipam, &["br0"]);
    }

    #[test]
    fn a_tap_name_already_taken_keeps_the_creators_code_and_touches_nothing() {
        let (net, n, args, _) = setup();
        let taken = || {
            Err(Error::internal(
                "container interface \"eth0\" already exists",
            ))
        };
        let e = add_core(call(&net, &args, None), &n, taken, || {}).expect_err("taken");
        assert_eq!(e.code, 999);
        assert!(net.lines().is_empty());
    }

    #[test]
    fn del_of_a_tap_already_gone_succeeds() {
        let net = RecordingNet::new();
        kit::podlink::del_teardown(Some(&net), None, "eth0", None, DEL_ORDER)
            .finish()
            .expect("DEL");
        assert_eq!(net.lines(), vec!["delete eth0"]);
    }

    #[test]
    fn check_of_a_missing_or_non_tap_interface_is_code_999() {
        let (net, n, args, _) = setup();
        let prev = Result::new("1.0.0");
        let e = check_core(&net, &n, &prev, "", &args).expect_err("missing");
        assert_eq!(
            (e.code, e.msg.as_str()),
            (999, "Interface name eth0 not found")
        );
        net.add_existing("eth0");
        let e = check_core(&net, &n, &prev, "", &args).expect_err("not a tap");
        assert_eq!(e.msg, "Error: Container interface eth0 not of type tap");
    }
}
