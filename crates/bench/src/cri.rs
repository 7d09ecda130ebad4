//! containerd's CRI with rcni and with the reference plugins: 50 pod
//! sandboxes created at once through the CRI API (as kubelet does, over
//! containerd's gRPC socket), then stopped at once, then removed at once;
//! the wall time of each wave. Each side has its own jail of the runtime
//! test harness (node namespace, containerd, mounts, PID namespace), and
//! the sides alternate round by round.

use super::Options;
use crate::report::{Figure, Stats};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    LinuxPodSandboxConfig, PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest,
    RunPodSandboxRequest, StopPodSandboxRequest,
};
use rcni_runtime_tests::containerd::Containerd;
use rcni_runtime_tests::podman::PodmanEnv;
use rcni_runtime_tests::{Cgroups, Jail, IMAGE};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint, Uri};

const CALL_TIMEOUT: Duration = Duration::from_secs(120);
const WAVE: usize = 50;

type Client = RuntimeServiceClient<Channel>;

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    // Unwinds: the jails (containerd, sandboxes, mounts) are dropped.
    panic!("cri: {what}: {e}");
}

fn connect(rt: &tokio::runtime::Runtime, socket: PathBuf) -> Client {
    let channel = rt.block_on(async {
        let endpoint = match Endpoint::try_from("http://[::]:50051") {
            Ok(e) => e.connect_timeout(Duration::from_secs(10)),
            Err(e) => fail("endpoint", e),
        };
        let connecting = endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }));
        match tokio::time::timeout(Duration::from_secs(30), connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => fail("connect", e),
            Err(_) => fail("connect", "timed out"),
        }
    });
    RuntimeServiceClient::new(channel)
}

struct Side {
    label: &'static str,
    // Field order is drop order: containerd goes before its jail.
    _ctd: Containerd,
    env: PodmanEnv,
    client: Client,
}

fn conflist(env: &PodmanEnv, octet: u8) -> serde_json::Value {
    let state = env.plugin_state_dir();
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "benchcri",
        "plugins": [
            {"type": "bridge", "bridge": "cni-bench0", "isGateway": true, "ipMasq": true,
             "stateDir": state,
             "ipam": {"type": "host-local", "dataDir": state.join("ipam"),
                      "ranges": [[{"subnet": format!("10.{octet}.0.0/16")}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "firewall"},
            {"type": "tuning"}
        ]
    })
}

fn side(
    label: &'static str,
    tag: &str,
    octet: u8,
    o: &Options,
    rt: &tokio::runtime::Runtime,
) -> Side {
    let env = PodmanEnv::in_jail(Jail::new(tag, Cgroups::Host));
    if label == "reference" {
        if let Some(r) = &o.reference {
            if let Err(e) = super::runtimes::use_reference_plugins(&env, r) {
                fail("reference plugins", e);
            }
        }
    }
    let jail = env.jail();
    let archive = jail.state().join("image.tar");
    if let Err(e) = env.save_image(&archive) {
        fail("podman save", e);
    }
    let ctd = Containerd::start(jail, IMAGE, &env.plugin_log_path());
    if let Err(e) = ctd.import_image(jail, &archive) {
        fail("ctr images import", e);
    }
    if let Err(e) = std::fs::write(
        ctd.cri_conf_dir().join("10-bench.conflist"),
        conflist(&env, octet).to_string(),
    ) {
        fail("conflist", e);
    }
    let client = connect(rt, ctd.socket());
    Side {
        label,
        _ctd: ctd,
        env,
        client,
    }
}

fn sandbox_config(s: &Side, name: &str) -> PodSandboxConfig {
    let logs = s.env.jail().state().join("pod-logs").join(name);
    if let Err(e) = std::fs::create_dir_all(&logs) {
        fail("pod log dir", e);
    }
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "bench".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: logs.display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: s.env.jail().cgroup_parent().into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Runs `make(k)` for k in 0..WAVE at once; the wall time and the answers.
fn wave<T, F, Fut>(rt: &tokio::runtime::Runtime, what: &str, make: F) -> (Duration, Vec<T>)
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send + 'static,
{
    rt.block_on(async {
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for k in 0..WAVE {
            let call = make(k);
            set.spawn(async move { (k, tokio::time::timeout(CALL_TIMEOUT, call).await) });
        }
        let mut out: Vec<Option<T>> = (0..WAVE).map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((k, Ok(Ok(r)))) => out[k] = Some(r.into_inner()),
                Ok((_, Ok(Err(status)))) => fail(what, status.message()),
                Ok((_, Err(_))) => fail(what, "no answer in time"),
                Err(e) => fail(what, e),
            }
        }
        (start.elapsed(), out.into_iter().flatten().collect())
    })
}

pub fn cri(o: &Options) -> Vec<Figure> {
    if !std::path::Path::new("/usr/bin/containerd").exists() {
        eprintln!("cri: no containerd installed; skipped");
        return Vec::new();
    }
    std::env::set_var("RCNI_BIN", &o.rcni);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail("tokio", e),
    };
    let mut sides = vec![side("rcni", "bcr", 214, o, &rt)];
    if o.reference.is_some() {
        sides.push(side("reference", "bcf", 215, o, &rt));
    }
    let rounds = if o.quick { 1 } else { 4 };
    // [side][run, stop, remove] wall times.
    let mut times: Vec<[Vec<Duration>; 3]> = sides.iter().map(|_| Default::default()).collect();
    for round in 0..rounds + 1 {
        let n = sides.len();
        for j in 0..n {
            let idx = (round + j) % n;
            let s = &sides[idx];
            let configs: Vec<PodSandboxConfig> = (0..WAVE)
                .map(|k| sandbox_config(s, &format!("b{round}x{k}")))
                .collect();
            let (run, resp) = wave(&rt, "RunPodSandbox", |k| {
                let mut c = s.client.clone();
                let req = RunPodSandboxRequest {
                    config: Some(configs[k].clone()),
                    runtime_handler: String::new(),
                };
                async move { c.run_pod_sandbox(req).await }
            });
            let ids: Vec<String> = resp.into_iter().map(|r| r.pod_sandbox_id).collect();
            let (stop, _) = wave(&rt, "StopPodSandbox", |k| {
                let mut c = s.client.clone();
                let req = StopPodSandboxRequest {
                    pod_sandbox_id: ids[k].clone(),
                };
                async move { c.stop_pod_sandbox(req).await }
            });
            let (remove, _) = wave(&rt, "RemovePodSandbox", |k| {
                let mut c = s.client.clone();
                let req = RemovePodSandboxRequest {
                    pod_sandbox_id: ids[k].clone(),
                };
                async move { c.remove_pod_sandbox(req).await }
            });
            // Round 0 warms both sides up (image unpack, first bridge).
            if round > 0 {
                times[idx][0].push(run);
                times[idx][1].push(stop);
                times[idx][2].push(remove);
            }
        }
    }
    let names = [
        "containerd CRI: 50 RunPodSandbox at once (wall time of the wave)",
        "containerd CRI: 50 StopPodSandbox at once (wall time of the wave)",
        "containerd CRI: 50 RemovePodSandbox at once (wall time of the wave)",
    ];
    let mut out = Vec::new();
    for (w, name) in names.iter().enumerate() {
        let mut f = Figure::new(name, "ms");
        for (s, t) in sides.iter().zip(&times) {
            f.set(s.label, Stats::from_durations(&t[w]));
        }
        out.push(f);
    }
    out
}
