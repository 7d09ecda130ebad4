//! The real [`Exchange`]: DHCP over an AF_PACKET socket bound to the
//! container's interface, opened inside the container's namespace (the
//! interface has no address yet, so a UDP socket could not send from it).

use crate::lease::{Exchange, Reply};
use crate::options::Options;
use crate::packet::*;
use netns::NetNs;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ETH_P_IP: u16 = 0x0800;
const PACKET_OUTGOING: u8 = 4;

/// How a lease talks to its server.
pub struct LinkExchange {
    pub ns: Arc<NetNs>,
    pub ifname: String,
    /// Option 61 as sent (type byte 0 + the client id, unless `provide` overrides it).
    pub client_id: Vec<u8>,
    pub opts: Options,
    /// How long one exchange waits for the server.
    pub timeout: Duration,
    /// Cap of the retransmission interval.
    pub resend_max: Duration,
    pub broadcast: bool,
}

struct PacketSock {
    fd: OwnedFd,
    ifindex: i32,
    mac: [u8; 6],
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn random_xid() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: writes at most 4 bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 4, 0) };
    if n != 4 {
        // Any value works; uniqueness per exchange is what matters.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        return t ^ std::process::id();
    }
    u32::from_ne_bytes(b)
}

impl PacketSock {
    fn send(&self, frame: &[u8]) -> Result<(), String> {
        // SAFETY: zeroed sockaddr_ll filled below.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = ETH_P_IP.to_be();
        sa.sll_ifindex = self.ifindex;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        // SAFETY: valid buffer and address of the stated sizes.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(os_err("send DHCP packet"));
        }
        Ok(())
    }

    /// The next DHCP reply for `xid`, or None at `deadline`.
    fn recv(&self, xid: u32, deadline: Instant) -> Result<Option<Message>, String> {
        let mut buf = vec![0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(os_err("poll"));
            }
            if r == 0 {
                continue;
            }
            // SAFETY: zeroed out-address of the right size.
            let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: valid buffer and address.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut sa as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) {
                    continue;
                }
                return Err(format!("receive DHCP packet: {e}"));
            }
            if sa.sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            let Some(payload) = client_payload(&buf[..n as usize]) else {
                continue;
            };
            if let Some(m) = Message::decode(payload) {
                if m.op == 2 && m.xid == xid && m.chaddr == self.mac {
                    return Ok(Some(m));
                }
            }
        }
    }
}

impl LinkExchange {
    /// Opens a packet socket on the interface inside the namespace, bringing
    /// the interface up first if it is down (IPAM runs before the main
    /// plugin sets it up).
    fn open(&self) -> Result<PacketSock, String> {
        let nl = netlink::Socket::route_in(&self.ns)
            .map_err(|e| format!("netlink in {}: {e}", self.ns.path().display()))?;
        let link = nl
            .link_by_name(&self.ifname)
            .map_err(|e| format!("error looking up {:?}: {e}", self.ifname))?
            .ok_or_else(|| format!("error looking up {:?}: Link not found", self.ifname))?;
        if !link.up {
            nl.set_link_up(link.index)
                .map_err(|e| format!("failed to set {:?} up: {e}", self.ifname))?;
            // Frames sent before the link is operational are dropped.
            let _ = net::wait_operational(&[(&nl, link.index)], Duration::from_secs(1));
        }
        let mac: [u8; 6] = link
            .mac
            .as_slice()
            .try_into()
            .map_err(|_| format!("{:?} has no Ethernet address", self.ifname))?;
        let fd = self
            .ns
            .run(|| {
                // SAFETY: plain socket call.
                let fd = unsafe {
                    libc::socket(
                        libc::AF_PACKET,
                        libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                        i32::from(ETH_P_IP.to_be()),
                    )
                };
                if fd < 0 {
                    return Err(os_err("packet socket"));
                }
                // SAFETY: fd is a fresh descriptor we own.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            })
            .map_err(|e| e.to_string())??;
        // SAFETY: zeroed sockaddr_ll filled below.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = ETH_P_IP.to_be();
        sa.sll_ifindex = link.index as i32;
        // SAFETY: valid address of the stated size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r != 0 {
            return Err(os_err(&format!("bind packet socket to {:?}", self.ifname)));
        }
        Ok(PacketSock {
            fd,
            ifindex: link.index as i32,
            mac,
        })
    }

    fn message(&self, kind: MessageType, xid: u32, mac: [u8; 6]) -> Message {
        let mut m = Message::request(xid, mac);
        if self.broadcast {
            m.flags = FLAG_BROADCAST;
        }
        m.set(OPT_MESSAGE_TYPE, vec![kind as u8]);
        m
    }

    fn add_options(&self, m: &mut Message) {
        m.set(OPT_CLIENT_ID, self.client_id.clone());
        for (c, v) in &self.opts.provide {
            m.set(*c, v.clone());
        }
        m.set(OPT_PARAM_REQUEST_LIST, self.opts.request.clone());
    }

    /// Sends `m` and waits for an answer of one of `want` types,
    /// retransmitting after 1 s, 2 s, 4 s… (capped at `resend_max`) until
    /// `deadline`.
    fn transact(
        &self,
        sock: &PacketSock,
        m: &Message,
        src: Ipv4Addr,
        want: &[MessageType],
        deadline: Instant,
    ) -> Result<Option<Message>, String> {
        let frame = ip_udp_frame(src, Ipv4Addr::BROADCAST, &m.encode());
        let mut gap = Duration::from_secs(1);
        loop {
            sock.send(&frame)?;
            let next = (Instant::now() + gap).min(deadline);
            while let Some(r) = sock.recv(m.xid, next)? {
                if r.message_type().is_some_and(|t| want.contains(&t)) {
                    return Ok(Some(r));
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            gap = (gap * 2).min(self.resend_max.max(Duration::from_secs(1)));
        }
    }

    fn effective_client_id(&self) -> Vec<u8> {
        self.opts
            .provide
            .iter()
            .find(|(c, _)| *c == OPT_CLIENT_ID)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| self.client_id.clone())
    }

    /// DHCPRELEASE from the daemon's own namespace, for when the container
    /// interface is gone already (bridge deletes it before calling IPAM DEL).
    fn release_from_host(&self, m: &Message, server: Ipv4Addr) -> Result<(), String> {
        let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
            .map_err(|e| format!("udp socket: {e}"))?;
        s.send_to(&m.encode(), SocketAddrV4::new(server, SERVER_PORT))
            .map_err(|e| format!("send DHCPRELEASE to {server}: {e}"))?;
        Ok(())
    }
}

impl Exchange for LinkExchange {
    fn acquire(&mut self) -> Result<Message, String> {
        let sock = self.open()?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let xid = random_xid();
            let mut d = self.message(MessageType::Discover, xid, sock.mac);
            self.add_options(&mut d);
            let Some(offer) = self.transact(
                &sock,
                &d,
                Ipv4Addr::UNSPECIFIED,
                &[MessageType::Offer],
                deadline,
            )?
            else {
                return Err(format!(
                    "no DHCPOFFER on {:?} within {:?}",
                    self.ifname, self.timeout
                ));
            };
            let server = offer
                .addr_option(OPT_SERVER_ID)
                .ok_or("DHCPOFFER without server identifier")?;
            let mut r = self.message(MessageType::Request, xid, sock.mac);
            r.set(OPT_REQUESTED_IP, offer.yiaddr.octets().to_vec());
            r.set(OPT_SERVER_ID, server.octets().to_vec());
            self.add_options(&mut r);
            match self.transact(
                &sock,
                &r,
                Ipv4Addr::UNSPECIFIED,
                &[MessageType::Ack, MessageType::Nak],
                deadline,
            )? {
                Some(a) if a.message_type() == Some(MessageType::Ack) => return Ok(a),
                // A NAK here means the offer went to someone else: start over.
                Some(_) if Instant::now() < deadline => continue,
                Some(_) => return Err("DHCP server NACK'd own offer".into()),
                None => {
                    return Err(format!(
                        "no DHCPACK on {:?} within {:?}",
                        self.ifname, self.timeout
                    ))
                }
            }
        }
    }

    fn renew(&mut self, lease: &Message, _rebind: bool) -> Reply {
        // Renewing and rebinding both broadcast (as the reference does): the
        // socket has no route to unicast with, and every server on the link
        // that owns the lease may answer.
        let sock = match self.open() {
            Ok(s) => s,
            Err(e) => return Reply::NoAnswer(e),
        };
        let mut r = self.message(MessageType::Request, random_xid(), sock.mac);
        r.ciaddr = lease.yiaddr;
        self.add_options(&mut r);
        let deadline = Instant::now() + self.timeout;
        match self.transact(
            &sock,
            &r,
            lease.yiaddr,
            &[MessageType::Ack, MessageType::Nak],
            deadline,
        ) {
            Ok(Some(a)) if a.message_type() == Some(MessageType::Ack) => Reply::Ack(a),
            Ok(Some(_)) => Reply::Nak,
            Ok(None) => Reply::NoAnswer(format!("no answer within {:?}", self.timeout)),
            Err(e) => Reply::NoAnswer(e),
        }
    }

    fn release(&mut self, lease: &Message) -> Result<(), String> {
        let server = lease
            .addr_option(OPT_SERVER_ID)
            .ok_or("lease has no server identifier")?;
        let mut m = Message::request(random_xid(), lease.chaddr);
        m.set(OPT_MESSAGE_TYPE, vec![MessageType::Release as u8]);
        m.ciaddr = lease.yiaddr;
        m.set(OPT_SERVER_ID, server.octets().to_vec());
        m.set(OPT_CLIENT_ID, self.effective_client_id());
        match self.open() {
            Ok(sock) => {
                let frame = ip_udp_frame(lease.yiaddr, Ipv4Addr::BROADCAST, &m.encode());
                sock.send(&frame)
            }
            Err(_) => self.release_from_host(&m, server),
        }
    }

    fn link_down(&mut self) {
        if let Ok(nl) = netlink::Socket::route_in(&self.ns) {
            if let Ok(Some(l)) = nl.link_by_name(&self.ifname) {
                let _ = nl.set_link_down(l.index);
            }
        }
    }
}
