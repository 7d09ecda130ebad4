//! Per-namespace forwarding state through RTM_GETNETCONF: reading it this
//! way avoids a `/proc/sys/net` lookup, whose cost grows with the number of
//! network namespaces on the node.

use crate::error::{Error, Result};
use crate::msg::*;
use crate::socket::Socket;
use crate::Family;

const RTM_NEWNETCONF: u16 = 80;
const RTM_GETNETCONF: u16 = 82;
const NETCONFA_IFINDEX: u16 = 1;
const NETCONFA_FORWARDING: u16 = 2;
/// The `all` pseudo-device: `net.ipv4.ip_forward` / `net.ipv6.conf.all.forwarding`.
const NETCONFA_IFINDEX_ALL: i32 = -1;

impl Socket {
    /// The namespace-wide forwarding switch of `family` (V4 or V6): the
    /// value of `net.ipv4.ip_forward` or `net.ipv6.conf.all.forwarding`.
    pub fn forwarding(&self, family: Family) -> Result<i32> {
        let what = || format!("get {family:?} forwarding");
        let mut m = MessageBuilder::new(RTM_GETNETCONF, 0);
        // struct netconfmsg is one byte (the family), padded to 4.
        m.bytes(&[family.raw(), 0, 0, 0]);
        m.attr_i32(NETCONFA_IFINDEX, NETCONFA_IFINDEX_ALL);
        let msgs = self.exec(&m, what)?;
        msgs.iter()
            .filter(|m| m.ty == RTM_NEWNETCONF)
            .flat_map(|m| Attrs::after_header(&m.payload, 4))
            .find(|a| a.ty == NETCONFA_FORWARDING)
            .and_then(|a| a.i32())
            .ok_or_else(|| Error::Malformed {
                op: self.op(what()),
                detail: "no NETCONFA_FORWARDING in reply".into(),
            })
    }
}
