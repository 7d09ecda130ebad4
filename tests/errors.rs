//! Every plugin answers malformed environments and configs with a CNI error
//! object carrying the spec's code — never a panic (code 999), never a
//! half-made link — through the real binary.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::path::Path;
use testutil::{run_plugin, Call, PluginDir, TempDir, TestNs};

fn plugins(bin: &Path) -> Vec<String> {
    let out = std::process::Command::new(bin.join("rcni"))
        .arg("version")
        .output()
        .expect("rcni version");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("plugins: "))
        .expect("plugins line");
    line.split(", ").map(str::to_string).collect()
}

/// A minimal valid-looking config for `plugin`, at `version`.
fn base(plugin: &str, version: &str, data: &Path) -> Value {
    let mut c = json!({"cniVersion": version, "name": "errnet", "type": plugin});
    let ipam =
        json!({"type": "host-local", "subnet": "10.203.0.0/24", "dataDir": data.join("ipam")});
    match plugin {
        "bridge" | "ptp" => {
            c["ipam"] = ipam;
            c["stateDir"] = json!(data.join("state"));
        }
        "macvlan" => {
            // A real master: the ADD cases get past the lookup, so a late
            // failure must also remove the macvlan.
            c["master"] = json!("ermv0");
            c["ipam"] = ipam;
        }
        "ipvlan" => {
            c["master"] = json!("ermv0");
            c["ipam"] = ipam;
        }
        "vlan" => {
            c["master"] = json!("ermv0");
            c["vlanId"] = json!(100);
            c["ipam"] = ipam;
        }
        "host-local" | "tap" | "dummy" => c["ipam"] = ipam,
        "vrf" => c["vrfname"] = json!("vrf-err"),
        // No daemon listens there: every case fails before asking it.
        "dhcp" => c["ipam"] = json!({"type": "dhcp", "daemonSocketPath": data.join("dhcp.sock")}),
        "static" => {
            c["ipam"] = json!({"type": "static", "addresses": [{"address": "10.203.1.2/24"}]})
        }
        "tuning" => c["dataDir"] = json!(data.join("tuning")),
        "host-device" => c["device"] = json!("hdnone0"),
        "multus" => {
            c["cniDir"] = json!(data.join("multus"));
            c["confDir"] = json!(data.join("multus-conf"));
            c["delegates"] = json!([{"name": "errnet-ptp", "type": "ptp",
                "stateDir": data.join("state"), "ipam": ipam}]);
        }
        _ => {}
    }
    c
}

struct Case {
    what: &'static str,
    command: &'static str,
    stdin: String,
    ifname: &'static str,
    container: &'static str,
    /// Acceptable codes.
    codes: &'static [u64],
}

fn cases(plugin: &str, data: &Path) -> Vec<Case> {
    let good = base(plugin, "1.0.0", data);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        c.to_string()
    };
    let mut v = vec![
        Case {
            what: "broken JSON",
            command: "ADD",
            stdin: "{\"cniVersion\":".into(),
            ifname: "eth0",
            container: "c1",
            codes: &[6],
        },
        Case {
            what: "not an object",
            command: "ADD",
            stdin: "[1,2]".into(),
            ifname: "eth0",
            container: "c1",
            codes: &[6],
        },
        Case {
            what: "unknown cniVersion",
            command: "ADD",
            stdin: with(&|c| c["cniVersion"] = json!("9.9.9")),
            ifname: "eth0",
            container: "c1",
            codes: &[1],
        },
        Case {
            what: "missing network name",
            command: "ADD",
            stdin: with(&|c| {
                if let Some(o) = c.as_object_mut() {
                    o.remove("name");
                }
            }),
            ifname: "eth0",
            container: "c1",
            codes: &[7],
        },
        Case {
            what: "bad network name",
            command: "ADD",
            stdin: with(&|c| c["name"] = json!("no spaces allowed")),
            ifname: "eth0",
            container: "c1",
            codes: &[7],
        },
        Case {
            what: "interface name too long",
            command: "ADD",
            stdin: good.to_string(),
            ifname: "ifnamewaytoolong0",
            container: "c1",
            codes: &[4],
        },
        Case {
            what: "interface name with a slash",
            command: "ADD",
            stdin: good.to_string(),
            ifname: "eth/0",
            container: "c1",
            codes: &[4],
        },
        Case {
            what: "empty container id",
            command: "ADD",
            stdin: good.to_string(),
            ifname: "eth0",
            container: "",
            codes: &[4],
        },
        Case {
            what: "container id with bad characters",
            command: "ADD",
            stdin: good.to_string(),
            ifname: "eth0",
            container: "bad id!",
            codes: &[4],
        },
        Case {
            what: "unknown command",
            command: "FROBNICATE",
            stdin: good.to_string(),
            ifname: "eth0",
            container: "c1",
            codes: &[4],
        },
        Case {
            what: "CHECK below 0.4.0",
            command: "CHECK",
            stdin: with(&|c| {
                c["cniVersion"] = json!("0.3.1");
                c["prevResult"] = json!({"cniVersion": "0.3.1"});
            }),
            ifname: "eth0",
            container: "c1",
            codes: &[1],
        },
        Case {
            what: "GC below 1.1.0",
            command: "GC",
            stdin: good.to_string(),
            ifname: "eth0",
            container: "c1",
            codes: &[1],
        },
        Case {
            what: "STATUS below 1.1.0",
            command: "STATUS",
            stdin: good.to_string(),
            ifname: "eth0",
            container: "c1",
            codes: &[1],
        },
    ];
    if matches!(plugin, "bridge" | "ptp" | "tuning" | "tap" | "macvlan") {
        v.push(Case {
            what: "mtu of the wrong type",
            command: "ADD",
            stdin: with(&|c| c["mtu"] = json!("large")),
            ifname: "eth0",
            container: "c1",
            codes: &[7],
        });
    }
    if matches!(plugin, "bridge" | "ptp" | "tap" | "macvlan") {
        v.push(Case {
            what: "ipam of the wrong type",
            command: "ADD",
            stdin: with(&|c| c["ipam"] = json!(5)),
            ifname: "eth0",
            container: "c1",
            codes: &[6, 7],
        });
        v.push(Case {
            what: "IPAM plugin type with a path",
            command: "ADD",
            stdin: with(&|c| c["ipam"]["type"] = json!("../../bin/sh")),
            ifname: "eth0",
            container: "c1",
            codes: &[7],
        });
    }
    if matches!(
        plugin,
        "portmap" | "firewall" | "tuning" | "bandwidth" | "sbr"
    ) {
        v.push(Case {
            what: "garbage prevResult",
            command: "ADD",
            stdin: with(&|c| c["prevResult"] = json!({"ips": "nope"})),
            ifname: "eth0",
            container: "c1",
            codes: &[6, 7],
        });
    }
    v
}

#[test]
fn every_plugin_answers_malformed_input_with_the_spec_code() {
    let bin = PluginDir::install(Path::new(env!("CARGO_BIN_EXE_rcni")));
    let names = plugins(bin.path());
    assert!(names.len() >= 10, "{names:?}");
    let node = TestNs::new("ern");
    let pod = TestNs::new("erp");
    // The master for macvlan's base config.
    node.exec(&[
        "ip", "link", "add", "ermv0", "type", "veth", "peer", "name", "ermv1",
    ]);
    node.exec(&["ip", "link", "set", "ermv0", "up"]);
    node.exec(&["ip", "link", "set", "ermv1", "up"]);
    let links_before = node.link_names();
    let pod_links_before = pod.link_names();
    let data = TempDir::new("errors");
    let mut failures = Vec::new();
    for plugin in &names {
        for case in cases(plugin, data.path()) {
            let mut call = Call::new(case.command, case.container, &pod.path(), &case.stdin)
                .ifname(case.ifname);
            if case.container.is_empty() {
                call.container_id = String::new();
            }
            let out = run_plugin(bin.path(), plugin, &call, Some(node.ns()));
            let parsed: Option<Value> = serde_json::from_str(&out.stdout).ok();
            let ok = out.code != 0
                && parsed.as_ref().is_some_and(|v| {
                    v["cniVersion"].is_string()
                        && v["msg"].as_str().is_some_and(|m| !m.is_empty())
                        && v["code"].as_u64().is_some_and(|c| case.codes.contains(&c))
                });
            if !ok {
                failures.push(format!(
                    "{plugin}: {} → exit {} stdout {:?} (want code {:?})",
                    case.what, out.code, out.stdout, case.codes
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(node.link_names(), links_before, "no link left in the node");
    assert_eq!(
        pod.link_names(),
        pod_links_before,
        "no link left in the pod"
    );
    let left: Vec<_> = std::fs::read_dir(data.path().join("ipam").join("errnet"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("10."))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "no address allocated: {left:?}");
}

/// `rcni plugin NAME` with an unknown name is a usage error, with nothing
/// on stdout (a runtime would otherwise try to parse it). Panics becoming
/// code 999 are covered in cni-skel's error table.
#[test]
fn unknown_plugin_name_is_a_usage_error() {
    let bin = PluginDir::install(Path::new(env!("CARGO_BIN_EXE_rcni")));
    let out = std::process::Command::new(bin.path().join("rcni"))
        .args(["plugin", "no-such-plugin"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing on stdout");
}

/// Run by hand (no CNI_COMMAND, or an empty one, as the reference treats
/// both): the about text on stderr, nothing on stdout, exit 0.
#[test]
fn without_a_command_a_plugin_explains_itself() {
    let bin = PluginDir::install(Path::new(env!("CARGO_BIN_EXE_rcni")));
    for empty in [false, true] {
        let mut cmd = std::process::Command::new(bin.path().join("bridge"));
        cmd.env_clear().stdin(std::process::Stdio::null());
        if empty {
            cmd.env("CNI_COMMAND", "");
        }
        let out = cmd.output().expect("run bridge");
        assert_eq!(out.status.code(), Some(0), "empty={empty}");
        assert!(out.stdout.is_empty(), "empty={empty}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("CNI protocol versions supported"), "{err}");
    }
}

#[test]
fn version_works_with_podman_style_dummy_env() {
    // Podman asks every plugin for VERSION with placeholder values.
    let bin = PluginDir::install(Path::new(env!("CARGO_BIN_EXE_rcni")));
    for plugin in plugins(bin.path()) {
        let call = Call::new(
            "VERSION",
            "dummy",
            Path::new("dummy"),
            r#"{"cniVersion":"1.0.0"}"#,
        )
        .ifname("dummy");
        let v = run_plugin(bin.path(), &plugin, &call, None).ok();
        assert_eq!(
            v["supportedVersions"].as_array().map(Vec::len),
            Some(if plugin == "bandwidth" { 5 } else { 7 }),
            "{plugin}: {v}"
        );
    }
}

/// A field of the wrong type is named in the message, whichever layer
/// (common config, IPAM config, plugin config) catches it.
#[test]
fn wrong_typed_fields_are_named() {
    let bin = PluginDir::install(Path::new(env!("CARGO_BIN_EXE_rcni")));
    let node = TestNs::new("erf");
    let pod = TestNs::new("erq");
    let data = TempDir::new("errnames");
    let mut failures = Vec::new();
    for plugin in plugins(bin.path()) {
        let mut cases: Vec<(Value, &str)> = Vec::new();
        let mut c = base(&plugin, "1.0.0", data.path());
        c["cniVersion"] = json!(1);
        cases.push((c, "cniVersion"));
        let mut c = base(&plugin, "1.0.0", data.path());
        c["dns"] = json!({"nameservers": "8.8.8.8"});
        cases.push((c, "dns.nameservers"));
        if c_has_ipam(&plugin) {
            let mut c = base(&plugin, "1.0.0", data.path());
            c["ipam"]["routes"] = json!("x");
            cases.push((c, "ipam.routes"));
        }
        for (conf, field) in cases {
            let call = Call::new("ADD", "ctr-names", &pod.path(), &conf.to_string());
            let out = run_plugin(bin.path(), &plugin, &call, Some(node.ns()));
            let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
            let msg = v["msg"].as_str().unwrap_or("");
            if out.code == 0 || !msg.contains(field) || !matches!(v["code"].as_u64(), Some(6 | 7)) {
                failures.push(format!("{plugin}: {field}: {}", out.stdout.trim()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn c_has_ipam(plugin: &str) -> bool {
    // (macvlan reads its IPAM config only once its master is found.)
    matches!(plugin, "bridge" | "ptp" | "host-local" | "static" | "tap")
}

/// Each plugin's optional fields with a value of a clearly wrong type
/// (a number where text or a switch is expected, text where a number,
/// a list or an object is expected).
fn optional_fields(plugin: &str) -> Vec<(&'static str, Value)> {
    let (b, n, s, a, o) = (json!(5), json!("x"), json!(5), json!("x"), json!(5));
    let mut f: Vec<(&'static str, Value)> = vec![("capabilities", o.clone()), ("dns", o.clone())];
    let mut add = |names: &[&'static str], wrong: &Value| {
        f.extend(names.iter().map(|k| (*k, wrong.clone())));
    };
    match plugin {
        "bridge" => {
            add(
                &[
                    "isGateway",
                    "isDefaultGateway",
                    "forceAddress",
                    "ipMasq",
                    "hairpinMode",
                    "promiscMode",
                    "macspoofchk",
                    "enabledad",
                    "disableContainerInterface",
                    "portIsolation",
                    "preserveDefaultVlan",
                ],
                &b,
            );
            add(&["mtu", "vlan", "vethQueues"], &n);
            add(&["bridge", "ipMasqBackend"], &s);
            add(&["vlanTrunk"], &a);
        }
        "ptp" => {
            add(&["ipMasq"], &b);
            add(&["mtu", "vethQueues"], &n);
            add(&["ipMasqBackend"], &s);
        }
        "macvlan" => {
            add(&["linkInContainer"], &b);
            add(&["mtu", "bcqueuelen"], &n);
            add(&["mode", "mac"], &s);
        }
        "tap" => {
            add(&["multiQueue"], &b);
            add(&["mtu", "owner", "group"], &n);
            add(&["mac", "selinuxContext", "bridge"], &s);
        }
        "tuning" => {
            add(&["promisc", "allmulti"], &b);
            add(&["mtu", "txQLen"], &n);
            add(&["mac"], &s);
            add(&["sysctl"], &o);
        }
        "bandwidth" => add(
            &["ingressRate", "ingressBurst", "egressRate", "egressBurst"],
            &n,
        ),
        "firewall" => add(
            &[
                "backend",
                "iptablesAdminChainName",
                "firewalldZone",
                "ingressPolicy",
            ],
            &s,
        ),
        "host-device" => add(&["hwaddr", "kernelpath", "pciBusID"], &s),
        "portmap" => {
            add(&["snat", "masqAll"], &b);
            add(&["markMasqBit"], &n);
            add(&["externalSetMarkChain"], &s);
            add(&["conditionsV4", "conditionsV6"], &a);
        }
        "sbr" => {
            add(&["table"], &n);
        }
        "ipvlan" => {
            add(&["linkInContainer"], &b);
            add(&["mtu"], &n);
            add(&["mode", "master"], &s);
        }
        "vlan" => {
            add(&["linkInContainer"], &b);
            add(&["mtu"], &n);
        }
        "vrf" => add(&["table"], &n),
        // (cniDir and confDir stay set: null means /var/lib/cni/multus and
        // /etc/cni/multus/net.d; delegates is the network itself.)
        "multus" => {
            add(&["namespaceIsolation", "logToStderr"], &b);
            add(&["readinessTimeoutSeconds", "apiTimeoutSeconds"], &n);
            add(
                &[
                    "kubeconfig",
                    "binDir",
                    "multusNamespace",
                    "globalNamespaces",
                    "readinessindicatorfile",
                    "logFile",
                    "logLevel",
                    "clusterNetwork",
                ],
                &s,
            );
            add(&["defaultNetworks", "systemNamespaces"], &a);
        }
        _ => {}
    }
    f
}

/// Optional fields of the `ipam` section, same shape as above.
fn optional_ipam_fields(plugin: &str) -> Vec<(&'static str, Value)> {
    match plugin {
        "bridge" | "ptp" | "host-local" | "tap" | "macvlan" => vec![
            ("rangeStart", json!(5)),
            ("rangeEnd", json!(5)),
            ("gateway", json!(5)),
            ("resolvConf", json!(5)),
            ("routes", json!("x")),
            ("ranges", json!("x")),
        ],
        "static" => vec![("routes", json!("x")), ("dns", json!(5))],
        _ => vec![],
    }
}

/// JSON `null` reads as "not set" for every optional field of every
/// plugin (the reference's reading), on ADD and DEL; a wrongly typed value
/// for each of those fields is still refused with code 7, naming it.
#[test]
fn null_means_absent_for_every_optional_field() {
    let bin = PluginDir::install(Path::new(env!("CARGO_BIN_EXE_rcni")));
    let node = TestNs::new("nln");
    let pod = TestNs::new("nlp");
    node.exec(&[
        "ip", "link", "add", "ermv0", "type", "veth", "peer", "name", "ermv1",
    ]);
    node.exec(&["ip", "link", "set", "ermv0", "up"]);
    let links_before = node.link_names();
    let data = TempDir::new("errnull");
    let mut failures = Vec::new();
    for plugin in plugins(bin.path()) {
        // The dhcp plugin asks its daemon first; its daemon reads the
        // config through the same decoder (see plugins/dhcp).
        if plugin == "dhcp" {
            continue;
        }
        let mut nulls = base(&plugin, "1.0.0", data.path());
        // `args` and `runtimeConfig` are read only by the plugins that use
        // them (so a wrong type is not refused everywhere), but null must
        // pass everywhere.
        for k in optional_fields(&plugin)
            .into_iter()
            .map(|(k, _)| k)
            .chain(["args", "runtimeConfig"])
        {
            nulls[k] = Value::Null;
        }
        for (k, _) in optional_ipam_fields(&plugin) {
            nulls["ipam"][k] = Value::Null;
        }
        if plugin == "bridge" {
            nulls["dns"] =
                json!({"nameservers": null, "domain": null, "search": null, "options": null});
        }
        let call = Call::new("DEL", "ctr-null", &pod.path(), &nulls.to_string());
        let out = run_plugin(bin.path(), &plugin, &call, Some(node.ns()));
        if out.code != 0 {
            failures.push(format!("{plugin}: DEL with nulls: {}", out.stdout.trim()));
        }
        let wrong = optional_fields(&plugin)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v, false))
            .chain(
                optional_ipam_fields(&plugin)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v, true)),
            );
        for (k, v, in_ipam) in wrong {
            let mut c = base(&plugin, "1.0.0", data.path());
            if in_ipam {
                c["ipam"][&k] = v;
            } else {
                c[&k] = v;
            }
            let call = Call::new("ADD", "ctr-wrong", &pod.path(), &c.to_string());
            let out = run_plugin(bin.path(), &plugin, &call, Some(node.ns()));
            let e: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
            let msg = format!("{} {}", e["msg"], e["details"]);
            if out.code == 0 || !matches!(e["code"].as_u64(), Some(6 | 7)) || !msg.contains(&k) {
                failures.push(format!(
                    "{plugin}: {k} wrongly typed: {}",
                    out.stdout.trim()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // (A bridge ADD refused at its IPAM step keeps the bridge itself, as
    // the reference does; no veth may stay.)
    let mut links_after = node.link_names();
    links_after.retain(|l| l != "cni0");
    assert_eq!(links_after, links_before, "nothing left in the node");

    // And a real ADD in namespaces: bridge with every optional field null.
    let mut c = base("bridge", "1.0.0", data.path());
    c["bridge"] = json!("nlbr0");
    for (k, _) in optional_fields("bridge") {
        if k != "bridge" {
            c[k] = Value::Null;
        }
    }
    for (k, _) in optional_ipam_fields("bridge") {
        c["ipam"][k] = Value::Null;
    }
    let call = Call::new("ADD", "ctr-null-add", &pod.path(), &c.to_string());
    let r = run_plugin(bin.path(), "bridge", &call, Some(node.ns())).ok();
    assert!(
        r["ips"][0]["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("10.203.0.")),
        "{r}"
    );
    assert!(pod.exec(&["ip", "-br", "addr"]).contains("10.203.0."));
    let call = Call::new("DEL", "ctr-null-add", &pod.path(), &c.to_string());
    let out = run_plugin(bin.path(), "bridge", &call, Some(node.ns()));
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(!pod.exec(&["ip", "-br", "addr"]).contains("10.203.0."));
}
