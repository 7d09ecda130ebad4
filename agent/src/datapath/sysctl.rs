//! IP forwarding sysctls.

use super::{Error, Report, Result};

pub(super) fn ensure_forwarding(path: &str, report: &mut Report) -> Result<()> {
    let io = |what: String| move |source| Error::Io { what, source };
    let cur =
        rcni_os::read_to_string(std::path::Path::new(path)).map_err(io(format!("read {path}")))?;
    if cur.trim() != "1" {
        rcni_os::write_existing(std::path::Path::new(path), b"1")
            .map_err(io(format!("write {path}")))?;
        report.changes.push(format!("set {path} = 1"));
    }
    Ok(())
}
