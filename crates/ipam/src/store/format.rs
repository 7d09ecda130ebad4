//! The allocation file (`<containerID>\r\n<ifname>`, the reference's)
//! and the index line format.

use std::net::IpAddr;

/// Who holds an address, as read from its file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    /// The container ID.
    pub id: String,
    /// `None` for files of old host-local versions that held only the ID.
    pub ifname: Option<String>,
}

impl Owner {
    /// Parse file contents the way the reference compares them (trimmed).
    pub fn parse(content: &str) -> Owner {
        let t = content.trim();
        match t.split_once("\r\n") {
            Some((id, ifname)) => Owner {
                id: id.to_string(),
                ifname: Some(ifname.to_string()),
            },
            None => Owner {
                id: t.to_string(),
                ifname: None,
            },
        }
    }

    /// Exact match on (id, ifname).
    pub fn is(&self, id: &str, ifname: &str) -> bool {
        self.id == id.trim() && self.ifname.as_deref() == Some(ifname)
    }

    /// Old-format file of this container (matches any ifname).
    pub fn is_legacy_of(&self, id: &str) -> bool {
        self.ifname.is_none() && self.id == id.trim()
    }
}

pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\t' => out.push_str("%09"),
            '\n' => out.push_str("%0A"),
            '\r' => out.push_str("%0D"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn unescape(s: &str) -> String {
    s.replace("%09", "\t")
        .replace("%0A", "\n")
        .replace("%0D", "\r")
        .replace("%25", "%")
}

pub(super) fn line_of(ip: IpAddr, owner: &Owner) -> String {
    match &owner.ifname {
        Some(ifn) => format!("{ip}\t{}\t{}\n", escape(&owner.id), escape(ifn)),
        None => format!("{ip}\t{}\n", escape(&owner.id)),
    }
}
