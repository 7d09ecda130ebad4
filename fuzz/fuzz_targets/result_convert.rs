//! Result parsing and conversion between every pair of spec versions.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, json)) = data.split_first() else {
        return;
    };
    let versions = cni_spec::ALL_VERSIONS;
    let from = versions[usize::from(pick) % versions.len()];
    let Ok(r) = cni_spec::Result::from_slice(json, from) else {
        return;
    };
    for to in versions {
        if let Ok(c) = r.convert(to) {
            for back in versions {
                let _ = c.convert(back);
            }
        }
    }
});
