//! Running a network's plugins: ADD, CHECK, DEL, GC and STATUS.

use crate::cache::{Attachment, Cache, CacheEntry, CACHE_KIND, DEFAULT_CACHE_DIR};
use crate::conf::{NetworkConfigList, PluginConfig};
use crate::error::{Error, Result};
use cni_invoke::{find_in_path, run_plugin, Invocation};
use cni_skel::Command;
use cni_spec::{validate, version, ErrorCode, GcAttachment, VersionInfo};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::Duration;

/// The per-attachment arguments of a call (libcni's `RuntimeConf`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConf {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// Path of the container's network namespace; may be empty on DEL.
    pub netns: String,
    /// `CNI_IFNAME`: the interface name inside the container.
    pub ifname: String,
    /// `CNI_ARGS` as key/value pairs (sent as `K=V;K=V`).
    pub args: Vec<(String, String)>,
    /// Capability arguments; each plugin gets, in `runtimeConfig`, only
    /// those it declares in its `capabilities`.
    pub capability_args: Map<String, Value>,
}

impl RuntimeConf {
    /// An attachment of interface `ifname` in `netns` for `container_id`.
    pub fn new(
        container_id: impl Into<String>,
        netns: impl Into<String>,
        ifname: impl Into<String>,
    ) -> RuntimeConf {
        RuntimeConf {
            container_id: container_id.into(),
            netns: netns.into(),
            ifname: ifname.into(),
            ..Default::default()
        }
    }

    /// Adds a `CNI_ARGS` pair.
    pub fn arg(mut self, key: impl Into<String>, value: impl Into<String>) -> RuntimeConf {
        self.args.push((key.into(), value.into()));
        self
    }

    /// Sets a capability argument (e.g. `portMappings`).
    pub fn capability(mut self, name: impl Into<String>, value: Value) -> RuntimeConf {
        self.capability_args.insert(name.into(), value);
        self
    }

    /// `CNI_ARGS` as plugins receive it.
    pub fn args_string(&self) -> String {
        self.args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// A runtime: where plugins are, where the result cache lives, how long a
/// plugin may run (libcni's `CNIConfig`).
#[derive(Debug, Clone)]
pub struct CniConfig {
    /// Directories searched for plugin binaries (`CNI_PATH`).
    pub path: Vec<PathBuf>,
    /// The result cache.
    pub cache: Cache,
    /// Kill a plugin that runs longer than this (its whole process group)
    /// and report it (libcni has no limit; `None` here means the same).
    /// Plugins that cni-invoke runs in-process (rcni's own, when the caller
    /// is the rcni binary itself) are not subject to it.
    pub timeout: Option<Duration>,
}

/// The ends of a chain call for error messages.
fn verb_name(c: Command) -> &'static str {
    match c {
        Command::Add => "add",
        Command::Del => "delete",
        Command::Check => "check",
        Command::Gc => "gc",
        Command::Status => "status",
        Command::Version => "version",
    }
}

impl CniConfig {
    /// A runtime finding plugins in `path`, caching in `/var/lib/cni`, no timeout.
    pub fn new<P: Into<PathBuf>>(path: impl IntoIterator<Item = P>) -> CniConfig {
        CniConfig {
            path: path.into_iter().map(Into::into).collect(),
            cache: Cache::new(DEFAULT_CACHE_DIR),
            timeout: None,
        }
    }

    /// Uses `dir` instead of `/var/lib/cni` for the result cache.
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> CniConfig {
        self.cache = Cache::new(dir);
        self
    }

    /// Kills any plugin call that runs longer than `limit`.
    pub fn with_timeout(mut self, limit: Duration) -> CniConfig {
        self.timeout = Some(limit);
        self
    }

    // ---- validation ----------------------------------------------------

    /// Checks everything that can be checked before a plugin runs and
    /// returns the path of each plugin.
    fn prepare(&self, list: &NetworkConfigList, rt: Option<&RuntimeConf>) -> Result<Vec<PathBuf>> {
        self.validate_list(list, rt)?;
        list.plugins.iter().map(|p| self.find_plugin(p)).collect()
    }

    /// The binary of plugin `p`, searched in this runtime's path.
    fn find_plugin(&self, p: &PluginConfig) -> Result<PathBuf> {
        find_in_path(&p.conf.plugin_type, &self.path).map_err(|e| {
            Error::Invalid(cni_spec::Error {
                msg: format!("plugin {}: {}", p.describe(), e.msg),
                ..e
            })
        })
    }

    /// The list's own rules (name, cniVersion, at least one plugin) and,
    /// with `rt`, the attachment's (container id, interface name).
    fn validate_list(&self, list: &NetworkConfigList, rt: Option<&RuntimeConf>) -> Result<()> {
        validate::network_name(&list.name)?;
        if !version::is_known(&list.cni_version) {
            return Err(Error::Invalid(cni_spec::Error::new(
                ErrorCode::IncompatibleVersion,
                format!(
                    "network {:?} has cniVersion {:?}, which this runtime does not implement (known: {})",
                    list.name,
                    list.cni_version,
                    cni_spec::ALL_VERSIONS.join(", ")
                ),
            )));
        }
        if let Some(rt) = rt {
            validate::container_id(&rt.container_id)?;
            validate::interface_name(&rt.ifname)?;
        }
        if list.plugins.is_empty() {
            return Err(Error::Invalid(cni_spec::Error::invalid_config(format!(
                "network {:?} has no plugins",
                list.name
            ))));
        }
        Ok(())
    }

    /// The stdin of one plugin call: its config with `name`, `cniVersion`,
    /// `prevResult` and the `runtimeConfig` of its declared capabilities;
    /// `capabilities` itself is removed, as the spec says.
    fn plugin_stdin(
        list: &NetworkConfigList,
        plugin: &PluginConfig,
        prev: Option<&Value>,
        rt: Option<&RuntimeConf>,
        extra: &[(&str, Value)],
    ) -> Vec<u8> {
        let mut m = plugin.raw.clone();
        m.insert("name".into(), Value::String(list.name.clone()));
        m.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
        if let Some(prev) = prev {
            m.insert("prevResult".into(), prev.clone());
        }
        if let Some(rt) = rt {
            let mut rc = Map::new();
            for (cap, on) in &plugin.conf.capabilities {
                if *on {
                    if let Some(v) = rt.capability_args.get(cap) {
                        rc.insert(cap.clone(), v.clone());
                    }
                }
            }
            if !rc.is_empty() {
                m.insert("runtimeConfig".into(), Value::Object(rc));
            }
        }
        m.remove("capabilities");
        for (k, v) in extra {
            m.insert((*k).to_string(), v.clone());
        }
        Value::Object(m).to_string().into_bytes()
    }

    fn invocation(&self, command: Command, rt: Option<&RuntimeConf>) -> Invocation {
        Invocation {
            command,
            container_id: rt.map(|r| r.container_id.clone()).unwrap_or_default(),
            netns: rt.map(|r| r.netns.clone()).unwrap_or_default(),
            ifname: rt.map(|r| r.ifname.clone()).unwrap_or_default(),
            args: rt.map(RuntimeConf::args_string).unwrap_or_default(),
            path: self.path.clone(),
            timeout: self.timeout,
        }
    }

    fn call(
        &self,
        command: Command,
        bin: &std::path::Path,
        plugin: &PluginConfig,
        rt: Option<&RuntimeConf>,
        stdin: &[u8],
    ) -> Result<Vec<u8>> {
        run_plugin(bin, &self.invocation(command, rt), stdin).map_err(|source| Error::Plugin {
            plugin: plugin.describe(),
            verb: verb_name(command),
            source,
        })
    }

    /// A result in the wire form of the list's version.
    fn as_list_version(
        list: &NetworkConfigList,
        r: &cni_spec::Result,
    ) -> cni_spec::error::CniResult<Value> {
        r.to_value(&list.cni_version)
    }

    // ---- ADD -------------------------------------------------------------

    /// Runs ADD on every plugin of `list` in order, each getting the
    /// previous one's result as `prevResult`, then caches the final result.
    /// Nothing runs when the list or `rt` is invalid. On failure nothing is
    /// undone: call [`CniConfig::del`] as runtimes do.
    pub fn add(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> Result<cni_spec::Result> {
        let bins = self.prepare(list, Some(rt))?;
        let mut prev: Option<Value> = None;
        let mut result: Option<cni_spec::Result> = None;
        for (plugin, bin) in list.plugins.iter().zip(&bins) {
            let stdin = Self::plugin_stdin(list, plugin, prev.as_ref(), Some(rt), &[]);
            let out = self.call(Command::Add, bin, plugin, Some(rt), &stdin)?;
            let bad = |e: cni_spec::Error| Error::Plugin {
                plugin: plugin.describe(),
                verb: "add",
                source: cni_spec::Error::decoding(format!("unusable result: {}", e.msg)),
            };
            let r = cni_spec::Result::from_slice(&out, &list.cni_version).map_err(bad)?;
            let v = Self::as_list_version(list, &r).map_err(bad)?;
            result = Some(cni_spec::Result::from_value(&v, &list.cni_version).map_err(bad)?);
            prev = Some(v);
        }
        let result = result.unwrap_or_else(|| cni_spec::Result::new(list.cni_version.clone()));
        let entry = CacheEntry {
            kind: CACHE_KIND.into(),
            container_id: rt.container_id.clone(),
            config: list.bytes.clone(),
            ifname: rt.ifname.clone(),
            network_name: list.name.clone(),
            netns: rt.netns.clone(),
            cni_args: rt.args.clone(),
            capability_args: rt.capability_args.clone(),
            result: prev,
        };
        self.cache.write(&entry).map_err(|e| match e {
            Error::Cache { path, msg } => Error::Cache {
                path,
                msg: format!("failed to set network {:?} cached result: {msg}", list.name),
            },
            other => other,
        })?;
        Ok(result)
    }

    // ---- cached results --------------------------------------------------

    /// The result cached by the last successful ADD of this attachment,
    /// converted to the list's version. `Ok(None)` when nothing is cached.
    pub fn cached_result(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> Result<Option<cni_spec::Result>> {
        Ok(self
            .cached_result_value(list, rt)?
            .map(|v| cni_spec::Result::from_value(&v, &list.cni_version))
            .transpose()?)
    }

    fn cached_result_value(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> Result<Option<Value>> {
        let Some(entry) = self.cache.read(&list.name, &rt.container_id, &rt.ifname)? else {
            return Ok(None);
        };
        let Some(raw) = entry.result else {
            return Ok(None);
        };
        let path = self.cache.path(&list.name, &rt.container_id, &rt.ifname)?;
        let unusable = |e: cni_spec::Error| Error::Cache {
            path: path.clone(),
            msg: format!(
                "cached result is unusable at version {}: {}",
                list.cni_version, e.msg
            ),
        };
        let r = cni_spec::Result::from_value(&raw, &list.cni_version).map_err(unusable)?;
        Ok(Some(Self::as_list_version(list, &r).map_err(unusable)?))
    }

    /// The whole cache entry of an attachment (config bytes, args,
    /// capability args, netns, result), if there is a readable one.
    pub fn cached_entry(&self, network: &str, rt: &RuntimeConf) -> Result<Option<CacheEntry>> {
        self.cache.read(network, &rt.container_id, &rt.ifname)
    }

    /// Every attachment in the cache, optionally of one container only.
    pub fn cached_attachments(&self, container_id: Option<&str>) -> Vec<Attachment> {
        self.cache.attachments(container_id)
    }

    // ---- CHECK -----------------------------------------------------------

    /// Runs CHECK on every plugin with the cached ADD result as `prevResult`.
    /// Needs cniVersion 0.4.0 or later (error code 1 otherwise); does
    /// nothing when the list sets `disableCheck`.
    pub fn check(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> Result<()> {
        if !version::at_least(&list.cni_version, "0.4.0") {
            return Err(Error::Invalid(cni_spec::Error::new(
                ErrorCode::IncompatibleVersion,
                format!(
                    "configuration version {:?} does not support the CHECK command (0.4.0 or later needed)",
                    list.cni_version
                ),
            )));
        }
        if list.disable_check {
            return Ok(());
        }
        let bins = self.prepare(list, Some(rt))?;
        let prev = self.cached_result_value(list, rt)?;
        if prev.is_none() {
            return Err(Error::Invalid(cni_spec::Error::new(
                ErrorCode::UnknownContainer,
                format!(
                    "no cached result for container {:?} interface {:?} on network {:?}: was it added?",
                    rt.container_id, rt.ifname, list.name
                ),
            )));
        }
        for (plugin, bin) in list.plugins.iter().zip(&bins) {
            let stdin = Self::plugin_stdin(list, plugin, prev.as_ref(), Some(rt), &[]);
            self.call(Command::Check, bin, plugin, Some(rt), &stdin)?;
        }
        Ok(())
    }

    // ---- DEL -------------------------------------------------------------

    /// Runs DEL on every plugin in reverse order with the cached ADD result
    /// as `prevResult` (from 0.4.0 on), then removes the cache entry.
    ///
    /// An unreadable cache (empty after a crash, corrupt) never blocks DEL:
    /// it is removed and DEL runs without `prevResult`. DEL stops at the
    /// first failing plugin and keeps the cache entry for a retry.
    pub fn del(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> Result<()> {
        let bins = self.prepare(list, Some(rt))?;
        let prev = if version::at_least(&list.cni_version, "0.4.0") {
            match self.cached_result_value(list, rt) {
                Ok(v) => v,
                Err(_) => {
                    let _ = self.cache.remove(&list.name, &rt.container_id, &rt.ifname);
                    None
                }
            }
        } else {
            None
        };
        for (plugin, bin) in list.plugins.iter().zip(&bins).rev() {
            let stdin = Self::plugin_stdin(list, plugin, prev.as_ref(), Some(rt), &[]);
            self.call(Command::Del, bin, plugin, Some(rt), &stdin)?;
        }
        self.cache.remove(&list.name, &rt.container_id, &rt.ifname)
    }

    // ---- GC --------------------------------------------------------------

    /// Garbage-collects the network: every cached attachment of `list` that
    /// is not in `valid` gets a DEL (with the args it was added with), then,
    /// from cniVersion 1.1.0 on, every plugin gets GC with
    /// `cni.dev/valid-attachments` (and the older `cni.dev/attachments`).
    /// Keeps going after errors and reports them all. Does nothing when the
    /// list sets `disableGC`.
    pub fn gc(&self, list: &NetworkConfigList, valid: &[GcAttachment]) -> Result<()> {
        if list.disable_gc {
            return Ok(());
        }
        let mut errs = Vec::new();
        for a in self.cache.attachments(None) {
            if a.network != list.name
                || valid
                    .iter()
                    .any(|v| v.container_id == a.container_id && v.ifname == a.ifname)
            {
                continue;
            }
            let rt = RuntimeConf {
                container_id: a.container_id.clone(),
                netns: a.netns.clone(),
                ifname: a.ifname.clone(),
                args: a.cni_args.clone(),
                capability_args: a.capability_args.clone(),
            };
            if let Err(e) = self.del(list, &rt) {
                errs.push(Error::StaleAttachment {
                    container_id: a.container_id,
                    ifname: a.ifname,
                    source: Box::new(e),
                });
            }
        }
        // Every stale DEL is attempted before a broken list can stop the GC
        // step, and each plugin's GC runs even when another's binary is
        // missing: the errors are collected, as libcni does.
        if let Err(e) = self.validate_list(list, None) {
            errs.push(e);
            return Error::join(errs);
        }
        if version::at_least(&list.cni_version, "1.1.0") {
            let keep = serde_json::to_value(valid).unwrap_or(Value::Array(Vec::new()));
            let extra = [
                ("cni.dev/valid-attachments", keep.clone()),
                ("cni.dev/attachments", keep),
            ];
            for plugin in &list.plugins {
                let stdin = Self::plugin_stdin(list, plugin, None, None, &extra);
                let done = self
                    .find_plugin(plugin)
                    .and_then(|bin| self.call(Command::Gc, &bin, plugin, None, &stdin));
                if let Err(e) = done {
                    errs.push(e);
                }
            }
        }
        Error::join(errs)
    }

    // ---- STATUS ----------------------------------------------------------

    /// Asks every plugin whether it is ready for ADD (cniVersion 1.1.0 and
    /// later; older lists are always ready). Stops at the first plugin that
    /// is not, so its error code (50, 51...) is the answer.
    pub fn status(&self, list: &NetworkConfigList) -> Result<()> {
        if !version::at_least(&list.cni_version, "1.1.0") {
            return Ok(());
        }
        let bins = self.prepare(list, None)?;
        for (plugin, bin) in list.plugins.iter().zip(&bins) {
            let stdin = Self::plugin_stdin(list, plugin, None, None, &[]);
            self.call(Command::Status, bin, plugin, None, &stdin)?;
        }
        Ok(())
    }

    // ---- VERSION ---------------------------------------------------------

    /// The versions a plugin says it speaks.
    pub fn version_info(&self, plugin_type: &str) -> Result<VersionInfo> {
        let bin = find_in_path(plugin_type, &self.path)?;
        let inv = Invocation {
            command: Command::Version,
            container_id: "dummy".into(),
            netns: "dummy".into(),
            ifname: "dummy".into(),
            args: String::new(),
            path: self.path.clone(),
            timeout: self.timeout,
        };
        let stdin = format!(r#"{{"cniVersion":"{}"}}"#, cni_spec::LATEST);
        let described = format!("type={plugin_type:?}");
        let out = run_plugin(&bin, &inv, stdin.as_bytes()).map_err(|source| Error::Plugin {
            plugin: described.clone(),
            verb: "version",
            source,
        })?;
        serde_json::from_slice(&out).map_err(|e| Error::Plugin {
            plugin: described,
            verb: "version",
            source: cni_spec::Error::decoding(format!("unreadable VERSION answer: {e}")),
        })
    }

    /// Checks that every plugin of the list exists and speaks the list's
    /// version (one VERSION call each); returns the capabilities the list
    /// declares. All problems are reported together.
    pub fn validate(&self, list: &NetworkConfigList) -> Result<Vec<String>> {
        validate::network_name(&list.name)?;
        let mut errs = Vec::new();
        for p in &list.plugins {
            match self.version_info(&p.conf.plugin_type) {
                Ok(vi) if vi.supports(&list.cni_version) => {}
                Ok(vi) => errs.push(Error::Invalid(cni_spec::Error::new(
                    ErrorCode::IncompatibleVersion,
                    format!(
                        "plugin {} does not support config version {:?} (it supports {})",
                        p.describe(),
                        list.cni_version,
                        vi.supported_versions.join(", ")
                    ),
                ))),
                Err(e) => errs.push(e),
            }
        }
        Error::join(errs)?;
        Ok(list.capabilities())
    }
}
