//! Address management core of rcni: range sets, the round-robin allocator,
//! and an on-disk store byte-compatible with the reference host-local
//! plugin, plus the configuration of the host-local and static plugins.
//! No CNI environment handling lives here.
//!
//! Most plugins never use this crate directly: they delegate to the
//! `host-local` plugin (see `cni_invoke::ipam_add`). It is for writing an
//! IPAM plugin of your own, or for reading host-local's store.
//!
//! # Example
//!
//! Allocate from a range set, in memory ([`DiskStore`] is the same on disk,
//! in the reference's layout):
//!
//! ```
//! use ipam::{allocate, MemStore, RangeConfig, RangeSet, Store};
//!
//! let set = RangeSet::from_config(&[RangeConfig {
//!     subnet: Some("10.1.0.0/29".into()),
//!     ..Default::default()
//! }])?;
//! let mut store = MemStore::default();
//! let a = allocate(&mut store, &set, 0, "ctr-1", "eth0", None)?;
//! assert_eq!(a.address.to_string(), "10.1.0.2/29"); // .1 is the gateway
//! assert_eq!(a.gateway.to_string(), "10.1.0.1");
//! let b = allocate(&mut store, &set, 0, "ctr-2", "eth0", None)?;
//! assert_eq!(b.address.to_string(), "10.1.0.3/29");
//! // DEL of ctr-1 releases its address.
//! assert_eq!(store.release_by_id("ctr-1", "eth0")?, vec![a.address.addr()]);
//! # Ok::<(), ipam::Error>(())
//! ```

#![warn(missing_docs)]

pub mod allocator;
pub mod config;
pub mod error;
pub mod ops;
pub mod range;
pub mod store;

pub use allocator::{allocate, allocate_all, Allocation};
pub use config::{
    parse_ip_list, parse_resolv_conf, Dns, HostLocalConfig, StaticAddress, StaticConfig,
    StoreConfig,
};
pub use error::{Error, Result};
pub use range::{Range, RangeConfig, RangeSet};
pub use store::{DiskGuard, DiskStore, MemStore, Owner, Store, DEFAULT_DATA_DIR};
