//! The multus configuration: Multus's own keys, their defaults, and the
//! ones refused.

use cni_spec::error::CniResult;
use cni_spec::{Error, ErrorCode};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::Duration;

// Multus's defaults.
/// `confDir` when unset: where networks are looked up by name.
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/multus/net.d";
/// `cniDir` when unset: where each ADD records its delegates.
pub const DEFAULT_CNI_DIR: &str = "/var/lib/cni/multus";
/// Where delegates are looked up last when `binDir` is unset.
pub const DEFAULT_BIN_DIR: &str = "/opt/cni/bin";
/// `multusNamespace` when unset or empty.
pub const DEFAULT_MULTUS_NAMESPACE: &str = "kube-system";
/// How long ADD waits for `readinessindicatorfile` unless
/// `readinessTimeoutSeconds` says otherwise (Multus polls for 45 s too).
pub const DEFAULT_READINESS_TIMEOUT: Duration = Duration::from_secs(45);

fn flex<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    cni_spec::conf::bool_or_string(d)
}

/// Everything multus reads from its stdin. Unknown keys are ignored, as
/// Multus ignores them.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Conf {
    /// `cniVersion`: the spec version the caller speaks, also given to
    /// delegate networks that have none.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    /// `kubeconfig`: the API server to read pods and
    /// NetworkAttachmentDefinitions from; unset, only the configured networks
    /// are attached.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// A network name, a file or directory path, or an inline config.
    #[serde(rename = "clusterNetwork", default)]
    pub cluster_network: Option<Value>,
    /// `defaultNetworks`: networks attached to every pod after the cluster
    /// network (not to pods of `systemNamespaces`).
    #[serde(rename = "defaultNetworks", default)]
    pub default_networks: Vec<String>,
    /// `delegates`: inline configurations, the first one the cluster network
    /// when `clusterNetwork` is unset.
    #[serde(default)]
    pub delegates: Vec<Map<String, Value>>,
    /// `confDir`: where networks named by `clusterNetwork`, `defaultNetworks`
    /// or an empty NetworkAttachmentDefinition are found.
    #[serde(rename = "confDir", default)]
    pub conf_dir: Option<PathBuf>,
    /// `cniDir`: where each ADD records its delegates, and the delegates'
    /// result cache.
    #[serde(rename = "cniDir", default)]
    pub cni_dir: Option<PathBuf>,
    /// `binDir`: where delegate plugins are looked up first (a `PATH`-style
    /// list).
    #[serde(rename = "binDir", default)]
    pub bin_dir: Option<String>,
    /// `systemNamespaces`: pods of these namespaces get no `defaultNetworks`
    /// (default `kube-system`).
    #[serde(rename = "systemNamespaces", default)]
    pub system_namespaces: Option<Vec<String>>,
    /// `multusNamespace`: where the NetworkAttachmentDefinitions of
    /// `clusterNetwork` and `defaultNetworks` live.
    #[serde(rename = "multusNamespace", default)]
    pub multus_namespace: Option<String>,
    /// `namespaceIsolation`: a pod may only use NetworkAttachmentDefinitions
    /// of its own namespace and of `globalNamespaces`.
    #[serde(rename = "namespaceIsolation", default, deserialize_with = "flex")]
    pub namespace_isolation: bool,
    /// Comma-separated namespaces whose networks any pod may use under
    /// `namespaceIsolation`.
    #[serde(rename = "globalNamespaces", default)]
    pub global_namespaces: Option<String>,
    /// `readinessindicatorfile`: ADD waits until this file exists, STATUS
    /// fails while it does not.
    #[serde(rename = "readinessindicatorfile", default)]
    pub readiness_indicator_file: Option<PathBuf>,
    /// rcni: how long ADD waits for the readiness indicator.
    #[serde(rename = "readinessTimeoutSeconds", default)]
    pub readiness_timeout_seconds: Option<f64>,
    /// `logFile`: diagnostics are appended here.
    #[serde(rename = "logFile", default)]
    pub log_file: Option<PathBuf>,
    /// `logLevel`: `panic`, `error` (default), `verbose` or `debug`.
    #[serde(rename = "logLevel", default)]
    pub log_level: Option<String>,
    /// `logToStderr`: diagnostics also go to stderr.
    #[serde(rename = "logToStderr", default, deserialize_with = "flex")]
    pub log_to_stderr: bool,
    /// `logOptions` (log rotation): refused by [`Conf::validate`].
    #[serde(rename = "logOptions", default)]
    pub log_options: Option<Value>,
    /// `runtimeConfig`: capability arguments passed to the cluster network.
    #[serde(rename = "runtimeConfig", default)]
    pub runtime_config: Option<Map<String, Value>>,
    /// `auxiliaryCNIChainName`: refused by [`Conf::validate`].
    #[serde(rename = "auxiliaryCNIChainName", default)]
    pub auxiliary_chain: Option<String>,
    /// rcni: deadline of one API request, seconds (default 5; DEL uses at
    /// most 2 so a dead API server cannot hold a DEL up).
    #[serde(rename = "apiTimeoutSeconds", default)]
    pub api_timeout_seconds: Option<f64>,
}

fn seconds(field: &str, v: Option<f64>, default: Duration) -> CniResult<Duration> {
    match v {
        None => Ok(default),
        Some(s) if s.is_finite() && (0.0..=3600.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(Error::invalid_config(format!(
            "multus: {field} must be between 0 and 3600 seconds, not {s}"
        ))),
    }
}

impl Conf {
    /// Checks what serde cannot: the shape of `clusterNetwork`, log
    /// levels, refused keys, and that there is a cluster network at all.
    pub fn validate(&self) -> CniResult<()> {
        match &self.cluster_network {
            None | Some(Value::String(_)) | Some(Value::Object(_)) => {}
            Some(other) => {
                return Err(Error::invalid_config(format!(
                    "multus: field clusterNetwork: expected a network name, a path or a configuration object, got {other}"
                )))
            }
        }
        if matches!(&self.cluster_network, Some(Value::String(s)) if s.trim().is_empty()) {
            return Err(Error::invalid_config(
                "multus: field clusterNetwork: empty network name",
            ));
        }
        if self.cluster_network.is_none() && self.delegates.is_empty() {
            return Err(Error::invalid_config(
                "multus: needs clusterNetwork or at least one entry in delegates",
            ));
        }
        if self.cluster_network.is_some() && !self.delegates.is_empty() {
            return Err(Error::invalid_config(
                "multus: set either clusterNetwork or delegates, not both (with clusterNetwork, Multus ignores delegates)",
            ));
        }
        if let Some(level) = &self.log_level {
            if log_level(level).is_none() {
                return Err(Error::invalid_config(format!(
                    "multus: field logLevel: {level:?} is not one of debug, verbose, error, panic"
                )));
            }
        }
        if self.log_options.is_some() {
            return Err(Error::new(
                ErrorCode::UnsupportedField,
                "multus: logOptions (log rotation) is not supported by rcni: remove it; logFile is appended to and never rotated",
            ));
        }
        if self.auxiliary_chain.is_some() {
            return Err(Error::new(
                ErrorCode::UnsupportedField,
                "multus: auxiliaryCNIChainName is not supported by rcni",
            ));
        }
        self.readiness_timeout()?;
        self.api_timeout()?;
        Ok(())
    }

    /// `confDir`, or [`DEFAULT_CONF_DIR`].
    pub fn conf_dir(&self) -> PathBuf {
        self.conf_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONF_DIR))
    }

    /// `cniDir`, or [`DEFAULT_CNI_DIR`].
    pub fn cni_dir(&self) -> PathBuf {
        self.cni_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CNI_DIR))
    }

    /// Where delegates are looked up: `binDir` first (Multus's order),
    /// then `CNI_PATH`; without `binDir`, `CNI_PATH` then /opt/cni/bin.
    pub fn plugin_path(&self, cni_path: &[PathBuf]) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        let mut push = |p: PathBuf| {
            if !p.as_os_str().is_empty() && !out.contains(&p) {
                out.push(p);
            }
        };
        match &self.bin_dir {
            Some(b) => {
                for p in std::env::split_paths(b) {
                    push(p);
                }
                for p in cni_path {
                    push(p.clone());
                }
            }
            None => {
                for p in cni_path {
                    push(p.clone());
                }
                push(PathBuf::from(DEFAULT_BIN_DIR));
            }
        }
        out
    }

    /// `systemNamespaces`, or just `kube-system`.
    pub fn system_namespaces(&self) -> Vec<String> {
        self.system_namespaces
            .clone()
            .unwrap_or_else(|| vec!["kube-system".to_string()])
    }

    /// `multusNamespace` unless unset or empty, else
    /// [`DEFAULT_MULTUS_NAMESPACE`].
    pub fn multus_namespace(&self) -> String {
        self.multus_namespace
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_MULTUS_NAMESPACE.to_string())
    }

    /// Namespaces any pod may take networks from under isolation.
    pub fn global_namespaces(&self) -> Vec<String> {
        match &self.global_namespaces {
            Some(s) => s
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
            None => vec!["default".to_string(), self.multus_namespace()],
        }
    }

    /// `readinessTimeoutSeconds` (0 to 3600), or
    /// [`DEFAULT_READINESS_TIMEOUT`].
    pub fn readiness_timeout(&self) -> CniResult<Duration> {
        seconds(
            "readinessTimeoutSeconds",
            self.readiness_timeout_seconds,
            DEFAULT_READINESS_TIMEOUT,
        )
    }

    /// `apiTimeoutSeconds` (0 to 3600), or [`kube_lite::DEFAULT_TIMEOUT`].
    pub fn api_timeout(&self) -> CniResult<Duration> {
        seconds(
            "apiTimeoutSeconds",
            self.api_timeout_seconds,
            kube_lite::DEFAULT_TIMEOUT,
        )
    }
}

/// Multus's log levels, most severe first.
pub fn log_level(s: &str) -> Option<u8> {
    match s.to_ascii_lowercase().as_str() {
        "panic" => Some(0),
        "error" => Some(1),
        "verbose" => Some(2),
        "debug" => Some(3),
        _ => None,
    }
}
