//! Allocation store. [`DiskStore`] keeps exactly the reference host-local
//! layout — `<dataDir>/<network>/<ip>` holding `<containerID>\r\n<ifname>`,
//! `last_reserved_ip.<rangeset index>`, and a `lock` file taken with flock —
//! so the reference plugin and rcni can share one directory.
//!
//! For flat ADD/DEL cost it keeps an index from container ID to addresses in
//! a sidecar directory `<dataDir>/.rcni-index/<network>/` (outside the
//! network directory, so the reference never reads it). The index is trusted
//! only while the network directory's mtime equals a sentinel that we set
//! with utimensat after each of our changes (`gen` seconds after the epoch,
//! 0 ns) and that is recorded in the sidecar's `state` file. Any create or
//! unlink by someone else sets the mtime to the current time, and the next
//! locker rebuilds the index by scanning once. Index hits are also verified
//! by reading the one allocation file they point to.
//!
//! Crash safety: an allocation file is written complete under a temporary
//! name and then hard-linked to the IP name (link fails atomically with
//! EEXIST like O_EXCL); the temporary is removed at the end and by the next
//! locker. A process killed anywhere leaves each IP file complete or absent.
//!
//! Inode reuse: creating an inode is the most expensive file operation of an
//! ADD (on ext4 ~0.15 ms, far more than a rename). So a released allocation
//! file is not unlinked but renamed into a small spare pool
//! `<dataDir>/.rcni-index/.spare/<network>/`, and the next ADD rewrites a
//! spare there (invisible to anyone reading the network directory) and
//! renames it to the IP name with RENAME_NOREPLACE, which like link fails
//! atomically with EEXIST. For the same reason the index is one file of
//! fixed-size bucket slots rather than a file per bucket.
//!
//! Taken-address pages: beside the buckets, one file per IPv4 /16 holding
//! allocation, `taken-v4-<a>.<b>`, a bitmap of 8 KiB (one bit per address),
//! kept under the same sentinel as the buckets. A set bit means "allocated";
//! the allocator skips those candidates without a stat, so walking a nearly
//! full pool (no cursor, or a cursor that must wrap) costs bit tests instead
//! of one stat per taken address. A clear or missing bit proves nothing: the
//! candidate is still reserved through the file system, so the pages can
//! only make a walk faster, never hand out a taken address.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Default data directory of host-local.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";
/// Name of the lock file inside the network directory (the reference's).
pub const LOCK_FILE: &str = "lock";
/// Prefix of the round-robin cursor files (the reference's).
pub const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
/// Temporary allocation file inside the network directory; never a valid IP.
pub const TMP_FILE: &str = "rcni-alloc.tmp";
/// Sidecar directory under the data directory (no network name can start
/// with a dot, so it never collides with a network).
pub const INDEX_DIR: &str = ".rcni-index";
const STATE_FILE: &str = "state";
const STATE_MAGIC: &str = "rcni-ipam-index v4";
/// Prefix of the taken-address pages (see the module docs).
const TAKEN_PREFIX: &str = "taken-v4-";
/// Bytes of one taken-address page: one bit per address of a /16.
const TAKEN_PAGE: usize = 8192;
/// Number of index buckets (keyed by a hash of the container ID), each a
/// fixed slot of [`SLOT`] bytes in the one index file: reading or writing a
/// bucket is one pread or pwrite, and no ADD creates a file for the index.
/// At 4000 allocations a bucket holds ~31 lines of ~40 bytes.
const BUCKETS: u64 = 128;
/// Bytes per bucket slot. Text beyond that goes to an overflow file
/// `b<NN>`, and the slot then holds [`OVERFLOW`].
const SLOT: usize = 2048;
/// The index file under the network's index directory.
const BUCKETS_FILE: &str = "buckets";
const OVERFLOW: &str = "@overflow\n";
/// Sub-directory of [`INDEX_DIR`] holding the spare inode pools (no network
/// name starts with a dot, so it never collides with a network's index).
const SPARE_DIR: &str = ".spare";
/// Released allocation files kept for reuse, per network.
const SPARES: usize = 16;
/// Generations wrap below this (≈ 1973), far from any real clock reading.
const GEN_WRAP: u64 = 100_000_000;

/// Who holds an address, as read from its file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    /// The container ID.
    pub id: String,
    /// `None` for files of old host-local versions that held only the ID.
    pub ifname: Option<String>,
}

impl Owner {
    /// Parse file contents the way the reference compares them (trimmed).
    pub fn parse(content: &str) -> Owner {
        let t = content.trim();
        match t.split_once("\r\n") {
            Some((id, ifname)) => Owner {
                id: id.to_string(),
                ifname: Some(ifname.to_string()),
            },
            None => Owner {
                id: t.to_string(),
                ifname: None,
            },
        }
    }

    /// Exact match on (id, ifname).
    pub fn is(&self, id: &str, ifname: &str) -> bool {
        self.id == id.trim() && self.ifname.as_deref() == Some(ifname)
    }

    /// Old-format file of this container (matches any ifname).
    pub fn is_legacy_of(&self, id: &str) -> bool {
        self.ifname.is_none() && self.id == id.trim()
    }
}

/// Operations the allocator needs, performed under the store's lock.
pub trait Store {
    /// Create the allocation of `ip` for (id, ifname); false when taken.
    fn reserve(&mut self, id: &str, ifname: &str, ip: IpAddr, range_id: &str) -> Result<bool>;
    /// The round-robin cursor of range set `range_id`.
    fn last_reserved(&mut self, range_id: &str) -> Option<IpAddr>;
    /// True when `ip` is known to be allocated without asking the file
    /// system (a hint: false proves nothing, [`Store::reserve`] decides).
    fn known_taken(&mut self, _ip: IpAddr) -> bool {
        false
    }
    /// How many addresses from `ip` on (in address order) are known to be
    /// allocated: 0 when `ip` itself is not known to be.
    fn taken_run(&mut self, ip: IpAddr) -> u32 {
        u32::from(self.known_taken(ip))
    }
    /// Addresses held by (id, ifname), including old ID-only files.
    fn get_by_id(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>>;
    /// Release everything (id, ifname) holds (old ID-only files only when no
    /// exact match exists, like the reference). Returns what was released.
    fn release_by_id(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>>;
    /// Release `ip` if (id, ifname) holds it.
    fn release_ip(&mut self, ip: IpAddr, id: &str, ifname: &str) -> Result<bool>;
    /// Every allocation.
    fn all(&mut self) -> Result<Vec<(IpAddr, Owner)>>;
}

/// The reference-compatible on-disk store of one network.
#[derive(Debug, Clone)]
pub struct DiskStore {
    net_dir: PathBuf,
    index_dir: PathBuf,
    spare_dir: PathBuf,
}

fn valid_network_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\0')
}

fn mkdir_p(path: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
}

impl DiskStore {
    /// Open (creating if needed) the store of `network` under `data_dir`
    /// (default [`DEFAULT_DATA_DIR`]).
    pub fn open(data_dir: Option<&Path>, network: &str) -> Result<DiskStore> {
        if !valid_network_name(network) {
            return Err(Error::InvalidConfig(format!(
                "invalid network name {network:?}"
            )));
        }
        let data_dir = data_dir.unwrap_or(Path::new(DEFAULT_DATA_DIR));
        let net_dir = data_dir.join(network);
        // stat first: mkdir of an existing directory still takes the
        // parent's lock, which parallel ADDs would contend on.
        let exists = fs::metadata(&net_dir).is_ok_and(|m| m.is_dir());
        if !exists {
            mkdir_p(&net_dir, 0o755)
                .map_err(|e| Error::io("failed to create data directory", &net_dir, e))?;
        }
        let index_dir = data_dir.join(INDEX_DIR).join(network);
        let spare_dir = data_dir.join(INDEX_DIR).join(SPARE_DIR).join(network);
        Ok(DiskStore {
            net_dir,
            index_dir,
            spare_dir,
        })
    }

    /// The network directory `<dataDir>/<network>`.
    pub fn dir(&self) -> &Path {
        &self.net_dir
    }

    /// Take the lock (flock on `<dir>/lock`, shared with the reference) and
    /// make the index trustworthy.
    pub fn lock(&self) -> Result<DiskGuard<'_>> {
        let lock_path = self.net_dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&lock_path)
            .map_err(|e| Error::io("failed to open lock file", &lock_path, e))?;
        loop {
            // SAFETY: flock on an fd we own.
            let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() != ErrorKind::Interrupted {
                return Err(Error::io("failed to lock", &lock_path, err));
            }
        }
        let mut guard = DiskGuard {
            store: self,
            _lock: lock,
            dirty: false,
            index_usable: true,
            gen: 0,
            tmp_content: None,
            bucket_cache: RefCell::new(None),
            index_file: None,
            taken: Vec::new(),
        };
        guard.prepare()?;
        Ok(guard)
    }
}

/// The store while its lock is held. Dropping it (or [`DiskGuard::commit`])
/// seals the index and releases the lock.
pub struct DiskGuard<'a> {
    store: &'a DiskStore,
    _lock: File,
    /// We changed the network directory or the index under this lock.
    dirty: bool,
    /// False when the index could not be maintained; the sentinel is then
    /// not set, so the next locker rebuilds.
    index_usable: bool,
    gen: u64,
    tmp_content: Option<String>,
    /// The last bucket read or written under this lock (number, content),
    /// so an ADD reads its bucket once.
    bucket_cache: RefCell<Option<(u64, String)>>,
    /// The index file, opened on first use under this lock.
    index_file: Option<File>,
    /// Taken-address pages read under this lock: (/16 number, bitmap;
    /// `None` when there is no page).
    taken: Vec<(u32, Option<Vec<u8>>)>,
}

struct IndexLine {
    ip: IpAddr,
    owner: Owner,
}

/// FNV-1a, 64 bit: a stable hash (the index must read the same across
/// builds of rcni).
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\t' => out.push_str("%09"),
            '\n' => out.push_str("%0A"),
            '\r' => out.push_str("%0D"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("%09", "\t")
        .replace("%0A", "\n")
        .replace("%0D", "\r")
        .replace("%25", "%")
}

fn mtime_of(path: &Path) -> io::Result<(i64, i64)> {
    let md = fs::metadata(path)?;
    Ok((md.mtime(), md.mtime_nsec()))
}

fn set_mtime(path: &Path, secs: i64) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "path contains NUL"))?;
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: secs as _,
            tv_nsec: 0,
        },
    ];
    // SAFETY: valid C string and a two-element timespec array.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// link(2) following a /proc/self/fd magic link (linkat AT_SYMLINK_FOLLOW);
/// fails with EEXIST when `to` exists, atomically.
fn link_follow(from: &Path, to: &Path) -> io::Result<()> {
    let f = CString::new(from.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "path contains NUL"))?;
    let t = CString::new(to.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: two valid C strings.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// renameat2(RENAME_NOREPLACE): fails with EEXIST when `to` exists,
/// atomically.
/// Empties a spare allocation file (it keeps its inode for reuse); a file
/// that cannot be emptied is removed instead.
fn scrub(path: &Path) {
    let emptied = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(|f| {
            if !f.metadata()?.is_file() {
                return Err(io::Error::other("not a plain spare file"));
            }
            f.set_len(0)
        });
    if emptied.is_err() {
        let _ = fs::remove_file(path);
    }
}

fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let f = CString::new(from.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "path contains NUL"))?;
    let t = CString::new(to.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: two valid C strings; the raw syscall because not every libc
    // wraps renameat2.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Replace a small file's contents in place: write at offset 0, then cut
/// the tail. Avoids O_TRUNC to zero, which on ext4 (auto_da_alloc) forces
/// a flush at close and costs most of an ADD. A torn write is harmless for
/// every file written this way (cursor, index bucket, index state).
fn overwrite(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)?;
    f.write_all_at(data, 0)?;
    if f.metadata()?.len() > data.len() as u64 {
        f.set_len(data.len() as u64)?;
    }
    Ok(())
}

fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

impl DiskGuard<'_> {
    fn net(&self, name: &str) -> PathBuf {
        self.store.net_dir.join(name)
    }

    fn bucket_of(id: &str) -> u64 {
        fnv1a(id.trim().as_bytes()) % BUCKETS
    }

    fn overflow_file(&self, bucket: u64) -> PathBuf {
        self.store.index_dir.join(format!("b{bucket:02x}"))
    }

    fn index_file(&mut self) -> io::Result<&File> {
        if self.index_file.is_none() {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.store.index_dir.join(BUCKETS_FILE))?;
            self.index_file = Some(f);
        }
        self.index_file
            .as_ref()
            .ok_or_else(|| io::Error::other("index file not open"))
    }

    /// A bucket's text: its slot up to the first NUL, or its overflow file.
    fn read_slot(&mut self, bucket: u64) -> io::Result<String> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; SLOT];
        let f = self.index_file()?;
        let mut got = 0;
        while got < SLOT {
            match f.read_at(&mut buf[got..], bucket * SLOT as u64 + got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        let end = buf.iter().position(|b| *b == 0).unwrap_or(got);
        buf.truncate(end);
        let text =
            String::from_utf8(buf).map_err(|_| io::Error::other("index slot is not UTF-8"))?;
        if text == OVERFLOW {
            return fs::read_to_string(self.overflow_file(bucket));
        }
        Ok(text)
    }

    /// Replace a bucket's text (whole slot, NUL-padded).
    fn write_slot(&mut self, bucket: u64, text: &str) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let body = if text.len() <= SLOT {
            text
        } else {
            overwrite(&self.overflow_file(bucket), text.as_bytes())?;
            OVERFLOW
        };
        let mut slot = vec![0u8; SLOT];
        slot[..body.len()].copy_from_slice(body.as_bytes());
        self.index_file()?.write_all_at(&slot, bucket * SLOT as u64)
    }

    /// Put an allocation file in place by rewriting a spare inode and
    /// renaming it to `target`. `None` when there is no usable spare (the
    /// caller then creates a file); `Some(Err(AlreadyExists))` when `target`
    /// exists.
    fn place_from_spare(&self, content: &str, target: &Path) -> Option<io::Result<()>> {
        use std::os::unix::fs::FileExt;
        for entry in fs::read_dir(&self.store.spare_dir).ok()?.flatten() {
            let path = entry.path();
            // O_NOFOLLOW: never write through a link planted in the pool.
            let Ok(f) = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
            else {
                continue;
            };
            let len = content.len() as u64;
            let written = f.metadata().and_then(|m| {
                if !m.is_file() || m.nlink() != 1 {
                    return Err(io::Error::other("not a plain spare file"));
                }
                f.write_all_at(content.as_bytes(), 0)?;
                if m.len() > len {
                    f.set_len(len)?;
                }
                Ok(())
            });
            drop(f);
            if written.is_err() {
                let _ = fs::remove_file(&path);
                continue;
            }
            return match rename_noreplace(&path, target) {
                Ok(()) => Some(Ok(())),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Some(Err(e)),
                // EXDEV (pool on another file system) and the like.
                Err(_) => None,
            };
        }
        None
    }

    /// Remove the allocation file at `path`, keeping its inode in the spare
    /// pool when there is room. False when it was already gone. A spare is
    /// emptied once in the pool: no file under the data directory may name
    /// a released container (operators `grep -r <cid>` for live ones).
    fn retire(&self, path: &Path) -> io::Result<bool> {
        let pool = &self.store.spare_dir;
        for slot in 0..SPARES {
            let spare = pool.join(slot.to_string());
            match rename_noreplace(path, &spare) {
                Ok(()) => {
                    scrub(&spare);
                    return Ok(true);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    if fs::symlink_metadata(path).is_err() {
                        return Ok(false);
                    }
                    // The pool does not exist yet.
                    if slot > 0 || mkdir_p(pool, 0o755).is_err() {
                        break;
                    }
                    if rename_noreplace(path, &pool.join("0")).is_ok() {
                        scrub(&pool.join("0"));
                        return Ok(true);
                    }
                    break;
                }
                Err(_) => break,
            }
        }
        remove_if_exists(path)
    }

    /// Clean up after a crashed holder and validate (or rebuild) the index.
    fn prepare(&mut self) -> Result<()> {
        let tmp = self.net(TMP_FILE);
        remove_if_exists(&tmp).map_err(|e| Error::io("failed to remove", &tmp, e))?;
        let mtime = mtime_of(&self.store.net_dir)
            .map_err(|e| Error::io("failed to stat", &self.store.net_dir, e))?;
        let state = fs::read_to_string(self.store.index_dir.join(STATE_FILE)).ok();
        let recorded = state.as_deref().and_then(|s| {
            let rest = s.trim().strip_prefix(STATE_MAGIC)?;
            rest.trim().strip_prefix("gen=")?.parse::<u64>().ok()
        });
        match recorded {
            Some(g) if mtime == (g as i64, 0) => {
                self.gen = g;
                Ok(())
            }
            other => {
                self.gen = other.unwrap_or(0);
                self.rebuild()
            }
        }
    }

    /// Read one allocation file.
    fn read_owner(&self, ip: IpAddr) -> Option<Owner> {
        fs::read_to_string(self.net(&ip.to_string()))
            .ok()
            .map(|c| Owner::parse(&c))
    }

    /// Every allocation file: names that are IP addresses in canonical form.
    fn scan(&self) -> Result<Vec<(IpAddr, Owner)>> {
        let dir = &self.store.net_dir;
        let rd = fs::read_dir(dir).map_err(|e| Error::io("failed to read", dir, e))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| Error::io("failed to read", dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(ip) = name.parse::<IpAddr>() else {
                continue;
            };
            if ip.to_string() != name {
                continue;
            }
            if let Ok(content) = fs::read_to_string(entry.path()) {
                out.push((ip, Owner::parse(&content)));
            }
        }
        Ok(out)
    }

    /// Names of allocation files only (no content reads).
    pub fn allocated_ips(&self) -> Result<Vec<IpAddr>> {
        let dir = &self.store.net_dir;
        let rd = fs::read_dir(dir).map_err(|e| Error::io("failed to read", dir, e))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| Error::io("failed to read", dir, e))?;
            if let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok().filter(|ip| ip.to_string() == n))
            {
                out.push(ip);
            }
        }
        Ok(out)
    }

    /// Recreate the index from a scan of the network directory.
    fn rebuild(&mut self) -> Result<()> {
        self.dirty = true;
        *self.bucket_cache.get_mut() = None;
        let entries = self.scan()?;
        let idx = self.store.index_dir.clone();
        if let Err(e) = self.write_index(&idx, &entries) {
            // The allocation files are the truth; without an index we only
            // lose speed. Leave the sentinel unset so the next locker retries.
            self.index_usable = false;
            eprintln!("rcni ipam: cannot rebuild index {}: {e}", idx.display());
        }
        Ok(())
    }

    fn write_index(&mut self, idx: &Path, entries: &[(IpAddr, Owner)]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        mkdir_p(idx, 0o755)?;
        remove_if_exists(&idx.join(STATE_FILE))?;
        let mut buckets: BTreeMap<u64, String> = BTreeMap::new();
        for (ip, owner) in entries {
            let b = buckets.entry(Self::bucket_of(&owner.id)).or_default();
            b.push_str(&line_of(*ip, owner));
        }
        let keep: HashSet<PathBuf> = [idx.join(BUCKETS_FILE)].into_iter().collect();
        for entry in fs::read_dir(idx)? {
            let entry = entry?;
            let path = entry.path();
            if !keep.contains(&path) && !entry.file_type()?.is_dir() {
                remove_if_exists(&path)?;
            }
        }
        self.index_file = None;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(idx.join(BUCKETS_FILE))?;
        file.set_len(BUCKETS * SLOT as u64)?;
        self.index_file = Some(file);
        // Slots in chunks: every slot is rewritten (stale ones zeroed)
        // without one buffer the size of the whole file.
        const CHUNK: u64 = 16;
        for first in (0..BUCKETS).step_by(CHUNK as usize) {
            let mut chunk = vec![0u8; CHUNK as usize * SLOT];
            for b in first..first + CHUNK {
                let Some(text) = buckets.get(&b) else {
                    continue;
                };
                let body = if text.len() <= SLOT {
                    text.as_str()
                } else {
                    overwrite(&self.overflow_file(b), text.as_bytes())?;
                    OVERFLOW
                };
                let at = (b - first) as usize * SLOT;
                chunk[at..at + body.len()].copy_from_slice(body.as_bytes());
            }
            self.index_file()?
                .write_all_at(&chunk, first * SLOT as u64)?;
        }
        // Taken-address pages (the loop above removed the old ones).
        self.taken.clear();
        let mut pages: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        for (ip, _) in entries {
            if let IpAddr::V4(v4) = ip {
                let v = u32::from(*v4);
                let page = pages
                    .entry(v >> 16)
                    .or_insert_with(|| vec![0u8; TAKEN_PAGE]);
                page[(v & 0xffff) as usize / 8] |= 1 << (v & 7);
            }
        }
        for (k, page) in pages {
            overwrite(&self.taken_file(k), &page)?;
            self.taken.push((k, Some(page)));
        }
        Ok(())
    }

    fn taken_file(&self, page: u32) -> PathBuf {
        self.store
            .index_dir
            .join(format!("{TAKEN_PREFIX}{}.{}", page >> 8, page & 0xff))
    }

    /// The taken-address page of the /16 `page`, read once under this lock.
    fn taken_page(&mut self, page: u32) -> Option<&mut Vec<u8>> {
        let pos = match self.taken.iter().position(|(k, _)| *k == page) {
            Some(p) => p,
            None => {
                let bits = fs::read(self.taken_file(page))
                    .ok()
                    .filter(|b| b.len() == TAKEN_PAGE);
                self.taken.push((page, bits));
                self.taken.len() - 1
            }
        };
        self.taken[pos].1.as_mut()
    }

    /// Records `ip` as taken or free in its page (IPv4 only). A page that
    /// cannot be written drops the index (rebuilt by the next locker).
    fn mark(&mut self, ip: IpAddr, taken: bool) {
        use std::os::unix::fs::FileExt;
        let IpAddr::V4(v4) = ip else { return };
        let v = u32::from(v4);
        let (page, byte, bit) = (v >> 16, (v & 0xffff) as usize / 8, 1u8 << (v & 7));
        let value = match self.taken_page(page) {
            Some(bits) => {
                if taken {
                    bits[byte] |= bit;
                } else {
                    bits[byte] &= !bit;
                }
                bits[byte]
            }
            None if !taken => return,
            None => {
                let mut bits = vec![0u8; TAKEN_PAGE];
                bits[byte] |= bit;
                if overwrite(&self.taken_file(page), &bits).is_err() {
                    self.index_usable = false;
                }
                if let Some(slot) = self.taken.iter_mut().find(|(k, _)| *k == page) {
                    slot.1 = Some(bits);
                }
                return;
            }
        };
        let written = OpenOptions::new()
            .write(true)
            .open(self.taken_file(page))
            .and_then(|f| f.write_all_at(&[value], byte as u64));
        if written.is_err() {
            self.index_usable = false;
        }
    }

    fn read_bucket(&mut self, id: &str) -> Vec<IndexLine> {
        let bucket = Self::bucket_of(id);
        let cached = matches!(self.bucket_cache.get_mut(), Some((b, _)) if *b == bucket);
        if !cached {
            match self.read_slot(bucket) {
                Ok(text) => *self.bucket_cache.get_mut() = Some((bucket, text)),
                Err(_) => {
                    // Unreadable index: drop it; the sentinel stays unset
                    // and callers fall back to scanning.
                    self.index_usable = false;
                    *self.bucket_cache.get_mut() = None;
                    return Vec::new();
                }
            }
        }
        let cache = self.bucket_cache.borrow();
        let Some((_, content)) = cache.as_ref() else {
            return Vec::new();
        };
        content
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                let ip = f.next()?.parse::<IpAddr>().ok()?;
                let id = unescape(f.next()?);
                let ifname = f.next().map(unescape);
                Some(IndexLine {
                    ip,
                    owner: Owner { id, ifname },
                })
            })
            .collect()
    }

    fn write_bucket(&mut self, id: &str, lines: &[IndexLine]) {
        let bucket = Self::bucket_of(id);
        let s: String = lines.iter().map(|l| line_of(l.ip, &l.owner)).collect();
        let res = self.write_slot(bucket, &s);
        *self.bucket_cache.get_mut() = match res {
            Ok(()) => Some((bucket, s)),
            Err(_) => {
                self.index_usable = false;
                None
            }
        };
    }

    /// Index lines of `id` after checking each against its file; rebuilds the
    /// index once when a line turns out stale.
    fn verified_lines(&mut self, id: &str) -> Result<Vec<IndexLine>> {
        if !self.index_usable {
            return Ok(self
                .scan()?
                .into_iter()
                .filter(|(_, o)| o.id == id.trim())
                .map(|(ip, owner)| IndexLine { ip, owner })
                .collect());
        }
        for attempt in 0..2 {
            let lines: Vec<IndexLine> = self
                .read_bucket(id)
                .into_iter()
                .filter(|l| l.owner.id == id.trim())
                .collect();
            let fresh = lines
                .iter()
                .all(|l| self.read_owner(l.ip).as_ref() == Some(&l.owner));
            if fresh {
                return Ok(lines);
            }
            if attempt == 0 {
                self.rebuild()?;
                if !self.index_usable {
                    return self.verified_lines(id);
                }
            }
        }
        Err(Error::io(
            "index keeps disagreeing with",
            &self.store.net_dir,
            io::Error::other("stale index after rebuild"),
        ))
    }

    fn index_add(&mut self, ip: IpAddr, owner: Owner) {
        if !self.index_usable {
            return;
        }
        let mut lines = self.read_bucket(&owner.id);
        lines.retain(|l| l.ip != ip);
        let id = owner.id.clone();
        lines.push(IndexLine { ip, owner });
        self.write_bucket(&id, &lines);
        self.mark(ip, true);
    }

    fn index_remove(&mut self, id: &str, ips: &[IpAddr]) {
        if !self.index_usable {
            return;
        }
        let mut lines = self.read_bucket(id);
        lines.retain(|l| !ips.contains(&l.ip));
        self.write_bucket(id, &lines);
        for ip in ips {
            self.mark(*ip, false);
        }
    }

    /// Write `content` to an anonymous file in the network directory
    /// (O_TMPFILE: a crash leaves nothing behind), or to the named temporary
    /// file where O_TMPFILE is unsupported. Returns the path to link from.
    fn write_tmp(&mut self, content: &str) -> Result<(PathBuf, Option<File>)> {
        let dir = &self.store.net_dir;
        let anon = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o644)
            .open(dir);
        if let Ok(mut f) = anon {
            f.write_all(content.as_bytes())
                .map_err(|e| Error::io("failed to write temporary file in", dir, e))?;
            let path = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
            return Ok((path, Some(f)));
        }
        let tmp = self.net(TMP_FILE);
        if self.tmp_content.as_deref() == Some(content) {
            return Ok((tmp, None));
        }
        self.dirty = true;
        self.tmp_content = None;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(|e| Error::io("failed to create", &tmp, e))?;
        f.write_all(content.as_bytes())
            .map_err(|e| Error::io("failed to write", &tmp, e))?;
        drop(f);
        self.tmp_content = Some(content.to_string());
        Ok((tmp, None))
    }

    /// Release every allocation whose owner `keep` rejects; returns them.
    pub fn retain(&mut self, keep: impl Fn(&Owner) -> bool) -> Result<Vec<(IpAddr, Owner)>> {
        let mut removed = Vec::new();
        let mut first_err = None;
        for (ip, owner) in self.scan()? {
            if keep(&owner) {
                continue;
            }
            let path = self.net(&ip.to_string());
            match remove_if_exists(&path) {
                Ok(_) => removed.push((ip, owner)),
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(Error::io("failed to remove", path, e));
                    }
                }
            }
        }
        if !removed.is_empty() {
            self.dirty = true;
            self.rebuild()?;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// Seal the index (record a new sentinel) and release the lock.
    pub fn commit(mut self) -> Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> Result<()> {
        if self.tmp_content.take().is_some() {
            let tmp = self.net(TMP_FILE);
            remove_if_exists(&tmp).map_err(|e| Error::io("failed to remove", &tmp, e))?;
        }
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        if !self.index_usable {
            return Ok(());
        }
        let gen = self.gen % GEN_WRAP + 1;
        let state_path = self.store.index_dir.join(STATE_FILE);
        overwrite(
            &state_path,
            format!("{STATE_MAGIC} gen={gen:09}\n").as_bytes(),
        )
        .map_err(|e| Error::io("failed to write", &state_path, e))?;
        set_mtime(&self.store.net_dir, gen as i64)
            .map_err(|e| Error::io("failed to set mtime of", &self.store.net_dir, e))?;
        self.gen = gen;
        Ok(())
    }
}

impl Drop for DiskGuard<'_> {
    fn drop(&mut self) {
        // Best effort: on failure the sentinel stays unset and the next
        // locker rebuilds the index.
        let _ = self.finish();
    }
}

fn line_of(ip: IpAddr, owner: &Owner) -> String {
    match &owner.ifname {
        Some(ifn) => format!("{ip}\t{}\t{}\n", escape(&owner.id), escape(ifn)),
        None => format!("{ip}\t{}\n", escape(&owner.id)),
    }
}

impl Store for DiskGuard<'_> {
    fn reserve(&mut self, id: &str, ifname: &str, ip: IpAddr, range_id: &str) -> Result<bool> {
        let content = format!("{}\r\n{}", id.trim(), ifname);
        let target = self.net(&ip.to_string());
        // Cheap pre-check: most candidates of a busy range are taken.
        if fs::symlink_metadata(&target).is_ok() {
            return Ok(false);
        }
        match self.place_from_spare(&content, &target) {
            Some(Ok(())) => {}
            Some(Err(_)) => return Ok(false),
            None => {
                let (tmp, _anon) = self.write_tmp(&content)?;
                match link_follow(&tmp, &target) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
                    Err(e) => return Err(Error::io("failed to create", target, e)),
                }
            }
        }
        self.dirty = true;
        let cursor = self.net(&format!("{LAST_RESERVED_PREFIX}{range_id}"));
        overwrite(&cursor, ip.to_string().as_bytes())
            .map_err(|e| Error::io("failed to write", cursor, e))?;
        self.index_add(
            ip,
            Owner {
                id: id.trim().to_string(),
                ifname: Some(ifname.to_string()),
            },
        );
        Ok(true)
    }

    fn taken_run(&mut self, ip: IpAddr) -> u32 {
        let IpAddr::V4(v4) = ip else { return 0 };
        if !self.index_usable {
            return 0;
        }
        let v = u32::from(v4);
        let Some(bits) = self.taken_page(v >> 16) else {
            return 0;
        };
        let bit = |i: usize| bits[i / 8] & (1 << (i % 8)) != 0;
        let first = (v & 0xffff) as usize;
        let mut i = first;
        // Bit by bit up to a byte boundary, then whole bytes of 0xff.
        while i < TAKEN_PAGE * 8 && !i.is_multiple_of(8) && bit(i) {
            i += 1;
        }
        if i.is_multiple_of(8) {
            while i < TAKEN_PAGE * 8 && bits[i / 8] == 0xff {
                i += 8;
            }
            while i < TAKEN_PAGE * 8 && bit(i) {
                i += 1;
            }
        }
        (i - first) as u32
    }

    fn known_taken(&mut self, ip: IpAddr) -> bool {
        let IpAddr::V4(v4) = ip else { return false };
        if !self.index_usable {
            return false;
        }
        let v = u32::from(v4);
        self.taken_page(v >> 16)
            .is_some_and(|bits| bits[(v & 0xffff) as usize / 8] & (1 << (v & 7)) != 0)
    }

    fn last_reserved(&mut self, range_id: &str) -> Option<IpAddr> {
        fs::read_to_string(self.net(&format!("{LAST_RESERVED_PREFIX}{range_id}")))
            .ok()
            .and_then(|s| crate::range::parse_ip(&s))
    }

    fn get_by_id(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        Ok(self
            .verified_lines(id)?
            .into_iter()
            .filter(|l| l.owner.is(id, ifname) || l.owner.is_legacy_of(id))
            .map(|l| l.ip)
            .collect())
    }

    fn release_by_id(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        let lines = self.verified_lines(id)?;
        let mut victims: Vec<IpAddr> = lines
            .iter()
            .filter(|l| l.owner.is(id, ifname))
            .map(|l| l.ip)
            .collect();
        if victims.is_empty() {
            victims = lines
                .iter()
                .filter(|l| l.owner.is_legacy_of(id))
                .map(|l| l.ip)
                .collect();
        }
        let mut released = Vec::new();
        let mut first_err = None;
        for ip in victims {
            let path = self.net(&ip.to_string());
            match self.retire(&path) {
                Ok(_) => released.push(ip),
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(Error::io("failed to remove", path, e));
                    }
                }
            }
        }
        if !released.is_empty() {
            self.dirty = true;
            self.index_remove(id, &released);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(released),
        }
    }

    fn release_ip(&mut self, ip: IpAddr, id: &str, ifname: &str) -> Result<bool> {
        match self.read_owner(ip) {
            Some(o) if o.is(id, ifname) => {}
            _ => return Ok(false),
        }
        let path = self.net(&ip.to_string());
        let removed = self
            .retire(&path)
            .map_err(|e| Error::io("failed to remove", path, e))?;
        if removed {
            self.dirty = true;
            self.index_remove(id, &[ip]);
        }
        Ok(removed)
    }

    fn all(&mut self) -> Result<Vec<(IpAddr, Owner)>> {
        self.scan()
    }
}

/// An in-memory store for tests of allocation logic.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    /// Address → holder.
    pub allocations: BTreeMap<IpAddr, Owner>,
    /// Range set → the address handed out last.
    pub last: BTreeMap<String, IpAddr>,
}

impl Store for MemStore {
    fn reserve(&mut self, id: &str, ifname: &str, ip: IpAddr, range_id: &str) -> Result<bool> {
        if self.allocations.contains_key(&ip) {
            return Ok(false);
        }
        self.allocations.insert(
            ip,
            Owner {
                id: id.trim().into(),
                ifname: Some(ifname.into()),
            },
        );
        self.last.insert(range_id.into(), ip);
        Ok(true)
    }
    fn last_reserved(&mut self, range_id: &str) -> Option<IpAddr> {
        self.last.get(range_id).copied()
    }
    fn get_by_id(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        Ok(self
            .allocations
            .iter()
            .filter(|(_, o)| o.is(id, ifname) || o.is_legacy_of(id))
            .map(|(ip, _)| *ip)
            .collect())
    }
    fn release_by_id(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        let mut v: Vec<IpAddr> = self
            .allocations
            .iter()
            .filter(|(_, o)| o.is(id, ifname))
            .map(|(ip, _)| *ip)
            .collect();
        if v.is_empty() {
            v = self
                .allocations
                .iter()
                .filter(|(_, o)| o.is_legacy_of(id))
                .map(|(ip, _)| *ip)
                .collect();
        }
        for ip in &v {
            self.allocations.remove(ip);
        }
        Ok(v)
    }
    fn release_ip(&mut self, ip: IpAddr, id: &str, ifname: &str) -> Result<bool> {
        if self.allocations.get(&ip).is_some_and(|o| o.is(id, ifname)) {
            self.allocations.remove(&ip);
            return Ok(true);
        }
        Ok(false)
    }
    fn all(&mut self) -> Result<Vec<(IpAddr, Owner)>> {
        Ok(self
            .allocations
            .iter()
            .map(|(ip, o)| (*ip, o.clone()))
            .collect())
    }
}

/// Attachments named by a GC request.
pub type Attachments = HashSet<(String, String)>;
