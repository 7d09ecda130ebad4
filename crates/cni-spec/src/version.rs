//! Spec versions and their ordering.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Every spec version rcni speaks, oldest first.
pub const ALL_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The newest spec version.
pub const LATEST: &str = "1.1.0";

/// A parsed `major.minor.patch` version. Missing parts count as 0, as libcni does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Patch number.
    pub patch: u32,
}

impl Version {
    /// Parses `MAJOR.MINOR.PATCH`; `None` otherwise.
    pub fn parse(s: &str) -> Option<Version> {
        let mut parts = s.split('.');
        let mut next = |required: bool| -> Option<u32> {
            match parts.next() {
                Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok(),
                Some(_) => None,
                None if required => None,
                None => Some(0),
            }
        };
        let v = Version {
            major: next(true)?,
            minor: next(false)?,
            patch: next(false)?,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(v)
    }
}

/// Compares two version strings; unparsable strings sort lowest.
pub fn compare(a: &str, b: &str) -> Ordering {
    Version::parse(a).cmp(&Version::parse(b))
}

/// `a >= b`, false when `a` does not parse.
pub fn at_least(a: &str, b: &str) -> bool {
    matches!(
        (Version::parse(a), Version::parse(b)),
        (Some(x), Some(y)) if x >= y
    )
}

/// True when `v` is one of [`ALL_VERSIONS`].
pub fn is_known(v: &str) -> bool {
    ALL_VERSIONS.contains(&v)
}

/// The VERSION verb's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The version this answer is printed as.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Every version the plugin speaks.
    #[serde(rename = "supportedVersions")]
    pub supported_versions: Vec<String>,
}

impl VersionInfo {
    /// An answer for a plugin speaking `supported` (printed as the latest version).
    pub fn new(supported: &[&str]) -> VersionInfo {
        VersionInfo {
            cni_version: LATEST.to_string(),
            supported_versions: supported.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// True when `v` is among the supported versions.
    pub fn supports(&self, v: &str) -> bool {
        self.supported_versions.iter().any(|s| s == v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering() {
        assert!(at_least("1.1.0", "0.4.0"));
        assert!(at_least("0.4.0", "0.4.0"));
        assert!(!at_least("0.3.1", "0.4.0"));
        assert!(!at_least("garbage", "0.1.0"));
        assert_eq!(compare("0.10.0", "0.9.0"), Ordering::Greater);
        assert_eq!(
            Version::parse("1"),
            Some(Version {
                major: 1,
                minor: 0,
                patch: 0
            })
        );
        assert_eq!(Version::parse("1.x"), None);
        assert_eq!(Version::parse("1.0.0.0"), None);
        let mut sorted = ALL_VERSIONS.to_vec();
        sorted.sort_by(|a, b| compare(a, b));
        assert_eq!(sorted, ALL_VERSIONS);
    }
}
