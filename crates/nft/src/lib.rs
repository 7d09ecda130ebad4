//! nftables programming over nf_tables netlink, with no `nft` process and
//! no libnftnl.
//!
//! An [`Nft`] handle is a `NETLINK_NETFILTER` socket opened inside one
//! network namespace. Changes are collected in a [`Batch`] and committed
//! with [`Nft::commit`] as one kernel transaction (NFNL_MSG_BATCH_BEGIN …
//! END): all of it applies or none. [`Nft::commit_at`] additionally makes
//! the transaction fail with ERESTART when the ruleset changed since a
//! generation read with [`Nft::genid`], which turns "check, then add" into
//! a race-free operation between concurrent plugin calls.
//!
//! Reading: [`Nft::tables`], [`Nft::chains`], [`Nft::rules`] (with handle
//! and comment), [`Nft::set_elements`] (with comments).
//!
//! The rule sets of rcni's plugins (portmap, masquerade, MAC spoof check)
//! live apart, in [`rulesets`].

mod batch;
pub mod conntrack;
mod error;
pub mod expr;
#[doc(hidden)]
pub mod fuzzing;
pub mod ident;
mod list;
mod nft;
pub mod rule;
pub mod rulesets;
mod sys;

pub use batch::{Batch, SetName};
pub use error::{Error, Result};
pub use expr::{CmpOp, CtKey, Expr, MetaKey, NatFamily, NatKind, PayloadBase, Reg, Verdict};
pub use list::{ChainInfo, ElemInfo, RuleInfo, TableInfo};
pub use nft::Nft;
pub use rule::{IpVersion, Rule, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};

use std::net::IpAddr;

/// A table family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 and IPv6 together.
    Inet,
    /// IPv4.
    Ip,
    /// IPv6.
    Ip6,
    /// Frames crossing a Linux bridge (used by the bridge plugin's
    /// `macspoofchk`).
    Bridge,
}

impl Family {
    /// The `NFPROTO_*` number.
    pub fn raw(self) -> u8 {
        match self {
            Family::Inet => sys::NFPROTO_INET,
            Family::Ip => sys::NFPROTO_IPV4,
            Family::Ip6 => sys::NFPROTO_IPV6,
            Family::Bridge => sys::NFPROTO_BRIDGE,
        }
    }
    /// The family of an `NFPROTO_*` number.
    pub fn from_raw(v: u8) -> Option<Family> {
        match v {
            sys::NFPROTO_INET => Some(Family::Inet),
            sys::NFPROTO_IPV4 => Some(Family::Ip),
            sys::NFPROTO_IPV6 => Some(Family::Ip6),
            sys::NFPROTO_BRIDGE => Some(Family::Bridge),
            _ => None,
        }
    }
    /// nft's name (`inet`, `ip`, `ip6`, `bridge`).
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Bridge => "bridge",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Netfilter hooks of the ip/ip6/inet families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Before routing.
    Prerouting,
    /// To a local process.
    Input,
    /// Routed through.
    Forward,
    /// From a local process.
    Output,
    /// After routing.
    Postrouting,
}

impl Hook {
    /// The `NF_INET_*` hook number.
    pub fn raw(self) -> u32 {
        match self {
            Hook::Prerouting => sys::NF_INET_PRE_ROUTING,
            Hook::Input => sys::NF_INET_LOCAL_IN,
            Hook::Forward => sys::NF_INET_FORWARD,
            Hook::Output => sys::NF_INET_LOCAL_OUT,
            Hook::Postrouting => sys::NF_INET_POST_ROUTING,
        }
    }
}

/// Standard priorities (nft's names).
pub mod priority {
    /// `raw`: before conntrack.
    pub const RAW: i32 = -300;
    /// `mangle`.
    pub const MANGLE: i32 = -150;
    /// `dstnat`: destination NAT.
    pub const DSTNAT: i32 = -100;
    /// `filter`.
    pub const FILTER: i32 = 0;
    /// `security`.
    pub const SECURITY: i32 = 50;
    /// `srcnat`: source NAT.
    pub const SRCNAT: i32 = 100;
}

/// The type of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainType {
    /// Filtering.
    Filter,
    /// NAT (first packet of a connection only).
    Nat,
    /// Rerouting after a mark or address change.
    Route,
}

impl ChainType {
    /// nft's name (`filter`, `nat`, `route`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
            ChainType::Route => "route",
        }
    }
}

/// What makes a chain a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseChain {
    /// Chain type.
    pub kind: ChainType,
    /// The hook it is attached to.
    pub hook: Hook,
    /// Priority at the hook (lower runs first; see [`priority`]).
    pub priority: i32,
    /// Default verdict: `true` accept (the default), `false` drop.
    pub accept: bool,
}

/// A chain to create: regular (`base: None`) or base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Chain name.
    pub name: String,
    /// Hook, type and priority of a base chain; `None` for a regular chain.
    pub base: Option<BaseChain>,
}

impl Chain {
    /// A regular chain (reached only by jump or goto).
    pub fn regular(name: &str) -> Chain {
        Chain {
            name: name.to_string(),
            base: None,
        }
    }
    /// A base chain with the default accept policy.
    pub fn base(name: &str, kind: ChainType, hook: Hook, priority: i32) -> Chain {
        Chain {
            name: name.to_string(),
            base: Some(BaseChain {
                kind,
                hook,
                priority,
                accept: true,
            }),
        }
    }
}

/// Set key and map value types (nft datatypes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// An IPv4 address.
    Ipv4Addr,
    /// An IPv6 address.
    Ipv6Addr,
    /// A layer 4 protocol number.
    InetProto,
    /// A transport port.
    InetService,
    /// A packet mark.
    Mark,
    /// An interface index (`meta iif` / `meta oif`).
    IfIndex,
}

impl DataType {
    /// nft's userspace type id (stored in the set, used by `nft list`).
    pub fn id(self) -> u32 {
        match self {
            DataType::Ipv4Addr => 7,
            DataType::Ipv6Addr => 8,
            DataType::InetProto => 12,
            DataType::InetService => 13,
            DataType::Mark => 19,
            DataType::IfIndex => 20,
        }
    }
    /// Bytes of one value of this type.
    pub fn byte_len(self) -> usize {
        match self {
            DataType::Ipv4Addr => 4,
            DataType::Ipv6Addr => 16,
            DataType::InetProto => 1,
            DataType::InetService => 2,
            DataType::Mark => 4,
            DataType::IfIndex => 4,
        }
    }
    /// Combined type id of a concatenation (first field in the high bits).
    pub fn concat_id(types: &[DataType]) -> u32 {
        types
            .iter()
            .fold(0u32, |acc, t| (acc << sys::TYPE_BITS) | t.id())
    }
    /// Byte length of a (possibly concatenated) value: fields of a
    /// concatenation are padded to 4 bytes each.
    pub fn concat_len(types: &[DataType]) -> usize {
        if types.len() == 1 {
            types[0].byte_len()
        } else {
            types.iter().map(|t| t.byte_len().div_ceil(4) * 4).sum()
        }
    }
}

/// A named set (or map, when `data` is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    /// Set name.
    pub name: String,
    /// Key type (several fields: a concatenation).
    pub key: Vec<DataType>,
    /// Value type of a map; `None` for a plain set.
    pub data: Option<Vec<DataType>>,
}

impl SetSpec {
    /// A set of keys.
    pub fn set(name: &str, key: &[DataType]) -> SetSpec {
        SetSpec {
            name: name.to_string(),
            key: key.to_vec(),
            data: None,
        }
    }
    /// A map from keys to values.
    pub fn map(name: &str, key: &[DataType], data: &[DataType]) -> SetSpec {
        SetSpec {
            name: name.to_string(),
            key: key.to_vec(),
            data: Some(data.to_vec()),
        }
    }
}

/// One field of a set key or map value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// An address.
    Ip(IpAddr),
    /// A layer 4 protocol number.
    Proto(u8),
    /// A port.
    Port(u16),
    /// A mark.
    Mark(u32),
    /// An interface index.
    IfIndex(u32),
}

impl Value {
    fn bytes(self) -> Vec<u8> {
        match self {
            Value::Ip(ip) => rule::ip_bytes(ip),
            Value::Proto(p) => vec![p],
            Value::Port(p) => p.to_be_bytes().to_vec(),
            Value::Mark(m) => m.to_ne_bytes().to_vec(),
            Value::IfIndex(i) => i.to_ne_bytes().to_vec(),
        }
    }

    /// Encodes a key or value: one field as is, a concatenation with every
    /// field padded to 4 bytes (the register layout the kernel compares).
    pub fn concat(values: &[Value]) -> Vec<u8> {
        if let [one] = values {
            return one.bytes();
        }
        let mut out = Vec::new();
        for v in values {
            let b = v.bytes();
            out.extend_from_slice(&b);
            out.resize(out.len() + (4 - b.len() % 4) % 4, 0);
        }
        out
    }
}

/// A set element to add or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The key's bytes.
    pub key: Vec<u8>,
    /// The mapped value's bytes (maps only).
    pub data: Option<Vec<u8>>,
    /// A comment stored with the element.
    pub comment: Option<String>,
}

impl Element {
    /// An element of a set.
    pub fn new(key: &[Value]) -> Element {
        Element {
            key: Value::concat(key),
            data: None,
            comment: None,
        }
    }
    /// An element of a map.
    pub fn map(key: &[Value], data: &[Value]) -> Element {
        Element {
            key: Value::concat(key),
            data: Some(Value::concat(data)),
            comment: None,
        }
    }
    /// With a comment.
    pub fn comment(mut self, c: impl Into<String>) -> Element {
        self.comment = Some(c.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_layout() {
        let k = Value::concat(&[
            Value::Ip("10.0.0.1".parse().expect("ip")),
            Value::Proto(6),
            Value::Port(8080),
        ]);
        assert_eq!(k, vec![10, 0, 0, 1, 6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        let t = [
            DataType::Ipv4Addr,
            DataType::InetProto,
            DataType::InetService,
        ];
        assert_eq!(DataType::concat_len(&t), 12);
        assert_eq!(DataType::concat_id(&t), (7 << 12) | (12 << 6) | 13);
        assert_eq!(DataType::concat_len(&[DataType::InetService]), 2);
        assert_eq!(Value::concat(&[Value::Port(80)]), vec![0, 80]);
    }
}
