//! Runtime-level figures: Debian's Podman running `podman run --rm` of a
//! no-op container from a local image, with its CNI backend on a conflist
//! of rcni's plugins, the same conflist on the reference plugins, Podman's
//! own netavark backend (when installed), and `--network none` (the run
//! without any network: the difference to it is the network's share).
//! Each backend lives in its own jail of the runtime test harness
//! (`rcni-runtime-tests`): private node namespace, mounts, PID namespace,
//! all removed on drop. The backends alternate in rotating order.

use super::Options;
use crate::report::{Figure, Stats};
use rcni_runtime_tests::podman::PodmanEnv;
use rcni_runtime_tests::IMAGE;
use std::path::Path;
use std::time::{Duration, Instant};

const NETAVARK: &str = "/usr/lib/podman/netavark";

struct Backend {
    label: &'static str,
    env: PodmanEnv,
    /// `--network` value.
    network: String,
}

fn conflist(env: &PodmanEnv, name: &str, octet: u8) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {"type": "bridge", "bridge": format!("cni-{name}"), "isGateway": true, "ipMasq": true,
             "stateDir": env.plugin_state_dir(),
             "ipam": {"type": "host-local", "dataDir": env.ipam_dir(),
                      "ranges": [[{"subnet": format!("10.{octet}.0.0/16")}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "firewall"},
            {"type": "tuning"}
        ]
    })
}

/// Replaces the jail's plugin directory (rcni's links) with copies of the
/// reference plugins.
pub(crate) fn use_reference_plugins(env: &PodmanEnv, reference: &Path) -> Result<(), String> {
    let dir = env.jail().plugin_dir();
    let rd = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
    for e in rd.flatten() {
        std::fs::remove_file(e.path()).map_err(|e| e.to_string())?;
    }
    let rd = std::fs::read_dir(reference).map_err(|e| e.to_string())?;
    for e in rd.flatten() {
        std::fs::copy(e.path(), dir.join(e.file_name())).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Switches the env's Podman to the netavark backend and creates a bridge
/// network with it.
fn use_netavark(env: &PodmanEnv) -> Result<String, String> {
    let conf = env.jail().state().join("etc-containers/containers.conf");
    let text = std::fs::read_to_string(&conf).map_err(|e| e.to_string())?;
    let netdir = env.jail().state().join("netavark-net");
    std::fs::create_dir_all(&netdir).map_err(|e| e.to_string())?;
    let text = text
        .replace(
            "network_backend = \"cni\"",
            "network_backend = \"netavark\"",
        )
        .replace(
            &format!(
                "network_config_dir = {:?}",
                env.network_dir().display().to_string()
            ),
            &format!("network_config_dir = {:?}", netdir.display().to_string()),
        );
    std::fs::write(&conf, text).map_err(|e| e.to_string())?;
    env.podman(&["network", "create", "--subnet", "10.213.0.0/16", "benchnav"])
        .ok()?;
    Ok("benchnav".into())
}

fn run_once(b: &Backend) -> Result<Duration, String> {
    let mut args = vec!["run", "--rm", "--network", &b.network];
    if b.network != "none" {
        // No resolv.conf work on any side (Podman refuses it with none).
        args.extend(["--dns", "none"]);
    }
    args.extend([IMAGE, "true"]);
    let t = Instant::now();
    b.env.podman(&args).ok()?;
    Ok(t.elapsed())
}

pub fn runtimes(o: &Options) -> Vec<Figure> {
    if let Err(e) = std::process::Command::new("podman")
        .arg("--version")
        .output()
    {
        eprintln!("runtimes: no podman ({e}); skipped");
        return Vec::new();
    }
    // The harness installs the rcni under test into each jail.
    std::env::set_var("RCNI_BIN", &o.rcni);
    let mut backends = Vec::new();
    let rc = PodmanEnv::new("brc");
    rc.add_network(&conflist(&rc, "benchrc", 211));
    backends.push(Backend {
        label: "rcni",
        env: rc,
        network: "benchrc".into(),
    });
    if let Some(r) = &o.reference {
        let env = PodmanEnv::new("brf");
        match use_reference_plugins(&env, r) {
            Ok(()) => {
                env.add_network(&conflist(&env, "benchrf", 212));
                backends.push(Backend {
                    label: "reference",
                    env,
                    network: "benchrf".into(),
                });
            }
            Err(e) => eprintln!("runtimes: reference plugins: {e}"),
        }
    }
    if Path::new(NETAVARK).is_file() {
        let env = PodmanEnv::new("bnv");
        match use_netavark(&env) {
            Ok(net) => backends.push(Backend {
                label: "netavark",
                env,
                network: net,
            }),
            Err(e) => eprintln!("runtimes: netavark backend unusable: {e}"),
        }
    } else {
        eprintln!("runtimes: netavark not installed ({NETAVARK}); no netavark figure");
    }
    backends.push(Backend {
        label: "no network",
        env: PodmanEnv::new("bnn"),
        network: "none".into(),
    });
    let iterations = if o.quick { 1 } else { o.iterations.min(12) };
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); backends.len()];
    for i in 0..iterations + 2 {
        let n = backends.len();
        for k in 0..n {
            let idx = (i + k) % n;
            let b = &backends[idx];
            match run_once(b) {
                Ok(d) if i >= 2 => samples[idx].push(d),
                Ok(_) => {}
                // Unwinds, so every jail is dropped (killed and removed).
                Err(e) => panic!("runtimes: {} podman run failed: {e}", b.label),
            }
        }
    }
    let stats: Vec<(&str, Stats)> = backends
        .iter()
        .zip(&samples)
        .map(|(b, s)| (b.label, Stats::from_durations(s)))
        .collect();
    let get = |label: &str| {
        stats
            .iter()
            .find(|(l, _)| *l == label)
            .map(|(_, s)| s.clone())
    };
    let none = get("no network").map_or(0.0, |s| s.median);
    let mut out = Vec::new();
    let mut f = Figure::new(
        "podman run --rm of a no-op container, CNI backend: bridge+host-local, portmap, firewall, tuning",
        "ms",
    );
    for side in ["rcni", "reference"] {
        if let Some(s) = get(side) {
            f.set(side, s);
        }
    }
    out.push(f);
    if let Some(nv) = get("netavark") {
        let rc = get("rcni").map_or(f64::NAN, |s| s.median);
        let mut f = Figure::new(
            &format!(
                "podman run --rm of a no-op container, netavark backend (rcni CNI / netavark = {:.3})",
                rc / nv.median
            ),
            "ms",
        );
        f.set("netavark", nv);
        out.push(f);
    }
    if let Some(s) = get("no network") {
        let mut f = Figure::new("podman run --rm of a no-op container, --network none", "ms");
        f.set("no network", s);
        out.push(f);
        // The network's share: each backend's median minus the run
        // without a network (medians of interleaved runs).
        let mut f = Figure::new(
            "podman run --rm: network share (median minus --network none)",
            "ms",
        );
        for side in ["rcni", "reference"] {
            if let Some(s) = get(side) {
                f.set(side, Stats::single(s.median - none));
            }
        }
        out.push(f);
        if let Some(nv) = get("netavark") {
            let mut f = Figure::new(
                "podman run --rm: network share, netavark backend (median minus --network none)",
                "ms",
            );
            f.set("netavark", Stats::single(nv.median - none));
            out.push(f);
        }
    }
    out
}
