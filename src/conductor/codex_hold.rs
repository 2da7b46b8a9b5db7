//! Whether new Codex task turns must wait, from codexd's status: the account's rate
//! limits are used up (`snapshot.limits.blockedUntil` in the future), the account is
//! logged out where the provider needs one (`snapshot.account.authRequired` and not
//! `loggedIn`), or codexd's app-server child is not ready (`snapshot.daemon.child.status`
//! other than `running`: starting, restarting, crash_loop, …; a codexd just started
//! answers before its child does). Waiting beats starting a turn that fails mid-way and
//! burns an attempt.
//!
//! The scheduler's dispatch gate asks [`HoldGate::check`] before it dispatches; that reads
//! codexd's status at most every [`MAX_AGE`] (a loopback call with the proxy's bounded
//! read timeouts) and computes the hold against the clock each time, so a hold ends on
//! its own when `blockedUntil` passes. `/v1/runtime` shows the last decision
//! ([`HoldGate::to_json`]) without calling codexd: a probe must answer fast.
//!
//! codexd being unreachable is not a hold here: the dispatch itself fails and says why.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use baa::common::api_error::ApiError;
use baa::common::sync::lock;
use baa::common::time::{ms_from_rfc3339, now_ms, now_rfc3339, rfc3339_from_ms};

use crate::codex_proxy::CodexProxy;

/// How long one reading of codexd's status is reused.
pub const MAX_AGE: Duration = Duration::from_secs(5);
/// How long a failed reading is reused: codexd coming back should start the queue soon.
pub const MAX_AGE_FAILED: Duration = Duration::from_secs(1);

/// Why turns wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReason {
    /// A rate-limit window is used up until `until`.
    RateLimited,
    /// The provider needs an OpenAI login and there is none.
    LoggedOut,
    /// codexd's app-server child is not running (yet): no session or turn can start.
    ChildNotReady,
}

impl HoldReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::RateLimited => "rate_limited",
            HoldReason::LoggedOut => "logged_out",
            HoldReason::ChildNotReady => "codexd_child_not_ready",
        }
    }
}

/// A reason to hold new task turns.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub reason: HoldReason,
    /// Epoch ms the hold ends by itself (rate limits); None: until the account logs in.
    pub until_ms: Option<u64>,
    pub message: String,
}

impl Hold {
    pub fn to_json(&self) -> Value {
        json!({
            "reason": self.reason.as_str(),
            "until": self.until_ms.map(rfc3339_from_ms),
            "message": self.message,
        })
    }
}

/// What the hold is computed from, read out of codexd's status once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub blocked_until_ms: Option<u64>,
    pub logged_out: bool,
    /// The child's status when it is not `running` (nor `external`: no child to wait for).
    pub child_not_ready: Option<String>,
}

impl Facts {
    /// From the `data` of `GET /v1/codexd/status`. Missing or odd fields hold nothing.
    pub fn from_status(data: &Value) -> Facts {
        let snap = data.get("snapshot").unwrap_or(data);
        let at = |path: &[&str]| path.iter().try_fold(snap, |v, k| v.get(*k));
        let blocked_until_ms = at(&["limits", "blockedUntil"])
            .and_then(Value::as_str)
            .and_then(ms_from_rfc3339);
        let logged_out = at(&["account", "authRequired"]).and_then(Value::as_bool) == Some(true)
            && at(&["account", "loggedIn"]).and_then(Value::as_bool) == Some(false);
        let child_not_ready = at(&["daemon", "child", "status"])
            .and_then(Value::as_str)
            .filter(|s| !matches!(*s, "running" | "external"))
            .map(str::to_string);
        Facts {
            blocked_until_ms,
            logged_out,
            child_not_ready,
        }
    }

    /// Whether the reading describes a state that ends by itself soon (a child starting):
    /// reused no longer than a failed reading, so the queue starts soon after it ends.
    fn settles_soon(&self) -> bool {
        self.child_not_ready.is_some()
    }

    /// The hold at `now_ms`, if any; a child not ready wins (nothing can start), then
    /// being logged out (it does not end by itself).
    pub fn hold(&self, now_ms: u64) -> Option<Hold> {
        if let Some(status) = &self.child_not_ready {
            return Some(Hold {
                reason: HoldReason::ChildNotReady,
                until_ms: None,
                message: format!("codexd's app-server child is {status}, not ready; new task turns wait until it runs (no attempt is spent)"),
            });
        }
        if self.logged_out {
            return Some(Hold {
                reason: HoldReason::LoggedOut,
                until_ms: None,
                message: "codex is logged out and its provider needs an OpenAI login; new task turns wait until `codex login` (codexd reads the account again every 5 minutes)".into(),
            });
        }
        let until = self.blocked_until_ms.filter(|u| *u > now_ms)?;
        Some(Hold {
            reason: HoldReason::RateLimited,
            until_ms: Some(until),
            message: format!(
                "codex rate limit used up; new task turns wait until {}",
                rfc3339_from_ms(until)
            ),
        })
    }
}

/// The last reading of codexd's status.
struct Reading {
    at: Instant,
    at_rfc3339: String,
    facts: Result<Facts, ApiError>,
}

/// The gate's cache; see the module doc.
#[derive(Default)]
pub struct HoldGate {
    last: Mutex<Option<Reading>>,
    /// Bumped by each invalidation (a reading that raced one is dropped).
    invalidations: AtomicU64,
}

impl HoldGate {
    /// The hold now, reading codexd's status first when the last reading is older than
    /// [`MAX_AGE`]. An unreadable status holds nothing (the reading keeps its error).
    pub fn check(&self, proxy: &CodexProxy) -> Option<Hold> {
        self.read_if_older(proxy, MAX_AGE);
        self.current()
    }

    /// Reads codexd's status now if the last reading is older than `age` (a failed one:
    /// older than [`MAX_AGE_FAILED`]) or was invalidated. A task run calls this while its
    /// turn runs, so the scheduler's next check finds a fresh reading instead of waiting on
    /// one between two tasks.
    pub fn read_if_older(&self, proxy: &CodexProxy, age: Duration) {
        let stale = lock(&self.last).as_ref().is_none_or(|r| {
            let max_age = match &r.facts {
                Ok(f) if !f.settles_soon() => age,
                _ => MAX_AGE_FAILED.min(age),
            };
            r.at.elapsed() >= max_age
        });
        if !stale {
            return;
        }
        let generation = self.invalidations.load(Ordering::SeqCst);
        // Not under the lock: the call may take the proxy's read timeout.
        let facts = proxy
            .call("GET", "/v1/codexd/status", None)
            .map(|(_, data)| Facts::from_status(&data));
        let mut last = lock(&self.last);
        // A reading begun before an invalidation may predate what invalidated it.
        if self.invalidations.load(Ordering::SeqCst) == generation {
            *last = Some(Reading {
                at: Instant::now(),
                at_rfc3339: now_rfc3339(),
                facts,
            });
        }
    }

    /// The hold by the last reading, without reading again.
    pub fn current(&self) -> Option<Hold> {
        let last = lock(&self.last);
        last.as_ref()
            .and_then(|r| r.facts.as_ref().ok())
            .and_then(|f| f.hold(now_ms()))
    }

    /// Forgets the last reading, so the next `check` reads codexd's status again: a turn
    /// just ended, and its model responses may have used the limits up.
    pub fn invalidate(&self) {
        let mut last = lock(&self.last);
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        *last = None;
    }

    /// codexd's child status by the last reading when it is not running (`crash_loop`,
    /// `starting`, …); None when it runs or nothing was read.
    pub fn child_status(&self) -> Option<String> {
        lock(&self.last)
            .as_ref()
            .and_then(|r| r.facts.as_ref().ok())
            .and_then(|f| f.child_not_ready.clone())
    }

    /// Why the last reading of codexd's status failed (codexd unreachable), if it did.
    pub fn error(&self) -> Option<String> {
        lock(&self.last)
            .as_ref()
            .and_then(|r| r.facts.as_ref().err().map(|e| e.message.clone()))
    }

    /// For `/v1/runtime`: `{held, reason, until, message, checkedAt, error}`; `checkedAt`
    /// is null until the scheduler first asked.
    pub fn to_json(&self) -> Value {
        let last = lock(&self.last);
        let hold = last
            .as_ref()
            .and_then(|r| r.facts.as_ref().ok())
            .and_then(|f| f.hold(now_ms()));
        json!({
            "held": hold.is_some(),
            "reason": hold.as_ref().map(|h| h.reason.as_str()),
            "until": hold.as_ref().and_then(|h| h.until_ms).map(rfc3339_from_ms),
            "message": hold.as_ref().map(|h| h.message.clone()),
            "checkedAt": last.as_ref().map(|r| r.at_rfc3339.clone()),
            "error": last.as_ref().and_then(|r| r.facts.as_ref().err().map(|e| e.message.clone())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(blocked: Value, auth_required: Value, logged_in: Value) -> Value {
        json!({"snapshot": {
            "limits": {"blockedUntil": blocked, "primary": {"usedPercent": 100}},
            "account": {"authRequired": auth_required, "loggedIn": logged_in, "plan": "plus"},
        }})
    }

    #[test]
    fn rate_limit_holds_until_blocked_until_passes() {
        let f = Facts::from_status(&status(
            json!("2026-11-18T11:06:40.000Z"),
            json!(true),
            json!(true),
        ));
        assert_eq!(f.blocked_until_ms, Some(1_795_000_000_000));
        let h = f.hold(1_794_999_999_000).unwrap();
        assert_eq!(h.reason, HoldReason::RateLimited);
        assert_eq!(
            h.to_json(),
            json!({"reason": "rate_limited", "until": "2026-11-18T11:06:40.000Z",
                "message": "codex rate limit used up; new task turns wait until 2026-11-18T11:06:40.000Z"})
        );
        assert_eq!(f.hold(1_795_000_000_000), None, "ends at blockedUntil");
    }

    #[test]
    fn logged_out_holds_only_where_a_login_is_needed() {
        let f = Facts::from_status(&status(json!(null), json!(true), json!(false)));
        assert_eq!(f.hold(0).map(|h| h.reason), Some(HoldReason::LoggedOut));
        // A custom provider (the mock, a local model server) needs no OpenAI login.
        let f = Facts::from_status(&status(json!(null), json!(false), json!(false)));
        assert_eq!(f.hold(0), None);
        // Not known yet (codexd has not read the account): no hold.
        let f = Facts::from_status(&status(json!(null), json!(null), json!(null)));
        assert_eq!(f.hold(0), None);
    }

    #[test]
    fn a_child_not_ready_holds_until_it_runs() {
        let with_child = |st: Value| {
            Facts::from_status(&json!({"snapshot": {"daemon": {"child": {"status": st}}}}))
        };
        for st in [
            "starting",
            "restarting",
            "crash_loop",
            "unavailable",
            "stopped",
        ] {
            let h = with_child(json!(st)).hold(0).unwrap();
            assert_eq!(h.reason, HoldReason::ChildNotReady, "{st}");
            assert!(h.message.contains(st), "{}", h.message);
            assert_eq!(h.to_json()["reason"], "codexd_child_not_ready");
        }
        for st in [json!("running"), json!("external"), json!(null)] {
            assert_eq!(with_child(st.clone()).hold(0), None, "{st}");
        }
        assert!(with_child(json!("starting")).settles_soon());
    }

    #[test]
    fn odd_status_documents_hold_nothing() {
        for odd in [
            json!(null),
            json!([1]),
            json!({"snapshot": 3}),
            status(json!(12), json!("yes"), json!(0)),
            status(json!("soon"), json!(true), json!(true)),
        ] {
            assert_eq!(Facts::from_status(&odd), Facts::default(), "{odd}");
        }
    }

    #[test]
    fn an_unreachable_codexd_holds_nothing_and_says_why() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let gate = HoldGate::default();
        assert_eq!(gate.to_json()["checkedAt"], Value::Null);
        let proxy = CodexProxy::new(Some(format!("http://127.0.0.1:{port}")));
        assert_eq!(gate.check(&proxy), None);
        let j = gate.to_json();
        assert_eq!(j["held"], false, "{j}");
        assert!(j["checkedAt"].is_string(), "{j}");
        assert!(
            j["error"]
                .as_str()
                .is_some_and(|e| e.contains("unavailable")),
            "{j}"
        );
    }

    /// A loopback codexd that answers every request with `status` and counts them.
    fn counting_codexd(status: Value) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        let body = json!({"ok": true, "data": status}).to_string();
        std::thread::Builder::new()
            .name("test-codexd".into())
            .spawn(move || {
                for mut conn in listener.incoming().flatten() {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                        head.push(byte[0]);
                    }
                    seen.fetch_add(1, Ordering::SeqCst);
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            })
            .unwrap();
        (base, count)
    }

    #[test]
    fn a_fresh_reading_is_reused_and_an_invalidated_one_is_read_again() {
        let (base, reads) = counting_codexd(status(json!(null), json!(false), json!(true)));
        let proxy = CodexProxy::new(Some(base));
        let gate = HoldGate::default();
        assert_eq!(gate.check(&proxy), None);
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // A run's refresh while its turn runs: the reading is younger than the bound.
        gate.read_if_older(&proxy, Duration::from_secs(60));
        assert_eq!(gate.check(&proxy), None);
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // Older than the bound: read again.
        gate.read_if_older(&proxy, Duration::ZERO);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        gate.invalidate();
        assert_eq!(gate.to_json()["checkedAt"], Value::Null);
        assert_eq!(gate.check(&proxy), None);
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }
}
