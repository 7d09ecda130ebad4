//! The agent's routes in the main table (protocol [`RTPROT_RCNI`]).

use std::net::{IpAddr, Ipv4Addr};

use netlink::route::RT_TABLE_MAIN;
use netlink::{Family, Route, Socket};

use super::{Report, Result, RTPROT_RCNI};

pub(super) fn same_route(a: &Route, b: &Route) -> bool {
    a.dst == b.dst && a.gateway == b.gateway && a.oif == b.oif && a.onlink == b.onlink
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
    s
}

pub(super) fn sync_routes(sock: &Socket, want: &[Route], report: &mut Report) -> Result<()> {
    let mut have = sock.routes(Family::V4, Some(RT_TABLE_MAIN))?;
    have.extend(sock.routes(Family::V6, Some(RT_TABLE_MAIN))?);
    have.retain(|r| r.protocol == Some(RTPROT_RCNI));
    for r in &have {
        let keep = want.iter().any(|w| same_route(w, r));
        let replaced = want.iter().any(|w| w.dst == r.dst);
        if !keep && !replaced {
            // A route of ours without a destination is a default route
            // (older versions could make one): it goes too.
            let (ip, prefix) = r.dst.unwrap_or(match r.family {
                Family::V6 => (IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
                _ => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            });
            let mut d = Route::to(ip, prefix).protocol(RTPROT_RCNI);
            d.oif = r.oif;
            d.priority = r.priority;
            sock.del_route(&d)?;
            report
                .changes
                .push(format!("removed route {}", describe_route(r)));
        }
    }
    for w in want {
        if have.iter().any(|r| same_route(w, r)) {
            continue;
        }
        // Replace only a route of ours; anything else is created
        // exclusively, so a route of another owner is never overwritten.
        let ours = have.iter().any(|r| r.dst == w.dst);
        let done = if ours {
            sock.replace_route(w)
        } else {
            sock.add_route(w)
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
