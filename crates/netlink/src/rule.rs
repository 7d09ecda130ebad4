//! Policy routing rules (RTM_*RULE), e.g. for the sbr plugin.

use std::net::IpAddr;

use crate::error::{Error, Result};
use crate::link::{gone_is_false, valid_ifname};
use crate::msg::*;
use crate::socket::Socket;
use crate::Family;

pub(crate) const RTM_NEWRULE: u16 = 32;
pub(crate) const RTM_DELRULE: u16 = 33;
pub(crate) const RTM_GETRULE: u16 = 34;

/// Kernel constant `FRA_DST` (Linux UAPI headers).
pub const FRA_DST: u16 = 1;
/// Kernel constant `FRA_SRC` (Linux UAPI headers).
pub const FRA_SRC: u16 = 2;
/// Kernel constant `FRA_IIFNAME` (Linux UAPI headers).
pub const FRA_IIFNAME: u16 = 3;
/// Kernel constant `FRA_GOTO` (Linux UAPI headers).
pub const FRA_GOTO: u16 = 4;
/// Kernel constant `FRA_PRIORITY` (Linux UAPI headers).
pub const FRA_PRIORITY: u16 = 6;
/// Kernel constant `FRA_FWMARK` (Linux UAPI headers).
pub const FRA_FWMARK: u16 = 10;
/// Kernel constant `FRA_TABLE` (Linux UAPI headers).
pub const FRA_TABLE: u16 = 15;
/// Kernel constant `FRA_FWMASK` (Linux UAPI headers).
pub const FRA_FWMASK: u16 = 16;
/// Kernel constant `FRA_OIFNAME` (Linux UAPI headers).
pub const FRA_OIFNAME: u16 = 17;

/// Kernel constant `FIB_RULE_INVERT` (Linux UAPI headers).
pub const FIB_RULE_INVERT: u32 = 0x2;

/// `struct fib_rule_hdr`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct FibRuleHdr {
    /// `family` of the `struct fib_rule_hdr` (Linux UAPI layout).
    pub family: u8,
    /// `dst_len` of the `struct fib_rule_hdr` (Linux UAPI layout).
    pub dst_len: u8,
    /// `src_len` of the `struct fib_rule_hdr` (Linux UAPI layout).
    pub src_len: u8,
    /// `tos` of the `struct fib_rule_hdr` (Linux UAPI layout).
    pub tos: u8,
    /// `table` of the `struct fib_rule_hdr` (Linux UAPI layout).
    pub table: u8,
    /// `res1` of the `struct fib_rule_hdr` (Linux UAPI layout).
    pub res1: u8,
    /// `res2` of the `struct fib_rule_hdr` (Linux UAPI layout).
    pub res2: u8,
    /// `action` of the `struct fib_rule_hdr` (Linux UAPI layout).
    pub action: u8,
    /// `flags` of the `struct fib_rule_hdr` (Linux UAPI layout).
    pub flags: u32,
}
// SAFETY: repr(C), integers only, no padding.
unsafe impl Pod for FibRuleHdr {}

/// What a matching rule does (FR_ACT_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuleAction {
    /// Look the packet up in `table`.
    #[default]
    ToTable,
    /// FR_ACT_GOTO: jump to another rule.
    Goto,
    /// FR_ACT_NOP.
    Nop,
    /// FR_ACT_BLACKHOLE.
    Blackhole,
    /// FR_ACT_UNREACHABLE.
    Unreachable,
    /// FR_ACT_PROHIBIT.
    Prohibit,
    /// Any other FR_ACT_* value.
    Other(u8),
}

impl RuleAction {
    /// The FR_ACT_* value.
    pub fn raw(self) -> u8 {
        match self {
            RuleAction::ToTable => 1,
            RuleAction::Goto => 2,
            RuleAction::Nop => 3,
            RuleAction::Blackhole => 6,
            RuleAction::Unreachable => 7,
            RuleAction::Prohibit => 8,
            RuleAction::Other(v) => v,
        }
    }
    /// The action for an FR_ACT_* value.
    pub fn from_raw(v: u8) -> Self {
        match v {
            1 => RuleAction::ToTable,
            2 => RuleAction::Goto,
            3 => RuleAction::Nop,
            6 => RuleAction::Blackhole,
            7 => RuleAction::Unreachable,
            8 => RuleAction::Prohibit,
            v => RuleAction::Other(v),
        }
    }
}

/// A routing rule. Unset selectors match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// V4 or V6.
    pub family: Family,
    /// Rule priority (kernel picks when `None`).
    pub priority: Option<u32>,
    /// Source prefix selector.
    pub src: Option<(IpAddr, u8)>,
    /// Destination prefix selector.
    pub dst: Option<(IpAddr, u8)>,
    /// Table for [`RuleAction::ToTable`]; tables above 255 go in FRA_TABLE.
    pub table: u32,
    /// Incoming interface selector.
    pub iif: Option<String>,
    /// Outgoing interface selector.
    pub oif: Option<String>,
    /// Firewall mark selector.
    pub fwmark: Option<u32>,
    /// Firewall mark mask.
    pub fwmask: Option<u32>,
    /// `not` – invert the selector.
    pub invert: bool,
    /// What a matching packet does.
    pub action: RuleAction,
}

impl Rule {
    /// A rule of `family` matching everything, looking up the main table.
    pub fn new(family: Family) -> Rule {
        Rule {
            family,
            priority: None,
            src: None,
            dst: None,
            table: 0,
            iif: None,
            oif: None,
            fwmark: None,
            fwmask: None,
            invert: false,
            action: RuleAction::ToTable,
        }
    }
    /// Matches source `ip/prefix`.
    pub fn from(mut self, ip: IpAddr, prefix: u8) -> Self {
        self.src = Some((ip, prefix));
        self
    }
    /// Matches destination `ip/prefix`.
    pub fn to(mut self, ip: IpAddr, prefix: u8) -> Self {
        self.dst = Some((ip, prefix));
        self
    }
    /// Looks up `table`.
    pub fn table(mut self, table: u32) -> Self {
        self.table = table;
        self
    }
    /// Sets the priority.
    pub fn priority(mut self, p: u32) -> Self {
        self.priority = Some(p);
        self
    }
    /// Matches packets arriving on `name`.
    pub fn iif(mut self, name: &str) -> Self {
        self.iif = Some(name.to_string());
        self
    }
    /// Matches packets leaving by `name`.
    pub fn oif(mut self, name: &str) -> Self {
        self.oif = Some(name.to_string());
        self
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        if let Some(p) = self.priority {
            s.push_str(&format!("pref {p} "));
        }
        match self.src {
            Some((ip, len)) => s.push_str(&format!("from {ip}/{len}")),
            None => s.push_str("from all"),
        }
        if let Some((ip, len)) = self.dst {
            s.push_str(&format!(" to {ip}/{len}"));
        }
        if let Some(i) = &self.iif {
            s.push_str(&format!(" iif {i}"));
        }
        if let Some(o) = &self.oif {
            s.push_str(&format!(" oif {o}"));
        }
        if self.table != 0 {
            s.push_str(&format!(" table {}", self.table));
        }
        s
    }

    fn encode(&self, ty: u16, flags: u16) -> std::result::Result<MessageBuilder, String> {
        if self.family == Family::All {
            return Err("rule family must be V4 or V6".into());
        }
        let max = if self.family == Family::V4 { 32 } else { 128 };
        for (ip, len) in [self.src, self.dst].into_iter().flatten() {
            if Family::of(ip) != self.family || len > max {
                return Err(format!("bad selector {ip}/{len}"));
            }
        }
        for name in [&self.iif, &self.oif].into_iter().flatten() {
            if !valid_ifname(name) {
                return Err(format!("bad interface name {name:?}"));
            }
        }
        let mut m = MessageBuilder::new(ty, flags);
        m.header(&FibRuleHdr {
            family: self.family.raw(),
            dst_len: self.dst.map_or(0, |d| d.1),
            src_len: self.src.map_or(0, |d| d.1),
            table: u8::try_from(self.table).unwrap_or(0),
            action: self.action.raw(),
            flags: if self.invert { FIB_RULE_INVERT } else { 0 },
            ..Default::default()
        });
        if self.table != 0 {
            m.attr_u32(FRA_TABLE, self.table);
        }
        if let Some(p) = self.priority {
            m.attr_u32(FRA_PRIORITY, p);
        }
        if let Some((ip, _)) = self.src {
            m.attr_ip(FRA_SRC, ip);
        }
        if let Some((ip, _)) = self.dst {
            m.attr_ip(FRA_DST, ip);
        }
        if let Some(i) = &self.iif {
            m.attr_str(FRA_IIFNAME, i);
        }
        if let Some(o) = &self.oif {
            m.attr_str(FRA_OIFNAME, o);
        }
        if let Some(mark) = self.fwmark {
            m.attr_u32(FRA_FWMARK, mark);
        }
        if let Some(mask) = self.fwmask {
            m.attr_u32(FRA_FWMASK, mask);
        }
        Ok(m)
    }

    pub(crate) fn parse(payload: &[u8]) -> Option<Rule> {
        let h = FibRuleHdr::from_bytes(payload)?;
        let family = match i32::from(h.family) {
            libc::AF_INET => Family::V4,
            libc::AF_INET6 => Family::V6,
            _ => return None,
        };
        let mut r = Rule::new(family);
        r.table = u32::from(h.table);
        r.action = RuleAction::from_raw(h.action);
        r.invert = h.flags & FIB_RULE_INVERT != 0;
        for a in Attrs::after_header(payload, std::mem::size_of::<FibRuleHdr>()) {
            match a.ty {
                FRA_TABLE => r.table = a.u32().unwrap_or(r.table),
                FRA_PRIORITY => r.priority = a.u32(),
                FRA_SRC => r.src = a.ip().map(|ip| (ip, h.src_len)),
                FRA_DST => r.dst = a.ip().map(|ip| (ip, h.dst_len)),
                FRA_IIFNAME => r.iif = Some(a.string()),
                FRA_OIFNAME => r.oif = Some(a.string()),
                FRA_FWMARK => r.fwmark = a.u32(),
                FRA_FWMASK => r.fwmask = a.u32(),
                _ => {}
            }
        }
        Some(r)
    }
}

impl Socket {
    fn rule_op(&self, r: &Rule, ty: u16, flags: u16, verb: &str) -> Result<Vec<OwnedMsg>> {
        let what = || format!("{verb} rule {}", r.describe());
        let m = r.encode(ty, flags).map_err(|detail| Error::Invalid {
            op: self.op(what()),
            detail,
        })?;
        self.exec(&m, what)
    }

    /// Adds a rule; EEXIST if an identical one exists.
    pub fn add_rule(&self, r: &Rule) -> Result<()> {
        self.rule_op(r, RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, "add")
            .map(drop)
    }

    /// Deletes the first rule matching every set field; `Ok(false)` if none.
    pub fn del_rule(&self, r: &Rule) -> Result<bool> {
        gone_is_false(self.rule_op(r, RTM_DELRULE, 0, "delete"))
    }

    /// Rules of `family` (All for both).
    pub fn rules(&self, family: Family) -> Result<Vec<Rule>> {
        let mut m = MessageBuilder::new(RTM_GETRULE, 0);
        m.header(&FibRuleHdr {
            family: family.raw(),
            ..Default::default()
        });
        self.dump_of(
            &m,
            || "list rules".into(),
            RTM_NEWRULE,
            Rule::parse,
            |r| family.includes(r.family),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testns::TestNs;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn add_list_delete() {
        let t = TestNs::new("rule");
        let s = t.sock();
        let before = s.rules(Family::V4).expect("dump");
        assert!(
            before.iter().any(|r| r.table == 254),
            "main rule present: {before:?}"
        );

        let r = Rule::new(Family::V4)
            .from(ip("10.1.2.3"), 32)
            .table(100)
            .priority(1000);
        s.add_rule(&r).expect("add");
        let e = s.add_rule(&r).expect_err("dup");
        assert!(e.is_exists(), "{e}");
        assert!(
            e.to_string()
                .contains("add rule pref 1000 from 10.1.2.3/32 table 100"),
            "{e}"
        );
        let big = Rule::new(Family::V4)
            .to(ip("10.8.0.0"), 16)
            .iif("lo")
            .table(5000)
            .priority(1001);
        s.add_rule(&big).expect("add big table");
        let v6 = Rule::new(Family::V6)
            .from(ip("2001:db8::"), 64)
            .oif("lo")
            .table(101)
            .priority(1002);
        s.add_rule(&v6).expect("add v6");

        let got = s.rules(Family::V4).expect("dump");
        let g = got
            .iter()
            .find(|x| x.priority == Some(1000))
            .expect("rule 1000");
        assert_eq!(
            (g.src, g.table, g.action),
            (Some((ip("10.1.2.3"), 32)), 100, RuleAction::ToTable)
        );
        let g = got
            .iter()
            .find(|x| x.priority == Some(1001))
            .expect("rule 1001");
        assert_eq!(
            (g.dst, g.table, g.iif.as_deref()),
            (Some((ip("10.8.0.0"), 16)), 5000, Some("lo"))
        );
        let g6 = s.rules(Family::V6).expect("dump v6");
        assert!(g6
            .iter()
            .any(|x| x.priority == Some(1002) && x.oif.as_deref() == Some("lo") && x.table == 101));

        let j = t.ip(&["-j", "rule", "show"]);
        assert!(
            j.contains("\"priority\":1000,\"src\":\"10.1.2.3\",\"table\":\"100\""),
            "{j}"
        );

        assert!(s.del_rule(&r).expect("del"));
        assert!(!s.del_rule(&r).expect("del again"));
        assert!(s.del_rule(&big).expect("del big"));
        assert!(s.del_rule(&v6).expect("del v6"));
        assert_eq!(s.rules(Family::V4).expect("dump").len(), before.len());
    }
}
