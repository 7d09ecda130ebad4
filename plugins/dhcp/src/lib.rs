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
