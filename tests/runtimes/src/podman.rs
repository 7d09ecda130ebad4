//! Podman (CNI backend) on rcni, in a jail.
//!
//! Any conflist can be tried this way, a meta plugin such as `multus` in
//! front included: every plugin name `rcni install` links is in the jail's
//! plugin dir (Podman's `cni_plugin_dirs`), files a plugin needs (delegate
//! configs, kubeconfigs) go under [`Jail::state`], and
//! [`PodmanEnv::plugin_log`] shows every plugin call.
//!
//! ```no_run
//! use rcni_runtime_tests::podman::PodmanEnv;
//! let env = PodmanEnv::new("mlts");
//! env.add_network(&serde_json::json!({
//!     "cniVersion": "1.0.0", "name": "net1",
//!     "plugins": [{"type": "bridge", "bridge": "br-net1", "isGateway": true,
//!                  "ipam": {"type": "host-local", "dataDir": env.ipam_dir(),
//!                           "ranges": [[{"subnet": "10.99.0.0/24"}]]}}]
//! }));
//! let c = env.run("web", "net1", &[(8080, 80)], &["httpd", "-f", "-p", "80"]).unwrap();
//! println!("{} got {}", c.name, c.ip);
//! env.rm(&["web"]).unwrap();
//! ```

use crate::jail::{Cgroups, Jail};
use crate::proc::Output;
use crate::IMAGE;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// How long one `podman` command may take.
pub const PODMAN_TIMEOUT: Duration = Duration::from_secs(120);

/// Busybox applets the image links (besides `busybox` itself).
const APPLETS: &[&str] = &[
    "sh", "sleep", "httpd", "wget", "nc", "ip", "cat", "echo", "ls", "timeout", "hostname", "true",
];

/// A container `PodmanEnv::run` started.
#[derive(Debug, Clone)]
pub struct Container {
    /// Podman's container id.
    pub id: String,
    /// The name it was started with.
    pub name: String,
    /// Its IPv4 address on the network it was started on.
    pub ip: String,
    /// Its network namespace's path (inside the jail).
    pub netns: String,
}

/// Podman configured for the CNI backend with the plugins `rcni install`
/// put in the jail's plugin dir, its networks in a private directory, all
/// its storage and run state under the jail's state dir, and the busybox
/// image [`IMAGE`] imported.
pub struct PodmanEnv {
    jail: Jail,
    env: Vec<(String, String)>,
}

impl PodmanEnv {
    /// A new jail (`tag`: at most 4 bytes) with Podman set up in it.
    pub fn new(tag: &str) -> PodmanEnv {
        PodmanEnv::in_jail(Jail::new(tag, Cgroups::Unified))
    }

    /// Podman set up in `jail`. Containers need a `Cgroups::Unified` jail
    /// (crun); images (import, save) work in either.
    pub fn in_jail(jail: Jail) -> PodmanEnv {
        let env = configure(&jail);
        let env = PodmanEnv { jail, env };
        env.import_busybox();
        env
    }

    /// The jail Podman runs in.
    pub fn jail(&self) -> &Jail {
        &self.jail
    }

    /// Podman's `network_config_dir`: a conflist written here is a network
    /// `podman run --network NAME` can use.
    pub fn network_dir(&self) -> PathBuf {
        self.jail.state().join("podman-net.d")
    }

    /// A private IPAM `dataDir` for host-local.
    pub fn ipam_dir(&self) -> PathBuf {
        self.jail.state().join("ipam")
    }

    /// A private `stateDir` / `dataDir` for rcni's plugins.
    pub fn plugin_state_dir(&self) -> PathBuf {
        self.jail.state().join("plugin-state")
    }

    /// Where the plugins' log lines go (`RCNI_LOG=debug`: one line per
    /// call with the command, container id, ifname and netns).
    pub fn plugin_log_path(&self) -> PathBuf {
        self.jail.state().join("rcni-plugins.log")
    }

    /// The plugins' log so far (empty when nothing was logged).
    pub fn plugin_log(&self) -> String {
        std::fs::read_to_string(self.plugin_log_path()).unwrap_or_default()
    }

    /// Writes `conflist` as `<name>.conflist` into [`Self::network_dir`].
    pub fn add_network(&self, conflist: &Value) {
        let name = conflist["name"].as_str().expect("a conflist has a name");
        std::fs::write(
            self.network_dir().join(format!("{name}.conflist")),
            serde_json::to_vec_pretty(conflist).expect("json"),
        )
        .expect("write conflist");
    }

    /// `podman ARGS` in the jail, bounded by [`PODMAN_TIMEOUT`].
    pub fn podman(&self, args: &[&str]) -> Output {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.jail.run("podman", args, &env, PODMAN_TIMEOUT)
    }

    /// `podman run -d` of [`IMAGE`] named `name` on `network`, publishing
    /// `ports` (host, container) over TCP, running `argv`.
    pub fn run(
        &self,
        name: &str,
        network: &str,
        ports: &[(u16, u16)],
        argv: &[&str],
    ) -> Result<Container, String> {
        self.run_with(name, network, ports, &[], argv)
    }

    /// [`Self::run`] with `extra` options for `podman run` (before the
    /// image), e.g. `--cap-add`, `--env`, `--mac-address`.
    pub fn run_with(
        &self,
        name: &str,
        network: &str,
        ports: &[(u16, u16)],
        extra: &[&str],
        argv: &[&str],
    ) -> Result<Container, String> {
        let mut args: Vec<String> = ["run", "-d", "--name", name, "--network", network]
            .map(String::from)
            .to_vec();
        args.extend(["--dns".into(), "none".into()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        for (h, c) in ports {
            args.extend(["-p".into(), format!("{h}:{c}/tcp")]);
        }
        args.push(IMAGE.into());
        args.extend(argv.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = self.podman(&refs).ok()?.trim().to_string();
        let inspect = self
            .podman(&["inspect", "--format", "{{json .NetworkSettings}}", name])
            .ok()?;
        let v: Value = serde_json::from_str(inspect.trim())
            .map_err(|e| format!("podman inspect: {e}: {inspect}"))?;
        Ok(Container {
            id,
            name: name.into(),
            ip: v["Networks"][network]["IPAddress"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            netns: v["SandboxKey"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// `podman exec NAME ARGV`.
    pub fn exec(&self, name: &str, argv: &[&str]) -> Output {
        let mut args = vec!["exec", name];
        args.extend_from_slice(argv);
        self.podman(&args)
    }

    /// `wget` of `http://addr:port/` from inside container `name`; the body.
    pub fn wget(&self, name: &str, addr: &str, port: u16) -> Result<String, String> {
        let url = format!("http://{addr}:{port}/");
        self.exec(name, &["timeout", "10", "wget", "-q", "-O-", &url])
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// `podman rm -f -t 0 NAMES`.
    pub fn rm(&self, names: &[&str]) -> Result<(), String> {
        let mut args = vec!["rm", "-f", "-t", "0"];
        args.extend_from_slice(names);
        self.podman(&args).ok().map(|_| ())
    }

    /// Writes [`IMAGE`] as a docker archive (for `ctr images import`).
    pub fn save_image(&self, path: &std::path::Path) -> Result<(), String> {
        let p = path.display().to_string();
        self.podman(&["save", "--format", "docker-archive", "-o", &p, IMAGE])
            .ok()
            .map(|_| ())
    }

    /// A rootfs of the host's static busybox, imported as [`IMAGE`] (its
    /// command sleeps, so it also serves as a CRI sandbox image).
    fn import_busybox(&self) {
        let s = self.jail.state();
        let root = s.join("rootfs");
        for d in [
            "bin", "proc", "sys", "dev", "etc", "tmp", "www", "run", "var",
        ] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir rootfs");
        }
        // fs::copy keeps the mode bits.
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .expect("/bin/busybox (busybox-static)");
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).expect("applet link");
        }
        let tar = s.join("rootfs.tar");
        let mut cmd = std::process::Command::new("tar");
        cmd.arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".");
        crate::proc::run(cmd, None, Duration::from_secs(60))
            .ok()
            .expect("tar the rootfs");
        let t = tar.display().to_string();
        self.podman(&[
            "import",
            "--change",
            r#"CMD=["/bin/sleep","2147483647"]"#,
            &t,
            IMAGE,
        ])
        .ok()
        .expect("podman import");
    }
}

/// Writes Podman's private configuration into the jail's state dir and
/// returns the environment every `podman` call needs.
fn configure(jail: &Jail) -> Vec<(String, String)> {
    let s = jail.state();
    for d in [
        "podman-net.d",
        "podman-root",
        "podman-run",
        "podman-tmp",
        "ipam",
    ] {
        std::fs::create_dir_all(s.join(d)).expect("mkdir podman state");
    }
    let q = |p: PathBuf| format!("{:?}", p.display().to_string());
    let etc = s.join("etc-containers");
    let path = |p: PathBuf| p.display().to_string();
    let env: Vec<(String, String)> = vec![
        ("CONTAINERS_CONF".into(), path(etc.join("containers.conf"))),
        (
            "CONTAINERS_STORAGE_CONF".into(),
            path(etc.join("storage.conf")),
        ),
        (
            "CONTAINERS_REGISTRIES_CONF".into(),
            path(etc.join("registries.conf")),
        ),
        ("TMPDIR".into(), path(s.join("tmp"))),
        ("RCNI_LOG".into(), "debug".into()),
        ("RCNI_LOG_FILE".into(), path(s.join("rcni-plugins.log"))),
    ];
    // conmon runs `podman container cleanup` (which may be the one tearing
    // the network down) with only these variables.
    let mut conmon_env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    conmon_env.push(format!(
        "PATH={}",
        std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
    ));
    let conf = format!(
        "[containers]\ncgroups = \"disabled\"\n\n\
         [network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [{}]\n\
         network_config_dir = {}\n\n\
         [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
         events_logfile_path = {}\ntmp_dir = {}\nimage_copy_tmp_dir = {}\n\
         runtime = \"crun\"\nconmon_env_vars = {:?}\n",
        q(jail.plugin_dir().to_path_buf()),
        q(s.join("podman-net.d")),
        q(s.join("podman-events.log")),
        q(s.join("podman-tmp")),
        q(s.join("tmp")),
        conmon_env,
    );
    let storage = format!(
        "[storage]\ndriver = \"vfs\"\nrunroot = {}\ngraphroot = {}\n",
        q(s.join("podman-run")),
        q(s.join("podman-root")),
    );
    std::fs::write(etc.join("containers.conf"), conf).expect("containers.conf");
    std::fs::write(etc.join("storage.conf"), storage).expect("storage.conf");
    std::fs::write(
        etc.join("registries.conf"),
        "unqualified-search-registries = []\nshort-name-mode = \"disabled\"\n",
    )
    .expect("registries.conf");
    std::fs::write(
        etc.join("policy.json"),
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .expect("policy.json");
    env
}
