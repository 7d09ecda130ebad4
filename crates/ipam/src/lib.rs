//! Address management core of rcni: range sets, the round-robin allocator,
//! and an on-disk store byte-compatible with the reference host-local
//! plugin, plus the configuration of the host-local and static plugins.
//! No CNI environment handling lives here.

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
