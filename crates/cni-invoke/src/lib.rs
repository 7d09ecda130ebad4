//! Finding and running plugins: `CNI_PATH` lookup, exec with env + stdin,
//! result/error parsing, timeouts, and the in-process shortcut used when the
//! plugin found is this very executable.
//!
//! A main plugin usually needs only [`ipam_add`] (ADD through its IPAM
//! plugin, with its own stdin and `CNI_*` values) and [`delegate`] (DEL,
//! CHECK, GC and STATUS the same way). Both look the plugin up on
//! `CNI_PATH`, exec it with a clean environment, and turn its error object
//! into an error of the caller, code and message preserved.
//!
//! # Example
//!
//! Running a plugin found on a search path (here a shell script standing in
//! for an IPAM plugin):
//!
//! ```
//! use cni_invoke::{find_in_path, run_plugin, Invocation};
//! use cni_skel::Command;
//! use std::os::unix::fs::PermissionsExt;
//!
//! let dir = std::env::temp_dir().join(format!("cni-invoke-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).expect("mkdir");
//! let script = dir.join("fake-ipam");
//! std::fs::write(&script, "#!/bin/sh\ncat >/dev/null\necho '{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.9.0.2/24\"}]}'\n").expect("write");
//! std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
//!
//! let found = find_in_path("fake-ipam", &[dir.clone()])?;
//! let inv = Invocation {
//!     command: Command::Add,
//!     container_id: "c1".into(),
//!     netns: "/run/netns/c1".into(),
//!     ifname: "eth0".into(),
//!     args: String::new(),
//!     path: vec![dir.clone()],
//!     timeout: None,
//! };
//! let out = run_plugin(&found, &inv, br#"{"cniVersion":"1.0.0","name":"n","type":"fake-ipam"}"#)?;
//! let result = cni_spec::Result::from_slice(&out, "1.0.0")?;
//! assert_eq!(result.ips[0].address.to_string(), "10.9.0.2/24");
//! std::fs::remove_dir_all(&dir).expect("cleanup");
//! # Ok::<(), cni_spec::Error>(())
//! ```

#![warn(missing_docs)]

use cni_skel::{CmdArgs, Command, Plugin};
use cni_spec::error::CniResult;
use cni_spec::{validate, Error, ErrorCode};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

/// Looks up a plugin compiled into this executable by its `type`.
pub type BuiltinLookup = fn(&str) -> Option<&'static dyn Plugin>;

static BUILTINS: OnceLock<BuiltinLookup> = OnceLock::new();

/// Called once by the multi-call binary so delegation can skip the exec.
pub fn register_builtins(lookup: BuiltinLookup) {
    let _ = BUILTINS.set(lookup);
}

/// Finds `plugin` in `paths` (the first directory holding an executable
/// file of that name). A `type` with a path separator is refused.
pub fn find_in_path(plugin: &str, paths: &[PathBuf]) -> CniResult<PathBuf> {
    validate::plugin_type(plugin)?;
    if paths.is_empty() {
        return Err(Error::invalid_env(format!(
            "cannot find plugin {plugin:?}: CNI_PATH is empty"
        )));
    }
    for dir in paths {
        let candidate = dir.join(plugin);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() && meta.mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(Error::new(
        ErrorCode::InvalidConfig,
        format!("failed to find plugin {plugin:?} in path {paths:?}"),
    ))
}

/// What to tell a plugin besides its stdin.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The verb, `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS` (may be empty, as on containerd's second DEL).
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`, passed through unchanged.
    pub args: String,
    /// `CNI_PATH`: where the called plugin looks for its own delegates.
    pub path: Vec<PathBuf>,
    /// Kill the plugin after this long.
    pub timeout: Option<Duration>,
}

impl Invocation {
    /// The same call a plugin itself received, with another verb: what a
    /// main plugin passes to its IPAM plugin.
    pub fn delegated(args: &CmdArgs, command: Command) -> Invocation {
        Invocation {
            command,
            container_id: args.container_id.clone(),
            netns: args.netns.clone(),
            ifname: args.ifname.clone(),
            args: args.args.clone(),
            path: args.path.clone(),
            timeout: None,
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let path = std::env::join_paths(&self.path)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        vec![
            ("CNI_COMMAND", self.command.as_str().to_string()),
            ("CNI_CONTAINERID", self.container_id.clone()),
            ("CNI_NETNS", self.netns.clone()),
            ("CNI_IFNAME", self.ifname.clone()),
            ("CNI_ARGS", self.args.clone()),
            ("CNI_PATH", path),
        ]
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The builtin plugin `path` stands for, when `path` is this executable.
fn builtin_for(path: &Path) -> Option<&'static dyn Plugin> {
    let lookup = BUILTINS.get()?;
    if !same_file(path, Path::new("/proc/self/exe")) {
        return None;
    }
    lookup(path.file_name()?.to_str()?)
}

/// Runs the plugin at `path` and returns its stdout, or the error object it
/// printed (or one describing how it failed).
pub fn run_plugin(path: &Path, inv: &Invocation, stdin: &[u8]) -> CniResult<Vec<u8>> {
    if let Some(plugin) = builtin_for(path) {
        let env = inv.env();
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        let out = cni_skel::execute(plugin, &get, &mut &stdin[..]);
        return finish(path, out.exit_code, out.stdout, Vec::new());
    }
    exec_plugin(path, inv, stdin)
}

fn exec_plugin(path: &Path, inv: &Invocation, stdin: &[u8]) -> CniResult<Vec<u8>> {
    let mut attempt = 0;
    let mut child = loop {
        let mut cmd = std::process::Command::new(path);
        cmd.envs(inv.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout kills whatever it spawned.
            .process_group(0);
        match cmd.spawn() {
            Ok(c) => break c,
            // Another process may still hold the binary open for writing
            // (being installed); libcni retries this too.
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 5 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                return Err(Error::io(format!(
                    "failed to run plugin {}: {e}",
                    path.display()
                )))
            }
        }
    };
    let pid = child.id() as i32;
    let mut child_stdin = child.stdin.take();
    let mut child_stdout = child.stdout.take();
    let mut child_stderr = child.stderr.take();
    let (out, err, status) = std::thread::scope(|s| {
        s.spawn(move || {
            if let Some(mut w) = child_stdin.take() {
                let _ = w.write_all(stdin);
            }
        });
        let out_reader = s.spawn(move || {
            let mut buf = Vec::new();
            if let Some(r) = child_stdout.as_mut() {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        });
        let err_reader = s.spawn(move || {
            let mut buf = Vec::new();
            if let Some(r) = child_stderr.as_mut() {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        });
        let status = match inv.timeout {
            None => child.wait().map_err(|e| e.to_string()),
            Some(limit) => wait_with_timeout(&mut child, pid, limit),
        };
        let out = out_reader.join().unwrap_or_default();
        let err = err_reader.join().unwrap_or_default();
        (out, err, status)
    });
    match status {
        Ok(st) => finish(path, st.code().unwrap_or(-1), out, err),
        Err(why) => Err(Error::io(format!(
            "plugin {} ({}): {why}",
            path.display(),
            inv.command.as_str()
        ))),
    }
}

fn wait_with_timeout(
    child: &mut std::process::Child,
    pid: i32,
    limit: Duration,
) -> Result<std::process::ExitStatus, String> {
    let deadline = std::time::Instant::now() + limit;
    let mut nap = Duration::from_micros(200);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Ok(st),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        if std::time::Instant::now() >= deadline {
            // SAFETY: signalling the process group we created.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.wait();
            return Err(format!("timed out after {limit:?} and was killed"));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    }
}

fn finish(path: &Path, code: i32, stdout: Vec<u8>, stderr: Vec<u8>) -> CniResult<Vec<u8>> {
    if code == 0 {
        // What a successful plugin warns about reaches our caller, as libcni
        // copies it to the runtime's stderr (informational: a failed write
        // is ignored).
        if !stderr.is_empty() {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), &stderr);
        }
        return Ok(stdout);
    }
    if let Ok(e) = serde_json::from_slice::<Error>(&stdout) {
        return Err(e);
    }
    let text = String::from_utf8_lossy(if stdout.is_empty() { &stderr } else { &stdout });
    Err(Error::internal(format!(
        "plugin {} failed with exit code {code}: {}",
        path.display(),
        text.trim()
    )))
}

/// Delegates ADD to another plugin (typically IPAM) with the same config.
pub fn delegate_add(
    plugin_type: &str,
    args: &CmdArgs,
    stdin: &[u8],
) -> CniResult<cni_spec::Result> {
    let path = find_in_path(plugin_type, &args.path)?;
    let out = run_plugin(&path, &Invocation::delegated(args, Command::Add), stdin)?;
    cni_spec::Result::from_slice(&out, args.version())
}

/// ADD through the IPAM plugin `ipam` on behalf of a main plugin (with the
/// main plugin's own stdin, as the reference does): its result, which must
/// hold at least one address. An IPAM answer without one is released again
/// and reported as an error.
pub fn ipam_add(ipam: &str, args: &CmdArgs) -> CniResult<cni_spec::Result> {
    let r = delegate_add(ipam, args, &args.stdin)?;
    if r.ips.is_empty() {
        let _ = delegate(ipam, Command::Del, args, &args.stdin);
        return Err(cni_spec::Error::internal(
            "IPAM plugin returned missing IP config",
        ));
    }
    Ok(r)
}

/// Delegates another verb (DEL, CHECK, GC, STATUS) to another plugin.
pub fn delegate(
    plugin_type: &str,
    command: Command,
    args: &CmdArgs,
    stdin: &[u8],
) -> CniResult<()> {
    let path = find_in_path(plugin_type, &args.path)?;
    run_plugin(&path, &Invocation::delegated(args, command), stdin).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!("rcni-invoke-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("mkdir");
            TempDir(p)
        }
        fn script(&self, name: &str, body: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            p
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn inv(timeout: Option<Duration>) -> Invocation {
        Invocation {
            command: Command::Add,
            container_id: "c1".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: "".into(),
            path: vec![],
            timeout,
        }
    }

    #[test]
    fn find_refuses_paths_and_finds_executables() {
        let d = TempDir::new("find");
        d.script("good", "exit 0");
        std::fs::write(d.0.join("notexec"), "x").expect("write");
        let paths = vec![PathBuf::from("/nonexistent"), d.0.clone()];
        assert_eq!(
            find_in_path("good", &paths).expect("found"),
            d.0.join("good")
        );
        assert_eq!(find_in_path("notexec", &paths).expect_err("no").code, 7);
        assert_eq!(
            find_in_path("../../bin/sh", &paths).expect_err("cve").code,
            7
        );
        assert_eq!(find_in_path("good", &[]).expect_err("empty").code, 4);
    }

    #[test]
    fn env_and_stdin_reach_the_plugin() {
        let d = TempDir::new("env");
        let p = d.script("echoer", r#"read -r line; printf '{"cmd":"%s","id":"%s","stdin":%s}' "$CNI_COMMAND" "$CNI_CONTAINERID" "$line""#);
        let out = run_plugin(&p, &inv(None), b"{\"a\":1}\n").expect("ran");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["cmd"], "ADD");
        assert_eq!(v["id"], "c1");
        assert_eq!(v["stdin"]["a"], 1);
    }

    #[test]
    fn error_object_is_parsed() {
        let d = TempDir::new("err");
        let p = d.script(
            "failer",
            r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"later","details":"d"}'; exit 1"#,
        );
        let e = run_plugin(&p, &inv(None), b"").expect_err("fails");
        assert_eq!((e.code, e.msg.as_str()), (11, "later"));
        let p = d.script("crasher", "echo oops >&2; exit 3");
        let e = run_plugin(&p, &inv(None), b"").expect_err("fails");
        assert_eq!(e.code, 999);
        assert!(
            e.msg.contains("oops") && e.msg.contains("exit code 3"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn hanging_plugin_is_killed() {
        let d = TempDir::new("hang");
        let p = d.script("hanger", "sleep 30");
        let e = run_plugin(&p, &inv(Some(Duration::from_millis(300))), b"").expect_err("timeout");
        assert!(e.msg.contains("timed out"), "{}", e.msg);
        assert_eq!(e.code, 5);
    }
}
