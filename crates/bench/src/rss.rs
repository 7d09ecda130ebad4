//! Peak resident memory of a plugin call, measured exactly.
//!
//! `ru_maxrss` from wait4 is useless here: exec keeps the high-water mark
//! of the forked copy of the *benchmark* process. Instead the call runs
//! under ptrace with PTRACE_O_TRACEEXIT, which stops every process of the
//! call (the plugin and anything it forks) just before its memory is torn
//! down, when /proc/<pid>/status still shows its VmHWM.

use crate::Env;
use netns::NetNs;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;

fn vm_hwm_kb(pid: libc::pid_t) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs `plugin` once and returns the largest VmHWM (KiB) of any process
/// of the call.
pub fn peak_kb(
    plugin: &Path,
    bin_dir: &Path,
    env: &Env,
    stdin: &str,
    node: &NetNs,
) -> Result<u64, String> {
    let mut cmd = testutil::command_in(Some(node), plugin);
    cmd.env_clear()
        .env("CNI_COMMAND", env.command)
        .env("CNI_CONTAINERID", env.container_id)
        .env("CNI_NETNS", env.netns)
        .env("CNI_IFNAME", env.ifname)
        .env("CNI_PATH", bin_dir)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: ptrace(TRACEME) is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
    let main = child.id() as libc::pid_t;
    let input = stdin.to_string();
    let mut w = child.stdin.take();
    let mut r = child.stdout.take();
    let io = std::thread::spawn(move || {
        if let Some(w) = w.as_mut() {
            let _ = w.write_all(input.as_bytes());
        }
        drop(w);
        let mut out = String::new();
        if let Some(r) = r.as_mut() {
            let _ = r.read_to_string(&mut out);
        }
        out
    });
    let opts = libc::PTRACE_O_TRACEEXIT
        | libc::PTRACE_O_TRACEFORK
        | libc::PTRACE_O_TRACEVFORK
        | libc::PTRACE_O_TRACECLONE
        | libc::PTRACE_O_EXITKILL;
    let mut peak = 0u64;
    let mut main_ok = false;
    let mut options_set = false;
    loop {
        let mut status = 0;
        // SAFETY: plain wait on our own (traced) children.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if pid < 0 {
            break; // ECHILD: every process of the call is gone.
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            if pid == main {
                main_ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
            }
            continue;
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        let sig = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xff;
        let mut deliver = 0;
        if pid == main && !options_set {
            // The exec stop of the plugin itself.
            // SAFETY: pid is our tracee, stopped.
            unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, opts) };
            options_set = true;
        } else if event == libc::PTRACE_EVENT_EXIT {
            peak = peak.max(vm_hwm_kb(pid));
        } else if event == 0 && sig != libc::SIGTRAP && sig != libc::SIGSTOP {
            deliver = sig;
        }
        // SAFETY: resume our stopped tracee.
        unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, deliver) };
    }
    let out = io.join().unwrap_or_default();
    if !main_ok {
        return Err(format!("plugin failed: {}", out.trim()));
    }
    Ok(peak)
}
