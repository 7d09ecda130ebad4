//! A three-namespace topology for traffic tests:
//!
//! ```text
//! pod (10.N.0.2/24) --veth-- node (10.N.0.1/24 | 192.168.N.1/24) --veth-- outside (192.168.N.2/24)
//! ```
//! The outside namespace has no route back to the pod subnet, so a
//! connection from the pod only works when the node masquerades it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use testutil::TestNs;

pub struct Topo {
    pub node: TestNs,
    pub pod: TestNs,
    pub outside: TestNs,
    pub n: u8,
}

impl Topo {
    /// `n` picks the subnets (10.n.0.0/24, 192.168.n.0/24) so parallel
    /// tests never share addresses (they are in separate namespaces anyway).
    pub fn new(n: u8) -> Topo {
        let node = TestNs::new("nd");
        let pod = TestNs::new("pd");
        let outside = TestNs::new("ou");
        let t = Topo {
            node,
            pod,
            outside,
            n,
        };
        let (pn, on) = (t.pod.name().to_string(), t.outside.name().to_string());
        t.node.exec(&[
            "ip", "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns", &pn,
        ]);
        t.node.exec(&[
            "ip", "link", "add", "vout", "type", "veth", "peer", "name", "eth0", "netns", &on,
        ]);
        let a = |x: &str| x.replace('N', &n.to_string());
        t.node
            .exec(&["ip", "addr", "add", &a("10.N.0.1/24"), "dev", "vpod"]);
        t.node
            .exec(&["ip", "addr", "add", &a("192.168.N.1/24"), "dev", "vout"]);
        t.node.exec(&["ip", "link", "set", "vpod", "up"]);
        t.node.exec(&["ip", "link", "set", "vout", "up"]);
        t.pod
            .exec(&["ip", "addr", "add", &a("10.N.0.2/24"), "dev", "eth0"]);
        t.pod.exec(&["ip", "link", "set", "eth0", "up"]);
        t.pod
            .exec(&["ip", "route", "add", "default", "via", &a("10.N.0.1")]);
        t.outside
            .exec(&["ip", "addr", "add", &a("192.168.N.2/24"), "dev", "eth0"]);
        t.outside.exec(&["ip", "link", "set", "eth0", "up"]);
        t.node.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        t
    }

    pub fn pod_ip(&self) -> String {
        format!("10.{}.0.2", self.n)
    }
    pub fn node_pod_side(&self) -> String {
        format!("10.{}.0.1", self.n)
    }
    pub fn node_out_side(&self) -> String {
        format!("192.168.{}.1", self.n)
    }
    pub fn outside_ip(&self) -> String {
        format!("192.168.{}.2", self.n)
    }
}

/// A TCP listener created inside `ns` (sockets stay in their namespace).
pub fn listen_tcp(ns: &TestNs, addr: &str) -> TcpListener {
    let addr: SocketAddr = addr.parse().expect("addr");
    ns.run(move || TcpListener::bind(addr)).expect("bind")
}

/// Connects from inside `ns`; `None` when it fails or times out.
pub fn connect_tcp(ns: &TestNs, to: &str) -> Option<TcpStream> {
    let to: SocketAddr = to.parse().expect("addr");
    ns.run(move || TcpStream::connect_timeout(&to, Duration::from_millis(700)))
        .ok()
}

/// Connects, sends a line, and returns what the listener saw as the peer
/// address and what came back; `None` if the connection did not work.
pub fn tcp_roundtrip(
    client_ns: &TestNs,
    listener: &TcpListener,
    to: &str,
) -> Option<(SocketAddr, String)> {
    let mut c = connect_tcp(client_ns, to)?;
    listener.set_nonblocking(false).ok()?;
    let (mut s, peer) = listener.accept().ok()?;
    c.write_all(b"ping").ok()?;
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).ok()?;
    s.write_all(b"pong").ok()?;
    let mut back = [0u8; 4];
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    c.read_exact(&mut back).ok()?;
    Some((peer, String::from_utf8_lossy(&back).into_owned()))
}

/// UDP: sends one datagram from `client_ns` to `to`, returns the source the
/// server saw, after the server echoed and the client received the echo.
pub fn udp_roundtrip(client_ns: &TestNs, server: &UdpSocket, to: &str) -> Option<SocketAddr> {
    let to: SocketAddr = to.parse().expect("addr");
    let c = client_ns.run(|| UdpSocket::bind("0.0.0.0:0")).ok()?;
    c.set_read_timeout(Some(Duration::from_millis(700))).ok()?;
    server
        .set_read_timeout(Some(Duration::from_millis(700)))
        .ok()?;
    c.send_to(b"ping", to).ok()?;
    let mut buf = [0u8; 16];
    let (_, from) = server.recv_from(&mut buf).ok()?;
    server.send_to(b"pong", from).ok()?;
    let (n, _) = c.recv_from(&mut buf).ok()?;
    (&buf[..n] == b"pong").then_some(from)
}
