use super::*;
use crate::packet::*;
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::mpsc::channel;

fn ack(addr: [u8; 4], lease: u32, t1: Option<u32>, t2: Option<u32>) -> Message {
    let mut m = Message::request(7, [2, 0, 0, 0, 0, 9]);
    m.op = 2;
    m.yiaddr = Ipv4Addr::from(addr);
    m.set(OPT_MESSAGE_TYPE, vec![MessageType::Ack as u8]);
    m.set(OPT_SUBNET_MASK, vec![255, 255, 255, 0]);
    m.set(OPT_LEASE_TIME, lease.to_be_bytes().to_vec());
    if let Some(t) = t1 {
        m.set(OPT_RENEWAL_TIME, t.to_be_bytes().to_vec());
    }
    if let Some(t) = t2 {
        m.set(OPT_REBINDING_TIME, t.to_be_bytes().to_vec());
    }
    m
}

/// A server that answers from a script and notes when it was asked what.
struct FakeServer {
    clock: Arc<FakeClock>,
    renew: VecDeque<Reply>,
    acquire: VecDeque<Result<Message, String>>,
    /// Seconds spent on each exchange (a real one waits for answers).
    cost: Duration,
    log: Vec<(u64, String)>,
}

impl FakeServer {
    fn new(clock: &Arc<FakeClock>) -> FakeServer {
        FakeServer {
            clock: clock.clone(),
            renew: VecDeque::new(),
            acquire: VecDeque::new(),
            cost: Duration::from_secs(2),
            log: Vec::new(),
        }
    }

    fn note(&mut self, what: &str) {
        let now = self.clock.now();
        self.log.push((now.as_secs(), what.to_string()));
        if let Ok(mut n) = self.clock.now.lock() {
            *n += self.cost;
        }
    }
}

impl Exchange for FakeServer {
    fn acquire(&mut self) -> Result<Message, String> {
        self.note("acquire");
        self.acquire.pop_front().unwrap_or(Err("silent".into()))
    }
    fn renew(&mut self, _lease: &Message, rebind: bool) -> Reply {
        self.note(if rebind { "rebind" } else { "renew" });
        self.renew
            .pop_front()
            .unwrap_or(Reply::NoAnswer("silent".into()))
    }
    fn release(&mut self, lease: &Message) -> Result<(), String> {
        self.note(&format!("release {}", lease.yiaddr));
        Ok(())
    }
    fn link_down(&mut self) {
        self.note("link down");
    }
}

fn run(first: Message, server: &mut FakeServer, clock: &Arc<FakeClock>) -> Arc<Mutex<Shared>> {
    let shared = Arc::new(Mutex::new(Shared {
        timers: timers(&first, clock.now()).expect("timers"),
        ack: first,
        state: State::Bound,
    }));
    let (_tx, rx) = channel();
    maintain(&shared, server, clock, &rx, &|_| {}, &|_| {});
    shared
}

fn clock(stop_at: u64) -> Arc<FakeClock> {
    Arc::new(FakeClock {
        now: Mutex::new(Duration::ZERO),
        stop_at: Duration::from_secs(stop_at),
    })
}

fn events(s: &FakeServer) -> Vec<String> {
    s.log.iter().map(|(t, w)| format!("{t} {w}")).collect()
}

#[test]
fn timers_default_and_clamp() {
    let t = timers(&ack([10, 0, 0, 5], 1000, None, None), Duration::ZERO).expect("ok");
    assert_eq!(t.t1.as_secs(), 500);
    assert_eq!(t.t2.as_secs(), 850);
    assert_eq!(t.expiry.as_secs(), 1000);
    // T2 beyond the lease and T1 beyond T2 fall back to the defaults.
    let t = timers(
        &ack([10, 0, 0, 5], 100, Some(95), Some(200)),
        Duration::ZERO,
    )
    .expect("ok");
    assert_eq!((t.t1.as_secs(), t.t2.as_secs()), (50, 85));
    let t = timers(
        &ack([10, 0, 0, 5], 100, Some(30), Some(60)),
        Duration::from_secs(5),
    )
    .expect("ok");
    assert_eq!((t.t1.as_secs(), t.t2.as_secs()), (35, 65));
    let mut no_time = ack([10, 0, 0, 5], 100, None, None);
    no_time.options.retain(|(c, _)| *c != OPT_LEASE_TIME);
    assert!(timers(&no_time, Duration::ZERO).is_err());
}

#[test]
fn renews_at_t1_every_time_and_releases_at_the_end() {
    let c = clock(300);
    let mut s = FakeServer::new(&c);
    // Each renewal ACK comes 2 s after T1 and restarts the lease clock.
    for _ in 0..5 {
        s.renew
            .push_back(Reply::Ack(ack([10, 0, 0, 5], 120, None, None)));
    }
    let shared = run(ack([10, 0, 0, 5], 120, None, None), &mut s, &c);
    assert_eq!(
        events(&s),
        [
            "60 renew",
            "122 renew",
            "184 renew",
            "246 renew",
            "300 release 10.0.0.5"
        ]
    );
    assert_eq!(shared.lock().expect("lock").state, State::Released);
}

#[test]
fn silent_server_means_retries_then_rebind_then_expiry() {
    let c = clock(500);
    let mut s = FakeServer::new(&c);
    let shared = run(ack([10, 0, 0, 5], 120, None, None), &mut s, &c);
    let ev = events(&s);
    // Renewals from T1 (60) until T2 (102), each retry after half the time
    // left; rebinding from T2 until expiry at 120; then the link goes down
    // and DEL sends no RELEASE for the dead lease.
    assert_eq!(ev.first().map(String::as_str), Some("60 renew"));
    let renews: Vec<u64> = s
        .log
        .iter()
        .filter(|(_, w)| w == "renew")
        .map(|(t, _)| *t)
        .collect();
    let rebinds: Vec<u64> = s
        .log
        .iter()
        .filter(|(_, w)| w == "rebind")
        .map(|(t, _)| *t)
        .collect();
    assert!(renews.len() >= 3, "{ev:?}");
    assert!(renews.iter().all(|t| (60..102).contains(t)), "{ev:?}");
    assert!(rebinds.len() >= 2, "{ev:?}");
    assert!(rebinds.iter().all(|t| (102..120).contains(t)), "{ev:?}");
    assert!(ev.iter().any(|e| e == "120 link down"), "{ev:?}");
    assert!(!ev.iter().any(|e| e.contains("release")), "{ev:?}");
    // DEL came after expiry: nothing was sent for the dead lease.
    assert_eq!(shared.lock().expect("lock").state, State::Released);
}

#[test]
fn rebind_success_restores_bound() {
    let c = clock(200);
    let mut s = FakeServer::new(&c);
    for _ in 0..3 {
        s.renew.push_back(Reply::NoAnswer("timeout".into()));
    }
    s.renew.push_back(Reply::NoAnswer("timeout".into()));
    // Enough silent renewals to pass T2; the first rebind is answered.
    let mut answered = false;
    let first = ack([10, 0, 0, 5], 100, None, None);
    let shared = Arc::new(Mutex::new(Shared {
        timers: timers(&first, Duration::ZERO).expect("timers"),
        ack: first,
        state: State::Bound,
    }));
    let (_tx, rx) = channel();
    struct Wrap<'a> {
        inner: &'a mut FakeServer,
        answered: &'a mut bool,
    }
    impl Exchange for Wrap<'_> {
        fn acquire(&mut self) -> Result<Message, String> {
            self.inner.acquire()
        }
        fn renew(&mut self, lease: &Message, rebind: bool) -> Reply {
            let r = self.inner.renew(lease, rebind);
            if rebind && !*self.answered {
                *self.answered = true;
                return Reply::Ack(ack([10, 0, 0, 5], 100, None, None));
            }
            if rebind {
                return Reply::Ack(ack([10, 0, 0, 5], 100, None, None));
            }
            r
        }
        fn release(&mut self, lease: &Message) -> Result<(), String> {
            self.inner.release(lease)
        }
        fn link_down(&mut self) {
            self.inner.link_down()
        }
    }
    let mut w = Wrap {
        inner: &mut s,
        answered: &mut answered,
    };
    maintain(&shared, &mut w, &c, &rx, &|_| {}, &|_| {});
    let ev = events(&s);
    let rebind_at = s
        .log
        .iter()
        .find(|(_, w)| w == "rebind")
        .map(|(t, _)| *t)
        .expect("a rebind");
    assert!((85..100).contains(&rebind_at), "{ev:?}");
    // After the rebind the lease is bound again: next renewal at its new T1.
    assert!(
        s.log
            .iter()
            .any(|(t, w)| w == "renew" && *t == rebind_at + 2 + 50),
        "{ev:?}"
    );
    assert!(!ev.iter().any(|e| e.contains("link down")), "{ev:?}");
    assert!(ev.last().is_some_and(|e| e.contains("release")), "{ev:?}");
}

#[test]
fn nak_with_same_address_keeps_going_other_address_goes_down() {
    let c = clock(100);
    let mut s = FakeServer::new(&c);
    s.renew.push_back(Reply::Nak);
    s.acquire.push_back(Ok(ack([10, 0, 0, 5], 120, None, None)));
    run(ack([10, 0, 0, 5], 120, None, None), &mut s, &c);
    assert_eq!(
        events(&s),
        ["60 renew", "62 acquire", "100 release 10.0.0.5"]
    );

    let c = clock(100);
    let mut s = FakeServer::new(&c);
    s.renew.push_back(Reply::Nak);
    s.acquire.push_back(Ok(ack([10, 0, 0, 9], 120, None, None)));
    let shared = run(ack([10, 0, 0, 5], 120, None, None), &mut s, &c);
    assert_eq!(
        events(&s),
        [
            "60 renew",
            "62 acquire",
            "64 release 10.0.0.9",
            "66 link down"
        ]
    );
    // DEL came after expiry: nothing was sent for the dead lease.
    assert_eq!(shared.lock().expect("lock").state, State::Released);
}

#[test]
fn release_command_stops_at_once() {
    let c = clock(10_000);
    let mut s = FakeServer::new(&c);
    let first = ack([10, 0, 0, 5], 3600, None, None);
    let shared = Arc::new(Mutex::new(Shared {
        timers: timers(&first, Duration::ZERO).expect("timers"),
        ack: first,
        state: State::Bound,
    }));
    let (tx, rx) = channel();
    tx.send(Cmd::Release).expect("send");
    maintain(&shared, &mut s, &c, &rx, &|_| {}, &|_| {});
    assert_eq!(events(&s), ["0 release 10.0.0.5"]);

    let (tx, rx) = channel();
    tx.send(Cmd::Forget).expect("send");
    let mut s = FakeServer::new(&c);
    maintain(&shared, &mut s, &c, &rx, &|_| {}, &|_| {});
    assert!(s.log.is_empty());
}
