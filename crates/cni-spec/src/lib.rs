//! CNI specification types: network configurations, results of every spec
//! version with conversions between them, the error object, and the pure
//! validation rules runtimes and plugins share. No OS code lives here.
//!
//! Every spec version from 0.1.0 to 1.1.0 is covered ([`ALL_VERSIONS`]). A
//! plugin builds one [`Result`] and prints it in the version its caller
//! asked for; the conversions (for example to the 0.2.0 `ip4`/`ip6` shape)
//! live here, as does the [`Error`] object with the spec's [`ErrorCode`]s.
//! The entry point that reads `CNI_*` variables and stdin is the `cni-skel`
//! crate; this one has no I/O.
//!
//! # Example
//!
//! Parse a network configuration, build a result, print it for an old and a
//! new caller:
//!
//! ```
//! use cni_spec::{IpConfig, NetConf, Result, Route};
//!
//! let conf = NetConf::parse(br#"{
//!     "cniVersion": "0.2.0", "name": "demo", "type": "p2p",
//!     "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}
//! }"#)?;
//! assert_eq!(conf.ipam_type(), Some("host-local"));
//!
//! let mut result = Result::new("1.1.0");
//! result.ips.push(IpConfig {
//!     interface: None,
//!     address: "10.1.0.5/24".parse().expect("address"),
//!     gateway: Some("10.1.0.1".parse().expect("gateway")),
//! });
//! result.routes.push(Route::new("0.0.0.0/0".parse().expect("net"), None));
//!
//! // 0.2.0 callers get the `ip4` shape, 1.x callers `ips`.
//! let old: serde_json::Value = serde_json::from_str(&result.to_json(&conf.cni_version)?).expect("json");
//! assert_eq!(old["ip4"]["ip"], "10.1.0.5/24");
//! let new: serde_json::Value = serde_json::from_str(&result.to_json("1.1.0")?).expect("json");
//! assert_eq!(new["ips"][0]["gateway"], "10.1.0.1");
//!
//! // Errors print as the spec's error object.
//! let e = cni_spec::Error::invalid_config("no subnet");
//! assert!(e.to_json().contains("\"code\":7"));
//! # Ok::<(), cni_spec::Error>(())
//! ```

#![warn(missing_docs)]

pub mod args;
pub mod conf;
pub mod error;
pub mod ident;
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
