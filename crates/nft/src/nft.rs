//! The nf_tables socket: transactions and dumps.

use netlink::msg::{
    align, Attrs, MessageBuilder, Msg, NLMSGERR_ATTR_MSG, NLMSG_ERROR, NLMSG_HDRLEN, NLM_F_ACK,
    NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_REQUEST,
};
use netlink::Socket;
use netns::NetNs;

use crate::batch::{batch_marker, nft_msg, Batch, ELEMS_OF_SET};
use crate::error::{Error, Result};
use crate::list::{ChainInfo, ElemInfo, RuleInfo, TableInfo};
use crate::sys::*;
use crate::Family;

/// A `NETLINK_NETFILTER` socket bound to one network namespace.
#[derive(Debug)]
pub struct Nft {
    sock: Socket,
}

impl Nft {
    /// Opens the socket inside `ns`; it acts there for its whole life.
    pub fn open_in(ns: &NetNs) -> Result<Nft> {
        let sock = Socket::open_in(libc::NETLINK_NETFILTER, ns).map_err(|e| {
            Error::from_netlink(
                format!("open nf_tables socket in netns {}", ns.path().display()),
                e,
            )
        })?;
        Ok(Nft { sock })
    }

    /// Opens the socket in the calling thread's namespace.
    pub fn open() -> Result<Nft> {
        let sock = Socket::open(libc::NETLINK_NETFILTER)
            .map_err(|e| Error::from_netlink("open nf_tables socket".into(), e))?;
        Ok(Nft { sock })
    }

    /// `what` plus the namespace, for error messages.
    pub(crate) fn op(&self, what: impl std::fmt::Display) -> String {
        self.sock.op(what)
    }

    /// Commits `batch` as one transaction.
    pub fn commit(&self, batch: &Batch) -> Result<()> {
        self.commit_inner(batch, None)
    }

    /// Reads the ruleset generation, builds a batch with `build` (which
    /// reads what it needs; `None`: nothing to do) and commits it bound to
    /// that generation. When the ruleset changed meanwhile (ERESTART) it
    /// starts over, `tries` times in all (at least once), then returns the
    /// last ERESTART ([`Error::is_restart`]).
    pub fn commit_fresh(
        &self,
        tries: usize,
        mut build: impl FnMut() -> Result<Option<Batch>>,
    ) -> Result<()> {
        let mut left = tries.max(1);
        loop {
            let gen = self.genid()?;
            let Some(b) = build()? else {
                return Ok(());
            };
            match self.commit_at(&b, gen) {
                Err(e) if e.is_restart() && left > 1 => left -= 1,
                other => return other,
            }
        }
    }

    /// Commits `batch` only if the ruleset generation is still `genid`;
    /// otherwise fails with ERESTART ([`Error::is_restart`]).
    pub fn commit_at(&self, batch: &Batch, genid: u32) -> Result<()> {
        self.commit_inner(batch, Some(genid))
    }

    fn commit_inner(&self, batch: &Batch, genid: Option<u32>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut begin = batch_marker(NFNL_MSG_BATCH_BEGIN);
        if let Some(g) = genid {
            begin.attr_be32(NFNL_BATCH_GENID, g);
        }
        let end = batch_marker(NFNL_MSG_BATCH_END);
        let pid = self.sock.port_id();
        let mut bytes = Vec::new();
        let begin_seq = self.sock.next_seq();
        bytes.extend_from_slice(&with_flags(&begin, NLM_F_REQUEST).finish(begin_seq, pid));
        let mut pending: Vec<(u32, &str)> = Vec::with_capacity(batch.ops.len());
        for (m, what) in &batch.ops {
            let seq = self.sock.next_seq();
            let flags = m.flags() | NLM_F_REQUEST | NLM_F_ACK;
            bytes.extend_from_slice(&with_flags(m, flags).finish(seq, pid));
            pending.push((seq, what));
        }
        let end_seq = self.sock.next_seq();
        bytes.extend_from_slice(&with_flags(&end, NLM_F_REQUEST).finish(end_seq, pid));

        let txn = || self.op("commit nf_tables transaction");
        self.sock
            .send_raw(&bytes)
            .map_err(|e| Error::from_netlink(txn(), e))?;
        // Every op carries NLM_F_ACK, so the kernel answers each one (0 or
        // an errno) once the whole batch was processed. A failure of the
        // batch as such (stale generation, failed commit) is reported
        // against the begin message and arrives first.
        let mut failure: Option<Error> = None;
        while !pending.is_empty() && failure.is_none() {
            let mut got: Option<Error> = None;
            self.sock
                .recv_raw(false, |m| {
                    if m.ty != NLMSG_ERROR {
                        return;
                    }
                    let Some((code, ext)) = decode_ack(&m) else {
                        return;
                    };
                    if m.seq == begin_seq || m.seq == end_seq {
                        if code != 0 && got.is_none() {
                            got = Some(Error::Kernel {
                                op: txn(),
                                errno: code,
                                ext,
                            });
                        }
                        return;
                    }
                    if let Some(i) = pending.iter().position(|(s, _)| *s == m.seq) {
                        let (_, what) = pending.swap_remove(i);
                        if code != 0 && got.is_none() {
                            got = Some(Error::Kernel {
                                op: self.op(what),
                                errno: code,
                                ext,
                            });
                        }
                    }
                })
                .map_err(|e| Error::from_netlink(txn(), e))?;
            failure = got;
        }
        if let Some(e) = failure {
            // Drop the remaining acks so the next request starts clean.
            while self.sock.recv_raw(true, |_| {}).unwrap_or(false) {}
            return Err(e);
        }
        Ok(())
    }

    /// The current ruleset generation (changes with every commit).
    pub fn genid(&self) -> Result<u32> {
        let m = nft_msg(NFT_MSG_GETGEN, 0, 0);
        let op = || self.op("get nf_tables generation");
        let replies = self
            .sock
            .request(&m)
            .map_err(|e| Error::from_netlink(op(), e))?;
        replies
            .iter()
            .find_map(|r| Attrs::after_header(&r.payload, 4).get(NFTA_GEN_ID)?.be32())
            .ok_or_else(|| Error::Malformed {
                op: op(),
                detail: "no generation id in reply".into(),
            })
    }

    fn dump(
        &self,
        m: &MessageBuilder,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<netlink::msg::OwnedMsg>> {
        self.sock
            .dump(m)
            .map_err(|e| Error::from_netlink(self.op(what()), e))
    }

    /// Every table of every family.
    pub fn tables(&self) -> Result<Vec<TableInfo>> {
        let m = nft_msg(NFT_MSG_GETTABLE, 0, 0);
        Ok(self
            .dump(&m, || "list nf_tables tables".into())?
            .iter()
            .filter_map(TableInfo::parse)
            .collect())
    }

    /// Whether a table exists (one request, no dump).
    pub fn table_exists(&self, family: Family, name: &str) -> Result<bool> {
        let mut m = nft_msg(NFT_MSG_GETTABLE, 0, family.raw());
        m.attr_str(NFTA_TABLE_NAME, name);
        match self.sock.request(&m) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(Error::from_netlink(
                self.op(format!("get table {family} {name}")),
                e,
            )),
        }
    }

    /// The chains of one table.
    pub fn chains(&self, family: Family, table: &str) -> Result<Vec<ChainInfo>> {
        let mut m = nft_msg(NFT_MSG_GETCHAIN, 0, family.raw());
        m.attr_str(NFTA_CHAIN_TABLE, table);
        Ok(self
            .dump(&m, || format!("list chains of table {family} {table}"))?
            .iter()
            .filter_map(ChainInfo::parse)
            .filter(|c| c.family == family && c.table == table)
            .collect())
    }

    /// The rules of one chain (or of the whole table with `chain: None`),
    /// in order, with handles and comments. A missing table or chain gives
    /// an empty list.
    pub fn rules(&self, family: Family, table: &str, chain: Option<&str>) -> Result<Vec<RuleInfo>> {
        let mut m = nft_msg(NFT_MSG_GETRULE, 0, family.raw());
        m.attr_str(NFTA_RULE_TABLE, table);
        if let Some(c) = chain {
            m.attr_str(NFTA_RULE_CHAIN, c);
        }
        let what = || match chain {
            Some(c) => format!("list rules of chain \"{c}\" of table {family} {table}"),
            None => format!("list rules of table {family} {table}"),
        };
        let msgs = match self.dump(&m, what) {
            Ok(m) => m,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(msgs
            .iter()
            .filter_map(RuleInfo::parse)
            .filter(|r| r.family == family && r.table == table)
            .filter(|r| chain.is_none() || chain == Some(r.chain.as_str()))
            .collect())
    }

    /// The elements of a set or map, with comments.
    pub fn set_elements(&self, family: Family, table: &str, set: &str) -> Result<Vec<ElemInfo>> {
        let m = ELEMS_OF_SET.msg(NFT_MSG_GETSETELEM, 0, family, table, set);
        let msgs = self.dump(&m, || {
            format!("list elements of set \"{set}\" of table {family} {table}")
        })?;
        let mut out = Vec::new();
        for msg in &msgs {
            ElemInfo::parse_all(msg, &mut out);
        }
        Ok(out)
    }
}

fn with_flags(m: &MessageBuilder, flags: u16) -> MessageBuilder {
    let mut m = m.clone();
    m.set_flags(flags);
    m
}

/// Decodes NLMSG_ERROR: the positive errno (0 = ack) and the
/// extended-ack message.
fn decode_ack(m: &Msg<'_>) -> Option<(i32, Option<String>)> {
    let code = i32::from_ne_bytes(m.payload.get(..4)?.try_into().ok()?);
    if code == 0 {
        return Some((0, None));
    }
    let echoed = if m.flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        m.payload
            .get(4..8)
            .and_then(|b| b.try_into().ok())
            .map(|b: [u8; 4]| u32::from_ne_bytes(b) as usize)
            .unwrap_or(NLMSG_HDRLEN)
    };
    let ext = if m.flags & NLM_F_ACK_TLVS != 0 {
        m.payload
            .get(4 + align(echoed)..)
            .and_then(|t| Attrs::new(t).get(NLMSGERR_ATTR_MSG))
            .map(|a| a.string())
            .filter(|s| !s.is_empty())
    } else {
        None
    };
    Some((-code, ext))
}
