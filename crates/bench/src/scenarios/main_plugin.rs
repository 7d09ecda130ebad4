//! A main plugin + host-local: one pod at a time, and K ADDs at once.

use crate::harness::*;
use crate::report::{Figure, Stats};
use crate::Options;
use std::path::Path;
use std::time::Instant;
use testutil::{TempDir, TestNs};

pub(crate) fn main_conf(kind: &str, side: &Side, data: &Path, masq: bool) -> String {
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
pub(crate) fn add_del(
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
            let env = Env::add("resident", &path);
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
            let (r, d) = add_then_del(
                s,
                kind,
                &Env::add(&id, &pod_path),
                &conf,
                nodes[idx].ns(),
                &format!("{} {label}", s.label),
                must,
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
pub(crate) fn parallel_adds(sides: &[Side], o: &Options) -> Figure {
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
                            let env = Env::add(&id, &path);
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
