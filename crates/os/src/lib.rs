//! The OS layer of rcni: every file, lock, process and hash a plugin (and
//! the IPAM store, the runtime's cache, the agent) needs, once. The plugin
//! kit re-exports it as `kit::os`. Plugin crates reach the filesystem and
//! processes only through here (and the kernel only through `netlink`, `nft`,
//! `netns` and the recipes of this crate); `scripts/check-plugin-os.sh`
//! and `plugins/clippy.toml` refuse a direct call.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub use std::fs::{File as OsFile, Metadata};

/// FNV-1a, 64 bit: a stable, dependency-free hash for names (veth names,
/// MACs derived from a seed, record names).
pub use cni_spec::ident::fnv1a;

/// An exclusive `flock` on a file, released when dropped (closing the
/// file releases it).
#[derive(Debug)]
pub struct Lock {
    file: File,
}

impl Lock {
    /// Locks `path`, creating it (mode 0600) when `create`; waits for the
    /// holder, retrying on EINTR.
    pub fn exclusive(path: &Path, create: bool) -> io::Result<Lock> {
        Lock::exclusive_with_mode(path, create.then_some(0o600))
    }

    /// As [`Lock::exclusive`], creating a missing file with `create`'s mode
    /// (the IPAM store's lock file is 0644, as the reference's).
    pub fn exclusive_with_mode(path: &Path, create: Option<u32>) -> io::Result<Lock> {
        let file = if let Some(mode) = create {
            OpenOptions::new()
                .mode(mode)
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)?
        } else {
            File::open(path)?
        };
        loop {
            // SAFETY: flock on a file descriptor this function owns (and
            // keeps open for the call); no memory is passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(Lock { file });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// The locked file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// How much [`write_atomic`] guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Readers see the old or the new file, never half of one; a crash may
    /// lose the new one (state under /run, which a reboot clears anyway).
    Atomic,
    /// As `Atomic`, and once this returns the new file survives a crash:
    /// the data and the directory entry are synced.
    Durable,
}

/// Writes `data` to `path` through a sibling temporary file and a rename,
/// with `mode` (e.g. 0o600). The temporary file is `.<name>.tmp` next to
/// `path` (names may contain dots, so no `with_extension`), removed on
/// failure.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32, d: Durability) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    // One fixed temporary name per path: a writer killed halfway leaves
    // it for the next write of that path to reuse (a unique name would
    // stay forever), and it adds only 5 bytes to bounded file names.
    // Writers of one path therefore take a lock or are alone.
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        if d == Durability::Durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return written;
    }
    if d == Durability::Durable {
        if let Some(dir) = path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

/// Creates `dir` and its parents; the last component with `mode`.
pub fn create_dir_all(dir: &Path, mode: u32) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
}

/// A file's content; `None` when it does not exist.
pub fn read_if_exists(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A file's content.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    std::fs::read(path)
}

/// A file's content as text.
pub fn read_to_string(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path)
}

/// Removes a file; `Ok(false)` when there was none.
pub fn remove_file(path: &Path) -> io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The names in a directory, sorted (Go's `os.ReadDir` order).
pub fn dir_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    Ok(v)
}

/// Whether something (a file, a directory, a dangling link) is at `path`.
pub fn exists_no_follow(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Where the symbolic link `path` points.
pub fn read_link(path: &Path) -> io::Result<PathBuf> {
    std::fs::read_link(path)
}

/// Opens a file for reading.
pub fn open(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// What a finished process left.
#[derive(Debug)]
pub struct Output {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: Vec<u8>,
}

impl Output {
    /// Exited with 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `program` with `args`, feeding it `stdin` (if any), with the
/// environment of this process, and waits for it.
pub fn run<S: AsRef<std::ffi::OsStr>>(
    program: impl AsRef<std::ffi::OsStr>,
    args: &[S],
    stdin: Option<&[u8]>,
) -> io::Result<Output> {
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
        // A program that exits before reading all of it is reported by
        // its exit status, not by EPIPE here.
        let _ = w.write_all(data);
    }
    let out = child.wait_with_output()?;
    Ok(Output {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    })
}

/// Reads all of `r` (for files opened through [`open`]).
pub fn read_all(mut r: impl Read) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.read_to_end(&mut v)?;
    Ok(v)
}

/// Creates `dir` as private state (0700) and its missing parents 0755,
/// whatever the umask (the modes asked for carry no group or world write
/// bit, which a umask can only take away).
pub fn make_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent, 0o755)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

/// Writes `data` to an existing file (a sysctl, a `/proc` attribute):
/// write-only without `O_CREAT`, so a missing file is an error, never a new
/// one.
pub fn write_existing(path: &Path, data: &[u8]) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(data))
}

/// The canonical, absolute form of `path` (links resolved).
pub fn canonicalize(path: &Path) -> io::Result<PathBuf> {
    std::fs::canonicalize(path)
}

/// This process's id.
pub fn pid() -> u32 {
    std::process::id()
}

/// A file's permission bits (links followed).
pub fn mode(path: &Path) -> io::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o7777)
}

/// Removes a directory and everything in it.
pub fn remove_dir_all(path: &Path) -> io::Result<()> {
    std::fs::remove_dir_all(path)
}

/// Sets the permission bits of `path` to `mode`, whatever the umask was.
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Ends the process now with `code` (no destructors run).
pub fn exit(code: i32) -> ! {
    std::process::exit(code)
}

/// The effective user id of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// The user id of the process at the other end of a Unix socket, from the
/// kernel (SO_PEERCRED), not from anything the peer says.
pub fn peer_uid(sock: &impl AsRawFd) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a local
    // of that size, for a descriptor the caller keeps open.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// The listening socket systemd passes as fd 3 (socket activation; the
/// caller checked `LISTEN_PID` and `LISTEN_FDS=1`).
pub fn systemd_listener() -> std::os::unix::net::UnixListener {
    use std::os::fd::FromRawFd;
    // SAFETY: with LISTEN_PID naming this process and LISTEN_FDS=1, fd 3 is
    // the listening socket systemd handed over, owned by nothing else.
    unsafe { std::os::unix::net::UnixListener::from_raw_fd(3) }
}

/// SIGINT and SIGTERM, blocked in every thread started after
/// [`TermSignals::block`], taken by one thread with [`TermSignals::wait`].
#[derive(Clone, Copy)]
pub struct TermSignals {
    set: libc::sigset_t,
}

impl TermSignals {
    /// Blocks SIGINT and SIGTERM for the calling thread (and the threads it
    /// starts from now on).
    pub fn block() -> TermSignals {
        // SAFETY: sigset manipulation on a local, initialised by
        // sigemptyset before use; pthread_sigmask only reads it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            TermSignals { set }
        }
    }

    /// Waits until one of them arrives.
    pub fn wait(&self) {
        let mut sig = 0;
        // SAFETY: waits on the initialised set; writes the signal number
        // into a local.
        unsafe { libc::sigwait(&self.set, &mut sig) };
    }
}

/// Whether `path` exists (links followed).
pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// Whether `path` is a regular file (links followed).
pub fn is_file(path: &Path) -> bool {
    path.is_file()
}

/// Whether `path` is a directory (links followed).
pub fn is_dir(path: &Path) -> bool {
    path.is_dir()
}

/// Appends `data` to `path`, creating it (mode 0600) when missing.
pub fn append(path: &Path, data: &[u8]) -> io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?
        .write_all(data)
}
