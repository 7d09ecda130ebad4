//! Loading network configurations the way libcni does.
//!
//! * `*.conflist` files in lexical order; the first whose `name` matches wins.
//! * Then the legacy single-plugin `*.conf` / `*.json` files (lexical order),
//!   converted to a one-plugin list.
//! * Unless `loadOnlyInlinedPlugins` is true, plugin configs found in
//!   `<confdir>/<network name>/*.conf` are appended (lexical order) to the
//!   inlined `plugins` of a conflist (libcni 1.2+).
//! * `cniVersions`: the highest entry this runtime implements, counting
//!   `cniVersion` too; entries newer than [`cni_spec::LATEST`] are ignored.
//!
//! Every parse error names the file it came from.

use crate::error::{Error, Result};
use crate::gojson;
use cni_spec::{version, NetConf};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// One plugin of a list: its raw JSON object (passed on to the plugin, with
/// the runtime's keys injected) and the common fields, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// The common fields, parsed.
    pub conf: NetConf,
    /// The plugin's JSON object as written.
    pub raw: Map<String, Value>,
}

impl PluginConfig {
    /// Parses one plugin object; `type` is required.
    pub fn from_value(raw: Map<String, Value>) -> std::result::Result<PluginConfig, String> {
        let conf: NetConf = serde_json::from_value(Value::Object(raw.clone()))
            .map_err(|e| format!("error parsing plugin configuration: {e}"))?;
        if conf.plugin_type.is_empty() {
            return Err("error parsing plugin configuration: missing 'type'".into());
        }
        Ok(PluginConfig { conf, raw })
    }

    /// Parses one plugin config file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<PluginConfig, String> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => PluginConfig::from_value(m),
            Ok(other) => Err(format!(
                "error parsing plugin configuration: expected a JSON object, got {}",
                kind(&other)
            )),
            Err(e) => Err(format!("error parsing plugin configuration: {e}")),
        }
    }

    /// `type="bridge" name="x"`, the way libcni names a plugin in errors.
    pub fn describe(&self) -> String {
        let mut s = format!("type={:?}", self.conf.plugin_type);
        if !self.conf.name.is_empty() {
            s.push_str(&format!(" name={:?}", self.conf.name));
        }
        s
    }
}

/// A network: a named list of plugins run in order.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    /// The network name.
    pub name: String,
    /// The version the list runs at, after `cniVersions` negotiation.
    /// A list without any version runs at 0.1.0.
    pub cni_version: String,
    /// `disableCheck`: CHECK is not run.
    pub disable_check: bool,
    /// `disableGC`: GC is not run.
    pub disable_gc: bool,
    /// `loadOnlyInlinedPlugins`: no plugin configs from a directory.
    pub load_only_inlined_plugins: bool,
    /// The plugins, in order.
    pub plugins: Vec<PluginConfig>,
    /// The bytes the list was parsed from; stored (base64) in the result
    /// cache as libcni does.
    pub bytes: Vec<u8>,
    /// The file it came from, if any.
    pub source: Option<PathBuf>,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn read_bool(m: &Map<String, Value>, key: &str) -> std::result::Result<bool, String> {
    match m.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("invalid value {s:?} for {key}")),
        },
        Some(other) => Err(format!("invalid type ({}) for {key}", kind(other))),
    }
}

/// libcni's choice among `cniVersions` (plus `cniVersion`): the highest that
/// is not newer than what this runtime implements.
fn negotiate(cni_version: &str, versions: &[Value]) -> std::result::Result<String, String> {
    let mut candidates = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let s = v
            .as_str()
            .ok_or_else(|| format!("invalid type ({}) for cniVersions index {i}", kind(v)))?;
        if version::Version::parse(s).is_none() {
            return Err(format!("invalid cniVersions entry {s:?} at index {i}"));
        }
        if !version::compare(s, cni_spec::LATEST).is_gt() {
            candidates.push(s.to_string());
        }
    }
    if !cni_version.is_empty() {
        if version::Version::parse(cni_version).is_none() {
            return Err(format!("invalid cniVersion {cni_version:?}"));
        }
        if !version::compare(cni_version, cni_spec::LATEST).is_gt() {
            candidates.push(cni_version.to_string());
        }
    }
    Ok(candidates
        .into_iter()
        .max_by(|a, b| version::compare(a, b))
        .unwrap_or_else(|| cni_version.to_string()))
}

impl NetworkConfigList {
    /// Parses a conflist's bytes: only the inlined `plugins` (plugin files
    /// next to a conflist are read by [`NetworkConfigList::from_file`]).
    /// A list without `plugins` is accepted here (it may get its plugins
    /// from files) unless `loadOnlyInlinedPlugins` is set.
    ///
    /// ```
    /// let list = runtime::NetworkConfigList::from_bytes(br#"{
    ///     "cniVersion": "1.0.0", "cniVersions": ["0.4.0", "1.1.0"], "name": "demo",
    ///     "plugins": [{"type": "bridge"}, {"type": "portmap", "capabilities": {"portMappings": true}}]
    /// }"#).unwrap();
    /// assert_eq!(list.cni_version, "1.1.0");
    /// assert_eq!(list.plugins.len(), 2);
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<NetworkConfigList> {
        Self::parse(bytes).map_err(Error::Config)
    }

    fn parse(bytes: &[u8]) -> std::result::Result<NetworkConfigList, String> {
        let raw: Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("error parsing configuration list: {e}"))?;
        let Value::Object(m) = raw else {
            return Err(format!(
                "error parsing configuration list: expected a JSON object, got {}",
                kind(&raw)
            ));
        };
        let name = match m.get("name") {
            Some(Value::String(s)) => s.clone(),
            None => return Err("error parsing configuration list: no name".into()),
            Some(other) => {
                return Err(format!(
                    "error parsing configuration list: invalid name type ({})",
                    kind(other)
                ))
            }
        };
        let declared = match m.get("cniVersion") {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(format!(
                    "error parsing configuration list: invalid cniVersion type ({})",
                    kind(other)
                ))
            }
        };
        let cni_version = match m.get("cniVersions") {
            None => declared,
            Some(Value::Array(vs)) => negotiate(&declared, vs)
                .map_err(|e| format!("error parsing configuration list: {e}"))?,
            Some(other) => {
                return Err(format!(
                    "error parsing configuration list: invalid type ({}) for cniVersions",
                    kind(other)
                ))
            }
        };
        let bool_field = |k: &str| {
            read_bool(&m, k).map_err(|e| format!("error parsing configuration list: {e}"))
        };
        let mut list = NetworkConfigList {
            name,
            cni_version: if cni_version.is_empty() {
                "0.1.0".into()
            } else {
                cni_version
            },
            disable_check: bool_field("disableCheck")?,
            disable_gc: bool_field("disableGC")?,
            load_only_inlined_plugins: bool_field("loadOnlyInlinedPlugins")?,
            plugins: Vec::new(),
            bytes: bytes.to_vec(),
            source: None,
        };
        let plugins = match m.get("plugins") {
            None if list.load_only_inlined_plugins => {
                return Err("error parsing configuration list: `loadOnlyInlinedPlugins` is true, and no 'plugins' key".into())
            }
            None => return Ok(list),
            Some(Value::Array(a)) => a,
            Some(other) => {
                return Err(format!(
                    "error parsing configuration list: invalid 'plugins' type ({})",
                    kind(other)
                ))
            }
        };
        if plugins.is_empty() {
            return Err("error parsing configuration list: no plugins in list".into());
        }
        for (i, p) in plugins.iter().enumerate() {
            let Value::Object(pm) = p else {
                return Err(format!(
                    "failed to parse plugin config {i}: expected an object, got {}",
                    kind(p)
                ));
            };
            let pc = PluginConfig::from_value(pm.clone())
                .map_err(|e| format!("failed to parse plugin config {i}: {e}"))?;
            list.plugins.push(pc);
        }
        Ok(list)
    }

    /// Reads a conflist file, then (unless `loadOnlyInlinedPlugins`) the
    /// plugin files in `<dir of file>/<network name>/*.conf`. A list that
    /// ends up without plugins is an error.
    pub fn from_file(path: impl AsRef<Path>) -> Result<NetworkConfigList> {
        let path = path.as_ref();
        let mut list = read_config_file(path, Self::parse)?;
        list.source = Some(path.to_path_buf());
        if !list.load_only_inlined_plugins {
            let dir = path.parent().unwrap_or(Path::new(".")).join(&list.name);
            list.plugins.extend(plugin_files(&dir)?);
        }
        if list.plugins.is_empty() {
            return Err(Error::ConfigFile {
                file: path.to_path_buf(),
                msg: "no plugin configs found".into(),
            });
        }
        Ok(list)
    }

    /// Wraps a legacy single-plugin config (`*.conf`) as a one-plugin list,
    /// as libcni's `ConfListFromConf` does (the list bytes are what libcni
    /// would write for it).
    pub fn from_plugin(plugin: PluginConfig) -> NetworkConfigList {
        let mut wrapper = Map::new();
        wrapper.insert(
            "cniVersion".into(),
            Value::String(plugin.conf.cni_version.clone()),
        );
        wrapper.insert("name".into(), Value::String(plugin.conf.name.clone()));
        wrapper.insert(
            "plugins".into(),
            Value::Array(vec![Value::Object(plugin.raw.clone())]),
        );
        let bytes = gojson::to_string(&gojson::sorted(&Value::Object(wrapper))).into_bytes();
        NetworkConfigList {
            name: plugin.conf.name.clone(),
            cni_version: if plugin.conf.cni_version.is_empty() {
                "0.1.0".into()
            } else {
                plugin.conf.cni_version.clone()
            },
            disable_check: false,
            disable_gc: false,
            load_only_inlined_plugins: true,
            plugins: vec![plugin],
            bytes,
            source: None,
        }
    }

    /// Reads a legacy single-plugin config file as a one-plugin list.
    pub fn from_plugin_file(path: impl AsRef<Path>) -> Result<NetworkConfigList> {
        let path = path.as_ref();
        let plugin = read_config_file(path, PluginConfig::from_bytes)?;
        let mut list = NetworkConfigList::from_plugin(plugin);
        list.source = Some(path.to_path_buf());
        Ok(list)
    }

    /// Every capability some plugin of the list declares (sorted, unique).
    pub fn capabilities(&self) -> Vec<String> {
        let mut caps: Vec<String> = self
            .plugins
            .iter()
            .flat_map(|p| p.conf.capabilities.iter())
            .filter(|(_, on)| **on)
            .map(|(c, _)| c.clone())
            .collect();
        caps.sort();
        caps.dedup();
        caps
    }
}

/// Reads the config file `path` and parses it with `parse`; either failure
/// is an [`Error::ConfigFile`] naming the file.
fn read_config_file<T>(
    path: &Path,
    parse: impl FnOnce(&[u8]) -> std::result::Result<T, String>,
) -> Result<T> {
    let file_err = |msg: String| Error::ConfigFile {
        file: path.to_path_buf(),
        msg,
    };
    let bytes = std::fs::read(path).map_err(|e| file_err(format!("cannot read: {e}")))?;
    parse(&bytes).map_err(file_err)
}

/// The plugin configs in `dir/*.conf` (none when `dir` does not exist).
fn plugin_files(dir: &Path) -> Result<Vec<PluginConfig>> {
    let mut out = Vec::new();
    for file in conf_files(dir, &["conf"])? {
        out.push(read_config_file(&file, PluginConfig::from_bytes)?);
    }
    Ok(out)
}

/// The files in `dir` (not subdirectories) whose extension is one of
/// `extensions` (without the dot), sorted by name. A missing `dir` has none.
pub fn conf_files(dir: impl AsRef<Path>, extensions: &[&str]) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::ConfigFile {
                file: dir.to_path_buf(),
                msg: format!("cannot read directory: {e}"),
            })
        }
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        // Follows symlinks, as Go's DirEntry.IsDir does not; a link to a
        // directory is skipped either way when it cannot be read as a file.
        if path.is_dir() {
            continue;
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if extensions.contains(&ext) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Finds network `name` in `dir`: conflists first, then legacy `.conf`/`.json`.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("rcni-doc-load-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// std::fs::write(dir.join("10-a.conflist"),
///     r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"}]}"#).unwrap();
/// std::fs::write(dir.join("20-b.conf"),
///     r#"{"cniVersion":"0.4.0","name":"b","type":"ptp"}"#).unwrap();
/// // Plugin files next to the list are appended (libcni 1.2+).
/// std::fs::create_dir_all(dir.join("a")).unwrap();
/// std::fs::write(dir.join("a/50-portmap.conf"), r#"{"type":"portmap"}"#).unwrap();
///
/// let a = runtime::load_network(&dir, "a").unwrap();
/// assert_eq!(a.plugins.len(), 2);
/// assert_eq!(a.plugins[1].conf.plugin_type, "portmap");
/// let b = runtime::load_network(&dir, "b").unwrap();
/// assert_eq!((b.cni_version.as_str(), b.plugins.len()), ("0.4.0", 1));
/// assert!(runtime::load_network(&dir, "c").is_err());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn load_network(dir: impl AsRef<Path>, name: &str) -> Result<NetworkConfigList> {
    let dir = dir.as_ref();
    let lists = conf_files(dir, &["conflist"])?;
    for file in &lists {
        let list = NetworkConfigList::from_file(file)?;
        if list.name == name {
            return Ok(list);
        }
    }
    let singles = conf_files(dir, &["conf", "json"])?;
    if lists.is_empty() && singles.is_empty() {
        return Err(Error::NoConfigs {
            dir: dir.to_path_buf(),
        });
    }
    for file in &singles {
        let list = NetworkConfigList::from_plugin_file(file)?;
        if list.name == name {
            return Ok(list);
        }
    }
    Err(Error::NotFound {
        dir: dir.to_path_buf(),
        name: name.to_string(),
    })
}

/// Every network in `dir`, in the order a runtime would pick a default
/// (conflists, then legacy files, each lexically): the first is the one
/// containerd uses. Files that fail to load are returned as errors in place.
pub fn load_all(dir: impl AsRef<Path>) -> Result<Vec<Result<NetworkConfigList>>> {
    let dir = dir.as_ref();
    let mut out = Vec::new();
    for file in conf_files(dir, &["conflist"])? {
        out.push(NetworkConfigList::from_file(&file));
    }
    for file in conf_files(dir, &["conf", "json"])? {
        out.push(NetworkConfigList::from_plugin_file(&file));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A conflist of one plugin of `plugin_type`.
    fn conflist(version: &str, name: &str, plugin_type: &str) -> String {
        format!(
            r#"{{"cniVersion":"{version}","name":"{name}","plugins":[{{"type":"{plugin_type}"}}]}}"#
        )
    }

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Dir {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p =
                std::env::temp_dir().join(format!("rcni-rt-conf-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("mkdir");
            Dir(p)
        }
        /// A new dir holding `files` (name, body).
        fn with_files(tag: &str, files: &[(&str, &str)]) -> Dir {
            let d = Dir::new(tag);
            for (name, body) in files {
                d.write(name, body);
            }
            d
        }
        fn write(&self, name: &str, body: &str) -> PathBuf {
            let p = self.0.join(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(&p, body).expect("write");
            p
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn conflists_first_in_lexical_order_then_legacy() {
        let d = Dir::with_files(
            "order",
            &[
                ("20-x.conflist", &conflist("1.0.0", "net", "second")),
                ("10-x.conflist", &conflist("1.0.0", "net", "first")),
                (
                    "00-legacy.conf",
                    r#"{"cniVersion":"0.3.1","name":"net","type":"legacy"}"#,
                ),
                (
                    "05-other.json",
                    r#"{"cniVersion":"0.3.1","name":"other","type":"jsonplugin"}"#,
                ),
                ("99-ignored.txt", "not a config"),
            ],
        );
        let l = load_network(&d.0, "net").expect("load");
        assert_eq!(l.plugins[0].conf.plugin_type, "first");
        assert_eq!(
            l.source.as_deref(),
            Some(d.0.join("10-x.conflist").as_path())
        );
        let o = load_network(&d.0, "other").expect("legacy json");
        assert_eq!(o.plugins[0].conf.plugin_type, "jsonplugin");
        assert_eq!(o.cni_version, "0.3.1");
        // The wrapped list's bytes are what libcni writes for it.
        assert_eq!(
            String::from_utf8_lossy(&o.bytes),
            r#"{"cniVersion":"0.3.1","name":"other","plugins":[{"cniVersion":"0.3.1","name":"other","type":"jsonplugin"}]}"#
        );
        match load_network(&d.0, "missing") {
            Err(Error::NotFound { name, .. }) => assert_eq!(name, "missing"),
            other => panic!("{other:?}"),
        }
        let empty = Dir::new("empty");
        assert!(matches!(
            load_network(&empty.0, "x"),
            Err(Error::NoConfigs { .. })
        ));
        assert!(matches!(
            load_network(empty.0.join("nope"), "x"),
            Err(Error::NoConfigs { .. })
        ));
    }

    #[test]
    fn parse_errors_name_the_file() {
        let d = Dir::new("errs");
        let cases = [
            (
                "a.conflist",
                "{not json",
                "error parsing configuration list",
            ),
            (
                "a.conflist",
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#,
                "no name",
            ),
            (
                "a.conflist",
                r#"{"name":"n","plugins":[]}"#,
                "no plugins in list",
            ),
            (
                "a.conflist",
                r#"{"name":"n","plugins":[{"name":"x"}]}"#,
                "missing 'type'",
            ),
            (
                "a.conflist",
                r#"{"name":"n","plugins":{}}"#,
                "invalid 'plugins' type",
            ),
            (
                "a.conflist",
                r#"{"name":"n","disableCheck":"yes","plugins":[{"type":"x"}]}"#,
                "disableCheck",
            ),
            (
                "a.conflist",
                r#"{"name":"n","cniVersions":["1.x"],"plugins":[{"type":"x"}]}"#,
                "cniVersions entry",
            ),
            (
                "a.conflist",
                r#"{"name":"n","loadOnlyInlinedPlugins":true}"#,
                "loadOnlyInlinedPlugins",
            ),
            ("a.conflist", r#"{"name":"n"}"#, "no plugin configs found"),
            ("b.conf", r#"{"name":"n"}"#, "missing 'type'"),
            ("b.conf", "[]", "expected a JSON object"),
        ];
        for (file, body, want) in cases {
            let d = Dir::new("err1");
            let path = d.write(file, body);
            let err = load_network(&d.0, "n").expect_err(body);
            let msg = err.to_string();
            assert!(
                msg.contains(&path.display().to_string()) && msg.contains(want),
                "{body}: {msg}"
            );
        }
        drop(d);
    }

    #[test]
    fn plugin_files_next_to_the_list() {
        let d = Dir::with_files(
            "pfiles",
            &[
                ("10-net.conflist", &conflist("1.1.0", "net", "bridge")),
                ("net/20-b.conf", r#"{"type":"tuning"}"#),
                ("net/10-a.conf", r#"{"type":"portmap"}"#),
                ("net/30-c.json", r#"{"type":"ignored"}"#),
            ],
        );
        let l = load_network(&d.0, "net").expect("load");
        let types: Vec<&str> = l
            .plugins
            .iter()
            .map(|p| p.conf.plugin_type.as_str())
            .collect();
        assert_eq!(types, ["bridge", "portmap", "tuning"]);

        // Only plugin files, no inlined plugins.
        d.write("10-net.conflist", r#"{"cniVersion":"1.1.0","name":"net"}"#);
        let l = load_network(&d.0, "net").expect("load");
        assert_eq!(l.plugins.len(), 2);

        // loadOnlyInlinedPlugins ignores the directory (string form accepted).
        d.write(
            "10-net.conflist",
            r#"{"cniVersion":"1.1.0","name":"net","loadOnlyInlinedPlugins":"True","plugins":[{"type":"bridge"}]}"#,
        );
        let l = load_network(&d.0, "net").expect("load");
        assert_eq!(l.plugins.len(), 1);

        // A broken plugin file is reported by its own path.
        d.write("10-net.conflist", r#"{"cniVersion":"1.1.0","name":"net"}"#);
        let bad = d.write("net/40-bad.conf", "{");
        let msg = load_network(&d.0, "net").expect_err("bad").to_string();
        assert!(msg.contains(&bad.display().to_string()), "{msg}");
    }

    #[test]
    fn version_negotiation_like_libcni() {
        let l = |s: &str| NetworkConfigList::from_bytes(s.as_bytes()).expect(s);
        let p = r#""plugins":[{"type":"x"}]"#;
        assert_eq!(l(&format!(r#"{{"name":"n",{p}}}"#)).cni_version, "0.1.0");
        assert_eq!(
            l(&format!(r#"{{"name":"n","cniVersion":"0.4.0",{p}}}"#)).cni_version,
            "0.4.0"
        );
        assert_eq!(
            l(&format!(
                r#"{{"name":"n","cniVersion":"0.4.0","cniVersions":["0.3.1","1.0.0","9.9.9"],{p}}}"#
            ))
            .cni_version,
            "1.0.0"
        );
        // cniVersion counts too.
        assert_eq!(
            l(&format!(
                r#"{{"name":"n","cniVersion":"1.1.0","cniVersions":["0.3.1"],{p}}}"#
            ))
            .cni_version,
            "1.1.0"
        );
        let b = l(&format!(
            r#"{{"name":"n","disableCheck":true,"disableGC":"TRUE",{p}}}"#
        ));
        assert!(b.disable_check && b.disable_gc && !b.load_only_inlined_plugins);
    }
}
