//! A rule builder with nft-like matchers, and rule user data (comments).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::expr::*;
use crate::sys::*;

/// An IP protocol number for `meta l4proto`.
pub const IPPROTO_TCP: u8 = 6;
/// UDP's protocol number.
pub const IPPROTO_UDP: u8 = 17;
/// SCTP's protocol number.
pub const IPPROTO_SCTP: u8 = 132;

/// IP version selector for matchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpVersion {
    /// The version of an address.
    pub fn of(ip: IpAddr) -> IpVersion {
        match ip {
            IpAddr::V4(_) => IpVersion::V4,
            IpAddr::V6(_) => IpVersion::V6,
        }
    }
    pub(crate) fn nfproto(self) -> u8 {
        match self {
            IpVersion::V4 => NFPROTO_IPV4,
            IpVersion::V6 => NFPROTO_IPV6,
        }
    }
    /// Offset of the source address in the network header and its length.
    pub(crate) fn saddr(self) -> (u32, u32) {
        match self {
            IpVersion::V4 => (12, 4),
            IpVersion::V6 => (8, 16),
        }
    }
    pub(crate) fn daddr(self) -> (u32, u32) {
        match self {
            IpVersion::V4 => (16, 4),
            IpVersion::V6 => (24, 16),
        }
    }
    /// The NAT family of this version.
    pub fn nat_family(self) -> NatFamily {
        match self {
            IpVersion::V4 => NatFamily::V4,
            IpVersion::V6 => NatFamily::V6,
        }
    }
}

/// The bytes of an address in network order.
pub fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A rule: expressions evaluated in order, plus an optional comment that
/// `nft list ruleset` shows and [`crate::RuleInfo::comment`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// Expressions, in evaluation order.
    pub exprs: Vec<Expr>,
    /// Comment shown by `nft list`.
    pub comment: Option<String>,
    /// The family already checked with `meta nfproto` (avoids repeats).
    checked: Option<IpVersion>,
}

const R0: Reg = Reg(0);

impl Rule {
    /// An empty rule.
    pub fn new() -> Rule {
        Rule::default()
    }

    /// Appends a raw expression.
    pub fn expr(mut self, e: Expr) -> Rule {
        self.exprs.push(e);
        self
    }

    /// With a comment.
    pub fn comment(mut self, c: impl Into<String>) -> Rule {
        self.comment = Some(c.into());
        self
    }

    fn cmp(self, op: CmpOp, data: Vec<u8>) -> Rule {
        self.expr(Expr::Cmp { sreg: R0, op, data })
    }

    /// `meta nfproto ipv4|ipv6` (once per rule).
    pub fn nfproto(mut self, v: IpVersion) -> Rule {
        if self.checked == Some(v) {
            return self;
        }
        self.checked = Some(v);
        self.expr(Expr::Meta {
            key: MetaKey::NfProto,
            dreg: R0,
        })
        .cmp(CmpOp::Eq, vec![v.nfproto()])
    }

    /// `meta l4proto N`.
    pub fn l4proto(self, proto: u8) -> Rule {
        self.expr(Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: R0,
        })
        .cmp(CmpOp::Eq, vec![proto])
    }

    fn addr_match(self, net: IpNet, dst: bool, negate: bool) -> Rule {
        let v = IpVersion::of(net.addr());
        let (offset, len) = if dst { v.daddr() } else { v.saddr() };
        let r = self.nfproto(v).expr(Expr::Payload {
            base: PayloadBase::Network,
            offset,
            len,
            dreg: R0,
        });
        let op = if negate { CmpOp::Neq } else { CmpOp::Eq };
        if net.prefix_len() == net.max_prefix_len() {
            return r.cmp(op, ip_bytes(net.addr()));
        }
        r.expr(Expr::Bitwise {
            sreg: R0,
            dreg: R0,
            mask: ip_bytes(net.netmask()),
            xor: vec![0; len as usize],
        })
        .cmp(op, ip_bytes(net.network()))
    }

    /// `ether saddr != MAC` (bridge family: the frame's source address).
    pub fn ether_saddr_not(self, mac: [u8; 6]) -> Rule {
        self.expr(Expr::Payload {
            base: PayloadBase::LinkLayer,
            offset: 6,
            len: 6,
            dreg: R0,
        })
        .cmp(CmpOp::Neq, mac.to_vec())
    }

    /// `ip saddr NET` / `ip6 saddr NET` (with the family check).
    pub fn saddr(self, net: IpNet) -> Rule {
        self.addr_match(net, false, false)
    }
    /// `ip saddr != NET`.
    pub fn saddr_not(self, net: IpNet) -> Rule {
        self.addr_match(net, false, true)
    }
    /// `ip daddr NET`.
    pub fn daddr(self, net: IpNet) -> Rule {
        self.addr_match(net, true, false)
    }
    /// `ip daddr != NET`.
    pub fn daddr_not(self, net: IpNet) -> Rule {
        self.addr_match(net, true, true)
    }

    fn port(self, offset: u32, port: u16) -> Rule {
        self.expr(Expr::Payload {
            base: PayloadBase::Transport,
            offset,
            len: 2,
            dreg: R0,
        })
        .cmp(CmpOp::Eq, port.to_be_bytes().to_vec())
    }
    /// `th dport N` (put an [`Rule::l4proto`] before it).
    pub fn dport(self, port: u16) -> Rule {
        self.port(2, port)
    }
    /// `th sport N`.
    pub fn sport(self, port: u16) -> Rule {
        self.port(0, port)
    }

    fn ifname(self, key: MetaKey, name: &str) -> Rule {
        let mut data = vec![0u8; 16];
        let n = name.len().min(15);
        data[..n].copy_from_slice(&name.as_bytes()[..n]);
        self.expr(Expr::Meta { key, dreg: R0 }).cmp(CmpOp::Eq, data)
    }
    /// `iifname "NAME"`.
    pub fn iifname(self, name: &str) -> Rule {
        self.ifname(MetaKey::IifName, name)
    }
    /// `oifname "NAME"`.
    pub fn oifname(self, name: &str) -> Rule {
        self.ifname(MetaKey::OifName, name)
    }

    /// The packet mark loaded into R0 as `(mark & MASK) ^ XOR`.
    fn mark_bitwise(self, mask: u32, xor: u32) -> Rule {
        self.expr(Expr::Meta {
            key: MetaKey::Mark,
            dreg: R0,
        })
        .expr(Expr::Bitwise {
            sreg: R0,
            dreg: R0,
            mask: mask.to_ne_bytes().to_vec(),
            xor: xor.to_ne_bytes().to_vec(),
        })
    }

    /// `meta mark & MASK == VALUE`.
    pub fn mark(self, mask: u32, value: u32) -> Rule {
        self.mark_bitwise(mask, 0)
            .cmp(CmpOp::Eq, value.to_ne_bytes().to_vec())
    }

    /// `meta mark set mark | BITS`.
    pub fn set_mark_bits(self, bits: u32) -> Rule {
        self.mark_bitwise(!bits, bits).expr(Expr::MetaSet {
            key: MetaKey::Mark,
            sreg: R0,
        })
    }

    fn ct_bits(self, key: CtKey, bits: u32) -> Rule {
        self.expr(Expr::Ct { key, dreg: R0 })
            .expr(Expr::Bitwise {
                sreg: R0,
                dreg: R0,
                mask: bits.to_ne_bytes().to_vec(),
                xor: vec![0; 4],
            })
            .cmp(CmpOp::Neq, vec![0; 4])
    }
    /// `ct state { BITS }` (any of [`ct_state`] bits).
    pub fn ct_state(self, bits: u32) -> Rule {
        self.ct_bits(CtKey::State, bits)
    }
    /// `ct status BITS` (any of [`ct_status`] bits).
    pub fn ct_status(self, bits: u32) -> Rule {
        self.ct_bits(CtKey::Status, bits)
    }

    /// `fib daddr type local`.
    pub fn daddr_local(self) -> Rule {
        self.expr(Expr::FibAddrType {
            dst: true,
            dreg: R0,
        })
        .cmp(CmpOp::Eq, RTN_LOCAL.to_ne_bytes().to_vec())
    }

    /// Counts packets and bytes.
    pub fn counter(self) -> Rule {
        self.expr(Expr::Counter)
    }
    /// Ends with verdict `v`.
    pub fn verdict(self, v: Verdict) -> Rule {
        self.expr(Expr::Verdict(v))
    }
    /// Ends with `accept`.
    pub fn accept(self) -> Rule {
        self.verdict(Verdict::Accept)
    }
    /// Ends with `drop`.
    pub fn drop(self) -> Rule {
        self.verdict(Verdict::Drop)
    }
    /// Ends with `return`.
    pub fn ret(self) -> Rule {
        self.verdict(Verdict::Return)
    }
    /// Ends with `jump CHAIN`.
    pub fn jump(self, chain: &str) -> Rule {
        self.verdict(Verdict::Jump(chain.to_string()))
    }
    /// Ends with `goto CHAIN`.
    pub fn goto(self, chain: &str) -> Rule {
        self.verdict(Verdict::Goto(chain.to_string()))
    }
    /// Masquerades to the outgoing interface's address.
    pub fn masquerade(self) -> Rule {
        self.expr(Expr::Masq)
    }

    fn nat_to(self, kind: NatKind, addr: IpAddr, port: Option<u16>) -> Rule {
        let v = IpVersion::of(addr);
        let bytes = ip_bytes(addr);
        let port_reg = Reg((bytes.len() / 4) as u8);
        let mut r = self.nfproto(v).expr(Expr::Immediate {
            dreg: R0,
            data: bytes,
        });
        if let Some(p) = port {
            r = r.expr(Expr::Immediate {
                dreg: port_reg,
                data: p.to_be_bytes().to_vec(),
            });
        }
        r.expr(Expr::Nat {
            kind,
            family: v.nat_family(),
            addr: Some(R0),
            proto: port.map(|_| port_reg),
        })
    }
    /// `dnat ip to ADDR[:PORT]` (adds the family check).
    pub fn dnat(self, addr: IpAddr, port: Option<u16>) -> Rule {
        self.nat_to(NatKind::Dnat, addr, port)
    }
    /// `snat ip to ADDR[:PORT]`.
    pub fn snat(self, addr: IpAddr, port: Option<u16>) -> Rule {
        self.nat_to(NatKind::Snat, addr, port)
    }

    /// Rule user data: the comment TLV libnftnl/nft use.
    pub(crate) fn userdata(&self) -> Option<Vec<u8>> {
        self.comment
            .as_deref()
            .map(|c| udata_comment(NFTNL_UDATA_RULE_COMMENT, c))
    }
}

/// Encodes a comment as one user-data TLV: type, length, NUL-terminated text
/// (at most 254 bytes, longer comments are cut).
pub(crate) fn udata_comment(ty: u8, c: &str) -> Vec<u8> {
    let mut text: Vec<u8> = c.as_bytes().iter().copied().take(253).collect();
    text.push(0);
    let mut v = Vec::with_capacity(text.len() + 2);
    v.push(ty);
    v.push(text.len() as u8);
    v.extend_from_slice(&text);
    v
}

/// Finds the comment TLV in user data.
pub(crate) fn parse_udata_comment(mut data: &[u8], ty: u8) -> Option<String> {
    while data.len() >= 2 {
        let (t, len) = (data[0], data[1] as usize);
        let value = data.get(2..2 + len)?;
        if t == ty {
            let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
            return Some(String::from_utf8_lossy(&value[..end]).into_owned());
        }
        data = &data[2 + len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_tlv_roundtrip() {
        let u = udata_comment(0, "rcni:net:10.0.0.0/24");
        assert_eq!(u[0], 0);
        assert_eq!(u[1] as usize, "rcni:net:10.0.0.0/24".len() + 1);
        let mut with_other = vec![3, 2, 9, 9];
        with_other.extend_from_slice(&u);
        assert_eq!(
            parse_udata_comment(&with_other, 0).as_deref(),
            Some("rcni:net:10.0.0.0/24")
        );
        assert_eq!(parse_udata_comment(&[0, 9, 1], 0), None);
    }

    #[test]
    fn family_checked_once() {
        let net: IpNet = "10.0.0.0/24".parse().expect("net");
        let r = Rule::new().saddr(net).daddr_not(net);
        let metas = r
            .exprs
            .iter()
            .filter(|e| matches!(e, Expr::Meta { .. }))
            .count();
        assert_eq!(metas, 1);
    }
}
