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
//! Memory only: a restarted codexd reads them again.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use baa::common::sync::lock;
use baa::common::time::{now_ms, now_rfc3339, rfc3339_from_ms};

use crate::core::{str_at, Core};
use crate::events::Level;
use crate::rpc::RpcError;

/// How often the account and limits are read again while the child runs.
pub const ACCOUNT_REFRESH: Duration = Duration::from_secs(300);

/// What codexd knows of the account and its limits.
#[derive(Debug, Default)]
pub struct AccountState {
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

    /// `limits {…}` of the status, `blockedUntil` as of `now_s`.
    pub fn limits_json(&self, now_s: i64) -> Value {
        let l = &self.limits;
        json!({
            "primary": window_json(l.get("primary")),
            "secondary": window_json(l.get("secondary")),
            "blockedUntil": blocked_until(l, self.usage_allowed, now_s).map(rfc3339_from_secs),
            "reachedType": l.get("rateLimitReachedType").filter(|v| !v.is_null()),
            "limitId": l.get("limitId").filter(|v| !v.is_null()),
            "updatedAt": self.limits_at,
            "source": self.limits_source,
            "error": self.limits_error,
        })
    }
}

impl Core {
    /// Ticker: true (and marked as running) when a refresh should start now — a child
    /// generation not read yet, a stale mark, or [`ACCOUNT_REFRESH`] since the last one.
    pub fn take_account_refresh(&self) -> bool {
        let Some(generation) = self.current_link().map(|l| l.generation) else {
            return false;
        };
        let mut a = lock(&self.account);
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

    /// The refresh thread could not be started: let the next tick try again.
    pub fn account_refresh_failed(&self) {
        lock(&self.account).refreshing = false;
    }

    /// Reads the account, the limits and (once per child) `codex --version`. Runs on a
    /// thread the ticker owns; every call is bounded (request timeout, version timeout).
    pub fn refresh_account(&self) {
        let Some(link) = self.current_link() else {
            lock(&self.account).refreshing = false;
            return;
        };
        self.refresh_codex_version(link.generation);
        let account = link.rpc.request("account/read", json!({}), self.timeout());
        let limits = link
            .rpc
            .request("account/rateLimits/read", json!({}), self.timeout());
        let now_s = (now_ms() / 1000) as i64;
        let (was, is, blocked) = {
            let mut a = lock(&self.account);
            let was = login_state(&a.account_json());
            let before = blocked_until(&a.limits, a.usage_allowed, now_s);
            a.apply_reads(account, limits, link.generation);
            let after = blocked_until(&a.limits, a.usage_allowed, now_s);
            (
                was,
                login_state(&a.account_json()),
                (before != after).then_some(after),
            )
        };
        if let Some(after) = blocked {
            self.emit_blocked(after);
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
            self.emit(
                Level::Info,
                "account.changed",
                format!("codex account: {message}"),
                json!({"loggedIn": is.0, "authRequired": is.1, "plan": is.2}),
            );
        }
    }

    /// Account notifications from the child (dispatcher thread: state only, no waiting).
    pub(crate) fn on_account_notification(&self, method: &str, params: &Value) {
        match method {
            "account/rateLimits/updated" => {
                let Some(update) = params.get("rateLimits") else {
                    return;
                };
                let (before, after) = {
                    let mut a = lock(&self.account);
                    let now_s = (now_ms() / 1000) as i64;
                    let before = blocked_until(&a.limits, a.usage_allowed, now_s);
                    a.limits = merge_limits(&a.limits, update);
                    a.limits_at = Some(now_rfc3339());
                    a.limits_source = Some("account/rateLimits/updated");
                    (before, blocked_until(&a.limits, a.usage_allowed, now_s))
                };
                if before != after {
                    self.emit_blocked(after);
                }
            }
            "account/updated" | "account/login/completed" => lock(&self.account).stale = true,
            // A turn failed on the usage limit: the limits say until when; read them now.
            "error"
                if str_at(params, &["error", "codexErrorInfo"]) == Some("usageLimitExceeded") =>
            {
                lock(&self.account).stale = true;
            }
            _ => {}
        }
    }

    fn emit_blocked(&self, until: Option<i64>) {
        match until {
            Some(s) => self.emit(
                Level::Warn,
                "limits.blocked",
                format!(
                    "codex rate limit used up; new turns should wait until {}",
                    rfc3339_from_secs(s)
                ),
                json!({"blockedUntil": rfc3339_from_secs(s)}),
            ),
            None => self.emit(
                Level::Info,
                "limits.cleared",
                "codex rate limits no longer block new turns",
                json!({"blockedUntil": null}),
            ),
        };
    }

    /// `account` and `limits` of the status.
    pub fn account_status(&self) -> (Value, Value) {
        let a = lock(&self.account);
        (a.account_json(), a.limits_json((now_ms() / 1000) as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
