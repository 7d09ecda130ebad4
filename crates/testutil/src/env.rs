//! The shared plugin test environment: a node namespace where a plugin's
//! "host side" runs, rcni installed in a temp plugin directory, IPAM and
//! state directories, a network name; plugin calls exec'd in the node (the
//! real binary, as a runtime runs it) or in-process (the plugin's library
//! on a thread inside the node); and the "outside" topology (a namespace
//! joined to the node by a veth).

use crate::{run_plugin, unique, Call, Outcome, PluginDir, TempDir, TestNs};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Where Debian's reference plugins live (the side-by-side tests).
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// A [`PluginEnv`] for `plugin`, with the `rcni` binary of the calling
/// test crate (`CARGO_BIN_EXE_rcni`): `plugin_env!("bridge", "tag")`.
#[macro_export]
macro_rules! plugin_env {
    ($plugin:expr, $tag:expr) => {
        $crate::PluginEnv::new(
            ::std::path::Path::new(env!("CARGO_BIN_EXE_rcni")),
            $plugin,
            $tag,
        )
    };
}

/// One test's world: everything is removed on drop, also on panic.
pub struct PluginEnv {
    /// rcni installed with one link per plugin name.
    pub bin: PluginDir,
    /// The node namespace: the plugin's "host side".
    pub node: TestNs,
    /// host-local's `dataDir`.
    pub ipam_dir: TempDir,
    /// The plugin's `stateDir` (attachment records).
    pub state_dir: TempDir,
    /// A network name unique to this test.
    pub net: String,
    /// The plugin [`call`](PluginEnv::call) runs.
    pub plugin: &'static str,
    cni_path: String,
}

impl PluginEnv {
    /// Installs `rcni` and makes a node namespace tagged `tag`. `CNI_PATH`
    /// is the install directory only (see [`PluginEnv::with_cni_path`]).
    pub fn new(rcni: &Path, plugin: &'static str, tag: &str) -> PluginEnv {
        let bin = PluginDir::install(rcni);
        let cni_path = bin.path().display().to_string();
        PluginEnv {
            bin,
            node: TestNs::new(tag),
            ipam_dir: TempDir::new("ipam"),
            state_dir: TempDir::new("state"),
            net: format!("net-{}", unique(tag)),
            plugin,
            cni_path,
        }
    }

    /// `CNI_PATH` of every call: rcni's plugins first, then Debian's
    /// reference ones (for a reference IPAM behind an rcni plugin).
    pub fn with_reference_fallback(mut self) -> PluginEnv {
        self.cni_path = format!("{}:{REFERENCE_DIR}", self.bin.path().display());
        self
    }

    /// `CNI_PATH` of every call.
    pub fn cni_path(&self) -> &str {
        &self.cni_path
    }

    /// `cniVersion`, `name`, `type` of this env's plugin.
    pub fn base_conf(&self, v: &str) -> Value {
        json!({"cniVersion": v, "name": self.net, "type": self.plugin})
    }

    /// A host-local `ipam` section on `subnet` in this env's data dir.
    pub fn host_local(&self, subnet: &str) -> Value {
        json!({"type": "host-local", "subnet": subnet, "dataDir": self.ipam_dir.path()})
    }

    /// Runs this env's plugin (exec'd in the node) with a fresh [`Call`].
    pub fn call(&self, cmd: &str, id: &str, pod: &Path, conf: &Value) -> Outcome {
        self.call_with(Call::new(cmd, id, pod, &conf.to_string()))
    }

    /// Runs this env's plugin with `call`; `CNI_PATH` is the env's.
    pub fn call_with(&self, call: Call) -> Outcome {
        self.call_plugin(self.plugin, call)
    }

    /// Runs another of rcni's plugins with `call`; `CNI_PATH` is the env's.
    pub fn call_plugin(&self, plugin: &str, mut call: Call) -> Outcome {
        call.path = self.cni_path.clone();
        run_plugin(self.bin.path(), plugin, &call, Some(self.node.ns()))
    }

    /// Runs Debian's reference `plugin` in the node, `CNI_PATH` the
    /// reference directory.
    pub fn reference(&self, plugin: &str, mut call: Call) -> Outcome {
        call.path = REFERENCE_DIR.into();
        run_plugin(
            Path::new(REFERENCE_DIR),
            plugin,
            &call,
            Some(self.node.ns()),
        )
    }

    /// Runs `program` (a plugin binary) through `ip netns exec <node>`,
    /// which also mounts a sysfs of the node namespace (what plugins that
    /// read `/sys/class/net` need). `CNI_PATH` is the env's.
    pub fn ip_netns_exec(&self, program: &Path, call: &Call) -> Outcome {
        self.ip_netns_exec_argv(&[program.as_os_str()], call)
    }

    /// As [`PluginEnv::ip_netns_exec`], with a whole command line (for a
    /// wrapper such as `unshare` in front of the plugin).
    pub fn ip_netns_exec_argv<S: AsRef<std::ffi::OsStr>>(
        &self,
        argv: &[S],
        call: &Call,
    ) -> Outcome {
        let mut cmd = Command::new("/usr/sbin/ip");
        cmd.args(["netns", "exec", self.node.name()])
            .args(argv)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", &call.command)
            .env("CNI_CONTAINERID", &call.container_id)
            .env("CNI_NETNS", &call.netns)
            .env("CNI_IFNAME", &call.ifname)
            .env("CNI_ARGS", &call.args)
            .env("CNI_PATH", &self.cni_path)
            .envs(call.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ip netns exec");
        if let Some(mut w) = child.stdin.take() {
            let _ = w.write_all(call.stdin.as_bytes());
        }
        let out = child.wait_with_output().expect("wait");
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `plugin`'s library in-process on a thread inside the node (no
    /// exec; the calling process's environment is not read). `CNI_PATH`
    /// is the env's unless `call.path` is set.
    pub fn in_process(&self, plugin: &dyn cni_skel::Plugin, call: &Call) -> Outcome {
        let path = if call.path.is_empty() {
            self.cni_path.clone()
        } else {
            call.path.clone()
        };
        run_in_process(plugin, call, &path, Some(&self.node))
    }

    /// Addresses host-local has handed out on this env's network (files
    /// named like an IP).
    pub fn allocated(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.ipam_dir.path().join(&self.net)) else {
            return vec![];
        };
        rd.flatten()
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }
}

/// Runs `plugin` in-process with `call` (its `CNI_PATH` given as `path`),
/// inside `node` if given; the result as a process would have given it.
pub fn run_in_process(
    plugin: &dyn cni_skel::Plugin,
    call: &Call,
    path: &str,
    node: Option<&TestNs>,
) -> Outcome {
    let env = |k: &str| -> Option<String> {
        match k {
            "CNI_COMMAND" => Some(call.command.clone()),
            "CNI_CONTAINERID" => Some(call.container_id.clone()),
            "CNI_NETNS" => Some(call.netns.clone()),
            "CNI_IFNAME" => Some(call.ifname.clone()),
            "CNI_ARGS" => Some(call.args.clone()),
            "CNI_PATH" => Some(path.to_string()),
            _ => call
                .env
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone()),
        }
    };
    let go = || {
        let mut input = call.stdin.as_bytes();
        cni_skel::execute(plugin, &env, &mut input)
    };
    let out = match node {
        Some(n) => n.run(go),
        None => go(),
    };
    Outcome {
        code: out.exit_code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::new(),
    }
}

/// Adds every field of `extra` (an object) to `conf`, replacing.
pub fn merge(conf: &mut Value, extra: &Value) {
    if let (Some(c), Some(e)) = (conf.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
}

/// As [`merge`], but a `null` in `extra` removes the field.
pub fn merge_removing_nulls(conf: &mut Value, extra: &Value) {
    if let (Some(c), Some(e)) = (conf.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The "outside" topology: a namespace joined to the node by a veth, its
/// node end named `<prefix><unique>`, its far end `peer`. Both ends are up;
/// addresses are the caller's (see [`Outside::uplink`] for the usual one).
pub struct Outside {
    /// The outside namespace.
    pub ns: TestNs,
    /// The veth end in the node.
    pub node_end: String,
    /// The veth end in the outside namespace.
    pub peer: String,
}

impl Outside {
    /// A veth `<prefix><unique>` in `node` whose end `peer` sits in a new
    /// namespace tagged `tag`; both ends up.
    pub fn new(node: &TestNs, tag: &str, prefix: &str, peer: &str) -> Outside {
        let ns = TestNs::new(tag);
        let node_end = format!("{prefix}{}", unique(""));
        node.exec(&[
            "ip",
            "link",
            "add",
            &node_end,
            "type",
            "veth",
            "peer",
            "name",
            peer,
            "netns",
            ns.name(),
        ]);
        node.exec(&["ip", "link", "set", &node_end, "up"]);
        ns.exec(&["ip", "link", "set", peer, "up"]);
        Outside {
            ns,
            node_end,
            peer: peer.to_string(),
        }
    }

    /// The usual uplink: node `up…` 192.168.`third`.1/24 ↔ outside `out0`
    /// 192.168.`third`.2/24. The outside has no route to pod subnets, so a
    /// pod only reaches it when the node masquerades it.
    pub fn uplink(node: &TestNs, third: u8) -> Outside {
        let o = Outside::new(node, "out", "up", "out0");
        o.node_addr(node, &format!("192.168.{third}.1/24"));
        o.peer_addr(&format!("192.168.{third}.2/24"));
        o
    }

    /// Adds `cidr` to the node end.
    pub fn node_addr(&self, node: &TestNs, cidr: &str) {
        node.exec(&["ip", "addr", "add", cidr, "dev", &self.node_end]);
    }

    /// Adds `cidr` to the outside end.
    pub fn peer_addr(&self, cidr: &str) {
        self.ns
            .exec(&["ip", "addr", "add", cidr, "dev", &self.peer]);
    }
}
