//! The result cache, in libcni's `cniCacheV1` format.
//!
//! One file per attachment at `<cache dir>/results/<network>-<containerID>-<ifname>`:
//!
//! ```json
//! {"kind":"cniCacheV1","containerId":"...","config":"<base64 of the list bytes>",
//!  "ifName":"eth0","networkName":"...","netns":"...","cniArgs":[["K","V"]],
//!  "capabilityArgs":{...},"result":{...}}
//! ```
//!
//! Written the way Go's `encoding/json` writes it (sorted map keys, HTML
//! characters escaped, empty optional fields left out), so libcni and rcni
//! read each other's files and write identical ones (with libcni up to 1.1;
//! from 1.2 libcni leaves an empty `dns` out of a 1.0.0+ result, where rcni
//! keeps `"dns":{}` as the reference plugins print it: both read either).
//! Files are written to a
//! temporary name, fsynced and renamed into place (mode 0600, directory 0700).

use crate::error::{Error, Result};
use crate::gojson;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The `kind` of every cache file libcni and rcni write.
pub const CACHE_KIND: &str = "cniCacheV1";

/// One cache file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// Always [`CACHE_KIND`].
    #[serde(default)]
    pub kind: String,
    /// The container.
    #[serde(rename = "containerId", alias = "containerID", default)]
    pub container_id: String,
    /// The bytes of the network config list the attachment was made with.
    #[serde(with = "b64", default)]
    pub config: Vec<u8>,
    /// The interface inside the container.
    #[serde(rename = "ifName", default)]
    pub ifname: String,
    /// The network name.
    #[serde(rename = "networkName", default)]
    pub network_name: String,
    /// The container's network namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub netns: String,
    #[serde(
        rename = "cniArgs",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    /// `CNI_ARGS` of the ADD.
    pub cni_args: Vec<(String, String)>,
    #[serde(
        rename = "capabilityArgs",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Map::is_empty"
    )]
    /// The capability arguments (runtimeConfig) of the ADD.
    pub capability_args: Map<String, Value>,
    /// The final result of the ADD, in the list's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Go encodes `[]byte` as standard base64 (and nil as `null`).
mod b64 {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<u8>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(Vec::new()),
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(serde::de::Error::custom),
        }
    }
}

impl CacheEntry {
    /// The file's bytes, exactly as libcni would write them.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Fields in Go's struct order; maps inside sorted as Go sorts them.
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            for key in ["capabilityArgs", "result"] {
                if let Some(inner) = m.get_mut(key) {
                    *inner = gojson::sorted(inner);
                }
            }
        }
        gojson::to_string(&v).into_bytes()
    }

    /// Parses a cache file (only the `cniCacheV1` kind).
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<CacheEntry, String> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err("the file is empty".into());
        }
        let e: CacheEntry = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if e.kind != CACHE_KIND {
            return Err(format!("unknown kind {:?} (want {CACHE_KIND:?})", e.kind));
        }
        Ok(e)
    }
}

/// What the cache knows about one attachment (libcni's `NetworkAttachment`).
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// The container.
    pub container_id: String,
    /// The network name.
    pub network: String,
    /// The interface inside the container.
    pub ifname: String,
    /// The container's network namespace.
    pub netns: String,
    /// The bytes of the network config list.
    pub config: Vec<u8>,
    /// `CNI_ARGS` of the ADD.
    pub cni_args: Vec<(String, String)>,
    /// The capability arguments of the ADD.
    pub capability_args: Map<String, Value>,
    /// The file it was read from.
    pub file: PathBuf,
}

/// A result cache rooted at a directory (libcni's `CacheDir`, default
/// `/var/lib/cni`); files live in its `results/` subdirectory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// The default cache directory, the same as libcni's.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni";

impl Cache {
    /// A cache rooted at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Cache {
        Cache { dir: dir.into() }
    }

    /// The root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the result files live (`<dir>/results`).
    pub fn results_dir(&self) -> PathBuf {
        self.dir.join("results")
    }

    /// `<dir>/results/<network>-<containerID>-<ifname>`.
    pub fn path(&self, network: &str, container_id: &str, ifname: &str) -> Result<PathBuf> {
        if network.is_empty() || container_id.is_empty() || ifname.is_empty() {
            return Err(Error::Cache {
                path: self.results_dir(),
                msg: format!(
                    "a cache file needs a network name ({network:?}), container ID ({container_id:?}) and interface name ({ifname:?})"
                ),
            });
        }
        for part in [network, container_id, ifname] {
            if part.contains('/') || part == "." || part == ".." {
                return Err(Error::Cache {
                    path: self.results_dir(),
                    msg: format!("{part:?} cannot be part of a cache file name"),
                });
            }
        }
        Ok(self
            .results_dir()
            .join(format!("{network}-{container_id}-{ifname}")))
    }

    /// Writes `entry` atomically: temporary file (0600) in the same
    /// directory, fsync, rename, fsync of the directory.
    pub fn write(&self, entry: &CacheEntry) -> Result<PathBuf> {
        let path = self.path(&entry.network_name, &entry.container_id, &entry.ifname)?;
        let err = |msg: String| Error::Cache {
            path: path.clone(),
            msg,
        };
        let dir = self.results_dir();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        rcni_os::write_atomic(
            &path,
            &entry.to_bytes(),
            0o600,
            rcni_os::Durability::Durable,
        )
        .map_err(|e| err(format!("cannot write: {e}")))?;
        Ok(path)
    }

    /// Reads the entry of one attachment. `Ok(None)` when there is no file;
    /// an error when it exists but cannot be used (empty, corrupt, wrong kind).
    pub fn read(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CacheEntry>> {
        let path = self.path(network, container_id, ifname)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Cache {
                    path,
                    msg: format!("cannot read: {e}"),
                })
            }
        };
        match CacheEntry::from_bytes(&bytes) {
            Ok(e) => Ok(Some(e)),
            Err(why) => {
                // libcni's older format: the bare result.
                if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                    if v.get("cniVersion").is_some() && v.get("kind").is_none() {
                        return Ok(Some(CacheEntry {
                            kind: CACHE_KIND.into(),
                            container_id: container_id.into(),
                            config: Vec::new(),
                            ifname: ifname.into(),
                            network_name: network.into(),
                            netns: String::new(),
                            cni_args: Vec::new(),
                            capability_args: Map::new(),
                            result: Some(v),
                        }));
                    }
                }
                Err(Error::Cache { path, msg: why })
            }
        }
    }

    /// Removes the entry of one attachment; a missing file is fine.
    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> Result<()> {
        let path = self.path(network, container_id, ifname)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Cache {
                path,
                msg: format!("cannot remove: {e}"),
            }),
        }
    }

    /// Every readable `cniCacheV1` entry, sorted by file name, optionally only
    /// those of one container. Unreadable files are skipped, as libcni does.
    pub fn attachments(&self, container_id: Option<&str>) -> Vec<Attachment> {
        let dir = self.results_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            if let Some(id) = container_id {
                if !name.contains(&format!("-{id}-")) {
                    continue;
                }
            }
            let file = dir.join(&name);
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            let Ok(e) = CacheEntry::from_bytes(&bytes) else {
                continue;
            };
            if container_id.is_some_and(|id| id != e.container_id)
                || e.ifname.is_empty()
                || e.network_name.is_empty()
            {
                continue;
            }
            out.push(Attachment {
                container_id: e.container_id,
                network: e.network_name,
                ifname: e.ifname,
                netns: e.netns,
                config: e.config,
                cni_args: e.cni_args,
                capability_args: e.capability_args,
                file,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// What libcni (Go) writes for an attachment: field order of its struct,
    /// sorted maps, standard base64, HTML characters escaped.
    const LIBCNI_FILE: &str = concat!(
        r#"{"kind":"cniCacheV1","containerId":"ctr-1","#,
        r#""config":"eyJjbmlWZXJzaW9uIjoiMS4wLjAiLCJuYW1lIjoibmV0MSIsInBsdWdpbnMiOlt7InR5cGUiOiJicmlkZ2UifV19","#,
        r#""ifName":"eth0","networkName":"net1","netns":"/run/netns/p1","#,
        r#""cniArgs":[["IgnoreUnknown","1"],["K8S_POD_NAME","a\u0026b"]],"#,
        r#""capabilityArgs":{"portMappings":[{"containerPort":80,"hostPort":8080,"protocol":"tcp"}]},"#,
        r#""result":{"cniVersion":"1.0.0","dns":{},"interfaces":[{"mac":"aa:bb:cc:dd:ee:ff","name":"eth0","sandbox":"/run/netns/p1"}],"ips":[{"address":"10.1.0.2/24","gateway":"10.1.0.1","interface":0}]}}"#
    );

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn tmp(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("rcni-rt-cache-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Dir(p)
    }

    #[test]
    fn libcni_file_round_trips_byte_for_byte() {
        let e = CacheEntry::from_bytes(LIBCNI_FILE.as_bytes()).expect("parse");
        assert_eq!(e.container_id, "ctr-1");
        assert_eq!(
            String::from_utf8_lossy(&e.config),
            r#"{"cniVersion":"1.0.0","name":"net1","plugins":[{"type":"bridge"}]}"#
        );
        assert_eq!(e.cni_args[1], ("K8S_POD_NAME".into(), "a&b".into()));
        assert_eq!(String::from_utf8_lossy(&e.to_bytes()), LIBCNI_FILE);
    }

    #[test]
    fn optional_fields_are_left_out_and_null_is_accepted() {
        let e = CacheEntry {
            kind: CACHE_KIND.into(),
            container_id: "c".into(),
            config: b"{}".to_vec(),
            ifname: "eth0".into(),
            network_name: "n".into(),
            netns: String::new(),
            cni_args: vec![],
            capability_args: Map::new(),
            result: None,
        };
        assert_eq!(
            String::from_utf8_lossy(&e.to_bytes()),
            r#"{"kind":"cniCacheV1","containerId":"c","config":"e30=","ifName":"eth0","networkName":"n"}"#
        );
        let go_nil = br#"{"kind":"cniCacheV1","containerId":"c","config":null,"ifName":"eth0","networkName":"n","cniArgs":null}"#;
        let back = CacheEntry::from_bytes(go_nil).expect("nulls");
        assert!(back.config.is_empty() && back.cni_args.is_empty());
    }

    #[test]
    fn write_is_atomic_with_modes_and_corrupt_files_are_errors() {
        let d = tmp("w");
        let cache = Cache::new(&d.0);
        let mut e = CacheEntry::from_bytes(LIBCNI_FILE.as_bytes()).expect("parse");
        let path = cache.write(&e).expect("write");
        assert_eq!(path, d.0.join("results/net1-ctr-1-eth0"));
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&d.0.join("results")), 0o700);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), LIBCNI_FILE);
        e.netns = "/run/netns/other".into();
        cache.write(&e).expect("overwrite");
        assert_eq!(
            cache
                .read("net1", "ctr-1", "eth0")
                .expect("read")
                .expect("some")
                .netns,
            "/run/netns/other"
        );
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(d.0.join("results"))
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");

        assert_eq!(cache.read("net1", "nope", "eth0").expect("missing"), None);
        std::fs::write(&path, "").expect("truncate");
        assert!(cache.read("net1", "ctr-1", "eth0").is_err());
        std::fs::write(&path, "{\"kind\":\"other\"}").expect("kind");
        assert!(cache.read("net1", "ctr-1", "eth0").is_err());
        // libcni's pre-cniCacheV1 format: the bare result.
        std::fs::write(&path, r#"{"cniVersion":"0.4.0","ips":[]}"#).expect("legacy");
        let legacy = cache
            .read("net1", "ctr-1", "eth0")
            .expect("legacy")
            .expect("some");
        assert_eq!(legacy.result.expect("result")["cniVersion"], "0.4.0");
        cache.remove("net1", "ctr-1", "eth0").expect("rm");
        cache.remove("net1", "ctr-1", "eth0").expect("rm twice");
        assert!(cache.path("", "c", "eth0").is_err());
        assert!(cache.path("n", "../x", "eth0").is_err());
    }

    #[test]
    fn attachments_skip_garbage_and_filter_by_container() {
        let d = tmp("att");
        let cache = Cache::new(&d.0);
        let mut e = CacheEntry::from_bytes(LIBCNI_FILE.as_bytes()).expect("parse");
        cache.write(&e).expect("w1");
        e.container_id = "ctr-2".into();
        cache.write(&e).expect("w2");
        e.ifname = "net1".into();
        cache.write(&e).expect("w3");
        std::fs::write(d.0.join("results/net1-ctr-3-eth0"), "").expect("garbage");
        let all = cache.attachments(None);
        assert_eq!(all.len(), 3);
        let two = cache.attachments(Some("ctr-2"));
        assert_eq!(two.len(), 2);
        assert!(two.iter().all(|a| a.container_id == "ctr-2"));
        assert_eq!(two[0].capability_args["portMappings"][0]["hostPort"], 8080);
        assert!(Cache::new(d.0.join("none")).attachments(None).is_empty());
    }
}
