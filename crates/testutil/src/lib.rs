//! Root-only test support: throwaway namespaces with guaranteed cleanup,
//! temp dirs, and running the real `rcni` binary as a plugin inside a node
//! namespace with the CNI environment; the shared plugin environment
//! ([`PluginEnv`], [`Outside`]) and one test per spec version
//! ([`per_version!`]).
//!
//! Everything here runs inside tests and fails loudly: a setup step that
//! goes wrong panics with what it was doing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use netns::NetNs;
use serde_json::Value;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

mod env;
mod version;

pub use env::{merge, merge_removing_nulls, run_in_process, Outside, PluginEnv, REFERENCE_DIR};
pub use version::{for_each_version, has_check, has_gc, has_status, is_legacy, ALL_SPEC_VERSIONS};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short name unique across parallel tests and processes. Fits an
/// interface name (≤ 15 bytes) when `tag` has at most 4 bytes.
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{tag}{:x}{n:x}", std::process::id() & 0xfffff)
}

/// Fails loudly when not root: CI runs as root, so a skip would hide tests.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "this test needs root (CI runs as root); run the suite with sudo"
    );
}

/// A named network namespace removed on drop, also when a test panics.
pub struct TestNs {
    name: String,
    ns: Option<NetNs>,
}

impl TestNs {
    /// Creates `rcni-test-<unique>` with loopback up; needs root.
    pub fn new(tag: &str) -> TestNs {
        require_root();
        let name = format!("rcni-test-{}", unique(tag));
        let ns = netns::create_named(&name).unwrap_or_else(|e| panic!("create netns {name}: {e}"));
        // Loopback up, as any real sandbox has it.
        let _ = Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status();
        TestNs { name, ns: Some(ns) }
    }

    /// The namespace's name (for `ip -n`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`: what `CNI_NETNS` gets.
    pub fn path(&self) -> PathBuf {
        Path::new(netns::NETNS_RUN_DIR).join(&self.name)
    }

    /// The open namespace.
    pub fn ns(&self) -> &NetNs {
        self.ns.as_ref().expect("namespace is open until drop")
    }

    /// Runs `f` on a thread inside this namespace.
    pub fn run<F: FnOnce() -> T + Send, T: Send>(&self, f: F) -> T {
        self.ns().run(f).expect("run in netns")
    }

    /// Runs a command (e.g. `ip -j addr`) inside this namespace; returns stdout.
    pub fn exec(&self, argv: &[&str]) -> String {
        let out = command_in(Some(self.ns()), argv[0])
            .args(&argv[1..])
            .output()
            .unwrap_or_else(|e| panic!("run {argv:?}: {e}"));
        assert!(
            out.status.success(),
            "{argv:?} in {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A veth pair: `name` here, its peer `peer_name` in `peer` (both down).
    pub fn add_veth(&self, name: &str, peer: &TestNs, peer_name: &str) {
        self.exec(&[
            "ip",
            "link",
            "add",
            name,
            "type",
            "veth",
            "peer",
            "name",
            peer_name,
            "netns",
            peer.name(),
        ]);
    }

    /// `ip -j ARGS` inside this namespace, parsed.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut argv = vec!["ip", "-j"];
        argv.extend_from_slice(args);
        let out = self.exec(&argv);
        if out.trim().is_empty() {
            return Value::Array(vec![]);
        }
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip -j {args:?}: {e}: {out}"))
    }

    /// Waits (at most 2 s) until every non-loopback link that is up in this
    /// namespace is operationally up. A new veth drops what it is given
    /// until the kernel attaches its qdisc from a work queue; topologies a
    /// test builds with `ip` call this before their first packet.
    pub fn wait_links_operational(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let links = self.ip_json(&["link", "show", "up"]);
            let pending = links.as_array().is_some_and(|a| {
                a.iter().any(|l| {
                    l["ifname"] != "lo"
                        && l["operstate"] != "UP"
                        && l["operstate"] != "UNKNOWN"
                        && !l["flags"]
                            .as_array()
                            .is_some_and(|f| f.iter().any(|x| x == "NO-CARRIER"))
                })
            });
            if !pending || std::time::Instant::now() > deadline {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Names of every link in the namespace.
    pub fn link_names(&self) -> Vec<String> {
        self.ip_json(&["link", "show"])
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l["ifname"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        self.ns.take();
        if let Err(e) = netns::delete_named(&self.name) {
            eprintln!("warning: could not delete netns {}: {e}", self.name);
        }
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/rcni-<tag><unique>`.
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("rcni-{}", unique(tag)));
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        TempDir(p)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `std::process::Command` whose child starts inside `ns` (like
/// `ip netns exec`), leaving the test's own threads where they are.
pub fn command_in(ns: Option<&NetNs>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    if let Some(ns) = ns {
        let fd = ns.fd();
        // SAFETY: setns is async-signal-safe; the fd stays open in the
        // parent for the duration of the spawn.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd
}

/// The `rcni` binary under test: `$RCNI_BIN`, else `target/<profile>/rcni`
/// next to the running test executable.
pub fn rcni_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RCNI_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/test-xxxx -> target/debug/rcni
    let mut dir = exe.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        let candidate = d.join("rcni");
        if candidate.is_file() {
            return candidate;
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    panic!("rcni binary not found; build it (cargo build --bin rcni) or set RCNI_BIN")
}

/// A plugin directory with one link per plugin name, as `rcni install` makes.
pub struct PluginDir {
    dir: TempDir,
}

impl PluginDir {
    /// Installs `bin` (normally [`rcni_bin`]) with `rcni install`.
    pub fn install(bin: &Path) -> PluginDir {
        let dir = TempDir::new("bin");
        let out = Command::new(bin)
            .args(["install", "--bin-dir"])
            .arg(dir.path())
            .output()
            .expect("run rcni install");
        assert!(
            out.status.success(),
            "rcni install failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PluginDir { dir }
    }

    /// The directory (`CNI_PATH`).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// One plugin call.
#[derive(Debug, Clone)]
pub struct Call {
    /// `CNI_COMMAND`.
    pub command: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: String,
    /// `CNI_PATH`; empty: the plugin directory.
    pub path: String,
    /// The config on stdin.
    pub stdin: String,
    /// More environment variables.
    pub env: Vec<(String, String)>,
    /// The plugin process's umask (None: the test's own).
    pub umask: Option<u32>,
}

impl Call {
    /// A call with `CNI_IFNAME` eth0 and no `CNI_ARGS`.
    pub fn new(command: &str, container_id: &str, netns: &Path, stdin: &str) -> Call {
        Call {
            command: command.into(),
            container_id: container_id.into(),
            netns: netns.display().to_string(),
            ifname: "eth0".into(),
            args: String::new(),
            path: String::new(),
            stdin: stdin.into(),
            env: Vec::new(),
            umask: None,
        }
    }

    /// With another `CNI_IFNAME`.
    pub fn ifname(mut self, ifname: &str) -> Call {
        self.ifname = ifname.into();
        self
    }

    /// With `CNI_ARGS`.
    pub fn args(mut self, args: &str) -> Call {
        self.args = args.into();
        self
    }

    /// With another `CNI_NETNS`.
    pub fn netns(mut self, netns: &str) -> Call {
        self.netns = netns.into();
        self
    }

    /// With the plugin process's umask.
    pub fn umask(mut self, mask: u32) -> Call {
        self.umask = Some(mask);
        self
    }
}

/// What a plugin process did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Exit code (-1: killed by a signal).
    pub code: i32,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
}

impl Outcome {
    /// Stdout as JSON (Null when empty).
    pub fn json(&self) -> Value {
        if self.stdout.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// Asserts success and returns the JSON.
    pub fn ok(&self) -> Value {
        assert_eq!(
            self.code, 0,
            "plugin failed: {} {}",
            self.stdout, self.stderr
        );
        self.json()
    }

    /// Asserts failure with an error object and returns its code.
    pub fn err_code(&self) -> u64 {
        assert_ne!(
            self.code, 0,
            "plugin succeeded unexpectedly: {}",
            self.stdout
        );
        let v = self.json();
        assert!(v["msg"].is_string(), "not an error object: {v}");
        v["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no code in {v}"))
    }
}

/// Runs `plugin` from `bin_dir` with `call`, inside `node` if given.
pub fn run_plugin(bin_dir: &Path, plugin: &str, call: &Call, node: Option<&NetNs>) -> Outcome {
    let path = if call.path.is_empty() {
        bin_dir.display().to_string()
    } else {
        call.path.clone()
    };
    let mut cmd = command_in(node, bin_dir.join(plugin));
    cmd.env_clear()
        .env("CNI_COMMAND", &call.command)
        .env("CNI_CONTAINERID", &call.container_id)
        .env("CNI_NETNS", &call.netns)
        .env("CNI_IFNAME", &call.ifname)
        .env("CNI_ARGS", &call.args)
        .env("CNI_PATH", &path)
        .envs(call.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(mask) = call.umask {
        // SAFETY: umask is async-signal-safe and cannot fail.
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(mask as libc::mode_t);
                Ok(())
            });
        }
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {plugin}: {e}"));
    if let Some(mut w) = child.stdin.take() {
        let _ = w.write_all(call.stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("wait plugin");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A one-shot TCP ping/pong from `from` to a listener in `to` at
/// `addr:port`; returns the peer address the listener saw (to tell real
/// source addresses from masqueraded ones). Panics, never hangs, when the
/// connection does not come within 5 s.
pub fn tcp_exchange(from: &TestNs, to: &TestNs, addr: &str, port: u16) -> String {
    use std::io::Read;
    use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
    use std::time::{Duration, Instant};
    let ip: IpAddr = addr
        .parse()
        .unwrap_or_else(|e| panic!("address {addr}: {e}"));
    let any: IpAddr = if ip.is_ipv4() {
        IpAddr::from([0u8, 0, 0, 0])
    } else {
        IpAddr::from(Ipv6Addr::UNSPECIFIED)
    };
    let listener = to.run(|| TcpListener::bind(SocketAddr::new(any, port)).expect("bind"));
    let target = SocketAddr::new(ip, port);
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            listener.set_nonblocking(true).expect("nonblocking");
            let deadline = Instant::now() + Duration::from_secs(5);
            let (mut c, peer) = loop {
                match listener.accept() {
                    Ok(x) => break x,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        assert!(Instant::now() < deadline, "no connection to {target}");
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            };
            c.set_nonblocking(false).expect("blocking");
            c.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).expect("read");
            assert_eq!(&buf, b"ping");
            c.write_all(b"pong").expect("write");
            peer.ip().to_string()
        });
        from.run(|| {
            let mut c = TcpStream::connect_timeout(&target, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connect {target}: {e}"));
            c.write_all(b"ping").expect("send");
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).expect("recv");
            assert_eq!(&buf, b"pong");
        });
        server.join().expect("server")
    })
}
