//! Leadership: one lease per node in the state dir, taken and renewed under an exclusive
//! file lock and written atomically. A primary takes a free or expired lease at once; a
//! standby waits one extra renew interval after expiry so a restarting primary wins.
//! Repeated renew failures leave the process observable but not ready.

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use baa::common::logging::{self, Opt};
use baa::common::signals::StopFlag;
use baa::common::store::{JsonStore, StoreError};
use baa::common::sync::lock;
use baa::common::time::{now_ms, rfc3339_from_ms};

use crate::config::{Config, Role};

pub const FILE: &str = "lease.json";
const LOCK_FILE: &str = "lease.lock";

/// The lease as stored on disk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseRecord {
    pub holder_id: String,
    pub host: String,
    pub role: String,
    pub priority: i64,
    /// Bumped whenever the holder changes.
    pub term: u64,
    pub acquired_at: String,
    pub renewed_at: String,
    pub expires_at: String,
    pub expires_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    Leader,
    Standby,
    /// Renewals keep failing; role stays as it was but the node is not ready.
    Degraded,
}

impl LeaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Leader => "leader",
            LeaseState::Standby => "standby",
            LeaseState::Degraded => "degraded",
        }
    }
}

/// What this process currently believes about the lease.
#[derive(Debug, Clone)]
pub struct LeaseStatus {
    pub is_leader: bool,
    pub holder_id: Option<String>,
    pub term: u64,
    pub expires_at_ms: u64,
    pub renew_failures: u32,
    pub last_error: Option<String>,
    pub last_tick_at: Option<String>,
}

impl LeaseStatus {
    pub fn state(&self, threshold: u32) -> LeaseState {
        if self.renew_failures >= threshold {
            LeaseState::Degraded
        } else if self.is_leader {
            LeaseState::Leader
        } else {
            LeaseState::Standby
        }
    }

    /// Leader whose lease is unexpired and whose renewals are healthy.
    pub fn healthy_leader(&self, threshold: u32) -> bool {
        self.is_leader && self.renew_failures < threshold && now_ms() < self.expires_at_ms
    }
}

pub struct Lease {
    node_id: String,
    host: String,
    role: Role,
    priority: i64,
    ttl_ms: u64,
    renew_interval: Duration,
    pub threshold: u32,
    status: Mutex<LeaseStatus>,
}

impl Lease {
    pub fn new(cfg: &Config) -> Self {
        Self {
            node_id: cfg.node_id.clone(),
            host: cfg.host.clone(),
            role: cfg.role,
            priority: cfg.priority,
            ttl_ms: cfg.lease_ttl_sec * 1000,
            renew_interval: Duration::from_millis(cfg.lease_renew_interval_ms),
            threshold: cfg.renew_failure_threshold,
            status: Mutex::new(LeaseStatus {
                is_leader: false,
                holder_id: None,
                term: 0,
                expires_at_ms: 0,
                renew_failures: 0,
                last_error: None,
                last_tick_at: None,
            }),
        }
    }

    pub fn status(&self) -> LeaseStatus {
        lock(&self.status).clone()
    }

    pub fn state(&self) -> LeaseState {
        self.status().state(self.threshold)
    }

    /// The holder's node id as last seen on disk.
    pub fn holder_id(&self) -> Option<String> {
        self.status().holder_id
    }

    /// One acquire-or-renew attempt under the file lock.
    pub fn tick(&self, store: &JsonStore) {
        let result = self.try_tick(store);
        let mut st = lock(&self.status);
        st.last_tick_at = Some(rfc3339_from_ms(now_ms()));
        match result {
            Ok(record) => {
                let was_leader = st.is_leader;
                st.is_leader = record.as_ref().is_some_and(|r| r.holder_id == self.node_id);
                st.holder_id = record.as_ref().map(|r| r.holder_id.clone());
                st.term = record.as_ref().map_or(0, |r| r.term);
                st.expires_at_ms = record.as_ref().map_or(0, |r| r.expires_at_ms);
                if st.renew_failures > 0 {
                    log::info!(
                        "lease: renewals healthy again after {} failure(s)",
                        st.renew_failures
                    );
                }
                st.renew_failures = 0;
                st.last_error = None;
                if st.is_leader != was_leader {
                    logging::event(
                        if st.is_leader {
                            "lease.acquired"
                        } else {
                            "lease.lost"
                        },
                        &[
                            ("node", &self.node_id),
                            ("holder", &Opt(st.holder_id.as_ref())),
                            ("term", &st.term),
                        ],
                    );
                }
            }
            Err(e) => {
                st.renew_failures += 1;
                log::warn!("lease: renew attempt {} failed: {e}", st.renew_failures);
                st.last_error = Some(e.to_string());
                // Our own lease lapses when its recorded expiry passes, renewals or not.
                if st.is_leader && now_ms() >= st.expires_at_ms {
                    st.is_leader = false;
                    logging::event(
                        "lease.lost",
                        &[
                            ("node", &self.node_id),
                            ("reason", &"expired without renewal"),
                            ("term", &st.term),
                        ],
                    );
                }
            }
        }
    }

    fn try_tick(&self, store: &JsonStore) -> Result<Option<LeaseRecord>, TickError> {
        let _lock = FileLock::acquire(&store.path(LOCK_FILE), Duration::from_secs(1))?;
        let current: Option<LeaseRecord> = store.read_or_warn(FILE)?;
        let now = now_ms();
        let mine = current
            .as_ref()
            .is_some_and(|r| r.holder_id == self.node_id);
        let expired_for = current
            .as_ref()
            .map_or(u64::MAX, |r| now.saturating_sub(r.expires_at_ms));
        let free = current.as_ref().is_none_or(|r| now >= r.expires_at_ms);
        let may_take = match self.role {
            Role::Primary => free,
            Role::Standby => free && expired_for >= self.renew_interval.as_millis() as u64,
        };
        if !(mine || may_take) {
            return Ok(current);
        }
        let term = match &current {
            Some(r) if mine => r.term,
            Some(r) => r.term + 1,
            None => 1,
        };
        let acquired_at = match &current {
            Some(r) if mine => r.acquired_at.clone(),
            _ => rfc3339_from_ms(now),
        };
        let record = LeaseRecord {
            holder_id: self.node_id.clone(),
            host: self.host.clone(),
            role: self.role.as_str().to_string(),
            priority: self.priority,
            term,
            acquired_at,
            renewed_at: rfc3339_from_ms(now),
            expires_at: rfc3339_from_ms(now + self.ttl_ms),
            expires_at_ms: now + self.ttl_ms,
        };
        store.write(FILE, &record)?;
        Ok(Some(record))
    }

    /// Gives the lease up on a graceful stop so a standby need not wait out the TTL.
    pub fn release(&self, store: &JsonStore) {
        let Ok(_lock) = FileLock::acquire(&store.path(LOCK_FILE), Duration::from_secs(1)) else {
            return;
        };
        if let Ok(Some(mut r)) = store.read_or_warn::<LeaseRecord>(FILE) {
            if r.holder_id == self.node_id {
                let now = now_ms();
                r.expires_at_ms = now;
                r.expires_at = rfc3339_from_ms(now);
                if store.write(FILE, &r).is_ok() {
                    logging::event(
                        "lease.released",
                        &[("node", &self.node_id), ("term", &r.term)],
                    );
                }
            }
        }
        let mut st = lock(&self.status);
        st.is_leader = false;
    }

    pub fn to_json(&self) -> Value {
        let st = self.status();
        json!({
            "state": st.state(self.threshold).as_str(),
            "holder_id": st.holder_id,
            "term": st.term,
            "expires_at": if st.expires_at_ms > 0 { Some(rfc3339_from_ms(st.expires_at_ms)) } else { None },
            "renew_failures": st.renew_failures,
            "renew_failure_threshold": self.threshold,
            "last_error": st.last_error,
            "last_tick_at": st.last_tick_at,
        })
    }
}

/// Runs `tick` every renew interval until `stop` is set; then releases the lease.
pub fn spawn_loop(
    lease: Arc<Lease>,
    store: Arc<JsonStore>,
    stop: StopFlag,
    on_tick: Box<dyn Fn() + Send>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new().name("lease".into()).spawn(move || {
        loop {
            let started = Instant::now();
            lease.tick(&store);
            on_tick();
            let wait = lease.renew_interval.saturating_sub(started.elapsed());
            if stop.sleep(wait) {
                break;
            }
        }
        lease.release(&store);
    })
}

/// Why a lease tick could not read or write the lease.
#[derive(Debug)]
enum TickError {
    LockFile(PathBuf, std::io::Error),
    LockBusy(PathBuf, Duration),
    Store(StoreError),
}

impl From<StoreError> for TickError {
    fn from(e: StoreError) -> Self {
        TickError::Store(e)
    }
}

impl std::fmt::Display for TickError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TickError::LockFile(p, e) => write!(f, "{}: {e}", p.display()),
            TickError::LockBusy(p, wait) => {
                write!(f, "{}: lock busy for {} ms", p.display(), wait.as_millis())
            }
            TickError::Store(e) => e.fmt(f),
        }
    }
}

/// An exclusive `flock` held until drop. Bounded wait: a wedged holder costs one failed
/// tick, never a hung thread.
struct FileLock {
    file: File,
}

impl FileLock {
    fn acquire(path: &Path, wait: Duration) -> Result<Self, TickError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| TickError::LockFile(path.to_path_buf(), e))?;
        let deadline = Instant::now() + wait;
        loop {
            // SAFETY: flock on an fd we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(Self { file });
            }
            if Instant::now() >= deadline {
                return Err(TickError::LockBusy(path.to_path_buf(), wait));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: unlocking an fd we own.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn cfg(node: &str, role: &str) -> Config {
        crate::config::for_test(&[
            ("node-id", node),
            ("role", role),
            ("lease-ttl-sec", "1"),
            ("lease-renew-interval-ms", "100"),
        ])
    }

    #[test]
    fn primary_takes_standby_waits_then_takes_over() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("lease"));
        let store = JsonStore::open(&dir).unwrap();
        let a = Lease::new(&cfg("a", "primary"));
        let b = Lease::new(&cfg("b", "standby"));
        a.tick(&store);
        b.tick(&store);
        assert_eq!(a.state(), LeaseState::Leader);
        assert_eq!(b.state(), LeaseState::Standby);
        assert_eq!(b.holder_id().as_deref(), Some("a"));
        // `a` stops renewing; after TTL + one renew interval `b` takes over with a new term.
        thread::sleep(Duration::from_millis(1250));
        b.tick(&store);
        assert_eq!(b.state(), LeaseState::Leader, "{:?}", b.status());
        assert_eq!(b.status().term, 2);
        a.tick(&store);
        assert_eq!(a.state(), LeaseState::Standby);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn renew_failures_degrade() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("lease"));
        let store = JsonStore::open(&dir).unwrap();
        let a = Lease::new(&cfg("a", "primary"));
        a.tick(&store);
        assert!(a.status().healthy_leader(a.threshold));
        // A directory where the lease file should be makes every read and write fail.
        std::fs::remove_file(store.path(FILE)).unwrap();
        std::fs::create_dir(store.path(FILE)).unwrap();
        a.tick(&store);
        a.tick(&store);
        assert_eq!(a.state(), LeaseState::Degraded);
        assert!(!a.status().healthy_leader(a.threshold));
        let _ = std::fs::remove_dir_all(dir);
    }
}
