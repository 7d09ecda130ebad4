//! tuning's sysctls: the kit's validated key parsing and `/proc/sys`
//! access (`kit::sysctl`), as CNI results.

use cni_spec::error::CniResult;
use std::path::{Path, PathBuf};

pub use kit::sysctl::same_value;

/// The file behind a user's sysctl key (see [`kit::sysctl::net_key_path`]):
/// only keys under `net`, `IFNAME` replaced, no escaping (code 7).
pub fn sysctl_path(key: &str, ifname: &str) -> CniResult<PathBuf> {
    Ok(kit::sysctl::net_key_path(key, ifname)?)
}

pub fn read(path: &Path) -> CniResult<String> {
    Ok(kit::sysctl::read_path(path)?)
}

pub fn write(path: &Path, value: &str) -> CniResult<()> {
    Ok(kit::sysctl::write_path(path, value)?)
}
