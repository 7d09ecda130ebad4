//! Traffic control: the qdiscs and filters the bandwidth plugin needs
//! (tbf, ingress, clsact; u32/matchall filters with a mirred redirect).

use crate::error::{Error, Result};
use crate::link::gone_is_false;
use crate::msg::*;
use crate::socket::Socket;

pub(crate) const RTM_NEWQDISC: u16 = 36;
pub(crate) const RTM_DELQDISC: u16 = 37;
pub(crate) const RTM_GETQDISC: u16 = 38;
pub(crate) const RTM_NEWTFILTER: u16 = 44;
pub(crate) const RTM_GETTFILTER: u16 = 46;

/// Kernel constant `TCA_KIND` (Linux UAPI headers).
pub const TCA_KIND: u16 = 1;
/// Kernel constant `TCA_OPTIONS` (Linux UAPI headers).
pub const TCA_OPTIONS: u16 = 2;

/// Kernel constant `TCA_TBF_PARMS` (Linux UAPI headers).
pub const TCA_TBF_PARMS: u16 = 1;
/// Kernel constant `TCA_TBF_RTAB` (Linux UAPI headers).
pub const TCA_TBF_RTAB: u16 = 2;
/// Kernel constant `TCA_TBF_RATE64` (Linux UAPI headers).
pub const TCA_TBF_RATE64: u16 = 4;
/// Kernel constant `TCA_TBF_BURST` (Linux UAPI headers).
pub const TCA_TBF_BURST: u16 = 6;

/// Kernel constant `TCA_U32_CLASSID` (Linux UAPI headers).
pub const TCA_U32_CLASSID: u16 = 1;
/// Kernel constant `TCA_U32_SEL` (Linux UAPI headers).
pub const TCA_U32_SEL: u16 = 5;
/// Kernel constant `TCA_U32_ACT` (Linux UAPI headers).
pub const TCA_U32_ACT: u16 = 7;
/// Kernel constant `TCA_MATCHALL_ACT` (Linux UAPI headers).
pub const TCA_MATCHALL_ACT: u16 = 2;

/// Kernel constant `TCA_ACT_KIND` (Linux UAPI headers).
pub const TCA_ACT_KIND: u16 = 1;
/// Kernel constant `TCA_ACT_OPTIONS` (Linux UAPI headers).
pub const TCA_ACT_OPTIONS: u16 = 2;
/// Kernel constant `TCA_MIRRED_PARMS` (Linux UAPI headers).
pub const TCA_MIRRED_PARMS: u16 = 2;

/// Kernel constant `TC_ACT_STOLEN` (Linux UAPI headers).
pub const TC_ACT_STOLEN: i32 = 4;
/// Kernel constant `TCA_EGRESS_REDIR` (Linux UAPI headers).
pub const TCA_EGRESS_REDIR: i32 = 1;
/// Kernel constant `TCA_EGRESS_MIRROR` (Linux UAPI headers).
pub const TCA_EGRESS_MIRROR: i32 = 2;

/// Kernel constant `TC_U32_TERMINAL` (Linux UAPI headers).
pub const TC_U32_TERMINAL: u8 = 1;
/// Kernel constant `TC_LINKLAYER_ETHERNET` (Linux UAPI headers).
pub const TC_LINKLAYER_ETHERNET: u8 = 1;

/// `tc` handle/parent values.
pub const TC_H_ROOT: u32 = 0xFFFF_FFFF;
/// Kernel constant `TC_H_INGRESS` (Linux UAPI headers).
pub const TC_H_INGRESS: u32 = 0xFFFF_FFF1;
/// Kernel constant `TC_H_CLSACT` (Linux UAPI headers).
pub const TC_H_CLSACT: u32 = TC_H_INGRESS;
/// Minor numbers of clsact's two hooks (parent `ffff:fff2` / `ffff:fff3`).
pub const TC_H_MIN_INGRESS: u16 = 0xFFF2;
/// Kernel constant `TC_H_MIN_EGRESS` (Linux UAPI headers).
pub const TC_H_MIN_EGRESS: u16 = 0xFFF3;

const ETH_P_ALL: u16 = 0x0003;
/// iproute2's TIME_UNITS_PER_SEC: tc times are in microseconds.
const TIME_UNITS_PER_SEC: f64 = 1_000_000.0;

/// `major:minor` as a 32-bit tc handle.
pub const fn handle(major: u16, minor: u16) -> u32 {
    ((major as u32) << 16) | minor as u32
}

/// `struct tcmsg`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct TcMsg {
    /// `family` of the `struct tcmsg` (Linux UAPI layout).
    pub family: u8,
    /// `pad1` of the `struct tcmsg` (Linux UAPI layout).
    pub pad1: u8,
    /// `pad2` of the `struct tcmsg` (Linux UAPI layout).
    pub pad2: u16,
    /// `index` of the `struct tcmsg` (Linux UAPI layout).
    pub index: i32,
    /// `handle` of the `struct tcmsg` (Linux UAPI layout).
    pub handle: u32,
    /// `parent` of the `struct tcmsg` (Linux UAPI layout).
    pub parent: u32,
    /// `info` of the `struct tcmsg` (Linux UAPI layout).
    pub info: u32,
}
// SAFETY: repr(C), integers only, no padding.
unsafe impl Pod for TcMsg {}

/// `struct tc_ratespec`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct TcRateSpec {
    /// `cell_log` of the `struct tc_ratespec` (Linux UAPI layout).
    pub cell_log: u8,
    /// `linklayer` of the `struct tc_ratespec` (Linux UAPI layout).
    pub linklayer: u8,
    /// `overhead` of the `struct tc_ratespec` (Linux UAPI layout).
    pub overhead: u16,
    /// `cell_align` of the `struct tc_ratespec` (Linux UAPI layout).
    pub cell_align: i16,
    /// `mpu` of the `struct tc_ratespec` (Linux UAPI layout).
    pub mpu: u16,
    /// `rate` of the `struct tc_ratespec` (Linux UAPI layout).
    pub rate: u32,
}
// SAFETY: repr(C), integers only, no padding.
unsafe impl Pod for TcRateSpec {}

/// `struct tc_tbf_qopt`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct TcTbfQopt {
    /// `rate` of the `struct tc_tbf_qopt` (Linux UAPI layout).
    pub rate: TcRateSpec,
    /// `peakrate` of the `struct tc_tbf_qopt` (Linux UAPI layout).
    pub peakrate: TcRateSpec,
    /// `limit` of the `struct tc_tbf_qopt` (Linux UAPI layout).
    pub limit: u32,
    /// `buffer` of the `struct tc_tbf_qopt` (Linux UAPI layout).
    pub buffer: u32,
    /// `mtu` of the `struct tc_tbf_qopt` (Linux UAPI layout).
    pub mtu: u32,
}
// SAFETY: repr(C), integers only, no padding (12+12+4+4+4).
unsafe impl Pod for TcTbfQopt {}

/// `struct tc_mirred` (tc_gen + eaction + ifindex).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct TcMirred {
    index: u32,
    capab: u32,
    action: i32,
    refcnt: i32,
    bindcnt: i32,
    eaction: i32,
    ifindex: u32,
}
// SAFETY: repr(C), integers only, no padding.
unsafe impl Pod for TcMirred {}

/// The kernel's packet-scheduler clock, from `/proc/net/psched`, used to
/// convert times to the "ticks" tbf wants (as iproute2's tc_core does).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Psched {
    tick_in_usec: f64,
}

impl Psched {
    /// Reads `/proc/net/psched`; falls back to the value every kernel since
    /// 2.6.31 reports (64 ticks per microsecond... i.e. 1000/64 per tick).
    pub fn read() -> Psched {
        Self::parse(&std::fs::read_to_string("/proc/net/psched").unwrap_or_default()).unwrap_or(
            Psched {
                tick_in_usec: 1000.0 / 64.0,
            },
        )
    }

    fn parse(text: &str) -> Option<Psched> {
        let mut it = text
            .split_whitespace()
            .map(|w| u32::from_str_radix(w, 16).ok());
        let t2us = it.next()??;
        let us2t = it.next()??;
        let clock_res = it.next()??;
        if us2t == 0 || clock_res == 0 {
            return None;
        }
        // iproute2's compatibility rule: nanosecond clocks advertise a
        // multiplier of 1000 that really means 1.
        let t2us = if clock_res == 1_000_000_000 {
            us2t
        } else {
            t2us
        };
        let clock_factor = f64::from(clock_res) / TIME_UNITS_PER_SEC;
        Some(Psched {
            tick_in_usec: f64::from(t2us) / f64::from(us2t) * clock_factor,
        })
    }

    /// Microseconds to ticks.
    pub fn time_to_ticks(&self, usec: f64) -> u32 {
        (usec * self.tick_in_usec) as u32
    }

    /// Ticks to microseconds.
    pub fn ticks_to_time(&self, ticks: u32) -> f64 {
        f64::from(ticks) / self.tick_in_usec
    }

    /// Ticks needed to send `size` bytes at `rate` bytes/s.
    pub fn xmit_ticks(&self, rate: u64, size: u32) -> u32 {
        if rate == 0 {
            return 0;
        }
        self.time_to_ticks(TIME_UNITS_PER_SEC * f64::from(size) / rate as f64)
    }
}

/// Token bucket filter settings. Rates are bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tbf {
    /// Rate, bytes per second.
    pub rate: u64,
    /// Bucket size in bytes.
    pub burst: u32,
    /// Queue limit in bytes; when `None` it is derived from `latency_us`.
    pub limit: Option<u32>,
    /// Maximum queueing delay, used when `limit` is `None` (default 25 ms,
    /// what the CNI bandwidth plugin uses).
    pub latency_us: Option<u32>,
}

impl Tbf {
    /// A TBF of `rate` bytes/s with a `burst`-byte bucket, default limit.
    pub fn new(rate: u64, burst: u32) -> Tbf {
        Tbf {
            rate,
            burst,
            limit: None,
            latency_us: None,
        }
    }

    /// The TCA_OPTIONS content, computed like `tc qdisc add ... tbf`.
    fn encode(&self, m: &mut MessageBuilder, ps: &Psched) {
        let rate32 = u32::try_from(self.rate).unwrap_or(u32::MAX);
        let latency = f64::from(self.latency_us.unwrap_or(25_000));
        let limit = self.limit.unwrap_or_else(|| {
            let l = self.rate as f64 * latency / TIME_UNITS_PER_SEC + f64::from(self.burst);
            l.min(f64::from(u32::MAX)) as u32
        });
        // Rate table: transmit time of packets up to 2047 bytes in 256
        // cells; the kernel only looks at it for the link layer, but
        // iproute2 always sends it and old kernels need it.
        let mtu = 2047u32;
        let mut cell_log = 0u8;
        while (mtu >> cell_log) > 255 {
            cell_log += 1;
        }
        let mut rtab = Vec::with_capacity(1024);
        for i in 0..256u32 {
            let size = (i + 1) << cell_log;
            rtab.extend_from_slice(&ps.xmit_ticks(u64::from(rate32), size).to_ne_bytes());
        }
        let opt = TcTbfQopt {
            rate: TcRateSpec {
                cell_log,
                linklayer: TC_LINKLAYER_ETHERNET,
                cell_align: -1,
                rate: rate32,
                ..Default::default()
            },
            limit,
            buffer: ps.xmit_ticks(self.rate, self.burst),
            ..Default::default()
        };
        let n = m.nest_raw(TCA_OPTIONS);
        m.attr(TCA_TBF_PARMS, opt.as_bytes());
        m.attr_u32(TCA_TBF_BURST, self.burst);
        if self.rate > u64::from(u32::MAX) {
            m.attr_u64(TCA_TBF_RATE64, self.rate);
        }
        m.attr(TCA_TBF_RTAB, &rtab);
        m.end_nest(n);
    }
}

/// tbf settings read back from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TbfInfo {
    /// Bytes per second.
    pub rate: u64,
    /// Queue limit in bytes.
    pub limit: u32,
    /// Bucket size in ticks (see [`TbfInfo::burst`]).
    pub buffer_ticks: u32,
}

impl TbfInfo {
    /// The bucket size in bytes (rounded, as `tc` shows it).
    pub fn burst(&self, ps: &Psched) -> u64 {
        (ps.ticks_to_time(self.buffer_ticks) * self.rate as f64 / TIME_UNITS_PER_SEC).round() as u64
    }
}

/// A qdisc as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qdisc {
    /// Interface index.
    pub index: u32,
    /// The qdisc's handle.
    pub handle: u32,
    /// Its parent (TC_H_ROOT, TC_H_INGRESS or a class).
    pub parent: u32,
    /// The qdisc type (`tbf`, `ingress`, ...).
    pub kind: String,
    /// TBF settings, for a tbf qdisc.
    pub tbf: Option<TbfInfo>,
}

/// A filter as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Interface index.
    pub index: u32,
    /// Parent qdisc or class.
    pub parent: u32,
    /// The filter's handle.
    pub handle: u32,
    /// The filter type (`u32`, `matchall`, ...).
    pub kind: String,
    /// Priority.
    pub prio: u16,
    /// Ethernet protocol in host order (3 = all).
    pub protocol: u16,
}

/// Classifier used by [`Socket::add_redirect_filter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedirectMatch {
    /// `u32 match u32 0 0` – what the CNI bandwidth plugin uses.
    #[default]
    U32,
    /// `matchall` (needs CONFIG_NET_CLS_MATCHALL).
    Matchall,
}

/// A filter that sends everything arriving under `parent` of a link to the
/// egress of link `target` (what [`Socket::add_redirect_filter`] adds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirect {
    /// The qdisc the filter hangs under (`ffff:` for ingress).
    pub parent: u32,
    /// The filter's priority.
    pub prio: u16,
    /// Its classifier.
    pub matcher: RedirectMatch,
    /// The link whose egress receives the packets.
    pub target: u32,
}

fn tcmsg(index: u32, parent: u32, handle: u32) -> TcMsg {
    TcMsg {
        index: index as i32,
        parent,
        handle,
        ..Default::default()
    }
}

pub(crate) fn parse_qdisc(payload: &[u8]) -> Option<Qdisc> {
    let h = TcMsg::from_bytes(payload)?;
    let mut q = Qdisc {
        index: u32::try_from(h.index).ok()?,
        handle: h.handle,
        parent: h.parent,
        kind: String::new(),
        tbf: None,
    };
    let mut options = None;
    for a in Attrs::after_header(payload, std::mem::size_of::<TcMsg>()) {
        match a.ty {
            TCA_KIND => q.kind = a.string(),
            TCA_OPTIONS => options = Some(a),
            _ => {}
        }
    }
    if let (Some(opts), "tbf") = (options, q.kind.as_str()) {
        let mut info = None;
        let mut rate64 = None;
        for a in opts.nested() {
            match a.ty {
                TCA_TBF_PARMS => info = TcTbfQopt::from_bytes(a.data),
                TCA_TBF_RATE64 => rate64 = a.u64(),
                _ => {}
            }
        }
        q.tbf = info.map(|o| TbfInfo {
            rate: rate64.unwrap_or(u64::from(o.rate.rate)),
            limit: o.limit,
            buffer_ticks: o.buffer,
        });
    }
    Some(q)
}

impl Socket {
    /// Adds a qdisc of any kind; `options` writes TCA_OPTIONS if the kind
    /// needs any. With `replace`, an existing qdisc at `parent` is replaced.
    pub fn add_qdisc_with(
        &self,
        index: u32,
        parent: u32,
        handle: u32,
        kind: &str,
        replace: bool,
        options: impl FnOnce(&mut MessageBuilder),
    ) -> Result<()> {
        let flags = if replace {
            NLM_F_CREATE | NLM_F_REPLACE
        } else {
            NLM_F_CREATE | NLM_F_EXCL
        };
        let mut m = MessageBuilder::new(RTM_NEWQDISC, flags);
        m.header(&tcmsg(index, parent, handle));
        m.attr_str(TCA_KIND, kind);
        options(&mut m);
        let verb = if replace { "replace" } else { "add" };
        self.exec(&m, || format!("{verb} {kind} qdisc on link #{index}"))
            .map(drop)
    }

    /// Adds (or replaces) a tbf qdisc at the root of link `index` with
    /// `handle` (e.g. `handle(1, 0)`).
    pub fn add_tbf(&self, index: u32, handle: u32, tbf: &Tbf, replace: bool) -> Result<()> {
        if tbf.rate == 0 {
            return Err(Error::Invalid {
                op: self.op(format!("add tbf qdisc on link #{index}")),
                detail: "rate must be positive".into(),
            });
        }
        let ps = Psched::read();
        self.add_qdisc_with(index, TC_H_ROOT, handle, "tbf", replace, |m| {
            tbf.encode(m, &ps)
        })
    }

    /// Adds the ingress qdisc (`ffff:`), parent of ingress filters.
    pub fn add_ingress_qdisc(&self, index: u32) -> Result<()> {
        self.add_qdisc_with(
            index,
            TC_H_INGRESS,
            handle(0xffff, 0),
            "ingress",
            false,
            |_| {},
        )
    }

    /// Adds the clsact qdisc (ingress `ffff:fff2` and egress `ffff:fff3` hooks).
    pub fn add_clsact_qdisc(&self, index: u32) -> Result<()> {
        self.add_qdisc_with(
            index,
            TC_H_CLSACT,
            handle(0xffff, 0),
            "clsact",
            false,
            |_| {},
        )
    }

    /// Deletes the qdisc at `parent` (and `handle` if non-zero); `Ok(false)`
    /// if there was none.
    pub fn del_qdisc(&self, index: u32, parent: u32, handle: u32) -> Result<bool> {
        let mut m = MessageBuilder::new(RTM_DELQDISC, 0);
        m.header(&tcmsg(index, parent, handle));
        gone_is_false(self.exec(&m, || {
            format!("delete qdisc {handle:x} parent {parent:x} on link #{index}")
        }))
    }

    /// Deletes the root qdisc; `Ok(false)` if only the default one was there.
    pub fn del_root_qdisc(&self, index: u32) -> Result<bool> {
        match self.del_qdisc(index, TC_H_ROOT, 0) {
            // The default qdisc has handle 0 and cannot be deleted: that is
            // the "nothing configured" state.
            Err(e) if e.errno() == Some(libc::EINVAL) || e.errno() == Some(libc::ENOENT) => {
                Ok(false)
            }
            r => r,
        }
    }

    /// Deletes the ingress (or clsact) qdisc and with it its filters.
    pub fn del_ingress_qdisc(&self, index: u32) -> Result<bool> {
        match self.del_qdisc(index, TC_H_INGRESS, handle(0xffff, 0)) {
            Err(e) if e.errno() == Some(libc::EINVAL) => Ok(false),
            r => r,
        }
    }

    /// Qdiscs of one link or all.
    pub fn qdiscs(&self, index: Option<u32>) -> Result<Vec<Qdisc>> {
        let mut m = MessageBuilder::new(RTM_GETQDISC, 0);
        m.header(&TcMsg::default());
        self.dump_of(
            &m,
            || "list qdiscs".into(),
            RTM_NEWQDISC,
            parse_qdisc,
            |q| !matches!(index, Some(i) if i != q.index),
        )
    }

    /// Adds a filter on `parent` of link `index` matching every packet and
    /// redirecting it to the egress of link `target` (`tc filter add dev X
    /// parent ffff: protocol all prio PRIO u32 match u32 0 0 action mirred
    /// egress redirect dev TARGET`).
    pub fn add_redirect_filter(&self, index: u32, redirect: &Redirect) -> Result<()> {
        let Redirect {
            parent,
            prio,
            matcher,
            target,
        } = *redirect;
        let mut m = MessageBuilder::new(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL);
        let mut hdr = tcmsg(index, parent, 0);
        hdr.info = (u32::from(prio) << 16) | u32::from(ETH_P_ALL.to_be());
        m.header(&hdr);
        let (kind, act_attr) = match matcher {
            RedirectMatch::U32 => ("u32", TCA_U32_ACT),
            RedirectMatch::Matchall => ("matchall", TCA_MATCHALL_ACT),
        };
        m.attr_str(TCA_KIND, kind);
        let opts = m.nest_raw(TCA_OPTIONS);
        if matcher == RedirectMatch::U32 {
            m.attr(TCA_U32_SEL, &u32_match_all_sel());
        }
        let acts = m.nest_raw(act_attr);
        let act = m.nest_raw(1); // first action in the list
        m.attr_str(TCA_ACT_KIND, "mirred");
        let aopts = m.nest_raw(TCA_ACT_OPTIONS);
        let mirred = TcMirred {
            action: TC_ACT_STOLEN,
            eaction: TCA_EGRESS_REDIR,
            ifindex: target,
            ..Default::default()
        };
        m.attr(TCA_MIRRED_PARMS, mirred.as_bytes());
        m.end_nest(aopts);
        m.end_nest(act);
        m.end_nest(acts);
        m.end_nest(opts);
        self.exec(&m, || {
            format!("add {kind} redirect filter on link #{index} to link #{target}")
        })
        .map(drop)
    }

    /// Filters attached to `parent` of link `index`.
    pub fn filters(&self, index: u32, parent: u32) -> Result<Vec<Filter>> {
        let mut m = MessageBuilder::new(RTM_GETTFILTER, 0);
        m.header(&tcmsg(index, parent, 0));
        let msgs = self.dump_as(&m, || format!("list filters on link #{index}"))?;
        Ok(msgs
            .iter()
            .filter(|m| m.ty == RTM_NEWTFILTER)
            .filter_map(|m| {
                let h = TcMsg::from_bytes(&m.payload)?;
                let kind = Attrs::after_header(&m.payload, std::mem::size_of::<TcMsg>())
                    .get(TCA_KIND)
                    .map(|a| a.string())
                    .unwrap_or_default();
                Some(Filter {
                    index: u32::try_from(h.index).ok()?,
                    parent: h.parent,
                    handle: h.handle,
                    kind,
                    prio: (h.info >> 16) as u16,
                    protocol: u16::from_be((h.info & 0xffff) as u16),
                })
            })
            .collect())
    }
}

/// `struct tc_u32_sel` with one all-zero key: matches every packet.
fn u32_match_all_sel() -> Vec<u8> {
    let mut v = Vec::with_capacity(32);
    v.push(TC_U32_TERMINAL); // flags
    v.push(0); // offshift
    v.push(1); // nkeys
    v.push(0); // padding
    v.extend_from_slice(&0u16.to_be_bytes()); // offmask
    v.extend_from_slice(&0u16.to_ne_bytes()); // off
    v.extend_from_slice(&0i16.to_ne_bytes()); // offoff
    v.extend_from_slice(&0i16.to_ne_bytes()); // hoff
    v.extend_from_slice(&0u32.to_be_bytes()); // hmask
                                              // key: mask, val (big endian), off, offmask
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(&0i32.to_ne_bytes());
    v.extend_from_slice(&0i32.to_ne_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testns::{veth_up, TestNs};

    #[test]
    fn psched_parsing() {
        let p = Psched::parse("000003e8 00000040 000f4240 3b9aca00\n").expect("parse");
        assert_eq!(
            p,
            Psched {
                tick_in_usec: 15.625
            }
        );
        let ns = Psched::parse("000003e8 00000040 3b9aca00 3b9aca00").expect("parse");
        assert_eq!(ns.tick_in_usec, 1000.0);
        assert!(Psched::parse("garbage").is_none());
        // 1500 bytes at 1 MB/s take 1.5 ms = 23437 ticks of 64 ns.
        assert_eq!(p.xmit_ticks(1_000_000, 1500), 23437);
    }

    #[test]
    fn tbf_ingress_and_redirect() {
        let t = TestNs::new("tc");
        let s = t.sock();
        let (v0, _) = veth_up(&s, "v0", "v1");
        s.create_ifb("ifb0").expect("ifb");
        let ifb = s.link_by_name("ifb0").expect("get").expect("ifb0").index;
        s.set_link_up(ifb).expect("up");

        let tbf = Tbf::new(1_000_000, 10_000);
        s.add_tbf(ifb, handle(1, 0), &tbf, false).expect("tbf");
        let e = s.add_tbf(ifb, handle(1, 0), &tbf, false).expect_err("dup");
        assert!(e.is_exists(), "{e}");
        let q = s.qdiscs(Some(ifb)).expect("dump");
        let q = q.iter().find(|q| q.kind == "tbf").expect("tbf present");
        assert_eq!((q.handle, q.parent), (handle(1, 0), TC_H_ROOT));
        let info = q.tbf.expect("tbf info");
        assert_eq!(info.rate, 1_000_000);
        assert_eq!(info.limit, 1_000_000 * 25 / 1000 + 10_000);
        assert!(
            info.burst(&Psched::read()).abs_diff(10_000) <= 1,
            "{info:?}"
        );
        let j = t.tc(&["-j", "qdisc", "show", "dev", "ifb0"]);
        assert!(
            j.contains("\"kind\":\"tbf\",\"handle\":\"1:\",\"root\":true"),
            "{j}"
        );
        assert!(j.contains("\"rate\":1000000,\"burst\":10000"), "{j}");

        // 64-bit rate (80 Gbit/s) goes through TCA_TBF_RATE64.
        let fast = Tbf::new(10_000_000_000, 1_000_000);
        s.add_tbf(ifb, handle(1, 0), &fast, true)
            .expect("replace tbf");
        let q = s.qdiscs(Some(ifb)).expect("dump");
        let info = q.iter().find_map(|q| q.tbf).expect("tbf");
        assert_eq!(info.rate, 10_000_000_000);
        let j = t.tc(&["-j", "qdisc", "show", "dev", "ifb0"]);
        assert!(j.contains("\"rate\":10000000000"), "{j}");

        s.add_ingress_qdisc(v0).expect("ingress");
        s.add_redirect_filter(
            v0,
            &Redirect {
                parent: handle(0xffff, 0),
                prio: 1,
                matcher: RedirectMatch::U32,
                target: ifb,
            },
        )
        .expect("u32 redirect");
        let f = s.filters(v0, handle(0xffff, 0)).expect("filters");
        assert!(
            f.iter()
                .any(|f| f.kind == "u32" && f.prio == 1 && f.protocol == ETH_P_ALL),
            "{f:?}"
        );
        let j = t.tc(&["-j", "qdisc", "show", "dev", "v0"]);
        assert!(
            j.contains("\"kind\":\"ingress\",\"handle\":\"ffff:\""),
            "{j}"
        );
        let j = t.tc(&["-j", "filter", "show", "dev", "v0", "ingress"]);
        assert!(
            j.contains("\"mirred_action\":\"redirect\"") && j.contains("\"to_dev\":\"ifb0\""),
            "{j}"
        );

        assert!(s.del_ingress_qdisc(v0).expect("del ingress"));
        assert!(!s.del_ingress_qdisc(v0).expect("del ingress again"));
        assert!(s.del_root_qdisc(ifb).expect("del tbf"));
        assert!(!s.del_root_qdisc(ifb).expect("del tbf again"));
        assert!(s
            .qdiscs(Some(ifb))
            .expect("dump")
            .iter()
            .all(|q| q.kind != "tbf"));
    }

    #[test]
    fn clsact_and_matchall() {
        let t = TestNs::new("clsact");
        let s = t.sock();
        let (v0, v1) = veth_up(&s, "c0", "c1");
        s.add_clsact_qdisc(v0).expect("clsact");
        let j = t.tc(&["-j", "qdisc", "show", "dev", "c0"]);
        assert!(j.contains("\"kind\":\"clsact\""), "{j}");
        let parent = handle(0xffff, TC_H_MIN_INGRESS);
        s.add_redirect_filter(
            v0,
            &Redirect {
                parent,
                prio: 2,
                matcher: RedirectMatch::U32,
                target: v1,
            },
        )
        .expect("u32 on clsact");
        assert!(s.del_ingress_qdisc(v0).expect("del clsact"));
    }

    #[test]
    #[ignore = "VM lane: needs cls_matchall and sch_fq_codel; run by scripts/dev.sh vmtest"]
    fn matchall_and_fq_codel() {
        let t = TestNs::new("matchall");
        let s = t.sock();
        let (v0, v1) = veth_up(&s, "c0", "c1");
        s.add_clsact_qdisc(v0).expect("clsact");
        let parent = handle(0xffff, TC_H_MIN_INGRESS);
        s.add_redirect_filter(
            v0,
            &Redirect {
                parent,
                prio: 1,
                matcher: RedirectMatch::Matchall,
                target: v1,
            },
        )
        .expect("matchall");
        let f = s.filters(v0, parent).expect("filters");
        assert!(f.iter().any(|f| f.kind == "matchall"), "{f:?}");
        s.add_qdisc_with(v1, TC_H_ROOT, handle(1, 0), "fq_codel", false, |_| {})
            .expect("fq_codel");
        assert!(s
            .qdiscs(Some(v1))
            .expect("dump")
            .iter()
            .any(|q| q.kind == "fq_codel"));
    }
}
