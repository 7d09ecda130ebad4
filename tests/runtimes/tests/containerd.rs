//! containerd 1.6 with its CRI plugin on rcni (bridge with ipMasq →
//! portmap → firewall → tuning → bandwidth), driven by a CRI client
//! playing kubelet, inside a jail (see the crate docs); and `ctr run --cni`.
//!
//! The CRI scenario runs once, in order, and each of its six rows is
//! reported by its own test: ADD, gateway, container ↔ container,
//! published port, DEL (containerd's double DEL: the second
//! StopPodSandbox tears down with an empty netns path), nothing left.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ExecSyncRequest, ImageSpec,
    LinuxPodSandboxConfig, ListPodSandboxRequest, PodSandboxConfig, PodSandboxMetadata,
    PodSandboxStatusRequest, PortMapping, Protocol, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopPodSandboxRequest,
};
use rcni_runtime_tests::check::{self, NodeServer, Rows};
use rcni_runtime_tests::containerd::Containerd;
use rcni_runtime_tests::podman::PodmanEnv;
use rcni_runtime_tests::{Cgroups, Jail, IMAGE};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint, Uri};

const NET: &str = "rcnicri";
const BRIDGE: &str = "rcni-cri0";
const SUBNET: &str = "10.231.8.0/24";
const GW: &str = "10.231.8.1";
const CTR_NET: &str = "rcnictr";
const CTR_BRIDGE: &str = "rcni-ctr0";
const CTR_SUBNET: &str = "10.231.9.0/24";
const CTR_GW: &str = "10.231.9.1";
const NODE_PORT: u16 = 8099;
const HOST_PORT_A: u16 = 18080;
const HOST_PORT_B: u16 = 18081;
/// How long one CRI call may take.
const CRI_TIMEOUT: Duration = Duration::from_secs(120);

static ROWS: OnceLock<Rows> = OnceLock::new();

fn rows() -> &'static Rows {
    ROWS.get_or_init(scenario)
}

#[test]
fn containerd_1_add() {
    rows().assert_row("ADD");
}

#[test]
fn containerd_2_gateway() {
    rows().assert_row("gateway");
}

#[test]
fn containerd_3_container_to_container() {
    rows().assert_row("container<->container");
}

#[test]
fn containerd_4_published_port() {
    rows().assert_row("published port");
}

#[test]
fn containerd_5_del() {
    rows().assert_row("DEL");
}

#[test]
fn containerd_6_nothing_left() {
    rows().assert_row("nothing left");
}

#[test]
fn containerd_7_ctr_run_cni() {
    rows().assert_row("ctr run --cni");
}

fn chain(name: &str, bridge: &str, subnet: &str, gw: &str, state: &Path) -> serde_json::Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": true,
             "stateDir": state.join("bridge"),
             "ipam": {"type": "host-local", "dataDir": state.join("ipam"),
                      "ranges": [[{"subnet": subnet, "gateway": gw}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "firewall"},
            {"type": "tuning", "dataDir": state.join("tuning")},
            {"type": "bandwidth", "ingressRate": 100_000_000u64, "ingressBurst": 1_000_000u64,
             "egressRate": 100_000_000u64, "egressBurst": 1_000_000u64}
        ]
    })
}

/// A blocking CRI client over containerd's unix socket.
struct Cri {
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

macro_rules! cri {
    ($cri:expr, $method:ident, $req:expr) => {{
        let Cri { rt, client } = &mut *$cri;
        rt.block_on(async {
            match tokio::time::timeout(CRI_TIMEOUT, client.$method($req)).await {
                Ok(Ok(r)) => Ok(r.into_inner()),
                Ok(Err(status)) => Err(format!("{}: {}", stringify!($method), status.message())),
                Err(_) => Err(format!(
                    "{}: no answer in {CRI_TIMEOUT:?}",
                    stringify!($method)
                )),
            }
        })
    }};
}

impl Cri {
    fn connect(socket: PathBuf) -> Cri {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let channel = rt
            .block_on(async {
                let endpoint = Endpoint::try_from("http://[::]:50051")
                    .expect("endpoint")
                    .connect_timeout(Duration::from_secs(10));
                tokio::time::timeout(
                    Duration::from_secs(30),
                    endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = socket.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(
                                tokio::net::UnixStream::connect(path).await?,
                            ))
                        }
                    })),
                )
                .await
            })
            .expect("CRI connect timed out")
            .expect("CRI connect");
        Cri {
            rt,
            client: RuntimeServiceClient::new(channel),
        }
    }

    fn exec(&mut self, container: &str, argv: &[&str]) -> Result<String, String> {
        let r = cri!(
            self,
            exec_sync,
            ExecSyncRequest {
                container_id: container.into(),
                cmd: argv.iter().map(|s| s.to_string()).collect(),
                timeout: 20,
            }
        )?;
        if r.exit_code != 0 {
            return Err(format!(
                "{argv:?} exited {}: {}",
                r.exit_code,
                String::from_utf8_lossy(&r.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&r.stdout).trim().to_string())
    }

    fn wget(&mut self, container: &str, addr: &str, port: u16) -> Result<String, String> {
        let url = format!("http://{addr}:{port}/");
        self.exec(container, &["timeout", "10", "wget", "-q", "-O-", &url])
    }
}

/// A pod as kubelet would make it: sandbox with one port mapping, one
/// container serving HTTP with the pod's name.
struct Pod {
    name: String,
    sandbox: String,
    container: String,
    ip: String,
}

fn sandbox_config(jail: &Jail, name: &str, host_port: u16) -> PodSandboxConfig {
    let logs = jail.state().join("pod-logs").join(name);
    std::fs::create_dir_all(&logs).expect("pod log dir");
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "rcni".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: logs.display().to_string(),
        port_mappings: vec![PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: 80,
            host_port: host_port.into(),
            host_ip: String::new(),
        }],
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: jail.cgroup_parent().into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn run_pod(cri: &mut Cri, jail: &Jail, name: &str, host_port: u16) -> Result<Pod, String> {
    let config = sandbox_config(jail, name, host_port);
    let sandbox = cri!(
        cri,
        run_pod_sandbox,
        RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        }
    )?
    .pod_sandbox_id;
    let container = cri!(
        cri,
        create_container,
        CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "web".into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: IMAGE.into(),
                    ..Default::default()
                }),
                command: vec!["sh".into(), "-c".into()],
                args: vec![format!(
                    "echo {name} > /www/index.html && exec httpd -f -p 80 -h /www"
                )],
                log_path: "web.log".into(),
                ..Default::default()
            }),
            sandbox_config: Some(config),
        }
    )?
    .container_id;
    cri!(
        cri,
        start_container,
        StartContainerRequest {
            container_id: container.clone(),
        }
    )?;
    let status = cri!(
        cri,
        pod_sandbox_status,
        PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: false,
        }
    )?;
    let ip = status
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    if !ip.starts_with("10.231.8.") {
        return Err(format!("{name}: address {ip:?} is not in {SUBNET}"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cri.wget(&container, "127.0.0.1", 80) {
            Ok(b) if b == name => break,
            r if Instant::now() > deadline => {
                return Err(format!("{name}: httpd never answered: {r:?}"))
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    Ok(Pod {
        name: name.into(),
        sandbox,
        container,
        ip,
    })
}

fn scenario() -> Rows {
    Rows::scenario("containerd", |rows| {
        // Podman (in the same jail) only builds the image archive.
        let podman = PodmanEnv::in_jail(Jail::new("ctd", Cgroups::Host));
        let jail = podman.jail();
        let archive = jail.state().join("image.tar");
        podman.save_image(&archive).expect("podman save");
        let ctd = Containerd::start(jail, IMAGE, &podman.plugin_log_path());
        ctd.import_image(jail, &archive).expect("ctr images import");
        let state = jail.state().join("plugin-state");
        std::fs::write(
            ctd.cri_conf_dir().join("10-rcni.conflist"),
            chain(NET, BRIDGE, SUBNET, GW, &state).to_string(),
        )
        .expect("CRI conflist");
        std::fs::write(
            jail.etc_cni_net_d().join("10-rcni.conflist"),
            chain(CTR_NET, CTR_BRIDGE, CTR_SUBNET, CTR_GW, &state).to_string(),
        )
        .expect("ctr conflist");
        let ipam = state.join("ipam");
        let node = jail.node();
        let links_before = node.link_names();
        let mut cri = Cri::connect(ctd.socket());
        let suffix = testutil::unique("");
        let (na, nb) = (format!("rcni-a{suffix}"), format!("rcni-b{suffix}"));
        let mut pods: Vec<Pod> = Vec::new();
        let mut host_links: Vec<String> = Vec::new();

        rows.row("ADD", || {
            pods.push(run_pod(&mut cri, jail, &na, HOST_PORT_A)?);
            pods.push(run_pod(&mut cri, jail, &nb, HOST_PORT_B)?);
            if pods[0].ip == pods[1].ip {
                return Err(format!("both pods got {}", pods[0].ip));
            }
            for p in &pods {
                let lease = ipam.join(NET).join(&p.ip);
                let owner = std::fs::read_to_string(&lease)
                    .map_err(|e| format!("{}: no IPAM file {}: {e}", p.name, lease.display()))?;
                if !owner.contains(&p.sandbox) {
                    return Err(format!("{}: {} holds {owner:?}", p.name, lease.display()));
                }
            }
            host_links = node
                .link_names()
                .into_iter()
                .filter(|l| !links_before.contains(l) && l != BRIDGE)
                .collect();
            Ok(format!(
                "{} {}, {} {}; node links {:?}",
                na, pods[0].ip, nb, pods[1].ip, host_links
            ))
        });
        let added = rows.passed("ADD");
        if !added {
            let log = ctd.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "containerd log (last lines, newest first):\n{}",
                tail.join("\n")
            );
        }

        rows.row("gateway", || {
            if !added {
                return Err("not reached: ADD failed".into());
            }
            let _server = NodeServer::start(node, NODE_PORT, "node");
            for p in &pods {
                check::expect_body(
                    &format!("{} -> {GW}:{NODE_PORT}", p.name),
                    cri.wget(&p.container, GW, NODE_PORT),
                    "node",
                )?;
            }
            Ok(format!("both pods reach the node at {GW}"))
        });

        rows.row("container<->container", || {
            if !added {
                return Err("not reached: ADD failed".into());
            }
            let (a, b) = (&pods[0], &pods[1]);
            check::expect_body("a -> b", cri.wget(&a.container, &b.ip, 80), &b.name)?;
            check::expect_body("b -> a", cri.wget(&b.container, &a.ip, 80), &a.name)?;
            Ok(format!("{} <-> {} over HTTP", a.ip, b.ip))
        });

        rows.row("published port", || {
            if !added {
                return Err("not reached: ADD failed".into());
            }
            let (a, b) = (&pods[0], &pods[1]);
            check::expect_body(
                "node -> 127.0.0.1:HOST_PORT_A",
                check::http_get(node, "127.0.0.1", HOST_PORT_A),
                &a.name,
            )?;
            check::expect_body(
                "node -> bridge address:HOST_PORT_B",
                check::http_get(node, GW, HOST_PORT_B),
                &b.name,
            )?;
            check::expect_body(
                "b -> bridge address:HOST_PORT_A",
                cri.wget(&b.container, GW, HOST_PORT_A),
                &a.name,
            )?;
            Ok(format!(
                "127.0.0.1:{HOST_PORT_A} and {GW}:{HOST_PORT_B} from the node, {GW}:{HOST_PORT_A} from the other pod"
            ))
        });

        rows.row("DEL", || {
            if pods.is_empty() {
                return Err("not reached: no pod was started".into());
            }
            for p in &pods {
                // kubelet stops a sandbox more than once; containerd's
                // second teardown passes an empty netns path.
                for _ in 0..2 {
                    cri!(
                        &mut cri,
                        stop_pod_sandbox,
                        StopPodSandboxRequest {
                            pod_sandbox_id: p.sandbox.clone(),
                        }
                    )?;
                }
                cri!(
                    &mut cri,
                    remove_pod_sandbox,
                    RemovePodSandboxRequest {
                        pod_sandbox_id: p.sandbox.clone(),
                    }
                )?;
            }
            let listed = cri!(&mut cri, list_pod_sandbox, ListPodSandboxRequest { filter: None })?;
            for p in &pods {
                if listed.items.iter().any(|s| s.id == p.sandbox) {
                    return Err(format!("{}: sandbox still listed", p.name));
                }
                if ipam.join(NET).join(&p.ip).exists() {
                    return Err(format!("{}: {} still allocated", p.name, p.ip));
                }
            }
            let log = podman.plugin_log();
            let mut seen = Vec::new();
            for p in &pods {
                let dels: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("bridge DEL") && l.contains(&p.sandbox))
                    .collect();
                let with_netns = dels.iter().filter(|l| !l.ends_with("netns=")).count();
                let without = dels.iter().filter(|l| l.ends_with("netns=")).count();
                if with_netns == 0 || without == 0 {
                    return Err(format!(
                        "{}: bridge DEL with a netns {with_netns}x, with an empty netns {without}x:\n{log}",
                        p.name
                    ));
                }
                seen.push(format!("{}: {with_netns}+{without}", p.name));
            }
            if let Some(l) = log.lines().find(|l| l.contains(" error: ")) {
                return Err(format!("a plugin reported an error: {l}"));
            }
            Ok(format!(
                "StopPodSandbox x2 + RemovePodSandbox; bridge DELs with netns + with empty netns: {}",
                seen.join(", ")
            ))
        });

        rows.row("nothing left", || {
            if pods.is_empty() {
                return Err("not reached: no pod was started".into());
            }
            let mut needles: Vec<String> = Vec::new();
            for p in &pods {
                needles.extend([
                    p.sandbox.clone(),
                    p.container.clone(),
                    p.name.clone(),
                    p.ip.clone(),
                ]);
            }
            needles.extend(host_links.iter().cloned());
            let cache = jail.cni_cache();
            let found = check::leftovers(jail, &needles, &[&cache, &state]);
            if !found.is_empty() {
                return Err(found.join("\n"));
            }
            let netns = check::jail_netns_files(jail);
            if !netns.is_empty() {
                return Err(format!("netns files left in the jail: {netns:?}"));
            }
            Ok(format!(
                "no link, address, route, nft/iptables rule, IPAM, cache or state file names {} needles",
                needles.len()
            ))
        });

        rows.row("ctr run --cni", || {
            let _server = NodeServer::start(node, NODE_PORT, "node");
            let links_before = node.link_names();
            let id = format!("rcni-ctr{suffix}");
            let cgroup = format!("{}/{id}", jail.cgroup_parent());
            let script = format!(
                "ip -4 -o addr show eth0 && timeout 10 wget -q -O- http://{CTR_GW}:{NODE_PORT}/"
            );
            let out = ctd
                .ctr(
                    jail,
                    &[
                        "-n",
                        "k8s.io",
                        "run",
                        "--rm",
                        "--cni",
                        "--snapshotter",
                        "native",
                        "--cgroup",
                        &cgroup,
                        IMAGE,
                        &id,
                        "sh",
                        "-c",
                        &script,
                    ],
                )
                .ok()?;
            let ip = out
                .split_whitespace()
                .find_map(|w| w.strip_suffix("/24").filter(|a| a.starts_with("10.231.9.")))
                .ok_or_else(|| format!("no address from {CTR_SUBNET} in: {out}"))?
                .to_string();
            if out.lines().last().map(str::trim) != Some("node") {
                return Err(format!("the gateway did not answer: {out}"));
            }
            let new_links: Vec<String> = node
                .link_names()
                .into_iter()
                .filter(|l| !links_before.contains(l) && l != CTR_BRIDGE)
                .collect();
            let mut needles = vec![format!("k8s.io-{id}"), ip.clone()];
            needles.extend(new_links);
            let cache = jail.cni_cache();
            let found = check::leftovers(jail, &needles, &[&cache, &state]);
            if !found.is_empty() {
                return Err(format!("after ctr run --rm: {}", found.join("\n")));
            }
            Ok(format!(
                "container got {ip}, reached the node at {CTR_GW}; --rm left nothing"
            ))
        });
        drop(cri);
        drop(ctd);
    })
}
