//! nf_tables expressions and their netlink encoding.
//!
//! Registers use the 32-bit numbering (`NFT_REG32_00` = 8 …): a value of
//! `n` bytes occupies `ceil(n/4)` consecutive registers, which is what
//! concatenations (set keys like `ipv4_addr . inet_proto . inet_service`)
//! need.

use netlink::msg::MessageBuilder;

use crate::sys::*;

/// Appends attribute `ty` holding the plain value `value` (a nested
/// NFTA_DATA_VALUE, as `struct nft_data` is sent for keys, compared data,
/// masks and immediates).
pub(crate) fn data_value(m: &mut MessageBuilder, ty: u16, value: &[u8]) {
    m.nested(ty, |m| {
        m.attr(NFTA_DATA_VALUE, value);
    });
}

/// Appends a `(key, register)` pair, as `meta` and `ct` expressions carry.
fn key_and_reg(m: &mut MessageBuilder, key: (u16, u32), reg: (u16, Reg)) {
    m.attr_be32(key.0, key.1).attr_be32(reg.0, reg.1.raw());
}

/// A 32-bit data register, `Reg(0)` = `NFT_REG32_00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub u8);

impl Reg {
    /// The kernel register number.
    pub fn raw(self) -> u32 {
        NFT_REG32_00 + self.0 as u32
    }
    /// The register `n` 32-bit slots further.
    pub fn offset(self, n: u8) -> Reg {
        Reg(self.0 + n)
    }
}

/// `meta` keys (`enum nft_meta_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// Packet mark.
    Mark = 3,
    /// Input interface index.
    Iif = 4,
    /// Output interface index.
    Oif = 5,
    /// Input interface name.
    IifName = 6,
    /// Output interface name.
    OifName = 7,
    /// Netfilter protocol family (`meta nfproto`).
    NfProto = 15,
    /// Layer 4 protocol number (`meta l4proto`).
    L4Proto = 16,
}

/// `ct` keys (`enum nft_ct_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtKey {
    /// `ct state` (new, established, ...).
    State = 0,
    /// `ct status` (the conntrack status bits).
    Status = 2,
    /// Conntrack mark.
    Mark = 3,
}

/// `ct state` bits (host byte order, 4 bytes).
pub mod ct_state {
    /// The packet matches no known connection.
    pub const INVALID: u32 = 1;
    /// Part of a connection seen in both directions.
    pub const ESTABLISHED: u32 = 1 << 1;
    /// Related to a known connection (e.g. ICMP errors, FTP data).
    pub const RELATED: u32 = 1 << 2;
    /// Starts a new connection.
    pub const NEW: u32 = 1 << 3;
    /// Not tracked (`notrack`).
    pub const UNTRACKED: u32 = 1 << 6;
}

/// `ct status` bits (`enum ip_conntrack_status`, host byte order).
pub mod ct_status {
    /// A reply has been seen.
    pub const SEEN_REPLY: u32 = 1 << 1;
    /// The connection will not be dropped early.
    pub const ASSURED: u32 = 1 << 2;
    /// Source NAT applies.
    pub const SNAT: u32 = 1 << 4;
    /// Destination NAT applies.
    pub const DNAT: u32 = 1 << 5;
}

/// Where a payload offset counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadBase {
    /// From the link-layer header.
    LinkLayer = 0,
    /// From the network (IP) header.
    Network = 1,
    /// From the transport header.
    Transport = 2,
}

/// How `Cmp` compares a register with data (`enum nft_cmp_ops`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// Equal.
    Eq = 0,
    /// Not equal.
    Neq = 1,
    /// Less than.
    Lt = 2,
    /// Less than or equal.
    Lte = 3,
    /// Greater than.
    Gt = 4,
    /// Greater than or equal.
    Gte = 5,
}

/// A rule's final decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accept the packet.
    Accept,
    /// Drop the packet.
    Drop,
    /// Return to the calling chain.
    Return,
    /// Continue in the named chain, then come back.
    Jump(String),
    /// Continue in the named chain without coming back.
    Goto(String),
}

/// Which address NAT rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// Source NAT.
    Snat,
    /// Destination NAT.
    Dnat,
}

/// The address family of NAT addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl NatFamily {
    fn raw(self) -> u32 {
        match self {
            NatFamily::V4 => NFPROTO_IPV4 as u32,
            NatFamily::V6 => NFPROTO_IPV6 as u32,
        }
    }
}

/// One nf_tables expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Loads a `meta` value into `dreg`.
    Meta {
        /// The key.
        key: MetaKey,
        /// Destination register.
        dreg: Reg,
    },
    /// Stores `sreg` into a `meta` key (e.g. `meta mark set`).
    MetaSet {
        /// The key.
        key: MetaKey,
        /// Source register.
        sreg: Reg,
    },
    /// Loads `len` bytes at `offset` from a header into `dreg`.
    Payload {
        /// The header the offset counts from.
        base: PayloadBase,
        /// Byte offset within that header.
        offset: u32,
        /// Number of bytes.
        len: u32,
        /// Destination register.
        dreg: Reg,
    },
    /// Compares `sreg` with `data`; the rule stops (break) when false.
    Cmp {
        /// Register compared.
        sreg: Reg,
        /// Comparison.
        op: CmpOp,
        /// Bytes compared with.
        data: Vec<u8>,
    },
    /// `dreg = (sreg & mask) ^ xor`, `mask` and `xor` of equal length.
    Bitwise {
        /// Source register.
        sreg: Reg,
        /// Destination register.
        dreg: Reg,
        /// AND mask.
        mask: Vec<u8>,
        /// XOR value applied after the mask.
        xor: Vec<u8>,
    },
    /// Loads a constant into `dreg`.
    Immediate {
        /// Destination register.
        dreg: Reg,
        /// The constant's bytes.
        data: Vec<u8>,
    },
    /// Sets the verdict.
    Verdict(Verdict),
    /// Looks `sreg` up in a named set; with `dreg` (maps) loads the value.
    Lookup {
        /// The set's name in the rule's table.
        set: String,
        /// Register holding the key.
        sreg: Reg,
        /// Register receiving the mapped value (maps only).
        dreg: Option<Reg>,
        /// Match when the key is absent.
        invert: bool,
    },
    /// Loads a conntrack value into `dreg`.
    Ct {
        /// The key.
        key: CtKey,
        /// Destination register.
        dreg: Reg,
    },
    /// SNAT/DNAT to the address (and port) in registers.
    Nat {
        /// Source or destination NAT.
        kind: NatKind,
        /// Address family of the NAT addresses.
        family: NatFamily,
        /// Register holding the new address.
        addr: Option<Reg>,
        /// Register holding the new port.
        proto: Option<Reg>,
    },
    /// Masquerade to the outgoing interface's address.
    Masq,
    /// Packet and byte counter.
    Counter,
    /// `fib daddr type` (`dst: true`) / `fib saddr type` into `dreg`.
    FibAddrType {
        /// Look up the destination (else the source) address.
        dst: bool,
        /// Destination register.
        dreg: Reg,
    },
}

impl Expr {
    /// The kernel expression name.
    pub fn name(&self) -> &'static str {
        match self {
            Expr::Meta { .. } | Expr::MetaSet { .. } => "meta",
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Immediate { .. } | Expr::Verdict(_) => "immediate",
            Expr::Lookup { .. } => "lookup",
            Expr::Ct { .. } => "ct",
            Expr::Nat { .. } => "nat",
            Expr::Masq => "masq",
            Expr::Counter => "counter",
            Expr::FibAddrType { .. } => "fib",
        }
    }

    /// Appends this expression as one NFTA_LIST_ELEM.
    pub(crate) fn encode(&self, m: &mut MessageBuilder) {
        m.nested(NFTA_LIST_ELEM, |m| {
            m.attr_str(NFTA_EXPR_NAME, self.name());
            m.nested(NFTA_EXPR_DATA, |m| self.encode_data(m));
        });
    }

    fn encode_data(&self, m: &mut MessageBuilder) {
        match self {
            Expr::Meta { key, dreg } => {
                key_and_reg(m, (NFTA_META_KEY, *key as u32), (NFTA_META_DREG, *dreg));
            }
            Expr::MetaSet { key, sreg } => {
                key_and_reg(m, (NFTA_META_KEY, *key as u32), (NFTA_META_SREG, *sreg));
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                m.attr_be32(NFTA_PAYLOAD_DREG, dreg.raw())
                    .attr_be32(NFTA_PAYLOAD_BASE, *base as u32)
                    .attr_be32(NFTA_PAYLOAD_OFFSET, *offset)
                    .attr_be32(NFTA_PAYLOAD_LEN, *len);
            }
            Expr::Cmp { sreg, op, data } => {
                m.attr_be32(NFTA_CMP_SREG, sreg.raw())
                    .attr_be32(NFTA_CMP_OP, *op as u32);
                data_value(m, NFTA_CMP_DATA, data);
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                m.attr_be32(NFTA_BITWISE_SREG, sreg.raw())
                    .attr_be32(NFTA_BITWISE_DREG, dreg.raw())
                    .attr_be32(NFTA_BITWISE_LEN, mask.len() as u32);
                data_value(m, NFTA_BITWISE_MASK, mask);
                data_value(m, NFTA_BITWISE_XOR, xor);
            }
            Expr::Immediate { dreg, data } => {
                m.attr_be32(NFTA_IMMEDIATE_DREG, dreg.raw());
                data_value(m, NFTA_IMMEDIATE_DATA, data);
            }
            Expr::Verdict(v) => {
                m.attr_be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
                m.nested(NFTA_IMMEDIATE_DATA, |m| {
                    m.nested(NFTA_DATA_VERDICT, |m| {
                        let (code, chain) = match v {
                            Verdict::Accept => (NF_ACCEPT, None),
                            Verdict::Drop => (NF_DROP, None),
                            Verdict::Return => (NFT_RETURN, None),
                            Verdict::Jump(c) => (NFT_JUMP, Some(c)),
                            Verdict::Goto(c) => (NFT_GOTO, Some(c)),
                        };
                        m.attr_be32(NFTA_VERDICT_CODE, code as u32);
                        if let Some(c) = chain {
                            m.attr_str(NFTA_VERDICT_CHAIN, c);
                        }
                    });
                });
            }
            Expr::Lookup {
                set,
                sreg,
                dreg,
                invert,
            } => {
                m.attr_str(NFTA_LOOKUP_SET, set)
                    .attr_be32(NFTA_LOOKUP_SREG, sreg.raw());
                if let Some(d) = dreg {
                    m.attr_be32(NFTA_LOOKUP_DREG, d.raw());
                }
                if *invert {
                    m.attr_be32(NFTA_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
                }
            }
            Expr::Ct { key, dreg } => {
                key_and_reg(m, (NFTA_CT_KEY, *key as u32), (NFTA_CT_DREG, *dreg));
            }
            Expr::Nat {
                kind,
                family,
                addr,
                proto,
            } => {
                let ty = match kind {
                    NatKind::Snat => NFT_NAT_SNAT,
                    NatKind::Dnat => NFT_NAT_DNAT,
                };
                m.attr_be32(NFTA_NAT_TYPE, ty)
                    .attr_be32(NFTA_NAT_FAMILY, family.raw());
                let mut flags = 0;
                if let Some(a) = addr {
                    m.attr_be32(NFTA_NAT_REG_ADDR_MIN, a.raw());
                    flags |= NF_NAT_RANGE_MAP_IPS;
                }
                if let Some(p) = proto {
                    m.attr_be32(NFTA_NAT_REG_PROTO_MIN, p.raw());
                    flags |= NF_NAT_RANGE_PROTO_SPECIFIED;
                }
                if flags != 0 {
                    m.attr_be32(NFTA_NAT_FLAGS, flags);
                }
            }
            Expr::Masq | Expr::Counter => {}
            Expr::FibAddrType { dst, dreg } => {
                let flag = if *dst {
                    NFTA_FIB_F_DADDR
                } else {
                    NFTA_FIB_F_SADDR
                };
                m.attr_be32(NFTA_FIB_DREG, dreg.raw())
                    .attr_be32(NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE)
                    .attr_be32(NFTA_FIB_FLAGS, flag);
            }
        }
    }
}
