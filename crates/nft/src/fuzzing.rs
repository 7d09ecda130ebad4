//! Fuzzing entry (`fuzz/`): the parser of what the kernel answers to a
//! list (tables, chains, rules, set elements, conntrack entries) and of
//! the comments rcni reads back.

use crate::list::{ChainInfo, ElemInfo, RuleInfo, TableInfo};
use netlink::msg::MsgIter;

/// Runs every list parser on every message of `buf`, and the comment
/// parsers on the buffer as text. Every outcome is fine except a panic.
pub fn parse_list(buf: &[u8]) {
    for m in MsgIter::new(buf) {
        let m = m.to_owned_msg();
        let _ = TableInfo::parse(&m);
        let _ = ChainInfo::parse(&m);
        let _ = RuleInfo::parse(&m);
        let mut elems = Vec::new();
        ElemInfo::parse_all(&m, &mut elems);
        let _ = crate::conntrack::parse_entry(&m);
    }
    for ty in [0u8, 1, 2] {
        let _ = crate::rule::parse_udata_comment(buf, ty);
    }
    if let Ok(s) = std::str::from_utf8(buf) {
        let _ = crate::rulesets::portmap::parse_comment(s);
        let _ = crate::rulesets::masq::parse_comment(s);
    }
}
