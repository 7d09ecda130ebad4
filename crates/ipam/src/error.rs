//! Errors of the address-management core, each with the CNI error code a
//! plugin should report for it.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

/// CNI error code: invalid network configuration.
pub const CODE_INVALID_CONFIG: u32 = 7;
/// CNI error code: decoding failure.
pub const CODE_DECODE: u32 = 6;
/// CNI error code: I/O failure.
pub const CODE_IO: u32 = 5;
/// CNI error code: try again later.
pub const CODE_TRY_AGAIN: u32 = 11;
/// Plugin-specific code: the attachment already holds an address in this
/// range set (the runtime called ADD twice without DEL).
pub const CODE_DUPLICATE: u32 = 100;

/// What can go wrong in address management; [`Error::code`] maps it to a CNI code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is wrong (code 7).
    #[error("invalid IPAM configuration: {0}")]
    InvalidConfig(String),

    /// The configuration is not valid JSON (code 6).
    #[error("failed to decode IPAM configuration: {0}")]
    Decode(String),

    /// A file of the store could not be read or written.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },

    /// Every address of a range set is taken.
    #[error("no IP addresses available in range set: {range_set}")]
    Exhausted {
        /// The range set, as printed.
        range_set: String,
    },

    /// A requested address is held by someone else.
    #[error("requested IP address {ip} is not available in range set {range_set}")]
    AddressInUse {
        /// The requested address.
        ip: IpAddr,
        /// The range set, as printed.
        range_set: String,
    },

    /// A requested address is outside every range.
    #[error("requested IP address {ip} is not in range set {range_set}")]
    NotInRange {
        /// The requested address.
        ip: IpAddr,
        /// The range set, as printed.
        range_set: String,
    },

    /// A requested address is the subnet's gateway.
    #[error("requested IP address {ip} is the gateway of its subnet")]
    IsGateway {
        /// The requested address.
        ip: IpAddr,
    },

    /// The attachment already holds an address (code 100 in the reference).
    #[error("{ip} has been allocated to {id}/{ifname}, duplicate allocation is not allowed")]
    Duplicate {
        /// The address held.
        ip: IpAddr,
        /// The container ID holding it.
        id: String,
        /// The interface name holding it.
        ifname: String,
    },

    /// Some requested addresses could not be allocated.
    #[error("failed to allocate all requested IPs: {}", join_ips(.0))]
    Unfulfilled(Vec<IpAddr>),
}

fn join_ips(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(|ip| ip.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

impl Error {
    /// The CNI error code for this error.
    pub fn code(&self) -> u32 {
        match self {
            Error::InvalidConfig(_) | Error::NotInRange { .. } | Error::IsGateway { .. } => {
                CODE_INVALID_CONFIG
            }
            Error::Unfulfilled(_) => CODE_INVALID_CONFIG,
            Error::Decode(_) => CODE_DECODE,
            Error::Io { .. } => CODE_IO,
            Error::Exhausted { .. } | Error::AddressInUse { .. } => CODE_TRY_AGAIN,
            Error::Duplicate { .. } => CODE_DUPLICATE,
        }
    }

    pub(crate) fn io(context: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            context,
            path: path.into(),
            source,
        }
    }
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
