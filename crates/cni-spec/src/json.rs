//! JSON decoding that names the offending field in its error, so that a
//! malformed config is reported as `field ipam.ranges[0][0].subnet: ...`
//! rather than by line and column alone.

use serde::de::DeserializeOwned;

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
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        DecodeError {
            path: (!path.is_empty() && path != ".").then_some(path),
            is_data: inner.is_data(),
            message: inner.to_string(),
        }
    })?;
    de.end().map_err(|e| DecodeError {
        path: None,
        is_data: false,
        message: e.to_string(),
    })?;
    Ok(value)
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
}
