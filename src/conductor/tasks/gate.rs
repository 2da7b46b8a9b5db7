//! The dispatch gate: asked by the scheduler before it starts a run, it says why new task
//! turns must wait, or lets them go. A held queue stays queued (no attempt is spent on a
//! turn that would fail at once), and the reason shows in `/v1/runtime` `scheduler.held`.
//!
//! Reasons, in the order they are checked: codexd not configured; codexd's child is not
//! ready, or its account or rate limits hold new turns (`codex_hold`: a child starting or
//! restarting, used-up limit until `blockedUntil`, or logged out where a login is needed);
//! codexd unreachable (its status could not be read). Each is
//! re-checked on the scheduler's next tick, so the queue starts by itself once it clears.

use serde_json::{json, Value};

use crate::codex_hold::HoldGate;
use crate::codex_proxy::CodexProxy;

/// Why dispatch waits.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub reason: String,
    pub message: String,
    /// When it ends by itself, if it does.
    pub until: Option<String>,
}

impl Held {
    pub fn to_json(&self) -> Value {
        json!({"reason": self.reason, "message": self.message, "until": self.until})
    }
}

/// `None` when a run may start now.
pub fn check(proxy: &CodexProxy, hold: &HoldGate) -> Option<Held> {
    if proxy.base().is_none() {
        return Some(Held {
            reason: "codexd_not_configured".into(),
            message: "BAA_CODEXD_LOCAL_API_BASE is not configured; tasks wait until it is.".into(),
            until: None,
        });
    }
    if let Some(h) = hold.check(proxy) {
        let j = h.to_json();
        return Some(Held {
            reason: h.reason.as_str().into(),
            message: h.message,
            until: j["until"].as_str().map(str::to_string),
        });
    }
    hold.error().map(|e| Held {
        reason: "codexd_unreachable".into(),
        message: format!(
            "codexd is unreachable ({e}); tasks wait until it answers ({})",
            crate::codex_proxy::check_hint(proxy.base().unwrap_or_default())
        ),
        until: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconfigured_and_unreachable_codexd_hold_the_queue() {
        let h = check(&CodexProxy::new(None), &HoldGate::default()).unwrap();
        assert_eq!(h.reason, "codexd_not_configured");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let proxy = CodexProxy::new(Some(format!("http://127.0.0.1:{port}")));
        let h = check(&proxy, &HoldGate::default()).unwrap();
        assert_eq!(h.reason, "codexd_unreachable", "{h:?}");
        assert!(
            h.message
                .contains(&format!("curl -s http://127.0.0.1:{port}/healthz")),
            "{h:?}"
        );
        assert_eq!(h.to_json()["until"], Value::Null);
    }
}
