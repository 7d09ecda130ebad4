//! The VXLAN overlay: the devices, their VTEP addresses and MACs, and the
//! per-peer FDB entries and neighbours.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use netlink::neigh::NUD_PERMANENT;
use netlink::{Family, FdbEntry, Link, LinkKind, LinkSpec, Socket, Vxlan};

use super::{fnv1a, DatapathOptions, Error, Report, Result};

/// The VTEP MAC of a node: `0a:58:` followed by its IPv4 address (a
/// locally administered unicast address).
pub fn vtep_mac(node_ip: Ipv4Addr) -> [u8; 6] {
    let o = node_ip.octets();
    [0x0a, 0x58, o[0], o[1], o[2], o[3]]
}

/// The VTEP MAC of a node on either underlay: [`vtep_mac`] for IPv4;
/// for IPv6 `0a:59:` followed by four bytes of a hash (FNV-1a) of the whole
/// address (its last bytes alone repeat across subnets: `fd50::10`,
/// `fd60::10`).
pub fn vtep_mac_of(node_ip: IpAddr) -> [u8; 6] {
    match node_ip {
        IpAddr::V4(v4) => vtep_mac(v4),
        IpAddr::V6(v6) => {
            let h = fnv1a(&v6.octets()).to_be_bytes();
            [0x0a, 0x59, h[0], h[1], h[2], h[3]]
        }
    }
}

/// The VTEP address of a pod CIDR: its network address.
pub fn vtep_ip(cidr: &IpNet) -> IpAddr {
    cidr.network()
}

pub(super) fn vxlan_matches(l: &Link, want: &Vxlan) -> bool {
    use netlink::link::{
        IFLA_VXLAN_ID, IFLA_VXLAN_LEARNING, IFLA_VXLAN_LINK, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LOCAL6,
        IFLA_VXLAN_PORT,
    };
    if l.kind.as_deref() != Some("vxlan") {
        return false;
    }
    let a = l.info_attrs();
    a.get(IFLA_VXLAN_ID).and_then(|x| x.u32()) == Some(want.vni)
        && a.get(IFLA_VXLAN_LOCAL)
            .or_else(|| a.get(IFLA_VXLAN_LOCAL6))
            .and_then(|x| x.ip())
            == want.local
        && a.get(IFLA_VXLAN_PORT).and_then(|x| x.be16()) == want.port
        && a.get(IFLA_VXLAN_LINK).and_then(|x| x.u32()) == want.underlying
        && a.get(IFLA_VXLAN_LEARNING).and_then(|x| x.u8()) == Some(0)
}

/// One VXLAN device: its name, local underlay address and MTU.
pub(super) struct Device<'a> {
    pub(super) name: &'a str,
    pub(super) local: IpAddr,
    pub(super) mtu: u32,
}

pub(super) fn ensure_vxlan(
    sock: &Socket,
    opts: &DatapathOptions,
    uplink: &Link,
    device: &Device,
    own: &[IpNet],
    report: &mut Report,
) -> Result<u32> {
    let (dev, local, mtu) = (device.name, device.local, device.mtu);
    let want = Vxlan {
        vni: opts.vxlan_vni,
        local: Some(local),
        port: Some(opts.vxlan_port),
        underlying: Some(uplink.index),
        learning: Some(false),
        ..Default::default()
    };
    let mac = vtep_mac_of(local);
    let existing = sock.link_by_name(dev)?;
    let link = match existing {
        Some(l) if vxlan_matches(&l, &want) => l,
        other => {
            if let Some(l) = other {
                sock.delete_link(l.index)?;
                report
                    .changes
                    .push(format!("deleted {dev}: settings changed"));
            }
            let spec = LinkSpec::new(dev, LinkKind::Vxlan(want.clone()))
                .mtu(mtu)
                .mac(&mac);
            if let Err(e) = sock.create_link(&spec) {
                return Err(explain_create_failure(sock, opts, device, e));
            }
            report.changes.push(format!(
                "created {dev} vni {} port {} local {local} dev {} mtu {mtu}",
                opts.vxlan_vni, opts.vxlan_port, uplink.name
            ));
            sock.link_by_name(dev)?
                .ok_or_else(|| Error::NoUplink(format!("{dev} vanished right after creation")))?
        }
    };
    if link.mtu != mtu {
        sock.set_mtu(link.index, mtu)?;
        report
            .changes
            .push(format!("set {dev} mtu {} -> {mtu}", link.mtu));
    }
    if link.mac != mac {
        sock.set_mac(link.index, &mac)?;
        report
            .changes
            .push(format!("set {dev} address {}", netlink::format_mac(&mac)));
    }
    // One VTEP address per family of our pod CIDRs (the first of each):
    // the network address, /32 or /128. IPv6 link-local addresses are the
    // kernel's and stay.
    let mut vteps: Vec<(IpAddr, u8)> = Vec::new();
    for c in own {
        if !vteps.iter().any(|(v, _)| v.is_ipv4() == c.addr().is_ipv4()) {
            vteps.push((vtep_ip(c), c.max_prefix_len()));
        }
    }
    let addrs: Vec<netlink::Address> = sock
        .addresses(Some(link.index), Family::All)?
        .into_iter()
        .filter(|a| !matches!(a.addr, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
        .collect();
    for a in &addrs {
        if !vteps.contains(&(a.addr, a.prefix)) {
            sock.del_address(link.index, a.addr, a.prefix)?;
            report
                .changes
                .push(format!("removed {}/{} from {dev}", a.addr, a.prefix));
        }
    }
    for (vtep, prefix) in &vteps {
        if !addrs.iter().any(|a| a.addr == *vtep && a.prefix == *prefix) {
            let options = netlink::addr::AddressOptions {
                nodad: vtep.is_ipv6(),
                ..Default::default()
            };
            sock.add_address_with(link.index, *vtep, *prefix, &options)?;
            report
                .changes
                .push(format!("added {vtep}/{prefix} to {dev}"));
        }
    }
    if !link.up {
        match sock.set_link_up(link.index) {
            Ok(()) => report.changes.push(format!("set {dev} up")),
            // The device opens its UDP socket when it goes up.
            Err(e) if e.errno() == Some(libc::EADDRINUSE) => {
                return Err(Error::Overlay(format!(
                    "{e}: something else holds UDP port {}; give the overlay another port with --vxlan-port (the same on every node)",
                    opts.vxlan_port
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(link.index)
}

/// The MTU of an overlay device: `--mtu` when the uplink can carry it
/// after `overhead` bytes of encapsulation, else an error naming both
/// numbers; without `--mtu` the uplink's MTU minus `overhead`.
pub(super) fn overlay_mtu(configured: Option<u32>, uplink: &Link, overhead: u32) -> Result<u32> {
    let fits = uplink.mtu.saturating_sub(overhead);
    match configured {
        None => Ok(fits),
        Some(m) if m <= fits => Ok(m),
        Some(m) => {
            let underlay = if overhead == super::VXLAN6_OVERHEAD {
                "IPv6"
            } else {
                "IPv4"
            };
            Err(Error::Overlay(format!(
                "--mtu {m} is too large: the uplink {} has MTU {}, which leaves {fits} after {overhead} bytes of VXLAN-over-{underlay} encapsulation; use --mtu {fits} or less, or raise the uplink's MTU",
                uplink.name, uplink.mtu
            )))
        }
    }
}

/// Why creating `device` failed, in words that say what to do: the kernel
/// allows one VXLAN device per VNI and UDP port (per underlay family), so
/// EEXIST means another device already uses ours.
fn explain_create_failure(
    sock: &Socket,
    opts: &DatapathOptions,
    device: &Device,
    e: netlink::Error,
) -> Error {
    if e.errno() != Some(libc::EEXIST) {
        return e.into();
    }
    let (vni, port) = (opts.vxlan_vni, opts.vxlan_port);
    let advice = "give the overlay another VNI with --vxlan-vni (or another port with --vxlan-port), the same on every node";
    // Best effort: the error stands also when the links cannot be listed.
    // Only a device of the same underlay family clashes; prefer one.
    let holder = sock.links().ok().and_then(|links| {
        let mut clashing: Vec<Link> = links
            .into_iter()
            .filter(|l| l.name != device.name && vxlan_uses(l, vni, port))
            .collect();
        clashing.sort_by_key(|l| vxlan_is_v6(l) != device.local.is_ipv6());
        clashing.into_iter().next()
    });
    match holder {
        Some(l) => Error::Overlay(format!(
            "the VXLAN device {:?} already uses VNI {vni} on UDP port {port} (the kernel allows one device per VNI and port); {advice}",
            l.name
        )),
        None => Error::Overlay(format!(
            "{e}; if another VXLAN device uses VNI {vni} on UDP port {port}, {advice}"
        )),
    }
}

/// Whether `l` is a VXLAN device using `vni` on UDP `port`.
fn vxlan_uses(l: &Link, vni: u32, port: u16) -> bool {
    use netlink::link::{IFLA_VXLAN_ID, IFLA_VXLAN_PORT};
    if l.kind.as_deref() != Some("vxlan") {
        return false;
    }
    let a = l.info_attrs();
    a.get(IFLA_VXLAN_ID).and_then(|x| x.u32()) == Some(vni)
        && a.get(IFLA_VXLAN_PORT).and_then(|x| x.be16()) == Some(port)
}

/// Whether VXLAN link `l` runs over IPv6 (its local or remote address is
/// one).
fn vxlan_is_v6(l: &Link) -> bool {
    use netlink::link::{IFLA_VXLAN_GROUP6, IFLA_VXLAN_LOCAL6};
    let a = l.info_attrs();
    a.get(IFLA_VXLAN_LOCAL6).is_some() || a.get(IFLA_VXLAN_GROUP6).is_some()
}

pub(super) fn sync_fdb(
    sock: &Socket,
    dev: &str,
    vx: u32,
    peers: &[(IpNet, IpAddr)],
    report: &mut Report,
) -> Result<()> {
    let want: BTreeMap<[u8; 6], IpAddr> = peers
        .iter()
        .map(|(_, ip)| (vtep_mac_of(*ip), *ip))
        .collect();
    let have = sock.fdb(Some(vx))?;
    for e in &have {
        let (Some(mac), Some(dst)) = (e.mac.as_deref(), e.ip) else {
            continue;
        };
        let wanted = <[u8; 6]>::try_from(mac)
            .ok()
            .and_then(|m| want.get(&m))
            .is_some_and(|ip| *ip == dst);
        if !wanted {
            sock.del_fdb(&FdbEntry::new(vx, mac).dst(dst))?;
            report.changes.push(format!(
                "removed fdb {} dst {dst} dev {dev}",
                netlink::format_mac(mac)
            ));
        }
    }
    for (mac, ip) in &want {
        let present = have.iter().any(|e| {
            e.mac.as_deref() == Some(&mac[..]) && e.ip == Some(*ip) && e.state & NUD_PERMANENT != 0
        });
        if !present {
            sock.replace_fdb(&FdbEntry::new(vx, mac).dst(*ip))?;
            report.changes.push(format!(
                "added fdb {} dst {ip} dev {dev}",
                netlink::format_mac(mac)
            ));
        }
    }
    Ok(())
}

pub(super) fn sync_neighbours(
    sock: &Socket,
    dev: &str,
    vx: u32,
    peers: &[(IpNet, IpAddr)],
    report: &mut Report,
) -> Result<()> {
    let want: BTreeMap<IpAddr, [u8; 6]> = peers
        .iter()
        .map(|(cidr, ip)| (vtep_ip(cidr), vtep_mac_of(*ip)))
        .collect();
    let have = sock.neighbours(Some(vx), Family::All)?;
    for n in &have {
        let Some(ip) = n.ip else { continue };
        // The kernel's own IPv6 link-local and multicast entries stay.
        if let IpAddr::V6(v6) = ip {
            if v6.segments()[0] & 0xffc0 == 0xfe80 || v6.is_multicast() {
                continue;
            }
        }
        if !want.contains_key(&ip) {
            sock.del_neighbour(vx, ip)?;
            report
                .changes
                .push(format!("removed neighbour {ip} dev {dev}"));
        }
    }
    for (ip, mac) in &want {
        let present = have.iter().any(|n| {
            n.ip == Some(*ip) && n.mac.as_deref() == Some(&mac[..]) && n.state & NUD_PERMANENT != 0
        });
        if !present {
            sock.replace_neighbour(vx, *ip, mac)?;
            report.changes.push(format!(
                "added neighbour {ip} lladdr {} dev {dev}",
                netlink::format_mac(mac)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_vtep_macs_differ_where_the_last_bytes_match() {
        let a = vtep_mac_of("fd50::10".parse().unwrap());
        let c = vtep_mac_of("fd60::10".parse().unwrap());
        assert_ne!(a, c);
        assert_eq!(a[..2], [0x0a, 0x59]);
        assert_eq!(a, vtep_mac_of("fd50::10".parse().unwrap()));
    }

    #[test]
    fn configured_mtu_must_fit_the_uplink() {
        use crate::datapath::{VXLAN6_OVERHEAD, VXLAN_OVERHEAD};
        let eth0 = Link {
            name: "eth0".into(),
            mtu: 1500,
            ..Default::default()
        };
        assert_eq!(overlay_mtu(None, &eth0, VXLAN_OVERHEAD).unwrap(), 1450);
        assert_eq!(overlay_mtu(None, &eth0, VXLAN6_OVERHEAD).unwrap(), 1430);
        assert_eq!(
            overlay_mtu(Some(1450), &eth0, VXLAN_OVERHEAD).unwrap(),
            1450
        );
        let e = overlay_mtu(Some(1500), &eth0, VXLAN_OVERHEAD)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--mtu 1500 is too large")
                && e.contains("eth0 has MTU 1500, which leaves 1450")
                && e.contains("VXLAN-over-IPv4"),
            "{e}"
        );
        let e = overlay_mtu(Some(1450), &eth0, VXLAN6_OVERHEAD)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("leaves 1430 after 70 bytes of VXLAN-over-IPv6"),
            "{e}"
        );
    }

    #[test]
    fn mac_from_node_address() {
        assert_eq!(
            vtep_mac("192.168.50.10".parse().unwrap()),
            [0x0a, 0x58, 192, 168, 50, 10]
        );
        assert_eq!(
            vtep_ip(&"10.244.3.0/24".parse().unwrap()),
            "10.244.3.0".parse::<IpAddr>().unwrap()
        );
    }
}
