//! Errors of the shared recipes, each naming its object, with a CNI code.

use cni_spec::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Netlink(#[from] netlink::Error),
    #[error(transparent)]
    NetNs(#[from] netns::Error),
    #[error("failed to {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The configuration or the state found contradicts what was asked.
    #[error("{0}")]
    Invalid(String),
    /// Something that must not exist yet exists (e.g. the container
    /// interface name).
    #[error("{0}")]
    Exists(String),
    /// Something expected is missing (CHECK).
    #[error("{0}")]
    Missing(String),
    /// The kernel or this build lacks a feature.
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Invalid(_) => ErrorCode::InvalidConfig,
            Error::Unsupported(_) => ErrorCode::UnsupportedField,
            Error::Netlink(_) | Error::NetNs(_) | Error::Io { .. } => ErrorCode::Io,
            Error::Exists(_) | Error::Missing(_) => ErrorCode::Internal,
        }
    }
}

impl From<Error> for cni_spec::Error {
    fn from(e: Error) -> cni_spec::Error {
        cni_spec::Error::new(e.code(), e.to_string())
    }
}
