//! Sysctls of the calling thread's network namespace, through `/proc/sys`:
//! the one place plugins read and write them.
//!
//! `/proc/sys/net` resolves against the namespace of the thread that opens
//! the file, so to write inside another namespace run these inside
//! [`netns::NetNs::run`] (a thread that entered it).

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The file of a key the plugins themselves name (trusted: an interface
/// name they validated): `net/ipv4/ip_forward` or `net.ipv4.ip_forward`.
/// Interface names containing dots must use the slash form.
fn path_of(key: &str) -> PathBuf {
    let key = key.trim_start_matches('/');
    let rel = if key.starts_with("proc/sys/") {
        key.trim_start_matches("proc/sys/").to_string()
    } else if key.contains('/') {
        key.to_string()
    } else {
        key.replace('.', "/")
    };
    PathBuf::from("/proc/sys").join(rel)
}

/// The file behind a network sysctl key given by a user (tuning's
/// `sysctl` map). Keys use dots (`net.ipv4.conf.IFNAME.rp_filter`) or,
/// when they contain a `/`, slashes (`net/ipv4/conf/eth0.100/rp_filter`,
/// for interface names with dots). A component that is exactly `IFNAME`
/// becomes `ifname`. Only keys under `net` are allowed, and no component
/// may be empty, `.` or `..` (no escaping `/proc/sys/net`): anything else
/// is [`Error::Invalid`] (code 7).
pub fn net_key_path(key: &str, ifname: &str) -> Result<PathBuf> {
    let bad = |why: &str| Error::Invalid(format!("invalid net sysctl key {key:?}: {why}"));
    let trimmed = key.strip_prefix("/proc/sys/").unwrap_or(key);
    let sep = if trimmed.contains('/') { '/' } else { '.' };
    let mut path = PathBuf::from("/proc/sys");
    let mut n = 0;
    for part in trimmed.split(sep) {
        let part = if part == "IFNAME" { ifname } else { part };
        if part.is_empty() || part == "." || part == ".." {
            return Err(bad("empty, '.' or '..' component"));
        }
        if part.contains('/') || part.contains('\0') {
            return Err(bad("component contains '/' or NUL"));
        }
        if n == 0 && part != "net" {
            return Err(bad("only sysctls under net are allowed"));
        }
        path.push(part);
        n += 1;
    }
    if n < 2 {
        return Err(bad("names no sysctl under net"));
    }
    Ok(path)
}

/// Reads the sysctl file `path`, without the trailing newline.
pub fn read_path(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches('\n').to_string())
        .map_err(|e| Error::io(format!("read sysctl {}", path.display()), e))
}

/// Writes `value` to the sysctl file `path`. Opened write-only without
/// `O_CREAT`: a key that does not exist is an error, never a new file.
pub fn write_path(path: &Path, value: &str) -> Result<()> {
    crate::os::write_existing(path, value.as_bytes())
        .map_err(|e| Error::io(format!("write {value:?} to sysctl {}", path.display()), e))
}

/// Reads `key` (`net/ipv4/ip_forward` or `net.ipv4.ip_forward`).
/// Interface names containing dots must use the slash form.
pub fn sysctl_get(key: &str) -> Result<String> {
    read_path(&path_of(key)).map(|s| s.trim().to_string())
}

/// Writes `value` to `key`.
pub fn sysctl_set(key: &str, value: &str) -> Result<()> {
    write_path(&path_of(key), value)
}

/// Writes `value` unless it is already set (saves a write on the hot path).
pub fn sysctl_ensure(key: &str, value: &str) -> Result<()> {
    match sysctl_get(key) {
        Ok(v) if v == value => Ok(()),
        _ => sysctl_set(key, value),
    }
}

/// Multi-value sysctls read back tab-separated (`tcp_rmem`): compare the
/// words, not the separators.
pub fn same_value(current: &str, wanted: &str) -> bool {
    current.split_whitespace().eq(wanted.split_whitespace())
}

/// Turns forwarding on for the address families given, in the calling
/// thread's namespace; `sock` must be bound to that namespace. The current
/// value is read over netlink (RTM_GETNETCONF): /proc/sys is only touched
/// when forwarding is off, or the kernel cannot answer.
pub fn enable_ip_forward(sock: &netlink::Socket, v4: bool, v6: bool) -> Result<()> {
    if v4 && sock.forwarding(netlink::Family::V4).ok() != Some(1) {
        sysctl_ensure("net/ipv4/ip_forward", "1")?;
    }
    if v6 && sock.forwarding(netlink::Family::V6).ok() != Some(1) {
        sysctl_ensure("net/ipv6/conf/all/forwarding", "1")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_forms() {
        assert_eq!(
            path_of("net.ipv4.ip_forward"),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            path_of("net/ipv6/conf/eth0.5/accept_dad"),
            PathBuf::from("/proc/sys/net/ipv6/conf/eth0.5/accept_dad")
        );
        assert_eq!(
            path_of("/proc/sys/net/ipv4/ip_forward"),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
    }

    #[test]
    fn user_keys_to_paths() {
        let ok = |k: &str, i: &str| net_key_path(k, i).expect(k);
        assert_eq!(
            ok("net.core.somaxconn", "eth0"),
            PathBuf::from("/proc/sys/net/core/somaxconn")
        );
        assert_eq!(
            ok("net.ipv4.conf.IFNAME.rp_filter", "eth0"),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0/rp_filter")
        );
        // An interface name with a dot stays one component.
        assert_eq!(
            ok("net.ipv6.conf.IFNAME.accept_ra", "eth0.5"),
            PathBuf::from("/proc/sys/net/ipv6/conf/eth0.5/accept_ra")
        );
        assert_eq!(
            ok("net/ipv6/conf/eth0.5/accept_ra", "x"),
            PathBuf::from("/proc/sys/net/ipv6/conf/eth0.5/accept_ra")
        );
        assert_eq!(
            ok("/proc/sys/net/core/somaxconn", "x"),
            PathBuf::from("/proc/sys/net/core/somaxconn")
        );
    }

    #[test]
    fn user_keys_refuse_escapes_and_other_subsystems() {
        for k in [
            "kernel.hostname",
            "net",
            "net..core",
            "net/../kernel/hostname",
            "net/./core/somaxconn",
            "net.core.",
            "/proc/sys/kernel/hostname",
            "vm.swappiness",
            "",
        ] {
            let e = net_key_path(k, "eth0").expect_err(k);
            assert_eq!(e.code(), 7, "{k}");
        }
    }

    #[test]
    fn whitespace_insensitive_compare() {
        assert!(same_value("4096\t87380\t6291456", "4096 87380 6291456"));
        assert!(!same_value("1", "0"));
    }
}
