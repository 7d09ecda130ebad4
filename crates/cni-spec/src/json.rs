//! JSON decoding that names the offending field in its error, so that a
//! malformed config is reported as `field ipam.ranges[0][0].subnet: ...`
//! rather than by line and column alone.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why a document did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Dotted path of the field at fault (`None` for the document itself).
    pub path: Option<String>,
    /// The JSON was well-formed but a value had the wrong type or shape.
    pub is_data: bool,
    /// serde_json's description.
    pub message: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.path {
            Some(p) => write!(f, "field {p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one JSON document (trailing garbage refused) into `T`.
///
/// A member whose value is JSON `null` is read as absent, in every object
/// at any depth, as the reference (Go's encoding/json) reads it: every
/// optional field of every plugin then takes its default, while a value of
/// the wrong type is still refused. `null` inside an array is kept (and so
/// refused where an element is expected).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut doc: Value = serde::Deserialize::deserialize(&mut de).map_err(|e| DecodeError {
        path: None,
        is_data: false,
        message: e.to_string(),
    })?;
    de.end().map_err(|e| DecodeError {
        path: None,
        is_data: false,
        message: e.to_string(),
    })?;
    strip_nulls(&mut doc);
    from_value(doc)
}

/// Decodes an already parsed document into `T`, reading `null` members as
/// absent (see [`decode`]).
pub fn from_value<T: DeserializeOwned>(mut doc: Value) -> Result<T, DecodeError> {
    strip_nulls(&mut doc);
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        DecodeError {
            path: (!path.is_empty() && path != ".").then_some(path),
            is_data: inner.is_data(),
            message: inner.to_string(),
        }
    })
}

/// Removes every object member whose value is `null`, at any depth.
pub fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, m| !m.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Inner {
        #[allow(dead_code)]
        subnet: String,
    }
    #[derive(Debug, serde::Deserialize)]
    struct Outer {
        #[allow(dead_code)]
        ranges: Vec<Vec<Inner>>,
    }

    #[test]
    fn names_the_field() {
        let e = decode::<Outer>(br#"{"ranges":[[{"subnet":5}]]}"#).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("ranges[0][0].subnet"));
        assert!(e.is_data);
        assert!(
            e.to_string().starts_with("field ranges[0][0].subnet: "),
            "{e}"
        );
        let e = decode::<Outer>(br#"{"ranges":[]} x"#).unwrap_err();
        assert!(!e.is_data && e.path.is_none(), "{e:?}");
        let e = decode::<Outer>(b"{").unwrap_err();
        assert!(!e.is_data, "{e:?}");
    }

    #[derive(Debug, serde::Deserialize)]
    struct Opts {
        #[serde(default)]
        flag: bool,
        #[serde(default)]
        mtu: u32,
        #[serde(default)]
        list: Vec<String>,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default = "seven")]
        seven: u8,
    }
    fn seven() -> u8 {
        7
    }

    #[test]
    fn null_is_absent_and_wrong_types_are_still_refused() {
        let o: Opts = decode(
            br#"{"flag":null,"mtu":null,"list":null,"inner":null,"seven":null,"x":{"y":null}}"#,
        )
        .unwrap();
        assert!(!o.flag && o.mtu == 0 && o.list.is_empty() && o.inner.is_none());
        assert_eq!(o.seven, 7, "null takes the field's default");
        for (doc, field) in [
            (r#"{"flag":"yes"}"#, "flag"),
            (r#"{"mtu":"x"}"#, "mtu"),
            (r#"{"list":[null]}"#, "list[0]"),
            (r#"{"inner":{"subnet":5}}"#, "inner.subnet"),
        ] {
            let e = decode::<Opts>(doc.as_bytes()).unwrap_err();
            assert!(e.is_data, "{doc}: {e:?}");
            assert_eq!(e.path.as_deref(), Some(field), "{doc}: {e:?}");
        }
        // A required field given as null is missing, still a data error.
        let e = decode::<Outer>(br#"{"ranges":null}"#).unwrap_err();
        assert!(e.is_data, "{e:?}");
        assert!(e.to_string().contains("ranges"), "{e}");
    }
}
