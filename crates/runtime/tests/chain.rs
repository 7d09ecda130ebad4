//! The runtime driving small shell-script plugins that record every call
//! (environment and stdin) to a log: injection, ordering, version gating,
//! validation, timeouts, the cache and GC. Plugins here touch no network
//! state, only files in their temp dir.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cni_spec::GcAttachment;
use runtime::{CniConfig, Error, NetworkConfigList, RuntimeConf};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use testutil::TempDir;

struct Env {
    dir: TempDir,
}

#[derive(Default)]
struct Fake<'a> {
    ip: &'a str,
    fail_on: &'a [&'a str],
    fail_code: u32,
    hang_on: &'a [&'a str],
}

impl<'a> Fake<'a> {
    /// Answers ADD with `ip`.
    fn answering(ip: &'a str) -> Self {
        Fake {
            ip,
            ..Default::default()
        }
    }

    /// Fails `verbs` with the default code (11).
    fn failing(verbs: &'a [&'a str]) -> Self {
        Self::failing_with(verbs, 0)
    }

    /// Fails `verbs` with `code`.
    fn failing_with(verbs: &'a [&'a str], code: u32) -> Self {
        Fake {
            fail_on: verbs,
            fail_code: code,
            ..Default::default()
        }
    }

    /// Sleeps on `verbs` far beyond any test timeout.
    fn hanging(verbs: &'a [&'a str]) -> Self {
        Fake {
            hang_on: verbs,
            ..Default::default()
        }
    }
}

/// A shell `case` pattern matching `verbs`, or nothing when there are none.
fn verb_pattern(verbs: &[&str]) -> String {
    if verbs.is_empty() {
        "__none__".to_string()
    } else {
        verbs.join("|")
    }
}

/// Writes `script` to `path` as an executable (0755).
fn write_executable(path: &std::path::Path, script: &str) {
    std::fs::write(path, script).expect("write plugin");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

impl Env {
    fn new() -> Env {
        let dir = TempDir::new("rtc");
        std::fs::create_dir_all(dir.path().join("bin")).expect("mkdir bin");
        Env { dir }
    }

    /// An env holding one well-behaved plugin, `a`.
    fn with_plain_a() -> Env {
        let env = Env::new();
        env.plugin("a", Fake::default());
        env
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn cni(&self) -> CniConfig {
        CniConfig::new([self.bin()]).with_cache_dir(self.cache_dir())
    }

    /// A plugin that logs each call as one JSON line, answers ADD with
    /// `ip` in the requested version, fails or hangs on the given verbs.
    fn plugin(&self, name: &str, f: Fake) {
        let fails = verb_pattern(f.fail_on);
        let hangs = verb_pattern(f.hang_on);
        let ip = if f.ip.is_empty() { "10.9.9.9" } else { f.ip };
        let script = format!(
            r#"#!/bin/sh
stdin=$(cat)
printf '{{"plugin":"{name}","cmd":"%s","cid":"%s","netns":"%s","ifname":"%s","args":"%s","path":"%s","stdin":%s}}\n' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$CNI_PATH" "${{stdin:-null}}" >> {log}
case "$CNI_COMMAND" in {fails}) printf '{{"cniVersion":"1.0.0","code":{code},"msg":"{name} refuses %s"}}' "$CNI_COMMAND"; exit 1;; esac
case "$CNI_COMMAND" in {hangs}) sleep 30;; esac
[ "$CNI_COMMAND" = ADD ] || exit 0
v=$(printf '%s' "$stdin" | sed -n 's/.*"cniVersion":"\([^"]*\)".*/\1/p')
case "$v" in
  0.1.0|0.2.0) printf '{{"cniVersion":"%s","ip4":{{"ip":"{ip}/24"}}}}' "$v" ;;
  0.3.0|0.3.1|0.4.0) printf '{{"cniVersion":"%s","interfaces":[{{"name":"%s"}}],"ips":[{{"version":"4","address":"{ip}/24","interface":0}}]}}' "$v" "$CNI_IFNAME" ;;
  *) printf '{{"cniVersion":"%s","interfaces":[{{"name":"%s"}}],"ips":[{{"address":"{ip}/24","interface":0}}]}}' "$v" "$CNI_IFNAME" ;;
esac
"#,
            log = self.log().display(),
            code = if f.fail_code == 0 { 11 } else { f.fail_code },
        );
        write_executable(&self.bin().join(name), &script);
    }

    fn calls(&self) -> Vec<Value> {
        match std::fs::read_to_string(self.log()) {
            Ok(s) => s
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l}: {e}")))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn clear(&self) {
        let _ = std::fs::remove_file(self.log());
    }

    fn cache_file(&self, net: &str, cid: &str, ifname: &str) -> PathBuf {
        self.cache_dir()
            .join(format!("results/{net}-{cid}-{ifname}"))
    }
}

fn list(json: &str) -> NetworkConfigList {
    NetworkConfigList::from_bytes(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"))
}

/// An env with a well-behaved plugin `a` followed by `second` (acting as
/// `fake`) in a 1.0.0 list named `n`, and the runtime of container `c1`.
fn a_then(second: &str, fake: Fake) -> (Env, NetworkConfigList, RuntimeConf) {
    let env = Env::with_plain_a();
    env.plugin(second, fake);
    let net = list(&format!(
        r#"{{"cniVersion":"1.0.0","name":"n","plugins":[{{"type":"a"}},{{"type":"{second}"}}]}}"#
    ));
    let rt = RuntimeConf::new("c1", "/run/netns/x", "eth0");
    (env, net, rt)
}

fn who(calls: &[Value]) -> Vec<String> {
    calls
        .iter()
        .map(|c| {
            format!(
                "{}:{}",
                c["plugin"].as_str().unwrap_or("?"),
                c["cmd"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

#[test]
fn add_injects_name_version_prev_result_and_declared_capabilities_only() {
    let env = Env::new();
    env.plugin("a", Fake::answering("10.1.0.2"));
    env.plugin("b", Fake::answering("10.1.0.3"));
    let bytes = r#"{"cniVersion":"1.0.0","name":"net1","plugins":[
        {"type":"a","name":"ignored","cniVersion":"0.3.1","capabilities":{"portMappings":true,"bandwidth":false},"keep":{"x":1}},
        {"type":"b","runtimeConfig":{"static":true}}]}"#;
    let net = list(bytes);
    let rt = RuntimeConf::new("ctr-1", "/run/netns/p1", "eth0")
        .arg("IgnoreUnknown", "1")
        .arg("K8S_POD_NAME", "a&b")
        .capability(
            "portMappings",
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
        )
        .capability("bandwidth", json!({"ingressRate": 1}));
    let result = env.cni().add(&net, &rt).expect("add");
    assert_eq!(result.ips[0].address.to_string(), "10.1.0.3/24");

    let calls = env.calls();
    assert_eq!(who(&calls), ["a:ADD", "b:ADD"]);
    let a = &calls[0];
    assert_eq!(
        (a["cid"].as_str(), a["netns"].as_str(), a["ifname"].as_str()),
        (Some("ctr-1"), Some("/run/netns/p1"), Some("eth0"))
    );
    assert_eq!(a["args"], "IgnoreUnknown=1;K8S_POD_NAME=a&b");
    assert_eq!(a["path"], env.bin().display().to_string());
    let sa = &a["stdin"];
    assert_eq!(sa["name"], "net1");
    assert_eq!(sa["cniVersion"], "1.0.0");
    assert_eq!(sa["keep"], json!({"x": 1}));
    assert!(
        sa.get("prevResult").is_none(),
        "first plugin has no prevResult"
    );
    assert!(
        sa.get("capabilities").is_none(),
        "capabilities are not passed on"
    );
    assert_eq!(
        sa["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}),
        "only declared and enabled capabilities"
    );
    let sb = &calls[1]["stdin"];
    assert_eq!(sb["prevResult"]["ips"][0]["address"], "10.1.0.2/24");
    assert_eq!(sb["prevResult"]["cniVersion"], "1.0.0");
    assert_eq!(
        sb["runtimeConfig"],
        json!({"static": true}),
        "no capability of b: its own runtimeConfig stays"
    );

    // The cache entry, field by field, as libcni writes it.
    let file = env.cache_file("net1", "ctr-1", "eth0");
    let text = std::fs::read_to_string(&file).expect("cache file");
    let expected_result = r#"{"cniVersion":"1.0.0","dns":{},"interfaces":[{"name":"eth0"}],"ips":[{"address":"10.1.0.3/24","interface":0}]}"#;
    let expected = format!(
        concat!(
            r#"{{"kind":"cniCacheV1","containerId":"ctr-1","config":"{cfg}","ifName":"eth0","networkName":"net1","netns":"/run/netns/p1","#,
            r#""cniArgs":[["IgnoreUnknown","1"],["K8S_POD_NAME","a\u0026b"]],"#,
            r#""capabilityArgs":{{"bandwidth":{{"ingressRate":1}},"portMappings":[{{"containerPort":80,"hostPort":8080,"protocol":"tcp"}}]}},"#,
            r#""result":{res}}}"#
        ),
        cfg = b64(bytes.as_bytes()),
        res = expected_result
    );
    assert_eq!(text, expected);
    let mode = std::fs::metadata(&file).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dmode = std::fs::metadata(file.parent().expect("dir"))
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dmode, 0o700);
    assert_eq!(
        env.cni()
            .cached_result(&net, &rt)
            .expect("cached")
            .expect("some"),
        result
    );
}

fn b64(b: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("base64");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn del_runs_in_reverse_with_the_cached_result_every_version() {
    let env = Env::new();
    env.plugin("a", Fake::answering("10.1.0.2"));
    env.plugin("b", Fake::answering("10.1.0.3"));
    let cni = env.cni();
    for v in cni_spec::ALL_VERSIONS {
        env.clear();
        let net = list(&format!(
            r#"{{"cniVersion":"{v}","name":"n","plugins":[{{"type":"a"}},{{"type":"b"}}]}}"#
        ));
        let rt = RuntimeConf::new("c1", "/run/netns/x", "eth0");
        let r = cni.add(&net, &rt).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(r.cni_version, *v);
        assert!(env.cache_file("n", "c1", "eth0").exists());
        cni.del(&net, &rt).unwrap_or_else(|e| panic!("{v}: {e}"));
        let calls = env.calls();
        assert_eq!(who(&calls), ["a:ADD", "b:ADD", "b:DEL", "a:DEL"], "{v}");
        let prev = &calls[2]["stdin"]["prevResult"];
        if cni_spec::version::at_least(v, "0.4.0") {
            assert_eq!(prev["ips"][0]["address"], "10.1.0.3/24", "{v}");
            assert_eq!(calls[3]["stdin"]["prevResult"], *prev);
        } else {
            assert!(prev.is_null(), "{v}: no prevResult on DEL below 0.4.0");
        }
        assert!(
            !env.cache_file("n", "c1", "eth0").exists(),
            "{v}: cache removed"
        );
        // DEL of something never added (or twice) still calls the plugins.
        cni.del(&net, &rt).unwrap_or_else(|e| panic!("{v}: {e}"));
    }
}

#[test]
fn failed_del_keeps_the_cache_and_stops() {
    let (env, net, rt) = a_then("b", Fake::failing(&["DEL"]));
    env.cni().add(&net, &rt).expect("add");
    let err = env.cni().del(&net, &rt).expect_err("b fails");
    assert_eq!(err.code(), Some(11));
    let msg = err.to_string();
    assert!(
        msg.contains("type=\"b\"") && msg.contains("b refuses DEL") && msg.contains("delete"),
        "{msg}"
    );
    assert_eq!(who(&env.calls())[2..], ["b:DEL"]);
    assert!(env.cache_file("n", "c1", "eth0").exists());
}

#[test]
fn failed_add_reports_the_plugin_and_caches_nothing() {
    let env = Env::with_plain_a();
    env.plugin("b", Fake::failing_with(&["ADD"], 7));
    let net = list(
        r#"{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"a"},{"type":"b","name":"x"}]}"#,
    );
    let rt = RuntimeConf::new("c1", "/run/netns/x", "eth0");
    let err = env.cni().add(&net, &rt).expect_err("fails");
    assert_eq!(err.code(), Some(7));
    assert!(
        err.to_string()
            .contains(r#"plugin type="b" name="x" failed (add): b refuses ADD"#),
        "{err}"
    );
    assert!(!env.cache_file("n", "c1", "eth0").exists());
}

#[test]
fn check_gating_disable_check_and_prev_result() {
    let env = Env::new();
    env.plugin("a", Fake::answering("10.3.0.2"));
    env.plugin("b", Fake::default());
    let cni = env.cni();
    let rt = RuntimeConf::new("c1", "/run/netns/x", "eth0");

    let old = list(r#"{"cniVersion":"0.3.1","name":"n","plugins":[{"type":"a"}]}"#);
    assert_eq!(cni.check(&old, &rt).expect_err("0.3.1").code(), Some(1));

    let net = list(r#"{"cniVersion":"0.4.0","name":"n","plugins":[{"type":"a"},{"type":"b"}]}"#);
    let err = cni.check(&net, &rt).expect_err("nothing cached");
    assert!(err.to_string().contains("no cached result"), "{err}");
    cni.add(&net, &rt).expect("add");
    env.clear();
    cni.check(&net, &rt).expect("check");
    let calls = env.calls();
    assert_eq!(who(&calls), ["a:CHECK", "b:CHECK"]);
    for c in &calls {
        assert_eq!(c["stdin"]["prevResult"]["ips"][0]["address"], "10.9.9.9/24");
        assert_eq!(c["stdin"]["prevResult"]["ips"][0]["version"], "4");
    }

    env.clear();
    let off = list(
        r#"{"cniVersion":"0.4.0","name":"n","disableCheck":"true","plugins":[{"type":"a"},{"type":"b"}]}"#,
    );
    cni.check(&off, &rt).expect("disabled check succeeds");
    assert!(env.calls().is_empty(), "disableCheck runs nothing");
}

#[test]
fn validation_refuses_before_any_plugin_runs() {
    let env = Env::with_plain_a();
    let cni = env.cni();
    let good = list(r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a"}]}"#);
    let rt = RuntimeConf::new("c1", "/run/netns/x", "eth0");
    // (container ID, ifname) refused with (code, needle) under a good list.
    let bad_runtime: [(&str, &str, u32, &str); 6] = [
        ("", "eth0", 3, "containerID"),
        ("-bad", "eth0", 4, "containerID"),
        ("a b", "eth0", 4, "containerID"),
        ("c1", "eth/0", 4, "CNI_IFNAME"),
        ("c1", "0123456789abcdef", 4, "CNI_IFNAME"),
        ("c1", "", 4, "CNI_IFNAME"),
    ];
    // Lists (cniVersion, name, a second plugin's type) refused with (code,
    // needle) under a good runtime.
    let bad_lists: [(&str, &str, Option<&str>, u32, &str); 6] = [
        ("1.0.0", "bad name", None, 7, "network name"),
        ("1.0.0", "", None, 7, "network name"),
        // CVE-2021-20206: a path in `type` would run any binary.
        ("1.0.0", "n", Some("../../bin/sh"), 7, "../../bin/sh"),
        ("1.0.0", "n", Some("/bin/sh"), 7, "/bin/sh"),
        ("1.0.0", "n", Some("missing"), 7, "missing"),
        ("0.9.9", "n", None, 1, "0.9.9"),
    ];
    let cases = bad_runtime
        .into_iter()
        .map(|(cid, ifname, code, needle)| {
            (
                good.clone(),
                RuntimeConf::new(cid, "/x", ifname),
                code,
                needle,
            )
        })
        .chain(
            bad_lists
                .into_iter()
                .map(|(version, name, second, code, needle)| {
                    let second = second.map(|t| format!(r#",{{"type":"{t}"}}"#));
                    let json = format!(
                        r#"{{"cniVersion":"{version}","name":"{name}","plugins":[{{"type":"a"}}{}]}}"#,
                        second.unwrap_or_default()
                    );
                    (list(&json), rt.clone(), code, needle)
                }),
        );
    for (net, rt, code, needle) in cases {
        for (verb, res) in [
            ("add", cni.add(&net, &rt).map(|_| ())),
            ("del", cni.del(&net, &rt)),
            ("check", cni.check(&net, &rt)),
        ] {
            let err = res.expect_err(needle);
            assert_eq!(err.code(), Some(code), "{verb} {needle}: {err}");
            assert!(matches!(err, Error::Invalid(_)), "{verb} {needle}: {err:?}");
            assert!(err.to_string().contains(needle), "{verb}: {err}");
        }
        if needle.contains('/') || needle == "missing" {
            let st = list(&String::from_utf8_lossy(&net.bytes).replace("1.0.0", "1.1.0"));
            assert!(cni.status(&st).is_err());
            assert!(env.calls().is_empty(), "{needle}: a plugin ran");
            // GC, as libcni's, runs the GC of every plugin it finds and
            // reports the one it cannot (never a path given as `type`).
            assert!(cni.gc(&st, &[]).is_err());
            assert_eq!(who(&env.calls()), ["a:GC"], "{needle}");
            env.clear();
        }
        assert!(env.calls().is_empty(), "{needle}: a plugin ran");
    }
    assert!(!env.cache_dir().exists(), "nothing was cached");
}

#[test]
fn hanging_plugin_is_killed_at_the_timeout() {
    let (env, net, rt) = a_then("slow", Fake::hanging(&["ADD"]));
    let cni = env.cni().with_timeout(Duration::from_millis(400));
    let t = Instant::now();
    let err = cni.add(&net, &rt).expect_err("times out");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(err.is_timeout(), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("type=\"slow\"") && msg.contains("timed out"),
        "{msg}"
    );
    assert!(!env.cache_file("n", "c1", "eth0").exists());
    // The same plugin is fine on DEL.
    cni.del(&net, &rt).expect("del is quick");
}

#[test]
fn del_after_the_cache_was_truncated_still_cleans_up() {
    let env = Env::with_plain_a();
    let net = list(r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a"}]}"#);
    let cni = env.cni();
    for garbage in ["", "{\"kind\":\"cniCacheV1\",\"result\":", "\0\0\0\0"] {
        let rt = RuntimeConf::new("c1", "/run/netns/x", "eth0");
        cni.add(&net, &rt).expect("add");
        let file = env.cache_file("n", "c1", "eth0");
        std::fs::write(&file, garbage).expect("corrupt");
        assert!(cni.cached_result(&net, &rt).is_err());
        env.clear();
        cni.del(&net, &rt).expect("del despite the broken cache");
        let calls = env.calls();
        assert_eq!(who(&calls), ["a:DEL"]);
        assert!(calls[0]["stdin"].get("prevResult").is_none());
        assert!(!file.exists(), "broken cache removed");
    }
}

#[test]
fn del_uses_a_cache_written_by_libcni() {
    let env = Env::with_plain_a();
    let bytes = r#"{"cniVersion":"0.4.0","name":"gonet","plugins":[{"type":"a"}]}"#;
    let net = list(bytes);
    // As libcni v1 writes it (Go: sorted maps, base64 config).
    let go = format!(
        r#"{{"kind":"cniCacheV1","containerId":"gctr","config":"{}","ifName":"eth0","networkName":"gonet","netns":"/run/netns/g","result":{{"cniVersion":"0.4.0","dns":{{}},"ips":[{{"address":"10.7.0.9/16","gateway":"10.7.0.1","interface":0,"version":"4"}}],"interfaces":[{{"mac":"0a:58:0a:07:00:09","name":"eth0","sandbox":"/run/netns/g"}}]}}}}"#,
        b64(bytes.as_bytes())
    );
    let file = env.cache_file("gonet", "gctr", "eth0");
    std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
    std::fs::write(&file, &go).expect("write");
    let cni = env.cni();
    let atts = cni.cached_attachments(Some("gctr"));
    assert_eq!(atts.len(), 1);
    assert_eq!(atts[0].config, bytes.as_bytes());
    assert_eq!(atts[0].netns, "/run/netns/g");
    let rt = RuntimeConf::new("gctr", "/run/netns/g", "eth0");
    cni.del(&net, &rt).expect("del");
    let calls = env.calls();
    assert_eq!(
        calls[0]["stdin"]["prevResult"]["ips"][0]["address"],
        "10.7.0.9/16"
    );
    assert_eq!(
        calls[0]["stdin"]["prevResult"]["interfaces"][0]["mac"],
        "0a:58:0a:07:00:09"
    );
    assert!(!file.exists());
}

#[test]
fn gc_deletes_stale_attachments_then_gcs_each_plugin_and_reports_all_errors() {
    let env = Env::with_plain_a();
    env.plugin("b", Fake::failing(&["GC"]));
    let cni = env.cni();
    let net = list(
        r#"{"cniVersion":"1.1.0","name":"gcn","plugins":[{"type":"a","capabilities":{"portMappings":true}},{"type":"b"}]}"#,
    );
    let other = list(r#"{"cniVersion":"1.1.0","name":"other","plugins":[{"type":"a"}]}"#);
    let pm = json!([{"hostPort": 1, "containerPort": 2}]);
    let rts = [
        RuntimeConf::new("keep", "/run/netns/k", "eth0"),
        RuntimeConf::new("stale", "/run/netns/s", "eth0")
            .arg("K", "V")
            .capability("portMappings", pm.clone()),
        RuntimeConf::new("keep", "/run/netns/k", "net1"),
    ];
    for rt in &rts {
        cni.add(&net, rt).expect("add");
    }
    cni.add(&other, &RuntimeConf::new("stale", "/run/netns/s", "eth0"))
        .expect("add other");
    env.clear();

    let valid = [GcAttachment {
        container_id: "keep".into(),
        ifname: "eth0".into(),
    }];
    let err = cni.gc(&net, &valid).expect_err("b fails GC");
    let calls = env.calls();
    let seq = who(&calls);
    assert_eq!(
        seq,
        ["b:DEL", "a:DEL", "b:DEL", "a:DEL", "a:GC", "b:GC"],
        "{calls:#?}"
    );
    // Stale DELs carry what the attachment was added with.
    let del_stale = calls
        .iter()
        .find(|c| c["cid"] == "stale" && c["plugin"] == "a")
        .expect("stale DEL");
    assert_eq!(del_stale["args"], "K=V");
    assert_eq!(del_stale["netns"], "/run/netns/s");
    assert_eq!(del_stale["stdin"]["runtimeConfig"]["portMappings"], pm);
    assert_eq!(
        del_stale["stdin"]["prevResult"]["ips"][0]["address"],
        "10.9.9.9/24"
    );
    assert!(calls
        .iter()
        .any(|c| c["cid"] == "keep" && c["ifname"] == "net1" && c["cmd"] == "DEL"));
    // GC gets the valid list under both names, and no attachment env.
    let gc = &calls[4];
    let want = json!([{"containerID": "keep", "ifname": "eth0"}]);
    assert_eq!(gc["stdin"]["cni.dev/valid-attachments"], want);
    assert_eq!(gc["stdin"]["cni.dev/attachments"], want);
    assert_eq!(gc["stdin"]["name"], "gcn");
    assert_eq!(
        (gc["cid"].as_str(), gc["ifname"].as_str()),
        (Some(""), Some(""))
    );
    // b's GC error is reported; a's GC still ran.
    assert_eq!(err.code(), Some(11));
    assert!(err.to_string().contains("b refuses GC"), "{err}");

    let left: Vec<(String, String, String)> = cni
        .cached_attachments(None)
        .into_iter()
        .map(|a| (a.network, a.container_id, a.ifname))
        .collect();
    assert_eq!(
        left,
        [
            ("gcn".to_string(), "keep".to_string(), "eth0".to_string()),
            ("other".to_string(), "stale".to_string(), "eth0".to_string())
        ]
    );
}

#[test]
fn gc_keeps_going_when_stale_dels_fail() {
    let env = Env::new();
    env.plugin("a", Fake::failing(&["DEL"]));
    let cni = env.cni();
    let net = list(r#"{"cniVersion":"1.1.0","name":"g2","plugins":[{"type":"a"}]}"#);
    for id in ["s1", "s2"] {
        cni.add(&net, &RuntimeConf::new(id, "/x", "eth0"))
            .expect("add");
    }
    env.clear();
    let err = cni.gc(&net, &[]).expect_err("both DELs fail");
    assert_eq!(err.errors().len(), 2, "{err}");
    assert!(
        err.to_string().contains("stale attachment s1 eth0") && err.to_string().contains("s2"),
        "{err}"
    );
    assert_eq!(who(&env.calls()), ["a:DEL", "a:DEL", "a:GC"]);
    assert_eq!(
        cni.cached_attachments(None).len(),
        2,
        "failed DELs keep their cache"
    );
}

#[test]
fn gc_runs_every_plugin_it_finds_when_one_binary_is_missing() {
    let env = Env::with_plain_a();
    env.plugin("b", Fake::default());
    let cni = env.cni();
    let net = list(
        r#"{"cniVersion":"1.1.0","name":"g4","plugins":[{"type":"a"},{"type":"zz-missing"},{"type":"b"}]}"#,
    );
    let err = cni.gc(&net, &[]).expect_err("zz-missing is not installed");
    assert!(err.to_string().contains("zz-missing"), "{err}");
    assert_eq!(who(&env.calls()), ["a:GC", "b:GC"]);
}

#[test]
fn gc_version_gating_and_disable_gc() {
    let env = Env::with_plain_a();
    let cni = env.cni();
    let v100 = list(r#"{"cniVersion":"1.0.0","name":"g3","plugins":[{"type":"a"}]}"#);
    cni.add(&v100, &RuntimeConf::new("s", "/x", "eth0"))
        .expect("add");
    let off =
        list(r#"{"cniVersion":"1.1.0","name":"g3","disableGC":true,"plugins":[{"type":"a"}]}"#);
    env.clear();
    cni.gc(&off, &[]).expect("disabled");
    assert!(env.calls().is_empty(), "disableGC runs nothing");
    assert_eq!(cni.cached_attachments(None).len(), 1);
    cni.gc(&v100, &[]).expect("gc 1.0.0");
    assert_eq!(who(&env.calls()), ["a:DEL"], "no GC verb below 1.1.0");
    assert!(cni.cached_attachments(None).is_empty());
}

#[test]
fn status_each_plugin_from_110_and_stops_at_the_first_not_ready() {
    let env = Env::with_plain_a();
    env.plugin("nr", Fake::failing_with(&["STATUS"], 50));
    let cni = env.cni();
    let old = list(r#"{"cniVersion":"1.0.0","name":"s","plugins":[{"type":"a"},{"type":"nr"}]}"#);
    cni.status(&old).expect("below 1.1.0 there is no STATUS");
    assert!(env.calls().is_empty());
    let ok = list(
        r#"{"cniVersion":"1.1.0","name":"s","plugins":[{"type":"a"},{"type":"a","capabilities":{"x":true}}]}"#,
    );
    cni.status(&ok).expect("ready");
    let calls = env.calls();
    assert_eq!(who(&calls), ["a:STATUS", "a:STATUS"]);
    assert_eq!(calls[0]["stdin"]["name"], "s");
    assert_eq!(calls[0]["stdin"]["cniVersion"], "1.1.0");
    env.clear();
    let bad = list(r#"{"cniVersion":"1.1.0","name":"s","plugins":[{"type":"nr"},{"type":"a"}]}"#);
    assert_eq!(cni.status(&bad).expect_err("not ready").code(), Some(50));
    assert_eq!(who(&env.calls()), ["nr:STATUS"]);
}

#[test]
fn version_info_and_validate() {
    let env = Env::new();
    write_executable(
        &env.bin().join("v"),
        "#!/bin/sh\ncat >/dev/null\necho '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}'\n",
    );
    let cni = env.cni();
    assert!(cni.version_info("v").expect("vi").supports("0.4.0"));
    let ok = list(
        r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"v","capabilities":{"portMappings":true,"mac":false}}]}"#,
    );
    assert_eq!(cni.validate(&ok).expect("valid"), ["portMappings"]);
    let bad = list(r#"{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"v"},{"type":"nope"}]}"#);
    let err = cni.validate(&bad).expect_err("two problems");
    assert_eq!(err.errors().len(), 2, "{err}");
}
