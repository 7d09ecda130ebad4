//! Address allocation over a [`Store`]: requested address or round-robin from
//! the range set's cursor, one address per range set.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::range::RangeSet;
use crate::store::Store;

/// One allocated address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The address with the prefix length of its subnet.
    pub address: IpNet,
    /// The gateway of the range it came from.
    pub gateway: IpAddr,
    /// Index of the range set.
    pub range_set: usize,
}

/// Allocate one address of `set` (range set number `set_idx`) for
/// (id, ifname). The caller holds the store's lock.
pub fn allocate<S: Store + ?Sized>(
    store: &mut S,
    set: &RangeSet,
    set_idx: usize,
    id: &str,
    ifname: &str,
    requested: Option<IpAddr>,
) -> Result<Allocation> {
    let range_id = set_idx.to_string();
    // One address per attachment and range set (the spec forbids a second
    // ADD without DEL; the reference checks the same).
    if let Some(ip) = store
        .known_by_id(id, ifname)?
        .into_iter()
        .find(|ip| set.contains(*ip))
    {
        return Err(Error::Duplicate {
            ip,
            id: id.trim().to_string(),
            ifname: ifname.to_string(),
        });
    }

    if let Some(req) = requested {
        let req = req.to_canonical();
        let range = set.range_for(req).ok_or_else(|| Error::NotInRange {
            ip: req,
            range_set: set.to_string(),
        })?;
        if req == range.gateway {
            return Err(Error::IsGateway { ip: req });
        }
        if !store.reserve(id, ifname, req, &range_id)? {
            return Err(Error::AddressInUse {
                ip: req,
                range_set: set.to_string(),
            });
        }
        return Ok(Allocation {
            address: mk_net(req, range.subnet.prefix_len()),
            gateway: range.gateway,
            range_set: set_idx,
        });
    }

    let last = store.last_reserved(&range_id);
    for walk in 0..2 {
        // A second walk only after the store refreshed what the first one
        // trusted: a stale "taken" must not make a pool look full.
        if walk == 1 && !store.rescan()? {
            break;
        }
        let mut candidates = set.candidates(last);
        while let Some((ip, range)) = candidates.next() {
            // Runs of known-taken addresses are skipped whole, so a walk over
            // a full pool costs a few word tests; the reservation below still
            // decides.
            let run = store.taken_run(ip);
            if run > 0 {
                candidates.skip_following(u128::from(run - 1));
                continue;
            }
            if store.reserve(id, ifname, ip, &range_id)? {
                return Ok(Allocation {
                    address: mk_net(ip, range.subnet.prefix_len()),
                    gateway: range.gateway,
                    range_set: set_idx,
                });
            }
        }
    }
    Err(Error::Exhausted {
        range_set: set.to_string(),
    })
}

fn mk_net(ip: IpAddr, prefix: u8) -> IpNet {
    // The prefix comes from a subnet of the same family, so this cannot fail;
    // fall back to a host route rather than panic.
    IpNet::new(ip, prefix).unwrap_or_else(|_| IpNet::from(ip))
}

/// Allocate one address per range set, honouring requested addresses (each
/// goes to the first range set containing it). Everything allocated here is
/// released again when any step fails.
pub fn allocate_all<S: Store + ?Sized>(
    store: &mut S,
    sets: &[RangeSet],
    id: &str,
    ifname: &str,
    requested: &[IpAddr],
) -> Result<Vec<Allocation>> {
    let mut pending: Vec<IpAddr> = Vec::new();
    for ip in requested {
        let ip = ip.to_canonical();
        if !pending.contains(&ip) {
            pending.push(ip);
        }
    }
    let mut done: Vec<Allocation> = Vec::new();
    let result = (|| {
        for (idx, set) in sets.iter().enumerate() {
            let req = pending
                .iter()
                .position(|ip| set.contains(*ip))
                .map(|p| pending.remove(p));
            let a = allocate(store, set, idx, id, ifname, req)?;
            done.push(a);
        }
        if !pending.is_empty() {
            return Err(Error::Unfulfilled(pending.clone()));
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(done),
        Err(e) => {
            for a in &done {
                let _ = store.release_ip(a.address.addr(), id, ifname);
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::RangeConfig;
    use crate::store::MemStore;

    fn set(subnet: &str) -> RangeSet {
        RangeSet::from_config(&[RangeConfig {
            subnet: Some(subnet.into()),
            ..Default::default()
        }])
        .unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn round_robin_skips_gateway_and_wraps() {
        let s = set("10.0.0.0/29");
        let mut st = MemStore::default();
        let mut got = Vec::new();
        for i in 0..5 {
            let a = allocate(&mut st, &s, 0, &format!("c{i}"), "eth0", None).unwrap();
            assert_eq!(a.gateway, ip("10.0.0.1"));
            assert_eq!(a.address.prefix_len(), 29);
            got.push(a.address.addr().to_string());
        }
        assert_eq!(
            got,
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
        let e = allocate(&mut st, &s, 0, "c9", "eth0", None).unwrap_err();
        assert_eq!(e.code(), 11);
        // free .3; round robin continues after the last reserved (.6) and wraps
        st.release_by_id("c1", "eth0").unwrap();
        let a = allocate(&mut st, &s, 0, "c9", "eth0", None).unwrap();
        assert_eq!(a.address.addr(), ip("10.0.0.3"));
    }

    #[test]
    fn requested_and_refusals() {
        let s = set("10.0.0.0/24");
        let mut st = MemStore::default();
        let a = allocate(&mut st, &s, 0, "a", "eth0", Some(ip("10.0.0.77"))).unwrap();
        assert_eq!(a.address.to_string(), "10.0.0.77/24");
        let e = allocate(&mut st, &s, 0, "b", "eth0", Some(ip("10.0.0.77"))).unwrap_err();
        assert!(matches!(e, Error::AddressInUse { .. }));
        let e = allocate(&mut st, &s, 0, "b", "eth0", Some(ip("10.0.0.1"))).unwrap_err();
        assert!(matches!(e, Error::IsGateway { .. }));
        let e = allocate(&mut st, &s, 0, "b", "eth0", Some(ip("10.9.0.1"))).unwrap_err();
        assert!(matches!(e, Error::NotInRange { .. }));
        let e = allocate(&mut st, &s, 0, "a", "eth0", None).unwrap_err();
        assert!(matches!(e, Error::Duplicate { .. }));
        assert_eq!(e.code(), 100);
        // another interface of the same container is fine
        allocate(&mut st, &s, 0, "a", "eth1", None).unwrap();
    }

    #[test]
    fn dual_stack_and_rollback() {
        let sets = [set("10.0.0.0/24"), set("2001:db8::/120")];
        let mut st = MemStore::default();
        let r = allocate_all(&mut st, &sets, "a", "eth0", &[ip("2001:db8::9")]).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].address.to_string(), "10.0.0.2/24");
        assert_eq!(r[1].address.to_string(), "2001:db8::9/120");
        // unfulfilled request: nothing stays allocated
        let e = allocate_all(&mut st, &sets, "b", "eth0", &[ip("192.168.1.1")]).unwrap_err();
        assert!(matches!(e, Error::Unfulfilled(_)));
        assert_eq!(st.allocations.len(), 2);
        // failure in the second set releases the first
        let e = allocate_all(&mut st, &sets, "b", "eth0", &[ip("2001:db8::9")]).unwrap_err();
        assert!(matches!(e, Error::AddressInUse { .. }));
        assert_eq!(st.allocations.len(), 2);
    }

    #[test]
    fn duplicate_rollback_keeps_earlier_allocation() {
        let sets = [set("10.0.0.0/24"), set("10.1.0.0/24")];
        let mut st = MemStore::default();
        allocate(&mut st, &sets[1], 1, "a", "eth0", None).unwrap();
        let e = allocate_all(&mut st, &sets, "a", "eth0", &[]).unwrap_err();
        assert!(matches!(e, Error::Duplicate { .. }));
        // the pre-existing address of set 1 survives; set 0's was rolled back
        assert_eq!(st.allocations.len(), 1);
        assert!(st.allocations.contains_key(&ip("10.1.0.2")));
    }
}
