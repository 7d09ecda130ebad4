//! Podman 4 (CNI backend) on rcni: bridge (ipMasq) → portmap → firewall →
//! tuning → bandwidth, two containers, inside a jail (see the crate docs).
//!
//! The scenario runs once, in order, and each of its six rows is reported
//! by its own test: ADD, gateway, container ↔ container, published port,
//! DEL, nothing left.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rcni_runtime_tests::check::{self, NodeServer, Rows};
use rcni_runtime_tests::podman::{Container, PodmanEnv};
use serde_json::json;
use std::sync::OnceLock;
use std::time::Duration;

const NET: &str = "rcnitest";
const BRIDGE: &str = "rcni-pm0";
const SUBNET: &str = "10.231.7.0/24";
const GW: &str = "10.231.7.1";
/// The node-side listener the containers reach through the gateway.
const NODE_PORT: u16 = 8099;
const HOST_PORT_A: u16 = 18080;
const HOST_PORT_B: u16 = 18081;

static ROWS: OnceLock<Rows> = OnceLock::new();

fn rows() -> &'static Rows {
    ROWS.get_or_init(scenario)
}

#[test]
fn podman_1_add() {
    rows().assert_row("ADD");
}

#[test]
fn podman_2_gateway() {
    rows().assert_row("gateway");
}

#[test]
fn podman_3_container_to_container() {
    rows().assert_row("container<->container");
}

#[test]
fn podman_4_published_port() {
    rows().assert_row("published port");
}

#[test]
fn podman_5_del() {
    rows().assert_row("DEL");
}

#[test]
fn podman_6_nothing_left() {
    rows().assert_row("nothing left");
}

fn conflist(env: &PodmanEnv) -> serde_json::Value {
    let state = env.plugin_state_dir();
    json!({
        "cniVersion": "1.0.0",
        "name": NET,
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": true, "ipMasq": true,
             "stateDir": state.join("bridge"),
             "ipam": {"type": "host-local", "dataDir": env.ipam_dir(),
                      "ranges": [[{"subnet": SUBNET, "gateway": GW}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "firewall"},
            {"type": "tuning", "dataDir": state.join("tuning"),
             "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}},
            {"type": "bandwidth", "ingressRate": 100_000_000u64, "ingressBurst": 1_000_000u64,
             "egressRate": 100_000_000u64, "egressBurst": 1_000_000u64}
        ]
    })
}

/// busybox httpd answering with the container's name.
fn serve(name: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("echo {name} > /www/index.html && exec httpd -f -p 80 -h /www"),
    ]
}

fn start(env: &PodmanEnv, name: &str, port: u16) -> Result<Container, String> {
    let argv = serve(name);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let c = env.run(name, NET, &[(port, 80)], &argv)?;
    if !c.ip.starts_with("10.231.7.") {
        return Err(format!("{name}: address {:?} is not in {SUBNET}", c.ip));
    }
    let addr = env
        .exec(name, &["ip", "-4", "-o", "addr", "show", "eth0"])
        .ok()?;
    if !check::mentions(&addr, &c.ip) {
        return Err(format!("{name}: eth0 lacks {}: {addr}", c.ip));
    }
    let lease = env.ipam_dir().join(NET).join(&c.ip);
    let owner = std::fs::read_to_string(&lease)
        .map_err(|e| format!("{name}: no IPAM file {}: {e}", lease.display()))?;
    if !owner.contains(&c.id) {
        return Err(format!("{name}: {} holds {owner:?}", lease.display()));
    }
    // httpd is up once it answers on the container's own loopback.
    rcni_runtime_tests::proc::wait_for(Duration::from_secs(10), || {
        env.wget(name, "127.0.0.1", 80).ok().filter(|b| b == name)
    })
    .ok_or_else(|| format!("{name}: httpd never answered"))?;
    Ok(c)
}

fn scenario() -> Rows {
    Rows::scenario("podman", |rows| {
        let env = PodmanEnv::new("pm");
        env.add_network(&conflist(&env));
        let node = env.jail().node();
        let links_before = node.link_names();
        let suffix = testutil::unique("");
        let (na, nb) = (format!("rcni-a{suffix}"), format!("rcni-b{suffix}"));
        let mut pods: Vec<Container> = Vec::new();
        let mut host_links: Vec<String> = Vec::new();

        rows.row("ADD", || {
            pods.push(start(&env, &na, HOST_PORT_A)?);
            pods.push(start(&env, &nb, HOST_PORT_B)?);
            if pods[0].ip == pods[1].ip {
                return Err(format!("both containers got {}", pods[0].ip));
            }
            host_links = node
                .link_names()
                .into_iter()
                .filter(|l| !links_before.contains(l) && l != BRIDGE)
                .collect();
            Ok(format!(
                "{} {}, {} {}; node links {:?}",
                na, pods[0].ip, nb, pods[1].ip, host_links
            ))
        });
        let added = rows.passed("ADD");

        rows.row("gateway", || {
            if !added {
                return Err("not reached: ADD failed".into());
            }
            let _server = NodeServer::start(node, NODE_PORT, "node");
            for p in &pods {
                check::expect_body(
                    &format!("{} -> {GW}:{NODE_PORT}", p.name),
                    env.wget(&p.name, GW, NODE_PORT),
                    "node",
                )?;
            }
            Ok(format!("both containers reach the node at {GW}"))
        });

        rows.row("container<->container", || {
            if !added {
                return Err("not reached: ADD failed".into());
            }
            let (a, b) = (&pods[0], &pods[1]);
            check::expect_body("a -> b", env.wget(&a.name, &b.ip, 80), &b.name)?;
            check::expect_body("b -> a", env.wget(&b.name, &a.ip, 80), &a.name)?;
            Ok(format!("{} <-> {} over HTTP", a.ip, b.ip))
        });

        rows.row("published port", || {
            if !added {
                return Err("not reached: ADD failed".into());
            }
            let (a, b) = (&pods[0], &pods[1]);
            check::expect_body(
                "node -> 127.0.0.1:HOST_PORT_A",
                check::http_get(node, "127.0.0.1", HOST_PORT_A),
                &a.name,
            )?;
            check::expect_body(
                "node -> bridge address:HOST_PORT_B",
                check::http_get(node, GW, HOST_PORT_B),
                &b.name,
            )?;
            check::expect_body(
                "b -> bridge address:HOST_PORT_A",
                env.wget(&b.name, GW, HOST_PORT_A),
                &a.name,
            )?;
            Ok(format!(
                "127.0.0.1:{HOST_PORT_A} and {GW}:{HOST_PORT_B} from the node, {GW}:{HOST_PORT_A} from the other container"
            ))
        });

        rows.row("DEL", || {
            if pods.is_empty() {
                return Err("not reached: no container was started".into());
            }
            let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
            env.rm(&names)?;
            let left = env.podman(&["ps", "-a", "--format", "{{.Names}}"]).ok()?;
            for p in &pods {
                if left.lines().any(|l| l.trim() == p.name) {
                    return Err(format!("{} still listed by podman ps -a", p.name));
                }
                if p.netns.is_empty() || env.jail().inside(&p.netns).exists() {
                    return Err(format!("{}: netns {:?} still there", p.name, p.netns));
                }
            }
            for p in &pods {
                let lease = env.ipam_dir().join(NET).join(&p.ip);
                if lease.exists() {
                    return Err(format!("{}: {} still allocated", p.name, p.ip));
                }
            }
            let log = env.plugin_log();
            for p in &pods {
                let dels = log
                    .lines()
                    .filter(|l| l.contains(" DEL ") && l.contains(&p.id))
                    .count();
                if dels < 5 {
                    return Err(format!(
                        "{}: {dels} plugin DEL calls logged, expected one per plugin (5):\n{log}",
                        p.name
                    ));
                }
            }
            if let Some(l) = log.lines().find(|l| l.contains(" error: ")) {
                return Err(format!("a plugin reported an error: {l}"));
            }
            Ok("podman rm -f: every plugin's DEL succeeded, netns files gone".into())
        });

        rows.row("nothing left", || {
            if pods.is_empty() {
                return Err("not reached: no container was started".into());
            }
            if !rows_passed_del(&pods, &env) {
                return Err("not reached: containers still exist".into());
            }
            let mut needles: Vec<String> = Vec::new();
            for p in &pods {
                needles.extend([p.id.clone(), p.name.clone(), p.ip.clone()]);
            }
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
            Ok(format!(
                "no link, address, route, nft/iptables rule, IPAM, cache or state file names {} needles",
                needles.len()
            ))
        });
    })
}

/// The containers are gone from Podman (whatever the DEL row found).
fn rows_passed_del(pods: &[Container], env: &PodmanEnv) -> bool {
    env.podman(&["ps", "-a", "--format", "{{.Names}}"])
        .ok()
        .is_ok_and(|left| {
            pods.iter()
                .all(|p| !left.lines().any(|l| l.trim() == p.name))
        })
}
