//! Every file the plugin touches goes through here: its per-attachment
//! cache entries under `cniDir`, network files in `confDir`, the
//! readiness indicator and the log file, all through the kit's OS layer
//! (`kit::os`).

use kit::os::{self, Durability};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Marks an entry written by this plugin (Multus's own cache files, at
/// `<cniDir>/<containerID>`, have another name and shape).
pub const KIND: &str = "rcniMultusV1";

/// One delegate network as it was attached: enough to run DEL, CHECK and
/// GC without the API server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DelegateEntry {
    /// The name reported in network-status (`namespace/name` for a
    /// NetworkAttachmentDefinition, else the network's own name).
    pub name: String,
    /// The interface in the pod.
    pub ifname: String,
    /// The configuration (conflist) exactly as it was run.
    pub config: String,
    /// `CNI_ARGS` of the delegate.
    #[serde(rename = "cniArgs", default)]
    pub cni_args: Vec<(String, String)>,
    /// Capability arguments of the delegate.
    #[serde(rename = "capabilityArgs", default)]
    pub capability_args: Map<String, Value>,
    /// The cluster network (its result is the pod's result).
    #[serde(default)]
    pub master: bool,
}

/// The delegates of one multus attachment (container, interface).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub kind: String,
    #[serde(rename = "containerId")]
    pub container_id: String,
    #[serde(rename = "ifName")]
    pub ifname: String,
    #[serde(default)]
    pub netns: String,
    pub delegates: Vec<DelegateEntry>,
    /// Every delegate was attached (false while ADD runs, and after an
    /// ADD whose undo could not finish).
    #[serde(default)]
    pub complete: bool,
}

fn entry_path(dir: &Path, container_id: &str, ifname: &str) -> PathBuf {
    dir.join(format!("rcni-{container_id}-{ifname}.json"))
}

/// Writes the entry (atomically: a temporary file renamed over it).
pub fn save(dir: &Path, entry: &Entry) -> Result<(), String> {
    os::create_dir_all(dir, 0o700)
        .map_err(|e| format!("cannot create cniDir {}: {e}", dir.display()))?;
    let path = entry_path(dir, &entry.container_id, &entry.ifname);
    let bytes = serde_json::to_vec(entry).map_err(|e| e.to_string())?;
    os::write_atomic(&path, &bytes, 0o600, Durability::Atomic)
        .map_err(|e| format!("cannot write the cache entry {}: {e}", path.display()))
}

/// The entry of an attachment: `Ok(None)` when there is none; an
/// unreadable one is reported (and left for the caller to remove).
pub fn load(dir: &Path, container_id: &str, ifname: &str) -> Result<Option<Entry>, String> {
    let path = entry_path(dir, container_id, ifname);
    let bytes = match os::read_if_exists(&path) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    match serde_json::from_slice::<Entry>(&bytes) {
        Ok(e) if e.kind == KIND => Ok(Some(e)),
        Ok(e) => Err(format!("{}: unknown kind {:?}", path.display(), e.kind)),
        Err(e) => Err(format!("{}: unreadable: {e}", path.display())),
    }
}

/// Removes an attachment's entry; a missing one is fine.
pub fn remove(dir: &Path, container_id: &str, ifname: &str) -> Result<(), String> {
    let path = entry_path(dir, container_id, ifname);
    os::remove_file(&path)
        .map(|_| ())
        .map_err(|e| format!("cannot remove {}: {e}", path.display()))
}

/// Every readable entry in `dir` (unreadable ones are skipped).
pub fn all(dir: &Path) -> Vec<Entry> {
    let Ok(names) = os::dir_names(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Entry> = names
        .iter()
        .filter(|n| n.starts_with("rcni-") && n.ends_with(".json"))
        .filter_map(|n| os::read(&dir.join(n)).ok())
        .filter_map(|b| serde_json::from_slice::<Entry>(&b).ok())
        .filter(|e| e.kind == KIND)
        .collect();
    out.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
    out
}

/// A file's bytes (a network configuration in `confDir`).
pub fn read(path: &Path) -> Result<Vec<u8>, String> {
    os::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Whether `path` is a directory.
pub fn is_dir(path: &Path) -> bool {
    os::is_dir(path)
}

/// Whether `path` exists.
pub fn exists(path: &Path) -> bool {
    os::exists(path)
}

/// The configuration files of `dir` (`*.conflist`, `*.conf`, `*.json`),
/// in lexical order.
pub fn conf_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(names) = os::dir_names(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = names
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| {
            os::is_file(p)
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conflist" | "conf" | "json")
                )
        })
        .collect();
    files.sort();
    files
}

/// Waits until `path` exists, at most `limit`; true when it does.
pub fn wait_for(path: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if os::exists(path) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Appends a line to the log file (best effort).
pub fn append_line(path: &Path, line: &str) {
    let _ = os::append(path, format!("{line}\n").as_bytes());
}
