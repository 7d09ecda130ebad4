//! AF_PACKET datagram sockets (link-level frames without the Ethernet
//! header) bound to one interface, opened inside a namespace: how a DHCP
//! client talks before its interface has an address.

use netns::NetNs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

/// `sll_pkttype` of a frame this host sent (seen again on the socket).
const PACKET_OUTGOING: u8 = 4;

/// A packet socket for one protocol on one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    proto: u16,
}

fn sockaddr(ifindex: i32, proto: u16) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = proto.to_be();
    sa.sll_ifindex = ifindex;
    sa
}

const SOCKADDR_LL_LEN: libc::socklen_t =
    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;

impl PacketSocket {
    /// Opens the socket inside `ns` (the namespace of interface `ifindex`)
    /// for EtherType `proto` and binds it to the interface.
    pub fn open_in(ns: &NetNs, ifindex: u32, proto: u16) -> io::Result<PacketSocket> {
        let ifindex = i32::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index"))?;
        let fd = ns
            .run(|| {
                // SAFETY: a plain socket call; no memory is passed.
                let fd = unsafe {
                    libc::socket(
                        libc::AF_PACKET,
                        libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                        i32::from(proto.to_be()),
                    )
                };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: fd is a fresh descriptor nothing else owns.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            })
            .map_err(io::Error::other)??;
        let sa = sockaddr(ifindex, proto);
        // SAFETY: a valid sockaddr_ll of the stated size, read only.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                SOCKADDR_LL_LEN,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket { fd, ifindex, proto })
    }

    /// Sends `frame` to the link-level broadcast address.
    pub fn send_broadcast(&self, frame: &[u8]) -> io::Result<()> {
        let mut sa = sockaddr(self.ifindex, self.proto);
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        // SAFETY: frame and sa are valid for the lengths given, read only.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                SOCKADDR_LL_LEN,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next frame another host sent, into `buf`: its length, or `None`
    /// once `deadline` passes.
    pub fn recv_until(&self, buf: &mut [u8], deadline: Instant) -> io::Result<Option<usize>> {
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
            // SAFETY: one valid pollfd, for the duration of the call.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if r == 0 {
                continue;
            }
            let mut sa = sockaddr(0, 0);
            let mut len = SOCKADDR_LL_LEN;
            // SAFETY: buf and sa are valid and writable for the lengths
            // given; the kernel writes at most that much.
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
                let e = io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    continue;
                }
                return Err(e);
            }
            if sa.sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            return Ok(Some(n as usize));
        }
    }
}

/// Four random bytes from the kernel (`getrandom`), or `None` when it
/// cannot give them.
pub fn random_u32() -> Option<u32> {
    let mut b = [0u8; 4];
    // SAFETY: writes at most 4 bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 4, 0) };
    (n == 4).then(|| u32::from_ne_bytes(b))
}
