//! One lease's life after the first ACK: renew at T1, rebind at T2, give up
//! at expiry, release on request. Time and the network are behind traits so
//! the state machine is tested with a fake clock and a fake server.

use crate::packet::{Message, OPT_LEASE_TIME, OPT_REBINDING_TIME, OPT_RENEWAL_TIME};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Absolute times on the lease's [`Clock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// When to start renewing with the server that granted the lease.
    pub t1: Duration,
    /// When to start rebinding with any server.
    pub t2: Duration,
    /// When the address may no longer be used.
    pub expiry: Duration,
}

/// T1/T2/expiry of an ACK received at `now` (RFC 2131 4.4.5 defaults:
/// T1 = 50 %, T2 = 87.5 %; the reference uses 85 % for T2, so do we).
pub fn timers(ack: &Message, now: Duration) -> Result<Timers, String> {
    let lease = ack
        .u32_option(OPT_LEASE_TIME)
        .ok_or("DHCP option IP Address Lease Time not found in DHCPACK")?;
    let lease = Duration::from_secs(u64::from(lease));
    let mut t2 = ack
        .u32_option(OPT_REBINDING_TIME)
        .map(|s| Duration::from_secs(u64::from(s)))
        .unwrap_or(Duration::MAX);
    if t2 > lease {
        t2 = lease * 85 / 100;
    }
    let mut t1 = ack
        .u32_option(OPT_RENEWAL_TIME)
        .map(|s| Duration::from_secs(u64::from(s)))
        .unwrap_or(Duration::MAX);
    if t1 > t2 {
        t1 = lease / 2;
    }
    Ok(Timers {
        t1: now + t1,
        t2: now + t2,
        expiry: now + lease,
    })
}

/// Where a lease is in its life (RFC 2131 4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Granted and before T1.
    Bound,
    /// After T1: asking the granting server to extend it.
    Renewing,
    /// After T2: asking any server to extend it.
    Rebinding,
    /// The lease ran out (or the server refused it): the interface is down.
    Expired,
    /// Released on request.
    Released,
}

/// What the daemon and the maintenance thread share.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The latest ACK: the address, options and lease times in force.
    pub ack: Message,
    /// The timers of that ACK.
    pub timers: Timers,
    /// Where the lease is now.
    pub state: State,
}

/// A server's answer to a REQUEST.
#[derive(Debug)]
pub enum Reply {
    /// The lease is extended; the new ACK.
    Ack(Message),
    /// The server refused: the lease is lost.
    Nak,
    /// Nothing usable came back; why, for the log.
    NoAnswer(String),
}

/// The network side of a lease.
pub trait Exchange {
    /// DISCOVER/OFFER/REQUEST/ACK.
    fn acquire(&mut self) -> Result<Message, String>;
    /// REQUEST for the held address; `rebind` once T2 has passed.
    fn renew(&mut self, lease: &Message, rebind: bool) -> Reply;
    /// Sends DHCPRELEASE for the address of `lease`.
    fn release(&mut self, lease: &Message) -> Result<(), String>;
    /// Takes the interface down when the address may no longer be used.
    fn link_down(&mut self);
}

/// What the daemon asks of a maintenance thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// Send DHCPRELEASE and stop.
    Release,
    /// Stop without telling the server (daemon shutdown).
    Forget,
}

/// The time source of a lease's maintenance thread.
pub trait Clock {
    /// Time since the clock's own start.
    fn now(&self) -> Duration;
    /// Sleeps for `d` unless a command comes first.
    fn wait(&self, d: Duration, rx: &Receiver<Cmd>) -> Option<Cmd>;
}

/// Wall time since the clock was made.
pub struct RealClock(Instant);

impl RealClock {
    /// A clock starting now.
    pub fn new() -> RealClock {
        RealClock(Instant::now())
    }
}

impl Default for RealClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for RealClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }

    fn wait(&self, d: Duration, rx: &Receiver<Cmd>) -> Option<Cmd> {
        match rx.recv_timeout(d) {
            Ok(c) => Some(c),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Cmd::Forget),
        }
    }
}

/// Shortest pause between failed renew/rebind attempts.
const MIN_RETRY: Duration = Duration::from_secs(1);

/// Half the time left until `until` (RFC 2131 4.4.5), at least
/// [`MIN_RETRY`] but never past `until`.
fn retry_delay(now: Duration, until: Duration) -> Duration {
    let left = until.saturating_sub(now);
    (left / 2).max(MIN_RETRY).min(left)
}

fn set_state(shared: &Mutex<Shared>, s: State) {
    if let Ok(mut g) = shared.lock() {
        g.state = s;
    }
}

fn commit(shared: &Mutex<Shared>, ack: Message, now: Duration) -> Result<(), String> {
    let t = timers(&ack, now)?;
    if let Ok(mut g) = shared.lock() {
        g.ack = ack;
        g.timers = t;
        g.state = State::Bound;
    }
    Ok(())
}

/// Keeps the lease alive until told to stop. `log` gets one line per event;
/// `committed` sees the state after each new ACK (to persist it).
pub fn maintain(
    shared: &Arc<Mutex<Shared>>,
    ex: &mut dyn Exchange,
    clock: &dyn Clock,
    rx: &Receiver<Cmd>,
    log: &dyn Fn(&str),
    committed: &dyn Fn(&Shared),
) {
    let saved = || {
        if let Ok(g) = shared.lock() {
            committed(&g);
        }
    };
    loop {
        let Ok(snap) = shared.lock().map(|g| g.clone()) else {
            return;
        };
        let now = clock.now();
        let t = snap.timers;
        let cmd = if snap.state == State::Expired {
            // Nothing to keep; wait for DEL (no RELEASE for a dead lease).
            clock.wait(Duration::from_secs(3600), rx)
        } else if now < t.t1 {
            clock.wait(t.t1 - now, rx)
        } else if now >= t.expiry {
            log("lease expired, bringing interface down");
            ex.link_down();
            set_state(shared, State::Expired);
            continue;
        } else {
            let rebind = now >= t.t2;
            set_state(
                shared,
                if rebind {
                    State::Rebinding
                } else {
                    State::Renewing
                },
            );
            match ex.renew(&snap.ack, rebind) {
                Reply::Ack(ack) => {
                    let now = clock.now();
                    match commit(shared, ack, now) {
                        Ok(()) => {
                            saved();
                            log(if rebind {
                                "lease rebound"
                            } else {
                                "lease renewed"
                            });
                            continue;
                        }
                        Err(e) => {
                            log(&format!("unusable DHCPACK: {e}"));
                            clock.wait(retry_delay(now, if rebind { t.expiry } else { t.t2 }), rx)
                        }
                    }
                }
                Reply::Nak => {
                    // The server no longer lets us keep the address. Start
                    // over; a different address would not match what the
                    // pod was configured with, so then the link goes down.
                    log("server refused the lease (DHCPNAK), acquiring anew");
                    match ex.acquire() {
                        Ok(ack) if ack.yiaddr == snap.ack.yiaddr => {
                            if commit(shared, ack, clock.now()).is_ok() {
                                saved();
                                log("lease acquired anew with the same address");
                                continue;
                            }
                            ex.link_down();
                            set_state(shared, State::Expired);
                            continue;
                        }
                        Ok(ack) => {
                            log(&format!(
                                "server offers {} instead of {}, bringing interface down",
                                ack.yiaddr, snap.ack.yiaddr
                            ));
                            let _ = ex.release(&ack);
                            ex.link_down();
                            set_state(shared, State::Expired);
                            continue;
                        }
                        Err(e) => {
                            log(&format!(
                                "acquiring anew failed: {e}; bringing interface down"
                            ));
                            ex.link_down();
                            set_state(shared, State::Expired);
                            continue;
                        }
                    }
                }
                Reply::NoAnswer(e) => {
                    let now = clock.now();
                    log(&format!(
                        "{} failed: {e}",
                        if rebind { "rebinding" } else { "renewal" }
                    ));
                    clock.wait(retry_delay(now, if rebind { t.expiry } else { t.t2 }), rx)
                }
            }
        };
        match cmd {
            None => {}
            Some(Cmd::Release) => {
                let Ok(snap) = shared.lock().map(|g| g.clone()) else {
                    return;
                };
                if snap.state != State::Expired {
                    log("releasing lease");
                    if let Err(e) = ex.release(&snap.ack) {
                        log(&format!("failed to release DHCP lease: {e}"));
                    }
                }
                set_state(shared, State::Released);
                return;
            }
            Some(Cmd::Forget) => return,
        }
    }
}

/// A clock that jumps instead of sleeping; it sends `Release` once it
/// reaches `stop_at`.
#[cfg(test)]
pub struct FakeClock {
    /// The current fake time.
    pub now: Mutex<Duration>,
    /// The time at which `wait` answers `Release`.
    pub stop_at: Duration,
}

#[cfg(test)]
impl Clock for Arc<FakeClock> {
    fn now(&self) -> Duration {
        self.now.lock().map(|g| *g).unwrap_or_default()
    }

    fn wait(&self, d: Duration, rx: &Receiver<Cmd>) -> Option<Cmd> {
        use std::sync::mpsc::TryRecvError;
        match rx.try_recv() {
            Ok(c) => return Some(c),
            Err(TryRecvError::Disconnected) => return Some(Cmd::Forget),
            Err(TryRecvError::Empty) => {}
        }
        let mut now = self.now.lock().ok()?;
        if *now >= self.stop_at {
            return Some(Cmd::Release);
        }
        *now = (*now + d).min(self.stop_at);
        None
    }
}

#[cfg(test)]
mod tests;
