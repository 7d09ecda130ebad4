//! veth pairs whose container end is created directly in the container
//! namespace (no create-then-move window), with a stable host-side name.

use crate::error::{Error, Result};
use netlink::{Link, LinkKind, LinkSpec, Socket};
use netns::NetNs;

/// The host-side name for (container, ifname): `veth` + 11 hex digits of a
/// hash, so a retried ADD picks the same name and two pods practically never
/// collide (44 bits). `attempt` > 0 derives alternates for the rare clash.
pub fn host_veth_name(container_id: &str, ifname: &str, attempt: u32) -> String {
    let mut seed = Vec::with_capacity(container_id.len() + ifname.len() + 8);
    seed.extend_from_slice(container_id.as_bytes());
    seed.push(0);
    seed.extend_from_slice(ifname.as_bytes());
    if attempt > 0 {
        seed.push(0);
        seed.extend_from_slice(&attempt.to_be_bytes());
    }
    format!("veth{:011x}", crate::os::fnv1a(&seed) >> 20)
}

/// Queues per veth end unless a config says otherwise (`vethQueues`). The
/// kernel's default is one TX and one RX queue per possible CPU, each with
/// its own sysfs objects, so creating a pair costs more the more cores a
/// node has; without XDP on the veth, traffic never uses more than one.
pub const DEFAULT_QUEUES: u32 = 1;

/// `serde` default for a `vethQueues` field.
pub fn default_queues() -> u32 {
    DEFAULT_QUEUES
}

/// A `vethQueues` value as [`VethOptions::queues`]: 0 asks for the kernel's
/// default.
pub fn queues_from_config(n: u32) -> Option<u32> {
    (n > 0).then_some(n)
}

/// Both ends, as read back after creation.
#[derive(Debug, Clone)]
pub struct VethPair {
    pub host: Link,
    pub container: Link,
}

/// What the veth should look like.
#[derive(Debug, Clone, Default)]
pub struct VethOptions<'a> {
    pub mtu: Option<u32>,
    /// MAC of the container end.
    pub mac: Option<&'a [u8]>,
    /// Bring the host end up at creation.
    pub host_up: bool,
    /// Enslave the host end to this device (a bridge) at creation. If the
    /// kernel refuses, the pair is made without it and `host.master` stays
    /// `None`: the caller enslaves it (and reports the error) itself.
    pub master: Option<u32>,
    /// TX/RX queues of both ends; `None` leaves the kernel's default (one
    /// per possible CPU).
    pub queues: Option<u32>,
}

/// Creates `host_name` in the namespace of `host` with its peer `ifname`
/// created directly in `container_ns`; `container` is a socket bound to
/// that namespace. When `host_name` is taken by something else, alternates
/// derived from `container_id` are tried; when `ifname` already exists in
/// the container, fails with [`Error::Exists`] and leaves nothing behind.
pub fn setup_veth(
    host: &Socket,
    container: &Socket,
    container_ns: &NetNs,
    container_id: &str,
    ifname: &str,
    opts: &VethOptions<'_>,
) -> Result<VethPair> {
    let mut last_err = None;
    let mut master = opts.master;
    let mut attempt = 0;
    while attempt < 4 {
        let host_name = host_veth_name(container_id, ifname, attempt);
        let spec = LinkSpec {
            mtu: opts.mtu,
            up: opts.host_up,
            master,
            queues: opts.queues,
            // Queue length 0 on both ends, as the reference's veths have
            // (veth needs no queue: it transmits synchronously).
            txqlen: Some(0),
            ..LinkSpec::new(
                host_name.clone(),
                LinkKind::Veth {
                    peer_name: ifname.to_string(),
                    peer_mac: opts.mac.map(<[u8]>::to_vec),
                    peer_mtu: opts.mtu,
                    peer_netns_fd: Some(container_ns.fd()),
                },
            )
        };
        match host.create_link_echo(&spec) {
            Ok(echoed) => {
                // Kernels before 6.3 do not echo: read it back.
                let host_link = match echoed {
                    Some(l) => l,
                    None => host.link_by_name(&host_name)?.ok_or_else(|| {
                        Error::Missing(format!("veth {host_name:?} vanished after creation"))
                    })?,
                };
                let cont = match container.link_by_name(ifname)? {
                    Some(l) => l,
                    None => {
                        let _ = host.delete_link(host_link.index);
                        return Err(Error::Missing(format!(
                            "container end {ifname:?} of veth {host_name:?} vanished after creation"
                        )));
                    }
                };
                return Ok(VethPair {
                    host: host_link,
                    container: cont,
                });
            }
            Err(e) if e.is_exists() => {
                if container.link_by_name(ifname)?.is_some() {
                    return Err(Error::Exists(format!(
                        "container veth name provided ({ifname}) already exists"
                    )));
                }
                // The host name is taken: another pod's veth (hash clash)
                // or something unrelated. Never touch it; try an alternate.
                last_err = Some(e);
            }
            // A failed IFLA_MASTER unregisters the new pair: retry without
            // it so that the caller sees the enslaving error on its own.
            Err(_) if master.is_some() => {
                master = None;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        attempt += 1;
    }
    Err(last_err
        .map(Error::from)
        .unwrap_or_else(|| Error::Exists("no free host veth name".into())))
}

/// DEL's first step for veth-based plugins: removes `ifname` from the
/// container namespace at `netns` (its host peer goes with it). A missing
/// namespace or interface is success — DEL is idempotent, and containerd's
/// second DEL comes without a netns at all. Errors are returned as text so
/// DEL can collect them and carry on.
pub fn delete_container_link(netns: Option<&std::path::Path>, ifname: &str) -> Result<()> {
    let Some(path) = netns else {
        return Ok(());
    };
    let ns = match netns::NetNs::open(path) {
        Ok(ns) => ns,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(Error::UnknownContainer(e)),
    };
    let s = netlink::Socket::route_in(&ns)?;
    if let Some(l) = s.link_by_name(ifname)? {
        s.delete_link(l.index)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_distinct_and_fit() {
        let a = host_veth_name("ctr1", "eth0", 0);
        assert_eq!(a, host_veth_name("ctr1", "eth0", 0));
        assert_ne!(a, host_veth_name("ctr1", "eth1", 0));
        assert_ne!(a, host_veth_name("ctr2", "eth0", 0));
        assert_ne!(a, host_veth_name("ctr1", "eth0", 1));
        assert_eq!(a.len(), 15);
        assert!(netlink::valid_ifname(&a));
        let mut seen = std::collections::HashSet::new();
        for i in 0..20000 {
            assert!(seen.insert(host_veth_name(&format!("c{i}"), "eth0", 0)));
        }
    }
}
