//! Routes (RTM_*ROUTE).

use std::net::IpAddr;

use crate::addr::{RT_SCOPE_LINK, RT_SCOPE_NOWHERE, RT_SCOPE_UNIVERSE};
use crate::error::{Error, Result};
use crate::link::gone_is_false;
use crate::msg::*;
use crate::socket::Socket;
use crate::Family;

pub(crate) const RTM_NEWROUTE: u16 = 24;
pub(crate) const RTM_DELROUTE: u16 = 25;
pub(crate) const RTM_GETROUTE: u16 = 26;

/// Kernel constant `RTA_DST` (Linux UAPI headers).
pub const RTA_DST: u16 = 1;
/// Kernel constant `RTA_SRC` (Linux UAPI headers).
pub const RTA_SRC: u16 = 2;
/// Kernel constant `RTA_OIF` (Linux UAPI headers).
pub const RTA_OIF: u16 = 4;
/// Kernel constant `RTA_GATEWAY` (Linux UAPI headers).
pub const RTA_GATEWAY: u16 = 5;
/// Kernel constant `RTA_PRIORITY` (Linux UAPI headers).
pub const RTA_PRIORITY: u16 = 6;
/// Kernel constant `RTA_PREFSRC` (Linux UAPI headers).
pub const RTA_PREFSRC: u16 = 7;
/// Kernel constant `RTA_METRICS` (Linux UAPI headers).
pub const RTA_METRICS: u16 = 8;
/// Kernel constant `RTA_TABLE` (Linux UAPI headers).
pub const RTA_TABLE: u16 = 15;

/// Kernel constant `RTAX_MTU` (Linux UAPI headers).
pub const RTAX_MTU: u16 = 2;
/// Kernel constant `RTAX_ADVMSS` (Linux UAPI headers).
pub const RTAX_ADVMSS: u16 = 8;

/// Kernel constant `RT_TABLE_UNSPEC` (Linux UAPI headers).
pub const RT_TABLE_UNSPEC: u32 = 0;
/// Kernel constant `RT_TABLE_MAIN` (Linux UAPI headers).
pub const RT_TABLE_MAIN: u32 = 254;
/// Kernel constant `RT_TABLE_LOCAL` (Linux UAPI headers).
pub const RT_TABLE_LOCAL: u32 = 255;

/// Kernel constant `RTPROT_UNSPEC` (Linux UAPI headers).
pub const RTPROT_UNSPEC: u8 = 0;
/// Kernel constant `RTPROT_KERNEL` (Linux UAPI headers).
pub const RTPROT_KERNEL: u8 = 2;
/// Kernel constant `RTPROT_BOOT` (Linux UAPI headers).
pub const RTPROT_BOOT: u8 = 3;
/// Kernel constant `RTPROT_STATIC` (Linux UAPI headers).
pub const RTPROT_STATIC: u8 = 4;

const RTM_F_CLONED: u32 = 0x200;
/// The gateway is on the output link even without a matching prefix.
pub const RTNH_F_ONLINK: u32 = 4;

/// `struct rtmsg` (also the layout of `struct fib_rule_hdr`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RtMsg {
    /// `family` of the `struct rtmsg` (Linux UAPI layout).
    pub family: u8,
    /// `dst_len` of the `struct rtmsg` (Linux UAPI layout).
    pub dst_len: u8,
    /// `src_len` of the `struct rtmsg` (Linux UAPI layout).
    pub src_len: u8,
    /// `tos` of the `struct rtmsg` (Linux UAPI layout).
    pub tos: u8,
    /// `table` of the `struct rtmsg` (Linux UAPI layout).
    pub table: u8,
    /// `protocol` of the `struct rtmsg` (Linux UAPI layout).
    pub protocol: u8,
    /// `scope` of the `struct rtmsg` (Linux UAPI layout).
    pub scope: u8,
    /// `ty` of the `struct rtmsg` (Linux UAPI layout).
    pub ty: u8,
    /// `flags` of the `struct rtmsg` (Linux UAPI layout).
    pub flags: u32,
}
// SAFETY: repr(C), integers only, no padding.
unsafe impl Pod for RtMsg {}

/// Route types (RTN_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteKind {
    /// RTN_UNICAST: a gateway or direct route.
    #[default]
    Unicast,
    /// RTN_LOCAL: a local address.
    Local,
    /// RTN_BROADCAST.
    Broadcast,
    /// RTN_ANYCAST.
    Anycast,
    /// RTN_MULTICAST.
    Multicast,
    /// RTN_BLACKHOLE: drop silently.
    Blackhole,
    /// RTN_UNREACHABLE: drop with "unreachable".
    Unreachable,
    /// RTN_PROHIBIT: drop with "prohibited".
    Prohibit,
    /// RTN_THROW: continue with the next rule.
    Throw,
    /// Any other RTN_* value.
    Other(u8),
}

impl RouteKind {
    /// The RTN_* value.
    pub fn raw(self) -> u8 {
        match self {
            RouteKind::Unicast => 1,
            RouteKind::Local => 2,
            RouteKind::Broadcast => 3,
            RouteKind::Anycast => 4,
            RouteKind::Multicast => 5,
            RouteKind::Blackhole => 6,
            RouteKind::Unreachable => 7,
            RouteKind::Prohibit => 8,
            RouteKind::Throw => 9,
            RouteKind::Other(v) => v,
        }
    }
    /// The kind for an RTN_* value.
    pub fn from_raw(v: u8) -> Self {
        match v {
            1 => RouteKind::Unicast,
            2 => RouteKind::Local,
            3 => RouteKind::Broadcast,
            4 => RouteKind::Anycast,
            5 => RouteKind::Multicast,
            6 => RouteKind::Blackhole,
            7 => RouteKind::Unreachable,
            8 => RouteKind::Prohibit,
            9 => RouteKind::Throw,
            v => RouteKind::Other(v),
        }
    }
}

/// A route. Build with [`Route::to`] / [`Route::default_for`] and the
/// chained setters; read back from [`Socket::routes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// V4 or V6 (needed for default routes without gateway).
    pub family: Family,
    /// Destination prefix; `None` is the default route.
    pub dst: Option<(IpAddr, u8)>,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Routing table (254 = main). Tables above 255 go in RTA_TABLE.
    pub table: u32,
    /// `None` when adding: link scope for device routes, universe otherwise
    /// (iproute2's rule); when deleting: any scope.
    pub scope: Option<u8>,
    /// `None` when adding: RTPROT_BOOT (what `ip route add` uses); when deleting: any.
    pub protocol: Option<u8>,
    /// Metric (RTA_PRIORITY).
    pub priority: Option<u32>,
    /// Preferred source address (RTA_PREFSRC).
    pub src: Option<IpAddr>,
    /// RTAX_MTU.
    pub mtu: Option<u32>,
    /// RTAX_ADVMSS.
    pub advmss: Option<u32>,
    /// Route type.
    pub kind: RouteKind,
    /// `onlink`: the gateway is reachable on `oif` although no address of
    /// that link covers it (RTNH_F_ONLINK).
    pub onlink: bool,
}

impl Route {
    /// A route to `dst/prefix` in the main table.
    pub fn to(dst: IpAddr, prefix: u8) -> Route {
        let mut r = Route::default_for(Family::of(dst));
        r.dst = Some((dst, prefix));
        r
    }

    /// The default route of `family` in the main table.
    pub fn default_for(family: Family) -> Route {
        Route {
            family,
            dst: None,
            gateway: None,
            oif: None,
            table: RT_TABLE_MAIN,
            scope: None,
            protocol: None,
            priority: None,
            src: None,
            mtu: None,
            advmss: None,
            kind: RouteKind::Unicast,
            onlink: false,
        }
    }

    /// Routes via gateway `gw`.
    pub fn via(mut self, gw: IpAddr) -> Self {
        self.gateway = Some(gw);
        self
    }
    /// Routes out of link `oif`.
    pub fn dev(mut self, oif: u32) -> Self {
        self.oif = Some(oif);
        self
    }
    /// Puts the route in `table` (default main).
    pub fn table(mut self, table: u32) -> Self {
        self.table = table;
        self
    }
    /// Sets the scope (`RT_SCOPE_LINK` for on-link routes).
    pub fn scope(mut self, scope: u8) -> Self {
        self.scope = Some(scope);
        self
    }
    /// Sets the metric (priority).
    pub fn metric(mut self, m: u32) -> Self {
        self.priority = Some(m);
        self
    }
    /// Sets the preferred source address.
    pub fn src(mut self, src: IpAddr) -> Self {
        self.src = Some(src);
        self
    }
    /// Sets the path MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
    /// Sets the advertised MSS.
    pub fn advmss(mut self, advmss: u32) -> Self {
        self.advmss = Some(advmss);
        self
    }
    /// Sets the route type.
    pub fn kind(mut self, kind: RouteKind) -> Self {
        self.kind = kind;
        self
    }
    /// Marks the gateway as on-link (`ip route … onlink`).
    pub fn onlink(mut self) -> Self {
        self.onlink = true;
        self
    }
    /// The routing protocol (RTPROT_*): lets an owner tell its routes apart.
    pub fn protocol(mut self, p: u8) -> Self {
        self.protocol = Some(p);
        self
    }

    /// True for the default route (no destination or /0).
    pub fn is_default(&self) -> bool {
        !matches!(self.dst, Some((_, p)) if p != 0)
    }

    fn describe(&self) -> String {
        let mut s = match self.dst {
            Some((ip, p)) if p != 0 || !ip.is_unspecified() => format!("{ip}/{p}"),
            _ => "default".to_string(),
        };
        if let Some(gw) = self.gateway {
            s.push_str(&format!(" via {gw}"));
        }
        if let Some(oif) = self.oif {
            s.push_str(&format!(" dev #{oif}"));
        }
        if self.table != RT_TABLE_MAIN {
            s.push_str(&format!(" table {}", self.table));
        }
        if self.onlink {
            s.push_str(" onlink");
        }
        s
    }

    fn encode(
        &self,
        ty: u16,
        flags: u16,
        deleting: bool,
    ) -> std::result::Result<MessageBuilder, String> {
        if self.family == Family::All {
            return Err("route family must be V4 or V6".into());
        }
        let max = if self.family == Family::V4 { 32 } else { 128 };
        for ip in [self.dst.map(|d| d.0), self.gateway, self.src]
            .into_iter()
            .flatten()
        {
            if Family::of(ip) != self.family {
                return Err(format!("{ip} does not match the route family"));
            }
        }
        let dst_len = self.dst.map_or(0, |d| d.1);
        if dst_len > max {
            return Err(format!("prefix length {dst_len} too long"));
        }
        let scope = match self.scope {
            Some(s) => s,
            None if deleting => RT_SCOPE_NOWHERE,
            None if self.gateway.is_none() && self.kind == RouteKind::Unicast => RT_SCOPE_LINK,
            None => RT_SCOPE_UNIVERSE,
        };
        let protocol = match self.protocol {
            Some(p) => p,
            None if deleting => RTPROT_UNSPEC,
            None => RTPROT_BOOT,
        };
        let mut m = MessageBuilder::new(ty, flags);
        m.header(&RtMsg {
            family: self.family.raw(),
            dst_len,
            table: u8::try_from(self.table).unwrap_or(RT_TABLE_UNSPEC as u8),
            protocol,
            scope,
            ty: self.kind.raw(),
            flags: if self.onlink { RTNH_F_ONLINK } else { 0 },
            ..Default::default()
        });
        m.attr_u32(RTA_TABLE, self.table);
        if let Some((dst, _)) = self.dst {
            m.attr_ip(RTA_DST, dst);
        }
        if let Some(gw) = self.gateway {
            m.attr_ip(RTA_GATEWAY, gw);
        }
        if let Some(oif) = self.oif {
            m.attr_u32(RTA_OIF, oif);
        }
        if let Some(p) = self.priority {
            m.attr_u32(RTA_PRIORITY, p);
        }
        if let Some(src) = self.src {
            m.attr_ip(RTA_PREFSRC, src);
        }
        if self.mtu.is_some() || self.advmss.is_some() {
            let n = m.nest_raw(RTA_METRICS);
            if let Some(mtu) = self.mtu {
                m.attr_u32(RTAX_MTU, mtu);
            }
            if let Some(a) = self.advmss {
                m.attr_u32(RTAX_ADVMSS, a);
            }
            m.end_nest(n);
        }
        Ok(m)
    }

    /// A route of a dump; cached clones are not routes of a table.
    pub(crate) fn parse(payload: &[u8]) -> Option<Route> {
        let hdr = RtMsg::from_bytes(payload)?;
        if hdr.flags & RTM_F_CLONED != 0 {
            return None;
        }
        Self::parse_any(payload)
    }

    /// Any route message, clones included (the answer to a route lookup
    /// is one).
    pub(crate) fn parse_any(payload: &[u8]) -> Option<Route> {
        let hdr = RtMsg::from_bytes(payload)?;
        let family = match i32::from(hdr.family) {
            libc::AF_INET => Family::V4,
            libc::AF_INET6 => Family::V6,
            _ => return None,
        };
        let mut r = Route::default_for(family);
        r.table = u32::from(hdr.table);
        r.scope = Some(hdr.scope);
        r.protocol = Some(hdr.protocol);
        r.kind = RouteKind::from_raw(hdr.ty);
        r.onlink = hdr.flags & RTNH_F_ONLINK != 0;
        for a in Attrs::after_header(payload, std::mem::size_of::<RtMsg>()) {
            match a.ty {
                RTA_DST => r.dst = a.ip().map(|ip| (ip, hdr.dst_len)),
                RTA_GATEWAY => r.gateway = a.ip(),
                RTA_OIF => r.oif = a.u32(),
                RTA_PRIORITY => r.priority = a.u32(),
                RTA_PREFSRC => r.src = a.ip(),
                RTA_TABLE => r.table = a.u32().unwrap_or(r.table),
                RTA_METRICS => {
                    for x in a.nested() {
                        match x.ty {
                            RTAX_MTU => r.mtu = x.u32(),
                            RTAX_ADVMSS => r.advmss = x.u32(),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Some(r)
    }
}

impl Socket {
    fn route_op(&self, r: &Route, ty: u16, flags: u16, verb: &str) -> Result<Vec<OwnedMsg>> {
        let what = || format!("{verb} route {}", r.describe());
        let m = r
            .encode(ty, flags, ty == RTM_DELROUTE)
            .map_err(|detail| Error::Invalid {
                op: self.op(what()),
                detail,
            })?;
        self.exec(&m, what)
    }

    /// Adds a route; EEXIST if an identical one exists.
    pub fn add_route(&self, r: &Route) -> Result<()> {
        self.route_op(r, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, "add")
            .map(drop)
    }

    /// Adds a route next to any others to the same destination (no
    /// NLM_F_EXCL, like `RouteAddEcmp` in the reference): a pod with two
    /// interfaces gets a default route through each. EEXIST only when this
    /// very route exists.
    pub fn add_route_alongside(&self, r: &Route) -> Result<()> {
        self.route_op(r, RTM_NEWROUTE, NLM_F_CREATE, "add")
            .map(drop)
    }

    /// Adds a route or replaces the one with the same key.
    pub fn replace_route(&self, r: &Route) -> Result<()> {
        self.route_op(r, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, "replace")
            .map(drop)
    }

    /// Deletes a route; `Ok(false)` if no such route.
    pub fn del_route(&self, r: &Route) -> Result<bool> {
        gone_is_false(self.route_op(r, RTM_DELROUTE, 0, "delete"))
    }

    /// The route the kernel would use to reach `dst` (`ip route get`), or
    /// `None` when `dst` is unreachable.
    pub fn route_get(&self, dst: IpAddr) -> Result<Option<Route>> {
        let family = Family::of(dst);
        let mut m = MessageBuilder::new(RTM_GETROUTE, 0);
        m.header(&RtMsg {
            family: family.raw(),
            dst_len: if family == Family::V4 { 32 } else { 128 },
            ..Default::default()
        });
        m.attr_ip(RTA_DST, dst);
        match self.exec(&m, || format!("get route to {dst}")) {
            Ok(msgs) => Ok(msgs
                .iter()
                .filter(|m| m.ty == RTM_NEWROUTE)
                .find_map(|m| Route::parse_any(&m.payload))),
            Err(e)
                if matches!(
                    e.errno(),
                    Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::ESRCH)
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Routes of `family` (All for both), optionally of one table only.
    /// Without a table filter every table is listed, local included.
    pub fn routes(&self, family: Family, table: Option<u32>) -> Result<Vec<Route>> {
        let mut m = MessageBuilder::new(RTM_GETROUTE, 0);
        m.header(&RtMsg {
            family: family.raw(),
            ..Default::default()
        });
        self.dump_of(
            &m,
            || "list routes".into(),
            RTM_NEWROUTE,
            Route::parse,
            |r| !matches!(table, Some(t) if t != r.table) && family.includes(r.family),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::AddressOptions;
    use crate::testns::{veth_up, TestNs};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn routes_alongside_share_a_destination() {
        let t = TestNs::new("ralong");
        let s = t.sock();
        let (a, _) = veth_up(&s, "ra0", "ra1");
        let (b, _) = veth_up(&s, "rb0", "rb1");
        s.add_address(a, ip("10.8.0.2"), 24).expect("addr a");
        s.add_address(b, ip("10.8.0.3"), 24).expect("addr b");
        let via_a = Route::default_for(Family::V4).via(ip("10.8.0.1")).dev(a);
        let via_b = Route::default_for(Family::V4).via(ip("10.8.0.1")).dev(b);
        s.add_route_alongside(&via_a).expect("default via a");
        s.add_route_alongside(&via_b).expect("default via b");
        let e = s.add_route_alongside(&via_b).expect_err("identical");
        assert!(e.is_exists(), "{e}");
        let defaults = s
            .routes(Family::V4, Some(RT_TABLE_MAIN))
            .expect("list")
            .into_iter()
            .filter(|r| r.is_default())
            .count();
        assert_eq!(defaults, 2);
    }

    #[test]
    fn onlink_and_protocol_roundtrip() {
        let t = TestNs::new("ronl");
        let s = t.sock();
        let (i, _) = veth_up(&s, "o0", "o1");
        s.add_address(i, ip("10.3.0.0"), 32).expect("addr");
        let r = Route::to(ip("10.4.0.0"), 24)
            .via(ip("10.4.0.0"))
            .dev(i)
            .onlink()
            .protocol(0x52);
        s.add_route(&r).expect("onlink route");
        let got = s
            .routes(Family::V4, Some(RT_TABLE_MAIN))
            .expect("dump")
            .into_iter()
            .find(|x| x.dst == Some((ip("10.4.0.0"), 24)))
            .expect("route");
        assert!(got.onlink, "{got:?}");
        assert_eq!(got.protocol, Some(0x52));
        let j = t.ip(&["-j", "route", "show", "10.4.0.0/24"]);
        assert!(j.contains("onlink"), "{j}");
        assert!(s.del_route(&r).expect("del"));
    }

    #[test]
    fn route_get_picks_the_device() {
        let t = TestNs::new("rget");
        let s = t.sock();
        let (i, _) = veth_up(&s, "g0", "g1");
        s.add_address(i, ip("10.7.0.1"), 24).expect("addr");
        let r = s.route_get(ip("10.7.0.9")).expect("get").expect("route");
        assert_eq!(r.oif, Some(i));
        assert!(s.route_get(ip("192.0.2.1")).expect("get").is_none());
    }

    #[test]
    fn add_list_replace_delete() {
        let t = TestNs::new("route");
        let s = t.sock();
        let (i, _) = veth_up(&s, "r0", "r1");
        s.add_address(i, ip("10.1.2.3"), 24).expect("addr");
        let nodad = AddressOptions {
            nodad: true,
            ..Default::default()
        };
        s.add_address_with(i, ip("2001:db8::3"), 64, &nodad)
            .expect("addr6");

        let via = Route::to(ip("10.9.0.0"), 16)
            .via(ip("10.1.2.1"))
            .mtu(1400)
            .advmss(1360);
        s.add_route(&via).expect("add via");
        let e = s.add_route(&via).expect_err("dup");
        assert!(e.is_exists(), "{e}");
        assert!(
            e.to_string().contains("add route 10.9.0.0/16 via 10.1.2.1"),
            "{e}"
        );
        let dev = Route::to(ip("192.168.7.0"), 24).dev(i).src(ip("10.1.2.3"));
        s.add_route(&dev).expect("add dev route");
        let dflt = Route::default_for(Family::V4)
            .via(ip("10.1.2.1"))
            .table(1000)
            .metric(50);
        s.add_route(&dflt).expect("add default in table 1000");
        let v6 = Route::to(ip("2001:db8:1::"), 48)
            .via(ip("2001:db8::2"))
            .dev(i);
        s.add_route(&v6).expect("add v6");

        let main = s
            .routes(Family::V4, Some(RT_TABLE_MAIN))
            .expect("dump main");
        let r = main
            .iter()
            .find(|r| r.dst == Some((ip("10.9.0.0"), 16)))
            .expect("via route");
        assert_eq!(
            (r.gateway, r.oif, r.mtu, r.advmss),
            (Some(ip("10.1.2.1")), Some(i), Some(1400), Some(1360))
        );
        assert_eq!(
            (r.protocol, r.scope, r.kind),
            (
                Some(RTPROT_BOOT),
                Some(RT_SCOPE_UNIVERSE),
                RouteKind::Unicast
            )
        );
        let r = main
            .iter()
            .find(|r| r.dst == Some((ip("192.168.7.0"), 24)))
            .expect("dev route");
        assert_eq!(
            (r.scope, r.src, r.gateway),
            (Some(RT_SCOPE_LINK), Some(ip("10.1.2.3")), None)
        );
        let t1000 = s.routes(Family::V4, Some(1000)).expect("dump 1000");
        assert_eq!(t1000.len(), 1, "{t1000:?}");
        assert!(t1000[0].is_default());
        assert_eq!((t1000[0].table, t1000[0].priority), (1000, Some(50)));
        let r6 = s.routes(Family::V6, None).expect("dump v6");
        assert!(r6.iter().any(
            |r| r.dst == Some((ip("2001:db8:1::"), 48)) && r.gateway == Some(ip("2001:db8::2"))
        ));

        let j = t.ip(&["-j", "route", "show", "table", "1000"]);
        assert!(
            j.contains("\"dst\":\"default\",\"gateway\":\"10.1.2.1\""),
            "{j}"
        );
        assert!(j.contains("\"metric\":50"), "{j}");

        s.replace_route(&dflt.clone().via(ip("10.1.2.2")))
            .expect("replace");
        let t1000 = s.routes(Family::V4, Some(1000)).expect("dump 1000");
        assert_eq!(t1000.len(), 1);
        assert_eq!(t1000[0].gateway, Some(ip("10.1.2.2")));

        assert!(s
            .del_route(&Route::default_for(Family::V4).table(1000))
            .expect("del"));
        assert!(!s
            .del_route(&Route::default_for(Family::V4).table(1000))
            .expect("del again"));
        assert!(s.del_route(&via).expect("del via"));
        assert!(s.del_route(&v6).expect("del v6"));
        assert!(s.routes(Family::V4, Some(1000)).expect("dump").is_empty());

        let bad = Route::to(ip("10.0.0.0"), 8).via(ip("2001:db8::1"));
        assert!(matches!(s.add_route(&bad), Err(Error::Invalid { .. })));
    }
}
