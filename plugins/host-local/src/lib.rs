//! `host-local`: allocates addresses from range sets, with state in
//! `<dataDir>/<network>/` byte-compatible with the reference plugin.

#[doc(hidden)]
pub mod fuzzing;
use cni_skel::{CmdArgs, Plugin};
use cni_spec::error::CniResult;
use cni_spec::{Dns, Error, ErrorCode, IpConfig, Result, Route};
use ipam::{ops, HostLocalConfig, StoreConfig};

/// The host-local IPAM plugin as the CNI skeleton runs it: allocates from
/// and releases into the on-disk store of its network.
pub struct HostLocal;

/// An ipam error as a CNI error object with the same code (the kit's one
/// mapping).
pub fn cni_error(e: ipam::Error) -> Error {
    kit::err(e)
}

/// `routes` of an IPAM section as result routes (code 7 when malformed).
pub fn parse_routes(routes: &[serde_json::Value]) -> CniResult<Vec<Route>> {
    routes
        .iter()
        .map(|r| {
            serde_json::from_value::<Route>(r.clone())
                .map_err(|e| Error::invalid_config(format!("invalid route {r}: {e}")))
        })
        .collect()
}

/// The requested addresses of CNI_ARGS `IP=` (comma-separated).
fn env_ips(args: &CmdArgs) -> CniResult<Vec<std::net::IpAddr>> {
    let a = args.cni_args()?;
    a.check_known(&["IP"])?;
    match a.get("IP") {
        Some(v) => {
            ipam::parse_ip_list(v).map_err(|e| Error::invalid_env(format!("CNI_ARGS IP: {e}")))
        }
        None => Ok(Vec::new()),
    }
}

fn store_conf(args: &CmdArgs) -> CniResult<StoreConfig> {
    StoreConfig::parse(&args.stdin).map_err(cni_error)
}

impl Plugin for HostLocal {
    fn name(&self) -> &'static str {
        "host-local"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let ips = env_ips(args)?;
        let cfg = HostLocalConfig::parse(&args.stdin, &ips).map_err(cni_error)?;
        let routes = parse_routes(&cfg.routes)?;
        let mut result = Result::new(args.version());
        if let Some(path) = &cfg.resolv_conf {
            let d = ipam::parse_resolv_conf(path).map_err(cni_error)?;
            result.dns = Dns {
                nameservers: d.nameservers,
                domain: d.domain.unwrap_or_default(),
                search: d.search,
                options: d.options,
            };
        }
        let allocs = ops::add(&cfg, &args.container_id, &args.ifname).map_err(cni_error)?;
        for a in allocs {
            result.ips.push(IpConfig {
                interface: None,
                address: a.address,
                gateway: Some(a.gateway),
            });
        }
        result.routes = routes;
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        // Only the store location matters: DEL works even when the ranges of
        // the configuration no longer validate.
        let sc = store_conf(args)?;
        ops::del(&sc, &args.container_id, &args.ifname)
            .map(|_| ())
            .map_err(cni_error)
    }

    /// CHECK asks the store whether the attachment holds an address, as
    /// the reference's: prevResult is not needed.
    fn check_needs_prev_result(&self) -> bool {
        false
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let sc = store_conf(args)?;
        let held = ops::check(&sc, &args.container_id, &args.ifname).map_err(cni_error)?;
        if held.is_empty() {
            return Err(Error::new(
                ErrorCode::UnknownContainer,
                format!(
                    "host-local: no address allocated to container {} ifname {}",
                    args.container_id, args.ifname
                ),
            ));
        }
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> CniResult<()> {
        let sc = store_conf(args)?;
        let valid: Vec<(String, String)> = args
            .conf
            .gc_attachments()
            .into_iter()
            .map(|a| (a.container_id, a.ifname))
            .collect();
        ops::gc(&sc, &valid).map(|_| ()).map_err(cni_error)
    }

    fn status(&self, args: &CmdArgs) -> CniResult<()> {
        let cfg = HostLocalConfig::parse(&args.stdin, &[]).map_err(cni_error)?;
        ops::status(&cfg).map_err(|e| Error::new(ErrorCode::NotAvailable, e.to_string()))
    }
}

#[cfg(test)]
mod tests;
