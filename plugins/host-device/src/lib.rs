//! `host-device`: moves an existing device of the node (selected by name,
//! MAC address, sysfs path or PCI address) into the container, renamed to
//! CNI_IFNAME, and hands it back on DEL under its original name. The
//! original name travels with the device in its alias (IFLA_IFALIAS), as the
//! reference keeps it, so DEL needs no state of its own.
//!
//! Renames happen inside a private, throwaway namespace: the device never
//! carries CNI_IFNAME on the node nor its node name in the pod, so neither
//! side can collide with an existing interface (and udev on the node never
//! sees a transient name).

#[doc(hidden)]
pub mod fuzzing;
use cni_skel::{CmdArgs, Command, Plugin};
use cni_spec::error::CniResult;
use cni_spec::{Error, ErrorCode, Interface, Result};
use kit::ops::LinkOps;
use kit::podlink;
use kit::Teardown;
use kit::Undo;
use netlink::{Link, Socket};
use netns::NetNs;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The host-device plugin as the CNI skeleton runs it: moves a node device
/// into the pod on ADD and returns it to the node on DEL.
pub struct HostDevice;

/// Where the kernel lists PCI devices (a constant, as in the reference).
const SYS_BUS_PCI: &str = "/sys/bus/pci/devices";
/// Where the kernel lists auxiliary-bus devices (e.g. the netdevs of a NIC's
/// sub-functions, `mlx5_core.sf.4`), as the reference since v1.7.
const SYS_BUS_AUXILIARY: &str = "/sys/bus/auxiliary/devices";
/// Drivers that bind a NIC to userspace (DPDK): no netdev exists then.
const USERSPACE_DRIVERS: &[&str] = &["vfio-pci", "uio_pci_generic", "igb_uio"];

#[derive(Debug, Default, Deserialize)]
struct Conf {
    #[serde(default, deserialize_with = "opt_string")]
    device: String,
    #[serde(default, deserialize_with = "opt_string")]
    hwaddr: String,
    #[serde(default, deserialize_with = "opt_string")]
    kernelpath: String,
    #[serde(rename = "pciBusID", default, deserialize_with = "opt_string")]
    pci_addr: String,
    #[serde(rename = "runtimeConfig", default)]
    runtime_config: Option<RuntimeConfig>,
}

#[derive(Debug, Default, Deserialize)]
struct RuntimeConfig {
    #[serde(rename = "deviceID", default, deserialize_with = "opt_string")]
    device_id: String,
}

/// A JSON `null` reads as "not set", as Go decodes it into a string field.
fn opt_string<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// How the device is found on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    Name(String),
    Mac(String),
    KernelPath(String),
    Pci(String),
    /// A device on the auxiliary bus (`runtimeConfig.deviceID` only).
    Aux(String),
}

struct Network {
    selector: Selector,
    /// The device is bound to a userspace driver: nothing to move.
    dpdk: bool,
    ipam: Option<String>,
}

fn load(args: &CmdArgs) -> CniResult<Network> {
    let c: Conf = args.parse_conf()?;
    let mut pci = c.pci_addr;
    let mut aux = String::new();
    // The runtime's standardized device ID wins over the static pciBusID:
    // a PCI address, or else an auxiliary-bus device.
    if let Some(id) = c.runtime_config.map(|r| r.device_id) {
        if !id.is_empty() {
            match device_id_bus(&id)? {
                Bus::Pci => pci = id,
                Bus::Auxiliary => {
                    pci.clear();
                    aux = id;
                }
            }
        }
    }
    let mut set = Vec::new();
    if !c.device.is_empty() {
        set.push(Selector::Name(c.device));
    }
    if !c.hwaddr.is_empty() {
        set.push(Selector::Mac(c.hwaddr));
    }
    if !c.kernelpath.is_empty() {
        set.push(Selector::KernelPath(c.kernelpath));
    }
    if !pci.is_empty() {
        if pci.contains('/') {
            return Err(Error::invalid_config(format!(
                "PCI address {pci:?} must not contain '/'"
            )));
        }
        set.push(Selector::Pci(pci));
    }
    if !aux.is_empty() {
        set.push(Selector::Aux(aux));
    }
    // Several selectors: the first in the reference's order wins (device,
    // hwaddr, kernelpath, PCI address), as a runtime passing `deviceID`
    // alongside a configured `device` expects.
    if set.is_empty() {
        return Err(Error::invalid_config(
            r#"specify either "device", "hwaddr", "kernelpath" or "pciBusID""#,
        ));
    }
    let selector = set.swap_remove(0);
    let ipam = podlink::ipam_type(args);
    Ok(Network {
        dpdk: dpdk_mode_field(&args.stdin)?,
        selector,
        ipam,
    })
}

/// Which bus a `runtimeConfig.deviceID` names.
enum Bus {
    Pci,
    Auxiliary,
}

/// Looks the device ID up on the PCI bus, then on the auxiliary bus, as the
/// reference; neither is an error (before anything is changed).
fn device_id_bus(id: &str) -> CniResult<Bus> {
    if id.contains('/') || id == "." || id == ".." {
        return Err(Error::invalid_config(format!(
            "runtime config DeviceID {id:?} must be a device name, not a path"
        )));
    }
    if kit::os::exists(&Path::new(SYS_BUS_PCI).join(id)) {
        return Ok(Bus::Pci);
    }
    if kit::os::exists(&Path::new(SYS_BUS_AUXILIARY).join(id)) {
        return Ok(Bus::Auxiliary);
    }
    Err(Error::io(format!(
        "runtime config DeviceID {id} not found or unsupported"
    )))
}

/// The reference's `DPDKMode` has no JSON tag: Go matches the key
/// case-insensitively (`dpdkMode`, `DPDKMode`, ...), the last one winning.
fn dpdk_mode_field(stdin: &[u8]) -> CniResult<bool> {
    let v: Value = serde_json::from_slice(stdin)
        .map_err(|e| Error::new(ErrorCode::Decoding, format!("failed to load netconf: {e}")))?;
    let mut on = false;
    if let Some(o) = v.as_object() {
        for (k, v) in o {
            if k.eq_ignore_ascii_case("dpdkmode") {
                on = match v {
                    Value::Null => false,
                    Value::Bool(b) => *b,
                    _ => {
                        return Err(Error::invalid_config(format!(
                            "invalid host-device configuration: {k}: expected a boolean"
                        )))
                    }
                };
            }
        }
    }
    Ok(on)
}

/// Whether the PCI device is bound to a userspace (DPDK) driver. An error
/// when the device or its driver link does not exist, as the reference.
fn has_dpdk_driver(pci: &str) -> std::result::Result<bool, String> {
    let link = Path::new(SYS_BUS_PCI).join(pci).join("driver");
    let driver = kit::os::canonicalize(&link).map_err(|e| format!("{}: {e}", link.display()))?;
    let name = driver
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(USERSPACE_DRIVERS.contains(&name.as_str()))
}

/// DPDK mode for this call: set by a userspace-bound PCI device, or by the
/// `dpdkMode` field when no PCI address is given (the reference's order).
fn dpdk_for(n: &Network) -> CniResult<bool> {
    match &n.selector {
        Selector::Pci(pci) => {
            has_dpdk_driver(pci).map_err(|e| Error::io(format!("error with host device: {e}")))
        }
        _ => Ok(n.dpdk),
    }
}

/// Directory entries sorted by name (Go's os.ReadDir order).
fn sorted_entries(dir: &Path) -> std::io::Result<Vec<String>> {
    kit::os::dir_names(dir)
}

fn not_found() -> Error {
    Error::io("failed to find host device: Link not found")
}

/// Finds the selected device among the node's links. sysfs lookups see the
/// namespace sysfs was mounted for, as with the reference.
fn find_device(host: &Socket, sel: &Selector) -> CniResult<Link> {
    let find_err = |m: String| Error::io(format!("failed to find host device: {m}"));
    // A selector that cannot name any device is a bad config (7).
    let bad_sel = |m: String| Error::invalid_config(format!("failed to find host device: {m}"));
    match sel {
        Selector::Name(name) => host.link_by_name(name).ok().flatten().ok_or_else(not_found),
        Selector::Mac(s) => {
            let mac = kit::mac::parse_hw(s)
                .ok_or_else(|| bad_sel(format!("failed to parse MAC address {s:?}")))?;
            let links = host
                .links()
                .map_err(|e| find_err(format!("failed to list node links: {e}")))?;
            links
                .into_iter()
                .find(|l| l.mac == mac)
                .ok_or_else(|| find_err("failed to find physical interface".into()))
        }
        Selector::KernelPath(kp) => {
            if !kp.starts_with("/sys/devices/") {
                return Err(bad_sel(format!(
                    "kernel device path {kp:?} must be absolute and begin with /sys/devices/"
                )));
            }
            let dir = Path::new(kp).join("net");
            let names = sorted_entries(&dir).map_err(|_| {
                find_err(format!(
                    "failed to find network devices at {:?}",
                    dir.display()
                ))
            })?;
            let links = host
                .links()
                .map_err(|e| find_err(format!("failed to list node links: {e}")))?;
            // The first entry that really is an interface of this namespace.
            names
                .iter()
                .find_map(|n| links.iter().find(|l| &l.name == n).cloned())
                .ok_or_else(|| find_err("failed to find physical interface".into()))
        }
        Selector::Pci(pci) => {
            let base = Path::new(SYS_BUS_PCI).join(pci);
            let mut dir = base.join("net");
            if !kit::os::exists_no_follow(&dir) {
                // virtio NICs keep their netdev one level down.
                dir = virtio_net_dir(&base)
                    .ok_or_else(|| find_err(format!("no net directory under pci device {pci}")))?;
            }
            let names = sorted_entries(&dir).map_err(|e| {
                find_err(format!(
                    "failed to read net directory {}: {e}",
                    dir.display()
                ))
            })?;
            let first = names.first().ok_or_else(|| {
                find_err(format!("failed to find device name for pci address {pci}"))
            })?;
            host.link_by_name(first)
                .ok()
                .flatten()
                .ok_or_else(not_found)
        }
        Selector::Aux(aux) => aux_device(host, aux),
    }
}

/// The netdev of an auxiliary-bus device: the first entry of its `net/`.
fn aux_device(host: &Socket, aux: &str) -> CniResult<Link> {
    let find_err = |m: String| Error::internal(format!("failed to find host device: {m}"));
    let dir = Path::new(SYS_BUS_AUXILIARY).join(aux).join("net");
    let names = sorted_entries(&dir)
        .map_err(|e| find_err(format!("failed to read directory {}: {e}", dir.display())))?;
    let first = names.first().ok_or_else(|| {
        find_err(format!(
            "failed to find network device in path {}",
            dir.display()
        ))
    })?;
    host.link_by_name(first)
        .ok()
        .flatten()
        .ok_or_else(not_found)
}

fn virtio_net_dir(base: &Path) -> Option<PathBuf> {
    sorted_entries(base)
        .ok()?
        .into_iter()
        .filter(|n| n.starts_with("virtio"))
        .map(|n| base.join(n).join("net"))
        .find(|p| kit::os::exists(p))
}

/// Moves `dev` from the node into `cns` as `ifname`, with its node name in
/// the alias, and brings it up. On failure the device is back on the node
/// under its name, up again if it was.
fn move_in(
    host: &Socket,
    node: &NetNs,
    (cns, cont): (&NetNs, &Socket),
    dev: &Link,
    ifname: &str,
) -> CniResult<Link> {
    let tmp = netns::create_anonymous().map_err(kit::err)?;
    let restore_up = |host: &Socket| {
        if dev.up {
            if let Ok(Some(l)) = host.link_by_name(&dev.name) {
                let _ = host.set_link_up(l.index);
            }
        }
    };
    // Leaving a namespace takes the device down.
    if let Err(e) = host.set_netns_fd(dev.index, tmp.fd()) {
        restore_up(host);
        return Err(Error::io(format!(
            "failed to move {:?} to a temporary netns: {e}",
            dev.name
        )));
    }
    let t = Socket::route_in(&tmp).map_err(kit::err)?;
    let staged = (|| -> std::result::Result<(), String> {
        // The index may change with the namespace: look it up by name.
        let l = t
            .link_by_name(&dev.name)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("failed to find {:?}", dev.name))?;
        t.set_alias(l.index, &dev.name)
            .map_err(|e| format!("failed to set alias to {:?}: {e}", dev.name))?;
        t.set_name(l.index, ifname)
            .map_err(|e| format!("failed to rename device {:?} to {ifname:?}: {e}", dev.name))?;
        t.set_netns_fd(l.index, cns.fd())
            .map_err(|e| format!("failed to move {ifname:?} to the container netns: {e}"))
    })();
    if let Err(e) = staged {
        // Still in the temporary namespace (unless the last move failed
        // half-way, which the kernel does not do): undo the renames.
        let stuck = [ifname, dev.name.as_str()]
            .into_iter()
            .find_map(|n| t.link_by_name(n).ok().flatten());
        if let Some(l) = stuck {
            let _ = t.set_name(l.index, &dev.name);
            let _ = t.set_alias(l.index, dev.alias.as_deref().unwrap_or(""));
            let _ = t.set_netns_fd(l.index, node.fd());
        }
        restore_up(host);
        return Err(Error::io(format!("failed to move link {e}")));
    }
    let up = (|| -> std::result::Result<Link, String> {
        let l = cont
            .link_by_name(ifname)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("failed to find {ifname:?}"))?;
        cont.set_link_up(l.index)
            .map_err(|e| format!("failed to set {ifname:?} up: {e}"))?;
        Ok(Link { up: true, ..l })
    })();
    match up {
        Ok(l) => Ok(l),
        Err(e) => {
            let _ = move_out((cns, cont), ifname, node);
            restore_up(host);
            Err(Error::io(format!("failed to move link {e}")))
        }
    }
}

/// In the temporary namespace (socket `t`): gives the device called `name`
/// back its original name from the alias, clears the alias and moves it to
/// `node`.
fn restore_from(t: &Socket, name: &str, node: &NetNs) -> std::result::Result<(), String> {
    let l = t
        .link_by_name(name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("failed to find {name:?}"))?;
    let orig = l
        .alias
        .clone()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| format!("{name:?} has no alias recording its original name"))?;
    if orig != name {
        t.set_name(l.index, &orig)
            .map_err(|e| format!("failed to restore {name:?} to original name {orig:?}: {e}"))?;
    }
    t.set_alias(l.index, "")
        .map_err(|e| format!("failed to clear the alias of {orig:?}: {e}"))?;
    t.set_netns_fd(l.index, node.fd()).map_err(|e| {
        // Keep the alias so that a retry still knows the name.
        let _ = t.set_alias(l.index, &orig);
        format!("failed to move {orig:?} to host netns: {e}")
    })
}

/// Hands the container's `ifname` back to `node` under its original name,
/// down (as the reference leaves it). `Ok(false)` when there is no such
/// interface. On failure the device stays in the container as `ifname`, up
/// again if it was, so that DEL can be retried.
fn move_out((cns, cont): (&NetNs, &Socket), ifname: &str, node: &NetNs) -> CniResult<bool> {
    let Some(dev) = cont.link_by_name(ifname).map_err(kit::err)? else {
        return Ok(false);
    };
    let Some(orig) = dev.alias.clone().filter(|a| !a.is_empty()) else {
        // Not a device this plugin moved in: leave it alone.
        return Err(Error::internal(format!(
            "failed to restore {ifname:?}: it has no alias recording its original name"
        )));
    };
    cont.set_link_down(dev.index)
        .map_err(|e| Error::io(format!("failed to set {ifname:?} down: {e}")))?;
    let back_up = |cont: &Socket| {
        if dev.up {
            if let Ok(Some(l)) = cont.link_by_name(ifname) {
                let _ = cont.set_link_up(l.index);
            }
        }
    };
    let tmp = match netns::create_anonymous() {
        Ok(t) => t,
        Err(e) => {
            back_up(cont);
            return Err(Error::io(e.to_string()));
        }
    };
    if let Err(e) = cont.set_netns_fd(dev.index, tmp.fd()) {
        back_up(cont);
        return Err(Error::io(format!(
            "failed to move {ifname:?} to a temporary netns: {e}"
        )));
    }
    let t = Socket::route_in(&tmp).map_err(kit::err)?;
    if let Err(e) = restore_from(&t, ifname, node) {
        // Back into the container under the name DEL looks for, whichever
        // name the failed step left it with.
        let stuck = [orig.as_str(), ifname]
            .into_iter()
            .find_map(|n| t.link_by_name(n).ok().flatten());
        if let Some(l) = stuck {
            let _ = t.set_alias(l.index, &orig);
            let _ = t.set_name(l.index, ifname);
            let _ = t.set_netns_fd(l.index, cns.fd());
        }
        back_up(cont);
        return Err(Error::io(e));
    }
    Ok(true)
}

impl Plugin for HostDevice {
    fn name(&self) -> &'static str {
        "host-device"
    }

    fn add(&self, args: &CmdArgs) -> CniResult<Result> {
        let n = load(args)?;
        let ns = podlink::Namespaces::open(args)?;
        let dpdk = dpdk_for(&n)?;
        let node = NetNs::current().map_err(kit::err)?;
        let mover = RealMover {
            ns: &ns,
            node: &node,
            sel: &n.selector,
            ifname: &args.ifname,
        };
        let ipam = podlink::delegated(n.ipam.as_deref(), args);
        let mut result = add_core(ns.call(args, &ipam), dpdk, &mover)?;
        if n.ipam.is_some() {
            if let Some(dns) = &args.conf.dns {
                result.dns = dns.clone();
            }
        }
        Ok(result)
    }

    fn del(&self, args: &CmdArgs) -> CniResult<()> {
        let n = load(args)?;
        let mut td = Teardown::new();
        // Released even without a namespace (containerd's second DEL, a pod
        // whose namespace is gone): the reference leaks the address then.
        if let Some(ipam) = n.ipam.as_deref() {
            td.step(cni_invoke::delegate(ipam, Command::Del, args, &args.stdin));
        }
        // A PCI device that vanished is no reason to keep the pod around.
        let dpdk = dpdk_for(&n).unwrap_or(false);
        if let (Some(path), false) = (args.netns_path(), dpdk) {
            match NetNs::open(path) {
                // Gone: the kernel already returned a physical device to the
                // initial namespace and destroyed a virtual one.
                Err(e) if e.is_gone() => {}
                Err(e) => td.push(kit::Error::UnknownContainer(e)),
                Ok(cns) => {
                    let node = NetNs::current().map_err(kit::err)?;
                    let cont = Socket::route_in(&cns).map_err(kit::err)?;
                    td.step(move_out((&cns, &cont), &args.ifname, &node));
                }
            }
        }
        Ok(td.finish()?)
    }

    fn check(&self, args: &CmdArgs) -> CniResult<()> {
        let n = load(args)?;
        let cns = kit::open_ns(args.require_netns()?)?;
        kit::pass_to_ipam(n.ipam.as_deref(), Command::Check, args)?;
        let prev = podlink::prev_required(args, "Required prevResult missing")?;
        if dpdk_for(&n)? {
            return Ok(());
        }
        let c_if = podlink::prev_iface(&prev, &args.ifname, &args.netns, || {
            format!(
                "Sandbox in prevResult doesn't match configured netns: {}",
                args.netns
            )
        })?;
        let cont = Socket::route_in(&cns).map_err(kit::err)?;
        check_core(&cont, &prev, c_if)
    }

    kit::ipam_gc_and_status!(|args| load(args).map(|n| n.ipam));
}

/// Moving the device between the node and the pod (through a temporary
/// namespace on the way out, so not netlink in one namespace alone).
trait Mover {
    /// The device the config selects, on the node.
    fn find(&self) -> CniResult<Link>;
    /// Moves `dev` into the pod under the pod's interface name; the link as
    /// the pod sees it.
    fn move_in(&self, dev: &Link) -> CniResult<Link>;
    /// Hands it back to the node (undo), up again if `dev` was.
    fn move_back(&self, dev: &Link) -> kit::Result<()>;
}

/// [`Mover`] on the real node.
struct RealMover<'a> {
    ns: &'a podlink::Namespaces,
    node: &'a NetNs,
    sel: &'a Selector,
    ifname: &'a str,
}

impl Mover for RealMover<'_> {
    fn find(&self) -> CniResult<Link> {
        find_device(&self.ns.host, self.sel)
    }

    fn move_in(&self, dev: &Link) -> CniResult<Link> {
        let pod = (&self.ns.cns, &self.ns.cont);
        move_in(&self.ns.host, self.node, pod, dev, self.ifname)
    }

    fn move_back(&self, dev: &Link) -> kit::Result<()> {
        let mut td = Teardown::new();
        td.step(move_out(
            (&self.ns.cns, &self.ns.cont),
            self.ifname,
            self.node,
        ));
        // The reference leaves a returned device down; a failed ADD puts it
        // back as it found it.
        if dev.up {
            let h = &self.ns.host;
            let up = h.link_by_name(&dev.name).and_then(|l| match l {
                Some(l) => h.set_link_up(l.index),
                None => Ok(()),
            });
            td.step(up);
        }
        td.finish()
    }
}

/// ADD on the seam: the device found and moved into the pod (unless DPDK
/// mode), then IPAM's addresses on it. Undone on failure (the device goes
/// back to the node).
fn add_core<'a>(cx: podlink::Call<'a>, dpdk: bool, mover: &'a dyn Mover) -> CniResult<Result> {
    let mut undo = Undo::new();
    let mut result = Result::new(cx.args.version());
    let mut cont_link = None;
    if !dpdk {
        let dev = mover.find()?;
        let l = mover.move_in(&dev)?;
        undo.push("move the device back to the node", move || {
            mover.move_back(&dev)
        });
        result.interfaces = vec![podlink::pod_interface(&l, &cx.args.netns)];
        cont_link = Some(l);
    }
    if let Some(ipam) = cx.ipam {
        // Every address belongs to the moved device.
        result.adopt_ipam(podlink::ipam_add(ipam, &mut undo)?, 0);
        if let Some(l) = &cont_link {
            kit::configure_iface(cx.at.cont, l, &result, &kit::IfaceOptions::default())
                .map_err(Error::from)?;
        }
    }
    if cni_skel::failure_injected("after-setup") {
        return Err(Error::internal("injected failure at after-setup"));
    }
    undo.commit();
    Ok(result)
}

/// CHECK on the seam: the moved device (`c_if` in `prev`) in the pod, its
/// MAC, addresses and routes.
fn check_core(cont: &dyn LinkOps, prev: &Result, c_if: &Interface) -> CniResult<()> {
    let l = podlink::pod_link(cont, &c_if.name, || {
        format!(
            "Container Interface name in prevResult: {} not found",
            c_if.name
        )
    })?;
    podlink::check_mac(&l, &c_if.mac, "Interface")?;
    podlink::check_ips_routes(cont, &l, prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpdk_mode_key_is_case_insensitive() {
        assert!(!dpdk_mode_field(br#"{"device":"x"}"#).expect("ok"));
        assert!(dpdk_mode_field(br#"{"dpdkMode":true}"#).expect("ok"));
        assert!(dpdk_mode_field(br#"{"DPDKMode":true}"#).expect("ok"));
        assert!(!dpdk_mode_field(br#"{"dpdkmode":null}"#).expect("ok"));
        let e = dpdk_mode_field(br#"{"dpdkMode":"yes"}"#).expect_err("wrong type");
        assert_eq!(e.code, cni_spec::ErrorCode::InvalidConfig as u32);
    }
}

#[cfg(test)]
mod fake_tests {
    //! The verb cores on the recording fakes, without root: a mover whose
    //! steps land in the fake's log, the device appearing in the pod's
    //! fake on `move_in` and leaving it on `move_back`.
    use super::*;
    use kit::ops::fake::{self, call, cmd_args, FakeIpam, RecordingNet};

    struct FakeMover<'a> {
        net: &'a RecordingNet,
        found: bool,
    }

    impl Mover for FakeMover<'_> {
        fn find(&self) -> CniResult<Link> {
            self.net.note("node find".into());
            match self.found {
                true => Ok(Link {
                    index: 2,
                    name: "ens5".into(),
                    up: true,
                    ..Default::default()
                }),
                false => Err(not_found()),
            }
        }
        fn move_in(&self, dev: &Link) -> CniResult<Link> {
            self.net.note(format!("node move_in {}", dev.name));
            let index = self.net.add_link(Link {
                name: "eth0".into(),
                alias: Some(dev.name.clone()),
                mac: vec![2, 0, 0, 0, 0, 5],
                up: true,
                ..Default::default()
            });
            self.net
                .link("eth0")
                .ok_or_else(|| Error::internal(format!("#{index} gone")))
        }
        fn move_back(&self, dev: &Link) -> kit::Result<()> {
            self.net.note(format!("node move_back {}", dev.name));
            self.net.remove("eth0");
            Ok(())
        }
    }

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"n","type":"host-device",
        "device":"ens5","ipam":{"type":"fake"}}"#;

    fn add(net: &RecordingNet, ipam: &FakeIpam, found: bool) -> CniResult<Result> {
        let args = cmd_args(CONF);
        let mover = FakeMover { net, found };
        add_core(call(net, &args, Some(ipam)), false, &mover)
    }

    #[test]
    fn add_moves_the_device_in_then_addresses_it() {
        let net = RecordingNet::new();
        let ipam = FakeIpam::v4("10.9.0.5/24", "10.9.0.1");
        let r = add(&net, &ipam, true).expect("ADD");
        let i = net.index_of("eth0");
        assert_eq!(
            net.lines(),
            vec![
                "node find".to_string(),
                "node move_in ens5".to_string(),
                format!("addr {i} 10.9.0.5/24"),
                format!("route 0.0.0.0/0 via 10.9.0.1 dev {i}"),
            ]
        );
        assert_eq!(r.interfaces[0].mac, "02:00:00:00:00:05");
    }

    #[test]
    fn a_refused_address_hands_the_device_back_and_releases_with_code_5() {
        let net = RecordingNet::new();
        let ipam = FakeIpam::v4("10.9.0.5/24", "10.9.0.1");
        net.fail_next("addr", fake::errno::EINVAL);
        let e = add(&net, &ipam, true).expect_err("refused");
        assert_eq!(e.code, 5, "{e:?}");
        fake::assert_all_undone(&net, &ipam, &[]);
        assert_eq!(
            net.lines().last().map(String::as_str),
            Some("node move_back ens5")
        );
    }

    #[test]
    fn a_device_not_found_is_code_5_with_nothing_moved_or_allocated() {
        let net = RecordingNet::new();
        let ipam = FakeIpam::v4("10.9.0.5/24", "10.9.0.1");
        let e = add(&net, &ipam, false).expect_err("not found");
        assert_eq!(e.code, 5, "{e:?}");
        assert_eq!(net.lines(), vec!["node find"]);
        assert!(ipam.calls().is_empty());
    }

    #[test]
    fn del_with_the_pods_namespace_already_gone_succeeds() {
        let mut args =
            cmd_args(r#"{"cniVersion":"1.0.0","name":"n","type":"host-device","device":"ens5"}"#);
        args.command = cni_skel::Command::Del;
        args.netns = "/run/netns/rcni-unit-test-no-such-netns".into();
        HostDevice.del(&args).expect("DEL of a gone pod");
    }

    #[test]
    fn check_of_a_missing_device_or_a_changed_mac_is_code_999() {
        let net = RecordingNet::new();
        let ipam = FakeIpam::v4("10.9.0.5/24", "10.9.0.1");
        let r = add(&net, &ipam, true).expect("ADD");
        let mut c_if = r.interfaces[0].clone();
        c_if.mac = "02:00:00:00:00:99".into();
        let e = check_core(&net, &r, &c_if).expect_err("MAC changed");
        assert_eq!(
            (e.code, e.msg.as_str()),
            (999, "Interface eth0 Mac 02:00:00:00:00:99 doesn't match container Mac: 02:00:00:00:00:05")
        );
        net.remove("eth0");
        let e = check_core(&net, &r, &r.interfaces[0]).expect_err("gone");
        assert_eq!(
            e.msg,
            "Container Interface name in prevResult: eth0 not found"
        );
    }
}
