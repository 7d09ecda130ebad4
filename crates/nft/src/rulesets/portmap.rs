//! Host port mappings (the portmap plugin's firewall side).
//!
//! Everything lives in table `inet rcni-portmap`, created once with all its
//! chains, maps and rules in one transaction. A container's mappings are
//! only **map and set elements**, so adding one costs one transaction whose
//! size depends on that container's mappings alone, never on how many ports
//! are mapped on the node (the reference adds chains and rules per
//! container and pays for every iptables rule on each call).
//!
//! ```text
//! map hostip4  { ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service }  # hostIP given
//! map any4     { inet_proto . inet_service : ipv4_addr . inet_service }              # any local address
//! map hostip6 / any6                                                                  # the same for IPv6
//! set snat4    { ipv4_addr . inet_proto . inet_service }       # pod . proto . podPort   (localhost SNAT)
//! set hairpin4 { ipv4_addr . ipv4_addr . inet_proto . inet_service }  # pod . pod . proto . podPort
//! set hairpin6 { ... } , set masqall4 / masqall6 { addr . inet_proto . inet_service }
//! set podlink4 { iface_index . ipv4_addr . inet_proto . inet_service }  # link to pod . pod . proto . podPort
//! set podlink6 { ... }
//!
//! chain dnat        { dnat ip to ip daddr . meta l4proto . th dport map @hostip4
//!                     dnat ip to meta l4proto . th dport map @any4   (and ip6) }
//! chain prerouting  { type nat hook prerouting priority dstnat; fib daddr type local jump dnat }
//! chain output      { type nat hook output priority dstnat;     fib daddr type local jump dnat }
//! chain postrouting { type nat hook postrouting priority srcnat;
//!                     ct status dnat ip daddr . meta l4proto . th dport @masqall4 masquerade
//!                     ct status dnat ip saddr 127.0.0.0/8 ip daddr . meta l4proto . th dport @snat4 masquerade
//!                     ct status dnat ip saddr . ip daddr . meta l4proto . th dport @hairpin4 masquerade
//!                     ct status dnat meta iif . ip daddr . meta l4proto . th dport @podlink4 masquerade  (and ip6) }
//! ```
//!
//! Semantics of the reference plugin's options:
//! - `snat` (default true): hairpin traffic (a pod reaching its own host
//!   port, or another pod reaching it from the link that leads to it: the
//!   reference masquerades every source of the pod's subnet) and traffic
//!   from the node's `127.0.0.0/8` are masqueraded (elements in
//!   `hairpin*`, `podlink*` and `snat4`). Without it, a pod on the same
//!   bridge would get the answer straight from the pod it reached, past
//!   the node's conntrack, unless `br_netfilter` sends bridged traffic
//!   through it. Connections from localhost also
//!   need `net.ipv4.conf.<host interface>.route_localnet=1`, which the
//!   plugin sets (a sysctl, not a firewall rule). IPv6 has no localhost
//!   case, as in the reference.
//! - `masqAll`: every connection to the mapped port is masqueraded.
//! - `markMasqBit` / `externalSetMarkChain`: the reference marks packets in
//!   one chain and masquerades marked packets in another. Here the decision
//!   is taken on conntrack's DNAT status and the sets above, so no mark bit
//!   is used; the plugin accepts `markMasqBit` for compatibility.
//!
//! Every element carries the comment `rcni:<network>:<containerID>:<ifname>`
//! so DEL and GC find a container's elements without any other state.

use std::net::IpAddr;

use crate::expr::{ct_status, Expr, MetaKey, NatKind, PayloadBase, Reg};
use crate::ident::comment_tags;
use crate::list::ElemInfo;
use crate::rule::{IpVersion, Rule, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};
use crate::{
    priority, Batch, Chain, ChainType, DataType, Element, Error, Family, Hook, Nft, Result,
    SetName, SetSpec, Value,
};

mod cond;
pub use cond::{
    add_conditional, conditional_rule, count_conditional, gc_conditional, remove_conditional,
    Condition, COND_CHAIN,
};

/// The table portmap owns (family `inet`).
pub const TABLE: &str = "rcni-portmap";
const PREFIX: &str = "rcni:";

/// Transport protocol of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => IPPROTO_TCP,
            Proto::Udp => IPPROTO_UDP,
            Proto::Sctp => IPPROTO_SCTP,
        }
    }
    /// The protocol of an IP protocol number.
    pub fn from_number(n: u8) -> Option<Proto> {
        match n {
            IPPROTO_TCP => Some(Proto::Tcp),
            IPPROTO_UDP => Some(Proto::Udp),
            IPPROTO_SCTP => Some(Proto::Sctp),
            _ => None,
        }
    }
    /// Parses "tcp"/"udp"/"sctp" (any case); the CNI default is tcp.
    pub fn parse(s: &str) -> Option<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "" | "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "sctp" => Some(Proto::Sctp),
            _ => None,
        }
    }
    /// The CNI spelling (`tcp`, `udp`, `sctp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// One host port forwarded to one pod address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mapping {
    /// The CNI network name.
    pub network: String,
    /// The container the mapping belongs to.
    pub container_id: String,
    /// The container's interface.
    pub ifname: String,
    /// Transport protocol.
    pub proto: Proto,
    /// Only traffic to this local address; `None`: any local address.
    pub host_ip: Option<IpAddr>,
    /// Port on the node.
    pub host_port: u16,
    /// The pod's address.
    pub pod_ip: IpAddr,
    /// Port in the pod.
    pub pod_port: u16,
}

impl Mapping {
    /// This mapping as [`list`] reports it: network and container id in
    /// their bounded comment forms (unchanged when short).
    pub fn as_listed(&self) -> Mapping {
        let (n, c) = comment_tags(&self.network, &self.container_id);
        Mapping {
            network: n.into_owned(),
            container_id: c.into_owned(),
            ..self.clone()
        }
    }
}

/// Per-call options (the plugin's config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Masquerade hairpin and localhost traffic (reference default: true).
    pub snat: bool,
    /// Masquerade every connection to the mapped ports.
    pub masq_all: bool,
    /// (pod address, index of the node's interface that routes to it, when
    /// the pod's network made that interface): with `snat`, connections
    /// entering through it to the pod's mapped ports are masqueraded (other
    /// pods on its bridge).
    pub pod_links: Vec<(IpAddr, u32)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            snat: true,
            masq_all: false,
            pod_links: Vec::new(),
        }
    }
}

/// The comment on every element of one attachment.
/// Long names are bounded (see [`crate::ident`]); every lookup compares
/// bounded forms.
pub fn comment(network: &str, container_id: &str, ifname: &str) -> String {
    let (n, c) = comment_tags(network, container_id);
    format!("{PREFIX}{n}:{c}:{ifname}")
}

pub(crate) fn parse_comment(c: &str) -> Option<(&str, &str, &str)> {
    let rest = c.strip_prefix(PREFIX)?;
    let mut it = rest.splitn(3, ':');
    Some((it.next()?, it.next()?, it.next()?))
}

fn v(ip: IpAddr) -> IpVersion {
    IpVersion::of(ip)
}

fn suffix(ver: IpVersion) -> &'static str {
    match ver {
        IpVersion::V4 => "4",
        IpVersion::V6 => "6",
    }
}

fn addr_type(ver: IpVersion) -> DataType {
    match ver {
        IpVersion::V4 => DataType::Ipv4Addr,
        IpVersion::V6 => DataType::Ipv6Addr,
    }
}

/// Number of 32-bit registers an address fills.
fn addr_regs(ver: IpVersion) -> u8 {
    match ver {
        IpVersion::V4 => 1,
        IpVersion::V6 => 4,
    }
}

const P: DataType = DataType::InetProto;
const S: DataType = DataType::InetService;

fn sets() -> Vec<SetSpec> {
    let mut out = Vec::new();
    for ver in [IpVersion::V4, IpVersion::V6] {
        let a = addr_type(ver);
        let x = suffix(ver);
        out.push(SetSpec::map(&format!("hostip{x}"), &[a, P, S], &[a, S]));
        out.push(SetSpec::map(&format!("any{x}"), &[P, S], &[a, S]));
        out.push(SetSpec::set(&format!("hairpin{x}"), &[a, a, P, S]));
        out.push(SetSpec::set(&format!("masqall{x}"), &[a, P, S]));
    }
    out.push(SetSpec::set("snat4", &[DataType::Ipv4Addr, P, S]));
    out.extend(podlink_sets());
    out
}

/// The sets added after the first release of the table: a table made by
/// an older rcni lacks them until [`upgrade_layout`] adds them.
fn podlink_sets() -> Vec<SetSpec> {
    [IpVersion::V4, IpVersion::V6]
        .into_iter()
        .map(|ver| {
            SetSpec::set(
                &format!("podlink{}", suffix(ver)),
                &[DataType::IfIndex, addr_type(ver), P, S],
            )
        })
        .collect()
}

/// `ct status dnat meta iif . daddr . meta l4proto . th dport @podlinkX
/// masquerade`.
fn podlink_rule(ver: IpVersion) -> Rule {
    let n = addr_regs(ver);
    let r = Rule::new()
        .nfproto(ver)
        .ct_status(ct_status::DNAT)
        .expr(Expr::Meta {
            key: MetaKey::Iif,
            dreg: Reg(0),
        })
        .expr(load_addr(ver, true, Reg(1)));
    load_proto_port(r, Reg(1 + n))
        .expr(Expr::Lookup {
            set: format!("podlink{}", suffix(ver)),
            sreg: Reg(0),
            dreg: None,
            invert: false,
        })
        .masquerade()
}

/// Adds what a table made by an older rcni lacks (the `podlink` sets and
/// their rules), in one transaction. Racing callers: the loser's EEXIST
/// means it is there.
fn upgrade_layout(nft: &Nft) -> Result<()> {
    match nft.set_elements(Family::Inet, TABLE, "podlink4") {
        Ok(_) => return Ok(()),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    let mut b = Batch::new();
    for s in podlink_sets() {
        b.create_set(Family::Inet, TABLE, &s);
    }
    for ver in [IpVersion::V4, IpVersion::V6] {
        b.add_rule(Family::Inet, TABLE, "postrouting", &podlink_rule(ver));
    }
    match nft.commit(&b) {
        Err(e) if e.is_exists() => Ok(()),
        other => other,
    }
}

fn load_addr(ver: IpVersion, dst: bool, reg: Reg) -> Expr {
    let (offset, len) = if dst { ver.daddr() } else { ver.saddr() };
    Expr::Payload {
        base: PayloadBase::Network,
        offset,
        len,
        dreg: reg,
    }
}

fn load_proto_port(r: Rule, at: Reg) -> Rule {
    r.expr(Expr::Meta {
        key: MetaKey::L4Proto,
        dreg: at,
    })
    .expr(Expr::Payload {
        base: PayloadBase::Transport,
        offset: 2,
        len: 2,
        dreg: at.offset(1),
    })
}

/// `dnat to [daddr .] meta l4proto . th dport map @MAP`.
fn dnat_rule(ver: IpVersion, with_addr: bool) -> Rule {
    let n = addr_regs(ver);
    let mut r = Rule::new().nfproto(ver);
    let map = if with_addr {
        r = r.expr(load_addr(ver, true, Reg(0)));
        r = load_proto_port(r, Reg(n));
        format!("hostip{}", suffix(ver))
    } else {
        r = load_proto_port(r, Reg(0));
        format!("any{}", suffix(ver))
    };
    r.expr(Expr::Lookup {
        set: map,
        sreg: Reg(0),
        dreg: Some(Reg(0)),
        invert: false,
    })
    .expr(Expr::Nat {
        kind: NatKind::Dnat,
        family: ver.nat_family(),
        addr: Some(Reg(0)),
        proto: Some(Reg(n)),
    })
}

/// `ct status dnat` + key loads + `@set masquerade`.
fn masq_rule(ver: IpVersion, set: &str, saddr_too: bool, localhost: bool) -> Rule {
    let n = addr_regs(ver);
    let mut r = Rule::new().nfproto(ver).ct_status(ct_status::DNAT);
    if localhost {
        r = r.saddr(ipnet::IpNet::V4(ipnet::Ipv4Net::new_assert(
            std::net::Ipv4Addr::new(127, 0, 0, 0),
            8,
        )));
    }
    let mut next = Reg(0);
    if saddr_too {
        r = r.expr(load_addr(ver, false, next));
        next = next.offset(n);
    }
    r = r.expr(load_addr(ver, true, next));
    next = next.offset(n);
    r = load_proto_port(r, next);
    r.expr(Expr::Lookup {
        set: set.to_string(),
        sreg: Reg(0),
        dreg: None,
        invert: false,
    })
    .masquerade()
}

/// The whole table layout (without elements) into `b`.
fn layout(b: &mut Batch) {
    let f = Family::Inet;
    b.create_table(f, TABLE);
    for s in sets() {
        b.add_set(f, TABLE, &s);
    }
    b.add_chain(f, TABLE, &Chain::regular("dnat"));
    for ver in [IpVersion::V4, IpVersion::V6] {
        b.add_rule(f, TABLE, "dnat", &dnat_rule(ver, true));
        b.add_rule(f, TABLE, "dnat", &dnat_rule(ver, false));
    }
    for (name, hook) in [("prerouting", Hook::Prerouting), ("output", Hook::Output)] {
        b.add_chain(
            f,
            TABLE,
            &Chain::base(name, ChainType::Nat, hook, priority::DSTNAT),
        );
        b.add_rule(f, TABLE, name, &Rule::new().daddr_local().jump("dnat"));
    }
    b.add_chain(
        f,
        TABLE,
        &Chain::base(
            "postrouting",
            ChainType::Nat,
            Hook::Postrouting,
            priority::SRCNAT,
        ),
    );
    for ver in [IpVersion::V4, IpVersion::V6] {
        let x = suffix(ver);
        b.add_rule(
            f,
            TABLE,
            "postrouting",
            &masq_rule(ver, &format!("masqall{x}"), false, false),
        );
        if ver == IpVersion::V4 {
            b.add_rule(
                f,
                TABLE,
                "postrouting",
                &masq_rule(ver, "snat4", false, true),
            );
        }
        b.add_rule(
            f,
            TABLE,
            "postrouting",
            &masq_rule(ver, &format!("hairpin{x}"), true, false),
        );
        b.add_rule(f, TABLE, "postrouting", &podlink_rule(ver));
    }
}

fn check(m: &Mapping) -> Result<()> {
    let bad = |detail: &str| {
        Err(Error::Invalid {
            what: format!(
                "port mapping {}/{} -> {}:{}",
                m.host_port,
                m.proto.as_str(),
                m.pod_ip,
                m.pod_port
            ),
            detail: detail.into(),
        })
    };
    for (what, s) in [
        ("network", &m.network),
        ("container id", &m.container_id),
        ("ifname", &m.ifname),
    ] {
        if s.is_empty() || s.contains(':') {
            return bad(&format!("{what} must be non-empty and without ':'"));
        }
    }
    if m.host_port == 0 || m.pod_port == 0 {
        return bad("ports must be 1-65535");
    }
    if let Some(h) = m.host_ip {
        if v(h) != v(m.pod_ip) {
            return bad("host IP and pod IP are of different families");
        }
    }
    Ok(())
}

/// Host IP as the maps see it: unspecified addresses mean "any".
fn host_ip(m: &Mapping) -> Option<IpAddr> {
    m.host_ip.filter(|h| !h.is_unspecified())
}

/// The elements of one mapping, as (set, element).
fn elements(m: &Mapping, opts: &Options) -> Vec<(String, Element)> {
    let ver = v(m.pod_ip);
    let x = suffix(ver);
    let c = comment(&m.network, &m.container_id, &m.ifname);
    let proto = Value::Proto(m.proto.number());
    let target = [Value::Ip(m.pod_ip), Value::Port(m.pod_port)];
    let mut out = Vec::new();
    let dnat = match host_ip(m) {
        Some(h) => (
            format!("hostip{x}"),
            Element::map(&[Value::Ip(h), proto, Value::Port(m.host_port)], &target),
        ),
        None => (
            format!("any{x}"),
            Element::map(&[proto, Value::Port(m.host_port)], &target),
        ),
    };
    out.push(dnat);
    let pod = [Value::Ip(m.pod_ip), proto, Value::Port(m.pod_port)];
    if opts.snat {
        let hp = [
            Value::Ip(m.pod_ip),
            Value::Ip(m.pod_ip),
            proto,
            Value::Port(m.pod_port),
        ];
        out.push((format!("hairpin{x}"), Element::new(&hp)));
        for (_, link) in opts.pod_links.iter().filter(|(ip, _)| *ip == m.pod_ip) {
            let pl = [
                Value::IfIndex(*link),
                Value::Ip(m.pod_ip),
                proto,
                Value::Port(m.pod_port),
            ];
            out.push((format!("podlink{x}"), Element::new(&pl)));
        }
        if ver == IpVersion::V4 {
            out.push(("snat4".to_string(), Element::new(&pod)));
        }
    }
    if opts.masq_all {
        out.push((format!("masqall{x}"), Element::new(&pod)));
    }
    out.into_iter()
        .map(|(s, e)| (s, e.comment(c.clone())))
        .collect()
}

/// Adds `mappings` (usually one container's) in one transaction; creates
/// the table on first use. Re-adding the same attachment's mappings is a
/// no-op. A key already held by another attachment — a host port mapped
/// elsewhere, or a pod address still claimed by a container that was never
/// deleted — fails the whole call (nothing is added) with an
/// [`Error::Invalid`] naming the ports: silently sharing it would let the
/// other attachment's DEL remove this one's mapping.
pub fn add(nft: &Nft, mappings: &[Mapping], opts: &Options) -> Result<()> {
    let mut per_set: Vec<(String, Vec<Element>)> = Vec::new();
    for m in mappings {
        check(m)?;
        for (set, e) in elements(m, opts) {
            match per_set.iter_mut().find(|(s, _)| *s == set) {
                Some((_, list)) if list.iter().any(|x| x.key == e.key) => {}
                Some((_, list)) => list.push(e),
                None => per_set.push((set, vec![e])),
            }
        }
    }
    let batch = |per_set: &[(String, Vec<Element>)], with_layout: bool| {
        let mut b = Batch::new();
        if with_layout {
            layout(&mut b);
        }
        for (set, list) in per_set.iter().filter(|(_, l)| !l.is_empty()) {
            b.create_elements(SetName::new(Family::Inet, TABLE, set), list);
        }
        b
    };
    for _ in 0..4 {
        let b = batch(&per_set, false);
        if b.is_empty() {
            return Ok(());
        }
        // Common case: the table exists and the keys are free; one
        // transaction of elements.
        match nft.commit(&b) {
            Ok(()) => return Ok(()),
            Err(e) if e.is_not_found() => match nft.commit(&batch(&per_set, true)) {
                // The table exists: someone else created it meanwhile, or
                // an older rcni made it without the newer sets. Go again
                // once those are there.
                Err(e) if e.is_exists() => {
                    upgrade_layout(nft)?;
                    continue;
                }
                other => return other,
            },
            Err(e) if e.is_exists() => reconcile(nft, &mut per_set, mappings)?,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Invalid {
        what: "host port mapping".into(),
        detail: "the port map kept changing; try again".into(),
    })
}

/// After EEXIST: drops the elements that already exist for the same
/// attachment with the same value; any key held otherwise is a conflict.
fn reconcile(
    nft: &Nft,
    per_set: &mut [(String, Vec<Element>)],
    mappings: &[Mapping],
) -> Result<()> {
    for (set, list) in per_set.iter_mut() {
        let existing = nft.set_elements(Family::Inet, TABLE, set)?;
        let mut keep = Vec::new();
        for e in list.drain(..) {
            match existing.iter().find(|x| x.key == e.key) {
                None => keep.push(e),
                Some(x) if x.comment == e.comment && x.data == e.data => {}
                Some(x) => {
                    let ports: Vec<String> = mappings
                        .iter()
                        .map(|m| format!("{}/{}", m.host_port, m.proto.as_str()))
                        .collect();
                    return Err(Error::Invalid {
                        what: format!("host port mapping {}", ports.join(", ")),
                        detail: format!(
                            "already taken in set \"{set}\" by {}",
                            x.comment.as_deref().unwrap_or("an uncommented element")
                        ),
                    });
                }
            }
        }
        *list = keep;
    }
    Ok(())
}

/// Every element of the table, per set.
fn dump(nft: &Nft) -> Result<Vec<(String, Vec<ElemInfo>)>> {
    let mut out = Vec::new();
    for s in sets() {
        match nft.set_elements(Family::Inet, TABLE, &s.name) {
            Ok(e) => out.push((s.name, e)),
            // No table at all, or one made by an older rcni without this
            // set: its other sets still count.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Removes the elements of attachments for which `gone` says true, in one
/// transaction; returns how many elements were removed.
fn remove_where(nft: &Nft, gone: impl Fn(&str, &str, &str) -> bool) -> Result<usize> {
    let mut b = Batch::new();
    let mut n = 0;
    for (set, elems) in dump(nft)? {
        let doomed: Vec<Element> = elems
            .into_iter()
            .filter(|e| {
                e.comment
                    .as_deref()
                    .and_then(parse_comment)
                    .is_some_and(|(net, id, ifn)| gone(net, id, ifn))
            })
            .map(|e| Element {
                key: e.key,
                data: None,
                comment: None,
            })
            .collect();
        if !doomed.is_empty() {
            n += doomed.len();
            b.del_elements(SetName::new(Family::Inet, TABLE, &set), &doomed);
        }
    }
    nft.commit(&b)?;
    Ok(n)
}

/// Removes every mapping of one attachment. Succeeds when there is none
/// (also without the table).
pub fn remove_container(
    nft: &Nft,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Result<usize> {
    remove_where(nft, attachment_matcher(network, container_id, ifname))
}

/// Matches the comment tags (network, container id, ifname) of one
/// attachment, in the bounded form comments carry.
pub(super) fn attachment_matcher(
    network: &str,
    container_id: &str,
    ifname: &str,
) -> impl Fn(&str, &str, &str) -> bool {
    let (network, container_id) = comment_tags(network, container_id);
    let (network, container_id, ifname) = (
        network.into_owned(),
        container_id.into_owned(),
        ifname.to_string(),
    );
    move |n, c, i| n == network && c == container_id && i == ifname
}

/// Matches the comment tags of `network`'s attachments that are not in
/// `keep` (GC).
pub(super) fn stale_matcher(
    network: &str,
    keep: &[(String, String)],
) -> impl Fn(&str, &str, &str) -> bool {
    let network = comment_tags(network, "").0.into_owned();
    let keep: Vec<(String, String)> = keep
        .iter()
        .map(|(c, i)| (comment_tags("", c).1.into_owned(), i.clone()))
        .collect();
    move |n, c, i| n == network && !keep.iter().any(|(kc, ki)| kc == c && ki == i)
}

/// GC: removes the mappings of `network` whose (container id, ifname) is
/// not in `keep`.
pub fn gc(nft: &Nft, network: &str, keep: &[(String, String)]) -> Result<usize> {
    remove_where(nft, stale_matcher(network, keep))
}

/// Every mapping, reconstructed from the DNAT maps (long network names and
/// container ids in their bounded form, see [`Mapping::as_listed`]).
pub fn list(nft: &Nft) -> Result<Vec<Mapping>> {
    let mut out = Vec::new();
    for (set, elems) in dump(nft)? {
        let (ver, with_addr) = match set.as_str() {
            "hostip4" => (IpVersion::V4, true),
            "any4" => (IpVersion::V4, false),
            "hostip6" => (IpVersion::V6, true),
            "any6" => (IpVersion::V6, false),
            _ => continue,
        };
        let alen = if ver == IpVersion::V4 { 4 } else { 16 };
        for e in elems {
            if let Some(m) = decode(&e, alen, with_addr) {
                out.push(m);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn ip_from(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

fn port_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn decode(e: &ElemInfo, alen: usize, with_addr: bool) -> Option<Mapping> {
    let (net, id, ifname) = parse_comment(e.comment.as_deref()?)?;
    let k = &e.key;
    let (host_ip, rest) = if with_addr {
        (Some(ip_from(k.get(..alen)?)?), alen)
    } else {
        (None, 0)
    };
    let proto = Proto::from_number(*k.get(rest)?)?;
    let host_port = port_at(k, rest + 4)?;
    let d = e.data.as_deref()?;
    Some(Mapping {
        network: net.to_string(),
        container_id: id.to_string(),
        ifname: ifname.to_string(),
        proto,
        host_ip,
        host_port,
        pod_ip: ip_from(d.get(..alen)?)?,
        pod_port: port_at(d, alen)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_use_expected_registers() {
        let r = dnat_rule(IpVersion::V6, true);
        assert!(r.exprs.contains(&Expr::Nat {
            kind: NatKind::Dnat,
            family: crate::NatFamily::V6,
            addr: Some(Reg(0)),
            proto: Some(Reg(4)),
        }));
        let m = masq_rule(IpVersion::V4, "hairpin4", true, false);
        assert!(m.exprs.iter().any(|e| matches!(
            e,
            Expr::Payload {
                base: PayloadBase::Transport,
                dreg: Reg(3),
                ..
            }
        )));
    }

    #[test]
    fn comment_parse() {
        assert_eq!(
            parse_comment("rcni:net:abc:eth0"),
            Some(("net", "abc", "eth0"))
        );
        assert_eq!(parse_comment("x"), None);
    }
}
