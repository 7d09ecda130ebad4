//! Masquerade per network: one rule set for the network's subnets, created
//! with the network's first attachment on this node and removed with its
//! last one (DEL with or without a netns, or GC). The firewall itself sits
//! behind [`MasqBackend`] so the bookkeeping is testable without root.

use crate::attach::{Attachment, Attachments, Lock};
use crate::error::{Error, Result};
use cni_spec::GcAttachment;
use ipnet::IpNet;

/// Programs the masquerade rules of one network.
pub trait MasqBackend {
    /// Makes the network's rules cover exactly `subnets`.
    fn ensure(&self, network: &str, subnets: &[IpNet]) -> Result<()>;
    /// Removes the network's rules (absent is fine).
    fn remove(&self, network: &str) -> Result<()>;
    /// Whether the network's rules are present (cheap check).
    fn present(&self, network: &str) -> Result<bool>;
}

const PROGRAMMED: &str = "masq-subnets";

fn read_programmed(atts: &Attachments) -> Vec<IpNet> {
    std::fs::read_to_string(atts.dir().join(PROGRAMMED))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn write_programmed(atts: &Attachments, subnets: &[IpNet]) -> Result<()> {
    let p = atts.dir().join(PROGRAMMED);
    let body: Vec<String> = subnets.iter().map(|s| s.to_string()).collect();
    crate::os::write_atomic(
        &p,
        body.join("\n").as_bytes(),
        0o600,
        crate::os::Durability::Atomic,
    )
    .map_err(|e| Error::io(format!("write {}", p.display()), e))
}

/// Records `a` and makes sure the network's rules cover its subnets. When
/// they already do (every ADD after the first), no firewall work is done
/// beyond one presence check.
pub fn attach(
    backend: &dyn MasqBackend,
    atts: &Attachments,
    network: &str,
    a: &Attachment,
) -> Result<()> {
    let lock = atts.lock()?;
    atts.add(&lock, a)?;
    let mut programmed = read_programmed(atts);
    let covered = a.subnets.iter().all(|s| programmed.contains(s));
    if covered && backend.present(network)? {
        return Ok(());
    }
    for s in &a.subnets {
        if !programmed.contains(s) {
            programmed.push(*s);
        }
    }
    if let Err(e) = backend.ensure(network, &programmed) {
        let _ = atts.remove(&lock, &a.container_id, &a.ifname);
        return Err(e);
    }
    write_programmed(atts, &programmed)
}

fn remove_if_last(
    backend: &dyn MasqBackend,
    atts: &Attachments,
    lock: &Lock,
    network: &str,
) -> Result<()> {
    if atts.is_empty(lock)? {
        backend.remove(network)?;
        let _ = std::fs::remove_file(atts.dir().join(PROGRAMMED));
    }
    Ok(())
}

/// Forgets (container_id, ifname) and removes the rules with the last one.
/// Nothing recorded is fine (DEL is idempotent).
pub fn detach(
    backend: &dyn MasqBackend,
    atts: &Attachments,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Result<()> {
    if !atts.dir().exists() {
        return Ok(());
    }
    let lock = atts.lock()?;
    atts.remove(&lock, container_id, ifname)?;
    remove_if_last(backend, atts, &lock, network)
}

/// Forgets every attachment not in `keep`; removes the rules if none is left.
pub fn gc(
    backend: &dyn MasqBackend,
    atts: &Attachments,
    network: &str,
    keep: &[GcAttachment],
) -> Result<()> {
    if !atts.dir().exists() {
        // Nothing recorded, but rules may linger from a lost state dir.
        return if backend.present(network)? {
            backend.remove(network)
        } else {
            Ok(())
        };
    }
    let lock = atts.lock()?;
    for a in atts.list(&lock)? {
        let listed = keep
            .iter()
            .any(|k| k.container_id == a.container_id && k.ifname == a.ifname);
        if !listed {
            atts.remove(&lock, &a.container_id, &a.ifname)?;
        }
    }
    remove_if_last(backend, atts, &lock, network)
}

/// The records of a network, for callers that only track attachments.
pub fn recorded(atts: &Attachments) -> Result<Vec<Attachment>> {
    let lock = atts.lock()?;
    atts.list(&lock)
}

/// nftables in the calling thread's namespace (`inet rcni-nat`), opened on
/// first use so DELs without masquerade work never open a socket.
pub struct Nftables {
    nft: std::cell::OnceCell<nft::Nft>,
}

impl Nftables {
    fn handle(&self) -> Result<&nft::Nft> {
        if let Some(n) = self.nft.get() {
            return Ok(n);
        }
        let n = nft::Nft::open().map_err(nft_err)?;
        Ok(self.nft.get_or_init(|| n))
    }
}

fn nft_err(e: nft::Error) -> Error {
    Error::Io {
        what: "program masquerade (nftables)".into(),
        source: std::io::Error::other(e.to_string()),
    }
}

impl MasqBackend for Nftables {
    fn ensure(&self, network: &str, subnets: &[IpNet]) -> Result<()> {
        nft::rulesets::masq::ensure(self.handle()?, network, subnets).map_err(nft_err)
    }
    fn remove(&self, network: &str) -> Result<()> {
        nft::rulesets::masq::remove(self.handle()?, network).map_err(nft_err)
    }
    fn present(&self, network: &str) -> Result<bool> {
        Ok(nft::rulesets::masq::list(self.handle()?)
            .map_err(nft_err)?
            .iter()
            .any(|(n, _)| n == network))
    }
}

/// The backend this build uses: nftables.
pub fn backend() -> Box<dyn MasqBackend> {
    Box::new(Nftables {
        nft: std::cell::OnceCell::new(),
    })
}

/// One network's masquerade as a veth plugin (bridge, ptp) drives it:
/// records under the plugin's `stateDir` (else `$RCNI_STATE_DIR`, else
/// [`crate::DEFAULT_STATE_ROOT`]) and the nftables backend.
pub struct NetworkMasq {
    atts: Attachments,
    network: String,
}

impl NetworkMasq {
    /// The masquerade of `network`, its records under `state_dir` (or
    /// `RCNI_STATE_DIR`, or the default state root).
    pub fn new(state_dir: Option<&std::path::Path>, network: &str) -> NetworkMasq {
        let env_dir = std::env::var_os("RCNI_STATE_DIR").map(std::path::PathBuf::from);
        NetworkMasq {
            atts: Attachments::new(state_dir.or(env_dir.as_deref()), network),
            network: network.to_string(),
        }
    }

    /// ADD: records the attachment and covers its subnets.
    pub fn attach(&self, container_id: &str, ifname: &str, subnets: Vec<IpNet>) -> Result<()> {
        let a = Attachment {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
            subnets,
        };
        attach(backend().as_ref(), &self.atts, &self.network, &a)
    }

    /// DEL (and ADD's undo): forgets the attachment; the last one takes the
    /// rules with it.
    pub fn detach(&self, container_id: &str, ifname: &str) -> Result<()> {
        detach(
            backend().as_ref(),
            &self.atts,
            &self.network,
            container_id,
            ifname,
        )
    }

    /// GC: forgets attachments not in `keep`. Runs when masquerade is on or
    /// records exist (the config may have turned `ipMasq` off since).
    pub fn gc(&self, enabled: bool, keep: &[GcAttachment]) -> Result<()> {
        if !enabled && !self.atts.dir().exists() {
            return Ok(());
        }
        gc(backend().as_ref(), &self.atts, &self.network, keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Fake {
        rules: RefCell<Option<Vec<IpNet>>>,
        calls: RefCell<u32>,
    }
    impl MasqBackend for Fake {
        fn ensure(&self, _n: &str, s: &[IpNet]) -> Result<()> {
            *self.calls.borrow_mut() += 1;
            *self.rules.borrow_mut() = Some(s.to_vec());
            Ok(())
        }
        fn remove(&self, _n: &str) -> Result<()> {
            *self.rules.borrow_mut() = None;
            Ok(())
        }
        fn present(&self, _n: &str) -> Result<bool> {
            Ok(self.rules.borrow().is_some())
        }
    }

    fn att(c: &str, s: &str) -> Attachment {
        Attachment {
            container_id: c.into(),
            ifname: "eth0".into(),
            subnets: vec![s.parse().expect("net")],
        }
    }

    #[test]
    fn first_creates_last_removes_gc_collects() {
        let root = std::env::temp_dir().join(format!("rcni-net-masq-{}", std::process::id()));
        let atts = Attachments::new(Some(&root), "n");
        let fw = Fake::default();
        attach(&fw, &atts, "n", &att("a", "10.1.0.0/24")).expect("a");
        attach(&fw, &atts, "n", &att("b", "10.1.0.0/24")).expect("b");
        assert_eq!(*fw.calls.borrow(), 1, "second ADD costs no firewall work");
        detach(&fw, &atts, "n", "a", "eth0").expect("del a");
        assert!(fw.rules.borrow().is_some());
        detach(&fw, &atts, "n", "a", "eth0").expect("del a again");
        gc(&fw, &atts, "n", &[]).expect("gc");
        assert!(fw.rules.borrow().is_none(), "gc removed the last");
        attach(&fw, &atts, "n", &att("c", "10.1.0.0/24")).expect("c");
        assert_eq!(*fw.calls.borrow(), 2, "rules re-created after removal");
        let keep = [GcAttachment {
            container_id: "c".into(),
            ifname: "eth0".into(),
        }];
        gc(&fw, &atts, "n", &keep).expect("gc keep");
        assert!(fw.rules.borrow().is_some());
        detach(&fw, &atts, "n", "c", "eth0").expect("del c");
        assert!(fw.rules.borrow().is_none());
        let _ = std::fs::remove_dir_all(&root);
    }
}
