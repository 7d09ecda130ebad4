//! The scenarios, one module each.

pub(crate) mod chain;
pub(crate) mod host_local;
pub(crate) mod kernel;
pub(crate) mod main_plugin;
pub(crate) mod portmap;
pub(crate) mod start;
