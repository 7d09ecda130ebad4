use super::*;
use std::path::Path;
use testutil::{run_in_process, Call, TempDir};
fn run(cmd: &str, id: &str, cni_args: &str, stdin: &str) -> (i32, serde_json::Value) {
    let call = Call::new(cmd, id, Path::new("/proc/self/ns/net"), stdin).args(cni_args);
    let out = run_in_process(&HostLocal, &call, "/usr/lib/cni", None);
    (out.code, out.json())
}

fn conf(ver: &str, dir: &TempDir, ipam_extra: &str) -> String {
    format!(
        r#"{{"cniVersion":"{ver}","name":"hl","type":"bridge","ipam":{{"type":"host-local","dataDir":"{}"{ipam_extra}}}}}"#,
        dir.path().display()
    )
}

#[test]
fn add_del_del_every_version() {
    for ver in cni_spec::ALL_VERSIONS {
        let t = TempDir::new(&format!("v{ver}"));
        let c = conf(
            ver,
            &t,
            r#","subnet":"10.5.0.0/24","routes":[{"dst":"0.0.0.0/0"}]"#,
        );
        let (code, out) = run("ADD", "c1", "", &c);
        assert_eq!(code, 0, "{ver}: {out}");
        let text = out.to_string();
        assert!(text.contains("10.5.0.2/24"), "{ver}: {text}");
        assert!(text.contains("10.5.0.1"), "{ver}: {text}");
        assert!(text.contains("0.0.0.0/0"), "{ver}: {text}");
        assert_eq!(
            kit::os::read(&t.path().join("hl/10.5.0.2")).expect("alloc file"),
            b"c1\r\neth0"
        );
        assert_eq!(run("DEL", "c1", "", &c).0, 0);
        assert!(!kit::os::exists(&t.path().join("hl/10.5.0.2")));
        assert_eq!(run("DEL", "c1", "", &c).0, 0);
    }
}

#[test]
fn dual_stack_requested_and_dns() {
    let t = TempDir::new("dual");
    let resolv = t.path().join("resolv.conf");
    kit::os::write_atomic(
        &resolv,
        b"nameserver 10.0.0.53\nsearch a.example\n",
        0o644,
        kit::os::Durability::Atomic,
    )
    .expect("write");
    let c = conf(
        "1.0.0",
        &t,
        &format!(
            r#","ranges":[[{{"subnet":"10.6.0.0/24"}}],[{{"subnet":"2001:db8:6::/64"}}]],"resolvConf":"{}""#,
            resolv.display()
        ),
    );
    let (code, out) = run(
        "ADD",
        "c1",
        "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.6.0.9,2001:db8:6::9",
        &c,
    );
    assert_eq!(code, 0, "{out}");
    let ips = out["ips"].as_array().expect("ips");
    assert_eq!(ips[0]["address"], "10.6.0.9/24");
    assert_eq!(ips[1]["address"], "2001:db8:6::9/64");
    assert_eq!(ips[1]["gateway"], "2001:db8:6::1");
    assert_eq!(out["dns"]["nameservers"][0], "10.0.0.53");
    assert_eq!(out["dns"]["search"][0], "a.example");
    // second ADD of the same attachment: duplicate
    let (code, out) = run("ADD", "c1", "", &c);
    assert_eq!(code, 1);
    assert_eq!(out["code"], 100, "{out}");
}

#[test]
fn refusals_with_codes() {
    let t = TempDir::new("refuse");
    let ok = conf("1.0.0", &t, r#","subnet":"10.7.0.0/30""#);
    assert_eq!(run("ADD", "c1", "FOO=1", &ok).1["code"], 4);
    assert_eq!(run("ADD", "c1", "IP=nonsense", &ok).1["code"], 4);
    assert_eq!(run("ADD", "c1", "IP=10.99.0.1", &ok).1["code"], 7);
    let small = conf("1.0.0", &t, r#","subnet":"10.7.0.0/31""#);
    assert_eq!(run("ADD", "c1", "", &small).1["code"], 7);
    let overlap = conf(
        "1.0.0",
        &t,
        r#","ranges":[[{"subnet":"10.8.0.0/16"}],[{"subnet":"10.8.1.0/24"}]]"#,
    );
    assert_eq!(run("ADD", "c1", "", &overlap).1["code"], 7);
    assert_eq!(
        run(
            "ADD",
            "c1",
            "",
            r#"{"cniVersion":"1.0.0","name":"hl","ipam":{"#
        )
        .1["code"],
        6
    );
    // a /30 has one usable address besides the gateway
    assert_eq!(run("ADD", "c1", "", &ok).0, 0);
    assert_eq!(run("ADD", "c2", "", &ok).1["code"], 11);
}

#[test]
fn check_gc_status() {
    let t = TempDir::new("cgs");
    let c = conf("1.1.0", &t, r#","subnet":"10.9.0.0/30""#);
    let (code, out) = run("ADD", "c1", "", &c);
    assert_eq!(code, 0, "{out}");
    let with_prev = |prev: &serde_json::Value| {
        let mut v: serde_json::Value = serde_json::from_str(&c).expect("json");
        v["prevResult"] = prev.clone();
        v.to_string()
    };
    assert_eq!(run("CHECK", "c1", "", &with_prev(&out)).0, 0);
    assert_eq!(run("CHECK", "c9", "", &with_prev(&out)).1["code"], 3);
    // pool of one is full: STATUS says 50
    let (code, st) = run("STATUS", "", "", &c);
    assert_eq!((code, st["code"].clone()), (1, serde_json::json!(50)));
    // GC keeping nothing frees the pool
    let mut g: serde_json::Value = serde_json::from_str(&c).expect("json");
    g["cni.dev/valid-attachments"] =
        serde_json::json!([{"containerID": "other", "ifname": "eth0"}]);
    assert_eq!(run("GC", "", "", &g.to_string()).0, 0);
    assert!(!kit::os::exists(&t.path().join("hl/10.9.0.2")));
    assert_eq!(run("STATUS", "", "", &c).0, 0);
}
