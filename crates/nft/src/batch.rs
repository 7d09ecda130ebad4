//! Building the messages of one nf_tables transaction.

use netlink::msg::{MessageBuilder, Pod, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL};

use crate::expr::data_value;
use crate::rule::{udata_comment, Rule};
use crate::sys::*;
use crate::{Chain, DataType, Element, Family, SetSpec};

/// `struct nfgenmsg`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct NfGenMsg {
    pub family: u8,
    pub version: u8,
    /// Big-endian resource id (the subsystem for batch messages).
    pub res_id: [u8; 2],
}

// SAFETY: repr(C), four u8-sized fields, no padding, any bit pattern valid.
unsafe impl Pod for NfGenMsg {}

/// A message of the nf_tables subsystem with its nfgenmsg header.
pub(crate) fn nft_msg(msg: u16, flags: u16, family: u8) -> MessageBuilder {
    let mut m = MessageBuilder::new((NFNL_SUBSYS_NFTABLES << 8) | msg, flags);
    m.header(&NfGenMsg {
        family,
        version: NFNETLINK_V0,
        res_id: [0, 0],
    });
    m
}

/// The attributes that name an object inside a table: the table's and
/// the object's. Rules are named by their chain, elements by their set.
#[derive(Clone, Copy)]
pub(crate) struct Naming {
    table: u16,
    name: u16,
}
/// A chain of a table.
pub(crate) const CHAIN: Naming = Naming::new(NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME);
/// The rules of a chain.
pub(crate) const RULES_OF_CHAIN: Naming = Naming::new(NFTA_RULE_TABLE, NFTA_RULE_CHAIN);
/// A set or map of a table.
pub(crate) const SET: Naming = Naming::new(NFTA_SET_TABLE, NFTA_SET_NAME);
/// The elements of a set.
pub(crate) const ELEMS_OF_SET: Naming =
    Naming::new(NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET);

impl Naming {
    const fn new(table: u16, name: u16) -> Naming {
        Naming { table, name }
    }

    /// An nf_tables message `msg` about object `name` of `table`.
    pub(crate) fn msg(
        self,
        msg: u16,
        flags: u16,
        family: Family,
        table: &str,
        name: &str,
    ) -> MessageBuilder {
        let mut m = nft_msg(msg, flags, family.raw());
        m.attr_str(self.table, table).attr_str(self.name, name);
        m
    }
}

/// Batch begin/end markers: family unspec, res_id = the subsystem.
pub(crate) fn batch_marker(ty: u16) -> MessageBuilder {
    let mut m = MessageBuilder::new(ty, 0);
    m.header(&NfGenMsg {
        family: 0,
        version: NFNETLINK_V0,
        res_id: NFNL_SUBSYS_NFTABLES.to_be_bytes(),
    });
    m
}

/// Elements per NEWSETELEM message: the element list is one attribute whose
/// length field has 16 bits.
const ELEMS_PER_MSG: usize = 256;

/// The operations of one transaction, in order. Each carries a description
/// used in error messages ("add rule to chain \"x\" of table inet t").
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub(crate) ops: Vec<(MessageBuilder, String)>,
    next_set_id: u32,
}

/// Which set a batch's element operations act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetName<'a> {
    /// The table's family.
    pub family: Family,
    /// The table.
    pub table: &'a str,
    /// The set (or map) in it.
    pub set: &'a str,
}

impl<'a> SetName<'a> {
    /// Set `set` of table `table` in `family`.
    pub fn new(family: Family, table: &'a str, set: &'a str) -> SetName<'a> {
        SetName { family, table, set }
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// True when nothing was queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of messages (not counting begin/end).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    fn push(&mut self, m: MessageBuilder, what: String) -> &mut Batch {
        self.ops.push((m, what));
        self
    }

    /// Creates a table unless it exists (no error if it does).
    pub fn add_table(&mut self, family: Family, name: &str) -> &mut Batch {
        self.table(family, name, false)
    }

    /// Creates a table; the transaction fails with EEXIST if it exists.
    pub fn create_table(&mut self, family: Family, name: &str) -> &mut Batch {
        self.table(family, name, true)
    }

    fn table(&mut self, family: Family, name: &str, excl: bool) -> &mut Batch {
        let excl = if excl { NLM_F_EXCL } else { 0 };
        let mut m = nft_msg(
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE | NLM_F_ACK | excl,
            family.raw(),
        );
        m.attr_str(NFTA_TABLE_NAME, name);
        self.push(m, format!("create table {family} {name}"))
    }

    /// Deletes a table with everything in it.
    pub fn del_table(&mut self, family: Family, name: &str) -> &mut Batch {
        let mut m = nft_msg(NFT_MSG_DELTABLE, NLM_F_ACK, family.raw());
        m.attr_str(NFTA_TABLE_NAME, name);
        self.push(m, format!("delete table {family} {name}"))
    }

    /// Creates a chain unless it exists.
    pub fn add_chain(&mut self, family: Family, table: &str, chain: &Chain) -> &mut Batch {
        let mut m = CHAIN.msg(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE | NLM_F_ACK,
            family,
            table,
            &chain.name,
        );
        if let Some(b) = &chain.base {
            m.nested(NFTA_CHAIN_HOOK, |m| {
                m.attr_be32(NFTA_HOOK_HOOKNUM, b.hook.raw())
                    .attr_be32(NFTA_HOOK_PRIORITY, b.priority as u32);
            });
            m.attr_be32(
                NFTA_CHAIN_POLICY,
                if b.accept { NF_ACCEPT } else { NF_DROP } as u32,
            );
            m.attr_str(NFTA_CHAIN_TYPE, b.kind.as_str());
        }
        self.push(
            m,
            format!("create chain \"{}\" in table {family} {table}", chain.name),
        )
    }

    /// Deletes an (empty, unreferenced) chain.
    pub fn del_chain(&mut self, family: Family, table: &str, chain: &str) -> &mut Batch {
        let m = CHAIN.msg(NFT_MSG_DELCHAIN, NLM_F_ACK, family, table, chain);
        self.push(
            m,
            format!("delete chain \"{chain}\" of table {family} {table}"),
        )
    }

    /// Deletes every rule of a chain.
    pub fn flush_chain(&mut self, family: Family, table: &str, chain: &str) -> &mut Batch {
        let m = RULES_OF_CHAIN.msg(NFT_MSG_DELRULE, NLM_F_ACK, family, table, chain);
        self.push(
            m,
            format!("flush chain \"{chain}\" of table {family} {table}"),
        )
    }

    /// Appends a rule at the end of a chain.
    pub fn add_rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        rule: &Rule,
    ) -> &mut Batch {
        let flags = NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK;
        let mut m = RULES_OF_CHAIN.msg(NFT_MSG_NEWRULE, flags, family, table, chain);
        m.nested(NFTA_RULE_EXPRESSIONS, |m| {
            for e in &rule.exprs {
                e.encode(m);
            }
        });
        if let Some(u) = rule.userdata() {
            m.attr(NFTA_RULE_USERDATA, &u);
        }
        self.push(
            m,
            format!("add rule to chain \"{chain}\" of table {family} {table}"),
        )
    }

    /// A batch deleting the rules `handles` of a chain; `None` when there
    /// are none.
    pub fn deleting_rules(
        family: Family,
        table: &str,
        chain: &str,
        handles: impl IntoIterator<Item = u64>,
    ) -> Option<Batch> {
        let mut b = Batch::new();
        for h in handles {
            b.del_rule(family, table, chain, h);
        }
        (!b.is_empty()).then_some(b)
    }

    /// Deletes a rule by handle.
    pub fn del_rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        handle: u64,
    ) -> &mut Batch {
        let mut m = RULES_OF_CHAIN.msg(NFT_MSG_DELRULE, NLM_F_ACK, family, table, chain);
        m.attr_be64(NFTA_RULE_HANDLE, handle);
        self.push(
            m,
            format!("delete rule {handle} of chain \"{chain}\" of table {family} {table}"),
        )
    }

    /// Creates a named set or map unless it exists.
    pub fn add_set(&mut self, family: Family, table: &str, set: &SetSpec) -> &mut Batch {
        self.set_msg(family, table, set, NLM_F_CREATE | NLM_F_ACK)
    }

    /// Creates a named set or map; one that exists fails the transaction
    /// with EEXIST (so that of two racing upgrades only one adds rules).
    pub fn create_set(&mut self, family: Family, table: &str, set: &SetSpec) -> &mut Batch {
        self.set_msg(family, table, set, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK)
    }

    fn set_msg(&mut self, family: Family, table: &str, set: &SetSpec, flags: u16) -> &mut Batch {
        self.next_set_id += 1;
        let mut m = SET.msg(NFT_MSG_NEWSET, flags, family, table, &set.name);
        let mut flags = 0;
        if set.data.is_some() {
            flags |= NFT_SET_MAP;
        }
        m.attr_be32(NFTA_SET_FLAGS, flags)
            .attr_be32(NFTA_SET_KEY_TYPE, DataType::concat_id(&set.key))
            .attr_be32(NFTA_SET_KEY_LEN, DataType::concat_len(&set.key) as u32);
        if let Some(d) = &set.data {
            m.attr_be32(NFTA_SET_DATA_TYPE, DataType::concat_id(d))
                .attr_be32(NFTA_SET_DATA_LEN, DataType::concat_len(d) as u32);
        }
        m.attr_be32(NFTA_SET_ID, self.next_set_id);
        self.push(
            m,
            format!("create set \"{}\" in table {family} {table}", set.name),
        )
    }

    /// Deletes a set (it must not be referenced by rules).
    pub fn del_set(&mut self, family: Family, table: &str, set: &str) -> &mut Batch {
        let m = SET.msg(NFT_MSG_DELSET, NLM_F_ACK, family, table, set);
        self.push(m, format!("delete set \"{set}\" of table {family} {table}"))
    }

    /// Adds elements. An element that exists with the same value is
    /// accepted; with a different value the transaction fails (EBUSY).
    pub fn add_elements(&mut self, set: SetName<'_>, elems: &[Element]) -> &mut Batch {
        self.elements(NFT_MSG_NEWSETELEM, NLM_F_CREATE, set, elems)
    }

    /// Adds elements; any existing key fails the transaction with EEXIST.
    pub fn create_elements(&mut self, set: SetName<'_>, elems: &[Element]) -> &mut Batch {
        self.elements(NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL, set, elems)
    }

    /// Deletes elements (by key); a missing element fails the transaction.
    pub fn del_elements(&mut self, set: SetName<'_>, elems: &[Element]) -> &mut Batch {
        self.elements(NFT_MSG_DELSETELEM, 0, set, elems)
    }

    fn elements(
        &mut self,
        ty: u16,
        flags: u16,
        name: SetName<'_>,
        elems: &[Element],
    ) -> &mut Batch {
        let SetName { family, table, set } = name;
        let add = ty == NFT_MSG_NEWSETELEM;
        for chunk in elems.chunks(ELEMS_PER_MSG) {
            let mut m = ELEMS_OF_SET.msg(ty, flags | NLM_F_ACK, family, table, set);
            m.nested(NFTA_SET_ELEM_LIST_ELEMENTS, |m| {
                for e in chunk {
                    m.nested(NFTA_LIST_ELEM, |m| {
                        data_value(m, NFTA_SET_ELEM_KEY, &e.key);
                        if add {
                            if let Some(d) = &e.data {
                                data_value(m, NFTA_SET_ELEM_DATA, d);
                            }
                            if let Some(c) = &e.comment {
                                m.attr(
                                    NFTA_SET_ELEM_USERDATA,
                                    &udata_comment(NFTNL_UDATA_SET_ELEM_COMMENT, c),
                                );
                            }
                        }
                    });
                }
            });
            let verb = if add { "add" } else { "delete" };
            let prep = if add { "to" } else { "from" };
            self.push(
                m,
                format!(
                    "{verb} {} element(s) {prep} set \"{set}\" of table {family} {table}",
                    chunk.len()
                ),
            );
        }
        self
    }
}
