//! Podman 4 (CNI backend) with a conflist whose first plugin is `multus`
//! (no kubeconfig: every delegate is attached), then portmap: one
//! container gets `eth0` from bridge and `net1` from ptp, reaches the node
//! through each, is reachable through a published port, and `podman rm -f`
//! leaves nothing of either network behind.
//!
//! The scenario runs once; each row is reported by its own test.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rcni_runtime_tests::check::{self, NodeServer, Rows};
use rcni_runtime_tests::podman::{Container, PodmanEnv};
use serde_json::json;
use std::sync::OnceLock;
use std::time::Duration;

const NET: &str = "rcnimulti";
const BRIDGE: &str = "rcni-mm0";
const SUBNET_A: &str = "10.231.9.0/24";
const GW_A: &str = "10.231.9.1";
const SUBNET_B: &str = "10.231.10.0/24";
const GW_B: &str = "10.231.10.1";
const NODE_PORT: u16 = 8098;
const HOST_PORT: u16 = 18090;

static ROWS: OnceLock<Rows> = OnceLock::new();

fn rows() -> &'static Rows {
    ROWS.get_or_init(scenario)
}

#[test]
fn podman_multus_1_add() {
    rows().assert_row("ADD");
}

#[test]
fn podman_multus_2_both_networks_carry_traffic() {
    rows().assert_row("eth0 and net1");
}

#[test]
fn podman_multus_3_published_port() {
    rows().assert_row("published port");
}

#[test]
fn podman_multus_4_del() {
    rows().assert_row("DEL");
}

#[test]
fn podman_multus_5_nothing_left() {
    rows().assert_row("nothing left");
}

fn conflist(env: &PodmanEnv) -> serde_json::Value {
    let state = env.plugin_state_dir();
    json!({
        "cniVersion": "1.0.0",
        "name": NET,
        "plugins": [
            {"type": "multus", "cniDir": state.join("multus"),
             "delegates": [
                {"cniVersion": "1.0.0", "name": "cluster", "type": "bridge", "bridge": BRIDGE,
                 "isGateway": true,
                 "ipam": {"type": "host-local", "dataDir": env.ipam_dir(),
                          "ranges": [[{"subnet": SUBNET_A, "gateway": GW_A}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"cniVersion": "1.0.0", "name": "side", "type": "ptp",
                 "ipam": {"type": "host-local", "dataDir": env.ipam_dir(),
                          "ranges": [[{"subnet": SUBNET_B, "gateway": GW_B}]]}}
             ]},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    })
}

fn addr_of(env: &PodmanEnv, name: &str, ifname: &str) -> Result<String, String> {
    let out = env
        .exec(name, &["ip", "-4", "-o", "addr", "show", ifname])
        .ok()?;
    // "2: eth0    inet 10.231.9.2/24 brd ..."
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .map(str::to_string)
        .ok_or_else(|| format!("{name}: no IPv4 address on {ifname}: {out}"))
}

fn scenario() -> Rows {
    Rows::scenario("podman+multus", |rows| {
        let env = PodmanEnv::new("pmm");
        env.add_network(&conflist(&env));
        let node = env.jail().node();
        let links_before = node.link_names();
        let name = format!("rcni-m{}", testutil::unique(""));
        let mut pod: Option<Container> = None;
        let mut addrs: Vec<String> = Vec::new();
        let mut host_links: Vec<String> = Vec::new();

        rows.row("ADD", || {
            let argv = [
                "sh",
                "-c",
                "echo multi > /www/index.html && exec httpd -f -p 80 -h /www",
            ];
            let c = env.run(&name, NET, &[(HOST_PORT, 80)], &argv)?;
            let a = addr_of(&env, &name, "eth0")?;
            let b = addr_of(&env, &name, "net1")?;
            if !a.starts_with("10.231.9.") || !b.starts_with("10.231.10.") {
                return Err(format!("eth0 {a}, net1 {b}: not from the two networks"));
            }
            for (net, ip) in [("cluster", &a), ("side", &b)] {
                let lease = env.ipam_dir().join(net).join(ip);
                let owner = std::fs::read_to_string(&lease)
                    .map_err(|e| format!("no IPAM file {}: {e}", lease.display()))?;
                if !owner.contains(&c.id) {
                    return Err(format!("{} holds {owner:?}", lease.display()));
                }
            }
            rcni_runtime_tests::proc::wait_for(Duration::from_secs(10), || {
                env.wget(&name, "127.0.0.1", 80)
                    .ok()
                    .filter(|b| b == "multi")
            })
            .ok_or("httpd never answered")?;
            host_links = node
                .link_names()
                .into_iter()
                .filter(|l| !links_before.contains(l) && l != BRIDGE)
                .collect();
            let summary = format!("eth0 {a}, net1 {b}; podman reports {:?}", c.ip);
            addrs = vec![a, b];
            pod = Some(c);
            Ok(summary)
        });
        let added = rows.passed("ADD");

        rows.row("eth0 and net1", || {
            if !added {
                return Err("not reached: ADD failed".into());
            }
            let _server = NodeServer::start(node, NODE_PORT, "node");
            for (gw, ifname) in [(GW_A, "eth0"), (GW_B, "net1")] {
                let route = env.exec(&name, &["ip", "route", "get", gw]).ok()?;
                if !route.contains(&format!("dev {ifname}")) {
                    return Err(format!("{gw} is not reached over {ifname}: {route}"));
                }
                check::expect_body(
                    &format!("{name} -> {gw}:{NODE_PORT} over {ifname}"),
                    env.wget(&name, gw, NODE_PORT),
                    "node",
                )?;
            }
            Ok(format!(
                "the node answers at {GW_A} (eth0) and {GW_B} (net1)"
            ))
        });

        rows.row("published port", || {
            if !added {
                return Err("not reached: ADD failed".into());
            }
            check::expect_body(
                "node -> 127.0.0.1:HOST_PORT",
                check::http_get(node, "127.0.0.1", HOST_PORT),
                "multi",
            )?;
            Ok(format!(
                "127.0.0.1:{HOST_PORT} from the node, portmap after multus"
            ))
        });

        rows.row("DEL", || {
            let Some(p) = &pod else {
                return Err("not reached: no container was started".into());
            };
            env.rm(&[&name])?;
            let left = env.podman(&["ps", "-a", "--format", "{{.Names}}"]).ok()?;
            if left.lines().any(|l| l.trim() == name) {
                return Err(format!("{name} still listed by podman ps -a"));
            }
            if p.netns.is_empty() || env.jail().inside(&p.netns).exists() {
                return Err(format!("netns {:?} still there", p.netns));
            }
            for (net, ip) in [("cluster", &addrs[0]), ("side", &addrs[1])] {
                if env.ipam_dir().join(net).join(ip).exists() {
                    return Err(format!("{ip} still allocated in {net}"));
                }
            }
            let log = env.plugin_log();
            if let Some(l) = log.lines().find(|l| l.contains(" error: ")) {
                return Err(format!("a plugin reported an error: {l}"));
            }
            Ok("podman rm -f: multus removed both attachments".into())
        });

        rows.row("nothing left", || {
            let Some(p) = &pod else {
                return Err("not reached: no container was started".into());
            };
            let mut needles = vec![p.id.clone(), name.clone()];
            needles.extend(addrs.iter().cloned());
            needles.extend(host_links.iter().cloned());
            let jail = env.jail();
            let cache = jail.cni_cache();
            let ipam = env.ipam_dir();
            let state = env.plugin_state_dir();
            let found = check::leftovers(jail, &needles, &[&cache, &ipam, &state]);
            if !found.is_empty() {
                return Err(found.join("\n"));
            }
            let netns = check::jail_netns_files(jail);
            if !netns.is_empty() {
                return Err(format!("netns files left in the jail: {netns:?}"));
            }
            Ok(format!("nothing names any of {} needles", needles.len()))
        });
    })
}
