//! The DHCP packet and options parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| plugin_dhcp::fuzzing::parse_packet(data));
