//! Fuzzing entry (`fuzz/`): this plugin's config parse path, run on raw
//! stdin bytes without touching the system.

/// Parses `stdin` the way ADD does before its first system call; every
/// outcome is fine except a panic.
pub fn parse_config(stdin: &[u8]) {
    let Some(args) = cni_skel::fuzzing::args(stdin) else {
        return;
    };
    let _ = super::conf(&args);
}

/// The daemon's request parser: one line from its socket, then the
/// network config it carries.
pub fn parse_request(line: &[u8]) {
    let Ok(text) = std::str::from_utf8(line) else {
        return;
    };
    if let Ok(req) = serde_json::from_str::<crate::proto::Request>(text) {
        // What the daemon does with it before any network call.
        let conf = serde_json::from_value::<crate::options::NetConf>(req.config.clone());
        if let Ok(crate::options::NetConf {
            ipam: Some(ipam), ..
        }) = conf
        {
            let _ = crate::options::prepare(&req.args, &ipam);
        }
    }
}

/// The DHCP packet and options parser: a reply off the wire.
pub fn parse_packet(bytes: &[u8]) {
    if let Some(m) = crate::packet::Message::decode(bytes) {
        let _ = m.message_type();
        let _ = crate::options::lease_result(&m);
    }
    let _ = crate::packet::client_payload(bytes);
    let _ = crate::options::parse_classless(bytes);
    let _ = crate::options::parse_static(bytes);
}
