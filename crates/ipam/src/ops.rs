//! The host-local verbs on the disk store, free of CNI environment handling:
//! the plugin glue parses env/stdin and calls these.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::allocator::{allocate_all, Allocation};
use crate::config::{HostLocalConfig, StoreConfig};
use crate::error::{Error, Result};
use crate::store::{DiskStore, Owner, Store};

/// ADD: one address per range set, all under one lock.
pub fn add(cfg: &HostLocalConfig, id: &str, ifname: &str) -> Result<Vec<Allocation>> {
    let store = DiskStore::open(cfg.data_dir.as_deref(), &cfg.name)?;
    let mut guard = store.lock()?;
    let out = allocate_all(&mut guard, &cfg.range_sets, id, ifname, &cfg.requested)?;
    guard.commit()?;
    Ok(out)
}

/// DEL: release what (id, ifname) holds; nothing held is success.
pub fn del(cfg: &StoreConfig, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
    let store = DiskStore::open(cfg.data_dir(), &cfg.name)?;
    let mut guard = store.lock()?;
    let released = guard.release_by_id(id, ifname)?;
    guard.commit()?;
    Ok(released)
}

/// CHECK: the addresses (id, ifname) holds (empty when none).
pub fn check(cfg: &StoreConfig, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
    let store = DiskStore::open(cfg.data_dir(), &cfg.name)?;
    let mut guard = store.lock()?;
    let ips = guard.get_by_id(id, ifname)?;
    guard.commit()?;
    Ok(ips)
}

/// GC: release every allocation of the network whose owner is not among the
/// valid (containerID, ifname) attachments. Old ID-only files stay when any
/// attachment of that container is valid. Returns what was released.
pub fn gc(cfg: &StoreConfig, valid: &[(String, String)]) -> Result<Vec<(IpAddr, Owner)>> {
    let exact: HashSet<(&str, &str)> = valid.iter().map(|(c, i)| (c.trim(), i.as_str())).collect();
    let ids: HashSet<&str> = valid.iter().map(|(c, _)| c.trim()).collect();
    let store = DiskStore::open(cfg.data_dir(), &cfg.name)?;
    let mut guard = store.lock()?;
    let removed = guard.retain(|o| match &o.ifname {
        Some(ifn) => exact.contains(&(o.id.as_str(), ifn.as_str())),
        None => ids.contains(o.id.as_str()),
    })?;
    guard.commit()?;
    Ok(removed)
}

/// STATUS: Ok when the data directory is usable and every range set has a
/// free address (so an ADD can succeed); the error says why not.
pub fn status(cfg: &HostLocalConfig) -> Result<()> {
    let store = DiskStore::open(cfg.data_dir.as_deref(), &cfg.name)?;
    let guard = store.lock()?;
    let taken: HashSet<IpAddr> = guard.allocated_ips()?.into_iter().collect();
    drop(guard);
    for set in &cfg.range_sets {
        let used = taken
            .iter()
            .filter(|ip| set.range_for(**ip).is_some_and(|r| r.is_allocatable(**ip)))
            .count() as u128;
        if used >= set.capacity() {
            return Err(Error::Exhausted {
                range_set: set.to_string(),
            });
        }
    }
    Ok(())
}
