//! What every scenario uses: the two sides, one timed plugin exec, the
//! settling between figures, samples and figures.

use crate::report::{Figure, Stats};
use netns::NetNs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One side of the comparison: a directory of plugin executables.
pub(crate) struct Side {
    pub(crate) label: &'static str,
    pub(crate) bin_dir: PathBuf,
    /// Second-octet base so the two sides never share subnets.
    pub(crate) octet: u8,
}

impl Side {
    pub(crate) fn has(&self, plugin: &str) -> bool {
        self.bin_dir.join(plugin).exists()
    }
}

/// A finished plugin process.
pub(crate) struct Run {
    pub(crate) elapsed: Duration,
    pub(crate) ok: bool,
    pub(crate) stdout: String,
}

pub struct Env<'a> {
    pub command: &'a str,
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
}

impl<'a> Env<'a> {
    /// ADD of container `container_id`'s `eth0` in `netns`.
    pub fn add(container_id: &'a str, netns: &'a str) -> Env<'a> {
        Env {
            command: "ADD",
            container_id,
            netns,
            ifname: "eth0",
        }
    }
}

/// Times the ADD `add`, then the DEL of the same attachment, of `plugin`
/// with config `conf` inside `node`; `check` (a scenario's `must`) vets each
/// as "`what` ADD" / "`what` DEL".
pub(crate) fn add_then_del(
    side: &Side,
    plugin: &str,
    add: &Env,
    conf: &str,
    node: &NetNs,
    what: &str,
    check: fn(Run, &str) -> Run,
) -> (Run, Run) {
    let a = check(exec(side, plugin, add, conf, node), &format!("{what} ADD"));
    let del = Env {
        command: "DEL",
        ..*add
    };
    let d = check(exec(side, plugin, &del, conf, node), &format!("{what} DEL"));
    (a, d)
}

/// Execs one plugin inside `node` and times it from spawn to reaped.
/// stderr is discarded; failures are reported through the error object.
pub(crate) fn exec(side: &Side, plugin: &str, env: &Env, stdin: &str, node: &NetNs) -> Run {
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

pub(crate) fn must(run: Run, what: &str) -> Run {
    if !run.ok {
        eprintln!("{what} failed: {}", run.stdout.trim());
        std::process::exit(1);
    }
    run
}

/// Waits (at most 5 s) until the CPUs were at least 90% idle for 100 ms.
/// The kernel tears down removed namespaces asynchronously; without this,
/// the previous figure's teardown would be timed as part of the next one.
pub(crate) fn settle() {
    pub(crate) fn idle_and_total() -> Option<(u64, u64)> {
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
pub(crate) fn ordered(sides: &[Side], i: usize) -> Vec<&Side> {
    let mut v: Vec<&Side> = sides.iter().collect();
    if i % 2 == 1 {
        v.reverse();
    }
    v
}

pub(crate) struct Samples {
    pub(crate) per_side: Vec<Vec<Duration>>,
}

impl Samples {
    pub(crate) fn new(n: usize) -> Samples {
        Samples {
            per_side: vec![Vec::new(); n],
        }
    }
}

pub(crate) fn index_of(sides: &[Side], s: &Side) -> usize {
    sides.iter().position(|x| x.label == s.label).unwrap_or(0)
}

pub(crate) fn figure(name: &str, unit: &str, sides: &[Side], samples: &Samples) -> Figure {
    let mut f = Figure::new(name, unit);
    for (s, v) in sides.iter().zip(&samples.per_side) {
        if !v.is_empty() {
            f.set(s.label, Stats::from_durations(v));
        }
    }
    f
}

pub(crate) fn dir_size(dir: &Path, names: Option<&[String]>) -> u64 {
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
