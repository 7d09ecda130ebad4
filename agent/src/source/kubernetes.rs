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

use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::model::{NodeInfo, NodeSource, SourceError};

pub use kube_lite::{Auth, DEFAULT_TIMEOUT, SERVICE_ACCOUNT_DIR};
// The etcd source shares the HTTPS plumbing.
pub(crate) use kube_lite::{
    base_url, pem_certificates, pem_private_key, read_file, transport_error, TlsSettings, MAX_BODY,
};
use kube_lite::{query_escape, server_message, Client, Endpoint};

/// Nodes asked for per page.
const DEFAULT_PAGE_SIZE: u32 = 500;

/// A list that needs more pages than this is taken for a server bug.
const MAX_PAGES: usize = 10_000;

const USER_AGENT: &str = concat!("rcni-agent/", env!("CARGO_PKG_VERSION"));

/// An HTTP client with these TLS settings and this deadline per request.
pub(crate) fn http_agent(tls: &TlsSettings, timeout: Duration) -> ureq::Agent {
    kube_lite::http_agent(tls, timeout, USER_AGENT)
}

/// An agent for long-lived streaming requests (watches).
pub(crate) fn streaming_agent(
    tls: &TlsSettings,
    connect: Duration,
    longest: Duration,
) -> ureq::Agent {
    kube_lite::streaming_agent(tls, connect, longest, USER_AGENT)
}

/// Nodes from the Kubernetes API.
pub struct KubernetesSource {
    client: Client,
    page_size: u32,
    /// Entries the last listing skipped, and why.
    skipped: Vec<String>,
    /// The resourceVersion of the last complete list, for the watch.
    listed_version: Arc<Mutex<Option<String>>>,
}

impl KubernetesSource {
    /// A client of the API server at `base_url` (`http://host:port` for
    /// tests; an `https://` URL trusts the bundled Mozilla roots).
    pub fn new(base_url: &str, auth: Auth) -> Result<KubernetesSource, SourceError> {
        Self::build(Endpoint::plain(base_url, auth))
    }

    /// In-cluster configuration: the API server from
    /// `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`, the pod's
    /// service account token and CA from [`SERVICE_ACCOUNT_DIR`].
    pub fn from_env() -> Result<KubernetesSource, SourceError> {
        let endpoint = Endpoint::in_cluster().map_err(|m| SourceError::new("kubernetes", m))?;
        Self::build(endpoint)
    }

    /// The API server at `server` with the service account credentials in
    /// `dir` (`token`, re-read before every request, and `ca.crt`).
    pub fn from_service_account(server: &str, dir: &Path) -> Result<KubernetesSource, SourceError> {
        let endpoint = Endpoint::from_service_account(server, dir)
            .map_err(|m| SourceError::new(format!("kubernetes {server}"), m))?;
        Self::build(endpoint)
    }

    /// The cluster, user and credentials of the current context of a
    /// kubeconfig file. Supported: `server`, `certificate-authority`,
    /// `certificate-authority-data`, `insecure-skip-tls-verify`, `token`,
    /// `tokenFile`, `client-certificate(-data)` and `client-key(-data)`;
    /// relative paths are relative to the file's directory. Exec plugins
    /// and auth providers are not run.
    pub fn from_kubeconfig(path: &Path) -> Result<KubernetesSource, SourceError> {
        let endpoint = Endpoint::from_kubeconfig(path)
            .map_err(|m| SourceError::new(format!("kubeconfig {}", path.display()), m))?;
        Self::build(endpoint)
    }

    fn build(endpoint: Endpoint) -> Result<KubernetesSource, SourceError> {
        let client =
            Client::new(endpoint, USER_AGENT).map_err(|m| SourceError::new("kubernetes", m))?;
        Ok(KubernetesSource {
            client,
            page_size: DEFAULT_PAGE_SIZE,
            skipped: Vec::new(),
            listed_version: Arc::default(),
        })
    }

    /// Changes the deadline of each request.
    pub fn with_timeout(mut self, timeout: Duration) -> KubernetesSource {
        self.client = self.client.with_timeout(timeout);
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
        self.client = self.client.allow_http_token(allow);
        self
    }

    /// The API server's base URL.
    pub fn base_url(&self) -> &str {
        self.client.base_url()
    }

    fn error(&self, message: impl Into<String>) -> SourceError {
        SourceError::new(self.describe(), message)
    }

    /// `GET path`: the status and the body.
    fn get(&self, path: &str) -> Result<(u16, Vec<u8>), SourceError> {
        let has_token = !matches!(self.client.auth(), Auth::None);
        if has_token && self.base_url().starts_with("http://") && !self.client.http_token_allowed()
        {
            return Err(self.error(format!(
                "GET {path}: refusing to send a bearer token over plain http:// \
                 (use https://, or --insecure-allow-http-token)"
            )));
        }
        self.client.get(path).map_err(|m| self.error(m))
    }

    fn status_error(&self, path: &str, status: u16, body: &[u8]) -> SourceError {
        let message = server_message(body);
        let text = match status {
            401 => format!(
                "GET {path}: 401 Unauthorized{message}: the API server did not accept the \
                 credentials ({}); check the token or client certificate",
                self.client.credentials()
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
}

impl NodeSource for KubernetesSource {
    fn describe(&self) -> String {
        format!("kubernetes {}", self.base_url())
    }

    fn skipped(&self) -> Vec<String> {
        self.skipped.clone()
    }

    fn watch(&mut self) -> Option<std::sync::mpsc::Receiver<String>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let w = Watcher {
            base_url: self.base_url().to_string(),
            auth: self.client.auth().clone(),
            insecure_http_token: self.client.http_token_allowed(),
            agent: streaming_agent(
                self.client.tls(),
                self.client.timeout(),
                WATCH_STREAM + self.client.timeout(),
            ),
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
