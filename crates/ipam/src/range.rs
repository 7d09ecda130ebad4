//! Address ranges and range sets: parsing, defaults, validation, overlap and
//! iteration, with the semantics of the reference host-local allocator.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One range as written in a configuration (`ranges[i][j]`, the legacy
/// top-level fields, or runtimeConfig `ipRanges`). Values stay strings until
/// [`Range::from_config`] so that a bad value is an "invalid config" error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeConfig {
    /// Subnet in CIDR form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// First address to hand out (default: the subnet's first usable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_start: Option<String>,
    /// Last address to hand out (default: the subnet's last usable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_end: Option<String>,
    /// Gateway (default: the subnet's first address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// A canonical range: every field filled in and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// The subnet, host bits cleared.
    pub subnet: IpNet,
    /// First allocatable address (inclusive).
    pub range_start: IpAddr,
    /// Last allocatable address (inclusive).
    pub range_end: IpAddr,
    /// Gateway, never handed out.
    pub gateway: IpAddr,
}

/// Parse an IP as written plainly, like Go's net.ParseIP: no surrounding
/// spaces and no leading zeros in an IPv4 octet (std's parser refuses
/// those); IPv4-mapped IPv6 addresses become IPv4.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// Parse "address/prefix" strictly: the address as [`parse_ip`] (not
/// canonicalised), the prefix plain decimal digits without leading zeros.
/// (ipnet's own parser accepts `010.001.000.000/24`.)
pub fn parse_net(s: &str) -> Option<IpNet> {
    let (addr, prefix) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let plain = !prefix.is_empty()
        && prefix.len() <= 3
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && (prefix == "0" || !prefix.starts_with('0'));
    if !plain {
        return None;
    }
    IpNet::new(addr, prefix.parse().ok()?).ok()
}

/// Parse "a.b.c.d/n" or a plain address; returns the address part. Spaces
/// around the whole item are allowed (list items such as CNI_ARGS `IP=`).
pub fn parse_ip_or_cidr(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    match s.split_once('/') {
        Some(_) => parse_net(s).map(|n| n.addr().to_canonical()),
        None => parse_ip(s),
    }
}

fn opt_ip(field: &str, value: &Option<String>) -> Result<Option<IpAddr>> {
    match value.as_deref() {
        // Go's net.IP treats an empty string as "not set".
        None | Some("") => Ok(None),
        Some(s) => parse_ip(s).map(Some).ok_or_else(|| {
            Error::InvalidConfig(format!("invalid {field} {s:?}: not an IP address"))
        }),
    }
}

pub(crate) fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

pub(crate) fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

impl Range {
    /// Fill defaults and validate, like the reference's Range.Canonicalize:
    /// gateway = network + 1, rangeStart = network + 1, rangeEnd = last
    /// address (IPv4: broadcast − 1). /31, /32, /127 and /128 are refused.
    pub fn from_config(cfg: &RangeConfig) -> Result<Range> {
        let subnet_str = cfg
            .subnet
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::InvalidConfig("range has no subnet".into()))?;
        let parsed: IpNet = parse_net(subnet_str)
            .ok_or_else(|| Error::InvalidConfig(format!("invalid subnet {subnet_str:?}")))?;
        if canonical_net(parsed).prefix_len() == 0 {
            return Err(Error::InvalidConfig(format!(
                "invalid subnet {subnet_str:?}: a /0 network cannot be a range"
            )));
        }
        if parsed.trunc() != parsed {
            // As the reference (range.go) refuses it, with its wording.
            return Err(Error::InvalidConfig(format!(
                "Network has host bits set. For a subnet mask of length {} the network address is {}",
                parsed.prefix_len(),
                parsed.network()
            )));
        }
        let subnet = canonical_net(parsed);
        if subnet.prefix_len() + 2 > subnet.max_prefix_len() {
            return Err(Error::InvalidConfig(format!(
                "network {subnet} too small to allocate from"
            )));
        }
        let v4 = matches!(subnet, IpNet::V4(_));
        let net = to_u128(subnet.network());
        let last = to_u128(subnet.broadcast());

        let in_subnet = |what: &str, ip: IpAddr| -> Result<IpAddr> {
            if ip.is_ipv4() != v4 {
                return Err(Error::InvalidConfig(format!(
                    "{what} {ip} is not the same protocol as subnet {subnet}"
                )));
            }
            if !subnet.contains(&ip) {
                return Err(Error::InvalidConfig(format!(
                    "{what} {ip} not in network {subnet}"
                )));
            }
            Ok(ip)
        };

        // A gateway outside the subnet is allowed (the reference dropped
        // that check for routed setups); only its family must match.
        let gateway = match opt_ip("gateway", &cfg.gateway)? {
            Some(gw) if gw.is_ipv4() != v4 => {
                return Err(Error::InvalidConfig(format!(
                    "gateway {gw} is not the same protocol as subnet {subnet}"
                )))
            }
            Some(gw) => gw,
            None => from_u128(net + 1, v4),
        };
        let range_start = match opt_ip("rangeStart", &cfg.range_start)? {
            Some(ip) => in_subnet("rangeStart", ip)?,
            None => from_u128(net + 1, v4),
        };
        let range_end = match opt_ip("rangeEnd", &cfg.range_end)? {
            Some(ip) => in_subnet("rangeEnd", ip)?,
            None => from_u128(if v4 { last - 1 } else { last }, v4),
        };
        if to_u128(range_start) > to_u128(range_end) {
            return Err(Error::InvalidConfig(format!(
                "rangeStart {range_start} is after rangeEnd {range_end} in network {subnet}"
            )));
        }
        Ok(Range {
            subnet,
            range_start,
            range_end,
            gateway,
        })
    }

    /// True for an IPv4 range.
    pub fn is_ipv4(&self) -> bool {
        matches!(self.subnet, IpNet::V4(_))
    }

    /// True when `ip` lies in the subnet and between start and end.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if ip.is_ipv4() != self.is_ipv4() || !self.subnet.contains(&ip) {
            return false;
        }
        let v = to_u128(ip);
        v >= to_u128(self.range_start) && v <= to_u128(self.range_end)
    }

    /// True when the two ranges share at least one address.
    pub fn overlaps(&self, other: &Range) -> bool {
        if self.is_ipv4() != other.is_ipv4() {
            return false;
        }
        to_u128(self.range_start) <= to_u128(other.range_end)
            && to_u128(other.range_start) <= to_u128(self.range_end)
    }

    /// Whether the allocator may hand out `ip` (inside the range and not the
    /// gateway, the network address or the IPv4 broadcast address).
    pub fn is_allocatable(&self, ip: IpAddr) -> bool {
        self.contains(ip)
            && ip != self.gateway
            && ip != self.subnet.network()
            && !(self.is_ipv4() && ip == self.subnet.broadcast())
    }

    /// Number of addresses the allocator may hand out from this range.
    pub fn capacity(&self) -> u128 {
        let s = to_u128(self.range_start);
        let e = to_u128(self.range_end);
        let mut n = e - s + 1;
        let mut excluded = vec![self.gateway, self.subnet.network()];
        if self.is_ipv4() {
            excluded.push(self.subnet.broadcast());
        }
        excluded.sort();
        excluded.dedup();
        for ip in excluded {
            if self.contains(ip) {
                n -= 1;
            }
        }
        n
    }
}

fn canonical_net(n: IpNet) -> IpNet {
    if let IpNet::V6(v6) = n {
        if let Some(v4) = v6.addr().to_ipv4_mapped() {
            if v6.prefix_len() >= 96 {
                if let Ok(net) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96) {
                    return IpNet::V4(net);
                }
            }
        }
    }
    n
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.range_start, self.range_end)
    }
}

/// A list of ranges of one family; one address is allocated per range set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

impl RangeSet {
    /// Canonicalise every range, refuse an empty set, mixed families and
    /// overlapping ranges.
    pub fn from_config(cfgs: &[RangeConfig]) -> Result<RangeSet> {
        if cfgs.is_empty() {
            return Err(Error::InvalidConfig("empty range set".into()));
        }
        let ranges = cfgs
            .iter()
            .map(Range::from_config)
            .collect::<Result<Vec<_>>>()?;
        let v4 = ranges[0].is_ipv4();
        if ranges.iter().any(|r| r.is_ipv4() != v4) {
            return Err(Error::InvalidConfig("mixed address families".into()));
        }
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                if a.overlaps(b) {
                    return Err(Error::InvalidConfig(format!("subnets {a} and {b} overlap")));
                }
            }
        }
        Ok(RangeSet(ranges))
    }

    /// The ranges, in configuration order.
    pub fn ranges(&self) -> &[Range] {
        &self.0
    }

    /// True when the set holds IPv4 ranges.
    pub fn is_ipv4(&self) -> bool {
        self.0.first().is_some_and(Range::is_ipv4)
    }

    /// The range holding `ip`, if any.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        let ip = ip.to_canonical();
        self.0.iter().find(|r| r.contains(ip))
    }

    /// True when some range of the set holds `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    /// True when some range of `self` overlaps one of `other`.
    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.0.iter().any(|a| other.0.iter().any(|b| a.overlaps(b)))
    }

    /// Total number of allocatable addresses.
    pub fn capacity(&self) -> u128 {
        self.0
            .iter()
            .fold(0u128, |acc, r| acc.saturating_add(r.capacity()))
    }

    /// Candidate addresses in round-robin order: starting right after
    /// `last` when it lies in the set (else at the first range's start),
    /// walking each range to its end and wrapping to the next range, visiting
    /// every address once. Gateways, network and broadcast addresses are
    /// skipped.
    pub fn candidates(&self, last: Option<IpAddr>) -> Candidates<'_> {
        let (idx, next) = match last.and_then(|ip| {
            self.0
                .iter()
                .position(|r| r.contains(ip))
                .map(|i| (i, to_u128(ip)))
        }) {
            Some((i, v)) if v == to_u128(self.0[i].range_end) => {
                let j = (i + 1) % self.0.len();
                (j, to_u128(self.0[j].range_start))
            }
            Some((i, v)) => (i, v + 1),
            None => (0, self.0.first().map_or(0, |r| to_u128(r.range_start))),
        };
        Candidates {
            set: self,
            idx,
            next,
            remaining: self.0.iter().fold(0u128, |acc, r| {
                acc.saturating_add(to_u128(r.range_end) - to_u128(r.range_start) + 1)
            }),
        }
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Iterator returned by [`RangeSet::candidates`]: yields (address, range).
pub struct Candidates<'a> {
    set: &'a RangeSet,
    idx: usize,
    next: u128,
    remaining: u128,
}

impl Candidates<'_> {
    /// Skips the `n` addresses that follow the one just returned, as far
    /// as they lie in the same range (never across a range's end, where
    /// the walk continues in the next range); a walk over a run of taken
    /// addresses then costs one step. Returns how many were skipped.
    pub fn skip_following(&mut self, n: u128) -> u128 {
        let Some(r) = self.set.0.get(self.idx) else {
            return 0;
        };
        let (start, end) = (to_u128(r.range_start), to_u128(r.range_end));
        // Right after a wrap into the next range, `next` is its start and
        // the following addresses are not the ones the caller means.
        if self.next <= start || self.next > end {
            return 0;
        }
        let k = n.min(end - self.next + 1).min(self.remaining);
        self.remaining -= k;
        if self.next + k > end {
            self.idx = (self.idx + 1) % self.set.0.len();
            self.next = to_u128(self.set.0[self.idx].range_start);
        } else {
            self.next += k;
        }
        k
    }
}

impl<'a> Iterator for Candidates<'a> {
    type Item = (IpAddr, &'a Range);

    fn next(&mut self) -> Option<Self::Item> {
        while self.remaining > 0 {
            self.remaining -= 1;
            let r = &self.set.0[self.idx];
            let ip = from_u128(self.next, r.is_ipv4());
            if self.next >= to_u128(r.range_end) {
                self.idx = (self.idx + 1) % self.set.0.len();
                self.next = to_u128(self.set.0[self.idx].range_start);
            } else {
                self.next += 1;
            }
            if r.is_allocatable(ip) {
                return Some((ip, r));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(subnet: &str) -> RangeConfig {
        RangeConfig {
            subnet: Some(subnet.into()),
            ..Default::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Lax spellings are refused, each naming its field.
    #[test]
    fn refuses_lax_addresses_naming_the_field() {
        let cases: Vec<(RangeConfig, &str)> = vec![
            (rc("0.0.0.0/0"), "subnet"),
            (rc("::/0"), "subnet"),
            (rc("010.001.000.000/24"), "subnet"),
            (rc("10.1.0.0/024"), "subnet"),
            (rc(" 10.1.0.0/24"), "subnet"),
            (rc("10.1.0.0/24 "), "subnet"),
            (rc("10.1.0.0 /24"), "subnet"),
            (
                RangeConfig {
                    range_start: Some("10.1.0.010".into()),
                    ..rc("10.1.0.0/24")
                },
                "rangeStart",
            ),
            (
                RangeConfig {
                    range_end: Some(" 10.1.0.20".into()),
                    ..rc("10.1.0.0/24")
                },
                "rangeEnd",
            ),
            (
                RangeConfig {
                    gateway: Some("10.1.0.1 ".into()),
                    ..rc("10.1.0.0/24")
                },
                "gateway",
            ),
        ];
        for (cfg, field) in cases {
            match Range::from_config(&cfg) {
                Err(Error::InvalidConfig(m)) => assert!(m.contains(field), "{cfg:?}: {m}"),
                other => panic!("{cfg:?}: want an invalid-config error, got {other:?}"),
            }
        }
        // The plain spellings still work.
        assert!(Range::from_config(&rc("10.0.0.0/8")).is_ok());
        assert!(Range::from_config(&rc("2001:db8::/64")).is_ok());
        assert!(Range::from_config(&rc("::ffff:10.1.0.0/120")).is_ok());
    }

    #[test]
    fn defaults_v4() {
        let r = Range::from_config(&rc("10.1.2.0/24")).unwrap();
        assert_eq!(r.subnet.to_string(), "10.1.2.0/24");
        assert_eq!(r.gateway, ip("10.1.2.1"));
        assert_eq!(r.range_start, ip("10.1.2.1"));
        assert_eq!(r.range_end, ip("10.1.2.254"));
        assert_eq!(r.capacity(), 253);
    }

    #[test]
    fn defaults_v6() {
        let r = Range::from_config(&rc("2001:db8::/120")).unwrap();
        assert_eq!(r.gateway, ip("2001:db8::1"));
        assert_eq!(r.range_start, ip("2001:db8::1"));
        assert_eq!(r.range_end, ip("2001:db8::ff"));
        // all but the network address and the gateway
        assert_eq!(r.capacity(), 254);
    }

    #[test]
    fn explicit_fields() {
        let r = Range::from_config(&RangeConfig {
            subnet: Some("10.10.0.0/16".into()),
            range_start: Some("10.10.1.20".into()),
            range_end: Some("10.10.3.50".into()),
            gateway: Some("10.10.0.254".into()),
        })
        .unwrap();
        assert_eq!(r.range_start, ip("10.10.1.20"));
        assert_eq!(r.range_end, ip("10.10.3.50"));
        assert_eq!(r.gateway, ip("10.10.0.254"));
        assert!(r.contains(ip("10.10.1.20")));
        assert!(!r.contains(ip("10.10.1.19")));
        assert!(!r.contains(ip("10.10.3.51")));
        assert!(!r.contains(ip("2001:db8::1")));
    }

    #[test]
    fn gateway_outside_the_subnet_is_kept() {
        let r = Range::from_config(&RangeConfig {
            gateway: Some("10.9.9.1".into()),
            ..rc("10.1.2.0/24")
        })
        .unwrap();
        assert_eq!(r.gateway, ip("10.9.9.1"));
        assert_eq!(r.range_start, ip("10.1.2.1"));
    }

    #[test]
    fn empty_strings_mean_unset() {
        let r = Range::from_config(&RangeConfig {
            subnet: Some("10.0.0.0/30".into()),
            gateway: Some("".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.gateway, ip("10.0.0.1"));
        assert_eq!(r.range_end, ip("10.0.0.2"));
    }

    #[test]
    fn refusals() {
        for (cfg, what) in [
            (rc("10.0.0.0/31"), "too small"),
            (rc("10.0.0.0/32"), "too small"),
            (rc("2001:db8::/127"), "too small"),
            (rc("bogus"), "invalid subnet"),
            (RangeConfig::default(), "no subnet"),
            (rc("10.1.2.5/24"), "host bits set"),
            (
                RangeConfig {
                    gateway: Some("2001:db8::1".into()),
                    ..rc("10.0.0.0/24")
                },
                "not the same protocol",
            ),
            (
                RangeConfig {
                    range_start: Some("10.0.1.1".into()),
                    ..rc("10.0.0.0/24")
                },
                "not in network",
            ),
            (
                RangeConfig {
                    range_end: Some("2001:db8::1".into()),
                    ..rc("10.0.0.0/24")
                },
                "not the same protocol",
            ),
            (
                RangeConfig {
                    range_start: Some("10.0.0.9".into()),
                    range_end: Some("10.0.0.5".into()),
                    ..rc("10.0.0.0/24")
                },
                "after rangeEnd",
            ),
            (
                RangeConfig {
                    gateway: Some("x".into()),
                    ..rc("10.0.0.0/24")
                },
                "not an IP",
            ),
        ] {
            let e = Range::from_config(&cfg).unwrap_err();
            assert_eq!(e.code(), 7);
            assert!(e.to_string().contains(what), "{e} !~ {what}");
        }
    }

    #[test]
    fn set_refusals() {
        assert!(RangeSet::from_config(&[]).is_err());
        let e = RangeSet::from_config(&[rc("10.0.0.0/24"), rc("2001:db8::/64")]).unwrap_err();
        assert!(e.to_string().contains("mixed"));
        let e = RangeSet::from_config(&[rc("10.0.0.0/16"), rc("10.0.5.0/24")]).unwrap_err();
        assert!(e.to_string().contains("overlap"));
        let ok = RangeSet::from_config(&[rc("10.0.0.0/24"), rc("10.0.1.0/24")]).unwrap();
        assert_eq!(ok.capacity(), 506);
    }

    #[test]
    fn candidates_skip_stays_inside_the_range() {
        let set = RangeSet::from_config(&[rc("10.0.0.0/29"), rc("10.0.1.0/30")]).unwrap();
        let mut c = set.candidates(None);
        assert_eq!(c.next().unwrap().0, ip("10.0.0.2"));
        // .3 .. .6 are the rest of the first range; a longer run stops there.
        assert_eq!(c.skip_following(100), 4);
        assert_eq!(c.next().unwrap().0, ip("10.0.1.2"));
        assert!(c.next().is_none());
        // Just wrapped from the range's end to its start: nothing skipped.
        let one = RangeSet::from_config(&[rc("10.0.0.0/29")]).unwrap();
        let mut c = one.candidates(Some(ip("10.0.0.5")));
        assert_eq!(c.next().unwrap().0, ip("10.0.0.6"));
        assert_eq!(c.skip_following(3), 0);
        assert_eq!(c.next().unwrap().0, ip("10.0.0.2"));
        assert_eq!(c.skip_following(2), 2);
        assert_eq!(c.next().unwrap().0, ip("10.0.0.5"));
        assert!(c.next().is_none());
    }

    #[test]
    fn candidates_round_robin_and_wrap() {
        let set = RangeSet::from_config(&[rc("10.0.0.0/29"), rc("10.0.1.0/30")]).unwrap();
        let all: Vec<_> = set.candidates(None).map(|(a, _)| a.to_string()).collect();
        assert_eq!(
            all,
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.1.2"]
        );
        let from: Vec<_> = set
            .candidates(Some(ip("10.0.0.5")))
            .map(|(a, _)| a.to_string())
            .collect();
        assert_eq!(
            from,
            ["10.0.0.6", "10.0.1.2", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]
        );
        // last reserved outside the set: start from the beginning
        let n = set.candidates(Some(ip("192.168.0.1"))).count();
        assert_eq!(n, 6);
        assert_eq!(set.capacity(), 6);
    }

    #[test]
    fn explicit_start_at_network_is_skipped() {
        let set = RangeSet::from_config(&[RangeConfig {
            range_start: Some("10.0.0.0".into()),
            range_end: Some("10.0.0.7".into()),
            gateway: Some("10.0.0.3".into()),
            ..rc("10.0.0.0/29")
        }])
        .unwrap();
        let all: Vec<_> = set.candidates(None).map(|(a, _)| a.to_string()).collect();
        assert_eq!(
            all,
            ["10.0.0.1", "10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
        assert_eq!(set.capacity(), 5);
    }

    #[test]
    fn overlap_between_sets() {
        let a = RangeSet::from_config(&[rc("10.0.0.0/24")]).unwrap();
        let b = RangeSet::from_config(&[rc("10.0.0.128/25")]).unwrap();
        let c = RangeSet::from_config(&[rc("2001:db8::/64")]).unwrap();
        assert!(a.overlaps(&b));
        assert!(!a.overlaps(&c));
    }

    #[test]
    fn parse_helpers() {
        assert_eq!(parse_ip_or_cidr("10.0.0.5/24"), Some(ip("10.0.0.5")));
        assert_eq!(parse_ip_or_cidr(" 10.0.0.5 "), Some(ip("10.0.0.5")));
        assert_eq!(parse_ip("::ffff:10.0.0.5"), Some(ip("10.0.0.5")));
        assert_eq!(parse_ip_or_cidr("nope"), None);
    }
}
