//! `dhcp daemon`: holds the leases (one maintenance thread each) and
//! answers the plugin over a unix socket, one thread per connection.

use crate::lease::{self, Cmd, RealClock, Shared, State};
use crate::link::LinkExchange;
use crate::options::{self, NetConf};
use crate::proto::{Lease, Method, Reply, Request, MAX_LINE};
use crate::store::{Record, Store};
use crate::Exchange;
use cni_spec::{Error, ErrorCode};
use kit::os;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The daemon's command-line flags (the reference's names).
#[derive(Debug, Clone)]
pub struct Opts {
    /// Where the daemon listens (`-socketpath`; empty: the default path).
    pub socket_path: String,
    /// Where it writes its pid (`-pidfile`; empty: nowhere).
    pub pidfile: String,
    /// Prefix of the socket and netns paths (`-hostprefix`), for a daemon
    /// that sees the host's filesystem under a mount point.
    pub hostprefix: String,
    /// Ask servers to broadcast their answers (`-broadcast`).
    pub broadcast: bool,
    /// How long one exchange waits for the server (`-timeout`).
    pub timeout: Duration,
    /// Cap of the pause between exchanges (`-resendmax`).
    pub resend_max: Duration,
    /// How long an ADD keeps starting new DHCP exchanges after failed ones
    /// (`-resendtimeout`, the reference's default 208 s): no more tries
    /// once it has passed. Each exchange waits `timeout` for the server;
    /// between exchanges the pause doubles from 2 s up to `resend_max`.
    pub resend_timeout: Duration,
    /// Mode of the socket the daemon binds (`-socketmode`, octal): root
    /// only unless configured otherwise.
    pub socket_mode: u32,
    /// Connections served at once (`-maxconns`); more are refused at once.
    pub max_conns: usize,
    /// How long a connection may take to send its request line
    /// (`-readtimeout`); an idle client is then closed.
    pub read_timeout: Duration,
    /// Where leases are kept across restarts (`-statedir`); empty: the
    /// directory `dhcp-leases` beside the socket (on /run by default: a
    /// reboot ends the pods, and their leases with them).
    pub state_dir: String,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            socket_path: String::new(),
            pidfile: String::new(),
            hostprefix: String::new(),
            broadcast: false,
            timeout: Duration::from_secs(10),
            resend_max: Duration::from_secs(62),
            resend_timeout: DEFAULT_RESEND_TIMEOUT,
            socket_mode: 0o600,
            max_conns: 128,
            read_timeout: Duration::from_secs(10),
            state_dir: String::new(),
        }
    }
}

/// The reference's `-resendtimeout` default: its fast resends plus the
/// backoff ones.
pub const DEFAULT_RESEND_TIMEOUT: Duration = Duration::from_secs(208);

/// A Go duration: "10s", "1m30s", "500ms", "1.5h".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[u..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// Go `flag` syntax: `-name value`, `-name=value`, `--name`; booleans alone.
pub fn parse_flags(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let Some(flag) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            return Err(format!("unexpected argument {a:?}"));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        if name == "broadcast" {
            o.broadcast = match inline.as_deref() {
                None | Some("true") | Some("1") | Some("t") | Some("T") | Some("TRUE") => true,
                Some("false") | Some("0") | Some("f") | Some("F") | Some("FALSE") => false,
                Some(v) => return Err(format!("invalid boolean value {v:?} for -broadcast")),
            };
            i += 1;
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                args.get(i)
                    .cloned()
                    .ok_or_else(|| format!("flag needs an argument: -{name}"))?
            }
        };
        match name {
            "socketpath" => o.socket_path = value,
            "pidfile" => o.pidfile = value,
            "hostprefix" => o.hostprefix = value,
            "statedir" => o.state_dir = value,
            "timeout" => o.timeout = parse_duration(&value)?,
            "resendmax" => o.resend_max = parse_duration(&value)?,
            "resendtimeout" => o.resend_timeout = parse_duration(&value)?,
            "socketmode" => {
                o.socket_mode = u32::from_str_radix(&value, 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| format!("invalid value {value:?} for -socketmode"))?
            }
            "maxconns" => {
                o.max_conns = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("invalid value {value:?} for -maxconns"))?
            }
            "readtimeout" => {
                o.read_timeout = parse_duration(&value)?;
                if o.read_timeout.is_zero() {
                    return Err("-readtimeout must be above 0".into());
                }
            }
            _ => return Err(format!("flag provided but not defined: -{name}")),
        }
        i += 1;
    }
    if o.socket_path.is_empty() {
        o.socket_path = options::DEFAULT_SOCKET_PATH.into();
    }
    Ok(o)
}

struct Held {
    id: String,
    shared: Arc<Mutex<Shared>>,
    tx: Sender<Cmd>,
    thread: Option<JoinHandle<()>>,
    network: String,
    container_id: String,
    ifname: String,
}

impl Held {
    fn stop(&mut self, cmd: Cmd) {
        let _ = self.tx.send(cmd);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn lease(&self) -> Result<Lease, Error> {
        let ack = self
            .shared
            .lock()
            .map_err(|_| Error::internal("lease state poisoned"))?
            .ack
            .clone();
        let (ip, routes) = options::lease_result(&ack).map_err(Error::internal)?;
        Ok(Lease {
            ip: Some(ip),
            routes,
        })
    }

    fn state(&self) -> State {
        self.shared
            .lock()
            .map(|g| g.state)
            .unwrap_or(State::Expired)
    }
}

type Slot = Arc<Mutex<Option<Held>>>;

/// The DHCP daemon: holds every attachment's lease and answers the
/// plugin's requests on its socket.
pub struct Daemon {
    opts: Opts,
    /// Keyed by client id; a slot's own lock serialises calls for one
    /// attachment while others proceed.
    slots: Mutex<HashMap<String, Slot>>,
    store: Store,
}

fn log(msg: &str) {
    eprintln!("dhcp daemon: {msg}");
}

fn err(code: ErrorCode, msg: impl Into<String>) -> Error {
    Error::new(code, msg)
}

impl Daemon {
    /// A daemon with no leases yet, its lease store under `-statedir` (or
    /// beside the socket).
    pub fn new(opts: Opts) -> Daemon {
        let dir = if opts.state_dir.is_empty() {
            let sock = PathBuf::from(format!("{}{}", opts.hostprefix, opts.socket_path));
            sock.parent()
                .unwrap_or(Path::new("/run/cni"))
                .join("dhcp-leases")
        } else {
            PathBuf::from(&opts.state_dir)
        };
        Daemon {
            opts,
            slots: Mutex::new(HashMap::new()),
            store: Store::new(dir),
        }
    }

    /// The exchange of one lease, in the pod's namespace.
    fn exchange(
        &self,
        id: &str,
        netns: &str,
        ifname: &str,
        opts: options::Options,
    ) -> Result<LinkExchange, Error> {
        let ns_path = format!("{}{}", self.opts.hostprefix, netns);
        let ns = netns::NetNs::open(&ns_path).map_err(|e| {
            err(
                ErrorCode::Io,
                format!("{id}: failed to open netns {ns_path:?}: {e}"),
            )
        })?;
        let mut client_id = vec![0u8];
        client_id.extend_from_slice(id.as_bytes());
        Ok(LinkExchange {
            ns: Arc::new(ns),
            ifname: ifname.to_string(),
            client_id,
            opts,
            timeout: self.opts.timeout,
            resend_max: self.opts.resend_max,
            broadcast: self.opts.broadcast,
        })
    }

    /// Starts the maintenance thread of a lease; every new ACK is saved.
    fn hold(
        &self,
        mut ex: LinkExchange,
        clock: RealClock,
        shared: Shared,
        mut record: Record,
    ) -> Result<Held, Error> {
        record.set_lease(&shared, lease::Clock::now(&clock));
        if let Err(e) = self.store.save(&record) {
            log(&format!(
                "{}: cannot save the lease in {}: {e}",
                record.id,
                self.store.dir().display()
            ));
        }
        let shared = Arc::new(Mutex::new(shared));
        let (tx, rx) = channel();
        let sh = shared.clone();
        let store = self.store.clone();
        let held_record = record.clone();
        let thread = std::thread::Builder::new()
            .name("dhcp-lease".into())
            .spawn(move || {
                let tag = record.id.clone();
                let say = |m: &str| log(&format!("{tag}: {m}"));
                let save = |now: &Shared| {
                    let mut r = record.clone();
                    r.set_lease(now, lease::Clock::now(&clock));
                    if let Err(e) = store.save(&r) {
                        say(&format!("cannot save the lease: {e}"));
                    }
                };
                lease::maintain(&sh, &mut ex, &clock, &rx, &say, &save);
            })
            .map_err(|e| Error::internal(format!("spawn lease thread: {e}")))?;
        Ok(Held {
            id: held_record.id,
            shared,
            tx,
            thread: Some(thread),
            network: held_record.network,
            container_id: held_record.container_id,
            ifname: held_record.ifname,
        })
    }

    /// Resumes the leases a previous daemon saved: each keeps its renewal
    /// timer and is released by DEL as if never interrupted. A lease that
    /// expired meanwhile, or whose namespace is gone, is dropped.
    pub fn restore(&self) {
        for r in self.store.load() {
            let clock = RealClock::new();
            let Some(shared) = r.shared(lease::Clock::now(&clock)) else {
                log(&format!("{}: saved lease has expired, dropping it", r.id));
                self.store.remove(&r.id);
                continue;
            };
            let resumed = cni_spec::json::from_value::<NetConf>(r.config.clone())
                .map_err(|e| err(ErrorCode::InvalidConfig, e.to_string()))
                .and_then(|conf| {
                    options::prepare(&r.args, &conf.ipam.clone().unwrap_or_default())
                        .map_err(|e| err(ErrorCode::InvalidConfig, e))
                })
                .and_then(|opts| self.exchange(&r.id, &r.netns, &r.ifname, opts))
                .and_then(|ex| self.hold(ex, clock, shared, r.clone()));
            match resumed {
                Ok(h) => {
                    log(&format!("{}: resumed saved lease", r.id));
                    if let Some(slot) = self.slot(&r.id, true) {
                        if let Ok(mut g) = slot.lock() {
                            *g = Some(h);
                        }
                    }
                }
                Err(e) => {
                    log(&format!("{}: cannot resume saved lease: {}", r.id, e.msg));
                    self.store.remove(&r.id);
                }
            }
        }
    }

    fn slot(&self, id: &str, create: bool) -> Option<Slot> {
        let mut m = self.slots.lock().ok()?;
        if create {
            return Some(m.entry(id.to_string()).or_default().clone());
        }
        m.get(id).cloned()
    }

    fn forget_slot(&self, id: &str, slot: &Slot) {
        if let Ok(mut m) = self.slots.lock() {
            if m.get(id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                m.remove(id);
            }
        }
    }

    fn conf(req: &Request) -> Result<NetConf, Error> {
        // `null` members read as absent, as in every plugin's config.
        cni_spec::json::from_value(req.config.clone()).map_err(|e| {
            err(
                ErrorCode::InvalidConfig,
                format!("error parsing netconf: {e}"),
            )
        })
    }

    /// Answers one plugin request; ALLOCATE and CHECK return the lease.
    pub fn handle(&self, req: &Request) -> Result<Option<Lease>, Error> {
        match req.method {
            Method::Status => Ok(None),
            Method::Allocate => self.allocate(req).map(Some),
            Method::Check => self.check(req).map(Some),
            Method::Release => self.release(req).map(|()| None),
            Method::Gc => self.gc(req).map(|()| None),
        }
    }

    fn allocate(&self, req: &Request) -> Result<Lease, Error> {
        let conf = Self::conf(req)?;
        let ipam = conf.ipam.clone().unwrap_or_default();
        let opts =
            options::prepare(&req.args, &ipam).map_err(|e| err(ErrorCode::InvalidConfig, e))?;
        let id = options::client_id(&req.container_id, &conf.name, &req.ifname);
        let slot = self
            .slot(&id, true)
            .ok_or_else(|| Error::internal("lease table poisoned"))?;
        let mut held = slot
            .lock()
            .map_err(|_| Error::internal("lease slot poisoned"))?;
        if let Some(h) = held.as_mut() {
            if matches!(h.state(), State::Bound | State::Renewing | State::Rebinding) {
                return h.lease();
            }
            // Expired: start over.
            h.stop(Cmd::Forget);
            *held = None;
        }
        let mut ex = self.exchange(&id, &req.netns, &req.ifname, opts)?;
        log(&format!("{id}: acquiring lease"));
        let ack = acquire_with_retries(
            &mut ex,
            self.opts.resend_timeout,
            self.opts.resend_max,
            &|m| log(&format!("{id}: {m}")),
        )
        .map_err(|e| err(ErrorCode::TryAgainLater, format!("{id}: {e}")))?;
        let clock = RealClock::new();
        let check = options::lease_result(&ack)
            .and_then(|r| lease::timers(&ack, lease::Clock::now(&clock)).map(|t| (r, t)));
        let ((ip, routes), timers) = match check {
            Ok(x) => x,
            Err(e) => {
                let _ = ex.release(&ack);
                return Err(Error::internal(format!("{id}: {e}")));
            }
        };
        log(&format!(
            "{id}: lease acquired: {} (expires in {:?})",
            ip.address,
            timers.expiry.saturating_sub(lease::Clock::now(&clock))
        ));
        let shared = Shared {
            ack,
            timers,
            state: State::Bound,
        };
        let record = Record {
            id: id.clone(),
            network: conf.name.clone(),
            container_id: req.container_id.clone(),
            ifname: req.ifname.clone(),
            netns: req.netns.clone(),
            args: req.args.clone(),
            config: req.config.clone(),
            ack: String::new(),
            t1_ms: 0,
            t2_ms: 0,
            expiry_ms: 0,
        };
        *held = Some(self.hold(ex, clock, shared, record)?);
        Ok(Lease {
            ip: Some(ip),
            routes,
        })
    }

    fn check(&self, req: &Request) -> Result<Lease, Error> {
        let conf = Self::conf(req)?;
        let id = options::client_id(&req.container_id, &conf.name, &req.ifname);
        let missing = || {
            err(
                ErrorCode::UnknownContainer,
                format!("no DHCP lease held for {id}"),
            )
        };
        let slot = self.slot(&id, false).ok_or_else(missing)?;
        let held = slot
            .lock()
            .map_err(|_| Error::internal("lease slot poisoned"))?;
        let h = held.as_ref().ok_or_else(missing)?;
        if !matches!(h.state(), State::Bound | State::Renewing | State::Rebinding) {
            return Err(Error::internal(format!("{id}: the DHCP lease has expired")));
        }
        h.lease()
    }

    fn release(&self, req: &Request) -> Result<(), Error> {
        let conf = Self::conf(req)?;
        let id = options::client_id(&req.container_id, &conf.name, &req.ifname);
        self.release_id(&id);
        Ok(())
    }

    fn release_id(&self, id: &str) {
        let Some(slot) = self.slot(id, false) else {
            return;
        };
        if let Ok(mut held) = slot.lock() {
            if let Some(mut h) = held.take() {
                h.stop(Cmd::Release);
                self.store.remove(&h.id);
                log(&format!("{id}: lease released"));
            }
        }
        self.forget_slot(id, &slot);
    }

    fn gc(&self, req: &Request) -> Result<(), Error> {
        let conf = Self::conf(req)?;
        let stale: Vec<String> = {
            let slots: Vec<(String, Slot)> = match self.slots.lock() {
                Ok(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                Err(_) => return Err(Error::internal("lease table poisoned")),
            };
            slots
                .into_iter()
                .filter(|(_, s)| {
                    s.lock().is_ok_and(|h| {
                        h.as_ref().is_some_and(|h| {
                            h.network == conf.name
                                && !req
                                    .keep
                                    .iter()
                                    .any(|(c, i)| *c == h.container_id && *i == h.ifname)
                        })
                    })
                })
                .map(|(k, _)| k)
                .collect()
        };
        for id in stale {
            self.release_id(&id);
        }
        Ok(())
    }

    fn serve_conn(&self, stream: UnixStream, read_timeout: Duration) {
        // An idle or slow client is closed rather than holding a thread.
        let _ = stream.set_read_timeout(Some(read_timeout));
        let _ = stream.set_write_timeout(Some(read_timeout));
        if let Err(e) = peer_allowed(&stream) {
            refuse(&stream, e);
            return;
        }
        let mut line = String::new();
        let mut r = BufReader::new((&stream).take(MAX_LINE));
        if r.read_line(&mut line).is_err() {
            return;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(req) => match self.handle(&req) {
                Ok(lease) => Reply { lease, error: None },
                Err(e) => Reply {
                    lease: None,
                    error: Some(e),
                },
            },
            Err(e) => Reply {
                lease: None,
                error: Some(err(ErrorCode::Decoding, format!("bad request: {e}"))),
            },
        };
        if let Ok(mut out) = serde_json::to_vec(&reply) {
            out.push(b'\n');
            let _ = (&stream).write_all(&out);
        }
    }
}

/// Only root (and the daemon's own user) may make the daemon run DHCP on
/// a namespace and interface of its choosing: the peer's credentials come
/// from the kernel (SO_PEERCRED), not from anything the peer says.
fn peer_allowed(stream: &UnixStream) -> Result<(), Error> {
    let uid = os::peer_uid(stream).map_err(|e| {
        err(
            ErrorCode::TryAgainLater,
            format!("cannot read the caller's credentials: {e}"),
        )
    })?;
    if uid == 0 || uid == os::euid() {
        return Ok(());
    }
    Err(err(
        ErrorCode::Io,
        format!("permission denied: uid {uid} may not use the DHCP daemon (root only)"),
    ))
}

/// Answers a connection with an error and closes it.
fn refuse(stream: &UnixStream, e: Error) {
    let reply = Reply {
        lease: None,
        error: Some(e),
    };
    if let Ok(mut out) = serde_json::to_vec(&reply) {
        out.push(b'\n');
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = (&*stream).write_all(&out);
    }
}

/// The accept loop's answer to running out of descriptors (or memory):
/// wait, doubling up to a second, and log one line per burst rather than
/// one per failed accept.
#[derive(Default)]
struct Backoff {
    failures: u64,
    delay: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    /// An accept failed with `e`: logs (once per burst) and sleeps.
    fn failed(&mut self, e: &std::io::Error) {
        if self.failures == 0 {
            log(&format!("accept: {e}; backing off until it recovers"));
        }
        self.failures += 1;
        self.delay = if self.delay.is_zero() {
            Self::FIRST
        } else {
            (self.delay * 2).min(Self::MAX)
        };
        std::thread::sleep(self.delay);
    }

    /// An accept succeeded: ends a burst (with one line saying so).
    fn ok(&mut self) {
        if self.failures > 0 {
            log(&format!(
                "accept recovered after {} failed attempts",
                self.failures
            ));
        }
        self.failures = 0;
        self.delay = Duration::ZERO;
    }
}

/// Counts a connection being served; the count drops with the guard.
struct ConnGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The listener: inherited from systemd socket activation, else bound at
/// `path` (a stale socket nobody answers on is replaced).
fn listener(path: &Path, mode: u32) -> Result<(UnixListener, bool), String> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == os::pid());
    if pid_ok {
        match std::env::var("LISTEN_FDS").as_deref() {
            Ok("1") => {
                return Ok((os::systemd_listener(), false));
            }
            Ok("0") | Err(_) => {}
            Ok(n) => {
                return Err(format!(
                    "Too many ({n}) FDs passed through socket activation"
                ))
            }
        }
    }
    if let Some(dir) = path.parent() {
        os::create_dir_all(dir, 0o700).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    if os::exists(path) {
        if UnixStream::connect(path).is_ok() {
            return Err(format!("another daemon is listening on {}", path.display()));
        }
        let _ = os::remove_file(path);
    }
    let l = UnixListener::bind(path)
        .map_err(|e| format!("Error getting listener: listen {}: {e}", path.display()))?;
    // Explicit, whatever the umask: root only unless configured otherwise.
    os::set_mode(path, mode).map_err(|e| format!("chmod {}: {e}", path.display()))?;
    Ok((l, true))
}

/// The first lease of an ADD: exchanges until one gets an ACK, starting no
/// new one once `resend_timeout` has passed since the first began (at
/// least one is always made). Pauses between them start at 2 s and double
/// up to `resend_max`, never running past the deadline.
fn acquire_with_retries(
    ex: &mut dyn lease::Exchange,
    resend_timeout: Duration,
    resend_max: Duration,
    say: &dyn Fn(&str),
) -> Result<crate::packet::Message, String> {
    let deadline = std::time::Instant::now() + resend_timeout;
    let mut pause = Duration::from_secs(2);
    loop {
        let e = match ex.acquire() {
            Ok(ack) => return Ok(ack),
            Err(e) => e,
        };
        let now = std::time::Instant::now();
        if now >= deadline {
            return Err(format!(
                "{e}; no more tries after -resendtimeout {resend_timeout:?}"
            ));
        }
        let wait = pause.min(deadline - now);
        say(&format!("{e}; trying again in {wait:?}"));
        std::thread::sleep(wait);
        pause = (pause * 2).min(resend_max.max(Duration::from_secs(1)));
    }
}

/// `dhcp daemon [flags]`; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let opts = match parse_flags(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "Usage of daemon:\n  -broadcast\n  -hostprefix string\n  -pidfile string\n  \
                 -resendmax duration (default 1m2s)\n  -resendtimeout duration (default 3m28s)\n  -socketpath string\n  -timeout duration (default 10s)"
            );
            return 2;
        }
    };
    if !opts.pidfile.is_empty() {
        if !Path::new(&opts.pidfile).is_absolute() {
            log(&format!(
                "Error writing pidfile {:?}: path not absolute",
                opts.pidfile
            ));
            return 1;
        }
        // 0644 whatever the umask.
        let written = os::write_atomic(
            Path::new(&opts.pidfile),
            os::pid().to_string().as_bytes(),
            0o644,
            os::Durability::Atomic,
        );
        if let Err(e) = written {
            log(&format!("Error writing pidfile {:?}: {e}", opts.pidfile));
            return 1;
        }
    }
    let sigs = os::TermSignals::block();
    let path = PathBuf::from(format!("{}{}", opts.hostprefix, opts.socket_path));
    let (l, owned) = match listener(&path, opts.socket_mode) {
        Ok(x) => x,
        Err(e) => {
            log(&e);
            return 1;
        }
    };
    let pidfile = opts.pidfile.clone();
    let sock = path.clone();
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            sigs.wait();
            if owned {
                let _ = os::remove_file(&sock);
            }
            if !pidfile.is_empty() {
                let _ = os::remove_file(Path::new(&pidfile));
            }
            log("stopping");
            os::exit(0);
        });
    log(&format!("listening on {}", path.display()));
    let (max_conns, read_timeout) = (opts.max_conns, opts.read_timeout);
    let d = Arc::new(Daemon::new(opts));
    d.restore();
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut backoff = Backoff::default();
    loop {
        let s = match l.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS, ENOMEM, ...: the pending
                // connection stays queued; retrying at once would spin.
                backoff.failed(&e);
                continue;
            }
        };
        backoff.ok();
        if active.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= max_conns {
            active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            refuse(
                &s,
                err(
                    ErrorCode::TryAgainLater,
                    format!("the DHCP daemon is serving {max_conns} connections; try again"),
                ),
            );
            continue;
        }
        let guard = ConnGuard(active.clone());
        let d = d.clone();
        let spawned = std::thread::Builder::new()
            .name("dhcp-conn".into())
            .spawn(move || {
                let _guard = guard;
                d.serve_conn(s, read_timeout)
            });
        if let Err(e) = spawned {
            // The closure (and with it the stream and the guard) is gone.
            backoff.failed(&e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m2s"), Ok(Duration::from_secs(62)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "10", "s", "5x", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn go_flags() {
        let a: Vec<String> = ["-socketpath", "/tmp/x.sock", "--timeout=3s", "-broadcast"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = parse_flags(&a).expect("ok");
        assert_eq!(o.socket_path, "/tmp/x.sock");
        assert_eq!(o.timeout, Duration::from_secs(3));
        assert!(o.broadcast);
        assert_eq!(o.resend_max, Duration::from_secs(62));
        let o = parse_flags(&[]).expect("ok");
        assert_eq!(o.socket_path, "/run/cni/dhcp.sock");
        assert!(parse_flags(&["-nope".to_string()]).is_err());
        assert!(parse_flags(&["-socketpath".to_string()]).is_err());
    }

    #[test]
    fn resendtimeout_flag_and_default() {
        assert_eq!(
            parse_flags(&[]).expect("ok").resend_timeout,
            Duration::from_secs(208)
        );
        let a: Vec<String> = ["-resendtimeout", "45s"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            parse_flags(&a).expect("ok").resend_timeout,
            Duration::from_secs(45)
        );
        assert!(parse_flags(&["-resendtimeout=soon".to_string()]).is_err());
        assert!(parse_flags(&["-resendtimeout=-1s".to_string()]).is_err());
    }

    /// Counts acquisitions; never answers.
    struct Silent(u32);
    impl lease::Exchange for Silent {
        fn acquire(&mut self) -> Result<crate::packet::Message, String> {
            self.0 += 1;
            Err("no DHCPOFFER".into())
        }
        fn renew(&mut self, _: &crate::packet::Message, _: bool) -> lease::Reply {
            lease::Reply::NoAnswer("silent".into())
        }
        fn release(&mut self, _: &crate::packet::Message) -> Result<(), String> {
            Ok(())
        }
        fn link_down(&mut self) {}
    }

    #[test]
    fn a_zero_resendtimeout_makes_one_exchange_only() {
        let mut ex = Silent(0);
        let e = acquire_with_retries(&mut ex, Duration::ZERO, Duration::from_secs(62), &|_| {})
            .expect_err("never answers");
        assert_eq!(ex.0, 1);
        assert!(e.contains("-resendtimeout"), "{e}");
    }
}
