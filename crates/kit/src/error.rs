//! The plugin error: one type for everything a plugin can fail on (the
//! kernel through netlink or nf_tables, namespaces, files, the IPAM core, a
//! delegated plugin's error object, the shared recipes themselves), one
//! mapping to CNI codes ([`Error::code`]), context added with
//! [`Error::context`] / [`ResultExt::context`] instead of formatting, and a
//! [`Teardown`] collector for DEL and GC that keeps going and keeps types.
//!
//! The wire error (`cni_spec::Error`) is made once, by `From<Error>`, where
//! a plugin's verb returns; an error object that came from a delegated
//! plugin passes through with its own code, message and details.

use cni_spec::ErrorCode;

/// Why a plugin (or one of the recipes it composes) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused an rtnetlink request, or the socket failed
    /// (code 5).
    #[error(transparent)]
    Netlink(#[from] netlink::Error),
    /// The kernel refused an nf_tables request (code 5).
    #[error(transparent)]
    Nft(#[from] nft::Error),
    /// Entering or creating a namespace failed (code 5).
    #[error(transparent)]
    NetNs(#[from] netns::Error),
    /// The container's namespace cannot be opened (code 3); see
    /// [`crate::open_ns`].
    #[error(transparent)]
    UnknownContainer(netns::Error),
    /// The IPAM core failed, with its own code (7, 11, 5, ...).
    #[error(transparent)]
    Ipam(#[from] ipam::Error),
    /// An error object: a delegated plugin's (kept as it came, code,
    /// message and details) or one this plugin made itself.
    #[error("{}", cni_text(.0))]
    Cni(#[from] cni_spec::Error),
    /// A file or system call failed (code 5).
    #[error("failed to {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A system call of the OS layer ([`crate::os`]) failed; add what was
    /// being done with [`ResultExt::context`] (code 5).
    #[error(transparent)]
    Os(#[from] std::io::Error),
    /// The configuration or the state found contradicts what was asked
    /// (code 7).
    #[error("{0}")]
    Invalid(String),
    /// Something that must not exist yet exists, e.g. the container
    /// interface name (code 999, as the reference).
    #[error("{0}")]
    Exists(String),
    /// Something expected is missing, e.g. on CHECK (code 999, as the
    /// reference).
    #[error("{0}")]
    Missing(String),
    /// The kernel or this build lacks a feature (code 2).
    #[error("{0}")]
    Unsupported(String),
    /// `source`, with what was being done around it. Keeps the code of
    /// `source`.
    #[error("{what}: {source}")]
    Context {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: Box<Error>,
    },
    /// Several failures of one teardown ([`Teardown`]), in the order they
    /// happened. Reports the code of the most significant one.
    #[error("{}", several_text(.0))]
    Several(Vec<Error>),
}

/// The plugin kit's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn cni_text(e: &cni_spec::Error) -> String {
    if e.details.is_empty() {
        e.msg.clone()
    } else {
        format!("{}: {}", e.msg, e.details)
    }
}

fn several_text(errs: &[Error]) -> String {
    let first = most_significant(errs);
    let mut parts: Vec<String> = Vec::with_capacity(errs.len());
    if let Some(i) = first {
        parts.push(errs[i].to_string());
    }
    for (j, e) in errs.iter().enumerate() {
        if Some(j) != first {
            parts.push(e.to_string());
        }
    }
    parts.join("; ")
}

/// How much a code says: a specific code (a delegated plugin's 11, an
/// unknown container's 3, ...) beats the generic I/O code 5, which beats
/// the catch-all 999.
fn significance(code: u32) -> u8 {
    match code {
        c if c == ErrorCode::Internal as u32 => 0,
        c if c == ErrorCode::Io as u32 => 1,
        _ => 2,
    }
}

/// The index of the error whose code wins (the first of the most
/// significant).
fn most_significant(errs: &[Error]) -> Option<usize> {
    let mut best: Option<(usize, u8)> = None;
    for (i, e) in errs.iter().enumerate() {
        let s = significance(e.code());
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
}

impl Error {
    /// A failed file or system call.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// Wraps this error with what was being done; the code stays the same.
    pub fn context(self, what: impl Into<String>) -> Error {
        Error::Context {
            what: what.into(),
            source: Box::new(self),
        }
    }

    /// The one mapping from a failure to its CNI code.
    pub fn code(&self) -> u32 {
        let io = ErrorCode::Io as u32;
        match self {
            Error::Netlink(_)
            | Error::Nft(_)
            | Error::NetNs(_)
            | Error::Io { .. }
            | Error::Os(_) => io,
            Error::UnknownContainer(_) => ErrorCode::UnknownContainer as u32,
            Error::Ipam(e) => e.code(),
            Error::Cni(e) => e.code,
            Error::Invalid(_) => ErrorCode::InvalidConfig as u32,
            Error::Unsupported(_) => ErrorCode::UnsupportedField as u32,
            Error::Exists(_) | Error::Missing(_) => ErrorCode::Internal as u32,
            Error::Context { source, .. } => source.code(),
            Error::Several(errs) => {
                most_significant(errs).map_or(ErrorCode::Internal as u32, |i| errs[i].code())
            }
        }
    }

    /// The errno behind a kernel or system-call failure, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Netlink(e) => e.errno(),
            Error::Nft(e) => e.errno(),
            Error::Io { source, .. } | Error::Os(source) => source.raw_os_error(),
            Error::Context { source, .. } => source.errno(),
            _ => None,
        }
    }

    /// The error object this error was, if it was one (a delegated
    /// plugin's), seen through context.
    fn as_cni(&self) -> Option<&cni_spec::Error> {
        match self {
            Error::Cni(e) => Some(e),
            Error::Context { source, .. } => source.as_cni(),
            _ => None,
        }
    }
}

impl From<Error> for cni_spec::Error {
    fn from(e: Error) -> cni_spec::Error {
        // An error object passes through untouched (its own message and
        // details), unless context was added to it.
        if let Error::Cni(inner) = e {
            return inner;
        }
        if let Error::Several(errs) = &e {
            if let Some(i) = most_significant(errs) {
                if let Some(inner) = errs[i].as_cni() {
                    // The winner's own message first, the rest as details.
                    let others: Vec<String> = errs
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(_, e)| e.to_string())
                        .collect();
                    let msg = match &errs[i] {
                        Error::Cni(_) => inner.msg.clone(),
                        other => other.to_string(),
                    };
                    let mut out = cni_spec::Error::with_code(inner.code, msg);
                    let mut details = inner.details.clone();
                    if !others.is_empty() {
                        if !details.is_empty() {
                            details.push_str("; ");
                        }
                        details.push_str("also: ");
                        details.push_str(&others.join("; "));
                    }
                    out.details = details;
                    return out;
                }
            }
        }
        cni_spec::Error::with_code(e.code(), e.to_string())
    }
}

/// Converts any failure the kit knows to the wire error through the one
/// mapping: `sock.set_link_up(i).map_err(kit::err)?` in a verb that
/// returns a CNI result.
pub fn err(e: impl Into<Error>) -> cni_spec::Error {
    cni_spec::Error::from(e.into())
}

/// Context on results: `sock.add_route(&r).context("add the default route")?`.
pub trait ResultExt<T> {
    /// Turns the error into the plugin error with what was being done.
    fn context(self, what: impl Into<String>) -> Result<T>;
    /// The same, with the text made only on failure.
    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().context(what))
    }

    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| e.into().context(what()))
    }
}

/// Collects the failures of a teardown (DEL, GC) so that every step runs:
/// each failure keeps its type, and [`Teardown::finish`] reports them all
/// with the code of the most significant one (a delegated IPAM's own code
/// beats a generic 5).
#[derive(Debug, Default)]
pub struct Teardown {
    errors: Vec<Error>,
}

impl Teardown {
    /// An empty collector.
    pub fn new() -> Teardown {
        Teardown::default()
    }

    /// Records the failure of a step, if it failed; gives its value if not.
    pub fn step<T, E: Into<Error>>(&mut self, r: std::result::Result<T, E>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(e.into());
                None
            }
        }
    }

    /// Records a failure.
    pub fn push(&mut self, e: impl Into<Error>) {
        self.errors.push(e.into());
    }

    /// Whether every step so far succeeded.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok` when every step succeeded; the one failure as it was; or all
    /// of them.
    pub fn finish(mut self) -> Result<()> {
        match self.errors.len() {
            0 => Ok(()),
            1 => Err(self.errors.remove(0)),
            _ => Err(Error::Several(self.errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(errno: i32) -> Error {
        Error::Netlink(netlink::Error::Kernel {
            op: "add route".into(),
            errno,
            ext: None,
        })
    }

    #[test]
    fn kernel_refusals_are_io() {
        assert_eq!(kernel(libc::EINVAL).code(), 5);
        assert_eq!(kernel(libc::EEXIST).context("add address").code(), 5);
        let w: cni_spec::Error = kernel(libc::ENETUNREACH).context("add route x").into();
        assert_eq!(w.code, 5);
        assert!(
            w.msg.starts_with("add route x: failed to add route"),
            "{}",
            w.msg
        );
    }

    #[test]
    fn delegated_error_object_passes_through() {
        let ipam = cni_spec::Error::with_code(11, "busy").details("d");
        let w: cni_spec::Error = Error::from(ipam.clone()).into();
        assert_eq!(w, ipam);
        assert_eq!(err(ipam.clone()), ipam);
    }

    #[test]
    fn teardown_keeps_going_and_reports_the_most_significant_code() {
        let mut td = Teardown::new();
        assert_eq!(td.step(Ok::<u8, Error>(1)), Some(1));
        td.push(kernel(libc::EBUSY));
        td.push(Error::Missing("gone".into()));
        td.push(cni_spec::Error::with_code(11, "try later"));
        assert!(!td.is_ok());
        let e = td.finish().expect_err("failed");
        assert_eq!(e.code(), 11);
        let w: cni_spec::Error = e.into();
        assert_eq!(w.code, 11);
        assert_eq!(w.msg, "try later");
        assert!(
            w.details.contains("also: failed to add route"),
            "{}",
            w.details
        );
        assert!(w.details.contains("gone"), "{}", w.details);

        // Generic codes: 5 beats 999, the first of equals wins.
        let mut td = Teardown::new();
        td.push(Error::Exists("x".into()));
        td.push(kernel(libc::EPERM));
        td.push(kernel(libc::EACCES));
        let w: cni_spec::Error = td.finish().expect_err("failed").into();
        assert_eq!(w.code, 5);
        assert!(w.msg.starts_with("failed to add route"), "{}", w.msg);
        assert!(w.msg.contains("(os error 1); x; failed"), "{}", w.msg);

        // One failure comes back as it was.
        let mut td = Teardown::new();
        td.push(cni_spec::Error::with_code(11, "only"));
        let w: cni_spec::Error = td.finish().expect_err("failed").into();
        assert_eq!((w.code, w.msg.as_str()), (11, "only"));
        assert!(Teardown::new().finish().is_ok());
    }

    #[test]
    fn codes() {
        assert_eq!(Error::Invalid("x".into()).code(), 7);
        assert_eq!(Error::Unsupported("x".into()).code(), 2);
        let gone = netns::Error::NotNetNs { path: "/x".into() };
        assert_eq!(Error::UnknownContainer(gone).code(), 3);
        let ipam = ipam::Error::Exhausted {
            range_set: "10.0.0.0/30".into(),
        };
        assert_eq!(Error::from(ipam).code(), 11);
        let io = std::io::Error::from_raw_os_error(libc::EROFS);
        assert_eq!(Error::io("write x", io).errno(), Some(libc::EROFS));
    }
}
