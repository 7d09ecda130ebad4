//! `rcni`: every plugin, `cnitool` and the admin CLI in one executable.
//! `argv[0]` picks the role, so `rcni install` links each plugin name here.

// No std `lang_start`: its set-up (main-thread stack guard via
// /proc/self/maps, alternate signal stack, fd poll) costs several syscalls
// per plugin run, and a plugin runs once per pod. Without it a stack
// overflow is a plain SIGSEGV, without std's message.
#![cfg_attr(not(test), no_main)]

mod admin;
mod demo;
mod plugins;

use std::path::Path;

#[cfg(not(test))]
mod entry {
    use std::os::raw::{c_char, c_int};

    extern "C" {
        fn signal(signum: c_int, handler: usize) -> usize;
    }
    const SIGPIPE: c_int = 13;
    const SIG_IGN: usize = 1;

    /// The C entry point. `std::env::args` still works: on glibc std
    /// captures argv from `.init_array`, not from here.
    #[no_mangle]
    pub extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
        // As std does before `main`: a closed stdout gives EPIPE, not death.
        // SAFETY: setting a signal disposition to SIG_IGN.
        unsafe { signal(SIGPIPE, SIG_IGN) };
        match std::panic::catch_unwind(super::run) {
            Ok(()) => 0,
            // std's exit code for a panicking main.
            Err(_) => 101,
        }
    }
}

#[cfg_attr(test, allow(dead_code))]
fn run() {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let role = Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("rcni")
        .to_string();
    cni_invoke::register_builtins(plugins::lookup);
    if let Some(plugin) = plugins::lookup(&role) {
        cni_skel::plugin_main(plugin);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match role.as_str() {
        "cnitool" => admin::cnitool(&args),
        _ => admin::main(&args),
    };
    std::process::exit(code);
}
