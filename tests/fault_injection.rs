//! Standing suite: SIGKILL bridge, ptp, portmap and host-local in the
//! middle of ADD and DEL, at random moments, hundreds of times; then DEL
//! and GC must leave no duplicate address, no leaked address, link, nft
//! element or rule, record file or temp file.
//!
//! Each kill takes the plugin's whole process group (the plugin and the
//! IPAM plugin it may have started), as a runtime's timeout does when it
//! tears down the call; the seed of each run is printed for replay
//! (`RCNI_FAULT_SEED`).

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suites;

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use testutil::{command_in, run_plugin, Call, PluginDir, TempDir, TestNs};

/// Per plugin: at most this many kills, and at most this long killing.
const MAX_KILLS: usize = 150;
const BUDGET: Duration = Duration::from_secs(12);
const PODS: usize = 6;

struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("RCNI_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                use std::hash::{BuildHasher, Hasher};
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u32(std::process::id());
                h.finish() | 1
            });
        eprintln!("fault injection seed {seed} (RCNI_FAULT_SEED={seed} replays it)");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct World {
    bin: PluginDir,
    node: TestNs,
    pods: Vec<TestNs>,
    ipam: TempDir,
    state: TempDir,
    plugin: &'static str,
    net: String,
}

impl World {
    fn new(plugin: &'static str, tag: &str) -> World {
        World {
            bin: PluginDir::install(Path::new(env!("CARGO_BIN_EXE_rcni"))),
            node: TestNs::new(tag),
            pods: (0..PODS).map(|_| TestNs::new(tag)).collect(),
            ipam: TempDir::new("fiipam"),
            state: TempDir::new("fistate"),
            plugin,
            net: format!("fault-{}", testutil::unique("n")),
        }
    }

    fn id(&self, i: usize) -> String {
        format!("fault-{}-{i}", self.plugin)
    }

    /// The config of pod `i` (portmap's carries the pod's own prevResult
    /// and host port).
    fn conf(&self, i: usize, version: &str) -> Value {
        let ipam = json!({"type": "host-local", "subnet": "10.232.0.0/24",
                          "dataDir": self.ipam.path()});
        match self.plugin {
            "bridge" => json!({"cniVersion": version, "name": self.net, "type": "bridge",
                "bridge": "fibr0", "isGateway": true, "ipMasq": true,
                "stateDir": self.state.path(), "ipam": ipam}),
            "ptp" => json!({"cniVersion": version, "name": self.net, "type": "ptp",
                "ipMasq": true, "stateDir": self.state.path(), "ipam": ipam}),
            "host-local" => json!({"cniVersion": version, "name": self.net,
                "type": "host-local", "ipam": ipam}),
            "portmap" => json!({"cniVersion": version, "name": self.net, "type": "portmap",
                "runtimeConfig": {"portMappings": [
                    {"hostPort": 20000 + i, "containerPort": 80, "protocol": "tcp"},
                    {"hostPort": 20000 + i, "containerPort": 80, "protocol": "udp"}]},
                "prevResult": {"cniVersion": version,
                    "interfaces": [{"name": "eth0", "sandbox": self.pods[i].path()}],
                    "ips": [{"address": format!("10.232.0.{}/24", 10 + i), "interface": 0}]}}),
            other => panic!("no config for {other}"),
        }
    }

    fn call(&self, cmd: &str, i: usize) -> testutil::Outcome {
        let conf = self.conf(i, "1.1.0");
        let call = Call::new(cmd, &self.id(i), &self.pods[i].path(), &conf.to_string());
        run_plugin(self.bin.path(), self.plugin, &call, Some(self.node.ns()))
    }

    fn gc(&self, valid: &[usize]) -> testutil::Outcome {
        let mut conf = self.conf(0, "1.1.0");
        conf["cni.dev/valid-attachments"] = valid
            .iter()
            .map(|i| json!({"containerID": self.id(*i), "ifname": "eth0"}))
            .collect();
        let call = Call::new("GC", "", Path::new(""), &conf.to_string());
        run_plugin(self.bin.path(), self.plugin, &call, Some(self.node.ns()))
    }

    /// Starts `cmd` for pod `i`, waits `delay`, SIGKILLs the process
    /// group. True when the kill landed (the call had not finished).
    fn kill_during(&self, cmd: &str, i: usize, delay: Duration) -> bool {
        let conf = self.conf(i, "1.1.0").to_string();
        let mut c = command_in(Some(self.node.ns()), self.bin.path().join(self.plugin));
        c.env_clear()
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", self.id(i))
            .env("CNI_NETNS", self.pods[i].path())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", self.bin.path())
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().expect("spawn plugin");
        if let Some(mut w) = child.stdin.take() {
            let _ = w.write_all(conf.as_bytes());
        }
        std::thread::sleep(delay);
        let finished = matches!(child.try_wait(), Ok(Some(_)));
        let pgid = child.id() as i32;
        // SAFETY: signals our own child's process group.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = child.wait();
        // The group may hold a grandchild (IPAM) that outlives the wait;
        // make sure it is gone before the next call.
        let deadline = Instant::now() + Duration::from_secs(2);
        // SAFETY: probing a process group with signal 0.
        while unsafe { libc::kill(-pgid, 0) } == 0 && Instant::now() < deadline {
            // SAFETY: kill(2) takes plain integers and touches no memory of
            // ours; the group is the one our child led (process_group(0)).
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        !finished
    }

    fn snapshot(&self) -> Vec<String> {
        let mut left = Vec::new();
        for a in suites::allocations(self.ipam.path()) {
            left.push(format!("address {a}"));
        }
        for f in suites::leftovers(self.ipam.path()) {
            left.push(format!("ipam file {f}"));
        }
        for f in suites::leftovers(self.state.path()) {
            left.push(format!("state file {f}"));
        }
        for l in suites::links(&self.node) {
            if l != "fibr0" {
                left.push(format!("node link {l}"));
            }
        }
        for (i, p) in self.pods.iter().enumerate() {
            for l in suites::links(p) {
                left.push(format!("pod {i} link {l}"));
            }
        }
        for e in suites::nft_entries(&self.node) {
            left.push(format!("nft {e}"));
        }
        left
    }
}

fn storm(plugin: &'static str, tag: &str) {
    let w = World::new(plugin, tag);
    let mut rng = Rng::new();
    // How long an undisturbed ADD and DEL take: kills land in that window.
    let t = Instant::now();
    w.call("ADD", 0).ok();
    w.call("DEL", 0).ok();
    let window = (t.elapsed() / 2).max(Duration::from_millis(2));
    // What stays once every attachment is gone (tables, base chains and
    // their jump rules): the storm must end back here.
    let baseline = w.snapshot();
    let window_us = window.as_micros() as u64 * 12 / 10;

    let start = Instant::now();
    let (mut kills, mut attempts) = (0usize, 0usize);
    while kills < MAX_KILLS && start.elapsed() < BUDGET {
        let i = rng.below(PODS as u64) as usize;
        let cmd = if rng.below(10) < 6 { "ADD" } else { "DEL" };
        let delay = Duration::from_micros(rng.below(window_us));
        attempts += 1;
        if w.kill_during(cmd, i, delay) {
            kills += 1;
        }
    }
    assert!(kills > 0, "no kill landed in {attempts} attempts");

    // After the storm, as a runtime does after a failed ADD, every pod
    // gets a DEL, then a real ADD: each must work and no address may be
    // handed out twice.
    for i in 0..PODS {
        w.call("DEL", i).ok();
    }
    let mut seen = BTreeSet::new();
    if plugin != "portmap" {
        for i in 0..PODS {
            let v = w.call("ADD", i).ok();
            let a = v["ips"][0]["address"]
                .as_str()
                .expect("address")
                .to_string();
            assert!(seen.insert(a.clone()), "{plugin}: duplicate address {a}");
        }
        assert_eq!(
            suites::allocations(w.ipam.path()).len(),
            PODS,
            "{plugin}: one allocation per pod after the storm: {:?}",
            suites::allocations(w.ipam.path())
        );
    } else {
        for i in 0..PODS {
            w.call("ADD", i).ok();
        }
    }
    // Then DEL everything, GC with nothing valid, and nothing may be left.
    for i in 0..PODS {
        w.call("DEL", i).ok();
        w.call("DEL", i).ok();
    }
    w.gc(&[]).ok();
    let left = suites::new_since(&baseline, w.snapshot());
    assert!(left.is_empty(), "{plugin}: left behind: {left:#?}");
    println!(
        "RELIABILITY suite=fault plugin={plugin} kills={kills} attempts={attempts} leaked=0 duplicates=0"
    );
}

#[test]
fn sigkill_bridge_add_and_del() {
    storm("bridge", "fib");
}

#[test]
fn sigkill_ptp_add_and_del() {
    storm("ptp", "fip");
}

#[test]
fn sigkill_portmap_add_and_del() {
    storm("portmap", "fim");
}

#[test]
fn sigkill_host_local_add_and_del() {
    storm("host-local", "fih");
}
