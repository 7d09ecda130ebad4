//! The tuning configuration, merged from the config itself, `runtimeConfig`
//! (`mac` capability), `args.cni` and `CNI_ARGS` (`MAC=`) with the
//! reference's precedence: CNI_ARGS < runtimeConfig < args.cni.

use crate::sysctl::sysctl_path;
use cni_skel::CmdArgs;
use cni_spec::error::CniResult;
use cni_spec::Error;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::PathBuf;

pub const DEFAULT_DATA_DIR: &str = "/run/cni/tuning";

/// A validated MAC address and its canonical text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mac {
    pub text: String,
    pub bytes: Vec<u8>,
}

impl Mac {
    fn parse(s: &str) -> CniResult<Mac> {
        match kit::mac::parse_ethernet(s) {
            Some(bytes) => Ok(Mac {
                text: kit::mac::format(&bytes),
                bytes: bytes.to_vec(),
            }),
            _ => Err(Error::invalid_config(format!(
                "invalid MAC address {s:?}: expected six colon-separated hex octets"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TuningConf {
    pub data_dir: PathBuf,
    /// In config order, keys unique.
    pub sysctl: Vec<(String, String)>,
    pub mac: Option<Mac>,
    pub promisc: bool,
    /// 0 = leave alone (as the reference).
    pub mtu: u32,
    pub allmulti: Option<bool>,
    pub txqlen: Option<u32>,
}

/// A JSON object of strings, in order, refusing duplicate keys (the
/// reference refuses them too: which one would win is undefined).
fn sysctl_map<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of sysctl names to string values")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
            let mut out: Vec<(String, String)> = Vec::new();
            while let Some((k, v)) = m.next_entry::<String, String>()? {
                if out.iter().any(|(x, _)| *x == k) {
                    return Err(serde::de::Error::custom(format!(
                        "duplicated sysctl key {k:?} is not allowed"
                    )));
                }
                out.push((k, v));
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

#[derive(Deserialize, Default)]
struct RawRuntime {
    #[serde(default)]
    mac: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawCniArgs {
    #[serde(default, deserialize_with = "sysctl_map")]
    sysctl: Vec<(String, String)>,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    promisc: Option<bool>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    allmulti: Option<bool>,
    #[serde(rename = "txQLen", default)]
    txqlen: Option<u32>,
}

#[derive(Deserialize, Default)]
struct RawArgs {
    #[serde(default)]
    cni: Option<RawCniArgs>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "dataDir", default)]
    data_dir: Option<String>,
    #[serde(default, deserialize_with = "sysctl_map")]
    sysctl: Vec<(String, String)>,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    promisc: bool,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    allmulti: Option<bool>,
    #[serde(rename = "txQLen", default)]
    txqlen: Option<u32>,
    #[serde(rename = "runtimeConfig", default)]
    runtime_config: Option<RawRuntime>,
    #[serde(default)]
    args: Option<RawArgs>,
}

/// Only what DEL needs: where the backups are.
#[derive(Deserialize)]
struct RawDataDir {
    #[serde(rename = "dataDir", default)]
    data_dir: Option<String>,
}

/// The backup directory of a config, read leniently: DEL must still put
/// things back when a field DEL does not use (say, a bad `mac`) is invalid.
pub fn data_dir_of(args: &CmdArgs) -> PathBuf {
    let dir = serde_json::from_slice::<RawDataDir>(&args.stdin)
        .ok()
        .and_then(|r| r.data_dir)
        .filter(|d| !d.is_empty());
    PathBuf::from(dir.unwrap_or_else(|| DEFAULT_DATA_DIR.into()))
}

impl TuningConf {
    pub fn load(args: &CmdArgs) -> CniResult<TuningConf> {
        let raw: Raw = args.parse_conf()?;
        let cni_args = args.cni_args()?;
        cni_args.check_known(&["MAC"])?;
        Self::from_raw(raw, cni_args.get("MAC"))
    }

    fn from_raw(raw: Raw, env_mac: Option<&str>) -> CniResult<TuningConf> {
        let mut mac = raw.mac.filter(|m| !m.is_empty());
        if let Some(m) = env_mac.filter(|m| !m.is_empty()) {
            mac = Some(m.to_string());
        }
        if let Some(m) = raw
            .runtime_config
            .and_then(|r| r.mac)
            .filter(|m| !m.is_empty())
        {
            mac = Some(m);
        }
        let mut conf = TuningConf {
            data_dir: PathBuf::from(
                raw.data_dir
                    .filter(|d| !d.is_empty())
                    .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            ),
            sysctl: raw.sysctl,
            mac: None,
            promisc: raw.promisc,
            mtu: raw.mtu,
            allmulti: raw.allmulti,
            txqlen: raw.txqlen,
        };
        if let Some(a) = raw.args.and_then(|a| a.cni) {
            for (k, v) in a.sysctl {
                match conf.sysctl.iter_mut().find(|(x, _)| *x == k) {
                    Some(slot) => slot.1 = v,
                    None => conf.sysctl.push((k, v)),
                }
            }
            if let Some(m) = a.mac {
                mac = Some(m);
            }
            if let Some(p) = a.promisc {
                conf.promisc = p;
            }
            if let Some(m) = a.mtu {
                conf.mtu = m;
            }
            if a.allmulti.is_some() {
                conf.allmulti = a.allmulti;
            }
            if a.txqlen.is_some() {
                conf.txqlen = a.txqlen;
            }
        }
        conf.mac = mac.as_deref().map(Mac::parse).transpose()?;
        Ok(conf)
    }

    /// Every sysctl as its `/proc/sys/net/...` file and value, refusing
    /// keys outside `net` (code 7) before anything is touched.
    pub fn resolved_sysctls(&self, ifname: &str) -> CniResult<Vec<(PathBuf, String)>> {
        self.sysctl
            .iter()
            .map(|(k, v)| Ok((sysctl_path(k, ifname)?, v.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str, env_mac: Option<&str>) -> CniResult<TuningConf> {
        let raw: Raw =
            serde_json::from_str(json).map_err(|e| Error::invalid_config(e.to_string()))?;
        TuningConf::from_raw(raw, env_mac)
    }

    #[test]
    fn precedence_of_mac_sources() {
        let c = parse(r#"{"mac":"02:00:00:00:00:01"}"#, Some("02:00:00:00:00:02")).expect("c");
        assert_eq!(c.mac.expect("mac").text, "02:00:00:00:00:02");
        let c = parse(
            r#"{"mac":"02:00:00:00:00:01","runtimeConfig":{"mac":"02:00:00:00:00:03"}}"#,
            Some("02:00:00:00:00:02"),
        )
        .expect("c");
        assert_eq!(c.mac.expect("mac").text, "02:00:00:00:00:03");
        let c = parse(
            r#"{"runtimeConfig":{"mac":"02:00:00:00:00:03"},"args":{"cni":{"mac":"02:00:00:00:00:04"}}}"#,
            None,
        )
        .expect("c");
        assert_eq!(c.mac.expect("mac").text, "02:00:00:00:00:04");
        assert_eq!(
            parse(r#"{"mac":"zz:00:00:00:00:01"}"#, None)
                .expect_err("bad")
                .code,
            7
        );
    }

    #[test]
    fn args_override_and_extend() {
        let c = parse(
            r#"{"sysctl":{"net.core.somaxconn":"500"},"mtu":1400,
                "args":{"cni":{"sysctl":{"net.core.somaxconn":"600","net.ipv4.ip_forward":"1"},"mtu":1300,"promisc":true,"txQLen":0}}}"#,
            None,
        )
        .expect("c");
        assert_eq!(
            c.sysctl,
            vec![
                ("net.core.somaxconn".to_string(), "600".to_string()),
                ("net.ipv4.ip_forward".to_string(), "1".to_string())
            ]
        );
        assert_eq!(c.mtu, 1300);
        assert!(c.promisc);
        assert_eq!(c.txqlen, Some(0));
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn duplicate_sysctl_keys_are_refused() {
        let e = parse(
            r#"{"sysctl":{"net.core.somaxconn":"1","net.core.somaxconn":"2"}}"#,
            None,
        )
        .expect_err("dup");
        assert!(e.msg.contains("duplicated"), "{}", e.msg);
        assert!(parse(r#"{"sysctl":null}"#, None)
            .expect("null")
            .sysctl
            .is_empty());
    }
}
