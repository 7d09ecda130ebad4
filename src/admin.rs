//! The admin CLI (`rcni ...`) and the `cnitool` entry.

use crate::plugins::PLUGINS;
use std::path::{Path, PathBuf};

const USAGE: &str = "\
rcni — CNI plugins, runtime and tools in one binary

Usage:
  rcni install --bin-dir DIR [--copy] [--conf-dir DIR [--subnet CIDR]]
                                        put one entry per plugin name into DIR; with
                                        --conf-dir, also write a default network
                                        (10-rcni.conflist) unless one is there
  rcni demo                             attach throwaway sandboxes, show them talk, tear down
  rcni version                          build and supported CNI spec versions
  rcni plugin NAME                      run plugin NAME (as if called by that name)
  rcni plugin dhcp daemon [-socketpath P] run the dhcp plugin's lease daemon
  rcni help                             this text

Called as a plugin name (a link made by `rcni install`), it is that plugin;
called as `cnitool`, it is the runtime CLI (see `cnitool --help`).";

pub fn main(args: &[String]) -> i32 {
    let Some(cmd) = args.first() else {
        println!("{USAGE}");
        return 0;
    };
    match cmd.as_str() {
        "install" => install(&args[1..]),
        "version" | "--version" | "-V" => {
            version();
            0
        }
        "demo" => crate::demo::run(&args[1..]),
        // The dhcp plugin's daemon, as the reference's `dhcp daemon`.
        "plugin"
            if args.get(1).is_some_and(|n| n == "dhcp")
                && args.get(2).is_some_and(|a| a == "daemon") =>
        {
            crate::alloc::stop_using_arena();
            plugin_dhcp::daemon_main(&args[3..])
        }
        "plugin" => match args.get(1).and_then(|n| crate::plugins::lookup(n)) {
            Some(p) => cni_skel::plugin_main(p),
            None => {
                eprintln!("rcni: unknown plugin {:?}; known: {}", args.get(1), names());
                2
            }
        },
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            0
        }
        other => {
            eprintln!("rcni: unknown command {other:?}\n\n{USAGE}");
            2
        }
    }
}

pub fn cnitool(args: &[String]) -> i32 {
    runtime::cnitool::main(args)
}

fn names() -> String {
    PLUGINS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

fn version() {
    println!("rcni {}", env!("CARGO_PKG_VERSION"));
    println!("CNI spec versions: {}", cni_spec::ALL_VERSIONS.join(", "));
    println!("plugins: {}", names());
}

fn install(args: &[String]) -> i32 {
    let mut bin_dir: Option<PathBuf> = None;
    let mut conf_dir: Option<PathBuf> = None;
    let mut subnet = String::from("10.88.0.0/16");
    let mut copy = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bin-dir" => bin_dir = it.next().map(PathBuf::from),
            "--conf-dir" => conf_dir = it.next().map(PathBuf::from),
            "--subnet" => match it.next() {
                Some(s) => subnet = s.clone(),
                None => {
                    eprintln!("rcni install: --subnet needs a CIDR");
                    return 2;
                }
            },
            "--copy" => copy = true,
            other => {
                eprintln!("rcni install: unknown argument {other:?}");
                return 2;
            }
        }
    }
    let Some(dir) = bin_dir else {
        eprintln!("rcni install: --bin-dir DIR is required");
        return 2;
    };
    match install_into(&dir, copy) {
        Ok((n, replaced)) => {
            println!("installed {n} plugins into {}", dir.display());
            if !replaced.is_empty() {
                println!(
                    "replaced {} plugin(s) that were not links to or copies of this rcni: {}",
                    replaced.len(),
                    replaced.join(", ")
                );
            }
        }
        Err(e) => {
            eprintln!("rcni install: {e}");
            return 1;
        }
    }
    if let Some(conf) = conf_dir {
        match write_default_conf(&conf, &subnet) {
            Ok(Some(p)) => println!("wrote {}", p.display()),
            Ok(None) => println!(
                "{} already has a network configuration; left it alone",
                conf.display()
            ),
            Err(e) => {
                eprintln!("rcni install: {e}");
                return 1;
            }
        }
    }
    0
}

/// The network `rcni install --conf-dir` writes: what Podman's default
/// network does (bridge with masquerade, host ports, forward accept, tuning).
fn default_conflist(subnet: &str) -> String {
    let v = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "rcni",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
             "hairpinMode": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "firewall"},
            {"type": "tuning"}
        ]
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// Writes `10-rcni.conflist` unless the directory already holds a
/// configuration: a runtime picks the lexically first file, and an
/// operator's own network must keep winning.
fn write_default_conf(dir: &Path, subnet: &str) -> Result<Option<PathBuf>, String> {
    let net: Result<ipnet::IpNet, _> = subnet.parse();
    if net.is_err() {
        return Err(format!("--subnet {subnet:?} is not a CIDR"));
    }
    make_dirs(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let existing = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .flatten()
        .any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.ends_with(".conflist") || n.ends_with(".conf") || n.ends_with(".json")
        });
    if existing {
        return Ok(None);
    }
    let path = dir.join("10-rcni.conflist");
    let body = default_conflist(subnet);
    place(&path, |tmp| {
        std::fs::write(tmp, &body)?;
        set_mode(tmp, 0o644)
    })
    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(Some(path))
}

/// Creates `dir` and its missing parents, each exactly 0755 whatever the
/// umask (a world-writable plugin directory would let any local user
/// replace what root runs). Existing directories are left as they are.
fn make_dirs(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d);
        cur = d.parent();
    }
    for d in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(0o755).create(d) {
            Ok(()) => std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets an explicit mode on a file just made (the umask narrows or widens
/// what `create`/`copy` give).
fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

/// Replaces `dst` atomically: build at a temporary name, then rename, so a
/// runtime exec'ing a plugin mid-upgrade sees the old or the new file.
fn place(dst: &Path, make: impl Fn(&Path) -> std::io::Result<()>) -> std::io::Result<()> {
    let tmp = dst.with_file_name(format!(
        ".{}.rcni-tmp",
        dst.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    let _ = std::fs::remove_file(&tmp);
    make(&tmp)?;
    std::fs::rename(&tmp, dst).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Whether regular files `a` and `b` look like the same binary: equal
/// sizes, and equal first and last 64 KiB (a copy of rcni, not another
/// vendor's plugin; reading whole binaries on every install is not needed).
fn same_content(a: &Path, b: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    const SAMPLE: u64 = 64 * 1024;
    let size = |p: &Path| {
        std::fs::symlink_metadata(p)
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len())
    };
    let (Some(len), Some(other)) = (size(a), size(b)) else {
        return false;
    };
    if len != other {
        return false;
    }
    let sample = |p: &Path| -> std::io::Result<Vec<u8>> {
        let mut f = std::fs::File::open(p)?;
        let mut out = Vec::new();
        (&mut f).take(SAMPLE).read_to_end(&mut out)?;
        f.seek(SeekFrom::Start(len.saturating_sub(SAMPLE)))?;
        f.take(SAMPLE).read_to_end(&mut out)?;
        Ok(out)
    };
    matches!((sample(a), sample(b)), (Ok(x), Ok(y)) if x == y)
}

/// Installs rcni and one entry per plugin name into `dir`: the number of
/// plugins and the names whose earlier file was not rcni's (another
/// vendor's binary, replaced: said, never silently).
fn install_into(dir: &Path, copy: bool) -> Result<(usize, Vec<String>), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    make_dirs(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let main = dir.join("rcni");
    let same = |a: &Path, b: &Path| {
        use std::os::unix::fs::MetadataExt;
        matches!((std::fs::metadata(a), std::fs::metadata(b)),
            (Ok(x), Ok(y)) if x.dev() == y.dev() && x.ino() == y.ino())
    };
    if !same(&exe, &main) {
        place(&main, |tmp| {
            std::fs::copy(&exe, tmp)?;
            set_mode(tmp, 0o755)
        })
        .map_err(|e| format!("cannot copy {} to {}: {e}", exe.display(), main.display()))?;
    }
    let mut replaced = Vec::new();
    for (name, _) in PLUGINS {
        let dst = dir.join(name);
        // Ours: our link, our binary itself, or a copy of it (--copy).
        let ours = std::fs::read_link(&dst).is_ok_and(|t| t == Path::new("rcni"))
            || same(&dst, &main)
            || same_content(&dst, &main);
        if !ours && std::fs::symlink_metadata(&dst).is_ok() {
            replaced.push((*name).to_string());
        }
        let made = if copy {
            place(&dst, |tmp| {
                std::fs::copy(&main, tmp)?;
                set_mode(tmp, 0o755)
            })
        } else {
            place(&dst, |tmp| std::os::unix::fs::symlink("rcni", tmp))
        };
        made.map_err(|e| format!("cannot install {}: {e}", dst.display()))?;
    }
    Ok((PLUGINS.len(), replaced))
}
