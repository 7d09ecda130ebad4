//! Test support: a uniquely named namespace that is always deleted.

use std::process::Command;

use netns::NetNs;

use crate::Socket;

/// A named netns `rcni-nl-<test>-<pid>`, deleted on drop (also on panic).
pub struct TestNs {
    pub name: String,
    pub ns: NetNs,
}

impl TestNs {
    pub fn new(test: &str) -> TestNs {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "netlink tests need root (CI runs as root)");
        let name = format!("rcni-nl-{}-{}", test, std::process::id());
        let _ = netns::delete_named(&name); // a leftover from a killed run
        let ns = netns::create_named(&name).expect("create test netns");
        TestNs { name, ns }
    }

    pub fn sock(&self) -> Socket {
        Socket::route_in(&self.ns).expect("netlink socket in test netns")
    }

    fn run(&self, prog: &str, args: &[&str]) -> String {
        let out = Command::new(prog)
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {prog}: {e}"));
        assert!(
            out.status.success(),
            "{prog} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ip -n NS <args>` output (use `-j` for JSON).
    pub fn ip(&self, args: &[&str]) -> String {
        self.run("ip", args)
    }

    /// `bridge -n NS <args>` output.
    pub fn bridge(&self, args: &[&str]) -> String {
        self.run("bridge", args)
    }

    /// `tc -n NS <args>` output.
    pub fn tc(&self, args: &[&str]) -> String {
        self.run("tc", args)
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if let Err(e) = netns::delete_named(&self.name) {
            eprintln!("warning: could not delete test netns {}: {e}", self.name);
        }
    }
}

/// Creates veth pair `a`/`b` in the socket's netns, both up; returns their indexes.
pub fn veth_up(s: &Socket, a: &str, b: &str) -> (u32, u32) {
    s.create_veth(a, b, None, None, None, None)
        .expect("create veth");
    let ia = s.link_by_name(a).expect("get").expect("exists").index;
    let ib = s.link_by_name(b).expect("get").expect("exists").index;
    s.set_link_up(ia).expect("up");
    s.set_link_up(ib).expect("up");
    (ia, ib)
}
