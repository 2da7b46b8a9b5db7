//! Announcing a queue held because codex cannot run turns at all — the account logged
//! out, codexd unreachable, its child not running — and its release. (A usage-limit hold
//! is `limit_hold`'s, with its probe.) A hold that clears within `BAA_NOTIFY_HOLD_GRACE_MS`
//! (30 s) is not announced: codexd restarting its child takes a few seconds and is no news;
//! logged out is announced at once, it never clears by itself.

use baa::common::time::{now_ms, rfc3339_from_ms};

use super::gate::Held;
use crate::app::App;
use crate::notify::queue_events;

/// The reasons announced here.
const REASONS: [&str; 3] = ["logged_out", "codexd_unreachable", "codexd_child_not_ready"];

#[derive(Debug, Default)]
pub struct HoldNotice {
    /// The hold under way: its reason, since when, whether it was announced.
    current: Option<(String, u64, bool)>,
}

impl HoldNotice {
    /// The dispatch gate's answer this pass (None: turns may start).
    pub fn observe(&mut self, app: &App, held: Option<&Held>) {
        let grace = app.cfg.notify.hold_grace_ms;
        self.observe_at(held, now_ms(), grace, &mut |e| app.notify.emit(e));
    }

    /// The queue is empty: nothing waits, so nothing is held (a new hold is news again).
    pub fn reset(&mut self) {
        self.current = None;
    }

    fn observe_at(
        &mut self,
        held: Option<&Held>,
        now: u64,
        grace_ms: u64,
        emit: &mut dyn FnMut(crate::notify::Event),
    ) {
        let reason = held
            .map(|h| h.reason.as_str())
            .filter(|r| REASONS.contains(r));
        match (&mut self.current, reason) {
            (Some((was, _, _)), Some(r)) if was.as_str() == r => {}
            (cur, r) => {
                if let Some((was, since, true)) = cur.take() {
                    emit(queue_events::released_from(&was, &rfc3339_from_ms(since)));
                }
                *cur = r.map(|r| (r.to_string(), now, false));
            }
        }
        if let (Some((r, since, announced)), Some(h)) = (&mut self.current, held) {
            let due = r == "logged_out" || now.saturating_sub(*since) >= grace_ms;
            if !*announced && due {
                *announced = true;
                emit(queue_events::held_for(
                    r,
                    &rfc3339_from_ms(*since),
                    &h.message,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE_MS: u64 = 30_000;

    fn held(reason: &str) -> Held {
        Held {
            reason: reason.into(),
            message: format!("{reason} message"),
            until: None,
        }
    }

    fn kinds(n: &mut HoldNotice, h: Option<&Held>, now: u64) -> Vec<(String, String)> {
        let mut out = Vec::new();
        n.observe_at(h, now, GRACE_MS, &mut |e| {
            out.push((e.kind.to_string(), e.id))
        });
        out
    }

    #[test]
    fn a_short_child_restart_is_no_news_a_long_outage_is_announced_once_and_released() {
        let mut n = HoldNotice::default();
        let down = held("codexd_unreachable");
        assert!(kinds(&mut n, Some(&down), 1_000).is_empty());
        assert!(
            kinds(&mut n, None, 5_000).is_empty(),
            "cleared within the grace"
        );
        assert!(kinds(&mut n, Some(&down), 10_000).is_empty());
        let k = kinds(&mut n, Some(&down), 10_000 + GRACE_MS);
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].0, "queue.held");
        assert!(kinds(&mut n, Some(&down), 90_000).is_empty(), "once");
        let k = kinds(&mut n, None, 95_000);
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].0, "queue.released");
        // A usage limit is limit_hold's: not announced here, and it ends this hold.
        assert!(kinds(&mut n, Some(&held("rate_limited")), 100_000).is_empty());
    }

    #[test]
    fn logged_out_is_announced_at_once_and_a_new_reason_is_a_new_hold() {
        let mut n = HoldNotice::default();
        let k = kinds(&mut n, Some(&held("logged_out")), 1_000);
        assert_eq!(k.len(), 1, "{k:?}");
        let k = kinds(&mut n, Some(&held("codexd_unreachable")), 2_000);
        assert_eq!(
            k.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
            ["queue.released"]
        );
        n.reset();
        assert!(kinds(&mut n, Some(&held("codexd_unreachable")), 3_000).is_empty());
    }
}
