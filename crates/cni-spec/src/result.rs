//! Results of every spec version.
//!
//! [`Result`] is the canonical form (the 1.1.0 shape, a superset of all
//! others). It is parsed from and printed as any version; each conversion is
//! lossy exactly where the spec is: 0.1.0/0.2.0 carry no interfaces and one IP
//! per family, versions below 1.1.0 lack the interface `mtu`, `socketPath`,
//! `pciID` and the route `mtu`, `advmss`, `priority`, `table`, `scope`.

use crate::error::{CniResult, Error, ErrorCode};
use crate::version;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::IpAddr;

/// The shape family a version belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// 0.1.0 and 0.2.0: `ip4`/`ip6`.
    V02,
    /// 0.3.0, 0.3.1, 0.4.0: `ips` with `version`.
    V04,
    /// 1.0.0: no `version` in ips.
    V10,
    /// 1.1.0: adds interface/route attributes.
    V11,
}

impl Shape {
    /// The shape used by spec version `v`; `None` for unknown versions.
    pub fn of(v: &str) -> Option<Shape> {
        match v {
            "0.1.0" | "0.2.0" => Some(Shape::V02),
            "0.3.0" | "0.3.1" | "0.4.0" => Some(Shape::V04),
            "1.0.0" => Some(Shape::V10),
            "1.1.0" => Some(Shape::V11),
            _ => None,
        }
    }
}

fn unsupported_version(v: &str) -> Error {
    Error::new(
        ErrorCode::IncompatibleVersion,
        format!("unsupported CNI result version {v:?}"),
    )
    .details(format!(
        "supported versions are {}",
        version::ALL_VERSIONS.join(", ")
    ))
}

/// An interface the attachment made or used (`interfaces[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// The interface's name (inside its sandbox, or on the host).
    pub name: String,
    /// MAC address, `aa:bb:cc:dd:ee:ff`; empty when none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// 1.1.0
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for an interface inside the container; empty on the host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    /// 1.1.0
    #[serde(
        rename = "socketPath",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub socket_path: String,
    /// 1.1.0
    #[serde(rename = "pciID", default, skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

/// An address assigned by the attachment (`ips[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// Address with the prefix length of its subnet (`10.1.0.5/24`).
    pub address: IpNet,
    /// The default gateway for this address's subnet, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// A route to install in the container (`routes[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination network.
    pub dst: IpNet,
    /// An empty string reads as no gateway (Go's `net.IP` does the same).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    pub gw: Option<IpAddr>,
    /// 1.1.0
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// 1.1.0
    #[serde(rename = "advmss", default, skip_serializing_if = "Option::is_none")]
    pub adv_mss: Option<u32>,
    /// 1.1.0
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// 1.1.0
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// 1.1.0
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result2<Option<IpAddr>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    match s.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

type Result2<T, E> = std::result::Result<T, E>;

impl Route {
    /// A route to `dst`, via `gw` if given.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            mtu: None,
            adv_mss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }

    fn strip_v11(&self) -> Route {
        Route::new(self.dst, self.gw)
    }
}

/// Resolver settings (`dns`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name server addresses, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// The canonical result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Result {
    /// The spec version this result is printed as.
    pub cni_version: String,
    /// Interfaces, referred to by index from `ips[].interface`.
    pub interfaces: Vec<Interface>,
    /// Assigned addresses.
    pub ips: Vec<IpConfig>,
    /// Routes for the container.
    pub routes: Vec<Route>,
    /// Resolver settings.
    pub dns: Dns,
}

// ---- wire forms ---------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Wire1 {
    #[serde(rename = "cniVersion")]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    // Go prints an empty struct here, so do we.
    #[serde(default)]
    dns: Dns,
}

#[derive(Serialize, Deserialize)]
struct IpConfig04 {
    // Written from the address; libcni reads a result without it too.
    #[serde(default)]
    version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
    address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
}

#[derive(Serialize, Deserialize)]
struct Wire04 {
    #[serde(rename = "cniVersion")]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ips: Vec<IpConfig04>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Dns,
}

#[derive(Serialize, Deserialize)]
struct IpConfig02 {
    ip: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
}

#[derive(Serialize, Deserialize)]
struct Wire02 {
    #[serde(rename = "cniVersion")]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip4: Option<IpConfig02>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip6: Option<IpConfig02>,
    #[serde(default)]
    dns: Dns,
}

fn decode_err(v: &str, e: serde_json::Error) -> Error {
    Error::decoding(format!("failed to decode {v} result: {e}"))
}

impl Result {
    /// Takes an IPAM plugin's addresses and routes for a result that
    /// describes one interface, at index `interface`; the IPAM's DNS is left
    /// out (the plugins doing this report the config's DNS, as the
    /// reference's do).
    pub fn adopt_ipam(&mut self, ipam: Result, interface: usize) {
        self.ips = ipam.ips;
        for ip in &mut self.ips {
            ip.interface = Some(interface);
        }
        self.routes = ipam.routes;
    }

    /// An empty result of the given version.
    pub fn new(cni_version: impl Into<String>) -> Result {
        Result {
            cni_version: cni_version.into(),
            ..Default::default()
        }
    }

    /// Parses a result of any version. A result without `cniVersion` is
    /// read as `fallback_version` (a prevResult inherits its config's version).
    pub fn from_value(value: &Value, fallback_version: &str) -> CniResult<Result> {
        let v = value
            .get("cniVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(fallback_version)
            .to_string();
        let mut value = value.clone();
        if let Value::Object(m) = &mut value {
            m.insert("cniVersion".into(), Value::String(v.clone()));
        }
        match Shape::of(&v).ok_or_else(|| unsupported_version(&v))? {
            Shape::V10 | Shape::V11 => {
                let w: Wire1 = serde_json::from_value(value).map_err(|e| decode_err(&v, e))?;
                Ok(Result {
                    cni_version: w.cni_version,
                    interfaces: w.interfaces,
                    ips: w.ips,
                    routes: w.routes,
                    dns: w.dns,
                })
            }
            Shape::V04 => {
                let w: Wire04 = serde_json::from_value(value).map_err(|e| decode_err(&v, e))?;
                Ok(Result {
                    cni_version: w.cni_version,
                    interfaces: w.interfaces,
                    ips: w
                        .ips
                        .into_iter()
                        .map(|ip| IpConfig {
                            interface: ip.interface,
                            address: ip.address,
                            gateway: ip.gateway,
                        })
                        .collect(),
                    routes: w.routes,
                    dns: w.dns,
                })
            }
            Shape::V02 => {
                let w: Wire02 = serde_json::from_value(value).map_err(|e| decode_err(&v, e))?;
                let mut r = Result::new(w.cni_version);
                for ip in [w.ip4, w.ip6].into_iter().flatten() {
                    r.ips.push(IpConfig {
                        interface: None,
                        address: ip.ip,
                        gateway: ip.gateway,
                    });
                    r.routes.extend(ip.routes);
                }
                r.dns = w.dns;
                Ok(r)
            }
        }
    }

    /// Parses a result in any version's shape; `fallback_version` applies
    /// when the JSON has no `cniVersion`.
    pub fn from_slice(bytes: &[u8], fallback_version: &str) -> CniResult<Result> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::decoding(format!("failed to decode result: {e}")))?;
        Result::from_value(&value, fallback_version)
    }

    /// This result in the wire form of version `v`.
    pub fn to_value(&self, v: &str) -> CniResult<Value> {
        let shape = Shape::of(v).ok_or_else(|| unsupported_version(v))?;
        let json = match shape {
            Shape::V11 => serde_json::to_value(Wire1 {
                cni_version: v.into(),
                interfaces: self.interfaces.clone(),
                ips: self.ips.clone(),
                routes: self.routes.clone(),
                dns: self.dns.clone(),
            }),
            Shape::V10 => serde_json::to_value(Wire1 {
                cni_version: v.into(),
                interfaces: self.interfaces_v10(),
                ips: self.ips.clone(),
                routes: self.routes.iter().map(Route::strip_v11).collect(),
                dns: self.dns.clone(),
            }),
            Shape::V04 => serde_json::to_value(Wire04 {
                cni_version: v.into(),
                interfaces: self.interfaces_v10(),
                ips: self
                    .ips
                    .iter()
                    .map(|ip| IpConfig04 {
                        version: if ip.address.addr().is_ipv4() {
                            "4"
                        } else {
                            "6"
                        }
                        .into(),
                        interface: ip.interface,
                        address: ip.address,
                        gateway: ip.gateway,
                    })
                    .collect(),
                routes: self.routes.iter().map(Route::strip_v11).collect(),
                dns: self.dns.clone(),
            }),
            Shape::V02 => serde_json::to_value(self.to_wire02(v)),
        };
        json.map_err(|e| Error::internal(format!("failed to encode result: {e}")))
    }

    /// The result as JSON in spec version `v`'s shape (converting as needed;
    /// code 1 if it cannot be expressed in `v`).
    pub fn to_json(&self, v: &str) -> CniResult<String> {
        Ok(self.to_value(v)?.to_string())
    }

    /// Converts to version `v` and back, which is exactly what a runtime
    /// speaking `v` would see.
    pub fn convert(&self, v: &str) -> CniResult<Result> {
        Result::from_value(&self.to_value(v)?, v)
    }

    fn interfaces_v10(&self) -> Vec<Interface> {
        self.interfaces
            .iter()
            .map(|i| Interface {
                name: i.name.clone(),
                mac: i.mac.clone(),
                sandbox: i.sandbox.clone(),
                ..Default::default()
            })
            .collect()
    }

    /// 0.2.0 keeps the first address of each family; routes go with the
    /// family of their destination, as the reference converts them.
    fn to_wire02(&self, v: &str) -> Wire02 {
        let pick = |want_v4: bool| -> Option<IpConfig02> {
            let ip = self
                .ips
                .iter()
                .find(|ip| ip.address.addr().is_ipv4() == want_v4)?;
            Some(IpConfig02 {
                ip: ip.address,
                gateway: ip.gateway,
                routes: self
                    .routes
                    .iter()
                    .filter(|r| r.dst.addr().is_ipv4() == want_v4)
                    .map(Route::strip_v11)
                    .collect(),
            })
        };
        Wire02 {
            cni_version: v.into(),
            ip4: pick(true),
            ip6: pick(false),
            dns: self.dns.clone(),
        }
    }

    /// Checks the internal consistency the spec demands.
    pub fn validate(&self) -> CniResult<()> {
        for ip in &self.ips {
            if let Some(i) = ip.interface {
                if i >= self.interfaces.len() {
                    return Err(Error::invalid_config(format!(
                        "ips entry {} names interface index {i}, but the result has {} interfaces",
                        ip.address,
                        self.interfaces.len()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Index of the interface with this name inside the sandbox.
    pub fn interface_index(&self, name: &str, sandbox_only: bool) -> Option<usize> {
        self.interfaces
            .iter()
            .position(|i| i.name == name && (!sandbox_only || !i.sandbox.is_empty()))
    }
}

#[cfg(test)]
mod tests;
