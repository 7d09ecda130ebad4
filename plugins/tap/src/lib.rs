//! `tap`: a persistent tap device created inside the container namespace,
//! for a VM or userspace stack in the pod to open by name. Optionally a
//! port of an existing bridge in that namespace, optionally with IPAM
//! addresses. Follows the reference's cmdAdd: tap first, then IPAM.

#[doc(hidden)]
pub mod fuzzing;
use cni_skel::{CmdArgs, Command, Plugin};
use cni_spec::conf::bool_or_string as flex;
use cni_spec::error::CniResult;
use cni_spec::runtime_config::MacOnly;
use cni_spec::{Error, ErrorCode, Interface, Result};
use kit::Teardown;
use kit::Undo;
use netlink::tuntap::{self, Mode, TunTapSpec};
use netlink::{Link, Socket};
use netns::NetNs;
use serde::Deserialize;

/// The tap plugin as the CNI skeleton runs it: creates the pod's tap
/// device on ADD, deletes it on DEL.
pub struct Tap;

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
    let ipam = args
        .conf
        .ipam_type()
        .filter(|t| !t.is_empty())
        .map(str::to_string);
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
        let cns = kit::open_ns(args.require_netns()?)?;
        let sock = Socket::route_in(&cns).map_err(kit::err)?;
        let ifname = args.ifname.as_str();
        let mut undo = Undo::new();

        create_tap(&cns, &n.conf, ifname)?;
        {
            let sock = &sock;
            undo.push("delete tap", move || sock.delete_link_by_name(ifname));
        }
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
                        n.conf.bridge, args.netns
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

        let mut result = Result::new(args.version());
        result.interfaces = vec![Interface {
            name: ifname.to_string(),
            mac: kit::mac::format(&link.mac),
            sandbox: args.netns.clone(),
            ..Default::default()
        }];

        if let Some(ipam) = n.ipam.as_deref() {
            let r = cni_invoke::ipam_add(ipam, args)?;
            undo.push("release IPAM address", move || {
                cni_invoke::delegate(ipam, Command::Del, args, &args.stdin)
            });
            result.adopt_ipam(r, 0);
            // Best effort, as the reference: announce the address on up.
            let key = format!("net/ipv4/conf/{ifname}/arp_notify");
            let _ = cns.run(|| kit::sysctl_set(&key, "1"));
            kit::configure_iface(&sock, &link, &result, &kit::IfaceOptions::default())
                .map_err(Error::from)?;
        }
        if cni_skel::failure_injected("after-setup") {
            return Err(Error::internal("injected failure at after-setup"));
        }
        // The reference reports the config's DNS only, not the IPAM's.
        result.dns = args.conf.dns.clone().unwrap_or_default();
        undo.commit();
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let n = load(args)?;
        let mut td = Teardown::new();
        if let Some(ipam) = &n.ipam {
            td.step(cni_invoke::delegate(ipam, Command::Del, args, &args.stdin));
        }
        // Gone netns or tap (or none given) is success.
        td.step(kit::iface::delete_pod_link(args.netns_path(), &args.ifname));
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
            .ok_or_else(|| Error::invalid_config("Required prevResult missing"))?;
        let c_if = prev
            .interfaces
            .iter()
            .find(|i| i.name == args.ifname && i.sandbox == args.netns)
            .ok_or_else(|| {
                Error::internal(format!(
                    "Sandbox in prevResult  doesn't match configured netns: {}",
                    args.netns
                ))
            })?;
        let cns = kit::open_ns(args.require_netns()?)?;
        let sock = Socket::route_in(&cns).map_err(kit::err)?;
        let l = sock
            .link_by_name(&args.ifname)
            .map_err(kit::err)?
            .ok_or_else(|| Error::internal(format!("Interface name {} not found", args.ifname)))?;
        if !is_tap(&l) {
            return Err(Error::internal(format!(
                "Error: Container interface {} not of type tap",
                l.name
            )));
        }
        let got = kit::mac::format(&l.mac);
        if !c_if.mac.is_empty() && c_if.mac != got {
            return Err(Error::internal(format!(
                "Interface {} Mac {} doesn't match container Mac: {got}",
                l.name, c_if.mac
            )));
        }
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
        kit::validate_iface_ips(&sock, &l, &prev).map_err(Error::from)?;
        kit::validate_routes(&sock, &prev).map_err(Error::from)?;
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        kit::pass_to_ipam(load(args)?.ipam.as_deref(), Command::Gc, args)
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        kit::pass_to_ipam(load(args)?.ipam.as_deref(), Command::Status, args)
    }
}
