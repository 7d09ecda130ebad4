//! portmap: the cost of one more mapping as mappings grow.

use crate::report::{Figure, Stats};
use crate::Options;
use std::time::Instant;
use testutil::TestNs;

/// ADD cost of one more mapping with `n` host ports already mapped on the
/// node (rcni only: the reference's cost is its iptables calls).
pub(crate) fn portmap_scaling(o: &Options) -> Figure {
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
        let mapping = |k: usize, port: u16| nft::rulesets::portmap::Mapping {
            network: "pmbench".into(),
            container_id: format!("fill{k}"),
            ifname: "eth0".into(),
            proto: nft::rulesets::portmap::Proto::Tcp,
            host_ip: None,
            host_port: port,
            pod_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 1, (k >> 8) as u8, k as u8)),
            pod_port: 80,
        };
        let opts = nft::rulesets::portmap::Options {
            snat: true,
            masq_all: false,
            pod_links: Vec::new(),
        };
        // The first ADD creates the table: not what is measured.
        let fill: Vec<_> = (0..n.max(1))
            .map(|k| mapping(k, 10000 + k as u16))
            .collect();
        if let Err(e) = nft::rulesets::portmap::add(&nft, &fill, &opts) {
            eprintln!("portmap fill: {e}");
            std::process::exit(1);
        }
        let mut samples = Vec::new();
        for i in 0..o.iterations + 3 {
            let m = mapping(60000 + i, 50000 + i as u16);
            let t = Instant::now();
            if let Err(e) = nft::rulesets::portmap::add(&nft, &[m], &opts) {
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
