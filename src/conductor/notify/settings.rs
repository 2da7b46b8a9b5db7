//! The notification settings (`BAA_NOTIFY_*`) and their validated form.

use std::path::PathBuf;

use baa::common::settings::{Resolver, Result, Setting};

use super::event::{DEFAULT_KINDS, KINDS};
use super::target::Target;

pub const URLS: Setting = Setting::env("BAA_NOTIFY_URLS")
    .help("comma-separated notification targets: http(s) JSON webhooks, ntfy:<topic> (ntfy.sh) or ntfy+https://host/topic (unset: no notifications)");
pub const EVENTS: Setting = Setting::env("BAA_NOTIFY_EVENTS")
    .default("task.succeeded,task.failed,task.waiting,schedule.skipped,queue.held,queue.released,codexd.crash_loop")
    .help("comma-separated event kinds to send, or `all`");
pub const SECRET: Setting = Setting::env("BAA_NOTIFY_SECRET")
    .help("HMAC-SHA256 key: webhook bodies carry X-Baa-Signature: sha256=<hex of HMAC(secret, \"<X-Baa-Timestamp>.<body>\")>");
pub const SECRET_FILE: Setting = Setting::env("BAA_NOTIFY_SECRET_FILE")
    .help("file holding BAA_NOTIFY_SECRET, mode 0600 or stricter");
pub const CA_FILE: Setting = Setting::env("BAA_NOTIFY_CA_FILE").help(
    "PEM file of CA certificates trusted for https targets instead of the built-in Mozilla roots",
);
pub const INCLUDE_PROMPT: Setting = Setting::env("BAA_NOTIFY_INCLUDE_PROMPT")
    .default("0")
    .help("1: task notifications carry the task's prompt(s) (off: never)");
pub const ACTION_BASE: Setting = Setting::env("BAA_NOTIFY_ACTION_BASE").help(
    "base URL approval buttons call, one the phone can reach (default: the local API's bound URL)",
);

pub const HOLD_GRACE_MS: Setting = Setting::env("BAA_NOTIFY_HOLD_GRACE_MS")
    .default("30000")
    .help("how long the queue must be held because codexd is down or its child not running before queue.held is sent (a child restart takes seconds; logged out is sent at once)");

#[derive(Clone, Default)]
pub struct NotifyConfig {
    pub targets: Vec<Target>,
    /// Kinds sent (a subset of [`KINDS`]).
    pub events: Vec<&'static str>,
    pub secret: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub include_prompt: bool,
    pub action_base: Option<String>,
    /// A hold for codexd down must last this long before it is announced.
    pub hold_grace_ms: u64,
}

/// Never prints the secret.
impl std::fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyConfig")
            .field(
                "targets",
                &self
                    .targets
                    .iter()
                    .map(|t| Target::redact(t.raw()))
                    .collect::<Vec<_>>(),
            )
            .field("events", &self.events)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("ca_file", &self.ca_file)
            .field("include_prompt", &self.include_prompt)
            .field("action_base", &self.action_base)
            .finish()
    }
}

impl NotifyConfig {
    pub fn wants(&self, kind: &str) -> bool {
        !self.targets.is_empty() && self.events.contains(&kind)
    }
}

pub fn resolve(r: &Resolver) -> Result<NotifyConfig> {
    let targets = r
        .list(&URLS)
        .iter()
        .map(|u| Target::parse(u).map_err(|e| r.invalid(&URLS, e.to_string())))
        .collect::<Result<Vec<_>>>()?;
    let listed = r.list(&EVENTS);
    let events = if listed.iter().any(|k| k == "all") {
        KINDS.to_vec()
    } else if listed.is_empty() {
        DEFAULT_KINDS.to_vec()
    } else {
        listed
            .iter()
            .map(|k| {
                KINDS
                    .iter()
                    .find(|known| **known == k.as_str())
                    .copied()
                    .ok_or_else(|| {
                        r.invalid(
                            &EVENTS,
                            format!("unknown event kind {k:?}; known: all, {}", KINDS.join(", ")),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?
    };
    let action_base = r.opt_url(&ACTION_BASE)?;
    Ok(NotifyConfig {
        targets,
        events,
        secret: r.secret(&SECRET, &SECRET_FILE)?,
        ca_file: r.opt_path(&CA_FILE),
        include_prompt: r.bool(&INCLUDE_PROMPT)?,
        action_base,
        hold_grace_ms: r.number(&HOLD_GRACE_MS, 0..=86_400_000)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use baa::common::settings::Flags;
    use std::path::Path;

    fn resolve_env(env: &[(&str, &str)]) -> Result<NotifyConfig> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let table = [
            URLS,
            EVENTS,
            SECRET,
            SECRET_FILE,
            CA_FILE,
            INCLUDE_PROMPT,
            ACTION_BASE,
            HOLD_GRACE_MS,
        ];
        resolve(&Resolver::new(
            &table,
            &Flags::default(),
            &lookup,
            Path::new("/cwd"),
        ))
    }

    #[test]
    fn defaults_filters_and_bad_values() {
        let c = resolve_env(&[]).unwrap();
        assert!(c.targets.is_empty() && !c.wants("task.failed"));
        assert_eq!(c.events, DEFAULT_KINDS);
        let c = resolve_env(&[
            ("BAA_NOTIFY_URLS", "https://h.example/x, ntfy:alerts"),
            ("BAA_NOTIFY_EVENTS", "task.failed"),
            ("BAA_NOTIFY_SECRET", "s3cret"),
        ])
        .unwrap();
        assert_eq!(c.targets.len(), 2);
        assert!(c.wants("task.failed") && !c.wants("task.succeeded"));
        assert!(!format!("{c:?}").contains("s3cret"));
        let all = resolve_env(&[("BAA_NOTIFY_EVENTS", "all")]).unwrap();
        assert_eq!(all.events, KINDS);
        let e = resolve_env(&[("BAA_NOTIFY_EVENTS", "task.done")]).unwrap_err();
        assert!(
            e.to_string().contains("unknown event kind \"task.done\""),
            "{e}"
        );
        let e = resolve_env(&[("BAA_NOTIFY_URLS", "ftp://x")]).unwrap_err();
        assert!(e.to_string().contains("BAA_NOTIFY_URLS"), "{e}");
    }
}
