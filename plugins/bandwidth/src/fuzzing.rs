//! Fuzzing entry (`fuzz/`): this plugin's config parse path, run on raw
//! stdin bytes without touching the system.

/// Parses `stdin` the way ADD does before its first system call; every
/// outcome is fine except a panic.
pub fn parse_config(stdin: &[u8]) {
    let Some(args) = cni_skel::fuzzing::args(stdin) else {
        return;
    };
    let _ = super::Limits::load(&args);
}
