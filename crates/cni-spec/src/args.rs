//! `CNI_ARGS`: `K=V;K=V`, with the reference's `IgnoreUnknown` escape hatch.

use crate::error::{CniResult, Error};

/// `CNI_ARGS` parsed: `KEY=VALUE` pairs separated by `;`, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
}

impl CniArgs {
    /// Parses `K=V;K=V`. Empty input is no arguments; a pair without `=` is
    /// an error (code 4: it is an environment variable).
    pub fn parse(raw: &str) -> CniResult<CniArgs> {
        let mut pairs = Vec::new();
        for item in raw.split(';').filter(|s| !s.is_empty()) {
            let (k, v) = item.split_once('=').ok_or_else(|| {
                Error::invalid_env(format!(
                    "CNI_ARGS: invalid pair {item:?}, expected KEY=VALUE"
                ))
            })?;
            if k.is_empty() {
                return Err(Error::invalid_env(format!(
                    "CNI_ARGS: empty key in {item:?}"
                )));
            }
            pairs.push((k.to_string(), v.to_string()));
        }
        Ok(CniArgs { pairs })
    }

    /// The value of the first pair named `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every pair, in the order given.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// `IgnoreUnknown=1` or `=true` (any case).
    pub fn ignore_unknown(&self) -> bool {
        self.get("IgnoreUnknown")
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }

    /// Refuses keys the plugin does not know, unless `IgnoreUnknown` is set.
    pub fn check_known(&self, known: &[&str]) -> CniResult<()> {
        if self.ignore_unknown() {
            return Ok(());
        }
        for (k, _) in &self.pairs {
            if k != "IgnoreUnknown" && !known.contains(&k.as_str()) {
                return Err(Error::invalid_env(format!(
                    "CNI_ARGS: unknown key {k:?} (set IgnoreUnknown=1 to allow it)"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_check() {
        let a = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.0.0.2").expect("parse");
        assert_eq!(a.get("IP"), Some("10.0.0.2"));
        assert!(a.check_known(&[]).is_ok());
        let a = CniArgs::parse("IP=10.0.0.2;FOO=bar").expect("parse");
        let e = a.check_known(&["IP"]).expect_err("unknown");
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("FOO"));
        assert_eq!(CniArgs::parse("novalue").expect_err("bad").code, 4);
        assert_eq!(CniArgs::parse("=v").expect_err("bad").code, 4);
        assert!(CniArgs::parse("").expect("empty").pairs().is_empty());
        assert!(CniArgs::parse("IgnoreUnknown=TRUE;X=1")
            .expect("p")
            .check_known(&[])
            .is_ok());
    }
}
