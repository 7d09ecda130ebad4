//! Standing suite: 100 concurrent ADDs and 50 concurrent DELs on one
//! bridge + host-local network, mixed with GC calls, through the real
//! binary in a node namespace. No address is handed out twice, GC never
//! takes a valid attachment, and nothing is left once every pod is gone.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suites;

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::path::Path;
use testutil::{Outcome, PluginEnv, TestNs};

const ADDS: usize = 100;
const DELS: usize = 50;

/// bridge + host-local in one node namespace.
struct Env(PluginEnv);

impl Deref for Env {
    type Target = PluginEnv;
    fn deref(&self) -> &PluginEnv {
        &self.0
    }
}

impl Env {
    fn gc(&self, conf: &Value, valid: &[usize]) -> Outcome {
        let mut gc = conf.clone();
        gc["cni.dev/valid-attachments"] = valid
            .iter()
            .map(|i| json!({"containerID": id(*i), "ifname": "eth0"}))
            .collect();
        self.call("GC", "", Path::new(""), &gc)
    }
}

fn id(i: usize) -> String {
    format!("conc-{i}")
}

#[test]
fn hundred_adds_fifty_dels_and_gc_on_one_network() {
    let env = Env(testutil::plugin_env!("bridge", "ccn"));
    let conf = json!({
        "cniVersion": "1.1.0",
        "name": env.net,
        "type": "bridge",
        "bridge": "ccbr0",
        "isGateway": true,
        "ipMasq": true,
        "stateDir": env.state_dir.path(),
        "ipam": {"type": "host-local", "subnet": "10.231.0.0/16", "dataDir": env.ipam_dir.path()},
    });
    let pods: Vec<TestNs> = (0..ADDS).map(|_| TestNs::new("ccp")).collect();
    let all: Vec<usize> = (0..ADDS).collect();
    let mut ops = 0usize;

    // 100 ADDs at once, with GCs that list every pod as valid running
    // alongside: GC must not take an attachment that is being made.
    let (adds, gcs): (Vec<Outcome>, Vec<Outcome>) = std::thread::scope(|s| {
        let hs: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (env, conf) = (&env, &conf);
                s.spawn(move || env.call("ADD", &id(i), &p.path(), conf))
            })
            .collect();
        let gs: Vec<_> = (0..5)
            .map(|_| {
                let (env, conf, all) = (&env, &conf, &all);
                s.spawn(move || env.gc(conf, all))
            })
            .collect();
        (
            hs.into_iter().map(|h| h.join().expect("add")).collect(),
            gs.into_iter().map(|h| h.join().expect("gc")).collect(),
        )
    });
    ops += adds.len() + gcs.len();
    for g in &gcs {
        g.ok();
    }
    let mut addr_of = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (i, r) in adds.iter().enumerate() {
        let v = r.ok();
        let a = v["ips"][0]["address"]
            .as_str()
            .expect("address")
            .to_string();
        assert!(seen.insert(a.clone()), "duplicate address {a}");
        addr_of.insert(i, a);
    }
    assert_eq!(
        suites::allocations(env.ipam_dir.path()).len(),
        ADDS,
        "one allocation per pod"
    );
    assert_eq!(
        suites::links(&env.node).len(),
        ADDS + 1,
        "a veth per pod plus the bridge"
    );

    // 50 DELs at once, with GCs that list the other 50 as valid.
    let keep: Vec<usize> = (DELS..ADDS).collect();
    let (dels, gcs): (Vec<Outcome>, Vec<Outcome>) = std::thread::scope(|s| {
        let hs: Vec<_> = pods
            .iter()
            .enumerate()
            .take(DELS)
            .map(|(i, p)| {
                let (env, conf) = (&env, &conf);
                s.spawn(move || env.call("DEL", &id(i), &p.path(), conf))
            })
            .collect();
        let gs: Vec<_> = (0..5)
            .map(|_| {
                let (env, conf, keep) = (&env, &conf, &keep);
                s.spawn(move || env.gc(conf, keep))
            })
            .collect();
        (
            hs.into_iter().map(|h| h.join().expect("del")).collect(),
            gs.into_iter().map(|h| h.join().expect("gc")).collect(),
        )
    });
    ops += dels.len() + gcs.len();
    for r in dels.iter().chain(gcs.iter()) {
        r.ok();
    }
    // Exactly the kept pods' addresses are still allocated, and each pod
    // still has its own address on eth0.
    let mut left: Vec<String> = suites::allocations(env.ipam_dir.path())
        .iter()
        .filter_map(|p| Path::new(p).file_name()?.to_str().map(String::from))
        .collect();
    left.sort();
    let mut want: Vec<String> = keep
        .iter()
        .map(|i| addr_of[i].split('/').next().unwrap_or("").to_string())
        .collect();
    want.sort();
    assert_eq!(left, want, "GC and DEL took only what they were asked to");
    for i in keep.iter().step_by(7) {
        let a = pods[*i].ip_json(&["addr", "show", "eth0"]).to_string();
        let ip = addr_of[i].split('/').next().unwrap_or("");
        assert!(a.contains(ip), "pod {i} keeps {ip}: {a}");
    }

    // The rest goes; then GC with nothing valid, twice (idempotent).
    std::thread::scope(|s| {
        for (i, p) in pods.iter().enumerate().skip(DELS) {
            let (env, conf) = (&env, &conf);
            s.spawn(move || env.call("DEL", &id(i), &p.path(), conf).ok());
        }
    });
    ops += ADDS - DELS;
    env.gc(&conf, &[]).ok();
    env.gc(&conf, &[]).ok();
    ops += 2;
    let alloc = suites::allocations(env.ipam_dir.path());
    let rest = suites::leftovers(env.state_dir.path());
    let rest_ipam = suites::leftovers(env.ipam_dir.path());
    let veths: Vec<String> = suites::links(&env.node)
        .into_iter()
        .filter(|l| l != "ccbr0")
        .collect();
    let nft = suites::nft_entries(&env.node);
    eprintln!("state dir after: {:?}", suites::tree(env.state_dir.path()));
    eprintln!("ipam dir after: {:?}", suites::tree(env.ipam_dir.path()));
    assert!(alloc.is_empty(), "leaked addresses: {alloc:?}");
    assert!(rest.is_empty(), "leaked records: {rest:?}");
    assert!(rest_ipam.is_empty(), "leaked ipam files: {rest_ipam:?}");
    assert!(veths.is_empty(), "leaked links: {veths:?}");
    assert!(nft.is_empty(), "leaked nft entries: {nft:?}");
    println!(
        "RELIABILITY suite=concurrency adds={ADDS} dels={} gcs=12 ops={ops} duplicates=0 leaked=0",
        ADDS
    );
}
