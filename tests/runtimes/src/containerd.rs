//! containerd (with its CRI plugin on rcni) in a jail, and `ctr`.

use crate::jail::{Daemon, Jail};
use crate::proc::Output;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one `ctr` command may take.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(120);

/// A running containerd whose root, state, sockets and CRI network
/// configuration are under the jail's state dir. Its CRI plugin runs
/// plugins from the jail's plugin dir with the conflists of
/// [`Containerd::cri_conf_dir`], and uses `sandbox_image` as the pause
/// image (nothing is pulled). Killed on drop.
pub struct Containerd {
    daemon: Daemon,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Containerd {
    /// Starts containerd in `jail` (which should be `Cgroups::Host`: runc)
    /// and waits (at most 30 s) until it answers. The plugins log to
    /// `plugin_log` (`RCNI_LOG=debug`).
    pub fn start(jail: &Jail, sandbox_image: &str, plugin_log: &Path) -> Containerd {
        let dir = jail.state().join("containerd");
        for d in ["root", "state", "cri-net.d"] {
            std::fs::create_dir_all(dir.join(d)).expect("mkdir containerd state");
        }
        let q = |p: PathBuf| format!("{:?}", p.display().to_string());
        let config = format!(
            r#"version = 2
root = {root}
state = {state}
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = {sock}

[debug]
  level = "debug"

[ttrpc]
  address = {ttrpc}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {image:?}
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # The sandbox asks for oom_score_adj -998, which needs CAP_SYS_RESOURCE
  # (root lacks it on some machines, this project's VMs included);
  # capped at containerd's own value it works wherever containerd runs.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = {runc:?}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {bin}
    conf_dir = {conf}
    max_conf_num = 1
"#,
            root = q(dir.join("root")),
            state = q(dir.join("state")),
            sock = q(dir.join("containerd.sock")),
            ttrpc = q(dir.join("containerd.sock.ttrpc")),
            image = sandbox_image,
            // RCNI_RT_RUNC: another OCI runtime binary (e.g. a wrapper that
            // logs), for debugging.
            runc = std::env::var("RCNI_RT_RUNC").unwrap_or_else(|_| "runc".into()),
            bin = q(jail.plugin_dir().to_path_buf()),
            conf = q(dir.join("cri-net.d")),
        );
        std::fs::write(dir.join("config.toml"), config).expect("containerd config");
        let env = vec![
            ("RCNI_LOG".to_string(), "debug".to_string()),
            (
                "RCNI_LOG_FILE".to_string(),
                plugin_log.display().to_string(),
            ),
            (
                "TMPDIR".to_string(),
                jail.state().join("tmp").display().to_string(),
            ),
        ];
        let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let cfg = dir.join("config.toml").display().to_string();
        let daemon = jail.spawn_daemon("containerd", &["--config", &cfg], &envs, "containerd.log");
        let mut c = Containerd { daemon, dir, env };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if !c.daemon.running() {
                panic!("containerd exited:\n{}", c.log());
            }
            if c.socket().exists() && c.ctr(jail, &["version"]).success() {
                return c;
            }
            if std::time::Instant::now() > deadline {
                panic!("containerd did not answer within 30 s:\n{}", c.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The gRPC socket (CRI and containerd's own API).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// The CRI plugin's `conf_dir`: put the network's conflist here.
    pub fn cri_conf_dir(&self) -> PathBuf {
        self.dir.join("cri-net.d")
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// `ctr --address SOCKET ARGS` in the jail (with the plugins' log
    /// environment, for `ctr run --cni`).
    pub fn ctr(&self, jail: &Jail, args: &[&str]) -> Output {
        let sock = self.socket().display().to_string();
        let mut all = vec!["--address", &sock];
        all.extend_from_slice(args);
        let envs: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        jail.run("ctr", &all, &envs, CTR_TIMEOUT)
    }

    /// Imports an image archive (`podman save`) into the CRI plugin's
    /// namespace with the snapshotter the jail can use.
    pub fn import_image(&self, jail: &Jail, archive: &Path) -> Result<(), String> {
        let a = archive.display().to_string();
        let args = [
            "-n",
            "k8s.io",
            "images",
            "import",
            "--snapshotter",
            "native",
            &a,
        ];
        self.ctr(jail, &args).ok().map(|_| ())
    }
}
