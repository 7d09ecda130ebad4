//! Configuring the container interface from a CNI result, and verifying it
//! again for CHECK.

use crate::error::{Error, Result, ResultExt};
use crate::ops::LinkOps;
use cni_spec::Result as CniResult;
use ipnet::IpNet;
use netlink::{AddressOptions, Family, Link, Socket};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How [`configure_iface`] configures the pod's interface.
#[derive(Debug, Clone, Copy, Default)]
pub struct IfaceOptions {
    /// Keep IPv6 duplicate address detection (and wait for it to settle).
    /// Otherwise addresses are added with IFA_F_NODAD: usable at once.
    pub dad: bool,
    /// Leave the link down (and add no routes): the bridge plugin's
    /// `disableContainerInterface`.
    pub keep_down: bool,
    /// Add the addresses while the link is still down and bring it up
    /// afterwards (the reference's order in `ipam.ConfigureIface`): with
    /// `arp_notify`/`ndisc_notify` set, the kernel then announces the new
    /// addresses (gratuitous ARP / unsolicited NA) as the link comes up.
    pub addresses_first: bool,
}

/// The IPs of `result` that belong to interface `ifname` (by index into
/// `interfaces`; IPs without an index count as this interface's, like Go).
fn ips_for<'a>(
    result: &'a CniResult,
    ifname: &'a str,
) -> impl Iterator<Item = &'a cni_spec::IpConfig> + 'a {
    result.ips.iter().filter(move |ip| match ip.interface {
        Some(i) => result.interfaces.get(i).is_some_and(|x| x.name == ifname),
        None => true,
    })
}

/// Adds the addresses of `result` meant for `link`, brings it up, and adds
/// the routes (a route without `gw` goes via the gateway of its family).
/// `sock` must be bound to the container namespace.
pub fn configure_iface<S: LinkOps + ?Sized>(
    sock: &S,
    link: &Link,
    result: &CniResult,
    opts: &IfaceOptions,
) -> Result<()> {
    let mut gw4 = None;
    let mut gw6 = None;
    let mut v6 = false;
    if !opts.keep_down && !opts.addresses_first && !link.up {
        // Up first: IPv4 prefix routes and gateway routes need a live link.
        sock.set_link_up(link.index)?;
    }
    for ip in ips_for(result, &link.name) {
        let addr = ip.address.addr();
        add_address(
            sock,
            link,
            addr,
            ip.address.prefix_len(),
            &AddressOptions {
                nodad: !opts.dad,
                ..Default::default()
            },
        )
        .with_context(|| format!("failed to add IP addr {} to {:?}", ip.address, link.name))?;
        match addr {
            IpAddr::V4(_) => gw4 = gw4.or(ip.gateway),
            IpAddr::V6(_) => {
                v6 = true;
                gw6 = gw6.or(ip.gateway)
            }
        }
    }
    if opts.keep_down {
        return Ok(());
    }
    if opts.addresses_first && !link.up {
        // The kernel adds the IPv4 prefix routes as the link comes up.
        sock.set_link_up(link.index)?;
    }
    if v6 && opts.dad {
        settle_addresses(sock, link.index, Duration::from_secs(10))?;
    }
    for r in &result.routes {
        let dst = r.dst;
        let gw = r.gw.or(if dst.addr().is_ipv4() { gw4 } else { gw6 });
        let route = result_route(r, link.index, gw);
        // Alongside routes of other interfaces to the same destination (a
        // second attachment's default route); an identical route already
        // there is fine.
        match sock.add_route_alongside(&route) {
            Ok(()) => {}
            Err(e) if e.is_exists() => {}
            // A kernel refusal is an I/O failure (code 5), not a bad config.
            Err(e) => {
                return Err(Error::from(e).context(format!(
                    "failed to add route {dst} via {} dev {:?}",
                    gw.map(|g| g.to_string()).unwrap_or_else(|| "-".into()),
                    link.name
                )))
            }
        }
    }
    Ok(())
}

/// The kernel route for result route `r` out of link `dev`, via `gw` (the
/// route's own gateway, or the family's gateway the caller chose), with
/// every optional field of a 1.1.0 route that `r` sets.
pub fn result_route(r: &cni_spec::Route, dev: u32, gw: Option<IpAddr>) -> netlink::Route {
    let mut route = netlink::Route::to(r.dst.addr(), r.dst.prefix_len()).dev(dev);
    if let Some(gw) = gw {
        route = route.via(gw);
    }
    if let Some(t) = r.table {
        route = route.table(t);
    }
    if let Some(s) = r.scope {
        route = route.scope(s);
    }
    if let Some(p) = r.priority {
        route = route.metric(p);
    }
    if let Some(m) = r.mtu {
        route = route.mtu(m);
    }
    if let Some(a) = r.adv_mss {
        route = route.advmss(a);
    }
    route
}

/// Adds `addr/prefix` to `link` (through `sock`, bound to the link's
/// namespace). When the kernel refuses an IPv6 address because the runtime
/// disabled IPv6 in the pod (`disable_ipv6=1`, EACCES), IPv6 is turned back
/// on for `lo` and the link, as the reference's `ipam.ConfigureIface` does
/// before adding an IPv6 address, and the add is retried. Checked only on
/// that failure, so the common case costs no sysctl.
pub fn add_address<S: LinkOps + ?Sized>(
    sock: &S,
    link: &Link,
    addr: IpAddr,
    prefix: u8,
    opts: &AddressOptions,
) -> std::result::Result<(), netlink::Error> {
    match sock.add_address_with(link.index, addr, prefix, opts) {
        Err(e) if addr.is_ipv6() && e.errno() == Some(libc::EACCES) => {
            if enable_ipv6(sock, &link.name).is_err() {
                return Err(e);
            }
            sock.add_address_with(link.index, addr, prefix, opts)
        }
        r => r,
    }
}

/// Writes `disable_ipv6=0` for `lo` and `ifname` in `sock`'s namespace.
fn enable_ipv6<S: LinkOps + ?Sized>(sock: &S, ifname: &str) -> Result<()> {
    let write = || -> Result<()> {
        for dev in ["lo", ifname] {
            let key = format!("net/ipv6/conf/{dev}/disable_ipv6");
            if crate::sysctl::sysctl_get(&key).is_ok_and(|v| v != "0") {
                crate::sysctl::sysctl_set(&key, "0")?;
            }
        }
        Ok(())
    };
    match sock.netns_path() {
        Some(p) => netns::NetNs::open(p)?.run(write)?,
        None => write(),
    }
}

/// Waits (at most `timeout`) until each of `links` is operationally up.
///
/// A veth end gets carrier when its peer comes up, but the kernel attaches
/// its queueing discipline a moment later, from the link-watch work queue;
/// until then everything sent on it is dropped. A first packet to a fresh
/// pod (its neighbour solicitation, say) lost that way costs a 1 s
/// retransmission, so ADD returns only once both ends can carry traffic.
pub fn wait_operational(links: &[(&Socket, u32)], timeout: Duration) -> Result<()> {
    let start = Instant::now();
    for (sock, index) in links {
        loop {
            let up = sock
                .link_by_index(*index)?
                .is_some_and(|l| l.operstate == netlink::OperState::Up);
            if up || start.elapsed() > timeout {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    Ok(())
}

/// Waits until no IPv6 address of `index` is tentative (DAD done), like
/// Go's `ip.SettleAddresses`. Only used when DAD was asked for.
fn settle_addresses<S: LinkOps + ?Sized>(sock: &S, index: u32, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let addrs = sock.addresses(Some(index), Family::V6)?;
        if let Some(a) = addrs
            .iter()
            .find(|a| a.flags & netlink::addr::IFA_F_DADFAILED != 0)
        {
            return Err(Error::Exists(format!(
                "duplicate address detection failed for {}",
                a.addr
            )));
        }
        if !addrs.iter().any(|a| {
            a.flags & netlink::addr::IFA_F_TENTATIVE != 0 && a.scope != netlink::addr::RT_SCOPE_LINK
        }) {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(Error::Invalid(
                "IPv6 addresses still tentative after 10 s of DAD".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// CHECK: the container interface `ifname` in `sandbox` as `prev` lists
/// it, and its link as `sock` (bound to the container's namespace) sees
/// it; code 999 (as the reference) when either is missing.
pub fn prev_container_link<S: LinkOps + ?Sized>(
    sock: &S,
    prev: &CniResult,
    ifname: &str,
    sandbox: &str,
) -> Result<Link> {
    let c_if = prev
        .interfaces
        .iter()
        .find(|i| i.name == ifname && i.sandbox == sandbox)
        .ok_or_else(|| {
            Error::Missing(format!(
                "no interface {ifname:?} with sandbox {sandbox} in prevResult"
            ))
        })?;
    sock.link_by_name(&c_if.name)?.ok_or_else(|| {
        Error::Missing(format!(
            "container Interface name in prevResult: {} not found",
            c_if.name
        ))
    })
}

/// CHECK: every IP of `result` for `link` is on it.
pub fn validate_iface_ips<S: LinkOps + ?Sized>(
    sock: &S,
    link: &Link,
    result: &CniResult,
) -> Result<()> {
    let have = sock.addresses(Some(link.index), Family::All)?;
    for ip in ips_for(result, &link.name) {
        let want: IpNet = ip.address;
        if !have
            .iter()
            .any(|a| a.addr == want.addr() && a.prefix == want.prefix_len())
        {
            return Err(Error::Missing(format!(
                "Failed to match addr {want} on interface {}",
                link.name
            )));
        }
    }
    Ok(())
}

/// CHECK: every route of `result` exists (same destination and gateway).
pub fn validate_routes<S: LinkOps + ?Sized>(sock: &S, result: &CniResult) -> Result<()> {
    if result.routes.is_empty() {
        return Ok(());
    }
    let have = sock.routes(Family::All, None)?;
    for r in &result.routes {
        let found = have.iter().any(|k| {
            let dst_ok = match k.dst {
                Some((ip, p)) => ip == r.dst.addr() && p == r.dst.prefix_len(),
                None => r.dst.prefix_len() == 0 && k.family == Family::of(r.dst.addr()),
            };
            dst_ok && (r.gw.is_none() || k.gateway == r.gw)
        });
        if !found {
            return Err(Error::Missing(format!(
                "Failed to find route {} via {}",
                r.dst,
                r.gw.map(|g| g.to_string()).unwrap_or_else(|| "-".into())
            )));
        }
    }
    Ok(())
}

/// A socket in the pod's namespace at `netns`, for DEL: `None` when no
/// namespace was given or it is gone (nothing left to delete there).
pub fn open_pod(netns: Option<&std::path::Path>) -> Result<Option<Socket>> {
    let Some(path) = netns else {
        return Ok(None);
    };
    let ns = match netns::NetNs::open(path) {
        Ok(ns) => ns,
        Err(e) if e.is_gone() => return Ok(None),
        Err(e) => return Err(Error::UnknownContainer(e)),
    };
    Ok(Some(netlink::Socket::route_in(&ns)?))
}

/// Deletes the link `ifname` through `sock`, if there is one (one
/// RTM_DELLINK by name; none there is fine).
pub fn delete_link_named<S: LinkOps + ?Sized>(sock: &S, ifname: &str) -> Result<()> {
    sock.delete_link_by_name(ifname)?;
    Ok(())
}

#[cfg(test)]
mod fake_tests {
    //! Interface configuration on the recording fake: order, options and
    //! error codes, without root.
    use super::*;
    use crate::ops::fake::RecordingNet;

    fn result() -> CniResult {
        let mut r = CniResult::new("1.0.0");
        r.ips.push(cni_spec::IpConfig {
            interface: None,
            address: "10.0.0.2/24".parse().expect("net"),
            gateway: Some("10.0.0.1".parse().expect("ip")),
        });
        r.routes.push(cni_spec::Route::new(
            "0.0.0.0/0".parse().expect("net"),
            None,
        ));
        r.routes.push(cni_spec::Route::new(
            "10.9.0.0/16".parse().expect("net"),
            Some("10.0.0.254".parse().expect("ip")),
        ));
        r
    }

    fn setup() -> (RecordingNet, Link) {
        let net = RecordingNet::new();
        let index = net.add_existing("eth0");
        let link = Link {
            index,
            name: "eth0".into(),
            ..Default::default()
        };
        (net, link)
    }

    #[test]
    fn up_then_addresses_then_routes_via_the_family_gateway() {
        let (net, link) = setup();
        configure_iface(&net, &link, &result(), &IfaceOptions::default()).expect("ok");
        let i = link.index;
        assert_eq!(
            net.lines(),
            vec![
                format!("up {i}"),
                format!("addr {i} 10.0.0.2/24"),
                format!("route 0.0.0.0/0 via 10.0.0.1 dev {i}"),
                format!("route 10.9.0.0/16 via 10.0.0.254 dev {i}"),
            ]
        );
    }

    #[test]
    fn addresses_first_and_keep_down() {
        let (net, link) = setup();
        let opts = IfaceOptions {
            addresses_first: true,
            ..Default::default()
        };
        configure_iface(&net, &link, &result(), &opts).expect("ok");
        let i = link.index;
        assert_eq!(
            net.lines()[..2],
            [format!("addr {i} 10.0.0.2/24"), format!("up {i}")]
        );

        let (net, link) = setup();
        let opts = IfaceOptions {
            keep_down: true,
            ..Default::default()
        };
        configure_iface(&net, &link, &result(), &opts).expect("ok");
        assert_eq!(
            net.lines(),
            vec![format!("addr {} 10.0.0.2/24", link.index)]
        );
    }

    #[test]
    fn kernel_refusals_are_code_5_not_7() {
        let (net, link) = setup();
        net.fail_next("route 10.9.0.0/16", libc::ENETUNREACH);
        let e =
            configure_iface(&net, &link, &result(), &IfaceOptions::default()).expect_err("refused");
        assert_eq!(e.code(), 5, "{e}");
        assert!(
            e.to_string()
                .starts_with("failed to add route 10.9.0.0/16 via 10.0.0.254 dev \"eth0\""),
            "{e}"
        );

        let (net, link) = setup();
        net.fail_next("addr", libc::EINVAL);
        let e =
            configure_iface(&net, &link, &result(), &IfaceOptions::default()).expect_err("refused");
        assert_eq!(e.code(), 5, "{e}");
        assert!(
            !net.lines().iter().any(|l| l.starts_with("route")),
            "stops at the failure"
        );
    }

    #[test]
    fn an_existing_identical_route_is_fine() {
        let (net, link) = setup();
        net.fail_next("route 0.0.0.0/0", libc::EEXIST);
        configure_iface(&net, &link, &result(), &IfaceOptions::default()).expect("ok");
        assert_eq!(net.lines().len(), 4);
    }

    #[test]
    fn result_route_carries_every_field_the_result_sets() {
        let r: cni_spec::Route = serde_json::from_str(
            r#"{"dst":"10.9.0.0/16","mtu":1400,"advmss":1300,"priority":7,"table":100,"scope":253}"#,
        )
        .expect("route");
        let k = result_route(&r, 4, Some("10.0.0.1".parse().expect("ip")));
        assert_eq!(k.dst, Some(("10.9.0.0".parse().expect("ip"), 16)));
        assert_eq!(
            (k.oif, k.gateway),
            (Some(4), Some("10.0.0.1".parse().expect("ip")))
        );
        assert_eq!((k.table, k.scope, k.priority), (100, Some(253), Some(7)));
        assert_eq!((k.mtu, k.advmss), (Some(1400), Some(1300)));
        let bare: cni_spec::Route = serde_json::from_str(r#"{"dst":"0.0.0.0/0"}"#).expect("route");
        let k = result_route(&bare, 4, None);
        assert_eq!(
            (k.gateway, k.scope, k.priority, k.mtu),
            (None, None, None, None)
        );
    }
}
