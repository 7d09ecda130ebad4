//! Support for the fuzz targets (`fuzz/`): the arguments a plugin's
//! config parser sees, built from raw stdin bytes alone.

use crate::CmdArgs;
use crate::Command;
use cni_spec::NetConf;

/// `CmdArgs` for an ADD of container "fuzz" on eth0 with `stdin` as the
/// config, or None when the common config fields do not parse (the
/// plugin would never see it).
pub fn args(stdin: &[u8]) -> Option<CmdArgs> {
    let conf = NetConf::parse(stdin).ok()?;
    Some(CmdArgs {
        command: Command::Add,
        container_id: "fuzz".into(),
        netns: String::new(),
        ifname: "eth0".into(),
        args: String::new(),
        path: Vec::new(),
        stdin: stdin.to_vec(),
        conf,
    })
}
