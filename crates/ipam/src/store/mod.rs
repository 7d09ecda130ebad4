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
//! locker rebuilds the index by scanning once, unless the only visible
//! change is the removal of a cursor file (see `state`: the cursors are
//! hard-linked into the sidecar, so the reference's in-place rewrite after
//! each reservation shows). Index hits are always verified by reading the
//! one allocation file they point to; a walk that finds no free address
//! re-reads the directory's names before saying the pool is full.
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
//! Modules: [`Store`] and the constants of the layout here; the on-disk
//! store and its lock in `disk`, the allocation file format in `format`,
//! the index in `index`, its state file and the evidence that lets it
//! survive a removed cursor in `state`, the spare inode pool in `spare`,
//! file-system helpers in `fsutil`, and [`MemStore`] in `mem`.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::error::Result;

mod disk;
mod format;
mod fsutil;
mod index;
mod mem;
mod spare;
mod state;

pub use disk::{DiskGuard, DiskStore};
pub use format::Owner;
pub use mem::MemStore;

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
    /// [`Store::get_by_id`] for an ADD's duplicate check: what (id, ifname)
    /// is known to hold, where the store may answer from an index that
    /// could lack files created by something other than host-local (see
    /// `store::state`). Every address returned is verified.
    fn known_by_id(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        self.get_by_id(id, ifname)
    }
    /// Release everything (id, ifname) holds (old ID-only files only when no
    /// exact match exists, like the reference). Returns what was released.
    fn release_by_id(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>>;
    /// Release `ip` if (id, ifname) holds it.
    fn release_ip(&mut self, ip: IpAddr, id: &str, ifname: &str) -> Result<bool>;
    /// Every allocation.
    fn all(&mut self) -> Result<Vec<(IpAddr, Owner)>>;
    /// Called when a walk found no free address: bring whatever the walk
    /// trusted (an index of taken addresses) up to date with the files.
    /// True when that may change the answer, so the walk is worth
    /// repeating once.
    fn rescan(&mut self) -> Result<bool> {
        Ok(false)
    }
}

/// Attachments named by a GC request.
pub type Attachments = HashSet<(String, String)>;
