//! `rcni-bench`: rcni against the reference plugins, side by side, inside
//! throwaway namespaces only. Runs alternate A B / B A after a warm-up so
//! drift hits both sides equally. Never decides pass/fail.

mod cri;
mod density;
mod harness;
mod report;
mod rss;
mod runtimes;
mod scenarios;
mod walk;

use harness::*;
use scenarios::chain::*;
use scenarios::host_local::*;
use scenarios::kernel::*;
use scenarios::main_plugin::*;
use scenarios::portmap::*;
use scenarios::start::*;

use report::{Figure, Report, Stats};
use std::path::PathBuf;
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
        report.density_target = density::target_lines(&figures);
        for line in &report.density_target {
            eprintln!("  {line}");
        }
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
            let env = Env::add("rss", &path);
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
