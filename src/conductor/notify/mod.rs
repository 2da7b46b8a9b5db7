//! Notifications from the conductor: task outcomes, approvals waited on, a codexd crash
//! loop (and, wired by their owners, schedule and queue events) go to webhooks and ntfy
//! topics from a persisted, bounded outbox on one owned delivery thread.
//!
//! [`Notifier::emit`] only appends to the in-memory outbox and wakes the thread: the
//! scheduler and requests never wait on disk or network for it. The thread writes the
//! outbox (atomic rename) before its first try of a new entry and after every outcome, so
//! an entry is marked delivered on disk after its 2xx and before the next send, and a
//! pending entry survives a restart (an event emitted less than one pass before a kill
//! can be lost; one on disk is never sent twice after its 2xx was recorded).

pub mod approval;
mod codexd_watch;
pub mod event;
mod outbox;
pub mod queue_events;
pub mod schedule_events;
mod send;
pub mod settings;
mod sign;
pub mod target;
mod task_events;

use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::{json, Value};

use baa::common::store::JsonStore;
use baa::common::sync::{lock, wait_timeout};
use baa::common::time::{now_ms, now_rfc3339};

use crate::tasks::model::Task;
use approval::LinkKey;
use codexd_watch::CrashLoopWatch;
pub use event::Event;
use outbox::{Outbox, Status};
use send::Sender;
pub use send::REQUEST_TIMEOUT;
use settings::NotifyConfig;

/// The thread wakes at least this often to look at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);

struct Shared {
    outbox: Outbox,
    stop: bool,
}

pub struct Notifier {
    cfg: NotifyConfig,
    node: String,
    /// Where approval links point.
    action_base: String,
    store: Arc<JsonStore>,
    links: LinkKey,
    shared: Mutex<Shared>,
    wake: Condvar,
    crash_loop: CrashLoopWatch,
}

impl Notifier {
    /// Loads the outbox and the approval-link key (made on first use). An outbox that
    /// cannot be read starts empty and a key that cannot be stored lives in memory only
    /// (links then end with the process); both are logged.
    pub fn open(cfg: NotifyConfig, node: &str, base_url: &str, store: Arc<JsonStore>) -> Notifier {
        let mut outbox = Outbox::load(&store).unwrap_or_else(|e| {
            log::error!("notify: cannot read the outbox ({e}); starting with an empty one");
            Outbox::default()
        });
        outbox.orphan(&cfg.targets);
        let links = LinkKey::load_or_create(&store).unwrap_or_else(|e| {
            log::error!("notify: cannot store the approval-link key ({e}); links last until the conductor stops");
            LinkKey::ephemeral()
        });
        Notifier {
            action_base: cfg
                .action_base
                .clone()
                .unwrap_or_else(|| base_url.to_string()),
            cfg,
            node: node.to_string(),
            store,
            links,
            shared: Mutex::new(Shared {
                outbox,
                stop: false,
            }),
            wake: Condvar::new(),
            crash_loop: CrashLoopWatch::default(),
        }
    }

    /// Queues `event` for every target if its kind is wanted; never blocks on I/O.
    pub fn emit(&self, event: Event) {
        if !self.cfg.wants(event.kind) {
            return;
        }
        let mut body = event.body(&now_rfc3339(), &self.node);
        body["tags"] = json!(event.tags());
        let added = lock(&self.shared)
            .outbox
            .push(&event.id, event.kind, &body, &self.cfg.targets);
        if added > 0 {
            log::info!(
                "notify: {} {} queued for {added} target(s)",
                event.kind,
                event.id
            );
            self.wake.notify_all();
        }
    }

    /// A task changed: announces a fresh outcome or a new approval wait.
    pub fn task_changed(&self, task: &Task) {
        let wanted = match task.status.as_str() {
            "succeeded" => self.cfg.wants("task.succeeded"),
            "failed" => self.cfg.wants("task.failed"),
            "running" => task.waiting.is_some() && self.cfg.wants("task.waiting"),
            _ => false,
        };
        if !wanted {
            return;
        }
        let cx = task_events::Context {
            links: &self.links,
            action_base: &self.action_base,
            include_prompt: self.cfg.include_prompt,
        };
        if let Some(e) = task_events::event_for(task, &cx) {
            self.emit(e);
        }
    }

    /// codexd's child status as the dispatch gate last read it.
    pub fn codexd_child(&self, status: Option<&str>) {
        if let Some(e) = self.crash_loop.observe(status) {
            self.emit(e);
        }
    }

    pub fn links(&self) -> &LinkKey {
        &self.links
    }

    /// `GET /v1/notifications`: the newest `limit` deliveries, newest first.
    pub fn to_json(&self, limit: usize) -> Value {
        let sh = lock(&self.shared);
        let o = &sh.outbox;
        let count = |s: Status| o.entries.iter().filter(|e| e.status == s).count();
        json!({
            "enabled": !self.cfg.targets.is_empty(),
            "targets": self.cfg.targets.iter().map(|t| target::Target::redact(t.raw())).collect::<Vec<_>>(),
            "events": self.cfg.events,
            "signed": self.cfg.secret.is_some(),
            "counts": {"pending": count(Status::Pending), "delivered": count(Status::Delivered), "failed": count(Status::Failed)},
            "deliveries": o.entries.iter().rev().take(limit).map(|e| e.to_json()).collect::<Vec<_>>(),
        })
    }

    /// Starts the delivery thread ("notify"); None when no target is configured. A CA file
    /// that cannot be used is logged and https targets then fail their tries.
    /// `is_leader`: only the lease holder delivers (a standby shares the state dir); on
    /// becoming the holder the thread reads the outbox again from disk.
    pub fn start(self: &Arc<Self>, is_leader: Box<dyn Fn() -> bool + Send>) -> Option<Delivery> {
        if self.cfg.targets.is_empty() {
            return None;
        }
        let sender = match Sender::new(self.cfg.secret.clone(), self.cfg.ca_file.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("notify: BAA_NOTIFY_CA_FILE: {e}; using the built-in roots");
                Sender::new(self.cfg.secret.clone(), None).ok()?
            }
        };
        let me = self.clone();
        thread::Builder::new()
            .name("notify".into())
            .spawn(move || me.run(sender, is_leader))
            .map_err(|e| log::error!("cannot start the notify thread: {e}"))
            .ok()
            .map(|h| Delivery {
                notifier: self.clone(),
                handle: h,
            })
    }

    /// The outbox as it is now if it changed since the last write (taken under the lock,
    /// written outside it: `emit` never waits on the disk).
    fn snapshot(sh: &mut Shared) -> Option<Value> {
        if !sh.outbox.dirty {
            return None;
        }
        sh.outbox.dirty = false;
        serde_json::to_value(&sh.outbox).ok()
    }

    fn write(&self, snapshot: Option<Value>) {
        if let Some(v) = snapshot {
            if let Err(e) = self.store.write(outbox::FILE, &v) {
                log::error!("notify: cannot write the outbox: {e}");
            }
        }
    }

    /// Takes the outbox on disk (written by the conductor that held the lease before),
    /// keeping entries emitted here meanwhile.
    fn reload(&self) {
        let Ok(mut disk) = Outbox::load(&self.store) else {
            return;
        };
        disk.orphan(&self.cfg.targets);
        let mut sh = lock(&self.shared);
        let known: std::collections::HashSet<String> =
            disk.entries.iter().map(|e| e.event_id.clone()).collect();
        let mine: Vec<_> = sh
            .outbox
            .entries
            .drain(..)
            .filter(|e| !known.contains(&e.event_id))
            .collect();
        disk.dirty = !mine.is_empty() || disk.dirty;
        disk.entries.extend(mine);
        sh.outbox = disk;
    }

    fn run(&self, sender: Sender, is_leader: Box<dyn Fn() -> bool + Send>) {
        let mut leading = false;
        loop {
            if !is_leader() {
                leading = false;
                let sh = lock(&self.shared);
                if sh.stop {
                    return;
                }
                drop(wait_timeout(&self.wake, sh, STOP_POLL));
                continue;
            }
            if !leading {
                leading = true;
                self.reload();
            }
            let (due, snap, stop) = {
                let mut sh = lock(&self.shared);
                let snap = Self::snapshot(&mut sh);
                (sh.outbox.due(now_ms()), snap, sh.stop)
            };
            // New entries are on disk before their first try.
            self.write(snap);
            if stop {
                return;
            }
            for entry in due {
                let Some(target) = self.cfg.targets.iter().find(|t| t.raw() == entry.target) else {
                    continue;
                };
                let outcome = sender.send(target, &entry);
                let (snap, stop) = {
                    let mut sh = lock(&self.shared);
                    sh.outbox.record(&entry.id, outcome);
                    (Self::snapshot(&mut sh), sh.stop)
                };
                // Durable before the next send: a 2xx recorded is never sent again.
                self.write(snap);
                if stop {
                    return;
                }
            }
            let sh = lock(&self.shared);
            if sh.stop || sh.outbox.dirty || !sh.outbox.due(now_ms()).is_empty() {
                continue;
            }
            let wait = sh
                .outbox
                .next_due()
                .map(|at| Duration::from_millis(at.saturating_sub(now_ms())))
                .unwrap_or(STOP_POLL)
                .min(STOP_POLL);
            drop(wait_timeout(&self.wake, sh, wait));
        }
    }
}

/// The running delivery thread, stopped once by the daemon.
pub struct Delivery {
    notifier: Arc<Notifier>,
    handle: JoinHandle<()>,
}

impl Delivery {
    /// Ends the thread after its current try (bounded by the request timeout) and joins it.
    pub fn stop(self) {
        lock(&self.notifier.shared).stop = true;
        self.notifier.wake.notify_all();
        let _ = self.handle.join();
    }
}
