//! tuning in real namespaces, every spec version: sysctls and link
//! attributes change on ADD, CHECK sees them, DEL puts them back.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod meta_setup;

use meta_setup::{has_check, Pair};
use serde_json::{json, Value};
use testutil::{per_version, run_plugin, Call, PluginDir, TempDir, TestNs};

#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    somaxconn: String,
    rp_filter: String,
    mtu: u64,
    mac: String,
    promisc: bool,
    allmulti: bool,
    txqlen: u64,
}

fn state(pod: &TestNs, ifname: &str) -> State {
    let l = &pod.ip_json(&["link", "show", ifname])[0];
    let flags: Vec<&str> = l["flags"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let read = |p: &str| pod.exec(&["cat", p]).trim().to_string();
    State {
        somaxconn: read("/proc/sys/net/core/somaxconn"),
        rp_filter: read(&format!("/proc/sys/net/ipv4/conf/{ifname}/rp_filter")),
        mtu: l["mtu"].as_u64().unwrap_or(0),
        mac: l["address"].as_str().unwrap_or("").to_string(),
        promisc: flags.contains(&"PROMISC"),
        allmulti: flags.contains(&"ALLMULTI"),
        txqlen: l["txqlen"].as_u64().unwrap_or(0),
    }
}

const MAC: &str = "02:11:22:33:44:55";

/// `before` as DEL leaves it after ADD set `net.core.somaxconn` to 1234:
/// the link and the interface's sysctls back, the namespace-wide sysctl
/// kept (as the reference keeps every sysctl; another attachment of the
/// pod may have set it too).
fn after_del(before: &State) -> State {
    State {
        somaxconn: "1234".into(),
        ..before.clone()
    }
}

fn tuning_conf(data: &TempDir) -> Value {
    json!({
        "dataDir": data.path(),
        "sysctl": {"net.core.somaxconn": "1234", "net.ipv4.conf.IFNAME.rp_filter": "2"},
        "mac": MAC,
        "mtu": 1400,
        "promisc": true,
        "allmulti": true,
        "txQLen": 2345
    })
}

fn backups(data: &TempDir) -> Vec<String> {
    std::fs::read_dir(data.path())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

per_version!(add_check_del_del_every_version, |v| {
    let bin = PluginDir::install(std::path::Path::new(env!("CARGO_BIN_EXE_rcni")));
    let p = Pair::new("tu");
    let data = TempDir::new("tund");
    let before = state(&p.pod, &p.pod_if);
    assert_ne!(before.somaxconn, "1234");
    assert_ne!(before.mtu, 1400);

    let conf = p.conf(v, "tunet", "tuning", tuning_conf(&data));
    let add = Call::new("ADD", "ctr1", &p.pod.path(), &conf);
    let res = run_plugin(bin.path(), "tuning", &add, Some(p.node.ns())).ok();
    assert_eq!(res["cniVersion"], v);

    let after = state(&p.pod, &p.pod_if);
    assert_eq!(
        after,
        State {
            somaxconn: "1234".into(),
            rp_filter: "2".into(),
            mtu: 1400,
            mac: MAC.into(),
            promisc: true,
            allmulti: true,
            txqlen: 2345,
        }
    );
    // The node side is untouched.
    assert_ne!(Pair::mac_of(&p.node, &p.host_if), MAC);
    // prevResult passes through, with the new MAC on the pod interface.
    if !testutil::is_legacy(v) {
        assert_eq!(res["interfaces"][1]["name"], "eth0");
        assert_eq!(res["interfaces"][1]["mac"], MAC);
        assert_eq!(res["interfaces"][0]["name"], p.host_if.as_str());
        assert_eq!(res["ips"][0]["address"], "10.77.0.2/24");
    } else {
        assert_eq!(res["ip4"]["ip"], "10.77.0.2/24");
    }
    assert_eq!(backups(&data), vec!["ctr1_eth0.json".to_string()]);

    if has_check(v) {
        let check = Call::new("CHECK", "ctr1", &p.pod.path(), &conf);
        run_plugin(bin.path(), "tuning", &check, Some(p.node.ns())).ok();
        // Drift is reported.
        p.pod.exec(&["ip", "link", "set", "eth0", "mtu", "1300"]);
        let out = run_plugin(bin.path(), "tuning", &check, Some(p.node.ns()));
        assert_ne!(out.code, 0);
        assert!(out.stdout.contains("MTU"), "{}", out.stdout);
        p.pod.exec(&["ip", "link", "set", "eth0", "mtu", "1400"]);
        p.pod
            .exec(&["sh", "-c", "echo 77 > /proc/sys/net/core/somaxconn"]);
        let out = run_plugin(bin.path(), "tuning", &check, Some(p.node.ns()));
        assert!(out.stdout.contains("somaxconn"), "{}", out.stdout);
        p.pod
            .exec(&["sh", "-c", "echo 1234 > /proc/sys/net/core/somaxconn"]);
    }

    let del = Call::new("DEL", "ctr1", &p.pod.path(), &conf);
    run_plugin(bin.path(), "tuning", &del, Some(p.node.ns())).ok();
    assert_eq!(
        state(&p.pod, &p.pod_if),
        after_del(&before),
        "DEL restores the link and the interface's sysctls"
    );
    assert!(backups(&data).is_empty(), "backup removed");
    run_plugin(bin.path(), "tuning", &del, Some(p.node.ns())).ok();
    run_plugin(
        bin.path(),
        "tuning",
        &del.clone().netns(""),
        Some(p.node.ns()),
    )
    .ok();
    assert_eq!(state(&p.pod, &p.pod_if), after_del(&before));
});

#[test]
fn mac_from_runtime_config_and_cni_args() {
    let bin = PluginDir::install(std::path::Path::new(env!("CARGO_BIN_EXE_rcni")));
    let p = Pair::new("tm");
    let data = TempDir::new("tumd");
    let base = json!({"dataDir": data.path(), "capabilities": {"mac": true}});
    let original = Pair::mac_of(&p.pod, "eth0");

    let conf = p.conf("1.0.0", "tunet", "tuning", base.clone());
    let add =
        Call::new("ADD", "c2", &p.pod.path(), &conf).args("IgnoreUnknown=1;MAC=02:00:00:00:aa:01");
    run_plugin(bin.path(), "tuning", &add, Some(p.node.ns())).ok();
    assert_eq!(Pair::mac_of(&p.pod, "eth0"), "02:00:00:00:aa:01");

    let mut rc = base.clone();
    rc["runtimeConfig"] = json!({"mac": "02:00:00:00:aa:02"});
    let conf = p.conf("1.0.0", "tunet", "tuning", rc);
    let add =
        Call::new("ADD", "c2", &p.pod.path(), &conf).args("IgnoreUnknown=1;MAC=02:00:00:00:aa:01");
    let res = run_plugin(bin.path(), "tuning", &add, Some(p.node.ns())).ok();
    assert_eq!(Pair::mac_of(&p.pod, "eth0"), "02:00:00:00:aa:02");
    assert_eq!(res["interfaces"][1]["mac"], "02:00:00:00:aa:02");

    // Unknown CNI_ARGS keys without IgnoreUnknown: code 4, nothing changed.
    let add = Call::new("ADD", "c3", &p.pod.path(), &conf).args("FOO=1");
    assert_eq!(
        run_plugin(bin.path(), "tuning", &add, Some(p.node.ns())).err_code(),
        4
    );

    // DEL restores the MAC saved by the first ADD, not the intermediate one,
    // even with a config whose `mac` is now invalid (DEL does not use it).
    let mut bad = base.clone();
    bad["mac"] = json!("zz:11");
    let bad = p.conf("1.0.0", "tunet", "tuning", bad);
    let del = Call::new("DEL", "c2", &p.pod.path(), &bad);
    run_plugin(bin.path(), "tuning", &del, Some(p.node.ns())).ok();
    assert_eq!(Pair::mac_of(&p.pod, "eth0"), original);
    run_plugin(bin.path(), "tuning", &del, Some(p.node.ns())).ok();
}

#[test]
fn malformed_config_is_refused_and_changes_nothing() {
    let bin = PluginDir::install(std::path::Path::new(env!("CARGO_BIN_EXE_rcni")));
    let p = Pair::new("tb");
    let data = TempDir::new("tubd");
    let before = state(&p.pod, &p.pod_if);
    let cases: Vec<(Value, u64)> = vec![
        // Outside net: refused.
        (json!({"sysctl": {"kernel.hostname": "x"}, "mtu": 1300}), 7),
        // Escaping /proc/sys/net with '..'.
        (
            json!({"sysctl": {"net/../kernel/hostname": "x"}, "mtu": 1300}),
            7,
        ),
        (
            json!({"sysctl": {"net.core.somaxconn": "9", "net.core..x": "1"}}),
            7,
        ),
        // Bad MAC, bad types.
        (
            json!({"mac": "not-a-mac", "sysctl": {"net.core.somaxconn": "9"}}),
            7,
        ),
        (json!({"mtu": "big"}), 7),
        (json!({"sysctl": {"net.core.somaxconn": 5}}), 7),
    ];
    for (extra, code) in cases {
        let mut extra = extra;
        extra["dataDir"] = json!(data.path());
        let conf = p.conf("1.0.0", "tunet", "tuning", extra.clone());
        let add = Call::new("ADD", "ctr1", &p.pod.path(), &conf);
        let out = run_plugin(bin.path(), "tuning", &add, Some(p.node.ns()));
        assert_eq!(out.err_code(), code, "{extra}: {}", out.stdout);
        assert_eq!(state(&p.pod, &p.pod_if), before, "{extra}");
        assert!(backups(&data).is_empty(), "{extra}");
    }

    // Not JSON at all: code 6.
    let add = Call::new("ADD", "ctr1", &p.pod.path(), "{\"cniVersion\":");
    assert_eq!(
        run_plugin(bin.path(), "tuning", &add, Some(p.node.ns())).err_code(),
        6
    );

    // No prevResult: code 7.
    let conf = json!({"cniVersion":"1.0.0","name":"tunet","type":"tuning","mtu":1300}).to_string();
    let add = Call::new("ADD", "ctr1", &p.pod.path(), &conf);
    assert_eq!(
        run_plugin(bin.path(), "tuning", &add, Some(p.node.ns())).err_code(),
        7
    );

    // A failure half-way (the kernel refuses the MTU after the sysctl was
    // written) is undone before the error is reported.
    let conf = p.conf(
        "1.0.0",
        "tunet",
        "tuning",
        json!({"dataDir": data.path(), "sysctl": {"net.core.somaxconn": "999"}, "mtu": 70000}),
    );
    let add = Call::new("ADD", "ctr1", &p.pod.path(), &conf);
    let out = run_plugin(bin.path(), "tuning", &add, Some(p.node.ns()));
    assert_ne!(out.code, 0);
    assert_eq!(state(&p.pod, &p.pod_if), before);
    assert!(backups(&data).is_empty());
}

/// A plugin directory whose `tuning` runs the real one in a private mount
/// namespace where `/etc` is an overlay: the host's `/etc` below, and above
/// it only `cni/tuning/allowlist.conf` copied from `allow` (when given).
/// The plugin reads its real, fixed path; the machine's `/etc` is never
/// written, and the tmpfs and overlay vanish with the process.
struct PrivateEtc {
    dir: TempDir,
}

impl PrivateEtc {
    fn new(real: &PluginDir, allow: Option<&str>) -> PrivateEtc {
        let dir = TempDir::new("tuetc");
        let d = dir.path();
        std::fs::create_dir(d.join("mnt")).expect("mnt");
        if let Some(a) = allow {
            std::fs::write(d.join("allowlist.conf"), a).expect("allowlist");
        }
        let script = format!(
            r#"#!/bin/sh
set -e
d='{d}'
exec unshare --mount --propagation private /bin/sh -c '
set -e
d=$1
mount -t tmpfs rcni-test-etc "$d/mnt"
mkdir -p "$d/mnt/upper/cni/tuning" "$d/mnt/work"
if [ -f "$d/allowlist.conf" ]; then cp "$d/allowlist.conf" "$d/mnt/upper/cni/tuning/"; fi
mount -t overlay rcni-test-etc -o "lowerdir=/etc,upperdir=$d/mnt/upper,workdir=$d/mnt/work" /etc
exec "$2"
' sh "$d" '{real}'
"#,
            d = d.display(),
            real = real.path().join("tuning").display(),
        );
        let wrapper = d.join("tuning");
        std::fs::write(&wrapper, script).expect("wrapper");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        PrivateEtc { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

#[test]
fn sysctl_allowlist_file_limits_what_add_may_set() {
    let bin = PluginDir::install(std::path::Path::new(env!("CARGO_BIN_EXE_rcni")));
    assert!(
        !std::path::Path::new("/etc/cni/tuning/allowlist.conf").exists(),
        "this machine has a real allowlist; the test builds its own"
    );
    let p = Pair::new("ta");
    let data = TempDir::new("tuad");
    let before = state(&p.pod, &p.pod_if);
    let etc = PrivateEtc::new(
        &bin,
        Some("^net\\.core\\.somaxconn$\n\n  ^net\\.ipv4\\.conf\\.IFNAME\\.rp_filter$  \n"),
    );
    let call = |cmd: &str, extra: Value| {
        let mut extra = extra;
        extra["dataDir"] = json!(data.path());
        let conf = p.conf("1.1.0", "tunet", "tuning", extra);
        let c = Call::new(cmd, "ctr-a", &p.pod.path(), &conf);
        run_plugin(etc.path(), "tuning", &c, Some(p.node.ns()))
    };

    // A sysctl the list does not match: code 7 naming it, nothing changed.
    let out = call(
        "ADD",
        json!({"sysctl": {"net.core.somaxconn": "1234", "net.ipv4.conf.IFNAME.forwarding": "1"}, "mtu": 1400}),
    );
    assert_eq!(out.err_code(), 7, "{}", out.stdout);
    assert!(
        out.stdout.contains("net.ipv4.conf.IFNAME.forwarding"),
        "{}",
        out.stdout
    );
    assert_eq!(state(&p.pod, &p.pod_if), before);
    assert!(backups(&data).is_empty());

    // Only listed sysctls: applied.
    let ok =
        json!({"sysctl": {"net.core.somaxconn": "1234", "net.ipv4.conf.IFNAME.rp_filter": "2"}});
    call("ADD", ok.clone()).ok();
    let after = state(&p.pod, &p.pod_if);
    assert_eq!(
        (after.somaxconn.as_str(), after.rp_filter.as_str()),
        ("1234", "2")
    );
    call("CHECK", ok.clone()).ok();
    call("DEL", ok.clone()).ok();
    call("DEL", ok).ok();
    let before = after_del(&before);
    assert_eq!(state(&p.pod, &p.pod_if), before);
    assert!(backups(&data).is_empty());

    // The same refused config goes through the plain plugin (no file).
    let mut extra = json!({"sysctl": {"net.ipv4.conf.IFNAME.forwarding": "1"}});
    extra["dataDir"] = json!(data.path());
    let conf = p.conf("1.1.0", "tunet", "tuning", extra);
    run_plugin(
        bin.path(),
        "tuning",
        &Call::new("ADD", "ctr-b", &p.pod.path(), &conf),
        Some(p.node.ns()),
    )
    .ok();
    run_plugin(
        bin.path(),
        "tuning",
        &Call::new("DEL", "ctr-b", &p.pod.path(), &conf),
        Some(p.node.ns()),
    )
    .ok();

    // An allowlist with a broken expression refuses every ADD with sysctls.
    let broken = PrivateEtc::new(&bin, Some("net.(core\n"));
    let mut extra = json!({"sysctl": {"net.core.somaxconn": "1234"}});
    extra["dataDir"] = json!(data.path());
    let conf = p.conf("1.1.0", "tunet", "tuning", extra);
    let out = run_plugin(
        broken.path(),
        "tuning",
        &Call::new("ADD", "ctr-c", &p.pod.path(), &conf),
        Some(p.node.ns()),
    );
    assert_eq!(out.err_code(), 7, "{}", out.stdout);
    assert!(out.stdout.contains("allowlist"), "{}", out.stdout);
    assert_eq!(state(&p.pod, &p.pod_if), before);
    assert!(backups(&data).is_empty());
    // The host's /etc never saw any of it.
    assert!(!std::path::Path::new("/etc/cni/tuning/allowlist.conf").exists());
}
