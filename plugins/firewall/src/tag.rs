//! The comment every per-pod rule carries, in both backends:
//!
//! ```text
//! rcni-fw:NETWORK:CONTAINERID:IFNAME:POLICY:BRIDGE:DIR:IP
//! ```
//!
//! `DIR` is `in` (replies to the pod) or `out` (traffic from the pod),
//! `BRIDGE` is `-` when the policy needs none. Network names and container
//! ids cannot contain `:` (libcni's pattern), interface names neither (the
//! kernel refuses them), so the fields split cleanly; the address comes
//! last because IPv6 addresses contain `:`.
//!
//! Comments are limited to 255 bytes (nf_tables user data and xt_comment
//! alike). A network name or container id that would not fit is replaced by
//! `#` and 16 hex digits of its SHA-256, and matching accepts either form.

use std::net::IpAddr;

use sha2::{Digest, Sha256};

use crate::Policy;

/// What every per-pod comment starts with.
pub const PREFIX: &str = "rcni-fw:";
/// Longest comment written (both kernels keep at least 253 bytes + NUL).
const MAX: usize = 250;

/// Which of a pod address's two rules a comment names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Replies towards the pod (`ct state established,related`).
    In,
    /// Everything the pod sends.
    Out,
}

impl Dir {
    fn as_str(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
        }
    }
}

/// Which attachment a rule belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The network's name.
    pub network: String,
    /// The container id of the attachment.
    pub container_id: String,
    /// The pod interface (CNI_IFNAME).
    pub ifname: String,
}

impl Owner {
    /// Whether a parsed comment belongs to this attachment.
    pub fn owns(&self, t: &Tag) -> bool {
        same(&t.network, &self.network)
            && same(&t.container_id, &self.container_id)
            && t.ifname == self.ifname
    }
}

/// One parsed comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The network's name, or its `#`-hash when shortened.
    pub network: String,
    /// The container id, or its `#`-hash when shortened.
    pub container_id: String,
    /// The pod interface.
    pub ifname: String,
    /// The ingress policy the rule was added under.
    pub policy: Policy,
    /// The bridge the policy isolates (`-` in the text when none).
    pub bridge: Option<String>,
    /// Whether the rule accepts replies to the pod or traffic from it.
    pub dir: Dir,
    /// The pod address the rule matches.
    pub ip: IpAddr,
}

fn short(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("#{hex}")
}

/// A stored field matches a value written in full or shortened.
pub fn same(stored: &str, value: &str) -> bool {
    stored == value || (stored.starts_with('#') && stored == short(value))
}

impl Tag {
    /// The comment of `owner`'s rule for `ip` in direction `dir`.
    pub fn new(owner: &Owner, policy: Policy, bridge: Option<&str>, dir: Dir, ip: IpAddr) -> Tag {
        Tag {
            network: owner.network.clone(),
            container_id: owner.container_id.clone(),
            ifname: owner.ifname.clone(),
            policy,
            bridge: bridge.map(str::to_string),
            dir,
            ip,
        }
    }

    fn render(&self, net: &str, cid: &str) -> String {
        format!(
            "{PREFIX}{net}:{cid}:{}:{}:{}:{}:{}",
            self.ifname,
            self.policy.as_str(),
            self.bridge.as_deref().unwrap_or("-"),
            self.dir.as_str(),
            self.ip
        )
    }

    /// The comment text, shortened to fit when needed.
    pub fn comment(&self) -> String {
        let full = self.render(&self.network, &self.container_id);
        if full.len() <= MAX {
            return full;
        }
        let net = short(&self.network);
        let c = self.render(&net, &self.container_id);
        if c.len() <= MAX {
            return c;
        }
        self.render(&net, &short(&self.container_id))
    }

    /// Reads a comment back; `None` for one that is not a per-pod comment.
    pub fn parse(c: &str) -> Option<Tag> {
        let rest = c.strip_prefix(PREFIX)?;
        let mut it = rest.splitn(7, ':');
        let network = it.next()?.to_string();
        let container_id = it.next()?.to_string();
        let ifname = it.next()?.to_string();
        let policy = Policy::parse(it.next()?)?;
        let bridge = match it.next()? {
            "-" => None,
            b => Some(b.to_string()),
        };
        let dir = match it.next()? {
            "in" => Dir::In,
            "out" => Dir::Out,
            _ => return None,
        };
        // The 7th piece is the rest: the address, colons and all.
        let ip = it.next()?;
        Some(Tag {
            network,
            container_id,
            ifname,
            policy,
            bridge,
            dir,
            ip: ip.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(net: &str, cid: &str) -> Owner {
        Owner {
            network: net.into(),
            container_id: cid.into(),
            ifname: "eth0".into(),
        }
    }

    #[test]
    fn roundtrip_v4_v6() {
        let o = owner("net1", "ctr");
        for ip in ["10.1.2.3", "fd00::1:2"] {
            let t = Tag::new(
                &o,
                Policy::SameBridge,
                Some("br0"),
                Dir::In,
                ip.parse().expect("ip"),
            );
            let c = t.comment();
            let p = Tag::parse(&c).expect("parses");
            assert_eq!(p, t, "{c}");
            assert!(o.owns(&p));
            assert!(!owner("net1", "ctr2").owns(&p));
        }
        let t = Tag::new(
            &o,
            Policy::Open,
            None,
            Dir::Out,
            "10.0.0.1".parse().expect("ip"),
        );
        assert_eq!(t.comment(), "rcni-fw:net1:ctr:eth0:open:-:out:10.0.0.1");
        assert_eq!(Tag::parse(&t.comment()), Some(t));
        assert_eq!(Tag::parse("rcni-fw:a:b:c"), None);
        assert_eq!(Tag::parse("CNI firewall plugin rules"), None);
    }

    #[test]
    fn long_names_are_shortened_and_still_match() {
        let o = owner(&"n".repeat(200), &"c".repeat(120));
        let t = Tag::new(
            &o,
            Policy::Isolated,
            Some("br-long-name01"),
            Dir::Out,
            "fd00:1:2:3:4:5:6:7".parse().expect("ip"),
        );
        let c = t.comment();
        assert!(c.len() <= MAX, "{} bytes", c.len());
        let p = Tag::parse(&c).expect("parses");
        assert!(o.owns(&p));
        assert!(!owner(&"n".repeat(199), &"c".repeat(120)).owns(&p));
    }
}
