//! Node information kept in etcd, for clusters without Kubernetes.
//!
//! # Key layout
//!
//! One key per node, under a prefix ([`DEFAULT_PREFIX`] unless configured):
//!
//! ```text
//! <prefix><node-name>  →  {"name": "<node-name>",
//!                           "addresses": ["192.168.1.10"],
//!                           "podCIDRs": ["10.244.1.0/24"]}
//! ```
//!
//! The value is the JSON form of [`NodeInfo`], all three fields present;
//! its `name` must be the key's last part. A node registers itself (or an
//! operator registers it) with [`EtcdSource::put_node`], or by hand:
//!
//! ```text
//! etcdctl put /rcni/nodes/node-1 \
//!   '{"name":"node-1","addresses":["192.168.1.10"],"podCIDRs":["10.244.1.0/24"]}'
//! ```
//!
//! and is removed with [`EtcdSource::delete_node`] (`etcdctl del`). Keys
//! carry no lease: a node that is gone stays until it is deleted.
//!
//! # Protocol
//!
//! etcd v3's JSON gateway (etcd ≥ 3.4, served on the client port):
//! `POST /v3/kv/range`, `/v3/kv/put` and `/v3/kv/deleterange`, keys and
//! values in base64. Endpoints are tried in order; the one that answered
//! last is tried first next time. `https://` endpoints verify the server
//! against a CA file ([`EtcdSource::with_ca_file`]) and may present a
//! client certificate ([`EtcdSource::with_client_cert`]); etcd's
//! user/password authentication is not supported.

use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::kubernetes::{
    base_url, http_agent, pem_certificates, pem_private_key, read_file, transport_error,
    TlsSettings, DEFAULT_TIMEOUT, MAX_BODY,
};
use crate::model::{node_from_json, NodeInfo, NodeSource, SourceError};

/// Where nodes are kept unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "/rcni/nodes/";

/// Keys asked for per range request, unless changed.
const PAGE_SIZE: u64 = 1000;

/// A range that needs more pages than this is taken for a server bug.
const MAX_PAGES: usize = 100_000;

/// Nodes registered in etcd.
pub struct EtcdSource {
    endpoints: Vec<String>,
    prefix: String,
    tls: TlsSettings,
    timeout: Duration,
    agent: ureq::Agent,
    /// The endpoint tried first: the last one that answered.
    preferred: usize,
    /// Keys the last listing skipped, and why.
    skipped: Vec<String>,
    page_size: u64,
}

/// The end of the range of keys starting with `prefix` (etcd's
/// `GetPrefixRangeEnd`): the prefix with its last byte below 0xff
/// incremented and what follows dropped; `[0]` (no end) if there is none.
fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[derive(Deserialize)]
struct RangeResponse {
    #[serde(default)]
    header: Option<ResponseHeader>,
    #[serde(default)]
    kvs: Vec<KeyValue>,
    #[serde(default)]
    more: bool,
}

#[derive(Deserialize)]
struct ResponseHeader {
    /// int64, a string in the gateway's JSON.
    #[serde(default)]
    revision: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: String,
}

/// The `message` (or `error`) of a gateway error body.
fn gateway_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct GatewayError {
        #[serde(default)]
        message: String,
        #[serde(default)]
        error: String,
    }
    let text = match serde_json::from_slice::<GatewayError>(body) {
        Ok(e) if !e.message.is_empty() => e.message,
        Ok(e) if !e.error.is_empty() => e.error,
        _ => String::from_utf8_lossy(body).trim().to_string(),
    };
    if text.is_empty() {
        String::new()
    } else {
        let short: String = text.chars().take(300).collect();
        format!(" ({short})")
    }
}

impl EtcdSource {
    /// A client of the etcd cluster at `endpoints` (comma-separated
    /// `http(s)://host:port`) reading the nodes under `prefix`.
    pub fn new(endpoints: &str, prefix: &str) -> Result<EtcdSource, SourceError> {
        let err = |m: String| SourceError::new(format!("etcd {endpoints}"), m);
        let endpoints = endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(base_url)
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        if endpoints.is_empty() {
            return Err(err("no endpoint given".to_string()));
        }
        if prefix.is_empty() {
            return Err(err(format!(
                "empty key prefix (the default is {DEFAULT_PREFIX:?})"
            )));
        }
        let tls = TlsSettings::default();
        let timeout = DEFAULT_TIMEOUT;
        Ok(EtcdSource {
            agent: http_agent(&tls, timeout),
            endpoints,
            prefix: prefix.to_string(),
            tls,
            timeout,
            preferred: 0,
            skipped: Vec::new(),
            page_size: PAGE_SIZE,
        })
    }

    /// Verifies `https://` endpoints against the CA certificates (PEM) in
    /// this file, and only them.
    pub fn with_ca_file(mut self, ca: &Path) -> Result<EtcdSource, SourceError> {
        let pem = read_file(ca, "the etcd CA").map_err(|m| self.error(m))?;
        let roots = pem_certificates(&pem, &ca.display().to_string()).map_err(|m| self.error(m))?;
        self.tls.roots = Some(roots);
        self.agent = http_agent(&self.tls, self.timeout);
        Ok(self)
    }

    /// Presents this client certificate (PEM chain) and key to `https://`
    /// endpoints.
    pub fn with_client_cert(mut self, cert: &Path, key: &Path) -> Result<EtcdSource, SourceError> {
        let cert_pem = read_file(cert, "the etcd client certificate").map_err(|m| self.error(m))?;
        let key_pem = read_file(key, "the etcd client key").map_err(|m| self.error(m))?;
        let chain =
            pem_certificates(&cert_pem, &cert.display().to_string()).map_err(|m| self.error(m))?;
        let key =
            pem_private_key(&key_pem, &key.display().to_string()).map_err(|m| self.error(m))?;
        self.tls.client = Some(ureq::tls::ClientCert::new_with_certs(&chain, key));
        self.agent = http_agent(&self.tls, self.timeout);
        Ok(self)
    }

    /// Changes the deadline of each request (per endpoint tried).
    pub fn with_timeout(mut self, timeout: Duration) -> EtcdSource {
        self.timeout = timeout;
        self.agent = http_agent(&self.tls, timeout);
        self
    }

    /// Changes how many keys are asked for per range request (at least 1).
    pub fn with_page_size(mut self, page_size: u64) -> EtcdSource {
        self.page_size = page_size.max(1);
        self
    }

    /// The key of node `name`: `<prefix><name>`.
    pub fn key_for(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Registers (or updates) a node: puts its JSON at its key.
    pub fn put_node(&mut self, node: &NodeInfo) -> Result<(), SourceError> {
        self.check_name(&node.name)?;
        let value =
            serde_json::to_vec(node).map_err(|e| self.error(format!("node {}: {e}", node.name)))?;
        let body = json!({
            "key": B64.encode(self.key_for(&node.name)),
            "value": B64.encode(value),
        });
        self.post("/v3/kv/put", &body).map(|_| ())
    }

    /// Removes a node's key. Removing a node that is not there is no error.
    pub fn delete_node(&mut self, name: &str) -> Result<(), SourceError> {
        self.check_name(name)?;
        let body = json!({"key": B64.encode(self.key_for(name))});
        self.post("/v3/kv/deleterange", &body).map(|_| ())
    }

    fn check_name(&self, name: &str) -> Result<(), SourceError> {
        if name.is_empty() || name.contains('/') {
            return Err(self.error(format!(
                "{name:?} is not a node name (empty, or with a '/')"
            )));
        }
        Ok(())
    }

    fn error(&self, message: impl Into<String>) -> SourceError {
        SourceError::new(self.describe(), message)
    }

    /// POSTs `body` to `path`, trying each endpoint in turn until one
    /// answers 200; the body of that answer.
    fn post(&mut self, path: &str, body: &serde_json::Value) -> Result<Vec<u8>, SourceError> {
        let payload = body.to_string();
        let count = self.endpoints.len();
        let mut failures = Vec::new();
        for i in 0..count {
            let index = (self.preferred + i) % count;
            let url = format!("{}{path}", self.endpoints[index]);
            let what = format!("POST {url}");
            let sent = self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(payload.as_bytes());
            let mut response = match sent {
                Ok(r) => r,
                Err(e) => {
                    failures.push(transport_error(&what, &e, self.timeout));
                    continue;
                }
            };
            let status = response.status().as_u16();
            let answer = match response
                .body_mut()
                .with_config()
                .limit(MAX_BODY)
                .read_to_vec()
            {
                Ok(b) => b,
                Err(e) => {
                    failures.push(transport_error(&what, &e, self.timeout));
                    continue;
                }
            };
            if status == 200 {
                self.preferred = index;
                return Ok(answer);
            }
            let hint = if status == 404 {
                " (no v3 JSON gateway there: etcd 3.4 or later is needed)"
            } else {
                ""
            };
            failures.push(format!(
                "{what}: HTTP {status}{}{hint}",
                gateway_message(&answer)
            ));
        }
        Err(self.error(format!("no endpoint answered: {}", failures.join("; "))))
    }

    /// One node from a key and its value (both base64).
    /// A bad key or value is skipped (and noted), never the whole list.
    fn node_from(&mut self, kv: &KeyValue) -> Result<NodeInfo, SourceError> {
        let key = B64
            .decode(&kv.key)
            .map_err(|e| self.error(format!("a key in the answer is not base64: {e}")))?;
        let key = String::from_utf8_lossy(&key).into_owned();
        let value = B64
            .decode(&kv.value)
            .map_err(|e| self.error(format!("{key}: the value is not base64: {e}")))?;
        let (node, problems) = serde_json::from_slice::<serde_json::Value>(&value)
            .map_err(|e| e.to_string())
            .and_then(|v| node_from_json(&v))
            .map_err(|e| {
                self.error(format!(
                    "{key}: the value is not a node's JSON ({{\"name\", \"addresses\", \"podCIDRs\"}}): {e}"
                ))
            })?;
        self.skipped.extend(problems);
        let name = key.strip_prefix(&self.prefix).unwrap_or(&key);
        if node.name != name {
            return Err(self.error(format!(
                "{key}: the value names node {:?}, not {name:?}",
                node.name
            )));
        }
        Ok(node)
    }
}

impl NodeSource for EtcdSource {
    fn describe(&self) -> String {
        format!("etcd {} {}", self.endpoints.join(","), self.prefix)
    }

    fn skipped(&self) -> Vec<String> {
        self.skipped.clone()
    }

    fn nodes(&mut self) -> Result<Vec<NodeInfo>, SourceError> {
        let end = B64.encode(prefix_range_end(self.prefix.as_bytes()));
        let mut start = self.prefix.as_bytes().to_vec();
        let mut revision: Option<serde_json::Value> = None;
        let mut nodes = Vec::new();
        for _ in 0..MAX_PAGES {
            let mut request = json!({
                "key": B64.encode(&start),
                "range_end": end,
                "limit": self.page_size,
            });
            // Later pages read the revision of the first: one snapshot.
            if let Some(rev) = &revision {
                request["revision"] = rev.clone();
            }
            let body = self.post("/v3/kv/range", &request)?;
            let answer: RangeResponse = serde_json::from_slice(&body)
                .map_err(|e| self.error(format!("bad JSON in the range answer: {e}")))?;
            if revision.is_none() {
                self.skipped.clear();
                revision = answer.header.and_then(|h| h.revision);
            }
            for kv in &answer.kvs {
                match self.node_from(kv) {
                    Ok(n) => nodes.push(n),
                    Err(e) => self.skipped.push(format!("{}; skipped", e.message)),
                }
            }
            let last = match answer.kvs.last() {
                Some(kv) if answer.more => kv,
                _ => return Ok(nodes),
            };
            start = B64
                .decode(&last.key)
                .map_err(|e| self.error(format!("a key in the answer is not base64: {e}")))?;
            start.push(0);
        }
        Err(self.error(format!("the range did not end after {MAX_PAGES} pages")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_end_of_a_prefix() {
        assert_eq!(prefix_range_end(b"/rcni/nodes/"), b"/rcni/nodes0");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), vec![0]);
    }
}
