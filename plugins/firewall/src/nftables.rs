//! The nftables backend: everything in table `inet rcni-firewall`, one
//! transaction per call, bound to the ruleset generation it was computed
//! from (a concurrent call makes it re-read and retry).
//!
//! ```text
//! table inet rcni-firewall {
//!   chain forward {                       # type filter hook forward priority filter; policy accept
//!     jump isolation                      comment "rcni-fw-base:isolation"
//!     jump admin                          comment "rcni-fw-base:admin"
//!     ip daddr POD ct state established,related accept   comment "rcni-fw:NET:CID:IF:POLICY:BR:in:POD"
//!     ip saddr POD accept                                 comment "rcni-fw:NET:CID:IF:POLICY:BR:out:POD"
//!   }
//!   chain isolation {                     # one pair per isolating bridge
//!     iifname BR oifname != BR jump isolation-out         comment "rcni-fw-iso:BR:from"
//!     iifname BR oifname BR drop                          comment "rcni-fw-iso:BR:self"  (isolated only)
//!   }
//!   chain isolation-out { oifname BR drop                 comment "rcni-fw-iso:BR:to" }
//!   chain admin { }                       # for the administrator's own rules
//! }
//! ```
//!
//! The per-bridge isolation rules live as long as some attachment with an
//! isolating policy on that bridge has rules (the reference never removes
//! them); DEL and GC drop them with the last such attachment.

use std::collections::BTreeSet;

use cni_spec::error::CniResult;
use cni_spec::Error;
use ipnet::IpNet;
use nft::expr::ct_state;
use nft::{
    priority, Batch, Chain, ChainInfo, ChainType, CmpOp, Expr, Family, Hook, MetaKey, Nft, Reg,
    Rule, RuleInfo,
};

use crate::tag::{Dir, Tag};
use crate::{Backend, Pod, Policy};

/// The plugin's own table (family `inet`).
pub const TABLE: &str = "rcni-firewall";
/// The base chain on the forward hook, holding the per-pod rules.
pub const FORWARD: &str = "forward";
/// Matches traffic leaving an isolating bridge for another interface.
pub const ISOLATION: &str = "isolation";
/// Drops that traffic when it goes out through an isolating bridge.
pub const ISOLATION_OUT: &str = "isolation-out";
/// Left empty for the administrator's own rules.
pub const ADMIN: &str = "admin";
const BASE_ISOLATION: &str = "rcni-fw-base:isolation";
const BASE_ADMIN: &str = "rcni-fw-base:admin";
const ISO_PREFIX: &str = "rcni-fw-iso:";
const F: Family = Family::Inet;
/// Attempts when the ruleset keeps changing under us.
const RETRIES: usize = 20;

/// Kinds of per-bridge isolation rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Iso {
    From,
    SelfDrop,
    To,
}

impl Iso {
    fn as_str(self) -> &'static str {
        match self {
            Iso::From => "from",
            Iso::SelfDrop => "self",
            Iso::To => "to",
        }
    }
    fn chain(self) -> &'static str {
        match self {
            Iso::To => ISOLATION_OUT,
            _ => ISOLATION,
        }
    }
    fn comment(self, bridge: &str) -> String {
        format!("{ISO_PREFIX}{bridge}:{}", self.as_str())
    }
    fn parse(c: &str) -> Option<(String, Iso)> {
        let (bridge, kind) = c.strip_prefix(ISO_PREFIX)?.rsplit_once(':')?;
        let kind = match kind {
            "from" => Iso::From,
            "self" => Iso::SelfDrop,
            "to" => Iso::To,
            _ => return None,
        };
        Some((bridge.to_string(), kind))
    }
    fn rule(self, bridge: &str) -> Rule {
        let r = match self {
            Iso::From => Rule::new()
                .iifname(bridge)
                .expr(Expr::Meta {
                    key: MetaKey::OifName,
                    dreg: Reg(0),
                })
                .expr(Expr::Cmp {
                    sreg: Reg(0),
                    op: CmpOp::Neq,
                    data: ifname_bytes(bridge),
                })
                .jump(ISOLATION_OUT),
            Iso::SelfDrop => Rule::new().iifname(bridge).oifname(bridge).drop(),
            Iso::To => Rule::new().oifname(bridge).drop(),
        };
        r.comment(self.comment(bridge))
    }
}

/// An interface name as `meta iifname` loads it: 16 bytes, NUL padded.
fn ifname_bytes(name: &str) -> Vec<u8> {
    let mut v = vec![0u8; 16];
    let n = name.len().min(15);
    v[..n].copy_from_slice(&name.as_bytes()[..n]);
    v
}

/// The rule for one per-pod comment.
pub fn pod_rule(t: &Tag) -> Rule {
    let host = IpNet::from(t.ip);
    let r = match t.dir {
        Dir::In => Rule::new()
            .daddr(host)
            .ct_state(ct_state::ESTABLISHED | ct_state::RELATED),
        Dir::Out => Rule::new().saddr(host),
    };
    r.accept().comment(t.comment())
}

/// What the table holds right now.
struct State {
    chains: Vec<ChainInfo>,
    rules: Vec<RuleInfo>,
}

impl State {
    fn has_chain(&self, name: &str) -> bool {
        self.chains.iter().any(|c| c.name == name)
    }
    fn has_rule(&self, chain: &str, comment: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.chain == chain && r.comment.as_deref() == Some(comment))
    }
    fn forward_is_base(&self) -> bool {
        self.chains.iter().any(|c| {
            c.name == FORWARD && matches!(c.hook, Some((h, _)) if h == Hook::Forward.raw())
        })
    }
    fn complete(&self) -> bool {
        self.forward_is_base()
            && [ISOLATION, ISOLATION_OUT, ADMIN]
                .iter()
                .all(|c| self.has_chain(c))
            && self.has_rule(FORWARD, BASE_ISOLATION)
            && self.has_rule(FORWARD, BASE_ADMIN)
    }
    fn tagged(&self) -> impl Iterator<Item = (&RuleInfo, Tag)> {
        self.rules.iter().filter_map(|r| {
            (r.chain == FORWARD)
                .then_some(())
                .and_then(|()| Tag::parse(r.comment.as_deref()?))
                .map(|t| (r, t))
        })
    }
}

/// The nftables backend, on one nftables socket.
pub struct NftBackend {
    nft: Nft,
}

impl NftBackend {
    /// The backend issuing its transactions through `nft`.
    pub fn new(nft: Nft) -> NftBackend {
        NftBackend { nft }
    }

    fn read(&self) -> nft::Result<State> {
        let chains = match self.nft.chains(F, TABLE) {
            Ok(c) => c,
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e),
        };
        if chains.is_empty() {
            return Ok(State {
                chains,
                rules: Vec::new(),
            });
        }
        let rules = self.nft.rules(F, TABLE, None)?;
        Ok(State { chains, rules })
    }

    /// Runs `build` against a fresh state and commits its batch at that
    /// state's generation, retrying while concurrent calls change the
    /// ruleset.
    fn transact(&self, build: impl Fn(&State, &mut Batch)) -> CniResult<()> {
        let done = self.nft.commit_fresh(RETRIES, || {
            let st = self.read()?;
            let mut b = Batch::new();
            build(&st, &mut b);
            Ok((!b.is_empty()).then_some(b))
        });
        match done {
            Err(e) if e.is_restart() => Err(Error::new(
                cni_spec::ErrorCode::TryAgainLater,
                format!("table inet {TABLE} kept changing during the update: {e}"),
            )),
            other => other.map_err(kit::err),
        }
    }
}

/// Adds the table, its chains and the jumps of `forward` where missing.
fn ensure_layout(st: &State, b: &mut Batch) {
    if st.complete() {
        return;
    }
    b.add_table(F, TABLE);
    b.add_chain(
        F,
        TABLE,
        &Chain::base(FORWARD, ChainType::Filter, Hook::Forward, priority::FILTER),
    );
    for c in [ISOLATION, ISOLATION_OUT, ADMIN] {
        b.add_chain(F, TABLE, &Chain::regular(c));
    }
    if !st.has_rule(FORWARD, BASE_ISOLATION) {
        b.add_rule(
            F,
            TABLE,
            FORWARD,
            &Rule::new().jump(ISOLATION).comment(BASE_ISOLATION),
        );
    }
    if !st.has_rule(FORWARD, BASE_ADMIN) {
        b.add_rule(
            F,
            TABLE,
            FORWARD,
            &Rule::new().jump(ADMIN).comment(BASE_ADMIN),
        );
    }
}

fn iso_kinds(policy: Policy) -> &'static [Iso] {
    match policy {
        Policy::Open => &[],
        Policy::SameBridge => &[Iso::From, Iso::To],
        Policy::Isolated => &[Iso::From, Iso::SelfDrop, Iso::To],
    }
}

impl Backend for NftBackend {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn add(&self, pod: &Pod) -> CniResult<()> {
        let tags = pod.tags();
        self.transact(|st, b| {
            ensure_layout(st, b);
            // A repeated ADD replaces the attachment's rules.
            for (r, t) in st.tagged() {
                if pod.owner.owns(&t) {
                    b.del_rule(F, TABLE, FORWARD, r.handle);
                }
            }
            if let Some(br) = &pod.bridge {
                for kind in iso_kinds(pod.policy) {
                    if !st.has_rule(kind.chain(), &kind.comment(br)) {
                        b.add_rule(F, TABLE, kind.chain(), &kind.rule(br));
                    }
                }
            }
            for t in &tags {
                b.add_rule(F, TABLE, FORWARD, &pod_rule(t));
            }
        })
    }

    fn check(&self, pod: &Pod) -> CniResult<()> {
        let st = self.read().map_err(kit::err)?;
        let fail = |what: String| Err(Error::internal(format!("firewall CHECK: {what}")));
        if !st.complete() {
            return fail(format!(
                "table inet {TABLE} is missing or incomplete (chains {FORWARD}, {ISOLATION}, {ISOLATION_OUT}, {ADMIN} and the jumps)"
            ));
        }
        for t in pod.tags() {
            if !st.has_rule(FORWARD, &t.comment()) {
                return fail(format!(
                    "rule \"{}\" not found in chain {FORWARD} of table inet {TABLE}",
                    t.comment()
                ));
            }
        }
        let extra = st
            .tagged()
            .filter(|(_, t)| pod.owner.owns(t) && !pod.ips.contains(&t.ip))
            .count();
        if extra > 0 {
            return fail(format!(
                "{extra} rule(s) of this attachment are for addresses not in prevResult"
            ));
        }
        if let Some(br) = &pod.bridge {
            for kind in iso_kinds(pod.policy) {
                if !st.has_rule(kind.chain(), &kind.comment(br)) {
                    return fail(format!(
                        "isolation rule \"{}\" not found in chain {}",
                        kind.comment(br),
                        kind.chain()
                    ));
                }
            }
        }
        Ok(())
    }

    fn remove(&self, gone: &dyn Fn(&Tag) -> bool) -> CniResult<()> {
        self.transact(|st, b| {
            let mut keep_bridges = BTreeSet::new();
            let mut keep_self = BTreeSet::new();
            for (r, t) in st.tagged() {
                if gone(&t) {
                    b.del_rule(F, TABLE, FORWARD, r.handle);
                    continue;
                }
                if let (true, Some(br)) = (t.policy.isolates(), &t.bridge) {
                    keep_bridges.insert(br.clone());
                    if t.policy == Policy::Isolated {
                        keep_self.insert(br.clone());
                    }
                }
            }
            for r in &st.rules {
                let Some((br, kind)) = r.comment.as_deref().and_then(Iso::parse) else {
                    continue;
                };
                let needed = match kind {
                    Iso::SelfDrop => keep_self.contains(&br),
                    _ => keep_bridges.contains(&br),
                };
                if !needed {
                    b.del_rule(F, TABLE, &r.chain, r.handle);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_comments_roundtrip() {
        for k in [Iso::From, Iso::SelfDrop, Iso::To] {
            assert_eq!(Iso::parse(&k.comment("br-x1")), Some(("br-x1".into(), k)));
        }
        assert_eq!(Iso::parse("rcni-fw-iso:br0:other"), None);
        assert_eq!(Iso::parse(BASE_ADMIN), None);
    }

    #[test]
    fn from_rule_compares_oifname_not_equal() {
        let r = Iso::From.rule("br0");
        assert!(r.exprs.contains(&Expr::Cmp {
            sreg: Reg(0),
            op: CmpOp::Neq,
            data: ifname_bytes("br0"),
        }));
        assert_eq!(r.comment.as_deref(), Some("rcni-fw-iso:br0:from"));
    }
}
