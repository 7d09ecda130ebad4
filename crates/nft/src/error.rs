//! One error type for every nftables operation, naming what failed.

/// What an nftables operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused an operation (or the whole transaction).
    #[error("failed to {op}: {}", netlink::error::refusal_text(*errno, ext.as_deref()))]
    Kernel {
        /// The operation, in words.
        op: String,
        /// The kernel's errno.
        errno: i32,
        /// The extended-ack message, if the kernel sent one.
        ext: Option<String>,
    },
    /// The socket itself failed (open, send, receive).
    #[error("failed to {op}: {source}")]
    Netlink {
        /// The operation, in words.
        op: String,
        /// The socket error.
        #[source]
        source: netlink::Error,
    },
    /// The kernel sent something we could not decode.
    #[error("failed to {op}: malformed nf_tables reply: {detail}")]
    Malformed {
        /// The operation, in words.
        op: String,
        /// What was wrong with the reply.
        detail: String,
    },
    /// A caller argument that cannot be encoded.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The argument.
        what: String,
        /// Why it cannot be encoded.
        detail: String,
    },
}

/// The result of an nftables operation.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The kernel's errno, when the kernel (or the socket) gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            Error::Netlink { source, .. } => source.errno(),
            _ => None,
        }
    }
    /// ENOENT: table, chain, set or element missing.
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(libc::ENOENT)
    }
    /// EEXIST: the object exists already.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }
    /// ERESTART: the ruleset changed since the generation the batch was
    /// built against; re-read and retry.
    pub fn is_restart(&self) -> bool {
        self.errno() == Some(libc::ERESTART)
    }
    /// EBUSY: e.g. a map element exists with a different value.
    pub fn is_busy(&self) -> bool {
        self.errno() == Some(libc::EBUSY)
    }

    /// Converts a socket-layer error, naming the operation.
    pub(crate) fn from_netlink(op: String, e: netlink::Error) -> Error {
        match e {
            netlink::Error::Kernel { errno, ext, .. } => Error::Kernel { op, errno, ext },
            netlink::Error::Malformed { detail, .. } => Error::Malformed { op, detail },
            other => Error::Netlink { op, source: other },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_the_object() {
        let e = Error::Kernel {
            op: "add rule to chain \"postrouting\" of table inet rcni-nat".into(),
            errno: libc::ENOENT,
            ext: None,
        };
        assert!(e.to_string().starts_with(
            "failed to add rule to chain \"postrouting\" of table inet rcni-nat: No such file or directory"
        ));
        assert!(e.is_not_found());
    }
}
