//! `EtcdSource` against a real etcd (Debian's `etcd-server` 3.4, started
//! per test on 127.0.0.1 by `common::etcd`). One test keeps a fake
//! gateway: a real single-member etcd cannot be made to answer "no
//! leader" (503) on demand, nor to be an etcd older than 3.4 (404).

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use rcni_agent::model::{NodeInfo, NodeSource};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ipnet::IpNet;
use rcni_agent::source::etcd::{free_subnet, Allocation, EtcdSource, DEFAULT_PREFIX};
use serde_json::json;

use common::etcd::{Etcd, EtcdTls};
use common::serve;

fn node(name: &str, address: &str, cidr: &str) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        addresses: vec![address.parse().unwrap()],
        pod_cidrs: vec![cidr.parse().unwrap()],
    }
}

/// `etcdctl get KEY --print-value-only`.
fn get(etcd: &Etcd, key: &str) -> String {
    let out = etcd
        .ctl(None)
        .args(["get", key, "--print-value-only"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn range_reads_hand_written_records_under_the_prefix() {
    let etcd = Etcd::start();
    for (name, addr, cidr) in [
        ("n1", "192.168.1.1", "10.244.1.0/24"),
        ("n2", "192.168.1.2", "10.244.2.0/24"),
    ] {
        // Today's format, written by hand as the docs say.
        etcd.put(
            &format!("/rcni/nodes/{name}"),
            &format!(r#"{{"name":"{name}","addresses":["{addr}"],"podCIDRs":["{cidr}"]}}"#),
        );
    }
    // Outside the prefix: not read.
    etcd.put("/rcni/nodes0", "not json");
    etcd.put("/rcni/node", "not json");
    let mut source = EtcdSource::new(&etcd.url, DEFAULT_PREFIX).unwrap();
    assert_eq!(source.describe(), format!("etcd {} /rcni/nodes/", etcd.url));
    assert_eq!(
        source.nodes().unwrap(),
        vec![
            node("n1", "192.168.1.1", "10.244.1.0/24"),
            node("n2", "192.168.1.2", "10.244.2.0/24")
        ]
    );
    assert!(source.skipped().is_empty());
}

#[test]
fn put_node_round_trip_and_delete() {
    let etcd = Etcd::start();
    let mut source = EtcdSource::new(&etcd.url, "/cluster-a/nodes/").unwrap();
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
    let stored: serde_json::Value =
        serde_json::from_str(&get(&etcd, "/cluster-a/nodes/n1")).unwrap();
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
    assert_eq!(get(&etcd, "/cluster-a/nodes/n2"), "");
    assert_eq!(source.nodes().unwrap(), vec![n1.clone()]);
    // Deleting what is not there is no error.
    source.delete_node("n2").unwrap();
    assert!(source
        .put_node(&node("a/b", "192.168.1.3", "10.244.3.0/24"))
        .is_err());
    assert!(source.delete_node("").is_err());
    // Another prefix sees none of it.
    let mut other = EtcdSource::new(&etcd.url, DEFAULT_PREFIX).unwrap();
    assert!(other.nodes().unwrap().is_empty());
}

#[test]
fn many_nodes_are_read_in_pages() {
    let etcd = Etcd::start();
    let mut source = EtcdSource::new(&etcd.url, DEFAULT_PREFIX)
        .unwrap()
        .with_page_size(7);
    let mut expected = Vec::new();
    for i in 0..30 {
        let n = node(
            &format!("node-{i:02}"),
            &format!("10.1.0.{}", i + 1),
            &format!("10.244.{i}.0/24"),
        );
        source.put_node(&n).unwrap();
        expected.push(n);
    }
    assert_eq!(source.nodes().unwrap(), expected);
    // A page boundary exactly at the end.
    let mut source = source.with_page_size(10);
    assert_eq!(source.nodes().unwrap(), expected);
}

#[test]
fn fails_over_to_the_next_endpoint() {
    let etcd = Etcd::start();
    let down = format!("http://127.0.0.1:{}", common::closed_port());
    let mut source = EtcdSource::new(&format!("{down}, {}", etcd.url), DEFAULT_PREFIX).unwrap();
    source
        .put_node(&node("n1", "192.168.1.1", "10.244.1.0/24"))
        .unwrap();
    assert_eq!(source.nodes().unwrap().len(), 1);

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
fn bad_values_are_skipped_one_by_one() {
    let etcd = Etcd::start();
    etcd.put("/rcni/nodes/n0", r#"{"addresses": ["#);
    etcd.put(
        "/rcni/nodes/n1",
        &serde_json::to_string(&node("n9", "192.168.1.9", "10.244.9.0/24")).unwrap(),
    );
    etcd.put(
        "/rcni/nodes/n2",
        r#"{"name":"n2","addresses":["192.168.1.2","nonsense"],"podCIDRs":["10.244.2.0/24","10.244.2/33"]}"#,
    );
    // A key one level too deep: "g5/x" is no node's name.
    etcd.put(
        "/rcni/nodes/g5/x",
        &serde_json::to_string(&node("g5/x", "192.168.1.5", "10.244.5.0/24")).unwrap(),
    );
    let mut source = EtcdSource::new(&etcd.url, DEFAULT_PREFIX).unwrap();
    assert_eq!(
        source.nodes().unwrap(),
        vec![node("n2", "192.168.1.2", "10.244.2.0/24")]
    );
    let skipped = source.skipped().join("\n");
    assert!(
        skipped.contains("/rcni/nodes/n0: the value is not a node's JSON"),
        "{skipped}"
    );
    assert!(
        skipped.contains("names node \"n9\", not \"n1\""),
        "{skipped}"
    );
    assert!(skipped.contains("address \"nonsense\""), "{skipped}");
    assert!(skipped.contains("pod CIDR \"10.244.2/33\""), "{skipped}");
    assert!(skipped.contains("\"g5/x\" is not a node name"), "{skipped}");
    assert_eq!(source.skipped().len(), 5, "{skipped}");
}

/// Fake: faults a real etcd cannot be made to produce (see the top).
#[test]
fn gateway_errors_are_reported() {
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
    /// Removes the directory also when the test fails.
    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let pki = common::pki();
    let guard = Dir(common::temp_dir("etcd-tls"));
    let dir = guard.0.clone();
    let ca = dir.join("ca.pem");
    let server_cert = dir.join("server.pem");
    let server_key = dir.join("server-key.pem");
    let cert = dir.join("client.pem");
    let key = dir.join("client-key.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    std::fs::write(&server_cert, &pki.server_cert_pem).unwrap();
    std::fs::write(&server_key, &pki.server_key_pem).unwrap();
    std::fs::write(&cert, &pki.client_cert_pem).unwrap();
    std::fs::write(&key, &pki.client_key_pem).unwrap();
    let etcd = Etcd::start_tls(&EtcdTls {
        ca: &ca,
        cert: &server_cert,
        key: &server_key,
        client_cert: &cert,
        client_key: &key,
    });
    assert!(etcd.url.starts_with("https://127.0.0.1:"));

    let mut source = EtcdSource::new(&etcd.url, DEFAULT_PREFIX)
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
    // etcd's own client sees the record.
    let out = etcd
        .ctl(Some((&cert, &key)))
        .args(["get", "/rcni/nodes/n1", "--print-value-only"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.244.1.0/24"));

    // Without the client certificate etcd refuses the handshake.
    let mut anonymous = EtcdSource::new(&etcd.url, DEFAULT_PREFIX)
        .unwrap()
        .with_ca_file(&ca)
        .unwrap();
    assert!(anonymous.nodes().is_err());
    drop(etcd);
    drop(guard);
    assert!(!dir.exists());
}

fn alloc(name: &str, ip: &str, pools: &[(&str, u8)], ttl: u64) -> Allocation {
    Allocation {
        node_name: name.into(),
        addresses: vec![ip.parse().unwrap()],
        pools: pools
            .iter()
            .map(|(c, m)| (c.parse().unwrap(), *m))
            .collect(),
        lease_ttl: ttl,
        prefer: Vec::new(),
    }
}

/// Agents racing for subnets, each in its own thread with its own client.
fn race(etcd: &Etcd, agents: usize, pool: &str) -> Vec<Result<Vec<IpNet>, String>> {
    let barrier = Arc::new(Barrier::new(agents));
    let handles: Vec<_> = (0..agents)
        .map(|i| {
            let url = etcd.url.clone();
            let barrier = barrier.clone();
            let pool = pool.to_string();
            std::thread::spawn(move || {
                let mut s = EtcdSource::new(&url, DEFAULT_PREFIX)
                    .unwrap()
                    .with_allocation(alloc(
                        &format!("racer-{i}"),
                        &format!("192.168.1.{}", i + 1),
                        &[(&pool, 24)],
                        30,
                    ));
                barrier.wait();
                s.register().map_err(|e| e.to_string())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn racing_agents_never_share_a_subnet() {
    let etcd = Etcd::start();
    // One free subnet, four agents: exactly one wins it.
    let results = race(&etcd, 4, "10.244.5.0/24");
    let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    assert_eq!(won[0], &vec!["10.244.5.0/24".parse::<IpNet>().unwrap()]);
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(r.contains("no free /24 left in 10.244.5.0/24"), "{r}");
    }
    let mut reader = EtcdSource::new(&etcd.url, DEFAULT_PREFIX).unwrap();
    assert_eq!(reader.nodes().unwrap().len(), 1);

    // Six more agents in a roomy pool: six different subnets.
    let etcd = Etcd::start();
    let results = race(&etcd, 6, "10.244.0.0/16");
    let mut got: Vec<IpNet> = results
        .iter()
        .map(|r| r.as_ref().unwrap()[0])
        .collect::<Vec<_>>();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 6, "{results:?}");
    let mut reader = EtcdSource::new(&etcd.url, DEFAULT_PREFIX).unwrap();
    assert_eq!(reader.nodes().unwrap().len(), 6);
}

#[test]
fn leased_record_restart_keepalive_and_expiry() {
    let etcd = Etcd::start();
    // A record written by hand: its CIDR is taken, and it has no lease.
    etcd.put(
        "/rcni/nodes/hand",
        r#"{"name":"hand","addresses":["192.168.1.9"],"podCIDRs":["10.244.0.0/24"]}"#,
    );
    let pools = [("10.244.0.0/16", 24), ("fd44::/48", 64)];
    let mut a = EtcdSource::new(&etcd.url, DEFAULT_PREFIX)
        .unwrap()
        .with_allocation(alloc("a", "192.168.1.1", &pools, 2));
    let lines = a.maintain().unwrap();
    assert!(
        lines[0].contains("registered node a with pod CIDRs 10.244.1.0/24, fd44::/64"),
        "{lines:?}"
    );
    let lease = a.lease_id().unwrap();
    let out = etcd
        .ctl(None)
        .args(["get", "/rcni/nodes/a", "-w", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kvs"][0]["lease"], lease, "{v}");

    // The agent restarts (its lease still alive): it gets its subnets back.
    drop(a);
    let mut a = EtcdSource::new(&etcd.url, DEFAULT_PREFIX)
        .unwrap()
        .with_allocation(alloc("a", "192.168.1.1", &pools, 2));
    let cidrs: Vec<String> = a
        .register()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(cidrs, ["10.244.1.0/24", "fd44::/64"]);
    assert_ne!(a.lease_id(), Some(lease));

    // Kept alive past its TTL, the record stays.
    let until = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < until {
        assert!(a.maintain().unwrap().is_empty());
        std::thread::sleep(Duration::from_millis(100));
    }
    let names = |s: &mut EtcdSource| -> Vec<String> {
        s.nodes().unwrap().into_iter().map(|n| n.name).collect()
    };
    let mut reader = EtcdSource::new(&etcd.url, DEFAULT_PREFIX).unwrap();
    assert_eq!(names(&mut reader), ["a", "hand"]);

    // The agent stops: the lease expires and the record goes; the
    // hand-written one stays.
    drop(a);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while names(&mut reader) != ["hand"] {
        assert!(std::time::Instant::now() < deadline, "a's record stayed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_node_without_record_asks_for_its_previous_subnet_first() {
    let etcd = Etcd::start();
    let pools = [("10.244.0.0/16", 24)];
    // The CIDR of the config an earlier run wrote: free, so it is taken
    // although 10.244.0.0/24 comes first.
    let mut a = EtcdSource::new(&etcd.url, DEFAULT_PREFIX)
        .unwrap()
        .with_allocation(Allocation {
            prefer: vec!["10.244.9.0/24".parse().unwrap()],
            ..alloc("a", "192.168.1.1", &pools, 5)
        });
    assert_eq!(a.register().unwrap(), ["10.244.9.0/24".parse().unwrap()]);
    // Taken by another node (or outside the pool, or of another size):
    // the first free subnet instead.
    for prefer in ["10.244.9.0/24", "10.99.0.0/24", "10.244.0.0/25"] {
        let mut b = EtcdSource::new(&etcd.url, DEFAULT_PREFIX)
            .unwrap()
            .with_allocation(Allocation {
                prefer: vec![prefer.parse().unwrap()],
                ..alloc("b", "192.168.1.2", &pools, 5)
            });
        assert_eq!(
            b.register().unwrap(),
            ["10.244.0.0/24".parse().unwrap()],
            "{prefer}"
        );
        b.delete_node("b").unwrap();
    }
}

#[test]
fn a_hand_written_record_of_this_node_is_used_as_it_is() {
    let etcd = Etcd::start();
    let record = r#"{"name":"me","addresses":["192.168.1.7"],"podCIDRs":["10.244.77.0/24"]}"#;
    etcd.put("/rcni/nodes/me", record);
    let mut me = EtcdSource::new(&etcd.url, DEFAULT_PREFIX)
        .unwrap()
        .with_allocation(alloc("me", "192.168.1.1", &[("10.244.0.0/16", 24)], 5));
    assert!(me.maintain().unwrap().is_empty());
    assert_eq!(me.lease_id(), None);
    assert_eq!(get(&etcd, "/rcni/nodes/me"), record);
}

#[test]
fn free_subnets_skip_taken_ones() {
    let pool: IpNet = "10.244.0.0/22".parse().unwrap();
    let taken: Vec<IpNet> = vec![
        "10.244.0.0/24".parse().unwrap(),
        "10.244.1.128/25".parse().unwrap(),
    ];
    assert_eq!(
        free_subnet(&pool, 24, &taken),
        Some("10.244.2.0/24".parse().unwrap())
    );
    let all: Vec<IpNet> = vec![pool];
    assert_eq!(free_subnet(&pool, 24, &all), None);
}

#[test]
fn watch_signals_changes_and_a_compacted_revision_means_relist() {
    let etcd = Etcd::start();
    let mut source = EtcdSource::new(&etcd.url, DEFAULT_PREFIX).unwrap();
    assert!(source.nodes().unwrap().is_empty());
    let listed = source.revision().unwrap();
    let rx = source.watch().unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        "watch: started"
    );
    // A change under the prefix is signalled; one outside it is not.
    etcd.put("/elsewhere", "x");
    etcd.put(
        "/rcni/nodes/n1",
        &serde_json::to_string(&node("n1", "192.168.1.1", "10.244.1.0/24")).unwrap(),
    );
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "");
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    assert_eq!(source.nodes().unwrap().len(), 1);

    // A watch from a revision etcd has compacted away: told to relist,
    // then it watches on from now.
    etcd.put(
        "/rcni/nodes/n2",
        &serde_json::to_string(&node("n2", "192.168.1.2", "10.244.2.0/24")).unwrap(),
    );
    let now = source.nodes().map(|_| source.revision().unwrap()).unwrap();
    let out = etcd
        .ctl(None)
        .args(["compact", &now.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rx = source.watch_from(Some(listed + 1)).unwrap();
    let first = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let reason = if first == "watch: started" {
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    } else {
        first
    };
    assert!(reason.contains(&format!("compacted at {now}")), "{reason}");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        "watch: started"
    );
    etcd.ctl(None)
        .args(["del", "/rcni/nodes/n1"])
        .output()
        .unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "");
    assert_eq!(source.nodes().unwrap().len(), 1);
}

/// etcd on the loopback of a network namespace of the test's own: the
/// clients run inside it too (see [`NsEtcd::run`]), so nothing of the test
/// touches the namespace it was started in. Dropped in field order: etcd
/// killed (its data dir removed), then the namespace deleted, also when the
/// test panics.
struct NsEtcd {
    etcd: Etcd,
    ns: testutil::TestNs,
}

impl NsEtcd {
    fn start() -> NsEtcd {
        let ns = testutil::TestNs::new("etcd");
        let etcd = Etcd::start_in(ns.name(), "127.0.0.1");
        NsEtcd { etcd, ns }
    }

    /// Runs `f` on this thread inside the namespace (threads it starts,
    /// such as a watch, stay there).
    fn run<T: Send>(&self, f: impl FnOnce(&Etcd) -> T + Send) -> T {
        let etcd = &self.etcd;
        self.ns.run(move || f(etcd))
    }
}

/// `etcdctl get KEY -w json`: the record's value (parsed) and lease.
fn record(etcd: &Etcd, key: &str) -> Option<(serde_json::Value, i64)> {
    let out = etcd
        .ctl(None)
        .args(["get", key, "-w", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kv = v["kvs"].get(0)?;
    let value = B64.decode(kv["value"].as_str().unwrap()).unwrap();
    Some((
        serde_json::from_slice(&value).unwrap(),
        kv["lease"].as_i64().unwrap_or(0),
    ))
}

fn del(etcd: &Etcd, key: &str) {
    let out = etcd.ctl(None).args(["del", key]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Calls `maintain` every 100 ms (as the agent's loop does) until it has
/// something to say; those lines, and how long it took.
fn maintain_until_lines(s: &mut EtcdSource, within: Duration) -> (Vec<String>, Duration) {
    let start = std::time::Instant::now();
    loop {
        let lines = s.maintain().unwrap();
        if !lines.is_empty() {
            return (lines, start.elapsed());
        }
        assert!(start.elapsed() < within, "nothing happened in {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cidrs_of(v: &serde_json::Value) -> Vec<String> {
    v["podCIDRs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_record_deleted_or_overwritten_while_its_lease_lives_is_put_back() {
    let env = NsEtcd::start();
    env.run(|etcd| {
        let pools = [("10.244.0.0/16", 24)];
        // a: a peer with a long lease; b: the node under test, lease 2 s
        // (a keepalive every 667 ms, each followed by a read of its record).
        let mut a = EtcdSource::new(&etcd.url, DEFAULT_PREFIX)
            .unwrap()
            .with_allocation(alloc("a", "192.168.1.1", &pools, 30));
        let mut b = EtcdSource::new(&etcd.url, DEFAULT_PREFIX)
            .unwrap()
            .with_allocation(alloc("b", "192.168.1.2", &pools, 2));
        assert_eq!(a.register().unwrap(), ["10.244.0.0/24".parse().unwrap()]);
        let lines = b.maintain().unwrap();
        assert!(
            lines[0].contains("registered node b with pod CIDRs 10.244.1.0/24"),
            "{lines:?}"
        );
        let lease = b.lease_id().unwrap();
        let cidrs_of_b = |peer: &mut EtcdSource| -> Option<Vec<IpNet>> {
            let nodes = peer.nodes().unwrap();
            nodes.into_iter().find(|n| n.name == "b").map(|n| n.pod_cidrs)
        };
        let mut peer = EtcdSource::new(&etcd.url, DEFAULT_PREFIX).unwrap();
        assert_eq!(
            cidrs_of_b(&mut peer),
            Some(vec!["10.244.1.0/24".parse().unwrap()])
        );
        let rx = peer.watch().unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            "watch: started"
        );

        // Deleted by hand while b's lease lives: the peer sees it go...
        del(etcd, "/rcni/nodes/b");
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "");
        assert_eq!(cidrs_of_b(&mut peer), None);
        // ...and b puts it back, same CIDR, same lease, by the next
        // keepalive (the lease is 2 s; within 3 s, a few keepalives).
        let (lines, took) = maintain_until_lines(&mut b, Duration::from_secs(3));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(&format!(
                "warning: the record /rcni/nodes/b of node b is gone although its lease {lease:x} is alive; \
                 registered it again with pod CIDRs 10.244.1.0/24 on lease {lease:x}"
            )),
            "{lines:?}"
        );
        assert!(took < Duration::from_millis(1500), "{took:?}");
        assert_eq!(b.lease_id(), Some(lease));
        let (value, on) = record(etcd, "/rcni/nodes/b").unwrap();
        assert_eq!(on, lease);
        assert_eq!(
            value,
            json!({"name": "b", "addresses": ["192.168.1.2"], "podCIDRs": ["10.244.1.0/24"]})
        );
        // The peer's watch and listing see it again.
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "");
        assert_eq!(
            cidrs_of_b(&mut peer),
            Some(vec!["10.244.1.0/24".parse().unwrap()])
        );

        // Overwritten without a lease (another CIDR): put back on the
        // lease, the warning naming what was found.
        etcd.put(
            "/rcni/nodes/b",
            r#"{"name":"b","addresses":["192.168.1.99"],"podCIDRs":["10.244.7.0/24"]}"#,
        );
        let (lines, _) = maintain_until_lines(&mut b, Duration::from_secs(3));
        assert!(
            lines[0].starts_with(
                "warning: the record /rcni/nodes/b of node b was overwritten: found name \"b\", \
                 addresses [192.168.1.99], podCIDRs [10.244.7.0/24] without a lease; \
                 registered it again with pod CIDRs 10.244.1.0/24"
            ),
            "{lines:?}"
        );
        assert_eq!(record(etcd, "/rcni/nodes/b").unwrap().1, lease);
        // Overwritten with something that is no node's JSON: the same.
        etcd.put("/rcni/nodes/b", "garbage");
        let (lines, _) = maintain_until_lines(&mut b, Duration::from_secs(3));
        assert!(
            lines[0].contains("was overwritten: found \"garbage\", not a node's JSON"),
            "{lines:?}"
        );
        assert_eq!(
            cidrs_of(&record(etcd, "/rcni/nodes/b").unwrap().0),
            ["10.244.1.0/24"]
        );

        // Deleted, and meanwhile another node took its CIDR: b gets a
        // free one instead, on the same lease.
        del(etcd, "/rcni/nodes/b");
        etcd.put(
            "/rcni/nodes/c",
            r#"{"name":"c","addresses":["192.168.1.3"],"podCIDRs":["10.244.1.0/24"]}"#,
        );
        let (lines, _) = maintain_until_lines(&mut b, Duration::from_secs(3));
        assert!(
            lines[0].ends_with(&format!(
                "its pod CIDRs 10.244.1.0/24 are no longer free: \
                 registered it again with pod CIDRs 10.244.2.0/24 on lease {lease:x}"
            )),
            "{lines:?}"
        );
        let (value, on) = record(etcd, "/rcni/nodes/b").unwrap();
        assert_eq!((cidrs_of(&value), on), (vec!["10.244.2.0/24".into()], lease));

        // Taken by another live registration (a second agent with this
        // node's name): left to it, warned once, no tug of war; when that
        // lease is revoked the record goes and b puts its own back.
        let grant = etcd
            .ctl(None)
            .args(["lease", "grant", "60"])
            .output()
            .unwrap();
        let other = String::from_utf8_lossy(&grant.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string();
        let out = etcd
            .ctl(None)
            .args([
                "put",
                "--lease",
                &other,
                "/rcni/nodes/b",
                r#"{"name":"b","addresses":["192.168.1.77"],"podCIDRs":["10.244.9.0/24"]}"#,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let (lines, _) = maintain_until_lines(&mut b, Duration::from_secs(3));
        assert!(
            lines[0].contains("is held by another registration") && lines[0].contains(&other),
            "{lines:?}"
        );
        let until = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < until {
            assert!(b.maintain().unwrap().is_empty(), "warned once only");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_ne!(record(etcd, "/rcni/nodes/b").unwrap().1, lease, "left alone");
        let out = etcd.ctl(None).args(["lease", "revoke", &other]).output().unwrap();
        assert!(out.status.success());
        let (lines, _) = maintain_until_lines(&mut b, Duration::from_secs(3));
        assert!(lines[0].contains("is gone although its lease"), "{lines:?}");
        assert_eq!(record(etcd, "/rcni/nodes/b").unwrap().1, lease);

        // Kept alive past its TTL all along, and quiet while intact.
        let until = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < until {
            assert!(b.maintain().unwrap().is_empty());
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(record(etcd, "/rcni/nodes/b").unwrap().1, lease);
    });
}

#[test]
fn a_listing_that_misses_the_record_has_it_put_back_at_once() {
    let env = NsEtcd::start();
    env.run(|etcd| {
        // A 30 s lease: the next keepalive is 10 s away. An address given
        // twice and a CIDR asked for again that is not its network's
        // form: the record as listed still counts as the one written.
        let mut b = EtcdSource::new(&etcd.url, DEFAULT_PREFIX)
            .unwrap()
            .with_allocation(Allocation {
                addresses: vec!["192.168.1.2".parse().unwrap(); 2],
                prefer: vec!["10.244.0.7/24".parse().unwrap()],
                ..alloc("b", "192.168.1.2", &[("10.244.0.0/16", 24)], 30)
            });
        assert!(!b.maintain().unwrap().is_empty());
        let lease = b.lease_id().unwrap();
        // Nothing to repair while the listing shows the record.
        for _ in 0..3 {
            assert_eq!(b.nodes().unwrap().len(), 1);
            assert!(b.maintain().unwrap().is_empty());
        }
        del(etcd, "/rcni/nodes/b");
        // The agent's round lists (the watch told it of the deletion),
        // finds no record of its own; the next maintain puts it back.
        assert!(b.nodes().unwrap().is_empty());
        let lines = b.maintain().unwrap();
        assert!(lines[0].contains("is gone although its lease"), "{lines:?}");
        assert_eq!(
            b.nodes().unwrap(),
            vec![NodeInfo {
                name: "b".into(),
                addresses: vec!["192.168.1.2".parse().unwrap()],
                pod_cidrs: vec!["10.244.0.0/24".parse().unwrap()],
            }]
        );
        assert_eq!(record(etcd, "/rcni/nodes/b").unwrap().1, lease);
        assert!(b.maintain().unwrap().is_empty());
    });
}

#[test]
fn a_restart_with_another_cluster_cidr_or_mask_replaces_the_old_subnet() {
    let env = NsEtcd::start();
    env.run(|etcd| {
        let start = |pools: &[(&str, u8)]| {
            let mut b = EtcdSource::new(&etcd.url, DEFAULT_PREFIX)
                .unwrap()
                .with_allocation(Allocation {
                    // The CNI config of the earlier run names its subnet.
                    prefer: vec!["10.244.0.0/24".parse().unwrap()],
                    ..alloc("b", "192.168.1.2", pools, 30)
                });
            let lines = b.maintain().unwrap();
            let lease = b.lease_id().unwrap();
            let (value, on) = record(etcd, "/rcni/nodes/b").unwrap();
            assert_eq!(on, lease, "the record is on the new lease");
            (b, lines, cidrs_of(&value))
        };
        let (first, lines, cidrs) = start(&[("10.244.0.0/16", 24)]);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(cidrs, ["10.244.0.0/24"]);
        // The agent stops (its lease lives on) and comes back with another
        // --cluster-cidr: a new subnet in it, the old record replaced.
        drop(first);
        let (second, lines, cidrs) = start(&[("10.99.0.0/16", 24)]);
        assert_eq!(
            lines,
            [
                "warning: pod CIDR 10.244.0.0/24 of the existing record of node b is outside \
                 --cluster-cidr 10.99.0.0/16: allocating a new one"
                    .to_string(),
                format!(
                    "registered node b with pod CIDRs 10.99.0.0/24 (lease {:x}, ttl 30 s)",
                    second.lease_id().unwrap()
                )
            ]
        );
        assert_eq!(cidrs, ["10.99.0.0/24"]);
        let mut peer = EtcdSource::new(&etcd.url, DEFAULT_PREFIX).unwrap();
        assert_eq!(
            peer.nodes().unwrap(),
            vec![NodeInfo {
                name: "b".into(),
                addresses: vec!["192.168.1.2".parse().unwrap()],
                pod_cidrs: vec!["10.99.0.0/24".parse().unwrap()],
            }]
        );

        // Another node CIDR mask size.
        drop(second);
        let (third, lines, cidrs) = start(&[("10.99.0.0/16", 25)]);
        assert!(
            lines[0].contains(
                "pod CIDR 10.99.0.0/24 of the existing record of node b is not a /25 \
                 (the node CIDR mask size for 10.99.0.0/16): allocating a new one"
            ),
            "{lines:?}"
        );
        assert_eq!(cidrs, ["10.99.0.0/25"]);

        // A pool added (dual stack): the IPv4 subnet stays, one is added.
        drop(third);
        let (fourth, lines, cidrs) = start(&[("10.99.0.0/16", 25), ("fd44::/48", 64)]);
        assert!(
            lines[0].contains(
                "the existing record of node b has no pod CIDR in fd44::/48: allocating one"
            ),
            "{lines:?}"
        );
        assert_eq!(cidrs, ["10.99.0.0/25", "fd44::/64"]);

        // The same configuration again: kept, no warning.
        drop(fourth);
        let (_fifth, lines, cidrs) = start(&[("10.99.0.0/16", 25), ("fd44::/48", 64)]);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(cidrs, ["10.99.0.0/25", "fd44::/64"]);
        assert_eq!(peer.nodes().unwrap().len(), 1);
    });
}
