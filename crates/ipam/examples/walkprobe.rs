#![allow(clippy::unwrap_used, missing_docs)]
use ipam::{ops, HostLocalConfig, StoreConfig};
use std::path::Path;
use std::time::Instant;

fn main() {
    let base = Path::new("/tmp/walkprobe/inproc");
    let _ = std::fs::remove_dir_all(base);
    let only = std::env::args().nth(2);
    let sizes: Vec<u32> = std::env::args()
        .nth(3)
        .map_or(vec![0, 4000], |s| vec![s.parse().unwrap(); 2]);
    let modes: Vec<&str> = ["steady", "wrap", "nocursor"]
        .into_iter()
        .filter(|m| only.as_deref().is_none_or(|o| o == *m))
        .collect();
    let iters: usize = std::env::args().nth(1).map_or(400, |s| s.parse().unwrap());
    for mode in modes {
        let mut med = Vec::new();
        for &n in &sizes {
            let dir = base.join(format!("{mode}-{n}"));
            let net = dir.join("walk");
            std::fs::create_dir_all(&net).unwrap();
            for k in 0..n {
                let h = k + 2;
                std::fs::write(
                    net.join(format!("10.9.{}.{}", h >> 8, h & 255)),
                    format!("fill{k}\r\neth0"),
                )
                .unwrap();
            }
            let text = format!(
                r#"{{"cniVersion":"1.0.0","name":"walk","ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.9.0.0/20"}}]]}}}}"#,
                dir.display()
            );
            let c = HostLocalConfig::parse(text.as_bytes(), &[]).unwrap();
            let s = StoreConfig {
                name: "walk".into(),
                data_dir: Some(dir.clone()),
            };
            let cursor = net.join("last_reserved_ip.0");
            let mut adds = Vec::new();
            for i in 0..iters + 3 {
                match mode {
                    "steady" if i == 0 && n > 0 => {
                        std::fs::write(&cursor, format!("10.9.{}.{}", (n + 1) >> 8, (n + 1) & 255))
                            .unwrap()
                    }
                    "wrap" => std::fs::write(&cursor, "10.9.15.254").unwrap(),
                    "nocursor" => {
                        let _ = std::fs::remove_file(&cursor);
                    }
                    _ => {}
                }
                let id = format!("w{i}");
                let t = Instant::now();
                ops::add(&c, &id, "eth0").unwrap();
                let e = t.elapsed();
                ops::del(&s, &id, "eth0").unwrap();
                if i >= 3 {
                    adds.push(e);
                }
            }
            adds.sort();
            med.push(adds[adds.len() / 2].as_secs_f64() * 1e6);
        }
        println!(
            "{mode:9} ADD@0 {:7.1} us  ADD@4000 {:7.1} us  ratio {:.3}",
            med[0],
            med[1],
            med[1] / med[0]
        );
    }
}
