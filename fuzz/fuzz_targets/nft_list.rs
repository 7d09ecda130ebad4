//! The nftables list parser (tables, chains, rules, set elements).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| nft::fuzzing::parse_list(data));
