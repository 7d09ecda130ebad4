//! The CNI error object and its well-known codes.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Well-known error codes (0–99 are reserved by the spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnvironment = 4,
    Io = 5,
    Decoding = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    NotAvailable = 50,
    NotAvailableExisting = 51,
    /// What the reference's skeleton uses for errors without a code.
    Internal = 999,
}

/// `{"cniVersion","code","msg","details"}`, printed on stdout with a non-zero exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

impl Error {
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

    pub fn details(mut self, details: impl Into<String>) -> Error {
        self.details = details.into();
        self
    }

    pub fn version(mut self, v: impl Into<String>) -> Error {
        self.cni_version = v.into();
        self
    }

    pub fn invalid_config(msg: impl Into<String>) -> Error {
        Error::new(ErrorCode::InvalidConfig, msg)
    }

    pub fn invalid_env(msg: impl Into<String>) -> Error {
        Error::new(ErrorCode::InvalidEnvironment, msg)
    }

    pub fn io(msg: impl Into<String>) -> Error {
        Error::new(ErrorCode::Io, msg)
    }

    pub fn decoding(msg: impl Into<String>) -> Error {
        Error::new(ErrorCode::Decoding, msg)
    }

    pub fn internal(msg: impl Into<String>) -> Error {
        Error::new(ErrorCode::Internal, msg)
    }

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
