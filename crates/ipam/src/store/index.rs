//! The index from container ID to addresses: fixed-size bucket slots in
//! one file, trusted while the network directory's mtime is the sentinel
//! (or the change is one `state` accepts).
//!
//! Taken-address pages: beside the buckets, one file per IPv4 /16 holding
//! allocation, `taken-v4-<a>.<b>`, a bitmap of 8 KiB (one bit per address),
//! kept under the same sentinel as the buckets. A set bit means "allocated";
//! the allocator skips those candidates without a stat, so walking a nearly
//! full pool (no cursor, or a cursor that must wrap) costs bit tests instead
//! of one stat per taken address. A clear or missing bit proves nothing: the
//! candidate is still reserved through the file system, so the pages can
//! only make a walk faster, never hand out a taken address. A set bit that
//! is stale (someone released the address while the index was kept, see
//! `state`) only hides that address until a walk finds nothing free: it
//! then rebuilds the pages from the directory's names and walks again.
//!
//! Bucket lines are `ip TAB id TAB ifname` with `%`-escapes; a lookup
//! compares the escaped ID field and parses only the lines of its
//! container.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::IpAddr;

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::disk::DiskGuard;
use super::format::{escape, line_of, unescape, Owner};
use super::fsutil::{mkdir_p, overwrite, remove_if_exists};
use super::state::{cursor_name, link_path, CursorMark};
use crate::error::{Error, Result};

pub(super) const STATE_FILE: &str = "state";
pub(super) const STATE_MAGIC: &str = "rcni-ipam-index v5";
/// Prefix of the taken-address pages (see the module docs).
const TAKEN_PREFIX: &str = "taken-v4-";
/// Bytes of one taken-address page: one bit per address of a /16.
pub(super) const TAKEN_PAGE: usize = 8192;
/// Number of index buckets (keyed by a hash of the container ID), each a
/// fixed slot of [`SLOT`] bytes in the one index file: reading or writing a
/// bucket is one pread or pwrite, and no ADD creates a file for the index.
/// At 4000 allocations a bucket holds ~31 lines of ~40 bytes.
pub(super) const BUCKETS: u64 = 128;
/// Bytes per bucket slot. Text beyond that goes to an overflow file
/// `b<NN>`, and the slot then holds [`OVERFLOW`].
pub(super) const SLOT: usize = 2048;
/// The index file under the network's index directory.
pub(super) const BUCKETS_FILE: &str = "buckets";
pub(super) const OVERFLOW: &str = "@overflow\n";
/// Generations wrap below this (≈ 1973), far from any real clock reading.
pub(super) const GEN_WRAP: u64 = 100_000_000;

pub(super) struct IndexLine {
    pub(super) ip: IpAddr,
    pub(super) owner: Owner,
}

// FNV-1a, 64 bit: a stable hash (the index must read the same across
// builds of rcni).
pub(super) use cni_spec::ident::fnv1a;

impl DiskGuard<'_> {
    pub(super) fn bucket_of(id: &str) -> u64 {
        fnv1a(id.trim().as_bytes()) % BUCKETS
    }

    pub(super) fn overflow_file(&self, bucket: u64) -> PathBuf {
        self.store.index_dir.join(format!("b{bucket:02x}"))
    }

    pub(super) fn index_file(&mut self) -> io::Result<&File> {
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
    pub(super) fn read_slot(&mut self, bucket: u64) -> io::Result<String> {
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
    pub(super) fn write_slot(&mut self, bucket: u64, text: &str) -> io::Result<()> {
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

    /// Recreate the index from a scan of the network directory.
    pub(super) fn rebuild(&mut self) -> Result<()> {
        self.dirty = true;
        *self.bucket_cache.get_mut() = None;
        let (entries, cursors) = self.scan_all()?;
        let idx = self.store.index_dir.clone();
        self.state.unverified = false;
        self.state.cursors.clear();
        self.cursor_writes.clear();
        if let Err(e) = self.write_index(&idx, &entries) {
            // The allocation files are the truth; without an index we only
            // lose speed. Leave the sentinel unset so the next locker retries.
            self.index_usable = false;
            eprintln!("rcni ipam: cannot rebuild index {}: {e}", idx.display());
            return Ok(());
        }
        for id in cursors {
            self.link_cursor(&id);
        }
        Ok(())
    }

    /// Links the cursor file of range set `id` into the index directory
    /// and tracks it (see `state`); an untrackable cursor is left out, so
    /// any later change to the directory rebuilds.
    fn link_cursor(&mut self, id: &str) {
        let link = link_path(&self.store.index_dir, id);
        if remove_if_exists(&link).is_err()
            || fs::hard_link(self.net(&cursor_name(id)), &link).is_err()
        {
            return;
        }
        let (Ok(md), Ok(text)) = (fs::symlink_metadata(&link), fs::read(&link)) else {
            return;
        };
        let plain = !text.is_empty() && text.iter().all(u8::is_ascii_graphic);
        if !plain || md.len() != text.len() as u64 {
            return;
        }
        self.state.track(CursorMark {
            id: id.to_string(),
            ino: md.ino(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ip: String::from_utf8_lossy(&text).into_owned(),
        });
    }

    pub(super) fn write_index(
        &mut self,
        idx: &Path,
        entries: &[(IpAddr, Owner)],
    ) -> io::Result<()> {
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

    /// Brings the taken-address pages the walk read (and those of every
    /// allocation) in line with the names in the network directory, without
    /// opening a file. True when an address a page called taken is free:
    /// only then can a second walk find more than the first.
    pub(super) fn refresh_taken(&mut self) -> Result<bool> {
        if !self.index_usable {
            return Ok(false);
        }
        let mut pages: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        for ip in self.allocated_ips()? {
            if let IpAddr::V4(v4) = ip {
                let v = u32::from(v4);
                let page = pages
                    .entry(v >> 16)
                    .or_insert_with(|| vec![0u8; TAKEN_PAGE]);
                page[(v & 0xffff) as usize / 8] |= 1 << (v & 7);
            }
        }
        let mut keys: Vec<u32> = self.taken.iter().map(|(k, _)| *k).collect();
        keys.extend(pages.keys().copied());
        keys.sort_unstable();
        keys.dedup();
        let mut freed = false;
        for k in keys {
            let fresh = pages.remove(&k).unwrap_or_else(|| vec![0u8; TAKEN_PAGE]);
            let old = self.taken_page(k).map(std::mem::take);
            let changed = match &old {
                Some(o) => {
                    freed |= o.iter().zip(&fresh).any(|(o, n)| o & !n != 0);
                    *o != fresh
                }
                None => fresh.iter().any(|b| *b != 0),
            };
            if changed && overwrite(&self.taken_file(k), &fresh).is_err() {
                self.index_usable = false;
            }
            if old.is_some() || changed {
                if let Some(slot) = self.taken.iter_mut().find(|(p, _)| *p == k) {
                    slot.1 = Some(fresh);
                }
            }
            self.dirty |= changed;
        }
        Ok(freed)
    }

    /// The taken-address page of the /16 `page`, read once under this lock.
    pub(super) fn taken_page(&mut self, page: u32) -> Option<&mut Vec<u8>> {
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

    /// The text of `id`'s bucket, read once under this lock; `None` when
    /// the index is unreadable (it is then dropped: the sentinel stays
    /// unset and callers fall back to scanning).
    fn bucket_text(&mut self, id: &str) -> Option<(u64, String)> {
        let bucket = Self::bucket_of(id);
        let cached = matches!(self.bucket_cache.get_mut(), Some((b, _)) if *b == bucket);
        if !cached {
            match self.read_slot(bucket) {
                Ok(text) => *self.bucket_cache.get_mut() = Some((bucket, text)),
                Err(_) => {
                    self.index_usable = false;
                    *self.bucket_cache.get_mut() = None;
                    return None;
                }
            }
        }
        self.bucket_cache.get_mut().take()
    }

    /// The index lines of container `id`. Other containers' lines of the
    /// bucket are skipped on their escaped ID field, without parsing them.
    pub(super) fn read_bucket(&mut self, id: &str) -> Vec<IndexLine> {
        let Some((bucket, text)) = self.bucket_text(id) else {
            return Vec::new();
        };
        let want = escape(id.trim());
        let lines = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                let ip = f.next()?;
                if f.next()? != want {
                    return None;
                }
                let ifname = f.next().map(unescape);
                Some(IndexLine {
                    ip: ip.parse::<IpAddr>().ok()?,
                    owner: Owner {
                        id: id.trim().to_string(),
                        ifname,
                    },
                })
            })
            .collect();
        *self.bucket_cache.get_mut() = Some((bucket, text));
        lines
    }

    /// Rewrites the bucket of `id`: lines whose address is in `drop` go,
    /// `add` (a line) is appended.
    fn edit_bucket(&mut self, id: &str, drop: &[IpAddr], add: Option<String>) {
        let Some((bucket, text)) = self.bucket_text(id) else {
            return;
        };
        let drop: Vec<String> = drop.iter().map(IpAddr::to_string).collect();
        let mut out = String::with_capacity(text.len() + add.as_ref().map_or(0, String::len));
        for l in text.lines() {
            let ip = l.split('\t').next().unwrap_or_default();
            if !drop.iter().any(|d| d == ip) {
                out.push_str(l);
                out.push('\n');
            }
        }
        if let Some(line) = add {
            out.push_str(&line);
        }
        let res = self.write_slot(bucket, &out);
        *self.bucket_cache.get_mut() = match res {
            Ok(()) => Some((bucket, out)),
            Err(_) => {
                self.index_usable = false;
                None
            }
        };
    }

    /// Index lines of `id` after checking each against its file; rebuilds the
    /// index once when a line turns out stale, and when `exact` and nothing
    /// was found while the index is unverified (see `state`).
    pub(super) fn verified_lines(&mut self, id: &str, exact: bool) -> Result<Vec<IndexLine>> {
        if !self.index_usable {
            return Ok(self
                .scan()?
                .into_iter()
                .filter(|(_, o)| o.id == id.trim())
                .map(|(ip, owner)| IndexLine { ip, owner })
                .collect());
        }
        for attempt in 0..2 {
            let lines = self.read_bucket(id);
            let fresh = lines
                .iter()
                .all(|l| self.read_owner(l.ip).as_ref() == Some(&l.owner));
            let doubtful_miss = exact && lines.is_empty() && self.state.unverified;
            if fresh && !doubtful_miss {
                return Ok(lines);
            }
            if attempt == 0 {
                self.rebuild()?;
                if !self.index_usable {
                    return self.verified_lines(id, exact);
                }
            }
        }
        Err(Error::io(
            "index keeps disagreeing with",
            &self.store.net_dir,
            io::Error::other("stale index after rebuild"),
        ))
    }

    pub(super) fn index_add(&mut self, ip: IpAddr, owner: Owner) {
        if !self.index_usable {
            return;
        }
        let line = line_of(ip, &owner);
        self.edit_bucket(&owner.id, &[ip], Some(line));
        self.mark(ip, true);
    }

    pub(super) fn index_remove(&mut self, id: &str, ips: &[IpAddr]) {
        if !self.index_usable {
            return;
        }
        self.edit_bucket(id, ips, None);
        for ip in ips {
            self.mark(*ip, false);
        }
    }
}
