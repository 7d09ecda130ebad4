//! File-system helpers of the store.

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

pub(super) fn mkdir_p(path: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
}

pub(super) fn set_mtime(path: &Path, secs: i64) -> io::Result<()> {
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
pub(super) fn link_follow(from: &Path, to: &Path) -> io::Result<()> {
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
pub(super) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
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
pub(super) fn overwrite(path: &Path, data: &[u8]) -> io::Result<()> {
    overwrite_stat(path, data).map(|_| ())
}

/// [`overwrite`], returning the file's metadata after the write.
pub(super) fn overwrite_stat(path: &Path, data: &[u8]) -> io::Result<fs::Metadata> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)?;
    overwrite_open(&f, data)
}

/// [`overwrite_stat`] of a file already open for writing.
pub(super) fn overwrite_open(f: &fs::File, data: &[u8]) -> io::Result<fs::Metadata> {
    use std::os::unix::fs::FileExt;
    f.write_all_at(data, 0)?;
    let md = f.metadata()?;
    if md.len() > data.len() as u64 {
        f.set_len(data.len() as u64)?;
        return f.metadata();
    }
    Ok(md)
}

pub(super) fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
