//! DHCPv4 messages (RFC 2131/2132): encoding what the client sends and
//! decoding what servers answer, plus the IPv4/UDP framing a packet socket
//! needs before the interface has an address.

use std::net::Ipv4Addr;

/// Option 0: padding, no length byte.
pub const OPT_PAD: u8 = 0;
/// Option 1: the subnet mask of the offered address.
pub const OPT_SUBNET_MASK: u8 = 1;
/// Option 3: default routers, in order of preference.
pub const OPT_ROUTER: u8 = 3;
/// Option 12: the client's host name.
pub const OPT_HOST_NAME: u8 = 12;
/// Option 33: classful (destination, router) pairs.
pub const OPT_STATIC_ROUTES: u8 = 33;
/// Option 50: the address the client asks for.
pub const OPT_REQUESTED_IP: u8 = 50;
/// Option 51: lease duration in seconds.
pub const OPT_LEASE_TIME: u8 = 51;
/// Option 53: the DHCP message type.
pub const OPT_MESSAGE_TYPE: u8 = 53;
/// Option 54: the address identifying the server.
pub const OPT_SERVER_ID: u8 = 54;
/// Option 55: the option codes the client wants answered.
pub const OPT_PARAM_REQUEST_LIST: u8 = 55;
/// Option 58: T1, seconds until the client renews.
pub const OPT_RENEWAL_TIME: u8 = 58;
/// Option 59: T2, seconds until the client rebinds.
pub const OPT_REBINDING_TIME: u8 = 59;
/// Option 60: the vendor class identifier.
pub const OPT_VENDOR_CLASS: u8 = 60;
/// Option 61: the client identifier servers key leases by.
pub const OPT_CLIENT_ID: u8 = 61;
/// Option 77: the user class (RFC 3004).
pub const OPT_USER_CLASS: u8 = 77;
/// Option 121: classless static routes (RFC 3442).
pub const OPT_CLASSLESS_ROUTES: u8 = 121;
/// Option 255: ends the options, no length byte.
pub const OPT_END: u8 = 255;

/// The UDP port DHCP clients listen on.
pub const CLIENT_PORT: u16 = 68;
/// The UDP port DHCP servers listen on.
pub const SERVER_PORT: u16 = 67;

const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Fixed BOOTP header before the magic cookie.
const HEADER_LEN: usize = 236;
/// Some servers ignore BOOTP messages shorter than this (RFC 951).
const MIN_LEN: usize = 300;

/// The value of option 53.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// Client: looking for servers.
    Discover = 1,
    /// Server: an address on offer.
    Offer = 2,
    /// Client: takes an offer, renews or rebinds.
    Request = 3,
    /// Client: the offered address is already in use.
    Decline = 4,
    /// Server: the lease is granted.
    Ack = 5,
    /// Server: the request is refused.
    Nak = 6,
    /// Client: gives the lease back.
    Release = 7,
    /// Client: asks for configuration only, it has an address.
    Inform = 8,
}

impl MessageType {
    fn from_u8(v: u8) -> Option<MessageType> {
        Some(match v {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            _ => return None,
        })
    }
}

/// A DHCP message; options keep their order (a server may care).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// 1 = BOOTREQUEST, 2 = BOOTREPLY.
    pub op: u8,
    /// Transaction id: matches answers to the exchange that asked.
    pub xid: u32,
    /// Only [`FLAG_BROADCAST`] is defined.
    pub flags: u16,
    /// The client's current address (renewing, rebinding), else 0.0.0.0.
    pub ciaddr: Ipv4Addr,
    /// The address the server offers or grants ("your" address).
    pub yiaddr: Ipv4Addr,
    /// The next server for bootstrapping, as the server fills it in.
    pub siaddr: Ipv4Addr,
    /// The relay agent's address, 0.0.0.0 without a relay.
    pub giaddr: Ipv4Addr,
    /// The client's Ethernet address.
    pub chaddr: [u8; 6],
    /// (code, value) pairs, repeated codes already concatenated.
    pub options: Vec<(u8, Vec<u8>)>,
}

/// The broadcast bit of `flags`: asks the server to broadcast its answers.
pub const FLAG_BROADCAST: u16 = 0x8000;

impl Message {
    /// An empty BOOTREQUEST of transaction `xid` from `chaddr`, no options.
    pub fn request(xid: u32, chaddr: [u8; 6]) -> Message {
        Message {
            op: 1,
            xid,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            options: Vec::new(),
        }
    }

    /// Sets an option, replacing an earlier value of the same code.
    pub fn set(&mut self, code: u8, value: Vec<u8>) {
        if let Some(o) = self.options.iter_mut().find(|(c, _)| *c == code) {
            o.1 = value;
        } else {
            self.options.push((code, value));
        }
    }

    /// The value of option `code`, if present.
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    /// The message type (option 53), if present and known.
    pub fn message_type(&self) -> Option<MessageType> {
        self.get(OPT_MESSAGE_TYPE)
            .and_then(|v| v.first())
            .and_then(|b| MessageType::from_u8(*b))
    }

    /// Option `code` read as one IPv4 address (its first four bytes).
    pub fn addr_option(&self, code: u8) -> Option<Ipv4Addr> {
        self.get(code).and_then(|v| {
            let b: [u8; 4] = v.get(..4)?.try_into().ok()?;
            Some(Ipv4Addr::from(b))
        })
    }

    /// Option `code` read as a big-endian u32 (its first four bytes).
    pub fn u32_option(&self, code: u8) -> Option<u32> {
        self.get(code).and_then(|v| {
            let b: [u8; 4] = v.get(..4)?.try_into().ok()?;
            Some(u32::from_be_bytes(b))
        })
    }

    /// The message on the wire, padded to the BOOTP minimum of 300 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MIN_LEN + 64);
        b.extend_from_slice(&[self.op, 1, 6, 0]);
        b.extend_from_slice(&self.xid.to_be_bytes());
        b.extend_from_slice(&[0, 0]); // secs
        b.extend_from_slice(&self.flags.to_be_bytes());
        for a in [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr] {
            b.extend_from_slice(&a.octets());
        }
        let mut ch = [0u8; 16];
        ch[..6].copy_from_slice(&self.chaddr);
        b.extend_from_slice(&ch);
        b.resize(HEADER_LEN, 0); // sname, file
        b.extend_from_slice(&MAGIC);
        for (code, value) in &self.options {
            // Values over 255 bytes are split into several instances of the
            // same option (RFC 3396); an empty value still goes out once.
            let mut chunks: Vec<&[u8]> = value.chunks(255).collect();
            if chunks.is_empty() {
                chunks.push(&[]);
            }
            for c in chunks {
                b.push(*code);
                b.push(c.len() as u8);
                b.extend_from_slice(c);
            }
        }
        b.push(OPT_END);
        if b.len() < MIN_LEN {
            b.resize(MIN_LEN, OPT_PAD);
        }
        b
    }

    /// Parses a message; `None` unless it is Ethernet BOOTP with the DHCP
    /// magic cookie and well-formed options.
    pub fn decode(b: &[u8]) -> Option<Message> {
        if b.len() < HEADER_LEN + 4
            || b[1] != 1
            || b[2] != 6
            || b[HEADER_LEN..HEADER_LEN + 4] != MAGIC
        {
            return None;
        }
        let addr = |o: usize| Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]);
        let mut chaddr = [0u8; 6];
        chaddr.copy_from_slice(&b[28..34]);
        let mut m = Message {
            op: b[0],
            xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            flags: u16::from_be_bytes([b[10], b[11]]),
            ciaddr: addr(12),
            yiaddr: addr(16),
            siaddr: addr(20),
            giaddr: addr(24),
            chaddr,
            options: Vec::new(),
        };
        let mut rest = &b[HEADER_LEN + 4..];
        while let Some((&code, tail)) = rest.split_first() {
            match code {
                OPT_PAD => rest = tail,
                OPT_END => break,
                _ => {
                    let (&len, tail) = tail.split_first()?;
                    let value = tail.get(..len as usize)?;
                    // Repeated options concatenate (RFC 3396).
                    if let Some(o) = m.options.iter_mut().find(|(c, _)| *c == code) {
                        o.1.extend_from_slice(value);
                    } else {
                        m.options.push((code, value.to_vec()));
                    }
                    rest = &tail[len as usize..];
                }
            }
        }
        Some(m)
    }
}

fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for c in chunks {
        let mut it = c.chunks_exact(2);
        for w in &mut it {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = it.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Wraps a DHCP payload in IPv4 + UDP headers (client port to server port).
pub fn ip_udp_frame(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[8] = 64; // ttl
    ip[9] = 17; // udp
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());

    let mut udp = [0u8; 8];
    udp[0..2].copy_from_slice(&CLIENT_PORT.to_be_bytes());
    udp[2..4].copy_from_slice(&SERVER_PORT.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = 17;
    pseudo[10..12].copy_from_slice(&(udp_len as u16).to_be_bytes());
    let mut uc = checksum(&[&pseudo, &udp, payload]);
    if uc == 0 {
        uc = 0xffff;
    }
    udp[6..8].copy_from_slice(&uc.to_be_bytes());

    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&ip);
    out.extend_from_slice(&udp);
    out.extend_from_slice(payload);
    out
}

/// The UDP payload of an IPv4 packet addressed to the DHCP client port.
pub fn client_payload(pkt: &[u8]) -> Option<&[u8]> {
    let ihl = usize::from(pkt.first()? & 0x0f) * 4;
    if pkt.first()? >> 4 != 4 || ihl < 20 || *pkt.get(9)? != 17 {
        return None;
    }
    // Fragments are not reassembled; DHCP answers fit one packet.
    let frag = u16::from_be_bytes([*pkt.get(6)?, *pkt.get(7)?]);
    if frag & 0x3fff != 0 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]])).min(pkt.len());
    let udp = pkt.get(ihl..total)?;
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let ulen = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    if dport != CLIENT_PORT || ulen < 8 {
        return None;
    }
    udp.get(8..ulen.min(udp.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let mut m = Message::request(0x1234_5678, [2, 0, 0, 0, 0, 1]);
        m.set(OPT_MESSAGE_TYPE, vec![MessageType::Discover as u8]);
        m.set(OPT_CLIENT_ID, b"\0abc".to_vec());
        m.set(OPT_PARAM_REQUEST_LIST, vec![1, 3]);
        let b = m.encode();
        assert!(b.len() >= MIN_LEN);
        let d = Message::decode(&b).expect("decodes");
        assert_eq!(d, m);
        assert_eq!(d.message_type(), Some(MessageType::Discover));
    }

    #[test]
    fn long_options_split_and_rejoin() {
        let mut m = Message::request(1, [0; 6]);
        m.set(OPT_HOST_NAME, vec![b'x'; 300]);
        let d = Message::decode(&m.encode()).expect("decodes");
        assert_eq!(d.get(OPT_HOST_NAME).map(<[u8]>::len), Some(300));
    }

    #[test]
    fn truncated_options_are_rejected() {
        let mut b = Message::request(1, [0; 6]).encode();
        b.truncate(HEADER_LEN + 4);
        b.extend_from_slice(&[OPT_ROUTER, 4, 10, 0]);
        assert!(Message::decode(&b).is_none());
    }

    #[test]
    fn frame_checksums_verify_and_payload_comes_back() {
        let payload = b"hello dhcp".to_vec();
        let f = ip_udp_frame(Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::BROADCAST, &payload);
        assert_eq!(checksum(&[&f[..20]]), 0);
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&f[12..16]);
        pseudo[4..8].copy_from_slice(&f[16..20]);
        pseudo[9] = 17;
        pseudo[10..12].copy_from_slice(&f[24..26]);
        assert_eq!(checksum(&[&pseudo, &f[20..]]), 0);
        // Addressed to the server port, so not a client payload.
        assert!(client_payload(&f).is_none());
        let mut back = f.clone();
        back[22..24].copy_from_slice(&CLIENT_PORT.to_be_bytes());
        assert_eq!(client_payload(&back), Some(&payload[..]));
    }
}
