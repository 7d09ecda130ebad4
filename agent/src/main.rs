//! `rcni-agent`: lists the node source (every interval, and at once when
//! its watch reports a change), and per round writes the node's
//! CNI config, installs the plugins (once per process) and reconciles the
//! data path. SIGTERM/SIGINT end the loop; routes, the VXLAN device and
//! the masquerade rules stay, so pods keep working while the agent is
//! restarted or upgraded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rcni_agent::model::NodeSource;
use std::sync::Arc;

use rcni_agent::{args, cniconf, datapath, health, safety, source};

static STOP: AtomicBool = AtomicBool::new(false);

/// The first retry of a failed round.
const MIN_RETRY: Duration = Duration::from_secs(1);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

macro_rules! log {
    ($($t:tt)*) => { eprintln!("rcni-agent: {}", format!($($t)*)) };
}

/// What one round ended with.
enum Round {
    /// Everything set up.
    Done,
    /// Not ready yet (node or its pod CIDR missing) or something failed;
    /// retried next round.
    Retry,
}

struct Agent {
    args: args::Args,
    source: Box<dyn NodeSource>,
    installed: bool,
    waiting_logged: bool,
    /// The refusals last logged: each set is logged once, when it changes.
    refused_logged: Vec<String>,
    status: Arc<health::Status>,
}

impl Agent {
    fn maintain(&mut self) {
        match self.source.maintain() {
            Ok(lines) => {
                for l in lines {
                    log!("{l}");
                }
            }
            Err(e) => log!("cannot keep the node registered: {e}"),
        }
    }

    fn round(&mut self) -> Round {
        self.maintain();
        let nodes = match self.source.nodes() {
            Ok(n) => n,
            Err(e) => {
                log!("cannot list nodes: {e}");
                return Round::Retry;
            }
        };
        let me = nodes.iter().find(|n| n.name == self.args.node_name);
        let Some(me) = me.filter(|m| !m.pod_cidrs.is_empty()) else {
            if !self.waiting_logged || self.args.once {
                log!(
                    "waiting for node {:?} to have a pod CIDR in {}",
                    self.args.node_name,
                    self.source.describe()
                );
                self.waiting_logged = true;
            }
            return Round::Retry;
        };
        self.waiting_logged = false;
        // This node's own CIDRs go onto the pods' bridge and into routes and
        // masquerade: one the host already uses (the uplink's subnet, a
        // route someone made) is refused and nothing is done: no binaries
        // installed, no conflist, route or rule.
        let own_problems: Vec<String> = match datapath::own_facts() {
            Ok(facts) => me
                .pod_cidrs
                .iter()
                .map(ipnet::IpNet::trunc)
                .filter_map(|c| {
                    safety::own_cidr_problem(&c, &self.args.datapath.cluster_cidr, &facts)
                        .map(|why| format!("this node's pod CIDR {c} {why}"))
                })
                .collect(),
            Err(e) => vec![format!("cannot read this host's addresses and routes: {e}")],
        };
        if !own_problems.is_empty() {
            for p in &own_problems {
                log!("refused: {p}; nothing reconciled");
            }
            self.status.ready.store(false, Ordering::Relaxed);
            return Round::Retry;
        }
        if !self.installed {
            let rcni = self.args.rcni.clone().unwrap_or_else(cniconf::default_rcni);
            match cniconf::install(&rcni, &self.args.cni_bin_dir) {
                Ok(msg) => {
                    log!("{msg}");
                    self.installed = true;
                }
                Err(e) => {
                    log!("{e}");
                    return Round::Retry;
                }
            }
        }
        let t0 = Instant::now();
        let reconciled = datapath::reconcile(&self.args.node_name, &nodes, &self.args.datapath);
        let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.status.last_reconcile_us.store(us, Ordering::Relaxed);
        self.status
            .total_reconcile_us
            .fetch_add(us, Ordering::Relaxed);
        let report = match reconciled {
            Ok(r) => r,
            Err(e) => {
                log!("reconcile failed: {e}");
                return Round::Retry;
            }
        };
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        self.status
            .peers_host_gw
            .store(count(report.peers_host_gw), Ordering::Relaxed);
        self.status
            .peers_vxlan
            .store(count(report.peers_vxlan), Ordering::Relaxed);
        for c in &report.changes {
            log!("{c}");
        }
        for e in &report.errors {
            log!("error: {e}");
        }
        let mut refused = report.refused.clone();
        refused.extend(self.source.skipped());
        refused.sort();
        if refused != self.refused_logged || self.args.once {
            for r in &refused {
                log!("refused: {r}");
            }
            if refused.is_empty() && !self.refused_logged.is_empty() {
                log!("no node entry refused any more");
            }
            self.status.refused.store(
                u64::try_from(refused.len()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            self.refused_logged = refused;
        }
        let conf = cniconf::render(&me.pod_cidrs, report.pod_mtu(self.args.datapath.backend));
        match cniconf::write_if_changed(&self.args.cni_conf_dir, &conf) {
            Ok(true) => {
                log!(
                    "wrote {}",
                    self.args.cni_conf_dir.join(cniconf::FILE_NAME).display()
                );
                self.status.ready.store(true, Ordering::Relaxed);
            }
            Ok(false) => self.status.ready.store(true, Ordering::Relaxed),
            Err(e) => {
                log!(
                    "cannot write {}: {e}",
                    self.args.cni_conf_dir.join(cniconf::FILE_NAME).display()
                );
                return Round::Retry;
            }
        }
        if self.args.once {
            log!(
                "reconciled {} nodes via {}: {} changes",
                nodes.len(),
                report.uplink,
                report.changes.len()
            );
        }
        if report.errors.is_empty() {
            Round::Done
        } else {
            Round::Retry
        }
    }
}

/// `--uninstall`: the agent's data path and its conflist off this node.
/// The node record (etcd) goes when its lease runs out; the plugins stay,
/// since other networks of the node may use them.
fn uninstall(args: &args::Args) -> i32 {
    let mut failed = false;
    match datapath::uninstall() {
        Ok(report) => {
            for c in &report.changes {
                log!("{c}");
            }
            for e in &report.errors {
                log!("error: {e}");
            }
            failed |= !report.errors.is_empty();
        }
        Err(e) => {
            log!("error: {e}");
            failed = true;
        }
    }
    let conf = args.cni_conf_dir.join(cniconf::FILE_NAME);
    match rcni_os::remove_file(&conf) {
        Ok(true) => log!("removed {}", conf.display()),
        Ok(false) => {}
        Err(e) => {
            log!("error: cannot remove {}: {e}", conf.display());
            failed = true;
        }
    }
    log!(
        "uninstalled; the plugins in {} stay",
        args.cni_bin_dir.display()
    );
    i32::from(failed)
}

fn main() {
    args::drop_empty_env();
    let args = match args::parse_from(std::env::args_os(), std::env::var("NODE_NAME").ok()) {
        Ok(a) => a,
        // Help and version on stdout with status 0; errors on stderr, 2.
        Err(e) => e.exit(),
    };
    if args.uninstall {
        std::process::exit(uninstall(&args));
    }
    install_signal_handlers();
    let allocation = (!args.node_cidr_mask_size.is_empty()).then(|| source::etcd::Allocation {
        node_name: args.node_name.clone(),
        addresses: args.node_ip.clone(),
        pools: args.pools(),
        lease_ttl: args.lease_ttl,
        prefer: cniconf::pod_cidrs_in(&args.cni_conf_dir),
    });
    let source = match source::open_with(&args.source, args.insecure_http_token, allocation) {
        Ok(s) => s,
        Err(e) => {
            log!("{e}");
            std::process::exit(1);
        }
    };
    log!(
        "node {:?}, source {}, backend {:?}",
        args.node_name,
        source.describe(),
        args.datapath.backend
    );
    // The loop checks in at least every 100 ms; a round may take a while
    // (a source timing out per endpoint).
    let status = health::Status::new(Duration::from_secs(120));
    status.beat();
    if let Some(addr) = args.health_addr {
        match health::serve(addr, status.clone()) {
            Ok(bound) => log!("serving /healthz, /readyz and /metrics on {bound}"),
            Err(e) => {
                log!("cannot serve health on {addr}: {e}");
                std::process::exit(1);
            }
        }
    }
    let mut agent = Agent {
        args,
        source,
        installed: false,
        waiting_logged: false,
        refused_logged: Vec::new(),
        status,
    };
    // Changes from a watch start a round at once; the interval stays the
    // safety net (a full list every round).
    let changes = if agent.args.once {
        None
    } else {
        agent.source.watch()
    };
    let mut retry = MIN_RETRY;
    loop {
        let r = agent.round();
        let counter = match r {
            Round::Done => &agent.status.rounds_ok,
            Round::Retry => &agent.status.rounds_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        agent.status.beat();
        if agent.args.once {
            std::process::exit(match r {
                Round::Done => 0,
                Round::Retry => 1,
            });
        }
        // A failed round (source unreachable, node not ready, a peer not
        // routed) is retried with back-off, 1 s doubling up to the
        // interval: a change the watch reported to a round whose list then
        // failed must not wait for the next full resync.
        let wait = match r {
            Round::Done => {
                retry = MIN_RETRY;
                agent.args.interval
            }
            Round::Retry => {
                let w = retry.min(agent.args.interval);
                retry = (retry * 2).min(agent.args.interval);
                w
            }
        };
        let until = Instant::now() + wait;
        'wait: while Instant::now() < until {
            agent.status.beat();
            agent.maintain();
            if STOP.load(Ordering::SeqCst) {
                log!("stopping; routes and rules stay in place");
                return;
            }
            // Wait for a change from the watch (a round starts at once)
            // or 100 ms, whichever comes first.
            let tick = Duration::from_millis(100);
            let first = match &changes {
                Some(rx) => match rx.recv_timeout(tick) {
                    Ok(reason) => Some(reason),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        std::thread::sleep(tick);
                        None
                    }
                },
                None => {
                    std::thread::sleep(tick);
                    None
                }
            };
            if let (Some(first), Some(rx)) = (first, &changes) {
                for reason in std::iter::once(first).chain(rx.try_iter()) {
                    if !reason.is_empty() {
                        log!("{reason}");
                    }
                }
                break 'wait;
            }
        }
        if STOP.load(Ordering::SeqCst) {
            log!("stopping; routes and rules stay in place");
            return;
        }
    }
}
