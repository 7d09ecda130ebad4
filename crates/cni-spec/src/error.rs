//! The CNI error object and its well-known codes.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Well-known error codes (0–99 are reserved by the spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    /// The plugin does not speak the requested `cniVersion`.
    IncompatibleVersion = 1,
    /// A configuration field the plugin does not support.
    UnsupportedField = 2,
    /// The container is unknown or gone (its netns cannot be opened).
    UnknownContainer = 3,
    /// A required `CNI_*` environment variable is missing or invalid.
    InvalidEnvironment = 4,
    /// An I/O failure (kernel call, file, exec).
    Io = 5,
    /// The config or a result could not be decoded as JSON.
    Decoding = 6,
    /// The config is well-formed JSON but wrong.
    InvalidConfig = 7,
    /// A transient condition; the runtime should retry later.
    TryAgainLater = 11,
    /// STATUS: the plugin cannot serve ADD now.
    NotAvailable = 50,
    /// STATUS: the plugin cannot serve ADD now, existing attachments keep working.
    NotAvailableExisting = 51,
    /// What the reference's skeleton uses for errors without a code.
    Internal = 999,
}

/// `{"cniVersion","code","msg","details"}`, printed on stdout with a non-zero exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    /// `cniVersion` of the error object.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    /// The numeric error code (see [`ErrorCode`]; 100+ are plugin-specific).
    pub code: u32,
    /// `msg`: a short description.
    #[serde(default)]
    pub msg: String,
    /// `details`: a longer one, possibly empty.
    #[serde(default)]
    pub details: String,
}

impl Error {
    /// An error with `code` and message.
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Error {
        Error::with_code(code as u32, msg)
    }

    /// A plugin-specific code (100 and above) or any raw code.
    pub fn with_code(code: u32, msg: impl Into<String>) -> Error {
        Error {
            cni_version: String::new(),
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Adds `details`.
    pub fn details(mut self, details: impl Into<String>) -> Error {
        self.details = details.into();
        self
    }

    /// Sets the `cniVersion` the error object is printed with.
    pub fn version(mut self, v: impl Into<String>) -> Error {
        self.cni_version = v.into();
        self
    }

    /// Code 7, invalid network config.
    pub fn invalid_config(msg: impl Into<String>) -> Error {
        Error::new(ErrorCode::InvalidConfig, msg)
    }

    /// Code 4, invalid environment variables.
    pub fn invalid_env(msg: impl Into<String>) -> Error {
        Error::new(ErrorCode::InvalidEnvironment, msg)
    }

    /// Code 5, an I/O failure.
    pub fn io(msg: impl Into<String>) -> Error {
        Error::new(ErrorCode::Io, msg)
    }

    /// Code 6, failed to decode.
    pub fn decoding(msg: impl Into<String>) -> Error {
        Error::new(ErrorCode::Decoding, msg)
    }

    /// Code 999, an internal error (the catch-all of the reference plugins).
    pub fn internal(msg: impl Into<String>) -> Error {
        Error::new(ErrorCode::Internal, msg)
    }

    /// The error object as JSON, as printed on stdout.
    pub fn to_json(&self) -> String {
        // Serialising a struct of strings and an integer cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.msg)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// The `Result` alias plugins use.
pub type CniResult<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let e = Error::invalid_config("bad")
            .details("field x")
            .version("1.1.0");
        assert_eq!(
            e.to_json(),
            r#"{"cniVersion":"1.1.0","code":7,"msg":"bad","details":"field x"}"#
        );
        let back: Error = serde_json::from_str(r#"{"code":11,"msg":"later"}"#).expect("parse");
        assert_eq!(back.code, ErrorCode::TryAgainLater as u32);
        assert_eq!(back.to_string(), "later");
    }
}
