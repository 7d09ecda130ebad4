//! The Kubernetes side: the pod's `k8s.v1.cni.cncf.io/networks` and
//! `v1.multus-cni.io/default-network` annotations (both forms),
//! NetworkAttachmentDefinitions, and the
//! `k8s.v1.cni.cncf.io/network-status` annotation written back.

use cni_spec::{Error, ErrorCode};
use kube_lite::{query_escape, server_message, Client};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The annotation selecting extra networks.
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
/// The annotation that replaces the cluster network for one pod: a single
/// selection, its namespace `multusNamespace` unless it names one.
pub const DEFAULT_NETWORK_ANNOTATION: &str = "v1.multus-cni.io/default-network";
/// The annotation the attachments are reported in.
pub const STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";

const USER_AGENT: &str = concat!("rcni-multus/", env!("CARGO_PKG_VERSION"));

/// One entry of the networks annotation.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Selection {
    /// The NetworkAttachmentDefinition's name.
    pub name: String,
    /// Its namespace; unset, the pod's.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The interface name in the pod; unset, `net<N>` by position.
    #[serde(default)]
    pub interface: Option<String>,
    /// `interfaceRequest`: Multus's older name for `interface`, used when
    /// `interface` is absent.
    #[serde(rename = "interfaceRequest", default)]
    pub interface_request: Option<String>,
    /// `ips`: static addresses, passed as the `ips` capability and `CNI_ARGS`
    /// `IP`.
    #[serde(default)]
    pub ips: Option<Vec<String>>,
    /// `mac`: the interface's MAC, passed as the `mac` capability and
    /// `CNI_ARGS` `MAC`.
    #[serde(default)]
    pub mac: Option<String>,
    /// `default-route`: gateways through which the pod's default route goes
    /// via this interface.
    #[serde(rename = "default-route", default)]
    pub default_route: Option<Vec<std::net::IpAddr>>,
    /// `portMappings`: passed as the `portMappings` capability.
    #[serde(rename = "portMappings", default)]
    pub port_mappings: Option<Value>,
    /// `bandwidth`: passed as the `bandwidth` capability.
    #[serde(default)]
    pub bandwidth: Option<Value>,
    /// `cni-args`: merged into the `args.cni` of every plugin of the network.
    #[serde(rename = "cni-args", default)]
    pub cni_args: Option<Map<String, Value>>,
    /// `infiniband-guid`: refused by [`parse_networks`]; rcni does not
    /// manage InfiniBand devices.
    #[serde(rename = "infiniband-guid", default)]
    pub infiniband_guid: Option<Value>,
    /// `gateway-request`: accepted and not acted on.
    #[serde(rename = "gateway-request", default)]
    pub gateway_request: Option<Value>,
}

/// Parses the networks annotation: a JSON list of selections, or the
/// shorthand `ns/name@ifname, name2`.
pub fn parse_networks(text: &str) -> Result<Vec<Selection>, Error> {
    parse_selections(NETWORKS_ANNOTATION, text)
}

/// Parses the default-network annotation, in either form: exactly one
/// selection. Empty or more than one is code 7, as Multus refuses both.
pub fn parse_default_network(text: &str) -> Result<Selection, Error> {
    let mut list = parse_selections(DEFAULT_NETWORK_ANNOTATION, text)?;
    match list.len() {
        1 => Ok(list.remove(0)),
        0 => Err(Error::invalid_config(format!(
            "pod annotation {DEFAULT_NETWORK_ANNOTATION} is empty"
        ))),
        n => Err(Error::invalid_config(format!(
            "pod annotation {DEFAULT_NETWORK_ANNOTATION} selects {n} networks; a pod has one default network"
        ))),
    }
}

/// Selections from the text of annotation `key` (named in errors).
fn parse_selections(key: &str, text: &str) -> Result<Vec<Selection>, Error> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(Vec::new());
    }
    let bad = |m: String| Error::invalid_config(format!("pod annotation {key}: {m}"));
    if t.starts_with('[') || t.starts_with('{') {
        let mut list: Vec<Selection> = if t.starts_with('{') {
            vec![serde_json::from_str(t).map_err(|e| bad(e.to_string()))?]
        } else {
            serde_json::from_str(t).map_err(|e| bad(e.to_string()))?
        };
        for s in &mut list {
            if s.interface.as_deref().is_none_or(str::is_empty) {
                s.interface = s.interface_request.take().filter(|i| !i.is_empty());
            }
        }
        for s in &list {
            if s.name.is_empty() {
                return Err(bad("an entry has no name".into()));
            }
            if s.infiniband_guid.is_some() {
                return Err(Error::new(
                    ErrorCode::UnsupportedField,
                    format!(
                        "pod annotation {key}: infiniband-guid is not supported by rcni's multus"
                    ),
                ));
            }
        }
        return Ok(list);
    }
    let mut out = Vec::new();
    for item in t.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (rest, interface) = match item.split_once('@') {
            Some((r, i)) if !i.is_empty() => (r, Some(i.to_string())),
            Some(_) => return Err(bad(format!("{item:?}: empty interface after @"))),
            None => (item, None),
        };
        let (namespace, name) = match rest.split_once('/') {
            Some((ns, n)) => (Some(ns.to_string()), n),
            None => (None, rest),
        };
        if name.is_empty() || name.contains('/') || namespace.as_deref() == Some("") {
            return Err(bad(format!(
                "{item:?}: expected [namespace/]name[@interface]"
            )));
        }
        out.push(Selection {
            name: name.to_string(),
            namespace,
            interface,
            ..Selection::default()
        });
    }
    Ok(out)
}

/// A connection to the API server, from the plugin's `kubeconfig`.
pub struct Api {
    client: Client,
}

fn unavailable(m: String) -> Error {
    Error::new(ErrorCode::TryAgainLater, m)
}

impl Api {
    /// A client of the API server of the kubeconfig at `path`, with `timeout`
    /// per request; a bad kubeconfig is an invalid configuration (code 7).
    pub fn from_kubeconfig(path: &std::path::Path, timeout: Duration) -> Result<Api, Error> {
        let endpoint = kube_lite::Endpoint::from_kubeconfig(path)
            .map_err(|m| Error::invalid_config(format!("kubeconfig {}: {m}", path.display())))?;
        let client = Client::new(endpoint, USER_AGENT)
            .map_err(|m| Error::invalid_config(format!("kubeconfig {}: {m}", path.display())))?
            .with_timeout(timeout)
            // A test server on loopback speaks plain http; a real cluster
            // uses https and then this changes nothing.
            .allow_http_token(true);
        Ok(Api { client })
    }

    fn get_json(&self, path: &str, what: &str) -> Result<Option<Value>, Error> {
        let (status, body) = self.client.get(path).map_err(unavailable)?;
        match status {
            200 => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| Error::decoding(format!("GET {path}: bad JSON: {e}"))),
            404 => Ok(None),
            401 | 403 => Err(Error::new(
                ErrorCode::InvalidConfig,
                format!(
                    "GET {path}: HTTP {status}{}: the kubeconfig's identity needs get on {what} (sent: {})",
                    server_message(&body),
                    self.client.credentials()
                ),
            )),
            _ => Err(unavailable(format!(
                "GET {path}: HTTP {status}{}",
                server_message(&body)
            ))),
        }
    }

    /// The pod's annotations; `None` when the pod does not exist.
    pub fn pod_annotations(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<Map<String, Value>>, Error> {
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}",
            query_escape(ns),
            query_escape(name)
        );
        Ok(self.get_json(&path, "pods")?.map(|pod| {
            pod["metadata"]["annotations"]
                .as_object()
                .cloned()
                .unwrap_or_default()
        }))
    }

    /// `spec.config` of a NetworkAttachmentDefinition ("" when empty);
    /// `None` when it does not exist.
    pub fn nad_config(&self, ns: &str, name: &str) -> Result<Option<String>, Error> {
        let path = format!(
            "/apis/k8s.cni.cncf.io/v1/namespaces/{}/network-attachment-definitions/{}",
            query_escape(ns),
            query_escape(name)
        );
        let Some(nad) = self.get_json(&path, "network-attachment-definitions")? else {
            return Ok(None);
        };
        match &nad["spec"]["config"] {
            Value::Null => Ok(Some(String::new())),
            Value::String(s) => Ok(Some(s.clone())),
            other => Err(Error::invalid_config(format!(
                "NetworkAttachmentDefinition {ns}/{name}: spec.config must be a string, not {other}"
            ))),
        }
    }

    /// Writes (or with `None` clears) the pod's network-status annotation
    /// with a JSON merge patch.
    pub fn set_status(&self, ns: &str, name: &str, status: Option<&Value>) -> Result<(), Error> {
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}",
            query_escape(ns),
            query_escape(name)
        );
        let value = match status {
            Some(s) => Value::String(serde_json::to_string_pretty(s).unwrap_or_default()),
            None => Value::Null,
        };
        let body = json!({"metadata": {"annotations": {STATUS_ANNOTATION: value}}});
        let (code, resp) = self
            .client
            .patch(
                &path,
                "application/merge-patch+json",
                body.to_string().as_bytes(),
            )
            .map_err(unavailable)?;
        if (200..300).contains(&code) {
            Ok(())
        } else {
            Err(unavailable(format!(
                "PATCH {path}: HTTP {code}{}",
                server_message(&resp)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthand_and_json_forms() {
        let l = parse_networks(" other/a@data0, b ,c@x").unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].namespace.as_deref(), Some("other"));
        assert_eq!(l[0].interface.as_deref(), Some("data0"));
        assert_eq!((l[1].name.as_str(), l[1].namespace.is_none()), ("b", true));
        assert_eq!(l[2].interface.as_deref(), Some("x"));
        let l = parse_networks(
            r#"[{"name":"m","interface":"n9","ips":["10.1.1.5/24"],"mac":"02:00:00:00:00:09",
                "default-route":["10.1.1.1"],"cni-args":{"k":"v"}}]"#,
        )
        .unwrap();
        assert_eq!(l[0].ips.as_deref(), Some(&["10.1.1.5/24".to_string()][..]));
        assert_eq!(l[0].default_route.as_ref().map(Vec::len), Some(1));
        assert_eq!(parse_networks("a/").unwrap_err().code, 7);
        assert_eq!(parse_networks("a@").unwrap_err().code, 7);
        assert_eq!(parse_networks(r#"[{"name":1}]"#).unwrap_err().code, 7);
        assert!(parse_networks("").unwrap().is_empty());
        // The older key names the interface when `interface` does not.
        let l = parse_networks(
            r#"[{"name":"a","interfaceRequest":"old0"},{"name":"b","interface":"new0","interfaceRequest":"old1"}]"#,
        )
        .unwrap();
        assert_eq!(l[0].interface.as_deref(), Some("old0"));
        assert_eq!(l[1].interface.as_deref(), Some("new0"));
    }

    #[test]
    fn the_default_network_is_exactly_one_selection() {
        let s = parse_default_network(" other/fast@eth9 ").unwrap();
        assert_eq!(
            (
                s.name.as_str(),
                s.namespace.as_deref(),
                s.interface.as_deref()
            ),
            ("fast", Some("other"), Some("eth9"))
        );
        let s = parse_default_network(r#"{"name":"fast","ips":["10.9.0.5/24"]}"#).unwrap();
        assert_eq!((s.name.as_str(), s.namespace.is_none()), ("fast", true));
        for bad in ["", "  ", "a,b", r#"[{"name":"a"},{"name":"b"}]"#, "a@"] {
            let e = parse_default_network(bad).unwrap_err();
            assert_eq!(e.code, 7, "{bad:?}");
            assert!(e.msg.contains(DEFAULT_NETWORK_ANNOTATION), "{}", e.msg);
        }
    }
}
