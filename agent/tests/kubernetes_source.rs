//! `KubernetesSource` against a fake API server on 127.0.0.1.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::time::Duration;

use base64::Engine as _;
use rcni_agent::model::{NodeInfo, NodeSource};
use rcni_agent::source::kubernetes::{Auth, KubernetesSource};
use serde_json::json;

use common::{serve, serve_tls};

fn node(name: &str, spec: serde_json::Value, addresses: serde_json::Value) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "uid": "x"},
        "spec": spec,
        "status": {"addresses": addresses},
    })
}

fn list(items: Vec<serde_json::Value>, cont: Option<&str>) -> String {
    let mut meta = json!({"resourceVersion": "42"});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({"kind": "NodeList", "apiVersion": "v1", "metadata": meta, "items": items}).to_string()
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

#[test]
fn pages_cidr_forms_and_address_choice() {
    let server = serve(|r| {
        assert_eq!(r.method, "GET");
        assert_eq!(r.path(), "/api/v1/nodes");
        assert_eq!(r.query("limit").as_deref(), Some("2"));
        match r.query("continue").as_deref() {
            None => (
                200,
                list(
                    vec![
                        // podCIDRs wins over podCIDR; InternalIP only.
                        node(
                            "n1",
                            json!({"podCIDR": "10.244.9.0/24",
                                   "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"]}),
                            json!([{"type": "Hostname", "address": "n1"},
                                   {"type": "ExternalIP", "address": "203.0.113.1"},
                                   {"type": "InternalIP", "address": "192.168.1.1"},
                                   {"type": "InternalIP", "address": "fd00::1"}]),
                        ),
                        // podCIDR alone; ExternalIP fills the family
                        // without an InternalIP.
                        node(
                            "n2",
                            json!({"podCIDR": "10.244.2.0/24"}),
                            json!([{"type": "InternalIP", "address": "192.168.1.2"},
                                   {"type": "ExternalIP", "address": "198.51.100.2"},
                                   {"type": "ExternalIP", "address": "2001:db8::2"}]),
                        ),
                    ],
                    // A token that needs escaping.
                    Some("eyJ+/="),
                ),
            ),
            Some("eyJ%2B%2F%3D") => (
                200,
                list(
                    vec![
                        // No CIDR yet, empty spec; only an ExternalIP.
                        node(
                            "n3",
                            json!({}),
                            json!([{"type": "ExternalIP", "address": "198.51.100.3"}]),
                        ),
                        // Empty podCIDR, no spec or status at all below.
                        node("n4", json!({"podCIDR": ""}), json!(null)),
                        json!({"metadata": {"name": "n5"}}),
                    ],
                    None,
                ),
            ),
            Some(other) => panic!("unexpected continue token {other}"),
        }
    });
    let mut source = KubernetesSource::new(&server.url(), Auth::None)
        .unwrap()
        .with_page_size(2);
    assert_eq!(source.describe(), format!("kubernetes {}", server.url()));
    let nodes = source.nodes().unwrap();
    assert_eq!(
        nodes,
        vec![
            NodeInfo {
                name: "n1".into(),
                addresses: vec![ip("192.168.1.1"), ip("fd00::1")],
                pod_cidrs: vec![net("10.244.1.0/24"), net("fd00:10:244:1::/64")],
            },
            NodeInfo {
                name: "n2".into(),
                addresses: vec![ip("192.168.1.2"), ip("2001:db8::2")],
                pod_cidrs: vec![net("10.244.2.0/24")],
            },
            NodeInfo {
                name: "n3".into(),
                addresses: vec![ip("198.51.100.3")],
                pod_cidrs: vec![],
            },
            NodeInfo {
                name: "n4".into(),
                addresses: vec![],
                pod_cidrs: vec![],
            },
            NodeInfo {
                name: "n5".into(),
                addresses: vec![],
                pod_cidrs: vec![],
            },
        ]
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[0].header("authorization").is_none());
    assert!(requests[0]
        .header("user-agent")
        .unwrap()
        .starts_with("rcni-agent/"));
}

#[test]
fn expired_continue_token_restarts_the_list() {
    let server = serve(|r| match r.query("continue").as_deref() {
        None => (
            200,
            list(vec![node("n1", json!({}), json!([]))], Some("old")),
        ),
        Some(_) => (410, json!({"kind": "Status", "code": 410}).to_string()),
    });
    let mut source = KubernetesSource::new(&server.url(), Auth::None).unwrap();
    let err = source.nodes().unwrap_err().to_string();
    // First page, 410, the list again from the start, 410 again: reported.
    assert_eq!(server.requests().len(), 4);
    assert!(err.contains("HTTP 410"), "{err}");
}

#[test]
fn bearer_token_is_sent_and_reread_from_its_file() {
    let dir = common::temp_dir("token");
    let token = dir.join("token");
    fs::write(&token, "first-token\n").unwrap();
    let server = serve(|_| (200, list(vec![], None)));
    // Over plain http:// a token is refused before any request is made...
    let mut refused = KubernetesSource::new(&server.url(), Auth::Token("secret".into())).unwrap();
    let err = refused.nodes().unwrap_err().to_string();
    assert!(
        err.contains("refusing to send a bearer token over plain http://"),
        "{err}"
    );
    assert!(server.requests().is_empty());
    // ...unless explicitly allowed.
    let mut source = KubernetesSource::new(&server.url(), Auth::TokenFile(token.clone()))
        .unwrap()
        .allow_http_token(true);
    source.nodes().unwrap();
    // The kubelet rotates the projected token.
    fs::write(&token, "second-token").unwrap();
    source.nodes().unwrap();
    let mut fixed = KubernetesSource::new(&server.url(), Auth::Token("fixed".into()))
        .unwrap()
        .allow_http_token(true);
    fixed.nodes().unwrap();
    let seen: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_string())
        .collect();
    assert_eq!(
        seen,
        ["Bearer first-token", "Bearer second-token", "Bearer fixed"]
    );

    fs::write(&token, "").unwrap();
    let err = source.nodes().unwrap_err().to_string();
    assert!(err.contains("is empty"), "{err}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn forbidden_names_the_rbac_needed() {
    let server = serve(|_| {
        (
            403,
            json!({"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
                   "message": "nodes is forbidden: User \"system:serviceaccount:kube-system:rcni\" cannot list resource \"nodes\""})
            .to_string(),
        )
    });
    let mut source = KubernetesSource::new(&server.url(), Auth::Token("t".into()))
        .unwrap()
        .allow_http_token(true);
    let err = source.nodes().unwrap_err().to_string();
    assert!(err.contains("403 Forbidden"), "{err}");
    assert!(err.contains("cannot list resource"), "{err}");
    assert!(err.contains("get, list and watch on nodes"), "{err}");
    assert!(err.contains("ClusterRoleBinding"), "{err}");
}

#[test]
fn unauthorized_says_which_credentials() {
    let server = serve(|_| (401, json!({"message": "Unauthorized"}).to_string()));
    let mut source = KubernetesSource::new(&server.url(), Auth::Token("t".into()))
        .unwrap()
        .allow_http_token(true);
    let err = source.nodes().unwrap_err().to_string();
    assert!(err.contains("401 Unauthorized"), "{err}");
    assert!(err.contains("a bearer token"), "{err}");
}

#[test]
fn bad_json_is_an_error_and_a_bad_cidr_is_skipped() {
    let server = serve(|r| match r.query("limit").as_deref() {
        _ if r.header("authorization") == Some("Bearer cidr") => (
            200,
            list(
                vec![
                    node("n1", json!({"podCIDR": "10.244.1/24"}), json!([])),
                    node(
                        "n2",
                        json!({"podCIDRs": ["10.244.2.0/24", "nonsense"]}),
                        json!([{"type": "InternalIP", "address": "192.168.1.2"}]),
                    ),
                    node("", json!({"podCIDR": "10.244.3.0/24"}), json!([])),
                ],
                None,
            ),
        ),
        _ => (200, "{\"items\": [".to_string()),
    });
    let mut source = KubernetesSource::new(&server.url(), Auth::None).unwrap();
    let err = source.nodes().unwrap_err().to_string();
    assert!(err.contains("bad JSON in the node list"), "{err}");
    let mut source = KubernetesSource::new(&server.url(), Auth::Token("cidr".into()))
        .unwrap()
        .allow_http_token(true);
    // One bad entry never loses the list: n1 stays without a CIDR, n2
    // keeps its good one, the nameless node is skipped.
    let nodes = source.nodes().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["n1", "n2"]);
    assert!(nodes[0].pod_cidrs.is_empty());
    assert_eq!(nodes[1].pod_cidrs, vec![net("10.244.2.0/24")]);
    let skipped = source.skipped().join("\n");
    assert!(
        skipped.contains("node n1: pod CIDR \"10.244.1/24\""),
        "{skipped}"
    );
    assert!(skipped.contains("\"nonsense\""), "{skipped}");
    assert!(skipped.contains("no metadata.name"), "{skipped}");
}

#[test]
fn a_silent_server_times_out() {
    // Accepts the connection, never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut source = KubernetesSource::new(&url, Auth::None)
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = source.nodes().unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.contains("no answer within 300ms"), "{err}");
    drop(listener);
}

#[test]
fn nobody_listening_is_connection_refused() {
    let url = format!("http://127.0.0.1:{}", common::closed_port());
    let mut source = KubernetesSource::new(&url, Auth::None).unwrap();
    let err = source.nodes().unwrap_err().to_string();
    assert!(err.contains("connection refused"), "{err}");
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn kubeconfig_with_inline_data_and_token_over_tls() {
    let pki = common::pki();
    let server = serve_tls(common::server_config(&pki, false), |_| {
        (
            200,
            list(
                vec![node(
                    "n1",
                    json!({"podCIDR": "10.244.1.0/24"}),
                    json!([{"type": "InternalIP", "address": "192.168.1.1"}]),
                )],
                None,
            ),
        )
    });
    let dir = common::temp_dir("kubeconfig-token");
    let path = dir.join("config");
    fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Config
current-context: agent@test
preferences: {{}}
clusters:
- name: other
  cluster:
    server: https://192.0.2.1:6443
- name: test
  cluster:
    server: {}/
    certificate-authority-data: {}
contexts:
- name: other
  context: {{cluster: other, user: nobody}}
- name: agent@test
  context:
    cluster: test
    user: agent
    namespace: kube-system
users:
- name: agent
  user:
    token: s3cr3t
",
            server.https_url(),
            b64(&pki.ca_pem)
        ),
    )
    .unwrap();
    let mut source = KubernetesSource::from_kubeconfig(&path).unwrap();
    assert_eq!(source.base_url(), server.https_url());
    let nodes = source.nodes().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].pod_cidrs, vec![net("10.244.1.0/24")]);
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Bearer s3cr3t")
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tls_with_another_ca_is_refused() {
    let pki = common::pki();
    let other = common::pki();
    let server = serve_tls(common::server_config(&pki, false), |_| {
        (200, list(vec![], None))
    });
    let dir = common::temp_dir("kubeconfig-wrong-ca");
    let path = dir.join("config");
    let config = |extra: &str| {
        format!(
            "current-context: c
clusters: [{{name: k, cluster: {{server: '{}', {extra}}}}}]
contexts: [{{name: c, context: {{cluster: k, user: u}}}}]
users: [{{name: u, user: {{token: t}}}}]
",
            server.https_url()
        )
    };
    fs::write(
        &path,
        config(&format!(
            "certificate-authority-data: {}",
            b64(&other.ca_pem)
        )),
    )
    .unwrap();
    let err = KubernetesSource::from_kubeconfig(&path)
        .unwrap()
        .nodes()
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(server.requests().is_empty());

    // insecure-skip-tls-verify accepts it.
    fs::write(&path, config("insecure-skip-tls-verify: true")).unwrap();
    KubernetesSource::from_kubeconfig(&path)
        .unwrap()
        .nodes()
        .unwrap();
    assert_eq!(server.requests().len(), 1);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kubeconfig_client_certificate_from_files_and_data() {
    let pki = common::pki();
    let server = serve_tls(common::server_config(&pki, true), |_| {
        (200, list(vec![], None))
    });
    let dir = common::temp_dir("kubeconfig-cert");
    fs::create_dir_all(dir.join("pki")).unwrap();
    fs::write(dir.join("pki/ca.crt"), &pki.ca_pem).unwrap();
    fs::write(dir.join("pki/client.crt"), &pki.client_cert_pem).unwrap();
    fs::write(dir.join("pki/client.key"), &pki.client_key_pem).unwrap();
    let path = dir.join("kubelet.conf");

    // Relative file paths, as kubeadm writes them.
    fs::write(
        &path,
        format!(
            "current-context: c
clusters: [{{name: k, cluster: {{server: '{}', certificate-authority: pki/ca.crt}}}}]
contexts: [{{name: c, context: {{cluster: k, user: u}}}}]
users:
- name: u
  user:
    client-certificate: pki/client.crt
    client-key: pki/client.key
",
            server.https_url()
        ),
    )
    .unwrap();
    KubernetesSource::from_kubeconfig(&path)
        .unwrap()
        .nodes()
        .unwrap();

    // Inline data, no current-context but a single context.
    fs::write(
        &path,
        format!(
            "clusters: [{{name: k, cluster: {{server: '{}', certificate-authority-data: {}}}}}]
contexts: [{{name: c, context: {{cluster: k, user: u}}}}]
users:
- name: u
  user:
    client-certificate-data: {}
    client-key-data: {}
",
            server.https_url(),
            b64(&pki.ca_pem),
            b64(&pki.client_cert_pem),
            b64(&pki.client_key_pem)
        ),
    )
    .unwrap();
    KubernetesSource::from_kubeconfig(&path)
        .unwrap()
        .nodes()
        .unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.header("authorization").is_none()));

    // Without the client certificate the server ends the handshake.
    fs::write(
        &path,
        format!(
            "clusters: [{{name: k, cluster: {{server: '{}', certificate-authority-data: {}}}}}]
contexts: [{{name: c, context: {{cluster: k, user: u}}}}]
users: [{{name: u, user: {{token: t}}}}]
",
            server.https_url(),
            b64(&pki.ca_pem),
        ),
    )
    .unwrap();
    assert!(KubernetesSource::from_kubeconfig(&path)
        .unwrap()
        .nodes()
        .is_err());
    assert_eq!(server.requests().len(), 2);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kubeconfig_errors_are_clear() {
    let dir = common::temp_dir("kubeconfig-errors");
    let path = dir.join("config");
    let check = |text: &str, expected: &str| {
        fs::write(&path, text).unwrap();
        let err = KubernetesSource::from_kubeconfig(&path)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(expected), "{err} lacks {expected}");
    };
    check("current-context: [", "bad kubeconfig");
    check(
        "current-context: nope\ncontexts: []\n",
        "context \"nope\" not found",
    );
    check(
        "current-context: c
clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}}}]
",
        "exec credential plugin",
    );
    check(
        "current-context: c
clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1', certificate-authority-data: '!!'}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {token: t}}]
",
        "certificate-authority-data: bad base64",
    );
    check(
        "current-context: c
clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1', certificate-authority: missing.crt}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {token: t}}]
",
        "missing.crt",
    );
    check(
        "current-context: c
clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
users: [{name: u, user: {client-certificate-data: QQ==}}]
",
        "needs both client-certificate and client-key",
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn service_account_directory_over_tls() {
    let pki = common::pki();
    let server = serve_tls(common::server_config(&pki, false), |_| {
        (200, list(vec![], None))
    });
    let dir = common::temp_dir("serviceaccount");
    fs::write(dir.join("ca.crt"), &pki.ca_pem).unwrap();
    fs::write(dir.join("token"), "sa-token-1").unwrap();
    let mut source = KubernetesSource::from_service_account(&server.https_url(), &dir).unwrap();
    source.nodes().unwrap();
    fs::write(dir.join("token"), "sa-token-2").unwrap();
    source.nodes().unwrap();
    let seen: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap().to_string())
        .collect();
    assert_eq!(seen, ["Bearer sa-token-1", "Bearer sa-token-2"]);

    fs::remove_file(dir.join("ca.crt")).unwrap();
    let err = KubernetesSource::from_service_account(&server.https_url(), &dir)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("ca.crt"), "{err}");
    fs::remove_dir_all(&dir).unwrap();
}

/// The fake API server's cluster, with watch semantics: every change gets
/// the next resourceVersion and an event; versions below `oldest` are
/// compacted away (a watch from there gets 410 Gone).
#[derive(Default)]
struct Cluster {
    rv: u64,
    nodes: std::collections::BTreeMap<String, serde_json::Value>,
    events: Vec<(u64, &'static str, serde_json::Value)>,
    oldest: u64,
}

impl Cluster {
    fn change(&mut self, kind: &'static str, name: &str, cidr: &str) {
        self.rv += 1;
        let mut n = node(
            name,
            json!({"podCIDR": cidr}),
            json!([{"type": "InternalIP", "address": "192.168.1.1"}]),
        );
        n["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if kind == "DELETED" {
            self.nodes.remove(name);
        } else {
            self.nodes.insert(name.to_string(), n.clone());
        }
        self.events.push((self.rv, kind, n));
    }
}

type Shared = std::sync::Arc<std::sync::Mutex<Cluster>>;

/// GET /api/v1/nodes lists; with `watch=1` it streams the events after
/// `resourceVersion` (waiting up to 1 s for one), one JSON per line, then
/// a BOOKMARK with the current version, and ends the stream.
fn api_server(cluster: Shared) -> common::FakeServer {
    serve(move |r| {
        let watch = r.query("watch").as_deref() == Some("1");
        if !watch {
            let c = cluster.lock().unwrap();
            let items: Vec<_> = c.nodes.values().cloned().collect();
            let body = json!({"kind": "NodeList", "metadata": {"resourceVersion": c.rv.to_string()},
                              "items": items});
            return (200, body.to_string());
        }
        let from: u64 = r.query("resourceVersion").unwrap().parse().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        loop {
            {
                let c = cluster.lock().unwrap();
                if from < c.oldest {
                    let gone = json!({"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                      "reason": "Expired", "message": "too old resource version"}});
                    return (200, format!("{gone}\n"));
                }
                let new: Vec<String> = c
                    .events
                    .iter()
                    .filter(|(rv, _, _)| *rv > from)
                    .map(|(_, kind, obj)| json!({"type": kind, "object": obj}).to_string())
                    .collect();
                if !new.is_empty() || std::time::Instant::now() > deadline {
                    let mut body = new.join("\n");
                    if r.query("allowWatchBookmarks").as_deref() == Some("true") {
                        let mark = json!({"type": "BOOKMARK", "object": {"kind": "Node",
                                          "metadata": {"resourceVersion": c.rv.to_string()}}});
                        body.push_str(&format!("\n{mark}\n"));
                    }
                    return (200, body);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

fn watch_versions(server: &common::FakeServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter(|r| r.query("watch").as_deref() == Some("1"))
        .map(|r| r.query("resourceVersion").unwrap())
        .collect()
}

#[test]
fn list_then_watch_with_bookmarks_and_410_relist() {
    let cluster: Shared = Default::default();
    cluster
        .lock()
        .unwrap()
        .change("ADDED", "n1", "10.244.1.0/24");
    let server = api_server(cluster.clone());
    let mut source = KubernetesSource::new(&server.url(), Auth::None).unwrap();
    assert_eq!(source.nodes().unwrap().len(), 1);
    let rx = source.watch().expect("the kubernetes source watches");

    // A change arrives as an event: the agent lists again.
    cluster
        .lock()
        .unwrap()
        .change("ADDED", "n2", "10.244.2.0/24");
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "");
    assert_eq!(source.nodes().unwrap().len(), 2);
    // The first watch started at the list's version.
    assert_eq!(watch_versions(&server)[0], "1");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // Quiet streams end with a bookmark; the next watch resumes from it.
    while !watch_versions(&server)[1..].iter().any(|v| v == "2") {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            watch_versions(&server)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster
        .lock()
        .unwrap()
        .change("DELETED", "n1", "10.244.1.0/24");
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "");
    assert_eq!(source.nodes().unwrap().len(), 1);

    // History compacted past the watch's version: 410, the agent relists,
    // and the watch resumes from the new list's version.
    {
        let mut c = cluster.lock().unwrap();
        c.rv += 10;
        c.oldest = c.rv;
    }
    let reason = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(reason.contains("410 Gone"), "{reason}");
    assert_eq!(source.nodes().unwrap().len(), 1);
    let relisted = cluster.lock().unwrap().rv.to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !watch_versions(&server).contains(&relisted) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            watch_versions(&server)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster
        .lock()
        .unwrap()
        .change("ADDED", "n3", "10.244.3.0/24");
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "");
    assert_eq!(source.nodes().unwrap().len(), 2);
}
