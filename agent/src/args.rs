//! Command line of `rcni-agent`.

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::datapath::{Backend, DatapathOptions};

pub const USAGE: &str = "\
usage: rcni-agent --node-name NAME [--source file:PATH | kubernetes[:KUBECONFIG] | etcd:ENDPOINTS]
                  [--cluster-cidr CIDR]... [--backend auto|host-gw|vxlan] [--uplink IF]
                  [--vxlan-vni N] [--vxlan-port P] [--cni-conf-dir DIR] [--cni-bin-dir DIR]
                  [--rcni PATH] [--interval SECONDS] [--once] [--insecure-allow-http-token]
                  [--node-cidr-mask-size N[,N]] [--node-ip IP[,IP]] [--lease-ttl SECONDS]
                  [--health-addr IP:PORT] [--mtu N]

--node-name defaults to $NODE_NAME; --source to kubernetes; --interval to 10;
--cni-conf-dir to /etc/cni/net.d; --cni-bin-dir to /opt/cni/bin; --rcni to
the rcni binary next to rcni-agent. --cluster-cidr may be given once per family
(or comma-separated); without it the union of all pod CIDRs is the cluster,
and another node's pod CIDR shorter than /16 (IPv4) or /48 (IPv6) is refused.
A Kubernetes bearer token is never sent over http:// unless
--insecure-allow-http-token is given.

With etcd:ENDPOINTS, --node-cidr-mask-size makes the agent allocate its own
pod CIDR: one size per --cluster-cidr, in the same order (e.g.
--cluster-cidr 10.244.0.0/16,fd44::/48 --node-cidr-mask-size 24,64); the
record registers --node-ip (required then) and lives on a lease of
--lease-ttl seconds (default 20) that the agent keeps alive.

--health-addr serves /healthz, /readyz and /metrics (off by default).
--mtu sets the pods' MTU and the VXLAN device's (default: the uplink's, minus
50 as soon as a peer is reached over VXLAN).

Every flag can also be given in the environment as RCNI_AGENT_<FLAG>
(--lease-ttl: RCNI_AGENT_LEASE_TTL; switches take 1 or true); the command
line wins.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub node_name: String,
    pub source: String,
    pub datapath: DatapathOptions,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dir: PathBuf,
    pub rcni: Option<PathBuf>,
    pub interval: Duration,
    pub once: bool,
    pub insecure_http_token: bool,
    /// Node CIDR mask sizes, one per `--cluster-cidr` (etcd allocation).
    pub node_cidr_mask_size: Vec<u8>,
    pub node_ip: Vec<std::net::IpAddr>,
    pub lease_ttl: u64,
    pub health_addr: Option<std::net::SocketAddr>,
}

impl Args {
    /// The allocation pools (cluster CIDR, mask size), when asked for.
    pub fn pools(&self) -> Vec<(IpNet, u8)> {
        self.datapath
            .cluster_cidr
            .iter()
            .copied()
            .zip(self.node_cidr_mask_size.iter().copied())
            .collect()
    }
}

/// Flags that take a value, as readable from the environment.
const VALUE_FLAGS: &[&str] = &[
    "--node-name",
    "--source",
    "--cluster-cidr",
    "--backend",
    "--uplink",
    "--vxlan-vni",
    "--vxlan-port",
    "--cni-conf-dir",
    "--cni-bin-dir",
    "--rcni",
    "--interval",
    "--node-cidr-mask-size",
    "--node-ip",
    "--lease-ttl",
    "--health-addr",
    "--mtu",
];
/// Switches, as readable from the environment (`1`/`true` turns one on).
const SWITCHES: &[&str] = &["--once", "--insecure-allow-http-token"];

/// The environment variable of a flag: `--lease-ttl` → `RCNI_AGENT_LEASE_TTL`.
pub fn env_name(flag: &str) -> String {
    format!(
        "RCNI_AGENT_{}",
        flag.trim_start_matches('-')
            .replace('-', "_")
            .to_uppercase()
    )
}

/// The flags given in the environment (`RCNI_AGENT_<FLAG>`), as arguments
/// to put before the command line's (which therefore wins).
pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut out = Vec::new();
    for f in VALUE_FLAGS {
        if let Some(v) = get(&env_name(f)).filter(|v| !v.is_empty()) {
            out.push(format!("{f}={v}"));
        }
    }
    for f in SWITCHES {
        if get(&env_name(f)).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
            out.push((*f).to_string());
        }
    }
    out
}

/// Parses `argv` (without the program name); `env_node` is `$NODE_NAME`.
pub fn parse(argv: &[String], env_node: Option<String>) -> Result<Args, String> {
    let mut a = Args {
        node_name: env_node.unwrap_or_default(),
        source: "kubernetes".into(),
        datapath: DatapathOptions::default(),
        cni_conf_dir: "/etc/cni/net.d".into(),
        cni_bin_dir: "/opt/cni/bin".into(),
        rcni: None,
        interval: Duration::from_secs(10),
        once: false,
        insecure_http_token: false,
        node_cidr_mask_size: Vec::new(),
        node_ip: Vec::new(),
        lease_ttl: 20,
        health_addr: None,
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (flag.as_str(), None),
        };
        if name == "--once" {
            a.once = true;
            continue;
        }
        if name == "--insecure-allow-http-token" {
            a.insecure_http_token = true;
            continue;
        }
        if name == "-h" || name == "--help" {
            return Err(USAGE.to_string());
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))?,
        };
        let bad = |e: &dyn std::fmt::Display| format!("{name} {value:?}: {e}");
        match name {
            "--node-name" => a.node_name = value,
            "--source" => a.source = value,
            "--cluster-cidr" => {
                for c in value.split(',').filter(|c| !c.is_empty()) {
                    let net: IpNet = c.trim().parse().map_err(|e| bad(&e))?;
                    a.datapath.cluster_cidr.push(net.trunc());
                }
            }
            "--backend" => a.datapath.backend = value.parse::<Backend>().map_err(|e| bad(&e))?,
            "--uplink" => a.datapath.uplink = Some(value),
            "--vxlan-vni" => {
                let vni: u32 = value.parse().map_err(|e| bad(&e))?;
                if vni == 0 || vni >= 1 << 24 {
                    return Err(bad(&"must be 1..16777215"));
                }
                a.datapath.vxlan_vni = vni;
            }
            "--vxlan-port" => {
                a.datapath.vxlan_port = value.parse().map_err(|e| bad(&e))?;
                if a.datapath.vxlan_port == 0 {
                    return Err(bad(&"must not be 0"));
                }
            }
            "--node-cidr-mask-size" => {
                for m in value.split(',').filter(|m| !m.is_empty()) {
                    a.node_cidr_mask_size
                        .push(m.trim().parse().map_err(|e| bad(&e))?);
                }
            }
            "--node-ip" => {
                for ip in value.split(',').filter(|m| !m.is_empty()) {
                    a.node_ip.push(ip.trim().parse().map_err(|e| bad(&e))?);
                }
            }
            "--lease-ttl" => {
                a.lease_ttl = value.parse().map_err(|e| bad(&e))?;
                if a.lease_ttl < 2 {
                    return Err(bad(&"must be at least 2"));
                }
            }
            "--mtu" => {
                let m: u32 = value.parse().map_err(|e| bad(&e))?;
                if !(1280..=65535).contains(&m) {
                    return Err(bad(&"must be 1280..65535"));
                }
                a.datapath.mtu = Some(m);
            }
            "--health-addr" => a.health_addr = Some(value.parse().map_err(|e| bad(&e))?),
            "--cni-conf-dir" => a.cni_conf_dir = value.into(),
            "--cni-bin-dir" => a.cni_bin_dir = value.into(),
            "--rcni" => a.rcni = Some(value.into()),
            "--interval" => {
                let s: u64 = value.parse().map_err(|e| bad(&e))?;
                if s == 0 {
                    return Err(bad(&"must be at least 1"));
                }
                a.interval = Duration::from_secs(s);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if a.node_name.is_empty() {
        return Err(format!("--node-name (or $NODE_NAME) is required\n{USAGE}"));
    }
    if !a.node_cidr_mask_size.is_empty() {
        if !a.source.starts_with("etcd:") {
            return Err("--node-cidr-mask-size needs --source etcd:ENDPOINTS".into());
        }
        if a.node_cidr_mask_size.len() != a.datapath.cluster_cidr.len() {
            return Err("--node-cidr-mask-size needs one size per --cluster-cidr".into());
        }
        for (c, m) in a.pools() {
            if m < c.prefix_len() || m > c.max_prefix_len() {
                return Err(format!(
                    "--node-cidr-mask-size {m} does not fit the cluster CIDR {c}"
                ));
            }
        }
        if a.node_ip.is_empty() {
            return Err("--node-cidr-mask-size needs --node-ip (the address to register)".into());
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_from_the_environment() {
        assert_eq!(env_name("--lease-ttl"), "RCNI_AGENT_LEASE_TTL");
        let env = |k: &str| match k {
            "RCNI_AGENT_SOURCE" => Some("etcd:http://e:2379".to_string()),
            "RCNI_AGENT_INTERVAL" => Some("7".to_string()),
            "RCNI_AGENT_ONCE" => Some("true".to_string()),
            "RCNI_AGENT_INSECURE_ALLOW_HTTP_TOKEN" => Some("no".to_string()),
            _ => None,
        };
        let mut argv = from_env(&env);
        argv.extend(v("--node-name a --interval 3"));
        let a = parse(&argv, None).unwrap();
        assert_eq!(a.source, "etcd:http://e:2379");
        // The command line wins.
        assert_eq!(a.interval, Duration::from_secs(3));
        assert!(a.once);
        assert!(!a.insecure_http_token);
    }

    #[test]
    fn defaults_and_flags() {
        let a = parse(&[], Some("n1".into())).unwrap();
        assert_eq!(a.node_name, "n1");
        assert_eq!(a.source, "kubernetes");
        assert_eq!(a.interval, Duration::from_secs(10));
        assert_eq!(a.datapath, DatapathOptions::default());
        let a = parse(
            &v(
                "--node-name a --source file:/n.json --cluster-cidr 10.244.0.0/16,fd44::/48 \
                --backend=vxlan --uplink eth1 --vxlan-vni 7 --vxlan-port 4789 \
                --cni-conf-dir /c --cni-bin-dir /b --rcni /r --interval 3 --once \
                --insecure-allow-http-token",
            ),
            Some("ignored".into()),
        )
        .unwrap();
        assert_eq!(a.node_name, "a");
        assert_eq!(a.datapath.cluster_cidr.len(), 2);
        assert_eq!(a.datapath.backend, Backend::Vxlan);
        assert_eq!(a.datapath.uplink.as_deref(), Some("eth1"));
        assert_eq!((a.datapath.vxlan_vni, a.datapath.vxlan_port), (7, 4789));
        assert_eq!(a.rcni, Some(PathBuf::from("/r")));
        assert!(a.once);
        assert!(a.insecure_http_token);
        assert!(!parse(&[], Some("n".into())).unwrap().insecure_http_token);
        assert!(parse(&[], None).is_err());
        assert!(parse(&v("--node-name a --backend bgp"), None).is_err());
        assert!(parse(&v("--node-name a --vxlan-vni 0"), None).is_err());
        assert!(parse(&v("--node-name a --interval"), None).is_err());
        assert!(parse(&v("--node-name a --bogus 1"), None).is_err());
        let a = parse(
            &v(
                "--node-name a --source etcd:http://e:2379 --cluster-cidr 10.244.0.0/16,fd44::/48 \
                --node-cidr-mask-size 24,64 --node-ip 192.168.1.1 --lease-ttl 5",
            ),
            None,
        )
        .unwrap();
        assert_eq!(a.pools().len(), 2);
        assert_eq!((a.pools()[1].1, a.lease_ttl), (64, 5));
        let h = parse(&v("--node-name a --health-addr 127.0.0.1:9871"), None).unwrap();
        assert_eq!(h.health_addr, Some("127.0.0.1:9871".parse().unwrap()));
        assert!(parse(&v("--node-name a --health-addr localhost"), None).is_err());
        let m = parse(&v("--node-name a --mtu 1400"), None).unwrap();
        assert_eq!(m.datapath.mtu, Some(1400));
        assert!(parse(&v("--node-name a --mtu 500"), None).is_err());
        for bad in [
            "--node-name a --cluster-cidr 10.244.0.0/16 --node-cidr-mask-size 24 --node-ip 1.2.3.4",
            "--node-name a --source etcd:http://e:1 --cluster-cidr 10.244.0.0/16 --node-cidr-mask-size 8 --node-ip 1.2.3.4",
            "--node-name a --source etcd:http://e:1 --cluster-cidr 10.244.0.0/16 --node-cidr-mask-size 24",
            "--node-name a --source etcd:http://e:1 --node-cidr-mask-size 24 --node-ip 1.2.3.4",
        ] {
            assert!(parse(&v(bad), None).is_err(), "{bad}");
        }
    }
}
