use super::*;
use std::collections::HashMap;

struct Fake;

impl Plugin for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn add(&self, args: &CmdArgs) -> CniResult<cni_spec::Result> {
        if args.conf.extra.contains_key("panic") {
            panic!("boom");
        }
        let mut r = cni_spec::Result::new(args.version());
        r.ips.push(cni_spec::IpConfig {
            interface: None,
            address: "10.0.0.2/24".parse().expect("net"),
            gateway: None,
        });
        Ok(r)
    }
    fn del(&self, _args: &CmdArgs) -> CniResult<()> {
        Ok(())
    }
    fn check(&self, _args: &CmdArgs) -> CniResult<()> {
        Ok(())
    }
}

/// A plugin whose CHECK looks at its own records only.
struct OwnRecords;

impl Plugin for OwnRecords {
    fn name(&self) -> &'static str {
        "own-records"
    }
    fn add(&self, args: &CmdArgs) -> CniResult<cni_spec::Result> {
        Ok(cni_spec::Result::new(args.version()))
    }
    fn del(&self, _args: &CmdArgs) -> CniResult<()> {
        Ok(())
    }
    fn check(&self, _args: &CmdArgs) -> CniResult<()> {
        Err(Error::new(ErrorCode::UnknownContainer, "reached check"))
    }
    fn check_needs_prev_result(&self) -> bool {
        false
    }
}

#[test]
fn check_without_prev_result_reaches_a_plugin_that_does_not_need_it() {
    let map: HashMap<String, String> = with(&[("CNI_COMMAND", "CHECK")])
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let get = |k: &str| map.get(k).cloned();
    let conf = r#"{"cniVersion":"1.0.0","name":"net1","type":"own-records"}"#;
    let out = execute(&OwnRecords, &get, &mut conf.as_bytes());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (out.exit_code, v["msg"].as_str()),
        (1, Some("reached check"))
    );
    let out = execute(&Fake, &get, &mut conf.as_bytes());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["code"], 7, "{v}");
}

fn run(env: &[(&str, &str)], stdin: &str) -> (i32, serde_json::Value) {
    let map: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let get = |k: &str| map.get(k).cloned();
    let out = execute(&Fake, &get, &mut stdin.as_bytes());
    let v = if out.stdout.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&out.stdout).expect("stdout is JSON")
    };
    (out.exit_code, v)
}

const GOOD_ENV: &[(&str, &str)] = &[
    ("CNI_COMMAND", "ADD"),
    ("CNI_CONTAINERID", "abc"),
    ("CNI_NETNS", "/run/netns/x"),
    ("CNI_IFNAME", "eth0"),
    ("CNI_PATH", "/opt/cni/bin"),
];

fn with(over: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut env: Vec<_> = GOOD_ENV
        .iter()
        .filter(|(k, _)| !over.iter().any(|(o, _)| o == k))
        .copied()
        .collect();
    env.extend(over.iter().filter(|(_, v)| *v != "<unset>").copied());
    env
}

const CONF: &str = r#"{"cniVersion":"1.0.0","name":"net1","type":"fake"}"#;

#[test]
fn add_prints_result_in_config_version() {
    for v in cni_spec::ALL_VERSIONS {
        let conf = format!(r#"{{"cniVersion":"{v}","name":"net1","type":"fake"}}"#);
        let (code, out) = run(GOOD_ENV, &conf);
        assert_eq!(code, 0, "{v}: {out}");
        assert_eq!(out["cniVersion"], *v);
    }
}

#[test]
fn version_verb() {
    let (code, out) = run(&[("CNI_COMMAND", "VERSION")], "");
    assert_eq!(code, 0);
    assert_eq!(out["supportedVersions"].as_array().expect("list").len(), 7);
    assert_eq!(out["cniVersion"], "1.1.0");
}

/// Every malformed environment or config: (env override, stdin, code, text in msg).
#[test]
fn error_table() {
    let v04 = r#"{"cniVersion":"0.3.1","name":"net1","type":"fake","prevResult":{}}"#;
    let v10 = r#"{"cniVersion":"1.0.0","name":"net1","type":"fake"}"#;
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, u32, &'a str);
    let cases: Vec<Case> = vec![
        (with(&[("CNI_COMMAND", "<unset>")]), CONF, 4, "CNI_COMMAND"),
        (with(&[("CNI_COMMAND", "FROB")]), CONF, 4, "FROB"),
        (with(&[("CNI_NETNS", "<unset>")]), CONF, 4, "CNI_NETNS"),
        (with(&[("CNI_IFNAME", "<unset>")]), CONF, 4, "CNI_IFNAME"),
        (with(&[("CNI_PATH", "<unset>")]), CONF, 4, "CNI_PATH"),
        (
            with(&[("CNI_CONTAINERID", "<unset>")]),
            CONF,
            4,
            "CNI_CONTAINERID",
        ),
        (with(&[("CNI_CONTAINERID", "")]), CONF, 4, "CNI_CONTAINERID"),
        (
            with(&[("CNI_CONTAINERID", "bad id")]),
            CONF,
            4,
            "containerID",
        ),
        (
            with(&[("CNI_IFNAME", "waytoolonginterfacename")]),
            CONF,
            4,
            "CNI_IFNAME",
        ),
        (with(&[("CNI_IFNAME", "a/b")]), CONF, 4, "CNI_IFNAME"),
        (with(&[]), "{not json", 6, "decode"),
        (
            with(&[]),
            r#"{"cniVersion":"1.0.0","type":"fake"}"#,
            7,
            "network name",
        ),
        (
            with(&[]),
            r#"{"cniVersion":"1.0.0","name":"a b","type":"fake"}"#,
            7,
            "network name",
        ),
        (
            with(&[]),
            r#"{"cniVersion":"7.0.0","name":"n","type":"fake"}"#,
            1,
            "incompatible",
        ),
        (with(&[("CNI_COMMAND", "CHECK")]), v04, 1, "CHECK"),
        (with(&[("CNI_COMMAND", "CHECK")]), v10, 7, "prevResult"),
        (with(&[("CNI_COMMAND", "GC")]), v10, 1, "GC"),
        (with(&[("CNI_COMMAND", "STATUS")]), v10, 1, "STATUS"),
        (
            with(&[]),
            r#"{"cniVersion":"1.0.0","name":"n","type":"fake","panic":1}"#,
            999,
            "panicked",
        ),
    ];
    for (env, stdin, want, text) in cases {
        let (code, out) = run(&env, stdin);
        assert_eq!(code, 1, "{env:?} {stdin}: {out}");
        assert_eq!(out["code"], want, "{env:?} {stdin}: {out}");
        let msg = format!("{} {}", out["msg"], out["details"]);
        assert!(msg.contains(text), "{msg:?} should mention {text:?}");
        assert!(out["cniVersion"].is_string(), "{out}");
    }
}

#[test]
fn del_needs_no_netns_and_prints_nothing() {
    let env = with(&[("CNI_COMMAND", "DEL"), ("CNI_NETNS", "<unset>")]);
    let (code, out) = run(&env, CONF);
    assert_eq!(code, 0);
    assert_eq!(out, serde_json::Value::Null);
}

#[test]
fn gc_and_status_at_110() {
    let conf = r#"{"cniVersion":"1.1.0","name":"net1","type":"fake"}"#;
    for cmd in ["GC", "STATUS"] {
        let (code, _) = run(&[("CNI_COMMAND", cmd), ("CNI_PATH", "/x")], conf);
        assert_eq!(code, 0, "{cmd}");
    }
}

#[test]
fn parse_conf_names_the_field() {
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Conf {
        mtu: Option<u32>,
        ipam: Option<Ipam>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Ipam {
        ranges: Vec<Vec<u8>>,
    }
    let args = CmdArgs {
        command: Command::Add,
        container_id: "c".into(),
        netns: String::new(),
        ifname: "eth0".into(),
        args: String::new(),
        path: vec![],
        stdin: br#"{"type":"x","mtu":"big"}"#.to_vec(),
        conf: NetConf {
            plugin_type: "x".into(),
            ..Default::default()
        },
    };
    let e = args.parse_conf::<Conf>().expect_err("bad mtu");
    assert_eq!(e.code, 7);
    assert!(e.msg.contains("field mtu"), "{}", e.msg);
    let nested = CmdArgs {
        stdin: br#"{"ipam":{"ranges":[[1,"x"]]}}"#.to_vec(),
        ..args.clone()
    };
    let e = nested.parse_conf::<Conf>().expect_err("bad nested");
    assert!(e.msg.contains("ipam.ranges[0][1]"), "{}", e.msg);
    let broken = CmdArgs {
        stdin: b"{".to_vec(),
        ..args
    };
    assert_eq!(broken.parse_conf::<Conf>().expect_err("broken").code, 6);
}
