//! The agent's routes in the main table (protocol [`RTPROT_RCNI`]).

use std::net::{IpAddr, Ipv4Addr};

use netlink::route::RT_TABLE_MAIN;
use netlink::{Family, Route, Socket};

use super::{Report, Result, RTPROT_RCNI};

/// The metric a route has in the kernel: its priority, where none (and,
/// for IPv6, 0) means the kernel's default, 0 for IPv4 and 1024 for IPv6.
pub(super) fn metric(r: &Route) -> u32 {
    match (r.family, r.priority) {
        (Family::V6, None | Some(0)) => 1024,
        (_, p) => p.unwrap_or(0),
    }
}

/// Whether two routes of the main table are the same route: destination,
/// next hop, device, onlink and metric.
pub(super) fn same_route(a: &Route, b: &Route) -> bool {
    a.dst == b.dst
        && a.gateway == b.gateway
        && a.oif == b.oif
        && a.onlink == b.onlink
        && metric(a) == metric(b)
}

pub(super) fn describe_route(r: &Route) -> String {
    let mut s = match r.dst {
        Some((ip, p)) => format!("{ip}/{p}"),
        None => "default".into(),
    };
    if let Some(gw) = r.gateway {
        s.push_str(&format!(" via {gw}"));
    }
    if let Some(oif) = r.oif {
        s.push_str(&format!(" dev #{oif}"));
    }
    if r.onlink {
        s.push_str(" onlink");
    }
    let default = Route {
        priority: None,
        ..r.clone()
    };
    if metric(r) != metric(&default) {
        s.push_str(&format!(" metric {}", metric(r)));
    }
    s
}

/// What to do for one wanted route.
enum Step {
    /// It is there.
    Keep,
    /// Replace a route of ours with the same destination and metric: the
    /// kernel's key of a route, so the change leaves no gap.
    Replace,
    /// Add it, exclusively.
    Add,
}

/// Makes the agent's routes exactly `want`: every route of ours that is
/// not wanted exactly (metric included) is removed, so duplicates to a
/// wanted destination go too.
pub(super) fn sync_routes(sock: &Socket, want: &[Route], report: &mut Report) -> Result<()> {
    let mut have = sock.routes(Family::V4, Some(RT_TABLE_MAIN))?;
    have.extend(sock.routes(Family::V6, Some(RT_TABLE_MAIN))?);
    have.retain(|r| r.protocol == Some(RTPROT_RCNI));
    // Each route of ours serves at most one wanted route: first the exact
    // matches, then one replacement target per remaining wanted route.
    let mut used = vec![false; have.len()];
    let mut steps: Vec<Step> = want
        .iter()
        .map(
            |w| match (0..have.len()).find(|&i| !used[i] && same_route(w, &have[i])) {
                Some(i) => {
                    used[i] = true;
                    Step::Keep
                }
                None => Step::Add,
            },
        )
        .collect();
    for (w, step) in want.iter().zip(steps.iter_mut()) {
        if !matches!(step, Step::Add) {
            continue;
        }
        let target = (0..have.len())
            .find(|&i| !used[i] && have[i].dst == w.dst && metric(&have[i]) == metric(w));
        if let Some(i) = target {
            used[i] = true;
            *step = Step::Replace;
        }
    }
    for (r, _) in have.iter().zip(&used).filter(|(_, used)| !**used) {
        // A route of ours without a destination is a default route
        // (older versions could make one): it goes too.
        let (ip, prefix) = r.dst.unwrap_or(match r.family {
            Family::V6 => (IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
            _ => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        });
        // Named by everything that tells it from a wanted route to the
        // same destination: next hop, device and metric.
        let mut d = Route::to(ip, prefix).protocol(RTPROT_RCNI);
        d.gateway = r.gateway;
        d.oif = r.oif;
        d.priority = r.priority;
        sock.del_route(&d)?;
        report
            .changes
            .push(format!("removed route {}", describe_route(r)));
    }
    for (w, step) in want.iter().zip(&steps) {
        // Replace only a route of ours; anything else is created
        // exclusively, so a route of another owner is never overwritten.
        let done = match step {
            Step::Keep => continue,
            Step::Replace => sock.replace_route(w),
            Step::Add => sock.add_route(w),
        };
        match done {
            Ok(()) => report
                .changes
                .push(format!("set route {}", describe_route(w))),
            Err(e) if e.errno() == Some(libc::EEXIST) => report.errors.push(format!(
                "route {}: another route to it exists and is not the agent's; left alone",
                describe_route(w)
            )),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn metrics_count_and_default_per_family() {
        let v4 = Route::to(ip("10.244.2.0"), 24).via(ip("192.168.50.11"));
        assert!(same_route(&v4, &v4.clone().metric(0)));
        assert!(!same_route(&v4, &v4.clone().metric(50)));
        let v6 = Route::to(ip("fd44:2::"), 64).via(ip("fd50::11"));
        assert!(same_route(&v6, &v6.clone().metric(1024)));
        assert!(same_route(&v6, &v6.clone().metric(0)));
        assert!(!same_route(&v6, &v6.clone().metric(50)));
        assert_eq!(describe_route(&v4), "10.244.2.0/24 via 192.168.50.11");
        assert_eq!(
            describe_route(&v4.metric(50)),
            "10.244.2.0/24 via 192.168.50.11 metric 50"
        );
        assert_eq!(describe_route(&v6.metric(1024)), "fd44:2::/64 via fd50::11");
    }
}
