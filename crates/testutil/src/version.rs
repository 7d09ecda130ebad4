//! Spec-version helpers: one `#[test]` per version ([`per_version!`]) and
//! predicates for the verbs a version has.

use cni_spec::version::at_least;

/// Every spec version, oldest first: tests run once per version.
pub const ALL_SPEC_VERSIONS: &[&str] = cni_spec::ALL_VERSIONS;

/// The version has CHECK (0.4.0 and later).
pub fn has_check(v: &str) -> bool {
    at_least(v, "0.4.0")
}

/// The version has GC (1.1.0 and later).
pub fn has_gc(v: &str) -> bool {
    at_least(v, "1.1.0")
}

/// The version has STATUS (1.1.0 and later).
pub fn has_status(v: &str) -> bool {
    at_least(v, "1.1.0")
}

/// The version prints the legacy `ip4`/`ip6` result (0.1.0 and 0.2.0).
pub fn is_legacy(v: &str) -> bool {
    !at_least(v, "0.3.0")
}

/// Runs `f` once per spec version, naming the version on failure. Prefer
/// [`per_version!`](crate::per_version), which gives every version its
/// own `#[test]` so a failing version does not hide the others.
pub fn for_each_version(mut f: impl FnMut(&str)) {
    for v in ALL_SPEC_VERSIONS {
        eprintln!("-- cniVersion {v}");
        f(v);
    }
}

/// One `#[test]` per spec version.
///
/// `per_version!(add_del, |v| { ... })` makes a module `add_del` with the
/// tests `add_del::v0_1_0` … `add_del::v1_1_0`, each running the body
/// with `v` (a `&'static str`) set to its version. Attributes before the
/// name (`#[ignore = "…"]`) go on every generated test. The module sees
/// everything of the enclosing file (`use super::*`). A filter naming the
/// module (`cargo test add_del`) runs every version; one version:
/// `cargo test add_del::v0_4_0`.
#[macro_export]
macro_rules! per_version {
    ($(#[$attr:meta])* $name:ident, |$v:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn __per_version_body($v: &'static str) $body

            $(#[$attr])* #[test] fn v0_1_0() { __per_version_body("0.1.0") }
            $(#[$attr])* #[test] fn v0_2_0() { __per_version_body("0.2.0") }
            $(#[$attr])* #[test] fn v0_3_0() { __per_version_body("0.3.0") }
            $(#[$attr])* #[test] fn v0_3_1() { __per_version_body("0.3.1") }
            $(#[$attr])* #[test] fn v0_4_0() { __per_version_body("0.4.0") }
            $(#[$attr])* #[test] fn v1_0_0() { __per_version_body("1.0.0") }
            $(#[$attr])* #[test] fn v1_1_0() { __per_version_body("1.1.0") }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    // The macro's list is literal: it must name exactly the spec's versions.
    #[test]
    fn macro_covers_every_spec_version() {
        assert_eq!(
            ALL_SPEC_VERSIONS,
            ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        );
    }

    crate::per_version!(body_gets_its_version, |v| {
        assert!(ALL_SPEC_VERSIONS.contains(&v), "{v}");
    });

    #[test]
    fn predicates() {
        assert!(!has_check("0.3.1") && has_check("0.4.0") && has_check("1.1.0"));
        assert!(!has_gc("1.0.0") && has_gc("1.1.0"));
        assert!(!has_status("1.0.0") && has_status("1.1.0"));
        assert!(is_legacy("0.2.0") && !is_legacy("0.3.0"));
    }
}
