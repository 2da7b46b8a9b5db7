//! Exactly once: what to do with a step that was in flight when its run lost track of it (a
//! conductor killed mid-step and restarted, a standby taking over the lease, or a turn
//! start whose answer never came back). A pure function of the step as recorded and the
//! session as codexd reports it, so every case is unit-tested.
//!
//! The record is written in this order, each write durable before the next action:
//! 1. the step's *intent*: `status: "sending"`, the session's `lastTurnId` at that moment
//!    (`prev_turn_id`) and the time (`sent_at`); only then
//! 2. `POST /v1/codexd/turn`; and once its 202 names the turn,
//! 3. `status: "running"` with the `turn_id`.
//!
//! A step found `running` names its turn: codexd says whether it still runs (follow it),
//! has ended (record its outcome from the turn record and go on), or is unknown (the
//! session is gone: a retryable failure, and the retry starts a new turn for the step).
//!
//! A step found `sending` is the window between (1) and (3): codexd may never have seen the
//! request, or may have started the turn and lost us its answer. The session tells them
//! apart: a turn newer than `prev_turn_id` (running or finished) can only be this step's
//! (worker sessions carry nothing else), so it is adopted and never sent again. No newer
//! turn yet is not proof: codexd may still be inside that very `turn/start` (its own
//! request timeout, a thread resume first). Only after the settle time, longer than
//! anything codexd can spend on one start, does "no newer turn" mean the request never
//! reached the app-server, hence never the model: then, and only then, the step is sent.

/// The in-flight step as recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum OpenStep<'a> {
    /// The intent is persisted; the 202 was not (yet) recorded.
    Sending {
        prev_turn_id: Option<&'a str>,
        sent_ms: u64,
    },
    /// The turn was started and is named.
    Running { turn_id: &'a str },
}

/// The session as codexd reports it now.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionView<'a> {
    /// 404: codexd does not know it.
    Missing,
    /// codexd did not answer.
    Unreachable,
    Found {
        current_turn_id: Option<&'a str>,
        last_turn_id: Option<&'a str>,
        last_turn_status: Option<&'a str>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The turn runs: follow it to its end.
    Follow(String),
    /// The turn has ended: record its outcome.
    Finished(String),
    /// Ask again shortly (codexd unreachable, or the intent has not settled).
    Wait,
    /// codexd never started the step's turn: it may be sent.
    Send,
    /// codexd no longer knows the session or the turn: a retryable failure.
    Lost,
}

pub fn decide(step: &OpenStep, session: &SessionView, now_ms: u64, settle_ms: u64) -> Decision {
    let (current, last, last_status) = match session {
        SessionView::Unreachable => return Decision::Wait,
        SessionView::Missing => return Decision::Lost,
        SessionView::Found {
            current_turn_id,
            last_turn_id,
            last_turn_status,
        } => (*current_turn_id, *last_turn_id, *last_turn_status),
    };
    match step {
        OpenStep::Running { turn_id } => {
            if current == Some(turn_id)
                || (last == Some(turn_id) && last_status == Some("inProgress"))
            {
                Decision::Follow(turn_id.to_string())
            } else if last == Some(turn_id) {
                Decision::Finished(turn_id.to_string())
            } else if last.is_some() {
                // A newer turn followed ours; its record is in the session's history.
                Decision::Finished(turn_id.to_string())
            } else {
                Decision::Lost
            }
        }
        OpenStep::Sending {
            prev_turn_id,
            sent_ms,
        } => {
            let newest = current.or(last);
            match newest {
                Some(t) if Some(t) != *prev_turn_id => {
                    if current == Some(t) || last_status == Some("inProgress") {
                        Decision::Follow(t.to_string())
                    } else {
                        Decision::Finished(t.to_string())
                    }
                }
                _ if now_ms.saturating_sub(*sent_ms) >= settle_ms => Decision::Send,
                _ => Decision::Wait,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found<'a>(
        cur: Option<&'a str>,
        last: Option<&'a str>,
        st: Option<&'a str>,
    ) -> SessionView<'a> {
        SessionView::Found {
            current_turn_id: cur,
            last_turn_id: last,
            last_turn_status: st,
        }
    }

    #[test]
    fn a_named_turn_is_followed_recorded_or_lost() {
        let step = OpenStep::Running { turn_id: "t2" };
        let d = |s| decide(&step, &s, 0, 60_000);
        assert_eq!(
            d(found(Some("t2"), Some("t2"), Some("inProgress"))),
            Decision::Follow("t2".into())
        );
        assert_eq!(
            d(found(None, Some("t2"), Some("inProgress"))),
            Decision::Follow("t2".into())
        );
        assert_eq!(
            d(found(None, Some("t2"), Some("completed"))),
            Decision::Finished("t2".into())
        );
        assert_eq!(
            d(found(None, Some("t2"), Some("interrupted"))),
            Decision::Finished("t2".into())
        );
        assert_eq!(
            d(found(None, Some("t3"), Some("completed"))),
            Decision::Finished("t2".into())
        );
        assert_eq!(d(found(None, None, None)), Decision::Lost);
        assert_eq!(d(SessionView::Missing), Decision::Lost);
        assert_eq!(d(SessionView::Unreachable), Decision::Wait);
    }

    #[test]
    fn an_unacknowledged_send_is_adopted_never_resent_before_it_settled() {
        let step = OpenStep::Sending {
            prev_turn_id: Some("t1"),
            sent_ms: 1_000,
        };
        let d = |s, now| decide(&step, &s, now, 60_000);
        // codexd started it: adopt, running or finished.
        assert_eq!(
            d(found(Some("t2"), Some("t2"), Some("inProgress")), 2_000),
            Decision::Follow("t2".into())
        );
        assert_eq!(
            d(found(None, Some("t2"), Some("completed")), 2_000),
            Decision::Finished("t2".into())
        );
        // Nothing newer yet: wait out the settle time, then it may be sent.
        assert_eq!(
            d(found(None, Some("t1"), Some("completed")), 2_000),
            Decision::Wait
        );
        assert_eq!(
            d(found(None, Some("t1"), Some("completed")), 61_000),
            Decision::Send
        );
        // A fresh session that never ran a turn.
        let first = OpenStep::Sending {
            prev_turn_id: None,
            sent_ms: 0,
        };
        assert_eq!(
            decide(&first, &found(None, None, None), 10, 60_000),
            Decision::Wait
        );
        assert_eq!(
            decide(&first, &found(None, None, None), 60_000, 60_000),
            Decision::Send
        );
        assert_eq!(
            decide(
                &first,
                &found(Some("t1"), Some("t1"), Some("inProgress")),
                10,
                60_000
            ),
            Decision::Follow("t1".into())
        );
        assert_eq!(d(SessionView::Missing, 2_000), Decision::Lost);
        assert_eq!(d(SessionView::Unreachable, 99_000), Decision::Wait);
    }
}
