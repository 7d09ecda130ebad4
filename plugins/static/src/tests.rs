use super::*;
use std::path::Path;
use testutil::{run_in_process, Call};

fn run(cmd: &str, cni_args: &str, stdin: &str) -> (i32, serde_json::Value) {
    let call = Call::new(cmd, "c1", Path::new("/proc/self/ns/net"), stdin).args(cni_args);
    let out = run_in_process(&Static, &call, "/usr/lib/cni", None);
    (out.code, out.json())
}

const FULL: &str = r#"{"cniVersion":"1.0.0","name":"s","type":"bridge",
  "ipam":{"type":"static",
    "addresses":[{"address":"10.10.0.1/24","gateway":"10.10.0.254"},{"address":"3ffe:ffff:0:01ff::1/64","gateway":"3ffe:ffff:0::1"}],
    "routes":[{"dst":"0.0.0.0/0"},{"dst":"192.168.0.0/16","gw":"10.10.5.1"}],
    "dns":{"nameservers":["8.8.8.8"],"domain":"example.com","search":["example.com"]}},
  "args":{"cni":{"ips":["10.20.0.5/24"]}},
  "runtimeConfig":{"ips":["10.30.0.5/16"]}}"#;

const NO_OVERRIDES: &str = r#"{"cniVersion":"1.0.0","name":"s","type":"bridge",
  "ipam":{"type":"static",
    "addresses":[{"address":"10.10.0.1/24","gateway":"10.10.0.254"},{"address":"3ffe:ffff:0:01ff::1/64","gateway":"3ffe:ffff:0::1"}],
    "routes":[{"dst":"0.0.0.0/0"},{"dst":"192.168.0.0/16","gw":"10.10.5.1"}],
    "dns":{"nameservers":["8.8.8.8"],"domain":"example.com","search":["example.com"]}}}"#;

fn addresses(out: &serde_json::Value) -> Vec<String> {
    out["ips"]
        .as_array()
        .map(|ips| {
            ips.iter()
                .map(|i| i["address"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn add_every_field() {
    // addresses, then CNI_ARGS IP= appended, GATEWAY= applied to it.
    let (code, out) = run("ADD", "IP=10.40.0.7/24;GATEWAY=10.40.0.1", NO_OVERRIDES);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        addresses(&out),
        ["10.10.0.1/24", "3ffe:ffff:0:1ff::1/64", "10.40.0.7/24"]
    );
    assert_eq!(out["ips"][0]["gateway"], "10.10.0.254");
    assert_eq!(out["ips"][2]["gateway"], "10.40.0.1");
    assert_eq!(out["routes"][1]["gw"], "10.10.5.1");
    assert_eq!(out["dns"]["domain"], "example.com");

    // runtimeConfig ips replace everything, as in the reference.
    let (code, out) = run("ADD", "IP=10.40.0.7/24;GATEWAY=10.40.0.1", FULL);
    assert_eq!(code, 0, "{out}");
    assert_eq!(addresses(&out), ["10.30.0.5/16"]);
    assert!(out["ips"][0].get("gateway").is_none(), "{out}");
    // args.cni.ips replace addresses and CNI_ARGS IP= when no runtimeConfig ips.
    let mut v: serde_json::Value = serde_json::from_str(FULL).expect("json");
    v.as_object_mut().map(|o| o.remove("runtimeConfig"));
    let (code, out) = run("ADD", "IP=10.40.0.7/24", &v.to_string());
    assert_eq!(code, 0, "{out}");
    assert_eq!(addresses(&out), ["10.20.0.5/24"]);
    assert_eq!(run("DEL", "", FULL).0, 0);
    assert_eq!(run("DEL", "", FULL).0, 0);
}

#[test]
fn refusals() {
    assert_eq!(run("ADD", "FOO=1", FULL).1["code"], 4);
    // No address at all: routes and DNS only, as in the reference.
    let none = r#"{"cniVersion":"1.0.0","name":"s","ipam":{"type":"static"}}"#;
    let (code, out) = run("ADD", "", none);
    assert_eq!(code, 0, "{out}");
    assert!(addresses(&out).is_empty(), "{out}");
    let bad = r#"{"cniVersion":"1.0.0","name":"s","ipam":{"type":"static","addresses":[{"address":"10.0.0.1"}]}}"#;
    assert_eq!(run("ADD", "", bad).1["code"], 7);
    assert_eq!(
        run("ADD", "IP=10.0.0.1/24;GATEWAY=bogus", none).1["code"],
        7
    );
    let two = r#"{"cniVersion":"0.2.0","name":"s","ipam":{"type":"static","addresses":[{"address":"10.0.0.1/24"},{"address":"10.0.1.1/24"}]}}"#;
    assert_eq!(run("ADD", "", two).1["code"], 7);
    // env-only address works
    let (code, out) = run("ADD", "IP=10.0.0.1/24,10.0.1.1/24;GATEWAY=10.0.1.254", none);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["ips"][1]["gateway"], "10.0.1.254");
}

#[test]
fn check_against_prev_result() {
    let (_, out) = run("ADD", "", FULL);
    let mut v: serde_json::Value = serde_json::from_str(FULL).expect("json");
    v["prevResult"] = out;
    assert_eq!(run("CHECK", "", &v.to_string()).0, 0);
    v["prevResult"]["ips"] = serde_json::json!([]);
    assert_eq!(run("CHECK", "", &v.to_string()).0, 1);
}
