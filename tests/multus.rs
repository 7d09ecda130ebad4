//! multus in real namespaces. Without Kubernetes: bridge (`eth0`) +
//! macvlan (`net1`) + ptp (`net2`) in one pod, each carrying traffic to its
//! peer; DEL (twice); a failing third delegate that leaves nothing of the
//! first two; GC and STATUS from the cache; cnitool with a conflist whose
//! first plugin is multus. With Kubernetes: against a fake API server
//! written here (no kube-apiserver can be installed on these machines),
//! listening on the node namespace's loopback and serving Pods and
//! NetworkAttachmentDefinitions, recording every PATCH.
//!
//! The plugin runs inside a per-test node namespace; `cniDir`, `confDir`,
//! IPAM and state directories are temp dirs (never /var/lib/cni or
//! /etc/cni).

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testutil::{command_in, run_plugin, tcp_exchange, Call, Outcome, PluginDir, TempDir, TestNs};

struct Env {
    bin: PluginDir,
    /// Script plugins (recorder, failer).
    scripts: TempDir,
    node: TestNs,
    tmp: TempDir,
}

impl Env {
    fn new(tag: &str) -> Env {
        let tmp = TempDir::new(tag);
        for d in ["cni", "conf", "ipam", "state", "records"] {
            std::fs::create_dir_all(tmp.path().join(d)).expect("mkdir");
        }
        let env = Env {
            bin: PluginDir::install(Path::new(env!("CARGO_BIN_EXE_rcni"))),
            scripts: TempDir::new("scripts"),
            node: TestNs::new(tag),
            tmp,
        };
        // Records its environment and stdin, answers one interface in the
        // pod and one address.
        env.script(
            "recorder",
            r#"f="$RECORDS/$CNI_COMMAND-$CNI_CONTAINERID-$CNI_IFNAME"
cat > "$f.stdin"
env | grep '^CNI_' | sort > "$f.env"
[ "$CNI_COMMAND" = ADD ] && printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","mac":"02:00:00:00:00:01","sandbox":"%s"}],"ips":[{"address":"10.99.0.7/24","interface":0}]}' "$CNI_IFNAME" "$CNI_NETNS"
exit 0"#,
        );
        env.script(
            "failer",
            r#"cat >/dev/null
[ "$CNI_COMMAND" = ADD ] || exit 0
echo '{"cniVersion":"1.0.0","code":117,"msg":"failer refuses"}'
exit 1"#,
        );
        env
    }

    fn script(&self, name: &str, body: &str) {
        let p = self.scripts.path().join(name);
        let records = self.dir("records");
        std::fs::write(
            &p,
            format!("#!/bin/sh\nRECORDS={}\n{body}\n", records.display()),
        )
        .expect("write script");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn dir(&self, d: &str) -> PathBuf {
        self.tmp.path().join(d)
    }

    fn cni_path(&self) -> String {
        format!(
            "{}:{}",
            self.bin.path().display(),
            self.scripts.path().display()
        )
    }

    /// A multus config with the test's directories.
    fn multus(&self, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": "1.0.0",
            "name": "multus-net",
            "type": "multus",
            "cniDir": self.dir("cni"),
            "confDir": self.dir("conf"),
            "binDir": self.bin.path(),
        });
        for (k, v) in extra.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    }

    fn ptp(&self, name: &str, subnet: &str) -> Value {
        json!({
            "name": name, "type": "ptp", "stateDir": self.dir("state"),
            "ipam": {"type": "host-local", "subnet": subnet, "dataDir": self.dir("ipam")}
        })
    }

    fn bridge(&self, name: &str, bridge: &str, subnet: &str) -> Value {
        json!({
            "name": name, "type": "bridge", "bridge": bridge, "isGateway": true,
            "stateDir": self.dir("state"),
            "ipam": {"type": "host-local", "subnet": subnet, "dataDir": self.dir("ipam")}
        })
    }

    fn call(&self, cmd: &str, id: &str, pod: &Path, conf: &Value, args: &str) -> Outcome {
        let mut call = Call::new(cmd, id, pod, &conf.to_string()).args(args);
        call.path = self.cni_path();
        run_plugin(self.bin.path(), "multus", &call, Some(self.node.ns()))
    }

    /// Files named like an address in host-local's store, any network.
    fn allocated(&self) -> Vec<String> {
        let mut out = Vec::new();
        for net in std::fs::read_dir(self.dir("ipam"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in std::fs::read_dir(net.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let n = f.file_name().to_string_lossy().into_owned();
                if n.parse::<std::net::IpAddr>().is_ok() {
                    out.push(n);
                }
            }
        }
        out
    }

    /// What multus and the runtime keep under cniDir.
    fn cached(&self) -> Vec<String> {
        let mut out = Vec::new();
        for d in [self.dir("cni"), self.dir("cni").join("results")] {
            for f in std::fs::read_dir(d).into_iter().flatten().flatten() {
                if f.path().is_file() {
                    out.push(f.file_name().to_string_lossy().into_owned());
                }
            }
        }
        out
    }

    fn records(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir("records"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|f| f.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn record(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir("records").join(name))
            .unwrap_or_else(|e| panic!("record {name}: {e}"))
    }
}

fn pod_links(pod: &TestNs) -> Vec<String> {
    let mut l: Vec<String> = pod.link_names().into_iter().filter(|n| n != "lo").collect();
    l.sort();
    l
}

fn node_veths(node: &TestNs) -> Vec<String> {
    node.link_names()
        .into_iter()
        .filter(|n| n.starts_with("veth"))
        .collect()
}

fn first_ip(pod: &TestNs, dev: &str) -> String {
    let v = pod.ip_json(&["-4", "addr", "show", "dev", dev]);
    v[0]["addr_info"][0]["local"]
        .as_str()
        .unwrap_or_else(|| panic!("no address on {dev}: {v}"))
        .to_string()
}

/// A veth from the node to a peer namespace holding `addr` (the macvlan
/// master's far end); returns the master's name.
fn macvlan_master(node: &TestNs, peer: &TestNs, addr: &str) -> String {
    let master = format!("mm{}", testutil::unique(""));
    node.exec(&[
        "ip",
        "link",
        "add",
        &master,
        "type",
        "veth",
        "peer",
        "name",
        "up0",
        "netns",
        peer.name(),
    ]);
    node.exec(&["ip", "link", "set", &master, "up"]);
    peer.exec(&["ip", "addr", "add", addr, "dev", "up0"]);
    peer.exec(&["ip", "link", "set", "up0", "up"]);
    master
}

#[test]
fn bridge_macvlan_ptp_in_one_pod_carry_traffic_and_del_removes_all() {
    let env = Env::new("mu3");
    let peer = TestNs::new("mup");
    let pod = TestNs::new("mupod");
    let master = macvlan_master(&env.node, &peer, "10.31.0.1/24");
    let conf = env.multus(json!({
        "delegates": [
            env.bridge("mu-br", "mubr0", "10.30.0.0/24"),
            {"name": "mu-mv", "type": "macvlan", "master": master, "mode": "bridge",
             "ipam": {"type": "host-local", "subnet": "10.31.0.0/24", "rangeStart": "10.31.0.10", "dataDir": env.dir("ipam")}},
            env.ptp("mu-ptp", "10.32.0.0/24"),
        ]
    }));
    let r = env.call("ADD", "c3", &pod.path(), &conf, "").ok();
    let names: Vec<&str> = r["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .filter(|i| i["sandbox"].is_string())
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["eth0", "net1", "net2"], "{r}");
    // The cluster network's result: bridge's address.
    assert!(
        r["ips"][0]["address"]
            .as_str()
            .unwrap_or("")
            .starts_with("10.30.0."),
        "{r}"
    );
    assert_eq!(pod_links(&pod), ["eth0", "net1", "net2"]);
    assert_eq!(
        first_ip(&pod, "eth0"),
        r["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
    );
    assert!(first_ip(&pod, "net1").starts_with("10.31.0."));
    assert!(first_ip(&pod, "net2").starts_with("10.32.0."));
    pod.wait_links_operational();

    // Each interface reaches its own peer, from its own address.
    let seen = tcp_exchange(&pod, &env.node, "10.30.0.1", 7301);
    assert_eq!(seen, first_ip(&pod, "eth0"));
    let seen = tcp_exchange(&pod, &peer, "10.31.0.1", 7302);
    assert_eq!(seen, first_ip(&pod, "net1"));
    let seen = tcp_exchange(&pod, &env.node, "10.32.0.1", 7303);
    assert_eq!(seen, first_ip(&pod, "net2"));
    assert_eq!(env.allocated().len(), 3);
    assert!(
        env.cached().iter().any(|f| f == "rcni-c3-eth0.json"),
        "{:?}",
        env.cached()
    );

    // A second ADD of the same attachment is refused and breaks nothing.
    assert_eq!(env.call("ADD", "c3", &pod.path(), &conf, "").err_code(), 4);
    assert_eq!(pod_links(&pod), ["eth0", "net1", "net2"]);

    // CHECK and STATUS through the record.
    let mut check = conf.clone();
    check["prevResult"] = r.clone();
    env.call("CHECK", "c3", &pod.path(), &check, "").ok();
    let mut status = conf.clone();
    status["cniVersion"] = json!("1.1.0");
    env.call("STATUS", "", Path::new(""), &status, "").ok();

    env.call("DEL", "c3", &pod.path(), &conf, "").ok();
    assert!(pod_links(&pod).is_empty(), "{:?}", pod_links(&pod));
    assert!(env.allocated().is_empty(), "{:?}", env.allocated());
    assert!(
        node_veths(&env.node).is_empty(),
        "{:?}",
        node_veths(&env.node)
    );
    assert!(env.cached().is_empty(), "{:?}", env.cached());
    // DEL again, and DEL without a netns: still fine.
    env.call("DEL", "c3", &pod.path(), &conf, "").ok();
    env.call("DEL", "c3", Path::new(""), &conf, "").ok();
    assert!(env.cached().is_empty(), "{:?}", env.cached());
}

#[test]
fn a_failing_third_delegate_leaves_nothing_and_answers_its_code() {
    let env = Env::new("muf");
    let peer = TestNs::new("mufp");
    let pod = TestNs::new("mufpod");
    let master = macvlan_master(&env.node, &peer, "10.31.0.1/24");
    let conf = env.multus(json!({
        "delegates": [
            env.bridge("mf-br", "mfbr0", "10.30.0.0/24"),
            {"name": "mf-mv", "type": "macvlan", "master": master,
             "ipam": {"type": "host-local", "subnet": "10.31.0.0/24", "rangeStart": "10.31.0.10", "dataDir": env.dir("ipam")}},
            {"name": "mf-fail", "type": "failer"},
        ],
        "logFile": env.dir("multus.log"),
        "logLevel": "verbose",
    }));
    let out = env.call("ADD", "cf", &pod.path(), &conf, "");
    assert_eq!(out.err_code(), 117, "{}", out.stdout);
    assert!(out.json()["msg"]
        .as_str()
        .unwrap_or("")
        .contains("failer refuses"));
    let log = std::fs::read_to_string(env.dir("multus.log")).expect("log file");
    assert!(log.contains("ADD mf-br as eth0"), "{log}");
    assert!(
        log.contains("ADD of mf-fail failed") && log.contains("undoing"),
        "{log}"
    );
    assert!(pod_links(&pod).is_empty(), "{:?}", pod_links(&pod));
    assert!(env.allocated().is_empty(), "{:?}", env.allocated());
    assert!(
        node_veths(&env.node).is_empty(),
        "{:?}",
        node_veths(&env.node)
    );
    assert!(env.cached().is_empty(), "{:?}", env.cached());
    env.call("DEL", "cf", &pod.path(), &conf, "").ok();
}

#[test]
fn config_errors_name_the_field_and_refusals_are_clear() {
    let env = Env::new("mue");
    let nowhere = Path::new("/run/netns/rcni-test-does-not-exist");
    let cases = [
        (json!({"delegates": "x"}), 7, "delegates"),
        (
            json!({"delegates": [{"name": "a", "type": "ptp"}], "namespaceIsolation": 3}),
            7,
            "namespaceIsolation",
        ),
        (json!({"clusterNetwork": 5}), 7, "clusterNetwork"),
        (json!({"clusterNetwork": "a", "cniDir": 5}), 7, "cniDir"),
        (
            json!({"clusterNetwork": "a", "readinessTimeoutSeconds": -1}),
            7,
            "readinessTimeoutSeconds",
        ),
        (
            json!({"clusterNetwork": "a", "delegates": [{"name": "b", "type": "ptp"}]}),
            7,
            "not both",
        ),
        (
            json!({"clusterNetwork": "a", "systemNamespaces": "kube-system"}),
            7,
            "systemNamespaces",
        ),
        (
            json!({"clusterNetwork": "a", "logLevel": "loud"}),
            7,
            "logLevel",
        ),
        (
            json!({"clusterNetwork": "a", "logOptions": {"maxAge": 5}}),
            2,
            "logOptions",
        ),
        (
            json!({"clusterNetwork": "a", "auxiliaryCNIChainName": "x"}),
            2,
            "auxiliaryCNIChainName",
        ),
        (json!({}), 7, "clusterNetwork"),
        (json!({"clusterNetwork": "nope"}), 7, "nope"),
    ];
    for (extra, code, word) in cases {
        let out = env.call("ADD", "ce", nowhere, &env.multus(extra.clone()), "");
        assert_eq!(out.err_code(), code, "{extra}: {}", out.stdout);
        assert!(out.stdout.contains(word), "{extra}: {}", out.stdout);
    }
    // Unknown keys are ignored: this one gets as far as the recorder.
    let pod = TestNs::new("muepod");
    let conf = env.multus(
        json!({"somethingNew": {"x": 1}, "delegates": [{"name": "rec", "type": "recorder"}]}),
    );
    env.call("ADD", "ce", &pod.path(), &conf, "").ok();
    env.call("DEL", "ce", &pod.path(), &conf, "").ok();
    assert!(env.cached().is_empty(), "{:?}", env.cached());
}

#[test]
fn gc_and_status_fan_out_from_the_cache() {
    let env = Env::new("mug");
    let (a, b) = (TestNs::new("muga"), TestNs::new("mugb"));
    let conf = env.multus(json!({
        "cniVersion": "1.1.0",
        "delegates": [env.ptp("mg-a", "10.33.0.0/24"), env.ptp("mg-b", "10.34.0.0/24")]
    }));
    env.call("ADD", "ga", &a.path(), &conf, "").ok();
    env.call("ADD", "gb", &b.path(), &conf, "").ok();
    assert_eq!(env.allocated().len(), 4);
    env.call("STATUS", "", Path::new(""), &conf, "").ok();
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ga", "ifname": "eth0"}]);
    env.call("GC", "", Path::new(""), &gc, "").ok();
    assert_eq!(pod_links(&a), ["eth0", "net1"]);
    assert!(pod_links(&b).is_empty(), "{:?}", pod_links(&b));
    assert_eq!(env.allocated().len(), 2, "{:?}", env.allocated());
    env.call("DEL", "ga", &a.path(), &conf, "").ok();
    assert!(env.allocated().is_empty());
    assert!(env.cached().is_empty(), "{:?}", env.cached());
}

#[test]
fn readiness_indicator_wait_is_bounded() {
    let env = Env::new("mur");
    let pod = TestNs::new("murpod");
    let flag = env.dir("ready");
    let conf = env.multus(json!({
        "cniVersion": "1.1.0",
        "readinessindicatorfile": flag,
        "readinessTimeoutSeconds": 0.5,
        "delegates": [{"name": "rec", "type": "recorder"}]
    }));
    let started = Instant::now();
    let out = env.call("ADD", "cr", &pod.path(), &conf, "");
    assert_eq!(out.err_code(), 11, "{}", out.stdout);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(env.records().is_empty(), "{:?}", env.records());
    assert_eq!(
        env.call("STATUS", "", Path::new(""), &conf, "").err_code(),
        50
    );

    // The file appears while ADD waits.
    let mut conf = conf;
    conf["readinessTimeoutSeconds"] = json!(20);
    let writer = {
        let flag = flag.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            std::fs::write(flag, "").expect("flag");
        })
    };
    env.call("ADD", "cr", &pod.path(), &conf, "").ok();
    writer.join().expect("writer");
    env.call("STATUS", "", Path::new(""), &conf, "").ok();
    env.call("DEL", "cr", &pod.path(), &conf, "").ok();
    assert!(env.records().iter().any(|r| r.starts_with("DEL-cr-eth0")));
}

#[test]
fn cnitool_runs_a_conflist_whose_first_plugin_is_multus() {
    let env = Env::new("muc");
    let pod = TestNs::new("mucpod");
    let netd = env.dir("net.d");
    std::fs::create_dir_all(&netd).expect("mkdir");
    let mut multus = env.multus(json!({
        "delegates": [env.ptp("mc-a", "10.35.0.0/24"), env.ptp("mc-b", "10.36.0.0/24")]
    }));
    let obj = multus.as_object_mut().expect("object");
    obj.remove("cniVersion");
    obj.remove("name");
    let list = json!({
        "cniVersion": "1.0.0", "name": "podnet",
        "plugins": [multus, {"type": "tuning", "mtu": 1400, "dataDir": env.dir("tuning")}]
    });
    std::fs::write(netd.join("10-podnet.conflist"), list.to_string()).expect("write");
    let tool = env.dir("tool");
    std::fs::create_dir_all(&tool).expect("mkdir");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rcni"), tool.join("cnitool")).expect("link");
    let run = |verb: &str| {
        let out = command_in(Some(env.node.ns()), tool.join("cnitool"))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("NETCONFPATH", &netd)
            .env("CNI_PATH", env.cni_path())
            .env("CNI_CACHE_DIR", env.dir("runtime-cache"))
            .args([verb, "podnet"])
            .arg(pod.path())
            .output()
            .expect("cnitool");
        assert!(
            out.status.success(),
            "cnitool {verb}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let r: Value = serde_json::from_str(&run("add")).expect("result");
    assert!(
        r["ips"][0]["address"]
            .as_str()
            .unwrap_or("")
            .starts_with("10.35.0."),
        "{r}"
    );
    assert_eq!(pod_links(&pod), ["eth0", "net1"]);
    let mtu = pod.ip_json(&["link", "show", "dev", "eth0"])[0]["mtu"].clone();
    assert_eq!(mtu, 1400);
    run("check");
    run("del");
    assert!(pod_links(&pod).is_empty(), "{:?}", pod_links(&pod));
    assert!(env.allocated().is_empty());
    assert!(env.cached().is_empty(), "{:?}", env.cached());
}

// ---- Kubernetes mode -------------------------------------------------------

/// What the fake API server holds and saw.
#[derive(Default)]
struct Cluster {
    /// "ns/name" → the pod's annotations.
    pods: HashMap<String, Value>,
    /// "ns/name" → spec.config (None: no config key).
    nads: HashMap<String, Option<String>>,
    /// Every request: (method, path).
    requests: Vec<(String, String)>,
    /// Every PATCH: (path, content type, body).
    patches: Vec<(String, String, Value)>,
}

/// A minimal HTTP/1.1 server standing in for kube-apiserver (none can be
/// installed on these machines). It listens on the loopback of the node
/// namespace, where the plugin runs.
struct FakeApi {
    port: u16,
    cluster: Arc<Mutex<Cluster>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeApi {
    fn start(node: &TestNs, cluster: Cluster) -> FakeApi {
        Self::start_with(node, cluster, None)
    }

    /// Serves HTTPS with this server configuration.
    fn start_tls(node: &TestNs, cluster: Cluster, tls: Arc<rustls::ServerConfig>) -> FakeApi {
        Self::start_with(node, cluster, Some(tls))
    }

    fn start_with(
        node: &TestNs,
        cluster: Cluster,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> FakeApi {
        let listener = node.run(|| TcpListener::bind("127.0.0.1:0").expect("bind"));
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let cluster = Arc::new(Mutex::new(cluster));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (cluster.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                        match &tls {
                            Some(config) => {
                                if let Ok(server) = rustls::ServerConnection::new(config.clone()) {
                                    serve_one(rustls::StreamOwned::new(server, conn), &c);
                                }
                            }
                            None => serve_one(conn, &c),
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeApi {
            port,
            cluster,
            stop,
            thread: Some(thread),
        }
    }

    fn kubeconfig(&self, dir: &Path) -> PathBuf {
        self.kubeconfig_with(dir, "http", "")
    }

    /// A kubeconfig for `scheme://127.0.0.1:port`; `cluster_extra` is more
    /// of the cluster entry (`, certificate-authority: ca.pem`).
    fn kubeconfig_with(&self, dir: &Path, scheme: &str, cluster_extra: &str) -> PathBuf {
        let p = dir.join("multus.kubeconfig");
        std::fs::write(
            &p,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: t\nclusters: [{{name: k, cluster: {{server: '{scheme}://127.0.0.1:{}'{cluster_extra}}}}}]\ncontexts: [{{name: t, context: {{cluster: k, user: u}}}}]\nusers: [{{name: u, user: {{token: secret-token}}}}]\n",
                self.port
            ),
        )
        .expect("kubeconfig");
        p
    }

    fn patches(&self) -> Vec<(String, String, Value)> {
        self.cluster.lock().expect("lock").patches.clone()
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.cluster.lock().expect("lock").requests.clone()
    }

    /// Stops answering: the port is closed (connection refused).
    fn shut_down(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn serve_one<S: Read + Write>(conn: S, cluster: &Mutex<Cluster>) {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    let (status, answer) = {
        let mut c = cluster.lock().expect("lock");
        c.requests.push((method.clone(), path.clone()));
        let auth_ok =
            headers.get("authorization").map(String::as_str) == Some("Bearer secret-token");
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if !auth_ok {
            (401, json!({"kind": "Status", "message": "Unauthorized"}))
        } else {
            match (method.as_str(), segs.as_slice()) {
                ("GET", ["api", "v1", "namespaces", ns, "pods", name]) => {
                    match c.pods.get(&format!("{ns}/{name}")) {
                        Some(a) => (
                            200,
                            json!({"kind": "Pod", "metadata": {"name": name, "namespace": ns, "annotations": a}}),
                        ),
                        None => (404, json!({"kind": "Status", "message": "pods not found"})),
                    }
                }
                ("PATCH", ["api", "v1", "namespaces", ns, "pods", name]) => {
                    let key = format!("{ns}/{name}");
                    let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let ctype = headers.get("content-type").cloned().unwrap_or_default();
                    c.patches.push((path.clone(), ctype, patch.clone()));
                    match c.pods.get_mut(&key) {
                        Some(a) => {
                            for (k, v) in patch["metadata"]["annotations"]
                                .as_object()
                                .cloned()
                                .unwrap_or_default()
                            {
                                if v.is_null() {
                                    a.as_object_mut().map(|m| m.remove(&k));
                                } else {
                                    a[k] = v;
                                }
                            }
                            (200, json!({"kind": "Pod"}))
                        }
                        None => (404, json!({"kind": "Status", "message": "pods not found"})),
                    }
                }
                (
                    "GET",
                    ["apis", "k8s.cni.cncf.io", "v1", "namespaces", ns, "network-attachment-definitions", name],
                ) => match c.nads.get(&format!("{ns}/{name}")) {
                    Some(Some(cfg)) => (
                        200,
                        json!({"kind": "NetworkAttachmentDefinition", "metadata": {"name": name, "namespace": ns}, "spec": {"config": cfg}}),
                    ),
                    Some(None) => (
                        200,
                        json!({"kind": "NetworkAttachmentDefinition", "metadata": {"name": name, "namespace": ns}, "spec": {}}),
                    ),
                    None => (404, json!({"kind": "Status", "message": "not found"})),
                },
                _ => (404, json!({"kind": "Status", "message": "no such path"})),
            }
        }
    };
    let text = answer.to_string();
    let mut conn = reader.into_inner();
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = conn.flush();
}

fn k8s_args(ns: &str, name: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID=x"
    )
}

/// The network-status list a PATCH body sets.
fn patched_status(body: &Value) -> Vec<Value> {
    let text = body["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"]
        .as_str()
        .expect("status string");
    serde_json::from_str(text).expect("status json")
}

/// (name, interface, default) of each network-status entry.
fn status_names(status: &[Value]) -> Vec<(&str, &str, bool)> {
    status
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or(""),
                s["interface"].as_str().unwrap_or(""),
                s["default"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn k8s_shorthand_inline_and_confdir_nads_status_patch_and_del_with_the_api_down() {
    let env = Env::new("muk");
    let pod = TestNs::new("mukpod");
    // net-b's NAD has no config: its conflist lives in confDir.
    let netb = json!({"cniVersion": "1.0.0", "name": "net-b", "plugins": [env.ptp("net-b", "10.42.0.0/24")]});
    std::fs::write(env.dir("conf").join("20-net-b.conflist"), netb.to_string()).expect("write");
    let mut cluster = Cluster::default();
    cluster.pods.insert(
        "web/p1".into(),
        json!({"k8s.v1.cni.cncf.io/networks": "net-a, other/net-b@data1"}),
    );
    cluster.nads.insert(
        "web/net-a".into(),
        Some(json!({"cniVersion": "1.0.0", "type": "ptp", "stateDir": env.dir("state"),
                    "ipam": {"type": "host-local", "subnet": "10.41.0.0/24", "dataDir": env.dir("ipam")}}).to_string()),
    );
    cluster.nads.insert("other/net-b".into(), None);
    let mut api = FakeApi::start(&env.node, cluster);
    let mut cluster_net = env.ptp("k8s-pod-network", "10.40.0.0/24");
    cluster_net["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}]);
    let conf = env.multus(json!({
        "kubeconfig": api.kubeconfig(env.tmp.path()),
        "delegates": [cluster_net],
    }));
    let args = k8s_args("web", "p1");
    let r = env.call("ADD", "ck", &pod.path(), &conf, &args).ok();
    assert_eq!(pod_links(&pod), ["data1", "eth0", "net1"]);
    assert!(
        r["ips"][0]["address"]
            .as_str()
            .unwrap_or("")
            .starts_with("10.40.0."),
        "{r}"
    );
    assert!(first_ip(&pod, "net1").starts_with("10.41.0."));
    assert!(first_ip(&pod, "data1").starts_with("10.42.0."));

    let patches = api.patches();
    assert_eq!(patches.len(), 1, "{patches:?}");
    let (path, ctype, body) = &patches[0];
    assert_eq!(path, "/api/v1/namespaces/web/pods/p1");
    assert_eq!(ctype, "application/merge-patch+json");
    let status = patched_status(body);
    assert_eq!(
        status_names(&status),
        [
            ("k8s-pod-network", "eth0", true),
            ("web/net-a", "net1", false),
            ("other/net-b", "data1", false)
        ]
    );
    assert_eq!(status[1]["ips"], json!([first_ip(&pod, "net1")]));
    let mac = pod.ip_json(&["link", "show", "dev", "data1"])[0]["address"].clone();
    assert_eq!(status[2]["mac"], mac);

    // The API server goes away; DEL works from the cache alone.
    api.shut_down();
    env.call("DEL", "ck", &pod.path(), &conf, &args).ok();
    assert!(pod_links(&pod).is_empty(), "{:?}", pod_links(&pod));
    assert!(env.allocated().is_empty(), "{:?}", env.allocated());
    assert!(
        node_veths(&env.node).is_empty(),
        "{:?}",
        node_veths(&env.node)
    );
    assert!(env.cached().is_empty(), "{:?}", env.cached());
    env.call("DEL", "ck", &pod.path(), &conf, &args).ok();
}

#[test]
fn k8s_json_selection_options_reach_the_delegate_and_default_route_moves() {
    let env = Env::new("muj");
    let pod = TestNs::new("mujpod");
    let mut cluster = Cluster::default();
    cluster.pods.insert(
        "web/p2".into(),
        json!({"k8s.v1.cni.cncf.io/networks": json!([
            {"name": "rec", "interface": "rec0", "ips": ["10.99.0.7/24"], "mac": "02:00:00:00:00:01",
             "cni-args": {"color": "blue"}, "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
             "bandwidth": {"ingressRate": 1000, "ingressBurst": 100}},
            {"name": "gw", "namespace": "web", "default-route": ["10.41.0.1"]}
        ]).to_string()}),
    );
    cluster.nads.insert(
        "web/rec".into(),
        Some(
            json!({"cniVersion": "1.0.0", "name": "rec", "plugins": [{"type": "recorder",
            "capabilities": {"ips": true, "mac": true, "portMappings": true, "bandwidth": true}}]})
            .to_string(),
        ),
    );
    let mut gw = env.ptp("gw", "10.41.0.0/24");
    gw["cniVersion"] = json!("1.0.0");
    cluster.nads.insert("web/gw".into(), Some(gw.to_string()));
    let api = FakeApi::start(&env.node, cluster);
    let mut cluster_net = env.ptp("k8s-pod-network", "10.40.0.0/24");
    cluster_net["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}]);
    let conf = env
        .multus(json!({"kubeconfig": api.kubeconfig(env.tmp.path()), "delegates": [cluster_net]}));
    let args = k8s_args("web", "p2");
    let r = env.call("ADD", "cj", &pod.path(), &conf, &args).ok();
    let names: Vec<&str> = r["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .filter(|i| i["sandbox"].is_string())
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["eth0", "rec0", "net2"], "{r}");

    let stdin: Value = serde_json::from_str(&env.record("ADD-cj-rec0.stdin")).expect("stdin");
    assert_eq!(stdin["runtimeConfig"]["ips"], json!(["10.99.0.7/24"]));
    assert_eq!(stdin["runtimeConfig"]["mac"], "02:00:00:00:00:01");
    assert_eq!(stdin["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    assert_eq!(stdin["runtimeConfig"]["bandwidth"]["ingressRate"], 1000);
    assert_eq!(stdin["args"]["cni"]["color"], "blue");
    let envs = env.record("ADD-cj-rec0.env");
    assert!(envs.contains("CNI_IFNAME=rec0"), "{envs}");
    assert!(
        envs.contains("IP=10.99.0.7/24") && envs.contains("MAC=02:00:00:00:00:01"),
        "{envs}"
    );
    assert!(envs.contains("K8S_POD_NAME=p2"), "{envs}");

    // default-route: the only default route now leaves through net2.
    let routes = pod.ip_json(&["-4", "route", "show", "default"]);
    let routes = routes.as_array().expect("routes");
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0]["dev"], "net2");
    assert_eq!(routes[0]["gateway"], "10.41.0.1");

    env.call("DEL", "cj", &pod.path(), &conf, &args).ok();
    assert!(pod_links(&pod).is_empty(), "{:?}", pod_links(&pod));
    assert!(env.records().iter().any(|r| r == "DEL-cj-rec0.stdin"));
    assert!(env.allocated().is_empty());
    assert!(env.cached().is_empty(), "{:?}", env.cached());
    // DEL cleared the status annotation.
    let last = api.patches().pop().expect("patch");
    assert!(last.2["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"].is_null());
}

#[test]
fn k8s_default_network_annotation_replaces_the_cluster_network() {
    let env = Env::new("mud");
    let pod = TestNs::new("mudpod");
    let mut cluster = Cluster::default();
    cluster.pods.insert(
        "web/p3".into(),
        json!({"v1.multus-cni.io/default-network": "fast",
               "k8s.v1.cni.cncf.io/networks": "net-a"}),
    );
    cluster.pods.insert(
        "web/p4".into(),
        json!({"v1.multus-cni.io/default-network": "fast, web/net-a"}),
    );
    cluster.pods.insert(
        "web/p5".into(),
        json!({"v1.multus-cni.io/default-network": "web/missing"}),
    );
    // The default network's definition lives in multusNamespace.
    let mut fast = env.ptp("fast", "10.43.0.0/24");
    fast["cniVersion"] = json!("1.0.0");
    fast["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}]);
    cluster
        .nads
        .insert("kube-system/fast".into(), Some(fast.to_string()));
    let mut net_a = env.ptp("net-a", "10.41.0.0/24");
    net_a["cniVersion"] = json!("1.0.0");
    cluster
        .nads
        .insert("web/net-a".into(), Some(net_a.to_string()));
    let api = FakeApi::start(&env.node, cluster);
    let mut cluster_net = env.ptp("k8s-pod-network", "10.40.0.0/24");
    cluster_net["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}]);
    let conf = env.multus(json!({
        "kubeconfig": api.kubeconfig(env.tmp.path()),
        "namespaceIsolation": true,
        "delegates": [cluster_net],
    }));

    let args = k8s_args("web", "p3");
    let r = env.call("ADD", "cd", &pod.path(), &conf, &args).ok();
    assert_eq!(pod_links(&pod), ["eth0", "net1"]);
    assert!(first_ip(&pod, "eth0").starts_with("10.43.0."));
    assert!(first_ip(&pod, "net1").starts_with("10.41.0."));
    assert!(
        r["ips"][0]["address"]
            .as_str()
            .unwrap_or("")
            .starts_with("10.43.0."),
        "{r}"
    );
    // The configured cluster network was not attached at all.
    let allocated = env.allocated();
    assert!(
        !allocated.iter().any(|a| a.starts_with("10.40.")),
        "{allocated:?}"
    );
    let routes = pod.ip_json(&["-4", "route", "show", "default"]);
    assert_eq!(routes[0]["dev"], "eth0", "{routes}");
    let patches = api.patches();
    assert_eq!(
        status_names(&patched_status(&patches[0].2)),
        [
            ("kube-system/fast", "eth0", true),
            ("web/net-a", "net1", false)
        ]
    );
    env.call("DEL", "cd", &pod.path(), &conf, &args).ok();
    assert!(pod_links(&pod).is_empty(), "{:?}", pod_links(&pod));
    assert!(env.allocated().is_empty(), "{:?}", env.allocated());
    assert!(env.cached().is_empty(), "{:?}", env.cached());

    // Two default networks, or one whose definition does not exist: code 7
    // before anything is attached.
    for (name, what) in [("p4", "2 networks"), ("p5", "web/missing")] {
        let out = env.call("ADD", "cd2", &pod.path(), &conf, &k8s_args("web", name));
        assert_eq!(out.err_code(), 7, "{}", out.stdout);
        assert!(out.stdout.contains(what), "{}", out.stdout);
        assert!(pod_links(&pod).is_empty(), "{:?}", pod_links(&pod));
        assert!(env.allocated().is_empty(), "{:?}", env.allocated());
        assert!(env.cached().is_empty(), "{:?}", env.cached());
    }
}

#[test]
fn k8s_namespace_isolation_and_system_namespaces() {
    let env = Env::new("mui");
    let pod = TestNs::new("muipod");
    // defaultNetworks entry: no NAD in multusNamespace, so confDir's.
    std::fs::write(
        env.dir("conf").join("30-extra.conf"),
        json!({"cniVersion": "1.0.0", "name": "extra", "type": "recorder"}).to_string(),
    )
    .expect("write");
    let mut cluster = Cluster::default();
    cluster.pods.insert(
        "team-a/p".into(),
        json!({"k8s.v1.cni.cncf.io/networks": "team-b/x"}),
    );
    cluster.pods.insert(
        "team-a/q".into(),
        json!({"k8s.v1.cni.cncf.io/networks": "default/shared"}),
    );
    cluster.pods.insert("kube-system/dns".into(), json!({}));
    let rec = json!({"cniVersion": "1.0.0", "type": "recorder"}).to_string();
    cluster.nads.insert("team-b/x".into(), Some(rec.clone()));
    cluster.nads.insert("default/shared".into(), Some(rec));
    let api = FakeApi::start(&env.node, cluster);
    let conf = env.multus(json!({
        "kubeconfig": api.kubeconfig(env.tmp.path()),
        "namespaceIsolation": true,
        "defaultNetworks": ["extra"],
        "delegates": [{"name": "cluster", "type": "recorder"}],
    }));
    let out = env.call("ADD", "ci1", &pod.path(), &conf, &k8s_args("team-a", "p"));
    assert_eq!(out.err_code(), 7);
    assert!(out.stdout.contains("namespaceIsolation"), "{}", out.stdout);
    assert!(env.records().is_empty(), "{:?}", env.records());
    assert!(env.cached().is_empty(), "{:?}", env.cached());

    // A global namespace is allowed: cluster, the default network, then the selection.
    env.call("ADD", "ci2", &pod.path(), &conf, &k8s_args("team-a", "q"))
        .ok();
    let adds: Vec<String> = env
        .records()
        .into_iter()
        .filter(|r| r.starts_with("ADD-ci2") && r.ends_with(".env"))
        .collect();
    assert_eq!(
        adds,
        ["ADD-ci2-eth0.env", "ADD-ci2-net1.env", "ADD-ci2-net2.env"]
    );
    env.call("DEL", "ci2", &pod.path(), &conf, &k8s_args("team-a", "q"))
        .ok();

    // A pod of a system namespace gets no defaultNetworks.
    env.call(
        "ADD",
        "ci3",
        &pod.path(),
        &conf,
        &k8s_args("kube-system", "dns"),
    )
    .ok();
    let adds: Vec<String> = env
        .records()
        .into_iter()
        .filter(|r| r.starts_with("ADD-ci3") && r.ends_with(".env"))
        .collect();
    assert_eq!(adds, ["ADD-ci3-eth0.env"]);
    env.call(
        "DEL",
        "ci3",
        &pod.path(),
        &conf,
        &k8s_args("kube-system", "dns"),
    )
    .ok();
    assert!(env.cached().is_empty(), "{:?}", env.cached());
    // Every Pod/NAD GET carried the token (the server answers 401 otherwise).
    assert!(api
        .requests()
        .iter()
        .any(|(m, p)| m == "GET" && p.contains("network-attachment-definitions/extra")));
}

/// A throw-away CA (PEM) and a rustls server configuration whose
/// certificate for 127.0.0.1 it signed.
fn test_pki() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert.pem().as_bytes()).expect("pem")],
            PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key pem"),
        )
        .expect("server config");
    (ca.pem(), Arc::new(config))
}

#[test]
fn k8s_over_https_trusts_the_kubeconfig_ca_only() {
    let env = Env::new("mut");
    let pod = TestNs::new("mutpod");
    let mut cluster = Cluster::default();
    cluster.pods.insert(
        "web/p3".into(),
        json!({"k8s.v1.cni.cncf.io/networks": "rec"}),
    );
    cluster.nads.insert(
        "web/rec".into(),
        Some(json!({"cniVersion": "1.0.0", "type": "recorder"}).to_string()),
    );
    let (ca, tls) = test_pki();
    let api = FakeApi::start_tls(&env.node, cluster, tls);
    std::fs::write(env.tmp.path().join("ca.pem"), ca).expect("ca");
    let kubeconfig =
        api.kubeconfig_with(env.tmp.path(), "https", ", certificate-authority: ca.pem");
    let conf = env.multus(json!({
        "kubeconfig": kubeconfig,
        "delegates": [{"name": "cluster", "type": "recorder"}],
    }));
    let args = k8s_args("web", "p3");
    env.call("ADD", "ct", &pod.path(), &conf, &args).ok();
    assert!(
        env.records().iter().any(|r| r == "ADD-ct-net1.env"),
        "{:?}",
        env.records()
    );
    assert_eq!(api.patches().len(), 1);
    env.call("DEL", "ct", &pod.path(), &conf, &args).ok();

    // Another CA: the server is not trusted, nothing runs.
    let (other_ca, _) = test_pki();
    std::fs::write(env.tmp.path().join("ca.pem"), other_ca).expect("ca");
    let before = env.records().len();
    let out = env.call("ADD", "ct2", &pod.path(), &conf, &args);
    assert_eq!(out.err_code(), 11, "{}", out.stdout);
    assert_eq!(env.records().len(), before);
    assert!(env.cached().is_empty(), "{:?}", env.cached());
}

#[test]
fn cluster_network_by_name_path_directory_inline_and_nad() {
    let env = Env::new("mun");
    let pod = TestNs::new("munpod");
    let dir = env.dir("conf");
    std::fs::write(
        dir.join("10-by-name.conflist"),
        json!({"cniVersion": "1.0.0", "name": "by-name", "plugins": [{"type": "recorder", "tag": "name"}]}).to_string(),
    )
    .expect("write");
    let other = env.dir("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(
        other.join("05-by-path.conf"),
        json!({"cniVersion": "1.0.0", "name": "by-path", "type": "recorder", "tag": "path"})
            .to_string(),
    )
    .expect("write");
    let cases = [
        (json!("by-name"), "name"),
        (json!(other.join("05-by-path.conf")), "path"),
        (json!(other), "path"),
        (
            json!({"name": "inline", "type": "recorder", "tag": "inline"}),
            "inline",
        ),
    ];
    for (i, (cluster, tag)) in cases.into_iter().enumerate() {
        let id = format!("cn{i}");
        let conf = env.multus(json!({"clusterNetwork": cluster}));
        env.call("ADD", &id, &pod.path(), &conf, "").ok();
        let stdin: Value =
            serde_json::from_str(&env.record(&format!("ADD-{id}-eth0.stdin"))).expect("stdin");
        assert_eq!(stdin["tag"], tag, "{cluster}");
        env.call("DEL", &id, &pod.path(), &conf, "").ok();
    }

    // With Kubernetes, a name is first a NetworkAttachmentDefinition in
    // multusNamespace.
    let mut cluster = Cluster::default();
    cluster.pods.insert("web/p".into(), json!({}));
    cluster.nads.insert(
        "kube-system/by-name".into(),
        Some(json!({"cniVersion": "1.0.0", "type": "recorder", "tag": "nad"}).to_string()),
    );
    let api = FakeApi::start(&env.node, cluster);
    let conf = env
        .multus(json!({"clusterNetwork": "by-name", "kubeconfig": api.kubeconfig(env.tmp.path())}));
    env.call("ADD", "cnk", &pod.path(), &conf, &k8s_args("web", "p"))
        .ok();
    let stdin: Value = serde_json::from_str(&env.record("ADD-cnk-eth0.stdin")).expect("stdin");
    assert_eq!(stdin["tag"], "nad");
    assert_eq!(stdin["name"], "by-name");
    env.call("DEL", "cnk", &pod.path(), &conf, &k8s_args("web", "p"))
        .ok();
    assert!(env.cached().is_empty(), "{:?}", env.cached());
}
