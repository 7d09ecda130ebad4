//! The `ipam` section of the configuration, the options asked for and sent
//! (`request`, `provide`), and what an ACK turns into in a CNI result.

use crate::packet::*;
use cni_spec::{IpConfig, Route};
use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

/// Where plugin and daemon meet unless `daemonSocketPath` (or the
/// daemon's `-socketpath`) says otherwise.
pub const DEFAULT_SOCKET_PATH: &str = "/run/cni/dhcp.sock";

/// The parts of the network configuration the plugin and daemon read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetConf {
    /// The network's name.
    #[serde(default)]
    pub name: String,
    /// The `ipam` section.
    #[serde(default)]
    pub ipam: Option<IpamConf>,
}

/// The `ipam` section of a dhcp network.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IpamConf {
    /// The daemon's socket (empty: [`DEFAULT_SOCKET_PATH`]).
    #[serde(rename = "daemonSocketPath", default)]
    pub daemon_socket_path: String,
    /// Options the client sends to the server.
    #[serde(rename = "provide", default)]
    pub provide: Vec<ProvideOption>,
    /// Options the client asks the server for.
    #[serde(rename = "request", default)]
    pub request: Vec<RequestOption>,
    /// Metric of every route of the result (`priority`, 0: none set), as
    /// the reference since v1.6.
    #[serde(default)]
    pub priority: u32,
}

/// One `provide` entry: an option sent with every client message.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProvideOption {
    /// The option, by dhcp-options(5) name or number.
    #[serde(default)]
    pub option: String,
    /// Its value, sent as these bytes.
    #[serde(default)]
    pub value: String,
    /// A CNI_ARGS key whose value, when present, is sent instead.
    #[serde(rename = "fromArg", default)]
    pub from_arg: String,
}

/// One `request` entry: an option put into the parameter request list.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RequestOption {
    /// Leave subnet mask and router out of the list unless asked for.
    #[serde(rename = "skipDefault", default)]
    pub skip_default: bool,
    /// The option, by dhcp-options(5) name or number.
    #[serde(default)]
    pub option: String,
}

impl NetConf {
    /// The daemon's socket this network uses.
    pub fn socket_path(&self) -> &str {
        match &self.ipam {
            Some(i) if !i.daemon_socket_path.is_empty() => &i.daemon_socket_path,
            _ => DEFAULT_SOCKET_PATH,
        }
    }
}

/// An option by dhcp-options(5) name or by number (0–255).
pub fn parse_option_name(s: &str) -> Result<u8, String> {
    Ok(match s {
        "dhcp-client-identifier" => OPT_CLIENT_ID,
        "subnet-mask" => OPT_SUBNET_MASK,
        "routers" => OPT_ROUTER,
        "host-name" => OPT_HOST_NAME,
        "user-class" => OPT_USER_CLASS,
        "vendor-class-identifier" => OPT_VENDOR_CLASS,
        _ => s
            .parse::<u8>()
            .map_err(|e| format!("Can not parse option {s:?}: {e}"))?,
    })
}

/// What a lease asks for and what it sends along.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Parameter request list (option 55), in order.
    pub request: Vec<u8>,
    /// Options sent as given (may override the client identifier).
    pub provide: Vec<(u8, Vec<u8>)>,
}

/// Builds the option sets as the reference does: `provide` values (a
/// `fromArg` found in CNI_ARGS wins over `value`), and `request` options
/// plus subnet mask and router unless some entry says `skipDefault`.
pub fn prepare(cni_args: &str, conf: &IpamConf) -> Result<Options, String> {
    let args: Vec<(&str, &str)> = cni_args
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let mut out = Options::default();
    for p in &conf.provide {
        let code = parse_option_name(&p.option)?;
        let mut value = None;
        if !p.value.is_empty() {
            if p.value.len() > 255 {
                return Err(format!(
                    "value too long for option {:?}: {:?}",
                    p.option, p.value
                ));
            }
            value = Some(p.value.as_bytes().to_vec());
        }
        if let Some((_, v)) = args.iter().find(|(k, _)| *k == p.from_arg) {
            if v.len() > 255 {
                return Err(format!(
                    "value too long for option {:?} from CNI_ARGS {:?}",
                    p.option, p.from_arg
                ));
            }
            value = Some(v.as_bytes().to_vec());
        }
        if let Some(v) = value {
            out.provide.retain(|(c, _)| *c != code);
            out.provide.push((code, v));
        }
    }
    let mut skip_default = false;
    for r in &conf.request {
        skip_default |= r.skip_default;
        let code = parse_option_name(&r.option)?;
        if !out.request.contains(&code) {
            out.request.push(code);
        }
    }
    if !skip_default {
        for code in [OPT_SUBNET_MASK, OPT_ROUTER] {
            if !out.request.contains(&code) {
                out.request.push(code);
            }
        }
    }
    Ok(out)
}

/// `<containerID>/<network>/<ifname>`, cut to the 254 bytes option 61 can carry.
pub fn client_id(container_id: &str, network: &str, ifname: &str) -> String {
    let mut id = format!("{container_id}/{network}/{ifname}");
    if id.len() > 254 {
        let mut cut = 254;
        while !id.is_char_boundary(cut) {
            cut -= 1;
        }
        id.truncate(cut);
    }
    id
}

/// The address, gateway and routes of an ACK, as the reference reports them.
pub fn lease_result(ack: &Message) -> Result<(IpConfig, Vec<Route>), String> {
    let mask = ack
        .addr_option(OPT_SUBNET_MASK)
        .ok_or("DHCP option Subnet Mask not found in DHCPACK")?;
    let bits = u32::from(mask);
    if bits.leading_ones() + bits.trailing_zeros() != 32 {
        return Err(format!("DHCPACK has a non-contiguous subnet mask {mask}"));
    }
    let net = Ipv4Net::new(ack.yiaddr, bits.leading_ones() as u8)
        .map_err(|e| format!("bad address in DHCPACK: {e}"))?;
    let gateway = ack.addr_option(OPT_ROUTER).map(IpAddr::V4);
    let ip = IpConfig {
        interface: None,
        address: IpNet::V4(net),
        gateway,
    };
    Ok((ip, routes(ack, gateway)))
}

/// Classless routes (121) win over everything else (RFC 3442); otherwise
/// the classful static routes (33) and a default route via the router.
fn routes(ack: &Message, gateway: Option<IpAddr>) -> Vec<Route> {
    let classless = ack
        .get(OPT_CLASSLESS_ROUTES)
        .map(parse_classless)
        .unwrap_or_default();
    if !classless.is_empty() {
        return classless;
    }
    let mut out = ack
        .get(OPT_STATIC_ROUTES)
        .map(parse_static)
        .unwrap_or_default();
    if let Some(gw) = gateway {
        out.push(Route::new(
            IpNet::V4(Ipv4Net::default()), // 0.0.0.0/0
            Some(gw),
        ));
    }
    out
}

fn on_link(gw: Ipv4Addr) -> Option<IpAddr> {
    // A router of 0.0.0.0 means the destination is on the link.
    (!gw.is_unspecified()).then_some(IpAddr::V4(gw))
}

/// Option 121: (prefix length, significant octets, router) triples. A
/// malformed tail ends the list, keeping what came before.
pub fn parse_classless(mut b: &[u8]) -> Vec<Route> {
    let mut out = Vec::new();
    while let Some((&width, rest)) = b.split_first() {
        if width > 32 {
            break;
        }
        let n = usize::from(width).div_ceil(8);
        if rest.len() < n + 4 {
            break;
        }
        let mut dst = [0u8; 4];
        dst[..n].copy_from_slice(&rest[..n]);
        let gw = Ipv4Addr::new(rest[n], rest[n + 1], rest[n + 2], rest[n + 3]);
        if let Ok(net) = Ipv4Net::new(Ipv4Addr::from(dst), width) {
            out.push(Route::new(IpNet::V4(net.trunc()), on_link(gw)));
        }
        b = &rest[n + 4..];
    }
    out
}

/// Option 33: (destination, router) pairs with classful destinations.
pub fn parse_static(b: &[u8]) -> Vec<Route> {
    b.chunks_exact(8)
        .filter_map(|c| {
            let dst = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
            let gw = Ipv4Addr::new(c[4], c[5], c[6], c[7]);
            let len = match c[0] {
                0..=127 => 8,
                128..=191 => 16,
                192..=223 => 24,
                _ => 32,
            };
            let net = Ipv4Net::new(dst, len).ok()?;
            Some(Route::new(IpNet::V4(net), on_link(gw)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(opts: &[(u8, Vec<u8>)]) -> Message {
        let mut m = Message::request(1, [0; 6]);
        m.op = 2;
        m.yiaddr = Ipv4Addr::new(10, 9, 0, 50);
        for (c, v) in opts {
            m.set(*c, v.clone());
        }
        m
    }

    #[test]
    fn defaults_are_mask_and_router() {
        let o = prepare("", &IpamConf::default()).expect("ok");
        assert_eq!(o.request, vec![1, 3]);
        assert!(o.provide.is_empty());
    }

    #[test]
    fn skip_default_and_names() {
        let conf: IpamConf = serde_json::from_value(serde_json::json!({
            "request": [{"option": "121", "skipDefault": true}, {"option": "subnet-mask"}],
            "provide": [
                {"option": "host-name", "value": "fixed"},
                {"option": "12", "fromArg": "K8S_POD_NAME"},
                {"option": "vendor-class-identifier", "value": "rcni"}
            ]
        }))
        .expect("parse");
        let o = prepare("IgnoreUnknown=1;K8S_POD_NAME=web-0", &conf).expect("ok");
        assert_eq!(o.request, vec![121, 1]);
        assert_eq!(
            o.provide,
            vec![(12, b"web-0".to_vec()), (60, b"rcni".to_vec())]
        );
    }

    #[test]
    fn bad_option_names_fail() {
        for bad in ["256", "-1", "no-such-option", ""] {
            let conf = IpamConf {
                request: vec![RequestOption {
                    skip_default: false,
                    option: bad.into(),
                }],
                ..Default::default()
            };
            assert!(prepare("", &conf).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_client_ids_are_cut() {
        let id = client_id(&"a".repeat(300), "net", "eth0");
        assert_eq!(id.len(), 254);
        assert_eq!(client_id("c1", "net", "eth0"), "c1/net/eth0");
    }

    #[test]
    fn router_gives_gateway_and_default_route() {
        let a = ack(&[
            (OPT_SUBNET_MASK, vec![255, 255, 255, 0]),
            (OPT_ROUTER, vec![10, 9, 0, 1, 10, 9, 0, 2]),
        ]);
        let (ip, routes) = lease_result(&a).expect("ok");
        assert_eq!(ip.address.to_string(), "10.9.0.50/24");
        assert_eq!(ip.gateway, Some("10.9.0.1".parse().expect("ip")));
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].dst.to_string(), "0.0.0.0/0");
        assert_eq!(routes[0].gw, Some("10.9.0.1".parse().expect("ip")));
    }

    #[test]
    fn classless_routes_replace_router_and_static() {
        let a = ack(&[
            (OPT_SUBNET_MASK, vec![255, 255, 0, 0]),
            (OPT_ROUTER, vec![10, 9, 0, 1]),
            (OPT_STATIC_ROUTES, vec![172, 16, 0, 0, 10, 9, 0, 3]),
            (
                OPT_CLASSLESS_ROUTES,
                vec![
                    24, 192, 168, 7, 10, 9, 0, 4, // 192.168.7.0/24 via .4
                    0, 10, 9, 0, 1, // default via .1
                    32, 10, 10, 10, 10, 0, 0, 0, 0, // host route on link
                    9, 1, // truncated: ignored
                ],
            ),
        ]);
        let (ip, routes) = lease_result(&a).expect("ok");
        assert_eq!(ip.address.to_string(), "10.9.0.50/16");
        let r: Vec<String> = routes
            .iter()
            .map(|r| format!("{} {:?}", r.dst, r.gw))
            .collect();
        assert_eq!(
            r,
            [
                "192.168.7.0/24 Some(10.9.0.4)",
                "0.0.0.0/0 Some(10.9.0.1)",
                "10.10.10.10/32 None"
            ]
        );
    }

    #[test]
    fn static_routes_are_classful() {
        let a = ack(&[
            (OPT_SUBNET_MASK, vec![255, 255, 255, 0]),
            (
                OPT_STATIC_ROUTES,
                vec![172, 16, 0, 0, 10, 9, 0, 3, 10, 0, 0, 0, 10, 9, 0, 4],
            ),
        ]);
        let (ip, routes) = lease_result(&a).expect("ok");
        assert_eq!(ip.gateway, None);
        let r: Vec<String> = routes.iter().map(|r| r.dst.to_string()).collect();
        assert_eq!(r, ["172.16.0.0/16", "10.0.0.0/8"]);
    }

    #[test]
    fn missing_mask_is_an_error() {
        assert!(lease_result(&ack(&[(OPT_ROUTER, vec![10, 9, 0, 1])])).is_err());
        assert!(lease_result(&ack(&[(OPT_SUBNET_MASK, vec![255, 0, 255, 0])])).is_err());
    }
}
