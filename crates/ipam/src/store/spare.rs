//! The spare inode pool: released allocation files kept for reuse.

use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind};

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::disk::DiskGuard;
use super::fsutil::{mkdir_p, remove_if_exists, rename_noreplace};

/// Sub-directory of [`INDEX_DIR`] holding the spare inode pools (no network
/// name starts with a dot, so it never collides with a network's index).
pub(super) const SPARE_DIR: &str = ".spare";
/// Released allocation files kept for reuse, per network.
pub(super) const SPARES: usize = 16;

/// Empties a spare allocation file (it keeps its inode for reuse); a file
/// that cannot be emptied is removed instead.
pub(super) fn scrub(path: &Path) {
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

impl DiskGuard<'_> {
    /// Put an allocation file in place by rewriting a spare inode and
    /// renaming it to `target`. `None` when there is no usable spare (the
    /// caller then creates a file); `Some(Err(AlreadyExists))` when `target`
    /// exists.
    pub(super) fn place_from_spare(&self, content: &str, target: &Path) -> Option<io::Result<()>> {
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
    pub(super) fn retire(&self, path: &Path) -> io::Result<bool> {
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
}
