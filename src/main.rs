//! `rcni`: every plugin, `cnitool` and the admin CLI in one executable.
//! `argv[0]` picks the role, so `rcni install` links each plugin name here.

// No std `lang_start`: its set-up (main-thread stack guard via
// /proc/self/maps, alternate signal stack, fd poll) costs several syscalls
// per plugin run, and a plugin runs once per pod. Without it a stack
// overflow is a plain SIGSEGV, without std's message.
#![cfg_attr(not(test), no_main)]

mod admin;
mod alloc;
mod demo;
mod plugins;

#[cfg(not(test))]
#[global_allocator]
static ALLOCATOR: alloc::BumpThenSystem = alloc::BumpThenSystem;

use std::path::Path;

#[cfg(not(test))]
mod entry {
    use std::os::raw::{c_char, c_int};

    extern "C" {
        fn signal(signum: c_int, handler: usize) -> usize;
    }
    const SIGPIPE: c_int = 13;
    const SIG_IGN: usize = 1;

    /// The C entry point. argv is read from here: std's `env::args` is
    /// only filled before `main` on glibc, and rcni also builds for musl.
    #[no_mangle]
    pub extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
        // As std does before `main`: a closed stdout gives EPIPE, not death.
        // SAFETY: setting a signal disposition to SIG_IGN.
        unsafe { signal(SIGPIPE, SIG_IGN) };
        // SAFETY: the C runtime passes argc valid NUL-terminated strings.
        let args = unsafe { super::argv_from_c(argc, argv) };
        match std::panic::catch_unwind(|| super::run(args)) {
            Ok(()) => 0,
            // std's exit code for a panicking main.
            Err(_) => 101,
        }
    }
}

/// Copies the C runtime's argv.
///
/// # Safety
/// `argv` must point to `argc` valid NUL-terminated strings.
#[cfg(not(test))]
unsafe fn argv_from_c(
    argc: std::os::raw::c_int,
    argv: *const *const std::os::raw::c_char,
) -> Vec<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    let n = usize::try_from(argc).unwrap_or(0);
    (0..n)
        .filter_map(|i| {
            // SAFETY: i < argc, guaranteed by the caller.
            let p = unsafe { *argv.add(i) };
            (!p.is_null()).then(|| {
                // SAFETY: non-null argv entries are NUL-terminated strings.
                let c = unsafe { std::ffi::CStr::from_ptr(p) };
                std::ffi::OsStr::from_bytes(c.to_bytes()).to_os_string()
            })
        })
        .collect()
}

#[cfg_attr(test, allow(dead_code))]
fn run(argv: Vec<std::ffi::OsString>) {
    let argv0 = argv.first().cloned().unwrap_or_default();
    let role = Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("rcni")
        .to_string();
    cni_invoke::register_builtins(plugins::lookup);
    // `dhcp daemon …` runs the lease daemon rather than a CNI verb.
    if role == "dhcp" && argv.get(1).is_some_and(|a| a == "daemon") {
        // A long-running daemon: the one-call arena would only waste memory.
        alloc::stop_using_arena();
        let args: Vec<String> = argv
            .iter()
            .skip(2)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        std::process::exit(plugin_dhcp::daemon_main(&args));
    }
    if let Some(plugin) = plugins::lookup(&role) {
        cni_skel::plugin_main(plugin);
    }
    let args: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let code = match role.as_str() {
        "cnitool" => admin::cnitool(&args),
        _ => admin::main(&args),
    };
    std::process::exit(code);
}
