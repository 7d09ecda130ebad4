//! `/healthz`, `/readyz` and `/metrics` (Prometheus text format) on a local
//! address (`--health-addr`), served by one thread, one request per
//! connection.
//!
//! - `/healthz`: 200 while the main loop is alive (it checked in within the
//!   last `stale_after`), else 503.
//! - `/readyz`: 200 once a round has reconciled the data path and written
//!   the CNI configuration, else 503.
//! - `/metrics`: rounds (successful and failed), the last and total
//!   reconcile duration, peers per backend, refused entries.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the main loop reports; shared with the server thread.
#[derive(Debug)]
pub struct Status {
    started: Instant,
    /// Milliseconds since `started` of the last check-in of the loop.
    heartbeat_ms: AtomicU64,
    /// Set once the data path is reconciled and the CNI config written
    /// (`/readyz`).
    pub ready: AtomicBool,
    /// Rounds that set everything up.
    pub rounds_ok: AtomicU64,
    /// Rounds that failed.
    pub rounds_failed: AtomicU64,
    /// Duration of the last data path reconcile, microseconds.
    pub last_reconcile_us: AtomicU64,
    /// Total time spent reconciling the data path, microseconds.
    pub total_reconcile_us: AtomicU64,
    /// Remote pod CIDRs routed directly (host-gw) in the last round.
    pub peers_host_gw: AtomicU64,
    /// Remote pod CIDRs routed over VXLAN in the last round.
    pub peers_vxlan: AtomicU64,
    /// Node entries refused or skipped in the last round.
    pub refused: AtomicU64,
    stale_after: Duration,
}

impl Status {
    /// A status, not ready; the loop counts as stuck (`/healthz` fails) when
    /// it has not called [`Status::beat`] for `stale_after`.
    pub fn new(stale_after: Duration) -> Arc<Status> {
        Arc::new(Status {
            started: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            rounds_ok: AtomicU64::new(0),
            rounds_failed: AtomicU64::new(0),
            last_reconcile_us: AtomicU64::new(0),
            total_reconcile_us: AtomicU64::new(0),
            peers_host_gw: AtomicU64::new(0),
            peers_vxlan: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            stale_after,
        })
    }

    /// The main loop is alive.
    pub fn beat(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heartbeat_ms.store(ms, Ordering::Relaxed);
    }

    fn alive(&self) -> bool {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let stale = u64::try_from(self.stale_after.as_millis()).unwrap_or(u64::MAX);
        now.saturating_sub(self.heartbeat_ms.load(Ordering::Relaxed)) <= stale
    }

    /// The Prometheus text exposition.
    pub fn metrics(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let secs = |us: u64| us as f64 / 1e6;
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, String)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, value) in lines {
                out.push_str(&format!("{name}{labels} {value}\n"));
            }
        };
        metric(
            "rcni_agent_reconciles_total",
            "counter",
            "Rounds run, by result.",
            &[
                ("{result=\"ok\"}".into(), g(&self.rounds_ok).to_string()),
                (
                    "{result=\"failed\"}".into(),
                    g(&self.rounds_failed).to_string(),
                ),
            ],
        );
        metric(
            "rcni_agent_reconcile_duration_seconds_sum",
            "counter",
            "Total time spent reconciling the data path.",
            &[(String::new(), secs(g(&self.total_reconcile_us)).to_string())],
        );
        metric(
            "rcni_agent_last_reconcile_duration_seconds",
            "gauge",
            "Duration of the last data path reconcile.",
            &[(String::new(), secs(g(&self.last_reconcile_us)).to_string())],
        );
        metric(
            "rcni_agent_peers",
            "gauge",
            "Remote pod CIDRs routed, by backend.",
            &[
                (
                    "{backend=\"host-gw\"}".into(),
                    g(&self.peers_host_gw).to_string(),
                ),
                (
                    "{backend=\"vxlan\"}".into(),
                    g(&self.peers_vxlan).to_string(),
                ),
            ],
        );
        metric(
            "rcni_agent_refused_entries",
            "gauge",
            "Node entries refused or skipped in the last round.",
            &[(String::new(), g(&self.refused).to_string())],
        );
        metric(
            "rcni_agent_ready",
            "gauge",
            "1 once the data path is reconciled and the CNI config written.",
            &[(
                String::new(),
                u8::from(self.ready.load(Ordering::Relaxed)).to_string(),
            )],
        );
        out
    }
}

/// Binds `addr` and serves in a thread; the bound address.
pub fn serve(addr: SocketAddr, status: Arc<Status>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("health".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = answer(conn, &status);
            }
        })?;
    Ok(bound)
}

fn answer(conn: TcpStream, status: &Status) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Skip the headers.
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("").split('?').next().unwrap_or("");
    let (code, kind, body) = match (method, path) {
        ("GET", "/healthz") if status.alive() => (200, "text/plain", "ok\n".to_string()),
        ("GET", "/healthz") => (503, "text/plain", "main loop stalled\n".to_string()),
        ("GET", "/readyz") if status.ready.load(Ordering::Relaxed) => {
            (200, "text/plain", "ok\n".to_string())
        }
        ("GET", "/readyz") => (503, "text/plain", "not reconciled yet\n".to_string()),
        ("GET", "/metrics") => (200, "text/plain; version=0.0.4", status.metrics()),
        ("GET", _) => (404, "text/plain", "not found\n".to_string()),
        _ => (405, "text/plain", "method not allowed\n".to_string()),
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut conn = reader.into_inner();
    write!(
        conn,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, path: &str) -> String {
        use std::io::Read;
        let mut c = TcpStream::connect(addr).unwrap();
        write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn endpoints_answer() {
        let st = Status::new(Duration::from_secs(60));
        let addr = serve("127.0.0.1:0".parse().unwrap(), st.clone()).unwrap();
        assert!(get(addr, "/readyz").starts_with("HTTP/1.1 503"));
        assert!(get(addr, "/healthz").starts_with("HTTP/1.1 200"));
        st.ready.store(true, Ordering::Relaxed);
        st.rounds_ok.store(3, Ordering::Relaxed);
        st.peers_vxlan.store(2, Ordering::Relaxed);
        st.last_reconcile_us.store(1500, Ordering::Relaxed);
        assert!(get(addr, "/readyz").starts_with("HTTP/1.1 200"));
        let m = get(addr, "/metrics");
        assert!(
            m.contains("rcni_agent_reconciles_total{result=\"ok\"} 3\n"),
            "{m}"
        );
        assert!(m.contains("rcni_agent_peers{backend=\"vxlan\"} 2\n"), "{m}");
        assert!(
            m.contains("rcni_agent_last_reconcile_duration_seconds 0.0015\n"),
            "{m}"
        );
        assert!(m.contains("# TYPE rcni_agent_peers gauge\n"), "{m}");
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
        let stale = Status::new(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!stale.alive());
    }
}
