//! Child processes with a deadline: every wait in these suites is bounded.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
    /// How the command was described (for messages).
    pub what: String,
}

impl Output {
    /// Whether it exited with 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Ok(stdout) on exit 0, else a message naming the command.
    pub fn ok(&self) -> Result<String, String> {
        if self.success() {
            Ok(self.stdout.clone())
        } else {
            Err(format!(
                "{} exited {}: {}{}",
                self.what,
                self.code,
                self.stderr.trim(),
                if self.stdout.trim().is_empty() {
                    String::new()
                } else {
                    format!(" (stdout: {})", self.stdout.trim())
                }
            ))
        }
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn reader(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Kills a process group (the command and whatever it forked that stayed
/// in its group, e.g. what `nsenter` runs).
pub fn kill_group(child: &Child) {
    // SAFETY: plain syscall; the group id is the child's pid (process_group(0)).
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
}

/// Runs `cmd` (its own process group) with `stdin`, at most `timeout`; a
/// command still running then is killed with its group and reported as
/// failed (code -1), never waited for.
pub fn run(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let what = describe(&cmd);
    cmd.process_group(0)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Output {
                code: -1,
                stdout: String::new(),
                stderr: format!("spawn: {e}"),
                what,
            }
        }
    };
    if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
        let _ = w.write_all(data);
    }
    let out_rx = reader(child.stdout.take().expect("piped stdout"));
    let err_rx = reader(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                timed_out = true;
                kill_group(&child);
                let _ = child.wait();
                break None;
            }
        }
    };
    // A daemon the command left behind may hold the pipes: take what is
    // there within a grace period rather than wait for it.
    let grace = Instant::now() + Duration::from_secs(2);
    let take = |rx: &mpsc::Receiver<Vec<u8>>| {
        let left = grace.saturating_duration_since(Instant::now());
        String::from_utf8_lossy(&rx.recv_timeout(left).unwrap_or_default()).into_owned()
    };
    let stdout = take(&out_rx);
    let mut stderr = take(&err_rx);
    if timed_out {
        stderr.push_str(&format!("\n(killed after {timeout:?})"));
    }
    Output {
        code: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout,
        stderr,
        what,
    }
}

/// Polls `f` every 20 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
