//! The node's sysctl allowlist, `/etc/cni/tuning/allowlist.conf` (as the
//! reference since v1.2): when the file exists, every sysctl of an ADD must
//! match one of its regular expressions, one a line (blank lines ignored,
//! surrounding whitespace trimmed). A match is a search anywhere in the
//! sysctl name as written in the config (`net.ipv4.conf.IFNAME.x` keeps
//! `IFNAME`), like Go's `regexp.MatchString`; anchor with `^…$` for whole
//! names. Without the file every `net.*` sysctl may be set.

use cni_spec::error::CniResult;
use cni_spec::Error;
use std::path::Path;

/// Where the reference reads its allowlist; no override exists, tests run
/// the plugin in a private mount namespace instead.
pub const ALLOWLIST_PATH: &str = "/etc/cni/tuning/allowlist.conf";

/// The compiled allowlist, or `None` when the file does not exist.
pub fn load(path: &Path) -> CniResult<Option<Vec<regex_lite::Regex>>> {
    let text = match kit::os::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::io(format!(
                "failed to read the sysctl allowlist {}: {e}",
                path.display()
            )))
        }
    };
    parse(&text, path).map(Some)
}

fn parse(text: &str, path: &Path) -> CniResult<Vec<regex_lite::Regex>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            regex_lite::Regex::new(l).map_err(|e| {
                Error::invalid_config(format!(
                    "sysctl allowlist {}: invalid regular expression {l:?}: {e}",
                    path.display()
                ))
            })
        })
        .collect()
}

/// Refuses (code 7) the first sysctl no expression matches.
pub fn check<'a>(
    allow: &[regex_lite::Regex],
    sysctls: impl IntoIterator<Item = &'a str>,
) -> CniResult<()> {
    for name in sysctls {
        if !allow.iter().any(|r| r.is_match(name)) {
            let list: Vec<&str> = allow.iter().map(regex_lite::Regex::as_str).collect();
            return Err(Error::invalid_config(format!(
                "Sysctl {name} is not allowed. Only the following sysctls are allowed: {list:?} ({ALLOWLIST_PATH})"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> Vec<regex_lite::Regex> {
        parse(text, Path::new("t")).expect("valid")
    }

    #[test]
    fn lines_are_trimmed_and_matches_are_searches() {
        let a = list("\n  ^net\\.core\\.somaxconn$  \n\nrp_filter\n");
        assert_eq!(a.len(), 2);
        check(&a, ["net.core.somaxconn"]).expect("anchored match");
        // Unanchored: anywhere in the name, as Go's MatchString.
        check(&a, ["net.ipv4.conf.IFNAME.rp_filter"]).expect("search");
        let e = check(&a, ["net.core.somaxconn", "net.ipv4.ip_forward"]).expect_err("refused");
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("net.ipv4.ip_forward"), "{}", e.msg);
        // Anchors hold: a longer name does not match ^…$.
        check(&a, ["net.core.somaxconn2"]).expect_err("anchored");
    }

    #[test]
    fn an_empty_file_allows_nothing_and_bad_regexes_are_refused() {
        let a = list("  \n");
        check(&a, ["net.core.somaxconn"]).expect_err("empty list");
        check(&a, std::iter::empty()).expect("no sysctls, nothing to refuse");
        let e = parse("net.(core\n", Path::new("/x")).expect_err("bad regex");
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("/x"), "{}", e.msg);
    }

    #[test]
    fn a_missing_file_means_no_allowlist() {
        assert!(load(Path::new("/nonexistent/rcni/allowlist.conf"))
            .expect("missing is fine")
            .is_none());
    }
}
