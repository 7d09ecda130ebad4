//! MAC address helpers.

use crate::error::{Error, Result};

/// The one MAC parser: Go's `net.ParseMAC` for the colon and dash forms
/// (as the reference plugins read MACs): two hex digits per octet, one
/// kind of separator, 6 (EUI-48), 8 (EUI-64) or 20 (InfiniBand) octets.
pub fn parse_hw(s: &str) -> Option<Vec<u8>> {
    let sep = if s.contains(':') { ':' } else { '-' };
    let bytes: Option<Vec<u8>> = s
        .split(sep)
        .map(|p| {
            (p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u8::from_str_radix(p, 16).ok())
                .flatten()
        })
        .collect();
    bytes.filter(|b| matches!(b.len(), 6 | 8 | 20))
}

/// An Ethernet MAC ([`parse_hw`], six octets), any kind.
pub fn parse_ethernet(s: &str) -> Option<[u8; 6]> {
    parse_hw(s).and_then(|b| <[u8; 6]>::try_from(b.as_slice()).ok())
}

/// Parses a unicast Ethernet MAC (`aa:bb:cc:dd:ee:ff`, also `-` separated).
pub fn parse(s: &str) -> Result<[u8; 6]> {
    let out =
        parse_ethernet(s).ok_or_else(|| Error::Invalid(format!("invalid MAC address {s:?}")))?;
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

/// The requested MAC among `sources` ([`last_requested`]), parsed
/// ([`parse`]): `None` when none was asked for; the text asked for and
/// why it is refused otherwise, for the plugin to word.
pub fn requested<'a>(
    sources: impl IntoIterator<Item = Option<&'a str>>,
) -> std::result::Result<Option<[u8; 6]>, (&'a str, Error)> {
    match last_requested(sources) {
        None => Ok(None),
        Some(s) => parse(s).map(Some).map_err(|e| (s, e)),
    }
}

/// Lower-case colon form, as Go's `net.HardwareAddr.String`.
pub fn format(mac: &[u8]) -> String {
    netlink::format_mac(mac)
}

/// A locally administered unicast MAC derived from `seed` (stable per seed).
pub fn local_from_seed(seed: &[u8]) -> [u8; 6] {
    let h = crate::os::fnv1a(seed).to_be_bytes();
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
        assert!(parse("0a:58-0a:01:00:02").is_err(), "mixed separators");
        assert!(parse("0a:58:0a:01:00:+2").is_err(), "sign");
        assert!(parse("a:58:0a:01:00:02").is_err(), "one digit");
        assert_eq!(
            parse_hw("00:00:00:00:fe:80:00:00").map(|b| b.len()),
            Some(8)
        );
        assert_eq!(parse_hw(&["aa"; 20].join("-")).map(|b| b.len()), Some(20));
        assert_eq!(parse_hw("aa:bb:cc:dd:ee"), None);
        assert_eq!(
            parse_ethernet("01:00:5e:00:00:01"),
            Some([1, 0, 0x5e, 0, 0, 1])
        );
        let m = local_from_seed(b"x");
        assert_eq!(m[0] & 3, 2);
        assert_eq!(format(&m).len(), 17);
    }

    #[test]
    fn hwaddr_forms() {
        assert_eq!(
            parse_hw("0A:0b:0c:0d:0e:0f"),
            Some(vec![10, 11, 12, 13, 14, 15])
        );
        assert_eq!(parse_hw("0a-0b-0c-0d-0e-0f").map(|v| v.len()), Some(6));
        assert_eq!(parse_hw("0a:0b:0c:0d:0e"), None);
        assert_eq!(parse_hw("a:0b:0c:0d:0e:0f"), None);
        assert_eq!(parse_hw("zz:0b:0c:0d:0e:0f"), None);
    }
}
