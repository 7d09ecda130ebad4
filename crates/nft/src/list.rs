//! Decoding nf_tables dump messages.

use netlink::msg::{Attrs, OwnedMsg};

use crate::rule::parse_udata_comment;
use crate::sys::*;
use crate::Family;

const NFGENMSG_LEN: usize = 4;

fn family_of(m: &OwnedMsg) -> Option<Family> {
    m.payload.first().and_then(|&f| Family::from_raw(f))
}

fn attrs(m: &OwnedMsg) -> Attrs<'_> {
    Attrs::after_header(&m.payload, NFGENMSG_LEN)
}

/// A table as dumped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// Family.
    pub family: Family,
    /// Name.
    pub name: String,
    /// Kernel handle.
    pub handle: u64,
}

impl TableInfo {
    pub(crate) fn parse(m: &OwnedMsg) -> Option<TableInfo> {
        let a = attrs(m);
        Some(TableInfo {
            family: family_of(m)?,
            name: a.get(NFTA_TABLE_NAME)?.string(),
            handle: a.get(NFTA_TABLE_HANDLE).and_then(|x| x.be64()).unwrap_or(0),
        })
    }
}

/// A chain as dumped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    /// Family of its table.
    pub family: Family,
    /// Its table.
    pub table: String,
    /// Name.
    pub name: String,
    /// Kernel handle.
    pub handle: u64,
    /// Hook number and priority of a base chain.
    pub hook: Option<(u32, i32)>,
    /// "filter", "nat", "route" for base chains.
    pub kind: Option<String>,
    /// Number of references (jumps, rules) the kernel counts.
    pub uses: u32,
}

impl ChainInfo {
    pub(crate) fn parse(m: &OwnedMsg) -> Option<ChainInfo> {
        let a = attrs(m);
        let hook = a.get(NFTA_CHAIN_HOOK).and_then(|h| {
            let n = h.nested();
            Some((
                n.get(NFTA_HOOK_HOOKNUM)?.be32()?,
                n.get(NFTA_HOOK_PRIORITY)?.be32()? as i32,
            ))
        });
        Some(ChainInfo {
            family: family_of(m)?,
            table: a.get(NFTA_CHAIN_TABLE)?.string(),
            name: a.get(NFTA_CHAIN_NAME)?.string(),
            handle: a.get(NFTA_CHAIN_HANDLE).and_then(|x| x.be64()).unwrap_or(0),
            hook,
            kind: a.get(NFTA_CHAIN_TYPE).map(|t| t.string()),
            uses: a.get(NFTA_CHAIN_USE).and_then(|x| x.be32()).unwrap_or(0),
        })
    }
}

/// A rule as dumped: enough to find it by comment and delete it by handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// Family of its table.
    pub family: Family,
    /// Its table.
    pub table: String,
    /// Its chain.
    pub chain: String,
    /// Kernel handle (what deletion names).
    pub handle: u64,
    /// Its comment, if any.
    pub comment: Option<String>,
    /// Expression names in order ("meta", "cmp", "masq", ...).
    pub exprs: Vec<String>,
}

impl RuleInfo {
    pub(crate) fn parse(m: &OwnedMsg) -> Option<RuleInfo> {
        let a = attrs(m);
        let exprs = a
            .get(NFTA_RULE_EXPRESSIONS)
            .map(|e| {
                e.nested()
                    .filter_map(|el| el.nested().get(NFTA_EXPR_NAME).map(|n| n.string()))
                    .collect()
            })
            .unwrap_or_default();
        Some(RuleInfo {
            family: family_of(m)?,
            table: a.get(NFTA_RULE_TABLE)?.string(),
            chain: a.get(NFTA_RULE_CHAIN)?.string(),
            handle: a.get(NFTA_RULE_HANDLE)?.be64()?,
            comment: a
                .get(NFTA_RULE_USERDATA)
                .and_then(|u| parse_udata_comment(u.data, NFTNL_UDATA_RULE_COMMENT)),
            exprs,
        })
    }
}

/// A set element as dumped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElemInfo {
    /// The key's bytes.
    pub key: Vec<u8>,
    /// The mapped value's bytes (maps only).
    pub data: Option<Vec<u8>>,
    /// The element's comment, if any.
    pub comment: Option<String>,
}

impl ElemInfo {
    /// All elements in one GETSETELEM dump message.
    pub(crate) fn parse_all(m: &OwnedMsg, out: &mut Vec<ElemInfo>) {
        let Some(list) = attrs(m).get(NFTA_SET_ELEM_LIST_ELEMENTS) else {
            return;
        };
        for el in list.nested() {
            let e = el.nested();
            let value = |ty| {
                e.get(ty)
                    .and_then(|d| d.nested().get(NFTA_DATA_VALUE))
                    .map(|v| v.data.to_vec())
            };
            let Some(key) = value(NFTA_SET_ELEM_KEY) else {
                continue;
            };
            out.push(ElemInfo {
                key,
                data: value(NFTA_SET_ELEM_DATA),
                comment: e
                    .get(NFTA_SET_ELEM_USERDATA)
                    .and_then(|u| parse_udata_comment(u.data, NFTNL_UDATA_SET_ELEM_COMMENT)),
            });
        }
    }
}
