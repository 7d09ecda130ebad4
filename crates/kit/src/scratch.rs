//! A scratch directory for plugins' unit tests (backups, sockets), made
//! and removed through [`crate::os`]; under `cfg(test)` or the `fake`
//! feature.

use std::path::{Path, PathBuf};

/// `$TMPDIR/rcni-<tag>-<pid>`, empty when made, removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A fresh directory for one test (`tag` unique within the crate).
    pub fn new(tag: &str) -> std::io::Result<Scratch> {
        let p = std::env::temp_dir().join(format!("rcni-{tag}-{}", crate::os::pid()));
        let _ = crate::os::remove_dir_all(&p);
        crate::os::create_dir_all(&p, 0o700)?;
        Ok(Scratch(p))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = crate::os::remove_dir_all(&self.0);
    }
}
