//! `macvlan`: the container gets a macvlan on a node interface (`master`),
//! with its own MAC on the master's L2 segment. No host-side device, no
//! routing on the node: the pod sits directly on the master's network.
//! Without an `ipam` section the link only comes up (L2 only).

#[doc(hidden)]
pub mod fuzzing;
use cni_skel::{CmdArgs, Command, Plugin};
use cni_spec::error::CniResult;
use cni_spec::runtime_config::{ArgsMac, MacOnly};
use cni_spec::{Error, Interface, Result};
use kit::Teardown;
use kit::Undo;
use netlink::{Family, Link, LinkKind, LinkSpec, MacvlanMode, Socket};
use netns::NetNs;
use serde::Deserialize;

/// The macvlan plugin as the CNI skeleton runs it: creates the pod's
/// macvlan on ADD, deletes it on DEL.
pub struct Macvlan;

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

fn flex<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    cni_spec::conf::bool_or_string(d)
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

/// The device of the first default route in the main table, IPv4 before
/// IPv6 (the order the kernel dumps them, which the reference relies on).
fn default_route_iface(sock: &Socket) -> CniResult<String> {
    let routes = sock.routes(Family::All, Some(254)).map_err(kit::err)?;
    for r in routes.iter().filter(|r| r.dst.is_none()) {
        // A multipath default route has no single device: keep looking.
        let Some(oif) = r.oif else { continue };
        if let Some(l) = sock.link_by_index(oif).map_err(kit::err)? {
            return Ok(l.name);
        }
    }
    Err(Error::invalid_config("no default route interface found"))
}

/// Parses the config only: what DEL, GC and STATUS need (no master lookup,
/// so that they work after the master is gone).
fn parse(args: &CmdArgs) -> CniResult<(Conf, Option<String>)> {
    let c: Conf = args.parse_conf()?;
    let ipam = args
        .conf
        .ipam_type()
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    Ok((c, ipam))
}

/// ADD and CHECK: the parsed config plus the master looked up where it
/// lives, and the MTU checked against it.
fn load(args: &CmdArgs, cns: &Socket) -> CniResult<Network> {
    let (c, ipam) = parse(args)?;
    let host;
    let lookup = if c.link_in_container {
        cns
    } else {
        host = Socket::route().map_err(kit::err)?;
        &host
    };
    let name = if c.master.is_empty() {
        default_route_iface(lookup)?
    } else {
        c.master.clone()
    };
    let master = lookup
        .link_by_name(&name)
        .map_err(kit::err)?
        .ok_or_else(|| {
            Error::invalid_config(format!("failed to lookup master {name:?}: Link not found"))
        })?;
    if c.mtu < 0 || c.mtu > i64::from(master.mtu) {
        return Err(Error::invalid_config(format!(
            "invalid MTU {}, must be [0, master MTU({})]",
            c.mtu, master.mtu
        )));
    }
    let mode = mode_from_str(&c.mode)?;
    // MAC precedence: config, then CNI_ARGS MAC=, then args.cni.mac, then
    // runtimeConfig.mac (the last one given wins).
    let env = args.cni_args()?;
    env.check_known(&["MAC", "IP"])?;
    let mac_s = kit::mac::last_requested([
        Some(c.mac.as_str()),
        env.get("MAC"),
        c.args.as_ref().map(|a| a.cni.mac.as_str()),
        c.runtime_config.as_ref().map(|r| r.mac.as_str()),
    ])
    .unwrap_or("")
    .to_string();
    let mac = if mac_s.is_empty() {
        None
    } else {
        Some(kit::mac::parse(&mac_s).map_err(|e| {
            Error::invalid_config(format!("invalid args {mac_s} for MAC addr: {e}"))
        })?)
    };
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
/// resolved in the namespace the request is sent from (`creator`).
fn create_macvlan(
    creator: &Socket,
    cont: &Socket,
    cns: &NetNs,
    n: &Network,
    ifname: &str,
) -> CniResult<Link> {
    let spec = |name: &str| LinkSpec {
        mtu: n.mtu,
        mac: n.mac.map(|m| m.to_vec()),
        parent: Some(n.master.index),
        netns_fd: Some(cns.fd()),
        ..LinkSpec::new(name, LinkKind::Macvlan(n.mode))
    };
    let exists = || {
        Error::internal(format!(
            "container interface {ifname:?} already exists in {}",
            cns.path().display()
        ))
    };
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
    cont.link_by_name(ifname)
        .map_err(kit::err)?
        .ok_or_else(|| Error::internal(format!("failed to refetch macvlan {ifname:?}")))
}

/// Applies `bcqueuelen` to the new macvlan and reads it back. Kernels
/// before 5.11 ignore the attribute silently (the reference then goes on
/// without it); rcni refuses instead, so that a pod never runs with a
/// setting it asked for and did not get.
fn set_bc_queue_len(cont: &Socket, index: u32, len: u32) -> CniResult<()> {
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
    fn name(&self) -> &'static str {
        "macvlan"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let cns = kit::open_ns(args.require_netns()?)?;
        let cont = Socket::route_in(&cns).map_err(kit::err)?;
        let n = load(args, &cont)?;
        let host;
        let creator = if n.in_container {
            &cont
        } else {
            host = Socket::route().map_err(kit::err)?;
            &host
        };
        let mut undo = Undo::new();

        let link = create_macvlan(creator, &cont, &cns, &n, &args.ifname)?;
        {
            let cont = &cont;
            let index = link.index;
            undo.push("delete macvlan", move || cont.delete_link(index));
        }
        if n.bcqueuelen > 0 {
            set_bc_queue_len(&cont, link.index, n.bcqueuelen)?;
        }

        let mut result = Result::new(args.version());
        result.interfaces = vec![Interface {
            name: link.name.clone(),
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
            // Announce the pod's addresses on the segment as the link comes
            // up (gratuitous ARP / unsolicited NA), so neighbours holding a
            // stale entry for a reused address learn the new MAC at once.
            let ifname = args.ifname.as_str();
            let _ = cns.run(|| {
                let _ = kit::sysctl_set(&format!("net/ipv4/conf/{ifname}/arp_notify"), "1");
                let _ = kit::sysctl_set(&format!("net/ipv6/conf/{ifname}/ndisc_notify"), "1");
            });
            kit::configure_iface(
                &cont,
                &link,
                &result,
                &kit::IfaceOptions {
                    addresses_first: true,
                    ..Default::default()
                },
            )
            .map_err(Error::from)?;
        } else {
            cont.set_link_up(link.index)
                .map_err(|e| Error::io(format!("failed to set {:?} UP: {e}", args.ifname)))?;
        }
        if cni_skel::failure_injected("after-setup") {
            return Err(Error::internal("injected failure at after-setup"));
        }

        // As the reference: the DNS of the network config, not IPAM's.
        result.dns = args.conf.dns.clone().unwrap_or_default();
        undo.commit();
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let (_, ipam) = parse(args)?;
        let mut td = Teardown::new();
        td.step(kit::iface::delete_pod_link(args.netns_path(), &args.ifname));
        if let Some(ipam) = &ipam {
            td.step(cni_invoke::delegate(ipam, Command::Del, args, &args.stdin));
        }
        Ok(td.finish()?)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let cns = kit::open_ns(args.require_netns()?)?;
        let cont = Socket::route_in(&cns).map_err(kit::err)?;
        let n = load(args, &cont)?;
        if let Some(ipam) = &n.ipam {
            cni_invoke::delegate(ipam, Command::Check, args, &args.stdin)?;
        }
        let prev = args
            .conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("required prevResult missing"))?;
        let c_if = prev
            .interfaces
            .iter()
            .find(|i| i.name == args.ifname && i.sandbox == args.netns)
            .ok_or_else(|| {
                Error::internal(format!(
                    "no interface {:?} with sandbox {} in prevResult",
                    args.ifname, args.netns
                ))
            })?;
        let c = cont
            .link_by_name(&c_if.name)
            .map_err(kit::err)?
            .ok_or_else(|| {
                Error::internal(format!(
                    "container Interface name in prevResult: {} not found",
                    c_if.name
                ))
            })?;
        let Some(mode) = c
            .macvlan_mode()
            .filter(|_| c.kind.as_deref() == Some("macvlan"))
        else {
            return Err(Error::internal(format!(
                "error: Container interface {} not of type macvlan",
                c.name
            )));
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
        let parent_ok =
            c.link == Some(n.master.index) && c.link_netnsid.is_some() != n.in_container;
        if !parent_ok {
            return Err(Error::internal(format!(
                "container macvlan {} is not on master {:?}",
                c.name, n.master.name
            )));
        }
        if !c_if.mac.is_empty() && c_if.mac != kit::mac::format(&c.mac) {
            return Err(Error::internal(format!(
                "interface {} Mac {} doesn't match container Mac: {}",
                c.name,
                c_if.mac,
                kit::mac::format(&c.mac)
            )));
        }
        kit::validate_iface_ips(&cont, &c, &prev).map_err(Error::from)?;
        kit::validate_routes(&cont, &prev).map_err(Error::from)?;
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        kit::pass_to_ipam(parse(args)?.1.as_deref(), Command::Gc, args)
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        kit::pass_to_ipam(parse(args)?.1.as_deref(), Command::Status, args)
    }
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
