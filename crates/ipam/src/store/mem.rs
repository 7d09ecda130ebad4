//! An in-memory store.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{Owner, Store};
use crate::error::Result;

/// An in-memory store for tests of allocation logic.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    /// Address → holder.
    pub allocations: BTreeMap<IpAddr, Owner>,
    /// Range set → the address handed out last.
    pub last: BTreeMap<String, IpAddr>,
}

impl Store for MemStore {
    fn reserve(&mut self, id: &str, ifname: &str, ip: IpAddr, range_id: &str) -> Result<bool> {
        if self.allocations.contains_key(&ip) {
            return Ok(false);
        }
        self.allocations.insert(
            ip,
            Owner {
                id: id.trim().into(),
                ifname: Some(ifname.into()),
            },
        );
        self.last.insert(range_id.into(), ip);
        Ok(true)
    }
    fn last_reserved(&mut self, range_id: &str) -> Option<IpAddr> {
        self.last.get(range_id).copied()
    }
    fn get_by_id(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        Ok(self
            .allocations
            .iter()
            .filter(|(_, o)| o.is(id, ifname) || o.is_legacy_of(id))
            .map(|(ip, _)| *ip)
            .collect())
    }
    fn release_by_id(&mut self, id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        let mut v: Vec<IpAddr> = self
            .allocations
            .iter()
            .filter(|(_, o)| o.is(id, ifname))
            .map(|(ip, _)| *ip)
            .collect();
        if v.is_empty() {
            v = self
                .allocations
                .iter()
                .filter(|(_, o)| o.is_legacy_of(id))
                .map(|(ip, _)| *ip)
                .collect();
        }
        for ip in &v {
            self.allocations.remove(ip);
        }
        Ok(v)
    }
    fn release_ip(&mut self, ip: IpAddr, id: &str, ifname: &str) -> Result<bool> {
        if self.allocations.get(&ip).is_some_and(|o| o.is(id, ifname)) {
            self.allocations.remove(&ip);
            return Ok(true);
        }
        Ok(false)
    }
    fn all(&mut self) -> Result<Vec<(IpAddr, Owner)>> {
        Ok(self
            .allocations
            .iter()
            .map(|(ip, o)| (*ip, o.clone()))
            .collect())
    }
}
