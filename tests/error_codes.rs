//! Error codes end to end (issue 11): a delegated IPAM plugin's own error
//! object reaches the runtime through bridge unchanged, on ADD and on DEL,
//! and a kernel refusing a route comes back as code 5 (I/O), not 7
//! (invalid config). Real namespaces; the runtime (`runtime::CniConfig`)
//! runs on a thread inside a per-test node namespace, so the plugins it
//! execs start there.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use testutil::{run_plugin, Call, PluginDir, TempDir, TestNs};

/// The message and details the test IPAM answers with.
const BUSY_MSG: &str = "address pool locked by a resync: try again later";
const BUSY_DETAILS: &str = "busy-ipam refused";

/// An IPAM plugin that answers every verb but VERSION with code 11.
fn busy_ipam(dir: &Path) {
    let p = dir.join("busy-ipam");
    let body = format!(
        r#"#!/bin/sh
cat > /dev/null
if [ "$CNI_COMMAND" = VERSION ]; then
  echo '{{"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}}'
  exit 0
fi
echo '{{"cniVersion":"1.1.0","code":11,"msg":"{BUSY_MSG}","details":"{BUSY_DETAILS} '"$CNI_COMMAND"'"}}'
exit 1
"#
    );
    std::fs::write(&p, body).expect("write busy-ipam");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

struct Env {
    bin: PluginDir,
    scripts: TempDir,
    cache: TempDir,
    node: TestNs,
    bridge: String,
    net: String,
}

impl Env {
    fn new(tag: &str) -> Env {
        testutil::require_root();
        let scripts = TempDir::new("ipam-scripts");
        busy_ipam(scripts.path());
        let id = testutil::unique(tag);
        Env {
            bin: PluginDir::install(Path::new(env!("CARGO_BIN_EXE_rcni"))),
            scripts,
            cache: TempDir::new("cache"),
            node: TestNs::new(tag),
            // Bridge names are at most 15 bytes.
            bridge: format!("kb{}", &fnv_hex(&id)[..10]),
            net: format!("net-{id}"),
        }
    }

    fn cni_path(&self) -> String {
        format!(
            "{}:{}",
            self.bin.path().display(),
            self.scripts.path().display()
        )
    }

    fn conflist(&self, ipam: Value) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": self.net,
            "plugins": [{"type": "bridge", "bridge": self.bridge, "isGateway": true, "ipam": ipam}]
        })
    }

    /// The runtime, as a container runtime would use it, with the plugins
    /// exec'd from inside the node namespace.
    fn runtime<T: Send>(&self, f: impl FnOnce(&runtime::CniConfig) -> T + Send) -> T {
        let cni = runtime::CniConfig::new([self.bin.path(), self.scripts.path()])
            .with_cache_dir(self.cache.path());
        self.node.run(|| f(&cni))
    }
}

fn fnv_hex(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The plugin error the runtime reports, with its error object.
fn plugin_error(e: &runtime::Error) -> &cni_spec::Error {
    match e {
        runtime::Error::Plugin { source, .. } => source,
        other => panic!("not a plugin error: {other:?}"),
    }
}

#[test]
fn ipam_try_again_later_reaches_the_runtime_through_bridge_on_add_and_del() {
    let env = Env::new("e11");
    let pod = TestNs::new("e11-pod");
    let list = runtime::NetworkConfigList::from_bytes(
        env.conflist(json!({"type": "busy-ipam"}))
            .to_string()
            .as_bytes(),
    )
    .expect("conflist");
    let rt = runtime::RuntimeConf::new("ctr-e11", pod.path().display().to_string(), "eth0");

    let add = env
        .runtime(|cni| cni.add(&list, &rt))
        .expect_err("ADD must fail");
    assert_eq!(add.code(), Some(11), "{add}");
    let obj = plugin_error(&add);
    assert_eq!(obj.code, 11);
    assert_eq!(obj.msg, BUSY_MSG);
    assert_eq!(obj.details, format!("{BUSY_DETAILS} ADD"));
    // The failed ADD undid its veth: only loopback in the pod, only the
    // bridge (made before IPAM, as the reference) in the node.
    assert_eq!(pod.link_names(), vec!["lo".to_string()]);
    assert!(env
        .node
        .link_names()
        .iter()
        .all(|l| l == "lo" || *l == env.bridge));

    let del = env
        .runtime(|cni| cni.del(&list, &rt))
        .expect_err("DEL must fail");
    assert_eq!(del.code(), Some(11), "{del}");
    let obj = plugin_error(&del);
    assert_eq!(obj.code, 11);
    assert_eq!(obj.msg, BUSY_MSG);
    assert_eq!(obj.details, format!("{BUSY_DETAILS} DEL"));

    // GC, CHECK and STATUS too, straight from the plugin's stdout.
    for verb in ["GC", "CHECK", "STATUS"] {
        let conf = json!({
            "cniVersion": "1.1.0",
            "name": env.net,
            "type": "bridge",
            "bridge": env.bridge,
            "ipam": {"type": "busy-ipam"},
            "prevResult": {"cniVersion": "1.1.0", "interfaces": [], "ips": []},
        });
        let mut call = Call::new(verb, "ctr-e11", &pod.path(), &conf.to_string());
        call.path = env.cni_path();
        let out = run_plugin(env.bin.path(), "bridge", &call, Some(env.node.ns()));
        assert_eq!(out.err_code(), 11, "{verb}: {}", out.stdout);
        let v = out.json();
        assert_eq!(v["msg"], BUSY_MSG, "{verb}");
        assert_eq!(v["details"], format!("{BUSY_DETAILS} {verb}"), "{verb}");
    }
}

#[test]
fn a_route_the_kernel_refuses_is_code_5_and_leaves_nothing() {
    let env = Env::new("e5");
    let pod = TestNs::new("e5-pod");
    // The gateway of this route is not on any link of the pod: the kernel
    // refuses it (ENETUNREACH). The config itself is valid.
    let ipam = json!({
        "type": "static",
        "addresses": [{"address": "10.77.0.2/24", "gateway": "10.77.0.1"}],
        "routes": [{"dst": "10.99.0.0/16", "gw": "192.0.2.1"}]
    });
    let mut conf = env.conflist(ipam);
    let plugin = conf["plugins"][0].clone();
    if let (Some(c), Some(p)) = (conf.as_object_mut(), plugin.as_object()) {
        c.remove("plugins");
        for (k, v) in p {
            c.insert(k.clone(), v.clone());
        }
    }
    let mut call = Call::new("ADD", "ctr-e5", &pod.path(), &conf.to_string());
    call.path = env.cni_path();
    let out = run_plugin(env.bin.path(), "bridge", &call, Some(env.node.ns()));
    assert_eq!(out.err_code(), 5, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("failed to add route 10.99.0.0/16 via 192.0.2.1"),
        "{}",
        out.stdout
    );
    assert_eq!(pod.link_names(), vec!["lo".to_string()]);
    assert!(env
        .node
        .link_names()
        .iter()
        .all(|l| l == "lo" || *l == env.bridge));
    let mut del = call.clone();
    del.command = "DEL".into();
    let out = run_plugin(env.bin.path(), "bridge", &del, Some(env.node.ns()));
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
}

/// Every plugin that delegates to IPAM hands the IPAM's own error object
/// back on DEL (its teardown keeps going and reports the most significant
/// code), with nothing of its own left to remove.
#[test]
fn ipam_try_again_later_comes_back_from_every_main_plugin_on_del() {
    let env = Env::new("e11d");
    let pod = TestNs::new("e11d-pod");
    let plugins = [
        json!({"type": "bridge", "bridge": env.bridge}),
        json!({"type": "ptp"}),
        json!({"type": "macvlan", "master": "lo"}),
        json!({"type": "ipvlan", "master": "lo"}),
        json!({"type": "vlan", "master": "lo", "vlanId": 7}),
        json!({"type": "dummy"}),
        json!({"type": "tap"}),
    ];
    for p in plugins {
        let ty = p["type"].as_str().expect("type").to_string();
        let mut conf = p.clone();
        if let Some(c) = conf.as_object_mut() {
            c.insert("cniVersion".into(), json!("1.0.0"));
            c.insert("name".into(), json!(env.net));
            c.insert("ipam".into(), json!({"type": "busy-ipam"}));
        }
        let mut call = Call::new("DEL", "ctr-e11d", &pod.path(), &conf.to_string());
        call.path = env.cni_path();
        let out = run_plugin(env.bin.path(), &ty, &call, Some(env.node.ns()));
        assert_eq!(out.err_code(), 11, "{ty}: {}", out.stdout);
        let v = out.json();
        assert_eq!(v["msg"], BUSY_MSG, "{ty}");
        assert_eq!(v["details"], format!("{BUSY_DETAILS} DEL"), "{ty}");
    }
}
