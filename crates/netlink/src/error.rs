//! One error type for every netlink operation, always naming what failed.

use std::io;

/// A failed netlink operation. `op` reads like `create veth "veth3f2a" in
/// netns /run/netns/x`, so the message is `failed to <op>: <reason>`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused the request (NLMSG_ERROR with a negative errno).
    #[error("failed to {op}: {}", refusal_text(*errno, ext.as_deref()))]
    Kernel {
        /// What was being done.
        op: String,
        /// The positive errno.
        errno: i32,
        /// The extended-ack message (NLMSGERR_ATTR_MSG), e.g. "Unknown device type".
        ext: Option<String>,
    },
    /// A socket or device-file system call failed.
    #[error("failed to {op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The kernel sent something we could not decode.
    #[error("failed to {op}: malformed netlink reply: {detail}")]
    Malformed {
        /// What was being done.
        op: String,
        /// What was wrong with the reply.
        detail: String,
    },
    /// The caller passed an argument the kernel would reject anyway.
    #[error("failed to {op}: invalid argument: {detail}")]
    Invalid {
        /// What was being done.
        op: String,
        /// What was wrong with the argument.
        detail: String,
    },
    /// Opening or entering a namespace failed.
    #[error(transparent)]
    NetNs(#[from] netns::Error),
}

/// How a kernel refusal reads: the errno's text, then the extended-ack
/// message in parentheses when the kernel sent one (`File exists (Unknown
/// device type)`). Shared by every netlink family's error (nf_tables too).
pub fn refusal_text(errno: i32, ext: Option<&str>) -> String {
    let reason = io::Error::from_raw_os_error(errno);
    match ext {
        Some(m) if !m.is_empty() => format!("{reason} ({m})"),
        _ => reason.to_string(),
    }
}

/// This crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The errno behind this error, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The kernel's extended-ack message, if it sent one.
    pub fn ext_message(&self) -> Option<&str> {
        match self {
            Error::Kernel { ext, .. } => ext.as_deref(),
            _ => None,
        }
    }

    /// The object already exists (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    /// The object does not exist. Kernels spell that differently per object:
    /// ENODEV (links), ENOENT (neighbours, rules, qdiscs), ESRCH (routes),
    /// EADDRNOTAVAIL (addresses).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL)
        )
    }

    /// The kernel lacks the feature (module, link type, qdisc or filter
    /// kind, option).
    pub fn is_not_supported(&self) -> bool {
        // Unknown link kinds give EOPNOTSUPP; unknown tc qdisc/classifier
        // kinds give ENOENT, told apart from "no such object" only by the
        // extended-ack text.
        const MISSING: [&str; 3] = [
            "Unknown device type",
            "TC classifier not found",
            "Specified qdisc kind is unknown",
        ];
        matches!(self.errno(), Some(libc::EOPNOTSUPP))
            || self
                .ext_message()
                .is_some_and(|m| MISSING.iter().any(|x| m.contains(x)))
    }

    /// The operation description this error carries.
    pub fn op(&self) -> &str {
        match self {
            Error::Kernel { op, .. }
            | Error::Io { op, .. }
            | Error::Malformed { op, .. }
            | Error::Invalid { op, .. } => op,
            Error::NetNs(_) => "",
        }
    }

    /// Replaces the operation description (the socket layer reports errors
    /// with a generic one; typed operations name their object).
    pub(crate) fn with_op(mut self, new: String) -> Self {
        match &mut self {
            Error::Kernel { op, .. }
            | Error::Io { op, .. }
            | Error::Malformed { op, .. }
            | Error::Invalid { op, .. } => *op = new,
            Error::NetNs(_) => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_the_object() {
        let e = Error::Kernel {
            op: "create veth \"veth3f2a\"".into(),
            errno: libc::EEXIST,
            ext: None,
        };
        assert_eq!(
            e.to_string(),
            "failed to create veth \"veth3f2a\": File exists (os error 17)"
        );
        assert!(e.is_exists());
        assert!(!e.is_not_found());
        let e = Error::Kernel {
            op: "x".into(),
            errno: libc::EOPNOTSUPP,
            ext: Some("Unknown device type".into()),
        };
        assert!(e.to_string().ends_with("(Unknown device type)"), "{e}");
        assert!(e.is_not_supported());
    }
}
