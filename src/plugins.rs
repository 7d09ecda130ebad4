//! The plugins compiled into this binary, by `type` name.

use cni_skel::Plugin;

/// Every implemented plugin. `rcni install` links exactly these names.
pub static PLUGINS: &[(&str, &dyn Plugin)] = &[
    ("loopback", &plugin_loopback::Loopback),
    ("bridge", &plugin_bridge::Bridge),
    ("ptp", &plugin_ptp::Ptp),
    ("tap", &plugin_tap::Tap),
    ("macvlan", &plugin_macvlan::Macvlan),
    ("bandwidth", &plugin_bandwidth::BandwidthPlugin),
    ("sbr", &plugin_sbr::Sbr),
    ("tuning", &plugin_tuning::Tuning),
    ("host-local", &plugin_host_local::HostLocal),
    ("static", &plugin_static::Static),
    ("dhcp", &plugin_dhcp::Dhcp),
    ("portmap", &plugin_portmap::Portmap),
    ("firewall", &plugin_firewall::Firewall),
    ("host-device", &plugin_host_device::HostDevice),
    ("vlan", &plugin_vlan::Vlan),
    ("dummy", &plugin_dummy::Dummy),
    ("ipvlan", &plugin_ipvlan::Ipvlan),
    ("vrf", &plugin_vrf::Vrf),
    ("multus", &plugin_multus::Multus),
];

pub fn lookup(name: &str) -> Option<&'static dyn Plugin> {
    PLUGINS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}
