//! `EtcdSource` against a fake etcd v3 JSON gateway on 127.0.0.1.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rcni_agent::model::{NodeInfo, NodeSource};
use rcni_agent::source::etcd::{EtcdSource, DEFAULT_PREFIX};
use serde_json::json;

use common::{serve, serve_tls, FakeServer};

type Store = Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>;

fn decode(v: &serde_json::Value) -> Vec<u8> {
    B64.decode(v.as_str().unwrap_or("")).unwrap()
}

/// The gateway's range, put and deleterange over a sorted map; revision 7.
fn gateway(store: Store) -> impl Fn(&common::Request) -> (u16, String) + Send + Sync {
    move |r| {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let body = r.json();
        let mut map = store.lock().unwrap();
        match r.path() {
            "/v3/kv/range" => {
                let key = decode(&body["key"]);
                let end = decode(&body["range_end"]);
                let limit = body["limit"].as_u64().unwrap_or(0) as usize;
                let in_range: Vec<_> = map
                    .iter()
                    .filter(|(k, _)| **k >= key && (end == [0] || **k < end))
                    .collect();
                let count = in_range.len();
                let taken = if limit == 0 { count } else { limit.min(count) };
                let kvs: Vec<_> = in_range[..taken]
                    .iter()
                    .map(|(k, v)| json!({"key": B64.encode(k), "value": B64.encode(v),
                                         "create_revision": "2", "mod_revision": "5", "version": "1"}))
                    .collect();
                let mut answer = json!({
                    "header": {"cluster_id": "1", "member_id": "2", "revision": "7", "raft_term": "3"},
                    "count": count.to_string(),
                });
                if !kvs.is_empty() {
                    answer["kvs"] = json!(kvs);
                }
                if taken < count {
                    answer["more"] = json!(true);
                }
                (200, answer.to_string())
            }
            "/v3/kv/put" => {
                map.insert(decode(&body["key"]), decode(&body["value"]));
                (200, json!({"header": {"revision": "8"}}).to_string())
            }
            "/v3/kv/deleterange" => {
                let deleted = map.remove(&decode(&body["key"])).is_some() as u32;
                (
                    200,
                    json!({"header": {}, "deleted": deleted.to_string()}).to_string(),
                )
            }
            _ => (404, "Not Found".to_string()),
        }
    }
}

fn node(name: &str, address: &str, cidr: &str) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        addresses: vec![address.parse().unwrap()],
        pod_cidrs: vec![cidr.parse().unwrap()],
    }
}

fn fake_etcd() -> (FakeServer, Store) {
    let store: Store = Arc::default();
    (serve(gateway(store.clone())), store)
}

#[test]
fn range_reads_base64_keys_and_values_under_the_prefix() {
    let (server, store) = fake_etcd();
    {
        let mut map = store.lock().unwrap();
        for (name, addr, cidr) in [
            ("n1", "192.168.1.1", "10.244.1.0/24"),
            ("n2", "192.168.1.2", "10.244.2.0/24"),
        ] {
            let value = serde_json::to_vec(&node(name, addr, cidr)).unwrap();
            map.insert(format!("/rcni/nodes/{name}").into_bytes(), value);
        }
        // Outside the prefix: not read.
        map.insert(b"/rcni/nodes0".to_vec(), b"not json".to_vec());
        map.insert(b"/rcni/node".to_vec(), b"not json".to_vec());
    }
    let mut source = EtcdSource::new(&server.url(), DEFAULT_PREFIX).unwrap();
    assert_eq!(
        source.describe(),
        format!("etcd {} /rcni/nodes/", server.url())
    );
    assert_eq!(
        source.nodes().unwrap(),
        vec![
            node("n1", "192.168.1.1", "10.244.1.0/24"),
            node("n2", "192.168.1.2", "10.244.2.0/24")
        ]
    );
    let request = server.requests()[0].json();
    assert_eq!(request["key"], B64.encode("/rcni/nodes/"));
    assert_eq!(request["range_end"], B64.encode("/rcni/nodes0"));
    assert_eq!(server.requests()[0].path(), "/v3/kv/range");
}

#[test]
fn put_node_round_trip_and_delete() {
    let (server, store) = fake_etcd();
    let mut source = EtcdSource::new(&server.url(), "/cluster-a/nodes/").unwrap();
    assert!(source.nodes().unwrap().is_empty());
    let n1 = NodeInfo {
        name: "n1".into(),
        addresses: vec!["192.168.1.1".parse().unwrap(), "fd00::1".parse().unwrap()],
        pod_cidrs: vec![
            "10.244.1.0/24".parse().unwrap(),
            "fd00:10:244:1::/64".parse().unwrap(),
        ],
    };
    source.put_node(&n1).unwrap();
    source
        .put_node(&node("n2", "192.168.1.2", "10.244.2.0/24"))
        .unwrap();
    // The stored value is the documented JSON.
    let stored = store.lock().unwrap()[b"/cluster-a/nodes/n1".as_slice()].clone();
    let stored: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(
        stored,
        json!({"name": "n1", "addresses": ["192.168.1.1", "fd00::1"],
               "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"]})
    );
    assert_eq!(
        source.nodes().unwrap(),
        vec![n1.clone(), node("n2", "192.168.1.2", "10.244.2.0/24")]
    );
    source.delete_node("n2").unwrap();
    assert_eq!(source.nodes().unwrap(), vec![n1]);
    assert!(source
        .put_node(&node("a/b", "192.168.1.3", "10.244.3.0/24"))
        .is_err());
    assert!(source.delete_node("").is_err());
}

#[test]
fn many_nodes_are_read_in_pages_at_one_revision() {
    let (server, store) = fake_etcd();
    let mut source = EtcdSource::new(&server.url(), DEFAULT_PREFIX).unwrap();
    let mut expected = Vec::new();
    {
        let mut map = store.lock().unwrap();
        for i in 0..2500 {
            let n = node(
                &format!("node-{i:04}"),
                &format!("10.1.{}.{}", i / 250, i % 250 + 1),
                &format!("10.{}.{}.0/24", 100 + i / 256, i % 256),
            );
            map.insert(
                source.key_for(&n.name).into_bytes(),
                serde_json::to_vec(&n).unwrap(),
            );
            expected.push(n);
        }
    }
    assert_eq!(source.nodes().unwrap(), expected);
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests[0].json().get("revision").is_none());
    assert_eq!(requests[1].json()["revision"], "7");
    assert_eq!(
        requests[1].json()["key"],
        B64.encode("/rcni/nodes/node-0999\0")
    );
}

#[test]
fn fails_over_to_the_next_endpoint() {
    let (server, store) = fake_etcd();
    let down = format!("http://127.0.0.1:{}", common::closed_port());
    let mut source = EtcdSource::new(&format!("{down}, {}", server.url()), DEFAULT_PREFIX).unwrap();
    source
        .put_node(&node("n1", "192.168.1.1", "10.244.1.0/24"))
        .unwrap();
    assert_eq!(store.lock().unwrap().len(), 1);
    assert_eq!(source.nodes().unwrap().len(), 1);
    assert_eq!(server.requests().len(), 2);

    // All down: every endpoint is named in the error.
    let down2 = format!("http://127.0.0.1:{}", common::closed_port());
    let mut source = EtcdSource::new(&format!("{down},{down2}"), DEFAULT_PREFIX).unwrap();
    let err = source.nodes().unwrap_err().to_string();
    assert!(err.contains("no endpoint answered"), "{err}");
    assert!(
        err.contains(&format!("{down}/v3/kv/range: connection refused")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{down2}/v3/kv/range: connection refused")),
        "{err}"
    );
}

#[test]
fn gateway_errors_and_bad_values_are_reported() {
    let failing = serve(|_| {
        (
            503,
            json!({"error": "etcdserver: no leader", "code": 14, "message": "etcdserver: no leader"})
                .to_string(),
        )
    });
    let old = serve(|_| (404, "404 page not found".to_string()));
    let mut source =
        EtcdSource::new(&format!("{},{}", failing.url(), old.url()), DEFAULT_PREFIX).unwrap();
    let err = source.nodes().unwrap_err().to_string();
    assert!(err.contains("HTTP 503 (etcdserver: no leader)"), "{err}");
    assert!(err.contains("HTTP 404"), "{err}");
    assert!(err.contains("etcd 3.4 or later"), "{err}");

    let (server, store) = fake_etcd();
    let mut source = EtcdSource::new(&server.url(), DEFAULT_PREFIX).unwrap();
    // Bad entries are skipped one by one; the good one is still listed.
    store
        .lock()
        .unwrap()
        .insert(b"/rcni/nodes/n0".to_vec(), b"{\"addresses\": [".to_vec());
    store.lock().unwrap().insert(
        b"/rcni/nodes/n1".to_vec(),
        serde_json::to_vec(&node("n9", "192.168.1.9", "10.244.9.0/24")).unwrap(),
    );
    store.lock().unwrap().insert(
        b"/rcni/nodes/n2".to_vec(),
        serde_json::to_vec(&node("n2", "192.168.1.2", "10.244.2.0/24")).unwrap(),
    );
    let nodes = source.nodes().unwrap();
    assert_eq!(nodes, vec![node("n2", "192.168.1.2", "10.244.2.0/24")]);
    let skipped = source.skipped().join("\n");
    assert!(
        skipped.contains("/rcni/nodes/n0: the value is not a node's JSON"),
        "{skipped}"
    );
    assert!(
        skipped.contains("names node \"n9\", not \"n1\""),
        "{skipped}"
    );
}

#[test]
fn bad_configuration_is_refused() {
    assert!(EtcdSource::new("", DEFAULT_PREFIX).is_err());
    assert!(EtcdSource::new("127.0.0.1:2379", DEFAULT_PREFIX).is_err());
    assert!(EtcdSource::new("http://127.0.0.1:2379", "").is_err());
    let err = EtcdSource::new("https://127.0.0.1:2379", DEFAULT_PREFIX)
        .unwrap()
        .with_ca_file(std::path::Path::new("/nonexistent/ca.pem"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
}

#[test]
fn https_endpoint_with_ca_file_and_client_certificate() {
    let pki = common::pki();
    let store: Store = Arc::default();
    let server = serve_tls(common::server_config(&pki, true), gateway(store.clone()));
    let dir = common::temp_dir("etcd-tls");
    let ca = dir.join("ca.pem");
    let cert = dir.join("client.pem");
    let key = dir.join("client-key.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    std::fs::write(&cert, &pki.client_cert_pem).unwrap();
    std::fs::write(&key, &pki.client_key_pem).unwrap();

    let mut source = EtcdSource::new(&server.https_url(), DEFAULT_PREFIX)
        .unwrap()
        .with_ca_file(&ca)
        .unwrap()
        .with_client_cert(&cert, &key)
        .unwrap();
    source
        .put_node(&node("n1", "192.168.1.1", "10.244.1.0/24"))
        .unwrap();
    assert_eq!(
        source.nodes().unwrap(),
        vec![node("n1", "192.168.1.1", "10.244.1.0/24")]
    );

    // Without the client certificate the handshake fails.
    let mut anonymous = EtcdSource::new(&server.https_url(), DEFAULT_PREFIX)
        .unwrap()
        .with_ca_file(&ca)
        .unwrap();
    assert!(anonymous.nodes().is_err());
    assert_eq!(server.requests().len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
