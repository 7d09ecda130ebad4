//! Network sysctl keys to `/proc/sys/net` files, and reading/writing them
//! from a thread inside the container's namespace.

use cni_spec::error::CniResult;
use cni_spec::Error;
use std::path::{Path, PathBuf};

/// The file behind a sysctl key. Keys use dots (`net.ipv4.conf.IFNAME.rp_filter`)
/// or, when they contain a `/`, slashes (`net/ipv4/conf/eth0.100/rp_filter`,
/// for interface names with dots). A component that is exactly `IFNAME`
/// becomes the container interface name. Only keys under `net` are allowed,
/// and no component may be empty, `.` or `..` (no escaping `/proc/sys/net`).
pub fn sysctl_path(key: &str, ifname: &str) -> CniResult<PathBuf> {
    let bad = |why: &str| Error::invalid_config(format!("invalid net sysctl key {key:?}: {why}"));
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

pub fn read(path: &Path) -> CniResult<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches('\n').to_string())
        .map_err(|e| Error::io(format!("failed to read sysctl {}: {e}", path.display())))
}

pub fn write(path: &Path, value: &str) -> CniResult<()> {
    // O_WRONLY without O_CREAT: a key that does not exist is an error, never a new file.
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| {
            Error::io(format!(
                "failed to write {value:?} to sysctl {}: {e}",
                path.display()
            ))
        })
}

/// Multi-value sysctls read back tab-separated (`tcp_rmem`): compare the
/// words, not the separators.
pub fn same_value(current: &str, wanted: &str) -> bool {
    current.split_whitespace().eq(wanted.split_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_to_paths() {
        assert_eq!(
            sysctl_path("net.core.somaxconn", "eth0").expect("ok"),
            PathBuf::from("/proc/sys/net/core/somaxconn")
        );
        assert_eq!(
            sysctl_path("net.ipv4.conf.IFNAME.rp_filter", "eth0").expect("ok"),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0/rp_filter")
        );
        // An interface name with a dot stays one component.
        assert_eq!(
            sysctl_path("net.ipv6.conf.IFNAME.accept_ra", "eth0.5").expect("ok"),
            PathBuf::from("/proc/sys/net/ipv6/conf/eth0.5/accept_ra")
        );
        assert_eq!(
            sysctl_path("net/ipv6/conf/eth0.5/accept_ra", "x").expect("ok"),
            PathBuf::from("/proc/sys/net/ipv6/conf/eth0.5/accept_ra")
        );
        assert_eq!(
            sysctl_path("/proc/sys/net/core/somaxconn", "x").expect("ok"),
            PathBuf::from("/proc/sys/net/core/somaxconn")
        );
    }

    #[test]
    fn refuses_escapes_and_other_subsystems() {
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
            let e = sysctl_path(k, "eth0").expect_err(k);
            assert_eq!(e.code, 7, "{k}");
        }
    }

    #[test]
    fn whitespace_insensitive_compare() {
        assert!(same_value("4096\t87380\t6291456", "4096 87380 6291456"));
        assert!(!same_value("1", "0"));
    }
}
