//! `firewall`: a meta plugin that runs after a main plugin and makes the
//! host forward the pod's traffic, and optionally isolates bridges from
//! each other (the reference's `ingressPolicy`).
//!
//! Config (reference names): `backend` (`"nftables"`, `"iptables"`, or
//! absent = automatic), `iptablesAdminChainName` (default `CNI-ADMIN`),
//! `ingressPolicy` (`"open"` default, `"same-bridge"`, `"isolated"`),
//! `firewalldZone` (accepted and ignored; the firewalld backend is refused).
//!
//! Per pod address two rules are added: replies to the pod
//! (`ct state established,related`) and everything from the pod are
//! accepted. Every rule carries a comment naming network, container id and
//! interface ([`tag`]), so DEL works without prevResult and GC finds rules
//! of vanished attachments.
//!
//! Backends (one internal trait, [`Backend`]):
//! - **nftables** ([`nftables`]): table `inet rcni-firewall`, one
//!   transaction per call, no process spawned.
//! - **iptables** ([`iptables`]): the reference's `CNI-FORWARD` /
//!   `CNI-ADMIN` / `CNI-ISOLATION-STAGE-*` chains, by running `iptables`
//!   and `ip6tables`. An accept in an rcni-owned nftables table does not
//!   override a drop policy of another base chain (every base chain on the
//!   hook must accept), so where the host keeps an iptables `FORWARD`
//!   policy of DROP (Docker does) the rules have to go into that chain.
//!   Without `backend`, that case is detected and the iptables path used;
//!   otherwise nftables.
//!
//! Isolation (reference semantics, per bridge = the first interface of
//! prevResult): `same-bridge` drops forwarded traffic between two bridges
//! that both carry an isolating policy; traffic from other interfaces (the
//! uplink) still reaches the pod. `isolated` additionally drops traffic
//! between pods of the same bridge (needs `bridge-nf-call-iptables`).

#[doc(hidden)]
pub mod fuzzing;
pub mod iptables;
pub mod nftables;
pub mod tag;

use kit::Teardown;
use std::net::IpAddr;

use cni_skel::{CmdArgs, Plugin};
use cni_spec::error::CniResult;
use cni_spec::{validate, Error, ErrorCode, GcAttachment, Result};
use nft::{IpVersion, Nft};
use serde::Deserialize;

use tag::{Dir, Owner, Tag};

/// The firewall plugin as the CNI skeleton runs it: opens forwarding for
/// the pod's addresses on ADD, removes its rules on DEL and GC.
pub struct Firewall;

/// `ingressPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `open` (the default): no isolation.
    Open,
    /// `same-bridge`: no forwarding between two isolating bridges.
    SameBridge,
    /// `isolated`: as `same-bridge`, and no forwarding between pods of the
    /// same bridge either.
    Isolated,
}

impl Policy {
    /// The policy a config value names; empty means `open`, an unknown
    /// name `None`.
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "" | "open" => Some(Policy::Open),
            "same-bridge" => Some(Policy::SameBridge),
            "isolated" => Some(Policy::Isolated),
            _ => None,
        }
    }
    /// The config value naming this policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Open => "open",
            Policy::SameBridge => "same-bridge",
            Policy::Isolated => "isolated",
        }
    }
    /// Whether the bridge takes part in isolation.
    pub fn isolates(self) -> bool {
        self != Policy::Open
    }
}

/// `backend`: which firewall the rules go into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Absent: iptables where the host's `FORWARD` policy drops, otherwise
    /// nftables.
    Auto,
    /// `nftables`: the rcni-owned nftables table.
    Nftables,
    /// `iptables`: the reference's chains, through `iptables`/`ip6tables`.
    Iptables,
}

#[derive(Deserialize)]
struct RawConf {
    #[serde(default)]
    backend: Option<String>,
    #[serde(rename = "iptablesAdminChainName", default)]
    admin_chain: Option<String>,
    #[serde(rename = "firewalldZone", default)]
    _firewalld_zone: Option<String>,
    #[serde(rename = "ingressPolicy", default)]
    ingress_policy: Option<String>,
}

/// The validated config.
#[derive(Debug, Clone)]
pub struct Conf {
    /// The firewall the rules go into.
    pub backend: BackendKind,
    /// The iptables chain left for the administrator's own rules.
    pub admin_chain: String,
    /// How the pod's bridge is isolated from others.
    pub policy: Policy,
}

/// `iptablesAdminChainName` when the config leaves it out.
pub const DEFAULT_ADMIN_CHAIN: &str = "CNI-ADMIN";

impl Conf {
    fn load(args: &CmdArgs) -> CniResult<Conf> {
        let raw: RawConf = args.parse_conf()?;
        Conf::from_raw(raw)
    }

    /// DEL's view of the config. A backend, policy or admin chain name ADD
    /// refuses means that ADD made nothing: DEL then looks for rules of
    /// ours everywhere (as with no `backend`) instead of failing, so the DEL
    /// a runtime sends after the refused ADD succeeds (the reference does
    /// not refuse them on DEL either). A config that does not parse still
    /// fails.
    fn load_for_del(args: &CmdArgs) -> CniResult<Conf> {
        let raw: RawConf = args.parse_conf()?;
        Ok(Conf::from_raw(raw).unwrap_or(Conf {
            backend: BackendKind::Auto,
            admin_chain: DEFAULT_ADMIN_CHAIN.to_string(),
            policy: Policy::Open,
        }))
    }

    fn from_raw(raw: RawConf) -> CniResult<Conf> {
        let backend = match raw.backend.as_deref().unwrap_or("") {
            "" => BackendKind::Auto,
            "nftables" => BackendKind::Nftables,
            "iptables" => BackendKind::Iptables,
            "firewalld" => {
                return Err(Error::invalid_config(
                    "firewall backend \"firewalld\" is not supported by rcni; use \"nftables\" or \"iptables\"",
                ))
            }
            other => {
                return Err(Error::invalid_config(format!(
                    "unknown firewall backend {other:?}; expected \"nftables\" or \"iptables\""
                )))
            }
        };
        let policy_s = raw.ingress_policy.unwrap_or_default();
        let policy = Policy::parse(&policy_s).ok_or_else(|| {
            Error::invalid_config(format!(
                "unknown ingress policy {policy_s:?}; expected \"open\", \"same-bridge\" or \"isolated\""
            ))
        })?;
        let admin_chain = match raw.admin_chain.as_deref() {
            None | Some("") => DEFAULT_ADMIN_CHAIN.to_string(),
            Some(c) => {
                iptables::check_chain_name(c).map_err(|why| {
                    Error::invalid_config(format!("invalid iptablesAdminChainName {c:?}: {why}"))
                })?;
                c.to_string()
            }
        };
        Ok(Conf {
            backend,
            admin_chain,
            policy,
        })
    }
}

/// What ADD and CHECK act on: one attachment's addresses and policy.
#[derive(Debug, Clone)]
pub struct Pod {
    /// The attachment (network, container, interface) the rules belong to.
    pub owner: Owner,
    /// The network's ingress policy.
    pub policy: Policy,
    /// The bridge of an isolating policy.
    pub bridge: Option<String>,
    /// The pod's addresses from prevResult, each once.
    pub ips: Vec<IpAddr>,
}

impl Pod {
    fn new(args: &CmdArgs, conf: &Conf, prev: &Result) -> CniResult<Pod> {
        let bridge = if conf.policy.isolates() {
            let name = prev
                .interfaces
                .first()
                .map(|i| i.name.as_str())
                .unwrap_or("");
            if name.is_empty() {
                return Err(Error::invalid_config(format!(
                    "ingress policy {:?} needs the bridge as the first interface of prevResult; chain \"firewall\" after \"bridge\"",
                    conf.policy.as_str()
                )));
            }
            validate::interface_name(name).map_err(|e| {
                Error::invalid_config(format!("invalid bridge name {name:?} in prevResult: {e}"))
            })?;
            Some(name.to_string())
        } else {
            None
        };
        let mut ips: Vec<IpAddr> = Vec::new();
        for ip in &prev.ips {
            let a = ip.address.addr();
            if !ips.contains(&a) {
                ips.push(a);
            }
        }
        Ok(Pod {
            owner: owner(args),
            policy: conf.policy,
            bridge,
            ips,
        })
    }

    /// The comments of every per-address rule.
    pub fn tags(&self) -> Vec<Tag> {
        let mut out = Vec::new();
        for ip in &self.ips {
            for dir in [Dir::In, Dir::Out] {
                out.push(Tag::new(
                    &self.owner,
                    self.policy,
                    self.bridge.as_deref(),
                    dir,
                    *ip,
                ));
            }
        }
        out
    }

    /// IP versions the pod has addresses of.
    pub fn versions(&self) -> Vec<IpVersion> {
        let mut out = Vec::new();
        for ip in &self.ips {
            let v = IpVersion::of(*ip);
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }
}

fn owner(args: &CmdArgs) -> Owner {
    Owner {
        network: args.conf.name.clone(),
        container_id: args.container_id.clone(),
        ifname: args.ifname.clone(),
    }
}

/// A firewall backend. Each call is complete on its own: ADD undoes its
/// partial work on failure, removal is idempotent.
pub trait Backend {
    /// The backend's `backend` config value.
    fn name(&self) -> &'static str;
    /// Installs the pod's rules (and the isolation its policy needs).
    fn add(&self, pod: &Pod) -> CniResult<()>;
    /// Fails unless the pod's rules (and its isolation) are in place.
    fn check(&self, pod: &Pod) -> CniResult<()>;
    /// Removes every per-pod rule whose comment `gone` selects (and
    /// isolation state nothing needs any more, where the backend tracks it).
    fn remove(&self, gone: &dyn Fn(&Tag) -> bool) -> CniResult<()>;
}

fn open_nft() -> CniResult<Nft> {
    Nft::open().map_err(kit::err)
}

/// The backend for ADD and CHECK.
fn choose(conf: &Conf, nft: Nft, versions: &[IpVersion]) -> CniResult<Box<dyn Backend>> {
    match conf.backend {
        BackendKind::Nftables => Ok(Box::new(nftables::NftBackend::new(nft))),
        BackendKind::Iptables => Ok(Box::new(iptables::IptBackend::select(
            &nft,
            &conf.admin_chain,
            versions,
            None,
        )?)),
        BackendKind::Auto => match iptables::detect_drop_policy(&nft, versions)? {
            Some(found) => Ok(Box::new(iptables::IptBackend::select(
                &nft,
                &conf.admin_chain,
                versions,
                Some(found),
            )?)),
            None => Ok(Box::new(nftables::NftBackend::new(nft))),
        },
    }
}

/// Removal runs in every backend that may hold rules of ours: the nftables
/// table (one cheap request when absent) and, unless nftables was asked
/// for explicitly, the iptables chains where iptables is in use.
fn remove_everywhere(conf: &Conf, gone: &dyn Fn(&Tag) -> bool) -> CniResult<()> {
    let nft = open_nft()?;
    // Rules of ours can only exist where iptables state exists (seen through
    // nf_tables or the legacy table list), so even with `backend: iptables`
    // an IP version without any is not listed: one process less per DEL.
    let ipt = match conf.backend {
        BackendKind::Nftables => None,
        BackendKind::Iptables | BackendKind::Auto => {
            iptables::IptBackend::in_use(&nft, &conf.admin_chain)
        }
    };
    let nft = nftables::NftBackend::new(nft);
    let mut backends: Vec<&dyn Backend> = vec![&nft];
    if let Some(b) = &ipt {
        backends.push(b);
    }
    remove_from(&backends, gone)
}

/// DEL's and GC's work: the selected rules out of every backend, in order,
/// going on after a failure and reporting them all.
fn remove_from(backends: &[&dyn Backend], gone: &dyn Fn(&Tag) -> bool) -> CniResult<()> {
    let mut td = Teardown::new();
    for b in backends {
        td.step(b.remove(gone));
    }
    Ok(td.finish()?)
}

impl Plugin for Firewall {
    fn name(&self) -> &'static str {
        "firewall"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let conf = Conf::load(args)?;
        let prev = args
            .conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("missing prevResult from earlier plugin"))?;
        prev.validate()?;
        let pod = Pod::new(args, &conf, &prev)?;
        let backend = choose(&conf, open_nft()?, &pod.versions())?;
        backend.add(&pod)?;
        Ok(prev)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let conf = Conf::load_for_del(args)?;
        let who = owner(args);
        remove_everywhere(&conf, &|t| who.owns(t))
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let conf = Conf::load(args)?;
        let prev = args
            .conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("missing prevResult from earlier plugin"))?;
        let pod = Pod::new(args, &conf, &prev)?;
        let backend = choose(&conf, open_nft()?, &pod.versions())?;
        backend.check(&pod)
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        let conf = Conf::load(args)?;
        let network = args.conf.name.clone();
        let keep: Vec<GcAttachment> = args.conf.gc_attachments();
        remove_everywhere(&conf, &|t| {
            tag::same(&t.network, &network)
                && !keep
                    .iter()
                    .any(|k| tag::same(&t.container_id, &k.container_id) && t.ifname == k.ifname)
        })
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        let conf = Conf::load(args)?;
        let unavailable = |what: String| Error::new(ErrorCode::NotAvailable, what);
        let nft = Nft::open()
            .and_then(|n| n.genid().map(|_| n))
            .map_err(|e| unavailable(format!("nftables is not usable: {e}")));
        match conf.backend {
            BackendKind::Nftables => nft.map(|_| ()),
            BackendKind::Iptables => iptables::usable().map_err(unavailable),
            BackendKind::Auto => {
                let nft = nft?;
                if iptables::IptBackend::in_use(&nft, &conf.admin_chain).is_some() {
                    iptables::usable().map_err(unavailable)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A backend that records what it is asked and refuses removal when
    /// told to.
    struct Recording {
        name: &'static str,
        log: RefCell<Vec<String>>,
        refuse: bool,
    }

    impl Backend for Recording {
        fn name(&self) -> &'static str {
            self.name
        }
        fn add(&self, _pod: &Pod) -> CniResult<()> {
            Ok(())
        }
        fn check(&self, _pod: &Pod) -> CniResult<()> {
            Ok(())
        }
        fn remove(&self, _gone: &dyn Fn(&Tag) -> bool) -> CniResult<()> {
            self.log.borrow_mut().push(format!("remove {}", self.name));
            if self.refuse {
                return Err(Error::io(format!("{} refused", self.name)));
            }
            Ok(())
        }
    }

    #[test]
    fn removal_goes_on_in_iptables_after_nftables_refuses_and_reports_code_5() {
        let nft = Recording {
            name: "nftables",
            log: RefCell::default(),
            refuse: true,
        };
        let ipt = Recording {
            name: "iptables",
            log: RefCell::default(),
            refuse: false,
        };
        let e = remove_from(&[&nft, &ipt], &|_| true).expect_err("refused");
        assert_eq!(e.code, 5, "{e}");
        assert!(e.msg.contains("nftables refused"), "{e}");
        assert_eq!(*ipt.log.borrow(), ["remove iptables"]);
        remove_from(&[&ipt], &|_| true).expect("nothing refused");
    }

    fn raw(v: serde_json::Value) -> CniResult<Conf> {
        let r: RawConf = serde_json::from_value(v).map_err(|e| Error::decoding(e.to_string()))?;
        Conf::from_raw(r)
    }

    #[test]
    fn config_defaults_and_errors() {
        let c = raw(serde_json::json!({})).expect("defaults");
        assert_eq!(c.backend, BackendKind::Auto);
        assert_eq!(c.policy, Policy::Open);
        assert_eq!(c.admin_chain, "CNI-ADMIN");
        let c = raw(serde_json::json!({"backend":"iptables","ingressPolicy":"isolated","iptablesAdminChainName":"MY-ADMIN"}))
            .expect("valid");
        assert_eq!(c.backend, BackendKind::Iptables);
        assert_eq!(c.policy, Policy::Isolated);
        assert_eq!(c.admin_chain, "MY-ADMIN");
        for bad in [
            serde_json::json!({"backend":"firewalld"}),
            serde_json::json!({"backend":"pf"}),
            serde_json::json!({"ingressPolicy":"closed"}),
            serde_json::json!({"iptablesAdminChainName":"has space"}),
            serde_json::json!({"iptablesAdminChainName":"-X"}),
            serde_json::json!({"iptablesAdminChainName":"A".repeat(29)}),
        ] {
            let e = raw(bad.clone()).expect_err("invalid");
            assert_eq!(e.code, 7, "{bad}: {e}");
        }
    }
}
