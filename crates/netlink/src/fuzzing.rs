//! Fuzzing entry (`fuzz/`): the netlink message parser, on a buffer as
//! the kernel would hand it to a socket read.

use crate::msg::{Attrs, MsgIter};

/// Walks every message and attribute of `buf`, and runs each object
/// parser (link, address, route, rule, neighbour, qdisc, error ack) on
/// each payload. Every outcome is fine except a panic.
pub fn parse_messages(buf: &[u8]) {
    for m in MsgIter::new(buf) {
        let owned = m.to_owned_msg();
        walk(Attrs::new(&owned.payload), 0);
        for hdr in [4usize, 8, 12, 16] {
            walk(Attrs::after_header(m.payload, hdr), 0);
        }
        let _ = crate::link::Link::parse(m.payload);
        let _ = crate::addr::parse_addr(m.payload);
        let _ = crate::route::Route::parse(m.payload);
        let _ = crate::route::Route::parse_any(m.payload);
        let _ = crate::rule::Rule::parse(m.payload);
        let _ = crate::neigh::parse_neigh(m.payload);
        let _ = crate::tc::parse_qdisc(m.payload);
        let _ = crate::socket::ext_ack(&m, 0);
        let _ = crate::socket::ext_ack(&m, 20);
    }
}

fn walk(attrs: Attrs<'_>, depth: u32) {
    for a in attrs {
        let _ = (a.u8(), a.u16(), a.u32(), a.i32(), a.u64());
        let _ = (a.be16(), a.be32(), a.be64(), a.ip());
        let _ = a.string();
        if depth < 8 {
            walk(a.nested(), depth + 1);
        }
    }
}
