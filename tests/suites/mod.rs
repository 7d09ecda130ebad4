//! Shared by the standing suites (fault injection, concurrency, hostile
//! input): what a network left behind, read from the kernel and the disk.

#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use testutil::TestNs;

/// Every file and directory under `dir`, relative, sorted.
pub fn tree(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(base)
                .map(|r| r.display().to_string())
                .unwrap_or_default();
            out.insert(rel);
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(base, &p, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// Files under `dir` whose name is an IP address: host-local allocations.
pub fn allocations(dir: &Path) -> Vec<String> {
    tree(dir)
        .into_iter()
        .filter(|p| {
            Path::new(p)
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.parse::<std::net::IpAddr>().is_ok())
        })
        .collect()
}

/// Files that are plainly leftovers: temp files and attachment records.
pub fn leftovers(dir: &Path) -> Vec<String> {
    tree(dir)
        .into_iter()
        .filter(|p| {
            let name = Path::new(p)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            name.contains("tmp")
                || name.starts_with("att.")
                || name.starts_with('.') && name.len() > 1 && name.contains('~')
        })
        .collect()
}

/// Non-loopback links of `ns`.
pub fn links(ns: &TestNs) -> Vec<String> {
    let mut v: Vec<String> = ns.link_names().into_iter().filter(|n| n != "lo").collect();
    v.sort();
    v
}

/// The whole nftables rule set of `ns` as JSON objects.
pub fn nft_objects(ns: &TestNs) -> Vec<Value> {
    let out = ns.exec(&["nft", "-j", "list", "ruleset"]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v["nftables"].as_array().cloned().unwrap_or_default()
}

/// nftables rules, set/map elements and counted objects of `ns`: what a
/// plugin adds per attachment (tables and chains may stay, empty).
pub fn nft_entries(ns: &TestNs) -> Vec<String> {
    let mut out = Vec::new();
    for o in nft_objects(ns) {
        if let Some(r) = o.get("rule") {
            out.push(format!(
                "rule {} {} {} {} {}",
                r["family"], r["table"], r["chain"], r["expr"], r["comment"]
            ));
        }
        for kind in ["set", "map"] {
            if let Some(s) = o.get(kind) {
                if let Some(el) = s.get("elem").and_then(Value::as_array) {
                    for e in el {
                        out.push(format!("{kind} {} elem {e}", s["name"]));
                    }
                }
            }
        }
    }
    out
}

/// `after` minus one occurrence of each entry of `before`.
pub fn new_since(before: &[String], after: Vec<String>) -> Vec<String> {
    let mut base = before.to_vec();
    after
        .into_iter()
        .filter(|e| match base.iter().position(|b| b == e) {
            Some(i) => {
                base.swap_remove(i);
                false
            }
            None => true,
        })
        .collect()
}
