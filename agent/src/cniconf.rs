//! The node's CNI configuration and plugin binaries.
//!
//! The agent writes one network, `rcni`, as `10-rcni.conflist`: the bridge
//! plugin (`cni0`, gateway and default route for the pods, no per-node
//! masquerade: the agent masquerades cluster-wide) with host-local
//! handing out addresses of the node's pod CIDR(s), then portmap for
//! `hostPort`s. The file is replaced atomically (write + rename) and only
//! when its content changes, so a runtime watching the directory sees one
//! complete file or the previous one, never a half-written one.

use std::path::{Path, PathBuf};
use std::process::Command;

use ipnet::IpNet;
use serde_json::{json, Value};

/// The network name of the config list.
pub const NETWORK: &str = "rcni";
/// The config list's file name in the conf dir.
pub const FILE_NAME: &str = "10-rcni.conflist";
/// The bridge the pods of this node are attached to.
pub const BRIDGE: &str = "cni0";
/// The `cniVersion` of the config list.
pub const CNI_VERSION: &str = "1.0.0";

/// The config list for a node with `pod_cidrs` whose pods use `mtu`.
pub fn render(pod_cidrs: &[IpNet], mtu: u32) -> Value {
    // One range set per family; every CIDR of a family in its set.
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for c in pod_cidrs.iter().map(IpNet::trunc) {
        let r = json!({ "subnet": c.to_string() });
        if c.addr().is_ipv4() {
            v4.push(r);
        } else {
            v6.push(r);
        }
    }
    let ranges: Vec<Value> = [v4, v6]
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(Value::Array)
        .collect();
    json!({
        "cniVersion": CNI_VERSION,
        "name": NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "isDefaultGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "mtu": mtu,
                "ipam": {
                    "type": "host-local",
                    "ranges": ranges,
                }
            },
            {
                "type": "portmap",
                "capabilities": { "portMappings": true },
                "snat": true
            }
        ]
    })
}

/// The bytes written for `conf` (pretty, with a final newline).
pub fn to_bytes(conf: &Value) -> Vec<u8> {
    let mut s = serde_json::to_string_pretty(conf).unwrap_or_else(|_| conf.to_string());
    s.push('\n');
    s.into_bytes()
}

/// Writes `conf` as `dir/10-rcni.conflist` unless the file already holds
/// exactly that. Returns whether it wrote.
pub fn write_if_changed(dir: &Path, conf: &Value) -> std::io::Result<bool> {
    let path = dir.join(FILE_NAME);
    let body = to_bytes(conf);
    if std::fs::read(&path).is_ok_and(|cur| cur == body) {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    // The temporary file is a dot-file: runtimes only load *.conflist /
    // *.conf / *.json.
    rcni_os::write_atomic(&path, &body, 0o644, rcni_os::Durability::Durable)?;
    Ok(true)
}

/// The pod CIDRs of the config a previous run wrote in `dir` (its
/// host-local ranges), or nothing when there is none or it does not read.
/// An allocating agent asks for these first, so a node keeps its subnet
/// across restarts even after its etcd lease ran out (a `--once` run).
pub fn pod_cidrs_in(dir: &Path) -> Vec<IpNet> {
    let Ok(bytes) = std::fs::read(dir.join(FILE_NAME)) else {
        return Vec::new();
    };
    let Ok(conf) = serde_json::from_slice::<Value>(&bytes) else {
        return Vec::new();
    };
    let ranges = &conf["plugins"][0]["ipam"]["ranges"];
    ranges
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|r| r["subnet"].as_str())
        .filter_map(|s| s.parse::<IpNet>().ok())
        .collect()
}

/// The `rcni` binary next to the running executable.
pub fn default_rcni() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("rcni")))
        .unwrap_or_else(|| PathBuf::from("rcni"))
}

/// Runs `rcni install --bin-dir bin_dir`.
pub fn install(rcni: &Path, bin_dir: &Path) -> Result<String, String> {
    let out = Command::new(rcni)
        .arg("install")
        .arg("--bin-dir")
        .arg(bin_dir)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", rcni.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{} install --bin-dir {} failed ({}): {}",
            rcni.display(),
            bin_dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_range_set_per_family() {
        let cidrs: Vec<IpNet> = vec![
            "10.244.1.0/24".parse().unwrap(),
            "fd44:1::/64".parse().unwrap(),
        ];
        let c = render(&cidrs, 1450);
        assert_eq!(c["name"], "rcni");
        let b = &c["plugins"][0];
        assert_eq!(b["type"], "bridge");
        assert_eq!(b["bridge"], "cni0");
        assert_eq!(b["isGateway"], true);
        assert_eq!(b["isDefaultGateway"], true);
        assert_eq!(b["ipMasq"], false);
        assert_eq!(b["mtu"], 1450);
        assert_eq!(
            b["ipam"]["ranges"],
            json!([[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd44:1::/64"}]])
        );
        let p = &c["plugins"][1];
        assert_eq!(p["type"], "portmap");
        assert_eq!(p["capabilities"]["portMappings"], true);
        assert_eq!(p["snat"], true);
        let only4 = render(&cidrs[..1], 1500);
        assert_eq!(
            only4["plugins"][0]["ipam"]["ranges"],
            json!([[{"subnet": "10.244.1.0/24"}]])
        );
    }

    #[test]
    fn rewrites_only_on_change() {
        let dir = std::env::temp_dir().join(format!("rcni-agent-conf-{}", std::process::id()));
        let c = render(&["10.244.1.0/24".parse().unwrap()], 1500);
        assert!(write_if_changed(&dir, &c).unwrap());
        assert!(!write_if_changed(&dir, &c).unwrap());
        let back: Value =
            serde_json::from_slice(&std::fs::read(dir.join(FILE_NAME)).unwrap()).unwrap();
        assert_eq!(back, c);
        let c2 = render(&["10.244.1.0/24".parse().unwrap()], 1450);
        assert!(write_if_changed(&dir, &c2).unwrap());
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no temp file left behind");
        let dual = render(
            &[
                "10.244.1.0/24".parse().unwrap(),
                "fd44:1::/64".parse().unwrap(),
            ],
            1450,
        );
        write_if_changed(&dir, &dual).unwrap();
        let back: Vec<String> = pod_cidrs_in(&dir).iter().map(|c| c.to_string()).collect();
        assert_eq!(back, ["10.244.1.0/24", "fd44:1::/64"]);
        std::fs::write(dir.join(FILE_NAME), "not json").unwrap();
        assert!(pod_cidrs_in(&dir).is_empty());
        assert!(pod_cidrs_in(&dir.join("missing")).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
