//! IP forwarding sysctls.

use super::{Error, Report, Result};

pub(super) fn ensure_forwarding(path: &str, report: &mut Report) -> Result<()> {
    let io = |what: String| move |source| Error::Io { what, source };
    let cur = std::fs::read_to_string(path).map_err(io(format!("read {path}")))?;
    if cur.trim() != "1" {
        std::fs::write(path, "1").map_err(io(format!("write {path}")))?;
        report.changes.push(format!("set {path} = 1"));
    }
    Ok(())
}
