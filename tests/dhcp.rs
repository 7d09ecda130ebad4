//! dhcp IPAM against a real DHCP server: dnsmasq runs in a "server"
//! namespace, wired through a bridge in the node namespace to the pods; the
//! lease daemon runs in the node namespace with its socket in a temp dir.
//! Every packet stays inside the test's namespaces.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use testutil::{
    command_in, per_version, run_plugin, tcp_exchange, Call, Outcome, PluginDir, TempDir, TestNs,
};

const SERVER_IP: &str = "10.66.0.1";
const NODE_IP: &str = "10.66.0.2";

/// dnsmasq is the DHCP server of these tests; `scripts/dev.sh setup`
/// installs it, so its absence is a broken setup, not a reason to skip.
fn require_dnsmasq() {
    assert!(
        Path::new("/usr/sbin/dnsmasq").exists(),
        "dnsmasq missing: apt-get install dnsmasq-base (scripts/dev.sh setup does)"
    );
}

/// Kills and reaps a child process on drop (also when a test panics).
struct Proc(Option<Child>);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Env {
    // Processes first: they stop before their namespaces go away.
    daemon: Proc,
    _dnsmasq: Proc,
    bin: PluginDir,
    tmp: TempDir,
    node: TestNs,
    server: TestNs,
    bridge: String,
    net: String,
}

impl Env {
    /// Topology and dnsmasq; the daemon only when `daemon` is set.
    fn new(tag: &str, daemon: bool) -> Env {
        Env::with_options(tag, daemon, &[])
    }

    fn with_options(tag: &str, daemon: bool, extra: &[&str]) -> Env {
        let node = TestNs::new(tag);
        let server = TestNs::new("srv");
        let tmp = TempDir::new("dhcp");
        let bridge = testutil::unique("dhbr");
        node.exec(&["ip", "link", "add", &bridge, "type", "bridge"]);
        node.exec(&["ip", "link", "set", &bridge, "up"]);
        // The node has an address on the bridge: the daemon can then reach
        // the server after a pod's interface is already gone.
        node.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{NODE_IP}/24"),
            "dev",
            &bridge,
        ]);
        let host_end = testutil::unique("dhs");
        node.exec(&[
            "ip",
            "link",
            "add",
            &host_end,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            server.name(),
        ]);
        node.exec(&["ip", "link", "set", &host_end, "master", &bridge, "up"]);
        server.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{SERVER_IP}/24"),
            "dev",
            "eth0",
        ]);
        server.exec(&["ip", "link", "set", "eth0", "up"]);
        let leases = tmp.path().join("leases");
        let log = std::fs::File::create(tmp.path().join("dnsmasq.log")).expect("log file");
        // A test may narrow the pool with its own --dhcp-range.
        let default_range = "--dhcp-range=10.66.0.100,10.66.0.199,255.255.255.0,2m";
        let own_range = extra.iter().any(|a| a.starts_with("--dhcp-range="));
        let dnsmasq = command_in(Some(server.ns()), "/usr/sbin/dnsmasq")
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--port=0",
                "--interface=eth0",
                "--bind-interfaces",
                "--user=root",
                "--no-ping",
                "--dhcp-authoritative",
                "--log-dhcp",
                "--dhcp-option=option:router,10.66.0.1",
            ])
            .args((!own_range).then_some(default_range))
            .args(extra)
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .arg(format!(
                "--pid-file={}",
                tmp.path().join("dnsmasq.pid").display()
            ))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dnsmasq");
        let mut env = Env {
            daemon: Proc(None),
            _dnsmasq: Proc(Some(dnsmasq)),
            bin: PluginDir::install(Path::new(env!("CARGO_BIN_EXE_rcni"))),
            tmp,
            node,
            server,
            bridge,
            net: format!("dh-{}", testutil::unique("n")),
        };
        if daemon {
            env.start_daemon();
        }
        env
    }

    fn socket(&self) -> PathBuf {
        self.tmp.path().join("run/dhcp.sock")
    }

    /// Starts the daemon as the reference's `dhcp daemon` (the link name).
    fn start_daemon(&mut self) {
        self.start_daemon_with(&["-timeout", "5s"]);
    }

    /// The daemon with these flags besides `-socketpath` (a running one is
    /// stopped first; its log is appended to).
    fn start_daemon_with(&mut self, flags: &[&str]) {
        self.daemon = Proc(None);
        let _ = std::fs::remove_file(self.socket());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp.path().join("daemon.log"))
            .expect("log file");
        let child = command_in(Some(self.node.ns()), self.bin.path().join("dhcp"))
            .args(["daemon", "-socketpath"])
            .arg(self.socket())
            .args(flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start daemon");
        self.daemon = Proc(Some(child));
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            assert!(Instant::now() < deadline, "daemon did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.tmp.path().join(n)).unwrap_or_default();
        format!(
            "--- daemon\n{}\n--- dnsmasq\n{}",
            read("daemon.log"),
            read("dnsmasq.log")
        )
    }

    fn leases(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("leases")).unwrap_or_default()
    }

    /// Waits until the server's lease file does (or does not) list `ip`.
    fn wait_lease(&self, ip: &str, present: bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let has = |l: &str| l.split_whitespace().any(|w| w == ip);
        while has(&self.leases()) != present {
            assert!(
                Instant::now() < deadline,
                "lease of {ip} present={} expected {present}: {}\n{}",
                !present,
                self.leases(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ipam(&self) -> Value {
        json!({"type": "dhcp", "daemonSocketPath": self.socket()})
    }

    fn bridge_conf(&self, v: &str) -> Value {
        json!({
            "cniVersion": v,
            "name": self.net,
            "type": "bridge",
            "bridge": self.bridge,
            "stateDir": self.tmp.path().join("state"),
            "ipam": self.ipam(),
        })
    }

    fn call(&self, plugin: &str, cmd: &str, id: &str, pod: &Path, conf: &Value) -> Outcome {
        let call = Call::new(cmd, id, pod, &conf.to_string());
        run_plugin(self.bin.path(), plugin, &call, Some(self.node.ns()))
    }
}

/// The address (without prefix) and prefix of a result of any version.
fn result_ip(r: &Value) -> (String, String) {
    let a = r["ips"][0]["address"]
        .as_str()
        .or_else(|| r["ip4"]["ip"].as_str())
        .unwrap_or_else(|| panic!("no address in {r}"));
    let (ip, len) = a.split_once('/').expect("cidr");
    (ip.to_string(), len.to_string())
}

fn pod_addr(pod: &TestNs) -> Vec<String> {
    let j = pod.ip_json(&["-4", "addr", "show", "dev", "eth0"]);
    j[0]["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| Some(format!("{}/{}", x["local"].as_str()?, x["prefixlen"])))
                .collect()
        })
        .unwrap_or_default()
}

per_version!(bridge_with_dhcp_every_version, |v| {
    require_dnsmasq();
    let env = Env::new("dhb", true);
    let pod = TestNs::new("dhp");
    let id = testutil::unique("c");
    let conf = env.bridge_conf(v);
    let out = env.call("bridge", "ADD", &id, &pod.path(), &conf);
    if out.code != 0 {
        panic!("ADD failed: {} {}\n{}", out.stdout, out.stderr, env.logs());
    }
    let r = out.ok();
    let (ip, len) = result_ip(&r);
    assert!(ip.starts_with("10.66.0.1"), "{r}");
    assert_eq!(len, "24");
    // Result: gateway and default route from option 3.
    if testutil::is_legacy(v) {
        assert_eq!(r["ip4"]["gateway"], SERVER_IP, "{r}");
        assert_eq!(r["ip4"]["routes"][0]["dst"], "0.0.0.0/0", "{r}");
    } else {
        assert_eq!(r["ips"][0]["gateway"], SERVER_IP, "{r}");
        assert_eq!(
            r["routes"],
            json!([{"dst": "0.0.0.0/0", "gw": SERVER_IP}]),
            "{r}"
        );
    }
    // Kernel: the pod has the lease and the default route.
    assert_eq!(pod_addr(&pod), vec![format!("{ip}/24")]);
    let routes = pod.ip_json(&["-4", "route", "show", "default"]);
    assert_eq!(routes[0]["gateway"], SERVER_IP, "{routes}");
    env.wait_lease(&ip, true);
    // Real traffic both ways between pod and server.
    assert_eq!(tcp_exchange(&pod, &env.server, SERVER_IP, 8080), ip);
    assert_eq!(tcp_exchange(&env.server, &pod, &ip, 8081), SERVER_IP);

    if v != "0.1.0" && v != "0.2.0" && v != "0.3.0" && v != "0.3.1" {
        let mut c = conf.clone();
        c["prevResult"] = r.clone();
        env.call("bridge", "CHECK", &id, &pod.path(), &c).ok();
    }
    env.call("bridge", "DEL", &id, &pod.path(), &conf).ok();
    // The pod's interface went first, the RELEASE still reached dnsmasq.
    env.wait_lease(&ip, false);
    env.call("bridge", "DEL", &id, &pod.path(), &conf).ok();
    env.call("bridge", "DEL", &id, Path::new(""), &conf).ok();
    // Shown with --nocapture: what the daemon and the server did.
    eprintln!("{}", env.logs());
});

#[test]
fn priority_is_the_metric_of_every_route() {
    require_dnsmasq();
    let env = Env::new("dhpr", true);
    let pod = TestNs::new("dhpr");
    let mut conf = env.bridge_conf("1.1.0");
    conf["ipam"]["priority"] = json!(150);
    let out = env.call("bridge", "ADD", "pod-pr", &pod.path(), &conf);
    if out.code != 0 {
        panic!("ADD failed: {} {}\n{}", out.stdout, out.stderr, env.logs());
    }
    let r = out.ok();
    assert_eq!(
        r["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": SERVER_IP, "priority": 150}]),
        "{r}"
    );
    // The kernel route carries the metric.
    let routes = pod.ip_json(&["-4", "route", "show", "default"]);
    assert_eq!(routes[0]["gateway"], SERVER_IP, "{routes}");
    assert_eq!(routes[0]["metric"], 150, "{routes}");
    let (ip, _) = result_ip(&r);
    assert_eq!(tcp_exchange(&pod, &env.server, SERVER_IP, 8095), ip);
    let mut c = conf.clone();
    c["prevResult"] = r.clone();
    env.call("bridge", "CHECK", "pod-pr", &pod.path(), &c).ok();
    env.call("bridge", "DEL", "pod-pr", &pod.path(), &conf).ok();
    env.wait_lease(&ip, false);
    env.call("bridge", "DEL", "pod-pr", &pod.path(), &conf).ok();

    // Not a metric: refused before any lease is asked for.
    for bad in [json!(-1), json!("high"), json!(1.5)] {
        let mut c = env.bridge_conf("1.1.0");
        c["ipam"]["priority"] = bad.clone();
        let out = env.call("dhcp", "ADD", "pod-pr2", &pod.path(), &c);
        assert_eq!(out.err_code(), 7, "{bad}: {}", out.stdout);
        assert!(out.stdout.contains("priority"), "{bad}: {}", out.stdout);
    }
    assert!(!env.logs().contains("pod-pr2"), "{}", env.logs());
}

/// `-resendtimeout`: the server is silent for its first seconds (its link
/// is down). An ADD whose daemon stops retrying after 1 s fails; the same
/// ADD under a daemon that keeps trying for 60 s gets the lease once the
/// server answers.
#[test]
fn resendtimeout_bounds_how_long_add_keeps_asking() {
    require_dnsmasq();
    let mut env = Env::new("dhrt", false);
    let conf = env.bridge_conf("1.1.0");
    let wake_server_later = |env: &Env| {
        env.server.exec(&["ip", "link", "set", "eth0", "down"]);
        let server = env.server.name().to_string();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(4));
            let ok = std::process::Command::new("ip")
                .args(["-n", &server, "link", "set", "eth0", "up"])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "server link up");
        })
    };

    env.start_daemon_with(&["-timeout", "1s", "-resendtimeout", "1s"]);
    let pod = TestNs::new("dhrt");
    let waker = wake_server_later(&env);
    let out = env.call("bridge", "ADD", "pod-rt", &pod.path(), &conf);
    assert_eq!(out.err_code(), 11, "{}\n{}", out.stdout, env.logs());
    assert!(out.stdout.contains("resendtimeout"), "{}", out.stdout);
    // Nothing left of the attempt.
    assert!(!pod.link_names().contains(&"eth0".to_string()));
    waker.join().expect("waker");

    env.start_daemon_with(&["-timeout", "1s", "-resendtimeout", "60s"]);
    let waker = wake_server_later(&env);
    let out = env.call("bridge", "ADD", "pod-rt", &pod.path(), &conf);
    waker.join().expect("waker");
    if out.code != 0 {
        panic!("ADD failed: {} {}\n{}", out.stdout, out.stderr, env.logs());
    }
    let r = out.ok();
    let (ip, _) = result_ip(&r);
    env.wait_lease(&ip, true);
    assert!(env.logs().contains("trying again"), "{}", env.logs());
    assert_eq!(tcp_exchange(&pod, &env.server, SERVER_IP, 8096), ip);
    env.call("bridge", "DEL", "pod-rt", &pod.path(), &conf).ok();
    env.wait_lease(&ip, false);
    env.call("bridge", "DEL", "pod-rt", &pod.path(), &conf).ok();
}

#[test]
fn two_pods_get_different_leases_and_talk() {
    require_dnsmasq();
    let env = Env::new("dh2", true);
    let conf = env.bridge_conf("1.1.0");
    let a = TestNs::new("dha");
    let b = TestNs::new("dhb");
    // In parallel: the daemon serves both at once.
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| env.call("bridge", "ADD", "pod-a", &a.path(), &conf));
        let tb = s.spawn(|| env.call("bridge", "ADD", "pod-b", &b.path(), &conf));
        (ta.join().expect("a"), tb.join().expect("b"))
    });
    let (ra, rb) = (ra.ok(), rb.ok());
    let (ipa, _) = result_ip(&ra);
    let (ipb, _) = result_ip(&rb);
    assert_ne!(ipa, ipb);
    env.wait_lease(&ipa, true);
    env.wait_lease(&ipb, true);
    assert_eq!(tcp_exchange(&a, &b, &ipb, 8090), ipa);
    // ADD again for the same attachment returns the held lease.
    let again = env.call("bridge", "ADD", "pod-a", &a.path(), &conf);
    assert_ne!(again.code, 0, "eth0 exists already");
    let direct = env.call("dhcp", "ADD", "pod-a", &a.path(), &conf).ok();
    assert_eq!(result_ip(&direct).0, ipa);

    // GC keeps pod-a only: pod-b's lease is released.
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "pod-a", "ifname": "eth0"}]);
    env.call("dhcp", "GC", "", Path::new(""), &gc).ok();
    env.wait_lease(&ipb, false);
    env.wait_lease(&ipa, true);
    env.call("bridge", "DEL", "pod-a", &a.path(), &conf).ok();
    env.call("bridge", "DEL", "pod-b", &b.path(), &conf).ok();
    env.wait_lease(&ipa, false);
}

#[test]
fn released_address_goes_to_the_next_client() {
    require_dnsmasq();
    // The dhcp plugin alone on an interface the test made (as the
    // reference's own tests do): the RELEASE leaves through that interface.
    // A pool of one address: the next client gets it only if it was
    // really released.
    let env = Env::with_options(
        "dhr",
        true,
        &["--dhcp-range=10.66.0.150,10.66.0.150,255.255.255.0,2m"],
    );
    let pod = TestNs::new("dhq");
    let host_end = testutil::unique("dhv");
    env.node.exec(&[
        "ip",
        "link",
        "add",
        &host_end,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        pod.name(),
    ]);
    env.node
        .exec(&["ip", "link", "set", &host_end, "master", &env.bridge, "up"]);
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": env.net,
        "ipam": env.ipam(),
    });
    let r = env.call("dhcp", "ADD", "first", &pod.path(), &conf).ok();
    assert!(
        r.get("interfaces").is_none(),
        "IPAM results have no interfaces: {r}"
    );
    let (ip, _) = result_ip(&r);
    env.wait_lease(&ip, true);
    // The daemon brought the interface up for the exchange.
    let link = pod.ip_json(&["link", "show", "eth0"]);
    assert!(link[0]["flags"].to_string().contains("UP"), "{link}");
    env.call("dhcp", "DEL", "first", &pod.path(), &conf).ok();
    env.wait_lease(&ip, false);
    // The only address of the pool goes to the next client: the first one
    // released it.
    let r2 = env.call("dhcp", "ADD", "second", &pod.path(), &conf).ok();
    let (ip2, _) = result_ip(&r2);
    env.wait_lease(&ip2, true);
    assert_eq!(ip2, ip, "the released address is handed out again");
    assert!(env.leases().contains(&format!(" {ip} ")));
    env.call("dhcp", "DEL", "second", &pod.path(), &conf).ok();
    env.call("dhcp", "DEL", "second", &pod.path(), &conf).ok();
}

#[test]
fn daemon_not_running_is_a_clear_error() {
    require_dnsmasq();
    let mut env = Env::new("dhn", false);
    let pod = TestNs::new("dho");
    let conf = env.bridge_conf("1.1.0");
    let out = env.call("bridge", "ADD", "c1", &pod.path(), &conf);
    assert_eq!(out.err_code(), 11, "{}", out.stdout);
    assert!(out.stdout.contains("DHCP daemon"), "{}", out.stdout);
    // Nothing left behind by the failed ADD.
    assert_eq!(pod.link_names(), vec!["lo".to_string()]);
    let st = env.call("bridge", "STATUS", "", Path::new(""), &conf);
    assert_eq!(st.err_code(), 50, "{}", st.stdout);
    let st = env.call("dhcp", "STATUS", "", Path::new(""), &conf);
    assert_eq!(st.err_code(), 50, "{}", st.stdout);

    env.start_daemon();
    env.call("dhcp", "STATUS", "", Path::new(""), &conf).ok();
    env.call("bridge", "STATUS", "", Path::new(""), &conf).ok();
    // CHECK for a lease the daemon does not hold fails.
    let mut c = conf.clone();
    c["prevResult"] = json!({"cniVersion": "1.1.0", "ips": [{"address": "10.66.0.100/24"}]});
    let out = env.call("dhcp", "CHECK", "c1", &pod.path(), &c);
    assert_eq!(out.err_code(), 3, "{}", out.stdout);
}

#[test]
fn daemon_runs_as_rcni_plugin_dhcp_daemon_and_cleans_up() {
    let tmp = TempDir::new("dhd");
    let node = TestNs::new("dhd");
    let sock = tmp.path().join("sub/dir/d.sock");
    let pid = tmp.path().join("d.pid");
    let mut child = Proc(Some(
        command_in(Some(node.ns()), env!("CARGO_BIN_EXE_rcni"))
            .args(["plugin", "dhcp", "daemon", "-socketpath"])
            .arg(&sock)
            .arg(format!("-pidfile={}", pid.display()))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "daemon did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let c = child.0.as_mut().expect("child");
    assert_eq!(
        std::fs::read_to_string(&pid).expect("pidfile"),
        c.id().to_string()
    );
    // A second daemon on the same socket refuses to start.
    let second = command_in(Some(node.ns()), env!("CARGO_BIN_EXE_rcni"))
        .args(["plugin", "dhcp", "daemon", "-socketpath"])
        .arg(&sock)
        .stderr(Stdio::null())
        .status()
        .expect("second");
    assert!(!second.success());
    // SIGTERM: socket and pidfile are removed.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    let status = c.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    assert!(!sock.exists());
    assert!(!pid.exists());
    // Bad flags are a usage error.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_rcni"))
        .args(["plugin", "dhcp", "daemon", "-bogus"])
        .stderr(Stdio::null())
        .status()
        .expect("bad");
    assert_eq!(bad.code(), Some(2));
}

#[test]
fn lease_is_renewed_at_t1() {
    require_dnsmasq();
    // dnsmasq's shortest lease is 2 minutes, but T1/T2 can be sent shorter.
    let env = Env::with_options(
        "dht",
        true,
        &["--dhcp-option=option:T1,3", "--dhcp-option=option:T2,100"],
    );
    let pod = TestNs::new("dhu");
    let mut conf = env.bridge_conf("1.0.0");
    // dnsmasq sends its configured T1/T2 only when asked for them; the
    // defaults (mask, router) stay requested without skipDefault.
    conf["ipam"]["request"] = json!([{"option": "58"}, {"option": "59"}]);
    let r = env
        .call("bridge", "ADD", "renewer", &pod.path(), &conf)
        .ok();
    let (ip, _) = result_ip(&r);
    let acks = || {
        std::fs::read_to_string(env.tmp.path().join("dnsmasq.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("DHCPACK") && l.contains(&ip))
            .count()
    };
    assert_eq!(acks(), 1);
    // Two renewals: T1 comes round again after each ACK.
    let deadline = Instant::now() + Duration::from_secs(15);
    while acks() < 3 {
        assert!(
            Instant::now() < deadline,
            "no renewals of {ip}\n{}",
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Renewed in place: same address, still configured, still reachable.
    assert_eq!(pod_addr(&pod), vec![format!("{ip}/24")]);
    assert_eq!(tcp_exchange(&pod, &env.server, SERVER_IP, 8085), ip);
    assert!(env.logs().contains("lease renewed"), "{}", env.logs());
    let mut c = conf.clone();
    c["prevResult"] = r.clone();
    env.call("bridge", "CHECK", "renewer", &pod.path(), &c).ok();
    env.call("bridge", "DEL", "renewer", &pod.path(), &conf)
        .ok();
    env.wait_lease(&ip, false);
}

/// A daemon of our own for the socket tests (no DHCP exchange happens, so
/// no server is needed), started with `umask` and an optional descriptor
/// limit; stderr goes to `log`.
fn spawn_daemon(
    node: &TestNs,
    sock: &Path,
    log: &Path,
    flags: &[&str],
    nofile: Option<u64>,
) -> Proc {
    use std::os::unix::process::CommandExt;
    let mut cmd = command_in(Some(node.ns()), env!("CARGO_BIN_EXE_rcni"));
    cmd.args(["plugin", "dhcp", "daemon", "-socketpath"])
        .arg(sock)
        .args(flags)
        .stderr(std::fs::File::create(log).expect("log"));
    // SAFETY: umask and setrlimit are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(0);
            if let Some(n) = nofile {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = Proc(Some(cmd.spawn().expect("spawn daemon")));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "daemon did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Bound and chmod'ed: wait until it answers.
    while ask(sock, r#"{"method":"status"}"#).is_none() {
        assert!(Instant::now() < deadline, "daemon did not answer");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// One request line, one reply line (None: no answer).
fn ask(sock: &Path, line: &str) -> Option<String> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    // A refusing daemon may answer and close before reading: the write can
    // fail while the answer is already waiting to be read.
    let _ = s.write_all(format!("{line}\n").as_bytes());
    let mut reply = String::new();
    std::io::BufReader::new(s).read_line(&mut reply).ok()?;
    (!reply.is_empty()).then_some(reply)
}

/// Connects to `sock` as uid/gid 65534 from a forked child and asks for
/// STATUS. Exit status: 10 connect refused by the file mode, 0 the daemon
/// answered "permission denied", 20 it served the request, 30 other.
fn ask_as_nobody(sock: &Path) -> i32 {
    let path = std::ffi::CString::new(sock.as_os_str().as_encoded_bytes()).expect("path");
    let req = b"{\"method\":\"status\"}\n";
    // SAFETY: the child only makes raw syscalls (async-signal-safe) on
    // memory prepared before the fork, then _exits.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork");
        if pid == 0 {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                libc::_exit(30);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            let bytes = path.as_bytes_with_nul();
            if fd < 0 || bytes.len() > addr.sun_path.len() {
                libc::_exit(30);
            }
            for (i, b) in bytes.iter().enumerate() {
                addr.sun_path[i] = *b as libc::c_char;
            }
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) != 0 {
                libc::_exit(10);
            }
            libc::write(fd, req.as_ptr().cast(), req.len());
            let mut buf = [0u8; 4096];
            let mut got = 0usize;
            loop {
                let n = libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got);
                if n <= 0 {
                    break;
                }
                got += n as usize;
                if got == buf.len() || buf[..got].contains(&b'\n') {
                    break;
                }
            }
            let reply = &buf[..got];
            let denied = reply.windows(17).any(|w| w == b"permission denied");
            libc::_exit(if denied {
                0
            } else if got > 0 {
                20
            } else {
                30
            });
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        libc::WEXITSTATUS(status)
    }
}

/// The socket is root-only (0600) whatever the umask; configured wider
/// (`-socketmode`), the daemon still refuses a non-root caller by its
/// kernel credentials (SO_PEERCRED), and serves root.
#[test]
fn daemon_socket_is_root_only_and_checks_peer_credentials() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("dhp");
    // A directory anyone may traverse, so only the socket's own mode and
    // the daemon's check stand between a user and the daemon.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let node = TestNs::new("dhp");
    let sock = tmp.path().join("d.sock");
    let log = tmp.path().join("d.log");
    let d = spawn_daemon(&node, &sock, &log, &[], None);
    let mode = std::fs::metadata(&sock).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "root only, under umask 000");
    assert_eq!(
        ask_as_nobody(&sock),
        10,
        "the socket's mode keeps nobody out"
    );
    drop(d);
    let _ = std::fs::remove_file(&sock);

    let d = spawn_daemon(&node, &sock, &log, &["-socketmode", "0666"], None);
    let mode = std::fs::metadata(&sock).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o666);
    assert_eq!(ask_as_nobody(&sock), 0, "the daemon refuses uid 65534");
    let root = ask(&sock, r#"{"method":"status"}"#).expect("root is served");
    assert!(!root.contains("error"), "{root}");
    drop(d);
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name: utime is the 14th, stime the 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// Out of descriptors, the daemon backs off instead of spinning, logs one
/// line per burst, closes idle clients after the read timeout and keeps
/// answering; past the connection cap a client is told to try again.
#[test]
fn daemon_survives_descriptor_exhaustion_and_idle_clients() {
    let tmp = TempDir::new("dhf");
    let node = TestNs::new("dhf");
    let sock = tmp.path().join("d.sock");
    let log = tmp.path().join("d.log");
    let d = spawn_daemon(
        &node,
        &sock,
        &log,
        &["-readtimeout", "1s", "-maxconns", "1000"],
        Some(24),
    );
    let pid = d.0.as_ref().expect("daemon").id();
    let before = cpu_ticks(pid);
    // 60 idle clients: more than the daemon has descriptors for.
    let idle: Vec<std::os::unix::net::UnixStream> = (0..60)
        .map(|_| std::os::unix::net::UnixStream::connect(&sock).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    // Every idle client is closed within a few read timeouts.
    let deadline = Instant::now() + Duration::from_secs(20);
    for mut s in idle {
        use std::io::Read;
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "an idle client is closed, not answered");
        assert!(Instant::now() < deadline, "idle clients closed in time");
    }
    // It keeps answering.
    let reply = ask(&sock, r#"{"method":"status"}"#).expect("the daemon still answers");
    assert!(!reply.contains("error"), "{reply}");
    let cpu = cpu_ticks(pid) - before;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let accept_lines = text.lines().filter(|l| l.contains("accept")).count();
    assert!(
        text.contains("accept: ") && text.contains("recovered"),
        "the exhaustion was seen and logged: {text}"
    );
    assert!(
        accept_lines <= 40,
        "one line per burst, not per attempt: {accept_lines} lines"
    );
    // Spinning for those seconds would cost hundreds of ticks.
    assert!(cpu < 100, "daemon used {cpu} ticks: it spun");
    drop(d);

    // The cap: with two idle clients held, a third is told to try again.
    let _ = std::fs::remove_file(&sock);
    let d = spawn_daemon(&node, &sock, &log, &["-maxconns", "2"], None);
    let held: Vec<_> = (0..2)
        .map(|_| std::os::unix::net::UnixStream::connect(&sock).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let reply = ask(&sock, r#"{"method":"status"}"#).expect("an answer, at once");
    assert!(reply.contains("\"code\":11"), "{reply}");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = ask(&sock, r#"{"method":"status"}"#).expect("answer");
        if !r.contains("error") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "served again once the cap frees: {r}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(d);
}

/// Beyond the reference (which keeps leases in memory only): the daemon is
/// killed between ADD and the renewal time and started again; the new
/// daemon resumes the saved lease, renews it with the server at T1, and
/// DEL releases it. The saved lease file goes with it.
#[test]
fn lease_survives_a_daemon_restart() {
    require_dnsmasq();
    let mut env = Env::with_options(
        "dhr",
        true,
        &["--dhcp-option=option:T1,6", "--dhcp-option=option:T2,100"],
    );
    let pod = TestNs::new("dhv");
    let mut conf = env.bridge_conf("1.1.0");
    conf["ipam"]["request"] = json!([{"option": "58"}, {"option": "59"}]);
    let r = env
        .call("bridge", "ADD", "restarted", &pod.path(), &conf)
        .ok();
    let (ip, _) = result_ip(&r);
    let dnsmasq_log = env.tmp.path().join("dnsmasq.log");
    let acks = || {
        std::fs::read_to_string(&dnsmasq_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("DHCPACK") && l.contains(&ip))
            .count()
    };
    assert_eq!(acks(), 1);
    let saved = env.tmp.path().join("run/dhcp-leases");
    let files = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(files(&saved).len(), 1, "the lease is saved");
    // A crash, well before T1 (6 s): SIGKILL, nothing flushed on the way.
    env.daemon = Proc(None);
    assert_eq!(acks(), 1, "no renewal yet");
    env.start_daemon();
    // The new daemon renews at T1 (counted from the first ACK).
    let deadline = Instant::now() + Duration::from_secs(20);
    while acks() < 2 || !env.logs().contains("lease renewed") {
        assert!(
            Instant::now() < deadline,
            "the restarted daemon did not renew {ip}\n{}",
            env.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs = env.logs();
    assert!(logs.contains("resumed saved lease"), "{logs}");
    assert!(logs.contains("lease renewed"), "{logs}");
    assert_eq!(pod_addr(&pod), vec![format!("{ip}/24")]);
    let mut c = conf.clone();
    c["prevResult"] = r.clone();
    env.call("bridge", "CHECK", "restarted", &pod.path(), &c)
        .ok();
    env.call("bridge", "DEL", "restarted", &pod.path(), &conf)
        .ok();
    // Released with the server, and nothing saved is left.
    env.wait_lease(&ip, false);
    assert!(env.logs().contains("releasing lease"), "{}", env.logs());
    assert!(files(&saved).is_empty(), "{:?}", files(&saved));
}
