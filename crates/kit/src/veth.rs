//! veth pairs whose container end is created directly in the container
//! namespace (no create-then-move window), with a stable host-side name.

use crate::error::{Error, Result};
use crate::ops::LinkOps;
use netlink::{Link, LinkKind, LinkSpec};
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
    /// The end left in the node namespace.
    pub host: Link,
    /// The end inside the pod.
    pub container: Link,
}

/// What the veth should look like.
#[derive(Debug, Clone, Default)]
pub struct VethOptions<'a> {
    /// MTU of both ends (the kernel's default when `None`).
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
pub fn setup_veth<H: LinkOps + ?Sized, C: LinkOps + ?Sized>(
    host: &H,
    container: &C,
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

#[cfg(test)]
mod fake_tests {
    //! The veth core on the recording fake: operation order, retries, the
    //! undo of a half-made pair and the error codes, without root.
    use super::*;
    use crate::ops::fake::RecordingNet;

    fn opts(master: Option<u32>) -> VethOptions<'static> {
        VethOptions {
            master,
            host_up: true,
            ..Default::default()
        }
    }

    fn ns() -> NetNs {
        NetNs::current().expect("own netns")
    }

    #[test]
    fn creates_the_pair_in_one_request_then_reads_the_container_end() {
        let net = RecordingNet::new();
        let name = host_veth_name("ctr", "eth0", 0);
        let pair = setup_veth(&net, &net, &ns(), "ctr", "eth0", &opts(Some(3))).expect("pair");
        assert_eq!(
            net.lines(),
            vec![
                format!("create {name} peer eth0 master 3"),
                "get eth0".to_string()
            ]
        );
        assert_eq!(pair.host.name, name);
        assert_eq!(pair.host.master, Some(3));
        assert_eq!(pair.container.name, "eth0");
    }

    #[test]
    fn reads_the_host_end_back_when_the_kernel_does_not_echo() {
        let net = RecordingNet::without_echo();
        let name = host_veth_name("ctr", "eth0", 0);
        setup_veth(&net, &net, &ns(), "ctr", "eth0", &opts(None)).expect("pair");
        assert_eq!(
            net.lines(),
            vec![
                format!("create {name} peer eth0"),
                format!("get {name}"),
                "get eth0".to_string()
            ]
        );
    }

    #[test]
    fn a_taken_host_name_moves_to_the_next_alternate_and_is_left_alone() {
        let net = RecordingNet::new();
        let first = host_veth_name("ctr", "eth0", 0);
        let second = host_veth_name("ctr", "eth0", 1);
        let other = net.add_existing(&first);
        let pair = setup_veth(&net, &net, &ns(), "ctr", "eth0", &opts(None)).expect("pair");
        assert_eq!(pair.host.name, second);
        assert_eq!(
            net.lines(),
            vec![
                format!("create {first} peer eth0"),
                "get eth0".to_string(),
                format!("create {second} peer eth0"),
                "get eth0".to_string(),
            ]
        );
        assert!(!net.lines().iter().any(|l| l == &format!("delete {other}")));
    }

    #[test]
    fn an_existing_container_interface_fails_with_nothing_made() {
        let net = RecordingNet::new();
        net.add_existing("eth0");
        let e = setup_veth(&net, &net, &ns(), "ctr", "eth0", &opts(None)).expect_err("exists");
        assert!(matches!(e, Error::Exists(_)), "{e}");
        assert_eq!(e.code(), 999);
        assert_eq!(
            net.links.borrow().len(),
            1,
            "only the interface that was there"
        );
        assert!(!net.lines().iter().any(|l| l.starts_with("delete")));
    }

    #[test]
    fn a_refused_master_is_retried_without_it() {
        let net = RecordingNet::new();
        net.fail_next("create", libc::EBUSY);
        let pair = setup_veth(&net, &net, &ns(), "ctr", "eth0", &opts(Some(3))).expect("pair");
        let name = host_veth_name("ctr", "eth0", 0);
        assert_eq!(
            net.lines(),
            vec![
                format!("create {name} peer eth0 master 3"),
                format!("create {name} peer eth0"),
                "get eth0".to_string()
            ]
        );
        assert_eq!(pair.host.master, None, "the caller enslaves it and reports");
    }

    #[test]
    fn a_vanished_container_end_undoes_the_host_end() {
        let host = RecordingNet::new();
        let cont = RecordingNet::new();
        let e = setup_veth(&host, &cont, &ns(), "ctr", "eth0", &opts(None)).expect_err("gone");
        assert!(matches!(e, Error::Missing(_)), "{e}");
        let name = host_veth_name("ctr", "eth0", 0);
        assert!(host.lines().iter().any(|l| l.starts_with("delete ")));
        assert!(!host.links.borrow().iter().any(|l| l.name == name));
        assert_eq!(cont.lines(), vec!["get eth0".to_string()]);
    }

    #[test]
    fn a_kernel_refusal_is_code_5() {
        let net = RecordingNet::new();
        net.fail_next("create", libc::EPERM);
        let e = setup_veth(&net, &net, &ns(), "ctr", "eth0", &opts(None)).expect_err("refused");
        assert_eq!(e.code(), 5, "{e}");
        assert_eq!(e.errno(), Some(libc::EPERM));
        assert!(net.links.borrow().is_empty());
    }
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
