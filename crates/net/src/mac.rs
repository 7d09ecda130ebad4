//! MAC address helpers.

use crate::error::{Error, Result};

/// Parses a unicast Ethernet MAC (`aa:bb:cc:dd:ee:ff`, also `-` separated).
pub fn parse(s: &str) -> Result<[u8; 6]> {
    let bad = || Error::Invalid(format!("invalid MAC address {s:?}"));
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut out = [0u8; 6];
    for (o, p) in out.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if out[0] & 1 != 0 {
        return Err(Error::Invalid(format!(
            "MAC address {s:?} is a multicast address"
        )));
    }
    Ok(out)
}

/// The requested MAC among `sources`, given in increasing precedence: the
/// last non-empty one (how the reference layers the config's `mac`,
/// `CNI_ARGS` MAC=, `args.cni.mac` and runtimeConfig `mac`).
pub fn last_requested<'a>(sources: impl IntoIterator<Item = Option<&'a str>>) -> Option<&'a str> {
    sources
        .into_iter()
        .flatten()
        .filter(|m| !m.is_empty())
        .last()
}

/// Lower-case colon form, as Go's `net.HardwareAddr.String`.
pub fn format(mac: &[u8]) -> String {
    netlink::format_mac(mac)
}

/// A locally administered unicast MAC derived from `seed` (stable per seed).
pub fn local_from_seed(seed: &[u8]) -> [u8; 6] {
    let h = crate::veth::fnv1a(seed).to_be_bytes();
    let mut m = [h[0], h[1], h[2], h[3], h[4], h[5]];
    m[0] = (m[0] & 0xfe) | 0x02;
    m
}

#[cfg(test)]
mod tests {

    #[test]
    fn last_requested_mac_wins() {
        assert_eq!(
            last_requested([Some("a"), None, Some(""), Some("b"), Some("")]),
            Some("b")
        );
        assert_eq!(last_requested([None, Some("")]), None);
    }

    use super::*;

    #[test]
    fn parse_forms() {
        assert_eq!(
            parse("0A:58:0a:01:00:02").expect("mac"),
            [0x0a, 0x58, 0x0a, 0x01, 0x00, 0x02]
        );
        assert!(parse("0a-58-0a-01-00-02").is_ok());
        assert!(parse("0a:58:0a:01:00").is_err());
        assert!(parse("0a:58:0a:01:00:zz").is_err());
        assert!(parse("01:00:5e:00:00:01").is_err(), "multicast");
        let m = local_from_seed(b"x");
        assert_eq!(m[0] & 3, 2);
        assert_eq!(format(&m).len(), 17);
    }
}
