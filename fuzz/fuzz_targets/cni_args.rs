//! `CNI_ARGS` parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = cni_spec::CniArgs::parse(s) {
        let _ = a.get("IP");
        let _ = a.ignore_unknown();
        let _ = a.check_known(&["IP", "MAC", "K8S_POD_NAME"]);
    }
});
