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
//! The value is the JSON form of [`NodeInfo`]; its `name` must be the
//! key's last part. A value that does not read is skipped (and noted in
//! [`NodeSource::skipped`]), as are single bad addresses or CIDRs in it.
//! An operator registers a node with [`EtcdSource::put_node`], or by hand:
//!
//! ```text
//! etcdctl put /rcni/nodes/node-1 \
//!   '{"name":"node-1","addresses":["192.168.1.10"],"podCIDRs":["10.244.1.0/24"]}'
//! ```
//!
//! and is removed with [`EtcdSource::delete_node`] (`etcdctl del`); such a
//! record has no lease and stays until deleted. With an [`Allocation`] the
//! agent registers its own node instead ([`EtcdSource::register`]): a free
//! subnet per pool, claimed in a transaction, the record on a lease kept
//! alive by [`NodeSource::maintain`], gone when the agent stops renewing.
//! After each keepalive (and whenever a listing does not show the record
//! as registered) the agent reads its record back (one GET); deleted
//! while the lease lives (`etcdctl del`), or overwritten by another value
//! or onto another lease, it is put back on the lease, with the same pod
//! CIDRs while no other node holds them, and a warning says what was
//! found. A restarted agent keeps the pod CIDRs of its earlier record only
//! as far as they are `/mask` subnets of the configured pools.
//!
//! # Protocol
//!
//! etcd v3's JSON gateway (etcd ≥ 3.4, served on the client port):
//! `POST /v3/kv/range`, `/v3/kv/put`, `/v3/kv/deleterange`, `/v3/kv/txn`,
//! `/v3/lease/grant`, `/v3/lease/keepalive`, `/v3/lease/revoke` and the
//! streaming `/v3/watch`, keys and values in base64. Endpoints are tried in order; the one that answered
//! last is tried first next time. `https://` endpoints verify the server
//! against a CA file ([`EtcdSource::with_ca_file`]) and may present a
//! client certificate ([`EtcdSource::with_client_cert`]); etcd's
//! user/password authentication is not supported.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::kubernetes::{
    base_url, http_agent, pem_certificates, pem_private_key, read_file, streaming_agent,
    transport_error, TlsSettings, DEFAULT_TIMEOUT, MAX_BODY,
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
    alloc: Option<Allocation>,
    registration: Option<Registration>,
    /// The pod CIDRs this process registered last: asked for again first
    /// when the lease was lost.
    last_cidrs: Vec<IpNet>,
    /// The revision of the last listing, and for each record it read the
    /// lease it is attached to (0: none).
    last_revision: Option<i64>,
    leases: Vec<(String, i64)>,
    /// The next [`NodeSource::maintain`] reads this node's record to check
    /// it is still there as written (the last listing did not show it so).
    check_record: bool,
    /// The other lease last found holding this node's record (warned once:
    /// the record is left to that registration until its lease runs out).
    foreign_lease: Option<i64>,
    /// Warnings of the last registration, for [`NodeSource::maintain`] to
    /// hand out.
    notes: Vec<String>,
    /// [`NodeSource::maintain`] does nothing before this (back-off after an
    /// error, or the next check of a hand-written record).
    maintain_after: Option<Instant>,
    backoff: Duration,
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
    /// The lease the key is attached to (int64 as a string); absent or
    /// "0" for a record without one (written by hand).
    #[serde(default)]
    lease: Option<serde_json::Value>,
}

/// An int64 of the gateway's JSON (a string, or a number).
fn int64(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// How this node gets a pod CIDR in etcd mode (flannel's etcd subnet
/// manager): a free `/mask` of each pool, claimed atomically, the record
/// attached to a lease kept alive by the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// This node's name: its record is kept under it.
    pub node_name: String,
    /// The addresses registered for this node.
    pub addresses: Vec<IpAddr>,
    /// Per family: the cluster CIDR and the node CIDR mask size.
    pub pools: Vec<(IpNet, u8)>,
    /// Seconds.
    pub lease_ttl: u64,
    /// Pod CIDRs to ask for first when the node has no record (those of
    /// the CNI config an earlier run wrote): a node whose lease ran out
    /// (after a `--once` run, or a long stop) gets its subnet back while
    /// it is still free.
    pub prefer: Vec<IpNet>,
}

#[derive(Debug, Clone)]
struct Registration {
    lease: i64,
    next_keepalive: Instant,
}

/// A node's record as read back: its value (or why it is not a node's
/// JSON) and its lease (0: none).
struct Found {
    node: Result<NodeInfo, String>,
    lease: i64,
}

/// What [`EtcdSource::renew`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Renewal {
    /// Not due yet: nothing sent.
    NotDue,
    /// Kept alive.
    Renewed,
    /// Gone (or never registered): register again.
    Expired,
}

/// The record this node registers with `cidrs`, in the form a listing
/// reads it back (addresses once each), so that the two compare equal.
fn record_of(alloc: &Allocation, cidrs: &[IpNet]) -> NodeInfo {
    let mut addresses: Vec<IpAddr> = Vec::new();
    for a in &alloc.addresses {
        if !addresses.contains(a) {
            addresses.push(*a);
        }
    }
    NodeInfo {
        name: alloc.node_name.clone(),
        addresses,
        pod_cidrs: cidrs.to_vec(),
    }
}

/// `a, b, c`.
fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pod CIDRs of a registration: for each pool, in order, the first of
/// `existing` (the node's record found at registration), then of `again`
/// (asked for again: this process's last, the CNI config's) that is a
/// `/mask` inside it and overlaps no other node's (`taken`: node name and
/// CIDR), else its first free `/mask`. What of `existing` is not kept is
/// said in the notes, as is a pool it had nothing in.
fn choose_cidrs(
    alloc: &Allocation,
    existing: &[IpNet],
    again: &[IpNet],
    taken: &[(&str, IpNet)],
) -> Result<(Vec<IpNet>, Vec<String>), String> {
    let overlaps = |a: &IpNet, b: &IpNet| a.contains(b) || b.contains(a);
    let fits = |c: &IpNet, pool: &IpNet, mask: u8| c.prefix_len() == mask && pool.contains(c);
    let free = |c: &IpNet| !taken.iter().any(|(_, t)| overlaps(t, c));
    let taken_nets: Vec<IpNet> = taken.iter().map(|(_, t)| *t).collect();
    let name = &alloc.node_name;
    let mut cidrs = Vec::new();
    let mut notes = Vec::new();
    let mut missing = Vec::new();
    for (pool, mask) in &alloc.pools {
        let kept = existing.iter().find(|c| fits(c, pool, *mask) && free(c));
        if kept.is_none() && !existing.is_empty() {
            missing.push(*pool);
        }
        let got = kept
            .or_else(|| again.iter().find(|c| fits(c, pool, *mask) && free(c)))
            .copied()
            .or_else(|| free_subnet(pool, *mask, &taken_nets));
        match got {
            Some(c) => cidrs.push(c),
            None => return Err(format!("no free /{mask} left in {pool} for node {name}")),
        }
    }
    let cluster = join(&alloc.pools.iter().map(|(p, _)| *p).collect::<Vec<_>>());
    for c in existing.iter().filter(|c| !cidrs.contains(c)) {
        let of = format!("pod CIDR {c} of the existing record of node {name}");
        let why = match alloc.pools.iter().find(|(p, _)| p.contains(c)) {
            None => format!("{of} is outside --cluster-cidr {cluster}: allocating a new one"),
            Some((p, m)) if c.prefix_len() != *m => format!(
                "{of} is not a /{m} (the node CIDR mask size for {p}): allocating a new one"
            ),
            Some(_) => match taken.iter().find(|(_, t)| overlaps(t, c)) {
                Some((other, t)) => {
                    format!("{of} overlaps node {other}'s {t}: allocating a new one")
                }
                None => format!("{of} is a second one in its pool: dropped"),
            },
        };
        notes.push(why);
    }
    if notes.is_empty() {
        for p in missing {
            notes.push(format!(
                "the existing record of node {name} has no pod CIDR in {p}: allocating one"
            ));
        }
    }
    Ok((cidrs, notes))
}

/// The first `/mask` subnet of `pool` that overlaps none of `taken`.
pub fn free_subnet(pool: &IpNet, mask: u8, taken: &[IpNet]) -> Option<IpNet> {
    pool.subnets(mask)
        .ok()?
        .find(|s| !taken.iter().any(|t| t.contains(s) || s.contains(t)))
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
            alloc: None,
            registration: None,
            last_cidrs: Vec::new(),
            last_revision: None,
            leases: Vec::new(),
            check_record: false,
            foreign_lease: None,
            notes: Vec::new(),
            maintain_after: None,
            backoff: MIN_BACKOFF,
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

    /// Allocates this node's pod CIDRs (see [`Allocation`]) from now on.
    pub fn with_allocation(mut self, alloc: Allocation) -> EtcdSource {
        self.alloc = Some(alloc);
        self
    }

    /// The lease of this node's record, once registered.
    pub fn lease_id(&self) -> Option<i64> {
        self.registration.as_ref().map(|r| r.lease)
    }

    /// Registers this node (see [`Allocation`]): keeps the pod CIDRs of its
    /// record if it has one (a restarted agent gets its subnet back) as
    /// far as they still fit the configuration (see below), else takes a
    /// free subnet of each pool; puts the record attached to a new lease,
    /// in a transaction that fails if any node record changed since it was
    /// read (then it reads and tries again), so two agents never get the
    /// same subnet. A record without a lease (written by hand) is used as
    /// it is and not touched. The pod CIDRs.
    ///
    /// A pod CIDR of an earlier record is kept only when it is a `/mask`
    /// inside a pool (a restart with another `--cluster-cidr` or mask
    /// size) and overlaps no other node's; the others are dropped with a
    /// warning (handed out by the next [`NodeSource::maintain`]) and the
    /// record is replaced by one with a new subnet of each pool left
    /// without one.
    pub fn register(&mut self) -> Result<Vec<IpNet>, SourceError> {
        self.allocate(None).map(|(cidrs, _)| cidrs)
    }

    /// [`EtcdSource::register`], or with `repair` (the lease of this
    /// process's registration) puts this node's record back on that lease
    /// with the pod CIDRs it registered last when they are still free
    /// (else new ones), whatever the key holds now. The pod CIDRs, and
    /// whether the record was written (a repair finds it intact when it
    /// was put back meanwhile).
    fn allocate(&mut self, repair: Option<i64>) -> Result<(Vec<IpNet>, bool), SourceError> {
        let Some(alloc) = self.alloc.clone() else {
            return Err(self.error("no allocation configured"));
        };
        self.check_name(&alloc.node_name)?;
        let key = self.key_for(&alloc.node_name);
        for _ in 0..20 {
            let nodes = self.nodes()?;
            let Some(revision) = self.last_revision else {
                return Err(self.error("the range answer carried no revision"));
            };
            let mine = nodes.iter().find(|n| n.name == alloc.node_name);
            let mine_lease = self
                .leases
                .iter()
                .find(|(n, _)| n == &alloc.node_name)
                .map_or(0, |(_, l)| *l);
            match repair {
                None => {
                    if let Some(m) = mine.filter(|m| !m.pod_cidrs.is_empty() && mine_lease == 0) {
                        // Hand-written: nothing to allocate or keep alive.
                        self.registration = None;
                        return Ok((m.pod_cidrs.clone(), false));
                    }
                }
                Some(lease) => {
                    if mine_lease == lease && mine == self.expected_record().as_ref() {
                        self.check_record = false;
                        return Ok((self.last_cidrs.clone(), false));
                    }
                }
            }
            let taken: Vec<(&str, IpNet)> = nodes
                .iter()
                .filter(|n| n.name != alloc.node_name)
                .flat_map(|n| n.pod_cidrs.iter().map(|c| (n.name.as_str(), *c)))
                .collect();
            // A repair puts back what this process registered, not what
            // it found at its key.
            let existing = match (repair, mine) {
                (None, Some(m)) => m.pod_cidrs.as_slice(),
                _ => &[],
            };
            let again: Vec<IpNet> = self
                .last_cidrs
                .iter()
                .chain(&alloc.prefer)
                .map(IpNet::trunc)
                .collect();
            let (cidrs, notes) =
                choose_cidrs(&alloc, existing, &again, &taken).map_err(|m| self.error(m))?;
            let lease = match repair {
                Some(l) => l,
                None => self.grant(alloc.lease_ttl)?,
            };
            let record = record_of(&alloc, &cidrs);
            let value = serde_json::to_vec(&record)
                .map_err(|e| self.error(format!("node {}: {e}", record.name)))?;
            let body = json!({
                "compare": [{
                    "key": B64.encode(&self.prefix),
                    "range_end": B64.encode(prefix_range_end(self.prefix.as_bytes())),
                    "target": "MOD",
                    "result": "LESS",
                    "mod_revision": (revision + 1).to_string(),
                }],
                "success": [{"request_put": {
                    "key": B64.encode(&key),
                    "value": B64.encode(value),
                    "lease": lease.to_string(),
                }}],
            });
            let answer = self.post("/v3/kv/txn", &body);
            let answer = match answer {
                Ok(a) => a,
                Err(e) => {
                    if repair.is_none() {
                        let _ = self.post("/v3/lease/revoke", &json!({"ID": lease.to_string()}));
                    }
                    return Err(e);
                }
            };
            let answer: serde_json::Value = serde_json::from_slice(&answer)
                .map_err(|e| self.error(format!("bad JSON in the txn answer: {e}")))?;
            if answer["succeeded"] == true {
                if repair.is_none() {
                    self.registration = Some(Registration {
                        lease,
                        next_keepalive: Instant::now() + keepalive_period(alloc.lease_ttl),
                    });
                }
                self.last_cidrs = cidrs.clone();
                self.check_record = false;
                self.notes.extend(notes);
                return Ok((cidrs, true));
            }
            // Another record changed in between: read again (dropping the
            // lease granted for this try).
            if repair.is_none() {
                let _ = self.post("/v3/lease/revoke", &json!({"ID": lease.to_string()}));
            }
        }
        Err(self.error("lost the allocation race 20 times in a row"))
    }

    /// The warnings of the last registration, to log.
    fn take_notes(&mut self) -> Vec<String> {
        self.notes
            .drain(..)
            .map(|n| format!("warning: {n}"))
            .collect()
    }

    /// The record this process registered, as it wrote it.
    fn expected_record(&self) -> Option<NodeInfo> {
        let alloc = self.alloc.as_ref()?;
        self.registration.as_ref()?;
        Some(record_of(alloc, &self.last_cidrs))
    }

    /// After a listing: unless it shows this node's record as registered
    /// and on its lease, the next [`NodeSource::maintain`] reads it.
    fn note_own_record(&mut self, nodes: &[NodeInfo]) {
        let (Some(expected), Some(lease)) = (self.expected_record(), self.lease_id()) else {
            return;
        };
        let listed = nodes.iter().find(|n| n.name == expected.name);
        let listed_lease = self
            .leases
            .iter()
            .find(|(n, _)| n == &expected.name)
            .map(|(_, l)| *l);
        if listed != Some(&expected) || listed_lease != Some(lease) {
            self.check_record = true;
        }
    }

    /// This node's record as etcd has it now (one GET): `None` when the
    /// key is gone, else its value (or why it is not a node's JSON) and
    /// its lease (0: none).
    fn own_record(&mut self) -> Result<Option<Found>, SourceError> {
        let Some(name) = self.alloc.as_ref().map(|a| a.node_name.clone()) else {
            return Ok(None);
        };
        let key = self.key_for(&name);
        let body = self.post("/v3/kv/range", &json!({"key": B64.encode(&key)}))?;
        let answer: RangeResponse = serde_json::from_slice(&body)
            .map_err(|e| self.error(format!("bad JSON in the range answer for {key}: {e}")))?;
        let Some(kv) = answer.kvs.first() else {
            return Ok(None);
        };
        let lease = kv.lease.as_ref().and_then(int64).unwrap_or(0);
        let node = B64
            .decode(&kv.value)
            .map_err(|e| format!("a value that is not base64 ({e})"))
            .and_then(|v| {
                serde_json::from_slice::<serde_json::Value>(&v).map_err(|e| {
                    let short: String = String::from_utf8_lossy(&v).chars().take(200).collect();
                    format!("{short:?}, not a node's JSON ({e})")
                })
            })
            .and_then(|v| node_from_json(&v).map(|(n, _)| n));
        Ok(Some(Found { node, lease }))
    }

    /// Checks (one GET) that this node's record is still there as this
    /// process wrote it, on `lease`; puts it back when it is gone or was
    /// overwritten (see [`EtcdSource::allocate`]). Lines to log.
    fn check_own_record(&mut self, lease: i64) -> Result<Vec<String>, SourceError> {
        let Some(expected) = self.expected_record() else {
            return Ok(Vec::new());
        };
        let key = self.key_for(&expected.name);
        let found = self.own_record()?;
        let what = match &found {
            Some(Found {
                node: Ok(n),
                lease: l,
            }) if *l == lease && *n == expected => {
                self.check_record = false;
                self.foreign_lease = None;
                return Ok(Vec::new());
            }
            // On another live registration's lease (a second agent with
            // this node's name): taking it back would start a tug of war,
            // each rewrite waking every agent. Left alone, warned once; when
            // that lease runs out etcd deletes the record and it is put
            // back as gone.
            Some(Found { lease: l, .. }) if *l != 0 && *l != lease => {
                self.check_record = false;
                if self.foreign_lease == Some(*l) {
                    return Ok(Vec::new());
                }
                self.foreign_lease = Some(*l);
                return Ok(vec![format!(
                    "warning: the record {key} of node {} is held by another registration (lease {l:x}, not this agent's {lease:x}): is another agent running with this node name? left to it until its lease runs out",
                    expected.name
                )]);
            }
            None => format!(
                "the record {key} of node {} is gone although its lease {lease:x} is alive",
                expected.name
            ),
            Some(Found { node, lease: l }) => {
                let value = match node {
                    Ok(n) => format!(
                        "name {:?}, addresses [{}], podCIDRs [{}]",
                        n.name,
                        join(&n.addresses),
                        join(&n.pod_cidrs)
                    ),
                    Err(e) => e.clone(),
                };
                let on = match *l {
                    0 => "without a lease".to_string(),
                    l if l == lease => format!("on its lease {l:x}"),
                    l => format!("on lease {l:x}, not its lease {lease:x}"),
                };
                format!(
                    "the record {key} of node {} was overwritten: found {value} {on}",
                    expected.name
                )
            }
        };
        let before = self.last_cidrs.clone();
        let (cidrs, written) = self.allocate(Some(lease))?;
        let mut lines = self.take_notes();
        if !written {
            lines.push(format!("{what}; it is back as registered now"));
        } else if cidrs == before {
            lines.push(format!(
                "warning: {what}; registered it again with pod CIDRs {} on lease {lease:x}",
                join(&cidrs)
            ));
        } else {
            lines.push(format!(
                "warning: {what}; its pod CIDRs {} are no longer free: registered it again with pod CIDRs {} on lease {lease:x}",
                join(&before),
                join(&cidrs)
            ));
        }
        Ok(lines)
    }

    fn grant(&mut self, ttl: u64) -> Result<i64, SourceError> {
        let answer = self.post("/v3/lease/grant", &json!({"TTL": ttl.to_string()}))?;
        let v: serde_json::Value = serde_json::from_slice(&answer)
            .map_err(|e| self.error(format!("bad JSON in the lease grant answer: {e}")))?;
        v.get("ID")
            .and_then(int64)
            .filter(|id| *id != 0)
            .ok_or_else(|| self.error(format!("the lease grant answer has no ID: {v}")))
    }

    /// Renews the lease when due; `Ok(false)` when etcd no longer knows it
    /// (expired: the record is gone and must be registered again).
    pub fn keep_alive(&mut self) -> Result<bool, SourceError> {
        Ok(self.renew()? != Renewal::Expired)
    }

    fn renew(&mut self) -> Result<Renewal, SourceError> {
        let Some(reg) = self.registration.clone() else {
            return Ok(Renewal::Expired);
        };
        if Instant::now() < reg.next_keepalive {
            return Ok(Renewal::NotDue);
        }
        let answer = self.post("/v3/lease/keepalive", &json!({"ID": reg.lease.to_string()}))?;
        let v: serde_json::Value = serde_json::from_slice(&answer)
            .map_err(|e| self.error(format!("bad JSON in the keepalive answer: {e}")))?;
        let ttl = v["result"].get("TTL").and_then(int64).unwrap_or(0);
        if ttl <= 0 {
            self.registration = None;
            return Ok(Renewal::Expired);
        }
        let period = keepalive_period(self.alloc.as_ref().map_or(30, |a| a.lease_ttl));
        if let Some(r) = self.registration.as_mut() {
            r.next_keepalive = Instant::now() + period;
        }
        Ok(Renewal::Renewed)
    }

    /// Starts the watch (see [`NodeSource::watch`]) from `revision`.
    pub fn watch_from(
        &mut self,
        revision: Option<i64>,
    ) -> Option<std::sync::mpsc::Receiver<String>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let agent = streaming_agent(&self.tls, self.timeout, WATCH_STREAM);
        let endpoints = self.endpoints.clone();
        let prefix = self.prefix.clone();
        std::thread::Builder::new()
            .name("etcd-watch".into())
            .spawn(move || watch_loop(endpoints, prefix, agent, tx, revision))
            .ok()?;
        Some(rx)
    }

    /// The revision of the last listing.
    pub fn revision(&self) -> Option<i64> {
        self.last_revision
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
        // One key level per node: a name holding '/' (or blank, or with
        // control characters) is no node's name.
        if name.is_empty() || name.contains('/') || name.chars().any(char::is_control) {
            return Err(self.error(format!("{key}: {name:?} is not a node name")));
        }
        if node.name != name {
            return Err(self.error(format!(
                "{key}: the value names node {:?}, not {name:?}",
                node.name
            )));
        }
        Ok(node)
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl EtcdSource {
    fn maintain_now(&mut self) -> Result<Vec<String>, SourceError> {
        let Some(alloc) = self.alloc.clone() else {
            return Ok(Vec::new());
        };
        if let Some(lease) = self.lease_id() {
            // After each keepalive, and whenever a listing did not show
            // the record as registered, read it: a record deleted (or
            // overwritten) while the lease lives on would otherwise stay
            // gone, the lease kept alive for nothing.
            match self.renew()? {
                Renewal::NotDue if !self.check_record => return Ok(self.take_notes()),
                Renewal::NotDue | Renewal::Renewed => return self.check_own_record(lease),
                Renewal::Expired => {}
            }
        }
        let lost = !self.last_cidrs.is_empty();
        let cidrs = self.register()?;
        let mut lines = self.take_notes();
        let Some(lease) = self.lease_id() else {
            // A hand-written record: nothing to keep alive; look again
            // in a while (it may be deleted).
            self.maintain_after = Some(Instant::now() + Duration::from_secs(5));
            return Ok(lines);
        };
        let nets: Vec<String> = cidrs.iter().map(|c| c.to_string()).collect();
        self.maintain_after = None;
        lines.push(format!(
            "{} node {} with pod CIDRs {} (lease {lease:x}, ttl {} s)",
            if lost {
                "registered again"
            } else {
                "registered"
            },
            alloc.node_name,
            nets.join(", "),
            alloc.lease_ttl
        ));
        Ok(lines)
    }
}

/// Renew a lease three times per TTL (at least every 500 ms).
fn keepalive_period(ttl: u64) -> Duration {
    Duration::from_millis((ttl * 1000 / 3).max(500))
}

/// How long one watch stream may last before it is opened again.
const WATCH_STREAM: Duration = Duration::from_secs(300);

/// The watch loop of [`NodeSource::watch`]: `POST /v3/watch` on the node
/// prefix from the revision after the last one seen, one JSON message per
/// line. Any event, a compaction (the revision is gone: the next list is a
/// full relist anyway) or a reconnect is sent as a reason to list again.
/// Ends when the receiver is gone.
fn watch_loop(
    endpoints: Vec<String>,
    prefix: String,
    agent: ureq::Agent,
    tx: std::sync::mpsc::Sender<String>,
    from: Option<i64>,
) {
    use std::io::BufRead;
    let end = B64.encode(prefix_range_end(prefix.as_bytes()));
    let mut next_revision: Option<i64> = from;
    let mut backoff = MIN_BACKOFF;
    let mut which = 0usize;
    loop {
        let url = format!("{}/v3/watch", endpoints[which % endpoints.len()]);
        let mut create = json!({"key": B64.encode(&prefix), "range_end": end});
        if let Some(r) = next_revision {
            create["start_revision"] = json!(r.to_string());
        }
        let body = json!({"create_request": create}).to_string();
        let response = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.as_bytes());
        let mut ok = false;
        match response {
            Ok(r) if r.status().as_u16() == 200 => {
                let reader = std::io::BufReader::new(r.into_body().into_reader());
                for line in reader.lines() {
                    let Ok(line) = line else { break };
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                        continue;
                    };
                    let result = &v["result"];
                    if let Some(rev) = result["header"].get("revision").and_then(int64) {
                        next_revision = Some(rev + 1);
                    }
                    let compacted = result.get("compact_revision").and_then(int64).unwrap_or(0);
                    let reason = if compacted > 0 {
                        // Too old a revision: start from now after a relist.
                        next_revision = None;
                        Some(format!(
                            "watch: revision compacted at {compacted}; relisting"
                        ))
                    } else if result["created"] == true {
                        ok = true;
                        backoff = MIN_BACKOFF;
                        Some("watch: started".to_string())
                    } else if result["events"].as_array().is_some_and(|e| !e.is_empty()) {
                        Some(String::new())
                    } else if result["canceled"] == true {
                        Some("watch: canceled by the server".to_string())
                    } else {
                        None
                    };
                    if let Some(r) = reason {
                        if tx.send(r).is_err() {
                            return;
                        }
                    }
                    if compacted > 0 || result["canceled"] == true {
                        break;
                    }
                }
            }
            Ok(r) => {
                if tx
                    .send(format!("watch: {url}: HTTP {}", r.status().as_u16()))
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                if tx.send(format!("watch: {url}: {e}")).is_err() {
                    return;
                }
            }
        }
        if !ok {
            which += 1;
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

impl NodeSource for EtcdSource {
    fn describe(&self) -> String {
        format!("etcd {} {}", self.endpoints.join(","), self.prefix)
    }

    /// Watches from the revision after the last listing (from now if
    /// there was none).
    fn watch(&mut self) -> Option<std::sync::mpsc::Receiver<String>> {
        let from = self.last_revision.map(|r| r + 1);
        self.watch_from(from)
    }

    fn maintain(&mut self) -> Result<Vec<String>, SourceError> {
        if self.alloc.is_none() || self.maintain_after.is_some_and(|t| Instant::now() < t) {
            return Ok(Vec::new());
        }
        match self.maintain_now() {
            Ok(lines) => {
                self.backoff = MIN_BACKOFF;
                Ok(lines)
            }
            Err(e) => {
                // etcd unreachable: try again later, ever more slowly.
                self.maintain_after = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                Err(e)
            }
        }
    }

    fn skipped(&self) -> Vec<String> {
        self.skipped.clone()
    }

    fn nodes(&mut self) -> Result<Vec<NodeInfo>, SourceError> {
        let end = B64.encode(prefix_range_end(self.prefix.as_bytes()));
        let mut start = self.prefix.as_bytes().to_vec();
        let mut revision: Option<serde_json::Value> = None;
        let mut nodes = Vec::new();
        self.leases.clear();
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
                self.last_revision = revision.as_ref().and_then(int64);
            }
            for kv in &answer.kvs {
                match self.node_from(kv) {
                    Ok(n) => {
                        let lease = kv.lease.as_ref().and_then(int64).unwrap_or(0);
                        self.leases.push((n.name.clone(), lease));
                        nodes.push(n)
                    }
                    Err(e) => self.skipped.push(format!("{}; skipped", e.message)),
                }
            }
            let last = match answer.kvs.last() {
                Some(kv) if answer.more => kv,
                _ => {
                    self.note_own_record(&nodes);
                    return Ok(nodes);
                }
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

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn an_existing_record_keeps_only_what_fits_the_pools() {
        let alloc = Allocation {
            node_name: "b".into(),
            addresses: Vec::new(),
            pools: vec![(nets(&["10.244.0.0/16"])[0], 24)],
            lease_ttl: 20,
            prefer: Vec::new(),
        };
        let taken = [("c", nets(&["10.244.3.0/24"])[0])];
        // Kept: a /24 of the pool; a second one in the pool is dropped.
        let (cidrs, notes) = choose_cidrs(
            &alloc,
            &nets(&["10.244.5.0/24", "10.244.6.0/24"]),
            &[],
            &taken,
        )
        .unwrap();
        assert_eq!(cidrs, nets(&["10.244.5.0/24"]));
        assert_eq!(
            notes,
            ["pod CIDR 10.244.6.0/24 of the existing record of node b is a second one in its pool: dropped"]
        );
        // Overlapping another node's: a free one instead, and why.
        let (cidrs, notes) = choose_cidrs(&alloc, &nets(&["10.244.3.0/24"]), &[], &taken).unwrap();
        assert_eq!(cidrs, nets(&["10.244.0.0/24"]));
        assert_eq!(
            notes,
            ["pod CIDR 10.244.3.0/24 of the existing record of node b overlaps node c's 10.244.3.0/24: allocating a new one"]
        );
        // Asked for again (this process's last, the CNI config's).
        let (cidrs, notes) = choose_cidrs(&alloc, &[], &nets(&["10.244.9.0/24"]), &taken).unwrap();
        assert_eq!((cidrs, notes.len()), (nets(&["10.244.9.0/24"]), 0));
        // No room: an error naming the pool.
        let full = [("c", nets(&["10.244.0.0/16"])[0])];
        let err = choose_cidrs(&alloc, &[], &[], &full).unwrap_err();
        assert_eq!(err, "no free /24 left in 10.244.0.0/16 for node b");
    }
}
