//! Bridges that many concurrent ADDs may try to create at once, and the
//! gateway address on them.

use crate::error::{Error, Result};
use crate::sysctl;
use ipnet::IpNet;
use netlink::{Family, Link, LinkKind, LinkSpec, Socket};

/// How [`ensure_bridge`] makes (or finds) the bridge.
#[derive(Debug, Clone, Copy, Default)]
pub struct BridgeOptions {
    /// MTU of a new bridge (the kernel's default when `None`).
    pub mtu: Option<u32>,
    /// Put the bridge in promiscuous mode (`promiscMode`).
    pub promisc: bool,
    /// Ask for VLAN filtering (fails with [`Error::Unsupported`] on kernels
    /// without it).
    pub vlan_filtering: bool,
}

/// The bridge `name`, created (up, `accept_ra` off, own MAC pinned) if it
/// does not exist. Concurrent callers race safely: whoever gets EEXIST
/// reads the winner's bridge. The calling thread must be in `sock`'s
/// namespace for the sysctl (plugins run there).
pub fn ensure_bridge(sock: &Socket, name: &str, opts: &BridgeOptions) -> Result<Link> {
    let mut created = false;
    let mut link = match sock.link_by_name(name)? {
        Some(l) => l,
        None => {
            let spec = LinkSpec {
                mtu: opts.mtu,
                ..LinkSpec::new(
                    name,
                    LinkKind::Bridge {
                        vlan_filtering: opts.vlan_filtering.then_some(true),
                    },
                )
            };
            match sock.create_link(&spec) {
                Ok(()) => created = true,
                Err(e) if e.is_exists() => {}
                Err(e) if opts.vlan_filtering && e.is_not_supported() => {
                    return Err(no_vlan_filtering(name, &e))
                }
                Err(e) => return Err(e.into()),
            }
            sock.link_by_name(name)?
                .ok_or_else(|| Error::Missing(format!("bridge {name:?} vanished after creation")))?
        }
    };
    if link.kind.as_deref() != Some("bridge") {
        return Err(Error::Invalid(format!(
            "{name:?} already exists but is not a bridge"
        )));
    }
    if opts.vlan_filtering && link.bridge_vlan_filtering() != Some(true) {
        if let Err(e) = sock.set_bridge_vlan_filtering(link.index, true) {
            if e.is_not_supported() {
                return Err(no_vlan_filtering(name, &e));
            }
            return Err(e.into());
        }
    }
    if created {
        // We own the routes of this interface.
        let _ = sysctl::sysctl_set(&format!("net/ipv6/conf/{name}/accept_ra"), "0");
        // No DAD on the bridge's own link-local address (its MAC is random
        // and pinned; the gateway addresses are added NODAD anyway): while
        // it is tentative the node sends no neighbour solicitation for
        // packets it forwards to pods, and the first IPv6 connections
        // routed to them (host ports, other subnets) stall 1-2 s.
        let _ = sysctl::sysctl_set(&format!("net/ipv6/conf/{name}/accept_dad"), "0");
        // Pin the bridge MAC: otherwise it follows the lowest port MAC and
        // changes as pods come and go. It must be set to a *different*
        // address (still the kernel's random one, one bit flipped): only a
        // change also makes it the bridge id, which would otherwise stay
        // 8000.00:00:00:00:00:00 for good once the address is pinned.
        if link.mac.len() == 6 {
            let mut mac = link.mac.clone();
            mac[5] ^= 0x01;
            sock.set_mac(link.index, &mac)?;
            link.mac = mac;
        }
    }
    if opts.promisc && !link.promisc {
        sock.set_promisc(link.index, true)?;
    }
    if !link.up {
        sock.set_link_up(link.index)?;
    }
    link.up = true;
    link.promisc |= opts.promisc;
    Ok(link)
}

/// Puts the gateway address `gw` (with its subnet's prefix) on `link` once:
/// whether it was added now. Another IPv4 address (or an overlapping IPv6
/// one) there is an error unless `force`, which replaces it — the
/// reference's `forceAddress`.
pub fn ensure_gateway_addr(sock: &Socket, link: &Link, gw: IpNet, force: bool) -> Result<bool> {
    let family = Family::of(gw.addr());
    for a in sock.addresses(Some(link.index), family)? {
        if a.addr == gw.addr() && a.prefix == gw.prefix_len() {
            return Ok(false);
        }
        if a.addr.is_ipv6() && a.scope == netlink::addr::RT_SCOPE_LINK {
            continue;
        }
        let Ok(existing) = IpNet::new(a.addr, a.prefix) else {
            continue;
        };
        let clash = gw.addr().is_ipv4() || existing.contains(&gw.addr()) || gw.contains(&a.addr);
        if clash {
            if force {
                sock.del_address(link.index, a.addr, a.prefix)?;
            } else {
                return Err(Error::Invalid(format!(
                    "{:?} already has an IP address different from {gw}",
                    link.name
                )));
            }
        }
    }
    match sock.add_address_with(
        link.index,
        gw.addr(),
        gw.prefix_len(),
        &netlink::AddressOptions {
            nodad: true,
            ..Default::default()
        },
    ) {
        Ok(()) => Ok(true),
        Err(e) if e.is_exists() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Pins the MAC of bridge `index` to the one it has now, as the reference
/// does when it gives a bridge its gateway address. A bridge whose MAC was
/// never set follows its lowest port's (and is zeroed with no port): the
/// pods' gateway would change MAC as pods come and go, and their neighbour
/// caches would point at a MAC that no longer answers. Setting the same
/// address is enough: the kernel then keeps it (and the bridge id) as is.
/// A bridge without ports has no MAC to keep, and is left alone.
pub fn pin_bridge_mac(sock: &Socket, index: u32) -> Result<()> {
    let Some(link) = sock.link_by_index(index)? else {
        return Err(Error::Missing(format!("bridge #{index} vanished")));
    };
    if link.mac.len() == 6 && link.mac.iter().any(|b| *b != 0) {
        sock.set_mac(index, &link.mac)?;
    }
    Ok(())
}

fn no_vlan_filtering(name: &str, e: &netlink::Error) -> Error {
    Error::Unsupported(format!(
        "bridge {name:?}: this kernel lacks bridge VLAN filtering, needed for vlan/vlanTrunk ({e})"
    ))
}
