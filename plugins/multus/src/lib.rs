//! `multus`: a Multus-compatible meta-plugin. It attaches the cluster
//! network as `CNI_IFNAME` and further CNI networks as `net1`, `net2`, …
//! (or the interface a selection names), each delegate network run as a
//! runtime runs it (`runtime::CniConfig`: conf or conflist, its own
//! `CNI_IFNAME`, its own prevResult chain, its own result cache).
//!
//! Without `kubeconfig` every configured network is attached (the plain
//! node case: Podman, containerd, cnitool). With it, the pod named by
//! `K8S_POD_NAMESPACE`/`K8S_POD_NAME` in `CNI_ARGS` adds the networks of its
//! `k8s.v1.cni.cncf.io/networks` annotation, each from its
//! NetworkAttachmentDefinition, and gets `k8s.v1.cni.cncf.io/network-status`.
//!
//! Every ADD records its delegates (with the configuration used) under
//! `cniDir` before the first one runs, so DEL, CHECK, GC and STATUS work
//! from that record alone, with the API server down or the pod gone.

mod cache;
pub mod conf;
pub mod k8s;

use cni_skel::{CmdArgs, Plugin};
use cni_spec::error::CniResult;
use cni_spec::{CniArgs, Error, ErrorCode};
use conf::Conf;
use runtime::{CniConfig, NetworkConfigList, PluginConfig, RuntimeConf};
use serde_json::{json, Map, Value};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How multus runs its delegate networks: the seam under its verbs.
/// `runtime::CniConfig` execs the plugins as a runtime would; the unit
/// tests' fake records the calls and answers or refuses as planned.
pub trait Delegates {
    /// ADD of one delegate network.
    fn add(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> runtime::Result<cni_spec::Result>;
    /// DEL of one delegate network.
    fn del(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> runtime::Result<()>;
    /// CHECK of one delegate network.
    fn check(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> runtime::Result<()>;
    /// GC of one delegate network.
    fn gc(&self, list: &NetworkConfigList, valid: &[cni_spec::GcAttachment])
        -> runtime::Result<()>;
    /// STATUS of one delegate network.
    fn status(&self, list: &NetworkConfigList) -> runtime::Result<()>;
}

impl Delegates for CniConfig {
    fn add(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> runtime::Result<cni_spec::Result> {
        CniConfig::add(self, list, rt)
    }
    fn del(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> runtime::Result<()> {
        CniConfig::del(self, list, rt)
    }
    fn check(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> runtime::Result<()> {
        CniConfig::check(self, list, rt)
    }
    fn gc(
        &self,
        list: &NetworkConfigList,
        valid: &[cni_spec::GcAttachment],
    ) -> runtime::Result<()> {
        CniConfig::gc(self, list, valid)
    }
    fn status(&self, list: &NetworkConfigList) -> runtime::Result<()> {
        CniConfig::status(self, list)
    }
}

/// The plugin: implements [`cni_skel::Plugin`] for ADD, DEL, CHECK, GC and
/// STATUS.
pub struct Multus;

/// DEL never waits longer than this for the API server.
const DEL_API_TIMEOUT: Duration = Duration::from_secs(2);

/// Diagnostics to `logFile` and/or stderr, by Multus's levels.
struct Log {
    file: Option<PathBuf>,
    stderr: bool,
    level: u8,
}

impl Log {
    fn new(c: &Conf) -> Log {
        Log {
            file: c.log_file.clone(),
            stderr: c.log_to_stderr,
            level: c
                .log_level
                .as_deref()
                .and_then(conf::log_level)
                .unwrap_or(1),
        }
    }

    fn write(&self, level: u8, what: &str, msg: &str) {
        if level > self.level {
            return;
        }
        let line = format!("multus {what}: {msg}");
        if let Some(f) = &self.file {
            cache::append_line(f, &line);
        }
        if self.stderr {
            eprintln!("{line}");
        }
    }

    fn error(&self, msg: &str) {
        self.write(1, "error", msg);
    }

    fn verbose(&self, msg: &str) {
        self.write(2, "verbose", msg);
    }
}

/// The pod identity from `CNI_ARGS`, when both parts are there.
fn pod_of(args: &CniArgs) -> Option<(String, String)> {
    let ns = args.get("K8S_POD_NAMESPACE").filter(|s| !s.is_empty())?;
    let name = args.get("K8S_POD_NAME").filter(|s| !s.is_empty())?;
    Some((ns.to_string(), name.to_string()))
}

fn bad_network(what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid_config(format!("multus: network {what}: {e}"))
}

/// A network configuration (conf or conflist) from JSON, with the
/// multus cniVersion where it has none and `cni-args` merged into each
/// plugin's `args.cni`.
fn network_from_value(
    what: &str,
    v: Value,
    version: &str,
    cni_args: Option<&Map<String, Value>>,
) -> CniResult<NetworkConfigList> {
    let Value::Object(mut m) = v else {
        return Err(bad_network(what, "expected a JSON object"));
    };
    if !m.contains_key("cniVersion") {
        m.insert("cniVersion".into(), Value::String(version.to_string()));
    }
    let merge = |p: &mut Map<String, Value>| {
        if let Some(extra) = cni_args {
            let args = p.entry("args").or_insert_with(|| json!({}));
            if let Value::Object(a) = args {
                let cni = a.entry("cni").or_insert_with(|| json!({}));
                if let Value::Object(c) = cni {
                    for (k, v) in extra {
                        c.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    };
    if let Some(plugins) = m.get_mut("plugins") {
        if let Value::Array(ps) = plugins {
            for p in ps.iter_mut() {
                if let Value::Object(pm) = p {
                    merge(pm);
                }
            }
        }
        let bytes = Value::Object(m).to_string();
        let list =
            NetworkConfigList::from_bytes(bytes.as_bytes()).map_err(|e| bad_network(what, e))?;
        if list.plugins.is_empty() {
            return Err(bad_network(what, "no plugins in the list"));
        }
        return Ok(list);
    }
    merge(&mut m);
    let plugin = PluginConfig::from_value(m).map_err(|e| bad_network(what, e))?;
    Ok(NetworkConfigList::from_plugin(plugin))
}

fn network_from_bytes(
    what: &str,
    bytes: &[u8],
    version: &str,
    cni_args: Option<&Map<String, Value>>,
) -> CniResult<NetworkConfigList> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| bad_network(what, e))?;
    network_from_value(what, v, version, cni_args)
}

/// The `spec.config` of NetworkAttachmentDefinition `ns/name`; without a
/// `name` of its own the network takes the object's, as Multus does.
fn nad_network(
    ns: &str,
    name: &str,
    config: &str,
    version: &str,
    cni_args: Option<&Map<String, Value>>,
) -> CniResult<NetworkConfigList> {
    let what = format!("{ns}/{name}");
    let mut v: Value = serde_json::from_str(config).map_err(|e| bad_network(&what, e))?;
    if let Value::Object(m) = &mut v {
        m.entry("name")
            .or_insert_with(|| Value::String(name.to_string()));
    }
    network_from_value(&what, v, version, cni_args)
}

/// One network to attach, before it runs.
struct Planned {
    entry: cache::DelegateEntry,
    list: NetworkConfigList,
    /// `default-route`: gateways to route everything through this interface.
    gateways: Vec<IpAddr>,
}

/// Where network-status goes: the API and the pod (namespace, name).
type StatusTarget = (k8s::Api, String, String);

/// What ADD works with.
struct Ctx<'a> {
    args: &'a CmdArgs,
    c: Conf,
    log: Log,
    cni_args: CniArgs,
    cni: Box<dyn Delegates>,
}

impl<'a> Ctx<'a> {
    fn new(args: &'a CmdArgs) -> CniResult<Ctx<'a>> {
        Ctx::with(args, |c| {
            Box::new(CniConfig::new(c.plugin_path(&args.path)).with_cache_dir(c.cni_dir()))
        })
    }

    /// The context with the delegate runner `cni` makes from the config.
    fn with(
        args: &'a CmdArgs,
        cni: impl FnOnce(&Conf) -> Box<dyn Delegates>,
    ) -> CniResult<Ctx<'a>> {
        let mut c: Conf = args.parse_conf()?;
        if c.cni_version.is_empty() {
            c.cni_version = args.conf.cni_version.clone();
        }
        c.validate()?;
        let log = Log::new(&c);
        let cni_args = CniArgs::parse(&args.args)?;
        let cni = cni(&c);
        Ok(Ctx {
            args,
            c,
            log,
            cni_args,
            cni,
        })
    }

    fn version(&self) -> &str {
        &self.c.cni_version
    }

    fn api(&self, timeout: Duration) -> CniResult<Option<k8s::Api>> {
        match &self.c.kubeconfig {
            Some(path) if !path.as_os_str().is_empty() => {
                let t = self.c.api_timeout()?.min(timeout);
                Ok(Some(k8s::Api::from_kubeconfig(path, t)?))
            }
            _ => Ok(None),
        }
    }

    /// The network in `confDir` whose `name` is `name`.
    fn in_conf_dir(
        &self,
        name: &str,
        cni_args: Option<&Map<String, Value>>,
    ) -> CniResult<NetworkConfigList> {
        let dir = self.c.conf_dir();
        for file in cache::conf_files(&dir) {
            let Ok(bytes) = cache::read(&file) else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            if v["name"] == name {
                return network_from_value(
                    &file.display().to_string(),
                    v,
                    self.version(),
                    cni_args,
                );
            }
        }
        Err(Error::invalid_config(format!(
            "multus: no network named {name:?} in confDir {}",
            dir.display()
        )))
    }

    /// `clusterNetwork` / `defaultNetworks` entries: a path (file or
    /// directory: its first configuration), a NetworkAttachmentDefinition
    /// in `multusNamespace` (with Kubernetes), or a network of `confDir`.
    fn named_network(
        &self,
        name: &str,
        api: Option<&k8s::Api>,
    ) -> CniResult<(String, NetworkConfigList)> {
        let path = Path::new(name);
        if path.is_absolute() {
            let file = if cache::is_dir(path) {
                cache::conf_files(path).into_iter().next().ok_or_else(|| {
                    Error::invalid_config(format!("multus: no network configuration in {name}"))
                })?
            } else {
                path.to_path_buf()
            };
            let bytes = cache::read(&file).map_err(Error::invalid_config)?;
            let list = network_from_bytes(name, &bytes, self.version(), None)?;
            return Ok((list.name.clone(), list));
        }
        if let Some(api) = api {
            let ns = self.c.multus_namespace();
            if let Some(config) = api.nad_config(&ns, name)? {
                let list = if config.trim().is_empty() {
                    self.in_conf_dir(name, None)?
                } else {
                    nad_network(&ns, name, &config, self.version(), None)?
                };
                return Ok((format!("{ns}/{name}"), list));
            }
        }
        let list = self.in_conf_dir(name, None)?;
        Ok((list.name.clone(), list))
    }

    /// The networks this configuration attaches without the pod's
    /// annotation: the cluster network, then (outside system namespaces)
    /// `defaultNetworks`, then the other `delegates`.
    fn configured(
        &self,
        api: Option<&k8s::Api>,
        pod_ns: Option<&str>,
    ) -> CniResult<Vec<(String, NetworkConfigList)>> {
        let mut out = Vec::new();
        match &self.c.cluster_network {
            Some(Value::String(name)) => out.push(self.named_network(name, api)?),
            Some(v @ Value::Object(_)) => {
                let list = network_from_value("clusterNetwork", v.clone(), self.version(), None)?;
                out.push((list.name.clone(), list));
            }
            _ => {
                let first = self.c.delegates.first().cloned().unwrap_or_default();
                let list =
                    network_from_value("delegates[0]", Value::Object(first), self.version(), None)?;
                out.push((list.name.clone(), list));
            }
        }
        let system = pod_ns.is_some_and(|ns| self.c.system_namespaces().iter().any(|s| s == ns));
        if !system {
            for name in &self.c.default_networks {
                out.push(self.named_network(name, api)?);
            }
        }
        for (i, d) in self.c.delegates.iter().enumerate().skip(1) {
            let list = network_from_value(
                &format!("delegates[{i}]"),
                Value::Object(d.clone()),
                self.version(),
                None,
            )?;
            out.push((list.name.clone(), list));
        }
        Ok(out)
    }

    /// The whole plan of an ADD.
    fn plan(&self) -> CniResult<(Vec<Planned>, Option<StatusTarget>)> {
        let api = self.api(Duration::MAX)?;
        let pod = pod_of(&self.cni_args);
        let (api, pod) = match (api, pod) {
            (Some(api), Some(pod)) => (Some(api), Some(pod)),
            (Some(_), None) => {
                self.log.verbose(
                    "no K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS: configured networks only",
                );
                (None, None)
            }
            _ => (None, None),
        };
        let base_args: Vec<(String, String)> = self.cni_args.pairs().to_vec();
        let mut plan = Vec::new();
        for (i, (name, list)) in self
            .configured(api.as_ref(), pod.as_ref().map(|p| p.0.as_str()))?
            .into_iter()
            .enumerate()
        {
            let master = i == 0;
            let ifname = if master {
                self.args.ifname.clone()
            } else {
                format!("net{i}")
            };
            let capability_args = if master {
                self.c.runtime_config.clone().unwrap_or_default()
            } else {
                Map::new()
            };
            plan.push(Planned {
                entry: cache::DelegateEntry {
                    name,
                    ifname,
                    config: String::from_utf8_lossy(&list.bytes).into_owned(),
                    cni_args: base_args.clone(),
                    capability_args,
                    master,
                },
                list,
                gateways: Vec::new(),
            });
        }
        let mut status_target = None;
        if let (Some(api), Some((pod_ns, pod_name))) = (api, pod) {
            let annotations = api.pod_annotations(&pod_ns, &pod_name)?.ok_or_else(|| {
                Error::new(
                    ErrorCode::TryAgainLater,
                    format!("multus: pod {pod_ns}/{pod_name} not found in the API server"),
                )
            })?;
            let text = annotations
                .get(k8s::NETWORKS_ANNOTATION)
                .and_then(Value::as_str)
                .unwrap_or("");
            // Multus's pod-level override of the cluster network: the
            // definition lives in `multusNamespace` unless the selection
            // names another (no namespace isolation applies, as there).
            if let Some(v) = annotations.get(k8s::DEFAULT_NETWORK_ANNOTATION) {
                let sel = k8s::parse_default_network(v.as_str().unwrap_or(""))?;
                let ns = sel
                    .namespace
                    .clone()
                    .unwrap_or_else(|| self.c.multus_namespace());
                let ifname = sel
                    .interface
                    .clone()
                    .unwrap_or_else(|| self.args.ifname.clone());
                let caps = self.c.runtime_config.clone().unwrap_or_default();
                let mut cluster = self.attachment(&api, &ns, &sel, ifname, caps, &base_args)?;
                cluster.entry.master = true;
                if let Some(first) = plan.first_mut() {
                    self.log.verbose(&format!(
                        "{}: the cluster network {} replaced by {}",
                        k8s::DEFAULT_NETWORK_ANNOTATION,
                        first.entry.name,
                        cluster.entry.name
                    ));
                    *first = cluster;
                }
            }
            for sel in k8s::parse_networks(text)? {
                let idx = plan.len();
                plan.push(self.selected(&api, &pod_ns, &sel, idx, &base_args)?);
            }
            status_target = Some((api, pod_ns, pod_name));
        }
        let mut seen = std::collections::HashSet::new();
        for p in &plan {
            cni_spec::validate::interface_name(&p.entry.ifname).map_err(|e| {
                Error::invalid_config(format!("multus: network {}: {}", p.entry.name, e.msg))
            })?;
            if !seen.insert(p.entry.ifname.clone()) {
                return Err(Error::invalid_config(format!(
                    "multus: two networks would use interface {:?}",
                    p.entry.ifname
                )));
            }
        }
        Ok((plan, status_target))
    }

    /// A network selected by the pod's annotation.
    fn selected(
        &self,
        api: &k8s::Api,
        pod_ns: &str,
        sel: &k8s::Selection,
        idx: usize,
        base_args: &[(String, String)],
    ) -> CniResult<Planned> {
        let ns = sel.namespace.clone().unwrap_or_else(|| pod_ns.to_string());
        if self.c.namespace_isolation && ns != pod_ns && !self.c.global_namespaces().contains(&ns) {
            return Err(Error::invalid_config(format!(
                "multus: namespaceIsolation: pod in namespace {pod_ns:?} may not use network {ns}/{} (only its own namespace and {:?})",
                sel.name,
                self.c.global_namespaces()
            )));
        }
        let ifname = sel.interface.clone().unwrap_or_else(|| format!("net{idx}"));
        self.attachment(api, &ns, sel, ifname, Map::new(), base_args)
    }

    /// The network of selection `sel` from NetworkAttachmentDefinition
    /// `ns/<name>`, as interface `ifname`: the selection's `ips`, `mac`,
    /// `portMappings` and `bandwidth` go over `capability_args`.
    fn attachment(
        &self,
        api: &k8s::Api,
        ns: &str,
        sel: &k8s::Selection,
        ifname: String,
        mut capability_args: Map<String, Value>,
        base_args: &[(String, String)],
    ) -> CniResult<Planned> {
        let config = api.nad_config(ns, &sel.name)?.ok_or_else(|| {
            Error::invalid_config(format!(
                "multus: NetworkAttachmentDefinition {ns}/{} not found",
                sel.name
            ))
        })?;
        let list = if config.trim().is_empty() {
            self.in_conf_dir(&sel.name, sel.cni_args.as_ref())?
        } else {
            nad_network(
                ns,
                &sel.name,
                &config,
                self.version(),
                sel.cni_args.as_ref(),
            )?
        };
        let mut cni_args = base_args.to_vec();
        let mut extra_args = false;
        if let Some(ips) = &sel.ips {
            capability_args.insert("ips".into(), json!(ips));
            cni_args.push(("IP".into(), ips.join(",")));
            extra_args = true;
        }
        if let Some(mac) = &sel.mac {
            capability_args.insert("mac".into(), json!(mac));
            cni_args.push(("MAC".into(), mac.clone()));
            extra_args = true;
        }
        if extra_args && !cni_args.iter().any(|(k, _)| k == "IgnoreUnknown") {
            cni_args.insert(0, ("IgnoreUnknown".into(), "true".into()));
        }
        if let Some(pm) = &sel.port_mappings {
            capability_args.insert("portMappings".into(), pm.clone());
        }
        if let Some(bw) = &sel.bandwidth {
            capability_args.insert("bandwidth".into(), bw.clone());
        }
        Ok(Planned {
            entry: cache::DelegateEntry {
                name: format!("{ns}/{}", sel.name),
                ifname,
                config: String::from_utf8_lossy(&list.bytes).into_owned(),
                cni_args,
                capability_args,
                master: false,
            },
            list,
            gateways: sel.default_route.clone().unwrap_or_default(),
        })
    }

    fn rt(&self, container_id: &str, d: &cache::DelegateEntry, netns: &str) -> RuntimeConf {
        RuntimeConf {
            container_id: container_id.to_string(),
            netns: netns.to_string(),
            ifname: d.ifname.clone(),
            args: d.cni_args.clone(),
            capability_args: d.capability_args.clone(),
        }
    }

    /// DEL of every delegate of an entry, in reverse; keeps going after
    /// failures and answers the first.
    fn del_entry(&self, entry: &cache::Entry, netns: &str) -> CniResult<()> {
        let mut first: Option<Error> = None;
        for d in entry.delegates.iter().rev() {
            let res = NetworkConfigList::from_bytes(d.config.as_bytes())
                .map_err(|e| bad_network(&d.name, e))
                .and_then(|list| {
                    self.cni
                        .del(&list, &self.rt(&entry.container_id, d, netns))
                        .map_err(runtime_error)
                });
            if let Err(e) = res {
                self.log
                    .error(&format!("DEL of {} ({}): {}", d.name, d.ifname, e.msg));
                first.get_or_insert(e);
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The CNI error behind a runtime error: a delegate's own code and
/// message are kept.
fn runtime_error(e: runtime::Error) -> Error {
    match e {
        runtime::Error::Plugin {
            plugin,
            verb,
            source,
        } => Error {
            msg: format!("delegate {plugin} ({verb}): {}", source.msg),
            ..source
        },
        runtime::Error::Invalid(e) => e,
        other => {
            let code = other.code().unwrap_or(ErrorCode::Internal as u32);
            Error::with_code(code, other.to_string())
        }
    }
}

/// The pod side of one attachment for network-status.
fn status_of(d: &cache::DelegateEntry, r: &cni_spec::Result) -> Value {
    let ips: Vec<String> = r.ips.iter().map(|i| i.address.addr().to_string()).collect();
    let mac = r
        .interfaces
        .iter()
        .find(|i| i.name == d.ifname && !i.sandbox.is_empty())
        .map(|i| i.mac.clone())
        .unwrap_or_default();
    let mut s = json!({"name": d.name, "interface": d.ifname, "ips": ips, "mac": mac, "default": d.master, "dns": {}});
    if r.dns.is_empty() {
        return s;
    }
    s["dns"] = json!({"nameservers": r.dns.nameservers, "domain": r.dns.domain, "search": r.dns.search, "options": r.dns.options});
    s
}

/// `default-route`: everything leaves through `ifname` via `gw`; other
/// default routes of that family in the pod are removed.
fn move_default_route(netns: &Path, ifname: &str, gw: IpAddr) -> CniResult<()> {
    let ns = netns::NetNs::open(netns)
        .map_err(|e| Error::io(format!("open netns {}: {e}", netns.display())))?;
    let sock = netlink::Socket::route_in(&ns).map_err(|e| Error::io(e.to_string()))?;
    let link = sock
        .link_by_name(ifname)
        .map_err(|e| Error::io(e.to_string()))?
        .ok_or_else(|| Error::io(format!("default-route: no interface {ifname} in the pod")))?;
    let family = if gw.is_ipv4() {
        netlink::Family::V4
    } else {
        netlink::Family::V6
    };
    for r in sock
        .routes(family, Some(254))
        .map_err(|e| Error::io(e.to_string()))?
        .into_iter()
        .filter(netlink::Route::is_default)
    {
        sock.del_route(&r).map_err(|e| Error::io(e.to_string()))?;
    }
    sock.add_route(&netlink::Route::default_for(family).via(gw).dev(link.index))
        .map_err(|e| Error::io(format!("default-route via {gw} on {ifname}: {e}")))
}

fn valid_attachments(stdin: &[u8]) -> Vec<(String, String)> {
    let v: Value = serde_json::from_slice(stdin).unwrap_or(Value::Null);
    let list = v
        .get("cni.dev/valid-attachments")
        .or_else(|| v.get("cni.dev/attachments"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    list.iter()
        .filter_map(|a| {
            Some((
                a.get("containerID")?.as_str()?.to_string(),
                a.get("ifname")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

impl Plugin for Multus {
    fn name(&self) -> &'static str {
        "multus"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<cni_spec::Result> {
        add_in(&Ctx::new(args)?)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        del_in(&Ctx::new(args)?)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        check_in(&Ctx::new(args)?)
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        gc_in(&Ctx::new(args)?)
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        status_in(&Ctx::new(args)?)
    }
}

/// ADD with the delegates `ctx` runs: records them, adds each in order,
/// and on a failure DELs what was added (the failing one too).
fn add_in(ctx: &Ctx) -> CniResult<cni_spec::Result> {
    let args = ctx.args;
    let netns = args.require_netns()?.display().to_string();
    if let Some(file) = &ctx.c.readiness_indicator_file {
        let limit = ctx.c.readiness_timeout()?;
        if !cache::wait_for(file, limit) {
            return Err(Error::new(
                ErrorCode::TryAgainLater,
                format!(
                    "multus: readiness indicator file {} did not appear within {limit:?}: the cluster network is not ready",
                    file.display()
                ),
            ));
        }
    }
    let cni_dir = ctx.c.cni_dir();
    // A second ADD of an attachment would end in undoing the first
    // one's delegates: refused before anything runs. What a failed or
    // interrupted ADD left is removed first.
    if let Ok(Some(old)) = cache::load(&cni_dir, &args.container_id, &args.ifname) {
        if old.complete {
            return Err(Error::invalid_env(format!(
                "multus: container {:?} already has interface {:?} attached (DEL it first)",
                args.container_id, args.ifname
            )));
        }
        if let Err(e) = ctx.del_entry(&old, &netns) {
            ctx.log.verbose(&format!(
                "leftovers of an earlier ADD could not all be removed: {}",
                e.msg
            ));
        }
    }
    let (plan, status_target) = ctx.plan()?;
    let mut entry = cache::Entry {
        kind: cache::KIND.into(),
        container_id: args.container_id.clone(),
        ifname: args.ifname.clone(),
        netns: netns.clone(),
        delegates: plan.iter().map(|p| p.entry.clone()).collect(),
        complete: false,
    };
    // Recorded before anything runs: a DEL after a crash half-way
    // still finds every delegate.
    cache::save(&cni_dir, &entry).map_err(Error::io)?;

    let mut results: Vec<cni_spec::Result> = Vec::new();
    for p in &plan {
        ctx.log
            .verbose(&format!("ADD {} as {}", p.entry.name, p.entry.ifname));
        match ctx
            .cni
            .add(&p.list, &ctx.rt(&args.container_id, &p.entry, &netns))
        {
            Ok(r) => results.push(r),
            Err(e) => {
                let err = runtime_error(e);
                ctx.log.error(&format!(
                    "ADD of {} failed: {}; undoing",
                    p.entry.name, err.msg
                ));
                // The failing delegate too: DEL is safe on what is not there.
                let done = cache::Entry {
                    delegates: entry.delegates[..=results.len()].to_vec(),
                    ..entry.clone()
                };
                if ctx.del_entry(&done, &netns).is_ok() {
                    let _ = cache::remove(&cni_dir, &args.container_id, &args.ifname);
                }
                return Err(err);
            }
        }
    }
    // default-route: one gateway per address family.
    for p in &plan {
        for gw in &p.gateways {
            if let Err(e) = move_default_route(Path::new(&netns), &p.entry.ifname, *gw) {
                if ctx.del_entry(&entry, &netns).is_ok() {
                    let _ = cache::remove(&cni_dir, &args.container_id, &args.ifname);
                }
                return Err(e);
            }
        }
    }
    entry.complete = true;
    if let Err(m) = cache::save(&cni_dir, &entry) {
        if ctx.del_entry(&entry, &netns).is_ok() {
            let _ = cache::remove(&cni_dir, &args.container_id, &args.ifname);
        }
        return Err(Error::io(m));
    }
    if let Some((api, ns, name)) = status_target {
        let status: Vec<Value> = plan
            .iter()
            .zip(&results)
            .map(|(p, r)| status_of(&p.entry, r))
            .collect();
        if let Err(e) = api.set_status(&ns, &name, Some(&Value::Array(status))) {
            ctx.log
                .error(&format!("network-status of {ns}/{name}: {}", e.msg));
        }
    }
    let mut out = results
        .first()
        .ok_or_else(|| Error::internal("multus: no network was attached"))?
        .convert(ctx.version())?;
    for r in results.iter().skip(1) {
        for i in r.interfaces.iter().filter(|i| !i.sandbox.is_empty()) {
            out.interfaces.push(i.clone());
        }
    }
    Ok(out)
}

/// DEL: every recorded delegate in reverse (or, without a record, a
/// best-effort DEL of the configured networks), then the record.
fn del_in(ctx: &Ctx) -> CniResult<()> {
    let args = ctx.args;
    let cni_dir = ctx.c.cni_dir();
    let entry = match cache::load(&cni_dir, &args.container_id, &args.ifname) {
        Ok(e) => e,
        Err(m) => {
            ctx.log.error(&format!("{m}; removed"));
            let _ = cache::remove(&cni_dir, &args.container_id, &args.ifname);
            None
        }
    };
    match entry {
        Some(entry) => {
            ctx.del_entry(&entry, &args.netns)?;
            cache::remove(&cni_dir, &args.container_id, &args.ifname).map_err(Error::io)?;
        }
        None => {
            // Nothing recorded (never added, or already deleted): the
            // configured networks get a best-effort DEL, as Multus does.
            if let Ok(nets) = ctx.configured(None, None) {
                for (i, (name, list)) in nets.into_iter().enumerate().rev() {
                    let d = cache::DelegateEntry {
                        name,
                        ifname: if i == 0 {
                            args.ifname.clone()
                        } else {
                            format!("net{i}")
                        },
                        config: String::new(),
                        cni_args: ctx.cni_args.pairs().to_vec(),
                        capability_args: Map::new(),
                        master: i == 0,
                    };
                    if let Err(e) = ctx
                        .cni
                        .del(&list, &ctx.rt(&args.container_id, &d, &args.netns))
                    {
                        ctx.log
                            .verbose(&format!("DEL without a record, {}: {e}", d.name));
                    }
                }
            }
        }
    }
    if let Some((ns, name)) = pod_of(&ctx.cni_args) {
        if let Ok(Some(api)) = ctx.api(DEL_API_TIMEOUT) {
            if let Err(e) = api.set_status(&ns, &name, None) {
                ctx.log.verbose(&format!(
                    "clearing network-status of {ns}/{name}: {}",
                    e.msg
                ));
            }
        }
    }
    Ok(())
}

/// CHECK: every recorded delegate, in order; no record is code 3.
fn check_in(ctx: &Ctx) -> CniResult<()> {
    let args = ctx.args;
    let entry = cache::load(&ctx.c.cni_dir(), &args.container_id, &args.ifname)
        .map_err(Error::io)?
        .ok_or_else(|| {
            Error::new(
                ErrorCode::UnknownContainer,
                format!(
                    "multus: no record of container {:?} interface {:?}",
                    args.container_id, args.ifname
                ),
            )
        })?;
    for d in &entry.delegates {
        let list = NetworkConfigList::from_bytes(d.config.as_bytes())
            .map_err(|e| bad_network(&d.name, e))?;
        ctx.cni
            .check(&list, &ctx.rt(&args.container_id, d, &args.netns))
            .map_err(runtime_error)?;
    }
    Ok(())
}

/// GC: stale records and their delegates, then GC of every network known.
fn gc_in(ctx: &Ctx) -> CniResult<()> {
    let args = ctx.args;
    let cni_dir = ctx.c.cni_dir();
    let valid = valid_attachments(&args.stdin);
    let mut first: Option<Error> = None;
    let mut kept = Vec::new();
    for entry in cache::all(&cni_dir) {
        let live = valid
            .iter()
            .any(|(c, i)| *c == entry.container_id && *i == entry.ifname);
        if live {
            kept.push(entry);
            continue;
        }
        match ctx.del_entry(&entry, &entry.netns) {
            Ok(()) => {
                let _ = cache::remove(&cni_dir, &entry.container_id, &entry.ifname);
            }
            Err(e) => {
                first.get_or_insert(e);
                kept.push(entry);
            }
        }
    }
    // Then every delegate network still known gets GC with the
    // delegate attachments that remain.
    let valid_delegates: Vec<cni_spec::GcAttachment> = kept
        .iter()
        .flat_map(|e| {
            e.delegates.iter().map(|d| cni_spec::GcAttachment {
                container_id: e.container_id.clone(),
                ifname: d.ifname.clone(),
            })
        })
        .collect();
    for list in networks_known(ctx, &kept) {
        if let Err(e) = ctx.cni.gc(&list, &valid_delegates) {
            first.get_or_insert(runtime_error(e));
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// STATUS: of every network known (configured or recorded).
fn status_in(ctx: &Ctx) -> CniResult<()> {
    if let Some(file) = &ctx.c.readiness_indicator_file {
        if !cache::exists(file) {
            return Err(Error::new(
                ErrorCode::NotAvailable,
                format!(
                    "multus: readiness indicator file {} does not exist",
                    file.display()
                ),
            ));
        }
    }
    let kept = cache::all(&ctx.c.cni_dir());
    for list in networks_known(ctx, &kept) {
        ctx.cni.status(&list).map_err(runtime_error)?;
    }
    Ok(())
}

/// The configured networks that resolve without the API server, and
/// every delegate network of the cache, each once.
fn networks_known(ctx: &Ctx, entries: &[cache::Entry]) -> Vec<NetworkConfigList> {
    let mut out: Vec<NetworkConfigList> = Vec::new();
    let mut push = |l: NetworkConfigList| {
        if !out.iter().any(|o| o.name == l.name && o.bytes == l.bytes) {
            out.push(l);
        }
    };
    if let Ok(nets) = ctx.configured(None, None) {
        for (_, l) in nets {
            push(l);
        }
    }
    for e in entries {
        for d in &e.delegates {
            if let Ok(l) = NetworkConfigList::from_bytes(d.config.as_bytes()) {
                push(l);
            }
        }
    }
    out
}

/// The verbs on a recording fake of the delegate runner, with the record
/// in a scratch directory: order, undo, idempotent DEL and codes without
/// root or delegate binaries. tests/multus.rs runs real delegates.
#[cfg(test)]
mod fake_tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;
    use testutil::TempDir as Scratch;

    /// Records `VERB network ifname`; refuses the (verb, network) planned
    /// with code 11.
    #[derive(Clone, Default)]
    struct FakeDelegates {
        log: Rc<RefCell<Vec<String>>>,
        refuse: Rc<RefCell<Vec<(&'static str, &'static str)>>>,
    }

    impl FakeDelegates {
        fn call(
            &self,
            verb: &'static str,
            list: &NetworkConfigList,
            ifname: &str,
        ) -> runtime::Result<()> {
            self.log
                .borrow_mut()
                .push(format!("{verb} {} {ifname}", list.name));
            let mut refuse = self.refuse.borrow_mut();
            match refuse
                .iter()
                .position(|(v, n)| *v == verb && *n == list.name)
            {
                Some(i) => {
                    refuse.remove(i);
                    Err(runtime::Error::Plugin {
                        plugin: format!("name={:?}", list.name),
                        verb,
                        source: Error::new(ErrorCode::TryAgainLater, "busy"),
                    })
                }
                None => Ok(()),
            }
        }
        fn lines(&self) -> Vec<String> {
            self.log.borrow().clone()
        }
    }

    impl Delegates for FakeDelegates {
        fn add(
            &self,
            list: &NetworkConfigList,
            rt: &RuntimeConf,
        ) -> runtime::Result<cni_spec::Result> {
            self.call("ADD", list, &rt.ifname)?;
            let mut r = cni_spec::Result::new("1.0.0");
            r.interfaces.push(cni_spec::Interface {
                name: rt.ifname.clone(),
                sandbox: rt.netns.clone(),
                ..Default::default()
            });
            Ok(r)
        }
        fn del(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> runtime::Result<()> {
            self.call("DEL", list, &rt.ifname)
        }
        fn check(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> runtime::Result<()> {
            self.call("CHECK", list, &rt.ifname)
        }
        fn gc(
            &self,
            list: &NetworkConfigList,
            _valid: &[cni_spec::GcAttachment],
        ) -> runtime::Result<()> {
            self.call("GC", list, "")
        }
        fn status(&self, list: &NetworkConfigList) -> runtime::Result<()> {
            self.call("STATUS", list, "")
        }
    }

    /// Multus over `cluster` (eth0) and `extra` (net1), recording in `dir`.
    fn args(dir: &Scratch) -> CmdArgs {
        let conf = json!({
            "cniVersion": "1.0.0", "name": "multus", "type": "multus",
            "cniDir": dir.path(),
            "delegates": [
                {"cniVersion": "1.0.0", "name": "cluster", "type": "ptp"},
                {"cniVersion": "1.0.0", "name": "extra", "type": "macvlan"}
            ]
        });
        let mut a = cni_skel::fuzzing::args(conf.to_string().as_bytes()).expect("args");
        a.netns = "/run/netns/pod".into();
        a
    }

    fn ctx<'a>(args: &'a CmdArgs, fake: &FakeDelegates) -> Ctx<'a> {
        let fake = fake.clone();
        Ctx::with(args, move |_| Box::new(fake)).expect("ctx")
    }

    fn scratch(tag: &str) -> Scratch {
        Scratch::new(&format!("multus-{tag}"))
    }

    fn record(dir: &Scratch) -> Option<cache::Entry> {
        cache::load(dir.path(), "fuzz", "eth0").expect("record readable")
    }

    #[test]
    fn add_records_the_delegates_then_adds_each_in_order() {
        let dir = scratch("add");
        let (a, fake) = (args(&dir), FakeDelegates::default());
        let r = add_in(&ctx(&a, &fake)).expect("add");
        assert_eq!(fake.lines(), ["ADD cluster eth0", "ADD extra net1"]);
        let names: Vec<&str> = r.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "net1"]);
        assert!(record(&dir).expect("recorded").complete);
    }

    #[test]
    fn a_delegate_refusing_add_fails_with_its_own_code_and_what_was_added_is_deleted() {
        let dir = scratch("undo");
        let (a, fake) = (args(&dir), FakeDelegates::default());
        fake.refuse.borrow_mut().push(("ADD", "extra"));
        let e = add_in(&ctx(&a, &fake)).expect_err("refused");
        assert_eq!(e.code, 11, "{e}");
        assert!(e.msg.contains("busy"), "{e}");
        assert_eq!(
            fake.lines(),
            [
                "ADD cluster eth0",
                "ADD extra net1",
                "DEL extra net1",
                "DEL cluster eth0"
            ]
        );
        assert!(record(&dir).is_none());
    }

    #[test]
    fn a_second_add_of_the_same_attachment_is_refused_with_code_4_before_any_delegate() {
        let dir = scratch("twice");
        let (a, fake) = (args(&dir), FakeDelegates::default());
        add_in(&ctx(&a, &fake)).expect("add");
        let e = add_in(&ctx(&a, &fake)).expect_err("again");
        assert_eq!(e.code, 4, "{e}");
        assert_eq!(fake.lines().len(), 2);
    }

    #[test]
    fn del_deletes_the_delegates_in_reverse_and_a_second_del_succeeds() {
        let dir = scratch("del");
        let (a, fake) = (args(&dir), FakeDelegates::default());
        add_in(&ctx(&a, &fake)).expect("add");
        del_in(&ctx(&a, &fake)).expect("del");
        assert_eq!(fake.lines()[2..], ["DEL extra net1", "DEL cluster eth0"]);
        assert!(record(&dir).is_none());
        // No record: a best-effort DEL of the configured networks.
        del_in(&ctx(&a, &fake)).expect("del again");
        assert_eq!(fake.lines()[4..], ["DEL extra net1", "DEL cluster eth0"]);
    }

    #[test]
    fn del_goes_on_after_a_refusal_reports_its_code_and_keeps_the_record() {
        let dir = scratch("delfail");
        let (a, fake) = (args(&dir), FakeDelegates::default());
        add_in(&ctx(&a, &fake)).expect("add");
        fake.refuse.borrow_mut().push(("DEL", "extra"));
        let e = del_in(&ctx(&a, &fake)).expect_err("refused");
        assert_eq!(e.code, 11, "{e}");
        assert_eq!(fake.lines()[2..], ["DEL extra net1", "DEL cluster eth0"]);
        assert!(record(&dir).is_some(), "kept for the next DEL");
        del_in(&ctx(&a, &fake)).expect("retried DEL");
        assert!(record(&dir).is_none());
    }

    #[test]
    fn check_without_a_record_fails_with_code_3_and_with_one_checks_each_delegate() {
        let dir = scratch("check");
        let (a, fake) = (args(&dir), FakeDelegates::default());
        let e = check_in(&ctx(&a, &fake)).expect_err("no record");
        assert_eq!(e.code, 3, "{e}");
        assert!(fake.lines().is_empty());
        add_in(&ctx(&a, &fake)).expect("add");
        check_in(&ctx(&a, &fake)).expect("check");
        assert_eq!(
            fake.lines()[2..],
            ["CHECK cluster eth0", "CHECK extra net1"]
        );
    }
}
