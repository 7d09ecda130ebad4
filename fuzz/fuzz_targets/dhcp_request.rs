//! The dhcp daemon's request parser (one line from its socket).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| plugin_dhcp::fuzzing::parse_request(data));
