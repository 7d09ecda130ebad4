//! `portmap`: forwards host ports to the container, as a chained plugin.
//!
//! The firewall side is [`nft::portmap`]: one table `inet rcni-portmap`
//! whose maps hold every mapping on the node, so ADD adds a handful of map
//! elements in one transaction whatever the number of mapped ports, and DEL
//! removes the elements commented with this attachment — without needing
//! the netns or prevResult (the reference runs iptables on every DEL).
//!
//! Config (reference names): `snat` (default true), `masqAll`,
//! `markMasqBit` (0–31, accepted; no mark is needed here, see
//! [`nft::portmap`]), `externalSetMarkChain` (accepted, unused for the
//! same reason), `conditionsV4`/`conditionsV6` (iptables match strings:
//! rejected with code 2 when non-empty), runtimeConfig `portMappings` in
//! both the camelCase and containerd's capitalised spelling.

use std::net::IpAddr;

use cni_skel::{CmdArgs, Plugin};
use cni_spec::error::CniResult;
use cni_spec::runtime_config::RuntimeConfig;
use cni_spec::{Error, ErrorCode, Result};
use nft::portmap::{self, Mapping, Options, Proto};
use nft::Nft;
use serde::Deserialize;

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
        for (k, v) in [
            ("conditionsV4", &self.conditions_v4),
            ("conditionsV6", &self.conditions_v6),
        ] {
            if v.as_ref().is_some_and(|c| !c.is_empty()) {
                return Err(Error::new(
                    ErrorCode::UnsupportedField,
                    format!("{k} (iptables match conditions) is not supported by the nftables implementation"),
                ));
            }
        }
        Ok(())
    }
    fn options(&self) -> Options {
        Options {
            snat: self.snat.unwrap_or(true),
            masq_all: self.masq_all,
        }
    }
}

fn nft_err(e: nft::Error) -> Error {
    Error::io(e.to_string())
}

fn runtime_mappings(args: &CmdArgs) -> CniResult<Vec<cni_spec::runtime_config::PortMapping>> {
    let Some(rc) = &args.conf.runtime_config else {
        return Ok(Vec::new());
    };
    let rc: RuntimeConfig = serde_json::from_value(rc.clone())
        .map_err(|e| Error::decoding(format!("failed to parse runtimeConfig: {e}")))?;
    Ok(rc.port_mappings)
}

/// The container's addresses in prevResult: those on an interface inside
/// the sandbox, or without interface index. First of each family.
fn pod_ips(prev: &Result) -> (Option<IpAddr>, Option<IpAddr>) {
    let mut v4 = None;
    let mut v6 = None;
    for ip in &prev.ips {
        let in_sandbox = match ip.interface {
            Some(i) => prev
                .interfaces
                .get(i)
                .is_some_and(|x| !x.sandbox.is_empty()),
            None => true,
        };
        if !in_sandbox {
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
    let (v4, v6) = pod_ips(prev);
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

/// Connections from 127.0.0.0/8 DNATed to a pod leave through the host-side
/// interfaces of prevResult: they must accept local sources.
fn enable_route_localnet(prev: &Result) -> CniResult<()> {
    for i in prev.interfaces.iter().filter(|i| i.sandbox.is_empty()) {
        if i.name.is_empty() || i.name.contains('/') || i.name.starts_with('.') {
            continue;
        }
        let path = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", i.name);
        if !std::path::Path::new(&path).exists() {
            continue;
        }
        std::fs::write(&path, b"1").map_err(|e| Error::io(format!("failed to set {path}: {e}")))?;
    }
    Ok(())
}

fn prev_result(args: &CmdArgs) -> CniResult<Result> {
    args.conf.prev_result()?.ok_or_else(|| {
        Error::invalid_config("portmap must be called as a chained plugin (no prevResult)")
    })
}

impl Plugin for Portmap {
    fn name(&self) -> &'static str {
        "portmap"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let conf: Config = args.parse_conf()?;
        conf.validate()?;
        let prev = prev_result(args)?;
        let mappings = build_mappings(args, &prev)?;
        if mappings.is_empty() {
            return Ok(prev);
        }
        let opts = conf.options();
        if opts.snat && mappings.iter().any(|m| m.pod_ip.is_ipv4()) {
            enable_route_localnet(&prev)?;
        }
        let nft = Nft::open().map_err(nft_err)?;
        portmap::add(&nft, &mappings, &opts).map_err(nft_err)?;
        Ok(prev)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let conf: Config = args.parse_conf()?;
        let _ = conf;
        let nft = Nft::open().map_err(nft_err)?;
        portmap::remove_container(&nft, &args.conf.name, &args.container_id, &args.ifname)
            .map_err(nft_err)?;
        Ok(())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let conf: Config = args.parse_conf()?;
        conf.validate()?;
        let prev = prev_result(args)?;
        let want = build_mappings(args, &prev)?;
        if want.is_empty() {
            return Ok(());
        }
        let nft = Nft::open().map_err(nft_err)?;
        let have = portmap::list(&nft).map_err(nft_err)?;
        for m in &want {
            if !have.contains(m) {
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

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        let keep: Vec<(String, String)> = args
            .conf
            .gc_attachments()
            .into_iter()
            .map(|a| (a.container_id, a.ifname))
            .collect();
        let nft = Nft::open().map_err(nft_err)?;
        portmap::gc(&nft, &args.conf.name, &keep).map_err(nft_err)?;
        Ok(())
    }

    fn status(&self, _args: &CmdArgs) -> CniResult<()> {
        Nft::open()
            .map(|_| ())
            .map_err(|e| Error::new(ErrorCode::NotAvailable, e.to_string()))
    }
}
