//! `dhcp`: addresses leased from a DHCP server by a long-running daemon
//! (`dhcp daemon`), which renews each lease for as long as the container
//! lives. The plugin side only asks the daemon over its unix socket.
//!
//! The plugin ↔ daemon protocol is rcni's own (JSON lines, see [`proto`]),
//! not the reference's Go net/rpc: run an rcni daemon with rcni plugins.

pub mod daemon;
#[doc(hidden)]
pub mod fuzzing;
pub mod lease;
pub mod link;
pub mod options;
pub mod packet;
pub mod proto;
pub mod store;

use cni_skel::{CmdArgs, Plugin};
use cni_spec::error::CniResult;
use cni_spec::{Error, ErrorCode, Result};
pub use lease::Exchange;
use options::NetConf;
use proto::{Lease, Method, Reply, Request};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

/// The dhcp IPAM plugin as the CNI skeleton runs it: each verb is one
/// request to the daemon.
pub struct Dhcp;

/// `dhcp daemon ARGS…`: runs the daemon; returns its exit code.
pub fn daemon_main(args: &[String]) -> i32 {
    daemon::main(args)
}

fn conf(args: &CmdArgs) -> CniResult<NetConf> {
    args.parse_conf::<NetConf>()
}

fn absolute(netns: &str) -> String {
    if netns.is_empty() || netns.starts_with('/') {
        return netns.to_string();
    }
    match std::env::current_dir() {
        Ok(d) => d.join(netns).display().to_string(),
        Err(_) => netns.to_string(),
    }
}

/// One request to the daemon. Failing to reach it gets `unreachable_code`.
fn call(
    args: &CmdArgs,
    method: Method,
    keep: Vec<(String, String)>,
    unreachable_code: ErrorCode,
) -> CniResult<Option<Lease>> {
    let c = conf(args)?;
    let path = c.socket_path();
    let stream = UnixStream::connect(path).map_err(|e| {
        Error::new(
            unreachable_code,
            format!("error dialing DHCP daemon at {path}: {e}"),
        )
        .details(
            "is the daemon running? start it with `dhcp daemon` (or `rcni plugin dhcp daemon`)",
        )
    })?;
    let config: serde_json::Value = serde_json::from_slice(&args.stdin)
        .map_err(|e| Error::decoding(format!("invalid dhcp configuration: {e}")))?;
    let req = Request {
        method,
        container_id: args.container_id.clone(),
        netns: absolute(&args.netns),
        ifname: args.ifname.clone(),
        args: args.args.clone(),
        config,
        keep,
    };
    let mut line =
        serde_json::to_vec(&req).map_err(|e| Error::internal(format!("encode request: {e}")))?;
    line.push(b'\n');
    let io = |e: std::io::Error| {
        Error::new(
            unreachable_code,
            format!("error calling DHCP daemon at {path}: {e}"),
        )
    };
    (&stream).write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    if answer.trim().is_empty() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection",
        )));
    }
    let reply: Reply = serde_json::from_str(&answer)
        .map_err(|e| Error::internal(format!("bad answer from DHCP daemon: {e}")))?;
    if let Some(e) = reply.error {
        return Err(e);
    }
    Ok(reply.lease)
}

fn lease_ip(l: Option<Lease>) -> CniResult<(cni_spec::IpConfig, Vec<cni_spec::Route>)> {
    let l = l.ok_or_else(|| Error::internal("DHCP daemon returned no lease"))?;
    let ip =
        l.ip.ok_or_else(|| Error::internal("DHCP daemon returned no address"))?;
    Ok((ip, l.routes))
}

impl Plugin for Dhcp {
    fn name(&self) -> &'static str {
        "dhcp"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        args.require_netns()?;
        let c = conf(args)?;
        let ipam = c.ipam.unwrap_or_default();
        // Bad `provide`/`request` entries are config errors, daemon or not.
        options::prepare(&args.args, &ipam).map_err(Error::invalid_config)?;
        let (ip, mut routes) = lease_ip(call(
            args,
            Method::Allocate,
            Vec::new(),
            ErrorCode::TryAgainLater,
        )?)?;
        let mut result = Result::new(args.version());
        result.ips.push(ip);
        if ipam.priority != 0 {
            for r in &mut routes {
                r.priority = Some(ipam.priority);
            }
        }
        result.routes = routes;
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        call(args, Method::Release, Vec::new(), ErrorCode::TryAgainLater).map(|_| ())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let (ip, _) = lease_ip(call(
            args,
            Method::Check,
            Vec::new(),
            ErrorCode::TryAgainLater,
        )?)?;
        let prev = args
            .conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("CHECK needs prevResult"))?;
        if !prev.ips.iter().any(|p| p.address == ip.address) {
            return Err(Error::internal(format!(
                "dhcp: leased address {} not found in prevResult",
                ip.address
            )));
        }
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        let keep = args
            .conf
            .gc_attachments()
            .into_iter()
            .map(|a| (a.container_id, a.ifname))
            .collect();
        call(args, Method::Gc, keep, ErrorCode::TryAgainLater).map(|_| ())
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        call(args, Method::Status, Vec::new(), ErrorCode::NotAvailable).map(|_| ())
    }
}

/// The plugin side against a fake daemon on a unix socket in a scratch
/// directory (no root, no DHCP server): what each verb asks, how the
/// lease becomes the result, and the codes when the daemon is away or
/// refuses. tests/dhcp.rs runs the real daemon against a real server.
#[cfg(test)]
mod client_tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;
    use std::thread::JoinHandle;

    /// A scratch dir for the socket, removed on drop.
    struct Scratch(testutil::TempDir);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            Scratch(testutil::TempDir::new(&format!("dhcp-{tag}")))
        }
        fn sock(&self) -> PathBuf {
            self.0.path().join("dhcp.sock")
        }
    }

    /// Answers one request with `reply` (a raw line; empty: hang up) and
    /// hands the request back.
    fn daemon(dir: &Scratch, reply: &str) -> JoinHandle<Request> {
        let l = UnixListener::bind(dir.sock()).expect("bind");
        let reply = reply.to_string();
        std::thread::spawn(move || {
            let (s, _) = l.accept().expect("accept");
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).expect("read");
            if !reply.is_empty() {
                (&s).write_all(format!("{reply}\n").as_bytes())
                    .expect("write");
            }
            serde_json::from_str(&line).expect("request")
        })
    }

    fn args(dir: &Scratch, extra: &str) -> CmdArgs {
        let conf = format!(
            r#"{{"cniVersion":"1.0.0","name":"net","type":"bridge",
                "ipam":{{"type":"dhcp","daemonSocketPath":"{}","priority":5}}{extra}}}"#,
            dir.sock().display()
        );
        let mut a = cni_skel::fuzzing::args(conf.as_bytes()).expect("args");
        a.netns = "/run/netns/pod".into();
        a
    }

    const LEASE: &str = r#"{"lease":{"ip":{"address":"10.0.0.5/24","gateway":"10.0.0.1"},
        "routes":[{"dst":"0.0.0.0/0","gw":"10.0.0.1"}]}}"#;

    #[test]
    fn add_asks_the_daemon_to_allocate_and_returns_its_lease_with_the_route_priority() {
        let dir = Scratch::new("add");
        let d = daemon(&dir, &LEASE.replace('\n', " "));
        let r = Dhcp.add(&args(&dir, "")).expect("add");
        let req = d.join().expect("daemon");
        assert_eq!(req.method, Method::Allocate);
        assert_eq!(
            (req.container_id.as_str(), req.ifname.as_str()),
            ("fuzz", "eth0")
        );
        assert_eq!(req.netns, "/run/netns/pod");
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.5/24");
        assert_eq!(r.routes.len(), 1);
        assert_eq!(r.routes[0].priority, Some(5));
    }

    #[test]
    fn without_a_daemon_add_del_gc_fail_with_code_11_and_status_with_50() {
        let dir = Scratch::new("away");
        let a = args(&dir, "");
        let e = Dhcp.add(&a).expect_err("no daemon");
        assert_eq!(e.code, 11, "{e}");
        assert!(e.msg.contains("error dialing DHCP daemon"), "{e}");
        assert_eq!(Dhcp.del(&a).expect_err("no daemon").code, 11);
        assert_eq!(Dhcp.gc(&a).expect_err("no daemon").code, 11);
        assert_eq!(Dhcp.status(&a).expect_err("no daemon").code, 50);
    }

    #[test]
    fn a_daemon_refusal_reaches_the_runtime_with_its_own_code() {
        let dir = Scratch::new("refuse");
        let d = daemon(&dir, r#"{"error":{"code":7,"msg":"bad option"}}"#);
        let e = Dhcp.del(&args(&dir, "")).expect_err("refused");
        assert_eq!(d.join().expect("daemon").method, Method::Release);
        assert_eq!((e.code, e.msg.as_str()), (7, "bad option"));
    }

    #[test]
    fn del_of_a_lease_the_daemon_no_longer_holds_succeeds() {
        let dir = Scratch::new("del");
        let d = daemon(&dir, "{}");
        Dhcp.del(&args(&dir, "")).expect("del");
        assert_eq!(d.join().expect("daemon").method, Method::Release);
    }

    #[test]
    fn a_daemon_hanging_up_or_leasing_nothing_fails_add() {
        let dir = Scratch::new("hangup");
        let d = daemon(&dir, "");
        let e = Dhcp.add(&args(&dir, "")).expect_err("hung up");
        d.join().expect("daemon");
        assert_eq!(e.code, 11, "{e}");
        let _ = kit::os::remove_file(&dir.sock());
        let d = daemon(&dir, "{}");
        let e = Dhcp.add(&args(&dir, "")).expect_err("no lease");
        d.join().expect("daemon");
        assert_eq!(e.code, 999, "{e}");
    }

    #[test]
    fn check_of_a_lease_missing_from_prev_result_fails_with_code_999() {
        let dir = Scratch::new("check");
        let prev = r#","prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.9/24"}]}"#;
        let d = daemon(&dir, &LEASE.replace('\n', " "));
        let e = Dhcp.check(&args(&dir, prev)).expect_err("other address");
        assert_eq!(d.join().expect("daemon").method, Method::Check);
        assert_eq!(e.code, 999);
        assert!(e.msg.contains("not found in prevResult"), "{e}");
    }
}
