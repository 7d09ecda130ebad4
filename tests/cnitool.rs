//! `cnitool` end to end: the rcni binary linked under the name `cnitool`,
//! run inside a per-test node namespace against Debian's reference plugins
//! (`/usr/lib/cni`), rcni's own plugins, and recording script plugins.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use testutil::{command_in, TempDir, TestNs};

struct Tool {
    tmp: TempDir,
}

impl Tool {
    fn new(tag: &str) -> Tool {
        let tmp = TempDir::new(tag);
        for d in ["tool", "net.d", "bin", "cache"] {
            std::fs::create_dir_all(tmp.path().join(d)).expect("mkdir");
        }
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rcni"), tmp.path().join("tool/cnitool"))
            .expect("link cnitool");
        Tool { tmp }
    }

    fn dir(&self, d: &str) -> PathBuf {
        self.tmp.path().join(d)
    }

    fn link_plugin(&self, name: &str, target: &Path) {
        std::os::unix::fs::symlink(target, self.dir("bin").join(name)).expect("link plugin");
    }

    fn script_plugin(&self, name: &str, body: &str) {
        let p = self.dir("bin").join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn conf(&self, file: &str, body: &str) {
        std::fs::write(self.dir("net.d").join(file), body).expect("write conf");
    }

    /// Runs cnitool inside `node` (or here) with a clean environment.
    fn run(&self, node: Option<&TestNs>, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = command_in(node.map(TestNs::ns), self.dir("tool/cnitool"));
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("NETCONFPATH", self.dir("net.d"))
            .env("CNI_PATH", self.dir("bin"))
            .env("CNI_CACHE_DIR", self.dir("cache"))
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run cnitool")
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "cnitool failed ({:?}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {} stderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The reference cnitool's container ID for a namespace path, computed
/// independently with coreutils' sha512sum.
fn reference_container_id(netns: &Path) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha512sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha512sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(netns.display().to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    format!("cnitool-{}", &String::from_utf8_lossy(&out.stdout)[..20])
}

fn bridge_conflist(name: &str, subnet: &str, data: &Path) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"{name}","plugins":[
            {{"type":"bridge","bridge":"ctbr0","isGateway":true,
              "ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"{subnet}"}}]]}}}}]}}"#,
        data.display()
    )
}

fn has_link(ns: &TestNs, name: &str) -> bool {
    ns.link_names().iter().any(|n| n == name)
}

fn reserved(data: &Path, net: &str) -> usize {
    std::fs::read_dir(data.join(net))
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.parse::<std::net::IpAddr>().is_ok())
                })
                .count()
        })
        .unwrap_or(0)
}

/// `cnitool add`, `check`, `del` of bridge + host-local from `bridge`/`ipam`.
fn add_check_del(bridge: &Path, ipam: &Path, tag: &str) {
    let t = Tool::new(tag);
    t.link_plugin("bridge", bridge);
    t.link_plugin("host-local", ipam);
    let data = t.dir("ipam");
    t.conf(
        "10-ctnet.conflist",
        &bridge_conflist("ctnet", "10.81.0.0/24", &data),
    );
    let node = TestNs::new(tag);
    let pod = TestNs::new(tag);
    let netns = pod.path();
    let ns = netns.display().to_string();

    let out = ok(&t.run(Some(&node), &["add", "ctnet", &ns], &[]));
    let result: Value = serde_json::from_str(&out).expect("ADD prints the result JSON");
    assert_eq!(result["cniVersion"], "1.0.0");
    assert_eq!(result["ips"][0]["address"], "10.81.0.2/24");
    assert!(has_link(&pod, "eth0"));
    assert!(has_link(&node, "ctbr0"));
    assert_eq!(reserved(&data, "ctnet"), 1);
    // The reference cnitool's container ID, so either tool can undo the other.
    let cid = reference_container_id(&netns);
    let cache = t.dir("cache").join(format!("results/ctnet-{cid}-eth0"));
    let entry: Value =
        serde_json::from_slice(&std::fs::read(&cache).expect("cache file")).expect("cache JSON");
    assert_eq!(entry["kind"], "cniCacheV1");
    assert_eq!(entry["containerId"], cid.as_str());
    assert_eq!(entry["netns"], ns.as_str());

    ok(&t.run(Some(&node), &["check", "ctnet", &ns], &[]));
    ok(&t.run(Some(&node), &["del", "ctnet", &ns], &[]));
    assert!(!has_link(&pod, "eth0"));
    assert_eq!(reserved(&data, "ctnet"), 0);
    assert!(!cache.exists());
    ok(&t.run(Some(&node), &["del", "ctnet", &ns], &[]));
}

#[test]
fn cnitool_add_check_del_reference_plugins() {
    add_check_del(
        Path::new("/usr/lib/cni/bridge"),
        Path::new("/usr/lib/cni/host-local"),
        "ctr",
    );
}

/// rcni's own bridge and host-local under cnitool (the plugins then run
/// in-process: cnitool is the same executable). Runs as soon as both are in
/// rcni's plugin table.
#[test]
fn cnitool_add_check_del_rcni_plugins_when_available() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rcni"))
        .arg("version")
        .output()
        .expect("rcni version");
    let text = String::from_utf8_lossy(&out.stdout);
    let plugins: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("plugins:"))
        .map(|l| l.split(',').map(str::trim).collect())
        .unwrap_or_default();
    assert!(plugins.contains(&"loopback"), "{text}");
    if !(plugins.contains(&"bridge") && plugins.contains(&"host-local")) {
        eprintln!("NOTICE: rcni has no bridge/host-local yet ({plugins:?}); not run");
        return;
    }
    let rcni = Path::new(env!("CARGO_BIN_EXE_rcni"));
    add_check_del(rcni, rcni, "ctc");
}

#[test]
fn cnitool_gc_removes_every_cached_attachment_of_the_network() {
    let t = Tool::new("ctg");
    t.link_plugin("bridge", Path::new("/usr/lib/cni/bridge"));
    t.link_plugin("host-local", Path::new("/usr/lib/cni/host-local"));
    let data = t.dir("ipam");
    t.conf(
        "10-gcnet.conflist",
        &bridge_conflist("gcnet", "10.82.0.0/24", &data),
    );
    let node = TestNs::new("ctg");
    let pods = [TestNs::new("ctg"), TestNs::new("ctg")];
    for p in &pods {
        ok(&t.run(
            Some(&node),
            &["add", "gcnet", &p.path().display().to_string()],
            &[],
        ));
    }
    assert_eq!(reserved(&data, "gcnet"), 2);
    // Like the reference cnitool, gc keeps no attachment valid.
    ok(&t.run(Some(&node), &["gc", "gcnet"], &[]));
    for p in &pods {
        assert!(!has_link(p, "eth0"));
    }
    assert_eq!(reserved(&data, "gcnet"), 0);
    let left = std::fs::read_dir(t.dir("cache/results"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0);
}

#[test]
fn cnitool_passes_env_args_capabilities_and_absolute_netns() {
    let t = Tool::new("cte");
    let log = t.dir("calls.log");
    t.script_plugin(
        "rec",
        &format!(
            r#"stdin=$(cat)
printf '{{"cmd":"%s","cid":"%s","netns":"%s","ifname":"%s","args":"%s","stdin":%s}}\n' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$stdin" >> {}
[ "$CNI_COMMAND" = ADD ] && echo '{{"cniVersion":"1.1.0","ips":[{{"address":"10.83.0.9/24"}}]}}'
exit 0"#,
            log.display()
        ),
    );
    t.conf(
        "10-rec.conflist",
        r#"{"cniVersion":"1.1.0","name":"rec","plugins":[{"type":"rec","capabilities":{"portMappings":true}}]}"#,
    );
    let env = [
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web"),
        (
            "CAP_ARGS",
            r#"{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}],"bandwidth":{"ingressRate":1}}"#,
        ),
        ("CNI_IFNAME", "net7"),
    ];
    // A relative namespace path is made absolute (and cleaned) first.
    let mut cmd = command_in(None, t.dir("tool/cnitool"));
    let out = cmd
        .current_dir(t.tmp.path())
        .env_clear()
        .env("NETCONFPATH", t.dir("net.d"))
        .env("CNI_PATH", t.dir("bin"))
        .env("CNI_CACHE_DIR", t.dir("cache"))
        .envs(env)
        .args(["add", "rec", "./some/../fake-ns"])
        .output()
        .expect("run");
    let printed: Value = serde_json::from_str(&ok(&out)).expect("result");
    assert_eq!(printed["ips"][0]["address"], "10.83.0.9/24");
    let abs = t.tmp.path().join("fake-ns");
    let line = std::fs::read_to_string(&log).expect("log");
    let call: Value = serde_json::from_str(line.lines().next().expect("one call")).expect("json");
    assert_eq!(call["netns"], abs.display().to_string());
    assert_eq!(call["cid"], reference_container_id(&abs));
    assert_eq!(call["ifname"], "net7");
    assert_eq!(call["args"], "IgnoreUnknown=1;K8S_POD_NAME=web");
    assert_eq!(
        call["stdin"]["runtimeConfig"],
        serde_json::json!({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]})
    );
    // -i overrides CNI_IFNAME; status runs at 1.1.0.
    ok(&t.run(None, &["status", "rec"], &[]));
    ok(&t.run(
        None,
        &["del", "-i", "net7", "rec", &abs.display().to_string()],
        &[],
    ));
    let calls: Vec<Value> = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let cmds: Vec<&str> = calls.iter().filter_map(|c| c["cmd"].as_str()).collect();
    assert_eq!(cmds, ["ADD", "STATUS", "DEL"]);
    assert_eq!(
        calls[2]["stdin"]["prevResult"]["ips"][0]["address"],
        "10.83.0.9/24"
    );
}

#[test]
fn cnitool_help_usage_and_readable_errors() {
    let t = Tool::new("cth");
    let help = ok(&t.run(None, &["--help"], &[]));
    for verb in [
        "add",
        "check",
        "del",
        "gc",
        "status",
        "NETCONFPATH",
        "CNI_PATH",
        "CAP_ARGS",
        "CNI_IFNAME",
        "CNI_ARGS",
    ] {
        assert!(help.contains(verb), "help mentions {verb}");
    }
    let err = failed(&t.run(None, &["add", "net"], &[]), 1);
    assert!(err.contains("needs <netns-path>"), "{err}");
    failed(&t.run(None, &["frobnicate", "net", "/x"], &[]), 1);
    failed(&t.run(None, &[], &[]), 1);

    let err = failed(&t.run(None, &["add", "nonet", "/run/netns/x"], &[]), 1);
    assert!(err.contains("no network configurations found"), "{err}");
    t.conf(
        "10-a.conflist",
        r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"x"}]}"#,
    );
    let err = failed(&t.run(None, &["add", "nonet", "/run/netns/x"], &[]), 1);
    assert!(
        err.contains(r#"no network configuration named "nonet""#),
        "{err}"
    );
    t.conf("20-bad.conflist", "{oops");
    let err = failed(&t.run(None, &["add", "nonet", "/run/netns/x"], &[]), 1);
    assert!(
        err.contains("20-bad.conflist"),
        "parse errors name the file: {err}"
    );
    std::fs::remove_file(t.dir("net.d/20-bad.conflist")).expect("rm");

    // CVE-2021-20206: a path as plugin type is refused before anything runs.
    t.conf(
        "30-evil.conflist",
        r#"{"cniVersion":"1.0.0","name":"evil","plugins":[{"type":"../../bin/sh"}]}"#,
    );
    let err = failed(&t.run(None, &["add", "evil", "/run/netns/x"], &[]), 1);
    assert!(
        err.contains("../../bin/sh") && err.contains("path separators"),
        "{err}"
    );

    let err = failed(
        &t.run(None, &["add", "a", "/run/netns/x"], &[("CAP_ARGS", "[1]")]),
        1,
    );
    assert!(err.contains("CAP_ARGS"), "{err}");
    let err = failed(
        &t.run(
            None,
            &["add", "a", "/run/netns/x"],
            &[("CNI_ARGS", "novalue")],
        ),
        1,
    );
    assert!(err.contains("CNI_ARGS"), "{err}");
    let err = failed(&t.run(None, &["add", "a", "/run/netns/x"], &[]), 1);
    assert!(err.contains("failed to find plugin \"x\""), "{err}");
}

#[test]
fn cnitool_timeout_kills_a_hanging_plugin() {
    let t = Tool::new("ctt");
    t.script_plugin("hang", "cat >/dev/null; sleep 30");
    t.conf(
        "10-h.conflist",
        r#"{"cniVersion":"1.0.0","name":"h","plugins":[{"type":"hang"}]}"#,
    );
    let started = std::time::Instant::now();
    let err = failed(
        &t.run(
            None,
            &["add", "h", "/run/netns/x"],
            &[("CNITOOL_TIMEOUT", "0.5")],
        ),
        1,
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        err.contains("timed out") && err.contains("type=\"hang\""),
        "{err}"
    );
}

/// What a plugin that succeeds writes on stderr reaches cnitool's stderr,
/// as libcni copies it to the runtime's.
#[test]
fn cnitool_passes_a_successful_plugins_stderr_on() {
    let t = Tool::new("cts");
    t.script_plugin(
        "warn",
        r#"cat >/dev/null
echo "warn: something to know" >&2
[ "$CNI_COMMAND" = ADD ] && echo '{"cniVersion":"1.0.0","ips":[{"address":"10.84.0.9/24"}]}'
exit 0"#,
    );
    t.conf(
        "10-w.conflist",
        r#"{"cniVersion":"1.0.0","name":"w","plugins":[{"type":"warn"}]}"#,
    );
    let out = t.run(None, &["add", "w", "/run/netns/x"], &[]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warn: something to know"), "{err}");
    ok(&t.run(None, &["del", "w", "/run/netns/x"], &[]));
}
