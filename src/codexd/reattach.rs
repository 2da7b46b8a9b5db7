//! Picking up a unix-mode app-server that outlived the previous codexd (or the previous
//! connection): what the core keeps for it at start, and what it does once attached.
//!
//! At start ([`Core::prepare_attach`]) the app-server running on the configured socket
//! (found as the socket's listener or by its pid file, so a lost or damaged
//! daemon-state.json does not hide it), else the recorded unix-mode child (pid, start time
//! and socket), becomes the supervisor's first target, and the state that an attach
//! can carry over is kept instead of reconciled away: running turns stay running (their
//! progress restored), unanswered requests wait to be replayed. Once attached
//! ([`Core::resume_after_attach`], on a job thread) every session with a running turn has
//! its thread resumed on the new connection: the app-server then streams the rest of the
//! turn to it and replays the turn's pending approvals under their original ids. If the
//! attach fails instead, the turns are interrupted and the requests abandoned
//! ([`Core::on_attach_failed`]), exactly as after any lost child.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use baa::common::sync::lock;

use crate::approvals::{Pending, PendingRecord};
use crate::child::{self, Adoptee, How, Link};
use crate::config::Strategy;
use crate::core::{interrupt_current, Core};
use crate::endpoint::Transport;
use crate::events::Level;
use crate::json_path::str_at;
use crate::session_ops::apply_thread_result;
use crate::state::DaemonState;
use crate::turn_record::TurnProgress;

/// Where the app-server to attach to at start was learnt from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttachFrom {
    /// The child recorded in daemon-state.json (or its last-good copy).
    Recorded,
    /// Found on the socket ([`child::find`]): the state file did not name it.
    Found(How),
}

impl AttachFrom {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AttachFrom::Recorded => "daemon-state.json",
            AttachFrom::Found(how) => how.as_str(),
        }
    }
}

impl Core {
    /// Start-up in unix mode: the app-server to attach to first — the one running on the
    /// socket (its listener, else the pid file's process), else the one the previous codexd
    /// recorded (an attach to it fails if it is gone, and its turns are interrupted with
    /// that reason). The turns and requests an attach carries over are kept. None:
    /// nothing to attach to.
    pub(crate) fn prepare_attach(
        &self,
        previous: Option<&DaemonState>,
    ) -> Option<(u32, AttachFrom)> {
        let Transport::Unix(sock) = &self.cfg.transport else {
            return None;
        };
        if self.cfg.strategy != Strategy::Spawn {
            return None;
        }
        let recorded = previous.and_then(|p| {
            let c = &p.child;
            let same_socket = c.socket.as_deref() == Some(&*sock.to_string_lossy());
            (c.transport == "unix" && same_socket)
                .then(|| Some((c.pid?, c.start_time.clone()?)))
                .flatten()
        });
        // The socket outranks the record: a lost, emptied or older daemon-state.json must
        // not make codexd start a second app-server beside the one that runs.
        let found = child::find(sock);
        let (pid, start_time, from) = match (found, recorded) {
            (Some(f), Some((pid, start))) if f.pid == pid && f.start_time == start => {
                (pid, start, AttachFrom::Recorded)
            }
            (Some(f), recorded) => {
                if let Some((pid, _)) = recorded {
                    log::warn!(
                        "daemon-state.json names the app-server pid {pid}, but pid {} runs on {} ({}); attaching to that one",
                        f.pid,
                        sock.display(),
                        f.how.as_str()
                    );
                }
                self.emit(
                    Level::Info,
                    "child.found",
                    format!(
                        "found the app-server pid {} on {} by its {}",
                        f.pid,
                        sock.display(),
                        f.how.as_str()
                    ),
                    json!({"pid": f.pid, "startTime": f.start_time, "socket": sock, "how": f.how.as_str(), "recordedPid": recorded.map(|r| r.0)}),
                );
                (f.pid, f.start_time, AttachFrom::Found(f.how))
            }
            (None, Some((pid, start))) => (pid, start, AttachFrom::Recorded),
            (None, None) => return None,
        };
        *lock(&self.adoptee) = Some(Adoptee {
            pid,
            start_time,
            socket: sock.clone(),
            child: None,
        });
        self.state().replayable = previous
            .map(|p| p.pending_requests.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|r| Pending::from_record(r, self.cfg.default_approval))
            .collect();
        // A running turn's progress lives in memory only; its outcome comes with
        // `turn/completed` (or from `thread/read`), which carries the final message.
        self.sessions.for_each_mut(|s| {
            if let (Some(turn_id), None) = (s.current_turn_id.as_deref(), s.current.as_ref()) {
                s.current = Some(TurnProgress::resumed(turn_id));
            }
            false
        });
        Some((pid, from))
    }

    /// The app-server to attach to, once, for the supervisor.
    pub(crate) fn take_adoptee(&self) -> Option<Adoptee> {
        lock(&self.adoptee).take()
    }

    /// Requests recorded by a previous codexd that nobody can answer any more.
    pub(crate) fn abandon_records(&self, records: &[PendingRecord], why: &str) {
        for r in records {
            self.emit(
                Level::Warn,
                "request.abandoned",
                format!("{} was never answered: {why}", r.method),
                json!({"requestId": r.request_id, "method": r.method, "sessionId": r.session_id, "reason": why}),
            );
        }
    }

    /// Requests waiting for a replay that will never come (`turn_id`: only that turn's).
    pub(crate) fn abandon_replayable(&self, turn_id: Option<&str>, why: &str) {
        let gone: Vec<Pending> = {
            let mut st = self.state();
            let (gone, keep) = st
                .replayable
                .drain(..)
                .partition(|p| turn_id.is_none() || p.turn_id() == turn_id);
            st.replayable = keep;
            gone
        };
        if gone.is_empty() {
            return;
        }
        self.mark_daemon_dirty();
        let records: Vec<PendingRecord> = gone.iter().map(Pending::record).collect();
        self.abandon_records(&records, why);
    }

    /// The app-server a previous codexd (or connection) left could not be attached: its
    /// turns and requests are lost.
    pub(crate) fn on_attach_failed(&self, pid: u32, why: &str) {
        {
            let mut st = self.state();
            st.child.pid = None;
            st.child.start_time = None;
            st.child.last_error = Some(format!("could not attach to pid {pid}: {why}"));
        }
        self.emit(
            Level::Warn,
            "child.attach_failed",
            format!("could not attach to the app-server pid {pid} ({why}); spawning a new one"),
            json!({"pid": pid, "reason": why}),
        );
        let reason =
            format!("the app-server that ran the turn (pid {pid}) could not be attached: {why}");
        self.interrupt_orphaned_turns(&reason);
        self.abandon_replayable(None, &reason);
        self.mark_daemon_dirty();
        self.flush();
    }

    /// Attached: resume, on a job thread, the thread of every session whose turn runs.
    pub(crate) fn schedule_resume(self: &Arc<Self>, link: Arc<Link>) {
        let core = self.clone();
        self.spawn_job("codexd-reattach", move || core.resume_after_attach(&link));
    }

    /// `thread/resume` on the new connection for every session with a running turn: the
    /// app-server streams the rest of the turn here and replays its pending requests. A
    /// thread found idle finished while nobody listened: the watchdog reads its outcome
    /// at once. A thread that cannot be resumed loses its turn.
    pub(crate) fn resume_after_attach(&self, link: &Link) {
        let _ops = lock(&self.thread_ops);
        let running: Vec<(String, String)> = self
            .sessions
            .list(|s| {
                let tid = s.thread_id.clone().filter(|_| s.current_turn_id.is_some());
                Some((s.session_id.clone(), tid?))
            })
            .into_iter()
            .flatten()
            .collect();
        let overdue = Duration::from_millis(self.cfg.reconcile_idle_ms);
        for (sid, tid) in running {
            let result = link.rpc.request(
                "thread/resume",
                json!({"threadId": tid, "excludeTurns": true}),
                self.timeout(),
            );
            match result {
                Ok(r) => {
                    let status = str_at(&r, &["thread", "status", "type"]).map(str::to_string);
                    self.sessions.update(&sid, |s| {
                        apply_thread_result(s, &r);
                        s.loaded_generation = link.generation;
                        s.child_pid = Some(link.pid);
                        if status.as_deref() != Some("active") {
                            if let Some(cur) = s.current.as_mut() {
                                // Let the watchdog reconcile it on its next tick.
                                cur.idle_since =
                                    Instant::now().checked_sub(overdue).or(Some(Instant::now()));
                            }
                        }
                    });
                    self.persist_or_log(&sid);
                    self.emit(
                        Level::Info,
                        "session.resumed",
                        format!("session {sid}: thread {tid} resumed on the re-attached app-server"),
                        json!({"sessionId": sid, "threadId": tid, "generation": link.generation, "reattached": true, "threadStatus": status}),
                    );
                }
                Err(e) => {
                    log::warn!(
                        "session {sid}: thread {tid} cannot be resumed after the attach: {e}"
                    );
                    self.interrupt_turn_of(
                        &sid,
                        &format!(
                            "its thread could not be resumed on the re-attached app-server: {e}"
                        ),
                    );
                }
            }
        }
        self.flush();
    }

    /// Marks the running turn of one session `interrupted` with `why`.
    fn interrupt_turn_of(&self, session_id: &str, why: &str) {
        let record = self
            .sessions
            .update(session_id, |s| interrupt_current(s, why))
            .flatten();
        if let Some(record) = record {
            self.abandon_replayable(Some(&record.turn_id), why);
            self.turn_interrupted(session_id, &record, why);
        }
    }

    /// Runs `f` on a named thread the ticker joins.
    pub(crate) fn spawn_job(&self, name: &str, f: impl FnOnce() + Send + 'static) {
        match thread::Builder::new().name(name.into()).spawn(f) {
            Ok(h) => lock(&self.jobs).push(h),
            Err(e) => log::error!("cannot start the {name} thread: {e}"),
        }
    }

    /// Joins the finished jobs, or (`all`) every job. Each is bounded by the request
    /// timeout and ends early when the child link closes.
    pub(crate) fn reap_jobs(&self, all: bool) {
        let done: Vec<_> = {
            let mut jobs = lock(&self.jobs);
            let (done, running) = jobs.drain(..).partition(|h| all || h.is_finished());
            *jobs = running;
            done
        };
        for h in done {
            if h.join().is_err() {
                log::error!("a codexd job thread panicked");
            }
        }
    }

    /// A request the app-server sends again on a new connection, if it is one a previous
    /// connection left unanswered: taken out of the replay list (its id and deadline
    /// stay).
    pub(crate) fn take_replayed(
        &self,
        id: &Value,
        method: &str,
        params: &Value,
    ) -> Option<Pending> {
        let mut st = self.state();
        let i = st
            .replayable
            .iter()
            .position(|p| p.is_replayed_by(id, method, params))?;
        Some(st.replayable.remove(i))
    }
}
