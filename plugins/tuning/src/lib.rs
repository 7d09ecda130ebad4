//! `tuning`: a chained plugin that changes network sysctls and link
//! attributes (MAC, MTU, promiscuous and all-multicast mode, transmit queue
//! length) of the container interface, and puts the link attributes and
//! the interface's own sysctls back on DEL (namespace-wide sysctls stay:
//! the pod's other attachments share them).
//!
//! The original values are saved in `<dataDir>/<containerID>_<ifname>.json`
//! (`dataDir` defaults to `/run/cni/tuning`, the reference's location and
//! file format; the saved sysctl values are an addition the reference
//! ignores when it reads the file).

mod allowlist;
mod config;
#[doc(hidden)]
pub mod fuzzing;
mod sysctl;

use cni_skel::{CmdArgs, Plugin};
use cni_spec::error::CniResult;
use cni_spec::{Error, Result};
use config::TuningConf;
use kit::procsys::{Enter, ProcSys, SysctlOps};
use kit::routing::LinkAttrOps;
use kit::{os, ResultExt, Teardown};
use netlink::{Link, Socket};
use netns::NetNs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use sysctl::sysctl_path;

/// The tuning plugin as the CNI skeleton runs it: applies the sysctls and
/// link attributes on ADD, restores the saved ones on DEL.
pub struct Tuning;

/// What DEL puts back; only the attributes the ADD changed are present.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Backup {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    promisc: Option<bool>,
    #[serde(default, skip_serializing_if = "is_zero")]
    mtu: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allmulti: Option<bool>,
    #[serde(rename = "txQLen", default, skip_serializing_if = "Option::is_none")]
    txqlen: Option<u32>,
    /// Full `/proc/sys/net/...` path to the value before ADD.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    sysctl: BTreeMap<String, String>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Backup {
    fn is_empty(&self) -> bool {
        *self == Backup::default()
    }

    /// Keeps the values already saved (a repeated ADD must not overwrite
    /// the true originals with values it set itself).
    fn merge_older(mut self, older: Backup) -> Backup {
        if !older.mac.is_empty() {
            self.mac = older.mac;
        }
        if older.promisc.is_some() {
            self.promisc = older.promisc;
        }
        if older.mtu != 0 {
            self.mtu = older.mtu;
        }
        if older.allmulti.is_some() {
            self.allmulti = older.allmulti;
        }
        if older.txqlen.is_some() {
            self.txqlen = older.txqlen;
        }
        for (k, v) in older.sysctl {
            self.sysctl.insert(k, v);
        }
        self
    }
}

/// `<containerID>_<ifname>.json`, as the reference names it; a container id
/// too long for a file name (the spec sets no limit) is bounded to a prefix
/// plus a hash of the whole id.
fn backup_path(dir: &Path, container_id: &str, ifname: &str) -> PathBuf {
    // 255 bytes per name, minus "_", an interface name (≤ 15) and ".json".
    let id = cni_spec::ident::bounded(container_id, 255 - 1 - 15 - 5);
    dir.join(format!("{id}_{ifname}.json"))
}

fn read_backup(path: &Path) -> CniResult<Option<Backup>> {
    let bytes = os::read_if_exists(path)
        .with_context(|| format!("failed to read tuning backup {}", path.display()))?;
    Ok(bytes.and_then(|b| serde_json::from_slice(b.as_slice()).ok()))
}

fn write_backup(path: &Path, b: &Backup) -> CniResult<()> {
    if let Some(dir) = path.parent() {
        os::create_dir_all(dir, 0o700)
            .with_context(|| format!("failed to create tuning data dir {}", dir.display()))?;
    }
    let data = serde_json::to_vec_pretty(b).map_err(|e| Error::internal(e.to_string()))?;
    // The originals must survive a crash of the node: DEL puts them back.
    Ok(
        os::write_atomic(path, &data, 0o600, os::Durability::Durable)
            .with_context(|| format!("failed to save {}", path.display()))?,
    )
}

fn remove_backup(path: &Path) -> CniResult<()> {
    os::remove_file(path)
        .with_context(|| format!("failed to remove tuning backup {}", path.display()))?;
    Ok(())
}

fn container_link(sock: &dyn LinkAttrOps, ifname: &str) -> CniResult<Link> {
    sock.link_by_name(ifname)
        .map_err(kit::err)?
        .ok_or_else(|| Error::io(format!("interface {ifname:?} not found in the container")))
}

/// Runs `f` on a thread inside `ns` (for `/proc/sys/net`, which resolves
/// against the opening thread's namespace).
fn in_ns<T>(ns: &impl Enter, f: impl FnOnce() -> CniResult<T>) -> CniResult<T> {
    ns.run_in(f)
        .map_err(|e| Error::io(format!("failed to enter netns: {e}")))?
}

/// The link attributes that `conf` will change, as they are now.
fn snapshot_link(conf: &TuningConf, link: &Link) -> Backup {
    let mut b = Backup::default();
    if conf.mac.is_some() {
        b.mac = netlink::format_mac(&link.mac);
    }
    if conf.promisc {
        b.promisc = Some(link.promisc);
    }
    if conf.mtu != 0 {
        b.mtu = link.mtu;
    }
    if conf.allmulti.is_some() {
        b.allmulti = Some(link.allmulti);
    }
    if conf.txqlen.is_some() {
        b.txqlen = Some(link.txqlen);
    }
    b
}

/// Current values of the sysctls about to be written (inside the netns).
fn snapshot_sysctls(
    sys: &dyn SysctlOps,
    sysctls: &[(PathBuf, String)],
) -> CniResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (path, _) in sysctls {
        out.insert(path.display().to_string(), sys.read(path)?);
    }
    Ok(out)
}

fn write_sysctls(sys: &dyn SysctlOps, sysctls: &[(PathBuf, String)]) -> CniResult<()> {
    for (path, value) in sysctls {
        sys.write(path, value)?;
    }
    Ok(())
}

fn apply_link(sock: &dyn LinkAttrOps, conf: &TuningConf, link: &Link) -> CniResult<()> {
    if let Some(mac) = &conf.mac {
        sock.set_mac(link.index, &mac.bytes).map_err(kit::err)?;
    }
    if conf.promisc {
        sock.set_promisc(link.index, true).map_err(kit::err)?;
    }
    if conf.mtu != 0 {
        sock.set_mtu(link.index, conf.mtu).map_err(kit::err)?;
    }
    if let Some(on) = conf.allmulti {
        sock.set_allmulti(link.index, on).map_err(kit::err)?;
    }
    if let Some(q) = conf.txqlen {
        sock.set_txqlen(link.index, q).map_err(kit::err)?;
    }
    Ok(())
}

/// Puts the saved sysctls back (inside the netns); keeps going after
/// failures and collects them all.
fn restore_sysctls(sys: &dyn SysctlOps, saved: &BTreeMap<String, String>) -> Teardown {
    let mut td = Teardown::new();
    for (path, value) in saved {
        td.step(
            sys.write(Path::new(path), value)
                .context("failed to restore sysctl"),
        );
    }
    td
}

/// Puts the saved link attributes back; keeps going after failures.
fn restore_link(td: &mut Teardown, sock: &dyn LinkAttrOps, ifname: &str, b: &Backup) {
    let link = match sock.link_by_name(ifname) {
        Ok(Some(l)) => l,
        // The interface is gone: nothing left to put back on it.
        Ok(None) => return,
        Err(e) => return td.push(e),
    };
    if b.mtu != 0 {
        td.step(
            sock.set_mtu(link.index, b.mtu)
                .context("failed to restore MTU"),
        );
    }
    if !b.mac.is_empty() {
        match kit::mac::parse_ethernet(&b.mac) {
            Some(mac) => {
                td.step(
                    sock.set_mac(link.index, &mac)
                        .context("failed to restore MAC address"),
                );
            }
            None => td.push(kit::Error::Invalid(format!(
                "saved MAC address {:?} is malformed",
                b.mac
            ))),
        }
    }
    if let Some(on) = b.promisc {
        td.step(
            sock.set_promisc(link.index, on)
                .context("failed to restore promiscuous mode"),
        );
    }
    if let Some(on) = b.allmulti {
        td.step(
            sock.set_allmulti(link.index, on)
                .context("failed to restore all-multicast mode"),
        );
    }
    if let Some(q) = b.txqlen {
        td.step(
            sock.set_txqlen(link.index, q)
                .context("failed to restore transmit queue length"),
        );
    }
}

fn restore(
    ns: &impl Enter,
    sock: &dyn LinkAttrOps,
    sys: &dyn SysctlOps,
    ifname: &str,
    b: &Backup,
) -> kit::Result<()> {
    let mut td = match ns.run_in(|| restore_sysctls(sys, &b.sysctl)) {
        Ok(td) => td,
        Err(e) => {
            let mut td = Teardown::new();
            td.push(e);
            td
        }
    };
    restore_link(&mut td, sock, ifname, b);
    td.finish()
}

/// ADD's work in the sandbox: saves what `conf` changes (merged with an
/// older backup), writes the sysctls, then the link attributes; on failure
/// puts back what it changed and drops a backup it made.
fn tune(
    ns: &impl Enter,
    sock: &dyn LinkAttrOps,
    sys: &dyn SysctlOps,
    conf: &TuningConf,
    sysctls: &[(PathBuf, String)],
    path: &Path,
    ifname: &str,
) -> CniResult<()> {
    let link = container_link(sock, ifname)?;
    let mut saved = snapshot_link(conf, &link);
    saved.sysctl = in_ns(ns, || snapshot_sysctls(sys, sysctls))?;
    let older = read_backup(path)?;
    let had_older = older.is_some();
    if !saved.is_empty() {
        let full = match older {
            Some(older) => saved.clone().merge_older(older),
            None => saved.clone(),
        };
        write_backup(path, &full)?;
    }

    let applied =
        in_ns(ns, || write_sysctls(sys, sysctls)).and_then(|()| apply_link(sock, conf, &link));
    if let Err(e) = applied {
        // Undo what this call changed before reporting.
        let _ = restore(ns, sock, sys, ifname, &saved);
        if !saved.is_empty() && !had_older {
            let _ = remove_backup(path);
        }
        return Err(e);
    }
    Ok(())
}

/// Whether the sysctl file `path` belongs to interface `ifname`
/// (`…/conf/<ifname>/…`, `…/neigh/<ifname>/…`) rather than to the whole
/// namespace.
fn is_interface_sysctl(path: &str, ifname: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    parts
        .windows(2)
        .any(|w| matches!(w[0], "conf" | "neigh") && w[1] == ifname)
}

/// DEL's work in the sandbox: puts the saved link attributes and the
/// interface's own sysctls back (what cannot be is logged, not reported)
/// and removes the backup. Namespace-wide sysctls stay as they are, as the
/// reference leaves every sysctl: they are shared by the pod's other
/// attachments, whose tuning may have set the same key (and whose CHECK
/// looks for it).
fn untune(
    ns: &impl Enter,
    sock: &dyn LinkAttrOps,
    sys: &dyn SysctlOps,
    args: &CmdArgs,
    path: &Path,
    saved: &Backup,
) -> CniResult<()> {
    let mut own = saved.clone();
    own.sysctl
        .retain(|path, _| is_interface_sysctl(path, &args.ifname));
    if let Err(e) = restore(ns, sock, sys, &args.ifname, &own) {
        // As the reference: a value that cannot be put back (say, the
        // interface is gone) must not make every later DEL fail.
        cni_skel::log::warn(&format!(
            "tuning: could not restore everything for {}/{}: {e}",
            args.container_id, args.ifname
        ));
    }
    remove_backup(path)
}

/// CHECK's work in the sandbox: every sysctl and link attribute `conf`
/// sets has its value.
fn verify(
    ns: &impl Enter,
    sock: &dyn LinkAttrOps,
    sys: &dyn SysctlOps,
    conf: &TuningConf,
    sysctls: &[(PathBuf, String)],
    ifname: &str,
) -> CniResult<()> {
    in_ns(ns, || {
        for (path, want) in sysctls {
            let cur = sys.read(path)?;
            if !sysctl::same_value(&cur, want) {
                return Err(Error::internal(format!(
                    "tuning configured value of {} is {want:?}, current value is {cur:?}",
                    path.display()
                )));
            }
        }
        Ok(())
    })?;

    let link = sock
        .link_by_name(ifname)
        .map_err(kit::err)?
        .ok_or_else(|| Error::internal(format!("cannot find container link {}", ifname)))?;
    let mismatch = |what: &str, want: String, cur: String| {
        Error::internal(format!(
            "tuning configured {what} of {} is {want}, current value is {cur}",
            ifname
        ))
    };
    if let Some(mac) = &conf.mac {
        if link.mac != mac.bytes {
            return Err(mismatch(
                "MAC address",
                mac.text.clone(),
                netlink::format_mac(&link.mac),
            ));
        }
    }
    // As the reference: promiscuous mode must match the flag either way.
    if link.promisc != conf.promisc {
        return Err(mismatch(
            "promiscuous mode",
            conf.promisc.to_string(),
            link.promisc.to_string(),
        ));
    }
    if conf.mtu != 0 && link.mtu != conf.mtu {
        return Err(mismatch("MTU", conf.mtu.to_string(), link.mtu.to_string()));
    }
    if let Some(on) = conf.allmulti {
        if link.allmulti != on {
            return Err(mismatch(
                "all-multicast mode",
                on.to_string(),
                link.allmulti.to_string(),
            ));
        }
    }
    if let Some(q) = conf.txqlen {
        if link.txqlen != q {
            return Err(mismatch(
                "transmit queue length",
                q.to_string(),
                link.txqlen.to_string(),
            ));
        }
    }
    Ok(())
}

impl Plugin for Tuning {
    fn name(&self) -> &'static str {
        "tuning"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let conf = TuningConf::load(args)?;
        let sysctls = conf.resolved_sysctls(&args.ifname)?;
        // The node's allowlist, on ADD only (as the reference).
        if let Some(allow) = allowlist::load(Path::new(allowlist::ALLOWLIST_PATH))? {
            allowlist::check(&allow, conf.sysctl.iter().map(|(k, _)| k.as_str()))?;
        }
        let mut prev = args
            .conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("Required prevResult missing"))?;

        let ns = kit::open_ns(args.require_netns()?)?;
        let sock = Socket::route_in(&ns).map_err(kit::err)?;
        let path = backup_path(&conf.data_dir, &args.container_id, &args.ifname);
        tune(&ns, &sock, &ProcSys, &conf, &sysctls, &path, &args.ifname)?;

        if let Some(mac) = &conf.mac {
            for iface in prev.interfaces.iter_mut() {
                if iface.name == args.ifname {
                    iface.mac = mac.text.clone();
                }
            }
        }
        Ok(prev)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let data_dir = config::data_dir_of(args);
        let path = backup_path(&data_dir, &args.container_id, &args.ifname);
        let Some(saved) = read_backup(&path)? else {
            return Ok(());
        };
        let ns = match args.netns_path().map(NetNs::open) {
            // No sandbox named: a later DEL that names it can still put
            // the originals back (as the reference keeps the file).
            None => return Ok(()),
            // The sandbox is gone: nothing left to put back.
            Some(Err(e)) if e.is_gone() => return remove_backup(&path),
            Some(Err(e)) => {
                return Err(kit::err(
                    kit::Error::NetNs(e).context("failed to open netns"),
                ))
            }
            Some(Ok(ns)) => ns,
        };
        let sock = Socket::route_in(&ns).map_err(kit::err)?;
        untune(&ns, &sock, &ProcSys, args, &path, &saved)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let conf = TuningConf::load(args)?;
        let sysctls = conf.resolved_sysctls(&args.ifname)?;
        args.conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("Required prevResult missing"))?;
        let ns = kit::open_ns(args.require_netns()?)?;
        let sock = Socket::route_in(&ns).map_err(kit::err)?;

        verify(&ns, &sock, &ProcSys, &conf, &sysctls, &args.ifname)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_stay_within_name_max() {
        let dir = Path::new("/d");
        assert_eq!(
            backup_path(dir, "abc", "eth0"),
            Path::new("/d/abc_eth0.json")
        );
        let long = "a".repeat(10_000);
        let p = backup_path(dir, &long, "eth0123456789ab");
        let name = p.file_name().map(|n| n.len()).unwrap_or(0);
        assert!(name <= 255, "{name}");
        let other = format!("{}b", "a".repeat(9_999));
        assert_ne!(p, backup_path(dir, &other, "eth0123456789ab"));
    }

    #[test]
    fn backup_file_matches_reference_fields() {
        let b = Backup {
            mac: "02:00:00:00:00:01".into(),
            promisc: Some(false),
            mtu: 1500,
            allmulti: None,
            txqlen: Some(1000),
            sysctl: BTreeMap::new(),
        };
        let v: serde_json::Value = serde_json::to_value(&b).expect("ser");
        assert_eq!(
            v,
            serde_json::json!({"mac":"02:00:00:00:00:01","promisc":false,"mtu":1500,"txQLen":1000})
        );
        // A file written by the reference reads back.
        let r: Backup =
            serde_json::from_str(r#"{"mac":"aa:bb:cc:dd:ee:ff","mtu":9000}"#).expect("de");
        assert_eq!(r.mtu, 9000);
    }

    #[test]
    fn merge_keeps_the_originals() {
        let older = Backup {
            mtu: 1500,
            ..Default::default()
        };
        let mut newer = Backup {
            mtu: 9000,
            promisc: Some(true),
            ..Default::default()
        };
        newer.sysctl.insert("/proc/sys/net/a".into(), "2".into());
        let m = newer.merge_older(older);
        assert_eq!(m.mtu, 1500);
        assert_eq!(m.promisc, Some(true));
        assert_eq!(m.sysctl.len(), 1);
    }
}

/// The verb cores on the fakes (links, sysctls, namespace entry): order,
/// undo and error codes without root; the backup goes to a scratch
/// directory. tests/tuning.rs stays the ground truth.
#[cfg(test)]
mod fake_tests {
    use super::*;
    use kit::procsys::fake::{FakeSysctls, Here};
    use kit::routing::fake::FakeHost;

    use kit::ops::fake::errno::EPERM;
    const RP: &str = "/proc/sys/net/ipv4/conf/eth0/rp_filter";

    use testutil::TempDir as Scratch;

    fn scratch(tag: &str) -> Scratch {
        Scratch::new(&format!("tuning-{tag}"))
    }

    struct Pod {
        host: FakeHost,
        sys: FakeSysctls,
        eth0: u32,
        conf: TuningConf,
        sysctls: Vec<(PathBuf, String)>,
        path: PathBuf,
    }

    /// eth0 (MTU 1500) with rp_filter 1; the config sets rp_filter 0,
    /// promiscuous mode and MTU 1400.
    fn pod(dir: &Scratch) -> Pod {
        let conf = serde_json::json!({
            "cniVersion": "1.0.0", "name": "net", "type": "tuning",
            "dataDir": dir.path(),
            "sysctl": {"net.ipv4.conf.IFNAME.rp_filter": "0"},
            "promisc": true, "mtu": 1400,
            "prevResult": {"cniVersion": "1.0.0"}
        });
        let args = cni_skel::fuzzing::args(conf.to_string().as_bytes()).expect("args");
        let conf = TuningConf::load(&args).expect("conf");
        let host = FakeHost::new();
        let eth0 = host.add_link("eth0", "veth");
        Pod {
            host,
            sys: FakeSysctls::with(&[(RP, "1")]),
            eth0,
            sysctls: conf.resolved_sysctls("eth0").expect("sysctls"),
            path: backup_path(&conf.data_dir, "fuzz", "eth0"),
            conf,
        }
    }

    impl Pod {
        fn tune(&self) -> CniResult<()> {
            let p = self;
            tune(&Here, &p.host, &p.sys, &p.conf, &p.sysctls, &p.path, "eth0")
        }
        fn verify(&self) -> CniResult<()> {
            let p = self;
            verify(&Here, &p.host, &p.sys, &p.conf, &p.sysctls, "eth0")
        }
        fn untune(&self) -> CniResult<()> {
            let args =
                cni_skel::fuzzing::args(br#"{"cniVersion":"1.0.0","name":"net","type":"tuning"}"#)
                    .expect("args");
            let saved = read_backup(&self.path)?.unwrap_or_default();
            untune(&Here, &self.host, &self.sys, &args, &self.path, &saved)
        }
    }

    #[test]
    fn add_saves_the_originals_then_writes_the_sysctls_then_the_link_attributes() {
        let dir = scratch("order");
        let p = pod(&dir);
        p.tune().expect("add");
        assert_eq!(p.sys.plan.lines(), vec![format!("write {RP} = 0")]);
        let e = p.eth0;
        assert_eq!(
            p.host.lines(),
            vec![format!("promisc {e} true"), format!("mtu {e} 1400")]
        );
        let saved = read_backup(&p.path).expect("read").expect("saved");
        assert_eq!(saved.mtu, 1500);
        assert_eq!(saved.promisc, Some(false));
        assert_eq!(saved.sysctl.get(RP).map(String::as_str), Some("1"));
        p.verify().expect("check after add");
    }

    #[test]
    fn a_refused_mtu_fails_add_with_code_5_and_puts_everything_back() {
        let dir = scratch("undo");
        let p = pod(&dir);
        p.host.fail_next("mtu", EPERM);
        let e = p.tune().expect_err("refused");
        assert_eq!(e.code, 5, "{e}");
        assert_eq!(p.sys.get(RP).as_deref(), Some("1"));
        let link = p.host.link("eth0").expect("eth0");
        assert!(!link.promisc);
        assert_eq!(link.mtu, 1500);
        assert!(read_backup(&p.path).expect("read").is_none());
    }

    #[test]
    fn a_refused_sysctl_write_fails_add_with_code_5_before_any_link_change() {
        let dir = scratch("sysctl");
        let p = pod(&dir);
        p.sys.plan.fail_next("write", EPERM);
        let e = p.tune().expect_err("refused");
        assert_eq!(e.code, 5, "{e}");
        let e0 = p.eth0;
        // Only the undo touches the link: it puts back what it saved.
        assert_eq!(
            p.host.lines(),
            vec![format!("mtu {e0} 1500"), format!("promisc {e0} false")]
        );
        assert!(read_backup(&p.path).expect("read").is_none());
    }

    #[test]
    fn a_missing_container_interface_fails_add_with_code_5_and_saves_nothing() {
        let dir = scratch("nolink");
        let p = pod(&dir);
        p.host.links.borrow_mut().clear();
        let e = p.tune().expect_err("no eth0");
        assert_eq!(e.code, 5, "{e}");
        assert!(p.sys.plan.lines().is_empty());
        assert!(read_backup(&p.path).expect("read").is_none());
    }

    #[test]
    fn interface_sysctls_are_told_from_namespace_wide_ones() {
        assert!(is_interface_sysctl(RP, "eth0"));
        assert!(is_interface_sysctl(
            "/proc/sys/net/ipv6/neigh/eth0/retrans_time_ms",
            "eth0"
        ));
        assert!(!is_interface_sysctl(RP, "eth1"));
        assert!(!is_interface_sysctl("/proc/sys/net/core/somaxconn", "eth0"));
        assert!(!is_interface_sysctl(
            "/proc/sys/net/ipv4/conf/all/rp_filter",
            "eth0"
        ));
    }

    #[test]
    fn del_leaves_namespace_wide_sysctls_to_the_pods_other_attachments() {
        let dir = scratch("shared");
        let p = pod(&dir);
        p.tune().expect("add");
        const SOMAXCONN: &str = "/proc/sys/net/core/somaxconn";
        let mut saved = read_backup(&p.path).expect("read").expect("saved");
        saved.sysctl.insert(SOMAXCONN.into(), "4096".into());
        write_backup(&p.path, &saved).expect("write");
        p.sys
            .values
            .borrow_mut()
            .insert(SOMAXCONN.into(), "1000".into());
        p.untune().expect("del");
        assert_eq!(p.sys.get(RP).as_deref(), Some("1"));
        assert_eq!(p.sys.get(SOMAXCONN).as_deref(), Some("1000"));
        assert!(read_backup(&p.path).expect("read").is_none());
    }

    #[test]
    fn del_puts_the_originals_back_and_removes_the_backup() {
        let dir = scratch("del");
        let p = pod(&dir);
        p.tune().expect("add");
        p.untune().expect("del");
        assert_eq!(p.sys.get(RP).as_deref(), Some("1"));
        let link = p.host.link("eth0").expect("eth0");
        assert_eq!((link.mtu, link.promisc), (1500, false));
        assert!(read_backup(&p.path).expect("read").is_none());
    }

    #[test]
    fn del_with_interface_and_sysctl_gone_still_succeeds_and_again() {
        let dir = scratch("gone");
        let p = pod(&dir);
        p.tune().expect("add");
        p.host.links.borrow_mut().clear();
        p.sys.values.borrow_mut().clear();
        p.untune().expect("del");
        assert!(read_backup(&p.path).expect("read").is_none());
        p.untune().expect("del again");
    }

    #[test]
    fn check_of_values_not_set_fails_with_code_999() {
        let dir = scratch("check");
        let p = pod(&dir);
        let e = p.verify().expect_err("rp_filter still 1");
        assert_eq!(e.code, 999);
        assert!(e.msg.contains("rp_filter"), "{e}");
        p.sys.values.borrow_mut().insert(RP.into(), "0".into());
        let e = p.verify().expect_err("promisc off");
        assert_eq!(e.code, 999);
        assert!(e.msg.contains("promiscuous mode"), "{e}");
        p.host.links.borrow_mut().clear();
        let e = p.verify().expect_err("no eth0");
        assert_eq!(e.code, 999);
        assert!(e.msg.contains("cannot find container link"), "{e}");
    }
}
