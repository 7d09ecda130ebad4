//! host-local with thousands of addresses taken.

use crate::harness::*;
use crate::report::Figure;
use crate::Options;
use std::path::Path;
use testutil::{TempDir, TestNs};

/// Writes `n` allocations in the reference's on-disk format, as if `n`
/// pods had been added one after another.
pub(crate) fn prefill(dir: &Path, octet: u8, n: usize) {
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
pub(crate) fn host_local_cost(
    sides: &[Side],
    o: &Options,
    node: &TestNs,
) -> Vec<(usize, Figure, Figure)> {
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
                let (r, d) = add_then_del(
                    s,
                    "host-local",
                    &Env::add(&id, &node_path),
                    &conf,
                    node.ns(),
                    &format!("{} host-local", s.label),
                    must,
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
