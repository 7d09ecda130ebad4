//! The five-plugin chain — bridge + host-local → portmap → firewall →
//! tuning → bandwidth — driven by rcni's runtime (the libcni equivalent)
//! from inside a node namespace, with real traffic through the host port
//! and masquerade to an "outside" namespace.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use runtime::{CniConfig, NetworkConfigList, RuntimeConf};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;
use testutil::{unique, PluginDir, TempDir, TestNs};

/// node ns with an uplink veth to an "outside" ns (10.<o>.0.1 ↔ 10.<o>.0.2).
struct World {
    node: TestNs,
    outside: TestNs,
    node_ip: String,
    outside_ip: String,
}

fn world(octet: u8) -> World {
    let node = TestNs::new("chn");
    let outside = TestNs::new("cho");
    let (a, b) = (unique("up"), unique("ou"));
    node.exec(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
    node.exec(&["ip", "link", "set", &b, "netns", outside.name()]);
    let node_ip = format!("10.{octet}.0.1");
    let outside_ip = format!("10.{octet}.0.2");
    node.exec(&["ip", "addr", "add", &format!("{node_ip}/24"), "dev", &a]);
    node.exec(&["ip", "link", "set", &a, "up"]);
    outside.exec(&["ip", "addr", "add", &format!("{outside_ip}/24"), "dev", &b]);
    outside.exec(&["ip", "link", "set", &b, "up"]);
    World {
        node,
        outside,
        node_ip,
        outside_ip,
    }
}

fn conflist(v: &str, net: &str, br: &str, subnet: &str, tmp: &Path) -> NetworkConfigList {
    let list = json!({
        "cniVersion": v,
        "name": net,
        "plugins": [
            {"type": "bridge", "bridge": br, "isGateway": true, "ipMasq": true,
             "stateDir": tmp.join("state"),
             "ipam": {"type": "host-local", "subnet": subnet, "dataDir": tmp.join("ipam"),
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "firewall"},
            {"type": "tuning", "dataDir": tmp.join("tuning"),
             "sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1"}},
            {"type": "bandwidth", "ingressRate": 100_000_000u64, "ingressBurst": 1_000_000u64,
             "egressRate": 100_000_000u64, "egressBurst": 1_000_000u64}
        ]
    });
    NetworkConfigList::from_bytes(list.to_string().as_bytes()).expect("conflist")
}

fn tcp_echo_once(listener: &TcpListener) -> Option<SocketAddr> {
    listener.set_nonblocking(false).ok()?;
    let (mut s, peer) = listener.accept().ok()?;
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).ok()?;
    s.write_all(&buf).ok()?;
    Some(peer)
}

fn connect_and_echo(to: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&to, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4];
    s.write_all(b"ping").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"ping"
}

/// Connects from `client` to `to`, with a one-shot echo server in `server`
/// bound to `bind`; returns the peer address the server saw.
fn exchange(
    server: &TestNs,
    bind: SocketAddr,
    client: &TestNs,
    to: SocketAddr,
) -> Option<SocketAddr> {
    let listener = server.run(|| TcpListener::bind(bind)).ok()?;
    std::thread::scope(|s| {
        let srv = s.spawn(|| tcp_echo_once(&listener));
        let ok = client.run(|| connect_and_echo(to));
        if !ok {
            // Unblock the accept.
            let _ = server.run(|| TcpStream::connect_timeout(&bind, Duration::from_millis(200)));
            let _ = srv.join();
            return None;
        }
        srv.join().ok().flatten()
    })
}

fn pod_ip(result: &cni_spec::Result) -> Ipv4Addr {
    match result.ips.first().map(|i| i.address.addr()) {
        Some(std::net::IpAddr::V4(a)) => a,
        other => panic!("no IPv4 address in result: {other:?}"),
    }
}

fn rules_mentioning(node: &TestNs, needle: &str) -> usize {
    node.exec(&["nft", "list", "ruleset"])
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

#[test]
fn five_plugin_chain_add_check_del_del() {
    let bin = PluginDir::install(Path::new(env!("CARGO_BIN_EXE_rcni")));
    for (i, v) in ["0.4.0", "1.0.0", "1.1.0"].iter().enumerate() {
        eprintln!("-- cniVersion {v}");
        let w = world(150 + i as u8);
        let tmp = TempDir::new("chain");
        let net = format!("chain{i}");
        let br = unique("cb");
        let subnet = format!("10.{}.0.0/24", 160 + i);
        let list = conflist(v, &net, &br, &subnet, tmp.path());
        let cni = CniConfig::new([bin.path()])
            .with_cache_dir(tmp.path().join("cache"))
            .with_timeout(Duration::from_secs(20));
        let pod = TestNs::new("chp");
        let id = unique("ctr");
        let rt = RuntimeConf::new(&id, pod.path().display().to_string(), "eth0").capability(
            "portMappings",
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
        );

        let result = w.node.run(|| cni.add(&list, &rt)).expect("chain ADD");
        let ip = pod_ip(&result);
        assert!(
            result.interfaces.iter().any(|x| x.name == br),
            "bridge in result"
        );
        assert!(
            result.interfaces.iter().any(|x| x.name.starts_with("bwp")),
            "bandwidth's IFB in result: {:?}",
            result.interfaces
        );

        // tuning took effect inside the pod.
        let arp = pod.exec(&["cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify"]);
        assert_eq!(arp.trim(), "1");
        // bandwidth: a TBF on the host side of the pod's veth.
        let qdiscs = w.node.exec(&["tc", "qdisc", "show"]);
        assert!(qdiscs.contains("tbf"), "{qdiscs}");

        // Outside → node:8080 → pod:80 through portmap (and firewall).
        let seen = exchange(
            &pod,
            SocketAddr::from(([0, 0, 0, 0], 80)),
            &w.outside,
            format!("{}:8080", w.node_ip).parse().expect("addr"),
        )
        .expect("host port reaches the pod");
        assert_eq!(
            seen.ip().to_string(),
            w.outside_ip,
            "client address preserved"
        );

        // Pod → outside is masqueraded to the node's address.
        let seen = exchange(
            &w.outside,
            SocketAddr::from(([0, 0, 0, 0], 9000)),
            &pod,
            format!("{}:9000", w.outside_ip).parse().expect("addr"),
        )
        .expect("pod reaches outside");
        assert_eq!(
            seen.ip().to_string(),
            w.node_ip,
            "masqueraded to the node address"
        );

        w.node.run(|| cni.check(&list, &rt)).expect("chain CHECK");

        w.node.run(|| cni.del(&list, &rt)).expect("chain DEL");
        // Everything per-pod is gone.
        let links = w.node.link_names();
        assert!(
            !links
                .iter()
                .any(|l| l.starts_with("veth") || l.starts_with("bwp")),
            "no veth or IFB left: {links:?}"
        );
        assert_eq!(rules_mentioning(&w.node, &id), 0, "no rule mentions {id}");
        assert!(
            !tmp.path()
                .join("ipam")
                .join(&net)
                .join(ip.to_string())
                .exists(),
            "address released"
        );
        assert!(
            exchange(
                &pod,
                SocketAddr::from(([0, 0, 0, 0], 80)),
                &w.outside,
                format!("{}:8080", w.node_ip).parse().expect("addr"),
            )
            .is_none(),
            "host port closed after DEL"
        );
        // DEL again, and containerd's second DEL without a netns.
        w.node.run(|| cni.del(&list, &rt)).expect("second DEL");
        let no_ns = RuntimeConf::new(&id, "", "eth0");
        w.node
            .run(|| cni.del(&list, &no_ns))
            .expect("DEL without netns");
    }
}
