//! Connection tracking entries over ctnetlink (the conntrack subsystem of
//! `NETLINK_NETFILTER`): list the entries of one address family and delete
//! single entries.
//!
//! The portmap plugin needs one operation from it: after a UDP host port
//! starts (or stops) being forwarded, the entries whose original direction
//! goes to that port are deleted, so the next datagram of a "connection"
//! that was tracked before the change goes through the nat chains again
//! instead of following the old entry (to the node itself, or to a pod that
//! is gone). See [`delete_udp_to_ports`].
//!
//! The dump is filtered here rather than by the kernel (CTA_FILTER needs
//! Linux 5.8 and covers fewer fields); a node's table is read once per call.
//! Each deletion names the entry by its original tuple, zone and id, so an
//! entry replaced between the dump and the delete is left alone.

use std::net::IpAddr;

use netlink::msg::{Attr, Attrs, MessageBuilder, OwnedMsg};
use netlink::Socket;
use netns::NetNs;

use crate::batch::NfGenMsg;
use crate::error::{Error, Result};
use crate::rule::{IpVersion, IPPROTO_UDP};
use crate::sys::NFNETLINK_V0;

// linux/netfilter/nfnetlink.h
const NFNL_SUBSYS_CTNETLINK: u16 = 1;

// linux/netfilter/nfnetlink_conntrack.h: enum cntl_msg_types
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;

// enum ctattr_type
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;

// enum ctattr_tuple
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;

// enum ctattr_ip
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;

// enum ctattr_l4proto
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// One direction of a tracked connection. Ports are absent for protocols
/// without them (ICMP, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    /// Source port.
    pub src_port: Option<u16>,
    /// Destination port.
    pub dst_port: Option<u16>,
}

/// A conntrack entry as dumped by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The direction of the packet that created the entry.
    pub orig: Tuple,
    /// The expected answer: differs from the reversed original when NAT
    /// applied (after DNAT its source is the new destination).
    pub reply: Option<Tuple>,
    /// Conntrack zone, when not the default one.
    pub zone: Option<u16>,
    /// The kernel's id of the entry.
    pub id: Option<u32>,
}

impl Entry {
    /// Whether the original direction is UDP to one of `ports`.
    pub fn is_udp_to(&self, ports: &[u16]) -> bool {
        self.orig.proto == IPPROTO_UDP && self.orig.dst_port.is_some_and(|p| ports.contains(&p))
    }
}

/// A `NETLINK_NETFILTER` socket for ctnetlink, bound to one namespace.
#[derive(Debug)]
pub struct Conntrack {
    sock: Socket,
}

impl Conntrack {
    /// Opens the socket in the calling thread's namespace.
    pub fn open() -> Result<Conntrack> {
        let sock = Socket::open(libc::NETLINK_NETFILTER)
            .map_err(|e| Error::from_netlink("open conntrack netlink socket".into(), e))?;
        Ok(Conntrack { sock })
    }

    /// Opens the socket inside `ns`; it acts there for its whole life.
    pub fn open_in(ns: &NetNs) -> Result<Conntrack> {
        let sock = Socket::open_in(libc::NETLINK_NETFILTER, ns).map_err(|e| {
            Error::from_netlink(
                format!(
                    "open conntrack netlink socket in netns {}",
                    ns.path().display()
                ),
                e,
            )
        })?;
        Ok(Conntrack { sock })
    }

    /// Every entry of one address family. A kernel without ctnetlink, or a
    /// namespace where conntrack never ran, gives an empty list.
    pub fn entries(&self, version: IpVersion) -> Result<Vec<Entry>> {
        let m = ct_msg(IPCTNL_MSG_CT_GET, 0, version);
        match self.sock.dump(&m) {
            Ok(msgs) => Ok(msgs.iter().filter_map(parse_entry).collect()),
            Err(e) if unsupported(e.errno()) => Ok(Vec::new()),
            Err(e) => Err(Error::from_netlink(
                self.sock
                    .op(format!("list {} conntrack entries", family_name(version))),
                e,
            )),
        }
    }

    /// Deletes one entry. `Ok(false)` when it is already gone (expired,
    /// or replaced by another entry with the same tuple).
    pub fn delete(&self, entry: &Entry) -> Result<bool> {
        let version = IpVersion::of(entry.orig.src);
        let mut m = ct_msg(IPCTNL_MSG_CT_DELETE, 0, version);
        put_tuple(&mut m, CTA_TUPLE_ORIG, &entry.orig);
        if let Some(z) = entry.zone {
            m.attr_be16(CTA_ZONE, z);
        }
        if let Some(id) = entry.id {
            m.attr_be32(CTA_ID, id);
        }
        match self.sock.request(&m) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(Error::from_netlink(
                self.sock.op(format!(
                    "delete conntrack entry {} {}:{} -> {}:{}",
                    proto_name(entry.orig.proto),
                    entry.orig.src,
                    entry.orig.src_port.unwrap_or(0),
                    entry.orig.dst,
                    entry.orig.dst_port.unwrap_or(0)
                )),
                e,
            )),
        }
    }

    /// Deletes every entry of `version` whose original direction is UDP to
    /// one of `ports`; returns how many were deleted.
    pub fn delete_udp_to_ports(&self, version: IpVersion, ports: &[u16]) -> Result<usize> {
        if ports.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        for e in self.entries(version)? {
            if e.is_udp_to(ports) && self.delete(&e)? {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// [`Conntrack::delete_udp_to_ports`] in the calling thread's namespace.
pub fn delete_udp_to_ports(version: IpVersion, ports: &[u16]) -> Result<usize> {
    if ports.is_empty() {
        return Ok(0);
    }
    Conntrack::open()?.delete_udp_to_ports(version, ports)
}

/// No ctnetlink here (module absent, subsystem unknown): nothing to list.
fn unsupported(errno: Option<i32>) -> bool {
    matches!(
        errno,
        Some(libc::EOPNOTSUPP) | Some(libc::EPROTONOSUPPORT) | Some(libc::ENOENT)
    )
}

fn family_name(v: IpVersion) -> &'static str {
    match v {
        IpVersion::V4 => "IPv4",
        IpVersion::V6 => "IPv6",
    }
}

fn proto_name(p: u8) -> String {
    match p {
        IPPROTO_UDP => "udp".into(),
        crate::rule::IPPROTO_TCP => "tcp".into(),
        other => format!("proto {other}"),
    }
}

/// A ctnetlink message with its nfgenmsg header.
fn ct_msg(msg: u16, flags: u16, version: IpVersion) -> MessageBuilder {
    let mut m = MessageBuilder::new((NFNL_SUBSYS_CTNETLINK << 8) | msg, flags);
    m.header(&NfGenMsg {
        family: version.nfproto(),
        version: NFNETLINK_V0,
        res_id: [0, 0],
    });
    m
}

fn put_tuple(m: &mut MessageBuilder, ty: u16, t: &Tuple) {
    m.nested(ty, |m| {
        m.nested(CTA_TUPLE_IP, |m| {
            let (s, d) = match t.src {
                IpAddr::V4(_) => (CTA_IP_V4_SRC, CTA_IP_V4_DST),
                IpAddr::V6(_) => (CTA_IP_V6_SRC, CTA_IP_V6_DST),
            };
            m.attr_ip(s, t.src).attr_ip(d, t.dst);
        });
        m.nested(CTA_TUPLE_PROTO, |m| {
            m.attr_u8(CTA_PROTO_NUM, t.proto);
            if let Some(p) = t.src_port {
                m.attr_be16(CTA_PROTO_SRC_PORT, p);
            }
            if let Some(p) = t.dst_port {
                m.attr_be16(CTA_PROTO_DST_PORT, p);
            }
        });
    });
}

pub(crate) fn parse_entry(msg: &OwnedMsg) -> Option<Entry> {
    if msg.ty != (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW {
        return None;
    }
    let attrs = Attrs::after_header(&msg.payload, std::mem::size_of::<NfGenMsg>());
    let orig = parse_tuple(attrs.get(CTA_TUPLE_ORIG)?)?;
    let reply = attrs.get(CTA_TUPLE_REPLY).and_then(parse_tuple);
    let zone = attrs
        .get(CTA_ZONE)
        .and_then(|a| a.be16())
        .filter(|z| *z != 0);
    let id = attrs.get(CTA_ID).and_then(|a| a.be32());
    Some(Entry {
        orig,
        reply,
        zone,
        id,
    })
}

fn parse_tuple(a: Attr<'_>) -> Option<Tuple> {
    let t = a.nested();
    let ip = t.get(CTA_TUPLE_IP)?.nested();
    let (src, dst) = match (ip.get(CTA_IP_V4_SRC), ip.get(CTA_IP_V4_DST)) {
        (Some(s), Some(d)) => (s.ip()?, d.ip()?),
        _ => (ip.get(CTA_IP_V6_SRC)?.ip()?, ip.get(CTA_IP_V6_DST)?.ip()?),
    };
    let proto = t.get(CTA_TUPLE_PROTO)?.nested();
    Some(Tuple {
        src,
        dst,
        proto: proto.get(CTA_PROTO_NUM)?.u8()?,
        src_port: proto.get(CTA_PROTO_SRC_PORT).and_then(|p| p.be16()),
        dst_port: proto.get(CTA_PROTO_DST_PORT).and_then(|p| p.be16()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
        Tuple {
            src: src.parse().expect("ip"),
            dst: dst.parse().expect("ip"),
            proto: IPPROTO_UDP,
            src_port: Some(sport),
            dst_port: Some(dport),
        }
    }

    /// `m` as sent (sequence 1) and as a receiver reads it back.
    fn as_received(m: MessageBuilder) -> (Vec<u8>, OwnedMsg) {
        let bytes = m.finish(1, 0);
        let msg = OwnedMsg {
            ty: u16::from_ne_bytes([bytes[4], bytes[5]]),
            flags: 0,
            seq: 1,
            payload: bytes[16..].to_vec(),
        };
        (bytes, msg)
    }

    /// A delete request encodes the tuple the way the kernel parses it and
    /// a dumped entry with the same attributes decodes back to it.
    #[test]
    fn tuple_round_trip() {
        let orig = udp("192.0.2.1", 40000, "192.0.2.2", 5353);
        let mut m = ct_msg(IPCTNL_MSG_CT_NEW, 0, IpVersion::V4);
        put_tuple(&mut m, CTA_TUPLE_ORIG, &orig);
        m.attr_be32(CTA_ID, 0xdead_beef);
        let (bytes, msg) = as_received(m);
        assert_eq!(msg.ty, 0x100);
        assert_eq!(msg.payload[0], libc::AF_INET as u8);
        let e = parse_entry(&msg).expect("entry");
        assert_eq!(e.orig, orig);
        assert_eq!(e.id, Some(0xdead_beef));
        assert_eq!(e.zone, None);
        assert!(e.is_udp_to(&[53, 5353]));
        assert!(!e.is_udp_to(&[53]));
        // Ports are big-endian on the wire.
        let at = bytes
            .windows(2)
            .position(|w| w == 5353u16.to_be_bytes())
            .expect("port bytes");
        assert!(at > 16);
    }

    #[test]
    fn v6_tuple_and_tcp_is_not_udp() {
        let mut t = udp("2001:db8::1", 1, "2001:db8::2", 5353);
        t.proto = crate::rule::IPPROTO_TCP;
        let mut m = ct_msg(IPCTNL_MSG_CT_NEW, 0, IpVersion::V6);
        put_tuple(&mut m, CTA_TUPLE_ORIG, &t);
        let (_, msg) = as_received(m);
        let e = parse_entry(&msg).expect("entry");
        assert_eq!(e.orig, t);
        assert!(!e.is_udp_to(&[5353]));
    }
}
