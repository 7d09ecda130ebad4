//! Command line of `rcni-agent` (clap). Every flag can also be given in the
//! environment as `RCNI_AGENT_<FLAG>` (`--lease-ttl` → `RCNI_AGENT_LEASE_TTL`,
//! switches take `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`); the
//! command line wins. `--node-name` falls back to `$NODE_NAME` (what a
//! DaemonSet sets from `spec.nodeName`) after `RCNI_AGENT_NODE_NAME`.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use ipnet::IpNet;

use crate::datapath::{Backend, DatapathOptions};

/// The parsed command line, as the agent uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `--node-name`, else `$NODE_NAME`: this node's name.
    pub node_name: String,
    /// `--source`: where nodes and their pod CIDRs come from (`file:PATH`,
    /// `kubernetes[:KUBECONFIG]` or `etcd:ENDPOINTS`).
    pub source: String,
    /// `--cluster-cidr`, `--backend`, `--uplink`, `--vxlan-vni`,
    /// `--vxlan-port` and `--mtu`: how pod traffic reaches other nodes.
    pub datapath: DatapathOptions,
    /// `--cni-conf-dir`: where the node's CNI configuration is written.
    pub cni_conf_dir: PathBuf,
    /// `--cni-bin-dir`: where the plugins are installed.
    pub cni_bin_dir: PathBuf,
    /// `--rcni`: the rcni binary to install (unset: `rcni` next to
    /// rcni-agent).
    pub rcni: Option<PathBuf>,
    /// `--interval`: time between full resyncs.
    pub interval: Duration,
    /// `--once`: one round, then exit.
    pub once: bool,
    /// `--uninstall`: remove the agent's state from the node, then exit.
    pub uninstall: bool,
    /// `--insecure-allow-http-token`: a Kubernetes bearer token may go over
    /// plain http://.
    pub insecure_http_token: bool,
    /// Node CIDR mask sizes, one per `--cluster-cidr` (etcd allocation).
    pub node_cidr_mask_size: Vec<u8>,
    /// `--node-ip`: the node addresses an allocated record registers.
    pub node_ip: Vec<IpAddr>,
    /// `--lease-ttl`: seconds the allocated record outlives the last
    /// keepalive.
    pub lease_ttl: u64,
    /// `--health-addr`: where /healthz, /readyz and /metrics are served (off
    /// when unset).
    pub health_addr: Option<SocketAddr>,
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

const AFTER_HELP: &str = "\
Sources: file:PATH (a JSON list of nodes), kubernetes (the pod's service
account), kubernetes:KUBECONFIG, etcd:ENDPOINTS (comma-separated
http(s)://host:port; RCNI_ETCD_PREFIX, RCNI_ETCD_CA, RCNI_ETCD_CERT and
RCNI_ETCD_KEY configure it).

With etcd:ENDPOINTS, --node-cidr-mask-size makes the agent allocate its own
pod CIDR: one size per --cluster-cidr, in the same order (e.g.
--cluster-cidr 10.244.0.0/16,fd44::/48 --node-cidr-mask-size 24,64). The
record registers --node-ip and lives on a lease of --lease-ttl seconds that
the agent keeps alive. With --once the lease is not renewed after the round:
the record expires --lease-ttl seconds later, and the next run asks for the
same pod CIDR again (taken from the CNI config it wrote).

Every flag can also be set in the environment as RCNI_AGENT_<FLAG> (shown
as [env: ...] above; switches take 1/true/yes/on); the command line wins.";

/// rcni node agent: takes this node's pod CIDR from the cluster, writes the
/// node's CNI config, installs the plugins, routes pod traffic between nodes
/// (host-gw on a shared L2 segment, VXLAN otherwise) and masquerades
/// traffic leaving the cluster.
#[derive(Debug, Parser)]
#[command(name = "rcni-agent", version, after_help = AFTER_HELP)]
struct Cli {
    /// This node's name (default: $NODE_NAME; --uninstall needs none).
    #[arg(long, env = "RCNI_AGENT_NODE_NAME", value_name = "NAME")]
    node_name: Option<String>,

    /// Where nodes and their pod CIDRs come from: file:PATH,
    /// kubernetes[:KUBECONFIG] or etcd:ENDPOINTS.
    #[arg(
        long,
        env = "RCNI_AGENT_SOURCE",
        value_name = "SOURCE",
        default_value = "kubernetes"
    )]
    source: String,

    /// The cluster's pod network, once per family (repeat or separate with
    /// commas). Without it the union of all pod CIDRs is the cluster, and
    /// another node's pod CIDR shorter than /16 (IPv4) or /48 (IPv6) is
    /// refused.
    #[arg(
        long,
        env = "RCNI_AGENT_CLUSTER_CIDR",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    cluster_cidr: Vec<IpNet>,

    /// How remote pod CIDRs are reached: auto (host-gw on-link, VXLAN
    /// otherwise), host-gw, or vxlan.
    #[arg(
        long,
        env = "RCNI_AGENT_BACKEND",
        value_name = "auto|host-gw|vxlan",
        default_value = "auto"
    )]
    backend: Backend,

    /// The interface towards the other nodes (default: the one holding this
    /// node's address, else the default route's).
    #[arg(long, env = "RCNI_AGENT_UPLINK", value_name = "IF")]
    uplink: Option<String>,

    /// VXLAN network identifier.
    #[arg(long, env = "RCNI_AGENT_VXLAN_VNI", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=16_777_215))]
    vxlan_vni: u32,

    /// VXLAN UDP port.
    #[arg(long, env = "RCNI_AGENT_VXLAN_PORT", value_name = "P", default_value_t = 8472,
          value_parser = clap::value_parser!(u16).range(1..))]
    vxlan_port: u16,

    /// Where the node's CNI config (10-rcni.conflist) is written.
    #[arg(
        long,
        env = "RCNI_AGENT_CNI_CONF_DIR",
        value_name = "DIR",
        default_value = "/etc/cni/net.d"
    )]
    cni_conf_dir: PathBuf,

    /// Where the plugins are installed (rcni plus one link per plugin).
    #[arg(
        long,
        env = "RCNI_AGENT_CNI_BIN_DIR",
        value_name = "DIR",
        default_value = "/opt/cni/bin"
    )]
    cni_bin_dir: PathBuf,

    /// The rcni binary to install (default: `rcni` next to rcni-agent).
    #[arg(long, env = "RCNI_AGENT_RCNI", value_name = "PATH")]
    rcni: Option<PathBuf>,

    /// Seconds between full resyncs (changes seen by a watch apply at
    /// once), at most a day.
    #[arg(long, env = "RCNI_AGENT_INTERVAL", value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    interval: u64,

    /// One round, then exit: 0 when everything was set up, 1 otherwise.
    #[arg(long, env = "RCNI_AGENT_ONCE", value_parser = BoolishValueParser::new(),
          num_args = 0, default_missing_value = "true", default_value = "false")]
    once: bool,

    /// Remove what the agent set up on this node (its routes, VXLAN
    /// devices, masquerade table and conflist), then exit; the plugins in
    /// --cni-bin-dir and the forwarding sysctls stay.
    #[arg(long, env = "RCNI_AGENT_UNINSTALL", value_parser = BoolishValueParser::new(),
          num_args = 0, default_missing_value = "true", default_value = "false")]
    uninstall: bool,

    /// Allow sending a Kubernetes bearer token over plain http://.
    #[arg(long = "insecure-allow-http-token", env = "RCNI_AGENT_INSECURE_ALLOW_HTTP_TOKEN",
          value_parser = BoolishValueParser::new(), num_args = 0,
          default_missing_value = "true", default_value = "false")]
    insecure_http_token: bool,

    /// Allocate this node's pod CIDR in etcd: the prefix length per
    /// --cluster-cidr, in the same order (needs --source etcd:... and
    /// --node-ip).
    #[arg(
        long,
        env = "RCNI_AGENT_NODE_CIDR_MASK_SIZE",
        value_name = "N",
        value_delimiter = ','
    )]
    node_cidr_mask_size: Vec<u8>,

    /// The node addresses an allocated record registers (comma-separated).
    #[arg(
        long,
        env = "RCNI_AGENT_NODE_IP",
        value_name = "IP",
        value_delimiter = ','
    )]
    node_ip: Vec<IpAddr>,

    /// Seconds the allocated record outlives the agent's last keepalive.
    #[arg(long, env = "RCNI_AGENT_LEASE_TTL", value_name = "SECONDS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(2..))]
    lease_ttl: u64,

    /// Serve /healthz, /readyz and /metrics on this address (off unless
    /// given).
    #[arg(long, env = "RCNI_AGENT_HEALTH_ADDR", value_name = "IP:PORT")]
    health_addr: Option<SocketAddr>,

    /// The pods' MTU and the VXLAN device's (default: the uplink's, minus
    /// 50 (IPv4 underlay) or 70 (IPv6) once a peer is reached over VXLAN).
    #[arg(long, env = "RCNI_AGENT_MTU", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1280..=65535))]
    mtu: Option<u32>,
}

/// Removes `RCNI_AGENT_*` variables set to the empty string, which mean
/// "not set" (as a manifest's `value: ""` does); clap would take them as an
/// empty value. Call it before any thread starts.
pub fn drop_empty_env() {
    let empty: Vec<OsString> = std::env::vars_os()
        .filter(|(k, v)| k.to_str().is_some_and(|k| k.starts_with("RCNI_AGENT_")) && v.is_empty())
        .map(|(k, _)| k)
        .collect();
    for k in empty {
        std::env::remove_var(k);
    }
}

/// The help text (`rcni-agent --help`).
pub fn help() -> String {
    Cli::command().render_long_help().to_string()
}

/// Parses a command line (with the program name first) and the
/// `RCNI_AGENT_*` environment; `env_node` is `$NODE_NAME`. A clap error
/// (also for `--help` and `--version`) prints and exits with
/// [`clap::Error::exit`].
pub fn parse_from<I, T>(argv: I, env_node: Option<String>) -> Result<Args, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(argv)?;
    let invalid = |msg: String| Cli::command().error(ErrorKind::ArgumentConflict, msg);
    let node_name = cli
        .node_name
        .filter(|n| !n.is_empty())
        .or(env_node.filter(|n| !n.is_empty()))
        // Uninstalling removes what the agent made on this host, whatever
        // node it was: no name is needed for that.
        .or_else(|| cli.uninstall.then(String::new))
        .ok_or_else(|| {
            Cli::command().error(
                ErrorKind::MissingRequiredArgument,
                "--node-name (or $NODE_NAME) is required",
            )
        })?;
    let a = Args {
        node_name,
        source: cli.source,
        datapath: DatapathOptions {
            backend: cli.backend,
            uplink: cli.uplink,
            cluster_cidr: cli.cluster_cidr.iter().map(IpNet::trunc).collect(),
            vxlan_vni: cli.vxlan_vni,
            vxlan_port: cli.vxlan_port,
            mtu: cli.mtu,
        },
        cni_conf_dir: cli.cni_conf_dir,
        cni_bin_dir: cli.cni_bin_dir,
        rcni: cli.rcni,
        interval: Duration::from_secs(cli.interval),
        once: cli.once,
        uninstall: cli.uninstall,
        insecure_http_token: cli.insecure_http_token,
        node_cidr_mask_size: cli.node_cidr_mask_size,
        node_ip: cli.node_ip,
        lease_ttl: cli.lease_ttl,
        health_addr: cli.health_addr,
    };
    let pools = &a.datapath.cluster_cidr;
    for (i, c) in pools.iter().enumerate() {
        if let Some(o) = pools[i + 1..]
            .iter()
            .find(|o| o.contains(&c.network()) || c.contains(&o.network()))
        {
            return Err(invalid(format!(
                "--cluster-cidr {c} and {o} overlap: give each range once"
            )));
        }
    }
    if !a.node_cidr_mask_size.is_empty() {
        if !a.source.starts_with("etcd:") {
            return Err(invalid(
                "--node-cidr-mask-size needs --source etcd:ENDPOINTS".into(),
            ));
        }
        if a.node_cidr_mask_size.len() != a.datapath.cluster_cidr.len() {
            return Err(invalid(
                "--node-cidr-mask-size needs one size per --cluster-cidr".into(),
            ));
        }
        for (c, m) in a.pools() {
            if m < c.prefix_len() || m > c.max_prefix_len() {
                return Err(invalid(format!(
                    "--node-cidr-mask-size {m} does not fit the cluster CIDR {c}"
                )));
            }
        }
        if a.node_ip.is_empty() {
            return Err(invalid(
                "--node-cidr-mask-size needs --node-ip (the address to register)".into(),
            ));
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The tests below read (and one sets) the process environment.
    static ENV: Mutex<()> = Mutex::new(());

    fn parse(s: &str, env_node: Option<&str>) -> Result<Args, clap::Error> {
        let argv = std::iter::once("rcni-agent").chain(s.split_whitespace());
        parse_from(argv, env_node.map(String::from))
    }

    #[test]
    fn flags_from_the_environment() {
        let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let vars = [
            ("RCNI_AGENT_SOURCE", "etcd:http://e:2379"),
            ("RCNI_AGENT_INTERVAL", "7"),
            ("RCNI_AGENT_ONCE", "true"),
            ("RCNI_AGENT_INSECURE_ALLOW_HTTP_TOKEN", "no"),
            ("RCNI_AGENT_CLUSTER_CIDR", "10.244.0.0/16,fd44::/48"),
            ("RCNI_AGENT_NODE_NAME", "from-env"),
        ];
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
        std::env::set_var("RCNI_AGENT_MTU", "");
        drop_empty_env();
        let a = parse("--interval 3", Some("node-name-var"));
        let b = parse("--node-name cli", None);
        std::env::set_var("RCNI_AGENT_ONCE", "maybe");
        let bad = parse("--node-name cli", None);
        for (k, _) in vars {
            std::env::remove_var(k);
        }
        let a = a.unwrap();
        assert_eq!(a.source, "etcd:http://e:2379");
        // The command line wins.
        assert_eq!(a.interval, Duration::from_secs(3));
        assert!(a.once);
        assert!(!a.insecure_http_token);
        assert_eq!(a.datapath.cluster_cidr.len(), 2);
        // RCNI_AGENT_NODE_NAME before $NODE_NAME; the command line first.
        assert_eq!(a.node_name, "from-env");
        assert_eq!(b.unwrap().node_name, "cli");
        // An empty variable is no value; a bad one is an error.
        assert_eq!(a.datapath.mtu, None);
        assert!(std::env::var_os("RCNI_AGENT_MTU").is_none());
        assert!(bad.is_err());
    }

    #[test]
    fn help_documents_every_flag() {
        let h = help();
        for flag in [
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
            "--once",
            "--insecure-allow-http-token",
            "--node-cidr-mask-size",
            "--node-ip",
            "--lease-ttl",
            "--health-addr",
            "--mtu",
        ] {
            assert!(h.contains(flag), "{flag} missing from --help:\n{h}");
            let var = format!(
                "RCNI_AGENT_{}",
                flag.trim_start_matches('-')
                    .replace('-', "_")
                    .to_uppercase()
            );
            assert!(h.contains(&var), "{var} missing from --help:\n{h}");
        }
        let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let e = parse("--help", None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DisplayHelp);
    }

    #[test]
    fn defaults_and_flags() {
        let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let a = parse("", Some("n1")).unwrap();
        assert_eq!(a.node_name, "n1");
        assert_eq!(a.source, "kubernetes");
        assert_eq!(a.interval, Duration::from_secs(10));
        assert_eq!(a.datapath, DatapathOptions::default());
        assert_eq!(
            (a.cni_conf_dir.to_str(), a.cni_bin_dir.to_str()),
            (Some("/etc/cni/net.d"), Some("/opt/cni/bin"))
        );
        assert_eq!(a.lease_ttl, 20);
        assert!(!a.once && !a.insecure_http_token);
        let a = parse(
            "--node-name a --source file:/n.json --cluster-cidr 10.244.0.0/16,fd44::/48 \
             --backend=vxlan --uplink eth1 --vxlan-vni 7 --vxlan-port 4789 \
             --cni-conf-dir /c --cni-bin-dir /b --rcni /r --interval 3 --once \
             --insecure-allow-http-token",
            Some("ignored"),
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
        // Overlapping pools (the same one twice included) are refused.
        for bad in [
            "--node-name a --cluster-cidr 10.244.0.0/16,10.244.8.0/21",
            "--node-name a --cluster-cidr 10.244.0.0/16 --cluster-cidr 10.244.0.0/16",
            "--node-name a --cluster-cidr fd44::/48,fd44::/32",
        ] {
            let e = parse(bad, None).unwrap_err().to_string();
            assert!(e.contains("overlap"), "{bad}: {e}");
        }
        assert!(parse(
            "--node-name a --cluster-cidr 10.244.0.0/16,10.245.0.0/16",
            None
        )
        .is_ok());
        // --uninstall needs no node name; everything else does.
        assert!(parse("--uninstall", None).is_ok());
        assert!(parse("--once", None).is_err());
        // Repeated --cluster-cidr adds up; host bits are dropped.
        let r = parse(
            "--node-name a --cluster-cidr 10.244.1.1/16 --cluster-cidr fd44::/48",
            None,
        )
        .unwrap();
        assert_eq!(
            r.datapath.cluster_cidr,
            [
                "10.244.0.0/16".parse().unwrap(),
                "fd44::/48".parse().unwrap()
            ]
        );
        assert!(parse("", None).is_err());
        assert!(parse("--node-name a --backend bgp", None).is_err());
        assert!(parse("--node-name a --vxlan-vni 0", None).is_err());
        assert!(parse("--node-name a --vxlan-vni 16777216", None).is_err());
        assert!(parse("--node-name a --vxlan-port 0", None).is_err());
        assert!(parse("--node-name a --interval", None).is_err());
        assert!(parse("--node-name a --interval 18446744073709551615", None).is_err());
        assert!(parse("--node-name a --interval 86401", None).is_err());
        assert!(parse("--node-name a --interval 0", None).is_err());
        assert!(parse("--node-name a --lease-ttl 1", None).is_err());
        assert!(parse("--node-name a --bogus 1", None).is_err());
        let a = parse(
            "--node-name a --source etcd:http://e:2379 --cluster-cidr 10.244.0.0/16,fd44::/48 \
             --node-cidr-mask-size 24,64 --node-ip 192.168.1.1 --lease-ttl 5",
            None,
        )
        .unwrap();
        assert_eq!(a.pools().len(), 2);
        assert_eq!((a.pools()[1].1, a.lease_ttl), (64, 5));
        let h = parse("--node-name a --health-addr 127.0.0.1:9871", None).unwrap();
        assert_eq!(h.health_addr, Some("127.0.0.1:9871".parse().unwrap()));
        assert!(parse("--node-name a --health-addr localhost", None).is_err());
        let m = parse("--node-name a --mtu 1400", None).unwrap();
        assert_eq!(m.datapath.mtu, Some(1400));
        assert!(parse("--node-name a --mtu 500", None).is_err());
        for bad in [
            "--node-name a --cluster-cidr 10.244.0.0/16 --node-cidr-mask-size 24 --node-ip 1.2.3.4",
            "--node-name a --source etcd:http://e:1 --cluster-cidr 10.244.0.0/16 --node-cidr-mask-size 8 --node-ip 1.2.3.4",
            "--node-name a --source etcd:http://e:1 --cluster-cidr 10.244.0.0/16 --node-cidr-mask-size 24",
            "--node-name a --source etcd:http://e:1 --node-cidr-mask-size 24 --node-ip 1.2.3.4",
        ] {
            assert!(parse(bad, None).is_err(), "{bad}");
        }
    }
}
