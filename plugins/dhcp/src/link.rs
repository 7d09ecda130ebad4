//! The real [`Exchange`]: DHCP over an AF_PACKET socket bound to the
//! container's interface, opened inside the container's namespace (the
//! interface has no address yet, so a UDP socket could not send from it).

use crate::lease::{Exchange, Reply};
use crate::options::Options;
use crate::packet::*;
use kit::packet::PacketSocket;
use netns::NetNs;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ETH_P_IP: u16 = 0x0800;

/// How a lease talks to its server.
pub struct LinkExchange {
    /// The container's network namespace.
    pub ns: Arc<NetNs>,
    /// The container interface the lease is for.
    pub ifname: String,
    /// Option 61 as sent (type byte 0 + the client id, unless `provide` overrides it).
    pub client_id: Vec<u8>,
    /// The options asked for and sent along.
    pub opts: Options,
    /// How long one exchange waits for the server.
    pub timeout: Duration,
    /// Cap of the retransmission interval.
    pub resend_max: Duration,
    /// Set the broadcast flag on every message sent (`-broadcast`).
    pub broadcast: bool,
}

struct PacketSock {
    sock: PacketSocket,
    mac: [u8; 6],
}

fn random_xid() -> u32 {
    kit::packet::random_u32().unwrap_or_else(|| {
        // Any value works; uniqueness per exchange is what matters.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        t ^ kit::os::pid()
    })
}

impl PacketSock {
    fn send(&self, frame: &[u8]) -> Result<(), String> {
        self.sock
            .send_broadcast(frame)
            .map_err(|e| format!("send DHCP packet: {e}"))
    }

    /// The next DHCP reply for `xid`, or None at `deadline`.
    fn recv(&self, xid: u32, deadline: Instant) -> Result<Option<Message>, String> {
        let mut buf = vec![0u8; 2048];
        loop {
            let Some(n) = self
                .sock
                .recv_until(&mut buf, deadline)
                .map_err(|e| format!("receive DHCP packet: {e}"))?
            else {
                return Ok(None);
            };
            let Some(payload) = client_payload(&buf[..n]) else {
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
            let _ = kit::wait_operational(&[(&nl, link.index)], Duration::from_secs(1));
        }
        let mac: [u8; 6] = link
            .mac
            .as_slice()
            .try_into()
            .map_err(|_| format!("{:?} has no Ethernet address", self.ifname))?;
        let sock = PacketSocket::open_in(&self.ns, link.index, ETH_P_IP)
            .map_err(|e| format!("packet socket on {:?}: {e}", self.ifname))?;
        Ok(PacketSock { sock, mac })
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
