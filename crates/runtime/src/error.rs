//! The runtime's error type.

use std::fmt;
use std::path::PathBuf;

/// Everything the runtime can fail with. Messages name the file, the
/// plugin or the attachment involved; [`Error::code`] gives the CNI error
/// code when there is one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file could not be read or parsed.
    #[error("{}: {msg}", file.display())]
    ConfigFile {
        /// The file.
        file: PathBuf,
        /// What was wrong.
        msg: String,
    },

    /// Configuration bytes (not from a file) could not be parsed.
    #[error("invalid network configuration: {0}")]
    Config(String),

    /// No configuration in `dir` has this network name.
    #[error("no network configuration named {name:?} in {}", dir.display())]
    NotFound {
        /// The directory searched.
        dir: PathBuf,
        /// The network name asked for.
        name: String,
    },

    /// `dir` holds no configuration file at all.
    #[error("no network configurations found in {}", dir.display())]
    NoConfigs {
        /// The directory searched.
        dir: PathBuf,
    },

    /// The call was refused before any plugin ran (bad container id,
    /// interface name, network name, plugin type, unsupported version...).
    #[error("{0}")]
    Invalid(cni_spec::Error),

    /// A plugin failed, timed out or printed something unreadable.
    #[error("plugin {plugin} failed ({verb}): {source}")]
    Plugin {
        /// `type="bridge" name="net"`, as libcni describes a plugin.
        plugin: String,
        /// The verb (`ADD`, `DEL`, ...).
        verb: &'static str,
        /// The plugin's error object.
        #[source]
        source: cni_spec::Error,
    },

    /// GC could not remove an attachment that is no longer valid.
    #[error("failed to delete stale attachment {container_id} {ifname}: {source}")]
    StaleAttachment {
        /// The attachment's container.
        container_id: String,
        /// The attachment's interface.
        ifname: String,
        /// Why its DEL failed.
        #[source]
        source: Box<Error>,
    },

    /// The result cache could not be read or written.
    #[error("result cache {}: {msg}", path.display())]
    Cache {
        /// The cache file or directory.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },

    /// Several independent steps failed (GC keeps going after errors).
    #[error("{}", Joined(.0))]
    Many(Vec<Error>),
}

struct Joined<'a>(&'a [Error]);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} errors:", self.0.len())?;
        for e in self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl Error {
    /// The CNI error code behind this error, if any (the first one for
    /// [`Error::Many`]).
    pub fn code(&self) -> Option<u32> {
        match self {
            Error::Invalid(e) => Some(e.code),
            Error::Plugin { source, .. } => Some(source.code),
            Error::StaleAttachment { source, .. } => source.code(),
            Error::Many(v) => v.iter().find_map(Error::code),
            _ => None,
        }
    }

    /// The individual errors: several for [`Error::Many`], else just this one.
    pub fn errors(&self) -> Vec<&Error> {
        match self {
            Error::Many(v) => v.iter().flat_map(Error::errors).collect(),
            e => vec![e],
        }
    }

    /// True when a plugin was killed because it ran past the timeout.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Plugin { source, .. } => source.msg.contains("timed out"),
            Error::StaleAttachment { source, .. } => source.is_timeout(),
            Error::Many(v) => v.iter().any(Error::is_timeout),
            _ => false,
        }
    }

    /// Collapses a list of errors: none is `Ok`, one is itself, more are [`Error::Many`].
    pub(crate) fn join(mut errs: Vec<Error>) -> Result<()> {
        match errs.len() {
            0 => Ok(()),
            1 => Err(errs.remove(0)),
            _ => Err(Error::Many(errs)),
        }
    }
}

impl From<cni_spec::Error> for Error {
    fn from(e: cni_spec::Error) -> Error {
        Error::Invalid(e)
    }
}

/// The runtime's `Result`.
pub type Result<T> = std::result::Result<T, Error>;
