//! The kernel's own veth costs: the floor under ADD and DEL.

use crate::report::{Figure, Stats};
use crate::Options;
use std::time::Instant;
use testutil::TestNs;

/// The kernel's own cost of creating and deleting one veth pair: the floor
/// under any plugin's ADD and DEL.
pub(crate) fn kernel_floor(o: &Options) -> (Figure, Figure) {
    let node = TestNs::new("kf");
    let pod = TestNs::new("kp");
    let sock = match netlink::Socket::route_in(node.ns()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("netlink: {e}");
            std::process::exit(1);
        }
    };
    let mut create = Vec::new();
    let mut delete = Vec::new();
    for i in 0..o.iterations + 3 {
        let t = Instant::now();
        if let Err(e) = sock.create_veth("kfloor0", "kpeer0", Some(pod.ns().fd()), None, None, None)
        {
            eprintln!("veth create: {e}");
            std::process::exit(1);
        }
        let c = t.elapsed();
        let t = Instant::now();
        if let Err(e) = sock.delete_link_by_name("kfloor0") {
            eprintln!("veth delete: {e}");
            std::process::exit(1);
        }
        let d = t.elapsed();
        if i >= 3 {
            create.push(c);
            delete.push(d);
        }
    }
    let mut fc = Figure::new("kernel: create one veth pair", "ms");
    fc.set("kernel", Stats::from_durations(&create));
    let mut fd = Figure::new("kernel: delete one veth pair", "ms");
    fd.set("kernel", Stats::from_durations(&delete));
    (fc, fd)
}

/// The kernel's own cost of deleting a veth pair in the state a bridge
/// plugin leaves it in: host end up and a bridge port, container end up
/// with an address. This is what a bridge DEL really asks of the kernel
/// (bridge-port teardown, address and route removal, two IPv6 devices), so
/// it is the fair floor under a bridge DEL; the bare veth above is the
/// lower bound.
pub(crate) fn kernel_floor_attached(o: &Options) -> Figure {
    pub(crate) fn fail(what: &str, e: impl std::fmt::Display) -> ! {
        eprintln!("{what}: {e}");
        std::process::exit(1);
    }
    let node = TestNs::new("kf");
    let pod = TestNs::new("kp");
    let host = netlink::Socket::route_in(node.ns()).unwrap_or_else(|e| fail("netlink", e));
    let cont = netlink::Socket::route_in(pod.ns()).unwrap_or_else(|e| fail("netlink", e));
    host.create_bridge("kfbr0", None, None)
        .unwrap_or_else(|e| fail("bridge", e));
    let br = match host.link_by_name("kfbr0") {
        Ok(Some(l)) => l,
        other => fail("bridge lookup", format!("{other:?}")),
    };
    host.set_link_up(br.index)
        .unwrap_or_else(|e| fail("bridge up", e));
    let mut delete = Vec::new();
    for i in 0..o.iterations + 3 {
        host.create_veth("kfloor0", "eth0", Some(pod.ns().fd()), None, None, None)
            .unwrap_or_else(|e| fail("veth create", e));
        let (h, c) = match (host.link_by_name("kfloor0"), cont.link_by_name("eth0")) {
            (Ok(Some(h)), Ok(Some(c))) => (h, c),
            other => fail("veth lookup", format!("{other:?}")),
        };
        host.set_master(h.index, br.index)
            .unwrap_or_else(|e| fail("master", e));
        host.set_link_up(h.index).unwrap_or_else(|e| fail("up", e));
        cont.set_link_up(c.index).unwrap_or_else(|e| fail("up", e));
        cont.add_address(c.index, std::net::IpAddr::from([10, 250, 0, 2]), 24)
            .unwrap_or_else(|e| fail("address", e));
        let t = Instant::now();
        if let Err(e) = cont.delete_link_by_name("eth0") {
            fail("veth delete", e);
        }
        if i >= 3 {
            delete.push(t.elapsed());
        }
    }
    let mut fd = Figure::new(
        "kernel: delete one veth pair attached like a bridge pod",
        "ms",
    );
    fd.set("kernel", Stats::from_durations(&delete));
    fd
}
