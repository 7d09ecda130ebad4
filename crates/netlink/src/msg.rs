//! Protocol-agnostic netlink message building and parsing.
//!
//! Nothing here knows about rtnetlink: the same builder and parser serve
//! `NETLINK_ROUTE` and `NETLINK_NETFILTER` (nf_tables batches). A message is
//! a 16-byte `nlmsghdr`, a fixed family header (`ifinfomsg`, `nfgenmsg`, ...)
//! and a sequence of 4-byte aligned TLV attributes, possibly nested.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Netlink aligns headers and attributes to 4 bytes.
pub const NLMSG_ALIGNTO: usize = 4;
/// Size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Size of `struct nlattr` / `struct rtattr`.
pub const NLA_HDRLEN: usize = 4;

/// Kernel constant `NLMSG_NOOP` (Linux UAPI headers).
pub const NLMSG_NOOP: u16 = 1;
/// Kernel constant `NLMSG_ERROR` (Linux UAPI headers).
pub const NLMSG_ERROR: u16 = 2;
/// Kernel constant `NLMSG_DONE` (Linux UAPI headers).
pub const NLMSG_DONE: u16 = 3;
/// Kernel constant `NLMSG_OVERRUN` (Linux UAPI headers).
pub const NLMSG_OVERRUN: u16 = 4;

/// Kernel constant `NLM_F_REQUEST` (Linux UAPI headers).
pub const NLM_F_REQUEST: u16 = 0x1;
/// Kernel constant `NLM_F_MULTI` (Linux UAPI headers).
pub const NLM_F_MULTI: u16 = 0x2;
/// Kernel constant `NLM_F_ACK` (Linux UAPI headers).
pub const NLM_F_ACK: u16 = 0x4;
/// Kernel constant `NLM_F_ECHO` (Linux UAPI headers).
pub const NLM_F_ECHO: u16 = 0x8;
/// Kernel constant `NLM_F_DUMP_INTR` (Linux UAPI headers).
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// Kernel constant `NLM_F_ROOT` (Linux UAPI headers).
pub const NLM_F_ROOT: u16 = 0x100;
/// Kernel constant `NLM_F_MATCH` (Linux UAPI headers).
pub const NLM_F_MATCH: u16 = 0x200;
/// Kernel constant `NLM_F_DUMP` (Linux UAPI headers).
pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
/// Kernel constant `NLM_F_REPLACE` (Linux UAPI headers).
pub const NLM_F_REPLACE: u16 = 0x100;
/// Kernel constant `NLM_F_EXCL` (Linux UAPI headers).
pub const NLM_F_EXCL: u16 = 0x200;
/// Kernel constant `NLM_F_CREATE` (Linux UAPI headers).
pub const NLM_F_CREATE: u16 = 0x400;
/// Kernel constant `NLM_F_APPEND` (Linux UAPI headers).
pub const NLM_F_APPEND: u16 = 0x800;
/// On NLMSG_ERROR: the echoed request was capped to its header.
pub const NLM_F_CAPPED: u16 = 0x100;
/// On NLMSG_ERROR: extended-ack TLVs follow.
pub const NLM_F_ACK_TLVS: u16 = 0x200;

/// Kernel constant `NLA_F_NESTED` (Linux UAPI headers).
pub const NLA_F_NESTED: u16 = 1 << 15;
/// Kernel constant `NLA_F_NET_BYTEORDER` (Linux UAPI headers).
pub const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
/// Kernel constant `NLA_TYPE_MASK` (Linux UAPI headers).
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

/// Extended-ack attributes inside NLMSG_ERROR.
pub const NLMSGERR_ATTR_MSG: u16 = 1;
/// Kernel constant `NLMSGERR_ATTR_OFFS` (Linux UAPI headers).
pub const NLMSGERR_ATTR_OFFS: u16 = 2;

/// Rounds `len` up to the netlink alignment.
pub const fn align(len: usize) -> usize {
    (len + NLMSG_ALIGNTO - 1) & !(NLMSG_ALIGNTO - 1)
}

/// Plain-old-data family headers that may be copied byte-for-byte into and
/// out of messages.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, contain no padding the kernel would
/// misread, no pointers, and every bit pattern must be a valid value.
pub unsafe trait Pod: Copy {
    /// The value's bytes as the kernel reads them.
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: Pod guarantees a plain byte representation.
        unsafe {
            std::slice::from_raw_parts(
                self as *const Self as *const u8,
                std::mem::size_of::<Self>(),
            )
        }
    }

    /// Reads a value from the start of `bytes`; `None` if too short.
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < std::mem::size_of::<Self>() {
            return None;
        }
        // SAFETY: length checked; Pod accepts any bit pattern; unaligned read.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const Self) })
    }
}

/// A nested attribute being built; close it with [`MessageBuilder::end_nest`].
#[must_use = "a nest must be closed with end_nest"]
#[derive(Debug)]
pub struct Nest(usize);

/// Builds one netlink message. The socket fills in length, sequence number
/// and port id when sending.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    buf: Vec<u8>,
}

impl MessageBuilder {
    /// Starts a message of type `ty` with `flags` (NLM_F_REQUEST is added by
    /// the socket).
    pub fn new(ty: u16, flags: u16) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // len, patched in finish
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // seq
        buf.extend_from_slice(&0u32.to_ne_bytes()); // pid
        MessageBuilder { buf }
    }

    /// The message type (`RTM_*`).
    pub fn msg_type(&self) -> u16 {
        u16::from_ne_bytes([self.buf[4], self.buf[5]])
    }

    /// The `NLM_F_*` flags.
    pub fn flags(&self) -> u16 {
        u16::from_ne_bytes([self.buf[6], self.buf[7]])
    }

    /// Replaces the `NLM_F_*` flags.
    pub fn set_flags(&mut self, flags: u16) -> &mut Self {
        self.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        self
    }

    /// Appends a fixed family header (ifinfomsg, rtmsg, nfgenmsg, ...).
    pub fn header<T: Pod>(&mut self, h: &T) -> &mut Self {
        self.bytes(h.as_bytes())
    }

    /// Appends raw bytes, padded to alignment.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self.pad();
        self
    }

    fn pad(&mut self) {
        let want = align(self.buf.len());
        self.buf.resize(want, 0);
    }

    /// Appends one attribute with a raw payload.
    pub fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = NLA_HDRLEN + data.len();
        // Attribute length is 16 bits; callers never build payloads near 64 KiB.
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    /// An attribute without payload (a flag).
    pub fn attr_flag(&mut self, ty: u16) -> &mut Self {
        self.attr(ty, &[])
    }
    /// Appends attribute `ty` holding `v` with `put` (e.g.
    /// [`MessageBuilder::attr_u32`]) when `v` is set; nothing otherwise.
    pub fn attr_opt<T>(
        &mut self,
        ty: u16,
        v: Option<T>,
        put: impl FnOnce(&mut Self, u16, T) -> &mut Self,
    ) -> &mut Self {
        if let Some(v) = v {
            put(self, ty, v);
        }
        self
    }
    /// Appends a `u8` attribute.
    pub fn attr_u8(&mut self, ty: u16, v: u8) -> &mut Self {
        self.attr(ty, &[v])
    }
    /// Appends a `u16` attribute (native byte order).
    pub fn attr_u16(&mut self, ty: u16, v: u16) -> &mut Self {
        self.attr(ty, &v.to_ne_bytes())
    }
    /// Appends a `u32` attribute (native byte order).
    pub fn attr_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_ne_bytes())
    }
    /// Appends an `i32` attribute (native byte order).
    pub fn attr_i32(&mut self, ty: u16, v: i32) -> &mut Self {
        self.attr(ty, &v.to_ne_bytes())
    }
    /// Appends a `u64` attribute (native byte order).
    pub fn attr_u64(&mut self, ty: u16, v: u64) -> &mut Self {
        self.attr(ty, &v.to_ne_bytes())
    }
    /// Big-endian u16 (ports, netfilter values).
    pub fn attr_be16(&mut self, ty: u16, v: u16) -> &mut Self {
        self.attr(ty, &v.to_be_bytes())
    }
    /// Big-endian u32 (netfilter values).
    pub fn attr_be32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_be_bytes())
    }
    /// Appends a `u64` attribute in network byte order.
    pub fn attr_be64(&mut self, ty: u16, v: u64) -> &mut Self {
        self.attr(ty, &v.to_be_bytes())
    }
    /// NUL-terminated string, as the kernel's NLA_STRING/NLA_NUL_STRING expect.
    pub fn attr_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(ty, &v)
    }
    /// An IP address in network byte order (4 or 16 bytes).
    pub fn attr_ip(&mut self, ty: u16, ip: IpAddr) -> &mut Self {
        match ip {
            IpAddr::V4(a) => self.attr(ty, &a.octets()),
            IpAddr::V6(a) => self.attr(ty, &a.octets()),
        }
    }

    /// Opens a nested attribute (NLA_F_NESTED is set).
    pub fn nest(&mut self, ty: u16) -> Nest {
        self.nest_raw(ty | NLA_F_NESTED)
    }

    /// Opens a nested attribute without NLA_F_NESTED: some old rtnetlink
    /// containers (IFLA_LINKINFO data, VETH_INFO_PEER, tc options) predate
    /// the flag; the kernel accepts both, but we mirror iproute2.
    pub fn nest_raw(&mut self, ty: u16) -> Nest {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        Nest(at)
    }

    /// Closes a nest by patching its length.
    pub fn end_nest(&mut self, nest: Nest) -> &mut Self {
        let len = (self.buf.len() - nest.0) as u16;
        self.buf[nest.0..nest.0 + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// Builds a nested attribute with a closure.
    pub fn nested(&mut self, ty: u16, f: impl FnOnce(&mut Self)) -> &mut Self {
        let n = self.nest(ty);
        f(self);
        self.end_nest(n)
    }

    /// The finished bytes with the given sequence number and port id.
    pub fn finish(&self, seq: u32, pid: u32) -> Vec<u8> {
        let mut out = self.buf.clone();
        let len = out.len() as u32;
        out[0..4].copy_from_slice(&len.to_ne_bytes());
        out[8..12].copy_from_slice(&seq.to_ne_bytes());
        out[12..16].copy_from_slice(&pid.to_ne_bytes());
        out
    }

    /// Bytes built so far (header length not yet patched).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// One received netlink message, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy)]
pub struct Msg<'a> {
    /// Message type.
    pub ty: u16,
    /// `NLM_F_*` flags.
    pub flags: u16,
    /// Sequence number.
    pub seq: u32,
    /// Sender port ID.
    pub pid: u32,
    /// Everything after the nlmsghdr.
    pub payload: &'a [u8],
}

/// An owned copy of a received message.
#[derive(Debug, Clone)]
pub struct OwnedMsg {
    /// Message type.
    pub ty: u16,
    /// `NLM_F_*` flags.
    pub flags: u16,
    /// Sequence number.
    pub seq: u32,
    /// Everything after the nlmsghdr.
    pub payload: Vec<u8>,
}

impl Msg<'_> {
    /// An owned copy.
    pub fn to_owned_msg(&self) -> OwnedMsg {
        OwnedMsg {
            ty: self.ty,
            flags: self.flags,
            seq: self.seq,
            payload: self.payload.to_vec(),
        }
    }
}

/// Iterates over the messages of one datagram. Stops at the first
/// malformed header instead of panicking.
#[derive(Debug, Clone)]
pub struct MsgIter<'a> {
    rest: &'a [u8],
}

impl<'a> MsgIter<'a> {
    /// Iterates over the messages in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        MsgIter { rest: buf }
    }
}

impl<'a> Iterator for MsgIter<'a> {
    type Item = Msg<'a>;
    fn next(&mut self) -> Option<Msg<'a>> {
        if self.rest.len() < NLMSG_HDRLEN {
            return None;
        }
        let r = self.rest;
        let len = u32::from_ne_bytes([r[0], r[1], r[2], r[3]]) as usize;
        if len < NLMSG_HDRLEN || len > r.len() {
            self.rest = &[];
            return None;
        }
        let msg = Msg {
            ty: u16::from_ne_bytes([r[4], r[5]]),
            flags: u16::from_ne_bytes([r[6], r[7]]),
            seq: u32::from_ne_bytes([r[8], r[9], r[10], r[11]]),
            pid: u32::from_ne_bytes([r[12], r[13], r[14], r[15]]),
            payload: &r[NLMSG_HDRLEN..len],
        };
        self.rest = &r[align(len).min(r.len())..];
        Some(msg)
    }
}

/// One attribute, type flags split off.
#[derive(Debug, Clone, Copy)]
pub struct Attr<'a> {
    /// Type without NLA_F_NESTED / NLA_F_NET_BYTEORDER.
    pub ty: u16,
    /// NLA_F_NESTED was set.
    pub nested_flag: bool,
    /// The payload.
    pub data: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The payload as `u8`, if it has that size.
    pub fn u8(&self) -> Option<u8> {
        self.data.first().copied()
    }
    /// The payload as native `u16`, if it has that size.
    pub fn u16(&self) -> Option<u16> {
        Some(u16::from_ne_bytes(self.data.get(..2)?.try_into().ok()?))
    }
    /// The payload as native `u32`, if it has that size.
    pub fn u32(&self) -> Option<u32> {
        Some(u32::from_ne_bytes(self.data.get(..4)?.try_into().ok()?))
    }
    /// The payload as native `i32`, if it has that size.
    pub fn i32(&self) -> Option<i32> {
        Some(i32::from_ne_bytes(self.data.get(..4)?.try_into().ok()?))
    }
    /// The payload as native `u64`, if it has that size.
    pub fn u64(&self) -> Option<u64> {
        Some(u64::from_ne_bytes(self.data.get(..8)?.try_into().ok()?))
    }
    /// The payload as big-endian `u16`, if it has that size.
    pub fn be16(&self) -> Option<u16> {
        Some(u16::from_be_bytes(self.data.get(..2)?.try_into().ok()?))
    }
    /// The payload as big-endian `u32`, if it has that size.
    pub fn be32(&self) -> Option<u32> {
        Some(u32::from_be_bytes(self.data.get(..4)?.try_into().ok()?))
    }
    /// The payload as big-endian `u64`, if it has that size.
    pub fn be64(&self) -> Option<u64> {
        Some(u64::from_be_bytes(self.data.get(..8)?.try_into().ok()?))
    }
    /// A string attribute, trailing NULs removed; lossy on invalid UTF-8.
    pub fn string(&self) -> String {
        let end = self
            .data
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.data.len());
        String::from_utf8_lossy(&self.data[..end]).into_owned()
    }
    /// A 4- or 16-byte address in network order.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.data.len() {
            4 => {
                let o: [u8; 4] = self.data.try_into().ok()?;
                Some(IpAddr::V4(Ipv4Addr::from(o)))
            }
            16 => {
                let o: [u8; 16] = self.data.try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(o)))
            }
            _ => None,
        }
    }
    /// The attributes nested inside this one.
    pub fn nested(&self) -> Attrs<'a> {
        Attrs::new(self.data)
    }
}

/// Iterates over a run of attributes. Stops at the first malformed one.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    /// Iterates over the attributes in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Attrs { rest: buf }
    }

    /// Attributes following a fixed header of `hdr_len` bytes.
    pub fn after_header(payload: &'a [u8], hdr_len: usize) -> Self {
        Attrs::new(payload.get(align(hdr_len)..).unwrap_or(&[]))
    }

    /// First attribute of type `ty`.
    pub fn get(&self, ty: u16) -> Option<Attr<'a>> {
        self.clone().find(|a| a.ty == ty)
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Attr<'a>;
    fn next(&mut self) -> Option<Attr<'a>> {
        let r = self.rest;
        if r.len() < NLA_HDRLEN {
            return None;
        }
        let len = u16::from_ne_bytes([r[0], r[1]]) as usize;
        let ty = u16::from_ne_bytes([r[2], r[3]]);
        if len < NLA_HDRLEN || len > r.len() {
            self.rest = &[];
            return None;
        }
        self.rest = &r[align(len).min(r.len())..];
        Some(Attr {
            ty: ty & NLA_TYPE_MASK,
            nested_flag: ty & NLA_F_NESTED != 0,
            data: &r[NLA_HDRLEN..len],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_aligned_attrs_and_nests() {
        let mut m = MessageBuilder::new(16, NLM_F_ACK);
        m.bytes(&[1, 2, 3]) // padded to 4
            .attr_str(3, "eth0") // 4 + 5 -> 12 aligned
            .nested(18, |m| {
                m.attr_u32(1, 7);
            });
        let bytes = m.finish(42, 0);
        assert_eq!(bytes.len() % 4, 0);
        let msg = MsgIter::new(&bytes).next().expect("one message");
        assert_eq!(msg.ty, 16);
        assert_eq!(msg.seq, 42);
        assert_eq!(msg.flags, NLM_F_ACK);
        let attrs: Vec<_> = Attrs::after_header(msg.payload, 3).collect();
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0].string(), "eth0");
        assert!(attrs[1].nested_flag);
        assert_eq!(attrs[1].ty, 18);
        let inner = attrs[1].nested().get(1).expect("inner");
        assert_eq!(inner.u32(), Some(7));
    }

    #[test]
    fn parser_survives_garbage() {
        let junk = [0xffu8, 0xff, 0, 0, 1, 2, 3];
        assert_eq!(Attrs::new(&junk).count(), 0);
        assert_eq!(MsgIter::new(&junk).count(), 0);
        let short = [8u8, 0, 1, 0, 1, 2]; // claims 8 bytes, has 6
        assert_eq!(Attrs::new(&short).count(), 0);
        let a = Attr {
            ty: 1,
            nested_flag: false,
            data: &[1],
        };
        assert_eq!(a.u32(), None);
        assert_eq!(a.ip(), None);
    }
}
