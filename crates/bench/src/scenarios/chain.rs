//! The five-plugin chain, run the way libcni runs it.

use crate::harness::*;
use crate::report::Figure;
use crate::Options;
use netns::NetNs;
use std::path::Path;
use std::time::{Duration, Instant};
use testutil::{TempDir, TestNs};

pub(crate) const CHAIN: &[&str] = &["bridge", "portmap", "firewall", "tuning", "bandwidth"];

/// Which firewall backend the chain's firewall uses. The reference always
/// uses iptables; rcni uses nftables unless told or unless the host's
/// iptables FORWARD policy is DROP (Docker hosts), where it must use
/// iptables too.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirewallBackend {
    Default,
    Iptables,
}

pub(crate) fn chain_list(side: &Side, dir: &Path, fw: FirewallBackend) -> Vec<serde_json::Value> {
    let firewall = match fw {
        FirewallBackend::Default => serde_json::json!({"type": "firewall"}),
        FirewallBackend::Iptables => serde_json::json!({"type": "firewall", "backend": "iptables"}),
    };
    let j = serde_json::json!([
        {"type": "bridge", "bridge": format!("rc{}", side.octet), "isGateway": true, "ipMasq": true,
         "stateDir": dir.join("state"),
         "ipam": {"type": "host-local", "subnet": format!("10.{}.0.0/16", side.octet - 100),
                  "dataDir": dir.join("ipam"), "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": true}},
        firewall,
        {"type": "tuning", "dataDir": dir.join("tuning"), "sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1"}},
        {"type": "bandwidth", "ingressRate": 100_000_000u64, "ingressBurst": 1_000_000u64,
         "egressRate": 100_000_000u64, "egressBurst": 1_000_000u64}
    ]);
    j.as_array().cloned().unwrap_or_default()
}

/// One pod of a chain run: container id, netns path, mapped host port.
pub(crate) struct Pod<'a> {
    id: &'a str,
    netns: &'a str,
    port: u16,
}

/// Runs a chain the way libcni does (name, cniVersion, prevResult and the
/// declared runtimeConfig injected; DEL in reverse with the final result),
/// timing every plugin.
pub(crate) fn run_chain(
    side: &Side,
    node: &NetNs,
    plugins: &[serde_json::Value],
    command: &str,
    pod: &Pod,
    prev: Option<&serde_json::Value>,
) -> (Duration, Vec<Duration>, serde_json::Value) {
    let Pod { id, netns, port } = *pod;
    let mut order: Vec<usize> = (0..plugins.len()).collect();
    if command == "DEL" {
        order.reverse();
    }
    let mut times = vec![Duration::ZERO; plugins.len()];
    let mut result = prev.cloned().unwrap_or(serde_json::Value::Null);
    let start = Instant::now();
    for i in order {
        let mut conf = plugins[i].clone();
        let ty = conf["type"].as_str().unwrap_or("").to_string();
        if let Some(obj) = conf.as_object_mut() {
            let caps = obj.remove("capabilities");
            obj.insert("name".into(), format!("chain-{}", side.label).into());
            obj.insert("cniVersion".into(), "1.0.0".into());
            if caps.is_some_and(|c| c["portMappings"] == true) {
                obj.insert(
                    "runtimeConfig".into(),
                    serde_json::json!({"portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]}),
                );
            }
            if !result.is_null() {
                obj.insert("prevResult".into(), result.clone());
            }
        }
        let env = Env {
            command,
            container_id: id,
            netns,
            ifname: "eth0",
        };
        let r = must(
            exec(side, &ty, &env, &conf.to_string(), node),
            &format!("{} chain {ty} {command}", side.label),
        );
        times[i] = r.elapsed;
        if command == "ADD" {
            result = serde_json::from_str(&r.stdout).unwrap_or(serde_json::Value::Null);
        }
    }
    (start.elapsed(), times, result)
}

/// The five-plugin chain, whole and per plugin, from inside a node
/// namespace that already has one pod on the network (steady state).
#[allow(clippy::needless_range_loop)] // pods[side][iteration]
pub(crate) fn chain(sides: &[Side], o: &Options, fw: FirewallBackend) -> Vec<Figure> {
    let nodes: Vec<TestNs> = sides.iter().map(|_| TestNs::new("bc")).collect();
    if fw == FirewallBackend::Iptables {
        // A Docker-like host: iptables (nft flavour) FORWARD policy DROP.
        for n in &nodes {
            n.exec(&["iptables-nft", "-P", "FORWARD", "DROP"]);
        }
    }
    let label = match fw {
        FirewallBackend::Default => "",
        FirewallBackend::Iptables => " (firewall backend iptables)",
    };
    let data = TempDir::new("bench-chain");
    let total = o.iterations + 3;
    let pods: Vec<Vec<TestNs>> = sides
        .iter()
        .map(|_| (0..=total).map(|_| TestNs::new("bcp")).collect())
        .collect();
    let lists: Vec<Vec<serde_json::Value>> = sides
        .iter()
        .map(|s| chain_list(s, &data.path().join(s.label), fw))
        .collect();
    for (idx, s) in sides.iter().enumerate() {
        let path = pods[idx][total].path().display().to_string();
        let pod = Pod {
            id: "resident",
            netns: &path,
            port: 7999,
        };
        run_chain(s, nodes[idx].ns(), &lists[idx], "ADD", &pod, None);
    }
    let n = CHAIN.len();
    let mut adds = Samples::new(sides.len());
    let mut dels = Samples::new(sides.len());
    let mut per_add: Vec<Samples> = (0..n).map(|_| Samples::new(sides.len())).collect();
    let mut per_del: Vec<Samples> = (0..n).map(|_| Samples::new(sides.len())).collect();
    for i in 0..total {
        for s in ordered(sides, i) {
            let idx = index_of(sides, s);
            let path = pods[idx][i].path().display().to_string();
            let id = format!("chain{i}");
            let port = 8080 + i as u16;
            let pod = Pod {
                id: &id,
                netns: &path,
                port,
            };
            let (a, at, res) = run_chain(s, nodes[idx].ns(), &lists[idx], "ADD", &pod, None);
            let (d, dt, _) = run_chain(s, nodes[idx].ns(), &lists[idx], "DEL", &pod, Some(&res));
            if i >= 3 {
                adds.per_side[idx].push(a);
                dels.per_side[idx].push(d);
                for k in 0..n {
                    per_add[k].per_side[idx].push(at[k]);
                    per_del[k].per_side[idx].push(dt[k]);
                }
            }
        }
    }
    let mut out = vec![
        figure(
            &format!(
                "chain bridge+host-local → portmap → firewall → tuning → bandwidth ADD{label}"
            ),
            "ms",
            sides,
            &adds,
        ),
        figure(
            &format!(
                "chain bridge+host-local → portmap → firewall → tuning → bandwidth DEL{label}"
            ),
            "ms",
            sides,
            &dels,
        ),
    ];
    for k in 0..n {
        out.push(figure(
            &format!("  in chain{label}: {} ADD", CHAIN[k]),
            "ms",
            sides,
            &per_add[k],
        ));
        out.push(figure(
            &format!("  in chain{label}: {} DEL", CHAIN[k]),
            "ms",
            sides,
            &per_del[k],
        ));
    }
    out
}
