//! The plugin entry point: turns `CNI_*` variables and stdin into a call of
//! a [`Plugin`] method and prints the result or the error object.
//!
//! Only the result or the error object ever reaches stdout; diagnostics go
//! to stderr (see [`log`]).
//!
//! A plugin is a type implementing [`Plugin`] (ADD, DEL and CHECK, plus GC
//! and STATUS when it has something to collect or to report) and a `main`
//! that calls [`plugin_main`]. The skeleton checks the environment for the
//! verb and answers VERSION itself. It refuses versions the plugin does not
//! speak with code 1, and verbs newer than the config's version (GC and
//! STATUS before 1.1.0, CHECK before 0.4.0). It parses the common config
//! fields into [`CmdArgs::conf`], converts the returned result to the
//! requested version, turns errors and panics (code 999) into error
//! objects, and sets the exit code.
//!
//! # Example
//!
//! A plugin that assigns nothing, run through [`execute`] (what
//! [`plugin_main`] does with the real environment and stdio):
//!
//! ```
//! use cni_skel::{execute, CmdArgs, Plugin};
//! use cni_spec::error::CniResult;
//!
//! struct Noop;
//!
//! impl Plugin for Noop {
//!     fn name(&self) -> &'static str {
//!         "noop"
//!     }
//!     fn add(&self, args: &CmdArgs) -> CniResult<cni_spec::Result> {
//!         // An empty result in the caller's version.
//!         Ok(cni_spec::Result::new(args.version()))
//!     }
//!     fn del(&self, _args: &CmdArgs) -> CniResult<()> {
//!         Ok(())
//!     }
//!     fn check(&self, _args: &CmdArgs) -> CniResult<()> {
//!         Ok(())
//!     }
//! }
//!
//! // In a real plugin: fn main() { cni_skel::plugin_main(&Noop) }
//! let env = |k: &str| {
//!     let v = match k {
//!         "CNI_COMMAND" => "ADD",
//!         "CNI_CONTAINERID" => "c1",
//!         "CNI_NETNS" => "/run/netns/c1",
//!         "CNI_IFNAME" => "eth0",
//!         "CNI_PATH" => "/opt/cni/bin",
//!         _ => return None,
//!     };
//!     Some(v.to_string())
//! };
//! let conf = br#"{"cniVersion": "1.0.0", "name": "n", "type": "noop"}"#;
//! let out = execute(&Noop, &env, &mut &conf[..]);
//! assert_eq!(out.exit_code, 0);
//! assert!(String::from_utf8_lossy(&out.stdout).contains("\"cniVersion\":\"1.0.0\""));
//!
//! // GC is a 1.1.0 verb: a 1.0.0 config gets an error object, exit code 1.
//! let gc = |k: &str| if k == "CNI_COMMAND" { Some("GC".into()) } else { env(k) };
//! let out = execute(&Noop, &gc, &mut &conf[..]);
//! assert_eq!(out.exit_code, 1);
//! assert!(String::from_utf8_lossy(&out.stdout).contains("\"code\""));
//! ```

#![warn(missing_docs)]

#[doc(hidden)]
pub mod fuzzing;
pub mod log;

use cni_spec::error::CniResult;
use cni_spec::{validate, version, CniArgs, Error, ErrorCode, NetConf, VersionInfo};
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The verbs of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `ADD`: attach the container to the network.
    Add,
    /// `DEL`: detach and release; must succeed when there is nothing left to remove.
    Del,
    /// `CHECK` (0.4.0+): verify an attachment against its `prevResult`.
    Check,
    /// `GC` (1.1.0+): release what no listed attachment uses.
    Gc,
    /// `STATUS` (1.1.0+): is the plugin ready for ADD?
    Status,
    /// `VERSION`: which spec versions the plugin speaks (answered by the skeleton).
    Version,
}

impl Command {
    /// The verb named by a `CNI_COMMAND` value (`"ADD"`, ...); `None` for anything else.
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    /// The `CNI_COMMAND` spelling of this verb.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }

    /// Environment variables the reference skeleton insists on for this verb.
    fn required_env(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => {
                &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
            }
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
            Command::Gc | Command::Status => &["CNI_PATH"],
            Command::Version => &[],
        }
    }

    /// The first spec version that has this verb.
    fn since(self) -> &'static str {
        match self {
            Command::Check => "0.4.0",
            Command::Gc | Command::Status => "1.1.0",
            _ => "0.1.0",
        }
    }
}

/// Everything a plugin method gets.
#[derive(Debug, Clone)]
pub struct CmdArgs {
    /// The verb being run.
    pub command: Command,
    /// `CNI_CONTAINERID`; empty for GC and STATUS.
    pub container_id: String,
    /// `CNI_NETNS`; empty on containerd's second DEL.
    pub netns: String,
    /// `CNI_IFNAME`: the interface name inside the container.
    pub ifname: String,
    /// Raw `CNI_ARGS`.
    pub args: String,
    /// `CNI_PATH`, split: where delegated plugins (IPAM) are looked up.
    pub path: Vec<PathBuf>,
    /// The raw config, for plugin-specific parsing.
    pub stdin: Vec<u8>,
    /// The common config fields, already parsed.
    pub conf: NetConf,
}

impl CmdArgs {
    /// The container namespace path, if one was given.
    pub fn netns_path(&self) -> Option<&Path> {
        (!self.netns.is_empty()).then(|| Path::new(&self.netns))
    }

    /// The container namespace path, required (ADD and CHECK).
    pub fn require_netns(&self) -> CniResult<&Path> {
        self.netns_path()
            .ok_or_else(|| Error::invalid_env("CNI_NETNS is empty"))
    }

    /// `CNI_ARGS` parsed into `KEY=VALUE` pairs (code 4 when malformed).
    pub fn cni_args(&self) -> CniResult<CniArgs> {
        CniArgs::parse(&self.args)
    }

    /// Parses the whole config into a plugin's own type: code 6 when the
    /// JSON itself is broken, code 7 when a field has the wrong shape — with
    /// the field's path in the message (`ipam.ranges[0][0].subnet: ...`).
    pub fn parse_conf<T: serde::de::DeserializeOwned>(&self) -> CniResult<T> {
        cni_spec::json::decode(&self.stdin).map_err(|e| {
            let code = if e.is_data {
                ErrorCode::InvalidConfig
            } else {
                ErrorCode::Decoding
            };
            Error::new(
                code,
                format!("invalid {} configuration: {e}", self.conf.plugin_type),
            )
        })
    }

    /// The cniVersion results must be printed in.
    pub fn version(&self) -> &str {
        &self.conf.cni_version
    }
}

/// A CNI plugin. Methods read like the reference's cmdAdd/cmdDel/cmdCheck.
pub trait Plugin: Sync {
    /// The `type` name this plugin answers to.
    fn name(&self) -> &'static str;

    /// Versions this plugin speaks.
    fn supported_versions(&self) -> &'static [&'static str] {
        version::ALL_VERSIONS
    }

    /// `ADD`: create the attachment and return its result. The skeleton
    /// converts the result to the requested `cniVersion` before printing it.
    fn add(&self, args: &CmdArgs) -> CniResult<cni_spec::Result>;
    /// `DEL`: remove the attachment. Must succeed when it is already gone
    /// (DEL is called again after failures and on runtime restarts).
    fn del(&self, args: &CmdArgs) -> CniResult<()>;
    /// `CHECK`: verify that the attachment described by `prevResult` is intact.
    fn check(&self, args: &CmdArgs) -> CniResult<()>;

    /// Whether CHECK without `prevResult` is refused (code 7) before
    /// [`Plugin::check`] runs. A plugin whose CHECK looks only at its own
    /// records (host-local, as the reference's) answers false.
    fn check_needs_prev_result(&self) -> bool {
        true
    }

    /// Default: nothing to collect.
    fn gc(&self, _args: &CmdArgs) -> CniResult<()> {
        Ok(())
    }

    /// Default: always ready.
    fn status(&self, _args: &CmdArgs) -> CniResult<()> {
        Ok(())
    }
}

/// What a plugin invocation produced: stdout bytes and an exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What to write on stdout: the result, the version answer or the error object.
    pub stdout: Vec<u8>,
    /// The process exit code: 0 on success, 1 with an error object.
    pub exit_code: i32,
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// Runs one invocation with the given environment and stdin, without
/// touching the process's own environment or stdio (so it also serves the
/// in-process IPAM shortcut).
pub fn execute(
    plugin: &dyn Plugin,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
) -> Outcome {
    let mut version_for_errors = version::LATEST.to_string();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        dispatch(plugin, env, stdin, &mut version_for_errors)
    }));
    let result = match outcome {
        Ok(r) => r,
        Err(p) => Err(Error::internal(format!(
            "plugin {} panicked: {}",
            plugin.name(),
            panic_message(p.as_ref())
        ))),
    };
    match result {
        Ok(stdout) => Outcome {
            stdout,
            exit_code: 0,
        },
        Err(mut e) => {
            if e.cni_version.is_empty() {
                e.cni_version = version_for_errors;
            }
            log::error(&format!("{} failed: {e}", plugin.name()));
            let mut stdout = e.to_json().into_bytes();
            stdout.push(b'\n');
            Outcome {
                stdout,
                exit_code: 1,
            }
        }
    }
}

fn dispatch(
    plugin: &dyn Plugin,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
    version_for_errors: &mut String,
) -> CniResult<Vec<u8>> {
    let get = |k: &str| env(k).unwrap_or_default();
    let raw_cmd = get("CNI_COMMAND");
    if raw_cmd.is_empty() {
        return Err(Error::invalid_env(
            "required env variables [CNI_COMMAND] missing",
        ));
    }
    let command = Command::parse(&raw_cmd)
        .ok_or_else(|| Error::invalid_env(format!("unknown CNI_COMMAND: {raw_cmd}")))?;
    if command == Command::Version {
        let mut out = serde_json::to_vec(&VersionInfo::new(plugin.supported_versions()))
            .map_err(|e| Error::internal(e.to_string()))?;
        out.push(b'\n');
        return Ok(out);
    }

    let missing: Vec<&str> = command
        .required_env()
        .iter()
        .copied()
        // A missing or empty CNI_CONTAINERID is a missing variable too
        // (code 4, named), as the spec and the reference have it.
        .filter(|k| env(k).is_none_or(|v| v.is_empty()))
        .collect();
    if !missing.is_empty() {
        return Err(Error::invalid_env(format!(
            "required env variables [{}] missing",
            missing.join(",")
        )));
    }

    let mut data = Vec::new();
    stdin
        .read_to_end(&mut data)
        .map_err(|e| Error::io(format!("error reading from stdin: {e}")))?;
    let conf = NetConf::parse(&data)?;
    *version_for_errors = if version::is_known(&conf.cni_version) {
        conf.cni_version.clone()
    } else {
        version::LATEST.to_string()
    };

    if !plugin
        .supported_versions()
        .contains(&conf.cni_version.as_str())
    {
        return Err(
            Error::new(ErrorCode::IncompatibleVersion, "incompatible CNI versions").details(
                format!(
                    "config is {:?}, plugin supports {:?}",
                    conf.cni_version,
                    plugin.supported_versions()
                ),
            ),
        );
    }
    if !version::at_least(&conf.cni_version, command.since()) {
        return Err(Error::new(
            ErrorCode::IncompatibleVersion,
            format!("config version does not allow {}", command.as_str()),
        )
        .details(format!(
            "{} needs cniVersion {} or later, config is {}",
            command.as_str(),
            command.since(),
            conf.cni_version
        )));
    }
    validate::network_name(&conf.name)?;
    if matches!(command, Command::Add | Command::Del | Command::Check) {
        validate::container_id(&get("CNI_CONTAINERID"))?;
        validate::interface_name(&get("CNI_IFNAME"))?;
    }
    if command == Command::Check && conf.prev_result.is_none() && plugin.check_needs_prev_result() {
        return Err(Error::invalid_config(
            "CHECK needs prevResult in the configuration",
        ));
    }

    let args = CmdArgs {
        command,
        container_id: get("CNI_CONTAINERID"),
        netns: get("CNI_NETNS"),
        ifname: get("CNI_IFNAME"),
        args: get("CNI_ARGS"),
        path: std::env::split_paths(&get("CNI_PATH")).collect(),
        stdin: data,
        conf,
    };
    log::debug(&format!(
        "{} {} container={} ifname={} netns={}",
        plugin.name(),
        command.as_str(),
        args.container_id,
        args.ifname,
        args.netns
    ));
    match command {
        Command::Add => {
            let result = plugin.add(&args)?;
            let mut out = result.to_json(args.version())?.into_bytes();
            out.push(b'\n');
            Ok(out)
        }
        Command::Del => plugin.del(&args).map(|()| Vec::new()),
        Command::Check => plugin.check(&args).map(|()| Vec::new()),
        Command::Gc => plugin.gc(&args).map(|()| Vec::new()),
        Command::Status => plugin.status(&args).map(|()| Vec::new()),
        Command::Version => unreachable!("answered above"),
    }
}

/// `main` of a plugin process: real environment, stdin and stdout; exits.
pub fn plugin_main(plugin: &dyn Plugin) -> ! {
    // Panics are turned into error objects; keep their text off stdout.
    std::panic::set_hook(Box::new(|info| {
        log::error(&format!("panic: {info}"));
    }));
    if std::env::var_os("CNI_COMMAND").is_none_or(|c| c.is_empty()) {
        // A person ran the binary by hand: explain, like the reference does
        // (which treats a set but empty CNI_COMMAND the same way).
        eprintln!(
            "CNI {} plugin (rcni {})\nCNI protocol versions supported: {}",
            plugin.name(),
            env!("CARGO_PKG_VERSION"),
            plugin.supported_versions().join(", ")
        );
        std::process::exit(0);
    }
    let env = |k: &str| std::env::var(k).ok();
    let outcome = execute(plugin, &env, &mut std::io::stdin().lock());
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&outcome.stdout);
    let _ = out.flush();
    std::process::exit(outcome.exit_code);
}

#[cfg(test)]
mod tests;

/// True when a test asked this plugin to fail at `point`
/// (`RCNI_INJECT_FAILURE=<point>`), to prove that a failure after the
/// kernel was changed leaves nothing behind. Only with the
/// `fault-injection` feature, which test builds turn on: without it this
/// is a constant `false` and the binary never reads the variable.
#[inline]
pub fn failure_injected(point: &str) -> bool {
    #[cfg(feature = "fault-injection")]
    {
        std::env::var("RCNI_INJECT_FAILURE").is_ok_and(|v| v == point)
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = point;
        false
    }
}
