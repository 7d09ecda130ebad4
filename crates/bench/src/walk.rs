//! host-local when the allocator must walk: ADD (and DEL) with 0 and 4000
//! addresses taken in a /20, rcni and the reference side by side, in three
//! states of the same on-disk store:
//!
//! - `steady`: `last_reserved_ip.0` points just before a free address (the
//!   state a node reaches by adding pods one after another);
//! - `wrap`: a 98%-full pool whose cursor sits at the end of the range, so
//!   the next ADD wraps around and walks past every taken address to the
//!   free block (the cursor is put back before every ADD, untimed, by
//!   rewriting the file in place as either plugin does);
//! - `no cursor`: `last_reserved_ip.0` is gone (a reboot or a restore of the
//!   directory); it is removed before every ADD, untimed. For rcni this is a
//!   change to the directory by someone else; its index recognises the
//!   removal of a cursor it wrote (the cursor's inode is linked into the
//!   index) and keeps the index instead of rebuilding it (crates/ipam
//!   `store::state`).

use super::{exec, figure, index_of, ordered, Env, Options, Samples, Side};
use crate::report::Figure;
use std::path::{Path, PathBuf};
use testutil::{TempDir, TestNs};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Steady,
    Wrap,
    NoCursor,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Steady => "steady",
            Mode::Wrap => "wrap",
            Mode::NoCursor => "no cursor",
        }
    }
}

/// Last host number of a /20 (x.x.15.254).
const LAST_HOST: u32 = 4094;

fn addr(octet: u8, host: u32) -> String {
    format!("10.{octet}.{}.{}", host >> 8, host & 0xff)
}

/// Fails the run by unwinding, so every namespace and directory guard of
/// the scenario is dropped (`process::exit` would leak them).
fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    panic!("walk: {what}: {e}");
}

/// A plugin call that must succeed.
fn must(run: super::Run, what: &str) -> super::Run {
    if !run.ok {
        fail(what, run.stdout.trim());
    }
    run
}

/// `n` allocations on hosts 2 … n+1 in the reference's format.
fn prefill(dir: &Path, octet: u8, n: u32) {
    if let Err(e) = std::fs::create_dir_all(dir) {
        fail("ipam dir", e);
    }
    for k in 0..n {
        let ip = addr(octet, k + 2);
        if let Err(e) = std::fs::write(dir.join(&ip), format!("fill{k}\r\neth0")) {
            fail("prefill", e);
        }
    }
}

/// Puts the cursor where `mode` wants it before an ADD.
fn position_cursor(dir: &Path, octet: u8, n: u32, mode: Mode, first: bool) {
    let cursor = dir.join("last_reserved_ip.0");
    let r = match mode {
        // Set once; from then on each ADD moves it like on a real node.
        Mode::Steady if first && n > 0 => std::fs::write(&cursor, addr(octet, n + 1)),
        Mode::Steady => Ok(()),
        Mode::Wrap => std::fs::write(&cursor, addr(octet, LAST_HOST)),
        Mode::NoCursor => match std::fs::remove_file(&cursor) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        },
    };
    if let Err(e) = r {
        fail("cursor", e);
    }
}

pub fn walk(sides: &[Side], o: &Options, node: &TestNs) -> Vec<Figure> {
    let sizes: &[u32] = if o.quick { &[0, 200] } else { &[0, 4000] };
    let modes = [Mode::Steady, Mode::Wrap, Mode::NoCursor];
    let data = TempDir::new("bench-walk");
    // cases[c] = (mode, n); dirs per case and side.
    let cases: Vec<(Mode, u32)> = modes
        .iter()
        .flat_map(|&m| sizes.iter().map(move |&n| (m, n)))
        .collect();
    let dir_of = |c: usize, s: &Side| -> PathBuf { data.path().join(format!("c{c}-{}", s.label)) };
    let net = |s: &Side| format!("walk-{}", s.label);
    for (c, &(_, n)) in cases.iter().enumerate() {
        for s in sides {
            prefill(&dir_of(c, s).join(net(s)), s.octet, n);
        }
    }
    let mut adds: Vec<Samples> = cases.iter().map(|_| Samples::new(sides.len())).collect();
    let mut dels: Vec<Samples> = cases.iter().map(|_| Samples::new(sides.len())).collect();
    let node_path = node.path().display().to_string();
    for i in 0..o.iterations + 3 {
        for (c, &(mode, n)) in cases.iter().enumerate() {
            for s in ordered(sides, i + c) {
                let idx = index_of(sides, s);
                let dir = dir_of(c, s);
                position_cursor(&dir.join(net(s)), s.octet, n, mode, i == 0);
                let conf = format!(
                    r#"{{"cniVersion":"1.0.0","name":"{}","type":"bridge","ipam":{{"type":"host-local","subnet":"10.{}.0.0/20","dataDir":"{}"}}}}"#,
                    net(s),
                    s.octet,
                    dir.display()
                );
                let id = format!("walk{i}");
                let add = Env {
                    command: "ADD",
                    container_id: &id,
                    netns: &node_path,
                    ifname: "eth0",
                };
                let r = must(
                    exec(s, "host-local", &add, &conf, node.ns()),
                    &format!("{} host-local {} ADD", s.label, mode.name()),
                );
                let del = Env {
                    command: "DEL",
                    ..add
                };
                let d = must(
                    exec(s, "host-local", &del, &conf, node.ns()),
                    &format!("{} host-local {} DEL", s.label, mode.name()),
                );
                if i >= 3 {
                    adds[c].per_side[idx].push(r.elapsed);
                    dels[c].per_side[idx].push(d.elapsed);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (c, &(mode, n)) in cases.iter().enumerate() {
        out.push(figure(
            &format!("host-local {} ADD, {n} allocated in a /20", mode.name()),
            "ms",
            sides,
            &adds[c],
        ));
        out.push(figure(
            &format!("host-local {} DEL, {n} allocated in a /20", mode.name()),
            "ms",
            sides,
            &dels[c],
        ));
    }
    out
}
