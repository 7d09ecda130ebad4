//! Node information from the Kubernetes API: the `Node` objects, listed
//! with `GET /api/v1/nodes` (paged with `limit` and `continue`).
//!
//! Each node becomes a [`NodeInfo`]:
//! - `name`: `metadata.name`;
//! - `addresses`: the `status.addresses` of type `InternalIP`; for an
//!   address family (IPv4, IPv6) without any `InternalIP`, the `ExternalIP`
//!   entries of that family are used instead;
//! - `pod_cidrs`: `spec.podCIDRs`, or else `spec.podCIDR`; empty while the
//!   controller manager has not assigned one yet.
//!
//! The agent's identity needs `get`, `list` and `watch` on `nodes` (core
//! API group), cluster wide:
//!
//! ```yaml
//! apiVersion: rbac.authorization.k8s.io/v1
//! kind: ClusterRole
//! metadata: {name: rcni-agent}
//! rules:
//! - apiGroups: [""]
//!   resources: [nodes]
//!   verbs: [get, list, watch]
//! ```
//!
//! bound to the agent's service account with a `ClusterRoleBinding`.
//!
//! The client is synchronous (ureq over rustls). Every request has a
//! deadline ([`DEFAULT_TIMEOUT`] unless changed). Proxy variables of the
//! environment are not used: the agent talks to the cluster's own
//! endpoints. HTTPS trusts the cluster's CA when one is given (in-cluster
//! `ca.crt`, kubeconfig `certificate-authority(-data)`), and only that CA;
//! without one it falls back to the Mozilla roots bundled in the binary.

use std::fmt::Write as _;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use ipnet::IpNet;
use serde::Deserialize;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, TlsProvider};

use crate::model::{NodeInfo, NodeSource, SourceError};

/// Deadline of one HTTP request (connection, TLS, request and response).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where Kubernetes mounts a pod's service account credentials.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Nodes asked for per page.
const DEFAULT_PAGE_SIZE: u32 = 500;

/// A list that needs more pages than this is taken for a server bug.
const MAX_PAGES: usize = 10_000;

/// Largest response body read (a page of 500 nodes is a few MB).
pub(crate) const MAX_BODY: u64 = 256 << 20;

/// How the agent authenticates to the API server, besides a TLS client
/// certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No `Authorization` header.
    None,
    /// A fixed bearer token.
    Token(String),
    /// A bearer token read from this file before every request: projected
    /// service account tokens are rotated by the kubelet.
    TokenFile(PathBuf),
}

/// TLS settings of an HTTPS client (also used by the etcd source).
#[derive(Clone, Default)]
pub(crate) struct TlsSettings {
    /// Trust only these roots; `None`: the bundled Mozilla roots.
    pub(crate) roots: Option<Vec<Certificate<'static>>>,
    /// A client certificate chain and its key.
    pub(crate) client: Option<ClientCert>,
    /// Accept any server certificate.
    pub(crate) insecure: bool,
}

/// An HTTP client with these TLS settings and this deadline per request.
/// HTTP error statuses are answers, not errors; no proxy; no redirects.
pub(crate) fn http_agent(tls: &TlsSettings, timeout: Duration) -> ureq::Agent {
    let mut tls_config = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .disable_verification(tls.insecure);
    if let Some(roots) = &tls.roots {
        tls_config = tls_config.root_certs(RootCerts::Specific(Arc::new(roots.clone())));
    }
    if let Some(client) = &tls.client {
        tls_config = tls_config.client_cert(Some(client.clone()));
    }
    ureq::Agent::config_builder()
        .tls_config(tls_config.build())
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .user_agent(concat!("rcni-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// An agent for long-lived streaming requests (watches): connecting must
/// succeed within `connect`, a stream lasts at most `longest`.
pub(crate) fn streaming_agent(
    tls: &TlsSettings,
    connect: Duration,
    longest: Duration,
) -> ureq::Agent {
    let mut tls_config = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .disable_verification(tls.insecure);
    if let Some(roots) = &tls.roots {
        tls_config = tls_config.root_certs(RootCerts::Specific(Arc::new(roots.clone())));
    }
    if let Some(client) = &tls.client {
        tls_config = tls_config.client_cert(Some(client.clone()));
    }
    ureq::Agent::config_builder()
        .tls_config(tls_config.build())
        .timeout_global(Some(longest))
        .timeout_connect(Some(connect))
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .user_agent(concat!("rcni-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// The certificates of a PEM document (`what` names it in errors).
pub(crate) fn pem_certificates(
    pem: &[u8],
    what: &str,
) -> Result<Vec<Certificate<'static>>, String> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| format!("{what}: bad PEM: {e}"))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(format!("{what}: no PEM certificate in it"));
    }
    Ok(certs)
}

/// The private key of a PEM document (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn pem_private_key(pem: &[u8], what: &str) -> Result<PrivateKey<'static>, String> {
    PrivateKey::from_pem(pem).map_err(|e| format!("{what}: {e}"))
}

/// Reads a file for a TLS setting, naming it in the error.
pub(crate) fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

/// Describes a failed request: no answer in time, nobody listening, TLS…
pub(crate) fn transport_error(what: &str, e: &ureq::Error, timeout: Duration) -> String {
    match e {
        ureq::Error::Timeout(_) => format!("{what}: no answer within {timeout:?}"),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("{what}: connection refused")
        }
        other => format!("{what}: {other}"),
    }
}

/// Checks that `url` is `http://…` or `https://…` and drops a final `/`.
pub(crate) fn base_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?}: not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?}: no host"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved kept).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The `message` of a Kubernetes `Status` body, or the start of the body.
fn server_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Status {
        #[serde(default)]
        message: String,
    }
    let text = match serde_json::from_slice::<Status>(body) {
        Ok(s) if !s.message.is_empty() => s.message,
        _ => String::from_utf8_lossy(body).trim().to_string(),
    };
    if text.is_empty() {
        String::new()
    } else {
        let short: String = text.chars().take(300).collect();
        format!(" ({short})")
    }
}

/// Nodes from the Kubernetes API.
pub struct KubernetesSource {
    base_url: String,
    auth: Auth,
    tls: TlsSettings,
    timeout: Duration,
    page_size: u32,
    agent: ureq::Agent,
    /// Send a bearer token over plain `http://` (never by default).
    insecure_http_token: bool,
    /// Entries the last listing skipped, and why.
    skipped: Vec<String>,
    /// The resourceVersion of the last complete list, for the watch.
    listed_version: Arc<Mutex<Option<String>>>,
}

impl KubernetesSource {
    /// A client of the API server at `base_url` (`http://host:port` for
    /// tests; an `https://` URL trusts the bundled Mozilla roots).
    pub fn new(base_url: &str, auth: Auth) -> Result<KubernetesSource, SourceError> {
        Self::build(base_url, auth, TlsSettings::default())
    }

    /// In-cluster configuration: the API server from
    /// `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`, the pod's
    /// service account token and CA from [`SERVICE_ACCOUNT_DIR`].
    pub fn from_env() -> Result<KubernetesSource, SourceError> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    SourceError::new(
                        "kubernetes",
                        format!(
                            "{name} is not set: not running in a pod (give a kubeconfig instead)"
                        ),
                    )
                })
        };
        let host = var("KUBERNETES_SERVICE_HOST")?;
        let port = var("KUBERNETES_SERVICE_PORT")?;
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        Self::from_service_account(
            &format!("https://{host}:{port}"),
            Path::new(SERVICE_ACCOUNT_DIR),
        )
    }

    /// The API server at `server` with the service account credentials in
    /// `dir` (`token`, re-read before every request, and `ca.crt`).
    pub fn from_service_account(server: &str, dir: &Path) -> Result<KubernetesSource, SourceError> {
        let err = |m: String| SourceError::new(format!("kubernetes {server}"), m);
        let ca_path = dir.join("ca.crt");
        let ca = read_file(&ca_path, "the service account CA").map_err(err)?;
        let roots = pem_certificates(&ca, &ca_path.display().to_string()).map_err(err)?;
        let token = dir.join("token");
        read_file(&token, "the service account token").map_err(err)?;
        let tls = TlsSettings {
            roots: Some(roots),
            ..TlsSettings::default()
        };
        Self::build(server, Auth::TokenFile(token), tls)
    }

    /// The cluster, user and credentials of the current context of a
    /// kubeconfig file. Supported: `server`, `certificate-authority`,
    /// `certificate-authority-data`, `insecure-skip-tls-verify`, `token`,
    /// `tokenFile`, `client-certificate(-data)` and `client-key(-data)`;
    /// relative paths are relative to the file's directory. Exec plugins
    /// and auth providers are not run.
    pub fn from_kubeconfig(path: &Path) -> Result<KubernetesSource, SourceError> {
        let err = |m: String| SourceError::new(format!("kubeconfig {}", path.display()), m);
        let text = fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        let config: Kubeconfig =
            serde_yaml_ng::from_str(&text).map_err(|e| err(format!("bad kubeconfig: {e}")))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let (server, auth, tls) = config.resolve(dir).map_err(err)?;
        Self::build(&server, auth, tls)
    }

    fn build(url: &str, auth: Auth, tls: TlsSettings) -> Result<KubernetesSource, SourceError> {
        let base_url = base_url(url).map_err(|m| SourceError::new("kubernetes", m))?;
        let timeout = DEFAULT_TIMEOUT;
        Ok(KubernetesSource {
            agent: http_agent(&tls, timeout),
            base_url,
            auth,
            tls,
            timeout,
            page_size: DEFAULT_PAGE_SIZE,
            insecure_http_token: false,
            skipped: Vec::new(),
            listed_version: Arc::default(),
        })
    }

    /// Changes the deadline of each request.
    pub fn with_timeout(mut self, timeout: Duration) -> KubernetesSource {
        self.timeout = timeout;
        self.agent = http_agent(&self.tls, timeout);
        self
    }

    /// Changes how many nodes are asked for per page (at least 1).
    pub fn with_page_size(mut self, page_size: u32) -> KubernetesSource {
        self.page_size = page_size.max(1);
        self
    }

    /// Allows sending the bearer token over plain `http://`, where anyone
    /// on the path can read it (`--insecure-allow-http-token`). Without
    /// it, a token with an `http://` server is refused before any request.
    pub fn allow_http_token(mut self, allow: bool) -> KubernetesSource {
        self.insecure_http_token = allow;
        self
    }

    /// The API server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn error(&self, message: impl Into<String>) -> SourceError {
        SourceError::new(self.describe(), message)
    }

    fn bearer_token(&self) -> Result<Option<String>, SourceError> {
        match &self.auth {
            Auth::None => Ok(None),
            Auth::Token(t) => Ok(Some(t.clone())),
            Auth::TokenFile(path) => {
                let t = fs::read_to_string(path).map_err(|e| {
                    self.error(format!("cannot read the token {}: {e}", path.display()))
                })?;
                let t = t.trim();
                if t.is_empty() {
                    return Err(self.error(format!("the token file {} is empty", path.display())));
                }
                Ok(Some(t.to_string()))
            }
        }
    }

    /// `GET path`: the status and the body.
    fn get(&self, path: &str) -> Result<(u16, Vec<u8>), SourceError> {
        let url = format!("{}{path}", self.base_url);
        let mut request = self.agent.get(&url).header("Accept", "application/json");
        let has_token = !matches!(self.auth, Auth::None);
        if has_token && self.base_url.starts_with("http://") && !self.insecure_http_token {
            return Err(self.error(format!(
                "GET {path}: refusing to send a bearer token over plain http:// \
                 (use https://, or --insecure-allow-http-token)"
            )));
        }
        if let Some(token) = self.bearer_token()? {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let what = format!("GET {path}");
        let mut response = request
            .call()
            .map_err(|e| self.error(transport_error(&what, &e, self.timeout)))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| self.error(transport_error(&what, &e, self.timeout)))?;
        Ok((status, body))
    }

    fn status_error(&self, path: &str, status: u16, body: &[u8]) -> SourceError {
        let message = server_message(body);
        let text = match status {
            401 => format!(
                "GET {path}: 401 Unauthorized{message}: the API server did not accept the \
                 credentials ({}); check the token or client certificate",
                self.credentials()
            ),
            403 => format!(
                "GET {path}: 403 Forbidden{message}: the agent's identity needs get, list and \
                 watch on nodes (a ClusterRole with apiGroups [\"\"], resources [nodes], verbs \
                 [get, list, watch], bound to its service account by a ClusterRoleBinding)"
            ),
            _ => format!("GET {path}: HTTP {status}{message}"),
        };
        self.error(text)
    }

    fn credentials(&self) -> String {
        let token = match &self.auth {
            Auth::None => None,
            Auth::Token(_) => Some("a bearer token".to_string()),
            Auth::TokenFile(p) => Some(format!("the bearer token of {}", p.display())),
        };
        let cert = self
            .tls
            .client
            .is_some()
            .then(|| "a client certificate".to_string());
        let parts: Vec<String> = token.into_iter().chain(cert).collect();
        if parts.is_empty() {
            "none were sent".to_string()
        } else {
            parts.join(" and ")
        }
    }
}

impl NodeSource for KubernetesSource {
    fn describe(&self) -> String {
        format!("kubernetes {}", self.base_url)
    }

    fn skipped(&self) -> Vec<String> {
        self.skipped.clone()
    }

    fn watch(&mut self) -> Option<std::sync::mpsc::Receiver<String>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let w = Watcher {
            base_url: self.base_url.clone(),
            auth: self.auth.clone(),
            insecure_http_token: self.insecure_http_token,
            agent: streaming_agent(&self.tls, self.timeout, WATCH_STREAM + self.timeout),
            listed_version: self.listed_version.clone(),
            tx,
        };
        std::thread::Builder::new()
            .name("kubernetes-watch".into())
            .spawn(move || w.run())
            .ok()?;
        Some(rx)
    }

    fn nodes(&mut self) -> Result<Vec<NodeInfo>, SourceError> {
        let mut nodes = Vec::new();
        self.skipped.clear();
        let mut continue_token: Option<String> = None;
        let mut restarted = false;
        for _ in 0..MAX_PAGES {
            let mut path = format!("/api/v1/nodes?limit={}", self.page_size);
            if let Some(token) = &continue_token {
                path.push_str("&continue=");
                path.push_str(&query_escape(token));
            }
            let (status, body) = self.get(&path)?;
            if status == 410 && continue_token.is_some() && !restarted {
                // The continue token expired (the list took longer than
                // the server keeps the snapshot): start again, once.
                restarted = true;
                nodes.clear();
                self.skipped.clear();
                continue_token = None;
                continue;
            }
            if status != 200 {
                return Err(self.status_error(&path, status, &body));
            }
            let list: NodeList = serde_json::from_slice(&body)
                .map_err(|e| self.error(format!("GET {path}: bad JSON in the node list: {e}")))?;
            for node in list.items {
                match node_info(node, &mut self.skipped) {
                    Ok(n) => nodes.push(n),
                    Err(m) => self.skipped.push(format!("{m}; skipped")),
                }
            }
            match list.metadata.continue_token {
                Some(token) if !token.is_empty() => continue_token = Some(token),
                _ => {
                    // The first page's version is the list's; later pages
                    // carry the same.
                    if let Ok(mut v) = self.listed_version.lock() {
                        *v = list.metadata.resource_version.filter(|v| !v.is_empty());
                    }
                    return Ok(nodes);
                }
            }
        }
        Err(self.error(format!("the node list did not end after {MAX_PAGES} pages")))
    }
}

/// How long the API server keeps one watch open (`timeoutSeconds`).
const WATCH_STREAM: Duration = Duration::from_secs(300);
const WATCH_MIN_BACKOFF: Duration = Duration::from_millis(500);
const WATCH_MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The node watch: `GET /api/v1/nodes?watch=1&resourceVersion=RV&
/// allowWatchBookmarks=true`, from the version of the last list, then of
/// the last event or bookmark. Every ADDED, MODIFIED or DELETED is sent as
/// a reason to list again; a 410 Gone (the version is too old) drops the
/// version and waits for the relist it asks for. Ends when the receiver or
/// the source is gone.
struct Watcher {
    base_url: String,
    auth: Auth,
    insecure_http_token: bool,
    agent: ureq::Agent,
    listed_version: Arc<Mutex<Option<String>>>,
    tx: std::sync::mpsc::Sender<String>,
}

impl Watcher {
    fn token(&self) -> Option<String> {
        match &self.auth {
            Auth::None => None,
            Auth::Token(t) => Some(t.clone()),
            Auth::TokenFile(p) => fs::read_to_string(p)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
        }
    }

    fn listed(&self) -> Option<String> {
        self.listed_version.lock().ok().and_then(|v| v.clone())
    }

    fn run(self) {
        use std::io::BufRead;
        let mut version: Option<String> = None;
        let mut backoff = WATCH_MIN_BACKOFF;
        loop {
            if Arc::strong_count(&self.listed_version) == 1 {
                // The source is gone.
                return;
            }
            let rv = match version.clone().or_else(|| self.listed()) {
                Some(rv) => rv,
                None => {
                    // No list yet (or a relist is due): wait for one.
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let path = format!(
                "/api/v1/nodes?watch=1&allowWatchBookmarks=true&timeoutSeconds={}&resourceVersion={}",
                WATCH_STREAM.as_secs(),
                query_escape(&rv)
            );
            let url = format!("{}{path}", self.base_url);
            let mut request = self.agent.get(&url).header("Accept", "application/json");
            let token = self.token();
            if token.is_some() && self.base_url.starts_with("http://") && !self.insecure_http_token
            {
                // The list reports this; the watch just does not run.
                return;
            }
            if let Some(t) = token {
                request = request.header("Authorization", format!("Bearer {t}"));
            }
            let mut gone = false;
            let mut streamed = false;
            match request.call() {
                Ok(r) if r.status().as_u16() == 200 => {
                    let reader = std::io::BufReader::new(r.into_body().into_reader());
                    for line in reader.lines() {
                        let Ok(line) = line else { break };
                        let Ok(ev) = serde_json::from_str::<serde_json::Value>(&line) else {
                            continue;
                        };
                        streamed = true;
                        let kind = ev["type"].as_str().unwrap_or("");
                        let object_rv = ev["object"]["metadata"]["resourceVersion"]
                            .as_str()
                            .filter(|v| !v.is_empty())
                            .map(String::from);
                        match kind {
                            "ADDED" | "MODIFIED" | "DELETED" => {
                                version = object_rv.or(version);
                                if self.tx.send(String::new()).is_err() {
                                    return;
                                }
                            }
                            "BOOKMARK" => version = object_rv.or(version),
                            "ERROR" => {
                                gone = ev["object"]["code"] == 410;
                                if !gone {
                                    let msg = ev["object"]["message"].as_str().unwrap_or("");
                                    let _ = self.tx.send(format!("watch: error event: {msg}"));
                                }
                                break;
                            }
                            _ => {}
                        }
                    }
                }
                Ok(r) if r.status().as_u16() == 410 => gone = true,
                Ok(r) => {
                    let _ = self.tx.send(format!("watch: HTTP {}", r.status().as_u16()));
                }
                Err(e) => {
                    let _ = self.tx.send(format!("watch: {e}"));
                }
            }
            if gone {
                // Too old a version: relist, then watch from the new one.
                version = None;
                if let Ok(mut v) = self.listed_version.lock() {
                    *v = None;
                }
                if self
                    .tx
                    .send("watch: 410 Gone; relisting".to_string())
                    .is_err()
                {
                    return;
                }
                backoff = WATCH_MIN_BACKOFF;
                continue;
            }
            if streamed {
                backoff = WATCH_MIN_BACKOFF;
            } else {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(WATCH_MAX_BACKOFF);
            }
        }
    }
}

#[derive(Deserialize)]
struct NodeList {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Node>,
}

#[derive(Deserialize, Default)]
struct ListMeta {
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
    #[serde(rename = "resourceVersion", default)]
    resource_version: Option<String>,
}

#[derive(Deserialize)]
struct Node {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: NodeSpec,
    #[serde(default)]
    status: NodeStatus,
}

#[derive(Deserialize, Default)]
struct ObjectMeta {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, Default)]
struct NodeSpec {
    #[serde(rename = "podCIDR", default)]
    pod_cidr: Option<String>,
    #[serde(rename = "podCIDRs", default)]
    pod_cidrs: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
struct NodeStatus {
    #[serde(default)]
    addresses: Option<Vec<NodeAddress>>,
}

#[derive(Deserialize)]
struct NodeAddress {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    address: String,
}

/// A Kubernetes Node as the agent sees it; a pod CIDR that does not
/// parse is left out and noted in `skipped`.
fn node_info(node: Node, skipped: &mut Vec<String>) -> Result<NodeInfo, String> {
    let name = node.metadata.name;
    if name.is_empty() {
        return Err("a node in the list has no metadata.name".to_string());
    }
    let cidrs = match node.spec.pod_cidrs {
        Some(list) if !list.is_empty() => list,
        _ => node.spec.pod_cidr.into_iter().collect(),
    };
    let mut pod_cidrs = Vec::new();
    for cidr in cidrs.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
        let net: IpNet = match cidr.parse() {
            Ok(n) => n,
            Err(e) => {
                skipped.push(format!("node {name}: pod CIDR {cidr:?}: {e}; skipped"));
                continue;
            }
        };
        if !pod_cidrs.contains(&net.trunc()) {
            pod_cidrs.push(net.trunc());
        }
    }
    let listed = node.status.addresses.unwrap_or_default();
    // An address field is free text: what does not parse is not used.
    let of_kind = |kind: &str| -> Vec<IpAddr> {
        listed
            .iter()
            .filter(|a| a.kind == kind)
            .filter_map(|a| a.address.trim().parse().ok())
            .collect()
    };
    let internal = of_kind("InternalIP");
    let mut addresses = Vec::new();
    for a in &internal {
        if !addresses.contains(a) {
            addresses.push(*a);
        }
    }
    for a in of_kind("ExternalIP") {
        let family_known = internal.iter().any(|i| i.is_ipv4() == a.is_ipv4());
        if !family_known && !addresses.contains(&a) {
            addresses.push(a);
        }
    }
    Ok(NodeInfo {
        name,
        addresses,
        pod_cidrs,
    })
}

/// The parts of a kubeconfig the agent reads.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct Kubeconfig {
    current_context: String,
    clusters: Vec<NamedCluster>,
    users: Vec<NamedUser>,
    contexts: Vec<NamedContext>,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct Cluster {
    server: String,
    certificate_authority: Option<String>,
    certificate_authority_data: Option<String>,
    insecure_skip_tls_verify: bool,
    tls_server_name: Option<String>,
    proxy_url: Option<String>,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: User,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    client_certificate: Option<String>,
    client_certificate_data: Option<String>,
    client_key: Option<String>,
    client_key_data: Option<String>,
    exec: Option<serde_yaml_ng::Value>,
    auth_provider: Option<serde_yaml_ng::Value>,
    username: Option<String>,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Context {
    cluster: String,
    user: String,
}

/// Inline `*-data` (base64 of PEM) or a file (relative to `dir`).
fn inline_or_file(
    data: &Option<String>,
    file: &Option<String>,
    dir: &Path,
    what: &str,
) -> Result<Option<Vec<u8>>, String> {
    if let Some(data) = data.as_deref().filter(|d| !d.trim().is_empty()) {
        let compact: String = data.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| format!("{what}-data: bad base64: {e}"))?;
        return Ok(Some(bytes));
    }
    if let Some(file) = file.as_deref().filter(|f| !f.is_empty()) {
        return read_file(&dir.join(file), what).map(Some);
    }
    Ok(None)
}

impl Kubeconfig {
    /// The server, the token and the TLS settings of the current context.
    fn resolve(&self, dir: &Path) -> Result<(String, Auth, TlsSettings), String> {
        let context = if self.current_context.is_empty() {
            match self.contexts.as_slice() {
                [only] => &only.context,
                _ => return Err("no current-context set".to_string()),
            }
        } else {
            &self
                .contexts
                .iter()
                .find(|c| c.name == self.current_context)
                .ok_or_else(|| format!("context {:?} not found", self.current_context))?
                .context
        };
        let cluster = &self
            .clusters
            .iter()
            .find(|c| c.name == context.cluster)
            .ok_or_else(|| format!("cluster {:?} not found", context.cluster))?
            .cluster;
        if cluster.server.is_empty() {
            return Err(format!("cluster {:?} has no server", context.cluster));
        }
        if cluster.tls_server_name.is_some() {
            return Err("tls-server-name is not supported".to_string());
        }
        if cluster.proxy_url.is_some() {
            return Err("proxy-url is not supported".to_string());
        }
        let default_user = User::default();
        let user = if context.user.is_empty() {
            &default_user
        } else {
            &self
                .users
                .iter()
                .find(|u| u.name == context.user)
                .ok_or_else(|| format!("user {:?} not found", context.user))?
                .user
        };

        let mut tls = TlsSettings {
            insecure: cluster.insecure_skip_tls_verify,
            ..TlsSettings::default()
        };
        let ca = inline_or_file(
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
            dir,
            "certificate-authority",
        )?;
        if let Some(ca) = ca {
            tls.roots = Some(pem_certificates(&ca, "certificate-authority")?);
        }
        let cert = inline_or_file(
            &user.client_certificate_data,
            &user.client_certificate,
            dir,
            "client-certificate",
        )?;
        let key = inline_or_file(&user.client_key_data, &user.client_key, dir, "client-key")?;
        match (cert, key) {
            (Some(cert), Some(key)) => {
                let chain = pem_certificates(&cert, "client-certificate")?;
                let key = pem_private_key(&key, "client-key")?;
                tls.client = Some(ClientCert::new_with_certs(&chain, key));
            }
            (None, None) => {}
            _ => {
                return Err(format!(
                    "user {:?}: a client certificate needs both client-certificate and client-key",
                    context.user
                ))
            }
        }

        let auth = if let Some(token) = user.token.as_deref().filter(|t| !t.is_empty()) {
            Auth::Token(token.trim().to_string())
        } else if let Some(file) = user.token_file.as_deref().filter(|f| !f.is_empty()) {
            Auth::TokenFile(dir.join(file))
        } else {
            Auth::None
        };
        if auth == Auth::None && tls.client.is_none() {
            let how = if user.exec.is_some() {
                Some("an exec credential plugin")
            } else if user.auth_provider.is_some() {
                Some("an auth-provider")
            } else if user.username.is_some() {
                Some("basic authentication")
            } else {
                None
            };
            if let Some(how) = how {
                return Err(format!(
                    "user {:?} authenticates with {how}, which rcni-agent does not support; \
                     give it a token or a client certificate",
                    context.user
                ));
            }
        }
        Ok((cluster.server.clone(), auth, tls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("eyJ2Ijoi+/=a-_.~"), "eyJ2Ijoi%2B%2F%3Da-_.~");
    }

    #[test]
    fn base_urls_are_checked() {
        assert_eq!(
            base_url("https://10.0.0.1:6443/").unwrap(),
            "https://10.0.0.1:6443"
        );
        assert!(base_url("10.0.0.1:6443").is_err());
        assert!(base_url("https://").is_err());
    }
}
