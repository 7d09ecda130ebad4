//! The netlink message parser (rtnetlink replies).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| netlink::fuzzing::parse_messages(data));
