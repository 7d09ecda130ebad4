//! `rcni-bench`: rcni against the reference plugins, side by side, inside
//! throwaway namespaces only. Runs alternate A B / B A after a warm-up so
//! drift hits both sides equally. Never decides pass/fail.

mod cri;
mod density;
mod report;
mod rss;
mod runtimes;
mod walk;

use netns::NetNs;
use report::{Figure, Report, Stats};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testutil::{TempDir, TestNs};

const USAGE: &str = "\
rcni-bench — rcni vs the reference CNI plugins, in throwaway namespaces

Usage: rcni-bench [options]
  --rcni PATH          rcni binary (default: rcni next to this executable)
  --reference DIR      reference plugins (default /usr/lib/cni; 'none' to skip)
  --iterations N       timed runs per figure and side (default 30)
  --parallel K         pods in the parallel-ADD figure (default 50)
  --rounds N           rounds of the parallel-ADD figure per side (default 9)
  --quick              few iterations and small sizes (keeps the tool working in CI)
  --json FILE          write the figures as JSON
  --svg FILE           write a chart (host-local cost vs allocated; per-plugin ADD/DEL)
  --markdown FILE      write a BENCHMARKS.md with the table and the exact command
  --only LIST          run only these scenarios (comma-separated): start, bridge,
                       ptp, parallel, chain, chain-iptables, portmap, host-local,
                       kernel, rss, size, density, walk, runtimes, cri";

const SCENARIOS: &[&str] = &[
    "start",
    "bridge",
    "ptp",
    "parallel",
    "chain",
    "chain-iptables",
    "portmap",
    "host-local",
    "kernel",
    "rss",
    "size",
    "density",
    "walk",
    "runtimes",
    "cri",
];

struct Options {
    rcni: PathBuf,
    reference: Option<PathBuf>,
    iterations: usize,
    parallel: usize,
    rounds: usize,
    quick: bool,
    json: Option<PathBuf>,
    svg: Option<PathBuf>,
    markdown: Option<PathBuf>,
    /// Scenario names to run; empty = all.
    only: Vec<String>,
}

impl Options {
    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
}

fn parse_options() -> Result<Options, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut o = Options {
        rcni: exe.with_file_name("rcni"),
        reference: Some(PathBuf::from("/usr/lib/cni")),
        iterations: 30,
        parallel: 50,
        rounds: 9,
        quick: false,
        json: None,
        svg: None,
        markdown: None,
        only: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--rcni" => o.rcni = PathBuf::from(value()?),
            "--reference" => {
                let v = value()?;
                o.reference = (v != "none").then(|| PathBuf::from(v));
            }
            "--iterations" => {
                o.iterations = value()?.parse().map_err(|e| format!("--iterations: {e}"))?
            }
            "--parallel" => {
                o.parallel = value()?.parse().map_err(|e| format!("--parallel: {e}"))?
            }
            "--rounds" => o.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--quick" => o.quick = true,
            "--json" => o.json = Some(PathBuf::from(value()?)),
            "--svg" => o.svg = Some(PathBuf::from(value()?)),
            "--markdown" => o.markdown = Some(PathBuf::from(value()?)),
            "--only" => {
                o.only = value()?.split(',').map(str::to_string).collect();
                if let Some(bad) = o.only.iter().find(|s| !SCENARIOS.contains(&s.as_str())) {
                    return Err(format!(
                        "unknown scenario {bad:?}; known: {}",
                        SCENARIOS.join(",")
                    ));
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    if o.quick {
        o.iterations = o.iterations.min(3);
        o.parallel = o.parallel.min(8);
    }
    if !o.rcni.is_file() {
        return Err(format!(
            "rcni binary not found at {} (build it: cargo build --release --bin rcni, or pass --rcni)",
            o.rcni.display()
        ));
    }
    if let Some(r) = &o.reference {
        if !r.join("bridge").is_file() {
            eprintln!(
                "note: no reference plugins in {} (apt-get install containernetworking-plugins); measuring rcni alone",
                r.display()
            );
            o.reference = None;
        }
    }
    Ok(o)
}

/// One side of the comparison: a directory of plugin executables.
struct Side {
    label: &'static str,
    bin_dir: PathBuf,
    /// Second-octet base so the two sides never share subnets.
    octet: u8,
}

impl Side {
    fn has(&self, plugin: &str) -> bool {
        self.bin_dir.join(plugin).exists()
    }
}

/// A finished plugin process.
struct Run {
    elapsed: Duration,
    ok: bool,
    stdout: String,
}

pub struct Env<'a> {
    pub command: &'a str,
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
}

/// Execs one plugin inside `node` and times it from spawn to reaped.
/// stderr is discarded; failures are reported through the error object.
fn exec(side: &Side, plugin: &str, env: &Env, stdin: &str, node: &NetNs) -> Run {
    let mut cmd = Command::new(side.bin_dir.join(plugin));
    cmd.env_clear()
        .env("CNI_COMMAND", env.command)
        .env("CNI_CONTAINERID", env.container_id)
        .env("CNI_NETNS", env.netns)
        .env("CNI_IFNAME", env.ifname)
        .env("CNI_PATH", &side.bin_dir)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // Spawn from this thread switched into the node namespace: the child
    // inherits it, and without a pre_exec hook std spawns with posix_spawn
    // (vfork), as Go's os/exec does in containerd and CRI-O. A fork of this
    // many-threaded harness would otherwise be timed as plugin cost.
    let spawned = node
        .run(|| {
            let start = Instant::now();
            cmd.spawn().map(|c| (start, c))
        })
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r);
    let (start, mut child) = match spawned {
        Ok(c) => c,
        Err(e) => {
            return Run {
                elapsed: Duration::ZERO,
                ok: false,
                stdout: format!("spawn failed: {e}"),
            }
        }
    };
    if let Some(mut w) = child.stdin.take() {
        let _ = w.write_all(stdin.as_bytes());
    }
    let mut stdout = String::new();
    if let Some(mut r) = child.stdout.take() {
        let _ = r.read_to_string(&mut stdout);
    }
    let ok = child.wait().is_ok_and(|st| st.success());
    let elapsed = start.elapsed();
    Run {
        elapsed,
        ok,
        stdout,
    }
}

fn must(run: Run, what: &str) -> Run {
    if !run.ok {
        eprintln!("{what} failed: {}", run.stdout.trim());
        std::process::exit(1);
    }
    run
}

/// Waits (at most 5 s) until the CPUs were at least 90% idle for 100 ms.
/// The kernel tears down removed namespaces asynchronously; without this,
/// the previous figure's teardown would be timed as part of the next one.
fn settle() {
    fn idle_and_total() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
        let v: Vec<u64> = cpu
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
        Some((idle, v.iter().sum()))
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let a = idle_and_total();
        std::thread::sleep(Duration::from_millis(100));
        match (a, idle_and_total()) {
            (Some((i0, t0)), Some((i1, t1))) if t1 > t0 => {
                if (i1 - i0) * 10 >= (t1 - t0) * 9 {
                    return;
                }
            }
            _ => return,
        }
    }
}

/// Alternates the order of sides per iteration: A B, B A, A B, ...
fn ordered(sides: &[Side], i: usize) -> Vec<&Side> {
    let mut v: Vec<&Side> = sides.iter().collect();
    if i % 2 == 1 {
        v.reverse();
    }
    v
}

struct Samples {
    per_side: Vec<Vec<Duration>>,
}

impl Samples {
    fn new(n: usize) -> Samples {
        Samples {
            per_side: vec![Vec::new(); n],
        }
    }
}

fn index_of(sides: &[Side], s: &Side) -> usize {
    sides.iter().position(|x| x.label == s.label).unwrap_or(0)
}

fn figure(name: &str, unit: &str, sides: &[Side], samples: &Samples) -> Figure {
    let mut f = Figure::new(name, unit);
    for (s, v) in sides.iter().zip(&samples.per_side) {
        if !v.is_empty() {
            f.set(s.label, Stats::from_durations(v));
        }
    }
    f
}

// ---- scenarios ----------------------------------------------------------

fn start_floor(sides: &[Side], o: &Options, node: &TestNs) -> Figure {
    let mut samples = Samples::new(sides.len());
    let env = Env {
        command: "VERSION",
        container_id: "",
        netns: "",
        ifname: "",
    };
    for i in 0..o.iterations + 3 {
        for s in ordered(sides, i) {
            let r = must(exec(s, "loopback", &env, "", node.ns()), "VERSION");
            if i >= 3 {
                samples.per_side[index_of(sides, s)].push(r.elapsed);
            }
        }
    }
    figure("process start (VERSION)", "ms", sides, &samples)
}

fn main_conf(kind: &str, side: &Side, data: &Path, masq: bool) -> String {
    let net = format!("bench-{kind}-{}", side.label);
    let extra = if kind == "bridge" {
        format!(r#""bridge":"rb{}","isGateway":true,"#, side.octet)
    } else {
        String::new()
    };
    format!(
        // stateDir (rcni's attachment records) keeps everything in the
        // benchmark's temp dir; the reference ignores the field.
        r#"{{"cniVersion":"1.0.0","name":"{net}","type":"{kind}",{extra}"ipMasq":{masq},"stateDir":"{}","ipam":{{"type":"host-local","subnet":"10.{}.0.0/16","dataDir":"{}"}}}}"#,
        data.join("state").display(),
        side.octet,
        data.display()
    )
}

/// ADD and DEL of one pod at a time, for `kind` + host-local. Pod
/// namespaces are made before and removed after the timed loop, so the
/// kernel's namespace teardown never overlaps a measured call. With
/// `resident`, one pod stays attached to the network throughout: the steady
/// state of a node, where a network's masquerade rule already exists.
#[allow(clippy::needless_range_loop)] // pods[side][iteration]
fn add_del(
    kind: &str,
    masq: bool,
    resident: bool,
    sides: &[Side],
    o: &Options,
) -> (Figure, Figure) {
    let label = format!(
        "{kind} + host-local{}",
        match (masq, resident) {
            (true, true) => " + ipMasq, network already has a pod",
            (true, false) => " + ipMasq, first and only pod",
            _ => "",
        }
    );
    let nodes: Vec<TestNs> = sides.iter().map(|_| TestNs::new("bn")).collect();
    let data = TempDir::new("bench-data");
    let total = o.iterations + 3;
    let pods: Vec<Vec<TestNs>> = sides
        .iter()
        .map(|_| (0..total).map(|_| TestNs::new("bp")).collect())
        .collect();
    let residents: Vec<TestNs> = sides.iter().map(|_| TestNs::new("br")).collect();
    if resident {
        for (idx, s) in sides.iter().enumerate() {
            let path = residents[idx].path().display().to_string();
            let env = Env {
                command: "ADD",
                container_id: "resident",
                netns: &path,
                ifname: "eth0",
            };
            let conf = main_conf(kind, s, &data.path().join(s.label), masq);
            must(exec(s, kind, &env, &conf, nodes[idx].ns()), "resident ADD");
        }
    }
    let mut adds = Samples::new(sides.len());
    let mut dels = Samples::new(sides.len());
    settle();
    for i in 0..total {
        for s in ordered(sides, i) {
            let idx = index_of(sides, s);
            let pod_path = pods[idx][i].path().display().to_string();
            let id = format!("bench{i}");
            let conf = main_conf(kind, s, &data.path().join(s.label), masq);
            let add = Env {
                command: "ADD",
                container_id: &id,
                netns: &pod_path,
                ifname: "eth0",
            };
            let r = must(
                exec(s, kind, &add, &conf, nodes[idx].ns()),
                &format!("{} {label} ADD", s.label),
            );
            let del = Env {
                command: "DEL",
                ..add
            };
            let d = must(
                exec(s, kind, &del, &conf, nodes[idx].ns()),
                &format!("{} {label} DEL", s.label),
            );
            if i >= 3 {
                adds.per_side[idx].push(r.elapsed);
                dels.per_side[idx].push(d.elapsed);
            }
        }
    }
    (
        figure(&format!("{label} ADD"), "ms", sides, &adds),
        figure(&format!("{label} DEL"), "ms", sides, &dels),
    )
}

/// K ADDs at once onto one bridge: pods per second.
fn parallel_adds(sides: &[Side], o: &Options) -> Figure {
    let mut f = Figure::new(&format!("{} parallel bridge ADDs", o.parallel), "pods/s");
    let rounds = if o.quick { 1 } else { o.rounds.max(1) };
    let mut per_side: Vec<Vec<f64>> = vec![Vec::new(); sides.len()];
    for round in 0..rounds {
        for s in ordered(sides, round) {
            let idx = index_of(sides, s);
            let node = TestNs::new("bk");
            let data = TempDir::new("bench-par");
            let conf = main_conf("bridge", s, data.path(), false);
            let pods: Vec<TestNs> = (0..o.parallel).map(|_| TestNs::new("bq")).collect();
            settle();
            let start = Instant::now();
            let all_ok = std::thread::scope(|sc| {
                let handles: Vec<_> = pods
                    .iter()
                    .enumerate()
                    .map(|(k, pod)| {
                        let conf = &conf;
                        let node = &node;
                        sc.spawn(move || {
                            let path = pod.path().display().to_string();
                            let id = format!("par{k}");
                            let env = Env {
                                command: "ADD",
                                container_id: &id,
                                netns: &path,
                                ifname: "eth0",
                            };
                            exec(s, "bridge", &env, conf, node.ns()).ok
                        })
                    })
                    .collect();
                handles.into_iter().all(|h| h.join().unwrap_or(false))
            });
            let wall = start.elapsed().as_secs_f64();
            if !all_ok {
                eprintln!("{}: some parallel ADDs failed", s.label);
                std::process::exit(1);
            }
            per_side[idx].push(o.parallel as f64 / wall);
            // Pods and node go away with their namespaces; no DEL needed
            // for the measurement, and host-local data is a temp dir.
        }
    }
    for (s, v) in sides.iter().zip(per_side) {
        f.set(s.label, Stats::from_values(&v));
    }
    f.higher_is_better = true;
    f
}

const CHAIN: &[&str] = &["bridge", "portmap", "firewall", "tuning", "bandwidth"];

/// Which firewall backend the chain's firewall uses. The reference always
/// uses iptables; rcni uses nftables unless told or unless the host's
/// iptables FORWARD policy is DROP (Docker hosts), where it must use
/// iptables too.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FirewallBackend {
    Default,
    Iptables,
}

fn chain_list(side: &Side, dir: &Path, fw: FirewallBackend) -> Vec<serde_json::Value> {
    let firewall = match fw {
        FirewallBackend::Default => serde_json::json!({"type": "firewall"}),
        FirewallBackend::Iptables => serde_json::json!({"type": "firewall", "backend": "iptables"}),
    };
    let j = serde_json::json!([
        {"type": "bridge", "bridge": format!("rc{}", side.octet), "isGateway": true, "ipMasq": true,
         "stateDir": dir.join("state"),
         "ipam": {"type": "host-local", "subnet": format!("10.{}.0.0/16", side.octet - 100),
                  "dataDir": dir.join("ipam"), "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": true}},
        firewall,
        {"type": "tuning", "dataDir": dir.join("tuning"), "sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1"}},
        {"type": "bandwidth", "ingressRate": 100_000_000u64, "ingressBurst": 1_000_000u64,
         "egressRate": 100_000_000u64, "egressBurst": 1_000_000u64}
    ]);
    j.as_array().cloned().unwrap_or_default()
}

/// Runs a chain the way libcni does (name, cniVersion, prevResult and the
/// declared runtimeConfig injected; DEL in reverse with the final result),
/// timing every plugin.
/// One pod of a chain run: container id, netns path, mapped host port.
struct Pod<'a> {
    id: &'a str,
    netns: &'a str,
    port: u16,
}

fn run_chain(
    side: &Side,
    node: &NetNs,
    plugins: &[serde_json::Value],
    command: &str,
    pod: &Pod,
    prev: Option<&serde_json::Value>,
) -> (Duration, Vec<Duration>, serde_json::Value) {
    let Pod { id, netns, port } = *pod;
    let mut order: Vec<usize> = (0..plugins.len()).collect();
    if command == "DEL" {
        order.reverse();
    }
    let mut times = vec![Duration::ZERO; plugins.len()];
    let mut result = prev.cloned().unwrap_or(serde_json::Value::Null);
    let start = Instant::now();
    for i in order {
        let mut conf = plugins[i].clone();
        let ty = conf["type"].as_str().unwrap_or("").to_string();
        if let Some(obj) = conf.as_object_mut() {
            let caps = obj.remove("capabilities");
            obj.insert("name".into(), format!("chain-{}", side.label).into());
            obj.insert("cniVersion".into(), "1.0.0".into());
            if caps.is_some_and(|c| c["portMappings"] == true) {
                obj.insert(
                    "runtimeConfig".into(),
                    serde_json::json!({"portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]}),
                );
            }
            if !result.is_null() {
                obj.insert("prevResult".into(), result.clone());
            }
        }
        let env = Env {
            command,
            container_id: id,
            netns,
            ifname: "eth0",
        };
        let r = must(
            exec(side, &ty, &env, &conf.to_string(), node),
            &format!("{} chain {ty} {command}", side.label),
        );
        times[i] = r.elapsed;
        if command == "ADD" {
            result = serde_json::from_str(&r.stdout).unwrap_or(serde_json::Value::Null);
        }
    }
    (start.elapsed(), times, result)
}

/// The five-plugin chain, whole and per plugin, from inside a node
/// namespace that already has one pod on the network (steady state).
#[allow(clippy::needless_range_loop)] // pods[side][iteration]
fn chain(sides: &[Side], o: &Options, fw: FirewallBackend) -> Vec<Figure> {
    let nodes: Vec<TestNs> = sides.iter().map(|_| TestNs::new("bc")).collect();
    if fw == FirewallBackend::Iptables {
        // A Docker-like host: iptables (nft flavour) FORWARD policy DROP.
        for n in &nodes {
            n.exec(&["iptables-nft", "-P", "FORWARD", "DROP"]);
        }
    }
    let label = match fw {
        FirewallBackend::Default => "",
        FirewallBackend::Iptables => " (firewall backend iptables)",
    };
    let data = TempDir::new("bench-chain");
    let total = o.iterations + 3;
    let pods: Vec<Vec<TestNs>> = sides
        .iter()
        .map(|_| (0..=total).map(|_| TestNs::new("bcp")).collect())
        .collect();
    let lists: Vec<Vec<serde_json::Value>> = sides
        .iter()
        .map(|s| chain_list(s, &data.path().join(s.label), fw))
        .collect();
    for (idx, s) in sides.iter().enumerate() {
        let path = pods[idx][total].path().display().to_string();
        let pod = Pod {
            id: "resident",
            netns: &path,
            port: 7999,
        };
        run_chain(s, nodes[idx].ns(), &lists[idx], "ADD", &pod, None);
    }
    let n = CHAIN.len();
    let mut adds = Samples::new(sides.len());
    let mut dels = Samples::new(sides.len());
    let mut per_add: Vec<Samples> = (0..n).map(|_| Samples::new(sides.len())).collect();
    let mut per_del: Vec<Samples> = (0..n).map(|_| Samples::new(sides.len())).collect();
    for i in 0..total {
        for s in ordered(sides, i) {
            let idx = index_of(sides, s);
            let path = pods[idx][i].path().display().to_string();
            let id = format!("chain{i}");
            let port = 8080 + i as u16;
            let pod = Pod {
                id: &id,
                netns: &path,
                port,
            };
            let (a, at, res) = run_chain(s, nodes[idx].ns(), &lists[idx], "ADD", &pod, None);
            let (d, dt, _) = run_chain(s, nodes[idx].ns(), &lists[idx], "DEL", &pod, Some(&res));
            if i >= 3 {
                adds.per_side[idx].push(a);
                dels.per_side[idx].push(d);
                for k in 0..n {
                    per_add[k].per_side[idx].push(at[k]);
                    per_del[k].per_side[idx].push(dt[k]);
                }
            }
        }
    }
    let mut out = vec![
        figure(
            &format!(
                "chain bridge+host-local → portmap → firewall → tuning → bandwidth ADD{label}"
            ),
            "ms",
            sides,
            &adds,
        ),
        figure(
            &format!(
                "chain bridge+host-local → portmap → firewall → tuning → bandwidth DEL{label}"
            ),
            "ms",
            sides,
            &dels,
        ),
    ];
    for k in 0..n {
        out.push(figure(
            &format!("  in chain{label}: {} ADD", CHAIN[k]),
            "ms",
            sides,
            &per_add[k],
        ));
        out.push(figure(
            &format!("  in chain{label}: {} DEL", CHAIN[k]),
            "ms",
            sides,
            &per_del[k],
        ));
    }
    out
}

/// ADD cost of one more mapping with `n` host ports already mapped on the
/// node (rcni only: the reference's cost is its iptables calls).
fn portmap_scaling(o: &Options) -> Figure {
    let n_full = if o.quick { 100 } else { 1000 };
    let mut medians = Vec::new();
    let mut last = None;
    for n in [0, n_full] {
        let node = TestNs::new("pm");
        let nft = match nft::Nft::open_in(node.ns()) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("nft: {e}");
                std::process::exit(1);
            }
        };
        let mapping = |k: usize, port: u16| nft::portmap::Mapping {
            network: "pmbench".into(),
            container_id: format!("fill{k}"),
            ifname: "eth0".into(),
            proto: nft::portmap::Proto::Tcp,
            host_ip: None,
            host_port: port,
            pod_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 1, (k >> 8) as u8, k as u8)),
            pod_port: 80,
        };
        let opts = nft::portmap::Options {
            snat: true,
            masq_all: false,
        };
        // The first ADD creates the table: not what is measured.
        let fill: Vec<_> = (0..n.max(1))
            .map(|k| mapping(k, 10000 + k as u16))
            .collect();
        if let Err(e) = nft::portmap::add(&nft, &fill, &opts) {
            eprintln!("portmap fill: {e}");
            std::process::exit(1);
        }
        let mut samples = Vec::new();
        for i in 0..o.iterations + 3 {
            let m = mapping(60000 + i, 50000 + i as u16);
            let t = Instant::now();
            if let Err(e) = nft::portmap::add(&nft, &[m], &opts) {
                eprintln!("portmap add: {e}");
                std::process::exit(1);
            }
            if i >= 3 {
                samples.push(t.elapsed());
            }
        }
        let st = Stats::from_durations(&samples);
        medians.push(st.median);
        last = Some(st);
    }
    let ratio = medians[1] / medians[0].max(1e-9);
    let mut f = Figure::new(
        &format!(
            "rcni portmap ADD of one mapping with {n_full} ports mapped (with 0: {:.3} ms; ratio {ratio:.2})",
            medians[0]
        ),
        "ms",
    );
    if let Some(st) = last {
        f.set("rcni", st);
    }
    f
}

/// Writes `n` allocations in the reference's on-disk format, as if `n`
/// pods had been added one after another.
fn prefill(dir: &Path, octet: u8, n: usize) {
    std::fs::create_dir_all(dir).ok();
    let mut last = String::new();
    for k in 0..n {
        // 10.X.0.2 upwards in a /20 (the gateway .1 is skipped).
        let host = k as u32 + 2;
        let ip = format!("10.{octet}.{}.{}", host >> 8, host & 0xff);
        let _ = std::fs::write(dir.join(&ip), format!("prefill{k}\r\neth0"));
        last = ip;
    }
    if !last.is_empty() {
        let _ = std::fs::write(dir.join("last_reserved_ip.0"), &last);
    }
}

/// host-local ADD/DEL with 0…4000 addresses already taken. The sizes are
/// interleaved within every iteration (and the sides alternate), so machine
/// drift cannot masquerade as a cost that grows with the allocation count.
fn host_local_cost(sides: &[Side], o: &Options, node: &TestNs) -> Vec<(usize, Figure, Figure)> {
    let sizes: &[usize] = if o.quick {
        &[0, 200]
    } else {
        &[0, 1000, 2000, 4000]
    };
    let dirs: Vec<TempDir> = sizes.iter().map(|_| TempDir::new("bench-hl")).collect();
    for (&n, data) in sizes.iter().zip(&dirs) {
        for s in sides {
            prefill(
                &data.path().join(s.label).join(format!("hl-{}", s.label)),
                s.octet,
                n,
            );
        }
    }
    let mut adds: Vec<Samples> = sizes.iter().map(|_| Samples::new(sides.len())).collect();
    let mut dels: Vec<Samples> = sizes.iter().map(|_| Samples::new(sides.len())).collect();
    let node_path = node.path().display().to_string();
    for i in 0..o.iterations + 3 {
        for (k, data) in dirs.iter().enumerate() {
            for s in ordered(sides, i + k) {
                let idx = index_of(sides, s);
                let conf = format!(
                    r#"{{"cniVersion":"1.0.0","name":"hl-{}","type":"bridge","ipam":{{"type":"host-local","subnet":"10.{}.0.0/20","dataDir":"{}"}}}}"#,
                    s.label,
                    s.octet,
                    data.path().join(s.label).display()
                );
                let id = format!("hl{i}");
                let add = Env {
                    command: "ADD",
                    container_id: &id,
                    netns: &node_path,
                    ifname: "eth0",
                };
                let r = must(
                    exec(s, "host-local", &add, &conf, node.ns()),
                    &format!("{} host-local ADD", s.label),
                );
                let del = Env {
                    command: "DEL",
                    ..add
                };
                let d = must(
                    exec(s, "host-local", &del, &conf, node.ns()),
                    &format!("{} host-local DEL", s.label),
                );
                if i >= 3 {
                    adds[k].per_side[idx].push(r.elapsed);
                    dels[k].per_side[idx].push(d.elapsed);
                }
            }
        }
    }
    sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            (
                n,
                figure(
                    &format!("host-local ADD, {n} allocated in a /20"),
                    "ms",
                    sides,
                    &adds[k],
                ),
                figure(
                    &format!("host-local DEL, {n} allocated in a /20"),
                    "ms",
                    sides,
                    &dels[k],
                ),
            )
        })
        .collect()
}

/// The kernel's own cost of creating and deleting one veth pair: the floor
/// under any plugin's ADD and DEL.
fn kernel_floor(o: &Options) -> (Figure, Figure) {
    let node = TestNs::new("kf");
    let pod = TestNs::new("kp");
    let sock = match netlink::Socket::route_in(node.ns()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("netlink: {e}");
            std::process::exit(1);
        }
    };
    let mut create = Vec::new();
    let mut delete = Vec::new();
    for i in 0..o.iterations + 3 {
        let t = Instant::now();
        if let Err(e) = sock.create_veth("kfloor0", "kpeer0", Some(pod.ns().fd()), None, None, None)
        {
            eprintln!("veth create: {e}");
            std::process::exit(1);
        }
        let c = t.elapsed();
        let t = Instant::now();
        if let Err(e) = sock.delete_link_by_name("kfloor0") {
            eprintln!("veth delete: {e}");
            std::process::exit(1);
        }
        let d = t.elapsed();
        if i >= 3 {
            create.push(c);
            delete.push(d);
        }
    }
    let mut fc = Figure::new("kernel: create one veth pair", "ms");
    fc.set("kernel", Stats::from_durations(&create));
    let mut fd = Figure::new("kernel: delete one veth pair", "ms");
    fd.set("kernel", Stats::from_durations(&delete));
    (fc, fd)
}

/// The kernel's own cost of deleting a veth pair in the state a bridge
/// plugin leaves it in: host end up and a bridge port, container end up
/// with an address. This is what a bridge DEL really asks of the kernel
/// (bridge-port teardown, address and route removal, two IPv6 devices), so
/// it is the fair floor under a bridge DEL; the bare veth above is the
/// lower bound.
fn kernel_floor_attached(o: &Options) -> Figure {
    fn fail(what: &str, e: impl std::fmt::Display) -> ! {
        eprintln!("{what}: {e}");
        std::process::exit(1);
    }
    let node = TestNs::new("kf");
    let pod = TestNs::new("kp");
    let host = netlink::Socket::route_in(node.ns()).unwrap_or_else(|e| fail("netlink", e));
    let cont = netlink::Socket::route_in(pod.ns()).unwrap_or_else(|e| fail("netlink", e));
    host.create_bridge("kfbr0", None, None)
        .unwrap_or_else(|e| fail("bridge", e));
    let br = match host.link_by_name("kfbr0") {
        Ok(Some(l)) => l,
        other => fail("bridge lookup", format!("{other:?}")),
    };
    host.set_link_up(br.index)
        .unwrap_or_else(|e| fail("bridge up", e));
    let mut delete = Vec::new();
    for i in 0..o.iterations + 3 {
        host.create_veth("kfloor0", "eth0", Some(pod.ns().fd()), None, None, None)
            .unwrap_or_else(|e| fail("veth create", e));
        let (h, c) = match (host.link_by_name("kfloor0"), cont.link_by_name("eth0")) {
            (Ok(Some(h)), Ok(Some(c))) => (h, c),
            other => fail("veth lookup", format!("{other:?}")),
        };
        host.set_master(h.index, br.index)
            .unwrap_or_else(|e| fail("master", e));
        host.set_link_up(h.index).unwrap_or_else(|e| fail("up", e));
        cont.set_link_up(c.index).unwrap_or_else(|e| fail("up", e));
        cont.add_address(c.index, std::net::IpAddr::from([10, 250, 0, 2]), 24)
            .unwrap_or_else(|e| fail("address", e));
        let t = Instant::now();
        if let Err(e) = cont.delete_link_by_name("eth0") {
            fail("veth delete", e);
        }
        if i >= 3 {
            delete.push(t.elapsed());
        }
    }
    let mut fd = Figure::new(
        "kernel: delete one veth pair attached like a bridge pod",
        "ms",
    );
    fd.set("kernel", Stats::from_durations(&delete));
    fd
}

fn dir_size(dir: &Path, names: Option<&[String]>) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if names.is_some_and(|n| !n.contains(&name)) {
                continue;
            }
            // symlink_metadata: a link costs its own few bytes, not the target's.
            if let Ok(m) = std::fs::symlink_metadata(e.path()) {
                total += m.len();
            }
        }
    }
    total
}

fn main() {
    let o = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rcni-bench: {e}");
            std::process::exit(2);
        }
    };
    testutil::require_root();
    let install = TempDir::new("bench-bin");
    let out = std::process::Command::new(&o.rcni)
        .args(["install", "--bin-dir"])
        .arg(install.path())
        .output();
    if !out.as_ref().is_ok_and(|x| x.status.success()) {
        eprintln!("rcni install failed: {out:?}");
        std::process::exit(1);
    }
    let mut sides = vec![Side {
        label: "rcni",
        bin_dir: install.path().to_path_buf(),
        octet: 200,
    }];
    if let Some(r) = &o.reference {
        sides.push(Side {
            label: "reference",
            bin_dir: r.clone(),
            octet: 201,
        });
    }
    let mut report = Report::new(std::env::args().collect::<Vec<_>>().join(" "));

    let node = TestNs::new("bs");
    if o.wants("start") {
        eprintln!("measuring process start ...");
        report.push(start_floor(&sides, &o, &node));
    }

    let mains: Vec<(&str, bool)> = vec![("bridge", false), ("bridge", true), ("ptp", false)];
    for (kind, masq) in mains {
        if !o.wants(kind) {
            continue;
        }
        if !sides.iter().all(|s| s.has(kind) && s.has("host-local")) {
            eprintln!("skipping {kind}: not every side has it yet");
            continue;
        }
        eprintln!("measuring {kind} + host-local (ipMasq {masq}) ...");
        let (a, d) = add_del(kind, masq, masq, &sides, &o);
        report.push(a);
        report.push(d);
        if masq {
            let (a, d) = add_del(kind, masq, false, &sides, &o);
            report.push(a);
            report.push(d);
        }
    }
    if o.wants("parallel") && sides.iter().all(|s| s.has("bridge") && s.has("host-local")) {
        eprintln!("measuring parallel ADDs ...");
        report.push(parallel_adds(&sides, &o));
    }
    if o.wants("chain")
        && sides
            .iter()
            .all(|s| CHAIN.iter().all(|p| s.has(p)) && s.has("host-local"))
    {
        eprintln!("measuring the five-plugin chain ...");
        for f in chain(&sides, &o, FirewallBackend::Default) {
            report.push(f);
        }
    }
    if o.wants("chain-iptables")
        && sides
            .iter()
            .all(|s| CHAIN.iter().all(|p| s.has(p)) && s.has("host-local"))
    {
        eprintln!("measuring the five-plugin chain with the firewall's iptables backend ...");
        for f in chain(&sides, &o, FirewallBackend::Iptables) {
            report.push(f);
        }
    }
    if o.wants("portmap") {
        eprintln!("measuring portmap ADD against mapped ports ...");
        report.push(portmap_scaling(&o));
    }
    if o.wants("host-local") && sides.iter().all(|s| s.has("host-local")) {
        eprintln!("measuring host-local against allocated addresses ...");
        for (n, a, d) in host_local_cost(&sides, &o, &node) {
            report.curve.push((n, a.clone(), d.clone()));
            report.push(a);
            report.push(d);
        }
    }
    if o.wants("walk") && sides.iter().all(|s| s.has("host-local")) {
        eprintln!("measuring host-local walks (steady, wrap, no cursor) ...");
        for f in walk::walk(&sides, &o, &node) {
            report.push(f);
        }
    }
    if o.wants("runtimes") {
        eprintln!("measuring podman run with each network backend ...");
        for f in runtimes::runtimes(&o) {
            report.push(f);
        }
    }
    if o.wants("cri") {
        eprintln!("measuring containerd CRI sandboxes, 50 at once ...");
        for f in cri::cri(&o) {
            report.push(f);
        }
    }
    if o.wants("kernel") {
        eprintln!("measuring the kernel floor ...");
        let (kc, kd) = kernel_floor(&o);
        report.push(kc);
        report.push(kd);
        report.push(kernel_floor_attached(&o));
    }

    if o.wants("density") && sides.iter().all(|s| s.has("bridge") && s.has("host-local")) {
        eprintln!("measuring density (one pod ADD/DEL with N pods on the bridge) ...");
        let figures = density::density(&sides, &o);
        report.density = density::curve(&figures);
        for f in figures {
            report.push(f);
        }
    }

    if o.wants("rss") && sides.iter().all(|s| s.has("bridge") && s.has("host-local")) {
        eprintln!("measuring peak RSS ...");
        let mut rss = Figure::new(
            "peak RSS of one bridge + host-local ADD (largest process of the call, VmHWM)",
            "MB",
        );
        let node = TestNs::new("rs");
        let data = TempDir::new("bench-rss");
        for s in &sides {
            let pod = TestNs::new("rsp");
            let path = pod.path().display().to_string();
            let conf = main_conf("bridge", s, &data.path().join(s.label), false);
            let env = Env {
                command: "ADD",
                container_id: "rss",
                netns: &path,
                ifname: "eth0",
            };
            match rss::peak_kb(
                &s.bin_dir.join("bridge"),
                &s.bin_dir,
                &env,
                &conf,
                node.ns(),
            ) {
                Ok(kb) => rss.set(s.label, Stats::single(kb as f64 / 1024.0)),
                Err(e) => eprintln!("{}: RSS measurement failed: {e}", s.label),
            }
        }
        report.push(rss);
    }
    let plugin_names: Vec<String> = std::fs::read_dir(install.path())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut size = Figure::new(
        "installed size (rcni: binary + links; reference: same plugin names)",
        "MB",
    );
    size.set(
        "rcni",
        Stats::single(dir_size(install.path(), None) as f64 / 1e6),
    );
    if let Some(r) = &o.reference {
        size.set(
            "reference",
            Stats::single(dir_size(r, Some(&plugin_names)) as f64 / 1e6),
        );
    }
    if o.wants("size") {
        report.push(size);
        if let Some(r) = &o.reference {
            let mut all = Figure::new("reference: all plugins installed", "MB");
            all.set("reference", Stats::single(dir_size(r, None) as f64 / 1e6));
            report.push(all);
        }
    }

    print!("{}", report.table());
    let write = |path: &Option<PathBuf>, text: String| {
        if let Some(p) = path {
            if let Err(e) = std::fs::write(p, text) {
                eprintln!("cannot write {}: {e}", p.display());
            } else {
                eprintln!("wrote {}", p.display());
            }
        }
    };
    write(&o.json, report.json());
    write(&o.svg, report.svg());
    write(&o.markdown, report.markdown());
}
