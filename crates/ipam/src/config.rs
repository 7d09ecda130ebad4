//! Configuration of the host-local and static IPAM plugins, parsed from the
//! full network configuration (IPAM plugins receive the whole of it), plus
//! the requested-address sources: CNI_ARGS, `args.cni.ips`, runtimeConfig.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::range::{parse_ip, parse_ip_or_cidr, parse_net, RangeConfig, RangeSet};

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    cni_spec::json::decode(bytes).map_err(|e| Error::Decode(e.to_string()))
}

/// (major, minor, patch) of a CNI version; "" means 0.1.0.
fn version_tuple(v: &str) -> Option<(u32, u32, u32)> {
    let v = v.trim();
    if v.is_empty() {
        return Some((0, 1, 0));
    }
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    let a = it.next()??;
    let b = it.next().unwrap_or(Some(0))?;
    let c = it.next().unwrap_or(Some(0))?;
    Some((a, b, c))
}

/// More than one address per family needs result format 0.3.0 or later.
fn check_per_family(cni_version: &str, v4: usize, v6: usize) -> Result<()> {
    if (v4 > 1 || v6 > 1) && !matches!(version_tuple(cni_version), Some(t) if t >= (0, 3, 0)) {
        return Err(Error::InvalidConfig(format!(
            "CNI version {cni_version:?} does not support more than 1 address per family"
        )));
    }
    Ok(())
}

/// Parse a comma-separated list of addresses (CIDR suffixes allowed), as in
/// CNI_ARGS `IP=10.0.0.5,2001:db8::5`.
pub fn parse_ip_list(s: &str) -> Result<Vec<IpAddr>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            parse_ip_or_cidr(p)
                .ok_or_else(|| Error::InvalidConfig(format!("cannot understand ip {p:?}")))
        })
        .collect()
}

#[derive(Deserialize, Default)]
struct ArgsIn {
    #[serde(default)]
    cni: Option<CniArgsIn>,
}

#[derive(Deserialize, Default)]
struct CniArgsIn {
    #[serde(default)]
    ips: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct HlRuntimeIn {
    #[serde(default)]
    ip_ranges: Option<Vec<Vec<RangeConfig>>>,
    #[serde(default)]
    ips: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HlIpamIn {
    #[serde(default)]
    subnet: Option<String>,
    #[serde(default)]
    range_start: Option<String>,
    #[serde(default)]
    range_end: Option<String>,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    routes: Option<Vec<Value>>,
    #[serde(default)]
    data_dir: Option<String>,
    #[serde(default)]
    resolv_conf: Option<String>,
    #[serde(default)]
    ranges: Option<Vec<Vec<RangeConfig>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HlNetIn {
    #[serde(default)]
    name: String,
    #[serde(default)]
    cni_version: String,
    #[serde(default)]
    ipam: Option<HlIpamIn>,
    #[serde(default)]
    runtime_config: Option<HlRuntimeIn>,
    #[serde(default)]
    args: Option<ArgsIn>,
}

/// Where a network's allocations live: enough for DEL, GC and CHECK, which
/// must work even when the ranges of the configuration no longer validate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The network's name (the store's directory under the data dir).
    pub name: String,
    /// `ipam.dataDir`, if set.
    pub data_dir: Option<PathBuf>,
}

impl StoreConfig {
    /// Reads the store location from a plugin's stdin (code 6/7 on bad input).
    pub fn parse(stdin: &[u8]) -> Result<StoreConfig> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct IpamIn {
            #[serde(default)]
            data_dir: Option<String>,
        }
        #[derive(Deserialize)]
        struct NetIn {
            #[serde(default)]
            name: String,
            #[serde(default)]
            ipam: Option<IpamIn>,
        }
        let n: NetIn = decode(stdin)?;
        let ipam = n
            .ipam
            .ok_or_else(|| Error::InvalidConfig("IPAM config missing 'ipam' key".into()))?;
        Ok(StoreConfig {
            name: n.name,
            data_dir: ipam.data_dir.filter(|d| !d.is_empty()).map(PathBuf::from),
        })
    }

    /// The data directory, if one was configured.
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }
}

/// A validated host-local configuration.
#[derive(Debug, Clone)]
pub struct HostLocalConfig {
    /// The network's name.
    pub name: String,
    /// The config's `cniVersion`.
    pub cni_version: String,
    /// One address is allocated from each range set.
    pub range_sets: Vec<RangeSet>,
    /// Requested addresses: CNI_ARGS first, then `args.cni.ips`, then
    /// runtimeConfig `ips`.
    pub requested: Vec<IpAddr>,
    /// `ipam.routes`, passed through to the result.
    pub routes: Vec<Value>,
    /// `ipam.dataDir`: where allocations are stored (default `/var/lib/cni/networks`).
    pub data_dir: Option<PathBuf>,
    /// `ipam.resolvConf`: a file to read DNS settings from.
    pub resolv_conf: Option<PathBuf>,
}

impl HostLocalConfig {
    /// Parse and validate. `env_ips` are the addresses from CNI_ARGS `IP=`
    /// (see [`parse_ip_list`]).
    ///
    /// Range sets, in order: runtimeConfig `ipRanges` (the `ipRanges`
    /// capability), then the legacy top-level range, then `ranges` — the
    /// reference prepends in the same way.
    pub fn parse(stdin: &[u8], env_ips: &[IpAddr]) -> Result<HostLocalConfig> {
        let n: HlNetIn = decode(stdin)?;
        let ipam = n
            .ipam
            .ok_or_else(|| Error::InvalidConfig("IPAM config missing 'ipam' key".into()))?;
        let rt = n.runtime_config.unwrap_or_default();

        let mut requested: Vec<IpAddr> = env_ips.iter().map(|ip| ip.to_canonical()).collect();
        let args_ips = n
            .args
            .and_then(|a| a.cni)
            .and_then(|c| c.ips)
            .unwrap_or_default();
        for s in args_ips.iter().chain(rt.ips.iter().flatten()) {
            requested.push(
                parse_ip_or_cidr(s)
                    .ok_or_else(|| Error::InvalidConfig(format!("cannot understand ip {s:?}")))?,
            );
        }

        let mut raw_sets: Vec<Vec<RangeConfig>> = rt.ip_ranges.unwrap_or_default();
        if ipam.subnet.as_deref().is_some_and(|s| !s.trim().is_empty()) {
            raw_sets.push(vec![RangeConfig {
                subnet: ipam.subnet.clone(),
                range_start: ipam.range_start.clone(),
                range_end: ipam.range_end.clone(),
                gateway: ipam.gateway.clone(),
            }]);
        }
        raw_sets.extend(ipam.ranges.unwrap_or_default());
        if raw_sets.is_empty() {
            return Err(Error::InvalidConfig("no IP ranges specified".into()));
        }
        let mut range_sets = Vec::with_capacity(raw_sets.len());
        for (i, raw) in raw_sets.iter().enumerate() {
            let set = RangeSet::from_config(raw).map_err(|e| match e {
                Error::InvalidConfig(m) => {
                    Error::InvalidConfig(format!("invalid range set {i}: {m}"))
                }
                other => other,
            })?;
            range_sets.push(set);
        }
        let v4 = range_sets.iter().filter(|s| s.is_ipv4()).count();
        check_per_family(&n.cni_version, v4, range_sets.len() - v4)?;
        for i in 0..range_sets.len() {
            for j in i + 1..range_sets.len() {
                if range_sets[i].overlaps(&range_sets[j]) {
                    return Err(Error::InvalidConfig(format!(
                        "range set {i} overlaps with {j}"
                    )));
                }
            }
        }
        Ok(HostLocalConfig {
            name: n.name,
            cni_version: n.cni_version,
            range_sets,
            requested,
            routes: ipam.routes.unwrap_or_default(),
            data_dir: ipam.data_dir.filter(|d| !d.is_empty()).map(PathBuf::from),
            resolv_conf: ipam
                .resolv_conf
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
        })
    }

    /// Where this network's allocations live.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            name: self.name.clone(),
            data_dir: self.data_dir.clone(),
        }
    }
}

/// DNS settings in the CNI result's spelling.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// `nameserver` lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// The `domain` line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// `search` domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// `options`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// Read a resolv.conf: `nameserver`, `domain`, `search`, `options`; comments
/// (`#`, `;`) and unknown keywords are ignored.
pub fn parse_resolv_conf(path: &Path) -> Result<Dns> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io("failed to read resolvConf", path, e))?;
    Ok(parse_resolv_conf_str(&text))
}

/// Parses the text of a `resolv.conf` file.
pub fn parse_resolv_conf_str(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 2 {
            continue;
        }
        let rest = fields[1..].iter().map(|s| s.to_string());
        match fields[0] {
            "nameserver" => dns.nameservers.push(fields[1].to_string()),
            "domain" => dns.domain = Some(fields[1].to_string()),
            "search" => dns.search.extend(rest),
            "options" => dns.options.extend(rest),
            _ => {}
        }
    }
    dns
}

/// One address of the static plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticAddress {
    /// Address with its prefix length (host bits kept).
    pub address: IpNet,
    /// Gateway for this address, if any.
    pub gateway: Option<IpAddr>,
}

/// A validated static-IPAM configuration.
#[derive(Debug, Clone)]
pub struct StaticConfig {
    /// The network's name.
    pub name: String,
    /// The config's `cniVersion`.
    pub cni_version: String,
    /// The addresses to assign.
    pub addresses: Vec<StaticAddress>,
    /// `ipam.routes`, passed through to the result.
    pub routes: Vec<Value>,
    /// `ipam.dns`, passed through to the result.
    pub dns: Option<Value>,
}

#[derive(Deserialize)]
struct StaticAddrIn {
    #[serde(default)]
    address: String,
    #[serde(default)]
    gateway: Option<String>,
}

#[derive(Deserialize)]
struct StaticIpamIn {
    #[serde(default)]
    addresses: Option<Vec<StaticAddrIn>>,
    #[serde(default)]
    routes: Option<Vec<Value>>,
    #[serde(default)]
    dns: Option<Value>,
}

#[derive(Deserialize, Default)]
struct StaticRuntimeIn {
    #[serde(default)]
    ips: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StaticNetIn {
    #[serde(default)]
    name: String,
    #[serde(default)]
    cni_version: String,
    #[serde(default)]
    ipam: Option<StaticIpamIn>,
    #[serde(default)]
    runtime_config: Option<StaticRuntimeIn>,
    #[serde(default)]
    args: Option<ArgsIn>,
}

/// A static address as written plainly: no surrounding spaces, no leading
/// zeros (list items from CNI_ARGS are trimmed by their caller).
fn parse_cidr(s: &str) -> Result<IpNet> {
    if !s.contains('/') {
        return Err(Error::InvalidConfig(format!(
            "invalid CIDR {s:?}: no prefix length"
        )));
    }
    let n: IpNet =
        parse_net(s).ok_or_else(|| Error::InvalidConfig(format!("invalid CIDR {s:?}")))?;
    let addr = n.addr().to_canonical();
    let prefix = if addr.is_ipv4() && n.addr().is_ipv6() {
        n.prefix_len().saturating_sub(96)
    } else {
        n.prefix_len()
    };
    IpNet::new(addr, prefix).map_err(|_| Error::InvalidConfig(format!("invalid CIDR {s:?}")))
}

impl StaticConfig {
    /// Parse and validate. `env_ip`/`env_gateway` are the CNI_ARGS values
    /// `IP=` (comma-separated CIDRs) and `GATEWAY=` (comma-separated
    /// addresses; each applies to the addresses whose subnet contains it).
    /// Addresses: `ipam.addresses`, then CNI_ARGS, `args.cni.ips`,
    /// runtimeConfig `ips`.
    pub fn parse(
        stdin: &[u8],
        env_ip: Option<&str>,
        env_gateway: Option<&str>,
    ) -> Result<StaticConfig> {
        let n: StaticNetIn = decode(stdin)?;
        let ipam = n
            .ipam
            .ok_or_else(|| Error::InvalidConfig("IPAM config missing 'ipam' key".into()))?;
        let mut addresses = Vec::new();
        for (i, a) in ipam.addresses.unwrap_or_default().iter().enumerate() {
            let address = parse_cidr(&a.address).map_err(|e| match e {
                Error::InvalidConfig(m) => {
                    Error::InvalidConfig(format!("invalid address {i}: {m}"))
                }
                o => o,
            })?;
            let gateway = match a.gateway.as_deref() {
                None | Some("") => None,
                Some(g) => Some(parse_ip(g).ok_or_else(|| {
                    Error::InvalidConfig(format!("invalid gateway {g:?} of address {i}"))
                })?),
            };
            addresses.push(StaticAddress { address, gateway });
        }
        // The reference's precedence: CNI_ARGS IP= adds to `addresses` and
        // GATEWAY= applies to that list; a non-empty `args.cni.ips` then
        // replaces the list, and a non-empty runtimeConfig `ips` replaces
        // it again.
        let env_ips: Vec<String> = env_ip
            .map(|s| s.split(',').map(|p| p.trim().to_string()).collect())
            .unwrap_or_default();
        for s in env_ips.iter().filter(|s| !s.is_empty()) {
            addresses.push(StaticAddress {
                address: parse_cidr(s)?,
                gateway: None,
            });
        }
        if let Some(gws) = env_gateway {
            for g in gws.split(',').map(str::trim).filter(|g| !g.is_empty()) {
                let gw = parse_ip(g).ok_or_else(|| {
                    Error::InvalidConfig(format!("invalid gateway address {g:?}"))
                })?;
                for a in addresses.iter_mut() {
                    if a.address.trunc().contains(&gw) {
                        a.gateway = Some(gw);
                    }
                }
            }
        }
        let args_ips = n
            .args
            .and_then(|a| a.cni)
            .and_then(|c| c.ips)
            .unwrap_or_default();
        let rt_ips = n.runtime_config.unwrap_or_default().ips.unwrap_or_default();
        for replacement in [args_ips, rt_ips] {
            let ips: Vec<&String> = replacement.iter().filter(|s| !s.is_empty()).collect();
            if ips.is_empty() {
                continue;
            }
            addresses = ips
                .into_iter()
                .map(|s| {
                    Ok(StaticAddress {
                        address: parse_cidr(s)?,
                        gateway: None,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
        }
        // No address at all is valid (routes and DNS only), as in the
        // reference.
        for a in &addresses {
            if let Some(gw) = a.gateway {
                if gw.is_ipv4() != a.address.addr().is_ipv4() {
                    return Err(Error::InvalidConfig(format!(
                        "gateway {gw} is not of the family of address {}",
                        a.address
                    )));
                }
            }
        }
        let v4 = addresses
            .iter()
            .filter(|a| a.address.addr().is_ipv4())
            .count();
        check_per_family(&n.cni_version, v4, addresses.len() - v4)?;
        Ok(StaticConfig {
            name: n.name,
            cni_version: n.cni_version,
            addresses,
            routes: ipam.routes.unwrap_or_default(),
            dns: ipam.dns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn host_local_full() {
        let conf = br#"{
          "cniVersion": "1.0.0", "name": "net1",
          "ipam": {
            "type": "host-local",
            "subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.20", "gateway": "10.1.0.254",
            "ranges": [
              [{"subnet": "10.2.0.0/24"}, {"subnet": "10.3.0.0/24"}],
              [{"subnet": "2001:db8::/64", "rangeStart": "2001:db8::10", "rangeEnd": "2001:db8::20"}]
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.5"}],
            "dataDir": "/tmp/x", "resolvConf": "/etc/resolv.conf"
          },
          "runtimeConfig": {"ips": ["10.2.0.9/24"], "ipRanges": [[{"subnet": "10.9.0.0/24"}]]},
          "args": {"cni": {"ips": ["2001:db8::15"]}}
        }"#;
        let c = HostLocalConfig::parse(conf, &[ip("10.1.0.12")]).unwrap();
        assert_eq!(c.name, "net1");
        assert_eq!(c.range_sets.len(), 4);
        assert_eq!(c.range_sets[0].to_string(), "10.9.0.1-10.9.0.254");
        assert_eq!(c.range_sets[1].to_string(), "10.1.0.10-10.1.0.20");
        assert_eq!(c.range_sets[1].0[0].gateway, ip("10.1.0.254"));
        assert_eq!(c.range_sets[2].0.len(), 2);
        assert_eq!(
            c.requested,
            [ip("10.1.0.12"), ip("2001:db8::15"), ip("10.2.0.9")]
        );
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.data_dir.as_deref(), Some(Path::new("/tmp/x")));
        assert_eq!(
            c.resolv_conf.as_deref(),
            Some(Path::new("/etc/resolv.conf"))
        );
    }

    #[test]
    fn host_local_refusals() {
        let cases: &[(&[u8], u32, &str)] = &[
            (b"{", 6, "decode"),
            (br#"{"name":"n"}"#, 7, "missing 'ipam'"),
            (br#"{"name":"n","ipam":{}}"#, 7, "no IP ranges"),
            (br#"{"name":"n","ipam":{"subnet":"10.0.0.0/31"}}"#, 7, "too small"),
            (br#"{"name":"n","ipam":{"subnet":"10.0.0.0/32"}}"#, 7, "too small"),
            (
                br#"{"name":"n","cniVersion":"1.0.0","ipam":{"ranges":[[{"subnet":"10.0.0.0/16"}],[{"subnet":"10.0.1.0/24"}]]}}"#,
                7,
                "overlaps",
            ),
            (
                br#"{"name":"n","cniVersion":"0.2.0","ipam":{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"10.0.1.0/24"}]]}}"#,
                7,
                "more than 1 address per family",
            ),
            (
                br#"{"name":"n","ipam":{"subnet":"10.0.0.0/24"},"runtimeConfig":{"ips":["bad"]}}"#,
                7,
                "cannot understand ip",
            ),
        ];
        for (conf, code, what) in cases {
            let e = HostLocalConfig::parse(conf, &[]).unwrap_err();
            assert_eq!(e.code(), *code, "{e}");
            assert!(e.to_string().contains(what), "{e} !~ {what}");
        }
    }

    #[test]
    fn ip_list() {
        assert_eq!(
            parse_ip_list("10.0.0.1, 2001:db8::1/64").unwrap(),
            [ip("10.0.0.1"), ip("2001:db8::1")]
        );
        assert_eq!(parse_ip_list("x").unwrap_err().code(), 7);
    }

    #[test]
    fn store_config_is_lenient() {
        let c = StoreConfig::parse(br#"{"name":"n","ipam":{"subnet":"bogus","dataDir":"/d"}}"#)
            .unwrap();
        assert_eq!(c.name, "n");
        assert_eq!(c.data_dir(), Some(Path::new("/d")));
    }

    #[test]
    fn resolv_conf() {
        let d = parse_resolv_conf_str(
            "# c\n; c\nnameserver 1.1.1.1\nnameserver 8.8.8.8\ndomain ex.com\nsearch a.com b.com\noptions ndots:5 edns0\nbogus\n",
        );
        assert_eq!(d.nameservers, ["1.1.1.1", "8.8.8.8"]);
        assert_eq!(d.domain.as_deref(), Some("ex.com"));
        assert_eq!(d.search, ["a.com", "b.com"]);
        assert_eq!(d.options, ["ndots:5", "edns0"]);
    }

    #[test]
    fn static_full() {
        let conf = br#"{
          "cniVersion": "1.0.0", "name": "s",
          "ipam": {
            "type": "static",
            "addresses": [{"address": "10.10.0.1/24", "gateway": "10.10.0.254"},
                          {"address": "3ffe:ffff:0:01ff::1/64", "gateway": "3ffe:ffff:0::1"}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {"nameservers": ["8.8.8.8"], "domain": "example.com", "search": ["example.com"]}
          },
          "runtimeConfig": {"ips": ["10.30.0.5/16"]},
          "args": {"cni": {"ips": ["10.20.0.5/24"]}}
        }"#;
        let env = (Some("10.40.0.7/24, 10.50.0.7/24"), Some("10.40.0.1"));
        let got = |c: &StaticConfig| -> Vec<String> {
            c.addresses.iter().map(|a| a.address.to_string()).collect()
        };
        // runtimeConfig ips replace everything else (the reference's order).
        let c = StaticConfig::parse(conf, env.0, env.1).unwrap();
        assert_eq!(got(&c), ["10.30.0.5/16"]);
        assert_eq!(c.routes.len(), 1);
        assert!(c.dns.is_some());
        // Without them, args.cni.ips replace addresses and CNI_ARGS IP=.
        let text = std::str::from_utf8(conf).unwrap();
        let no_rt = text.replace(r#""runtimeConfig": {"ips": ["10.30.0.5/16"]},"#, "");
        let c = StaticConfig::parse(no_rt.as_bytes(), env.0, env.1).unwrap();
        assert_eq!(got(&c), ["10.20.0.5/24"]);
        // Without either, CNI_ARGS IP= is appended and GATEWAY= applied.
        let neither = no_rt.replace(r#""args": {"cni": {"ips": ["10.20.0.5/24"]}}"#, r#""x": 1"#);
        let c = StaticConfig::parse(neither.as_bytes(), env.0, env.1).unwrap();
        assert_eq!(
            got(&c),
            [
                "10.10.0.1/24",
                "3ffe:ffff:0:1ff::1/64",
                "10.40.0.7/24",
                "10.50.0.7/24"
            ]
        );
        assert_eq!(c.addresses[0].gateway, Some(ip("10.10.0.254")));
        assert_eq!(c.addresses[2].gateway, Some(ip("10.40.0.1")));
        assert_eq!(c.addresses[3].gateway, None);
    }

    #[test]
    fn static_refusals() {
        type Case<'a> = (&'a [u8], Option<&'a str>, Option<&'a str>, &'a str);
        let cases: &[Case] = &[
            (br#"{"name":"s"}"#, None, None, "missing 'ipam'"),
            (br#"{"name":"s","ipam":{"addresses":[{"address":"10.0.0.1"}]}}"#, None, None, "no prefix"),
            (br#"{"name":"s","ipam":{"addresses":[{"address":"x/24"}]}}"#, None, None, "invalid CIDR"),
            (br#"{"name":"s","ipam":{"addresses":[{"address":" 10.0.0.1/24"}]}}"#, None, None, "invalid address 0"),
            (br#"{"name":"s","ipam":{"addresses":[{"address":"010.000.000.001/24"}]}}"#, None, None, "invalid address 0"),
            (br#"{"name":"s","ipam":{"addresses":[{"address":"10.0.0.1/024"}]}}"#, None, None, "invalid address 0"),
            (br#"{"name":"s","ipam":{"addresses":[{"address":"10.0.0.1/24","gateway":"10.0.0.01"}]}}"#, None, None, "invalid gateway"),
            (br#"{"name":"s","ipam":{}}"#, Some("10.0.0.1/24"), Some("zz"), "invalid gateway"),
            (
                br#"{"name":"s","cniVersion":"0.2.0","ipam":{"addresses":[{"address":"10.0.0.1/24"},{"address":"10.0.1.1/24"}]}}"#,
                None,
                None,
                "more than 1",
            ),
            (
                br#"{"name":"s","ipam":{"addresses":[{"address":"10.0.0.1/24","gateway":"2001:db8::1"}]}}"#,
                None,
                None,
                "family",
            ),
        ];
        for (conf, eip, egw, what) in cases {
            let e = StaticConfig::parse(conf, *eip, *egw).unwrap_err();
            assert_eq!(e.code(), 7, "{e}");
            assert!(e.to_string().contains(what), "{e} !~ {what}");
        }
    }
}
