//! Node density: one pod added and removed (bridge + host-local) while N
//! pods stay attached to the same bridge, rcni and the reference side by
//! side, with the kernel's own cost of a veth create + attach on that same
//! bridge measured in the same loop (the floor under any bridge ADD).
//!
//! The N resident pods are made directly with netlink (a veth whose host end
//! is an up bridge port and whose peer is up in a shared "pods" namespace),
//! and their addresses are written into host-local's store in the
//! reference's on-disk format, so both sides see the same node: N bridge
//! ports and N allocated addresses.
//!
//! IPv6 is off in that shared namespace: a real pod has its own namespace
//! with one link-local route, so a frame the bridge floods to every port
//! costs each pod O(1); N peers in one namespace would instead make every
//! delivery walk N fe80::/64 routes (`__find_rr_leaf` in a profile), an
//! O(N²) artefact no real node has. The node's side keeps IPv6 as a plugin
//! leaves it (a link-local address and route per host veth).

use super::{add_then_del, figure, index_of, ordered, settle, Env, Options, Samples, Side};
use crate::report::{Figure, Stats};
use netlink::{LinkKind, LinkSpec, Socket};
use std::path::Path;
use std::time::{Duration, Instant};
use testutil::{TempDir, TestNs};

/// The density figures' names: one of these, then `, N pods on the
/// bridge` (see [`named`]). The chart and the target lines find them by it.
const ADD: &str = "density: bridge + host-local ADD";
const DEL: &str = "density: bridge + host-local DEL";
const FLOOR_ATTACH: &str = "density: kernel veth create + attach";
const FLOOR_LIVE: &str =
    "density: kernel veth create + attach + pod end up with an address, both ends oper up";
const FLOOR_DELETE: &str = "density: kernel veth delete";

/// The name of figure `what` at `n` pods.
fn named(what: &str, n: usize) -> String {
    format!("{what}, {n} pods on the bridge")
}

/// Fails the run by unwinding, so every namespace and directory guard of
/// the scenario is dropped (`process::exit` would leak them).
fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    panic!("density: {what}: {e}");
}

/// A plugin call that must succeed.
fn must(run: super::Run, what: &str) -> super::Run {
    if !run.ok {
        fail(what, run.stdout.trim());
    }
    run
}

/// One side's node: its bridge with resident pods attached.
struct Node {
    ns: TestNs,
    /// Holds the resident pods' ends of their veths.
    pods: TestNs,
    host: Socket,
    peer: Socket,
    bridge: String,
    bridge_index: u32,
    attached: usize,
}

impl Node {
    fn new(bridge: String) -> Node {
        let ns = TestNs::new("dn");
        let pods = TestNs::new("dp");
        let host = Socket::route_in(ns.ns()).unwrap_or_else(|e| fail("netlink", e));
        let peer = Socket::route_in(pods.ns()).unwrap_or_else(|e| fail("netlink", e));
        let off = pods.ns().run(|| {
            for k in ["all", "default"] {
                std::fs::write(format!("/proc/sys/net/ipv6/conf/{k}/disable_ipv6"), "1")?;
            }
            Ok::<(), std::io::Error>(())
        });
        if !matches!(off, Ok(Ok(()))) {
            fail("pods namespace", "cannot turn IPv6 off");
        }
        host.create_bridge(&bridge, None, None)
            .unwrap_or_else(|e| fail("bridge", e));
        let index = match host.link_by_name(&bridge) {
            Ok(Some(l)) => l.index,
            other => fail("bridge lookup", format!("{other:?}")),
        };
        host.set_link_up(index)
            .unwrap_or_else(|e| fail("bridge up", e));
        Node {
            ns,
            pods,
            host,
            peer,
            bridge,
            bridge_index: index,
            attached: 0,
        }
    }

    /// Attaches resident pods until `n` are on the bridge.
    fn grow_to(&mut self, n: usize) {
        while self.attached < n {
            let k = self.attached;
            let spec = LinkSpec {
                up: true,
                master: Some(self.bridge_index),
                queues: Some(1),
                ..LinkSpec::new(
                    format!("dv{k}"),
                    LinkKind::Veth {
                        peer_name: format!("dq{k}"),
                        peer_mac: None,
                        peer_mtu: None,
                        peer_netns_fd: Some(self.pods.ns().fd()),
                    },
                )
            };
            self.host
                .create_link(&spec)
                .unwrap_or_else(|e| fail("resident veth", e));
            match self.peer.link_by_name(&format!("dq{k}")) {
                Ok(Some(l)) => self
                    .peer
                    .set_link_up(l.index)
                    .unwrap_or_else(|e| fail("resident up", e)),
                other => fail("resident lookup", format!("{other:?}")),
            }
            self.attached += 1;
        }
    }
}

/// Writes host-local's store for `n` resident pods of a /16 (10.O.0.2 …),
/// `last_reserved_ip.0` on the last one, as n ADDs would have left it.
fn prefill(dir: &Path, octet: u8, n: usize) {
    if let Err(e) = std::fs::create_dir_all(dir) {
        fail("ipam dir", e);
    }
    let mut last = None;
    for k in 0..n {
        let host = k as u32 + 2;
        let ip = format!("10.{octet}.{}.{}", host >> 8, host & 0xff);
        if let Err(e) = std::fs::write(dir.join(&ip), format!("resident{k}\r\neth0")) {
            fail("prefill", e);
        }
        last = Some(ip);
    }
    if let Some(ip) = last {
        if let Err(e) = std::fs::write(dir.join("last_reserved_ip.0"), ip) {
            fail("prefill", e);
        }
    }
}

fn conf(side: &Side, bridge: &str, data: &Path) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"density-{}","type":"bridge","bridge":"{bridge}","isGateway":true,"stateDir":"{}","ipam":{{"type":"host-local","subnet":"10.{}.0.0/16","dataDir":"{}"}}}}"#,
        side.label,
        data.join("state").display(),
        side.octet,
        data.display()
    )
}

/// The kernel floor on `node`'s bridge: veth create (peer into `pod`) and
/// attach (master + up), then the deletion. Netlink only, no processes.
fn kernel_once(node: &Node, pod: &TestNs) -> (Duration, Duration, Duration) {
    let pod_sock = Socket::route_in(pod.ns()).unwrap_or_else(|e| fail("netlink", e));
    let t = Instant::now();
    let spec = LinkSpec {
        up: true,
        ..LinkSpec::new(
            "dkfloor",
            LinkKind::Veth {
                peer_name: "dkpeer".into(),
                peer_mac: None,
                peer_mtu: None,
                peer_netns_fd: Some(pod.ns().fd()),
            },
        )
    };
    node.host
        .create_link(&spec)
        .unwrap_or_else(|e| fail("floor veth", e));
    let index = match node.host.link_by_name("dkfloor") {
        Ok(Some(l)) => l.index,
        other => fail("floor lookup", format!("{other:?}")),
    };
    node.host
        .set_master(index, node.bridge_index)
        .unwrap_or_else(|e| fail("floor master", e));
    let create = t.elapsed();
    // What a bridge ADD further asks of the kernel: the pod's end with an
    // address and up, and both ends operationally up (as both plugins wait
    // for). The address goes on before carrier, as the plugins order it:
    // carrier starts the pod's IPv6 announcements at once (DAD is off in
    // `pod`, as both plugins set it on a pod's end), which the bridge
    // floods to every port under the RTNL lock, so a request made after
    // carrier would wait for that flood.
    let peer = match pod_sock.link_by_name("dkpeer") {
        Ok(Some(l)) => l.index,
        other => fail("floor peer", format!("{other:?}")),
    };
    // Watched from before carrier, as a bridge ADD waits: a GETLINK poll
    // would queue behind the pod's first announcements, flooded to every
    // port under the RTNL lock, and charge that to the floor.
    let on_host = node
        .host
        .watch_links()
        .unwrap_or_else(|e| fail("floor watch", e));
    let in_pod = pod_sock
        .watch_links()
        .unwrap_or_else(|e| fail("floor watch", e));
    pod_sock
        .add_address(peer, std::net::IpAddr::from([10, 254, 0, 2]), 16)
        .unwrap_or_else(|e| fail("floor address", e));
    pod_sock
        .set_link_up(peer)
        .unwrap_or_else(|e| fail("floor peer up", e));
    let deadline = Instant::now() + Duration::from_millis(500);
    for (watch, i) in [(&on_host, index), (&in_pod, peer)] {
        match watch.until_oper_up(i, deadline) {
            Ok(true) => {}
            Ok(false) => fail("floor operstate", "not operationally up in 500 ms"),
            Err(e) => fail("floor operstate", e),
        }
    }
    let full = t.elapsed();
    drop((on_host, in_pod));
    let t = Instant::now();
    node.host
        .delete_link(index)
        .unwrap_or_else(|e| fail("floor delete", e));
    (create, full, t.elapsed())
}

/// The namespace the floor's pod ends go into. DAD is off for links made
/// in it, as both plugins turn it off on a pod's end: the pod's first IPv6
/// announcements then follow carrier at once, and the floor's deletion
/// meets them as a plugin's DEL does.
fn floor_pod() -> TestNs {
    let pod = TestNs::new("dkp");
    let off = pod
        .ns()
        .run(|| std::fs::write("/proc/sys/net/ipv6/conf/default/accept_dad", "0"));
    if !matches!(off, Ok(Ok(()))) {
        fail("floor pod namespace", "cannot turn DAD off");
    }
    pod
}

/// Per density: the ADD and DEL figures of both sides, then the kernel's
/// floors (create + attach; the same plus pod end up, addressed, oper up;
/// delete).
pub fn density(sides: &[Side], o: &Options) -> Vec<Figure> {
    // No 4000: a Linux bridge takes at most 1023 ports (BR_MAX_PORTS; the
    // 1024th enslave fails with EXFULL), so 1000 pods plus the measured pod
    // and the floor's veth is about as full as one bridge gets.
    let sizes: Vec<usize> = if o.quick {
        vec![10, 100]
    } else {
        vec![10, 250, 1000]
    };
    // DEL's median swings with RCU grace periods (a veth deletion waits
    // for them; 40 samples moved it by 3 ms between runs): 300 samples
    // per size keep the 10-vs-1000 comparison within about 0.4 ms, in
    // about 75 s.
    let iterations = if o.quick {
        o.iterations.min(20)
    } else {
        o.iterations.max(300)
    };
    let mut nodes: Vec<Node> = sides
        .iter()
        .map(|s| Node::new(format!("dn{}", s.octet)))
        .collect();
    let pods: Vec<TestNs> = sides.iter().map(|_| TestNs::new("dpod")).collect();
    let floor_pod = floor_pod();
    let data = TempDir::new("bench-density");
    let mut out = Vec::new();
    for &n in &sizes {
        let t = Instant::now();
        for (idx, s) in sides.iter().enumerate() {
            nodes[idx].grow_to(n);
            prefill(&data.path().join(format!("{n}-{}", s.label)), s.octet, n);
        }
        eprintln!(
            "  {n} pods attached per side ({:.1} s)",
            t.elapsed().as_secs_f64()
        );
        let mut adds = Samples::new(sides.len());
        let mut dels = Samples::new(sides.len());
        let mut kc = Vec::new();
        let mut kf = Vec::new();
        let mut kd = Vec::new();
        settle();
        for i in 0..iterations + 3 {
            for s in ordered(sides, i) {
                let idx = index_of(sides, s);
                let node = &nodes[idx];
                let path = pods[idx].path().display().to_string();
                let id = format!("density{n}x{i}");
                let c = conf(
                    s,
                    &node.bridge,
                    &data.path().join(format!("{n}-{}", s.label)),
                );
                let (a, d) = add_then_del(
                    s,
                    "bridge",
                    &Env::add(&id, &path),
                    &c,
                    node.ns.ns(),
                    &format!("{} density {n}", s.label),
                    must,
                );
                if i >= 3 {
                    adds.per_side[idx].push(a.elapsed);
                    dels.per_side[idx].push(d.elapsed);
                }
            }
            // The floor on the first side's bridge (same N ports).
            let (c, f, d) = kernel_once(&nodes[0], &floor_pod);
            if i >= 3 {
                kc.push(c);
                kf.push(f);
                kd.push(d);
            }
        }
        out.push(figure(&named(ADD, n), "ms", sides, &adds));
        out.push(figure(&named(DEL, n), "ms", sides, &dels));
        for (what, samples) in [(FLOOR_ATTACH, &kc), (FLOOR_LIVE, &kf), (FLOOR_DELETE, &kd)] {
            let mut f = Figure::new(&named(what, n), "ms");
            f.set("kernel", Stats::from_durations(samples));
            out.push(f);
        }
    }
    out
}

/// (pods, ADD figure, kernel create + attach figure) per density, for the
/// chart.
pub fn curve(figures: &[Figure]) -> Vec<(usize, Figure, Figure)> {
    let pods = |f: &Figure| -> Option<usize> {
        let rest = f.name.strip_prefix(ADD)?.strip_prefix(", ")?;
        rest.strip_suffix(" pods on the bridge")?.parse().ok()
    };
    figures
        .iter()
        .filter_map(|a| {
            let n = pods(a)?;
            let k = figures.iter().find(|k| k.name == named(FLOOR_ATTACH, n))?;
            Some((n, a.clone(), k.clone()))
        })
        .collect()
}

/// The issue's density target, read off `figures` for the largest density
/// against the smallest: rcni's ADD (DEL) there may cost at most its cost
/// at the smallest plus the kernel floor's growth plus 0.5 ms. One line
/// per comparison, saying met or missed, with the numbers.
pub fn target_lines(figures: &[Figure]) -> Vec<String> {
    let median = |what: &str, n: usize, side: &str| -> Option<f64> {
        let name = named(what, n);
        figures
            .iter()
            .find(|f| f.name == name)
            .and_then(|f| f.get(side))
            .map(|s| s.median)
    };
    let sizes: Vec<usize> = curve(figures).iter().map(|(n, _, _)| *n).collect();
    let (Some(&lo), Some(&hi)) = (sizes.iter().min(), sizes.iter().max()) else {
        return Vec::new();
    };
    let checks = [
        ("ADD", ADD, FLOOR_ATTACH, "floor: veth create + attach"),
        (
            "ADD",
            ADD,
            FLOOR_LIVE,
            "floor: the same + pod end up, addressed, both ends oper up",
        ),
        ("DEL", DEL, FLOOR_DELETE, "floor: veth delete"),
    ];
    let mut out = Vec::new();
    for (verb, what, floor, floor_name) in checks {
        let (Some(a), Some(b), Some(k0), Some(k1)) = (
            median(what, lo, "rcni"),
            median(what, hi, "rcni"),
            median(floor, lo, "kernel"),
            median(floor, hi, "kernel"),
        ) else {
            continue;
        };
        let limit = a + (k1 - k0) + 0.5;
        out.push(format!(
            "density target, {verb} at {hi} pods ({floor_name}): {b:.2} ms against a limit of {a:.2} + {:.2} + 0.5 = {limit:.2} ms: {}",
            k1 - k0,
            if b <= limit { "met" } else { "missed" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(what: &str, n: usize, side: &str, median: f64) -> Figure {
        let mut f = Figure::new(&named(what, n), "ms");
        f.set(side, Stats::single(median));
        f
    }

    #[test]
    fn target_lines_compare_the_largest_density_with_the_smallest() {
        let figures = vec![
            fig(ADD, 10, "rcni", 1.0),
            fig(DEL, 10, "rcni", 20.0),
            fig(FLOOR_ATTACH, 10, "kernel", 0.5),
            fig(FLOOR_LIVE, 10, "kernel", 0.6),
            fig(FLOOR_DELETE, 10, "kernel", 19.0),
            fig(ADD, 1000, "rcni", 2.4),
            fig(DEL, 1000, "rcni", 21.0),
            fig(FLOOR_ATTACH, 1000, "kernel", 1.0),
            fig(FLOOR_LIVE, 1000, "kernel", 2.0),
            fig(FLOOR_DELETE, 1000, "kernel", 20.0),
        ];
        assert_eq!(curve(&figures).len(), 2);
        let lines = target_lines(&figures);
        assert_eq!(lines.len(), 3, "{lines:?}");
        // 2.4 > 1.0 + 0.5 + 0.5; 2.4 <= 1.0 + 1.4 + 0.5; 21.0 <= 20.0 + 1.0 + 0.5.
        assert!(
            lines[0].contains("limit of 1.00 + 0.50 + 0.5 = 2.00 ms: missed"),
            "{}",
            lines[0]
        );
        assert!(lines[1].ends_with("= 2.90 ms: met"), "{}", lines[1]);
        assert!(
            lines[2].starts_with("density target, DEL at 1000 pods"),
            "{}",
            lines[2]
        );
        assert!(lines[2].ends_with("= 21.50 ms: met"), "{}", lines[2]);
        assert!(
            target_lines(&[]).is_empty(),
            "no density measured, no lines"
        );
    }
}
