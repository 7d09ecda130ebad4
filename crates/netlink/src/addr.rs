//! IP addresses on links.

use std::net::{IpAddr, Ipv4Addr};

use crate::error::{Error, Result};
use crate::link::gone_is_false;
use crate::msg::*;
use crate::socket::{replies_of, Socket};
use crate::Family;

pub(crate) const RTM_NEWADDR: u16 = 20;
pub(crate) const RTM_DELADDR: u16 = 21;
pub(crate) const RTM_GETADDR: u16 = 22;

/// Kernel constant `IFA_ADDRESS` (Linux UAPI headers).
pub const IFA_ADDRESS: u16 = 1;
/// Kernel constant `IFA_LOCAL` (Linux UAPI headers).
pub const IFA_LOCAL: u16 = 2;
/// Kernel constant `IFA_LABEL` (Linux UAPI headers).
pub const IFA_LABEL: u16 = 3;
/// Kernel constant `IFA_BROADCAST` (Linux UAPI headers).
pub const IFA_BROADCAST: u16 = 4;
/// Kernel constant `IFA_FLAGS` (Linux UAPI headers).
pub const IFA_FLAGS: u16 = 8;

/// Kernel constant `IFA_F_NODAD` (Linux UAPI headers).
pub const IFA_F_NODAD: u32 = 0x02;
/// Kernel constant `IFA_F_DADFAILED` (Linux UAPI headers).
pub const IFA_F_DADFAILED: u32 = 0x08;
/// Kernel constant `IFA_F_TENTATIVE` (Linux UAPI headers).
pub const IFA_F_TENTATIVE: u32 = 0x40;
/// Kernel constant `IFA_F_PERMANENT` (Linux UAPI headers).
pub const IFA_F_PERMANENT: u32 = 0x80;
/// Kernel constant `IFA_F_NOPREFIXROUTE` (Linux UAPI headers).
pub const IFA_F_NOPREFIXROUTE: u32 = 0x200;

/// Route/address scopes (RT_SCOPE_*).
pub const RT_SCOPE_UNIVERSE: u8 = 0;
/// Kernel constant `RT_SCOPE_SITE` (Linux UAPI headers).
pub const RT_SCOPE_SITE: u8 = 200;
/// Kernel constant `RT_SCOPE_LINK` (Linux UAPI headers).
pub const RT_SCOPE_LINK: u8 = 253;
/// Kernel constant `RT_SCOPE_HOST` (Linux UAPI headers).
pub const RT_SCOPE_HOST: u8 = 254;
/// Kernel constant `RT_SCOPE_NOWHERE` (Linux UAPI headers).
pub const RT_SCOPE_NOWHERE: u8 = 255;

/// `struct ifaddrmsg`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct IfAddrMsg {
    /// `family` of the `struct ifaddrmsg` (Linux UAPI layout).
    pub family: u8,
    /// `prefixlen` of the `struct ifaddrmsg` (Linux UAPI layout).
    pub prefixlen: u8,
    /// `flags` of the `struct ifaddrmsg` (Linux UAPI layout).
    pub flags: u8,
    /// `scope` of the `struct ifaddrmsg` (Linux UAPI layout).
    pub scope: u8,
    /// `index` of the `struct ifaddrmsg` (Linux UAPI layout).
    pub index: u32,
}
// SAFETY: repr(C), integers only, no padding.
unsafe impl Pod for IfAddrMsg {}

/// An address as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Interface index.
    pub index: u32,
    /// The local address (IFA_LOCAL for IPv4, IFA_ADDRESS for IPv6).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
    /// Scope (`RT_SCOPE_*`).
    pub scope: u8,
    /// IFA_F_* flags (the 32-bit IFA_FLAGS when present).
    pub flags: u32,
    /// IFA_LABEL, when set.
    pub label: Option<String>,
    /// IFA_BROADCAST, when set.
    pub broadcast: Option<IpAddr>,
}

/// Options for adding an address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressOptions {
    /// Replace an existing identical address instead of failing with EEXIST.
    pub replace: bool,
    /// IPv6: skip duplicate address detection (usable at once).
    pub nodad: bool,
    /// Do not install the prefix route.
    pub noprefixroute: bool,
    /// Scope (default universe).
    pub scope: Option<u8>,
}

fn check_prefix(op: impl FnOnce() -> String, addr: IpAddr, prefix: u8) -> Result<()> {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(Error::Invalid {
            op: op(),
            detail: format!("prefix length {prefix} too long"),
        });
    }
    Ok(())
}

/// The IPv4 broadcast of `addr/prefix`.
fn broadcast_v4(addr: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let host_mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    Ipv4Addr::from(u32::from(addr) | host_mask)
}

impl Socket {
    /// Adds `addr/prefix` to link `index`.
    pub fn add_address(&self, index: u32, addr: IpAddr, prefix: u8) -> Result<()> {
        self.add_address_with(index, addr, prefix, &AddressOptions::default())
    }

    /// Adds or replaces `addr/prefix` on link `index`.
    pub fn replace_address(&self, index: u32, addr: IpAddr, prefix: u8) -> Result<()> {
        let opts = AddressOptions {
            replace: true,
            ..Default::default()
        };
        self.add_address_with(index, addr, prefix, &opts)
    }

    /// Adds `addr/prefix` to link `index` with options (no DAD, no prefix route, ...).
    pub fn add_address_with(
        &self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
        opts: &AddressOptions,
    ) -> Result<()> {
        let verb = if opts.replace { "replace" } else { "add" };
        let what = || format!("{verb} address {addr}/{prefix} on link #{index}");
        check_prefix(|| self.op(what()), addr, prefix)?;
        let flags = if opts.replace {
            NLM_F_CREATE | NLM_F_REPLACE
        } else {
            NLM_F_CREATE | NLM_F_EXCL
        };
        let mut ifa_flags = 0u32;
        if opts.nodad && addr.is_ipv6() {
            ifa_flags |= IFA_F_NODAD;
        }
        if opts.noprefixroute {
            ifa_flags |= IFA_F_NOPREFIXROUTE;
        }
        let mut m = MessageBuilder::new(RTM_NEWADDR, flags);
        m.header(&IfAddrMsg {
            family: Family::of(addr).raw(),
            prefixlen: prefix,
            flags: (ifa_flags & 0xff) as u8,
            scope: opts.scope.unwrap_or(RT_SCOPE_UNIVERSE),
            index,
        });
        m.attr_ip(IFA_LOCAL, addr).attr_ip(IFA_ADDRESS, addr);
        if let IpAddr::V4(v4) = addr {
            // Like netlink.AddrAdd in Go: set the broadcast for subnets
            // that have one, so `ip addr` output matches the reference.
            if prefix < 31 {
                m.attr_ip(IFA_BROADCAST, IpAddr::V4(broadcast_v4(v4, prefix)));
            }
        }
        if ifa_flags != 0 {
            m.attr_u32(IFA_FLAGS, ifa_flags);
        }
        self.exec(&m, what).map(drop)
    }

    /// Removes `addr/prefix` from link `index`; `Ok(false)` if it was not there.
    pub fn del_address(&self, index: u32, addr: IpAddr, prefix: u8) -> Result<bool> {
        let what = || format!("delete address {addr}/{prefix} from link #{index}");
        check_prefix(|| self.op(what()), addr, prefix)?;
        let mut m = MessageBuilder::new(RTM_DELADDR, 0);
        m.header(&IfAddrMsg {
            family: Family::of(addr).raw(),
            prefixlen: prefix,
            index,
            ..Default::default()
        });
        m.attr_ip(IFA_LOCAL, addr).attr_ip(IFA_ADDRESS, addr);
        gone_is_false(self.exec(&m, what))
    }

    /// Addresses of one link (or all links) of one family (or all).
    /// With `index`, the kernel is asked for that link's addresses only
    /// (a strict-checked dump): an unfiltered dump walks every device of the
    /// namespace, a cost that grows with the pods on a node.
    pub fn addresses(&self, index: Option<u32>, family: Family) -> Result<Vec<Address>> {
        let dump = |strict: bool| {
            let mut m = MessageBuilder::new(RTM_GETADDR, 0);
            m.header(&IfAddrMsg {
                family: family.raw(),
                index: if strict { index.unwrap_or(0) } else { 0 },
                ..Default::default()
            });
            self.dump_as(&m, || "list addresses".into())
        };
        let msgs = if index.is_some() {
            self.with_strict_check(dump)?
        } else {
            dump(false)?
        };
        Ok(replies_of(&msgs, RTM_NEWADDR, parse_addr, |a| {
            !matches!(index, Some(i) if i != a.index) && family.matches(a.addr)
        }))
    }
}

pub(crate) fn parse_addr(payload: &[u8]) -> Option<Address> {
    let hdr = IfAddrMsg::from_bytes(payload)?;
    let mut local = None;
    let mut address = None;
    let mut flags = u32::from(hdr.flags);
    let mut label = None;
    let mut broadcast = None;
    for a in Attrs::after_header(payload, std::mem::size_of::<IfAddrMsg>()) {
        match a.ty {
            IFA_LOCAL => local = a.ip(),
            IFA_ADDRESS => address = a.ip(),
            IFA_FLAGS => flags = a.u32().unwrap_or(flags),
            IFA_LABEL => label = Some(a.string()),
            IFA_BROADCAST => broadcast = a.ip(),
            _ => {}
        }
    }
    // For point-to-point IPv4, IFA_ADDRESS is the peer: prefer IFA_LOCAL.
    Some(Address {
        index: hdr.index,
        addr: local.or(address)?,
        prefix: hdr.prefixlen,
        scope: hdr.scope,
        flags,
        label,
        broadcast,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testns::{veth_up, TestNs};
    use crate::Family;

    #[test]
    fn add_list_replace_delete() {
        let t = TestNs::new("addr");
        let s = t.sock();
        let (i, _) = veth_up(&s, "a0", "a1");
        let v4: IpAddr = "10.1.2.3".parse().expect("ip");
        let v6: IpAddr = "2001:db8::3".parse().expect("ip");
        s.add_address(i, v4, 24).expect("add v4");
        let e = s.add_address(i, v4, 24).expect_err("dup");
        assert!(e.is_exists(), "{e}");
        assert!(
            e.to_string().contains("add address 10.1.2.3/24 on link #"),
            "{e}"
        );
        s.replace_address(i, v4, 24).expect("replace is idempotent");
        let opts = AddressOptions {
            nodad: true,
            ..Default::default()
        };
        s.add_address_with(i, v6, 64, &opts).expect("add v6");

        let got = s.addresses(Some(i), Family::V4).expect("list v4");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].addr, got[0].prefix, got[0].index), (v4, 24, i));
        assert_eq!(got[0].broadcast, Some("10.1.2.255".parse().expect("ip")));
        let got6 = s.addresses(Some(i), Family::V6).expect("list v6");
        let a6 = got6.iter().find(|a| a.addr == v6).expect("v6 present");
        assert_eq!(a6.prefix, 64);
        assert!(
            a6.flags & IFA_F_NODAD != 0 && a6.flags & IFA_F_TENTATIVE == 0,
            "{a6:?}"
        );
        // The dump of all links/families includes both, and lo's 127.0.0.1 only if lo is up.
        let all = s.addresses(None, Family::All).expect("list all");
        assert!(all.iter().any(|a| a.addr == v4) && all.iter().any(|a| a.addr == v6));

        let j = t.ip(&["-j", "addr", "show", "dev", "a0"]);
        assert!(j.contains("\"local\":\"10.1.2.3\",\"prefixlen\":24"), "{j}");
        assert!(
            j.contains("\"local\":\"2001:db8::3\",\"prefixlen\":64"),
            "{j}"
        );

        assert!(s.del_address(i, v4, 24).expect("del"));
        assert!(!s.del_address(i, v4, 24).expect("del again"));
        assert!(s.del_address(i, v6, 64).expect("del v6"));
        assert!(s.addresses(Some(i), Family::V4).expect("list").is_empty());
        let e = s.add_address(i, v4, 33).expect_err("bad prefix");
        assert!(matches!(e, Error::Invalid { .. }), "{e}");
    }

    #[test]
    fn broadcast() {
        let b = broadcast_v4(Ipv4Addr::new(10, 1, 2, 3), 24);
        assert_eq!(b, Ipv4Addr::new(10, 1, 2, 255));
        assert_eq!(
            broadcast_v4(Ipv4Addr::new(10, 1, 2, 3), 0),
            Ipv4Addr::BROADCAST
        );
        assert_eq!(
            broadcast_v4(Ipv4Addr::new(10, 1, 2, 3), 32),
            Ipv4Addr::new(10, 1, 2, 3)
        );
    }
}
