//! The restart policy, as pure state: jittered exponential backoff between restarts, reset
//! after sustained health, and a crash loop when too many starts fail within a window.
//!
//! Only failures count towards the crash loop: a start that never got ready, or a child
//! that exited on its own within `early_ms` of getting ready. A child that ran healthy for
//! longer and was then killed from outside (`kill -9`, the OOM killer, an upgrade) is not
//! a crash-loop signal: it is restarted after the backoff, but never parks codexd. Exits
//! codexd causes itself (a restart on request) do not reach the policy at all.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The numbers of the policy (from the `BAA_CODEXD_RESTART_*` / `CRASH_LOOP_*` settings).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub base_ms: u64,
    pub max_ms: u64,
    /// Healthy uptime after which the backoff starts over.
    pub reset_ms: u64,
    /// Failures within `window_ms` that make a crash loop.
    pub crash_max: u32,
    pub window_ms: u64,
    /// An exit counts as a failure only this soon after the child got ready.
    pub early_ms: u64,
    /// How long a crash loop waits before one more attempt.
    pub cooldown_ms: u64,
}

/// What to do after a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Restart after `delay`; `attempt` counts restarts since the last reset (from 1).
    Restart { delay: Duration, attempt: u32 },
    /// `failures` failures within the window: wait `cooldown`, then try once more.
    CrashLoop { failures: usize, cooldown: Duration },
}

pub struct RestartPolicy {
    limits: Limits,
    failures: VecDeque<Instant>,
    attempt: u32,
}

impl RestartPolicy {
    pub fn new(limits: Limits) -> Self {
        RestartPolicy {
            limits,
            failures: VecDeque::new(),
            attempt: 0,
        }
    }

    /// A generation ended at `now`, on its own: `ready_for` is how long it had been ready
    /// (None: it never answered initialize).
    pub fn on_exit(&mut self, ready_for: Option<Duration>, now: Instant) -> Next {
        let l = self.limits;
        if ready_for.is_some_and(|u| u >= Duration::from_millis(l.reset_ms)) {
            self.attempt = 0;
            self.failures.clear();
        }
        if ready_for.is_none_or(|u| u < Duration::from_millis(l.early_ms)) {
            self.failures.push_back(now);
        }
        let window = Duration::from_millis(l.window_ms);
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.failures.pop_front();
        }
        if self.failures.len() >= l.crash_max as usize {
            let failures = self.failures.len();
            // After the cool-down the slate is clean: one more attempt, then backoff anew.
            self.failures.clear();
            self.attempt = 0;
            return Next::CrashLoop {
                failures,
                cooldown: Duration::from_millis(l.cooldown_ms),
            };
        }
        let delay = backoff(l.base_ms, l.max_ms, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        Next::Restart {
            delay,
            attempt: self.attempt,
        }
    }
}

impl RestartPolicy {
    /// A start codexd asked for (a restart on request): no backoff, a clean failure count.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.failures.clear();
    }

    /// Failures counted in the window now.
    #[cfg(test)]
    pub fn failures(&self) -> usize {
        self.failures.len()
    }
}

/// Equal-jitter exponential backoff: half the exponential step plus up to the other half.
pub fn backoff(base_ms: u64, max_ms: u64, attempt: u32) -> Duration {
    let exp = base_ms
        .saturating_mul(1u64 << attempt.min(20))
        .min(max_ms)
        .max(1);
    let jitter = jitter_u64() % (exp / 2 + 1);
    Duration::from_millis(exp / 2 + jitter)
}

fn jitter_u64() -> u64 {
    let id = baa::common::ids::new_id("j");
    u64::from_str_radix(id.trim_start_matches("j_"), 16).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        base_ms: 500,
        max_ms: 30_000,
        reset_ms: 60_000,
        crash_max: 3,
        window_ms: 10_000,
        early_ms: 5_000,
        cooldown_ms: 120_000,
    };

    #[test]
    fn backoff_grows_and_caps() {
        for attempt in 0..40 {
            let d = backoff(500, 30_000, attempt).as_millis() as u64;
            let exp = (500u64 << attempt.min(20)).min(30_000);
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d} vs {exp}");
        }
    }

    #[test]
    fn quick_failures_make_a_crash_loop_and_health_resets_the_count() {
        let mut p = RestartPolicy::new(LIMITS);
        let t0 = Instant::now();
        let short = Some(Duration::from_millis(10));
        let a = p.on_exit(short, t0);
        let b = p.on_exit(short, t0 + Duration::from_secs(1));
        assert!(
            matches!(
                (a, b),
                (
                    Next::Restart { attempt: 1, .. },
                    Next::Restart { attempt: 2, .. }
                )
            ),
            "{a:?} {b:?}"
        );
        let c = p.on_exit(short, t0 + Duration::from_secs(2));
        assert_eq!(
            c,
            Next::CrashLoop {
                failures: 3,
                cooldown: Duration::from_secs(120)
            }
        );
        // Healthy for longer than reset_ms: the next exit starts over at attempt 1.
        p.on_exit(short, t0 + Duration::from_secs(3));
        let d = p.on_exit(Some(Duration::from_secs(61)), t0 + Duration::from_secs(70));
        assert!(matches!(d, Next::Restart { attempt: 1, .. }), "{d:?}");
        // Failures older than the window do not count: the one at 70 s is forgotten.
        let e = p.on_exit(short, t0 + Duration::from_secs(90));
        let f = p.on_exit(short, t0 + Duration::from_secs(91));
        assert!(
            matches!(
                (e, f),
                (
                    Next::Restart { attempt: 2, .. },
                    Next::Restart { attempt: 3, .. }
                )
            ),
            "{e:?} {f:?}"
        );
    }

    /// Issue 9 item 8: ten `kill -9` of a child that had run healthy for a while each
    /// (here 6 s, past the 5 s early window) parked codexd in crash_loop for 15 minutes.
    /// They are restarts with backoff, never a crash loop; a start that never got ready
    /// still counts.
    #[test]
    fn outside_kills_of_a_healthy_child_are_not_a_crash_loop() {
        let mut p = RestartPolicy::new(LIMITS);
        let t0 = Instant::now();
        for i in 0..10 {
            let next = p.on_exit(Some(Duration::from_secs(6)), t0 + Duration::from_secs(i));
            assert!(matches!(next, Next::Restart { .. }), "kill {i}: {next:?}");
        }
        assert_eq!(p.failures(), 0);
        let a = p.on_exit(None, t0 + Duration::from_secs(11));
        let b = p.on_exit(Some(Duration::from_secs(1)), t0 + Duration::from_secs(12));
        let c = p.on_exit(None, t0 + Duration::from_secs(13));
        assert!(
            matches!((a, b), (Next::Restart { .. }, Next::Restart { .. })),
            "{a:?} {b:?}"
        );
        assert!(matches!(c, Next::CrashLoop { failures: 3, .. }), "{c:?}");
        p.on_exit(None, t0 + Duration::from_secs(14));
        p.reset();
        assert_eq!(p.failures(), 0);
        let d = p.on_exit(None, t0 + Duration::from_secs(15));
        assert!(matches!(d, Next::Restart { attempt: 1, .. }), "{d:?}");
    }
}
