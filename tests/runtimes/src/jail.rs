//! The jail: a node network namespace plus private mount and PID
//! namespaces, a private state directory and an `rcni install`ed plugin
//! directory. See the crate docs.

use crate::proc::{self, Output};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testutil::{PluginDir, TempDir, TestNs};

/// Which cgroup view the jail's processes get at `/sys/fs/cgroup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cgroups {
    /// Only the unified (v2) hierarchy. crun refuses hybrid hosts; with
    /// Podman's `cgroups = "disabled"` nothing is created in it.
    Unified,
    /// The host's own tree (v1, hybrid or v2), for runc. Whatever a runtime
    /// creates goes under [`Jail::cgroup_parent`], removed on drop.
    Host,
}

/// Paths inside the jail that are fresh tmpfs mounts (when they exist on
/// the host; the jail never creates a directory outside its state dir).
const TMPFS: &[&str] = &["/run", "/var/lib", "/opt", "/etc/cni", "/dev/shm"];

/// See the crate docs.
pub struct Jail {
    holder: Option<Child>,
    init_pid: i32,
    cgroup_parent: String,
    cgroups: Cgroups,
    plugins: Option<PluginDir>,
    state: Option<TempDir>,
    node: Option<TestNs>,
}

fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

impl Jail {
    /// A jail whose node namespace, state dir and cgroup parent carry
    /// `tag` (at most 4 bytes) and a unique suffix.
    pub fn new(tag: &str, cgroups: Cgroups) -> Jail {
        testutil::require_root();
        let node = TestNs::new(tag);
        let state = TempDir::new(&format!("rt{tag}"));
        let plugins = PluginDir::install(&testutil::rcni_bin());
        let s = state.path();
        for d in ["cni-cache", "etc-cni-net.d", "etc-containers", "tmp"] {
            std::fs::create_dir_all(s.join(d)).expect("mkdir state");
        }
        let mut script = String::from("set -e\n");
        for t in TMPFS {
            if Path::new(t).is_dir() {
                let mode = if *t == "/dev/shm" { "1777" } else { "755" };
                script.push_str(&format!("mount -t tmpfs -o mode={mode} rcni-jail {t}\n"));
            }
        }
        script.push_str("mkdir -p /run/netns /run/lock\n");
        // Mount points made inside the tmpfs mounts above, never on the
        // host's file system.
        let binds = [
            (s.join("cni-cache"), "/var/lib", "/var/lib/cni"),
            (plugins.path().to_path_buf(), "/opt", "/opt/cni/bin"),
        ];
        for (src, tmpfs, dst) in &binds {
            if Path::new(tmpfs).is_dir() {
                script.push_str(&format!(
                    "mkdir -p {dst} && mount --bind {} {dst}\n",
                    sh_quote(src)
                ));
            }
        }
        if Path::new("/etc/cni").is_dir() {
            script.push_str(&format!(
                "mkdir -p /etc/cni/net.d && mount --bind {} /etc/cni/net.d\n",
                sh_quote(&s.join("etc-cni-net.d"))
            ));
        }
        if Path::new("/etc/containers").is_dir() {
            script.push_str(&format!(
                "mount --bind {} /etc/containers\n",
                sh_quote(&s.join("etc-containers"))
            ));
        }
        // sysfs of the node namespace (what `ip netns exec` does), with the
        // chosen cgroup view on top of it.
        match cgroups {
            Cgroups::Unified => script.push_str(
                "mount -t sysfs rcni-jail /sys\nmount -t cgroup2 rcni-jail /sys/fs/cgroup\n",
            ),
            Cgroups::Host => {
                let cg = sh_quote(&s.join("cg"));
                script.push_str(&format!(
                    "mkdir -p {cg} && mount --rbind /sys/fs/cgroup {cg}\n\
                     mount -t sysfs rcni-jail /sys\nmount --move {cg} /sys/fs/cgroup\n"
                ));
            }
        }
        script.push_str(&format!(
            "touch {}\nexec catatonit -P\n",
            sh_quote(&s.join(".ready"))
        ));
        let log = std::fs::File::create(s.join("jail.log")).expect("jail log");
        let mut cmd = testutil::command_in(Some(node.ns()), "unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--",
            "/bin/sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log);
        // SAFETY: prctl is async-signal-safe. The jail dies with the test
        // thread that made it, also when the test process is killed.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut holder = cmd.spawn().expect("spawn unshare (util-linux)");
        let pid = holder.id();
        let ready = proc::wait_for(Duration::from_secs(10), || {
            if matches!(holder.try_wait(), Ok(Some(_))) {
                return Some(false);
            }
            s.join(".ready").exists().then_some(true)
        });
        let mut jail = Jail {
            holder: Some(holder),
            init_pid: 0,
            cgroup_parent: format!("/{}", node.name()),
            cgroups,
            plugins: Some(plugins),
            state: Some(state),
            node: Some(node),
        };
        if ready != Some(true) {
            let log = std::fs::read_to_string(jail.state().join("jail.log")).unwrap_or_default();
            panic!("jail did not come up: {log}");
        }
        let children = format!("/proc/{pid}/task/{pid}/children");
        jail.init_pid = proc::wait_for(Duration::from_secs(5), || {
            std::fs::read_to_string(&children)
                .ok()
                .and_then(|c| c.split_whitespace().next()?.parse().ok())
        })
        .expect("the jail's init process");
        jail
    }

    /// The node namespace: the "host" side plugins configure.
    pub fn node(&self) -> &TestNs {
        self.node.as_ref().expect("node lives until drop")
    }

    /// The private state directory (on the host file system, visible to
    /// the test and to the jail at the same path).
    pub fn state(&self) -> &Path {
        self.state.as_ref().expect("state lives until drop").path()
    }

    /// The directory `rcni install` filled (also `/opt/cni/bin` inside).
    pub fn plugin_dir(&self) -> &Path {
        self.plugins
            .as_ref()
            .expect("plugins live until drop")
            .path()
    }

    /// What `/etc/cni/net.d` is inside the jail.
    pub fn etc_cni_net_d(&self) -> PathBuf {
        self.state().join("etc-cni-net.d")
    }

    /// What `/var/lib/cni` (libcni's result cache) is inside the jail.
    pub fn cni_cache(&self) -> PathBuf {
        self.state().join("cni-cache")
    }

    /// A cgroup path of this jail's own (`Cgroups::Host`): give it to the
    /// runtime as the parent of everything it creates.
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    /// A path as seen inside the jail's mount namespace, from outside.
    pub fn inside(&self, path: &str) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.init_pid)).join(path.trim_start_matches('/'))
    }

    /// `program` to run inside the jail (all of its namespaces).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.init_pid.to_string())
            .args(["-m", "-n", "-p", "--"])
            .arg(program);
        cmd
    }

    /// Runs `program args` inside the jail with extra `env`, bounded by
    /// `timeout`.
    pub fn run(
        &self,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> Output {
        let mut cmd = self.command(program);
        cmd.args(args).envs(env.iter().copied());
        proc::run(cmd, None, timeout)
    }

    /// Starts a long-running `program` inside the jail, output to
    /// `<state>/<log>`; killed on drop of the returned guard (and by the
    /// jail's end in any case).
    pub fn spawn_daemon(
        &self,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log: &str,
    ) -> Daemon {
        let f = std::fs::File::create(self.state().join(log)).expect("daemon log");
        let mut cmd = self.command(program);
        cmd.args(args)
            .envs(env.iter().copied())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup log"))
            .stderr(f);
        Daemon {
            child: cmd
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {program}: {e}")),
            log: self.state().join(log),
        }
    }

    fn remove_cgroups(&self) {
        if self.cgroups != Cgroups::Host {
            return;
        }
        let name = self.cgroup_parent.trim_start_matches('/');
        let mut roots = vec![PathBuf::from("/sys/fs/cgroup").join(name)];
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            roots.extend(rd.flatten().map(|e| e.path().join(name)));
        }
        for root in roots.iter().filter(|r| r.is_dir()) {
            // Killed tasks leave their cgroups a moment later: retry.
            let gone = proc::wait_for(Duration::from_secs(5), || {
                rmdir_tree(root);
                (!root.exists()).then_some(())
            });
            if gone.is_none() {
                eprintln!("warning: cgroup {} is still there", root.display());
            }
        }
    }
}

fn rmdir_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl Drop for Jail {
    fn drop(&mut self) {
        if let Some(mut h) = self.holder.take() {
            // unshare's --kill-child takes the PID namespace's init down,
            // and with it every process in the namespace.
            let _ = h.kill();
            let _ = h.wait();
        }
        if self.init_pid > 0 {
            let status = format!("/proc/{}/status", self.init_pid);
            let gone = proc::wait_for(Duration::from_secs(10), || {
                let s = std::fs::read_to_string(&status).unwrap_or_default();
                (s.is_empty() || s.contains("State:\tZ")).then_some(())
            });
            if gone.is_none() {
                eprintln!("warning: jail init {} still alive", self.init_pid);
            }
        }
        self.remove_cgroups();
        self.plugins.take();
        self.state.take();
        self.node.take();
    }
}

/// A daemon inside a jail; killed (with its process group) on drop.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// The daemon's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        proc::kill_group(&self.child);
        let _ = self.child.wait();
    }
}
