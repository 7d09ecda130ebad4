//! CNI specification types: network configurations, results of every spec
//! version with conversions between them, the error object, and the pure
//! validation rules runtimes and plugins share. No OS code lives here.

#![warn(missing_docs)]

pub mod args;
pub mod conf;
pub mod error;
pub mod json;
pub mod result;
pub mod runtime_config;
pub mod validate;
pub mod version;

pub use args::CniArgs;
pub use conf::{GcAttachment, NetConf, NetConfList};
pub use error::{Error, ErrorCode};
pub use result::{Dns, Interface, IpConfig, Result, Route};
pub use version::{VersionInfo, ALL_VERSIONS, LATEST};
