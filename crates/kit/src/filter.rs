//! The packet-filter seam under portmap: what the plugin asks of nftables
//! (and of conntrack), as a trait. The real implementation is `nft::Nft`,
//! forwarding to [`nft::rulesets::portmap`] and [`nft::conntrack`]; the
//! recording fake [`fake::FakeFilter`] (under `cfg(test)` or the `fake`
//! feature) keeps the mappings in memory, logs every change as a line and
//! fails the operations a test plans.

use nft::rulesets::portmap::{self, Condition, Mapping, Options};
use nft::{IpVersion, Nft};

/// One attachment: network, container and interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    /// The network name.
    pub network: &'a str,
    /// The container id.
    pub container_id: &'a str,
    /// The container's interface.
    pub ifname: &'a str,
}

impl Owner<'_> {
    /// The attachment a plugin call is about.
    pub fn of(args: &cni_skel::CmdArgs) -> Owner<'_> {
        Owner {
            network: &args.conf.name,
            container_id: &args.container_id,
            ifname: &args.ifname,
        }
    }
}

/// Forwards that apply only where the per-family conditions
/// (`conditionsV4`/`conditionsV6`) match.
#[derive(Debug, Clone, Copy)]
pub struct ConditionalForwards<'a> {
    /// The forwards.
    pub mappings: &'a [Mapping],
    /// The IPv4 conditions.
    pub v4: &'a [Condition],
    /// The IPv6 conditions.
    pub v6: &'a [Condition],
}

/// Port forwards of the node, per attachment (network, container,
/// interface).
pub trait PortmapRules {
    /// Adds unconditional forwards (one transaction).
    fn add(&self, mappings: &[Mapping], opts: &Options) -> nft::Result<()>;
    /// Adds forwards restricted by the per-family conditions.
    fn add_conditional(&self, fwd: ConditionalForwards<'_>, opts: &Options) -> nft::Result<()>;
    /// Removes an attachment's unconditional forwards; how many went.
    fn remove_container(&self, who: Owner<'_>) -> nft::Result<usize>;
    /// Removes an attachment's conditional forwards; how many went.
    fn remove_conditional(&self, who: Owner<'_>) -> nft::Result<usize>;
    /// How many conditional forwards an attachment has.
    fn count_conditional(&self, who: Owner<'_>) -> nft::Result<usize>;
    /// Every unconditional forward, as [`Mapping::as_listed`] gives it.
    fn list(&self) -> nft::Result<Vec<Mapping>>;
    /// Removes the network's unconditional forwards of attachments not in
    /// `keep` (container id, interface).
    fn gc(&self, network: &str, keep: &[(String, String)]) -> nft::Result<usize>;
    /// The same for the conditional forwards.
    fn gc_conditional(&self, network: &str, keep: &[(String, String)]) -> nft::Result<usize>;
    /// Deletes the conntrack entries of UDP flows to `ports`.
    fn flush_udp(&self, version: IpVersion, ports: &[u16]) -> nft::Result<usize>;
}

impl PortmapRules for Nft {
    fn add(&self, mappings: &[Mapping], opts: &Options) -> nft::Result<()> {
        portmap::add(self, mappings, opts)
    }
    fn add_conditional(&self, fwd: ConditionalForwards<'_>, opts: &Options) -> nft::Result<()> {
        portmap::add_conditional(self, fwd.mappings, fwd.v4, fwd.v6, opts)
    }
    fn remove_container(&self, who: Owner<'_>) -> nft::Result<usize> {
        portmap::remove_container(self, who.network, who.container_id, who.ifname)
    }
    fn remove_conditional(&self, who: Owner<'_>) -> nft::Result<usize> {
        portmap::remove_conditional(self, who.network, who.container_id, who.ifname)
    }
    fn count_conditional(&self, who: Owner<'_>) -> nft::Result<usize> {
        portmap::count_conditional(self, who.network, who.container_id, who.ifname)
    }
    fn list(&self) -> nft::Result<Vec<Mapping>> {
        portmap::list(self)
    }
    fn gc(&self, network: &str, keep: &[(String, String)]) -> nft::Result<usize> {
        portmap::gc(self, network, keep)
    }
    fn gc_conditional(&self, network: &str, keep: &[(String, String)]) -> nft::Result<usize> {
        portmap::gc_conditional(self, network, keep)
    }
    fn flush_udp(&self, version: IpVersion, ports: &[u16]) -> nft::Result<usize> {
        nft::conntrack::delete_udp_to_ports(version, ports)
    }
}

/// A recording fake of the node's port forwards, for unit tests.
#[cfg(any(test, feature = "fake"))]
pub mod fake {
    use super::*;
    use crate::routing::fake::{remove_where, Plan};
    use std::cell::RefCell;

    /// The forwards in memory, per attachment, with a log of changes
    /// (`map add 8080/tcp -> 10.0.0.2:80`, `cond add 8080/tcp -> ...`,
    /// `remove net/ctr/eth0`, `remove cond net/ctr/eth0`, `gc net`,
    /// `conntrack udp V4 53`) and planned failures (see [`Plan`]).
    #[derive(Default)]
    pub struct FakeFilter {
        /// The log and the planned failures.
        pub plan: Plan,
        /// Unconditional forwards.
        pub maps: RefCell<Vec<Mapping>>,
        /// Conditional forwards.
        pub conditional: RefCell<Vec<Mapping>>,
    }

    fn text(m: &Mapping) -> String {
        format!(
            "{}/{} -> {}:{}",
            m.host_port,
            m.proto.as_str(),
            m.pod_ip,
            m.pod_port
        )
    }

    fn owned_by(m: &Mapping, who: Owner<'_>) -> bool {
        m.network == who.network && m.container_id == who.container_id && m.ifname == who.ifname
    }

    fn stale(m: &Mapping, network: &str, keep: &[(String, String)]) -> bool {
        m.network == network
            && !keep
                .iter()
                .any(|(c, i)| *c == m.container_id && *i == m.ifname)
    }

    impl FakeFilter {
        /// No forwards, no planned failures.
        pub fn new() -> FakeFilter {
            FakeFilter::default()
        }
        /// Makes the next operation starting with `op` fail with `errno`.
        pub fn fail_next(&self, op: &str, errno: i32) {
            self.plan.fail_next(op, errno);
        }
        /// The changes recorded so far.
        pub fn lines(&self) -> Vec<String> {
            self.plan.lines()
        }
        fn op(&self, line: String, log: bool) -> nft::Result<()> {
            self.plan
                .op(line, log)
                .map_err(|(op, errno)| nft::Error::Kernel {
                    op,
                    errno,
                    ext: None,
                })
        }
        /// All-or-nothing, as one nftables transaction.
        fn insert(
            &self,
            into: &RefCell<Vec<Mapping>>,
            what: &str,
            ms: &[Mapping],
        ) -> nft::Result<()> {
            for m in ms {
                self.op(format!("{what} add {}", text(m)), true)?;
            }
            into.borrow_mut().extend(ms.iter().cloned());
            Ok(())
        }
        fn remove(
            &self,
            from: &RefCell<Vec<Mapping>>,
            line: String,
            gone: impl Fn(&Mapping) -> bool,
        ) -> nft::Result<usize> {
            self.op(line, true)?;
            Ok(remove_where(from, gone))
        }
    }

    impl PortmapRules for FakeFilter {
        fn add(&self, mappings: &[Mapping], _opts: &Options) -> nft::Result<()> {
            self.insert(&self.maps, "map", mappings)
        }
        fn add_conditional(
            &self,
            fwd: ConditionalForwards<'_>,
            _opts: &Options,
        ) -> nft::Result<()> {
            self.insert(&self.conditional, "cond", fwd.mappings)
        }
        fn remove_container(&self, who: Owner<'_>) -> nft::Result<usize> {
            self.remove(
                &self.maps,
                format!("remove {}/{}/{}", who.network, who.container_id, who.ifname),
                |m| owned_by(m, who),
            )
        }
        fn remove_conditional(&self, who: Owner<'_>) -> nft::Result<usize> {
            self.remove(
                &self.conditional,
                format!(
                    "remove cond {}/{}/{}",
                    who.network, who.container_id, who.ifname
                ),
                |m| owned_by(m, who),
            )
        }
        fn count_conditional(&self, who: Owner<'_>) -> nft::Result<usize> {
            self.op("count cond".into(), false)?;
            Ok(self
                .conditional
                .borrow()
                .iter()
                .filter(|m| owned_by(m, who))
                .count())
        }
        fn list(&self) -> nft::Result<Vec<Mapping>> {
            self.op("list".into(), false)?;
            Ok(self.maps.borrow().iter().map(Mapping::as_listed).collect())
        }
        fn gc(&self, network: &str, keep: &[(String, String)]) -> nft::Result<usize> {
            self.remove(&self.maps, format!("gc {network}"), |m| {
                stale(m, network, keep)
            })
        }
        fn gc_conditional(&self, network: &str, keep: &[(String, String)]) -> nft::Result<usize> {
            self.remove(&self.conditional, format!("gc cond {network}"), |m| {
                stale(m, network, keep)
            })
        }
        fn flush_udp(&self, version: IpVersion, ports: &[u16]) -> nft::Result<usize> {
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            self.op(
                format!("conntrack udp {version:?} {}", ports.join(",")),
                true,
            )?;
            Ok(0)
        }
    }
}
