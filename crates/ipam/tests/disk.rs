//! On-disk store: exact bytes, index staleness, concurrency, crash safety,
//! GC/STATUS, and interop with the reference host-local when installed.

// Test code: a helper may unwrap what the test itself set up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ipam::{ops, DiskStore, HostLocalConfig, Store, StoreConfig};

const REFERENCE: &str = "/usr/lib/cni/host-local";

/// A unique temporary data directory, removed on drop (also on panic).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("rcni-ipam-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn conf(dir: &Path, net: &str, ranges: &str) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"{net}","ipam":{{"type":"host-local","dataDir":"{}","ranges":{ranges}}}}}"#,
        dir.display()
    )
}

fn hl(dir: &Path, net: &str, ranges: &str) -> HostLocalConfig {
    HostLocalConfig::parse(conf(dir, net, ranges).as_bytes(), &[]).unwrap()
}

fn sc(dir: &Path, net: &str) -> StoreConfig {
    StoreConfig {
        name: net.into(),
        data_dir: Some(dir.to_path_buf()),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Every allocation file as (ip, raw content).
fn files(dir: &Path) -> Vec<(IpAddr, String)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().ok()?;
            let ip: IpAddr = name.parse().ok()?;
            Some((ip, fs::read_to_string(e.path()).unwrap()))
        })
        .collect();
    v.sort();
    v
}

const V4: &str = r#"[[{"subnet":"10.0.0.0/24"}]]"#;

#[test]
fn exact_bytes_and_sentinel() {
    let t = TempDir::new("bytes");
    let c = hl(
        &t.0,
        "n1",
        r#"[[{"subnet":"10.0.0.0/24"}],[{"subnet":"2001:db8::/64"}]]"#,
    );
    let a = ops::add(&c, "ctr1", "eth0").unwrap();
    assert_eq!(a[0].address.to_string(), "10.0.0.2/24");
    assert_eq!(a[0].gateway, ip("10.0.0.1"));
    assert_eq!(a[1].address.to_string(), "2001:db8::2/64");
    let d = t.0.join("n1");
    assert_eq!(fs::read(d.join("10.0.0.2")).unwrap(), b"ctr1\r\neth0");
    assert_eq!(fs::read(d.join("2001:db8::2")).unwrap(), b"ctr1\r\neth0");
    assert_eq!(fs::read(d.join("last_reserved_ip.0")).unwrap(), b"10.0.0.2");
    assert_eq!(
        fs::read(d.join("last_reserved_ip.1")).unwrap(),
        b"2001:db8::2"
    );
    assert!(d.join("lock").exists());
    assert!(!d.join(ipam::store::TMP_FILE).exists());
    let names: HashSet<String> = fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
    let md = fs::metadata(&d).unwrap();
    assert_eq!(md.mtime_nsec(), 0);
    assert!(md.mtime() < 100_000_001);
}

#[test]
fn add_del_del_and_round_robin() {
    let t = TempDir::new("adddel");
    let c = hl(&t.0, "n", V4);
    let s = sc(&t.0, "n");
    let a = ops::add(&c, "a", "eth0").unwrap();
    assert_eq!(a[0].address.addr(), ip("10.0.0.2"));
    assert_eq!(ops::check(&s, "a", "eth0").unwrap(), [ip("10.0.0.2")]);
    assert_eq!(ops::del(&s, "a", "eth0").unwrap(), [ip("10.0.0.2")]);
    assert!(ops::del(&s, "a", "eth0").unwrap().is_empty());
    assert!(ops::check(&s, "a", "eth0").unwrap().is_empty());
    // round robin: the next ADD does not reuse .2
    let b = ops::add(&c, "b", "eth0").unwrap();
    assert_eq!(b[0].address.addr(), ip("10.0.0.3"));
    // duplicate refused, nothing leaked
    let e = ops::add(&c, "b", "eth0").unwrap_err();
    assert_eq!(e.code(), 100);
    assert_eq!(files(&t.0.join("n")).len(), 1);
}

#[test]
fn released_inodes_are_reused_and_the_pool_is_bounded() {
    let t = TempDir::new("spare");
    let c = hl(&t.0, "n", V4);
    let s = sc(&t.0, "n");
    let d = t.0.join("n");
    let pool = t.0.join(ipam::store::INDEX_DIR).join(".spare").join("n");
    let a = ops::add(&c, "a", "eth0").unwrap()[0].address.addr();
    let ino = fs::metadata(d.join(a.to_string())).unwrap().ino();
    assert_eq!(ops::del(&s, "a", "eth0").unwrap(), [a]);
    assert!(!d.join(a.to_string()).exists());
    assert_eq!(fs::read_dir(&pool).unwrap().count(), 1);
    // A longer owner than the spare's previous content, then a shorter one:
    // the bytes are exactly the reference's either way.
    let long = "b".repeat(64);
    let b = ops::add(&c, &long, "eth1").unwrap()[0].address.addr();
    let file = d.join(b.to_string());
    assert_eq!(fs::metadata(&file).unwrap().ino(), ino, "inode reused");
    assert_eq!(
        fs::read(&file).unwrap(),
        format!("{long}\r\neth1").as_bytes()
    );
    assert_eq!(fs::read_dir(&pool).unwrap().count(), 0);
    ops::del(&s, &long, "eth1").unwrap();
    let c2 = ops::add(&c, "c", "eth0").unwrap()[0].address.addr();
    assert_eq!(fs::read(d.join(c2.to_string())).unwrap(), b"c\r\neth0");
    ops::del(&s, "c", "eth0").unwrap();

    // A link planted in the pool is never written through.
    let victim = t.0.join("victim");
    fs::write(&victim, b"untouched").unwrap();
    fs::remove_dir_all(&pool).unwrap();
    fs::create_dir_all(&pool).unwrap();
    std::os::unix::fs::symlink(&victim, pool.join("0")).unwrap();
    let e = ops::add(&c, "e", "eth0").unwrap()[0].address.addr();
    assert_eq!(fs::read(d.join(e.to_string())).unwrap(), b"e\r\neth0");
    assert_eq!(fs::read(&victim).unwrap(), b"untouched");
    ops::del(&s, "e", "eth0").unwrap();
    fs::remove_dir_all(&pool).unwrap();

    // Many releases in a row keep at most 16 spares; the rest are unlinked.
    let ids: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
    for id in &ids {
        ops::add(&c, id, "eth0").unwrap();
    }
    for id in &ids {
        assert_eq!(ops::del(&s, id, "eth0").unwrap().len(), 1);
    }
    assert!(files(&d).is_empty());
    assert_eq!(fs::read_dir(&pool).unwrap().count(), 16);
    // The index never counts spares: a rebuild sees an empty network.
    fs::remove_dir_all(t.0.join(ipam::store::INDEX_DIR).join("n")).unwrap();
    for id in &ids[..20] {
        ops::add(&c, id, "eth0").unwrap();
    }
    assert_eq!(files(&d).len(), 20);
    assert_eq!(fs::read_dir(&pool).unwrap().count(), 0);
}

#[test]
fn index_buckets_overflow_and_rebuild() {
    // Long container IDs overflow the fixed-size bucket slots into overflow
    // files; lookups must still find every owner, before and after a rebuild.
    let t = TempDir::new("overflow");
    let c = hl(&t.0, "n", r#"[[{"subnet":"10.1.0.0/20"}]]"#);
    let s = sc(&t.0, "n");
    let id = |i: usize| format!("{i:0>180}");
    let n = 1200;
    let mut got = Vec::new();
    for i in 0..n {
        got.push(ops::add(&c, &id(i), "eth0").unwrap()[0].address.addr());
    }
    let idx = t.0.join(ipam::store::INDEX_DIR).join("n");
    assert!(
        fs::read_dir(&idx).unwrap().any(|e| {
            let name = e.unwrap().file_name();
            let name = name.to_string_lossy();
            name.starts_with('b') && name != "buckets"
        }),
        "some bucket overflowed"
    );
    for i in (0..n).step_by(2) {
        assert_eq!(ops::del(&s, &id(i), "eth0").unwrap(), [got[i]]);
    }
    fs::remove_file(idx.join("state")).unwrap();
    for i in (1..n).step_by(2) {
        assert_eq!(ops::check(&s, &id(i), "eth0").unwrap(), [got[i]]);
        assert!(ops::check(&s, &id(i - 1), "eth0").unwrap().is_empty());
    }
    assert_eq!(files(&t.0.join("n")).len(), n / 2);
}

#[test]
fn requested_addresses() {
    let t = TempDir::new("req");
    let text = conf(&t.0, "n", V4);
    let c = HostLocalConfig::parse(text.as_bytes(), &[ip("10.0.0.50")]).unwrap();
    assert_eq!(
        ops::add(&c, "a", "eth0").unwrap()[0].address.addr(),
        ip("10.0.0.50")
    );
    let e = ops::add(&c, "b", "eth0").unwrap_err();
    assert_eq!(e.code(), 11);
    let c2 = HostLocalConfig::parse(text.as_bytes(), &[ip("10.0.0.1")]).unwrap();
    assert_eq!(ops::add(&c2, "b", "eth0").unwrap_err().code(), 7);
    let c3 = HostLocalConfig::parse(text.as_bytes(), &[ip("10.9.0.1")]).unwrap();
    assert_eq!(ops::add(&c3, "b", "eth0").unwrap_err().code(), 7);
    assert_eq!(files(&t.0.join("n")).len(), 1);
}

#[test]
fn foreign_changes_are_noticed() {
    let t = TempDir::new("foreign");
    let c = hl(&t.0, "n", V4);
    let s = sc(&t.0, "n");
    let d = t.0.join("n");
    ops::add(&c, "a", "eth0").unwrap();
    // the reference writes a file: the index must see it
    fs::write(d.join("10.0.0.3"), "b\r\neth0").unwrap();
    assert_eq!(ops::check(&s, "b", "eth0").unwrap(), [ip("10.0.0.3")]);
    assert_eq!(ops::add(&c, "b", "eth0").unwrap_err().code(), 100);
    // the reference deletes ours
    fs::remove_file(d.join("10.0.0.2")).unwrap();
    assert!(ops::check(&s, "a", "eth0").unwrap().is_empty());
    assert!(ops::del(&s, "a", "eth0").unwrap().is_empty());
    // content rewritten in place (no directory change): the hit is verified
    ops::add(&c, "x", "eth0").unwrap();
    let x = ops::check(&s, "x", "eth0").unwrap()[0];
    fs::write(d.join(x.to_string()), "y\r\neth0").unwrap();
    assert!(ops::check(&s, "x", "eth0").unwrap().is_empty());
    assert_eq!(ops::check(&s, "y", "eth0").unwrap(), [x]);
    // an old-format file (ID only) belongs to every ifname of that ID
    fs::write(d.join("10.0.0.100"), "old\n").unwrap();
    assert_eq!(ops::check(&s, "old", "eth7").unwrap(), [ip("10.0.0.100")]);
    assert_eq!(ops::del(&s, "old", "eth7").unwrap(), [ip("10.0.0.100")]);
    // a stale temp file of a killed holder is removed by the next locker
    fs::write(d.join(ipam::store::TMP_FILE), "half").unwrap();
    ops::check(&s, "y", "eth0").unwrap();
    assert!(!d.join(ipam::store::TMP_FILE).exists());
    // a deleted index is rebuilt
    fs::remove_dir_all(t.0.join(ipam::store::INDEX_DIR)).unwrap();
    assert_eq!(ops::check(&s, "y", "eth0").unwrap(), [x]);
}

#[test]
fn gc_and_status() {
    let t = TempDir::new("gc");
    let c = hl(&t.0, "n", r#"[[{"subnet":"10.0.0.0/29"}]]"#);
    let s = sc(&t.0, "n");
    for id in ["a", "b", "c"] {
        ops::add(&c, id, "eth0").unwrap();
    }
    fs::write(t.0.join("n").join("10.0.0.6"), "old").unwrap();
    ops::status(&c).unwrap();
    let removed = ops::gc(
        &s,
        &[("a".into(), "eth0".into()), ("old".into(), "eth1".into())],
    )
    .unwrap();
    let mut gone: Vec<String> = removed.iter().map(|(_, o)| o.id.clone()).collect();
    gone.sort();
    assert_eq!(gone, ["b", "c"]);
    assert_eq!(files(&t.0.join("n")).len(), 2);
    assert!(ops::check(&s, "b", "eth0").unwrap().is_empty());
    // fill the /29 (5 usable): status reports exhaustion, ADD says try again
    for id in ["d", "e", "f"] {
        ops::add(&c, id, "eth0").unwrap();
    }
    let e = ops::status(&c).unwrap_err();
    assert!(matches!(e, ipam::Error::Exhausted { .. }));
    assert_eq!(ops::add(&c, "g", "eth0").unwrap_err().code(), 11);
}

#[test]
fn two_hundred_concurrent_adds_threads() {
    let t = TempDir::new("threads");
    let c = hl(&t.0, "n", r#"[[{"subnet":"10.1.0.0/23"}]]"#);
    std::thread::scope(|sc| {
        for i in 0..200 {
            let c = &c;
            sc.spawn(move || {
                ops::add(c, &format!("c{i}"), "eth0").unwrap();
            });
        }
    });
    let f = files(&t.0.join("n"));
    assert_eq!(f.len(), 200);
    let owners: HashSet<&String> = f.iter().map(|(_, o)| o).collect();
    assert_eq!(owners.len(), 200);
    let s = sc(&t.0, "n");
    for i in 0..200 {
        assert_eq!(ops::check(&s, &format!("c{i}"), "eth0").unwrap().len(), 1);
    }
}

/// Child mode for the process tests: `RCNI_IPAM_CHILD=<dir>:<mode>:<tag>`.
#[test]
fn child_worker() {
    let Ok(spec) = std::env::var("RCNI_IPAM_CHILD") else {
        return;
    };
    let mut parts = spec.splitn(3, ':');
    let (Some(dir), Some(mode), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let c = hl(
        &dir,
        "n",
        r#"[[{"subnet":"10.2.0.0/22"}],[{"subnet":"2001:db8:2::/64"}]]"#,
    );
    let s = sc(&dir, "n");
    match mode {
        "add50" => {
            for i in 0..50 {
                ops::add(&c, &format!("{tag}-{i}"), "eth0").unwrap();
            }
        }
        "churn" => {
            // add/del forever until killed
            let mut i = 0u64;
            loop {
                let id = format!("{tag}-{i}");
                ops::add(&c, &id, "eth0").unwrap();
                match i % 3 {
                    0 => {}
                    _ => {
                        ops::del(&s, &id, "eth0").unwrap();
                    }
                }
                i += 1;
            }
        }
        _ => {}
    }
}

fn spawn_child(dir: &Path, mode: &str, tag: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_worker", "--nocapture", "--test-threads=1"])
        .env("RCNI_IPAM_CHILD", format!("{}:{mode}:{tag}", dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn two_hundred_concurrent_adds_processes() {
    let t = TempDir::new("procs");
    let kids: Vec<_> = (0..4)
        .map(|k| spawn_child(&t.0, "add50", &format!("p{k}")))
        .collect();
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    let f = files(&t.0.join("n"));
    assert_eq!(f.len(), 400); // 200 attachments, dual stack
    let v4: HashSet<IpAddr> = f
        .iter()
        .map(|(ip, _)| *ip)
        .filter(IpAddr::is_ipv4)
        .collect();
    assert_eq!(v4.len(), 200);
}

#[test]
fn kill_9_during_add_then_gc_is_consistent() {
    let t = TempDir::new("kill");
    let d = t.0.join("n");
    let mut seed: u64 = std::process::id() as u64 * 2654435761;
    for round in 0..12 {
        let mut k = spawn_child(&t.0, "churn", &format!("r{round}"));
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 60));
        k.kill().unwrap();
        k.wait().unwrap();
        // every allocation file is complete
        for (ip, content) in files(&d) {
            let (id, ifn) = content
                .split_once("\r\n")
                .unwrap_or_else(|| panic!("{ip}: {content:?}"));
            assert!(id.starts_with('r') && ifn == "eth0", "{ip}: {content:?}");
        }
    }
    let s = sc(&t.0, "n");
    // the store agrees with itself: each attachment has at most one address per family
    let store = DiskStore::open(Some(&t.0), "n").unwrap();
    let mut g = store.lock().unwrap();
    let all = g.all().unwrap();
    let ids: HashSet<String> = all.iter().map(|(_, o)| o.id.clone()).collect();
    for id in &ids {
        let mine = g.get_by_id(id, "eth0").unwrap();
        assert!(mine.len() <= 2, "{id}: {mine:?}");
        let expect: HashSet<IpAddr> = all
            .iter()
            .filter(|(_, o)| &o.id == id)
            .map(|(ip, _)| *ip)
            .collect();
        assert_eq!(mine.iter().copied().collect::<HashSet<_>>(), expect);
    }
    drop(g);
    // GC with nothing valid empties the store; nothing half-written blocks ADD
    ops::gc(&s, &[]).unwrap();
    assert!(files(&d).is_empty());
    assert!(!d.join(ipam::store::TMP_FILE).exists());
    let c = hl(
        &t.0,
        "n",
        r#"[[{"subnet":"10.2.0.0/22"}],[{"subnet":"2001:db8:2::/64"}]]"#,
    );
    assert_eq!(ops::add(&c, "after", "eth0").unwrap().len(), 2);
}

// ---- interop with the reference plugin ----

fn reference(cmd: &str, conf: &str, id: &str, ifname: &str, args: &str) -> (bool, String) {
    let mut child = Command::new(REFERENCE)
        .env_clear()
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", "/proc/self/ns/net")
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", "/usr/lib/cni")
        .env("CNI_ARGS", args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn interop_reference_allocates_rcni_releases() {
    assert!(
        Path::new(REFERENCE).exists(),
        "{REFERENCE} missing: apt-get install containernetworking-plugins (scripts/dev.sh setup does)"
    );
    let t = TempDir::new("interop1");
    let text = conf(
        &t.0,
        "n",
        r#"[[{"subnet":"10.3.0.0/24"}],[{"subnet":"2001:db8:3::/64"}]]"#,
    );
    for id in ["r1", "r2", "r3"] {
        let (ok, out) = reference("ADD", &text, id, "eth0", "");
        assert!(ok, "{out}");
    }
    let c = HostLocalConfig::parse(text.as_bytes(), &[]).unwrap();
    let s = sc(&t.0, "n");
    assert_eq!(ops::check(&s, "r2", "eth0").unwrap().len(), 2);
    // no duplicate, and round robin continues after the reference's cursor
    let a = ops::add(&c, "x", "eth0").unwrap();
    assert_eq!(a[0].address.addr(), ip("10.3.0.5"));
    assert_eq!(ops::add(&c, "r1", "eth0").unwrap_err().code(), 100);
    let mut rel = ops::del(&s, "r2", "eth0").unwrap();
    rel.sort();
    assert_eq!(rel, [ip("10.3.0.3"), ip("2001:db8:3::3")]);
    // the reference sees our allocation and allocates after it
    let (ok, out) = reference("ADD", &text, "r4", "eth0", "");
    assert!(ok, "{out}");
    assert!(out.contains("10.3.0.6/24"), "{out}");
    assert_eq!(ops::check(&s, "r4", "eth0").unwrap().len(), 2);
}

#[test]
fn interop_rcni_allocates_reference_releases() {
    assert!(
        Path::new(REFERENCE).exists(),
        "{REFERENCE} missing: apt-get install containernetworking-plugins (scripts/dev.sh setup does)"
    );
    let t = TempDir::new("interop2");
    let text = conf(&t.0, "n", r#"[[{"subnet":"10.4.0.0/24"}]]"#);
    let c = HostLocalConfig::parse(text.as_bytes(), &[]).unwrap();
    let s = sc(&t.0, "n");
    ops::add(&c, "a", "eth0").unwrap();
    ops::add(&c, "b", "eth0").unwrap();
    // the reference refuses a duplicate of ours and releases ours
    let (ok, _) = reference("ADD", &text, "a", "eth0", "");
    assert!(!ok);
    let (ok, out) = reference("DEL", &text, "a", "eth0", "");
    assert!(ok, "{out}");
    assert!(!t.0.join("n/10.4.0.2").exists());
    assert!(ops::check(&s, "a", "eth0").unwrap().is_empty());
    assert_eq!(ops::check(&s, "b", "eth0").unwrap(), [ip("10.4.0.3")]);
    // the reference's requested-IP path sees our files too
    let (ok, _) = reference("ADD", &text, "z", "eth0", "IP=10.4.0.3");
    assert!(!ok);
    // and the reference continues round robin after our cursor
    let (ok, out) = reference("ADD", &text, "c", "eth0", "");
    assert!(ok, "{out}");
    assert!(out.contains("10.4.0.4/24"), "{out}");
    assert_eq!(ops::del(&s, "c", "eth0").unwrap(), [ip("10.4.0.4")]);
    let names: Vec<_> = files(&t.0.join("n"))
        .into_iter()
        .map(|(ip, _)| ip)
        .collect();
    assert_eq!(names, [ip("10.4.0.3")]);
}

#[test]
fn full_pool_walk_skips_taken_pages_and_sees_foreign_changes() {
    let t = TempDir::new("walk");
    let c = hl(&t.0, "n", r#"[[{"subnet":"10.9.0.0/24"}]]"#);
    let s = sc(&t.0, "n");
    let d = t.0.join("n");
    for k in 0..253 {
        ops::add(&c, &format!("c{k}"), "eth0").unwrap();
    }
    let page =
        t.0.join(ipam::store::INDEX_DIR)
            .join("n")
            .join("taken-v4-10.9");
    let bits = fs::read(&page).unwrap();
    assert_eq!(bits.len(), 8192);
    // .2 ..= .254 taken: bits of byte 0 from .2 on, through byte 31 (.248-.255) but .255
    assert_eq!(bits[0], 0b1111_1100);
    assert_eq!(bits[31], 0b0111_1111);
    assert_eq!(ops::add(&c, "full", "eth0").unwrap_err().code(), 11);
    // A hole in the middle: the cursor (.254) must wrap and walk to it.
    assert_eq!(ops::del(&s, "c99", "eth0").unwrap(), [ip("10.9.0.101")]);
    assert_eq!(fs::read(&page).unwrap()[101 / 8] & (1 << (101 % 8)), 0);
    let a = ops::add(&c, "walker", "eth0").unwrap();
    assert_eq!(a[0].address.addr(), ip("10.9.0.101"));
    // The cursor is gone (a restore) and the reference released one
    // behind our back: the walk from the start finds it.
    fs::remove_file(d.join("last_reserved_ip.0")).unwrap();
    fs::remove_file(d.join("10.9.0.50")).unwrap();
    let b = ops::add(&c, "after-restore", "eth0").unwrap();
    assert_eq!(b[0].address.addr(), ip("10.9.0.50"));
    // A deleted page is no error: the walk falls back to the files.
    assert_eq!(ops::del(&s, "c10", "eth0").unwrap(), [ip("10.9.0.12")]);
    fs::remove_file(&page).unwrap();
    let e = ops::add(&c, "nopage", "eth0").unwrap();
    assert_eq!(e[0].address.addr(), ip("10.9.0.12"));
    assert_eq!(files(&d).len(), 253);
}

// ---- changes by someone else that need no rebuild (issue 14) ----

fn state_of(data: &Path, net: &str) -> String {
    fs::read_to_string(data.join(ipam::store::INDEX_DIR).join(net).join("state")).unwrap()
}

#[test]
fn cursor_removal_keeps_the_index_and_a_miss_still_rescans() {
    let t = TempDir::new("nocursor");
    let c = hl(&t.0, "n", r#"[[{"subnet":"10.5.0.0/24"}]]"#);
    let s = sc(&t.0, "n");
    let d = t.0.join("n");
    for k in 0..10 {
        ops::add(&c, &format!("c{k}"), "eth0").unwrap();
    }
    assert!(!state_of(&t.0, "n").contains("unverified"));
    let cursor_ino = fs::metadata(d.join("last_reserved_ip.0")).unwrap().ino();
    // A reboot or a restore drops the cursor: no rebuild (the state stays
    // marked unverified until one), and the walk starts over from the
    // first address, skipping the taken ones.
    fs::remove_file(d.join("last_reserved_ip.0")).unwrap();
    let a = ops::add(&c, "x", "eth0").unwrap();
    assert_eq!(a[0].address.addr(), ip("10.5.0.12"));
    assert!(state_of(&t.0, "n").contains("unverified"));
    // The new cursor is the old inode (kept by the index's link), written
    // like any cursor, 0644.
    let md = fs::metadata(d.join("last_reserved_ip.0")).unwrap();
    assert_eq!(md.ino(), cursor_ino);
    assert_eq!(md.mode() & 0o777, 0o644);
    assert_eq!(
        fs::read(d.join("last_reserved_ip.0")).unwrap(),
        b"10.5.0.12"
    );
    // The new cursor is tracked again: removing it once more is accepted.
    fs::remove_file(d.join("last_reserved_ip.0")).unwrap();
    assert_eq!(ops::del(&s, "c3", "eth0").unwrap(), [ip("10.5.0.5")]);
    assert!(state_of(&t.0, "n").contains("unverified"));
    // A duplicate of one of ours is still refused from the index.
    assert_eq!(ops::add(&c, "c4", "eth0").unwrap_err().code(), 100);
    // A lookup that finds nothing while unverified rescans (and so clears
    // the mark); an idempotent DEL stays a success.
    assert!(ops::del(&s, "never", "eth0").unwrap().is_empty());
    assert!(!state_of(&t.0, "n").contains("unverified"));
    // Still no cursor: the walk starts over and finds c3's address.
    let b = ops::add(&c, "y", "eth0").unwrap();
    assert_eq!(b[0].address.addr(), ip("10.5.0.5"));
    assert_eq!(files(&d).len(), 11);
}

#[test]
fn file_copied_in_before_the_cursor_removal_is_found_by_del_and_check() {
    // The one change the cursor evidence cannot see: an allocation file
    // created by something other than host-local, then the cursor removed.
    let t = TempDir::new("copyin");
    let c = hl(&t.0, "n", r#"[[{"subnet":"10.6.0.0/24"}]]"#);
    let s = sc(&t.0, "n");
    let d = t.0.join("n");
    ops::add(&c, "a", "eth0").unwrap();
    fs::write(d.join("10.6.0.3"), "restored\r\neth0").unwrap();
    fs::remove_file(d.join("last_reserved_ip.0")).unwrap();
    // ADD walks from the start: .2 ours, .3 taken by the file (the
    // exclusive create fails, the walk goes on).
    let b = ops::add(&c, "b", "eth0").unwrap();
    assert_eq!(b[0].address.addr(), ip("10.6.0.4"));
    assert_eq!(
        ops::check(&s, "restored", "eth0").unwrap(),
        [ip("10.6.0.3")]
    );
    assert_eq!(ops::del(&s, "restored", "eth0").unwrap(), [ip("10.6.0.3")]);
    assert!(!d.join("10.6.0.3").exists());
    assert_eq!(ops::check(&s, "b", "eth0").unwrap(), [ip("10.6.0.4")]);
}

#[test]
fn stale_taken_bits_are_rescanned_before_the_pool_is_full() {
    let t = TempDir::new("fullrescan");
    let c = hl(&t.0, "n", r#"[[{"subnet":"10.7.0.0/29"}]]"#);
    let d = t.0.join("n");
    for k in 0..5 {
        ops::add(&c, &format!("c{k}"), "eth0").unwrap();
    }
    assert_eq!(ops::add(&c, "full", "eth0").unwrap_err().code(), 11);
    // Someone releases .4, then removes the cursor: the last change is the
    // cursor's removal, so the index is kept, and its page still says .4
    // is taken. The walk finds nothing, rescans, and finds .4.
    fs::remove_file(d.join("10.7.0.4")).unwrap();
    fs::remove_file(d.join("last_reserved_ip.0")).unwrap();
    let a = ops::add(&c, "late", "eth0").unwrap();
    assert_eq!(a[0].address.addr(), ip("10.7.0.4"));
    assert_eq!(fs::read(d.join("10.7.0.4")).unwrap(), b"late\r\neth0");
    // That rescan listed names only: the index was not rebuilt.
    assert!(state_of(&t.0, "n").contains("unverified"));
    assert_eq!(ops::add(&c, "full", "eth0").unwrap_err().code(), 11);
    assert_eq!(files(&d).len(), 5);
}

#[test]
fn other_changes_with_the_cursor_removed_still_rebuild() {
    let t = TempDir::new("rebuild5");
    let c = hl(&t.0, "n", r#"[[{"subnet":"10.8.0.0/24"}]]"#);
    let s = sc(&t.0, "n");
    let d = t.0.join("n");
    ops::add(&c, "a", "eth0").unwrap();
    // A file created while every cursor stays: rebuilt, so the new owner
    // is known even to ADD's duplicate check.
    fs::write(d.join("10.8.0.9"), "m\r\neth0").unwrap();
    assert_eq!(ops::add(&c, "m", "eth0").unwrap_err().code(), 100);
    assert!(!state_of(&t.0, "n").contains("unverified"));
    // The cursor rewritten in place (what the reference does after each
    // reservation) together with a new file: rebuilt too.
    fs::write(d.join("10.8.0.20"), "p\r\neth0").unwrap();
    fs::write(d.join("last_reserved_ip.0"), "10.8.0.20").unwrap();
    assert_eq!(ops::add(&c, "p", "eth0").unwrap_err().code(), 100);
    // The cursor replaced by a new inode (a restore by rename): rebuilt.
    fs::write(d.join("10.8.0.30"), "q\r\neth0").unwrap();
    fs::write(d.join("cursor.tmp"), "10.8.0.30").unwrap();
    fs::rename(d.join("cursor.tmp"), d.join("last_reserved_ip.0")).unwrap();
    assert_eq!(ops::add(&c, "q", "eth0").unwrap_err().code(), 100);
    assert_eq!(ops::check(&s, "q", "eth0").unwrap(), [ip("10.8.0.30")]);
    // The index's own cursor link gone: rebuilt.
    fs::remove_file(t.0.join(ipam::store::INDEX_DIR).join("n").join("cursor.0")).unwrap();
    fs::write(d.join("10.8.0.40"), "r\r\neth0").unwrap();
    fs::remove_file(d.join("last_reserved_ip.0")).unwrap();
    assert_eq!(ops::add(&c, "r", "eth0").unwrap_err().code(), 100);
}

#[test]
fn interop_reference_add_and_del_with_the_cursor_removed() {
    assert!(
        Path::new(REFERENCE).exists(),
        "{REFERENCE} missing: apt-get install containernetworking-plugins (scripts/dev.sh setup does)"
    );
    let t = TempDir::new("interop3");
    let text = conf(&t.0, "n", r#"[[{"subnet":"10.10.0.0/24"}]]"#);
    let c = HostLocalConfig::parse(text.as_bytes(), &[]).unwrap();
    let s = sc(&t.0, "n");
    let d = t.0.join("n");
    for id in ["a", "b", "c"] {
        ops::add(&c, id, "eth0").unwrap();
    }
    // The reference allocates (rewriting our cursor inode in place), then
    // the cursor is removed: the rewrite shows through our link, so the
    // index is rebuilt and even ADD's duplicate check sees the reference's
    // allocation.
    let (ok, out) = reference("ADD", &text, "r", "eth0", "");
    assert!(ok, "{out}");
    assert!(out.contains("10.10.0.5/24"), "{out}");
    fs::remove_file(d.join("last_reserved_ip.0")).unwrap();
    assert_eq!(ops::add(&c, "r", "eth0").unwrap_err().code(), 100);
    assert_eq!(ops::check(&s, "r", "eth0").unwrap(), [ip("10.10.0.5")]);
    // The reference allocates with no cursor present (it creates one):
    // seen too.
    assert!(!d.join("last_reserved_ip.0").exists());
    let (ok, out) = reference("ADD", &text, "r2", "eth0", "");
    assert!(ok, "{out}");
    assert!(out.contains("10.10.0.6/24"), "{out}");
    assert_eq!(ops::add(&c, "r2", "eth0").unwrap_err().code(), 100);
    // The reference releases one of ours, then the cursor goes: the index
    // is kept (the last change was the removal), so the released address
    // counts as taken until a rescan; the walk takes the next free one and
    // never an address someone holds.
    let (ok, out) = reference("DEL", &text, "b", "eth0", "");
    assert!(ok, "{out}");
    fs::remove_file(d.join("last_reserved_ip.0")).unwrap();
    let x = ops::add(&c, "x", "eth0").unwrap();
    assert_eq!(x[0].address.addr(), ip("10.10.0.7"));
    assert!(ops::check(&s, "b", "eth0").unwrap().is_empty());
    // The reference sees every file, ours and its own.
    let (ok, out) = reference("ADD", &text, "r3", "eth0", "");
    assert!(ok, "{out}");
    assert!(out.contains("10.10.0.8/24"), "{out}");
    let owners: Vec<String> = files(&d).into_iter().map(|(_, o)| o).collect();
    let unique: HashSet<&String> = owners.iter().collect();
    assert_eq!(owners.len(), unique.len(), "{owners:?}");
    assert_eq!(owners.len(), 6, "{owners:?}");
}

#[test]
fn dual_stack_cursors_are_tracked_one_by_one() {
    let t = TempDir::new("dualcursor");
    let c = hl(
        &t.0,
        "n",
        r#"[[{"subnet":"10.11.0.0/24"}],[{"subnet":"2001:db8:11::/120"}]]"#,
    );
    let s = sc(&t.0, "n");
    let d = t.0.join("n");
    for k in 0..3 {
        ops::add(&c, &format!("c{k}"), "eth0").unwrap();
    }
    // One of the two cursors removed: kept index, both cursors back.
    fs::remove_file(d.join("last_reserved_ip.1")).unwrap();
    let a = ops::add(&c, "x", "eth0").unwrap();
    assert_eq!(a[0].address.addr(), ip("10.11.0.5"));
    assert_eq!(a[1].address.addr(), ip("2001:db8:11::5"));
    assert!(state_of(&t.0, "n").contains("unverified"));
    assert_eq!(
        fs::read(d.join("last_reserved_ip.1")).unwrap(),
        b"2001:db8:11::5"
    );
    // Both removed: kept too; the IPv4 walk starts over.
    fs::remove_file(d.join("last_reserved_ip.0")).unwrap();
    fs::remove_file(d.join("last_reserved_ip.1")).unwrap();
    assert_eq!(ops::del(&s, "c1", "eth0").unwrap().len(), 2);
    let b = ops::add(&c, "y", "eth0").unwrap();
    assert_eq!(b[0].address.addr(), ip("10.11.0.3"));
    assert_eq!(b[1].address.addr(), ip("2001:db8:11::3"));
    // One cursor rewritten in place (a reservation by someone else)
    // while the other is removed: rebuilt, so the mark goes.
    fs::write(d.join("last_reserved_ip.0"), "10.11.0.9").unwrap();
    fs::write(d.join("10.11.0.9"), "z\r\neth0").unwrap();
    fs::remove_file(d.join("last_reserved_ip.1")).unwrap();
    assert_eq!(ops::add(&c, "z", "eth0").unwrap_err().code(), 100);
    assert!(!state_of(&t.0, "n").contains("unverified"));
}
