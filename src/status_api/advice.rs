//! What the page tells an operator to do: one [`Problem`] per condition, each with the
//! sentence that explains it, the commands to run and the log to open.
//!
//! `aggregate::build` decides *which* conditions hold; this file only words them, so the
//! wording, the commands and the log paths live in one place. Commands are written for the
//! node's own shell: the scripts relative to the checkout, the curl URLs the upstreams this
//! status-api was given (loopback, so the loopback-only codexd routes answer).

use serde_json::{json, Value};

/// How bad a condition is. `Info` is shown but does not make the node `degraded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
        }
    }
}

/// One condition and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub level: Level,
    /// What is wrong, one line (also the text of `warnings`).
    pub text: String,
    /// What to do, a sentence or two.
    pub fix: String,
    /// Commands to run, in order.
    pub commands: Vec<String>,
    /// The log that says why, when its path is known.
    pub log: Option<String>,
}

impl Problem {
    fn new(level: Level, text: String, fix: &str) -> Problem {
        Problem {
            level,
            text,
            fix: fix.to_string(),
            commands: Vec::new(),
            log: None,
        }
    }

    fn run(mut self, command: String) -> Problem {
        self.commands.push(command);
        self
    }

    fn log(mut self, path: Option<String>) -> Problem {
        self.log = path;
        self
    }

    pub fn to_json(&self) -> Value {
        json!({
            "level": self.level.as_str(),
            "text": self.text,
            "fix": self.fix,
            "commands": self.commands,
            "log": self.log,
        })
    }
}

/// Where this node keeps its logs, for the `log` of each problem.
#[derive(Debug, Clone)]
pub struct Site {
    /// The node's logs dir (launchd out/err under `launchd/`, codexd's files under
    /// `codexd/`); None when neither this status-api nor the conductor says.
    pub logs_dir: Option<String>,
    pub label_prefix: String,
    pub conductor_base: String,
    pub codexd_base: String,
}

impl Site {
    /// launchd's stderr file of `service` (`conductor`, `codexd`, `status-api`).
    pub fn err_log(&self, service: &str) -> Option<String> {
        let dir = self.logs_dir.as_deref()?.trim_end_matches('/');
        Some(format!(
            "{dir}/launchd/{}.baa-{service}.err.log",
            self.label_prefix
        ))
    }

    /// The app-server child's stderr as codexd keeps it.
    fn child_log(&self) -> Option<String> {
        let dir = self.logs_dir.as_deref()?.trim_end_matches('/');
        Some(format!("{dir}/codexd/stderr.log"))
    }

    fn resume(&self) -> String {
        format!(
            "curl -s -X POST {}/v1/system/resume -H 'Content-Type: application/json' -d '{{\"requested_by\":\"operator\",\"reason\":\"resumed after checking the status page\"}}'",
            self.conductor_base
        )
    }

    fn restart_child(&self) -> String {
        format!(
            "curl -s -X POST {}/v1/codexd/child/restart",
            self.codexd_base
        )
    }
}

fn status_script(service: &str) -> String {
    format!("scripts/runtime/status-launchd.sh --service {service}")
}

fn restart_script(service: &str) -> String {
    format!("scripts/runtime/restart-launchd.sh --service {service}")
}

/// A daemon does not answer at all (`service` is `conductor` or `codexd`).
pub fn unreachable(site: &Site, service: &str, base: &str, error: &str) -> Problem {
    let fix = "Ask launchd whether it runs (state, pid, last exit code) and read its error log for why it stopped; restart it once the cause is fixed.";
    Problem::new(
        Level::Error,
        format!("{service} unreachable at {base}: {error}"),
        fix,
    )
    .run(status_script(service))
    .run(restart_script(service))
    .log(site.err_log(service))
}

pub fn conductor_partial(site: &Site, error: &str) -> Problem {
    Problem::new(
        Level::Warn,
        format!("conductor answered only in part: {error}"),
        "The conductor is up but a route failed; its error log says why.",
    )
    .log(site.err_log("conductor"))
}

/// A state file that was damaged (healed from its last-good copy) or cannot be used.
fn state_file(line: String) -> Problem {
    Problem::new(
        Level::Warn,
        line,
        "A state file was damaged or something other than a regular file sits at its path. A healed file needs nothing; otherwise remove what is in the way (the message names it), and readiness returns by itself.",
    )
}

/// One of codexd's state-file warnings (its status `snapshot.warnings`).
pub fn codexd_state_file(site: &Site, text: &str) -> Problem {
    state_file(format!("codexd: state file: {text}")).log(site.err_log("codexd"))
}

/// One of the conductor's own `/v1/runtime` warnings.
pub fn conductor_warning(site: &Site, text: &str) -> Problem {
    let line = format!("conductor: {text}");
    if text.contains("BAA_SHARED_TOKEN") {
        return Problem::new(
            Level::Warn,
            line,
            "Host operations (/v1/exec, /v1/files/*) stay off until the conductor has a real token: write a long random one to its token file (mode 600), then restart the conductor.",
        )
        .run("(umask 077; openssl rand -hex 32 > ~/.config/baa-conductor/shared-token.txt)".into())
        .run(restart_script("conductor"));
    }
    if text.starts_with("state file:") {
        return state_file(line).log(site.err_log("conductor"));
    }
    if text.starts_with("system state:") {
        return Problem::new(
            Level::Warn,
            line,
            "The automation state file was unreadable and has been rebuilt. Check the mode under Automation; if work should run, resume it.",
        )
        .run(site.resume())
        .log(site.err_log("conductor"));
    }
    Problem::new(
        Level::Warn,
        line,
        "The conductor's error log has the details.",
    )
    .log(site.err_log("conductor"))
}

/// Automation is not `running`. `drained` is the conductor's flag while draining.
pub fn automation(site: &Site, mode: &str, by: &str, why: &str, drained: bool) -> Problem {
    let fix = match mode {
        "paused" => "No new task starts until automation is resumed (a turn already running goes on). Resume when the reason above no longer holds:",
        "draining" if drained => "Drained: nothing runs, so restarting codexd or the node is safe now. Resume when done:",
        "draining" => "Running tasks finish and nothing new starts; the page says drained when it is safe to restart. Resume to start queued tasks again:",
        _ => "Resume to start queued tasks again:",
    };
    Problem::new(
        Level::Warn,
        format!("automation is {mode} (by {by}: {why})"),
        fix,
    )
    .run(site.resume())
}

/// codexd answers but its app-server child is not `running`.
pub fn child_not_running(
    site: &Site,
    status: &str,
    restarts: &str,
    last_error: Option<&str>,
) -> Problem {
    let why = last_error.map(|e| format!(": {e}")).unwrap_or_default();
    match status {
        "crash_loop" => Problem::new(
            Level::Error,
            format!("codex app-server child is in a crash loop after {restarts} restarts{why}"),
            "codexd stopped restarting it. Read the child's stderr for the cause, fix it, then restart the child:",
        )
        .run(site.restart_child())
        .log(site.child_log()),
        "starting" | "restarting" | "detached" => Problem::new(
            Level::Warn,
            format!("codex app-server child is {status}{why}"),
            "codexd brings it up by itself; if this stays, read the child's stderr.",
        )
        .log(site.child_log()),
        "external" => Problem::new(
            Level::Warn,
            "codexd runs no app-server child (server strategy external): sessions and turns answer 503".into(),
            "Set BAA_CODEXD_SERVER_STRATEGY to spawn (the default) in codexd's plist and restart codexd.",
        )
        .run(restart_script("codexd")),
        _ => Problem::new(
            Level::Error,
            format!("codex app-server child is {status}{why}"),
            "Read the child's stderr for the cause, then restart the child:",
        )
        .run(site.restart_child())
        .log(site.child_log()),
    }
}

pub fn no_child_status(site: &Site) -> Problem {
    Problem::new(
        Level::Warn,
        "codexd reports no child status".into(),
        "codexd answered without its child's state; its error log says why.",
    )
    .run(status_script("codexd"))
    .log(site.err_log("codexd"))
}

/// The child runs again, but it failed before.
/// One of codexd's own status `warnings` (its state file damaged or unusable).
pub fn codexd_warning(site: &Site, text: &str) -> Problem {
    Problem::new(
        Level::Warn,
        format!("codexd: {text}"),
        "codexd heals its state file by itself and says here what it found; while it cannot write the file its /readyz is 503. If this repeats, its error log has the cause (disk, permissions, something else writing its state dir); the warning clears at codexd's next start.",
    )
    .log(site.err_log("codexd"))
}

pub fn child_last_error(site: &Site, error: &str) -> Problem {
    Problem::new(
        Level::Warn,
        format!("codex app-server child last error: {error}"),
        "The child runs again; if the error repeats, its stderr has the cause.",
    )
    .log(site.child_log())
}

pub fn rate_limited(until: &str) -> Problem {
    Problem::new(
        Level::Warn,
        format!("codex rate limit used up until {until}: new task turns wait"),
        "Nothing to do: queued task turns start by themselves after that time.",
    )
}

pub fn logged_out() -> Problem {
    Problem::new(
        Level::Error,
        "codex is logged out: new task turns wait for `codex login`".into(),
        "Log codex in as the user codexd runs as; waiting task turns then start by themselves.",
    )
    .run("codex login".into())
}

/// A running task's turn waits for an operator to answer an approval. The answer is as
/// strong as exec, so it takes the shared token (read from its file, never printed).
pub fn approval_waiting(
    site: &Site,
    title: &str,
    kind: &str,
    what: &str,
    request_id: &str,
    deadline: Option<&str>,
) -> Problem {
    let by = deadline.map(|d| format!(" by {d}")).unwrap_or_default();
    let p = Problem::new(
        Level::Warn,
        format!("task \"{title}\" waits for an approval ({kind}): {what}"),
        &format!(
            "Answer it{by}, or codexd gives its default answer. Accept (or send \"decline\"):"
        ),
    );
    // The id goes into a shell command: only one that cannot break out of it.
    let safe = !request_id.is_empty()
        && request_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !safe {
        return p.run(format!(
            "curl -s {}/v1/codex/requests -H \"Authorization: Bearer $(cat ~/.config/baa-conductor/shared-token.txt)\"",
            site.conductor_base
        ));
    }
    p.run(format!(
        "curl -s -X POST {}/v1/codex/requests/{request_id} -H \"Authorization: Bearer $(cat ~/.config/baa-conductor/shared-token.txt)\" -H 'Content-Type: application/json' -d '{{\"decision\":\"accept\"}}'",
        site.conductor_base
    ))
}

/// This conductor does not hold the lease.
pub fn standby(site: &Site, holder: &str) -> Problem {
    Problem::new(
        Level::Info,
        format!("this conductor is a standby: the lease is held by {holder}, so tasks run there, not here"),
        "Nothing to do while the leader is healthy; this node takes over when the leader's lease expires. The controllers and their leases:",
    )
    .run(format!("curl -s {}/v1/controllers", site.conductor_base))
}

/// The leader cannot renew its lease.
pub fn lease_degraded(site: &Site, detail: &str) -> Problem {
    Problem::new(
        Level::Warn,
        format!("lease renewals are failing: {detail}"),
        "The conductor cannot renew its lease in the state dir (disk full, permissions?); its error log says why. No new task starts until it can.",
    )
    .log(site.err_log("conductor"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(logs: Option<&str>) -> Site {
        Site {
            logs_dir: logs.map(str::to_string),
            label_prefix: "so.makefile".into(),
            conductor_base: "http://127.0.0.1:4317".into(),
            codexd_base: "http://127.0.0.1:4319".into(),
        }
    }

    #[test]
    fn codexd_down_names_the_script_and_the_launchd_log() {
        let p = unreachable(
            &site(Some("/logs/")),
            "codexd",
            "http://127.0.0.1:4319",
            "refused",
        );
        assert_eq!(
            p.text,
            "codexd unreachable at http://127.0.0.1:4319: refused"
        );
        assert_eq!(
            p.commands,
            [
                "scripts/runtime/status-launchd.sh --service codexd",
                "scripts/runtime/restart-launchd.sh --service codexd"
            ]
        );
        assert_eq!(
            p.log.as_deref(),
            Some("/logs/launchd/so.makefile.baa-codexd.err.log")
        );
        assert_eq!(unreachable(&site(None), "codexd", "u", "e").log, None);
    }

    #[test]
    fn crash_loop_says_how_to_restart_the_child() {
        let p = child_not_running(&site(Some("/l")), "crash_loop", "10", Some("exit 1"));
        assert_eq!(p.level, Level::Error);
        assert_eq!(
            p.commands,
            ["curl -s -X POST http://127.0.0.1:4319/v1/codexd/child/restart"]
        );
        assert_eq!(p.log.as_deref(), Some("/l/codexd/stderr.log"));
        assert!(
            p.text.contains("crash loop after 10 restarts: exit 1"),
            "{p:?}"
        );
    }

    #[test]
    fn paused_says_how_to_resume() {
        let p = automation(&site(None), "paused", "alice", "deploy", false);
        assert_eq!(p.text, "automation is paused (by alice: deploy)");
        assert!(
            p.commands[0].starts_with("curl -s -X POST http://127.0.0.1:4317/v1/system/resume"),
            "{p:?}"
        );
        let d = automation(&site(None), "draining", "a", "b", true);
        assert!(d.fix.starts_with("Drained"), "{d:?}");
    }

    #[test]
    fn a_waiting_approval_says_how_to_answer_it() {
        let p = approval_waiting(&site(None), "fix", "command", "ls", "req_1", Some("t"));
        assert_eq!(p.text, "task \"fix\" waits for an approval (command): ls");
        assert!(p.fix.contains("Answer it by t"), "{p:?}");
        assert!(
            p.commands[0].starts_with(
                "curl -s -X POST http://127.0.0.1:4317/v1/codex/requests/req_1 -H \"Authorization: Bearer $(cat "
            ),
            "{p:?}"
        );
        let odd = approval_waiting(&site(None), "t", "command", "ls", "x;rm -rf ~", None);
        assert!(!odd.commands[0].contains("rm -rf"), "{odd:?}");
    }

    #[test]
    fn conductor_warnings_get_their_own_fix() {
        let s = site(Some("/l"));
        let token = conductor_warning(&s, "BAA_SHARED_TOKEN is still the placeholder value; …");
        assert!(
            token
                .commands
                .iter()
                .any(|c| c.contains("shared-token.txt")),
            "{token:?}"
        );
        let state = conductor_warning(&s, "system state: the file is not JSON; restored.");
        assert!(state.commands[0].contains("/v1/system/resume"), "{state:?}");
        let other = conductor_warning(&s, "something else");
        assert_eq!(
            other.log.as_deref(),
            Some("/l/launchd/so.makefile.baa-conductor.err.log")
        );
    }
}
