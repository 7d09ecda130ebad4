//! host-local through the real `rcni` binary: every spec version, the exact
//! on-disk bytes, parallel processes, GC and STATUS, and interop with the
//! reference plugin in both directions.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use testutil::{per_version, run_plugin, Call, PluginDir, TempDir, TestNs};

const REFERENCE: &str = "/usr/lib/cni/host-local";

fn conf(v: &str, net: &str, data: &Path, subnet: &str) -> String {
    format!(
        r#"{{"cniVersion":"{v}","name":"{net}","type":"bridge","ipam":{{"type":"host-local","subnet":"{subnet}","dataDir":"{}","routes":[{{"dst":"0.0.0.0/0"}}]}}}}"#,
        data.display()
    )
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn bin() -> PluginDir {
    PluginDir::install(Path::new(env!("CARGO_BIN_EXE_rcni")))
}

per_version!(add_check_del_del_every_version, |v| {
    let bin = bin();
    let node = TestNs::new("hln");
    let data = TempDir::new("hl");
    let net = format!("hl{}", v.replace('.', ""));
    let c = conf(v, &net, data.path(), "10.77.0.0/24");
    let add = Call::new("ADD", "ctr-a", &node.path(), &c);
    let res = run_plugin(bin.path(), "host-local", &add, Some(node.ns())).ok();
    assert_eq!(res["cniVersion"], v);
    let (addr, gw) = if v == "0.1.0" || v == "0.2.0" {
        (res["ip4"]["ip"].clone(), res["ip4"]["gateway"].clone())
    } else {
        assert!(
            res.get("interfaces").is_none(),
            "IPAM results carry no interfaces"
        );
        (
            res["ips"][0]["address"].clone(),
            res["ips"][0]["gateway"].clone(),
        )
    };
    assert_eq!(addr, "10.77.0.2/24");
    assert_eq!(gw, "10.77.0.1");
    // The reference's bytes: "<id>\r\n<ifname>", file named by the IP.
    let netdir = data.path().join(&net);
    let bytes = std::fs::read(netdir.join("10.77.0.2")).expect("allocation file");
    assert_eq!(bytes, b"ctr-a\r\neth0");
    assert_eq!(
        std::fs::read_to_string(netdir.join("last_reserved_ip.0")).expect("cursor"),
        "10.77.0.2"
    );

    // The same container and interface cannot take a second address.
    let again = run_plugin(bin.path(), "host-local", &add, Some(node.ns()));
    assert_ne!(
        again.code, 0,
        "second ADD for the same attachment must fail"
    );

    if testutil::has_check(v) {
        let mut with_prev: serde_json::Value = serde_json::from_str(&c).expect("conf");
        with_prev["prevResult"] = res.clone();
        let check = Call::new("CHECK", "ctr-a", &node.path(), &with_prev.to_string());
        run_plugin(bin.path(), "host-local", &check, Some(node.ns())).ok();
        // As the reference's, CHECK asks the store only: no prevResult needed.
        let bare = Call::new("CHECK", "ctr-a", &node.path(), &c);
        run_plugin(bin.path(), "host-local", &bare, Some(node.ns())).ok();
    }
    let del = Call::new("DEL", "ctr-a", &node.path(), &c);
    run_plugin(bin.path(), "host-local", &del, Some(node.ns())).ok();
    assert!(
        !netdir.join("10.77.0.2").exists(),
        "DEL released the address"
    );
    if testutil::has_check(v) {
        let bare = Call::new("CHECK", "ctr-a", &node.path(), &c);
        let gone = run_plugin(bin.path(), "host-local", &bare, Some(node.ns()));
        assert_ne!(gone.code, 0, "CHECK after DEL must fail: {}", gone.stdout);
    }
    run_plugin(bin.path(), "host-local", &del, Some(node.ns())).ok();
    run_plugin(
        bin.path(),
        "host-local",
        &del.clone().netns(""),
        Some(node.ns()),
    )
    .ok();
});

#[test]
fn refusals_have_the_spec_codes() {
    let bin = bin();
    let node = TestNs::new("hlr");
    let data = TempDir::new("hlr");
    let d = data.path().display().to_string();
    let cases = [
        (
            format!(
                r#"{{"cniVersion":"1.0.0","name":"r","ipam":{{"type":"host-local","subnet":"10.1.0.0/32","dataDir":"{d}"}}}}"#
            ),
            7,
        ),
        (
            format!(
                r#"{{"cniVersion":"1.0.0","name":"r","ipam":{{"type":"host-local","subnet":"10.1.0.0/31","dataDir":"{d}"}}}}"#
            ),
            7,
        ),
        (
            format!(
                r#"{{"cniVersion":"1.0.0","name":"r","ipam":{{"type":"host-local","subnet":"nonsense","dataDir":"{d}"}}}}"#
            ),
            7,
        ),
        (
            format!(
                r#"{{"cniVersion":"1.0.0","name":"r","ipam":{{"type":"host-local","ranges":[[{{"subnet":"10.1.0.0/24"}}],[{{"subnet":"10.1.0.128/25"}}]],"dataDir":"{d}"}}}}"#
            ),
            7,
        ),
        (r#"{"cniVersion":"1.0.0","name":"r"}"#.to_string(), 7),
        ("{".to_string(), 6),
    ];
    for (c, code) in cases {
        let out = run_plugin(
            bin.path(),
            "host-local",
            &Call::new("ADD", "x", &node.path(), &c),
            Some(node.ns()),
        );
        assert_eq!(out.err_code(), code, "{c}: {}", out.stdout);
    }
    // A requested address outside the range, and an unknown CNI_ARGS key.
    let c = conf("1.0.0", "req", data.path(), "10.78.0.0/24");
    let out = run_plugin(
        bin.path(),
        "host-local",
        &Call::new("ADD", "x", &node.path(), &c).args("IP=10.99.0.5"),
        Some(node.ns()),
    );
    assert_eq!(out.err_code(), 7);
    let out = run_plugin(
        bin.path(),
        "host-local",
        &Call::new("ADD", "x", &node.path(), &c).args("FOO=bar"),
        Some(node.ns()),
    );
    assert_eq!(out.err_code(), 4);
    // A requested address is honoured; IgnoreUnknown lets other keys pass.
    let ok = run_plugin(
        bin.path(),
        "host-local",
        &Call::new("ADD", "y", &node.path(), &c)
            .args("IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.78.0.42"),
        Some(node.ns()),
    )
    .ok();
    assert_eq!(ok["ips"][0]["address"], "10.78.0.42/24");
    // Nothing was left behind by the refused calls.
    assert_eq!(
        files(&data.path().join("req"))
            .iter()
            .filter(|f| f.starts_with("10."))
            .count(),
        1
    );
}

#[test]
fn parallel_processes_never_share_an_address() {
    let bin = bin();
    let node = TestNs::new("hlp");
    let data = TempDir::new("hlp");
    let c = conf("1.0.0", "par", data.path(), "10.79.0.0/24");
    let addrs: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..40)
            .map(|i| {
                let (c, bin, node) = (&c, &bin, &node);
                s.spawn(move || {
                    let call = Call::new("ADD", &format!("p{i}"), &node.path(), c);
                    let r = run_plugin(bin.path(), "host-local", &call, Some(node.ns())).ok();
                    r["ips"][0]["address"].as_str().unwrap_or("").to_string()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let mut uniq = addrs.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 40, "{addrs:?}");
    assert!(uniq.iter().all(|a| a.starts_with("10.79.0.")));
}

#[test]
fn gc_releases_what_is_not_valid_and_status_reports_exhaustion() {
    let bin = bin();
    let node = TestNs::new("hlg");
    let data = TempDir::new("hlg");
    // A /29 has 5 usable addresses besides the gateway.
    let c = conf("1.1.0", "gcnet", data.path(), "10.80.0.0/29");
    for i in 0..5 {
        run_plugin(
            bin.path(),
            "host-local",
            &Call::new("ADD", &format!("g{i}"), &node.path(), &c),
            Some(node.ns()),
        )
        .ok();
    }
    let status = Call::new("STATUS", "", Path::new(""), &c);
    let st = run_plugin(bin.path(), "host-local", &status, Some(node.ns()));
    assert_eq!(
        st.err_code(),
        50,
        "an exhausted pool is not ready: {}",
        st.stdout
    );
    let full = run_plugin(
        bin.path(),
        "host-local",
        &Call::new("ADD", "g9", &node.path(), &c),
        Some(node.ns()),
    );
    assert_ne!(full.code, 0);

    let mut gc: serde_json::Value = serde_json::from_str(&c).expect("conf");
    gc["cni.dev/valid-attachments"] = serde_json::json!([{"containerID":"g1","ifname":"eth0"}]);
    run_plugin(
        bin.path(),
        "host-local",
        &Call::new("GC", "", Path::new(""), &gc.to_string()),
        Some(node.ns()),
    )
    .ok();
    let left: Vec<String> = files(&data.path().join("gcnet"))
        .into_iter()
        .filter(|f| f.starts_with("10."))
        .collect();
    assert_eq!(
        left.len(),
        1,
        "only the valid attachment keeps its address: {left:?}"
    );
    let content = std::fs::read_to_string(data.path().join("gcnet").join(&left[0])).expect("read");
    assert_eq!(content, "g1\r\neth0");
    run_plugin(bin.path(), "host-local", &status, Some(node.ns())).ok();
}

/// The node can switch implementations with pods running: each releases
/// what the other allocated, and neither hands out an address twice.
#[test]
fn interop_with_the_reference_both_ways() {
    assert!(
        Path::new(REFERENCE).exists(),
        "reference host-local missing: apt-get install containernetworking-plugins (.ci/run does)"
    );
    let bin = bin();
    let node = TestNs::new("hli");
    let data = TempDir::new("hli");
    let refdir = TempDir::new("hlref");
    std::os::unix::fs::symlink(REFERENCE, refdir.path().join("host-local")).expect("link");
    let c = conf("1.0.0", "mix", data.path(), "10.81.0.0/24");
    let netdir = data.path().join("mix");
    let add = |dir: &Path, id: &str| {
        run_plugin(
            dir,
            "host-local",
            &Call::new("ADD", id, &node.path(), &c),
            Some(node.ns()),
        )
        .ok()["ips"][0]["address"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let del = |dir: &Path, id: &str| {
        run_plugin(
            dir,
            "host-local",
            &Call::new("DEL", id, &node.path(), &c),
            Some(node.ns()),
        )
        .ok();
    };
    let a = add(refdir.path(), "from-ref");
    let b = add(bin.path(), "from-rcni");
    let c2 = add(refdir.path(), "from-ref-2");
    let d = add(bin.path(), "from-rcni-2");
    let mut all = vec![a.clone(), b.clone(), c2.clone(), d.clone()];
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        4,
        "no address handed out twice: {a} {b} {c2} {d}"
    );
    // rcni releases the reference's allocation and vice versa.
    del(bin.path(), "from-ref");
    del(refdir.path(), "from-rcni");
    let ip = |s: &str| s.split('/').next().unwrap_or("").to_string();
    assert!(
        !netdir.join(ip(&a)).exists(),
        "rcni released the reference's {a}"
    );
    assert!(
        !netdir.join(ip(&b)).exists(),
        "the reference released rcni's {b}"
    );
    del(bin.path(), "from-ref-2");
    del(refdir.path(), "from-rcni-2");
    let left: Vec<String> = files(&netdir)
        .into_iter()
        .filter(|f| f.starts_with("10."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Lax address spellings are refused with code 7 naming the field, and
/// nothing is allocated: a /0 subnet, leading zeros, surrounding spaces.
#[test]
fn lax_address_spellings_are_refused() {
    let bin = bin();
    let node = TestNs::new("hlx");
    let data = TempDir::new("hlx");
    for subnet in [
        "0.0.0.0/0",
        "::/0",
        "010.001.000.000/24",
        " 10.78.0.0/24",
        "10.78.0.0/24 ",
    ] {
        let c = conf("1.0.0", "hlx", data.path(), subnet);
        let add = Call::new("ADD", "ctr-x", &node.path(), &c);
        let out = run_plugin(bin.path(), "host-local", &add, Some(node.ns()));
        assert_eq!(out.err_code(), 7, "{subnet:?}: {}", out.stdout);
        assert!(out.stdout.contains("subnet"), "{subnet:?}: {}", out.stdout);
    }
    let c = format!(
        r#"{{"cniVersion":"1.0.0","name":"hlx","type":"bridge","ipam":{{"type":"host-local","subnet":"10.78.0.0/24","rangeStart":"10.78.0.010","dataDir":"{}"}}}}"#,
        data.path().display()
    );
    let add = Call::new("ADD", "ctr-x", &node.path(), &c);
    let out = run_plugin(bin.path(), "host-local", &add, Some(node.ns()));
    assert_eq!(out.err_code(), 7, "{}", out.stdout);
    assert!(out.stdout.contains("rangeStart"), "{}", out.stdout);
    let left: Vec<String> = files(&data.path().join("hlx"))
        .into_iter()
        .filter(|f| f.contains('.') && !f.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "nothing allocated: {left:?}");
}

/// Operators find a container's address with `grep -r <cid> <dataDir>`:
/// once the container is released (DEL or GC), no file under the dataDir
/// names it — neither the network directory nor rcni's index and spare
/// pool — while live allocations keep the reference's format.
#[test]
fn released_containers_leave_no_trace_in_the_data_dir() {
    let bin = bin();
    let node = TestNs::new("hlg");
    let data = TempDir::new("hlg");
    let c = conf("1.1.0", "hlg", data.path(), "10.79.0.0/24");
    let grep = |needle: &str| -> String {
        let out = std::process::Command::new("grep")
            .args(["-r", "-l", "-F", "-a", needle])
            .arg(data.path())
            .output()
            .expect("grep");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ids: Vec<String> = (0..6).map(|i| format!("gone-ctr-{i}-7f3a")).collect();
    for id in &ids {
        let add = Call::new("ADD", id, &node.path(), &c);
        run_plugin(bin.path(), "host-local", &add, Some(node.ns())).ok();
    }
    let keep = "kept-ctr-9b1c";
    let add = Call::new("ADD", keep, &node.path(), &c);
    run_plugin(bin.path(), "host-local", &add, Some(node.ns())).ok();
    assert!(!grep(&ids[0]).is_empty(), "live allocations are found");
    // Released by DEL...
    for id in &ids[..4] {
        let del = Call::new("DEL", id, &node.path(), &c);
        run_plugin(bin.path(), "host-local", &del, Some(node.ns())).ok();
    }
    // ... and by GC.
    let mut gc: serde_json::Value = serde_json::from_str(&c).expect("conf");
    gc["cni.dev/valid-attachments"] = serde_json::json!([{"containerID": keep, "ifname": "eth0"}]);
    let call = Call::new("GC", "", Path::new(""), &gc.to_string());
    run_plugin(bin.path(), "host-local", &call, Some(node.ns())).ok();
    for id in &ids {
        assert_eq!(grep(id), "", "{id} is released");
    }
    let found = grep(keep);
    assert!(found.contains("10.79.0."), "the live one: {found}");
    // The live one in the reference's format.
    let bytes = std::fs::read_to_string(
        found
            .lines()
            .find(|l| l.contains("10.79.0."))
            .expect("file"),
    )
    .expect("read");
    assert_eq!(bytes, format!("{keep}\r\neth0"));
    let del = Call::new("DEL", keep, &node.path(), &c);
    run_plugin(bin.path(), "host-local", &del, Some(node.ns())).ok();
    assert_eq!(grep(keep), "");
}
