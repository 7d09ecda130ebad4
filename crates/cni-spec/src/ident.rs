//! Identifiers bounded for kernel objects and file names (pure: the
//! callers decide where the bounded form goes).
//!
//! The spec sets no length limit on container ids (or network names), but
//! an nftables comment holds at most 255 bytes and a file name at most 255.
//! An identifier longer than its budget is written as a readable prefix, a
//! `~` (which no container id, network name or interface name contains) and
//! 128 bits of the SHA-256 of the whole identifier, so two different ids
//! never share a bounded form in practice, and a short id stays as it is
//! (objects written before this rule are still found).

use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Hex digits of the hash in a bounded identifier.
const HASH_HEX: usize = 32;

/// `s` itself when it has at most `max` bytes, otherwise a readable prefix
/// of it, `~` and the hash of all of `s`, `max` bytes in all. `max` must
/// leave room for the hash (at least 34).
pub fn bounded(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let digest = Sha256::digest(s.as_bytes());
    let hash: String = digest[..HASH_HEX / 2]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut cut = max.saturating_sub(HASH_HEX + 1).min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}~{hash}", &s[..cut]))
}

/// FNV-1a, 64 bit: the one stable, dependency-free hash for short names
/// (host veth names, MACs derived from a seed, index keys). Pure, so that
/// every layer can share it (`kit::os::fnv1a` is this function).
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_unchanged_long_ones_bounded_and_distinct() {
        assert_eq!(bounded("abc", 40), "abc");
        let a = "x".repeat(10_000);
        let b = format!("{}y", "x".repeat(9_999));
        let (ba, bb) = (bounded(&a, 96), bounded(&b, 96));
        assert_eq!(ba.len(), 96);
        assert!(ba.starts_with("xxxx") && ba.contains('~'));
        assert_ne!(ba, bb, "the hash covers the whole id");
        assert_eq!(ba, bounded(&a, 96), "stable");
        assert_eq!(bounded(&"é".repeat(100), 60).len(), 59);
    }

    #[test]
    fn fnv1a_known_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
