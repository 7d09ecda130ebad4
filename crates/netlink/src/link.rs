//! Links (network interfaces): query, create, modify, delete.

use std::net::IpAddr;
use std::os::fd::RawFd;

use crate::error::{Error, Result};
use crate::msg::*;
use crate::socket::Socket;

pub(crate) const RTM_NEWLINK: u16 = 16;
pub(crate) const RTM_DELLINK: u16 = 17;
pub(crate) const RTM_GETLINK: u16 = 18;
pub(crate) const RTM_SETLINK: u16 = 19;

/// Kernel constant `IFLA_ADDRESS` (Linux UAPI headers).
pub const IFLA_ADDRESS: u16 = 1;
/// Kernel constant `IFLA_BROADCAST` (Linux UAPI headers).
pub const IFLA_BROADCAST: u16 = 2;
/// Kernel constant `IFLA_IFNAME` (Linux UAPI headers).
pub const IFLA_IFNAME: u16 = 3;
/// Kernel constant `IFLA_MTU` (Linux UAPI headers).
pub const IFLA_MTU: u16 = 4;
/// Kernel constant `IFLA_LINK` (Linux UAPI headers).
pub const IFLA_LINK: u16 = 5;
/// Kernel constant `IFLA_MASTER` (Linux UAPI headers).
pub const IFLA_MASTER: u16 = 10;
/// Kernel constant `IFLA_PROTINFO` (Linux UAPI headers).
pub const IFLA_PROTINFO: u16 = 12;
/// Kernel constant `IFLA_TXQLEN` (Linux UAPI headers).
pub const IFLA_TXQLEN: u16 = 13;
/// Kernel constant `IFLA_NUM_TX_QUEUES` (Linux UAPI headers).
pub const IFLA_NUM_TX_QUEUES: u16 = 31;
/// Kernel constant `IFLA_NUM_RX_QUEUES` (Linux UAPI headers).
pub const IFLA_NUM_RX_QUEUES: u16 = 32;
/// Kernel constant `IFLA_OPERSTATE` (Linux UAPI headers).
pub const IFLA_OPERSTATE: u16 = 16;
/// Kernel constant `IFLA_LINKINFO` (Linux UAPI headers).
pub const IFLA_LINKINFO: u16 = 18;
/// Kernel constant `IFLA_NET_NS_PID` (Linux UAPI headers).
pub const IFLA_NET_NS_PID: u16 = 19;
/// Kernel constant `IFLA_IFALIAS` (Linux UAPI headers).
pub const IFLA_IFALIAS: u16 = 20;
/// Kernel constant `IFLA_NET_NS_FD` (Linux UAPI headers).
pub const IFLA_NET_NS_FD: u16 = 28;
/// Kernel constant `IFLA_EXT_MASK` (Linux UAPI headers).
pub const IFLA_EXT_MASK: u16 = 29;
/// IFLA_EXT_MASK bit: leave out the counters (IFLA_STATS*, IPv6 SNMP
/// stats summed over all CPUs); [`Link`] does not carry them.
pub const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
/// Kernel constant `IFLA_PROMISCUITY` (Linux UAPI headers).
pub const IFLA_PROMISCUITY: u16 = 30;
/// Kernel constant `IFLA_LINK_NETNSID` (Linux UAPI headers).
pub const IFLA_LINK_NETNSID: u16 = 37;
/// Kernel constant `IFLA_AF_SPEC` (Linux UAPI headers).
pub const IFLA_AF_SPEC: u16 = 26;
/// Inside IFLA_AF_SPEC / AF_INET: the IPv4 devconf, one u32 attribute per
/// `IPV4_DEVCONF_*` index.
pub const IFLA_INET_CONF: u16 = 1;
/// Kernel constant `IPV4_DEVCONF_ARP_NOTIFY` (Linux UAPI headers).
pub const IPV4_DEVCONF_ARP_NOTIFY: u16 = 22;

/// Kernel constant `IFLA_INFO_KIND` (Linux UAPI headers).
pub const IFLA_INFO_KIND: u16 = 1;
/// Kernel constant `IFLA_INFO_DATA` (Linux UAPI headers).
pub const IFLA_INFO_DATA: u16 = 2;
/// Kernel constant `IFLA_INFO_SLAVE_KIND` (Linux UAPI headers).
pub const IFLA_INFO_SLAVE_KIND: u16 = 4;
/// Kernel constant `IFLA_INFO_SLAVE_DATA` (Linux UAPI headers).
pub const IFLA_INFO_SLAVE_DATA: u16 = 5;

/// Kernel constant `VETH_INFO_PEER` (Linux UAPI headers).
pub const VETH_INFO_PEER: u16 = 1;
/// Kernel constant `IFLA_BR_VLAN_FILTERING` (Linux UAPI headers).
pub const IFLA_BR_VLAN_FILTERING: u16 = 7;
/// Kernel constant `IFLA_MACVLAN_MODE` (Linux UAPI headers).
pub const IFLA_MACVLAN_MODE: u16 = 1;
/// Kernel constant `IFLA_MACVLAN_BC_QUEUE_LEN` (Linux UAPI headers, since
/// Linux 5.11).
pub const IFLA_MACVLAN_BC_QUEUE_LEN: u16 = 7;
/// Kernel constant `IFLA_IPVLAN_MODE` (Linux UAPI headers).
pub const IFLA_IPVLAN_MODE: u16 = 1;
/// Kernel constant `IFLA_VLAN_ID` (Linux UAPI headers).
pub const IFLA_VLAN_ID: u16 = 1;
/// Kernel constant `IFLA_VRF_TABLE` (Linux UAPI headers).
pub const IFLA_VRF_TABLE: u16 = 1;

/// Kernel constant `IFLA_VXLAN_ID` (Linux UAPI headers).
pub const IFLA_VXLAN_ID: u16 = 1;
/// Kernel constant `IFLA_VXLAN_GROUP` (Linux UAPI headers).
pub const IFLA_VXLAN_GROUP: u16 = 2;
/// Kernel constant `IFLA_VXLAN_LINK` (Linux UAPI headers).
pub const IFLA_VXLAN_LINK: u16 = 3;
/// Kernel constant `IFLA_VXLAN_LOCAL` (Linux UAPI headers).
pub const IFLA_VXLAN_LOCAL: u16 = 4;
/// Kernel constant `IFLA_VXLAN_TTL` (Linux UAPI headers).
pub const IFLA_VXLAN_TTL: u16 = 5;
/// Kernel constant `IFLA_VXLAN_LEARNING` (Linux UAPI headers).
pub const IFLA_VXLAN_LEARNING: u16 = 7;
/// Kernel constant `IFLA_VXLAN_PORT` (Linux UAPI headers).
pub const IFLA_VXLAN_PORT: u16 = 15;
/// Kernel constant `IFLA_VXLAN_GROUP6` (Linux UAPI headers).
pub const IFLA_VXLAN_GROUP6: u16 = 16;
/// Kernel constant `IFLA_VXLAN_LOCAL6` (Linux UAPI headers).
pub const IFLA_VXLAN_LOCAL6: u16 = 17;

/// Kernel constant `IFLA_BRPORT_STATE` (Linux UAPI headers).
pub const IFLA_BRPORT_STATE: u16 = 1;
/// Kernel constant `IFLA_BRPORT_PRIORITY` (Linux UAPI headers).
pub const IFLA_BRPORT_PRIORITY: u16 = 2;
/// Kernel constant `IFLA_BRPORT_COST` (Linux UAPI headers).
pub const IFLA_BRPORT_COST: u16 = 3;
/// Kernel constant `IFLA_BRPORT_MODE` (Linux UAPI headers).
pub const IFLA_BRPORT_MODE: u16 = 4;
/// Kernel constant `IFLA_BRPORT_GUARD` (Linux UAPI headers).
pub const IFLA_BRPORT_GUARD: u16 = 5;
/// Kernel constant `IFLA_BRPORT_PROTECT` (Linux UAPI headers).
pub const IFLA_BRPORT_PROTECT: u16 = 6;
/// Kernel constant `IFLA_BRPORT_FAST_LEAVE` (Linux UAPI headers).
pub const IFLA_BRPORT_FAST_LEAVE: u16 = 7;
/// Kernel constant `IFLA_BRPORT_LEARNING` (Linux UAPI headers).
pub const IFLA_BRPORT_LEARNING: u16 = 8;
/// Kernel constant `IFLA_BRPORT_UNICAST_FLOOD` (Linux UAPI headers).
pub const IFLA_BRPORT_UNICAST_FLOOD: u16 = 9;
/// Kernel constant `IFLA_BRPORT_PROXYARP` (Linux UAPI headers).
pub const IFLA_BRPORT_PROXYARP: u16 = 10;
/// Kernel constant `IFLA_BRPORT_ISOLATED` (Linux UAPI headers).
pub const IFLA_BRPORT_ISOLATED: u16 = 33;

const IFF_UP: u32 = libc::IFF_UP as u32;
const IFF_PROMISC: u32 = libc::IFF_PROMISC as u32;
const IFF_ALLMULTI: u32 = libc::IFF_ALLMULTI as u32;
const IFF_LOWER_UP: u32 = 0x10000;

/// `struct ifinfomsg`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct IfInfoMsg {
    /// `family` of the `struct ifinfomsg` (Linux UAPI layout).
    pub family: u8,
    /// `pad` of the `struct ifinfomsg` (Linux UAPI layout).
    pub pad: u8,
    /// `ty` of the `struct ifinfomsg` (Linux UAPI layout).
    pub ty: u16,
    /// `index` of the `struct ifinfomsg` (Linux UAPI layout).
    pub index: i32,
    /// `flags` of the `struct ifinfomsg` (Linux UAPI layout).
    pub flags: u32,
    /// `change` of the `struct ifinfomsg` (Linux UAPI layout).
    pub change: u32,
}
// SAFETY: repr(C), integers only, no padding (1+1+2+4+4+4).
unsafe impl Pod for IfInfoMsg {}

/// RFC 2863 operational state (IFLA_OPERSTATE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OperState {
    /// IF_OPER_UNKNOWN (also what virtual devices without carrier logic report).
    #[default]
    Unknown,
    /// IF_OPER_NOTPRESENT.
    NotPresent,
    /// IF_OPER_DOWN.
    Down,
    /// IF_OPER_LOWERLAYERDOWN (for a veth: its peer is down).
    LowerLayerDown,
    /// IF_OPER_TESTING.
    Testing,
    /// IF_OPER_DORMANT.
    Dormant,
    /// IF_OPER_UP.
    Up,
}

impl From<u8> for OperState {
    fn from(v: u8) -> Self {
        match v {
            1 => OperState::NotPresent,
            2 => OperState::Down,
            3 => OperState::LowerLayerDown,
            4 => OperState::Testing,
            5 => OperState::Dormant,
            6 => OperState::Up,
            _ => OperState::Unknown,
        }
    }
}

/// Bridge-port settings as read back from the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgePortInfo {
    /// STP port state.
    pub state: u8,
    /// STP port priority.
    pub priority: u16,
    /// STP path cost.
    pub cost: u32,
    /// Hairpin mode: frames may leave by the port they came in.
    pub hairpin: bool,
    /// BPDU guard.
    pub guard: bool,
    /// Root block.
    pub root_block: bool,
    /// Multicast fast leave.
    pub fast_leave: bool,
    /// MAC learning.
    pub learning: bool,
    /// Flooding of unknown unicast.
    pub unicast_flood: bool,
    /// Proxy ARP.
    pub proxyarp: bool,
    /// Isolated port.
    pub isolated: bool,
}

/// A network interface as the kernel reports it.
#[derive(Debug, Clone, Default)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// IFLA_INFO_KIND: "veth", "bridge", "macvlan", ... (None for physical/lo).
    pub kind: Option<String>,
    /// IFLA_INFO_SLAVE_KIND: "bridge" when this is a bridge port.
    pub slave_kind: Option<String>,
    /// MTU.
    pub mtu: u32,
    /// Hardware address (6 bytes for Ethernet; empty for devices without one).
    pub mac: Vec<u8>,
    /// Broadcast hardware address.
    pub broadcast: Vec<u8>,
    /// Raw IFF_* flags.
    pub flags: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Carrier present (IFF_LOWER_UP).
    pub lower_up: bool,
    /// Promiscuous mode (IFF_PROMISC).
    pub promisc: bool,
    /// All-multicast mode (IFF_ALLMULTI).
    pub allmulti: bool,
    /// Master device (bridge, vrf) index.
    pub master: Option<u32>,
    /// IFLA_LINK: veth peer or macvlan/vlan parent index (possibly in another netns).
    pub link: Option<u32>,
    /// The netns id IFLA_LINK refers to, when it is another namespace.
    pub link_netnsid: Option<i32>,
    /// Transmit queue length.
    pub txqlen: u32,
    /// Operational state (IFLA_OPERSTATE).
    pub operstate: OperState,
    /// IFLA_IFALIAS, when set.
    pub alias: Option<String>,
    /// ARPHRD_* hardware type.
    pub hw_type: u16,
    /// Bridge port settings, for a bridge port.
    pub bridge_port: Option<BridgePortInfo>,
    /// Raw IFLA_INFO_DATA payload; see [`Link::info_attrs`].
    pub info_data: Vec<u8>,
}

impl Link {
    /// The kind-specific attributes (IFLA_INFO_DATA), e.g. IFLA_MACVLAN_MODE.
    pub fn info_attrs(&self) -> Attrs<'_> {
        Attrs::new(&self.info_data)
    }

    /// Attribute `ty` of IFLA_INFO_DATA, when the link is one of `kinds`
    /// (the same attribute number means different things per kind).
    fn kind_attr(&self, kinds: &[&str], ty: u16) -> Option<Attr<'_>> {
        let kind = self.kind.as_deref()?;
        if !kinds.contains(&kind) {
            return None;
        }
        self.info_attrs().get(ty)
    }

    /// The macvlan/macvtap mode, for such a link.
    pub fn macvlan_mode(&self) -> Option<MacvlanMode> {
        self.kind_attr(&["macvlan", "macvtap"], IFLA_MACVLAN_MODE)?
            .u32()
            .and_then(MacvlanMode::from_raw)
    }

    /// The broadcast queue length asked for on a macvlan/macvtap
    /// (IFLA_MACVLAN_BC_QUEUE_LEN). `None` when the kernel does not report
    /// it: kernels before 5.11 do not know the attribute.
    pub fn macvlan_bc_queue_len(&self) -> Option<u32> {
        self.kind_attr(&["macvlan", "macvtap"], IFLA_MACVLAN_BC_QUEUE_LEN)?
            .u32()
    }

    /// The routing table of a `vrf` link.
    pub fn vrf_table(&self) -> Option<u32> {
        self.kind_attr(&["vrf"], IFLA_VRF_TABLE)?.u32()
    }

    /// The 802.1Q id of a `vlan` link.
    pub fn vlan_id(&self) -> Option<u16> {
        self.kind_attr(&["vlan"], IFLA_VLAN_ID)?.u16()
    }

    /// The mode of an `ipvlan` link.
    pub fn ipvlan_mode(&self) -> Option<IpvlanMode> {
        match self.kind_attr(&["ipvlan"], IFLA_IPVLAN_MODE)?.u16()? {
            0 => Some(IpvlanMode::L2),
            1 => Some(IpvlanMode::L3),
            2 => Some(IpvlanMode::L3s),
            _ => None,
        }
    }

    /// The VXLAN network identifier, for a vxlan link.
    pub fn vxlan_vni(&self) -> Option<u32> {
        self.kind_attr(&["vxlan"], IFLA_VXLAN_ID)?.u32()
    }

    /// Whether VLAN filtering is on, for a bridge.
    pub fn bridge_vlan_filtering(&self) -> Option<bool> {
        self.kind_attr(&["bridge"], IFLA_BR_VLAN_FILTERING)?
            .u8()
            .map(|v| v != 0)
    }

    pub(crate) fn parse(payload: &[u8]) -> Option<Link> {
        let hdr = IfInfoMsg::from_bytes(payload)?;
        let mut l = Link {
            index: u32::try_from(hdr.index).ok()?,
            flags: hdr.flags,
            up: hdr.flags & IFF_UP != 0,
            lower_up: hdr.flags & IFF_LOWER_UP != 0,
            promisc: hdr.flags & IFF_PROMISC != 0,
            allmulti: hdr.flags & IFF_ALLMULTI != 0,
            hw_type: hdr.ty,
            ..Default::default()
        };
        for a in Attrs::after_header(payload, std::mem::size_of::<IfInfoMsg>()) {
            match a.ty {
                IFLA_IFNAME => l.name = a.string(),
                IFLA_MTU => l.mtu = a.u32().unwrap_or(0),
                IFLA_ADDRESS => l.mac = a.data.to_vec(),
                IFLA_BROADCAST => l.broadcast = a.data.to_vec(),
                IFLA_MASTER => l.master = a.u32().filter(|&m| m != 0),
                IFLA_LINK => l.link = a.u32().filter(|&m| m != 0),
                IFLA_LINK_NETNSID => l.link_netnsid = a.i32(),
                IFLA_TXQLEN => l.txqlen = a.u32().unwrap_or(0),
                IFLA_OPERSTATE => l.operstate = a.u8().map(OperState::from).unwrap_or_default(),
                IFLA_IFALIAS => l.alias = Some(a.string()).filter(|s| !s.is_empty()),
                IFLA_LINKINFO => l.parse_linkinfo(a.nested()),
                _ => {}
            }
        }
        Some(l)
    }

    fn parse_linkinfo(&mut self, attrs: Attrs<'_>) {
        let mut slave_data = None;
        for a in attrs {
            match a.ty {
                IFLA_INFO_KIND => self.kind = Some(a.string()),
                IFLA_INFO_DATA => self.info_data = a.data.to_vec(),
                IFLA_INFO_SLAVE_KIND => self.slave_kind = Some(a.string()),
                IFLA_INFO_SLAVE_DATA => slave_data = Some(a),
                _ => {}
            }
        }
        if let (Some("bridge"), Some(d)) = (self.slave_kind.as_deref(), slave_data) {
            let mut p = BridgePortInfo::default();
            for a in d.nested() {
                let b = a.u8().unwrap_or(0) != 0;
                match a.ty {
                    IFLA_BRPORT_STATE => p.state = a.u8().unwrap_or(0),
                    IFLA_BRPORT_PRIORITY => p.priority = a.u16().unwrap_or(0),
                    IFLA_BRPORT_COST => p.cost = a.u32().unwrap_or(0),
                    IFLA_BRPORT_MODE => p.hairpin = b,
                    IFLA_BRPORT_GUARD => p.guard = b,
                    IFLA_BRPORT_PROTECT => p.root_block = b,
                    IFLA_BRPORT_FAST_LEAVE => p.fast_leave = b,
                    IFLA_BRPORT_LEARNING => p.learning = b,
                    IFLA_BRPORT_UNICAST_FLOOD => p.unicast_flood = b,
                    IFLA_BRPORT_PROXYARP => p.proxyarp = b,
                    IFLA_BRPORT_ISOLATED => p.isolated = b,
                    _ => {}
                }
            }
            self.bridge_port = Some(p);
        }
    }
}

/// macvlan/macvtap modes (IFLA_MACVLAN_MODE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MacvlanMode {
    /// Private: no traffic between macvlans of one parent.
    Private,
    /// VEPA: traffic between macvlans goes through the external switch.
    Vepa,
    /// Bridge: macvlans of one parent talk directly.
    #[default]
    Bridge,
    /// Passthru: one macvlan takes over the parent.
    Passthru,
    /// Source: accept only frames from listed source MACs.
    Source,
}

impl MacvlanMode {
    /// The MACVLAN_MODE_* value.
    pub fn raw(self) -> u32 {
        match self {
            MacvlanMode::Private => 1,
            MacvlanMode::Vepa => 2,
            MacvlanMode::Bridge => 4,
            MacvlanMode::Passthru => 8,
            MacvlanMode::Source => 16,
        }
    }
    /// The mode for a MACVLAN_MODE_* value; `None` for unknown ones.
    pub fn from_raw(v: u32) -> Option<Self> {
        Some(match v {
            1 => MacvlanMode::Private,
            2 => MacvlanMode::Vepa,
            4 => MacvlanMode::Bridge,
            8 => MacvlanMode::Passthru,
            16 => MacvlanMode::Source,
            _ => return None,
        })
    }
}

/// ipvlan modes (IFLA_IPVLAN_MODE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpvlanMode {
    /// L2: the parent switches frames.
    #[default]
    L2,
    /// L3: the parent routes packets.
    L3,
    /// L3S: L3 with netfilter hooks.
    L3s,
}

/// VXLAN settings. Unset options keep the kernel defaults (note: the
/// kernel's default UDP port is 8472, not IANA's 4789).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vxlan {
    /// VXLAN network identifier.
    pub vni: u32,
    /// Local tunnel endpoint address.
    pub local: Option<IpAddr>,
    /// Unicast remote or multicast group.
    pub remote: Option<IpAddr>,
    /// UDP destination port (kernel default when `None`).
    pub port: Option<u16>,
    /// Underlying device index.
    pub underlying: Option<u32>,
    /// Learn remote addresses from received packets.
    pub learning: Option<bool>,
    /// TTL of the outer packets.
    pub ttl: Option<u8>,
}

/// The type-specific part of a new link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    /// A veth pair.
    Veth {
        /// Name of the peer end.
        peer_name: String,
        /// MAC address of the peer end.
        peer_mac: Option<Vec<u8>>,
        /// MTU of the peer end.
        peer_mtu: Option<u32>,
        /// Create the peer directly in this namespace.
        peer_netns_fd: Option<RawFd>,
    },
    /// A Linux bridge.
    Bridge {
        /// VLAN filtering on or off (kernel default when `None`).
        vlan_filtering: Option<bool>,
    },
    /// A macvlan on a parent.
    Macvlan(MacvlanMode),
    /// A macvtap on a parent.
    Macvtap(MacvlanMode),
    /// An ipvlan on a parent.
    Ipvlan(IpvlanMode),
    /// An 802.1Q VLAN on a parent.
    Vlan {
        /// VLAN ID.
        id: u16,
    },
    /// A VXLAN tunnel device.
    Vxlan(Vxlan),
    /// An intermediate functional block (for ingress shaping).
    Ifb,
    /// A dummy device.
    Dummy,
    /// A VRF device.
    Vrf {
        /// The routing table the VRF uses.
        table: u32,
    },
}

impl LinkKind {
    /// The IFLA_INFO_KIND string.
    pub fn name(&self) -> &'static str {
        match self {
            LinkKind::Veth { .. } => "veth",
            LinkKind::Bridge { .. } => "bridge",
            LinkKind::Macvlan(_) => "macvlan",
            LinkKind::Macvtap(_) => "macvtap",
            LinkKind::Ipvlan(_) => "ipvlan",
            LinkKind::Vlan { .. } => "vlan",
            LinkKind::Vxlan(_) => "vxlan",
            LinkKind::Ifb => "ifb",
            LinkKind::Dummy => "dummy",
            LinkKind::Vrf { .. } => "vrf",
        }
    }
}

/// Everything needed to create a link; see [`Socket::create_link`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    /// Name of the new link.
    pub name: String,
    /// Its type and type-specific settings.
    pub kind: LinkKind,
    /// MTU (kernel default when `None`).
    pub mtu: Option<u32>,
    /// MAC address (random when `None`).
    pub mac: Option<Vec<u8>>,
    /// Transmit queue length.
    pub txqlen: Option<u32>,
    /// Number of TX and RX queues (the kernel's default for veth is one per
    /// possible CPU, each with its own sysfs objects).
    pub queues: Option<u32>,
    /// IFLA_LINK: the parent device (macvlan, ipvlan, vlan), in the socket's netns.
    pub parent: Option<u32>,
    /// Create the link directly in this namespace.
    pub netns_fd: Option<RawFd>,
    /// Bring it up at creation.
    pub up: bool,
    /// Enslave it to this device (bridge, vrf) at creation (IFLA_MASTER).
    pub master: Option<u32>,
}

impl LinkSpec {
    /// A spec for a link `name` of `kind`, everything else default.
    pub fn new(name: impl Into<String>, kind: LinkKind) -> Self {
        LinkSpec {
            name: name.into(),
            kind,
            mtu: None,
            mac: None,
            txqlen: None,
            queues: None,
            parent: None,
            netns_fd: None,
            up: false,
            master: None,
        }
    }
    /// Sets the MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
    /// Sets the MAC address.
    pub fn mac(mut self, mac: &[u8]) -> Self {
        self.mac = Some(mac.to_vec());
        self
    }
    /// Sets the parent (lower) device.
    pub fn parent(mut self, index: u32) -> Self {
        self.parent = Some(index);
        self
    }
    /// Creates the link directly in the namespace of `fd`.
    pub fn netns_fd(mut self, fd: RawFd) -> Self {
        self.netns_fd = Some(fd);
        self
    }
    /// Creates the link administratively up.
    pub fn up(mut self) -> Self {
        self.up = true;
        self
    }
}

/// Bridge-port settings to change (IFLA_PROTINFO); `None` leaves a setting alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgePortOptions {
    /// Hairpin mode.
    pub hairpin: Option<bool>,
    /// MAC learning.
    pub learning: Option<bool>,
    /// Isolated port.
    pub isolated: Option<bool>,
    /// BPDU guard.
    pub guard: Option<bool>,
    /// Root block.
    pub root_block: Option<bool>,
    /// Flooding of unknown unicast.
    pub unicast_flood: Option<bool>,
    /// Multicast fast leave.
    pub fast_leave: Option<bool>,
    /// Proxy ARP.
    pub proxyarp: Option<bool>,
}

/// Kernel interface-name rules (dev_valid_name): 1..=15 bytes, no '/',
/// ':' or whitespace, not "." or "..".
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
}

/// `aa:bb:cc:dd:ee:ff` formatting.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn check_name(op: impl FnOnce() -> String, name: &str) -> Result<()> {
    if valid_ifname(name) {
        Ok(())
    } else {
        Err(Error::Invalid {
            op: op(),
            detail: format!("bad interface name {name:?}"),
        })
    }
}

impl Socket {
    /// The link named `name`, or `None` if there is none.
    pub fn link_by_name(&self, name: &str) -> Result<Option<Link>> {
        let what = || format!("get link {name:?}");
        check_name(|| self.op(what()), name)?;
        let mut m = MessageBuilder::new(RTM_GETLINK, 0);
        m.header(&IfInfoMsg::default())
            .attr_str(IFLA_IFNAME, name)
            .attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        self.get_link(&m, what)
    }

    /// The link with `index`, or `None` if there is none.
    pub fn link_by_index(&self, index: u32) -> Result<Option<Link>> {
        let mut m = MessageBuilder::new(RTM_GETLINK, 0);
        m.header(&IfInfoMsg {
            index: index as i32,
            ..Default::default()
        })
        .attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        self.get_link(&m, || format!("get link #{index}"))
    }

    fn get_link(&self, m: &MessageBuilder, what: impl FnOnce() -> String) -> Result<Option<Link>> {
        let what_s = what();
        match self.exec(m, || what_s.clone()) {
            Ok(msgs) => msgs
                .iter()
                .find(|m| m.ty == RTM_NEWLINK)
                .map(|m| {
                    Link::parse(&m.payload).ok_or_else(|| Error::Malformed {
                        op: self.op(&what_s),
                        detail: "short ifinfomsg".into(),
                    })
                })
                .transpose(),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link in the namespace.
    pub fn links(&self) -> Result<Vec<Link>> {
        let mut m = MessageBuilder::new(RTM_GETLINK, 0);
        m.header(&IfInfoMsg::default());
        self.dump_of(
            &m,
            || "list links".into(),
            RTM_NEWLINK,
            Link::parse,
            |_| true,
        )
    }

    /// Creates a link of any supported kind.
    pub fn create_link(&self, spec: &LinkSpec) -> Result<()> {
        self.create_link_flags(spec, 0).map(drop)
    }

    /// [`Socket::create_link`], returning the new link as the kernel echoes
    /// it (NLM_F_ECHO, honoured for RTM_NEWLINK since Linux 6.3; `None` on
    /// older kernels). The echo is taken before IFLA_MASTER is applied, so
    /// `master` is filled in from `spec`.
    pub fn create_link_echo(&self, spec: &LinkSpec) -> Result<Option<Link>> {
        let msgs = self.create_link_flags(spec, NLM_F_ECHO)?;
        let mut link = msgs
            .iter()
            .filter(|m| m.ty == RTM_NEWLINK)
            .filter_map(|m| Link::parse(&m.payload))
            .find(|l| l.name == spec.name && l.index != 0);
        if let Some(l) = &mut link {
            l.master = l.master.or(spec.master);
        }
        Ok(link)
    }

    fn create_link_flags(&self, spec: &LinkSpec, extra: u16) -> Result<Vec<OwnedMsg>> {
        let what = || format!("create {} {:?}", spec.kind.name(), spec.name);
        check_name(|| self.op(what()), &spec.name)?;
        if let LinkKind::Veth { peer_name, .. } = &spec.kind {
            check_name(|| self.op(what()), peer_name)?;
        }
        let mut m = MessageBuilder::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | extra);
        let up = if spec.up { IFF_UP } else { 0 };
        m.header(&IfInfoMsg {
            flags: up,
            change: up,
            ..Default::default()
        });
        m.attr_str(IFLA_IFNAME, &spec.name);
        m.attr_opt(IFLA_MTU, spec.mtu, MessageBuilder::attr_u32)
            .attr_opt(IFLA_ADDRESS, spec.mac.as_deref(), MessageBuilder::attr)
            .attr_opt(IFLA_TXQLEN, spec.txqlen, MessageBuilder::attr_u32)
            .attr_opt(IFLA_NUM_TX_QUEUES, spec.queues, MessageBuilder::attr_u32)
            .attr_opt(IFLA_NUM_RX_QUEUES, spec.queues, MessageBuilder::attr_u32)
            .attr_opt(IFLA_LINK, spec.parent, MessageBuilder::attr_u32)
            .attr_opt(
                IFLA_NET_NS_FD,
                spec.netns_fd.map(|fd| fd as u32),
                MessageBuilder::attr_u32,
            )
            .attr_opt(IFLA_MASTER, spec.master, MessageBuilder::attr_u32);
        let info = m.nest_raw(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, spec.kind.name());
        encode_info_data(&mut m, &spec.kind, spec.queues, spec.txqlen);
        m.end_nest(info);
        self.exec(&m, what)
    }

    /// Creates a veth pair; the peer goes straight into `peer_netns_fd` when
    /// given (no create-then-move window). `mtu` applies to both ends.
    pub fn create_veth(
        &self,
        name: &str,
        peer_name: &str,
        peer_netns_fd: Option<RawFd>,
        mtu: Option<u32>,
        mac: Option<&[u8]>,
        peer_mac: Option<&[u8]>,
    ) -> Result<()> {
        let spec = LinkSpec {
            mtu,
            mac: mac.map(<[u8]>::to_vec),
            ..LinkSpec::new(
                name,
                LinkKind::Veth {
                    peer_name: peer_name.to_string(),
                    peer_mac: peer_mac.map(<[u8]>::to_vec),
                    peer_mtu: mtu,
                    peer_netns_fd,
                },
            )
        };
        self.create_link(&spec)
    }

    /// Creates a bridge.
    pub fn create_bridge(&self, name: &str, mtu: Option<u32>, mac: Option<&[u8]>) -> Result<()> {
        let spec = LinkSpec {
            mtu,
            mac: mac.map(<[u8]>::to_vec),
            ..LinkSpec::new(
                name,
                LinkKind::Bridge {
                    vlan_filtering: None,
                },
            )
        };
        self.create_link(&spec)
    }

    /// macvlan (or macvtap with `tap`) on `parent`, optionally created
    /// directly in another namespace.
    pub fn create_macvlan(
        &self,
        name: &str,
        parent: u32,
        mode: MacvlanMode,
        mtu: Option<u32>,
        netns_fd: Option<RawFd>,
        tap: bool,
    ) -> Result<()> {
        let kind = if tap {
            LinkKind::Macvtap(mode)
        } else {
            LinkKind::Macvlan(mode)
        };
        self.create_on_parent(name, kind, parent, mtu, netns_fd)
    }

    /// A link of `kind` stacked on `parent` (macvlan, ipvlan, vlan),
    /// optionally created directly in another namespace.
    fn create_on_parent(
        &self,
        name: &str,
        kind: LinkKind,
        parent: u32,
        mtu: Option<u32>,
        netns_fd: Option<RawFd>,
    ) -> Result<()> {
        let spec = LinkSpec {
            mtu,
            netns_fd,
            parent: Some(parent),
            ..LinkSpec::new(name, kind)
        };
        self.create_link(&spec)
    }

    /// Creates an ipvlan on `parent`, optionally directly in another namespace.
    pub fn create_ipvlan(
        &self,
        name: &str,
        parent: u32,
        mode: IpvlanMode,
        mtu: Option<u32>,
        netns_fd: Option<RawFd>,
    ) -> Result<()> {
        self.create_on_parent(name, LinkKind::Ipvlan(mode), parent, mtu, netns_fd)
    }

    /// 802.1Q VLAN `id` on `parent`.
    pub fn create_vlan(
        &self,
        name: &str,
        parent: u32,
        id: u16,
        mtu: Option<u32>,
        netns_fd: Option<RawFd>,
    ) -> Result<()> {
        self.create_on_parent(name, LinkKind::Vlan { id }, parent, mtu, netns_fd)
    }

    /// Creates a VXLAN device.
    pub fn create_vxlan(&self, name: &str, vxlan: &Vxlan, mtu: Option<u32>) -> Result<()> {
        let spec = LinkSpec {
            mtu,
            ..LinkSpec::new(name, LinkKind::Vxlan(vxlan.clone()))
        };
        self.create_link(&spec)
    }

    /// Creates an IFB device.
    pub fn create_ifb(&self, name: &str) -> Result<()> {
        self.create_link(&LinkSpec::new(name, LinkKind::Ifb))
    }

    /// Creates a dummy device.
    pub fn create_dummy(&self, name: &str) -> Result<()> {
        self.create_link(&LinkSpec::new(name, LinkKind::Dummy))
    }

    /// Creates a VRF device bound to `table`.
    pub fn create_vrf(&self, name: &str, table: u32) -> Result<()> {
        self.create_link(&LinkSpec::new(name, LinkKind::Vrf { table }))
    }

    /// Deletes a link; `Ok(false)` if it was already gone.
    pub fn delete_link(&self, index: u32) -> Result<bool> {
        let mut m = MessageBuilder::new(RTM_DELLINK, 0);
        m.header(&IfInfoMsg {
            index: index as i32,
            ..Default::default()
        });
        gone_is_false(self.exec(&m, || format!("delete link #{index}")))
    }

    /// Deletes a link by name; `Ok(false)` if it was already gone.
    pub fn delete_link_by_name(&self, name: &str) -> Result<bool> {
        let what = || format!("delete link {name:?}");
        check_name(|| self.op(what()), name)?;
        let mut m = MessageBuilder::new(RTM_DELLINK, 0);
        m.header(&IfInfoMsg::default()).attr_str(IFLA_IFNAME, name);
        gone_is_false(self.exec(&m, what))
    }

    /// One RTM_SETLINK on `index` with flag changes and extra attributes.
    fn set_link(
        &self,
        index: u32,
        what: impl FnOnce() -> String,
        flags: u32,
        change: u32,
        attrs: impl FnOnce(&mut MessageBuilder),
    ) -> Result<()> {
        let mut m = MessageBuilder::new(RTM_SETLINK, 0);
        m.header(&IfInfoMsg {
            index: index as i32,
            flags,
            change,
            ..Default::default()
        });
        attrs(&mut m);
        self.exec(&m, what).map(drop)
    }

    /// RTM_SETLINK turning interface flag `flag` of link `index` on or off.
    fn set_link_flag(
        &self,
        index: u32,
        what: impl FnOnce() -> String,
        flag: u32,
        on: bool,
    ) -> Result<()> {
        self.set_link(index, what, if on { flag } else { 0 }, flag, |_| {})
    }

    /// RTM_SETLINK of one u32 attribute `ty` of link `index`.
    fn set_link_u32(
        &self,
        index: u32,
        what: impl FnOnce() -> String,
        ty: u16,
        value: u32,
    ) -> Result<()> {
        self.set_link(index, what, 0, 0, |m| {
            m.attr_u32(ty, value);
        })
    }

    /// Sets link `index` administratively up.
    pub fn set_link_up(&self, index: u32) -> Result<()> {
        self.set_link_flag(index, || format!("set link #{index} up"), IFF_UP, true)
    }

    /// Sets IPv4 devconf values (`IPV4_DEVCONF_*` index, value) of link
    /// `index` (like writing `net/ipv4/conf/<dev>/*`, without /proc/sys)
    /// and, with `up`, brings it up in the same RTM_SETLINK. The kernel
    /// applies the flags first, then the devconf.
    pub fn set_link_ipv4_conf(&self, index: u32, up: bool, conf: &[(u16, u32)]) -> Result<()> {
        let f = if up { IFF_UP } else { 0 };
        self.set_link(
            index,
            || format!("set ipv4 conf {conf:?} (up: {up}) on link #{index}"),
            f,
            f,
            |m| {
                m.nested(IFLA_AF_SPEC, |m| {
                    m.nested(libc::AF_INET as u16, |m| {
                        m.nested(IFLA_INET_CONF, |m| {
                            for &(ty, v) in conf {
                                m.attr_u32(ty, v);
                            }
                        });
                    });
                });
            },
        )
    }

    /// Sets link `index` administratively down.
    pub fn set_link_down(&self, index: u32) -> Result<()> {
        self.set_link_flag(index, || format!("set link #{index} down"), IFF_UP, false)
    }

    /// Turns promiscuous mode on or off.
    pub fn set_promisc(&self, index: u32, on: bool) -> Result<()> {
        self.set_link_flag(
            index,
            || format!("set promisc {on} on link #{index}"),
            IFF_PROMISC,
            on,
        )
    }

    /// Turns all-multicast mode on or off.
    pub fn set_allmulti(&self, index: u32, on: bool) -> Result<()> {
        self.set_link_flag(
            index,
            || format!("set allmulti {on} on link #{index}"),
            IFF_ALLMULTI,
            on,
        )
    }

    /// Sets the MTU.
    pub fn set_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        self.set_link_u32(
            index,
            || format!("set mtu {mtu} on link #{index}"),
            IFLA_MTU,
            mtu,
        )
    }

    /// Sets the MAC address.
    pub fn set_mac(&self, index: u32, mac: &[u8]) -> Result<()> {
        self.set_link(
            index,
            || format!("set mac {} on link #{index}", format_mac(mac)),
            0,
            0,
            |m| {
                m.attr(IFLA_ADDRESS, mac);
            },
        )
    }

    /// Renames a link (the kernel wants it down, EBUSY otherwise).
    pub fn set_name(&self, index: u32, name: &str) -> Result<()> {
        let what = || format!("rename link #{index} to {name:?}");
        check_name(|| self.op(what()), name)?;
        self.set_link(index, what, 0, 0, |m| {
            m.attr_str(IFLA_IFNAME, name);
        })
    }

    /// Sets the transmit queue length.
    pub fn set_txqlen(&self, index: u32, qlen: u32) -> Result<()> {
        self.set_link_u32(
            index,
            || format!("set txqlen {qlen} on link #{index}"),
            IFLA_TXQLEN,
            qlen,
        )
    }

    /// Enslaves `index` to `master` (bridge, vrf).
    pub fn set_master(&self, index: u32, master: u32) -> Result<()> {
        self.set_link_u32(
            index,
            || format!("set master #{master} on link #{index}"),
            IFLA_MASTER,
            master,
        )
    }

    /// Detaches the link from its master (bridge, VRF).
    pub fn set_nomaster(&self, index: u32) -> Result<()> {
        self.set_link_u32(
            index,
            || format!("release link #{index} from its master"),
            IFLA_MASTER,
            0,
        )
    }

    /// Moves a link into the namespace behind `netns_fd`.
    pub fn set_netns_fd(&self, index: u32, netns_fd: RawFd) -> Result<()> {
        self.set_link_u32(
            index,
            || format!("move link #{index} to another netns"),
            IFLA_NET_NS_FD,
            netns_fd as u32,
        )
    }

    /// Changes bridge-port settings of a port (hairpin, isolation, ...).
    /// IFLA_PROTINFO must carry NLA_F_NESTED, otherwise the bridge reads it
    /// as the old single-byte port state.
    pub fn set_bridge_port(&self, index: u32, opts: &BridgePortOptions) -> Result<()> {
        let mut m = MessageBuilder::new(RTM_SETLINK, 0);
        m.header(&IfInfoMsg {
            family: libc::AF_BRIDGE as u8,
            index: index as i32,
            ..Default::default()
        });
        m.nested(IFLA_PROTINFO, |m| {
            let items = [
                (IFLA_BRPORT_MODE, opts.hairpin),
                (IFLA_BRPORT_LEARNING, opts.learning),
                (IFLA_BRPORT_ISOLATED, opts.isolated),
                (IFLA_BRPORT_GUARD, opts.guard),
                (IFLA_BRPORT_PROTECT, opts.root_block),
                (IFLA_BRPORT_UNICAST_FLOOD, opts.unicast_flood),
                (IFLA_BRPORT_FAST_LEAVE, opts.fast_leave),
                (IFLA_BRPORT_PROXYARP, opts.proxyarp),
            ];
            for (ty, v) in items {
                if let Some(v) = v {
                    m.attr_u8(ty, v as u8);
                }
            }
        });
        self.exec(&m, || format!("set bridge port options on link #{index}"))
            .map(drop)
    }

    /// Shortcut for the bridge plugin's `hairpinMode`.
    pub fn set_hairpin(&self, index: u32, on: bool) -> Result<()> {
        self.set_bridge_port(
            index,
            &BridgePortOptions {
                hairpin: Some(on),
                ..Default::default()
            },
        )
    }

    /// Sets the broadcast queue length of a macvlan (IFLA_MACVLAN_BC_QUEUE_LEN).
    /// Kernels before 5.11 ignore the attribute without an error: read the
    /// link back ([`Link::macvlan_bc_queue_len`]) to know it took.
    pub fn set_macvlan_bc_queue_len(&self, index: u32, len: u32) -> Result<()> {
        let mut m = MessageBuilder::new(RTM_NEWLINK, 0);
        m.header(&IfInfoMsg {
            index: index as i32,
            ..Default::default()
        });
        let info = m.nest_raw(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "macvlan");
        let data = m.nest_raw(IFLA_INFO_DATA);
        m.attr_u32(IFLA_MACVLAN_BC_QUEUE_LEN, len);
        m.end_nest(data);
        m.end_nest(info);
        self.exec(&m, || format!("set bcqueuelen {len} on macvlan #{index}"))
            .map(drop)
    }

    /// Turns VLAN filtering on a bridge on or off; returns the kernel's
    /// error (EOPNOTSUPP) when it was built without it.
    pub fn set_bridge_vlan_filtering(&self, index: u32, on: bool) -> Result<()> {
        let mut m = MessageBuilder::new(RTM_NEWLINK, 0);
        m.header(&IfInfoMsg {
            index: index as i32,
            ..Default::default()
        });
        let info = m.nest_raw(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "bridge");
        let data = m.nest_raw(IFLA_INFO_DATA);
        m.attr_u8(IFLA_BR_VLAN_FILTERING, on as u8);
        m.end_nest(data);
        m.end_nest(info);
        self.exec(&m, || format!("set vlan_filtering {on} on bridge #{index}"))
            .map(drop)
    }
}

fn encode_info_data(
    m: &mut MessageBuilder,
    kind: &LinkKind,
    queues: Option<u32>,
    txqlen: Option<u32>,
) {
    match kind {
        LinkKind::Veth {
            peer_name,
            peer_mac,
            peer_mtu,
            peer_netns_fd,
        } => {
            let data = m.nest_raw(IFLA_INFO_DATA);
            // The peer is a full ifinfomsg + attributes inside VETH_INFO_PEER.
            let peer = m.nest_raw(VETH_INFO_PEER);
            m.header(&IfInfoMsg::default());
            m.attr_str(IFLA_IFNAME, peer_name);
            if let Some(mac) = peer_mac {
                m.attr(IFLA_ADDRESS, mac);
            }
            if let Some(mtu) = peer_mtu {
                m.attr_u32(IFLA_MTU, *mtu);
            }
            if let Some(fd) = peer_netns_fd {
                m.attr_u32(IFLA_NET_NS_FD, *fd as u32);
            }
            // The peer gets the same queue count and length as the main end.
            if let Some(q) = txqlen {
                m.attr_u32(IFLA_TXQLEN, q);
            }
            if let Some(q) = queues {
                m.attr_u32(IFLA_NUM_TX_QUEUES, q);
                m.attr_u32(IFLA_NUM_RX_QUEUES, q);
            }
            m.end_nest(peer);
            m.end_nest(data);
        }
        LinkKind::Bridge { vlan_filtering } => {
            if let Some(v) = vlan_filtering {
                let data = m.nest_raw(IFLA_INFO_DATA);
                m.attr_u8(IFLA_BR_VLAN_FILTERING, *v as u8);
                m.end_nest(data);
            }
        }
        LinkKind::Macvlan(mode) | LinkKind::Macvtap(mode) => {
            let data = m.nest_raw(IFLA_INFO_DATA);
            m.attr_u32(IFLA_MACVLAN_MODE, mode.raw());
            m.end_nest(data);
        }
        LinkKind::Ipvlan(mode) => {
            let data = m.nest_raw(IFLA_INFO_DATA);
            let v = match mode {
                IpvlanMode::L2 => 0,
                IpvlanMode::L3 => 1,
                IpvlanMode::L3s => 2,
            };
            m.attr_u16(IFLA_IPVLAN_MODE, v);
            m.end_nest(data);
        }
        LinkKind::Vlan { id } => {
            let data = m.nest_raw(IFLA_INFO_DATA);
            m.attr_u16(IFLA_VLAN_ID, *id);
            m.end_nest(data);
        }
        LinkKind::Vxlan(v) => {
            let data = m.nest_raw(IFLA_INFO_DATA);
            m.attr_u32(IFLA_VXLAN_ID, v.vni);
            // IPv4 and IPv6 endpoints are different attributes.
            let by_family = |ip: Option<IpAddr>, v4: u16, v6: u16| {
                ip.map(|ip| (if ip.is_ipv4() { v4 } else { v6 }, ip))
            };
            for (ty, ip) in [
                by_family(v.remote, IFLA_VXLAN_GROUP, IFLA_VXLAN_GROUP6),
                by_family(v.local, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LOCAL6),
            ]
            .into_iter()
            .flatten()
            {
                m.attr_ip(ty, ip);
            }
            m.attr_opt(IFLA_VXLAN_LINK, v.underlying, MessageBuilder::attr_u32)
                .attr_opt(IFLA_VXLAN_PORT, v.port, MessageBuilder::attr_be16)
                .attr_opt(
                    IFLA_VXLAN_LEARNING,
                    v.learning.map(u8::from),
                    MessageBuilder::attr_u8,
                )
                .attr_opt(IFLA_VXLAN_TTL, v.ttl, MessageBuilder::attr_u8);
            m.end_nest(data);
        }
        LinkKind::Vrf { table } => {
            let data = m.nest_raw(IFLA_INFO_DATA);
            m.attr_u32(IFLA_VRF_TABLE, *table);
            m.end_nest(data);
        }
        LinkKind::Ifb | LinkKind::Dummy => {}
    }
}

/// Maps "already gone" to `Ok(false)` for idempotent deletes.
pub(crate) fn gone_is_false<T>(r: Result<T>) -> Result<bool> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// IFLA_AF_SPEC nested attributes of the bridge family.
pub const IFLA_BRIDGE_VLAN_INFO: u16 = 2;
/// `bridge_vlan_info` flag: untagged ingress frames get this VLAN.
pub const BRIDGE_VLAN_INFO_PVID: u16 = 1 << 1;
/// `bridge_vlan_info` flag: egress frames of this VLAN leave untagged.
pub const BRIDGE_VLAN_INFO_UNTAGGED: u16 = 1 << 2;
const RTEXT_FILTER_BRIDGE_VLAN: u32 = 1 << 1;

/// One VLAN of a bridge port (or of the bridge itself), as
/// `bridge vlan show` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeVlan {
    /// The VLAN id (1–4094).
    pub vid: u16,
    /// Untagged ingress frames get this VLAN.
    pub pvid: bool,
    /// Egress frames of this VLAN leave untagged.
    pub untagged: bool,
}

impl Socket {
    fn bridge_vlan_msg(&self, ty: u16, index: u32, v: &BridgeVlan) -> Result<()> {
        let mut m = MessageBuilder::new(ty, 0);
        m.header(&IfInfoMsg {
            family: libc::AF_BRIDGE as u8,
            index: index as i32,
            ..Default::default()
        });
        let mut flags = 0u16;
        if v.pvid {
            flags |= BRIDGE_VLAN_INFO_PVID;
        }
        if v.untagged {
            flags |= BRIDGE_VLAN_INFO_UNTAGGED;
        }
        let mut info = [0u8; 4];
        info[..2].copy_from_slice(&flags.to_ne_bytes());
        info[2..].copy_from_slice(&v.vid.to_ne_bytes());
        m.nested(IFLA_AF_SPEC, |m| {
            m.attr(IFLA_BRIDGE_VLAN_INFO, &info);
        });
        let what = if ty == RTM_DELLINK { "delete" } else { "add" };
        self.exec(&m, || {
            format!("{what} VLAN {} on bridge port #{index}", v.vid)
        })
        .map(drop)
    }

    /// Adds a VLAN to a bridge port (`bridge vlan add dev PORT vid N
    /// [pvid] [untagged]`); adding it again updates its flags.
    pub fn bridge_vlan_add(&self, index: u32, v: &BridgeVlan) -> Result<()> {
        self.bridge_vlan_msg(RTM_SETLINK, index, v)
    }

    /// Removes a VLAN from a bridge port.
    pub fn bridge_vlan_del(&self, index: u32, vid: u16) -> Result<()> {
        let v = BridgeVlan {
            vid,
            pvid: false,
            untagged: false,
        };
        self.bridge_vlan_msg(RTM_DELLINK, index, &v)
    }

    /// The VLANs of one bridge port (empty when it has none or is no port).
    pub fn bridge_vlans(&self, index: u32) -> Result<Vec<BridgeVlan>> {
        let mut m = MessageBuilder::new(RTM_GETLINK, 0);
        m.header(&IfInfoMsg {
            family: libc::AF_BRIDGE as u8,
            ..Default::default()
        });
        m.attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_BRIDGE_VLAN);
        let msgs = self.dump_as(&m, || "list bridge VLANs".into())?;
        let mut out = Vec::new();
        for msg in msgs.iter().filter(|m| m.ty == RTM_NEWLINK) {
            let Some(hdr) = IfInfoMsg::from_bytes(&msg.payload) else {
                continue;
            };
            if u32::try_from(hdr.index).ok() != Some(index) {
                continue;
            }
            for a in Attrs::after_header(&msg.payload, std::mem::size_of::<IfInfoMsg>()) {
                if a.ty != IFLA_AF_SPEC {
                    continue;
                }
                for i in a.nested().filter(|i| i.ty == IFLA_BRIDGE_VLAN_INFO) {
                    let (Some(flags), Some(vid)) = (
                        i.u16(),
                        i.data
                            .get(2..4)
                            .and_then(|b| b.try_into().ok())
                            .map(u16::from_ne_bytes),
                    ) else {
                        continue;
                    };
                    out.push(BridgeVlan {
                        vid,
                        pvid: flags & BRIDGE_VLAN_INFO_PVID != 0,
                        untagged: flags & BRIDGE_VLAN_INFO_UNTAGGED != 0,
                    });
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifname_rules() {
        assert!(valid_ifname("eth0"));
        assert!(valid_ifname("a23456789012345"));
        assert!(!valid_ifname("a234567890123456"));
        assert!(!valid_ifname(""));
        assert!(!valid_ifname("a/b"));
        assert!(!valid_ifname("a b"));
        assert!(!valid_ifname(".."));
    }

    use crate::testns::{veth_up, TestNs};

    const MAC_A: [u8; 6] = [0x0a, 0x58, 0x0a, 0, 0, 1];
    const MAC_B: [u8; 6] = [0x0a, 0x58, 0x0a, 0, 0, 2];

    fn get(s: &Socket, name: &str) -> Link {
        s.link_by_name(name)
            .expect("get link")
            .expect("link exists")
    }

    #[test]
    fn link_watch_sees_both_ends_come_up() {
        let a = TestNs::new("watch-a");
        let b = TestNs::new("watch-b");
        let (sa, sb) = (a.sock(), b.sock());
        sa.create_veth("wh0", "wp0", Some(b.ns.fd()), None, None, None)
            .expect("create veth");
        let (host, pod) = (get(&sa, "wh0").index, get(&sb, "wp0").index);
        sb.set_link_up(pod).expect("pod end up");

        let soon = || std::time::Instant::now() + std::time::Duration::from_millis(100);
        {
            // The peer stays down: no carrier, so the wait ends at its
            // deadline, saying so.
            let on_a = sa.watch_links().expect("watch");
            sb.set_link_down(pod).expect("pod end down");
            sa.set_link_up(host).expect("host end up");
            assert!(!on_a.until_oper_up(host, soon()).expect("wait"));
        }
        sa.set_link_down(host).expect("host end down");
        sb.set_link_up(pod).expect("pod end up");

        let (on_a, on_b) = (
            sa.watch_links().expect("watch"),
            sb.watch_links().expect("watch"),
        );
        sa.set_link_up(host).expect("host end up");
        // Requests on a watching socket skip the queued notifications.
        assert_eq!(get(&sa, "wh0").index, host);
        assert!(on_a.until_oper_up(host, soon()).expect("wait host"));
        assert!(on_b.until_oper_up(pod, soon()).expect("wait pod"));
        assert_eq!(get(&sa, "wh0").operstate, OperState::Up);
        assert_eq!(get(&sb, "wp0").operstate, OperState::Up);
        assert!(
            sa.join_group(0).is_err() && sa.join_group(65).is_err(),
            "groups outside 1..=64 are refused"
        );
        drop((on_a, on_b));
        // Left the group: later changes queue nothing, and requests work.
        sa.set_link_down(host).expect("down");
        assert!(!get(&sa, "wh0").up);
        assert!(
            sa.take_notifications().is_empty(),
            "nothing kept after leaving"
        );
        assert!(sa.delete_link_by_name("wh0").expect("delete"));
    }

    #[test]
    fn veth_pair_across_namespaces() {
        let a = TestNs::new("veth-a");
        let b = TestNs::new("veth-b");
        let (sa, sb) = (a.sock(), b.sock());
        sa.create_veth(
            "host0",
            "ctr0",
            Some(b.ns.fd()),
            Some(1400),
            Some(&MAC_A),
            Some(&MAC_B),
        )
        .expect("create veth");
        let host = get(&sa, "host0");
        assert_eq!(host.kind.as_deref(), Some("veth"));
        assert_eq!(host.mtu, 1400);
        assert_eq!(host.mac, MAC_A);
        assert!(
            sa.link_by_name("ctr0").expect("get").is_none(),
            "peer must not be in a"
        );
        let ctr = get(&sb, "ctr0");
        assert_eq!(ctr.mtu, 1400);
        assert_eq!(ctr.mac, MAC_B);
        assert_eq!(ctr.link, Some(host.index), "IFLA_LINK names the peer");
        assert!(ctr.link_netnsid.is_some());
        sa.set_link_up(host.index).expect("up");
        sb.set_link_up(ctr.index).expect("up");
        assert!(get(&sb, "ctr0").up);
        let j = b.ip(&["-j", "link", "show", "ctr0"]);
        assert!(
            j.contains("\"mtu\":1400") && j.contains("0a:58:0a:00:00:02"),
            "{j}"
        );

        // Creating it again names the object and the namespace.
        let e = sa
            .create_veth("host0", "ctr1", None, None, None, None)
            .expect_err("duplicate");
        assert!(e.is_exists(), "{e}");
        let text = e.to_string();
        assert!(
            text.starts_with("failed to create veth \"host0\" in netns /run/netns/rcni-nl-veth-a-"),
            "{text}"
        );
        assert!(text.contains("File exists (os error 17)"), "{text}");

        assert!(sa.links().expect("dump").iter().any(|l| l.name == "host0"));
        assert!(sa.delete_link_by_name("host0").expect("delete"));
        assert!(!sa.delete_link_by_name("host0").expect("delete again"));
        assert!(
            sb.link_by_name("ctr0").expect("get").is_none(),
            "peer went too"
        );
    }

    #[test]
    fn not_found_errors_have_context() {
        let t = TestNs::new("notfound");
        let s = t.sock();
        assert!(s.link_by_name("nosuch0").expect("get").is_none());
        assert!(s.link_by_index(99999).expect("get").is_none());
        assert!(!s.delete_link(99999).expect("delete"));
        let e = s.set_mtu(99999, 1300).expect_err("no such link");
        assert!(e.is_not_found(), "{e}");
        assert_eq!(e.errno(), Some(libc::ENODEV));
        assert!(
            e.to_string()
                .contains("set mtu 1300 on link #99999 in netns"),
            "{e}"
        );
        let e = s.create_ifb("bad name").expect_err("bad name");
        assert!(matches!(e, Error::Invalid { .. }), "{e}");
        // Unknown kinds come back with the kernel's extended ack text.
        let mut m = MessageBuilder::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.header(&IfInfoMsg::default()).attr_str(IFLA_IFNAME, "x0");
        let info = m.nest_raw(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "no-such-kind");
        m.end_nest(info);
        let e = s.request(&m).expect_err("unknown kind");
        assert_eq!(e.errno(), Some(libc::EOPNOTSUPP), "{e}");
        assert_eq!(e.ext_message(), Some("Unknown device type"), "{e}");
    }

    #[test]
    fn bridge_ports_and_link_settings() {
        let t = TestNs::new("bridge");
        let other = TestNs::new("bridge-other");
        let s = t.sock();
        s.create_bridge("br0", Some(1450), Some(&MAC_A))
            .expect("bridge");
        let br = get(&s, "br0");
        assert_eq!(br.kind.as_deref(), Some("bridge"));
        assert_eq!((br.mtu, br.mac.as_slice()), (1450, &MAC_A[..]));
        assert_eq!(br.bridge_vlan_filtering(), Some(false));
        let (v0, v1) = veth_up(&s, "v0", "v1");
        s.set_master(v0, br.index).expect("master");
        s.set_hairpin(v0, true).expect("hairpin");
        s.set_bridge_port(
            v0,
            &BridgePortOptions {
                isolated: Some(true),
                learning: Some(false),
                ..Default::default()
            },
        )
        .expect("port options");
        let port = get(&s, "v0");
        assert_eq!(port.master, Some(br.index));
        assert_eq!(port.slave_kind.as_deref(), Some("bridge"));
        let bp = port.bridge_port.expect("bridge port info");
        assert!(bp.hairpin && bp.isolated && !bp.learning, "{bp:?}");
        let j = t.ip(&["-d", "-j", "link", "show", "v0"]);
        for want in [
            "\"hairpin\":true",
            "\"isolated\":true",
            "\"learning\":false",
            "\"master\":\"br0\"",
        ] {
            assert!(j.contains(want), "{want} missing in {j}");
        }
        s.set_nomaster(v0).expect("nomaster");
        assert_eq!(get(&s, "v0").master, None);

        s.set_promisc(v1, true).expect("promisc");
        s.set_allmulti(v1, true).expect("allmulti");
        s.set_txqlen(v1, 77).expect("txqlen");
        s.set_mtu(v1, 1280).expect("mtu");
        s.set_mac(v1, &MAC_B).expect("mac");
        let l = get(&s, "v1");
        assert!(l.promisc && l.allmulti, "{l:?}");
        assert_eq!((l.txqlen, l.mtu, l.mac.as_slice()), (77, 1280, &MAC_B[..]));
        s.set_promisc(v1, false).expect("promisc off");
        assert!(!get(&s, "v1").promisc);
        s.set_link_down(v1).expect("down");
        assert!(!get(&s, "v1").up);
        s.set_name(v1, "renamed1").expect("rename");
        assert_eq!(
            s.link_by_index(v1).expect("get").expect("exists").name,
            "renamed1"
        );
        s.set_netns_fd(v1, other.ns.fd()).expect("move");
        assert!(s.link_by_name("renamed1").expect("get").is_none());
        assert!(other
            .sock()
            .link_by_name("renamed1")
            .expect("get")
            .is_some());
    }

    #[test]
    #[ignore = "VM lane: needs bridge VLAN filtering; run by scripts/dev.sh vmtest"]
    fn bridge_vlan_filtering() {
        let t = TestNs::new("vlanfilter");
        let s = t.sock();
        s.create_bridge("br0", None, None).expect("bridge");
        let br = get(&s, "br0");
        s.set_bridge_vlan_filtering(br.index, true)
            .expect("vlan filtering");
        assert_eq!(get(&s, "br0").bridge_vlan_filtering(), Some(true));
    }

    #[test]
    #[ignore = "VM lane: needs bridge VLAN filtering; run by scripts/dev.sh vmtest"]
    fn bridge_port_vlans() {
        let t = TestNs::new("portvlan");
        let s = t.sock();
        s.create_bridge("br0", None, None).expect("bridge");
        let br = get(&s, "br0");
        s.set_bridge_vlan_filtering(br.index, true)
            .expect("vlan filtering");
        let (p, _) = veth_up(&s, "p0", "p1");
        s.set_master(p, br.index).expect("enslave");
        // A new port starts in the default VLAN 1 (pvid, untagged).
        let v = s.bridge_vlans(p).expect("dump");
        assert!(
            v.iter().any(|v| v.vid == 1 && v.pvid && v.untagged),
            "{v:?}"
        );
        let native = BridgeVlan {
            vid: 100,
            pvid: true,
            untagged: true,
        };
        s.bridge_vlan_add(p, &native).expect("add 100");
        for vid in [200, 201] {
            let tagged = BridgeVlan {
                vid,
                pvid: false,
                untagged: false,
            };
            s.bridge_vlan_add(p, &tagged).expect("add tagged");
        }
        s.bridge_vlan_del(p, 1).expect("del 1");
        let mut v = s.bridge_vlans(p).expect("dump");
        v.sort_by_key(|v| v.vid);
        assert_eq!(
            v,
            vec![
                native,
                BridgeVlan {
                    vid: 200,
                    pvid: false,
                    untagged: false
                },
                BridgeVlan {
                    vid: 201,
                    pvid: false,
                    untagged: false
                },
            ]
        );
        // iproute2 sees the same.
        let j = t.bridge(&["-j", "vlan", "show", "dev", "p0"]);
        assert!(
            j.contains("\"vlan\":100") && j.contains("\"vlan\":201"),
            "{j}"
        );
        assert!(!j.contains("\"vlan\":1,"), "{j}");
    }

    #[test]
    fn macvlan_and_macvtap() {
        let t = TestNs::new("macvlan");
        let c = TestNs::new("macvlan-ctr");
        let s = t.sock();
        let (parent, _) = veth_up(&s, "uplink0", "uplink1");
        s.create_macvlan(
            "mv0",
            parent,
            MacvlanMode::Bridge,
            Some(1400),
            Some(c.ns.fd()),
            false,
        )
        .expect("macvlan");
        let mv = get(&c.sock(), "mv0");
        assert_eq!(mv.kind.as_deref(), Some("macvlan"));
        assert_eq!(mv.macvlan_mode(), Some(MacvlanMode::Bridge));
        assert_eq!(mv.mtu, 1400);
        s.create_macvlan("mvt0", parent, MacvlanMode::Private, None, None, true)
            .expect("macvtap");
        let mvt = get(&s, "mvt0");
        assert_eq!(mvt.kind.as_deref(), Some("macvtap"));
        assert_eq!(mvt.link, Some(parent));
        assert_eq!(mvt.macvlan_mode(), Some(MacvlanMode::Private));
    }

    #[test]
    fn vxlan_and_ifb() {
        let t = TestNs::new("vxlan");
        let s = t.sock();
        let (under, _) = veth_up(&s, "under0", "under1");
        let vx = Vxlan {
            vni: 42,
            local: Some("10.0.0.1".parse().expect("ip")),
            remote: Some("10.0.0.2".parse().expect("ip")),
            port: Some(4789),
            underlying: Some(under),
            learning: Some(false),
            ttl: Some(64),
        };
        s.create_vxlan("vx0", &vx, Some(1450)).expect("vxlan");
        let l = get(&s, "vx0");
        assert_eq!(l.kind.as_deref(), Some("vxlan"));
        assert_eq!(l.vxlan_vni(), Some(42));
        let j = t.ip(&["-d", "-j", "link", "show", "vx0"]);
        for want in [
            "\"id\":42",
            "\"port\":4789",
            "\"local\":\"10.0.0.1\"",
            "\"remote\":\"10.0.0.2\"",
            "\"ttl\":64",
            "\"learning\":false",
        ] {
            assert!(j.contains(want), "{want} missing in {j}");
        }
        s.create_ifb("ifb0").expect("ifb");
        assert_eq!(get(&s, "ifb0").kind.as_deref(), Some("ifb"));
    }

    #[test]
    #[ignore = "VM lane: needs dummy, ipvlan, 8021q and vrf; run by scripts/dev.sh vmtest"]
    fn dummy_ipvlan_vlan_vrf() {
        let t = TestNs::new("optional-kinds");
        let s = t.sock();
        let (parent, _) = veth_up(&s, "p0", "p1");
        let cases: Vec<(&str, &str, Result<()>)> = vec![
            ("dummy", "dm0", s.create_dummy("dm0")),
            (
                "ipvlan",
                "ipv0",
                s.create_ipvlan("ipv0", parent, IpvlanMode::L2, None, None),
            ),
            ("vlan", "vl0", s.create_vlan("vl0", parent, 100, None, None)),
            ("vrf", "vrf0", s.create_vrf("vrf0", 1001)),
        ];
        for (kind, name, res) in cases {
            res.unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(get(&s, name).kind.as_deref(), Some(kind));
        }
    }

    #[test]
    fn mac_format() {
        assert_eq!(
            format_mac(&[0x0a, 0x58, 0x0a, 0xf4, 0, 1]),
            "0a:58:0a:f4:00:01"
        );
    }
}

/// RTNLGRP_LINK: the multicast group of link changes.
pub const RTNLGRP_LINK: u32 = 1;

/// Link notifications of one socket's namespace, from
/// [`Socket::watch_links`] until dropped. One watch per socket at a time:
/// dropping it leaves the group.
///
/// Waiting on notifications instead of asking again and again matters on
/// a busy node: every RTM_GETLINK takes the RTNL lock, and right after a
/// link gains carrier that lock is held by work the waiter does not need
/// (IPv6 address configuration flooding the new link's first multicast
/// frames to every bridge port). A notification is sent without it.
#[derive(Debug)]
pub struct LinkWatch<'a> {
    sock: &'a Socket,
}

impl Socket {
    /// Starts queueing this namespace's link notifications on the socket.
    /// Start before the change to be awaited, so none can be missed.
    pub fn watch_links(&self) -> Result<LinkWatch<'_>> {
        self.join_group(RTNLGRP_LINK)?;
        Ok(LinkWatch { sock: self })
    }
}

impl LinkWatch<'_> {
    /// Waits until link `index` is reported operationally up, at most
    /// until `deadline`; returns whether it was. If notifications were
    /// lost (the queue overran) the state is asked for once instead.
    pub fn until_oper_up(&self, index: u32, deadline: std::time::Instant) -> Result<bool> {
        let is_up = |ty: u16, payload: &[u8]| {
            ty == RTM_NEWLINK
                && Link::parse(payload)
                    .is_some_and(|l| l.index == index && l.operstate == OperState::Up)
        };
        loop {
            // First what came in while a request of this socket (the
            // fallback below included) waited for its answer.
            let kept = self.sock.take_notifications();
            let mut up = kept.iter().any(|m| is_up(m.ty, &m.payload));
            if up {
                return Ok(true);
            }
            match self
                .sock
                .recv_until(deadline, |m| up |= is_up(m.ty, m.payload))
            {
                Ok(true) if up => return Ok(true),
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) if e.errno() == Some(libc::ENOBUFS) => {
                    let now = self.sock.link_by_index(index)?;
                    if now.is_some_and(|l| l.operstate == OperState::Up) {
                        return Ok(true);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for LinkWatch<'_> {
    fn drop(&mut self) {
        // Leaving can only fail on a closed socket; nothing to undo then.
        let _ = self.sock.leave_group(RTNLGRP_LINK);
    }
}
