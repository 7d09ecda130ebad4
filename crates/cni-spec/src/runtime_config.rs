//! `runtimeConfig` capability arguments.
//!
//! Podman sends camelCase keys (`hostPort`), containerd capitalised ones
//! (`HostPort`); both spellings are accepted everywhere.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One entry of the `portMappings` capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Port on the host.
    #[serde(rename = "hostPort", alias = "HostPort")]
    pub host_port: u16,
    /// Port inside the container.
    #[serde(rename = "containerPort", alias = "ContainerPort")]
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    #[serde(default = "default_protocol", alias = "Protocol")]
    pub protocol: String,
    /// Host address to bind to; empty for all.
    #[serde(
        rename = "hostIP",
        alias = "HostIP",
        alias = "hostIp",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub host_ip: String,
}

fn default_protocol() -> String {
    "tcp".into()
}

/// Rates in bits per second, bursts in bits, as the reference takes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bandwidth {
    /// Ingress rate, bits per second.
    #[serde(rename = "ingressRate", alias = "IngressRate", default)]
    pub ingress_rate: u64,
    /// Ingress burst, bits.
    #[serde(rename = "ingressBurst", alias = "IngressBurst", default)]
    pub ingress_burst: u64,
    /// Egress rate, bits per second.
    #[serde(rename = "egressRate", alias = "EgressRate", default)]
    pub egress_rate: u64,
    /// Egress burst, bits.
    #[serde(rename = "egressBurst", alias = "EgressBurst", default)]
    pub egress_burst: u64,
}

/// The `dns` capability.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsCapability {
    /// Name servers.
    #[serde(alias = "Servers", default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    /// Search domains.
    #[serde(alias = "Searches", default, skip_serializing_if = "Vec::is_empty")]
    pub searches: Vec<String>,
    /// Resolver options.
    #[serde(alias = "Options", default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// One range of the `ipRanges` capability (same fields as host-local's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpRange {
    /// The subnet, `10.1.0.0/16`.
    pub subnet: String,
    /// First address to hand out.
    #[serde(
        rename = "rangeStart",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub range_start: Option<String>,
    /// Last address to hand out.
    #[serde(rename = "rangeEnd", default, skip_serializing_if = "Option::is_none")]
    pub range_end: Option<String>,
    /// Gateway of the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// Just the `mac` of a runtimeConfig or of `args.cni`: plugins that take
/// nothing else from there read this rather than the whole capability set,
/// so an unrelated malformed capability never fails them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct MacOnly {
    /// The requested MAC address; empty when none.
    #[serde(default)]
    pub mac: String,
}

/// A config's `args` section as far as `args.cni.mac` goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ArgsMac {
    /// `args.cni`.
    #[serde(default)]
    pub cni: MacOnly,
}

/// Every capability the reference plugins understand; others stay in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    /// `portMappings`.
    #[serde(
        rename = "portMappings",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub port_mappings: Vec<PortMapping>,
    /// `bandwidth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    /// `ipRanges`: range sets for IPAM.
    #[serde(rename = "ipRanges", default, skip_serializing_if = "Vec::is_empty")]
    pub ip_ranges: Vec<Vec<IpRange>>,
    /// `ips`: requested static addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// `mac`: requested MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// `dns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsCapability>,
    /// `aliases` (raw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aliases: Option<Value>,
    /// `infinibandGUID`.
    #[serde(
        rename = "infinibandGUID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub infiniband_guid: Option<String>,
    /// `deviceID`: a PCI address or similar device handle.
    #[serde(rename = "deviceID", default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// `cgroupPath` of the pod.
    #[serde(
        rename = "cgroupPath",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cgroup_path: Option<String>,
    /// Capabilities not listed above, raw.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RuntimeConfig {
    /// Parses the `runtimeConfig` object of a plugin config (absent = empty).
    pub fn from_value(v: Option<&Value>) -> crate::error::CniResult<RuntimeConfig> {
        match v {
            None | Some(Value::Null) => Ok(RuntimeConfig::default()),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                crate::Error::decoding(format!("failed to decode runtimeConfig: {e}"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings() {
        let podman: RuntimeConfig = serde_json::from_str(
            r#"{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}"#,
        )
        .expect("podman");
        let containerd: RuntimeConfig = serde_json::from_str(
            r#"{"portMappings":[{"HostPort":8080,"ContainerPort":80,"Protocol":"tcp","HostIP":""}],
                "bandwidth":{"IngressRate":1000,"IngressBurst":4294967295,"EgressRate":2000,"EgressBurst":4294967295},
                "dns":{"Servers":["10.0.0.10"],"Searches":["svc"],"Options":["ndots:5"]}}"#,
        )
        .expect("containerd");
        assert_eq!(podman.port_mappings, containerd.port_mappings);
        let bw = containerd.bandwidth.expect("bw");
        assert_eq!(bw.ingress_rate, 1000);
        assert_eq!(bw.egress_burst, 4294967295);
        assert_eq!(containerd.dns.expect("dns").servers, vec!["10.0.0.10"]);
        let defaulted: PortMapping =
            serde_json::from_str(r#"{"hostPort":1,"containerPort":2}"#).expect("pm");
        assert_eq!(defaulted.protocol, "tcp");
    }
}
