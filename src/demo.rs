//! `rcni demo`: a throwaway node namespace with two pod namespaces wired by
//! the embedded default config (bridge + host-local, gateway, masquerade),
//! real traffic between them, and a complete teardown. Nothing touches the
//! machine's own namespace; everything runs in-process (the plugins on a
//! thread inside the node namespace, host-local delegated in-process).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The default network: a bridge with the gateway on it, host-local IPAM,
/// masquerade. `@DATA@`/`@STATE@` are filled with throwaway directories.
const DEFAULT_CONF: &str = r#"{
  "cniVersion": "1.1.0",
  "name": "rcni-demo",
  "type": "bridge",
  "bridge": "cni0",
  "isDefaultGateway": true,
  "ipMasq": true,
  "stateDir": "@STATE@",
  "ipam": {
    "type": "host-local",
    "subnet": "10.99.0.0/24",
    "dataDir": "@DATA@"
  }
}"#;

pub fn run(_args: &[String]) -> i32 {
    let t0 = Instant::now();
    let mut demo = match Demo::new() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("rcni demo: {e}");
            return 1;
        }
    };
    let outcome = demo.play();
    let cleanup = demo.teardown();
    match outcome.and(cleanup) {
        Ok(()) => {
            println!(
                "\nremoved 3 namespaces and the demo's files: nothing left behind ({:.0?} in all)",
                t0.elapsed()
            );
            0
        }
        Err(e) => {
            eprintln!("rcni demo: {e}");
            1
        }
    }
}

/// Named namespaces and a temp dir, removed by `teardown` (and by Drop if
/// anything panics on the way).
struct Demo {
    tag: String,
    dir: PathBuf,
    names: Vec<String>,
    node: Option<netns::NetNs>,
    conf: String,
    done: bool,
}

impl Demo {
    fn new() -> Result<Demo, String> {
        let tag = format!("rcni-demo-{}", std::process::id());
        let dir = std::env::temp_dir().join(&tag);
        let mut d = Demo {
            tag: tag.clone(),
            dir: dir.clone(),
            names: Vec::new(),
            node: None,
            conf: String::new(),
            done: false,
        };
        std::fs::create_dir_all(dir.join("bin")).map_err(|e| format!("mkdir: {e}"))?;
        // host-local on CNI_PATH is this executable: delegated in-process.
        let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
        std::os::unix::fs::symlink(&exe, dir.join("bin").join("host-local"))
            .map_err(|e| format!("link host-local: {e}"))?;
        d.conf = DEFAULT_CONF
            .replace("@DATA@", &dir.join("ipam").display().to_string())
            .replace("@STATE@", &dir.join("state").display().to_string());
        for role in ["node", "pod-a", "pod-b"] {
            let name = format!("{tag}-{role}");
            let ns = netns::create_named(&name).map_err(|e| format!("create netns {name}: {e}"))?;
            d.names.push(name);
            if role == "node" {
                d.node = Some(ns);
            }
        }
        Ok(d)
    }

    fn path(&self, i: usize) -> PathBuf {
        Path::new(netns::NETNS_RUN_DIR).join(&self.names[i])
    }

    fn ns(&self, i: usize) -> Result<netns::NetNs, String> {
        netns::NetNs::open(self.path(i)).map_err(|e| e.to_string())
    }

    /// Runs the bridge plugin on a thread inside the node namespace.
    fn cni(&self, cmd: &str, id: &str, pod: usize) -> Result<(String, Duration), String> {
        let plugin = crate::plugins::lookup("bridge").ok_or("bridge plugin missing")?;
        let node = self.node.as_ref().ok_or("no node namespace")?;
        let netns = self.path(pod).display().to_string();
        let bin = self.dir.join("bin").display().to_string();
        let env = move |k: &str| -> Option<String> {
            Some(match k {
                "CNI_COMMAND" => cmd.to_string(),
                "CNI_CONTAINERID" => id.to_string(),
                "CNI_NETNS" => netns.clone(),
                "CNI_IFNAME" => "eth0".into(),
                "CNI_PATH" => bin.clone(),
                _ => return None,
            })
        };
        let t = Instant::now();
        let out = node
            .run(|| cni_skel::execute(plugin, &env, &mut self.conf.as_bytes()))
            .map_err(|e| e.to_string())?;
        let took = t.elapsed();
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.exit_code != 0 {
            return Err(format!("{cmd} {id} failed: {text}"));
        }
        Ok((text, took))
    }

    fn play(&mut self) -> Result<(), String> {
        println!(
            "rcni demo: node namespace {} with pods {} and {}",
            self.names[0], self.names[1], self.names[2]
        );
        println!(
            "network: bridge cni0, host-local 10.99.0.0/24, gateway on the bridge, masquerade\n"
        );
        let mut ips = Vec::new();
        for (pod, id) in [(1, "demo-a"), (2, "demo-b")] {
            let (out, took) = self.cni("ADD", id, pod)?;
            let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
            let ip = v["ips"][0]["address"].as_str().unwrap_or("?").to_string();
            println!("ADD {id} ({took:.1?}): {out}");
            println!(
                "  -> {} {} in {}, host side {} on {}",
                v["interfaces"][2]["name"].as_str().unwrap_or("?"),
                ip,
                self.names[pod],
                v["interfaces"][1]["name"].as_str().unwrap_or("?"),
                v["interfaces"][0]["name"].as_str().unwrap_or("?"),
            );
            ips.push(ip.split('/').next().unwrap_or("").to_string());
        }
        println!();
        let (a, b) = (self.ns(1)?, self.ns(2)?);
        let node = self.ns(0)?;
        let seen = tcp_exchange(&a, &b, &ips[1], 7777)?;
        println!(
            "TCP pod-a -> pod-b {}:7777: ping/pong ok, pod-b saw {seen}",
            ips[1]
        );
        let seen = tcp_exchange(&b, &a, &ips[0], 7778)?;
        println!(
            "TCP pod-b -> pod-a {}:7778: ping/pong ok, pod-a saw {seen}",
            ips[0]
        );
        let seen = tcp_exchange(&a, &node, "10.99.0.1", 7779)?;
        println!("TCP pod-a -> gateway 10.99.0.1:7779 (node): ping/pong ok, node saw {seen}");
        let seen = tcp_exchange(&b, &node, "10.99.0.1", 7780)?;
        println!("TCP pod-b -> gateway 10.99.0.1:7780 (node): ping/pong ok, node saw {seen}\n");
        for (pod, id) in [(1, "demo-a"), (2, "demo-b")] {
            let (_, took) = self.cni("DEL", id, pod)?;
            println!("DEL {id} ({took:.1?}): ok");
        }
        Ok(())
    }

    fn teardown(&mut self) -> Result<(), String> {
        self.done = true;
        self.node = None;
        let mut errs = Vec::new();
        for n in &self.names {
            if let Err(e) = netns::delete_named(n) {
                errs.push(format!("delete netns {n}: {e}"));
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            errs.push(format!("remove {}: {e}", self.dir.display()));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.teardown();
        }
        let _ = &self.tag;
    }
}

/// A listener inside `to`, a client inside `from`: one ping/pong over TCP.
/// Returns the address the listener saw.
fn tcp_exchange(
    from: &netns::NetNs,
    to: &netns::NetNs,
    addr: &str,
    port: u16,
) -> Result<String, String> {
    let listen: SocketAddr = format!("0.0.0.0:{port}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let target: SocketAddr = format!("{addr}:{port}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let listener = to
        .run(|| TcpListener::bind(listen))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("bind {listen}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    std::thread::scope(|s| {
        let server = s.spawn(|| -> Result<String, String> {
            let deadline = Instant::now() + Duration::from_secs(3);
            let (mut c, peer) = loop {
                match listener.accept() {
                    Ok(x) => break x,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            return Err(format!("nobody connected to {target}"));
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => return Err(format!("accept: {e}")),
                }
            };
            let io = |e: std::io::Error| format!("server side of {target}: {e}");
            c.set_nonblocking(false).map_err(io)?;
            c.set_read_timeout(Some(Duration::from_secs(3)))
                .map_err(io)?;
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).map_err(io)?;
            c.write_all(b"pong").map_err(io)?;
            Ok(peer.ip().to_string())
        });
        let client = from
            .run(|| -> Result<(), String> {
                let io = |e: std::io::Error| format!("connect to {target}: {e}");
                let mut c =
                    TcpStream::connect_timeout(&target, Duration::from_secs(3)).map_err(io)?;
                c.set_read_timeout(Some(Duration::from_secs(3)))
                    .map_err(io)?;
                c.write_all(b"ping").map_err(io)?;
                let mut buf = [0u8; 4];
                c.read_exact(&mut buf).map_err(io)?;
                if &buf != b"pong" {
                    return Err(format!("unexpected answer from {target}"));
                }
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        let seen = server
            .join()
            .map_err(|_| "server thread panicked".to_string())?;
        client?;
        seen
    })
}
