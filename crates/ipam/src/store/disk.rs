//! The reference-compatible on-disk store and its lock.

use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::format::Owner;
use super::fsutil::{
    link_follow, mkdir_p, overwrite, overwrite_open, overwrite_stat, remove_if_exists, set_mtime,
};
use super::index::{GEN_WRAP, STATE_FILE, TAKEN_PAGE};
use super::spare::SPARE_DIR;
use super::state::{cursor_name, link_path, only_cursors_removed, CursorMark, State};
use super::{Store, DEFAULT_DATA_DIR, INDEX_DIR, LOCK_FILE, TMP_FILE};
use crate::error::{Error, Result};

/// What a scan of the network directory finds: every allocation, and the
/// range set ids of the cursor files.
pub(super) type Scan = (Vec<(IpAddr, Owner)>, Vec<String>);

/// The reference-compatible on-disk store of one network.
#[derive(Debug, Clone)]
pub struct DiskStore {
    pub(super) net_dir: PathBuf,
    pub(super) index_dir: PathBuf,
    pub(super) spare_dir: PathBuf,
}

fn valid_network_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\0')
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
        // 0644 as the reference's lock file; waits for the holder.
        let lock = rcni_os::Lock::exclusive_with_mode(&lock_path, Some(0o644))
            .map_err(|e| Error::io("failed to lock", &lock_path, e))?;
        let mut guard = DiskGuard {
            store: self,
            _lock: lock,
            dirty: false,
            index_usable: true,
            state: State::default(),
            cursor_writes: Vec::new(),
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
    pub(super) store: &'a DiskStore,
    pub(super) _lock: rcni_os::Lock,
    /// We changed the network directory or the index under this lock.
    pub(super) dirty: bool,
    /// False when the index could not be maintained; the sentinel is then
    /// not set, so the next locker rebuilds.
    pub(super) index_usable: bool,
    /// The index's state as read at lock time (see `state`); sealed into
    /// the `state` file by [`DiskGuard::commit`].
    pub(super) state: State,
    /// Cursors written under this lock: (range set id, inode, mtime, ip).
    pub(super) cursor_writes: Vec<CursorMark>,
    pub(super) tmp_content: Option<String>,
    /// The last bucket read or written under this lock (number, content),
    /// so an ADD reads its bucket once.
    pub(super) bucket_cache: RefCell<Option<(u64, String)>>,
    /// The index file, opened on first use under this lock.
    pub(super) index_file: Option<File>,
    /// Taken-address pages read under this lock: (/16 number, bitmap;
    /// `None` when there is no page).
    pub(super) taken: Vec<(u32, Option<Vec<u8>>)>,
}

impl DiskGuard<'_> {
    pub(super) fn net(&self, name: &str) -> PathBuf {
        self.store.net_dir.join(name)
    }

    /// Clean up after a crashed holder and validate (or rebuild) the index.
    pub(super) fn prepare(&mut self) -> Result<()> {
        let tmp = self.net(TMP_FILE);
        remove_if_exists(&tmp).map_err(|e| Error::io("failed to remove", &tmp, e))?;
        let dir = &self.store.net_dir;
        let md = fs::metadata(dir).map_err(|e| Error::io("failed to stat", dir, e))?;
        let state = fs::read_to_string(self.store.index_dir.join(STATE_FILE))
            .ok()
            .and_then(|s| State::parse(&s));
        match state {
            Some(st)
                if md.ino() == st.dir_ino
                    && (md.mtime(), md.mtime_nsec()) == (st.gen as i64, 0) =>
            {
                self.state = st;
                Ok(())
            }
            Some(st) if only_cursors_removed(&st, dir, &self.store.index_dir, &md) => {
                // Someone removed a cursor and did nothing else we can see:
                // keep the index, but rescan before trusting a miss.
                self.state = st;
                self.state.unverified = true;
                self.dirty = true;
                Ok(())
            }
            other => {
                self.state.gen = other.map_or(0, |st| st.gen);
                self.state.dir_ino = md.ino();
                self.rebuild()
            }
        }
    }

    /// Read one allocation file.
    pub(super) fn read_owner(&self, ip: IpAddr) -> Option<Owner> {
        fs::read_to_string(self.net(&ip.to_string()))
            .ok()
            .map(|c| Owner::parse(&c))
    }

    /// Every allocation file: names that are IP addresses in canonical form.
    pub(super) fn scan(&self) -> Result<Vec<(IpAddr, Owner)>> {
        Ok(self.scan_all()?.0)
    }

    /// Every allocation file, and the range set ids of the cursor files.
    pub(super) fn scan_all(&self) -> Result<Scan> {
        let dir = &self.store.net_dir;
        let rd = fs::read_dir(dir).map_err(|e| Error::io("failed to read", dir, e))?;
        let mut out = Vec::new();
        let mut cursors = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| Error::io("failed to read", dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = name.strip_prefix(super::LAST_RESERVED_PREFIX) {
                cursors.push(id.to_string());
                continue;
            }
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
        Ok((out, cursors))
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

    /// Write `content` to an anonymous file in the network directory
    /// (O_TMPFILE: a crash leaves nothing behind), or to the named temporary
    /// file where O_TMPFILE is unsupported. Returns the path to link from.
    pub(super) fn write_tmp(&mut self, content: &str) -> Result<(PathBuf, Option<File>)> {
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

    pub(super) fn finish(&mut self) -> Result<()> {
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
        self.seal_cursors();
        let gen = self.state.gen % GEN_WRAP + 1;
        let dir = &self.store.net_dir;
        // The directory's inode is the one prepare() saw (we hold its lock)
        // and is already in the state.
        let st = State {
            gen,
            ..self.state.clone()
        };
        let state_path = self.store.index_dir.join(STATE_FILE);
        overwrite(&state_path, st.render().as_bytes())
            .map_err(|e| Error::io("failed to write", &state_path, e))?;
        set_mtime(dir, gen as i64).map_err(|e| Error::io("failed to set mtime of", dir, e))?;
        self.state = st;
        Ok(())
    }

    /// Writes the cursor of range set `id` (at `path`). When someone removed
    /// it, the removed inode, still held by our link in the index
    /// directory, is rewritten and linked back: creating an inode in a
    /// directory of thousands of files costs ext4 far more than the rest of
    /// an ADD, and the reference rewrites the cursor in place all the same.
    fn write_cursor(&self, id: &str, path: &Path, text: &str) -> std::io::Result<fs::Metadata> {
        let f = match OpenOptions::new().write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let link = link_path(&self.store.index_dir, id);
                // O_NOFOLLOW and a plain file linked nowhere else: never
                // write through something planted in the index directory.
                let old = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&link)
                    .and_then(|f| {
                        let md = f.metadata()?;
                        if !md.is_file() || md.nlink() != 1 {
                            return Err(std::io::Error::other("not a removed cursor"));
                        }
                        Ok(f)
                    });
                if let Ok(f) = old {
                    let md = overwrite_open(&f, text.as_bytes())?;
                    if fs::hard_link(&link, path).is_ok() {
                        return Ok(md);
                    }
                }
                return overwrite_stat(path, text.as_bytes());
            }
            Err(e) => return Err(e),
        };
        overwrite_open(&f, text.as_bytes())
    }

    /// Tracks the cursors written under this lock: a cursor that is a new
    /// inode (it was missing) gets its link in the index directory again.
    /// A cursor that cannot be linked is not tracked, so any later change
    /// to the directory rebuilds.
    fn seal_cursors(&mut self) {
        for mark in std::mem::take(&mut self.cursor_writes) {
            let known = self
                .state
                .cursors
                .iter()
                .any(|c| c.id == mark.id && c.ino == mark.ino);
            let link = link_path(&self.store.index_dir, &mark.id);
            let linked = known
                || (remove_if_exists(&link).is_ok()
                    && fs::hard_link(self.net(&cursor_name(&mark.id)), &link).is_ok());
            if linked {
                self.state.track(mark);
            } else {
                self.state.cursors.retain(|c| c.id != mark.id);
            }
        }
    }
}

impl Drop for DiskGuard<'_> {
    fn drop(&mut self) {
        // Best effort: on failure the sentinel stays unset and the next
        // locker rebuilds the index.
        let _ = self.finish();
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
        let cursor = self.net(&cursor_name(range_id));
        let text = ip.to_string();
        let md = self
            .write_cursor(range_id, &cursor, &text)
            .map_err(|e| Error::io("failed to write", cursor, e))?;
        let mark = CursorMark {
            id: range_id.to_string(),
            ino: md.ino(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ip: text,
        };
        match self.cursor_writes.iter_mut().find(|c| c.id == mark.id) {
            Some(c) => *c = mark,
            None => self.cursor_writes.push(mark),
        }
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
        fs::read_to_string(self.net(&cursor_name(range_id)))
            .ok()
            .and_then(|s| crate::range::parse_ip(&s))
    }

    fn get_by_id(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        Ok(self
            .verified_lines(id, true)?
            .into_iter()
            .filter(|l| l.owner.is(id, ifname) || l.owner.is_legacy_of(id))
            .map(|l| l.ip)
            .collect())
    }

    fn known_by_id(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        Ok(self
            .verified_lines(id, false)?
            .into_iter()
            .filter(|l| l.owner.is(id, ifname) || l.owner.is_legacy_of(id))
            .map(|l| l.ip)
            .collect())
    }

    fn release_by_id(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        let lines = self.verified_lines(id, true)?;
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

    fn rescan(&mut self) -> Result<bool> {
        // Without a usable index the walk tried every candidate: its answer
        // was exact. With one, only a stale "taken" bit can have hidden a
        // free address, and the names in the directory settle that.
        self.refresh_taken()
    }
}
