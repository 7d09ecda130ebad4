//! `static`: hands out the addresses written in the configuration (or given
//! by CNI_ARGS `IP=`/`GATEWAY=`, `args.cni.ips`, runtimeConfig `ips`).

#[doc(hidden)]
pub mod fuzzing;
use cni_skel::{CmdArgs, Plugin};
use cni_spec::error::CniResult;
use cni_spec::{Dns, Error, IpConfig, Result, Route};
use ipam::StaticConfig;

/// The static IPAM plugin as the CNI skeleton runs it: returns the
/// configured addresses; nothing to release on DEL.
pub struct Static;

fn config(args: &CmdArgs) -> CniResult<StaticConfig> {
    let a = args.cni_args()?;
    a.check_known(&["IP", "GATEWAY"])?;
    StaticConfig::parse(&args.stdin, a.get("IP"), a.get("GATEWAY")).map_err(kit::err)
}

fn routes(cfg: &StaticConfig) -> CniResult<Vec<Route>> {
    cfg.routes
        .iter()
        .map(|r| {
            serde_json::from_value::<Route>(r.clone())
                .map_err(|e| Error::invalid_config(format!("invalid route {r}: {e}")))
        })
        .collect()
}

impl Plugin for Static {
    fn name(&self) -> &'static str {
        "static"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let cfg = config(args)?;
        let mut result = Result::new(args.version());
        result.routes = routes(&cfg)?;
        if let Some(d) = &cfg.dns {
            result.dns = serde_json::from_value::<Dns>(d.clone())
                .map_err(|e| Error::invalid_config(format!("invalid dns: {e}")))?;
        }
        for a in &cfg.addresses {
            result.ips.push(IpConfig {
                interface: None,
                address: a.address,
                gateway: a.gateway,
            });
        }
        Ok(result)
    }

    fn del(&self, _args: &CmdArgs) -> CniResult<()> {
        // Nothing was allocated.
        Ok(())
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let cfg = config(args)?;
        let prev = args
            .conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("CHECK needs prevResult"))?;
        for a in &cfg.addresses {
            if !prev.ips.iter().any(|ip| ip.address == a.address) {
                return Err(Error::internal(format!(
                    "static: address {} not found in prevResult",
                    a.address
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
