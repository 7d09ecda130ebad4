//! Sysctls of the calling thread's network namespace, through `/proc/sys`.
//!
//! `/proc/sys/net` resolves against the namespace of the thread that opens
//! the file, so to write inside another namespace run these inside
//! [`netns::NetNs::run`] (a scoped thread that entered it).

use crate::error::{Error, Result};
use std::path::PathBuf;

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

/// Reads `key` (`net/ipv4/ip_forward` or `net.ipv4.ip_forward`).
/// Interface names containing dots must use the slash form.
pub fn sysctl_get(key: &str) -> Result<String> {
    let p = path_of(key);
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::io(format!("read sysctl {}", p.display()), e))
}

/// Writes `value` to `key`.
pub fn sysctl_set(key: &str, value: &str) -> Result<()> {
    let p = path_of(key);
    std::fs::write(&p, value.as_bytes())
        .map_err(|e| Error::io(format!("write {value:?} to sysctl {}", p.display()), e))
}

/// Writes `value` unless it is already set (saves a write on the hot path).
pub fn sysctl_ensure(key: &str, value: &str) -> Result<()> {
    match sysctl_get(key) {
        Ok(v) if v == value => Ok(()),
        _ => sysctl_set(key, value),
    }
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
}
