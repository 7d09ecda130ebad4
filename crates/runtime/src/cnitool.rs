//! `cnitool`: the reference command line for running a network by hand.
//!
//! Same interface as containernetworking/cni's cnitool: verbs, environment
//! variables, and the container ID derived from the namespace path, so a
//! `cnitool del` from either tool undoes a `cnitool add` from the other.

use crate::{load_network, CniConfig, RuntimeConf};
use serde_json::{Map, Value};
use sha2::{Digest, Sha512};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

const HELP: &str = "\
cnitool — add, check, remove, garbage-collect or query network attachments

Usage:
  cnitool add    <network> <netns-path>   attach the network to the namespace;
                                          prints the result JSON
  cnitool check  <network> <netns-path>   ask every plugin whether the attachment
                                          made by `add` is still intact
  cnitool del    <network> <netns-path>   detach: every plugin in reverse order,
                                          with the result cached by `add`
  cnitool gc     <network> [<netns-path>] delete every cached attachment of the
                                          network (none is kept valid), then ask
                                          each plugin to clean up (cniVersion >= 1.1.0)
  cnitool status <network> [<netns-path>] exit 0 when every plugin is ready for
                                          `add` (cniVersion >= 1.1.0)
  cnitool --help                          this text

<network> is the `name` inside a config in NETCONFPATH: *.conflist first, then
*.conf/*.json, each in lexical order. The container ID is derived from the
absolute namespace path (cnitool-<hash>), as the reference cnitool does.

Options:
  -i, --ifname NAME   interface name inside the namespace (overrides CNI_IFNAME)

Environment:
  NETCONFPATH      configuration directory (default /etc/cni/net.d)
  CNI_PATH         plugin directories, colon-separated
  CNI_IFNAME       interface name (default eth0)
  CNI_ARGS         extra arguments for plugins: K=V;K=V
  CAP_ARGS         capability arguments as a JSON object, e.g.
                   {\"portMappings\":[{\"hostPort\":8080,\"containerPort\":80,\"protocol\":\"tcp\"}]}
  CNI_CACHE_DIR    result cache directory (default /var/lib/cni)
  CNITOOL_TIMEOUT  kill a plugin after this many seconds (default: no limit)

Exit status: 0 on success, 1 when the operation failed, 2 on bad usage.";

/// The reference's container ID: `cnitool-` and the first 10 bytes of the
/// SHA-512 of the absolute namespace path, in hex.
pub fn container_id_for(netns_abs: &str) -> String {
    let digest = Sha512::digest(netns_abs.as_bytes());
    let hex: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
    format!("cnitool-{hex}")
}

/// Go's `filepath.Abs`: joined to the working directory when relative, then
/// cleaned lexically (`.`, `..`, repeated slashes).
pub fn absolute(path: &str) -> std::io::Result<String> {
    let p = Path::new(path);
    let joined: PathBuf = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in joined.components() {
        match c {
            Component::Normal(s) => parts.push(s),
            Component::ParentDir => {
                parts.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    let mut out = String::new();
    for s in parts {
        out.push('/');
        out.push_str(&s.to_string_lossy());
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// The reference's CNI_ARGS parsing: `K=V` pairs split on `;`, neither side empty.
pub fn parse_cni_args(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(';')
        .map(|pair| {
            let kv: Vec<&str> = pair.split('=').collect();
            match kv.as_slice() {
                [k, v] if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(format!(
                    "invalid CNI_ARGS pair {pair:?} (want KEY=VALUE;KEY=VALUE)"
                )),
            }
        })
        .collect()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

struct Cli {
    verb: String,
    network: String,
    netns: Option<String>,
    ifname: Option<String>,
}

fn parse_cli(args: &[String]) -> Result<Option<Cli>, String> {
    let mut positional = Vec::new();
    let mut ifname = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" | "help" => return Ok(None),
            "-i" | "--ifname" => {
                ifname = Some(it.next().cloned().ok_or("--ifname needs a value")?);
            }
            s if s.starts_with("--ifname=") => ifname = Some(s["--ifname=".len()..].to_string()),
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s:?}")),
            _ => positional.push(a.clone()),
        }
    }
    let mut p = positional.into_iter();
    let verb = p.next().ok_or("missing command")?;
    if !matches!(verb.as_str(), "add" | "check" | "del" | "gc" | "status") {
        return Err(format!("unknown command {verb:?}"));
    }
    let network = p.next().ok_or("missing <network>")?;
    let netns = p.next();
    if netns.is_none() && matches!(verb.as_str(), "add" | "check" | "del") {
        return Err(format!("{verb} needs <netns-path>"));
    }
    if let Some(extra) = p.next() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    Ok(Some(Cli {
        verb,
        network,
        netns,
        ifname,
    }))
}

/// Runs cnitool with `args` (without the program name); returns the exit status.
pub fn main(args: &[String]) -> i32 {
    let cli = match parse_cli(args) {
        Ok(Some(cli)) => cli,
        Ok(None) => {
            println!("{HELP}");
            return 0;
        }
        Err(e) => {
            // Exit status 1, as the reference cnitool's usage().
            eprintln!("cnitool: {e}\n\n{HELP}");
            return 1;
        }
    };
    match run(&cli) {
        Ok(out) => {
            if let Some(out) = out {
                println!("{out}");
            }
            0
        }
        Err(e) => {
            eprintln!("cnitool: {e}");
            1
        }
    }
}

fn run(cli: &Cli) -> Result<Option<String>, String> {
    let netdir = env("NETCONFPATH").unwrap_or_else(|| "/etc/cni/net.d".into());
    let net = load_network(&netdir, &cli.network).map_err(|e| e.to_string())?;

    let capability_args: Map<String, Value> = match env("CAP_ARGS") {
        None => Map::new(),
        Some(s) => {
            serde_json::from_str(&s).map_err(|e| format!("CAP_ARGS is not a JSON object: {e}"))?
        }
    };
    let cni_args = match env("CNI_ARGS") {
        None => Vec::new(),
        Some(s) => parse_cni_args(&s)?,
    };
    let ifname = cli
        .ifname
        .clone()
        .or_else(|| env("CNI_IFNAME"))
        .unwrap_or_else(|| "eth0".into());
    let netns = match &cli.netns {
        Some(p) => absolute(p).map_err(|e| format!("cannot make {p:?} absolute: {e}"))?,
        None => String::new(),
    };
    let rt = RuntimeConf {
        container_id: container_id_for(&netns),
        netns,
        ifname,
        args: cni_args,
        capability_args,
    };

    let path: Vec<PathBuf> = env("CNI_PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let mut cni = CniConfig::new(path);
    if let Some(dir) = env("CNI_CACHE_DIR") {
        cni = cni.with_cache_dir(dir);
    }
    if let Some(t) = env("CNITOOL_TIMEOUT") {
        let secs: f64 = t
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s > 0.0)
            .ok_or_else(|| format!("CNITOOL_TIMEOUT {t:?} is not a positive number of seconds"))?;
        cni = cni.with_timeout(Duration::from_secs_f64(secs));
    }

    let what = |verb: &str| format!("{verb} on network {:?} failed", net.name);
    match cli.verb.as_str() {
        "add" => {
            let result = cni
                .add(&net, &rt)
                .map_err(|e| format!("{}: {e}", what("add")))?;
            let v = result
                .to_value(&net.cni_version)
                .map_err(|e| format!("cannot print the result: {e}"))?;
            Ok(Some(
                serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string()),
            ))
        }
        "check" => cni
            .check(&net, &rt)
            .map(|_| None)
            .map_err(|e| format!("{}: {e}", what("check"))),
        "del" => cni
            .del(&net, &rt)
            .map(|_| None)
            .map_err(|e| format!("{}: {e}", what("del"))),
        "gc" => cni
            .gc(&net, &[])
            .map(|_| None)
            .map_err(|e| format!("{}: {e}", what("gc"))),
        "status" => cni.status(&net).map(|_| None).map_err(|e| match e.code() {
            Some(c @ (50 | 51)) => format!("network {:?} is not ready (code {c}): {e}", net.name),
            _ => format!("{}: {e}", what("status")),
        }),
        _ => Err(format!("unknown command {:?}", cli.verb)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_id_matches_the_reference() {
        // sha512("/run/netns/test") computed independently with coreutils.
        let out = std::process::Command::new("sha512sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                if let Some(mut w) = c.stdin.take() {
                    w.write_all(b"/run/netns/test")?;
                }
                c.wait_with_output()
            })
            .expect("sha512sum");
        let hex = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            container_id_for("/run/netns/test"),
            format!("cnitool-{}", &hex[..20])
        );
    }

    #[test]
    fn absolute_cleans_like_go() {
        assert_eq!(
            absolute("/run//netns/./x/../y").expect("abs"),
            "/run/netns/y"
        );
        assert_eq!(absolute("/..").expect("abs"), "/");
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(
            absolute("a/b").expect("abs"),
            format!("{}/a/b", cwd.display()).replace("//", "/")
        );
    }

    #[test]
    fn cni_args_like_the_reference() {
        assert_eq!(
            parse_cni_args("IgnoreUnknown=1;IP=10.0.0.5").expect("ok"),
            vec![
                ("IgnoreUnknown".to_string(), "1".to_string()),
                ("IP".to_string(), "10.0.0.5".to_string())
            ]
        );
        for bad in ["K", "K=", "=V", "A=1;;B=2", "A=1=2"] {
            assert!(parse_cni_args(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usage_errors() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(parse_cli(&s(&["--help"])).expect("help").is_none());
        assert!(parse_cli(&s(&["add", "net"])).is_err());
        assert!(parse_cli(&s(&["frob", "net", "/x"])).is_err());
        assert!(parse_cli(&s(&["add", "net", "/x", "y"])).is_err());
        let c = parse_cli(&s(&["add", "-i", "net1", "net", "/x"]))
            .expect("ok")
            .expect("cli");
        assert_eq!(c.ifname.as_deref(), Some("net1"));
        assert!(parse_cli(&s(&["gc", "net"])).expect("gc").is_some());
        assert_eq!(main(&s(&["bogus"])), 1);
        assert_eq!(main(&s(&["--help"])), 0);
    }
}
