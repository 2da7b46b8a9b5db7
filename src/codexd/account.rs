//! The Codex account and its rate limits, so automation can wait instead of failing
//! mid-turn: `account/read` and `account/rateLimits/read`, read when a child becomes ready
//! and every [`ACCOUNT_REFRESH`] after (on a thread the ticker owns: both may go over the
//! network), and kept current by the child's `account/rateLimits/updated` (sent after
//! each model response, from its rate-limit headers) and `account/updated` notifications.
//!
//! Shown in `/v1/codexd/status` as `account {loggedIn, plan, type, authRequired, …}` and
//! `limits {primary {usedPercent, resetsAt, windowMinutes}, secondary {…}, blockedUntil,
//! …}`. `blockedUntil` is the latest reset of a window that is used up (100 %), while it
//! is in the future; a conductor holds new task turns until then, and while the account
//! is logged out where the provider needs one (`authRequired` and not `loggedIn`).
//!
//! The hold (`blockedUntil` and why) is written to daemon-state.json (`limitsHold`) as it
//! changes, before it is announced, and read back at start: a restarted codexd knows
//! nothing of the limits until the next model response or read, and would otherwise let a
//! conductor send its whole queue into the limit. The restored hold stands until its time
//! passes or fresh limits arrive (an update from a model response, or a successful read).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use baa::common::sync::lock;
use baa::common::time::{ms_from_rfc3339, now_ms, now_rfc3339, rfc3339_from_ms};

use crate::events::{Announce, Level};
use crate::json_path::str_at;
use crate::rpc::{Ask, RpcError};
use crate::state::LimitsHold;

/// How often the account and limits are read again while the child runs.
pub const ACCOUNT_REFRESH: Duration = Duration::from_secs(300);

/// The account and its limits, owned behind one lock that is never held across a call
/// to the child.
pub struct Account {
    state: Mutex<AccountState>,
    /// How long each read may take (the daemon's request timeout).
    timeout: Duration,
}

/// What codexd knows of the account and its limits.
#[derive(Debug, Default)]
struct AccountState {
    /// Child generation the last refresh ran against (0: none yet).
    generation: u64,
    refreshed: Option<Instant>,
    /// Set by `account/updated` and by a usage-limit error: read again at the next tick.
    stale: bool,
    /// A refresh thread runs.
    refreshing: bool,
    /// `account/read`: `None` until it answered once.
    read: Option<AccountRead>,
    account_error: Option<String>,
    /// The merged rate-limit snapshot (`RateLimitSnapshot`), `Null` until one arrived.
    limits: Value,
    /// `ordinaryUsageAllowed` of the last `account/rateLimits/read`.
    usage_allowed: Option<bool>,
    limits_at: Option<String>,
    limits_source: Option<&'static str>,
    limits_error: Option<String>,
    /// The hold a previous codexd persisted (epoch s, reason), until fresh limits arrive.
    restored: Option<(i64, String)>,
}

#[derive(Debug, Clone)]
struct AccountRead {
    account: Value,
    requires_auth: Option<bool>,
    at: String,
}

/// Merges a sparse update into `old` (the schema: an update's null or missing values do
/// not clear what was seen before). A window (`primary`, `secondary`) is replaced whole.
pub fn merge_limits(old: &Value, update: &Value) -> Value {
    let mut out: Map<String, Value> = old.as_object().cloned().unwrap_or_default();
    if let Some(u) = update.as_object() {
        for (k, v) in u {
            if !v.is_null() {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Epoch seconds until which the limits block new turns, if that is after `now_s`: the
/// latest `resetsAt` of a window at 100 %. When the backend says usage is not allowed
/// (`rateLimitReachedType` set, or `ordinaryUsageAllowed: false`) without a full window,
/// the latest reset of any window.
pub fn blocked_until(limits: &Value, usage_allowed: Option<bool>, now_s: i64) -> Option<i64> {
    let windows: Vec<&Value> = ["primary", "secondary"]
        .iter()
        .filter_map(|k| limits.get(*k).filter(|w| w.is_object()))
        .collect();
    let reset = |w: &&Value| w.get("resetsAt").and_then(Value::as_i64);
    let full = windows
        .iter()
        .filter(|w| w.get("usedPercent").and_then(Value::as_f64).unwrap_or(0.0) >= 100.0)
        .filter_map(reset)
        .max();
    let reached = limits
        .get("rateLimitReachedType")
        .is_some_and(|v| !v.is_null())
        || usage_allowed == Some(false);
    let until = full.or_else(|| {
        reached
            .then(|| windows.iter().filter_map(reset).max())
            .flatten()
    })?;
    (until > now_s).then_some(until)
}

/// Why `limits` block (said with [`blocked_until`]): which window is used up, or that the
/// backend says usage is not allowed.
pub fn blocked_reason(limits: &Value, usage_allowed: Option<bool>) -> String {
    let full: Vec<&str> = ["primary", "secondary"]
        .into_iter()
        .filter(|k| {
            limits
                .get(*k)
                .and_then(|w| w.get("usedPercent"))
                .and_then(Value::as_f64)
                .is_some_and(|p| p >= 100.0)
        })
        .collect();
    if !full.is_empty() {
        return format!("{} rate-limit window used up", full.join(" and "));
    }
    match limits.get("rateLimitReachedType").and_then(Value::as_str) {
        Some(t) => format!("rate limit reached ({t})"),
        None if usage_allowed == Some(false) => "the account allows no more usage now".into(),
        None => "rate limit reached".into(),
    }
}

fn window_json(w: Option<&Value>) -> Value {
    let Some(w) = w.filter(|w| w.is_object()) else {
        return Value::Null;
    };
    json!({
        "usedPercent": w.get("usedPercent"),
        "resetsAt": w.get("resetsAt").and_then(Value::as_i64).map(rfc3339_from_secs),
        "windowMinutes": w.get("windowDurationMins"),
    })
}

/// `(loggedIn, authRequired, plan)` of an `account_json`, to notice a change.
fn login_state(account: &Value) -> (Option<bool>, Option<bool>, Option<String>) {
    (
        account["loggedIn"].as_bool(),
        account["authRequired"].as_bool(),
        account["plan"].as_str().map(str::to_string),
    )
}

fn rfc3339_from_secs(s: i64) -> String {
    rfc3339_from_ms(u64::try_from(s).unwrap_or(0).saturating_mul(1000))
}

impl AccountState {
    /// Takes in what one refresh read from generation `generation`; a failed read keeps
    /// what was known and records why.
    fn apply_reads(
        &mut self,
        account: Result<Value, RpcError>,
        limits: Result<Value, RpcError>,
        generation: u64,
    ) {
        let now = now_rfc3339();
        match account {
            Ok(r) => {
                self.read = Some(AccountRead {
                    account: r.get("account").cloned().unwrap_or(Value::Null),
                    requires_auth: r.get("requiresOpenaiAuth").and_then(Value::as_bool),
                    at: now.clone(),
                });
                self.account_error = None;
            }
            Err(e) => self.account_error = Some(e.to_string()),
        }
        match limits {
            Ok(r) => {
                self.restored = None;
                let snapshot = r.get("rateLimits").cloned().unwrap_or(Value::Null);
                self.limits = merge_limits(&self.limits, &snapshot);
                self.usage_allowed = r.get("ordinaryUsageAllowed").and_then(Value::as_bool);
                self.limits_at = Some(now);
                self.limits_source = Some("account/rateLimits/read");
                self.limits_error = None;
            }
            // Expected for a provider without an OpenAI account ("authentication
            // required"): the headers of each response still feed the updates.
            Err(e) => self.limits_error = Some(e.to_string()),
        }
        self.generation = generation;
        self.refreshed = Some(Instant::now());
        self.refreshing = false;
    }

    /// `account {…}` of the status.
    pub fn account_json(&self) -> Value {
        let Some(r) = &self.read else {
            return json!({
                "loggedIn": null, "plan": null, "type": null, "authRequired": null,
                "checkedAt": null, "error": self.account_error,
            });
        };
        let logged_in = r.account.is_object();
        json!({
            "loggedIn": logged_in,
            "plan": str_at(&r.account, &["planType"]),
            "type": str_at(&r.account, &["type"]),
            "authRequired": r.requires_auth,
            "checkedAt": r.at,
            "error": self.account_error,
        })
    }

    /// The hold at `now_s`: until when (epoch s), why, and whether it is the one a
    /// previous codexd persisted (no fresh limits since).
    fn hold(&self, now_s: i64) -> Option<(i64, String, bool)> {
        if let Some(until) = blocked_until(&self.limits, self.usage_allowed, now_s) {
            return Some((
                until,
                blocked_reason(&self.limits, self.usage_allowed),
                false,
            ));
        }
        self.restored
            .as_ref()
            .filter(|(until, _)| *until > now_s)
            .map(|(until, why)| (*until, why.clone(), true))
    }

    /// `limits {…}` of the status, `blockedUntil` (and why) as of `now_s`.
    pub fn limits_json(&self, now_s: i64) -> Value {
        let l = &self.limits;
        let hold = self.hold(now_s);
        json!({
            "primary": window_json(l.get("primary")),
            "secondary": window_json(l.get("secondary")),
            "blockedUntil": hold.as_ref().map(|h| rfc3339_from_secs(h.0)),
            "blockedReason": hold.as_ref().map(|h| h.1.clone()),
            "blockedRestored": hold.as_ref().map(|h| h.2),
            "reachedType": l.get("rateLimitReachedType").filter(|v| !v.is_null()),
            "limitId": l.get("limitId").filter(|v| !v.is_null()),
            "updatedAt": self.limits_at,
            "source": self.limits_source,
            "error": self.limits_error,
        })
    }
}

impl Account {
    pub fn new(timeout: Duration) -> Account {
        Account {
            state: Mutex::new(AccountState::default()),
            timeout,
        }
    }

    /// Ticker: true (and marked as running) when a refresh should start now for the child
    /// of `generation` (`None`: no child) — a generation not read yet, a stale mark, or
    /// [`ACCOUNT_REFRESH`] since the last one.
    pub fn take_refresh(&self, generation: Option<u64>) -> bool {
        let Some(generation) = generation else {
            return false;
        };
        let mut a = lock(&self.state);
        let due = a.generation != generation
            || a.stale
            || a.refreshed.is_none_or(|t| t.elapsed() >= ACCOUNT_REFRESH);
        if a.refreshing || !due {
            return false;
        }
        a.refreshing = true;
        a.stale = false;
        true
    }

    /// The refresh did not run (no thread, no child): let the next tick try again.
    pub fn refresh_failed(&self) {
        lock(&self.state).refreshing = false;
    }

    /// Reads the account and the limits from `child`, announcing a login or block change
    /// (a block change is `persist`ed first). Runs on a thread the ticker owns; each read
    /// is bounded by the request timeout.
    pub fn refresh(&self, child: &impl Ask, out: &impl Announce, persist: &dyn Fn()) {
        let account = child.ask("account/read", json!({}), self.timeout);
        let limits = child.ask("account/rateLimits/read", json!({}), self.timeout);
        let now_s = (now_ms() / 1000) as i64;
        let (was, is, blocked) = {
            let mut a = lock(&self.state);
            let was = login_state(&a.account_json());
            let before = a.hold(now_s).map(|h| h.0);
            a.apply_reads(account, limits, child.generation());
            let after = a.hold(now_s).map(|h| h.0);
            (
                was,
                login_state(&a.account_json()),
                (before != after).then_some(after),
            )
        };
        if let Some(after) = blocked {
            persist();
            announce_blocked(out, after);
        }
        if was != is {
            let message = match &is {
                (Some(true), _, plan) => {
                    format!("logged in ({})", plan.as_deref().unwrap_or("no plan"))
                }
                (Some(false), Some(false), _) => {
                    "no OpenAI login (the provider needs none)".to_string()
                }
                (Some(false), _, _) => "logged out".to_string(),
                (None, _, _) => "unknown".to_string(),
            };
            out.announce(
                Level::Info,
                "account.changed",
                format!("codex account: {message}"),
                json!({"loggedIn": is.0, "authRequired": is.1, "plan": is.2}),
            );
        }
    }

    /// Account notifications from the child (dispatcher thread: state only, no waiting,
    /// but for `persist`ing a changed hold before it is announced).
    pub fn on_notification(
        &self,
        method: &str,
        params: &Value,
        out: &impl Announce,
        persist: &dyn Fn(),
    ) {
        match method {
            "account/rateLimits/updated" => {
                let Some(update) = params.get("rateLimits") else {
                    return;
                };
                let (before, after) = {
                    let mut a = lock(&self.state);
                    let now_s = (now_ms() / 1000) as i64;
                    let before = a.hold(now_s).map(|h| h.0);
                    a.limits = merge_limits(&a.limits, update);
                    a.limits_at = Some(now_rfc3339());
                    a.limits_source = Some("account/rateLimits/updated");
                    a.restored = None;
                    (before, a.hold(now_s).map(|h| h.0))
                };
                if before != after {
                    persist();
                    announce_blocked(out, after);
                }
            }
            "account/updated" | "account/login/completed" => lock(&self.state).stale = true,
            // A turn failed on the usage limit: the limits say until when; read them now.
            "error"
                if str_at(params, &["error", "codexErrorInfo"]) == Some("usageLimitExceeded") =>
            {
                lock(&self.state).stale = true;
            }
            _ => {}
        }
    }

    /// The hold to persist (`limitsHold` of daemon-state.json), as of now.
    pub fn persisted_hold(&self) -> Option<LimitsHold> {
        let now_s = (now_ms() / 1000) as i64;
        lock(&self.state)
            .hold(now_s)
            .map(|(until, reason, _)| LimitsHold {
                blocked_until: rfc3339_from_secs(until),
                reason,
            })
    }

    /// Takes back the hold a previous codexd persisted; one whose time passed (or that
    /// does not parse) is dropped. True when it holds.
    pub fn restore(&self, hold: Option<&LimitsHold>) -> bool {
        let now_s = (now_ms() / 1000) as i64;
        let until = hold.and_then(|h| {
            let s = ms_from_rfc3339(&h.blocked_until)? / 1000;
            let s = i64::try_from(s).ok()?;
            (s > now_s).then(|| (s, h.reason.clone()))
        });
        let holds = until.is_some();
        lock(&self.state).restored = until;
        holds
    }

    /// `account` and `limits` of the status.
    pub fn status(&self) -> (Value, Value) {
        let a = lock(&self.state);
        (a.account_json(), a.limits_json((now_ms() / 1000) as i64))
    }
}

fn announce_blocked(out: &impl Announce, until: Option<i64>) {
    match until {
        Some(s) => out.announce(
            Level::Warn,
            "limits.blocked",
            format!(
                "codex rate limit used up; new turns should wait until {}",
                rfc3339_from_secs(s)
            ),
            json!({"blockedUntil": rfc3339_from_secs(s)}),
        ),
        None => out.announce(
            Level::Info,
            "limits.cleared",
            "codex rate limits no longer block new turns".to_string(),
            json!({"blockedUntil": null}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Announcements as `kind` strings.
    #[derive(Default)]
    struct Heard(RefCell<Vec<String>>);

    impl Announce for Heard {
        fn announce(&self, _: Level, kind: &str, _: String, _: Value) {
            self.0.borrow_mut().push(kind.to_string());
        }
    }

    impl Heard {
        fn take(&self) -> Vec<String> {
            self.0.take()
        }
    }

    /// A child of generation `.0` answering `account/read` with `.1` and the limits with `.2`.
    struct Child(u64, Value, Result<Value, RpcError>);

    impl Ask for Child {
        fn generation(&self) -> u64 {
            self.0
        }

        fn ask(&self, method: &str, _: Value, _: Duration) -> Result<Value, RpcError> {
            match method {
                "account/read" => Ok(self.1.clone()),
                _ => self.2.clone(),
            }
        }
    }

    fn account() -> Account {
        Account::new(Duration::from_secs(1))
    }

    #[test]
    fn a_refresh_is_due_once_per_generation_and_again_when_marked_stale() {
        let a = account();
        assert!(!a.take_refresh(None), "no child, nothing to read");
        assert!(a.take_refresh(Some(1)));
        assert!(!a.take_refresh(Some(1)), "one runs already");
        a.refresh(
            &Child(1, json!({}), Ok(json!({}))),
            &Heard::default(),
            &|| {},
        );
        assert!(!a.take_refresh(Some(1)), "read just now");
        assert!(a.take_refresh(Some(2)), "a new child");
        a.refresh_failed();
        a.on_notification("account/updated", &json!({}), &Heard::default(), &|| {});
        assert!(a.take_refresh(Some(2)));
        a.refresh_failed();
        let usage = json!({"error": {"codexErrorInfo": "usageLimitExceeded"}});
        a.refresh(
            &Child(2, json!({}), Ok(json!({}))),
            &Heard::default(),
            &|| {},
        );
        a.on_notification("error", &usage, &Heard::default(), &|| {});
        assert!(
            a.take_refresh(Some(2)),
            "a usage-limit error reads them again"
        );
    }

    #[test]
    fn a_refresh_announces_a_login_change_and_keeps_limits_when_their_read_fails() {
        let a = account();
        let heard = Heard::default();
        let logged_in =
            json!({"account": {"type": "chatgpt", "planType": "plus"}, "requiresOpenaiAuth": true});
        let limits = json!({"rateLimits": {"primary": {"usedPercent": 10, "resetsAt": 1}}});
        a.refresh(&Child(1, logged_in.clone(), Ok(limits)), &heard, &|| {});
        assert_eq!(heard.take(), ["account.changed"]);
        let refused = Err(RpcError::Server {
            code: -32600,
            message: "authentication required".into(),
            data: Value::Null,
        });
        a.refresh(&Child(1, logged_in, refused), &heard, &|| {});
        assert_eq!(heard.take(), Vec::<String>::new(), "nothing changed");
        let (acc, lim) = a.status();
        assert_eq!(
            (&acc["loggedIn"], &acc["plan"]),
            (&json!(true), &json!("plus"))
        );
        assert_eq!(lim["primary"]["usedPercent"], 10, "{lim}");
        assert_eq!(
            lim["error"],
            "app-server error -32600: authentication required"
        );
    }

    #[test]
    fn a_used_up_window_blocks_then_clears() {
        let a = account();
        let heard = Heard::default();
        let far = (now_ms() / 1000) as i64 + 3600;
        let full = json!({"rateLimits": {"primary": {"usedPercent": 100, "resetsAt": far}}});
        a.on_notification("account/rateLimits/updated", &full, &heard, &|| {});
        assert_eq!(heard.take(), ["limits.blocked"]);
        a.on_notification("account/rateLimits/updated", &full, &heard, &|| {});
        assert_eq!(
            heard.take(),
            Vec::<String>::new(),
            "still blocked: said once"
        );
        let eased = json!({"rateLimits": {"primary": {"usedPercent": 20, "resetsAt": far}}});
        a.on_notification("account/rateLimits/updated", &eased, &heard, &|| {});
        assert_eq!(heard.take(), ["limits.cleared"]);
        assert_eq!(a.status().1["source"], "account/rateLimits/updated");
    }

    #[test]
    fn a_persisted_hold_is_restored_until_its_time_or_fresh_limits() {
        let a = account();
        let heard = Heard::default();
        let far = (now_ms() / 1000) as i64 + 3600;
        let full = json!({"rateLimits": {"primary": {"usedPercent": 100, "resetsAt": far}}});
        let persisted = std::cell::Cell::new(0);
        a.on_notification("account/rateLimits/updated", &full, &heard, &|| {
            persisted.set(persisted.get() + 1)
        });
        assert_eq!(persisted.get(), 1, "a changed hold is persisted");
        let hold = a.persisted_hold().expect("held");
        assert_eq!(hold.reason, "primary rate-limit window used up");
        // A restarted codexd: no limits known, the persisted hold stands.
        let b = account();
        assert!(b.restore(Some(&hold)));
        let l = b.status().1;
        assert_eq!(l["blockedUntil"], json!(hold.blocked_until), "{l}");
        assert_eq!(l["blockedReason"], "primary rate-limit window used up");
        assert_eq!(l["blockedRestored"], true);
        assert_eq!(
            b.persisted_hold(),
            Some(hold.clone()),
            "written again as it was"
        );
        // Fresh limits from a model response replace it.
        let eased = json!({"rateLimits": {"primary": {"usedPercent": 20, "resetsAt": far}}});
        b.on_notification("account/rateLimits/updated", &eased, &heard, &|| {
            persisted.set(persisted.get() + 1)
        });
        assert_eq!(b.status().1["blockedUntil"], Value::Null);
        assert_eq!(persisted.get(), 2, "the hold's end is persisted too");
        // A hold whose time passed, or that does not parse, is dropped at read.
        let passed = LimitsHold {
            blocked_until: "2020-01-01T00:00:00.000Z".into(),
            reason: "x".into(),
        };
        assert!(!account().restore(Some(&passed)));
        let odd = LimitsHold {
            blocked_until: "soon".into(),
            reason: "x".into(),
        };
        assert!(!account().restore(Some(&odd)));
        assert!(!account().restore(None));
    }

    #[test]
    fn sparse_updates_keep_what_they_leave_out() {
        let old = json!({"limitId": "codex", "planType": "plus", "primary": {"usedPercent": 10, "resetsAt": 100}});
        let up = json!({"planType": null, "primary": {"usedPercent": 40, "resetsAt": 200}, "secondary": {"usedPercent": 5}});
        assert_eq!(
            merge_limits(&old, &up),
            json!({"limitId": "codex", "planType": "plus", "primary": {"usedPercent": 40, "resetsAt": 200}, "secondary": {"usedPercent": 5}})
        );
    }

    #[test]
    fn blocked_until_the_latest_reset_of_a_full_window_while_in_the_future() {
        let l = json!({"primary": {"usedPercent": 100, "resetsAt": 500}, "secondary": {"usedPercent": 100, "resetsAt": 900}});
        assert_eq!(blocked_until(&l, None, 100), Some(900));
        assert_eq!(blocked_until(&l, None, 900), None, "reset passed");
        let l = json!({"primary": {"usedPercent": 99, "resetsAt": 500}, "secondary": {"usedPercent": 100, "resetsAt": 300}});
        assert_eq!(blocked_until(&l, None, 100), Some(300));
        let l = json!({"primary": {"usedPercent": 43, "resetsAt": 500}});
        assert_eq!(blocked_until(&l, None, 100), None);
        assert_eq!(
            blocked_until(&l, Some(false), 100),
            Some(500),
            "backend says no"
        );
        let l = json!({"primary": {"usedPercent": 43, "resetsAt": 500}, "rateLimitReachedType": "rate_limit_reached"});
        assert_eq!(blocked_until(&l, None, 100), Some(500));
        assert_eq!(blocked_until(&json!(null), Some(false), 100), None);
    }

    #[test]
    fn status_shapes() {
        let mut a = AccountState::default();
        assert_eq!(a.account_json()["loggedIn"], Value::Null);
        a.read = Some(AccountRead {
            account: json!({"type": "chatgpt", "planType": "plus", "email": "x@y"}),
            requires_auth: Some(true),
            at: "t".into(),
        });
        a.limits = json!({"primary": {"usedPercent": 100, "resetsAt": 1_795_000_000, "windowDurationMins": 300}});
        let acc = a.account_json();
        assert_eq!(
            (
                &acc["loggedIn"],
                &acc["plan"],
                &acc["type"],
                &acc["authRequired"]
            ),
            (
                &json!(true),
                &json!("plus"),
                &json!("chatgpt"),
                &json!(true)
            )
        );
        assert!(acc.get("email").is_none(), "{acc}");
        let l = a.limits_json(1_794_999_000);
        assert_eq!(
            l["primary"],
            json!({"usedPercent": 100, "resetsAt": "2026-11-18T11:06:40.000Z", "windowMinutes": 300})
        );
        assert_eq!(l["blockedUntil"], "2026-11-18T11:06:40.000Z");
        assert_eq!(l["secondary"], Value::Null);
    }
}
