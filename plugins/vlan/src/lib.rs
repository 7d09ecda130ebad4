//! `vlan`: the container gets an 802.1Q sub-interface (`vlanId`) of a node
//! interface (`master`, or one in the pod's namespace with
//! `linkInContainer`). Without an `ipam` section the link only comes up.

use cni_skel::{CmdArgs, Plugin};
use cni_spec::conf::bool_or_string as flex;
use cni_spec::error::CniResult;
use cni_spec::{Error, Result};
use kit::ops::LinkOps;
use kit::podlink;
use kit::Undo;
use netlink::{Link, LinkKind, LinkSpec};
use serde::Deserialize;

/// The vlan plugin as the CNI skeleton runs it: creates the pod's 802.1Q
/// sub-interface on ADD, deletes it on DEL.
pub struct Vlan;

/// The order DEL takes the pod link and the address in (as the reference).
const DEL_ORDER: podlink::DelOrder = podlink::DelOrder::IpamFirst;

#[derive(Debug, Clone, Deserialize)]
struct Conf {
    #[serde(default)]
    master: String,
    #[serde(rename = "vlanId", default)]
    vlan_id: i64,
    /// 0 = inherit the master's MTU.
    #[serde(default)]
    mtu: i64,
    #[serde(rename = "linkInContainer", default, deserialize_with = "flex")]
    link_in_container: bool,
}

struct Network {
    master: Link,
    id: u16,
    mtu: u32,
    in_container: bool,
    ipam: Option<String>,
}

/// The config only (DEL, GC, STATUS): no master lookup.
fn parse(args: &CmdArgs) -> CniResult<(Conf, Option<String>)> {
    let c: Conf = args.parse_conf()?;
    if c.master.is_empty() {
        return Err(Error::invalid_config(
            "\"master\" field is required. It specifies the host interface name to create the VLAN for.",
        ));
    }
    if !(0..=4094).contains(&c.vlan_id) {
        return Err(Error::invalid_config(format!(
            "invalid VLAN ID {} (must be between 0 and 4094 inclusive)",
            c.vlan_id
        )));
    }
    Ok((c, podlink::ipam_type(args)))
}

/// ADD and CHECK: the master looked up where it lives (`host`, or `cont`
/// with linkInContainer), the MTU checked.
fn load(args: &CmdArgs, host: &dyn LinkOps, cont: &dyn LinkOps) -> CniResult<Network> {
    let (c, ipam) = parse(args)?;
    let lookup = if c.link_in_container { cont } else { host };
    let master = podlink::master(lookup, &c.master, c.mtu)?;
    let mtu = if c.mtu == 0 { master.mtu } else { c.mtu as u32 };
    Ok(Network {
        master,
        id: c.vlan_id as u16,
        mtu,
        in_container: c.link_in_container,
        ipam,
    })
}

impl Plugin for Vlan {
    kit::one_link_verbs!("vlan", load, check_core, parse, DEL_ORDER);

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let (ns, n) = podlink::open_with(args, load)?;
        let ipam = podlink::delegated(n.ipam.as_deref(), args);
        let mut result = add_core(ns.call(args, &ipam), &n)?;
        result.dns = args.conf.dns.clone().unwrap_or_default();
        Ok(result)
    }
}

/// ADD on the seam: the 802.1Q link made in the pod (through the node's
/// namespace, or the pod's with linkInContainer), then IPAM's addresses or
/// only the link up. Undone on failure.
fn add_core(cx: podlink::Call<'_>, n: &Network) -> CniResult<Result> {
    let spec = LinkSpec {
        mtu: Some(n.mtu),
        parent: Some(n.master.index),
        netns_fd: cx.at.pod_fd(n.in_container),
        ..LinkSpec::new(cx.args.ifname.as_str(), LinkKind::Vlan { id: n.id })
    };
    let mut undo = Undo::new();
    let link = podlink::create_in_pod(cx.at, n.in_container, &spec, "vlan")?;
    podlink::undo_link(&mut undo, cx.at.cont, &link, "vlan");
    let mut result = Result::new(cx.args.version());
    result.interfaces = vec![podlink::pod_interface(&link, &cx.args.netns)];
    let opts = kit::IfaceOptions::default();
    podlink::address_or_up(
        cx.at.cont,
        &link,
        cx.ipam,
        &mut undo,
        &mut result,
        || {},
        &opts,
    )?;
    undo.commit();
    Ok(result)
}

/// CHECK on the seam: the pod's VLAN link against prevResult and the
/// config.
fn check_core(cont: &dyn LinkOps, n: &Network, args: &CmdArgs) -> CniResult<()> {
    let prev = podlink::prev_required(args, "required prevResult missing")?;
    let c = kit::iface::prev_container_link(cont, &prev, &args.ifname, &args.netns)?;
    let id = c
        .vlan_id()
        .ok_or_else(|| podlink::not_of_type(&c, "error", "vlan"))?;
    if id != n.id {
        return Err(Error::internal(format!(
            "Error: vlan {} configured vlanId is {}, current value is {}",
            c.name, n.id, id
        )));
    }
    if c.mtu != n.mtu {
        return Err(Error::internal(format!(
            "Error: vlan {} configured MTU is {}, current value is {}",
            c.name, n.mtu, c.mtu
        )));
    }
    podlink::check_parent(&c, &n.master, n.in_container, "vlan")?;
    podlink::check_ips_routes(cont, &c, &prev)
}

#[cfg(test)]
mod fake_tests {
    //! The verb cores on the recording fakes, without root; vlan needs the
    //! VM lane for its namespace tests.
    use super::*;
    use kit::ops::fake::{self, call, cmd_args, with_prev, FakeIpam, RecordingNet};

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"n","type":"vlan","master":"eth9",
        "vlanId":42,"ipam":{"type":"fake"}}"#;

    fn setup() -> (RecordingNet, Network, CmdArgs, u32, FakeIpam) {
        let f = fake::node(CONF);
        let n = f.load(load).expect("config loads");
        let (net, args, master) = (f.net, f.args, f.master);
        let ipam = FakeIpam::v4("10.4.0.5/24", "10.4.0.1");
        (net, n, args, master, ipam)
    }

    #[test]
    fn add_makes_the_vlan_with_the_masters_mtu_then_configures_it() {
        let (net, n, args, master, ipam) = setup();
        add_core(call(&net, &args, Some(&ipam)), &n).expect("ADD");
        let l = net.link("eth0").expect("made");
        assert_eq!(l.mtu, 1500, "inherited from the master");
        let i = l.index;
        assert_eq!(
            net.lines(),
            vec![
                "get eth0".to_string(),
                format!("create eth0 vlan parent {master}"),
                "get eth0".to_string(),
                format!("up {i}"),
                format!("addr {i} 10.4.0.5/24"),
                format!("route 0.0.0.0/0 via 10.4.0.1 dev {i}"),
            ]
        );
    }

    #[test]
    fn a_refused_link_up_undoes_the_vlan_and_releases_with_code_5() {
        let (net, n, args, _, ipam) = setup();
        net.fail_next("up", fake::errno::ENETDOWN);
        let e = add_core(call(&net, &args, Some(&ipam)), &n).expect_err("refused");
        assert_eq!(e.code, 5, "{e:?}");
        fake::assert_all_undone(&net, &ipam, &["eth9"]);
    }

    #[test]
    fn an_ifname_already_in_the_pod_is_code_999() {
        let (net, n, args, _, ipam) = setup();
        net.add_existing("eth0");
        let e = add_core(call(&net, &args, Some(&ipam)), &n).expect_err("taken");
        assert_eq!(e.code, 999, "{e:?}");
        assert!(ipam.calls().is_empty());
    }

    #[test]
    fn a_master_mtu_below_the_configs_is_code_7() {
        let net = RecordingNet::new();
        net.add_existing("eth9");
        let args = cmd_args(
            r#"{"cniVersion":"1.0.0","name":"n","type":"vlan","master":"eth9","vlanId":1,"mtu":9000}"#,
        );
        let e = load(&args, &net, &net)
            .err()
            .expect("MTU above the master's");
        assert_eq!(e.code, 7);
        assert_eq!(e.msg, "invalid MTU 9000, must be [0, master MTU(0)]");
    }

    #[test]
    fn del_when_the_link_is_already_gone_succeeds() {
        let (net, _, _, _, ipam) = setup();
        kit::podlink::del_teardown(Some(&net), None, "eth0", Some(&ipam), DEL_ORDER)
            .finish()
            .expect("DEL");
        assert_eq!(net.lines(), vec!["delete eth0"]);
    }

    #[test]
    fn check_of_a_non_vlan_or_missing_interface_is_code_999() {
        let (net, n, args, _, ipam) = setup();
        let r = add_core(call(&net, &args, Some(&ipam)), &n).expect("ADD");
        net.retype("eth0", "dummy");
        let e = check_core(&net, &n, &with_prev(&args, &r)).expect_err("not vlan");
        assert_eq!(e.msg, "error: Container interface eth0 not of type vlan");
        net.remove("eth0");
        let e = check_core(&net, &n, &with_prev(&args, &r)).expect_err("gone");
        assert_eq!(e.code, 999);
    }
}
