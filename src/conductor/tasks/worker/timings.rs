//! Where a run's time goes, for `scripts/bench/tasks.sh`: each phase's wall time and the
//! time spent in durable writes (run file, task file), logged at the end of the run as one
//! `debug` line under the target `run_timings` (`RUST_LOG=info,run_timings=debug`).

use std::time::Instant;

use baa::common::time::now_ms;

/// The phases of a run, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Making (or finding) a worktree task's worktree.
    Worktree,
    /// Creating or adopting the codexd session.
    Session,
    /// Finding the event stream's position (its path is read once per conductor).
    Stream,
    /// Waiting until nothing runs in the session (skipped for a session just made).
    Idle,
    /// The turn start, from the intent's write to the 202's.
    Send,
    /// From the 202 until the run saw the turn end.
    Turn,
    /// Committing a worktree task's changes and computing its result.
    Commit,
    /// Recording the step's and the run's outcome.
    Finish,
}

const PHASES: [(Phase, &str); 8] = [
    (Phase::Worktree, "worktree_ms"),
    (Phase::Session, "session_ms"),
    (Phase::Stream, "stream_ms"),
    (Phase::Idle, "idle_ms"),
    (Phase::Send, "send_ms"),
    (Phase::Turn, "turn_ms"),
    (Phase::Commit, "commit_ms"),
    (Phase::Finish, "finish_ms"),
];

pub struct Timings {
    /// From the dispatch (the run control's creation) to the thread's first act.
    thread_start_ms: u64,
    spent: [f64; 8],
    writes: u32,
    write_ms: f64,
}

impl Timings {
    pub fn new(dispatched_ms: u64) -> Timings {
        Timings {
            thread_start_ms: now_ms().saturating_sub(dispatched_ms),
            spent: [0.0; 8],
            writes: 0,
            write_ms: 0.0,
        }
    }

    /// Adds the time since `t0` to `phase`.
    pub fn add(&mut self, phase: Phase, t0: Instant) {
        if let Some(i) = PHASES.iter().position(|(p, _)| *p == phase) {
            self.spent[i] += t0.elapsed().as_secs_f64() * 1000.0;
        }
    }

    /// Counts one durable write that began at `t0`.
    pub fn write(&mut self, t0: Instant) {
        self.writes += 1;
        self.write_ms += t0.elapsed().as_secs_f64() * 1000.0;
    }

    pub fn line(&self) -> String {
        let mut out = format!("thread_start_ms={}", self.thread_start_ms);
        for (i, (_, name)) in PHASES.iter().enumerate() {
            out.push_str(&format!(" {name}={:.2}", self.spent[i]));
        }
        out.push_str(&format!(
            " writes={} write_ms={:.2}",
            self.writes, self.write_ms
        ));
        out
    }

    pub fn report(&self, task_id: &str, run_id: &str) {
        log::debug!(target: "run_timings", "task={task_id} run={run_id} {}", self.line());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_every_phase_and_the_writes() {
        let mut t = Timings::new(now_ms());
        t.add(Phase::Send, Instant::now());
        t.write(Instant::now());
        let line = t.line();
        for name in [
            "thread_start_ms=",
            "worktree_ms=",
            "session_ms=",
            "stream_ms=",
            "idle_ms=",
            "send_ms=",
            "turn_ms=",
            "commit_ms=",
            "finish_ms=",
            "writes=1 ",
        ] {
            assert!(line.contains(name), "{line}");
        }
    }
}
