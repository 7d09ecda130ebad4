//! ADD/DEL cost of host-local with 0/1000/2000/4000 addresses taken in a /20:
//! rcni's store in-process, and the reference plugin (exec, when installed at
//! /usr/lib/cni/host-local) on the same directory layout.
//! Run: cargo bench -p ipam --bench store

// Example/benchmark code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipam::{ops, HostLocalConfig, StoreConfig};

const REFERENCE: &str = "/usr/lib/cni/host-local";
const ROUNDS: usize = 30;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn conf(dir: &Path) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"bench","ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.20.0.0/20"}}]]}}}}"#,
        dir.display()
    )
}

fn reference(cmd: &str, conf: &str, id: &str) -> Duration {
    let start = Instant::now();
    let mut child = Command::new(REFERENCE)
        .env_clear()
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", "/proc/self/ns/net")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn reference");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(conf.as_bytes());
    }
    let st = child.wait().expect("wait reference");
    assert!(st.success(), "reference {cmd} failed");
    start.elapsed()
}

fn main() {
    let base: PathBuf =
        std::env::temp_dir().join(format!("rcni-ipam-bench-{}", std::process::id()));
    let have_ref = Path::new(REFERENCE).exists();
    println!(
        "{:>6}  {:>12} {:>12}  {:>12} {:>12}",
        "taken", "rcni ADD", "rcni DEL", "ref ADD", "ref DEL"
    );
    for taken in [0usize, 1000, 2000, 4000] {
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).expect("mkdir");
        let text = conf(&base);
        let cfg = HostLocalConfig::parse(text.as_bytes(), &[]).expect("config");
        let sc = StoreConfig {
            name: "bench".into(),
            data_dir: Some(base.clone()),
        };
        for i in 0..taken {
            ops::add(
                &cfg,
                &format!("fill-{i:05}-0123456789abcdef0123456789abcdef"),
                "eth0",
            )
            .expect("fill");
        }
        let (mut add, mut del) = (Vec::new(), Vec::new());
        for r in 0..ROUNDS {
            let id = format!("bench-{r}-0123456789abcdef0123456789abcdef01234567");
            let t = Instant::now();
            ops::add(&cfg, &id, "eth0").expect("add");
            add.push(t.elapsed());
            let t = Instant::now();
            ops::del(&sc, &id, "eth0").expect("del");
            del.push(t.elapsed());
        }
        let (mut radd, mut rdel) = (Vec::new(), Vec::new());
        if have_ref {
            for r in 0..ROUNDS.min(15) {
                let id = format!("ref-{r}-0123456789abcdef0123456789abcdef01234567");
                radd.push(reference("ADD", &text, &id));
                rdel.push(reference("DEL", &text, &id));
            }
        }
        // first rcni ADD after the reference wrote into the dir: one rebuild
        let t = Instant::now();
        ops::add(&cfg, "after-ref", "eth0").expect("add after ref");
        let rebuild = t.elapsed();
        let fmt = |v: Vec<Duration>| {
            if v.is_empty() {
                "-".to_string()
            } else {
                format!("{:.3} ms", median(v).as_secs_f64() * 1e3)
            }
        };
        println!(
            "{taken:>6}  {:>12} {:>12}  {:>12} {:>12}   (rcni ADD right after reference writes: {:.3} ms)",
            fmt(add), fmt(del), fmt(radd), fmt(rdel), rebuild.as_secs_f64() * 1e3
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}
