//! A synchronous netlink socket, bound to one network namespace for life.
//!
//! The namespace of a netlink socket is fixed when it is created, so
//! [`Socket::route_in`] creates it on a short-lived thread inside the target
//! namespace and hands it back: afterwards every request from any thread acts
//! in that namespace, and no thread ever has to switch.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Instant;

use netns::NetNs;

use crate::error::{Error, Result};
use crate::msg::*;

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
const NETLINK_DROP_MEMBERSHIP: libc::c_int = 2;

/// Initial receive buffer capacity; grown on demand when the kernel sends
/// more. Never zeroed: untouched pages cost nothing (zeroing 64 KiB was
/// 16 page faults per socket, a tenth of a plugin run's).
const RECV_BUF: usize = 64 * 1024;
/// Kernel-side receive queue: large dumps (full route tables) must not
/// overflow it with ENOBUFS.
const SO_RCVBUF_SIZE: libc::c_int = 1024 * 1024;
/// A dump interrupted by concurrent changes (NLM_F_DUMP_INTR) is retried.
const DUMP_RETRIES: usize = 5;

/// A netlink socket of one protocol, bound to one network namespace.
///
/// Not `Sync`: one request at a time. Open one socket per thread if needed.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    pid: u32,
    seq: Cell<u32>,
    buf: RefCell<Vec<u8>>,
    /// Namespace path, for error messages (None: the creating thread's).
    netns: Option<PathBuf>,
    /// The multicast groups joined, bit `group - 1` each (the kernel's
    /// membership is a set too: joining twice and leaving once leaves).
    /// While any is, notifications that arrive while a request waits for
    /// its answer are kept here for the watcher instead of being dropped.
    groups: Cell<u64>,
    notifications: RefCell<Vec<OwnedMsg>>,
}

impl Socket {
    /// An rtnetlink socket in the calling thread's namespace.
    pub fn route() -> Result<Socket> {
        Self::open(libc::NETLINK_ROUTE)
    }

    /// An rtnetlink socket bound to `ns`.
    pub fn route_in(ns: &NetNs) -> Result<Socket> {
        Self::open_in(libc::NETLINK_ROUTE, ns)
    }

    /// A socket of any netlink `protocol` (e.g. `libc::NETLINK_NETFILTER`)
    /// in the calling thread's namespace.
    pub fn open(protocol: libc::c_int) -> Result<Socket> {
        let (fd, pid) = open_fd(protocol)?;
        Ok(Socket {
            fd,
            pid,
            seq: Cell::new(initial_seq()),
            buf: RefCell::new(Vec::with_capacity(RECV_BUF)),
            netns: None,
            groups: Cell::new(0),
            notifications: RefCell::new(Vec::new()),
        })
    }

    /// A socket of `protocol` created inside `ns`; it stays bound there.
    pub fn open_in(protocol: libc::c_int, ns: &NetNs) -> Result<Socket> {
        let (fd, pid) = ns.run(|| open_fd(protocol))??;
        Ok(Socket {
            fd,
            pid,
            seq: Cell::new(initial_seq()),
            buf: RefCell::new(Vec::with_capacity(RECV_BUF)),
            netns: Some(ns.path().to_path_buf()),
            groups: Cell::new(0),
            notifications: RefCell::new(Vec::new()),
        })
    }

    /// The socket's file descriptor.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The port id the kernel assigned to this socket.
    pub fn port_id(&self) -> u32 {
        self.pid
    }

    /// The namespace path given at open, if any.
    pub fn netns_path(&self) -> Option<&std::path::Path> {
        self.netns.as_deref()
    }

    /// Builds the operation text for errors: `what` plus the namespace.
    pub fn op(&self, what: impl std::fmt::Display) -> String {
        match &self.netns {
            Some(p) => format!("{what} in netns {}", p.display()),
            None => what.to_string(),
        }
    }

    /// Allocates the next sequence number.
    pub fn next_seq(&self) -> u32 {
        let s = self.seq.get().wrapping_add(1);
        self.seq.set(s);
        s
    }

    /// Sends raw bytes (one or more finished messages) in one datagram.
    pub fn send_raw(&self, bytes: &[u8]) -> Result<()> {
        // SAFETY: sockaddr_nl is plain data; all zeroes is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: valid fd, buffer and address.
            let n = unsafe {
                libc::sendto(
                    self.fd(),
                    bytes.as_ptr() as *const libc::c_void,
                    bytes.len(),
                    0,
                    &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(Error::Io {
                    op: self.op("send netlink request"),
                    source: e,
                });
            }
        }
    }

    /// Receives one datagram and passes its messages to `f`. With
    /// `nonblocking`, returns `Ok(false)` when nothing is queued.
    ///
    /// The datagram size is peeked first (MSG_PEEK|MSG_TRUNC) so that no
    /// message is ever silently truncated.
    pub fn recv_raw(&self, nonblocking: bool, mut f: impl FnMut(Msg<'_>)) -> Result<bool> {
        let extra = if nonblocking { libc::MSG_DONTWAIT } else { 0 };
        let mut buf = self.buf.borrow_mut();
        let size = self.recv_into(&mut Vec::new(), libc::MSG_PEEK | libc::MSG_TRUNC | extra)?;
        let Some(size) = size else { return Ok(false) };
        buf.clear();
        buf.reserve(size);
        if self.recv_into(&mut buf, extra)?.is_none() {
            return Ok(false);
        }
        for m in MsgIter::new(&buf) {
            f(m);
        }
        Ok(true)
    }

    /// Joins multicast group `group` (an `RTNLGRP_*` number): the kernel
    /// then queues its notifications on this socket beside the replies,
    /// which never match them (see [`Socket::request`]).
    pub fn join_group(&self, group: u32) -> Result<()> {
        let bit = self.membership(NETLINK_ADD_MEMBERSHIP, group, "join netlink group")?;
        self.groups.set(self.groups.get() | bit);
        Ok(())
    }

    /// Leaves multicast group `group` again; leaving the last one forgets
    /// the notifications kept so far. Any still queued in the kernel are
    /// skipped by requests.
    pub fn leave_group(&self, group: u32) -> Result<()> {
        let bit = self.membership(NETLINK_DROP_MEMBERSHIP, group, "leave netlink group")?;
        self.groups.set(self.groups.get() & !bit);
        if self.groups.get() == 0 {
            self.notifications.borrow_mut().clear();
        }
        Ok(())
    }

    /// Takes the notifications that arrived while requests waited for
    /// their answers (only kept while a group is joined).
    pub fn take_notifications(&self) -> Vec<OwnedMsg> {
        std::mem::take(&mut *self.notifications.borrow_mut())
    }

    /// Joins or leaves `group` (1..=64) and returns its bit in `groups`.
    fn membership(&self, opt: libc::c_int, group: u32, what: &str) -> Result<u64> {
        if !(1..=64).contains(&group) {
            return Err(Error::Malformed {
                op: self.op(what),
                detail: format!("group {group} out of range 1..=64"),
            });
        }
        setsockopt_int(self.fd(), SOL_NETLINK, opt, group as libc::c_int).map_err(|source| {
            Error::Io {
                op: self.op(format!("{what} {group}")),
                source,
            }
        })?;
        Ok(1 << (group - 1))
    }

    /// Like [`Socket::recv_raw`], but waits at most until `deadline` for a
    /// datagram; `Ok(false)` when none came in time.
    pub fn recv_until(&self, deadline: Instant, f: impl FnMut(Msg<'_>)) -> Result<bool> {
        let left = deadline.saturating_duration_since(Instant::now());
        // Rounded up, so a wait never ends early and spins.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        let mut pfd = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n > 0 {
                return self.recv_raw(true, f);
            }
            if n == 0 {
                return Ok(false);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(Error::Io {
                    op: self.op("wait for netlink message"),
                    source: e,
                });
            }
        }
    }

    /// Receives into the spare capacity of `buf` (replacing its contents)
    /// and returns the datagram's size; with MSG_TRUNC that may exceed what
    /// was stored.
    fn recv_into(&self, buf: &mut Vec<u8>, flags: libc::c_int) -> Result<Option<usize>> {
        buf.clear();
        let cap = buf.capacity();
        loop {
            // SAFETY: valid fd; the kernel writes at most `cap` bytes into
            // the vector's allocation.
            let n =
                unsafe { libc::recv(self.fd(), buf.as_mut_ptr() as *mut libc::c_void, cap, flags) };
            if n >= 0 {
                let n = n as usize;
                // SAFETY: the first min(n, cap) bytes were written by recv
                // (n can exceed cap only with MSG_TRUNC).
                unsafe { buf.set_len(n.min(cap)) };
                return Ok(Some(n));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => {
                    return Err(Error::Io {
                        op: self.op("receive netlink reply"),
                        source: e,
                    })
                }
            }
        }
    }

    /// Sends one request and waits for its acknowledgement, returning any
    /// messages the kernel sent before it (e.g. the reply to a GET).
    /// NLM_F_REQUEST and NLM_F_ACK are added. Errors carry the generic
    /// operation text; typed callers replace it with [`Socket::op`].
    pub fn request(&self, msg: &MessageBuilder) -> Result<Vec<OwnedMsg>> {
        let seq = self.next_seq();
        let flags = msg.flags() | NLM_F_REQUEST | NLM_F_ACK;
        let mut m = msg.clone();
        m.set_flags(flags);
        self.send_raw(&m.finish(seq, self.pid))?;
        self.collect(seq, "netlink request")
    }

    /// Sends a dump request (NLM_F_DUMP) and collects every part until
    /// NLMSG_DONE. Retries when the kernel flags the dump as interrupted.
    pub fn dump(&self, msg: &MessageBuilder) -> Result<Vec<OwnedMsg>> {
        let mut m = msg.clone();
        m.set_flags(msg.flags() | NLM_F_REQUEST | NLM_F_DUMP);
        for _ in 0..DUMP_RETRIES {
            let seq = self.next_seq();
            self.send_raw(&m.finish(seq, self.pid))?;
            let out = self.collect(seq, "netlink dump")?;
            if out.iter().any(|m| m.flags & NLM_F_DUMP_INTR != 0) {
                continue;
            }
            return Ok(out);
        }
        Err(Error::Kernel {
            op: self.op("netlink dump"),
            errno: libc::EINTR,
            ext: Some("dump kept being interrupted by concurrent changes".into()),
        })
    }

    /// [`Socket::request`] with the error naming `what` (and the netns).
    pub(crate) fn exec(
        &self,
        m: &MessageBuilder,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<OwnedMsg>> {
        self.request(m).map_err(|e| e.with_op(self.op(what())))
    }

    /// [`Socket::dump`] with the error naming `what` (and the netns).
    /// Runs `f` with NETLINK_GET_STRICT_CHK on (Linux 4.20+), telling it
    /// whether the option took: with it the kernel honours the filters in a
    /// dump request's header (e.g. one interface's addresses) instead of
    /// walking every device. Switched off again afterwards, because strict
    /// checking also changes how other requests on this socket are read.
    pub(crate) fn with_strict_check<T>(&self, f: impl FnOnce(bool) -> T) -> T {
        const NETLINK_GET_STRICT_CHK: libc::c_int = 12;
        let on = setsockopt_int(self.fd(), SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1).is_ok();
        let out = f(on);
        if on {
            let _ = setsockopt_int(self.fd(), SOL_NETLINK, NETLINK_GET_STRICT_CHK, 0);
        }
        out
    }

    pub(crate) fn dump_as(
        &self,
        m: &MessageBuilder,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<OwnedMsg>> {
        self.dump(m).map_err(|e| e.with_op(self.op(what())))
    }

    /// Dumps `m` (failing as `what`) and reads the replies with
    /// [`replies_of`].
    pub(crate) fn dump_of<T>(
        &self,
        m: &MessageBuilder,
        what: impl FnOnce() -> String,
        ty: u16,
        parse: impl Fn(&[u8]) -> Option<T>,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>> {
        Ok(replies_of(&self.dump_as(m, what)?, ty, parse, keep))
    }

    /// Receives messages of sequence `seq` until an ack, an error or
    /// NLMSG_DONE. Messages of other sequence numbers (late answers to an
    /// earlier request) are dropped, and so is anything not addressed to
    /// this socket's port: a group notification carries the sequence number
    /// of whichever request caused it, another socket's included.
    fn collect(&self, seq: u32, what: &str) -> Result<Vec<OwnedMsg>> {
        let mut out = Vec::new();
        let mut end: Option<Result<()>> = None;
        while end.is_none() {
            self.recv_raw(false, |m| {
                if m.seq != seq || m.pid != self.pid || end.is_some() {
                    // A notification (port 0, or another socket's request)
                    // is kept for the watcher, if any; a late answer to an
                    // earlier request of ours is dropped.
                    if self.groups.get() > 0 && m.pid != self.pid {
                        self.notifications.borrow_mut().push(m.to_owned_msg());
                    }
                    return;
                }
                match m.ty {
                    NLMSG_ERROR => end = Some(self.decode_error(&m, what)),
                    NLMSG_DONE => {
                        // A dump may end with a negative errno in DONE.
                        let code = m
                            .payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(0);
                        end = Some(if code < 0 {
                            Err(Error::Kernel {
                                op: self.op(what),
                                errno: -code,
                                ext: ext_ack(&m, 4),
                            })
                        } else {
                            Ok(())
                        });
                    }
                    NLMSG_NOOP => {}
                    NLMSG_OVERRUN => {
                        end = Some(Err(Error::Malformed {
                            op: self.op(what),
                            detail: "netlink overrun".into(),
                        }))
                    }
                    _ => out.push(m.to_owned_msg()),
                }
            })?;
        }
        end.unwrap_or(Ok(())).map(|()| out)
    }

    /// Turns an NLMSG_ERROR into `Ok` (ack) or a kernel error with the
    /// extended-ack message.
    fn decode_error(&self, m: &Msg<'_>, what: &str) -> Result<()> {
        let Some(code) = m.payload.get(..4) else {
            return Err(Error::Malformed {
                op: self.op(what),
                detail: "short NLMSG_ERROR".into(),
            });
        };
        let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
        if code == 0 {
            return Ok(());
        }
        // The echoed request follows the errno: only its header when
        // capped, the whole message otherwise; TLVs come after it.
        let echoed = if m.flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            m.payload
                .get(4..8)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .unwrap_or(NLMSG_HDRLEN)
        };
        let ext = if m.flags & NLM_F_ACK_TLVS != 0 {
            ext_ack(m, 4 + align(echoed))
        } else {
            None
        };
        Err(Error::Kernel {
            op: self.op(what),
            errno: -code,
            ext,
        })
    }

    /// Sends several messages in one datagram (e.g. an nf_tables batch:
    /// BATCH_BEGIN, ops, BATCH_END) and waits for the acks of every message
    /// that carries NLM_F_ACK. NLM_F_REQUEST is added to each message; the
    /// caller decides which ones get NLM_F_ACK (give it to every operation:
    /// a batch without any is fire-and-forget). An error for any message of
    /// the batch fails it; the remaining queued replies are then drained and
    /// the first error is returned.
    pub fn batch(&self, msgs: &[MessageBuilder]) -> Result<()> {
        let mut bytes = Vec::new();
        let mut seqs = Vec::with_capacity(msgs.len());
        let mut pending = Vec::new();
        for m in msgs {
            let seq = self.next_seq();
            let mut m = m.clone();
            m.set_flags(m.flags() | NLM_F_REQUEST);
            if m.flags() & NLM_F_ACK != 0 {
                pending.push(seq);
            }
            seqs.push(seq);
            bytes.extend_from_slice(&m.finish(seq, self.pid));
        }
        self.send_raw(&bytes)?;
        let mut failure: Option<Error> = None;
        while !pending.is_empty() && failure.is_none() {
            self.recv_raw(false, |m| {
                if m.ty != NLMSG_ERROR || !seqs.contains(&m.seq) {
                    return;
                }
                pending.retain(|&s| s != m.seq);
                if let Err(e) = self.decode_error(&m, "netlink batch") {
                    failure.get_or_insert(e);
                }
            })?;
        }
        if let Some(e) = failure {
            // Kernels may not answer the rest after an aborted batch: drain
            // without blocking so the next request starts clean.
            while self.recv_raw(true, |_| {})? {}
            return Err(e);
        }
        Ok(())
    }
}

/// Extracts NLMSGERR_ATTR_MSG from the TLVs starting at `offset` of the payload.
pub(crate) fn ext_ack(m: &Msg<'_>, offset: usize) -> Option<String> {
    let tlvs = m.payload.get(offset..)?;
    Attrs::new(tlvs)
        .get(NLMSGERR_ATTR_MSG)
        .map(|a| a.string())
        .filter(|s| !s.is_empty())
}

fn initial_seq() -> u32 {
    // Distinct starting points make stray replies from a previous socket
    // with a recycled port id unlikely to match.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(1)
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: valid fd, pointer to a live int.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &val as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn open_fd(protocol: libc::c_int) -> Result<(OwnedFd, u32)> {
    let err = |source| Error::Io {
        op: format!("open netlink socket (protocol {protocol})"),
        source,
    };
    // SAFETY: plain syscall.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if raw < 0 {
        return Err(err(io::Error::last_os_error()));
    }
    // SAFETY: we own the fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // Extended acks give messages like "Unknown device type"; capped acks
    // keep error replies small. Old kernels lack both: not fatal.
    let _ = setsockopt_int(raw, SOL_NETLINK, NETLINK_EXT_ACK, 1);
    let _ = setsockopt_int(raw, SOL_NETLINK, NETLINK_CAP_ACK, 1);
    let _ = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, SO_RCVBUF_SIZE);
    // SAFETY: sockaddr_nl is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: valid fd and address.
    if unsafe { libc::bind(raw, &addr as *const _ as *const libc::sockaddr, len) } != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    // SAFETY: sockaddr_nl is plain data; all zeroes is a valid value.
    let mut got: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    let mut got_len = len;
    // SAFETY: valid fd, out-pointers to live values.
    if unsafe { libc::getsockname(raw, &mut got as *mut _ as *mut libc::sockaddr, &mut got_len) }
        != 0
    {
        return Err(err(io::Error::last_os_error()));
    }
    Ok((fd, got.nl_pid))
}

/// The messages of type `ty` among `msgs` that `parse` reads (others are
/// passed over) and `keep` keeps: a dump's objects of one kind.
pub(crate) fn replies_of<T>(
    msgs: &[OwnedMsg],
    ty: u16,
    parse: impl Fn(&[u8]) -> Option<T>,
    keep: impl Fn(&T) -> bool,
) -> Vec<T> {
    msgs.iter()
        .filter(|m| m.ty == ty)
        .filter_map(|m| parse(&m.payload))
        .filter(|o| keep(o))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_message_type_reports_errno() {
        // Type 0x7ff is not an rtnetlink message: the kernel answers with
        // an errno, and the socket must still work afterwards.
        let t = crate::testns::TestNs::new("socket");
        let s = t.sock();
        let e = s
            .request(&MessageBuilder::new(0x7ff, 0))
            .expect_err("bogus type");
        assert!(e.errno().is_some(), "{e}");
        assert!(s.link_by_name("lo").expect("get lo").is_some());
        // Socket::route() binds to the calling thread's namespace.
        let inside =
            t.ns.run(|| {
                Socket::route()
                    .and_then(|s| s.link_by_name("lo"))
                    .map(|l| l.map(|l| l.index))
            })
            .expect("run")
            .expect("lo");
        assert_eq!(inside, Some(1));
    }

    #[test]
    fn batch_acks_and_errors() {
        let t = crate::testns::TestNs::new("batch");
        let s = t.sock();
        let ifb = |name: &str| {
            let mut m = MessageBuilder::new(16, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK);
            m.header(&crate::link::IfInfoMsg::default());
            m.attr_str(crate::link::IFLA_IFNAME, name);
            let n = m.nest_raw(crate::link::IFLA_LINKINFO);
            m.attr_str(crate::link::IFLA_INFO_KIND, "ifb");
            m.end_nest(n);
            m
        };
        s.batch(&[ifb("b0"), ifb("b1")]).expect("batch");
        assert!(s.link_by_name("b1").expect("get").is_some());
        let e = s
            .batch(&[ifb("b2"), ifb("b0"), ifb("b3")])
            .expect_err("b0 exists");
        assert!(e.is_exists(), "{e}");
        // The socket is still in sync after the failed batch.
        assert!(s.link_by_name("b3").expect("get").is_some());
        // An error for a message without NLM_F_ACK still fails the batch.
        let mut quiet = ifb("b0");
        quiet.set_flags(NLM_F_CREATE | NLM_F_EXCL);
        let e = s.batch(&[quiet, ifb("b4")]).expect_err("b0 exists");
        assert!(e.is_exists(), "{e}");
    }
}
