//! Network config and config-list parsing (what a runtime reads from
//! /etc/cni/net.d and what every plugin reads first).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cni_spec::NetConfList::parse(data);
    if let Ok(conf) = cni_spec::NetConf::parse(data) {
        let _ = conf.prev_result();
        let _ = conf.ipam_type();
    }
});
