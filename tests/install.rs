//! `rcni install`: links, copies, VERSION through a link, and the default
//! network written with --conf-dir.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use testutil::TempDir;

fn rcni() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rcni"))
}

#[test]
fn links_every_plugin_and_answers_version() {
    let dir = TempDir::new("inst");
    let out = rcni()
        .args(["install", "--bin-dir"])
        .arg(dir.path())
        .output()
        .expect("install");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "rcni",
        "loopback",
        "bridge",
        "ptp",
        "host-local",
        "static",
        "portmap",
        "firewall",
        "bandwidth",
        "tuning",
        "sbr",
    ] {
        assert!(dir.path().join(name).exists(), "{name} installed");
    }
    let v = Command::new(dir.path().join("loopback"))
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .output()
        .expect("VERSION");
    let j: serde_json::Value = serde_json::from_slice(&v.stdout).expect("json");
    assert_eq!(j["supportedVersions"].as_array().map(Vec::len), Some(7));
    // Installing again replaces atomically and still works; our own
    // entries are not reported as replaced.
    let again = rcni()
        .args(["install", "--bin-dir"])
        .arg(dir.path())
        .output()
        .expect("again");
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stdout).contains("replaced"));
    // Another vendor's plugin is replaced, and said so.
    std::fs::remove_file(dir.path().join("bridge")).expect("rm");
    std::fs::write(dir.path().join("bridge"), b"#!/bin/sh\nexit 0\n").expect("vendor bridge");
    let out = rcni()
        .args(["install", "--bin-dir"])
        .arg(dir.path())
        .output()
        .expect("over a vendor plugin");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("replaced 1 plugin(s) that were not links to or copies of this rcni: bridge"),
        "{text}"
    );
}

#[test]
fn copies_are_independent_files() {
    let dir = TempDir::new("instc");
    let out = rcni()
        .args(["install", "--copy", "--bin-dir"])
        .arg(dir.path())
        .output()
        .expect("install");
    assert!(out.status.success());
    let meta = std::fs::symlink_metadata(dir.path().join("bridge")).expect("bridge");
    assert!(meta.file_type().is_file(), "a real file, not a link");
    let again = rcni()
        .args(["install", "--copy", "--bin-dir"])
        .arg(dir.path())
        .output()
        .expect("again");
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stdout).contains("replaced"));
}

#[test]
fn writes_a_default_network_once() {
    let bin = TempDir::new("instb");
    let conf = TempDir::new("instn");
    let run = |extra: &[&str]| {
        rcni()
            .args(["install", "--bin-dir"])
            .arg(bin.path())
            .arg("--conf-dir")
            .arg(conf.path())
            .args(extra)
            .output()
            .expect("install")
    };
    let out = run(&["--subnet", "10.250.0.0/16"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = conf.path().join("10-rcni.conflist");
    let net = runtime::load_network(conf.path(), "rcni").expect("the runtime loads it");
    assert_eq!(net.plugins.len(), 4);
    assert!(std::fs::read_to_string(&file)
        .expect("read")
        .contains("10.250.0.0/16"));
    // An existing configuration is never overwritten.
    std::fs::write(&file, "{\"name\":\"mine\"}").expect("write");
    let out = run(&[]);
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        "{\"name\":\"mine\"}"
    );
    // A bad subnet is refused.
    let other = TempDir::new("instx");
    let out = rcni()
        .args(["install", "--bin-dir"])
        .arg(bin.path())
        .arg("--conf-dir")
        .arg(other.path())
        .args(["--subnet", "nonsense"])
        .output()
        .expect("install");
    assert_eq!(out.status.code(), Some(1));
    assert!(!Path::new(&other.path().join("10-rcni.conflist")).exists());
}

/// Every directory and file `rcni install` creates has an explicit mode,
/// whatever the caller's umask: under umask 000 nothing it makes is group-
/// or world-writable (a local user could otherwise replace the plugins
/// root runs), the directories are 0755 and the conflist 0644.
#[test]
fn modes_do_not_depend_on_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let root = TempDir::new("instm");
    let bin = root.path().join("a/b/bin");
    let conf = root.path().join("c/d/net.d");
    for copy in [false, true] {
        let mut cmd = rcni();
        cmd.arg("install");
        if copy {
            cmd.arg("--copy");
        }
        cmd.arg("--bin-dir").arg(&bin).arg("--conf-dir").arg(&conf);
        // SAFETY: umask is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::umask(0);
                Ok(())
            });
        }
        let out = cmd.output().expect("install");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mode = |p: &Path| {
            std::fs::symlink_metadata(p)
                .expect("stat")
                .permissions()
                .mode()
                & 0o7777
        };
        for d in ["a", "a/b", "a/b/bin", "c", "c/d", "c/d/net.d"] {
            assert_eq!(mode(&root.path().join(d)), 0o755, "{d}");
        }
        assert_eq!(mode(&conf.join("10-rcni.conflist")), 0o644);
        for e in std::fs::read_dir(&bin).expect("bin").flatten() {
            let md = e.path().symlink_metadata().expect("stat");
            if md.file_type().is_file() {
                assert_eq!(mode(&e.path()), 0o755, "{:?}", e.path());
            }
        }
        std::fs::remove_dir_all(&bin).expect("clean");
        std::fs::remove_dir_all(root.path().join("c")).expect("clean");
    }
}
