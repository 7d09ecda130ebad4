//! The portmap plugin in a node namespace, with real TCP/UDP traffic from
//! an "outside" namespace through a host port into a pod namespace; the
//! UDP conntrack flush; DEL without mappings.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use nft::conntrack::{Conntrack, Entry};
use nft::{rulesets::portmap, IpVersion};
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
    let n = &t.node;
    n.add_veth("vpod", &t.pod, "eth0");
    n.add_veth("vout", &t.outside, "eth0");
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
    for ns in [&t.node, &t.pod, &t.outside] {
        ns.wait_links_operational();
    }
    t
}

/// The mappings `call` passes: one TCP, one UDP (containerd's spelling).
fn default_runtime_config() -> Value {
    json!({"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"HostPort": 5353, "ContainerPort": 53, "Protocol": "udp"}
    ]})
}

fn call(t: &Topo, cmd: &str, version: &str, id: &str) -> (i32, Value) {
    call_rc(t, cmd, version, id, Some(default_runtime_config()))
}

/// Runs the plugin in the node namespace with `runtime_config` (or none).
fn call_rc(
    t: &Topo,
    cmd: &str,
    version: &str,
    id: &str,
    runtime_config: Option<Value>,
) -> (i32, Value) {
    call_with(t, cmd, version, id, runtime_config, json!({}))
}

/// As [`call_rc`], with `extra` members merged into the config.
fn call_with(
    t: &Topo,
    cmd: &str,
    version: &str,
    id: &str,
    runtime_config: Option<Value>,
    extra: Value,
) -> (i32, Value) {
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
    if version == "0.1.0" || version == "0.2.0" {
        // The old result shape: no interfaces at all.
        prev = json!({
            "cniVersion": version,
            "ip4": {"ip": "10.61.0.2/24", "gateway": "10.61.0.1"}
        });
    }
    let mut conf = json!({
        "cniVersion": version,
        "name": "pmtest",
        "type": "portmap",
        "snat": true,
        "prevResult": prev,
    });
    if let Some(rc) = runtime_config {
        conf["runtimeConfig"] = rc;
    }
    for (k, v) in extra.as_object().into_iter().flatten() {
        conf[k] = v.clone();
    }
    run_portmap(&t.node, &t.pod, cmd, id, &conf)
}

/// Runs the plugin in `node` for `pod`'s `eth0` with `conf` on stdin: exit
/// code and stdout (Null when empty or not JSON).
fn run_portmap(node: &TestNs, pod: &TestNs, cmd: &str, id: &str, conf: &Value) -> (i32, Value) {
    let stdin = conf.to_string();
    let netns = pod.path().display().to_string();
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
    let out = node.run(|| {
        let mut input = stdin.as_bytes();
        cni_skel::execute(&Portmap, &env, &mut input)
    });
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
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
    for version in ["0.1.0", "0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let checks = !matches!(version, "0.1.0" | "0.2.0" | "0.3.1");
        let t = topo();
        let web = t
            .pod
            .run(|| TcpListener::bind("0.0.0.0:80"))
            .expect("listen");
        let dns = t.pod.run(|| UdpSocket::bind("0.0.0.0:53")).expect("udp");

        let (code, out) = call(&t, "ADD", version, "ctr1");
        assert_eq!(code, 0, "ADD {version}: {out}");
        let addr = if checks || version == "0.3.1" {
            &out["ips"][0]["address"]
        } else {
            &out["ip4"]["ip"]
        };
        assert_eq!(addr, "10.61.0.2/24", "{out}");

        let peer = tcp_ok(&t.outside, &web, "192.168.61.1:8080").expect("tcp via host port");
        assert_eq!(peer.ip().to_string(), "192.168.61.2");
        let src = udp_ok(&t.outside, &dns, "192.168.61.1:5353").expect("udp via host port");
        assert_eq!(src.ip().to_string(), "192.168.61.2");
        // Hairpin and localhost (route_localnet set by the plugin on vpod,
        // the interface routing to the pod — also for results that list
        // no interfaces).
        let peer = tcp_ok(&t.pod, &web, "192.168.61.1:8080").expect("hairpin");
        assert_eq!(peer.ip().to_string(), "10.61.0.1");
        let peer = tcp_ok(&t.node, &web, "127.0.0.1:8080").expect("localhost");
        assert_eq!(peer.ip().to_string(), "10.61.0.1");

        if checks {
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
        if checks {
            let (code, _) = call(&t, "CHECK", version, "ctr1");
            assert_ne!(code, 0, "CHECK after DEL must fail");
        }
    }
}

/// One datagram on `sock` within a short wait: its payload and sender.
fn recv_one(sock: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    sock.set_read_timeout(Some(Duration::from_millis(700)))
        .ok()?;
    let mut b = [0u8; 16];
    let (n, from) = sock.recv_from(&mut b).ok()?;
    Some((b[..n].to_vec(), from))
}

/// The node's IPv4 conntrack entries of UDP datagrams to `port`.
fn udp_entries_to(t: &Topo, port: u16) -> Vec<Entry> {
    let ct = Conntrack::open_in(t.node.ns()).expect("open conntrack");
    ct.entries(IpVersion::V4)
        .expect("dump conntrack")
        .into_iter()
        .filter(|e| e.is_udp_to(&[port]))
        .collect()
}

/// A UDP client that talked to the host port before the mapping existed
/// keeps its source port; its conntrack entry (no DNAT) would keep sending
/// its datagrams to the node itself. ADD deletes that entry, so the next
/// datagram is DNATed to the pod; DEL deletes the DNATed entries, so the
/// flow does not keep going to the removed pod.
#[test]
fn udp_conntrack_flushed_on_add_and_del() {
    let t = topo();
    let pod_ip: IpAddr = "10.61.0.2".parse().expect("ip");
    let node_ip: IpAddr = "192.168.61.1".parse().expect("ip");
    // Another pod's mapping creates the table (whose rules make the node
    // track connections) and is removed again.
    let warm =
        json!({"portMappings": [{"hostPort": 9090, "containerPort": 90, "protocol": "tcp"}]});
    let (code, out) = call_rc(&t, "ADD", "1.1.0", "warm", Some(warm.clone()));
    assert_eq!(code, 0, "{out}");
    let (code, out) = call_rc(&t, "DEL", "1.1.0", "warm", Some(warm));
    assert_eq!(code, 0, "{out}");

    let on_node = t.node.run(|| UdpSocket::bind("0.0.0.0:5353")).expect("udp");
    let on_pod = t.pod.run(|| UdpSocket::bind("0.0.0.0:53")).expect("udp");
    let client = t.outside.run(|| UdpSocket::bind("0.0.0.0:0")).expect("udp");
    let cport = client.local_addr().expect("local").port();
    let send = |msg: &[u8]| {
        client
            .send_to(msg, "192.168.61.1:5353")
            .expect("send to host port");
    };

    // Before any mapping of 5353: delivered to the node, tracked without
    // DNAT.
    send(b"1");
    let (msg, from) = recv_one(&on_node).expect("datagram 1 reaches the node");
    assert_eq!((msg.as_slice(), from.port()), (&b"1"[..], cport));
    let stale = udp_entries_to(&t, 5353);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].orig.src_port, Some(cport));
    assert_eq!(stale[0].reply.map(|r| r.src), Some(node_ip), "{stale:?}");

    // Control: the same mapping committed without the flush leaves the
    // flow on its stale entry, so what follows really tests the flush.
    let nft = nft::Nft::open_in(t.node.ns()).expect("open nft");
    let m = portmap::Mapping {
        network: "pmtest".into(),
        container_id: "ctr1".into(),
        ifname: "eth0".into(),
        proto: portmap::Proto::Udp,
        host_ip: None,
        host_port: 5353,
        pod_ip,
        pod_port: 53,
    };
    portmap::add(&nft, &[m], &portmap::Options::default()).expect("map without flush");
    send(b"2");
    let (msg, _) = recv_one(&on_node).expect("datagram 2 still follows the stale entry");
    assert_eq!(msg, b"2");
    assert!(recv_one(&on_pod).is_none());

    // The plugin's ADD flushes: the same source port now reaches the pod.
    let (code, out) = call(&t, "ADD", "1.1.0", "ctr1");
    assert_eq!(code, 0, "ADD: {out}");
    send(b"3");
    let (msg, from) = recv_one(&on_pod).expect("datagram 3 reaches the pod");
    assert_eq!(msg, b"3");
    assert_eq!(
        from,
        SocketAddr::new("192.168.61.2".parse().expect("ip"), cport)
    );
    assert!(recv_one(&on_node).is_none(), "nothing more for the node");
    let now = udp_entries_to(&t, 5353);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0].orig.src_port, Some(cport));
    assert_eq!(
        now[0].reply.map(|r| (r.src, r.src_port)),
        Some((pod_ip, Some(53))),
        "only the DNATed entry is left: {now:?}"
    );

    // DEL removes the DNATed entry with the mapping: the flow is tracked
    // afresh and goes to the node again, not to the removed pod.
    let (code, out) = call(&t, "DEL", "1.1.0", "ctr1");
    assert_eq!(code, 0, "DEL: {out}");
    let left = udp_entries_to(&t, 5353);
    assert!(left.is_empty(), "{left:?}");
    send(b"4");
    let (msg, _) = recv_one(&on_node).expect("datagram 4 reaches the node");
    assert_eq!(msg, b"4");
    assert!(recv_one(&on_pod).is_none());
}

/// The reference's DEL returns at once when the runtime passes no port
/// mappings: no table is read or created, nothing is removed.
#[test]
fn del_without_mappings_does_no_firewall_work() {
    let t = topo();
    let ruleset = || t.node.exec(&["nft", "list", "ruleset"]);
    let no_mappings = [
        None,
        Some(json!({})),
        Some(json!({"portMappings": []})),
        Some(json!({"portMappings": null})),
    ];
    for version in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        // No table at all: DEL succeeds and creates none.
        for rc in &no_mappings {
            let (code, out) = call_rc(&t, "DEL", version, "ctr1", rc.clone());
            assert_eq!(code, 0, "DEL {version} {rc:?}: {out}");
            assert_eq!(ruleset().trim(), "", "DEL {version} {rc:?}");
        }
    }

    // With ctr1's mappings in place, DEL without mappings leaves them (and
    // the whole ruleset, down to its generation) untouched.
    let web = t
        .pod
        .run(|| TcpListener::bind("0.0.0.0:80"))
        .expect("listen");
    let (code, out) = call(&t, "ADD", "1.1.0", "ctr1");
    assert_eq!(code, 0, "ADD: {out}");
    let nft = nft::Nft::open_in(t.node.ns()).expect("open nft");
    let before = ruleset();
    let gen = nft.genid().expect("genid");
    for version in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        for rc in &no_mappings {
            let (code, out) = call_rc(&t, "DEL", version, "ctr1", rc.clone());
            assert_eq!(code, 0, "DEL {version} {rc:?}: {out}");
            assert_eq!(ruleset(), before, "DEL {version} {rc:?}");
            assert_eq!(nft.genid().expect("genid"), gen, "DEL {version} {rc:?}");
        }
    }
    assert!(tcp_ok(&t.outside, &web, "192.168.61.1:8080").is_some());

    // A DEL with the mappings still removes them.
    let (code, out) = call(&t, "DEL", "1.1.0", "ctr1");
    assert_eq!(code, 0, "DEL: {out}");
    assert_ne!(ruleset(), before);
    assert!(tcp_ok(&t.outside, &web, "192.168.61.1:8080").is_none());
}

/// A container id of 10,000 characters (the spec sets no limit): ADD,
/// CHECK, GC keeping it, DEL all work on it, and afterwards another pod
/// can map the same host port. GC without it removes its mappings too.
#[test]
fn ten_thousand_character_container_id() {
    let t = topo();
    let long = format!("c{}", "0123456789abcdef-_.".repeat(527))[..10_000].to_string();
    let other = format!("{}Z", &long[..9_999]);
    let web = t
        .pod
        .run(|| TcpListener::bind("0.0.0.0:80"))
        .expect("listen");
    let (code, out) = call(&t, "ADD", "1.1.0", &long);
    assert_eq!(code, 0, "ADD: {out}");
    assert!(tcp_ok(&t.outside, &web, "192.168.61.1:8080").is_some());
    let (code, out) = call(&t, "CHECK", "1.1.0", &long);
    assert_eq!(code, 0, "CHECK: {out}");
    // CHECK of an id sharing all but its last character finds nothing.
    let (code, _) = call(&t, "CHECK", "1.1.0", &other);
    assert_ne!(code, 0, "CHECK of another id");
    // Neither does DEL of that id remove anything.
    let (code, out) = call(&t, "DEL", "1.1.0", &other);
    assert_eq!(code, 0, "DEL other: {out}");
    assert!(tcp_ok(&t.outside, &web, "192.168.61.1:8080").is_some());
    let keep =
        |id: &str| json!({"cni.dev/valid-attachments": [{"containerID": id, "ifname": "eth0"}]});
    let (code, out) = call_with(&t, "GC", "1.1.0", "", None, keep(&long));
    assert_eq!(code, 0, "GC: {out}");
    assert!(
        tcp_ok(&t.outside, &web, "192.168.61.1:8080").is_some(),
        "GC kept it"
    );
    let (code, out) = call(&t, "DEL", "1.1.0", &long);
    assert_eq!(code, 0, "DEL: {out}");
    assert!(tcp_ok(&t.outside, &web, "192.168.61.1:8080").is_none());
    // The host port is free again.
    let (code, out) = call(&t, "ADD", "1.1.0", "ctr2");
    assert_eq!(code, 0, "ADD of another pod on the same port: {out}");
    let (code, out) = call(&t, "DEL", "1.1.0", "ctr2");
    assert_eq!(code, 0, "DEL: {out}");
    // GC without the long id removes its mappings.
    let (code, out) = call(&t, "ADD", "1.1.0", &long);
    assert_eq!(code, 0, "ADD: {out}");
    let (code, out) = call_with(&t, "GC", "1.1.0", "", None, keep("ctr2"));
    assert_eq!(code, 0, "GC: {out}");
    assert!(
        tcp_ok(&t.outside, &web, "192.168.61.1:8080").is_none(),
        "GC removed it"
    );
    let nft = nft::Nft::open_in(t.node.ns()).expect("open nft");
    assert!(portmap::list(&nft).expect("list").is_empty());
}

/// `conditionsV4` in nftables syntax restricts this attachment's mapping:
/// a source the condition allows is forwarded, another is not.
#[test]
fn conditions_restrict_which_traffic_is_forwarded() {
    let t = topo();
    // A second outside network on its own node interface.
    let other = TestNs::new("po2");
    t.node.add_veth("vout2", &other, "eth0");
    t.node
        .exec(&["ip", "addr", "add", "192.168.62.1/24", "dev", "vout2"]);
    t.node.exec(&["ip", "link", "set", "vout2", "up"]);
    other.exec(&["ip", "addr", "add", "192.168.62.2/24", "dev", "eth0"]);
    other.exec(&["ip", "link", "set", "eth0", "up"]);
    other.wait_links_operational();
    t.node.wait_links_operational();
    let web = t
        .pod
        .run(|| TcpListener::bind("0.0.0.0:80"))
        .expect("listen");
    web.set_nonblocking(false).expect("blocking");
    let rc = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
    let add = |id: &str, conds: Value| {
        call_with(
            &t,
            "ADD",
            "1.1.0",
            id,
            Some(rc.clone()),
            json!({"conditionsV4": conds}),
        )
    };
    let cmd = |c: &str, id: &str, conds: Value| {
        call_with(
            &t,
            c,
            "1.1.0",
            id,
            Some(rc.clone()),
            json!({"conditionsV4": conds}),
        )
    };
    let rules = || {
        t.node
            .exec(&["nft", "list", "chain", "inet", "rcni-portmap", "dnat_cond"])
    };

    // Source prefix: 192.168.61.0/24 in, 192.168.62.0/24 out.
    let by_source = json!(["ip saddr 192.168.61.0/24"]);
    let (code, out) = add("ctr1", by_source.clone());
    assert_eq!(code, 0, "{out}");
    let peer = tcp_ok(&t.outside, &web, "192.168.61.1:8080").expect("allowed source");
    assert_eq!(peer.ip().to_string(), "192.168.61.2");
    assert!(
        tcp_ok(&other, &web, "192.168.62.1:8080").is_none(),
        "a source outside the condition must not be forwarded"
    );
    let (code, out) = cmd("CHECK", "ctr1", by_source.clone());
    assert_eq!(code, 0, "{out}");
    assert!(rules().contains("rcni:pmtest:ctr1:eth0"), "{}", rules());
    // Not in the unconditional maps.
    let listed = t
        .node
        .run(|| portmap::list(&nft::Nft::open().expect("nft")));
    assert!(listed.expect("list").is_empty());
    let (code, out) = cmd("DEL", "ctr1", by_source.clone());
    assert_eq!(code, 0, "{out}");
    assert!(tcp_ok(&t.outside, &web, "192.168.61.1:8080").is_none());
    assert!(!rules().contains("rcni:"), "{}", rules());
    let (code, out) = cmd("DEL", "ctr1", by_source.clone());
    assert_eq!(code, 0, "{out}");
    // CHECK now finds the rule missing.
    let (code, _) = cmd("CHECK", "ctr1", by_source);
    assert_ne!(code, 0);

    // Input interface, the other way round (strings are joined by spaces).
    let by_iface = json!(["iifname", "\"vout2\""]);
    let (code, out) = add("ctr2", by_iface.clone());
    assert_eq!(code, 0, "{out}");
    let peer = tcp_ok(&other, &web, "192.168.62.1:8080").expect("allowed interface");
    assert_eq!(peer.ip().to_string(), "192.168.62.2");
    assert!(tcp_ok(&t.outside, &web, "192.168.61.1:8080").is_none());
    // GC of the network without ctr2 removes its rule.
    let mut gc_conf = json!({"cni.dev/valid-attachments": []});
    gc_conf["conditionsV4"] = by_iface.clone();
    let (code, out) = call_with(&t, "GC", "1.1.0", "", None, gc_conf);
    assert_eq!(code, 0, "{out}");
    assert!(!rules().contains("rcni:"), "{}", rules());
    assert!(tcp_ok(&other, &web, "192.168.62.1:8080").is_none());
    let (code, out) = cmd("DEL", "ctr2", by_iface);
    assert_eq!(code, 0, "{out}");

    // The reference's iptables syntax, translated: a negated source.
    let not_outside = json!(["!", "-s", "192.168.61.0/24"]);
    let (code, out) = add("ctr4", not_outside.clone());
    assert_eq!(code, 0, "{out}");
    let peer = tcp_ok(&other, &web, "192.168.62.1:8080").expect("other source");
    assert_eq!(peer.ip().to_string(), "192.168.62.2");
    assert!(tcp_ok(&t.outside, &web, "192.168.61.1:8080").is_none());
    let (code, out) = cmd("CHECK", "ctr4", not_outside.clone());
    assert_eq!(code, 0, "{out}");
    let (code, out) = cmd("DEL", "ctr4", not_outside);
    assert_eq!(code, 0, "{out}");
    assert!(!rules().contains("rcni:"), "{}", rules());

    // What rcni cannot express: code 7 naming the field; an iptables match
    // without an nftables equivalent: code 2. Nothing is added either way.
    for (conds, want) in [
        (json!(["tcp dport 22"]), 7),
        (json!(["ip saddr { 10.0.0.1, 10.0.0.2 }"]), 7),
        (json!(["ip6 saddr ::1"]), 7),
        (json!(["-p", "tcp", "--dport", "22"]), 2),
    ] {
        let (code, out) = add("ctr3", conds.clone());
        assert_ne!(code, 0, "{conds}");
        assert_eq!(out["code"], want, "{conds}: {out}");
        assert!(
            out["msg"].as_str().unwrap_or("").contains("conditionsV4"),
            "{out}"
        );
    }
    assert!(!rules().contains("rcni:"), "{}", rules());
    assert!(tcp_ok(&t.outside, &web, "192.168.61.1:8080").is_none());
}

/// Runs portmap in `node` for the pod `pod` at `pod_ip` behind bridge
/// `br0`, mapping host port 8080/tcp to 80, as a chain after bridge does.
fn call_bridged(node: &TestNs, pod: &TestNs, cmd: &str, id: &str, pod_ip: &str) -> (i32, Value) {
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "pmbridge",
        "type": "portmap",
        "runtimeConfig": {"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
        ]},
        "prevResult": {
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "br0", "mac": "aa:bb:cc:dd:ee:10"},
                {"name": "vp1", "mac": "aa:bb:cc:dd:ee:11"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:12", "sandbox": pod.path()}
            ],
            "ips": [{"address": format!("{pod_ip}/24"), "gateway": "10.62.0.1", "interface": 2}]
        }
    });
    run_portmap(node, pod, cmd, id, &conf)
}

#[test]
fn another_pod_on_the_bridge_reaches_a_host_port_without_br_netfilter() {
    // pod2 → node:8080 is DNATed to pod1 on the same bridge. Unless the
    // connection is masqueraded (the reference masquerades every source of
    // the pod's subnet), pod1 answers pod2 straight over the bridge, past
    // the node's conntrack, and pod2 drops the reply: it only worked where
    // br_netfilter sends bridged frames through iptables.
    let node = TestNs::new("pbn");
    let pods = [TestNs::new("pb1"), TestNs::new("pb2")];
    node.exec(&["ip", "link", "add", "br0", "type", "bridge"]);
    node.exec(&["ip", "addr", "add", "10.62.0.1/24", "dev", "br0"]);
    node.exec(&["ip", "link", "set", "br0", "up"]);
    node.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    // Where br_netfilter is loaded, bridged frames skip iptables here.
    node.exec(&[
        "sh",
        "-c",
        "[ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || \
         sysctl -qw net.bridge.bridge-nf-call-iptables=0",
    ]);
    for (i, pod) in pods.iter().enumerate() {
        let port = format!("vp{}", i + 1);
        node.add_veth(&port, pod, "eth0");
        node.exec(&["ip", "link", "set", &port, "master", "br0", "up"]);
        let addr = format!("10.62.0.{}/24", i + 2);
        pod.exec(&["ip", "addr", "add", &addr, "dev", "eth0"]);
        pod.exec(&["ip", "link", "set", "eth0", "up"]);
        pod.exec(&["ip", "route", "add", "default", "via", "10.62.0.1"]);
    }
    for ns in [&node, &pods[0], &pods[1]] {
        ns.wait_links_operational();
    }
    let web = pods[0]
        .run(|| TcpListener::bind("0.0.0.0:80"))
        .expect("listen");
    let (code, out) = call_bridged(&node, &pods[0], "ADD", "ctrb1", "10.62.0.2");
    assert_eq!(code, 0, "{out}");
    let peer = tcp_ok(&pods[1], &web, "10.62.0.1:8080").expect("pod2 to pod1's host port");
    assert_eq!(
        peer.ip().to_string(),
        "10.62.0.1",
        "masqueraded to the node"
    );
    // pod1 reaching its own host port still works (hairpin).
    let peer = tcp_ok(&pods[0], &web, "10.62.0.1:8080").expect("hairpin");
    assert_eq!(peer.ip().to_string(), "10.62.0.1");
    let (code, out) = call_bridged(&node, &pods[0], "DEL", "ctrb1", "10.62.0.2");
    assert_eq!(code, 0, "{out}");
    assert!(tcp_ok(&pods[1], &web, "10.62.0.1:8080").is_none());
    let left = node.exec(&["nft", "list", "table", "inet", "rcni-portmap"]);
    assert!(!left.contains("elements"), "{left}");
}

#[test]
fn a_table_made_by_an_older_rcni_gains_the_pod_link_sets() {
    // Older rcni tables have no `podlink` sets: an ADD adds them (and
    // their rules), and DEL still removes the other sets' elements.
    let t = topo();
    let (code, out) = call(&t, "ADD", "1.0.0", "ctr-old");
    assert_eq!(code, 0, "{out}");
    let (code, out) = call(&t, "DEL", "1.0.0", "ctr-old");
    assert_eq!(code, 0, "{out}");
    let listing = t.node.exec(&[
        "nft",
        "-a",
        "list",
        "chain",
        "inet",
        "rcni-portmap",
        "postrouting",
    ]);
    for line in listing.lines().filter(|l| l.contains("@podlink")) {
        let handle = line.rsplit(' ').next().expect("handle");
        t.node.exec(&[
            "nft",
            "delete",
            "rule",
            "inet",
            "rcni-portmap",
            "postrouting",
            "handle",
            handle,
        ]);
    }
    for set in ["podlink4", "podlink6"] {
        t.node
            .exec(&["nft", "delete", "set", "inet", "rcni-portmap", set]);
    }
    let web = t
        .pod
        .run(|| TcpListener::bind("0.0.0.0:80"))
        .expect("listen");
    let (code, out) = call(&t, "ADD", "1.0.0", "ctr-new");
    assert_eq!(code, 0, "{out}");
    let table = t
        .node
        .exec(&["nft", "list", "table", "inet", "rcni-portmap"]);
    assert_eq!(table.matches("@podlink").count(), 2, "{table}");
    let peer = tcp_ok(&t.outside, &web, "192.168.61.1:8080").expect("forwarded");
    assert_eq!(peer.ip().to_string(), "192.168.61.2");
    let (code, out) = call(&t, "CHECK", "1.0.0", "ctr-new");
    assert_eq!(code, 0, "{out}");
    let (code, out) = call(&t, "DEL", "1.0.0", "ctr-new");
    assert_eq!(code, 0, "{out}");
    assert!(tcp_ok(&t.outside, &web, "192.168.61.1:8080").is_none());
}
