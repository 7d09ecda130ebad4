//! `portmap`: forwards host ports to the container, as a chained plugin.
//!
//! The firewall side is [`nft::rulesets::portmap`]: one table `inet rcni-portmap`
//! whose maps hold every mapping on the node, so ADD adds a handful of map
//! elements in one transaction whatever the number of mapped ports, and DEL
//! removes the elements commented with this attachment — without needing
//! the netns or prevResult (the reference runs iptables on every DEL).
//!
//! Config (reference names): `snat` (default true), `masqAll`,
//! `markMasqBit` (0–31, accepted; no mark is needed here, see
//! [`nft::rulesets::portmap`]), `externalSetMarkChain` (accepted, unused for the
//! same reason), `conditionsV4`/`conditionsV6` (nftables match expressions
//! restricting this attachment's mappings, see [`conditions`]; iptables
//! syntax is refused with code 2), runtimeConfig `portMappings` in both the
//! camelCase and containerd's capitalised spelling.

pub mod conditions;
#[doc(hidden)]
pub mod fuzzing;
use std::net::IpAddr;

use cni_skel::{CmdArgs, Plugin};
use cni_spec::error::CniResult;
use cni_spec::runtime_config::RuntimeConfig;
use cni_spec::{Error, ErrorCode, Result};
use kit::filter::{ConditionalForwards, Owner, PortmapRules};
use kit::procsys::{ProcSys, SysctlOps};
use kit::routing::RoutingOps;
use nft::rulesets::portmap::{self, Mapping, Options, Proto};
use nft::{IpVersion, Nft};
use serde::Deserialize;

/// The portmap plugin as the CNI skeleton runs it: installs the pod's port
/// forwards on ADD, removes them on DEL.
pub struct Portmap;

#[derive(Debug, Default, Deserialize)]
struct Config {
    #[serde(default)]
    snat: Option<bool>,
    #[serde(rename = "masqAll", default)]
    masq_all: bool,
    #[serde(rename = "markMasqBit", default)]
    mark_masq_bit: Option<i64>,
    #[serde(rename = "externalSetMarkChain", default)]
    external_set_mark_chain: Option<String>,
    #[serde(rename = "conditionsV4", default)]
    conditions_v4: Option<Vec<String>>,
    #[serde(rename = "conditionsV6", default)]
    conditions_v6: Option<Vec<String>>,
}

impl Config {
    fn validate(&self) -> CniResult<()> {
        if let Some(b) = self.mark_masq_bit {
            if !(0..=31).contains(&b) {
                return Err(Error::invalid_config(format!(
                    "invalid markMasqBit {b}: must be between 0 and 31"
                )));
            }
            if self.external_set_mark_chain.is_some() {
                return Err(Error::invalid_config(
                    "cannot specify externalSetMarkChain and markMasqBit",
                ));
            }
        }
        self.conditions().map(drop)
    }
    /// The parsed `conditionsV4` and `conditionsV6`.
    fn conditions(&self) -> CniResult<(Vec<portmap::Condition>, Vec<portmap::Condition>)> {
        Ok((
            conditions::parse("conditionsV4", self.conditions_v4.as_deref(), false)?,
            conditions::parse("conditionsV6", self.conditions_v6.as_deref(), true)?,
        ))
    }
    fn options(&self) -> Options {
        Options {
            snat: self.snat.unwrap_or(true),
            masq_all: self.masq_all,
            // Found by ADD (a route lookup), not configured.
            pod_links: Vec::new(),
        }
    }
}

fn runtime_mappings(args: &CmdArgs) -> CniResult<Vec<cni_spec::runtime_config::PortMapping>> {
    let Some(rc) = &args.conf.runtime_config else {
        return Ok(Vec::new());
    };
    // Go decodes `null` as the zero value (no mappings); so does this.
    let mut rc = rc.clone();
    if let Some(o) = rc.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    let rc: RuntimeConfig = serde_json::from_value(rc)
        .map_err(|e| Error::decoding(format!("failed to parse runtimeConfig: {e}")))?;
    Ok(rc.port_mappings)
}

/// The container's addresses in prevResult for interface `ifname`, first
/// of each family, as the reference picks them: an address is skipped only
/// when its interface index names a listed interface that is not `ifname`
/// in the sandbox (no index, or one past the list, still counts). With
/// several attachments in one pod (multus), `net1`'s portmap maps to
/// `net1`'s address, not `eth0`'s.
fn pod_ips(prev: &Result, ifname: &str) -> (Option<IpAddr>, Option<IpAddr>) {
    let mut v4 = None;
    let mut v6 = None;
    for ip in &prev.ips {
        let elsewhere = ip
            .interface
            .and_then(|i| prev.interfaces.get(i))
            .is_some_and(|x| x.name != ifname || x.sandbox.is_empty());
        if elsewhere {
            continue;
        }
        match ip.address.addr() {
            a @ IpAddr::V4(_) => {
                v4.get_or_insert(a);
            }
            a @ IpAddr::V6(_) => {
                v6.get_or_insert(a);
            }
        }
    }
    (v4, v6)
}

fn build_mappings(args: &CmdArgs, prev: &Result) -> CniResult<Vec<Mapping>> {
    let (v4, v6) = pod_ips(prev, &args.ifname);
    let mut out = Vec::new();
    for pm in runtime_mappings(args)? {
        let proto = Proto::parse(&pm.protocol).ok_or_else(|| {
            Error::invalid_config(format!("unknown port mapping protocol {:?}", pm.protocol))
        })?;
        if pm.host_port == 0 || pm.container_port == 0 {
            return Err(Error::invalid_config(format!(
                "invalid port mapping {}:{}: ports must be 1-65535",
                pm.host_port, pm.container_port
            )));
        }
        let host_ip: Option<IpAddr> =
            if pm.host_ip.is_empty() {
                None
            } else {
                Some(pm.host_ip.parse().map_err(|_| {
                    Error::invalid_config(format!("invalid hostIP {:?}", pm.host_ip))
                })?)
            }
            .filter(|h: &IpAddr| !h.is_unspecified());
        for pod in [v4, v6].into_iter().flatten() {
            if host_ip.is_some_and(|h| h.is_ipv4() != pod.is_ipv4()) {
                continue;
            }
            out.push(Mapping {
                network: args.conf.name.clone(),
                container_id: args.container_id.clone(),
                ifname: args.ifname.clone(),
                proto,
                host_ip,
                host_port: pm.host_port,
                pod_ip: pod,
                pod_port: pm.container_port,
            });
        }
    }
    Ok(out)
}

/// A pod address and the node's interface that routes to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PodLink {
    ip: IpAddr,
    index: u32,
    name: String,
}

/// The node's interface that routes to each pod address (a bridge, or a
/// ptp host veth), found by a route lookup as the reference does, so it
/// works for every result version (0.1.0/0.2.0 list no interfaces). One
/// route lookup per address, one link lookup per interface; an address
/// the node has no route to is left out.
fn pod_links(sock: &dyn RoutingOps, pod_ips: &[IpAddr]) -> CniResult<Vec<PodLink>> {
    let mut out: Vec<PodLink> = Vec::new();
    for ip in pod_ips {
        if out.iter().any(|l| l.ip == *ip) {
            continue;
        }
        let Some(index) = sock.route_get(*ip).map_err(kit::err)?.and_then(|r| r.oif) else {
            continue;
        };
        let name = match out.iter().find(|l| l.index == index) {
            Some(l) => l.name.clone(),
            None => match sock.link_by_index(index).map_err(kit::err)? {
                Some(link) => link.name,
                None => continue,
            },
        };
        out.push(PodLink {
            ip: *ip,
            index,
            name,
        });
    }
    Ok(out)
}

/// Of `links`, those the network itself made on the node: listed in
/// `prev` without a sandbox (a bridge, a ptp host veth), as (pod address,
/// interface index). Only their traffic comes from the pod's neighbours; a
/// pod address routed via the node's uplink (macvlan on the LAN) would
/// otherwise masquerade every client.
fn own_links(prev: &Result, links: &[PodLink]) -> Vec<(IpAddr, u32)> {
    let host_side = |name: &str| {
        prev.interfaces
            .iter()
            .any(|i| i.sandbox.is_empty() && i.name == name)
    };
    links
        .iter()
        .filter(|l| host_side(&l.name))
        .map(|l| (l.ip, l.index))
        .collect()
}

/// Connections from 127.0.0.0/8 DNATed to a pod leave through the node's
/// interface that routes to the pod (`links`, from [`pod_links`]): it must
/// accept local sources. Each interface once.
fn enable_route_localnet(sys: &dyn SysctlOps, links: &[PodLink]) -> CniResult<()> {
    let mut done: Vec<&str> = Vec::new();
    for l in links.iter().filter(|l| l.ip.is_ipv4()) {
        if done.contains(&l.name.as_str()) {
            continue;
        }
        done.push(&l.name);
        let key = kit::sysctl::net_key_path("net/ipv4/conf/IFNAME/route_localnet", &l.name)
            .map_err(kit::err)?;
        sys.write(&key, "1")?;
    }
    Ok(())
}

/// Host ports of the UDP mappings among `mappings`, per address family
/// of the pod address (the entries to flush live in that family's table).
fn udp_ports_per_family(mappings: &[Mapping]) -> Vec<(IpVersion, Vec<u16>)> {
    let mut out: Vec<(IpVersion, Vec<u16>)> = Vec::new();
    for m in mappings.iter().filter(|m| m.proto == Proto::Udp) {
        let v = IpVersion::of(m.pod_ip);
        match out.iter_mut().find(|(x, _)| *x == v) {
            Some((_, ports)) => {
                if !ports.contains(&m.host_port) {
                    ports.push(m.host_port);
                }
            }
            None => out.push((v, vec![m.host_port])),
        }
    }
    out
}

/// Host ports of the runtime's UDP mappings (DEL: no validation, as the
/// reference's DEL does not validate either).
fn udp_host_ports(requested: &[cni_spec::runtime_config::PortMapping]) -> Vec<u16> {
    let mut ports: Vec<u16> = requested
        .iter()
        .filter(|pm| pm.protocol.eq_ignore_ascii_case("udp") && pm.host_port != 0)
        .map(|pm| pm.host_port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Families whose UDP entries DEL flushes: those of the pod's addresses in
/// prevResult, or both when DEL comes without a usable one.
fn del_families(args: &CmdArgs) -> Vec<IpVersion> {
    let both = vec![IpVersion::V4, IpVersion::V6];
    let Ok(Some(prev)) = args.conf.prev_result() else {
        return both;
    };
    let (v4, v6) = pod_ips(&prev, &args.ifname);
    let found: Vec<IpVersion> = [v4, v6].into_iter().flatten().map(IpVersion::of).collect();
    if found.is_empty() {
        both
    } else {
        found
    }
}

/// Deletes the conntrack entries of UDP datagrams to `ports`. As in the
/// reference, a failure is logged (stderr, `RCNI_LOG_FILE`) and does not fail the call:
/// the firewall change itself is done.
fn flush_udp(rules: &dyn PortmapRules, version: IpVersion, ports: &[u16]) {
    if let Err(e) = rules.flush_udp(version, ports) {
        cni_skel::log::warn(&format!(
            "portmap: failed to delete stale UDP conntrack entries: {e}"
        ));
    }
}

/// (conditional, plain): mappings whose address family has conditions,
/// and the others.
fn split_conditional(
    mappings: Vec<Mapping>,
    c4: &[portmap::Condition],
    c6: &[portmap::Condition],
) -> (Vec<Mapping>, Vec<Mapping>) {
    mappings.into_iter().partition(|m| {
        if m.pod_ip.is_ipv4() {
            !c4.is_empty()
        } else {
            !c6.is_empty()
        }
    })
}

fn prev_result(args: &CmdArgs) -> CniResult<Result> {
    args.conf.prev_result()?.ok_or_else(|| {
        Error::invalid_config("portmap must be called as a chained plugin (no prevResult)")
    })
}

/// ADD's firewall work: the plain forwards, then the conditional ones
/// (taking the plain ones back if those fail), then the flush of stale UDP
/// flows to the mapped ports.
fn install(
    rules: &dyn PortmapRules,
    args: &CmdArgs,
    mappings: &[Mapping],
    (c4, c6): (&[portmap::Condition], &[portmap::Condition]),
    opts: &Options,
) -> CniResult<()> {
    let (conditional, plain) = split_conditional(mappings.to_vec(), c4, c6);
    if !plain.is_empty() {
        rules.add(&plain, opts).map_err(kit::err)?;
    }
    if !conditional.is_empty() {
        let fwd = ConditionalForwards {
            mappings: &conditional,
            v4: c4,
            v6: c6,
        };
        if let Err(e) = rules.add_conditional(fwd, opts) {
            let _ = rules.remove_container(Owner::of(args));
            return Err(kit::err(e));
        }
    }
    // Now that the maps are in place, stale UDP entries to the mapped
    // ports must go, or their next datagrams keep bypassing the DNAT.
    for (version, ports) in udp_ports_per_family(mappings) {
        flush_udp(rules, version, &ports);
    }
    Ok(())
}

/// DEL's firewall work: the attachment's forwards, plain and conditional,
/// then the flush of UDP flows to the ports the runtime names.
fn uninstall(
    rules: &dyn PortmapRules,
    args: &CmdArgs,
    requested: Option<&[cni_spec::runtime_config::PortMapping]>,
) -> CniResult<()> {
    let removed = rules
        .remove_container(Owner::of(args))
        .and_then(|n| rules.remove_conditional(Owner::of(args)).map(|c| n + c))
        .map_err(kit::err);
    if let Some(requested) = requested {
        let ports = udp_host_ports(requested);
        if !ports.is_empty() {
            for version in del_families(args) {
                flush_udp(rules, version, &ports);
            }
        }
    }
    removed.map(|_| ())
}

/// CHECK's firewall work: as many conditional forwards as expected, and
/// every plain one listed.
fn verify(
    rules: &dyn PortmapRules,
    args: &CmdArgs,
    conditional: &[Mapping],
    want: &[Mapping],
) -> CniResult<()> {
    if !conditional.is_empty() {
        let have = rules.count_conditional(Owner::of(args)).map_err(kit::err)?;
        if have != conditional.len() {
            return Err(Error::internal(format!(
                "{} conditional port mapping rules expected, {have} found",
                conditional.len()
            )));
        }
    }
    let have = rules.list().map_err(kit::err)?;
    for m in want {
        if !have.contains(&m.as_listed()) {
            return Err(Error::internal(format!(
                "port mapping {}/{} -> {}:{} is missing",
                m.host_port,
                m.proto.as_str(),
                m.pod_ip,
                m.pod_port
            )));
        }
    }
    Ok(())
}

/// GC's firewall work: the network's forwards of attachments not kept.
fn collect(rules: &dyn PortmapRules, network: &str, keep: &[(String, String)]) -> CniResult<()> {
    rules.gc(network, keep).map_err(kit::err)?;
    rules.gc_conditional(network, keep).map_err(kit::err)?;
    Ok(())
}

impl Plugin for Portmap {
    fn name(&self) -> &'static str {
        "portmap"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let conf: Config = args.parse_conf()?;
        conf.validate()?;
        let (c4, c6) = conf.conditions()?;
        let prev = prev_result(args)?;
        let mappings = build_mappings(args, &prev)?;
        if mappings.is_empty() {
            return Ok(prev);
        }
        let mut opts = conf.options();
        if opts.snat {
            let ips: Vec<IpAddr> = mappings.iter().map(|m| m.pod_ip).collect();
            let sock = netlink::Socket::route().map_err(kit::err)?;
            let links = pod_links(&sock, &ips)?;
            enable_route_localnet(&ProcSys, &links)?;
            opts.pod_links = own_links(&prev, &links);
        }
        let nft = Nft::open().map_err(kit::err)?;
        install(&nft, args, &mappings, (&c4, &c6), &opts)?;
        Ok(prev)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let conf: Config = args.parse_conf()?;
        let _ = conf;
        // The reference does nothing when the runtime passes no mappings.
        // An unreadable runtimeConfig proves nothing, so it still cleans up.
        let requested = runtime_mappings(args).ok();
        if requested.as_ref().is_some_and(|m| m.is_empty()) {
            return Ok(());
        }
        let nft = Nft::open().map_err(kit::err)?;
        uninstall(&nft, args, requested.as_deref())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let conf: Config = args.parse_conf()?;
        conf.validate()?;
        let (c4, c6) = conf.conditions()?;
        let prev = prev_result(args)?;
        let (conditional, want) = split_conditional(build_mappings(args, &prev)?, &c4, &c6);
        if want.is_empty() && conditional.is_empty() {
            return Ok(());
        }
        let nft = Nft::open().map_err(kit::err)?;
        verify(&nft, args, &conditional, &want)
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        let keep: Vec<(String, String)> = args
            .conf
            .gc_attachments()
            .into_iter()
            .map(|a| (a.container_id, a.ifname))
            .collect();
        let nft = Nft::open().map_err(kit::err)?;
        collect(&nft, &args.conf.name, &keep)
    }

    fn status(&self, _args: &CmdArgs) -> CniResult<()> {
        Nft::open()
            .map(|_| ())
            .map_err(|e| Error::new(ErrorCode::NotAvailable, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(proto: Proto, host_port: u16, pod_ip: &str) -> Mapping {
        Mapping {
            network: "n".into(),
            container_id: "c".into(),
            ifname: "eth0".into(),
            proto,
            host_ip: None,
            host_port,
            pod_ip: pod_ip.parse().expect("ip"),
            pod_port: 53,
        }
    }

    #[test]
    fn udp_ports_grouped_by_family_without_tcp() {
        let got = udp_ports_per_family(&[
            mapping(Proto::Tcp, 80, "10.0.0.2"),
            mapping(Proto::Udp, 53, "10.0.0.2"),
            mapping(Proto::Udp, 53, "10.0.0.2"),
            mapping(Proto::Udp, 5353, "10.0.0.2"),
            mapping(Proto::Udp, 53, "fd00::2"),
            mapping(Proto::Sctp, 9, "fd00::2"),
        ]);
        assert_eq!(
            got,
            vec![(IpVersion::V4, vec![53, 5353]), (IpVersion::V6, vec![53])]
        );
        assert!(udp_ports_per_family(&[mapping(Proto::Tcp, 80, "10.0.0.2")]).is_empty());
    }

    #[test]
    fn udp_host_ports_of_runtime_mappings() {
        let pms: Vec<cni_spec::runtime_config::PortMapping> =
            serde_json::from_value(serde_json::json!([
                {"hostPort": 5353, "containerPort": 53, "protocol": "UDP"},
                {"HostPort": 53, "ContainerPort": 53, "Protocol": "udp"},
                {"hostPort": 80, "containerPort": 80},
                {"hostPort": 53, "containerPort": 54, "protocol": "udp"}
            ]))
            .expect("mappings");
        assert_eq!(udp_host_ports(&pms), vec![53, 5353]);
    }
}

/// The verb cores on the recording fake of the node's forwards: order,
/// undo and error codes without root (the traffic tests stay the ground
/// truth).
#[cfg(test)]
mod fake_tests {
    use super::*;
    use kit::filter::fake::FakeFilter;

    use kit::ops::fake::errno::EPERM;

    /// Args of container "fuzz" on eth0 in network "net", pod 10.0.0.2
    /// and fd00::2, mapping 8080/tcp and 5353/udp; `extra` merged in.
    fn args(extra: serde_json::Value) -> CmdArgs {
        let mut conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "net",
            "type": "portmap",
            "runtimeConfig": {"portMappings": [
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}
            ]},
            "prevResult": {
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
                "ips": [
                    {"interface": 0, "address": "10.0.0.2/24"},
                    {"interface": 0, "address": "fd00::2/64"}
                ]
            }
        });
        if let (Some(c), Some(e)) = (conf.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        cni_skel::fuzzing::args(conf.to_string().as_bytes()).expect("args")
    }

    /// ADD's firewall work for `args`, as the verb runs it.
    fn add(rules: &FakeFilter, args: &CmdArgs) -> CniResult<()> {
        let conf: Config = args.parse_conf()?;
        let (c4, c6) = conf.conditions()?;
        let prev = prev_result(args)?;
        let mappings = build_mappings(args, &prev)?;
        install(rules, args, &mappings, (&c4, &c6), &conf.options())
    }

    fn want(args: &CmdArgs) -> Vec<Mapping> {
        let prev = prev_result(args).expect("prev");
        build_mappings(args, &prev).expect("mappings")
    }

    #[test]
    fn the_pod_address_is_the_one_of_cni_ifname() {
        let mut a = args(serde_json::json!({"prevResult": {
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "eth0", "sandbox": "/run/netns/x"},
                {"name": "veth1"},
                {"name": "net1", "sandbox": "/run/netns/x"}
            ],
            "ips": [
                {"interface": 0, "address": "10.0.0.2/24"},
                {"interface": 1, "address": "10.5.0.1/24"},
                {"interface": 2, "address": "10.99.0.5/24"},
                {"interface": 7, "address": "fd00:7::5/64"}
            ]
        }}));
        let pods = |a: &CmdArgs| -> Vec<String> {
            let mut v: Vec<String> = want(a).iter().map(|m| m.pod_ip.to_string()).collect();
            v.sort();
            v.dedup();
            v
        };
        // An index past the interface list does not rule an address out.
        assert_eq!(pods(&a), ["10.0.0.2", "fd00:7::5"]);
        a.ifname = "net1".into();
        assert_eq!(pods(&a), ["10.99.0.5", "fd00:7::5"]);
        // The node's interface never counts, even by its own name.
        a.ifname = "veth1".into();
        assert_eq!(pods(&a), ["fd00:7::5"]);
        a.ifname = "eth9".into();
        assert_eq!(pods(&a), ["fd00:7::5"]);
    }

    #[test]
    fn add_installs_every_forward_in_one_call_then_flushes_udp_per_family() {
        let rules = FakeFilter::new();
        add(&rules, &args(serde_json::json!({}))).expect("add");
        assert_eq!(
            rules.lines(),
            vec![
                "map add 8080/tcp -> 10.0.0.2:80",
                "map add 8080/tcp -> fd00::2:80",
                "map add 5353/udp -> 10.0.0.2:53",
                "map add 5353/udp -> fd00::2:53",
                "conntrack udp V4 5353",
                "conntrack udp V6 5353",
            ]
        );
    }

    #[test]
    fn a_refused_forward_fails_add_with_code_5_and_installs_nothing() {
        let rules = FakeFilter::new();
        rules.fail_next("map add 5353", EPERM);
        let e = add(&rules, &args(serde_json::json!({}))).expect_err("refused");
        assert_eq!(e.code, 5, "{e}");
        assert!(rules.maps.borrow().is_empty());
        assert!(!rules.lines().iter().any(|l| l.starts_with("conntrack")));
    }

    #[test]
    fn refused_conditional_forwards_fail_add_with_code_5_and_take_the_plain_ones_back() {
        let rules = FakeFilter::new();
        rules.fail_next("cond add", EPERM);
        let args = args(serde_json::json!({"conditionsV4": ["ip saddr 10.9.0.0/16"]}));
        let e = add(&rules, &args).expect_err("refused");
        assert_eq!(e.code, 5, "{e}");
        assert_eq!(
            rules.lines(),
            vec![
                "map add 8080/tcp -> fd00::2:80",
                "map add 5353/udp -> fd00::2:53",
                "cond add 8080/tcp -> 10.0.0.2:80",
                "remove net/fuzz/eth0",
            ]
        );
        assert!(rules.maps.borrow().is_empty());
        assert!(rules.conditional.borrow().is_empty());
    }

    #[test]
    fn a_failed_conntrack_flush_does_not_fail_add() {
        let rules = FakeFilter::new();
        rules.fail_next("conntrack", EPERM);
        add(&rules, &args(serde_json::json!({}))).expect("add");
        assert_eq!(rules.maps.borrow().len(), 4);
    }

    #[test]
    fn del_removes_the_attachments_forwards_and_a_second_del_succeeds() {
        let rules = FakeFilter::new();
        let args = args(serde_json::json!({"conditionsV6": ["ip6 saddr fd09::/64"]}));
        add(&rules, &args).expect("add");
        let requested = runtime_mappings(&args).expect("mappings");
        uninstall(&rules, &args, Some(&requested)).expect("del");
        assert!(rules.maps.borrow().is_empty());
        assert!(rules.conditional.borrow().is_empty());
        uninstall(&rules, &args, Some(&requested)).expect("del again");
        uninstall(&rules, &args, None).expect("del without runtimeConfig");
    }

    #[test]
    fn del_keeps_other_attachments_and_reports_a_refusal_as_code_5() {
        let rules = FakeFilter::new();
        let mine = args(serde_json::json!({}));
        let mut other = args(serde_json::json!({}));
        other.container_id = "other".into();
        add(&rules, &mine).expect("add");
        add(&rules, &other).expect("add other");
        uninstall(&rules, &mine, None).expect("del");
        assert!(rules
            .maps
            .borrow()
            .iter()
            .all(|m| m.container_id == "other"));
        assert_eq!(rules.maps.borrow().len(), 4);
        rules.fail_next("remove cond", EPERM);
        let e = uninstall(&rules, &other, None).expect_err("refused");
        assert_eq!(e.code, 5);
    }

    #[test]
    fn check_of_missing_forwards_fails_with_code_999() {
        let rules = FakeFilter::new();
        let args = args(serde_json::json!({}));
        let e = verify(&rules, &args, &[], &want(&args)).expect_err("none");
        assert_eq!(e.code, 999);
        assert!(e.msg.contains("8080/tcp -> 10.0.0.2:80 is missing"), "{e}");
        add(&rules, &args).expect("add");
        verify(&rules, &args, &[], &want(&args)).expect("in place");
        let e = verify(&rules, &args, &want(&args), &[]).expect_err("no conditional");
        assert_eq!(e.code, 999);
        assert!(e
            .msg
            .contains("4 conditional port mapping rules expected, 0 found"));
    }

    #[test]
    fn route_localnet_is_set_once_on_each_interface_routing_to_a_pod() {
        use kit::procsys::fake::FakeSysctls;
        use kit::routing::fake::FakeHost;
        let host = FakeHost::new();
        let cni0 = host.add_link("cni0", "bridge");
        let mut subnet = netlink::Route::to("10.0.0.0".parse().expect("ip"), 24).dev(cni0);
        subnet.table = 254;
        host.routes.borrow_mut().push(subnet);
        let key = "/proc/sys/net/ipv4/conf/cni0/route_localnet";
        let sys = FakeSysctls::with(&[(key, "0")]);
        let pods: Vec<IpAddr> = ["10.0.0.2", "10.0.0.3", "192.0.2.9"]
            .iter()
            .map(|i| i.parse().expect("ip"))
            .collect();
        let links = pod_links(&host, &pods).expect("links");
        let found: Vec<(IpAddr, u32, &str)> = links
            .iter()
            .map(|l| (l.ip, l.index, l.name.as_str()))
            .collect();
        assert_eq!(found, [(pods[0], cni0, "cni0"), (pods[1], cni0, "cni0")]);
        enable_route_localnet(&sys, &links).expect("localnet");
        assert_eq!(sys.plan.lines(), [format!("write {key} = 1")]);
        sys.plan.fail_next("write", EPERM);
        let e = enable_route_localnet(&sys, &links).expect_err("refused");
        assert_eq!(e.code, 5, "{e}");
    }

    #[test]
    fn only_links_the_network_made_lead_to_the_pods_neighbours() {
        let prev = Result::from_value(
            &serde_json::json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "cni0"},
                    {"name": "eth0", "sandbox": "/run/netns/p"}
                ],
                "ips": []
            }),
            "1.0.0",
        )
        .expect("result");
        let (a, b): (IpAddr, IpAddr) = (
            "10.0.0.2".parse().expect("ip"),
            "192.0.2.9".parse().expect("ip"),
        );
        // The pod's own eth0 shares the uplink's name: only a host-side
        // entry counts.
        let links = [
            PodLink {
                ip: a,
                index: 4,
                name: "cni0".into(),
            },
            PodLink {
                ip: b,
                index: 2,
                name: "eth0".into(),
            },
        ];
        assert_eq!(own_links(&prev, &links), [(a, 4)]);
    }

    #[test]
    fn gc_removes_the_networks_forwards_of_attachments_not_kept() {
        let rules = FakeFilter::new();
        let gone = args(serde_json::json!({}));
        let mut kept = args(serde_json::json!({}));
        kept.container_id = "kept".into();
        add(&rules, &gone).expect("add");
        add(&rules, &kept).expect("add");
        collect(&rules, "net", &[("kept".into(), "eth0".into())]).expect("gc");
        assert!(rules.maps.borrow().iter().all(|m| m.container_id == "kept"));
        assert_eq!(rules.maps.borrow().len(), 4);
        rules.fail_next("gc", EPERM);
        assert_eq!(collect(&rules, "net", &[]).expect_err("refused").code, 5);
    }
}
