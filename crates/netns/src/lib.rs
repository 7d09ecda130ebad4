//! Network namespace handles.
//!
//! `setns` moves only the calling thread, so this crate never switches the
//! namespace of a thread it does not own: [`NetNs::run`] enters the namespace
//! on a fresh scoped thread and the thread ends there. Code that only needs
//! netlink should open its socket inside the namespace instead (see the
//! `netlink` crate) and never switch at all.
//!
//! # Example
//!
//! (Needs root, like everything that makes namespaces.)
//!
//! ```
//! use netns::NetNs;
//!
//! // A namespace that disappears with its handle.
//! let ns = netns::create_anonymous()?;
//! let here = NetNs::current()?;
//! assert!(!here.same_as(&ns));
//! // Code inside `run` sees the other namespace; the caller does not move.
//! let inside = ns.run(|| NetNs::current().map(|cur| cur.same_as(&ns)))??;
//! assert!(inside);
//! assert!(NetNs::current()?.same_as(&here));
//! # Ok::<(), netns::Error>(())
//! ```

#![warn(missing_docs)]

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

/// Where `ip netns` keeps named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// What can go wrong with namespaces.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to open netns {path}: {source}")]
    /// The path could not be opened.
    Open {
        /// The namespace path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    #[error("{path} is not a network namespace")]
    /// The path is not a network namespace (nsfs) file.
    NotNetNs {
        /// The path.
        path: PathBuf,
    },
    #[error("{path} is an empty file, not a network namespace: its namespace was unmounted")]
    /// The path is an empty regular file: what a runtime's bind-mount
    /// target (`/run/netns/<name>`) is once its namespace was unmounted and
    /// the file not yet removed.
    Unmounted {
        /// The path.
        path: PathBuf,
    },
    #[error("failed to enter netns {path}: {source}")]
    /// `setns` into the namespace failed.
    Enter {
        /// The namespace path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    #[error("failed to create netns {name}: {source}")]
    /// A named namespace could not be created.
    Create {
        /// Its name under `/run/netns`.
        name: String,
        /// Why.
        source: io::Error,
    },
    #[error("failed to delete netns {name}: {source}")]
    /// A named namespace could not be deleted.
    Delete {
        /// Its name under `/run/netns`.
        name: String,
        /// Why.
        source: io::Error,
    },
}

impl Error {
    /// True when the namespace path simply does not exist (DEL treats that as done).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Open { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// True when the path names no namespace any more: it does not exist,
    /// or it is [`Error::Unmounted`]. DEL treats both as a sandbox already
    /// gone; any other file that is not a namespace stays an error.
    pub fn is_gone(&self) -> bool {
        matches!(self, Error::Unmounted { .. }) || self.is_not_found()
    }
}

/// This crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// An open network namespace. Holding the file keeps the namespace alive.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

const NSFS_MAGIC: i64 = 0x6e73_6673;
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

impl NetNs {
    /// Opens a namespace by path (`/run/netns/x`, `/proc/<pid>/ns/net`, ...)
    /// and checks that it really is a namespace file.
    pub fn open(path: impl AsRef<Path>) -> Result<NetNs> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| Error::Open {
            path: path.clone(),
            source,
        })?;
        // SAFETY: statfs is plain data; all zeroes is a valid value.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: fstatfs on a valid fd with an out-pointer to a live struct.
        if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } != 0 {
            return Err(Error::Open {
                path,
                source: io::Error::last_os_error(),
            });
        }
        let magic = st.f_type as i64;
        if magic != NSFS_MAGIC {
            // procfs files report size 0 too: only elsewhere is an empty
            // regular file a mount point left behind.
            let empty = magic != PROC_SUPER_MAGIC
                && file.metadata().is_ok_and(|m| m.is_file() && m.len() == 0);
            return Err(if empty {
                Error::Unmounted { path }
            } else {
                Error::NotNetNs { path }
            });
        }
        Ok(NetNs { file, path })
    }

    /// The namespace of the calling thread (never `/proc/self`: that is the
    /// main thread's, which may differ).
    pub fn current() -> Result<NetNs> {
        Self::open("/proc/thread-self/ns/net")
    }

    /// The open file descriptor (valid while `self` lives).
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Same namespace as `other` (compares device and inode).
    pub fn same_as(&self, other: &NetNs) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), other.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// Moves the calling thread into this namespace until the guard drops.
    /// Prefer [`NetNs::run`]; this is for threads the caller owns.
    pub fn enter(&self) -> Result<NsGuard> {
        let previous = NetNs::current()?;
        setns(self.fd()).map_err(|source| Error::Enter {
            path: self.path.clone(),
            source,
        })?;
        Ok(NsGuard { previous })
    }

    /// Runs `f` inside this namespace and returns to the caller's namespace
    /// before returning, also when `f` panics.
    ///
    /// This switches the *calling* thread for the duration of `f` (two
    /// `setns` calls) rather than spawning a thread: a plugin runs once per
    /// pod and a thread costs more than the work it would carry. Nothing
    /// else can run on this thread meanwhile, so no other code observes the
    /// switch; threads spawned inside `f` start in this namespace.
    pub fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T,
    {
        let _back = self.enter()?;
        Ok(f())
    }
}

/// Restores the thread's previous namespace on drop.
#[must_use = "the namespace is left when the guard drops"]
pub struct NsGuard {
    previous: NetNs,
}

impl Drop for NsGuard {
    fn drop(&mut self) {
        if setns(self.previous.fd()).is_err() {
            // A thread stuck in the wrong namespace would silently configure
            // the wrong network; dying is safer.
            std::process::abort();
        }
    }
}

fn setns(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn cstr(p: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn mount(src: &Path, dst: &Path, fstype: Option<&str>, flags: libc::c_ulong) -> io::Result<()> {
    let src = cstr(src)?;
    let dst = cstr(dst)?;
    let fstype = fstype
        .map(CString::new)
        .transpose()
        .map_err(io::Error::other)?;
    // SAFETY: valid C strings; data is null.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `/run/netns` a shared mount point, as `ip netns add` does, so that
/// namespace bind mounts propagate to other mount namespaces.
fn prepare_run_dir(dir: &Path) -> io::Result<()> {
    // 0755 whatever the umask (`ip netns add` makes it so too).
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o755)
        .create(dir)?;
    let flags = libc::MS_SHARED | libc::MS_REC;
    if mount(Path::new("none"), dir, None, flags).is_ok() {
        return Ok(());
    }
    mount(dir, dir, Some("none"), libc::MS_BIND | libc::MS_REC)?;
    mount(Path::new("none"), dir, None, flags)
}

/// Creates a named namespace at `/run/netns/<name>` (like `ip netns add`).
pub fn create_named(name: &str) -> Result<NetNs> {
    let err = |source| Error::Create {
        name: name.to_string(),
        source,
    };
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad namespace name",
        )));
    }
    let dir = Path::new(NETNS_RUN_DIR);
    prepare_run_dir(dir).map_err(err)?;
    let path = dir.join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(err)?;
    let target = path.clone();
    // unshare() on a throwaway thread: the new namespace is pinned by the
    // bind mount, and no long-lived thread changes namespace.
    let made = std::thread::spawn(move || -> io::Result<()> {
        // SAFETY: plain syscall.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        mount(
            Path::new("/proc/thread-self/ns/net"),
            &target,
            Some("none"),
            libc::MS_BIND,
        )
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("netns creation thread panicked")));
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(err(e));
    }
    NetNs::open(&path)
}

/// Creates a namespace that lives only as long as the returned handle: no
/// name, no bind mount, nothing to clean up after a crash. For transient
/// work such as renaming a device away from every other namespace.
pub fn create_anonymous() -> Result<NetNs> {
    let err = |source| Error::Create {
        name: "(anonymous)".to_string(),
        source,
    };
    // unshare() on a throwaway thread, which exits right after opening the
    // namespace: the open file alone keeps the namespace alive.
    let file = std::thread::spawn(|| -> io::Result<File> {
        // SAFETY: plain syscall.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        File::open("/proc/thread-self/ns/net")
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("netns creation thread panicked")))
    .map_err(err)?;
    Ok(NetNs {
        file,
        path: PathBuf::from("(anonymous netns)"),
    })
}

/// Removes a named namespace created by [`create_named`] or `ip netns add`.
/// Succeeds when it is already gone.
pub fn delete_named(name: &str) -> Result<()> {
    let path = Path::new(NETNS_RUN_DIR).join(name);
    let err = |source| Error::Delete {
        name: name.to_string(),
        source,
    };
    let c = cstr(&path).map_err(err)?;
    // SAFETY: valid C string.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) && e.kind() != io::ErrorKind::NotFound {
            return Err(err(e));
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        // SAFETY: trivial syscall.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn current_is_a_namespace() {
        let ns = NetNs::current().expect("current netns");
        assert!(ns.same_as(&NetNs::current().expect("again")));
    }

    #[test]
    fn open_refuses_regular_files() {
        let err = NetNs::open("/proc/self/status").expect_err("not a netns");
        assert!(matches!(err, Error::NotNetNs { .. }), "{err}");
        assert!(NetNs::open("/nonexistent/ns")
            .expect_err("missing")
            .is_not_found());
    }

    #[test]
    fn an_empty_file_is_a_namespace_gone_and_another_file_is_not() {
        let dir = std::env::temp_dir().join(format!("rcni-netns-gone-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("unmounted");
        std::fs::write(&empty, b"").expect("empty");
        let full = dir.join("other");
        std::fs::write(&full, b"not a namespace").expect("full");
        let gone = NetNs::open(&empty).expect_err("empty file");
        let other = NetNs::open(&full).expect_err("other file");
        let missing = NetNs::open(dir.join("missing")).expect_err("missing");
        let a_dir = NetNs::open(&dir).expect_err("a directory");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(gone.is_gone(), "{gone}");
        assert!(!other.is_gone(), "{other}");
        assert!(missing.is_gone(), "{missing}");
        assert!(!a_dir.is_gone(), "{a_dir}");
        assert!(!NetNs::open("/proc/self/status")
            .expect_err("procfs")
            .is_gone());
    }

    #[test]
    fn create_run_delete() {
        assert!(is_root(), "netns tests need root (CI runs as root)");
        let name = format!("rcni-nstest-{}", std::process::id());
        let ns = create_named(&name).expect("create");
        let here = NetNs::current().expect("current");
        assert!(!ns.same_as(&here));
        let inside = ns
            .run(|| NetNs::current().map(|c| c.same_as(&ns)))
            .expect("run")
            .expect("current inside");
        assert!(inside);
        // The calling thread never moved.
        assert!(NetNs::current().expect("current").same_as(&here));
        {
            let _g = ns.enter().expect("enter");
            assert!(NetNs::current().expect("cur").same_as(&ns));
        }
        assert!(NetNs::current().expect("current").same_as(&here));
        drop(ns);
        delete_named(&name).expect("delete");
        delete_named(&name).expect("delete twice is fine");
        assert!(!Path::new(NETNS_RUN_DIR).join(&name).exists());
    }

    #[test]
    fn anonymous_namespaces_are_distinct_and_usable() {
        assert!(is_root(), "netns tests need root (CI runs as root)");
        let a = create_anonymous().expect("create");
        let b = create_anonymous().expect("create");
        let here = NetNs::current().expect("current");
        assert!(!a.same_as(&here) && !a.same_as(&b));
        let inside = a
            .run(|| NetNs::current().map(|c| c.same_as(&a)))
            .expect("run")
            .expect("current inside");
        assert!(inside);
    }
}
