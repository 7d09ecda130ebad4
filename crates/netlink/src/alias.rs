//! Interface alias (IFLA_IFALIAS): a free-text label the kernel keeps on a
//! link. Plugins use it to mark links they own (e.g. the bandwidth plugin's
//! IFB devices) so GC can find them again without state files.

use crate::error::Result;
use crate::link::{IfInfoMsg, IFLA_IFALIAS};
use crate::msg::MessageBuilder;
use crate::socket::Socket;

const RTM_SETLINK: u16 = 19;
/// The kernel's IFALIASZ, NUL included.
pub const MAX_ALIAS_LEN: usize = 255;

impl Socket {
    /// Sets (or, with `""`, clears) the alias of link `index`.
    pub fn set_alias(&self, index: u32, alias: &str) -> Result<()> {
        if alias.len() >= MAX_ALIAS_LEN {
            return Err(crate::Error::Invalid {
                op: self.op(format!("set alias of link #{index}")),
                detail: format!("alias longer than {} bytes", MAX_ALIAS_LEN - 1),
            });
        }
        let mut m = MessageBuilder::new(RTM_SETLINK, 0);
        m.header(&IfInfoMsg {
            index: index as i32,
            ..Default::default()
        });
        // Sent without the trailing NUL: the kernel stores the bytes as given.
        m.attr(IFLA_IFALIAS, alias.as_bytes());
        self.exec(&m, || format!("set alias {alias:?} on link #{index}"))
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use crate::testns::TestNs;

    #[test]
    fn set_read_clear() {
        let t = TestNs::new("alias");
        let s = t.sock();
        s.create_ifb("ifbalias0").expect("ifb");
        let l = s.link_by_name("ifbalias0").expect("get").expect("exists");
        assert_eq!(l.alias, None);
        s.set_alias(l.index, "rcni-bandwidth:net:ctr").expect("set");
        let l = s.link_by_name("ifbalias0").expect("get").expect("exists");
        assert_eq!(l.alias.as_deref(), Some("rcni-bandwidth:net:ctr"));
        s.set_alias(l.index, "").expect("clear");
        let l = s.link_by_name("ifbalias0").expect("get").expect("exists");
        assert_eq!(l.alias, None);
        assert!(s.set_alias(l.index, &"x".repeat(300)).is_err());
    }
}
