//! tap in real namespaces: every spec version, the device as the kernel
//! sees it (type, owner, group, queues, MTU, MAC, addresses), bridge ports,
//! frames through the tap's file descriptor, cleanup after failures.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::fs::File;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};
use testutil::{merge, per_version, Call, PluginEnv, TestNs};

/// IDs no account on the machine has, so `ip -j` prints them as numbers.
const OWNER: u32 = 4711;
const GROUP: u32 = 4712;

struct Env(PluginEnv);

impl Deref for Env {
    type Target = PluginEnv;
    fn deref(&self) -> &PluginEnv {
        &self.0
    }
}

impl Env {
    fn new(tag: &str) -> Env {
        Env(testutil::plugin_env!("tap", tag))
    }

    fn conf(&self, v: &str, subnet: Option<&str>, extra: Value) -> Value {
        let mut c = self.base_conf(v);
        if let Some(s) = subnet {
            c["ipam"] = self.host_local(s);
            c["ipam"]["routes"] = json!([{"dst": "192.0.2.0/24"}]);
        }
        merge(&mut c, &extra);
        c
    }
}

fn link(ns: &TestNs, dev: &str) -> Value {
    ns.ip_json(&["-d", "addr", "show", "dev", dev])[0].clone()
}

fn has_link(ns: &TestNs, dev: &str) -> bool {
    ns.link_names().iter().any(|n| n == dev)
}

fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

per_version!(add_check_del_del_every_version, |v| {
    let env = Env::new("tav");
    let pod = TestNs::new("tap");
    let conf = env.conf(
        v,
        Some("10.60.0.0/24"),
        json!({
            "owner": OWNER, "group": GROUP, "multiQueue": true, "mtu": 1400,
            "mac": "02:60:00:00:00:0a",
            "dns": {"nameservers": ["10.60.0.53"]},
        }),
    );
    let res = env.call("ADD", "ctr-t", &pod.path(), &conf).ok();
    assert_eq!(res["cniVersion"], v);
    // host-local hands out addresses round-robin across the versions.
    let pod_ip = env.allocated()[0].clone();
    let cidr = format!("{pod_ip}/24");
    if !testutil::is_legacy(v) {
        assert_eq!(
            res["interfaces"],
            json!([{"name": "eth0", "mac": "02:60:00:00:00:0a",
                    "sandbox": pod.path().display().to_string()}]),
            "{res}"
        );
        assert_eq!(res["ips"].as_array().map(Vec::len), Some(1), "{res}");
        assert_eq!(res["ips"][0]["interface"], 0);
        assert_eq!(res["ips"][0]["address"], cidr.as_str());
        assert_eq!(res["routes"][0]["dst"], "192.0.2.0/24");
    } else {
        assert_eq!(res["ip4"]["ip"], cidr.as_str(), "{res}");
    }
    assert_eq!(res["dns"]["nameservers"][0], "10.60.0.53");

    // The kernel's view: a persistent multi-queue tap owned as asked.
    let l = link(&pod, "eth0");
    assert_eq!(l["linkinfo"]["info_kind"], "tun", "{l}");
    let d = &l["linkinfo"]["info_data"];
    assert_eq!(d["type"], "tap", "{l}");
    assert_eq!(d["persist"], true, "{l}");
    assert_eq!(d["multi_queue"], true, "{l}");
    assert_eq!(d["user"], OWNER, "{l}");
    assert_eq!(d["group"], GROUP, "{l}");
    assert_eq!(l["mtu"], 1400);
    assert_eq!(l["address"], "02:60:00:00:00:0a");
    assert!(l["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP")));
    assert!(l["addr_info"].as_array().is_some_and(|a| a
        .iter()
        .any(|i| i["local"] == pod_ip.as_str() && i["prefixlen"] == 24)));
    let routes = pod.ip_json(&["route", "show", "192.0.2.0/24"]);
    assert_eq!(routes[0]["gateway"], "10.60.0.1", "{routes}");
    assert_eq!(
        pod.exec(&["sysctl", "-n", "net.ipv4.conf.eth0.arp_notify"]),
        "1\n"
    );

    if testutil::has_check(v) {
        env.call("CHECK", "ctr-t", &pod.path(), &with_prev(&conf, &res))
            .ok();
        // CHECK compares the device with the prevResult and the config.
        let mut wrong_mac = res.clone();
        wrong_mac["interfaces"][0]["mac"] = json!("02:60:00:00:00:0b");
        assert_ne!(
            env.call("CHECK", "ctr-t", &pod.path(), &with_prev(&conf, &wrong_mac))
                .code,
            0
        );
        let mut single = with_prev(&conf, &res);
        single["multiQueue"] = json!(false);
        assert_ne!(env.call("CHECK", "ctr-t", &pod.path(), &single).code, 0);
        let mut other_owner = with_prev(&conf, &res);
        other_owner["owner"] = json!(OWNER + 1);
        assert_ne!(
            env.call("CHECK", "ctr-t", &pod.path(), &other_owner).code,
            0
        );
        pod.exec(&["ip", "addr", "flush", "dev", "eth0"]);
        let out = env.call("CHECK", "ctr-t", &pod.path(), &with_prev(&conf, &res));
        assert_ne!(out.code, 0, "CHECK passed without the address");
    }
    env.call("DEL", "ctr-t", &pod.path(), &conf).ok();
    assert!(!has_link(&pod, "eth0"));
    assert!(env.allocated().is_empty());
    env.call("DEL", "ctr-t", &pod.path(), &conf).ok();
    env.call_with(Call::new("DEL", "ctr-t", &pod.path(), &conf.to_string()).netns(""))
        .ok();
});

per_version!(layer2_only_with_defaults_and_mac_overrides, |v| {
    let env = Env::new("tal");
    let pod = TestNs::new("tal");
    let conf = env.conf(v, None, json!({}));
    let res = env
        .call_with(Call::new("ADD", "ctr-l", &pod.path(), &conf.to_string()).ifname("tap0"))
        .ok();
    assert_eq!(res["cniVersion"], v);
    if !testutil::is_legacy(v) {
        assert_eq!(res["interfaces"][0]["name"], "tap0", "{res}");
        assert!(res.get("ips").is_none(), "{res}");
    }
    let l = link(&pod, "tap0");
    let d = &l["linkinfo"]["info_data"];
    assert_eq!(d["type"], "tap", "{l}");
    assert_eq!(d["multi_queue"], false, "{l}");
    assert_eq!(d["pi"], false, "{l}");
    assert!(d.get("user").is_none() && d.get("group").is_none(), "{l}");
    assert_eq!(l["mtu"], 1500);
    assert!(l["addr_info"]
        .as_array()
        .is_some_and(|a| a.iter().all(|i| i["family"] != "inet")));
    if testutil::has_check(v) {
        let c = with_prev(&conf, &res);
        env.call_with(Call::new("CHECK", "ctr-l", &pod.path(), &c.to_string()).ifname("tap0"))
            .ok();
    }
    env.call_with(Call::new("DEL", "ctr-l", &pod.path(), &conf.to_string()).ifname("tap0"))
        .ok();
    assert!(!has_link(&pod, "tap0"));
});

/// MAC precedence: config, then CNI_ARGS MAC, then runtimeConfig.mac.
#[test]
fn mac_precedence_config_then_cni_args_then_runtime_config() {
    let env = Env::new("tam");
    let pod = TestNs::new("tam");
    let conf = env.conf("1.1.0", None, json!({"mac": "02:61:00:00:00:01"}));
    let add = |conf: &Value, args: &str| -> String {
        let r = env
            .call_with(Call::new("ADD", "ctr-m", &pod.path(), &conf.to_string()).args(args))
            .ok();
        let mac = r["interfaces"][0]["mac"].as_str().expect("mac").to_string();
        assert_eq!(link(&pod, "eth0")["address"], mac.as_str());
        env.call("DEL", "ctr-m", &pod.path(), conf).ok();
        mac
    };
    assert_eq!(add(&conf, ""), "02:61:00:00:00:01");
    assert_eq!(add(&conf, "MAC=02:61:00:00:00:02"), "02:61:00:00:00:02");
    let mut rc = conf.clone();
    rc["runtimeConfig"] = json!({"mac": "02:61:00:00:00:03"});
    assert_eq!(add(&rc, "MAC=02:61:00:00:00:02"), "02:61:00:00:00:03");
    let bad = env
        .call_with(Call::new("ADD", "ctr-m", &pod.path(), &conf.to_string()).args("MAC=not-a-mac"));
    assert_eq!(bad.err_code(), 7);
    assert!(!has_link(&pod, "eth0"));
}

#[test]
fn tap_joins_a_bridge_in_the_pod() {
    let env = Env::new("tab");
    let pod = TestNs::new("tab");
    pod.exec(&["ip", "link", "add", "br-vm", "type", "bridge"]);
    let conf = env.conf(
        "1.1.0",
        Some("10.61.0.0/24"),
        json!({"bridge": "br-vm", "owner": 0, "group": 0}),
    );
    let res = env.call("ADD", "ctr-b", &pod.path(), &conf).ok();
    let l = link(&pod, "eth0");
    let br = link(&pod, "br-vm");
    assert_eq!(l["master"], "br-vm", "{l}");
    assert_eq!(l["linkinfo"]["info_slave_kind"], "bridge", "{l}");
    assert_eq!(l["linkinfo"]["info_data"]["user"], "root", "{l}");
    assert_eq!(br["linkinfo"]["info_kind"], "bridge");
    env.call("CHECK", "ctr-b", &pod.path(), &with_prev(&conf, &res))
        .ok();
    pod.exec(&["ip", "link", "set", "eth0", "nomaster"]);
    assert_ne!(
        env.call("CHECK", "ctr-b", &pod.path(), &with_prev(&conf, &res))
            .code,
        0,
        "CHECK missed the tap leaving the bridge"
    );
    env.call("DEL", "ctr-b", &pod.path(), &conf).ok();
    assert!(!has_link(&pod, "eth0"));
    assert!(has_link(&pod, "br-vm"), "DEL must leave the pod's bridge");
    assert!(env.allocated().is_empty());

    // A bridge that is not there: ADD fails and leaves nothing.
    let mut missing = conf.clone();
    missing["bridge"] = json!("br-none");
    let out = env.call("ADD", "ctr-b", &pod.path(), &missing);
    assert_ne!(out.code, 0);
    assert!(out.stdout.contains("br-none"), "{}", out.stdout);
    assert!(!has_link(&pod, "eth0"));
    assert!(env.allocated().is_empty());
}

/// Opens the tap by name, as a VM monitor would.
fn attach(pod: &TestNs, name: &str) -> File {
    let mut spec = netlink::TunTapSpec::new(name, netlink::tuntap::Mode::Tap);
    spec.attach_existing = true;
    spec.persist = false;
    let mut tap = netlink::tuntap::create(&spec, Some(pod.ns())).expect("attach to the tap");
    let f = tap.files.remove(0);
    // SAFETY: plain fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        assert!(libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) >= 0);
    }
    f
}

/// Reads frames until `want` accepts one (5 s at most).
fn read_frame(f: &mut File, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    loop {
        match f.read(&mut buf) {
            Ok(n) if want(&buf[..n]) => return buf[..n].to_vec(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no matching frame from the tap");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("read tap: {e}"),
        }
    }
}

fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        s += u32::from(w);
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

#[test]
fn frames_flow_through_the_tap_fd() {
    let env = Env::new("taf");
    let pod = TestNs::new("taf");
    let conf = env.conf("1.0.0", Some("10.62.0.0/24"), json!({}));
    let res = env.call("ADD", "ctr-f", &pod.path(), &conf).ok();
    let tap_mac: Vec<u8> = res["interfaces"][0]["mac"]
        .as_str()
        .expect("mac")
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("hex"))
        .collect();
    let pod_ip = Ipv4Addr::new(10, 62, 0, 2);
    let peer_ip = Ipv4Addr::new(10, 62, 0, 9);
    let peer_mac = [0x02, 0x62, 0, 0, 0, 0x09];
    let mut tap = attach(&pod, "eth0");

    // Pod → peer: the kernel asks for the peer's MAC through the tap.
    let sock = pod.run(|| std::net::UdpSocket::bind("10.62.0.2:0").expect("bind"));
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = sock.local_addr().expect("addr").port();
    sock.send_to(b"hello", (peer_ip, 7000)).expect("send");
    let arp = read_frame(&mut tap, |f| {
        f.len() >= 42
            && f[12..14] == [0x08, 0x06]
            && f[20..22] == [0, 1]
            && f[38..42] == peer_ip.octets()
    });
    assert_eq!(arp[6..12], tap_mac[..], "ARP request from the tap's MAC");
    assert_eq!(arp[28..32], pod_ip.octets());

    // Peer → pod: an ARP reply written into the fd releases the datagram.
    let mut reply = Vec::new();
    reply.extend_from_slice(&tap_mac);
    reply.extend_from_slice(&peer_mac);
    reply.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    reply.extend_from_slice(&peer_mac);
    reply.extend_from_slice(&peer_ip.octets());
    reply.extend_from_slice(&tap_mac);
    reply.extend_from_slice(&pod_ip.octets());
    tap.write_all(&reply).expect("write ARP reply");
    let udp = read_frame(&mut tap, |f| {
        f.len() >= 42 && f[12..14] == [0x08, 0x00] && f[23] == 17 && f[30..34] == peer_ip.octets()
    });
    assert_eq!(udp[0..6], peer_mac, "the kernel learned the peer's MAC");
    assert_eq!(&udp[36..38], &7000u16.to_be_bytes());
    assert_eq!(&udp[42..], b"hello");

    // And an IPv4/UDP answer written into the fd reaches the pod's socket.
    let payload = b"world";
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    let total = (20 + 8 + payload.len()) as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&peer_ip.octets());
    ip.extend_from_slice(&pod_ip.octets());
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut frame = Vec::new();
    frame.extend_from_slice(&tap_mac);
    frame.extend_from_slice(&peer_mac);
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&7000u16.to_be_bytes());
    frame.extend_from_slice(&port.to_be_bytes());
    frame.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
    frame.extend_from_slice(payload);
    tap.write_all(&frame).expect("write UDP frame");
    let mut buf = [0u8; 16];
    let (n, from) = sock
        .recv_from(&mut buf)
        .expect("UDP answer through the tap");
    assert_eq!(&buf[..n], b"world");
    assert_eq!(from, (peer_ip, 7000).into());

    drop(tap);
    assert!(has_link(&pod, "eth0"), "the tap is persistent");
    env.call("DEL", "ctr-f", &pod.path(), &conf).ok();
    assert!(!has_link(&pod, "eth0"));
}

#[test]
fn failures_leave_nothing_behind() {
    let env = Env::new("tae");
    let conf = env.conf("1.1.0", Some("10.63.0.0/24"), json!({"owner": OWNER}));

    // Injected failure after IPAM: address released, tap gone.
    let pod = TestNs::new("tae");
    let mut call = Call::new("ADD", "ctr-e", &pod.path(), &conf.to_string());
    call.env
        .push(("RCNI_INJECT_FAILURE".into(), "after-setup".into()));
    assert_ne!(env.call_with(call).code, 0);
    assert!(env.allocated().is_empty());
    assert!(!has_link(&pod, "eth0"));

    // The interface name is taken: the existing link is left alone.
    pod.exec(&["ip", "link", "add", "eth0", "type", "bridge"]);
    let out = env.call("ADD", "ctr-e", &pod.path(), &conf);
    assert_ne!(out.code, 0);
    assert!(out.stdout.contains("already exists"), "{}", out.stdout);
    assert_eq!(link(&pod, "eth0")["linkinfo"]["info_kind"], "bridge");
    assert!(env.allocated().is_empty());
    pod.exec(&["ip", "link", "del", "eth0"]);

    // A MAC the kernel refuses (multicast is rejected while parsing).
    let mut bad = conf.clone();
    bad["mac"] = json!("03:00:00:00:00:01");
    assert_eq!(env.call("ADD", "ctr-e", &pod.path(), &bad).err_code(), 7);
    assert!(!has_link(&pod, "eth0"));

    // selinuxContext: the label is set before the tap is made, as the
    // reference does; without SELinux that fails (and nothing is made).
    let mut se = conf.clone();
    se["selinuxContext"] = json!("system_u:system_r:container_t:s0");
    let out = env.call("ADD", "ctr-e", &pod.path(), &se);
    if Path::new("/sys/fs/selinux/enforce").exists() {
        eprintln!("SELinux is enabled: selinuxContext result {}", out.stdout);
    } else {
        assert_eq!(out.err_code(), 2, "{}", out.stdout);
        assert!(out.stdout.contains("selinuxContext"), "{}", out.stdout);
    }
    if out.code != 0 {
        assert!(!has_link(&pod, "eth0"));
        assert!(env.allocated().is_empty());
    } else {
        env.call("DEL", "ctr-e", &pod.path(), &se).ok();
    }
}

#[test]
fn del_without_netns_and_after_the_pod_is_gone() {
    let env = Env::new("tad");
    let conf = env.conf("1.1.0", Some("10.64.0.0/24"), json!({}));
    let pod = TestNs::new("tad");
    env.call("ADD", "ctr-d", &pod.path(), &conf).ok();
    assert_eq!(env.allocated().len(), 1);
    // containerd's second DEL shape, first: releases the address only.
    env.call_with(Call::new("DEL", "ctr-d", &pod.path(), &conf.to_string()).netns(""))
        .ok();
    assert!(env.allocated().is_empty());
    assert!(has_link(&pod, "eth0"));
    env.call("DEL", "ctr-d", &pod.path(), &conf).ok();
    assert!(!has_link(&pod, "eth0"));
    // A netns path that no longer exists.
    let gone = pod
        .path()
        .with_file_name(format!("gone-{}", testutil::unique("")));
    env.call("DEL", "ctr-d", &gone, &conf).ok();
    // STATUS asks IPAM; GC hands the valid attachments to IPAM.
    env.call("STATUS", "", &pod.path(), &conf).ok();
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    env.call("GC", "", &pod.path(), &gc).ok();
}
