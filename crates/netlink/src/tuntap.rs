//! tun/tap devices through `/dev/net/tun`.
//!
//! A tun/tap device is created in the namespace the `/dev/net/tun` file was
//! opened in, so [`create`] opens it on a thread inside the target netns.
//! Persistent devices outlive the returned files; everything else (MTU,
//! MAC, up, delete) goes through the rtnetlink [`Socket`](crate::Socket).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use netns::NetNs;

use crate::error::{Error, Result};
use crate::link::valid_ifname;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const TUNSETGROUP: libc::c_ulong = 0x4004_54ce;

const IFF_TUN: libc::c_short = 0x0001;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;

/// Layer 3 (tun) or layer 2 (tap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// A layer-3 device (IP packets).
    Tun,
    /// A layer-2 device (Ethernet frames).
    #[default]
    Tap,
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunTapSpec {
    /// Interface name; empty lets the kernel pick (`tap%d`).
    pub name: String,
    /// tun or tap.
    pub mode: Mode,
    /// Keep the device after the files close.
    pub persist: bool,
    /// Owning user ID.
    pub owner: Option<u32>,
    /// Owning group ID.
    pub group: Option<u32>,
    /// Open this many queues (IFF_MULTI_QUEUE when more than one).
    pub queues: usize,
    /// Set IFF_MULTI_QUEUE even with a single queue.
    pub multi_queue: bool,
    /// Prepend a virtio-net header (IFF_VNET_HDR).
    pub vnet_hdr: bool,
    /// No packet-information header (IFF_NO_PI); what VMs and most users want.
    pub no_pi: bool,
    /// Attach to an existing device of that name instead of failing with
    /// EEXIST (the driver itself would silently attach).
    pub attach_existing: bool,
}

impl TunTapSpec {
    /// A non-persistent device `name` of `mode`.
    pub fn new(name: &str, mode: Mode) -> Self {
        TunTapSpec {
            name: name.to_string(),
            mode,
            persist: true,
            owner: None,
            group: None,
            queues: 1,
            multi_queue: false,
            vnet_hdr: false,
            no_pi: true,
            attach_existing: false,
        }
    }
}

/// A created device and its open queue files.
#[derive(Debug)]
pub struct TunTap {
    /// The name the kernel gave it.
    pub name: String,
    /// The open queue files.
    pub files: Vec<File>,
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn ioctl_int(f: &File, req: libc::c_ulong, val: libc::c_ulong) -> io::Result<()> {
    // SAFETY: these TUN ioctls take an integer argument by value.
    if unsafe { libc::ioctl(f.as_raw_fd(), req as _, val) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn open_queue(spec: &TunTapSpec, name: &str) -> io::Result<(File, String)> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: match spec.mode {
            Mode::Tun => IFF_TUN,
            Mode::Tap => IFF_TAP,
        },
        _pad: [0; 22],
    };
    if spec.no_pi {
        req.flags |= IFF_NO_PI;
    }
    if spec.vnet_hdr {
        req.flags |= IFF_VNET_HDR;
    }
    if spec.multi_queue || spec.queues > 1 {
        req.flags |= IFF_MULTI_QUEUE;
    }
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq we own.
    if unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let end = req
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(req.name.len());
    let got = String::from_utf8_lossy(&req.name[..end]).into_owned();
    Ok((f, got))
}

fn create_here(spec: &TunTapSpec) -> io::Result<TunTap> {
    if !spec.name.is_empty() && !spec.attach_existing {
        let c = std::ffi::CString::new(spec.name.as_str())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: valid C string. Checked here because TUNSETIFF would
        // attach to an existing device rather than fail.
        if unsafe { libc::if_nametoindex(c.as_ptr()) } != 0 {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
    }
    let (first, name) = open_queue(spec, &spec.name)?;
    if let Some(uid) = spec.owner {
        ioctl_int(&first, TUNSETOWNER, libc::c_ulong::from(uid))?;
    }
    if let Some(gid) = spec.group {
        ioctl_int(&first, TUNSETGROUP, libc::c_ulong::from(gid))?;
    }
    if spec.persist {
        ioctl_int(&first, TUNSETPERSIST, 1)?;
    }
    let mut files = vec![first];
    for _ in 1..spec.queues {
        match open_queue(spec, &name) {
            Ok((f, _)) => files.push(f),
            Err(e) => {
                if spec.persist {
                    // Do not leave a half-made persistent device behind.
                    let _ = ioctl_int(&files[0], TUNSETPERSIST, 0);
                }
                return Err(e);
            }
        }
    }
    Ok(TunTap { name, files })
}

/// Creates a tun/tap device in `netns` (or the calling thread's namespace).
pub fn create(spec: &TunTapSpec, netns: Option<&NetNs>) -> Result<TunTap> {
    let kind = match spec.mode {
        Mode::Tun => "tun",
        Mode::Tap => "tap",
    };
    let mut op = format!("create {kind} {:?}", spec.name);
    if let Some(ns) = netns {
        op.push_str(&format!(" in netns {}", ns.path().display()));
    }
    if !spec.name.is_empty() && !valid_ifname(&spec.name) {
        return Err(Error::Invalid {
            op,
            detail: format!("bad interface name {:?}", spec.name),
        });
    }
    let res = match netns {
        Some(ns) => ns.run(|| create_here(spec))?,
        None => create_here(spec),
    };
    res.map_err(|source| Error::Io { op, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testns::TestNs;

    #[test]
    fn tap_and_tun() {
        let t = TestNs::new("tuntap");
        let s = t.sock();
        let mut spec = TunTapSpec::new("tap0", Mode::Tap);
        spec.owner = Some(1000);
        spec.group = Some(1000);
        let tap = create(&spec, Some(&t.ns)).expect("tap");
        assert_eq!(tap.name, "tap0");
        drop(tap); // persistent: the device stays
        let l = s.link_by_name("tap0").expect("get").expect("tap0 persists");
        assert_eq!(l.kind.as_deref(), Some("tun"));
        let j = t.ip(&["-d", "-j", "link", "show", "tap0"]);
        assert!(
            j.contains("\"type\":\"tap\"") && j.contains("\"user\":") && j.contains("\"group\":"),
            "{j}"
        );
        s.set_mtu(l.index, 1400).expect("mtu");
        s.set_link_up(l.index).expect("up");

        let mut mq = TunTapSpec::new("tunmq0", Mode::Tun);
        mq.queues = 2;
        mq.persist = false;
        let tun = create(&mq, Some(&t.ns)).expect("multi-queue tun");
        assert_eq!(tun.files.len(), 2);
        let j = t.ip(&["-d", "-j", "link", "show", "tunmq0"]);
        assert!(
            j.contains("\"type\":\"tun\"") && j.contains("multi_queue"),
            "{j}"
        );
        drop(tun); // not persistent: the device goes
                   // A parallel test forking a child can hold a copy of our queue fds
                   // until its exec closes them, so the device may outlive the drop by
                   // a moment.
        let gone = (0..200).any(|_| {
            let absent = s.link_by_name("tunmq0").expect("get").is_none();
            if !absent {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            absent
        });
        assert!(gone, "non-persistent tun survived its last fd");

        let e = create(&spec, Some(&t.ns)).expect_err("name taken by a persistent tap");
        assert!(e.is_exists(), "{e}");
        assert!(
            e.to_string()
                .starts_with("failed to create tap \"tap0\" in netns"),
            "{e}"
        );
        spec.attach_existing = true;
        assert_eq!(create(&spec, Some(&t.ns)).expect("attach").name, "tap0");
        assert!(s.delete_link_by_name("tap0").expect("delete"));
    }
}
