//! JSON written the way Go's `encoding/json` writes it, so files libcni
//! and rcni write for the same attachment are byte-identical (see the
//! cache module for the one libcni 1.2 difference, an empty `dns`): map
//! keys sorted at every level, `<`, `>`, `&`, U+2028 and U+2029 escaped.

use serde_json::{Map, Value};

/// `value` with the keys of every object sorted (Go marshals maps that way).
pub fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::with_capacity(m.len());
            for k in keys {
                if let Some(v) = m.get(k) {
                    out.insert(k.clone(), sorted(v));
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Serialises `value` as Go would (keys in the order given; call
/// [`sorted`] first for maps).
pub fn to_string(value: &Value) -> String {
    let plain = value.to_string();
    // These characters can only occur inside string literals in the
    // output, so replacing them there keeps the JSON valid and equal.
    let mut out = String::with_capacity(plain.len());
    for c in plain.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_and_escapes_like_go() {
        let v: Value =
            serde_json::from_str(r#"{"z":1,"a":{"y":"<a&b>","b":[{"d":1,"c":2}]}}"#).expect("json");
        assert_eq!(
            to_string(&sorted(&v)),
            r#"{"a":{"b":[{"c":2,"d":1}],"y":"\u003ca\u0026b\u003e"},"z":1}"#
        );
        let back: Value = serde_json::from_str(&to_string(&v)).expect("valid");
        assert_eq!(back, v);
    }
}
