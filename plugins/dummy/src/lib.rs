//! `dummy`: the container gets a dummy interface (no lower device, no
//! peer), with the addresses and routes of its `ipam` section.

use cni_skel::{CmdArgs, Plugin};
use cni_spec::error::CniResult;
use cni_spec::{Error, Result};
use kit::ops::LinkOps;
use kit::podlink;
use kit::Undo;
use netlink::{LinkKind, LinkSpec};

/// The dummy plugin as the CNI skeleton runs it: creates the pod's dummy
/// interface on ADD, deletes it and releases its addresses on DEL.
pub struct Dummy;

/// The order DEL takes the pod link and the address in (as the reference).
const DEL_ORDER: podlink::DelOrder = podlink::DelOrder::IpamFirst;

/// The IPAM plugin's type; the reference requires one.
fn ipam(args: &CmdArgs) -> CniResult<String> {
    let _: serde_json::Value = args.parse_conf()?;
    podlink::ipam_type(args)
        .ok_or_else(|| Error::invalid_config("dummy interface requires an IPAM configuration"))
}

impl Plugin for Dummy {
    fn name(&self) -> &'static str {
        "dummy"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let ipam = ipam(args)?;
        let ns = podlink::Namespaces::open(args)?;
        let ipam = podlink::Delegated {
            plugin: &ipam,
            args,
        };
        let mut result = add_core(ns.seam(), args, &ipam)?;
        result.dns = args.conf.dns.clone().unwrap_or_default();
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let ipam = ipam(args)?;
        Ok(podlink::del_one_link(args, Some(&ipam), DEL_ORDER)?)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let ipam = ipam(args)?;
        let ns = podlink::Namespaces::open(args)?;
        kit::pass_to_ipam(Some(&ipam), cni_skel::Command::Check, args)?;
        check_core(&ns.cont, args)
    }

    kit::ipam_gc_and_status!(|args| ipam(args).map(Some));
}

/// ADD on the seam: the dummy made in the pod, then IPAM's addresses (at
/// least one). Undone on failure.
fn add_core<'a>(
    at: podlink::Seam<'a>,
    args: &CmdArgs,
    ipam: &'a dyn podlink::IpamOps,
) -> CniResult<Result> {
    let spec = LinkSpec::new(&args.ifname, LinkKind::Dummy);
    let link = podlink::create_in_pod(at, true, &spec, "dummy")?;
    let mut undo = Undo::new();
    podlink::undo_link(&mut undo, at.cont, &link, "dummy");
    let r = podlink::ipam_add(ipam, &mut undo)?;
    let mut result = Result::new(args.version());
    result.interfaces = vec![podlink::pod_interface(&link, &args.netns)];
    result.adopt_ipam(r, 0);
    if result.ips.is_empty() {
        return Err(Error::internal("IPAM plugin returned missing IP config"));
    }
    kit::configure_iface(at.cont, &link, &result, &kit::IfaceOptions::default())
        .map_err(Error::from)?;
    undo.commit();
    Ok(result)
}

/// CHECK on the seam: the pod's dummy against prevResult.
fn check_core(cont: &dyn LinkOps, args: &CmdArgs) -> CniResult<()> {
    let prev = podlink::prev_required(args, "required prevResult missing")?;
    let c = kit::iface::prev_container_link(cont, &prev, &args.ifname, &args.netns)?;
    if c.kind.as_deref() != Some("dummy") {
        return Err(podlink::not_of_type(&c, "error", "dummy"));
    }
    podlink::check_ips_routes(cont, &c, &prev)
}

#[cfg(test)]
mod fake_tests {
    //! The verb cores on the recording fakes, without root; dummy needs
    //! the VM lane for its namespace tests.
    use super::*;
    use kit::ops::fake::{self, cmd_args, seam, with_prev, FakeIpam, RecordingNet};

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"n","type":"dummy","ipam":{"type":"fake"}}"#;

    #[test]
    fn add_checks_the_name_makes_the_dummy_then_brings_it_up_and_addresses_it() {
        let net = RecordingNet::new();
        let ipam = FakeIpam::v4("10.6.0.5/24", "10.6.0.1");
        let r = add_core(seam(&net), &cmd_args(CONF), &ipam).expect("ADD");
        let i = net.index_of("eth0");
        assert_eq!(
            net.lines(),
            vec![
                "get eth0".to_string(),
                "create eth0 dummy".to_string(),
                "get eth0".to_string(),
                format!("up {i}"),
                format!("addr {i} 10.6.0.5/24"),
                format!("route 0.0.0.0/0 via 10.6.0.1 dev {i}"),
            ]
        );
        assert_eq!(r.ips.len(), 1);
    }

    #[test]
    fn an_address_the_kernel_refuses_undoes_the_dummy_with_code_5() {
        let net = RecordingNet::new();
        let ipam = FakeIpam::v4("10.6.0.5/24", "10.6.0.1");
        net.fail_next("addr", fake::errno::EINVAL);
        let e = add_core(seam(&net), &cmd_args(CONF), &ipam).expect_err("refused");
        assert_eq!(e.code, 5, "{e:?}");
        fake::assert_all_undone(&net, &ipam, &[]);
    }

    #[test]
    fn an_ifname_already_in_the_pod_is_code_999() {
        let net = RecordingNet::new();
        net.add_existing("eth0");
        let ipam = FakeIpam::v4("10.6.0.5/24", "10.6.0.1");
        let e = add_core(seam(&net), &cmd_args(CONF), &ipam).expect_err("taken");
        assert_eq!(e.code, 999, "{e:?}");
        assert!(ipam.calls().is_empty());
    }

    #[test]
    fn del_of_a_dummy_already_gone_releases_and_succeeds() {
        let net = RecordingNet::new();
        let ipam = FakeIpam::v4("10.6.0.5/24", "10.6.0.1");
        kit::podlink::del_teardown(Some(&net), None, "eth0", Some(&ipam), DEL_ORDER)
            .finish()
            .expect("DEL");
        assert_eq!(ipam.calls(), vec!["ipam del"]);
    }

    #[test]
    fn check_of_a_non_dummy_is_code_999() {
        let net = RecordingNet::new();
        let ipam = FakeIpam::v4("10.6.0.5/24", "10.6.0.1");
        let args = cmd_args(CONF);
        let r = add_core(seam(&net), &args, &ipam).expect("ADD");
        net.retype("eth0", "veth");
        let e = check_core(&net, &with_prev(&args, &r)).expect_err("not dummy");
        assert_eq!(e.code, 999);
        assert_eq!(e.msg, "error: Container interface eth0 not of type dummy");
    }
}
