//! Validation rules libcni and the reference skeleton apply.

use crate::error::{CniResult, Error, ErrorCode};

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`
fn id_like(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Empty → code 3 (unknown container); bad characters → code 4.
pub fn container_id(id: &str) -> CniResult<()> {
    if id.is_empty() {
        return Err(Error::new(
            ErrorCode::UnknownContainer,
            "missing containerID",
        ));
    }
    if !id_like(id) {
        return Err(
            Error::invalid_env(format!("invalid characters in containerID {id:?}"))
                .details("must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"),
        );
    }
    Ok(())
}

/// Network names follow the container id pattern; failures are code 7.
pub fn network_name(name: &str) -> CniResult<()> {
    if name.is_empty() {
        return Err(Error::invalid_config("missing network name"));
    }
    if !id_like(name) {
        return Err(
            Error::invalid_config(format!("invalid characters in network name {name:?}"))
                .details("must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"),
        );
    }
    Ok(())
}

/// Linux interface name rules; failures are code 4.
pub fn interface_name(name: &str) -> CniResult<()> {
    let why = if name.is_empty() {
        Some("interface name is empty")
    } else if name.len() > 15 {
        Some("interface name is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("interface name is . or ..")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("interface name contains / or : or whitespace")
    } else {
        None
    };
    match why {
        Some(w) => Err(Error::invalid_env(format!(
            "invalid CNI_IFNAME {name:?}: {w}"
        ))),
        None => Ok(()),
    }
}

/// A plugin `type` is a bare file name: a path separator would let a config
/// run any binary on the host (CVE-2021-20206).
pub fn plugin_type(t: &str) -> CniResult<()> {
    if t.is_empty() {
        return Err(Error::invalid_config("plugin type is missing"));
    }
    if t.contains('/') || t.contains('\\') || t == "." || t == ".." {
        return Err(Error::invalid_config(format!(
            "invalid plugin type {t:?}: it must be a file name without path separators"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rule = fn(&str) -> CniResult<()>;

    #[test]
    fn table() {
        let cases: &[(&str, Rule, &str, Option<u32>)] = &[
            ("container", container_id, "abc-1.2_3", None),
            ("container", container_id, "", Some(3)),
            ("container", container_id, "-abc", Some(4)),
            ("container", container_id, "a b", Some(4)),
            ("container", container_id, "a/b", Some(4)),
            ("network", network_name, "podman", None),
            ("network", network_name, "", Some(7)),
            ("network", network_name, "my net", Some(7)),
            ("network", network_name, ".hidden", Some(7)),
            ("ifname", interface_name, "eth0", None),
            ("ifname", interface_name, "123456789012345", None),
            ("ifname", interface_name, "1234567890123456", Some(4)),
            ("ifname", interface_name, "", Some(4)),
            ("ifname", interface_name, ".", Some(4)),
            ("ifname", interface_name, "..", Some(4)),
            ("ifname", interface_name, "eth/0", Some(4)),
            ("ifname", interface_name, "eth:0", Some(4)),
            ("ifname", interface_name, "eth 0", Some(4)),
            ("ifname", interface_name, "eth\t0", Some(4)),
            ("type", plugin_type, "bridge", None),
            ("type", plugin_type, "../../bin/sh", Some(7)),
            ("type", plugin_type, "/bin/sh", Some(7)),
            ("type", plugin_type, "..", Some(7)),
            ("type", plugin_type, "", Some(7)),
        ];
        for (what, f, input, want) in cases {
            let got = f(input).err().map(|e| e.code);
            assert_eq!(got, *want, "{what} {input:?}");
        }
    }
}
