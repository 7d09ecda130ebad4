//! Neighbour (ARP/NDP) entries and bridge/vxlan forwarding database entries.

use std::net::IpAddr;

use crate::error::Result;
use crate::link::{format_mac, gone_is_false};
use crate::msg::*;
use crate::socket::Socket;
use crate::Family;

pub(crate) const RTM_NEWNEIGH: u16 = 28;
pub(crate) const RTM_DELNEIGH: u16 = 29;
pub(crate) const RTM_GETNEIGH: u16 = 30;

/// Kernel constant `NDA_DST` (Linux UAPI headers).
pub const NDA_DST: u16 = 1;
/// Kernel constant `NDA_LLADDR` (Linux UAPI headers).
pub const NDA_LLADDR: u16 = 2;
/// Kernel constant `NDA_VLAN` (Linux UAPI headers).
pub const NDA_VLAN: u16 = 5;
/// Kernel constant `NDA_PORT` (Linux UAPI headers).
pub const NDA_PORT: u16 = 6;
/// Kernel constant `NDA_VNI` (Linux UAPI headers).
pub const NDA_VNI: u16 = 7;
/// Kernel constant `NDA_IFINDEX` (Linux UAPI headers).
pub const NDA_IFINDEX: u16 = 8;
/// Kernel constant `NDA_MASTER` (Linux UAPI headers).
pub const NDA_MASTER: u16 = 9;

/// Kernel constant `NUD_INCOMPLETE` (Linux UAPI headers).
pub const NUD_INCOMPLETE: u16 = 0x01;
/// Kernel constant `NUD_REACHABLE` (Linux UAPI headers).
pub const NUD_REACHABLE: u16 = 0x02;
/// Kernel constant `NUD_STALE` (Linux UAPI headers).
pub const NUD_STALE: u16 = 0x04;
/// Kernel constant `NUD_NOARP` (Linux UAPI headers).
pub const NUD_NOARP: u16 = 0x40;
/// Kernel constant `NUD_PERMANENT` (Linux UAPI headers).
pub const NUD_PERMANENT: u16 = 0x80;

/// Kernel constant `NTF_USE` (Linux UAPI headers).
pub const NTF_USE: u8 = 0x01;
/// Kernel constant `NTF_SELF` (Linux UAPI headers).
pub const NTF_SELF: u8 = 0x02;
/// Kernel constant `NTF_MASTER` (Linux UAPI headers).
pub const NTF_MASTER: u8 = 0x04;

/// `struct ndmsg`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct NdMsg {
    /// `family` of the `struct ndmsg` (Linux UAPI layout).
    pub family: u8,
    /// `pad1` of the `struct ndmsg` (Linux UAPI layout).
    pub pad1: u8,
    /// `pad2` of the `struct ndmsg` (Linux UAPI layout).
    pub pad2: u16,
    /// `index` of the `struct ndmsg` (Linux UAPI layout).
    pub index: i32,
    /// `state` of the `struct ndmsg` (Linux UAPI layout).
    pub state: u16,
    /// `flags` of the `struct ndmsg` (Linux UAPI layout).
    pub flags: u8,
    /// `ty` of the `struct ndmsg` (Linux UAPI layout).
    pub ty: u8,
}
// SAFETY: repr(C), integers only, no padding.
unsafe impl Pod for NdMsg {}

/// A neighbour or FDB entry as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// AF_INET, AF_INET6 or AF_BRIDGE.
    pub family: u8,
    /// Interface index.
    pub index: u32,
    /// NDA_DST: the neighbour's IP, or the vxlan remote of an FDB entry.
    pub ip: Option<IpAddr>,
    /// NDA_LLADDR: the hardware address.
    pub mac: Option<Vec<u8>>,
    /// NUD_* state bits.
    pub state: u16,
    /// NTF_* flags.
    pub flags: u8,
    /// NDA_MASTER: the bridge, for an FDB entry of a bridge port.
    pub master: Option<u32>,
    /// NDA_VLAN.
    pub vlan: Option<u16>,
    /// NDA_VNI.
    pub vni: Option<u32>,
}

/// A bridge or vxlan forwarding-database entry to add or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    /// The port (bridge port or vxlan device).
    pub index: u32,
    /// The MAC address.
    pub mac: Vec<u8>,
    /// vxlan remote (NDA_DST).
    pub dst: Option<IpAddr>,
    /// VXLAN network identifier (NDA_VNI).
    pub vni: Option<u32>,
    /// NTF_MASTER (the bridge's table) instead of NTF_SELF (the device's own).
    pub master: bool,
    /// Static entry (NUD_PERMANENT|NUD_NOARP, as `bridge fdb add` does)
    /// rather than a reachable (ageing) one.
    pub permanent: bool,
}

impl FdbEntry {
    /// A permanent NTF_SELF entry on `index`.
    pub fn new(index: u32, mac: &[u8]) -> FdbEntry {
        FdbEntry {
            index,
            mac: mac.to_vec(),
            dst: None,
            vni: None,
            master: false,
            permanent: true,
        }
    }
    /// Sets the vxlan remote.
    pub fn dst(mut self, ip: IpAddr) -> Self {
        self.dst = Some(ip);
        self
    }
    /// Puts the entry in the master's (bridge's) table.
    pub fn master(mut self) -> Self {
        self.master = true;
        self
    }

    fn encode(&self, ty: u16, flags: u16) -> MessageBuilder {
        let mut m = MessageBuilder::new(ty, flags);
        m.header(&NdMsg {
            family: libc::AF_BRIDGE as u8,
            index: self.index as i32,
            state: if self.permanent {
                NUD_PERMANENT | NUD_NOARP
            } else {
                NUD_REACHABLE
            },
            flags: if self.master { NTF_MASTER } else { NTF_SELF },
            ..Default::default()
        });
        m.attr(NDA_LLADDR, &self.mac);
        if let Some(ip) = self.dst {
            m.attr_ip(NDA_DST, ip);
        }
        if let Some(vni) = self.vni {
            m.attr_u32(NDA_VNI, vni);
        }
        m
    }

    fn describe(&self) -> String {
        match self.dst {
            Some(d) => format!(
                "fdb entry {} dst {d} on link #{}",
                format_mac(&self.mac),
                self.index
            ),
            None => format!(
                "fdb entry {} on link #{}",
                format_mac(&self.mac),
                self.index
            ),
        }
    }
}

pub(crate) fn parse_neigh(payload: &[u8]) -> Option<Neighbour> {
    let h = NdMsg::from_bytes(payload)?;
    let mut n = Neighbour {
        family: h.family,
        index: u32::try_from(h.index).ok()?,
        ip: None,
        mac: None,
        state: h.state,
        flags: h.flags,
        master: None,
        vlan: None,
        vni: None,
    };
    for a in Attrs::after_header(payload, std::mem::size_of::<NdMsg>()) {
        match a.ty {
            NDA_DST => n.ip = a.ip(),
            NDA_LLADDR => n.mac = Some(a.data.to_vec()),
            NDA_MASTER => n.master = a.u32(),
            NDA_VLAN => n.vlan = a.u16(),
            NDA_VNI => n.vni = a.u32(),
            _ => {}
        }
    }
    Some(n)
}

impl Socket {
    fn neigh_msg(
        &self,
        ty: u16,
        flags: u16,
        index: u32,
        ip: IpAddr,
        mac: Option<&[u8]>,
    ) -> MessageBuilder {
        let mut m = MessageBuilder::new(ty, flags);
        m.header(&NdMsg {
            family: Family::of(ip).raw(),
            index: index as i32,
            state: NUD_PERMANENT,
            ..Default::default()
        });
        m.attr_ip(NDA_DST, ip);
        if let Some(mac) = mac {
            m.attr(NDA_LLADDR, mac);
        }
        m
    }

    /// Adds a permanent neighbour `ip` → `mac` on link `index`.
    pub fn add_neighbour(&self, index: u32, ip: IpAddr, mac: &[u8]) -> Result<()> {
        let m = self.neigh_msg(
            RTM_NEWNEIGH,
            NLM_F_CREATE | NLM_F_EXCL,
            index,
            ip,
            Some(mac),
        );
        self.exec(&m, || {
            format!(
                "add neighbour {ip} lladdr {} on link #{index}",
                format_mac(mac)
            )
        })
        .map(drop)
    }

    /// Adds or replaces a permanent neighbour entry.
    pub fn replace_neighbour(&self, index: u32, ip: IpAddr, mac: &[u8]) -> Result<()> {
        let m = self.neigh_msg(
            RTM_NEWNEIGH,
            NLM_F_CREATE | NLM_F_REPLACE,
            index,
            ip,
            Some(mac),
        );
        self.exec(&m, || {
            format!(
                "replace neighbour {ip} lladdr {} on link #{index}",
                format_mac(mac)
            )
        })
        .map(drop)
    }

    /// Deletes a neighbour entry; `Ok(false)` if there was none.
    pub fn del_neighbour(&self, index: u32, ip: IpAddr) -> Result<bool> {
        let m = self.neigh_msg(RTM_DELNEIGH, 0, index, ip, None);
        gone_is_false(self.exec(&m, || format!("delete neighbour {ip} on link #{index}")))
    }

    /// IP neighbours of one link (or all) of `family` (All for both).
    pub fn neighbours(&self, index: Option<u32>, family: Family) -> Result<Vec<Neighbour>> {
        self.dump_neigh(family.raw(), index, "list neighbours")
            .map(|v| {
                v.into_iter()
                    .filter(|n| !matches!(n.ip, Some(ip) if !family.matches(ip)))
                    .collect()
            })
    }

    fn dump_neigh(&self, family: u8, index: Option<u32>, what: &str) -> Result<Vec<Neighbour>> {
        let mut m = MessageBuilder::new(RTM_GETNEIGH, 0);
        m.header(&NdMsg {
            family,
            ..Default::default()
        });
        self.dump_of(
            &m,
            || what.to_string(),
            RTM_NEWNEIGH,
            parse_neigh,
            |n| (n.family == family || family == 0) && !matches!(index, Some(i) if i != n.index),
        )
    }

    /// Adds an FDB entry (EEXIST if present).
    pub fn add_fdb(&self, e: &FdbEntry) -> Result<()> {
        let m = e.encode(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_EXCL);
        self.exec(&m, || format!("add {}", e.describe())).map(drop)
    }

    /// Adds or replaces an FDB entry.
    pub fn replace_fdb(&self, e: &FdbEntry) -> Result<()> {
        let m = e.encode(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE);
        self.exec(&m, || format!("replace {}", e.describe()))
            .map(drop)
    }

    /// Appends an entry for an existing MAC (vxlan: one more remote for the
    /// all-zero MAC, i.e. head-end replication).
    pub fn append_fdb(&self, e: &FdbEntry) -> Result<()> {
        let m = e.encode(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_APPEND);
        self.exec(&m, || format!("append {}", e.describe()))
            .map(drop)
    }

    /// Deletes an FDB entry; `Ok(false)` if there was none.
    pub fn del_fdb(&self, e: &FdbEntry) -> Result<bool> {
        let m = e.encode(RTM_DELNEIGH, 0);
        gone_is_false(self.exec(&m, || format!("delete {}", e.describe())))
    }

    /// FDB entries (AF_BRIDGE neighbours) of one port or all.
    pub fn fdb(&self, index: Option<u32>) -> Result<Vec<Neighbour>> {
        self.dump_neigh(libc::AF_BRIDGE as u8, index, "list fdb entries")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::Vxlan;
    use crate::testns::{veth_up, TestNs};

    const MAC1: [u8; 6] = [0x0a, 0x58, 0, 0, 0, 1];
    const MAC2: [u8; 6] = [0x0a, 0x58, 0, 0, 0, 2];

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn neighbours_v4_v6() {
        let t = TestNs::new("neigh");
        let s = t.sock();
        let (i, _) = veth_up(&s, "n0", "n1");
        s.add_neighbour(i, ip("10.1.2.9"), &MAC1).expect("add");
        let e = s.add_neighbour(i, ip("10.1.2.9"), &MAC1).expect_err("dup");
        assert!(e.is_exists(), "{e}");
        s.replace_neighbour(i, ip("10.1.2.9"), &MAC2)
            .expect("replace");
        s.add_neighbour(i, ip("2001:db8::9"), &MAC1)
            .expect("add v6");
        let v4 = s.neighbours(Some(i), Family::V4).expect("dump");
        let n = v4
            .iter()
            .find(|n| n.ip == Some(ip("10.1.2.9")))
            .expect("entry");
        assert_eq!(n.mac.as_deref(), Some(&MAC2[..]));
        assert!(n.state & NUD_PERMANENT != 0);
        assert!(v4.iter().all(|n| n.ip.is_some_and(|a| a.is_ipv4())));
        let v6 = s.neighbours(Some(i), Family::V6).expect("dump v6");
        assert!(v6.iter().any(|n| n.ip == Some(ip("2001:db8::9"))));
        let j = t.ip(&["-j", "neigh", "show", "dev", "n0"]);
        assert!(
            j.contains(
                "\"dst\":\"10.1.2.9\",\"lladdr\":\"0a:58:00:00:00:02\",\"state\":[\"PERMANENT\"]"
            ),
            "{j}"
        );
        assert!(s.del_neighbour(i, ip("10.1.2.9")).expect("del"));
        assert!(!s.del_neighbour(i, ip("10.1.2.9")).expect("del again"));
        assert!(s.del_neighbour(i, ip("2001:db8::9")).expect("del v6"));
    }

    #[test]
    fn fdb_vxlan_and_bridge() {
        let t = TestNs::new("fdb");
        let s = t.sock();
        let vx = Vxlan {
            vni: 7,
            port: Some(4789),
            learning: Some(false),
            ..Default::default()
        };
        s.create_vxlan("vx0", &vx, None).expect("vxlan");
        let vxi = s.link_by_name("vx0").expect("get").expect("vx0").index;
        let zero = [0u8; 6];
        s.add_fdb(&FdbEntry::new(vxi, &zero).dst(ip("10.0.0.2")))
            .expect("add fdb");
        s.append_fdb(&FdbEntry::new(vxi, &zero).dst(ip("10.0.0.3")))
            .expect("append fdb");
        s.add_fdb(&FdbEntry::new(vxi, &MAC1).dst(ip("10.0.0.4")))
            .expect("add mac fdb");
        let got = s.fdb(Some(vxi)).expect("dump fdb");
        for want in ["10.0.0.2", "10.0.0.3", "10.0.0.4"] {
            assert!(
                got.iter().any(|n| n.ip == Some(ip(want))),
                "{want} missing: {got:?}"
            );
        }
        let out = std::process::Command::new("bridge")
            .args(["-n", &t.name, "-j", "fdb", "show", "dev", "vx0"])
            .output()
            .expect("bridge");
        let j = String::from_utf8_lossy(&out.stdout);
        assert!(
            j.contains("\"mac\":\"0a:58:00:00:00:01\",\"dst\":\"10.0.0.4\""),
            "{j}"
        );
        assert!(s
            .del_fdb(&FdbEntry::new(vxi, &MAC1).dst(ip("10.0.0.4")))
            .expect("del"));
        assert!(!s
            .del_fdb(&FdbEntry::new(vxi, &MAC1).dst(ip("10.0.0.4")))
            .expect("del again"));

        // A static entry in a bridge's own table, learned on port v0.
        s.create_bridge("br0", None, None).expect("bridge");
        let br = s.link_by_name("br0").expect("get").expect("br0").index;
        let (v0, _) = veth_up(&s, "v0", "v1");
        s.set_master(v0, br).expect("master");
        s.add_fdb(&FdbEntry::new(v0, &MAC2).master())
            .expect("add master fdb");
        let got = s.fdb(Some(v0)).expect("dump");
        let e = got
            .iter()
            .find(|n| n.mac.as_deref() == Some(&MAC2[..]))
            .expect("entry on v0");
        assert_eq!(e.master, Some(br));
        assert!(s
            .del_fdb(&FdbEntry::new(v0, &MAC2).master())
            .expect("del master fdb"));
    }
}
