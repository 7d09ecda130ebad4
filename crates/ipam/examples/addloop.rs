//! Tiny driver for profiling: N ADD/DEL pairs in a fresh /20.

// Example/benchmark code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let base = std::env::temp_dir().join(format!("rcni-ipam-addloop-{}", std::process::id()));
    let text = format!(
        r#"{{"cniVersion":"1.0.0","name":"p","ipam":{{"type":"host-local","dataDir":"{}","subnet":"10.30.0.0/20"}}}}"#,
        base.display()
    );
    let Ok(cfg) = ipam::HostLocalConfig::parse(text.as_bytes(), &[]) else {
        return;
    };
    let sc = cfg.store_config();
    for i in 0..n {
        let t = Instant::now();
        let r = ipam::ops::add(&cfg, &format!("c{i}"), "eth0");
        let a = t.elapsed();
        let t = Instant::now();
        let d = ipam::ops::del(&sc, &format!("c{i}"), "eth0");
        println!(
            "add {:?} {:?} del {:?} {:?}",
            a,
            r.is_ok(),
            t.elapsed(),
            d.is_ok()
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}
