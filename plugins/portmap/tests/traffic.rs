//! The portmap plugin in a node namespace, with real TCP/UDP traffic from
//! an "outside" namespace through a host port into a pod namespace.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use plugin_portmap::Portmap;
use serde_json::{json, Value};
use testutil::TestNs;

struct Topo {
    node: TestNs,
    pod: TestNs,
    outside: TestNs,
}

fn topo() -> Topo {
    let t = Topo {
        node: TestNs::new("pn"),
        pod: TestNs::new("pp"),
        outside: TestNs::new("po"),
    };
    let (pn, on) = (t.pod.name().to_string(), t.outside.name().to_string());
    let n = &t.node;
    n.exec(&[
        "ip", "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns", &pn,
    ]);
    n.exec(&[
        "ip", "link", "add", "vout", "type", "veth", "peer", "name", "eth0", "netns", &on,
    ]);
    n.exec(&["ip", "addr", "add", "10.61.0.1/24", "dev", "vpod"]);
    n.exec(&["ip", "addr", "add", "192.168.61.1/24", "dev", "vout"]);
    n.exec(&["ip", "link", "set", "vpod", "up"]);
    n.exec(&["ip", "link", "set", "vout", "up"]);
    n.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    t.pod
        .exec(&["ip", "addr", "add", "10.61.0.2/24", "dev", "eth0"]);
    t.pod.exec(&["ip", "link", "set", "eth0", "up"]);
    t.pod
        .exec(&["ip", "route", "add", "default", "via", "10.61.0.1"]);
    t.outside
        .exec(&["ip", "addr", "add", "192.168.61.2/24", "dev", "eth0"]);
    t.outside.exec(&["ip", "link", "set", "eth0", "up"]);
    t
}

fn call(t: &Topo, cmd: &str, version: &str, id: &str) -> (i32, Value) {
    let mut prev = json!({
        "cniVersion": version,
        "interfaces": [
            {"name": "vpod", "mac": "aa:bb:cc:dd:ee:01"},
            {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "sandbox": t.pod.path()}
        ],
        "ips": [{"address": "10.61.0.2/24", "gateway": "10.61.0.1", "interface": 1}]
    });
    if version.starts_with("0.") {
        prev["ips"][0]["version"] = json!("4");
    }
    let conf = json!({
        "cniVersion": version,
        "name": "pmtest",
        "type": "portmap",
        "snat": true,
        "prevResult": prev,
        "runtimeConfig": {"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"HostPort": 5353, "ContainerPort": 53, "Protocol": "udp"}
        ]}
    });
    let stdin = conf.to_string();
    let netns = t.pod.path().display().to_string();
    let env = move |k: &str| -> Option<String> {
        match k {
            "CNI_COMMAND" => Some(cmd.to_string()),
            "CNI_CONTAINERID" => Some(id.to_string()),
            "CNI_NETNS" => Some(netns.clone()),
            "CNI_IFNAME" => Some("eth0".into()),
            "CNI_PATH" => Some("/nonexistent".into()),
            _ => None,
        }
    };
    let out = t.node.run(|| {
        let mut input = stdin.as_bytes();
        cni_skel::execute(&Portmap, &env, &mut input)
    });
    let v = if out.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    (out.exit_code, v)
}

fn tcp_ok(from: &TestNs, listener: &TcpListener, to: &str) -> Option<SocketAddr> {
    let to: SocketAddr = to.parse().expect("addr");
    let mut c = from
        .run(move || TcpStream::connect_timeout(&to, Duration::from_millis(700)))
        .ok()?;
    let (mut s, peer) = listener.accept().ok()?;
    c.write_all(b"hi").ok()?;
    let mut b = [0u8; 2];
    s.read_exact(&mut b).ok()?;
    Some(peer)
}

fn udp_ok(from: &TestNs, server: &UdpSocket, to: &str) -> Option<SocketAddr> {
    let c = from.run(|| UdpSocket::bind("0.0.0.0:0")).ok()?;
    c.set_read_timeout(Some(Duration::from_millis(700))).ok()?;
    server
        .set_read_timeout(Some(Duration::from_millis(700)))
        .ok()?;
    c.send_to(b"q", to).ok()?;
    let mut b = [0u8; 8];
    let (_, src) = server.recv_from(&mut b).ok()?;
    server.send_to(b"a", src).ok()?;
    c.recv_from(&mut b).ok()?;
    Some(src)
}

#[test]
fn add_check_del_with_real_traffic() {
    for version in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let t = topo();
        let web = t
            .pod
            .run(|| TcpListener::bind("0.0.0.0:80"))
            .expect("listen");
        let dns = t.pod.run(|| UdpSocket::bind("0.0.0.0:53")).expect("udp");

        let (code, out) = call(&t, "ADD", version, "ctr1");
        assert_eq!(code, 0, "ADD {version}: {out}");
        assert_eq!(out["ips"][0]["address"], "10.61.0.2/24", "{out}");

        let peer = tcp_ok(&t.outside, &web, "192.168.61.1:8080").expect("tcp via host port");
        assert_eq!(peer.ip().to_string(), "192.168.61.2");
        let src = udp_ok(&t.outside, &dns, "192.168.61.1:5353").expect("udp via host port");
        assert_eq!(src.ip().to_string(), "192.168.61.2");
        // Hairpin and localhost (route_localnet set by the plugin on vpod).
        let peer = tcp_ok(&t.pod, &web, "192.168.61.1:8080").expect("hairpin");
        assert_eq!(peer.ip().to_string(), "10.61.0.1");
        let peer = tcp_ok(&t.node, &web, "127.0.0.1:8080").expect("localhost");
        assert_eq!(peer.ip().to_string(), "10.61.0.1");

        if version != "0.3.1" {
            let (code, out) = call(&t, "CHECK", version, "ctr1");
            assert_eq!(code, 0, "CHECK {version}: {out}");
        }
        // A second container may not take the same host ports.
        let (code, out) = call(&t, "ADD", version, "ctr2");
        assert_ne!(code, 0, "{out}");
        assert!(
            out["msg"].as_str().unwrap_or("").contains("8080/tcp"),
            "{out}"
        );

        let (code, out) = call(&t, "DEL", version, "ctr1");
        assert_eq!(code, 0, "DEL {version}: {out}");
        assert!(tcp_ok(&t.outside, &web, "192.168.61.1:8080").is_none());
        let (code, out) = call(&t, "DEL", version, "ctr1");
        assert_eq!(code, 0, "second DEL {version}: {out}");
        if version != "0.3.1" {
            let (code, _) = call(&t, "CHECK", version, "ctr1");
            assert_ne!(code, 0, "CHECK after DEL must fail");
        }
    }
}
