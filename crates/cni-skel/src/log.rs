//! Minimal diagnostics that never touch stdout.
//!
//! `RCNI_LOG_FILE=<path>` appends to a file (runtimes often discard a
//! plugin's stderr); `RCNI_LOG=debug` enables debug lines.

use std::io::Write;

fn write_line(level: &str, msg: &str) {
    let line = format!("rcni[{}] {level}: {msg}\n", std::process::id());
    if let Some(path) = std::env::var_os("RCNI_LOG_FILE") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
            return;
        }
    }
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn debug_enabled() -> bool {
    std::env::var("RCNI_LOG").is_ok_and(|v| v.eq_ignore_ascii_case("debug"))
}

/// A debug line on stderr (and the log file), only with `RCNI_LOG=debug`.
pub fn debug(msg: &str) {
    if debug_enabled() {
        write_line("debug", msg);
    }
}

/// A warning line on stderr (and the log file).
pub fn warn(msg: &str) {
    write_line("warn", msg);
}

/// Errors are reported on stdout as the error object already; a copy goes
/// to the log only when logging was asked for.
pub fn error(msg: &str) {
    if debug_enabled() || std::env::var_os("RCNI_LOG_FILE").is_some() {
        write_line("error", msg);
    }
}
