//! Network configurations: a single plugin's config and the config list.

use crate::error::{CniResult, Error};
use crate::result::Dns;
use crate::version;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// libcni accepts the strings "true"/"false" for its booleans; so do we.
pub fn bool_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flexible {
        B(bool),
        S(String),
    }
    match Flexible::deserialize(d)? {
        Flexible::B(b) => Ok(b),
        Flexible::S(s) => match s.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "expected a boolean or \"true\"/\"false\", got {other:?}"
            ))),
        },
    }
}

/// One attachment GC must keep.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GcAttachment {
    /// The attachment's container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The attachment's interface name.
    pub ifname: String,
}

/// The fields every plugin config shares; unknown fields are kept in `extra`
/// so a config passes through a chain unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetConf {
    /// `cniVersion`: the spec version the caller speaks.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    /// `name`: the network's name.
    #[serde(default)]
    pub name: String,
    /// `type`: the plugin's executable name.
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    /// `capabilities` this plugin declares (in a list entry).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capabilities: BTreeMap<String, bool>,
    /// The `ipam` section, kept raw for the IPAM plugin to parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Value>,
    /// `dns`: resolver settings to report in the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    /// `prevResult` (raw), the previous plugin's result in a chain and on CHECK.
    #[serde(
        rename = "prevResult",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prev_result: Option<Value>,
    /// `runtimeConfig` (raw), capability arguments from the runtime.
    #[serde(
        rename = "runtimeConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub runtime_config: Option<Value>,
    /// `args` (raw), extra arguments from the runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// `cni.dev/valid-attachments` on GC: the attachments to keep.
    #[serde(
        rename = "cni.dev/valid-attachments",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub valid_attachments: Option<Vec<GcAttachment>>,
    /// The name libcni also sends, from before the spec settled.
    #[serde(
        rename = "cni.dev/attachments",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub attachments_legacy: Option<Vec<GcAttachment>>,
    /// Every other field, for the plugin's own parsing.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl NetConf {
    /// Parses stdin. A config without `cniVersion` is 0.1.0 by the spec.
    pub fn parse(bytes: &[u8]) -> CniResult<NetConf> {
        let mut c: NetConf = crate::json::decode(bytes)
            .map_err(|e| Error::decoding(format!("failed to decode network configuration: {e}")))?;
        if c.cni_version.is_empty() {
            c.cni_version = "0.1.0".into();
        }
        // `ipam` is typed loosely to keep every IPAM plugin's fields, so its
        // shape is checked here: the reference rejects a non-object too.
        match &c.ipam {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(_) => return Err(Error::invalid_config("field ipam: must be an object")),
        }
        match c.ipam.as_ref().and_then(|i| i.get("type")) {
            None => {}
            Some(Value::String(t)) if t.is_empty() => {}
            Some(Value::String(t)) => crate::validate::plugin_type(t)
                .map_err(|e| Error::invalid_config(format!("field ipam.type: {}", e.msg)))?,
            Some(_) => return Err(Error::invalid_config("field ipam.type: must be a string")),
        }
        Ok(c)
    }

    /// The IPAM plugin's `type`, if an `ipam` section is present.
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam.as_ref()?.get("type")?.as_str()
    }

    /// Attachments GC must keep, under either spelling.
    pub fn gc_attachments(&self) -> Vec<GcAttachment> {
        self.valid_attachments
            .clone()
            .or_else(|| self.attachments_legacy.clone())
            .unwrap_or_default()
    }

    /// The previous result of the chain, parsed (at this config's version when
    /// the result omits its own).
    pub fn prev_result(&self) -> CniResult<Option<crate::Result>> {
        self.prev_result
            .as_ref()
            .map(|v| crate::Result::from_value(v, &self.cni_version))
            .transpose()
    }
}

/// A config list (`*.conflist`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetConfList {
    /// `cniVersion` of the list.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    /// `cniVersions`: every version the list is valid for (1.1.0).
    #[serde(rename = "cniVersions", default, skip_serializing_if = "Vec::is_empty")]
    pub cni_versions: Vec<String>,
    /// `name` of the network.
    #[serde(default)]
    pub name: String,
    /// `disableCheck`: CHECK always succeeds without calling the plugins.
    #[serde(rename = "disableCheck", default, deserialize_with = "bool_or_string")]
    pub disable_check: bool,
    /// `disableGC`: GC is not run for this network.
    #[serde(rename = "disableGC", default, deserialize_with = "bool_or_string")]
    pub disable_gc: bool,
    /// `loadOnlyInlinedPlugins`: ignore plugin files next to the list.
    #[serde(
        rename = "loadOnlyInlinedPlugins",
        default,
        deserialize_with = "bool_or_string"
    )]
    pub load_only_inlined_plugins: bool,
    /// The `plugins` entries, raw (each one becomes a plugin's stdin).
    #[serde(default)]
    pub plugins: Vec<Map<String, Value>>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl NetConfList {
    /// Parses a `.conflist` file's bytes (code 6 on broken JSON, 7 on wrong shapes).
    pub fn parse(bytes: &[u8]) -> CniResult<NetConfList> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::decoding(format!("failed to decode network configuration list: {e}"))
        })
    }

    /// Wraps a single legacy `.conf` as a one-plugin list, as libcni does.
    pub fn from_conf(conf: Map<String, Value>) -> NetConfList {
        let get = |k: &str| {
            conf.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        NetConfList {
            cni_version: get("cniVersion"),
            name: get("name"),
            plugins: vec![conf],
            ..Default::default()
        }
    }

    /// The version to run the list at: the highest of `cniVersions` that we
    /// support, else `cniVersion`, else 0.1.0.
    pub fn negotiated_version(&self, supported: &[&str]) -> CniResult<String> {
        if !self.cni_versions.is_empty() {
            let mut best: Option<&String> = None;
            for v in &self.cni_versions {
                if supported.contains(&v.as_str())
                    && best.is_none_or(|b| version::compare(v, b).is_gt())
                {
                    best = Some(v);
                }
            }
            return best.cloned().ok_or_else(|| {
                Error::new(
                    crate::ErrorCode::IncompatibleVersion,
                    format!(
                        "no supported version among cniVersions {:?} of network {:?}",
                        self.cni_versions, self.name
                    ),
                )
            });
        }
        if self.cni_version.is_empty() {
            return Ok("0.1.0".into());
        }
        Ok(self.cni_version.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let src = br#"{"cniVersion":"1.0.0","name":"n","type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.1.0.0/24"},"capabilities":{"portMappings":true}}"#;
        let c = NetConf::parse(src).expect("parse");
        assert_eq!(c.plugin_type, "bridge");
        assert_eq!(c.ipam_type(), Some("host-local"));
        assert_eq!(c.extra.get("bridge"), Some(&Value::String("cni0".into())));
        let back: Value = serde_json::to_value(&c).expect("ser");
        let orig: Value = serde_json::from_slice(src).expect("orig");
        assert_eq!(back, orig);
    }

    #[test]
    fn ipam_must_be_an_object() {
        for bad in [
            r#"{"name":"n","ipam":5}"#,
            r#"{"name":"n","ipam":{"type":3}}"#,
            r#"{"name":"n","ipam":{"type":"../../bin/sh"}}"#,
        ] {
            let e = NetConf::parse(bad.as_bytes()).expect_err(bad);
            assert_eq!(e.code, 7, "{bad}");
            assert!(e.msg.contains("ipam"), "{}", e.msg);
        }
        assert!(NetConf::parse(br#"{"name":"n","ipam":{}}"#).is_ok());
        assert!(NetConf::parse(br#"{"name":"n","ipam":null}"#).is_ok());
    }

    #[test]
    fn missing_version_is_010() {
        assert_eq!(
            NetConf::parse(br#"{"name":"x"}"#).expect("p").cni_version,
            "0.1.0"
        );
    }

    #[test]
    fn list_booleans_as_strings() {
        let l = NetConfList::parse(
            br#"{"cniVersion":"1.0.0","name":"n","disableCheck":"true","disableGC":false,"loadOnlyInlinedPlugins":"False","plugins":[]}"#,
        )
        .expect("parse");
        assert!(l.disable_check);
        assert!(!l.disable_gc);
        assert!(!l.load_only_inlined_plugins);
        let bad = NetConfList::parse(br#"{"name":"n","disableCheck":"yes"}"#).expect_err("bad");
        assert_eq!(bad.code, 6);
        assert!(
            bad.msg.contains("disableCheck") || bad.msg.contains("boolean"),
            "{}",
            bad.msg
        );
    }

    #[test]
    fn negotiation() {
        let l = NetConfList::parse(
            br#"{"cniVersion":"0.4.0","cniVersions":["0.3.1","1.0.0","9.9.9"],"name":"n"}"#,
        )
        .expect("parse");
        assert_eq!(
            l.negotiated_version(crate::ALL_VERSIONS).expect("v"),
            "1.0.0"
        );
        let l = NetConfList::parse(br#"{"cniVersion":"0.4.0","name":"n"}"#).expect("p");
        assert_eq!(
            l.negotiated_version(crate::ALL_VERSIONS).expect("v"),
            "0.4.0"
        );
        let l = NetConfList::parse(br#"{"cniVersions":["9.9.9"],"name":"n"}"#).expect("p");
        assert_eq!(
            l.negotiated_version(crate::ALL_VERSIONS)
                .expect_err("none")
                .code,
            1
        );
    }

    #[test]
    fn gc_attachments_either_spelling() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}],"cni.dev/attachments":[{"containerID":"a","ifname":"eth0"}]}"#,
        )
        .expect("parse");
        assert_eq!(c.gc_attachments().len(), 1);
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","cni.dev/attachments":[{"containerID":"b","ifname":"net1"}]}"#,
        )
        .expect("parse");
        assert_eq!(c.gc_attachments()[0].container_id, "b");
    }
}
