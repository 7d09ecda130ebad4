//! `loopback`: brings `lo` up inside the sandbox.

use cni_skel::{CmdArgs, Plugin};
use cni_spec::error::CniResult;
use cni_spec::{Error, ErrorCode, Interface, IpConfig, Result};
use kit::ops::LinkOps;
use netlink::Socket;
use netns::NetNs;

/// The loopback plugin as the CNI skeleton runs it: sets `lo` up on ADD and
/// down on DEL.
pub struct Loopback;

fn open_sandbox(netns_path: &std::path::Path) -> CniResult<Socket> {
    let ns = NetNs::open(netns_path).map_err(|e| {
        Error::new(
            ErrorCode::UnknownContainer,
            format!("failed to open netns: {e}"),
        )
    })?;
    Socket::route_in(&ns)
        .map_err(|e| Error::io(format!("netlink in {}: {e}", netns_path.display())))
}

fn lo(sock: &dyn LinkOps) -> CniResult<netlink::Link> {
    sock.link_by_name("lo")
        .map_err(kit::err)?
        .ok_or_else(|| Error::io("sandbox has no loopback interface"))
}

impl Plugin for Loopback {
    fn name(&self) -> &'static str {
        "loopback"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let sock = open_sandbox(args.require_netns()?)?;
        add_core(&sock, args)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        // Nothing to undo when the sandbox is already gone (containerd's
        // second DEL comes without a netns).
        let Some(path) = args.netns_path() else {
            return Ok(());
        };
        let ns = match NetNs::open(path) {
            Ok(ns) => ns,
            Err(e) if e.is_gone() => return Ok(()),
            Err(e) => {
                return Err(kit::err(
                    kit::Error::NetNs(e).context("failed to open netns"),
                ))
            }
        };
        let sock = Socket::route_in(&ns).map_err(kit::err)?;
        del_core(&sock)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        check_core(&open_sandbox(args.require_netns()?)?)
    }
}

/// ADD on the seam: `lo` up, and its loopback addresses as the result
/// (or the previous result, chained).
fn add_core(sock: &dyn LinkOps, args: &CmdArgs) -> CniResult<Result> {
    let link = lo(sock)?;
    sock.set_link_up(link.index).map_err(kit::err)?;
    // The first address of each family actually on lo (none for IPv6
    // when the sandbox has it disabled); anything non-loopback there
    // is refused, as the reference does.
    let mut firsts = Vec::new();
    for family in [netlink::Family::V4, netlink::Family::V6] {
        let addrs = sock.addresses(Some(link.index), family).map_err(kit::err)?;
        if let Some(bad) = addrs.iter().find(|a| !a.addr.is_loopback()) {
            return Err(Error::internal(format!(
                "loopback interface found with non-loopback address \"{}\"",
                bad.addr
            )));
        }
        if let Some(a) = addrs.first() {
            firsts.push((a.addr, a.prefix));
        }
    }

    // Chained after another plugin: pass its result through untouched.
    if let Some(prev) = args.conf.prev_result()? {
        return Ok(prev);
    }
    let mut r = Result::new(args.version());
    r.interfaces.push(Interface {
        name: "lo".into(),
        mac: "00:00:00:00:00:00".into(),
        sandbox: args.netns.clone(),
        ..Default::default()
    });
    for (addr, prefix) in firsts {
        r.ips.push(IpConfig {
            interface: Some(0),
            address: ipnet::IpNet::new(addr, prefix)
                .map_err(|e| Error::internal(format!("{addr}/{prefix}: {e}")))?,
            gateway: None,
        });
    }
    Ok(r)
}

/// DEL on the seam: `lo` down.
fn del_core(sock: &dyn LinkOps) -> CniResult<()> {
    let link = lo(sock)?;
    sock.set_link_down(link.index).map_err(kit::err)
}

/// CHECK on the seam: `lo` is up.
fn check_core(sock: &dyn LinkOps) -> CniResult<()> {
    if !lo(sock)?.up {
        return Err(Error::internal("loopback interface is down"));
    }
    Ok(())
}

#[cfg(test)]
mod fake_tests {
    //! The verb cores on the recording fake, without root.
    use super::*;
    use kit::ops::fake::{cmd_args, RecordingNet};

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"lo","type":"loopback"}"#;

    fn sandbox() -> (RecordingNet, u32) {
        let net = RecordingNet::new();
        let lo = net.add_existing("lo");
        (net, lo)
    }

    #[test]
    fn add_brings_lo_up_and_reports_its_addresses() {
        let (net, i) = sandbox();
        net.add_address_with(i, "127.0.0.1".parse().expect("ip"), 8, &Default::default())
            .expect("seeded");
        net.forget();
        let r = add_core(&net, &cmd_args(CONF)).expect("ADD");
        assert_eq!(
            net.lines(),
            vec![
                "get lo".to_string(),
                format!("up {i}"),
                format!("addresses Some({i}) V4"),
                format!("addresses Some({i}) V6"),
            ]
        );
        assert_eq!(r.ips[0].address.to_string(), "127.0.0.1/8");
    }

    #[test]
    fn a_non_loopback_address_on_lo_is_code_999() {
        let (net, i) = sandbox();
        net.add_address_with(i, "10.0.0.1".parse().expect("ip"), 8, &Default::default())
            .expect("seeded");
        let e = add_core(&net, &cmd_args(CONF)).expect_err("refused");
        assert_eq!(e.code, 999);
        assert!(
            e.msg.contains("non-loopback address \"10.0.0.1\""),
            "{}",
            e.msg
        );
    }

    #[test]
    fn a_refused_link_up_is_code_5() {
        let (net, _) = sandbox();
        net.fail_next("up", kit::ops::fake::errno::EPERM);
        let e = add_core(&net, &cmd_args(CONF)).expect_err("refused");
        assert_eq!(e.code, 5);
    }

    #[test]
    fn del_sets_lo_down_and_check_then_fails_with_999() {
        let (net, i) = sandbox();
        add_core(&net, &cmd_args(CONF)).expect("ADD");
        check_core(&net).expect("up after ADD");
        del_core(&net).expect("DEL");
        assert_eq!(net.lines().last(), Some(&format!("down {i}")));
        let e = check_core(&net).expect_err("down");
        assert_eq!(
            (e.code, e.msg.as_str()),
            (999, "loopback interface is down")
        );
    }

    #[test]
    fn a_sandbox_without_lo_is_code_5() {
        let net = RecordingNet::new();
        let e = check_core(&net).expect_err("no lo");
        assert_eq!(e.code, 5);
    }
}
