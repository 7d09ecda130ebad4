//! What the runtime suites assert with: HTTP probes from the node, a
//! listener on the node's side, the scan for leftovers, and the row table.

use crate::jail::Jail;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testutil::TestNs;

/// `GET /` over HTTP/1.0 from inside `ns` to `addr:port`; the body.
pub fn http_get(ns: &TestNs, addr: &str, port: u16) -> Result<String, String> {
    let target: SocketAddr = format!("{addr}:{port}")
        .parse()
        .map_err(|e| format!("{addr}:{port}: {e}"))?;
    ns.run(move || {
        let mut c = TcpStream::connect_timeout(&target, Duration::from_secs(5))
            .map_err(|e| format!("connect {target}: {e}"))?;
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        c.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .map_err(|e| format!("send to {target}: {e}"))?;
        let mut buf = Vec::new();
        c.read_to_end(&mut buf)
            .map_err(|e| format!("read from {target}: {e}"))?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        match text.split_once("\r\n\r\n") {
            Some((_, body)) => Ok(body.trim().to_string()),
            None => Err(format!("no HTTP answer from {target}: {text:?}")),
        }
    })
}

/// Ok when `got` is the body `want`, else a message naming `what`.
pub fn expect_body(what: &str, got: Result<String, String>, want: &str) -> Result<(), String> {
    match got {
        Ok(body) if body == want => Ok(()),
        Ok(body) => Err(format!("{what}: answered {body:?}, expected {want:?}")),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// Names of the netns files in the jail's private `/run/netns`.
pub fn jail_netns_files(jail: &Jail) -> Vec<String> {
    std::fs::read_dir(jail.inside("/run/netns"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// An HTTP server on the node side answering every `GET` with `body`,
/// until dropped.
pub struct NodeServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NodeServer {
    /// Starts the server on `port` of every address of `ns`; panics when the
    /// port cannot be bound.
    pub fn start(ns: &TestNs, port: u16, body: &str) -> NodeServer {
        let listener = ns.run(|| {
            TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|e| panic!("bind {port}: {e}"))
        });
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let answer = format!(
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}\n",
            body.len() + 1
        );
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 1024];
                        let _ = c.read(&mut buf);
                        let _ = c.write_all(answer.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        NodeServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether `hay` names `needle` as a whole token: not part of a longer
/// address, id or name.
pub fn mentions(hay: &str, needle: &str) -> bool {
    let token = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_';
    hay.match_indices(needle).any(|(i, _)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        // "10.0.0.2." ends a sentence, never an address of its own.
        let after_ok = match after {
            None => true,
            Some('.') => !hay[i + needle.len() + 1..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric()),
            Some(c) => !token(c),
        };
        !before.is_some_and(token) && after_ok
    })
}

fn scan_files(dir: &Path, needles: &[String], found: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        for n in needles {
            if name.contains(n.as_str()) {
                found.push(format!("file {} is named after {n}", p.display()));
            }
        }
        if name.starts_with("last_reserved_ip.") {
            // host-local's allocation cursor: the last address handed out
            // stays there by design (the reference keeps it too), naming
            // an address, not an attachment.
            continue;
        }
        let in_ipam_index = p.components().any(|c| c.as_os_str() == ".rcni-index");
        if in_ipam_index && name.starts_with("cursor.") {
            // rcni's index keeps a hard link of each cursor (the same file).
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            scan_files(&p, needles, found);
        } else if let Ok(bytes) = std::fs::read(&p) {
            let mut text = String::from_utf8_lossy(&bytes).into_owned();
            if in_ipam_index && name == "state" {
                // Its `cursor` lines record what the cursors say.
                text = text
                    .lines()
                    .filter(|l| !l.starts_with("cursor "))
                    .collect::<Vec<_>>()
                    .join("\n");
            }
            for n in needles {
                if mentions(&text, n) {
                    found.push(format!("file {} mentions {n}", p.display()));
                }
            }
        }
    }
}

/// Everything in the jail's node namespace and under `dirs` that still
/// names one of `needles` (container ids, names, addresses, host link
/// names): links (names, aliases), addresses, routes of every table,
/// policy rules, qdiscs, the nftables rule set, iptables and ip6tables
/// rules, and files (by name or content). Empty: nothing left.
pub fn leftovers(jail: &Jail, needles: &[String], dirs: &[&Path]) -> Vec<String> {
    let mut found = Vec::new();
    let node = jail.node();
    let views: &[(&str, &[&str])] = &[
        ("links", &["ip", "-d", "link", "show"]),
        ("addresses", &["ip", "addr", "show"]),
        (
            "IPv4 routes",
            &["ip", "-4", "route", "show", "table", "all"],
        ),
        (
            "IPv6 routes",
            &["ip", "-6", "route", "show", "table", "all"],
        ),
        ("rules", &["ip", "rule", "show"]),
        ("qdiscs", &["tc", "qdisc", "show"]),
        ("nftables", &["nft", "list", "ruleset"]),
        ("iptables", &["iptables-save"]),
        ("ip6tables", &["ip6tables-save"]),
    ];
    for (what, argv) in views {
        let mut cmd = testutil::command_in(Some(node.ns()), argv[0]);
        cmd.args(&argv[1..]);
        let out = crate::proc::run(cmd, None, Duration::from_secs(20));
        match out.ok() {
            Ok(text) => {
                for n in needles {
                    if mentions(&text, n) {
                        let line = text.lines().find(|l| mentions(l, n)).unwrap_or("");
                        found.push(format!("{what} name {n}: {}", line.trim()));
                    }
                }
            }
            Err(e) => found.push(format!("could not list {what}: {e}")),
        }
    }
    for d in dirs {
        scan_files(d, needles, &mut found);
    }
    found
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}

/// One row of a suite's table.
#[derive(Debug, Clone)]
pub struct Row {
    /// The row's name.
    pub name: &'static str,
    /// What it showed, or why it failed.
    pub result: Result<String, String>,
}

/// A suite's rows, run in order; a row that fails (or panics) is recorded
/// and the suite goes on to the next, so that cleanup rows still run.
#[derive(Debug, Default, Clone)]
pub struct Rows {
    /// The suite's name.
    pub suite: String,
    /// The rows run so far, in order.
    pub rows: Vec<Row>,
    /// Wall time of the whole scenario, seconds.
    pub seconds: f64,
}

impl Rows {
    /// No rows yet.
    pub fn new(suite: &str) -> Rows {
        Rows {
            suite: suite.into(),
            ..Rows::default()
        }
    }

    /// Runs one row; Ok carries what it showed (for the table).
    pub fn row(&mut self, name: &'static str, f: impl FnOnce() -> Result<String, String>) {
        let t0 = Instant::now();
        let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(r) => r,
            Err(p) => Err(panic_message(p)),
        };
        eprintln!(
            "[{}] {name}: {} ({:.1} s) {}",
            self.suite,
            if result.is_ok() { "pass" } else { "FAIL" },
            t0.elapsed().as_secs_f64(),
            match &result {
                Ok(s) | Err(s) => s,
            }
        );
        self.rows.push(Row { name, result });
    }

    /// Runs a whole scenario; a panic outside any row (setting up the
    /// runtime, say) becomes a failed "setup" row instead of leaving the
    /// other tests to run the scenario again.
    pub fn scenario(suite: &str, f: impl FnOnce(&mut Rows)) -> Rows {
        let t0 = Instant::now();
        let mut rows = Rows::new(suite);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut rows)));
        if let Err(p) = outcome {
            rows.rows.push(Row {
                name: "setup",
                result: Err(panic_message(p)),
            });
        }
        rows.seconds = t0.elapsed().as_secs_f64();
        eprintln!("{}", rows.table());
        rows
    }

    /// A row that depends on `needed` having passed.
    pub fn passed(&self, needed: &str) -> bool {
        self.rows
            .iter()
            .any(|r| r.name == needed && r.result.is_ok())
    }

    /// The table, one line per row.
    pub fn table(&self) -> String {
        let mut s = format!("{} ({:.1} s):\n", self.suite, self.seconds);
        for r in &self.rows {
            match &r.result {
                Ok(m) => s.push_str(&format!("  {:<20} pass  {m}\n", r.name)),
                Err(m) => s.push_str(&format!("  {:<20} FAIL  {m}\n", r.name)),
            }
        }
        s
    }

    /// Asserts that row `name` ran and passed; the whole table on failure.
    pub fn assert_row(&self, name: &str) {
        match self.rows.iter().find(|r| r.name == name) {
            Some(Row { result: Ok(_), .. }) => {}
            Some(Row { result: Err(e), .. }) => panic!("row {name} failed: {e}\n{}", self.table()),
            None => panic!("row {name} never ran\n{}", self.table()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn mentions_whole_tokens_only() {
        assert!(mentions("dnat to 10.0.0.2 . 80", "10.0.0.2"));
        assert!(mentions("addr 10.0.0.2/24", "10.0.0.2"));
        assert!(mentions("gone: 10.0.0.2.", "10.0.0.2"));
        assert!(!mentions("addr 10.0.0.23/24", "10.0.0.2"));
        assert!(!mentions("addr 110.0.0.2/24", "10.0.0.2"));
        assert!(mentions("comment \"rcni:net:abc:eth0\"", "abc"));
        assert!(!mentions("vethabcd", "abc"));
    }
}
