//! A small synchronous client of the Kubernetes API, shared by
//! `rcni-agent` (Node objects) and the `multus` plugin (Pods and
//! NetworkAttachmentDefinitions).
//!
//! * [`Endpoint`]: where the API server is and how to authenticate, from a
//!   kubeconfig file ([`Endpoint::from_kubeconfig`]) or a pod's service
//!   account ([`Endpoint::from_service_account`], [`Endpoint::in_cluster`]).
//! * [`Client`]: `GET` and `PATCH` of JSON with a deadline per request
//!   ([`DEFAULT_TIMEOUT`] unless changed), a bearer token (re-read from its
//!   file before every request) and/or a TLS client certificate.
//!
//! HTTPS trusts the cluster's CA when one is given (in-cluster `ca.crt`,
//! kubeconfig `certificate-authority(-data)`), and only that CA; without
//! one, the Mozilla roots bundled in the binary with feature
//! `bundled-roots` (rcni-agent), else the client is refused. Proxy
//! variables of the environment are not used and redirects are not
//! followed: clients talk to the cluster's own endpoints. HTTP error
//! statuses are answers (`(status, body)`), not errors.
//!
//! ```no_run
//! let endpoint = kube_lite::Endpoint::from_kubeconfig("/etc/cni/net.d/multus.d/multus.kubeconfig".as_ref())?;
//! let client = kube_lite::Client::new(endpoint, "example/1.0")?;
//! let (status, body) = client.get("/api/v1/namespaces/default/pods/web")?;
//! # let _ = (status, body);
//! # Ok::<(), String>(())
//! ```

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, TlsProvider};

/// Deadline of one HTTP request (connection, TLS, request and response).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where Kubernetes mounts a pod's service account credentials.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Largest response body read.
pub const MAX_BODY: u64 = 256 << 20;

/// How a client authenticates to the API server, besides a TLS client
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

impl Auth {
    /// The token to send now, if any (read from its file for
    /// [`Auth::TokenFile`]; an empty file is an error).
    pub fn bearer_token(&self) -> Result<Option<String>, String> {
        match self {
            Auth::None => Ok(None),
            Auth::Token(t) => Ok(Some(t.clone())),
            Auth::TokenFile(path) => {
                let t = fs::read_to_string(path)
                    .map_err(|e| format!("cannot read the token {}: {e}", path.display()))?;
                let t = t.trim();
                if t.is_empty() {
                    return Err(format!("the token file {} is empty", path.display()));
                }
                Ok(Some(t.to_string()))
            }
        }
    }
}

/// TLS settings of an HTTPS client.
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// Trust only these roots; `None`: the bundled Mozilla roots (feature
    /// `bundled-roots`; without it an https:// client is refused).
    pub roots: Option<Vec<Certificate<'static>>>,
    /// A client certificate chain and its key.
    pub client: Option<ClientCert>,
    /// Accept any server certificate.
    pub insecure: bool,
}

fn tls_config(tls: &TlsSettings) -> TlsConfig {
    let mut c = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .disable_verification(tls.insecure);
    match &tls.roots {
        Some(roots) => c = c.root_certs(RootCerts::Specific(Arc::new(roots.clone()))),
        // Client::new refuses https without a CA in this build; an empty
        // set keeps any other path from reaching ureq's bundled roots.
        None if !cfg!(feature = "bundled-roots") => {
            c = c.root_certs(RootCerts::Specific(Arc::new(Vec::new())))
        }
        None => {}
    }
    if let Some(client) = &tls.client {
        c = c.client_cert(Some(client.clone()));
    }
    c.build()
}

/// An HTTP client with these TLS settings and this deadline per request.
/// HTTP error statuses are answers, not errors; no proxy; no redirects.
pub fn http_agent(tls: &TlsSettings, timeout: Duration, user_agent: &str) -> ureq::Agent {
    agent_config(tls, user_agent)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// What every agent here shares: these TLS settings, HTTP error statuses
/// as answers, no proxy, no redirects.
fn agent_config(
    tls: &TlsSettings,
    user_agent: &str,
) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    ureq::Agent::config_builder()
        .tls_config(tls_config(tls))
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .user_agent(user_agent)
}

/// An agent for long-lived streaming requests (watches): connecting must
/// succeed within `connect`, a stream lasts at most `longest`.
pub fn streaming_agent(
    tls: &TlsSettings,
    connect: Duration,
    longest: Duration,
    user_agent: &str,
) -> ureq::Agent {
    agent_config(tls, user_agent)
        .timeout_global(Some(longest))
        .timeout_connect(Some(connect))
        .build()
        .into()
}

/// The certificates of a PEM document (`what` names it in errors).
pub fn pem_certificates(pem: &[u8], what: &str) -> Result<Vec<Certificate<'static>>, String> {
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
pub fn pem_private_key(pem: &[u8], what: &str) -> Result<PrivateKey<'static>, String> {
    PrivateKey::from_pem(pem).map_err(|e| format!("{what}: {e}"))
}

/// Reads a file for a TLS setting, naming it in the error.
pub fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

/// Describes a failed request: no answer in time, nobody listening, TLS…
pub fn transport_error(what: &str, e: &ureq::Error, timeout: Duration) -> String {
    match e {
        ureq::Error::Timeout(_) => format!("{what}: no answer within {timeout:?}"),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("{what}: connection refused")
        }
        other => format!("{what}: {other}"),
    }
}

/// Checks that `url` is `http://…` or `https://…` and drops a final `/`.
pub fn base_url(url: &str) -> Result<String, String> {
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

/// Percent-encodes a query parameter value or a path segment (RFC 3986
/// unreserved characters kept).
pub fn query_escape(s: &str) -> String {
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

/// ` (message)` from a Kubernetes `Status` body (or the start of the
/// body), empty for an empty body: for error messages.
pub fn server_message(body: &[u8]) -> String {
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

/// Where the API server is and how to talk to it.
#[derive(Clone)]
pub struct Endpoint {
    /// `https://host:port` (or `http://` for tests).
    pub server: String,
    /// The bearer token, if any.
    pub auth: Auth,
    /// Trust roots and client certificate.
    pub tls: TlsSettings,
}

impl Endpoint {
    /// A server without credentials, trusting the bundled roots.
    pub fn plain(server: &str, auth: Auth) -> Endpoint {
        Endpoint {
            server: server.to_string(),
            auth,
            tls: TlsSettings::default(),
        }
    }

    /// In-cluster configuration: the API server from
    /// `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`, the pod's
    /// service account token and CA from [`SERVICE_ACCOUNT_DIR`].
    pub fn in_cluster() -> Result<Endpoint, String> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    format!("{name} is not set: not running in a pod (give a kubeconfig instead)")
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
    pub fn from_service_account(server: &str, dir: &Path) -> Result<Endpoint, String> {
        let ca_path = dir.join("ca.crt");
        let ca = read_file(&ca_path, "the service account CA")?;
        let roots = pem_certificates(&ca, &ca_path.display().to_string())?;
        let token = dir.join("token");
        read_file(&token, "the service account token")?;
        Ok(Endpoint {
            server: server.to_string(),
            auth: Auth::TokenFile(token),
            tls: TlsSettings {
                roots: Some(roots),
                ..TlsSettings::default()
            },
        })
    }

    /// The cluster, user and credentials of the current context of a
    /// kubeconfig file. Supported: `server`, `certificate-authority`,
    /// `certificate-authority-data`, `insecure-skip-tls-verify`, `token`,
    /// `tokenFile`, `client-certificate(-data)` and `client-key(-data)`;
    /// relative paths are relative to the file's directory. Exec plugins
    /// and auth providers are not run (refused with a message).
    pub fn from_kubeconfig(path: &Path) -> Result<Endpoint, String> {
        let text = fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::from_kubeconfig_text(&text, dir)
    }

    /// [`Endpoint::from_kubeconfig`] of a kubeconfig's text; relative
    /// paths in it are relative to `dir`.
    pub fn from_kubeconfig_text(text: &str, dir: &Path) -> Result<Endpoint, String> {
        let config: Kubeconfig =
            serde_yaml_ng::from_str(text).map_err(|e| format!("bad kubeconfig: {e}"))?;
        let (server, auth, tls) = config.resolve(dir)?;
        Ok(Endpoint { server, auth, tls })
    }
}

/// A client of one API server. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    base_url: String,
    auth: Auth,
    tls: TlsSettings,
    timeout: Duration,
    agent: ureq::Agent,
    user_agent: String,
    insecure_http_token: bool,
}

impl Client {
    /// A client of `endpoint`, sending `user_agent`.
    pub fn new(endpoint: Endpoint, user_agent: &str) -> Result<Client, String> {
        let base_url = base_url(&endpoint.server)?;
        if !cfg!(feature = "bundled-roots")
            && base_url.starts_with("https://")
            && endpoint.tls.roots.is_none()
            && !endpoint.tls.insecure
        {
            return Err(format!(
                "{base_url}: no certificate authority to trust (give certificate-authority or \
                 certificate-authority-data, or insecure-skip-tls-verify)"
            ));
        }
        Ok(Client {
            agent: http_agent(&endpoint.tls, DEFAULT_TIMEOUT, user_agent),
            base_url,
            auth: endpoint.auth,
            tls: endpoint.tls,
            timeout: DEFAULT_TIMEOUT,
            user_agent: user_agent.to_string(),
            insecure_http_token: false,
        })
    }

    /// Changes the deadline of each request.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self.agent = http_agent(&self.tls, timeout, &self.user_agent);
        self
    }

    /// Allows sending the bearer token over plain `http://`, where anyone
    /// on the path can read it. Without it, a token with an `http://`
    /// server is refused before any request.
    pub fn allow_http_token(mut self, allow: bool) -> Client {
        self.insecure_http_token = allow;
        self
    }

    /// The API server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// How requests authenticate.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The TLS settings.
    pub fn tls(&self) -> &TlsSettings {
        &self.tls
    }

    /// The deadline of one request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether a token may go over plain `http://`.
    pub fn http_token_allowed(&self) -> bool {
        self.insecure_http_token
    }

    /// The `User-Agent` sent.
    pub fn user_agent(&self) -> &str {
        &self.user_agent
    }

    /// What credentials requests carry, for error messages ("a bearer
    /// token and a client certificate", "none were sent").
    pub fn credentials(&self) -> String {
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

    fn authorize<B>(
        &self,
        what: &str,
        mut request: ureq::RequestBuilder<B>,
    ) -> Result<ureq::RequestBuilder<B>, String> {
        let has_token = !matches!(self.auth, Auth::None);
        if has_token && self.base_url.starts_with("http://") && !self.insecure_http_token {
            return Err(format!(
                "{what}: refusing to send a bearer token over plain http:// (use https://)"
            ));
        }
        if let Some(token) = self.auth.bearer_token()? {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        Ok(request)
    }

    fn read(
        &self,
        what: &str,
        response: ureq::http::Response<ureq::Body>,
    ) -> Result<(u16, Vec<u8>), String> {
        let mut response = response;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| transport_error(what, &e, self.timeout))?;
        Ok((status, body))
    }

    /// `GET path` (`/api/v1/...`): the status and the body.
    pub fn get(&self, path: &str) -> Result<(u16, Vec<u8>), String> {
        let what = format!("GET {path}");
        let url = format!("{}{path}", self.base_url);
        let request = self.agent.get(&url).header("Accept", "application/json");
        let request = self.authorize(&what, request)?;
        let response = request
            .call()
            .map_err(|e| transport_error(&what, &e, self.timeout))?;
        self.read(&what, response)
    }

    /// `PATCH path` with `body` of `content_type` (say
    /// `application/merge-patch+json`): the status and the body.
    pub fn patch(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        let what = format!("PATCH {path}");
        let url = format!("{}{path}", self.base_url);
        let request = self
            .agent
            .patch(&url)
            .header("Accept", "application/json")
            .header("Content-Type", content_type);
        let request = self.authorize(&what, request)?;
        let response = request
            .send(body)
            .map_err(|e| transport_error(&what, &e, self.timeout))?;
        self.read(&what, response)
    }
}

/// The parts of a kubeconfig that are read.
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
                    "user {:?} authenticates with {how}, which rcni does not support; \
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

    #[test]
    fn kubeconfig_with_token_and_single_context() {
        let e = Endpoint::from_kubeconfig_text(
            "clusters: [{name: k, cluster: {server: 'http://127.0.0.1:1'}}]\n\
             contexts: [{name: c, context: {cluster: k, user: u}}]\n\
             users: [{name: u, user: {token: ' abc '}}]\n",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(e.server, "http://127.0.0.1:1");
        assert_eq!(e.auth, Auth::Token("abc".into()));
        let c = Client::new(e, "t").unwrap();
        let err = c.get("/x").unwrap_err();
        assert!(err.contains("refusing to send a bearer token"), "{err}");
    }

    #[test]
    #[cfg(not(feature = "bundled-roots"))]
    fn https_without_a_ca_is_refused_without_bundled_roots() {
        let e = Endpoint::plain("https://10.0.0.1:6443", Auth::None);
        let err = Client::new(e, "t").err().unwrap();
        assert!(err.contains("no certificate authority"), "{err}");
        let mut e = Endpoint::plain("https://10.0.0.1:6443", Auth::None);
        e.tls.insecure = true;
        assert!(Client::new(e, "t").is_ok());
    }
}
