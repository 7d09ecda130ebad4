//! Every plugin's config parse path. The first byte picks the plugin, the
//! rest is its stdin.
#![no_main]

use libfuzzer_sys::fuzz_target;

type Parse = fn(&[u8]);

const PLUGINS: &[Parse] = &[
    plugin_bridge::fuzzing::parse_config,
    plugin_ptp::fuzzing::parse_config,
    plugin_tap::fuzzing::parse_config,
    plugin_macvlan::fuzzing::parse_config,
    plugin_bandwidth::fuzzing::parse_config,
    plugin_sbr::fuzzing::parse_config,
    plugin_tuning::fuzzing::parse_config,
    plugin_host_local::fuzzing::parse_config,
    plugin_static::fuzzing::parse_config,
    plugin_dhcp::fuzzing::parse_config,
    plugin_portmap::fuzzing::parse_config,
    plugin_firewall::fuzzing::parse_config,
    plugin_host_device::fuzzing::parse_config,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, stdin)) = data.split_first() else {
        return;
    };
    // The common fields every plugin (loopback included) parses first.
    let _ = cni_spec::NetConf::parse(stdin);
    PLUGINS[usize::from(pick) % PLUGINS.len()](stdin);
});
