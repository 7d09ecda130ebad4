//! The container image: `deploy/Containerfile` built with Podman from the
//! static `rcni-agent` and `rcni` (`bash scripts/dev.sh build`, or the
//! `agent_static_build` step of `scripts/dev.sh test`), then run once with
//! the command line of `deploy/rcni-agent.yaml` inside a node namespace the
//! test made, the CNI directories bind-mounted from temporary ones. It must
//! write the CNI config, install plugins that work on the node, and set up
//! routes, the VXLAN device and the masquerade table in that namespace.
//!
//! Podman never touches the machine's own container state: its storage,
//! run and temporary directories and its network config live in a
//! temporary directory (`CONTAINERS_CONF`, `CONTAINERS_STORAGE_CONF`), and
//! every podman command runs in a private mount namespace with fresh tmpfs
//! over `/run` and `/var/lib`, so what podman, conmon and the OCI runtime
//! keep at fixed paths there (the runtime's state, the blob-info cache)
//! vanishes with it. The node namespace is bind-mounted into that private
//! view before `/run` is covered. Everything is removed on drop.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use serde_json::{json, Value};
use testutil::{run_plugin, Call, TempDir, TestNs};

/// Where the static binaries are: `$RCNI_STATIC_DIR`, else
/// `<target>/<arch>-unknown-linux-gnu/release` (what `scripts/dev.sh`
/// builds).
fn static_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RCNI_STATIC_DIR") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target
        .join(format!("{}-unknown-linux-gnu", std::env::consts::ARCH))
        .join("release")
}

/// Whether an ELF executable asks for a program interpreter (is dynamic).
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == 3 // PT_INTERP
    })
}

/// The DaemonSet's container in `deploy/rcni-agent.yaml`.
fn daemonset_container() -> serde_yaml_ng::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rcni-agent.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v = serde_yaml_ng::Value::deserialize(doc).unwrap();
        if v["kind"].as_str() == Some("DaemonSet") {
            return v["spec"]["template"]["spec"]["containers"][0].clone();
        }
    }
    panic!("no DaemonSet in {}", path.display());
}

/// A private Podman: its own storage and state under a temporary
/// directory, each command in a private mount namespace.
struct Podman {
    dir: TempDir,
    /// The node namespace, bind-mounted here inside each command's view.
    netns: PathBuf,
    node: PathBuf,
    /// The cgroup (cgroupfs path) the container and its conmon go under.
    cgroup_parent: String,
}

impl Podman {
    fn new(node: &TestNs) -> Podman {
        let dir = TempDir::new("podman");
        let d = dir.path().display().to_string();
        std::fs::write(
            dir.path().join("containers.conf"),
            format!(
                "[network]\n\
                 network_backend = \"cni\"\n\
                 network_config_dir = \"{d}/net.d\"\n\
                 [engine]\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"none\"\n\
                 runtime = \"runc\"\n\
                 tmp_dir = \"{d}/tmp\"\n\
                 volume_path = \"{d}/volumes\"\n\
                 static_dir = \"{d}/libpod\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/root\"\nrunroot = \"{d}/runroot\"\n"
            ),
        )
        .unwrap();
        let netns = dir.path().join("node-netns");
        std::fs::write(&netns, "").unwrap();
        let cgroup_parent = format!(
            "/rcni-image-test-{}-{}",
            std::process::id(),
            node.path().file_name().unwrap().to_string_lossy()
        );
        Podman {
            netns,
            node: node.path(),
            dir,
            cgroup_parent,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let d = self.dir.path();
        // $1 and $2: the node namespace and where it goes; the rest is
        // podman's command line.
        let script = "set -e; mount --bind \"$1\" \"$2\"; \
                      mount -t tmpfs tmpfs /var/lib; mount -t tmpfs tmpfs /run; \
                      shift 2; exec podman \"$@\"";
        Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(&self.node)
            .arg(&self.netns)
            .args(args)
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("TMPDIR", d)
            .output()
            .expect("run podman")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force"]);
        let _ = self.run(&["rmi", "--all", "--force"]);
        remove_cgroup_tree(&self.cgroup_parent);
        // The directory itself goes with `dir`.
    }
}

/// Removes `parent` (and the empty cgroups under it) from every mounted
/// hierarchy, deepest first; a cgroup still holding a process stays.
fn remove_cgroup_tree(parent: &str) {
    fn remove(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    remove(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in hierarchies.flatten() {
        let mut candidates = vec![h.path().join(parent.trim_start_matches('/'))];
        // cgroup v2 directly under /sys/fs/cgroup.
        candidates.push(Path::new("/sys/fs/cgroup").join(parent.trim_start_matches('/')));
        for c in candidates {
            if c.is_dir() {
                remove(&c);
            }
        }
    }
}

fn sh(ns: &TestNs, cmd: &str) {
    let argv: Vec<&str> = cmd.split_whitespace().collect();
    ns.exec(&argv);
}

#[test]
fn image_built_with_podman_does_one_round_in_a_node_namespace() {
    // The binaries the image is made of.
    let bins = static_dir();
    for b in ["rcni-agent", "rcni"] {
        let p = bins.join(b);
        let elf = std::fs::read(&p).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; build the static binaries first: bash scripts/dev.sh build \
                 (or set RCNI_STATIC_DIR)",
                p.display()
            )
        });
        assert!(!has_interpreter(&elf), "{} is not static", p.display());
    }

    // The image, tagged as the DaemonSet names it.
    let container = daemonset_container();
    let image = container["image"].as_str().expect("image").to_string();
    let command: Vec<String> = container["command"]
        .as_sequence()
        .expect("command")
        .iter()
        .map(|c| c.as_str().expect("string").to_string())
        .collect();
    let mounts: Vec<String> = container["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .map(|m| m["mountPath"].as_str().expect("mountPath").to_string())
        .collect();
    let flag = |name: &str| {
        command
            .iter()
            .find_map(|c| c.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} not in the DaemonSet's command"))
            .to_string()
    };
    let (conf_dir, bin_dir) = (flag("--cni-conf-dir"), flag("--cni-bin-dir"));
    assert!(mounts.contains(&conf_dir) && mounts.contains(&bin_dir));

    let ctx = TempDir::new("ctx");
    for b in ["rcni-agent", "rcni"] {
        std::fs::copy(bins.join(b), ctx.path().join(b)).unwrap();
    }
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/Containerfile"),
        ctx.path().join("Containerfile"),
    )
    .unwrap();

    // A node on 192.168.80.0/24 (B is on-link, C behind its gateway).
    let node = TestNs::new("img");
    let lan = TestNs::new("lan");
    sh(
        &node,
        &format!(
            "ip link add eth0 type veth peer name gw0 netns {}",
            lan.name()
        ),
    );
    sh(&node, "ip addr add 192.168.80.10/24 dev eth0");
    sh(&node, "ip link set eth0 up");
    sh(&node, "ip route add default via 192.168.80.1");
    sh(&lan, "ip addr add 192.168.80.1/24 dev gw0");
    sh(&lan, "ip link set gw0 up");
    let nodes = TempDir::new("nodes");
    std::fs::write(
        nodes.path().join("nodes.json"),
        json!([
            {"name": "a", "addresses": ["192.168.80.10"], "podCIDRs": ["10.244.1.0/24"]},
            {"name": "b", "addresses": ["192.168.80.11"], "podCIDRs": ["10.244.2.0/24"]},
            {"name": "c", "addresses": ["192.168.90.10"], "podCIDRs": ["10.244.3.0/24"]},
        ])
        .to_string(),
    )
    .unwrap();
    let conf = TempDir::new("conf");
    let bin = TempDir::new("bin");

    let podman = Podman::new(&node);
    podman.ok(&[
        "build",
        "--pull=never",
        "--quiet",
        "-t",
        &image,
        "-f",
        &ctx.path().join("Containerfile").display().to_string(),
        &ctx.path().display().to_string(),
    ]);
    let listed = podman.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(listed.lines().any(|l| l == image), "{listed}");

    // The DaemonSet's command line, with a file source and --once.
    let mut args: Vec<String> = command[1..]
        .iter()
        .map(|a| match a.strip_prefix("--source=") {
            Some(_) => "--source=file:/nodes/nodes.json".to_string(),
            None => a.clone(),
        })
        .collect();
    args.push("--once".into());
    let netns_arg = format!("ns:{}", podman.netns.display());
    let vol = |host: &Path, inside: &str| format!("{}:{inside}", host.display());
    let cgroup_parent = podman.cgroup_parent.clone();
    let mut run: Vec<String> = [
        "run",
        "--rm",
        "--privileged",
        // Under a parent of this test's own, removed with it (podman's
        // default, libpod_parent, would stay behind in the host's cgroups).
        "--cgroup-parent",
        &cgroup_parent,
        "--network",
        &netns_arg,
        // Within the limits a test process has (podman's defaults are higher
        // than a CI sandbox may allow).
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "-e",
        "NODE_NAME=a",
        "-v",
        &vol(conf.path(), &conf_dir),
        "-v",
        &vol(bin.path(), &bin_dir),
        "-v",
        &vol(nodes.path(), "/nodes:ro"),
        "--entrypoint",
        &command[0],
        &image,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    run.extend(args);
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    let out = podman.run(&run);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "the agent's round failed:\n{log}");
    assert!(log.contains("reconciled 3 nodes via eth0"), "{log}");

    // The CNI config in the bind-mounted conf dir.
    let list: Value =
        serde_json::from_slice(&std::fs::read(conf.path().join("10-rcni.conflist")).unwrap())
            .unwrap();
    assert_eq!(
        list["plugins"][0]["ipam"]["ranges"],
        json!([[{"subnet": "10.244.1.0/24"}]])
    );
    // The plugins on the "host": rcni and links to it.
    let rcni = std::fs::symlink_metadata(bin.path().join("rcni")).unwrap();
    assert!(rcni.is_file());
    for p in ["bridge", "host-local", "portmap"] {
        let link = std::fs::read_link(bin.path().join(p)).unwrap();
        assert_eq!(link, Path::new("rcni"), "{p}");
    }
    // Routes, the overlay and masquerade in the node namespace.
    let routes = node.exec(&["ip", "-4", "route", "show", "proto", "82"]);
    assert!(
        routes.contains("10.244.2.0/24 via 192.168.80.11 dev eth0"),
        "{routes}"
    );
    assert!(
        routes.contains("10.244.3.0/24 via 10.244.3.0 dev rcni.vxlan onlink"),
        "{routes}"
    );
    let nft = node.exec(&["nft", "list", "table", "inet", "rcni-agent"]);
    assert!(nft.contains("masquerade"), "{nft}");
    assert_eq!(
        node.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "1"
    );

    // The static rcni the image installed runs on the node: a pod made
    // with the written config.
    let pod = TestNs::new("ipod");
    let ipam = TempDir::new("ipam");
    let state = TempDir::new("st");
    let mut net = list["plugins"][0].clone();
    net["cniVersion"] = list["cniVersion"].clone();
    net["name"] = list["name"].clone();
    net["ipam"]["dataDir"] = json!(ipam.path());
    net["stateDir"] = json!(state.path());
    let mut call = Call::new("ADD", "img-pod", &pod.path(), &net.to_string());
    call.path = bin.path().display().to_string();
    let res = run_plugin(bin.path(), "bridge", &call, Some(node.ns())).ok();
    assert_eq!(res["ips"][0]["address"], "10.244.1.2/24", "{res}");
    let mut del = Call::new("DEL", "img-pod", &pod.path(), &net.to_string());
    del.path = call.path.clone();
    run_plugin(bin.path(), "bridge", &del, Some(node.ns())).ok();

    // No container is left; the image goes with the storage on drop.
    let left = podman.ok(&["ps", "--all", "--quiet"]);
    assert!(left.trim().is_empty(), "{left}");
}
