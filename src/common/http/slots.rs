//! The connection table: one slot per open connection, what each one is doing, and who
//! gets a slot when the table is full.
//!
//! A full table does not turn the newcomer away while some connection is only waiting:
//! the one that has waited longest for a request head (a stalled or trickled head, or an
//! idle keep-alive) is closed to make room, and a connection that is only draining after
//! its last response goes first. So one local process that opens hundreds of connections
//! and trickles header bytes cannot lock out a health probe; a newcomer gets the fast 503
//! only when every slot is running a request or a WebSocket.
//!
//! Per request a connection changes state with one atomic compare-and-swap. The table
//! lock is taken only when a connection opens or closes and when one is evicted.

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::common::sync::lock;

/// Waiting for a request head: new, trickling, or idle between keep-alive requests.
const WAITING: u8 = 0;
/// Reading a body, running the handler or writing the response.
const BUSY: u8 = 1;
/// Response sent, draining the client's input before the close.
const LINGERING: u8 = 2;
const WEBSOCKET: u8 = 3;
/// Shut down by the table (eviction or stop); its thread is on the way out.
const EVICTED: u8 = 4;

/// Descriptors kept out of the connection budget: the std streams, the listener, log
/// files, the lease lock, atomic state writes (temp file and directory), exec pipes and
/// proxy sockets. Without them a full table turns into EMFILE for the lease renew.
pub const FD_RESERVE: u64 = 32;
/// Budget per connection: its socket, plus one for whatever its request opens (a proxied
/// call's socket, a state write's temp file).
pub const FDS_PER_CONNECTION: u64 = 2;
/// The cap never drops below this, however low the open-files limit.
const MIN_CAP: usize = 4;
/// How long a newcomer may wait for evicted connections to finish closing.
const CLOSING_WAIT: Duration = Duration::from_secs(1);
/// A connection is not evicted in its first moments, so its thread gets to read the
/// request that is on its way; a newcomer waits for that instead (backpressure on an
/// attacker that reconnects faster than the table turns over).
const MIN_AGE: Duration = Duration::from_millis(20);
/// Waiting connections with queued input passed over before the oldest is evicted anyway.
const PENDING_SKIPS: usize = 16;
/// How much of a waiting connection's queued input is looked at for a whole request head
/// (a health probe's head is a few dozen bytes; a longer one counts as partial).
const PEEK_BYTES: usize = 2048;
/// At most one "table full" warning per this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// One open connection. Its thread reads and writes `stream`; the table keeps the same
/// handle to shut it down on eviction or stop.
pub struct Slot {
    id: u64,
    pub stream: TcpStream,
    state: AtomicU8,
    /// When the current wait began (µs since the table's epoch, never 0); 0 while
    /// lingering, so a draining connection is the first one evicted.
    since: AtomicU64,
}

impl Slot {
    /// The table closed this connection; its thread should end without answering.
    pub fn evicted(&self) -> bool {
        self.state.load(Ordering::Acquire) == EVICTED
    }

    fn enter(&self, from: u8, to: u8) -> bool {
        self.state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

struct Table {
    slots: HashMap<u64, Arc<Slot>>,
    /// Slots marked EVICTED whose threads have not yet released them.
    evicting: usize,
    next_id: u64,
    evictions: u64,
    last_warn: Option<Instant>,
}

pub struct Slots {
    cap: usize,
    /// `cap` plus room for evicted connections that are still closing.
    hard_cap: usize,
    epoch: Instant,
    table: Mutex<Table>,
    freed: Condvar,
    /// Slots in the table, evicted ones included (= threads and sockets).
    open: AtomicUsize,
    /// Slots not evicted: what the cap applies to.
    live: AtomicUsize,
    stopping: AtomicBool,
}

/// What one eviction attempt did.
enum Eviction {
    Done,
    /// Every connection is busy or a WebSocket.
    NoneWaiting,
    /// The best victim arrived less than `MIN_AGE` ago; it will be old enough after this.
    TooYoung(Duration),
    /// The victim started a request between the scan and the eviction: scan again.
    Raced,
}

/// What a waiting connection has in its receive queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queued {
    Nothing,
    /// Some bytes, not yet a whole request head.
    Partial,
    /// A whole request head (ends with an empty line): a request about to be read.
    WholeHead,
}

/// Lost races in a row before any waiting connection is evicted (so the scan cannot spin).
const MAX_RACES: u32 = 8;

/// Why a newcomer got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is running a request or a WebSocket.
    AllBusy,
    /// Evicted connections did not finish closing in time.
    StillClosing,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::AllBusy => "every slot is busy",
            Refusal::StillClosing => "evicted connections are still closing",
        })
    }
}

impl Slots {
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Self {
            cap,
            hard_cap: cap + (cap / 4).clamp(1, 16),
            epoch: Instant::now(),
            table: Mutex::new(Table {
                slots: HashMap::new(),
                evicting: 0,
                next_id: 1,
                evictions: 0,
                last_warn: None,
            }),
            freed: Condvar::new(),
            open: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        }
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Connections open now (HTTP and WebSocket, including ones being closed).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// At least half the slots are taken: heads get the short deadline.
    pub fn under_pressure(&self) -> bool {
        self.live.load(Ordering::Relaxed) * 2 >= self.cap
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Evictions so far.
    pub fn evictions(&self) -> u64 {
        self.lock().evictions
    }

    /// A slot for a newly accepted connection, evicting the longest waiter if the table
    /// is full. `Err` hands the stream back so the caller can answer 503.
    pub fn admit(&self, stream: TcpStream) -> Result<Arc<Slot>, (TcpStream, Refusal)> {
        let mut t = self.lock();
        let give_up = Instant::now() + CLOSING_WAIT;
        let mut races = 0;
        loop {
            if t.slots.len() - t.evicting >= self.cap {
                let patient = Instant::now() < give_up;
                match self.evict_longest_waiting(&mut t, patient) {
                    Eviction::Done => continue,
                    Eviction::Raced if races < MAX_RACES => {
                        races += 1;
                        continue;
                    }
                    Eviction::Raced => {
                        if !self.evict_any_waiting(&mut t) {
                            return Err((stream, Refusal::AllBusy));
                        }
                        continue;
                    }
                    Eviction::NoneWaiting => return Err((stream, Refusal::AllBusy)),
                    Eviction::TooYoung(wait) => {
                        // Churn faster than new threads get to read their heads: give the
                        // youngest a moment rather than close a client mid-arrival.
                        let wait = wait.min(give_up.saturating_duration_since(Instant::now()));
                        t = self.wait_freed(t, wait);
                        continue;
                    }
                }
            }
            if t.slots.len() >= self.hard_cap {
                // Evicted threads are still closing their sockets: their descriptors are
                // not free yet. Wait for them (backpressure on accept) rather than refuse.
                let left = give_up.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err((stream, Refusal::StillClosing));
                }
                t = self.wait_freed(t, left);
                continue;
            }
            break;
        }
        let id = t.next_id;
        t.next_id += 1;
        let slot = Arc::new(Slot {
            id,
            stream,
            state: AtomicU8::new(WAITING),
            since: AtomicU64::new(self.now_us()),
        });
        t.slots.insert(id, slot.clone());
        self.publish(&t);
        Ok(slot)
    }

    /// Gives the slot back; called once by the connection's thread as it ends.
    pub fn release(&self, slot: &Slot) {
        let mut t = self.lock();
        if t.slots.remove(&slot.id).is_some() && slot.evicted() {
            t.evicting -= 1;
        }
        self.publish(&t);
        drop(t);
        self.freed.notify_all();
    }

    /// The connection starts waiting for its next request head. False if it was evicted.
    pub fn begin_wait(&self, slot: &Slot) -> bool {
        slot.since.store(self.now_us(), Ordering::Release);
        slot.enter(BUSY, WAITING) || slot.state.load(Ordering::Acquire) == WAITING
    }

    /// A complete head arrived: the connection is no longer evictable. False if it was
    /// evicted first.
    pub fn begin_work(&self, slot: &Slot) -> bool {
        slot.enter(WAITING, BUSY)
    }

    /// The last response (or an error answer) is out; the connection drains until the
    /// client closes. False if it was evicted meanwhile.
    pub fn begin_linger(&self, slot: &Slot) -> bool {
        slot.since.store(0, Ordering::Release);
        slot.enter(BUSY, LINGERING) || slot.enter(WAITING, LINGERING)
    }

    /// The connection became a WebSocket session (never evicted; closed by `begin_stop`).
    pub fn begin_websocket(&self, slot: &Slot) -> bool {
        slot.enter(BUSY, WEBSOCKET)
    }

    /// Stops admitting and closes every connection not running a request. Called
    /// repeatedly while a stop waits, so connections that finish a request go too.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let mut t = self.lock();
        let mut newly_evicted = 0;
        for slot in t.slots.values() {
            let state = slot.state.load(Ordering::Acquire);
            let close = match state {
                WAITING | LINGERING => {
                    let won = slot.enter(state, EVICTED);
                    newly_evicted += usize::from(won);
                    won
                }
                WEBSOCKET => true,
                _ => false,
            };
            if close {
                let _ = slot.stream.shutdown(Shutdown::Both);
            }
        }
        t.evicting += newly_evicted;
        self.publish(&t);
    }

    fn wait_freed<'a>(&self, t: MutexGuard<'a, Table>, wait: Duration) -> MutexGuard<'a, Table> {
        match self.freed.wait_timeout(t, wait) {
            Ok((guard, _)) => guard,
            // The next `lock` reports and clears the poisoning (common::sync's policy).
            Err(poisoned) => poisoned.into_inner().0,
        }
    }

    /// Closes the connection that has waited longest for a request head (lingering ones
    /// first). With `patient`, a victim younger than `MIN_AGE` is not closed yet.
    fn evict_longest_waiting(&self, t: &mut Table, patient: bool) -> Eviction {
        let mut candidates: Vec<(u64, &Arc<Slot>)> = t
            .slots
            .values()
            .filter(|s| matches!(s.state.load(Ordering::Acquire), WAITING | LINGERING))
            .map(|s| (s.since.load(Ordering::Acquire), s))
            .collect();
        // Waits that began in the same microsecond go in admission order, not the
        // hash map's.
        candidates.sort_unstable_by_key(|(since, s)| (*since, s.id));
        // A waiting connection with input already queued is a request about to be read
        // (a fresh client whose thread has not run yet, a keep-alive client's next
        // request): pass over a few of those before falling back to the oldest. One whose
        // whole request head is queued is never the fallback: under load its thread may
        // not have run for tens of ms, and closing it would drop a complete request (a
        // trickling attacker never has a whole head queued).
        let queued: Vec<Queued> = candidates
            .iter()
            .take(PENDING_SKIPS)
            .map(|(_, s)| queued_input(&s.stream))
            .collect();
        let first_idle = queued.iter().position(|q| *q == Queued::Nothing);
        let first_partial = || {
            let beyond = candidates
                .iter()
                .skip(PENDING_SKIPS)
                .position(|(_, s)| queued_input(&s.stream) != Queued::WholeHead)
                .map(|i| i + PENDING_SKIPS);
            queued.iter().position(|q| *q == Queued::Partial).or(beyond)
        };
        let pick = first_idle
            .or_else(first_partial)
            .map(|i| Arc::clone(candidates[i].1));
        let all_arriving = pick.is_none() && !candidates.is_empty();
        drop(candidates);
        let Some(victim) = pick else {
            // Every waiting connection has a whole request queued: they are about to be
            // busy; the newcomer waits for one of them to finish rather than close one.
            return if all_arriving && patient {
                Eviction::TooYoung(MIN_AGE)
            } else {
                Eviction::NoneWaiting
            };
        };
        let age = Duration::from_micros(
            self.now_us()
                .saturating_sub(victim.since.load(Ordering::Acquire)),
        );
        if patient && age < MIN_AGE {
            return Eviction::TooYoung(MIN_AGE - age);
        }
        let state = victim.state.load(Ordering::Acquire);
        // It may have started a request since the scan; the caller then looks again.
        if !(matches!(state, WAITING | LINGERING) && victim.enter(state, EVICTED)) {
            return Eviction::Raced;
        }
        let _ = victim.stream.shutdown(Shutdown::Both);
        t.evicting += 1;
        t.evictions += 1;
        let now = Instant::now();
        if t.last_warn
            .is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
        {
            t.last_warn = Some(now);
            log::warn!(
                "connection table full ({} slots): closing the connections that waited longest for a request ({} so far)",
                self.cap,
                t.evictions
            );
        }
        self.publish(t);
        Eviction::Done
    }

    /// The slow path after a lost race: evict whichever connection is still waiting.
    fn evict_any_waiting(&self, t: &mut Table) -> bool {
        let victim = t.slots.values().find(|s| {
            let state = s.state.load(Ordering::Acquire);
            matches!(state, WAITING | LINGERING) && s.enter(state, EVICTED)
        });
        let Some(victim) = victim else {
            return false;
        };
        let _ = victim.stream.shutdown(Shutdown::Both);
        t.evicting += 1;
        t.evictions += 1;
        self.publish(t);
        true
    }

    fn publish(&self, t: &Table) {
        self.open.store(t.slots.len(), Ordering::Release);
        self.live
            .store(t.slots.len() - t.evicting, Ordering::Release);
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX) + 1
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }
}

/// Whether the peer has sent bytes the connection's thread has not read yet. Asked
/// without blocking and without touching the socket's own (blocking) mode, which its
/// thread relies on.
fn queued_input(stream: &TcpStream) -> Queued {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; PEEK_BYTES];
    // SAFETY: recv into a buffer we own, on a descriptor the Arc'd slot keeps open.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    let Ok(n) = usize::try_from(n) else {
        return Queued::Nothing;
    };
    if n == 0 {
        Queued::Nothing
    } else if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
        Queued::WholeHead
    } else {
        Queued::Partial
    }
}

/// The soft open-files limit, or None when unlimited or unknown.
pub fn nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(lim.rlim_cur)
}

/// The most connections an open-files limit of `nofile` can carry with `FD_RESERVE`
/// descriptors kept back.
pub fn fd_cap(nofile: u64) -> usize {
    let budget = nofile.saturating_sub(FD_RESERVE) / FDS_PER_CONNECTION;
    usize::try_from(budget).unwrap_or(usize::MAX).max(MIN_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// `n` accepted server-side streams (their clients are returned to keep them open).
    fn streams(n: usize) -> (Vec<TcpStream>, Vec<TcpStream>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut clients = Vec::new();
        let mut servers = Vec::new();
        for _ in 0..n {
            clients.push(TcpStream::connect(addr).unwrap());
            servers.push(l.accept().unwrap().0);
        }
        (clients, servers)
    }

    /// Waits until the table's clock has moved on, so the next wait starts later.
    fn tick(slots: &Slots) {
        let t0 = slots.now_us();
        while slots.now_us() == t0 {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn fd_cap_keeps_a_reserve() {
        assert_eq!(fd_cap(64), 16);
        assert_eq!(fd_cap(4096), 2032);
        assert_eq!(fd_cap(10), MIN_CAP);
    }

    #[test]
    fn full_table_evicts_the_longest_waiting_and_spares_busy_ones() {
        let (mut clients, servers) = streams(4);
        let slots = Slots::new(3);
        let mut servers = servers.into_iter();
        let a = slots.admit(servers.next().unwrap()).unwrap();
        tick(&slots);
        let b = slots.admit(servers.next().unwrap()).unwrap();
        let c = slots.admit(servers.next().unwrap()).unwrap();
        // `a` waited longest but is running a request: `b` goes instead.
        assert!(slots.begin_work(&a));
        let d = slots.admit(servers.next().unwrap()).unwrap();
        assert_eq!(
            (a.evicted(), b.evicted(), c.evicted(), d.evicted()),
            (false, true, false, false)
        );
        // The evicted client sees its connection closed.
        clients[1]
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(clients[1].read(&mut byte).map_err(|e| e.kind()), Ok(0));
        // An evicted connection cannot start a request.
        assert!(!slots.begin_work(&b));
        assert_eq!((slots.open(), slots.live.load(Ordering::SeqCst)), (4, 3));
        slots.release(&b);
        assert_eq!(slots.open(), 3);
        assert_eq!(slots.evictions(), 1);
    }

    #[test]
    fn a_just_arrived_connection_gets_a_moment_before_eviction() {
        let (_clients, servers) = streams(2);
        let slots = Slots::new(1);
        let mut servers = servers.into_iter();
        let a = slots.admit(servers.next().unwrap()).unwrap();
        let t0 = Instant::now();
        let b = slots.admit(servers.next().unwrap()).unwrap();
        let waited = t0.elapsed();
        assert_eq!((a.evicted(), b.evicted()), (true, false));
        assert!(
            waited >= MIN_AGE - Duration::from_millis(2) && waited < Duration::from_millis(500),
            "expected the newcomer to wait ~{MIN_AGE:?}, waited {waited:?}"
        );
    }

    #[test]
    fn a_waiting_connection_with_its_request_queued_is_passed_over() {
        use std::io::Write;
        let (mut clients, servers) = streams(3);
        let slots = Slots::new(2);
        let mut servers = servers.into_iter();
        let a = slots.admit(servers.next().unwrap()).unwrap();
        tick(&slots);
        let b = slots.admit(servers.next().unwrap()).unwrap();
        // `a` is oldest, but its request already arrived: `b` goes.
        clients[0].write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let queued = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(5));
            queued_input(&a.stream) == Queued::WholeHead
        });
        assert!(queued, "the request never showed as queued input");
        let _c = slots.admit(servers.next().unwrap()).unwrap();
        assert_eq!((a.evicted(), b.evicted()), (false, true));
    }

    /// A fresh probe whose thread had not run yet was closed under a trickle attack (every
    /// waiting connection had bytes queued, so the oldest went: the probe).
    #[test]
    fn a_whole_request_head_queued_is_never_the_fallback_victim() {
        use std::io::Write;
        let (mut clients, servers) = streams(3);
        let slots = Slots::new(2);
        let mut servers = servers.into_iter();
        let a = slots.admit(servers.next().unwrap()).unwrap();
        tick(&slots);
        let b = slots.admit(servers.next().unwrap()).unwrap();
        // `a` (oldest) has its whole head queued, `b` a trickled part of one.
        clients[0]
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        clients[1].write_all(b"GET /healthz HT").unwrap();
        let queued = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(5));
            queued_input(&a.stream) == Queued::WholeHead
                && queued_input(&b.stream) == Queued::Partial
        });
        assert!(queued, "the input never showed as queued");
        let _c = slots.admit(servers.next().unwrap()).unwrap();
        assert_eq!((a.evicted(), b.evicted()), (false, true));
    }

    #[test]
    fn lingering_goes_before_waiting_and_all_busy_is_refused() {
        let (_clients, servers) = streams(4);
        let slots = Slots::new(2);
        let mut servers = servers.into_iter();
        let a = slots.admit(servers.next().unwrap()).unwrap();
        tick(&slots);
        let b = slots.admit(servers.next().unwrap()).unwrap();
        assert!(slots.begin_work(&b) && slots.begin_linger(&b));
        let c = slots.admit(servers.next().unwrap()).unwrap();
        assert_eq!((a.evicted(), b.evicted()), (false, true));
        slots.release(&b);
        assert!(slots.begin_work(&a) && slots.begin_work(&c));
        let refused = slots.admit(servers.next().unwrap());
        assert!(
            matches!(refused, Err((_, Refusal::AllBusy))),
            "{:?}",
            refused.map(|s| s.id)
        );
    }
}
