//! The running-exec slots: a cap on concurrent commands (a burst cannot fork-bomb the
//! node) and the session of every live one, so a conductor stop can end them all.
//!
//! Each shell leads its own session, so its pid is the id of both its session and its
//! process group. Signals go to the group and to every member of the session (`session`:
//! that reaches children that left the group with `setpgid`). An id is only signalled while
//! it is registered here, and a command unregisters it *before* its shell is reaped: while
//! the leader is unreaped its pid cannot be reused, so a stop never signals an unrelated
//! group or session.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use baa::common::proc::kill_group;
use baa::common::sync::{lock, wait_timeout};

use super::session::{kill_session, signal_session};
use super::OpError;

/// Sends `sig` to the exec whose shell (session and group leader) is `leader`.
fn signal_exec(leader: u32, sig: i32) {
    let _ = kill_group(leader, sig);
    if sig == libc::SIGKILL {
        kill_session(leader);
    } else {
        signal_session(leader, sig);
    }
}

/// From SIGTERM to SIGKILL when a command times out.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

pub const MAX_CONCURRENT: usize = 4;
/// On a conductor stop, how long running commands get to finish on their own before their
/// groups are signalled (a command about to finish still answers with its output).
pub const STOP_PATIENCE: Duration = Duration::from_secs(3);

#[derive(Default)]
struct State {
    running: usize,
    /// Process groups of live commands whose shell is not yet reaped.
    groups: Vec<u32>,
    /// New commands are refused.
    stopping: bool,
    /// Live groups are being killed; a command ending now was ended by the stop.
    killing: bool,
}

#[derive(Default)]
pub struct ExecSlots {
    state: Mutex<State>,
    /// Signalled whenever a group is unregistered.
    changed: Condvar,
}

impl ExecSlots {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// A slot for one command, or why there is none.
    pub fn take(&self) -> Result<Slot<'_>, OpError> {
        let mut st = self.lock();
        if st.stopping {
            return Err(OpError::new(
                "CONDUCTOR_STOPPING",
                "The conductor is stopping; no new commands are started.",
            ));
        }
        if st.running >= MAX_CONCURRENT {
            return Err(OpError::new(
                "EXEC_BUSY",
                format!("{MAX_CONCURRENT} commands are already running; retry when one finishes."),
            ));
        }
        st.running += 1;
        Ok(Slot {
            slots: self,
            group: None,
        })
    }

    /// Ends every live command for a conductor stop: new commands are refused at once,
    /// running ones get [`STOP_PATIENCE`] to finish, then SIGTERM to each group, up to
    /// [`KILL_GRACE`] to exit, SIGKILL to the rest, and up to the grace again for their
    /// requests to let go. Returns how many groups were signalled.
    pub fn stop_all(&self) -> usize {
        self.stop_all_with(STOP_PATIENCE, KILL_GRACE)
    }

    fn stop_all_with(&self, patience: Duration, grace: Duration) -> usize {
        let mut st = self.lock();
        st.stopping = true;
        // Patience counts every command holding a slot, registered or not: one whose shell
        // already runs but whose thread has not registered it yet (a loaded machine can
        // take a while between the fork and the register) must get it too, or it would be
        // killed the moment it registers.
        st = self.wait_while(st, patience, |s| s.running > 0);
        st.killing = true;
        let signalled = st.groups.len();
        for &g in &st.groups {
            signal_exec(g, libc::SIGTERM);
        }
        st = self.wait_while(st, grace, |s| !s.groups.is_empty());
        for &g in &st.groups {
            signal_exec(g, libc::SIGKILL);
        }
        st = self.wait_while(st, grace, |s| !s.groups.is_empty());
        if !st.groups.is_empty() {
            log::warn!(
                "exec: {} process group(s) still registered after SIGKILL",
                st.groups.len()
            );
        }
        signalled
    }

    /// Waits up to `wait` while `busy` holds (woken whenever a slot is freed or a group
    /// unregistered).
    fn wait_while<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        wait: Duration,
        busy: impl Fn(&State) -> bool,
    ) -> MutexGuard<'a, State> {
        let deadline = Instant::now() + wait;
        while busy(&st) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = wait_timeout(&self.changed, st, left).0;
        }
        st
    }
}

/// One running command's claim on a slot; dropping it frees the slot.
pub struct Slot<'a> {
    slots: &'a ExecSlots,
    group: Option<u32>,
}

impl Slot<'_> {
    /// Registers the command's shell (its session and process group leader). If a stop is already killing groups, this
    /// one is killed at once (the stop's signals may have gone out before it existed).
    pub fn register(&mut self, group: u32) {
        let mut st = self.slots.lock();
        st.groups.push(group);
        self.group = Some(group);
        if st.killing {
            signal_exec(group, libc::SIGKILL);
        }
    }

    /// True once a conductor stop is killing live groups (a command ending now was
    /// ended by it, not by itself).
    pub fn killed_by_stop(&self) -> bool {
        self.slots.lock().killing
    }

    /// Sends `sig` to the group while it is still registered (its leader unreaped).
    pub fn signal(&self, sig: i32) {
        let st = self.slots.lock();
        if let Some(g) = self.group.filter(|g| st.groups.contains(g)) {
            signal_exec(g, sig);
        }
    }

    /// Kills what is left of the group and the session and unregisters them. Call before
    /// reaping the shell.
    pub fn finish_group(&mut self) {
        let mut st = self.slots.lock();
        if let Some(g) = self.group.take() {
            signal_exec(g, libc::SIGKILL);
            st.groups.retain(|x| *x != g);
            self.slots.changed.notify_all();
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut st = self.slots.lock();
        if let Some(g) = self.group.take() {
            st.groups.retain(|x| *x != g);
        }
        st.running -= 1;
        self.slots.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defect: a stop that began after a command took its slot but before its thread
    /// registered the shell saw no group, skipped the patience and killed the command the
    /// moment it registered (`sigterm_lets_inflight_request_finish_and_exits_0` failed so
    /// on a loaded machine: its `sleep 1` ended after 261 ms with SIGKILL).
    #[test]
    fn a_command_that_has_not_registered_yet_still_gets_the_patience() {
        let slots = ExecSlots::default();
        let slot = slots.take().unwrap();
        std::thread::scope(|s| {
            let stopper = s.spawn(|| slots.stop_all_with(Duration::from_secs(30), Duration::ZERO));
            // The stop has begun once new commands are refused.
            while slots.take().is_ok_and(|extra| {
                drop(extra);
                true
            }) {
                std::thread::yield_now();
            }
            assert!(
                !slot.killed_by_stop(),
                "the stop went straight to killing a command that holds a slot"
            );
            drop(slot);
            stopper.join().unwrap();
        });
    }

    #[test]
    fn cap_and_stop_refuse_new_commands() {
        let slots = ExecSlots::default();
        let held: Vec<_> = (0..MAX_CONCURRENT).map(|_| slots.take().unwrap()).collect();
        assert_eq!(slots.take().err().map(|e| e.code), Some("EXEC_BUSY"));
        drop(held);
        assert!(slots.take().is_ok());
        assert_eq!(slots.stop_all(), 0, "nothing running: returns at once");
        assert_eq!(
            slots.take().err().map(|e| e.code),
            Some("CONDUCTOR_STOPPING")
        );
    }
}
