//! IP forwarding sysctls.

use std::path::Path;

use super::{Error, Report, Result};

/// Where IPv6 forwarding is switched for every interface at once.
const IPV6_ALL_FORWARDING: &str = "/proc/sys/net/ipv6/conf/all/forwarding";
const IPV6_CONF: &str = "/proc/sys/net/ipv6/conf";

pub(super) fn ensure_forwarding(path: &str, report: &mut Report) -> Result<()> {
    let io = |what: String| move |source| Error::Io { what, source };
    let cur = rcni_os::read_to_string(Path::new(path)).map_err(io(format!("read {path}")))?;
    if cur.trim() != "1" {
        if path == IPV6_ALL_FORWARDING {
            keep_router_advertisements(report)?;
        }
        rcni_os::write_existing(Path::new(path), b"1").map_err(io(format!("write {path}")))?;
        report.changes.push(format!("set {path} = 1"));
    }
    Ok(())
}

/// Before IPv6 forwarding goes on: every interface that accepts router
/// advertisements (`accept_ra` 1) is set to accept them while forwarding
/// too (2). With 1, the kernel would drop the default routes the node
/// learnt from its router the moment forwarding goes on, and ignore every
/// later advertisement: the node's own IPv6 uplink would break. The
/// `default` entry is left alone on purpose: at 2 it would make every
/// interface created later (each pod's host veth among them) accept
/// advertisements from whatever sits on its other end.
fn keep_router_advertisements(report: &mut Report) -> Result<()> {
    let io = |what: String| move |source| Error::Io { what, source };
    let names =
        rcni_os::dir_names(Path::new(IPV6_CONF)).map_err(io(format!("list {IPV6_CONF}")))?;
    for name in names
        .iter()
        .filter(|n| !matches!(n.as_str(), "all" | "lo" | "default"))
    {
        let key = Path::new(IPV6_CONF).join(name).join("accept_ra");
        // An interface may vanish meanwhile: skip what cannot be read.
        let Ok(v) = rcni_os::read_to_string(&key) else {
            continue;
        };
        if v.trim() == "1" {
            rcni_os::write_existing(&key, b"2").map_err(io(format!("write {}", key.display())))?;
            report.changes.push(format!(
                "set {} = 2 (router advertisements kept with IPv6 forwarding on)",
                key.display()
            ));
        }
    }
    Ok(())
}
