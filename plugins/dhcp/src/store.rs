//! Leases that survive a daemon restart: one small JSON file per lease
//! under the daemon's state directory, written whole under a temporary name
//! and renamed (a reader sees the old or the new lease, never half of one),
//! mode 0600 in a 0700 directory. The daemon writes a lease when it is
//! acquired and after every renewal, removes it when released, and on start
//! resumes every lease still valid: its renewal timer continues where the
//! previous daemon left it, and DEL then releases it.

use crate::lease::{Shared, State, Timers};
use crate::packet::Message;
use kit::os;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One persisted lease: who it is for, what the plugin sent (to rebuild
/// the exchange), the last ACK and its timers in wall-clock milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The lease's client id, the daemon's key for it.
    pub id: String,
    /// The network's name.
    pub network: String,
    /// The container the lease is for.
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// The container's interface the lease is on.
    pub ifname: String,
    /// The container's netns path, as the plugin sent it.
    pub netns: String,
    /// CNI_ARGS of the ADD.
    pub args: String,
    /// The network configuration of the ADD.
    pub config: serde_json::Value,
    /// The ACK as sent on the wire, hex.
    pub ack: String,
    /// T1 (renew), Unix time in milliseconds.
    pub t1_ms: u64,
    /// T2 (rebind), Unix time in milliseconds.
    pub t2_ms: u64,
    /// Expiry, Unix time in milliseconds.
    pub expiry_ms: u64,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Record {
    /// Fills the lease part from `shared`, whose timers are on a clock that
    /// reads `clock_now` at this moment.
    pub fn set_lease(&mut self, shared: &Shared, clock_now: Duration) {
        let now = unix_ms();
        let at = |t: Duration| -> u64 {
            let ahead = t.as_millis() as i128 - clock_now.as_millis() as i128;
            (now as i128 + ahead).max(0) as u64
        };
        self.ack = hex(&shared.ack.encode());
        self.t1_ms = at(shared.timers.t1);
        self.t2_ms = at(shared.timers.t2);
        self.expiry_ms = at(shared.timers.expiry);
    }

    /// The lease on a clock that reads `clock_now` now; None once expired
    /// or unreadable.
    pub fn shared(&self, clock_now: Duration) -> Option<Shared> {
        let ack = Message::decode(&unhex(&self.ack)?)?;
        let now = unix_ms();
        if self.expiry_ms <= now {
            return None;
        }
        let on_clock = |ms: u64| clock_now + Duration::from_millis(ms.saturating_sub(now));
        Some(Shared {
            ack,
            timers: Timers {
                t1: on_clock(self.t1_ms),
                t2: on_clock(self.t2_ms),
                expiry: on_clock(self.expiry_ms),
            },
            state: State::Bound,
        })
    }
}

/// The lease files of one daemon.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store in `dir` (created on the first save).
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    /// The directory holding the lease files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A lease's file: named by a hash of its client id (ids may be long
    /// and hold '/').
    fn path(&self, id: &str) -> PathBuf {
        let d = Sha256::digest(id.as_bytes());
        self.dir.join(format!("{}.lease", hex(&d[..16])))
    }

    /// Writes `r` atomically, synced (a lease outlives the daemon).
    pub fn save(&self, r: &Record) -> std::io::Result<()> {
        os::make_private_dir(&self.dir)?;
        let body = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        os::write_atomic(&self.path(&r.id), &body, 0o600, os::Durability::Durable)
    }

    /// Deletes the lease of client id `id`; a missing file is fine.
    pub fn remove(&self, id: &str) {
        let _ = os::remove_file(&self.path(id));
    }

    /// Every readable record; leftovers of a crash mid-write are removed.
    pub fn load(&self) -> Vec<Record> {
        let Ok(names) = os::dir_names(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for name in names {
            let p = self.dir.join(name);
            match p.extension().and_then(|x| x.to_str()) {
                Some("lease") => {}
                Some("tmp") => {
                    let _ = os::remove_file(&p);
                    continue;
                }
                _ => continue,
            }
            let r = os::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok());
            match r {
                Some(r) if self.path(&r.id) == p => out.push(r),
                _ => {
                    let _ = os::remove_file(&p);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::OPT_LEASE_TIME;

    fn ack() -> Message {
        let mut m = Message::request(7, [2, 0, 0, 0, 0, 1]);
        m.op = 2;
        m.yiaddr = [10, 0, 0, 5].into();
        m.options
            .push((OPT_LEASE_TIME, 120u32.to_be_bytes().to_vec()));
        m
    }

    #[test]
    fn round_trip_keeps_the_timers_and_expired_leases_are_dropped() {
        let dir = std::env::temp_dir().join(format!("rcni-dhcp-store-{}", kit::os::pid()));
        let s = Store::new(&dir);
        let shared = Shared {
            ack: ack(),
            timers: crate::lease::timers(&ack(), Duration::from_secs(100)).expect("timers"),
            state: State::Bound,
        };
        let mut r = Record {
            id: "c/net/eth0".into(),
            network: "net".into(),
            container_id: "c".into(),
            ifname: "eth0".into(),
            netns: "/run/netns/x".into(),
            args: String::new(),
            config: serde_json::json!({"name": "net"}),
            ack: String::new(),
            t1_ms: 0,
            t2_ms: 0,
            expiry_ms: 0,
        };
        // 10 s into a 120 s lease.
        r.set_lease(&shared, Duration::from_secs(110));
        s.save(&r).expect("save");
        let back = s.load();
        assert_eq!(back, vec![r.clone()]);
        // Resumed on a fresh clock at 0: T1 (60 s) is ~50 s away.
        let sh = back[0].shared(Duration::ZERO).expect("valid");
        assert_eq!(sh.ack.yiaddr, ack().yiaddr);
        let t1 = sh.timers.t1.as_secs_f64();
        assert!((49.0..=50.5).contains(&t1), "{t1}");
        let mode = |p: &Path| kit::os::mode(p).expect("stat") & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&s.path(&r.id)), 0o600);
        r.expiry_ms = 1;
        assert!(r.shared(Duration::ZERO).is_none(), "expired");
        s.remove(&r.id);
        assert!(s.load().is_empty());
        let _ = kit::os::remove_dir_all(&dir);
    }
}
