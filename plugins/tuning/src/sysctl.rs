//! tuning's sysctls: the kit's validated key parsing (`kit::sysctl`), as
//! CNI results; `/proc/sys` is reached through `kit::procsys::SysctlOps`.

use cni_spec::error::CniResult;
use std::path::PathBuf;

pub use kit::sysctl::same_value;

/// The file behind a user's sysctl key (see [`kit::sysctl::net_key_path`]):
/// only keys under `net`, `IFNAME` replaced, no escaping (code 7).
pub fn sysctl_path(key: &str, ifname: &str) -> CniResult<PathBuf> {
    Ok(kit::sysctl::net_key_path(key, ifname)?)
}
