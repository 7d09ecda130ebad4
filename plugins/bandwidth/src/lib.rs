//! `bandwidth`: rate limits for a container, a chained plugin.
//!
//! Traffic *to* the container (ingress) is shaped by a token bucket (tbf)
//! at the root of the host-side veth. Traffic *from* the container (egress)
//! arrives on the host veth's ingress; an ingress qdisc with a u32
//! match-all filter redirects it (mirred) to an IFB device named `bwp` + a
//! hash of network name and container id, as the reference names it, where
//! a second tbf shapes it. Rates are bits per second, bursts bits; both
//! come from the config or the `bandwidth` capability (either spelling).
//!
//! The IFB carries the alias `rcni-bandwidth:<network>:<containerID>`, so GC
//! can tell the devices of this network from others.

#[doc(hidden)]
pub mod fuzzing;
use cni_skel::{CmdArgs, Plugin};
use cni_spec::error::CniResult;
use cni_spec::runtime_config::Bandwidth;
use cni_spec::{Error, ErrorCode, Interface, Result};
use kit::routing::ShapingOps;
use kit::Teardown;
use netlink::tc::{handle, TC_H_INGRESS};
use netlink::{Link, Psched, Redirect, RedirectMatch, Socket, Tbf};
use netns::NetNs;
use serde::Deserialize;
use sha2::{Digest, Sha512};
use std::collections::BTreeSet;

/// The bandwidth plugin as the CNI skeleton runs it: shapes the pod's
/// traffic on ADD, removes the qdiscs and the IFB on DEL.
pub struct BandwidthPlugin;

const IFB_PREFIX: &str = "bwp";
const MAX_IFNAME: usize = 15;
const ALIAS_PREFIX: &str = "rcni-bandwidth:";
/// Reference: versions from 0.3.0 (it needs the interfaces of prevResult).
const VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The IFB device of (network, container), as the reference names it:
/// `bwp` followed by the start of the hex SHA-512 of name+id, 15 bytes.
pub fn ifb_name(network: &str, container_id: &str) -> String {
    let digest = Sha512::digest(format!("{network}{container_id}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let mut name = String::from(IFB_PREFIX);
    name.push_str(&hex[..MAX_IFNAME - IFB_PREFIX.len()]);
    name
}

fn ifb_alias(network: &str, container_id: &str) -> String {
    format!("{ALIAS_PREFIX}{network}:{container_id}")
}

#[derive(Debug, Clone, Default, Deserialize)]
struct RawRuntime {
    #[serde(default)]
    bandwidth: Option<Bandwidth>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct RawConf {
    #[serde(rename = "ingressRate", alias = "IngressRate", default)]
    ingress_rate: Option<u64>,
    #[serde(rename = "ingressBurst", alias = "IngressBurst", default)]
    ingress_burst: Option<u64>,
    #[serde(rename = "egressRate", alias = "EgressRate", default)]
    egress_rate: Option<u64>,
    #[serde(rename = "egressBurst", alias = "EgressBurst", default)]
    egress_burst: Option<u64>,
    #[serde(rename = "runtimeConfig", default)]
    runtime_config: Option<RawRuntime>,
}

/// One direction's limit, in bytes as tc wants them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limit {
    rate_bytes: u64,
    burst_bytes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Limits {
    ingress: Option<Limit>,
    egress: Option<Limit>,
}

fn limit(dir: &str, rate: u64, burst: u64) -> CniResult<Option<Limit>> {
    match (rate, burst) {
        (0, 0) => Ok(None),
        (_, 0) => Err(Error::invalid_config(format!(
            "{dir}: if rate is set, burst must also be set"
        ))),
        (0, _) => Err(Error::invalid_config(format!(
            "{dir}: if burst is set, rate must also be set"
        ))),
        _ if burst / 8 >= u64::from(u32::MAX) => Err(Error::invalid_config(format!(
            "{dir}: burst cannot be more than 4GB"
        ))),
        _ if rate < 8 || burst < 8 => Err(Error::invalid_config(format!(
            "{dir}: rate and burst must be at least 8 bits"
        ))),
        _ => Ok(Some(Limit {
            rate_bytes: rate / 8,
            burst_bytes: (burst / 8) as u32,
        })),
    }
}

impl Limits {
    fn load(args: &CmdArgs) -> CniResult<Limits> {
        let raw: RawConf = args.parse_conf()?;
        Self::from_raw(raw)
    }

    /// The config's own fields win when any is present; otherwise the
    /// capability (the reference's precedence).
    fn from_raw(raw: RawConf) -> CniResult<Limits> {
        let own = [
            raw.ingress_rate,
            raw.ingress_burst,
            raw.egress_rate,
            raw.egress_burst,
        ];
        let bw = if own.iter().any(Option::is_some) {
            Bandwidth {
                ingress_rate: raw.ingress_rate.unwrap_or(0),
                ingress_burst: raw.ingress_burst.unwrap_or(0),
                egress_rate: raw.egress_rate.unwrap_or(0),
                egress_burst: raw.egress_burst.unwrap_or(0),
            }
        } else {
            raw.runtime_config
                .and_then(|r| r.bandwidth)
                .unwrap_or_default()
        };
        Ok(Limits {
            ingress: limit("ingress", bw.ingress_rate, bw.ingress_burst)?,
            egress: limit("egress", bw.egress_rate, bw.egress_burst)?,
        })
    }

    fn is_zero(&self) -> bool {
        self.ingress.is_none() && self.egress.is_none()
    }
}

fn tbf(l: Limit) -> Tbf {
    Tbf::new(l.rate_bytes, l.burst_bytes)
}

/// The host side of the container's veth: the peer index of the container
/// interface, looked up here, and listed in prevResult without a sandbox
/// (the reference's rule, which also guards against an index that means
/// something else in this namespace).
fn host_interface(host: &Socket, prev: &Result, netns: &str, ifname: &str) -> CniResult<Link> {
    let peer = pod_peer(netns, ifname)?;
    host_side(host, prev, peer, ifname)
}

/// The index (in the host namespace) of the veth peer of the container's
/// `ifname`.
fn pod_peer(netns: &str, ifname: &str) -> CniResult<u32> {
    let ns = NetNs::open(netns).map_err(|e| {
        Error::new(
            ErrorCode::UnknownContainer,
            format!("failed to open netns: {e}"),
        )
    })?;
    let pod = Socket::route_in(&ns).map_err(kit::err)?;
    let c = pod
        .link_by_name(ifname)
        .map_err(kit::err)?
        .ok_or_else(|| Error::io(format!("container interface {ifname} not found")))?;
    c.link
        .filter(|_| c.kind.as_deref() == Some("veth"))
        .ok_or_else(|| Error::io(format!("container interface {ifname} has no veth peer")))
}

/// The host link with index `peer`, if prevResult lists it on the host.
fn host_side(host: &dyn ShapingOps, prev: &Result, peer: u32, ifname: &str) -> CniResult<Link> {
    let link = host
        .link_by_index(peer)
        .map_err(kit::err)?
        .ok_or_else(|| Error::io(format!("veth peer with index {peer} is not in host ns")))?;
    if prev
        .interfaces
        .iter()
        .any(|i| i.sandbox.is_empty() && i.name == link.name)
    {
        Ok(link)
    } else {
        Err(Error::io(format!(
            "no veth peer of container interface {ifname} found in prevResult (host side is {})",
            link.name
        )))
    }
}

/// Removes what ADD may have set on the host veth and the IFB.
fn teardown(host: &dyn ShapingOps, host_if: Option<&Link>, ifb: &str) -> Teardown {
    let mut td = Teardown::new();
    td.step(host.delete_link_by_name(ifb));
    if let Some(l) = host_if {
        match host.qdiscs(Some(l.index)) {
            Ok(qs) => {
                for q in qs {
                    let ours_root = q.kind == "tbf" && q.handle == handle(1, 0);
                    let ours_ingress = q.kind == "ingress";
                    let r = if ours_root {
                        host.del_root_qdisc(l.index)
                    } else if ours_ingress {
                        host.del_ingress_qdisc(l.index)
                    } else {
                        continue;
                    };
                    td.step(r);
                }
            }
            Err(e) => td.push(e),
        }
    }
    td
}

/// [`shape`]'s steps; `(name, alias)` of the IFB to make for egress.
fn setup(
    host: &dyn ShapingOps,
    host_if: &Link,
    limits: &Limits,
    (name, alias): (&str, &str),
) -> CniResult<Option<Interface>> {
    if let Some(l) = limits.ingress {
        host.add_tbf(host_if.index, handle(1, 0), &tbf(l), false)
            .map_err(kit::err)?;
    }
    let Some(l) = limits.egress else {
        return Ok(None);
    };
    host.create_ifb(name).map_err(kit::err)?;
    let ifb = host
        .link_by_name(name)
        .map_err(kit::err)?
        .ok_or_else(|| Error::io(format!("ifb device {name} vanished after creation")))?;
    host.set_alias(ifb.index, alias).map_err(kit::err)?;
    host.set_mtu(ifb.index, host_if.mtu).map_err(kit::err)?;
    host.set_txqlen(ifb.index, host_if.txqlen)
        .map_err(kit::err)?;
    host.set_link_up(ifb.index).map_err(kit::err)?;
    host.add_ingress_qdisc(host_if.index).map_err(kit::err)?;
    let redirect = Redirect {
        parent: handle(0xffff, 0),
        prio: 1,
        matcher: RedirectMatch::U32,
        target: ifb.index,
    };
    host.add_redirect_filter(host_if.index, &redirect)
        .map_err(kit::err)?;
    host.add_tbf(ifb.index, handle(1, 0), &tbf(l), false)
        .map_err(kit::err)?;
    Ok(Some(Interface {
        name: name.to_string(),
        mac: netlink::format_mac(&ifb.mac),
        ..Default::default()
    }))
}

/// The root tbf of `index` has this rate and (within tick rounding) burst.
fn check_tbf(
    host: &dyn ShapingOps,
    index: u32,
    what: &str,
    l: Limit,
    ps: &Psched,
) -> CniResult<()> {
    let qs = host.qdiscs(Some(index)).map_err(kit::err)?;
    let t = qs
        .iter()
        .find(|q| q.kind == "tbf" && q.handle == handle(1, 0))
        .and_then(|q| q.tbf)
        .ok_or_else(|| Error::internal(format!("no tbf qdisc on {what}")))?;
    if t.rate != l.rate_bytes {
        return Err(Error::internal(format!(
            "rate of the tbf on {what} is {} bytes/s, configured {}",
            t.rate, l.rate_bytes
        )));
    }
    let burst = t.burst(ps);
    let want = u64::from(l.burst_bytes);
    if burst.abs_diff(want) > want / 100 + 2 {
        return Err(Error::internal(format!(
            "burst of the tbf on {what} is {burst} bytes, configured {want}"
        )));
    }
    Ok(())
}

/// ADD's work on the host: the ingress tbf, and for egress the IFB with
/// its redirect and tbf; refuses a veth someone else shapes, and takes back
/// what it made on failure.
fn shape(
    host: &dyn ShapingOps,
    host_if: &Link,
    limits: &Limits,
    network: &str,
    container_id: &str,
) -> CniResult<Option<Interface>> {
    // Refuse to stack on a shaping someone else set up.
    if host
        .qdiscs(Some(host_if.index))
        .map_err(kit::err)?
        .iter()
        .any(|q| {
            (q.kind == "tbf" && limits.ingress.is_some())
                || (q.kind == "ingress" && limits.egress.is_some())
        })
    {
        return Err(Error::io(format!(
            "{} already has traffic shaping configured",
            host_if.name
        )));
    }
    let ifb = ifb_name(network, container_id);
    let alias = ifb_alias(network, container_id);
    setup(host, host_if, limits, (&ifb, &alias)).inspect_err(|_| {
        let _ = teardown(host, Some(host_if), &ifb);
    })
}

/// CHECK's work on the host: the tbf of each configured direction, and for
/// egress the ingress qdisc with its redirect to the IFB `name`.
fn check_shaping(
    host: &dyn ShapingOps,
    host_if: &Link,
    limits: &Limits,
    name: &str,
    ps: &Psched,
) -> CniResult<()> {
    if let Some(l) = limits.ingress {
        check_tbf(host, host_if.index, &host_if.name, l, ps)?;
    }
    if let Some(l) = limits.egress {
        let ifb = host
            .link_by_name(name)
            .map_err(kit::err)?
            .ok_or_else(|| Error::internal(format!("ifb device {name} not found")))?;
        check_tbf(host, ifb.index, name, l, ps)?;
        let has_ingress = host
            .qdiscs(Some(host_if.index))
            .map_err(kit::err)?
            .iter()
            .any(|q| q.kind == "ingress" && q.parent == TC_H_INGRESS);
        let filters = host
            .filters(host_if.index, handle(0xffff, 0))
            .map_err(kit::err)?;
        if !has_ingress || filters.is_empty() {
            return Err(Error::internal(format!(
                "no ingress redirect from {} to {name}",
                host_if.name
            )));
        }
    }
    Ok(())
}

/// GC's work on the host: deletes this network's IFB devices not in `keep`.
fn gc_ifbs(host: &dyn ShapingOps, network: &str, keep: &BTreeSet<String>) -> CniResult<()> {
    let prefix = format!("{ALIAS_PREFIX}{network}:");
    let mut td = Teardown::new();
    for l in host.links().map_err(kit::err)? {
        let ours = l.kind.as_deref() == Some("ifb")
            && l.name.starts_with(IFB_PREFIX)
            && l.alias.as_deref().is_some_and(|a| a.starts_with(&prefix));
        if ours && !keep.contains(&l.name) {
            td.step(host.delete_link(l.index));
        }
    }
    Ok(td.finish()?)
}

impl Plugin for BandwidthPlugin {
    fn name(&self) -> &'static str {
        "bandwidth"
    }

    fn supported_versions(&self) -> &'static [&'static str] {
        VERSIONS
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let limits = Limits::load(args)?;
        // Without prevResult there is nothing to pass on, limits or not.
        let mut prev = args
            .conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("bandwidth must be called as a chained plugin"))?;
        if limits.is_zero() {
            return Ok(prev);
        }
        let host = Socket::route().map_err(kit::err)?;
        let host_if = host_interface(&host, &prev, &args.netns, &args.ifname)?;
        let ifb = shape(
            &host,
            &host_if,
            &limits,
            &args.conf.name,
            &args.container_id,
        )?;
        prev.interfaces.extend(ifb);
        Ok(prev)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        Limits::load(args)?;
        let host = Socket::route().map_err(kit::err)?;
        let ifb = ifb_name(&args.conf.name, &args.container_id);
        // With prevResult and the sandbox still there, also clear the
        // host veth's qdiscs (the veth usually dies with the pod anyway).
        let prev = args.conf.prev_result().ok().flatten();
        let host_if = match (&prev, args.netns_path()) {
            (Some(p), Some(_)) => host_interface(&host, p, &args.netns, &args.ifname).ok(),
            _ => None,
        };
        Ok(teardown(&host, host_if.as_ref(), &ifb).finish()?)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let limits = Limits::load(args)?;
        let prev = args
            .conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("bandwidth must be called as a chained plugin"))?;
        let host = Socket::route().map_err(kit::err)?;
        let host_if = host_interface(&host, &prev, &args.netns, &args.ifname)?;
        check_shaping(
            &host,
            &host_if,
            &limits,
            &ifb_name(&args.conf.name, &args.container_id),
            &Psched::read(),
        )
    }

    /// Removes this network's IFB devices whose attachment is not listed.
    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        let network = &args.conf.name;
        let keep: BTreeSet<String> = args
            .conf
            .gc_attachments()
            .iter()
            .map(|a| ifb_name(network, &a.container_id))
            .collect();
        let host = Socket::route().map_err(kit::err)?;
        gc_ifbs(&host, network, &keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> CniResult<Limits> {
        let r: RawConf =
            serde_json::from_str(json).map_err(|e| Error::invalid_config(e.to_string()))?;
        Limits::from_raw(r)
    }

    #[test]
    fn add_without_prev_result_is_code_7_with_or_without_limits() {
        for extra in [
            "",
            r#","runtimeConfig":{"bandwidth":{"ingressRate":8000,"ingressBurst":800}}"#,
        ] {
            let conf = format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"bandwidth"{extra}}}"#);
            let args = cni_skel::fuzzing::args(conf.as_bytes()).expect("args");
            let e = BandwidthPlugin.add(&args).expect_err("no prevResult");
            assert_eq!(e.code, 7, "{e}");
            assert!(e.msg.contains("chained"), "{e}");
        }
    }

    #[test]
    fn ifb_name_is_the_reference_hash() {
        let n = ifb_name("mynet", "ctr1");
        assert_eq!(n.len(), 15);
        assert!(n.starts_with("bwp"));
        // sha512("mynetctr1") starts with these hex digits.
        let d = Sha512::digest(b"mynetctr1");
        assert_eq!(&n[3..5], format!("{:02x}", d[0]));
        assert_ne!(n, ifb_name("mynet", "ctr2"));
    }

    #[test]
    fn pairs_are_all_or_none() {
        assert!(raw("{}").expect("empty").is_zero());
        assert_eq!(
            raw(r#"{"ingressRate":1000}"#).expect_err("no burst").code,
            7
        );
        assert_eq!(raw(r#"{"egressBurst":1000}"#).expect_err("no rate").code, 7);
        assert_eq!(
            raw(r#"{"egressRate":8000,"egressBurst":34359738368}"#)
                .expect_err("4GB")
                .code,
            7
        );
        let l = raw(r#"{"ingressRate":8000000,"ingressBurst":80000}"#).expect("ok");
        assert_eq!(
            l.ingress,
            Some(Limit {
                rate_bytes: 1_000_000,
                burst_bytes: 10_000
            })
        );
        assert_eq!(l.egress, None);
    }

    #[test]
    fn capability_in_both_spellings_and_precedence() {
        let l = raw(r#"{"runtimeConfig":{"bandwidth":{"IngressRate":16000,"IngressBurst":4294967295,"EgressRate":8000,"EgressBurst":800}}}"#)
            .expect("containerd");
        assert_eq!(l.ingress.map(|x| x.rate_bytes), Some(2000));
        assert_eq!(l.egress.map(|x| x.burst_bytes), Some(100));
        let l = raw(r#"{"runtimeConfig":{"bandwidth":{"ingressRate":16000,"ingressBurst":800}}}"#)
            .expect("podman");
        assert_eq!(l.ingress.map(|x| x.rate_bytes), Some(2000));
        // Config fields win over the capability.
        let l = raw(r#"{"egressRate":80000,"egressBurst":800,"runtimeConfig":{"bandwidth":{"ingressRate":16000,"ingressBurst":800}}}"#)
            .expect("both");
        assert_eq!(l.ingress, None);
        assert_eq!(l.egress.map(|x| x.rate_bytes), Some(10000));
    }
}

/// The verb cores on the recording fake: operation order, undo and error
/// codes without root (tests/bandwidth.rs shapes real traffic).
#[cfg(test)]
mod fake_tests {
    use super::*;
    use kit::routing::fake::FakeHost;

    use kit::ops::fake::errno::EPERM;

    fn both() -> Limits {
        Limits {
            ingress: Some(Limit {
                rate_bytes: 1000,
                burst_bytes: 100,
            }),
            egress: Some(Limit {
                rate_bytes: 2000,
                burst_bytes: 200,
            }),
        }
    }

    /// A host with the pod's veth `veth1` and a prevResult listing it.
    fn host() -> (FakeHost, Link) {
        let host = FakeHost::new();
        let index = host.add_link("veth1", "veth");
        let mut prev = Result::new("1.0.0");
        prev.interfaces.push(Interface {
            name: "veth1".into(),
            ..Default::default()
        });
        let link = host_side(&host, &prev, index, "eth0").expect("host side");
        (host, link)
    }

    #[test]
    fn add_shapes_ingress_then_builds_the_ifb_and_redirects_egress_to_it() {
        let (host, veth) = host();
        let ifb = shape(&host, &veth, &both(), "net", "ctr").expect("add");
        let name = ifb_name("net", "ctr");
        assert_eq!(ifb.map(|i| i.name), Some(name.clone()));
        let ifb = host.link(&name).expect("ifb").index;
        let v = veth.index;
        assert_eq!(
            host.lines(),
            vec![
                format!("tbf {v} rate 1000 burst 100"),
                format!("ifb {name}"),
                format!("alias {ifb} rcni-bandwidth:net:ctr"),
                format!("mtu {ifb} 1500"),
                format!("txqlen {ifb} 1000"),
                format!("up {ifb}"),
                format!("ingress {v}"),
                format!("redirect {v} -> {ifb}"),
                format!("tbf {ifb} rate 2000 burst 200"),
            ]
        );
    }

    #[test]
    fn a_refused_redirect_fails_add_with_code_5_and_removes_ifb_and_qdiscs() {
        let (host, veth) = host();
        host.fail_next("redirect", EPERM);
        let e = shape(&host, &veth, &both(), "net", "ctr").expect_err("refused");
        assert_eq!(e.code, 5, "{e}");
        assert!(host.link(&ifb_name("net", "ctr")).is_none());
        assert!(host.qdiscs.borrow().is_empty());
        assert_eq!(host.links.borrow().len(), 1);
    }

    #[test]
    fn add_refuses_a_veth_someone_else_shapes_with_code_5_and_touches_nothing() {
        let (host, veth) = host();
        host.qdiscs.borrow_mut().push(netlink::Qdisc {
            index: veth.index,
            handle: handle(1, 0),
            parent: netlink::tc::TC_H_ROOT,
            kind: "tbf".into(),
            tbf: None,
        });
        let e = shape(&host, &veth, &both(), "net", "ctr").expect_err("shaped");
        assert_eq!(e.code, 5);
        assert!(e.msg.contains("already has traffic shaping"), "{e}");
        assert!(host.lines().is_empty());
    }

    #[test]
    fn a_host_veth_missing_from_prev_result_is_code_5() {
        let (host, veth) = host();
        let e = host_side(&host, &Result::new("1.0.0"), veth.index, "eth0").expect_err("unlisted");
        assert_eq!(e.code, 5);
        let e = host_side(&host, &Result::new("1.0.0"), 999, "eth0").expect_err("gone");
        assert_eq!(e.code, 5);
    }

    #[test]
    fn del_after_add_leaves_nothing_and_del_again_succeeds() {
        let (host, veth) = host();
        shape(&host, &veth, &both(), "net", "ctr").expect("add");
        let ifb = ifb_name("net", "ctr");
        teardown(&host, Some(&veth), &ifb).finish().expect("del");
        assert!(host.qdiscs.borrow().is_empty());
        assert_eq!(host.links.borrow().len(), 1);
        teardown(&host, Some(&veth), &ifb)
            .finish()
            .expect("del again");
        teardown(&host, None, &ifb)
            .finish()
            .expect("del without the veth");
    }

    #[test]
    fn check_of_missing_shaping_fails_with_code_999() {
        let (host, veth) = host();
        let name = ifb_name("net", "ctr");
        let ps = Psched::read();
        let e = check_shaping(&host, &veth, &both(), &name, &ps).expect_err("no tbf");
        assert_eq!(e.code, 999);
        assert!(e.msg.contains("no tbf qdisc"), "{e}");
        let egress = Limits {
            ingress: None,
            ..both()
        };
        let e = check_shaping(&host, &veth, &egress, &name, &ps).expect_err("no ifb");
        assert_eq!(e.code, 999);
        assert!(e.msg.contains("not found"), "{e}");
    }

    #[test]
    fn gc_deletes_only_this_networks_ifbs_not_kept() {
        let (host, veth) = host();
        shape(&host, &veth, &both(), "net", "gone").expect("add");
        let kept = host.add_link(&ifb_name("net", "kept"), "ifb");
        host.links.borrow_mut()[2].alias = Some("rcni-bandwidth:net:kept".into());
        let other = host.add_link(&ifb_name("other", "x"), "ifb");
        host.links.borrow_mut()[3].alias = Some("rcni-bandwidth:other:x".into());
        let keep: BTreeSet<String> = [ifb_name("net", "kept")].into();
        gc_ifbs(&host, "net", &keep).expect("gc");
        let left: Vec<u32> = host.links.borrow().iter().map(|l| l.index).collect();
        assert_eq!(left, vec![veth.index, kept, other]);
    }
}
