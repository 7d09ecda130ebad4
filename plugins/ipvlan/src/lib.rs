//! `ipvlan`: the container gets an ipvlan of a node interface (`master`,
//! default: the default route's device; when chained without `master`, the
//! single interface of the previous result). ipvlan links share the
//! master's MAC. Addresses come from `ipam`, or, chained without `ipam`,
//! from the previous result.

use cni_skel::{CmdArgs, Plugin};
use cni_spec::conf::bool_or_string as flex;
use cni_spec::error::CniResult;
use cni_spec::{Error, Result};
use kit::ops::LinkOps;
use kit::podlink;
use kit::Undo;
use netlink::{IpvlanMode, Link, LinkKind, LinkSpec};
use serde::Deserialize;

/// The ipvlan plugin as the CNI skeleton runs it: creates the pod's ipvlan
/// on ADD, deletes it on DEL.
pub struct Ipvlan;

/// The order DEL takes the pod link and the address in (as the reference).
const DEL_ORDER: podlink::DelOrder = podlink::DelOrder::IpamFirst;

#[derive(Debug, Clone, Deserialize)]
struct Conf {
    #[serde(default)]
    mode: String,
    #[serde(default)]
    master: String,
    /// 0 = the kernel's choice (the master's MTU).
    #[serde(default)]
    mtu: i64,
    #[serde(rename = "linkInContainer", default, deserialize_with = "flex")]
    link_in_container: bool,
}

struct Network {
    master: Link,
    mode: IpvlanMode,
    mtu: Option<u32>,
    in_container: bool,
    ipam: Option<String>,
    prev: Option<Result>,
}

fn mode_from_str(s: &str) -> CniResult<IpvlanMode> {
    match s {
        "" | "l2" => Ok(IpvlanMode::L2),
        "l3" => Ok(IpvlanMode::L3),
        "l3s" => Ok(IpvlanMode::L3s),
        _ => Err(Error::invalid_config(format!("unknown ipvlan mode: {s:?}"))),
    }
}

fn mode_name(m: IpvlanMode) -> &'static str {
    match m {
        IpvlanMode::L2 => "l2",
        IpvlanMode::L3 => "l3",
        IpvlanMode::L3s => "l3s",
    }
}

/// The config only (DEL, GC, STATUS).
fn parse(args: &CmdArgs) -> CniResult<(Conf, Option<String>)> {
    let c: Conf = args.parse_conf()?;
    mode_from_str(&c.mode)?;
    Ok((c, podlink::ipam_type(args)))
}

/// ADD and CHECK: master resolved where it lives (`host`, or `cont` with
/// linkInContainer), MTU checked.
fn load(args: &CmdArgs, host: &dyn LinkOps, cont: &dyn LinkOps) -> CniResult<Network> {
    let (c, ipam) = parse(args)?;
    let prev = args.conf.prev_result()?;
    let lookup = if c.link_in_container { cont } else { host };
    let name = if !c.master.is_empty() {
        c.master.clone()
    } else if let Some(p) = &prev {
        match p.interfaces.as_slice() {
            [one] if !one.name.is_empty() => one.name.clone(),
            _ => {
                return Err(Error::invalid_config(
                    "chained master failure. PrevResult lacks a single named interface",
                ))
            }
        }
    } else {
        podlink::default_route_iface(lookup)?
    };
    let master = podlink::master(lookup, &name, c.mtu)?;
    Ok(Network {
        master,
        mode: mode_from_str(&c.mode)?,
        mtu: (c.mtu > 0).then_some(c.mtu as u32),
        in_container: c.link_in_container,
        ipam,
        prev,
    })
}

impl Plugin for Ipvlan {
    kit::one_link_verbs!("ipvlan", load, check_core, parse, DEL_ORDER);

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let (ns, n) = podlink::open_with(args, load)?;
        if n.ipam.is_none() && n.prev.is_none() {
            return Err(Error::invalid_config(
                "ipvlan needs an ipam section, or a prevResult when chained",
            ));
        }
        let ipam = podlink::delegated(n.ipam.as_deref(), args);
        add_core(ns.call(args, &ipam), &n)
    }
}

/// ADD on the seam: the ipvlan made in the pod (through the node's
/// namespace, or the pod's with linkInContainer), then IPAM's addresses
/// or, chained, the previous result's; only up when there are none.
/// Undone on failure.
fn add_core(cx: podlink::Call<'_>, n: &Network) -> CniResult<Result> {
    let cont = cx.at.cont;
    let spec = LinkSpec {
        mtu: n.mtu,
        parent: Some(n.master.index),
        netns_fd: cx.at.pod_fd(n.in_container),
        ..LinkSpec::new(cx.args.ifname.as_str(), LinkKind::Ipvlan(n.mode))
    };
    let mut undo = Undo::new();
    let link = podlink::create_in_pod(cx.at, n.in_container, &spec, "ipvlan")?;
    podlink::undo_link(&mut undo, cont, &link, "ipvlan");
    let mut result = Result::new(cx.args.version());
    if let Some(ipam) = cx.ipam {
        result.adopt_ipam(podlink::ipam_add(ipam, &mut undo)?, 0);
    } else if let Some(p) = &n.prev {
        // Chained: the previous result's addresses, routes and DNS.
        result.ips = p.ips.clone();
        result.routes = p.routes.clone();
        for ip in &mut result.ips {
            ip.interface = Some(0);
        }
    }
    result.interfaces = vec![podlink::pod_interface(&link, &cx.args.netns)];
    if result.ips.is_empty() {
        podlink::up_only(cont, &link)?;
    } else {
        kit::configure_iface(cont, &link, &result, &kit::IfaceOptions::default())
            .map_err(Error::from)?;
    }
    result.dns = match (&n.ipam, &n.prev) {
        (None, Some(p)) => p.dns.clone(),
        _ => cx.args.conf.dns.clone().unwrap_or_default(),
    };
    undo.commit();
    Ok(result)
}

/// CHECK on the seam: the pod's ipvlan against prevResult and the config.
fn check_core(cont: &dyn LinkOps, n: &Network, args: &CmdArgs) -> CniResult<()> {
    let prev = n
        .prev
        .as_ref()
        .ok_or_else(|| Error::invalid_config("required prevResult missing"))?;
    let c = kit::iface::prev_container_link(cont, prev, &args.ifname, &args.netns)?;
    let mode = c
        .ipvlan_mode()
        .ok_or_else(|| podlink::not_of_type(&c, "Error", "ipvlan"))?;
    if mode != n.mode {
        return Err(Error::internal(format!(
            "Container IPVlan mode {} does not match expected value: {}",
            mode_name(mode),
            mode_name(n.mode)
        )));
    }
    podlink::check_parent(&c, &n.master, n.in_container, "ipvlan")?;
    podlink::check_ips_routes(cont, &c, prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_and_default_to_l2() {
        assert_eq!(mode_from_str("").ok(), Some(IpvlanMode::L2));
        for m in ["l2", "l3", "l3s"] {
            assert_eq!(mode_name(mode_from_str(m).expect("known")), m);
        }
        let e = mode_from_str("bridge").expect_err("unknown");
        assert_eq!(e.code, cni_spec::ErrorCode::InvalidConfig as u32);
    }
}

#[cfg(test)]
mod fake_tests {
    //! The verb cores on the recording fakes, without root; ipvlan needs
    //! the VM lane for its namespace tests.
    use super::*;
    use kit::ops::fake::{self, call, with_prev, FakeIpam, RecordingNet};

    fn node(conf: &str) -> (RecordingNet, Network, CmdArgs, u32) {
        let f = fake::node(conf);
        let n = f.load(load).expect("config loads");
        (f.net, n, f.args, f.master)
    }

    fn with_ipam() -> (RecordingNet, Network, CmdArgs, u32) {
        node(
            r#"{"cniVersion":"1.0.0","name":"n","type":"ipvlan","master":"eth9","mode":"l3","ipam":{"type":"fake"}}"#,
        )
    }

    #[test]
    fn add_checks_the_name_creates_the_ipvlan_then_brings_it_up_and_addresses_it() {
        let (net, n, args, master) = with_ipam();
        let ipam = FakeIpam::v4("10.2.0.5/24", "10.2.0.1");
        add_core(call(&net, &args, Some(&ipam)), &n).expect("ADD");
        let i = net.index_of("eth0");
        assert_eq!(
            net.lines(),
            vec![
                "get eth0".to_string(),
                format!("create eth0 ipvlan parent {master}"),
                "get eth0".to_string(),
                format!("up {i}"),
                format!("addr {i} 10.2.0.5/24"),
                format!("route 0.0.0.0/0 via 10.2.0.1 dev {i}"),
            ]
        );
    }

    #[test]
    fn chained_without_ipam_takes_the_previous_results_addresses() {
        let conf = r#"{"cniVersion":"1.0.0","name":"n","type":"ipvlan","master":"eth9",
            "prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth9"}],
            "ips":[{"address":"10.3.0.7/16"}],"dns":{"nameservers":["10.3.0.53"]}}}"#;
        let (net, n, args, _) = node(conf);
        let r = add_core(call(&net, &args, None), &n).expect("ADD");
        let i = net.index_of("eth0");
        assert!(net.lines().contains(&format!("addr {i} 10.3.0.7/16")));
        assert_eq!(r.ips[0].interface, Some(0));
        assert_eq!(r.dns.nameservers, vec!["10.3.0.53".to_string()]);
    }

    #[test]
    fn an_address_the_kernel_refuses_undoes_the_ipvlan_and_releases_with_code_5() {
        let (net, n, args, _) = with_ipam();
        let ipam = FakeIpam::v4("10.2.0.5/24", "10.2.0.1");
        net.fail_next("addr", fake::errno::EADDRNOTAVAIL);
        let e = add_core(call(&net, &args, Some(&ipam)), &n).expect_err("refused");
        assert_eq!(e.code, 5, "{e:?}");
        fake::assert_all_undone(&net, &ipam, &["eth9"]);
    }

    #[test]
    fn an_ifname_already_in_the_pod_is_code_999_before_anything_is_made() {
        let (net, n, args, _) = with_ipam();
        net.add_existing("eth0");
        let e = add_core(call(&net, &args, None), &n).expect_err("taken");
        assert_eq!(e.code, 999, "{e:?}");
        assert_eq!(net.lines(), vec!["get eth0"]);
    }

    #[test]
    fn del_of_a_pod_already_gone_succeeds() {
        let ipam = FakeIpam::v4("10.2.0.5/24", "10.2.0.1");
        kit::podlink::del_teardown(None, None, "eth0", Some(&ipam), DEL_ORDER)
            .finish()
            .expect("DEL");
        assert_eq!(ipam.calls(), vec!["ipam del"]);
    }

    #[test]
    fn check_fails_with_999_on_a_missing_or_foreign_interface() {
        let (net, n, args, _) = with_ipam();
        let ipam = FakeIpam::v4("10.2.0.5/24", "10.2.0.1");
        let r = add_core(call(&net, &args, Some(&ipam)), &n).expect("ADD");
        let args = with_prev(&args, &r);
        let n = load(&args, &net, &net).expect("config loads");
        net.retype("eth0", "dummy");
        let e = check_core(&net, &n, &args).expect_err("not ipvlan");
        assert_eq!(e.code, 999);
        assert_eq!(e.msg, "Error: Container interface eth0 not of type ipvlan");
        net.remove("eth0");
        let e = check_core(&net, &n, &args).expect_err("gone");
        assert_eq!(e.code, 999);
    }
}
