//! `/v1/exec`: `/bin/sh -c <command>` in its own session, with a scrubbed environment,
//! capped output, a timeout that kills the whole session, the session killed when the shell
//! exits (nothing outlives its request but a child that starts a session of its own) and
//! when the conductor stops, and the shell always reaped. Input parsing and the result shape live here; the run loop in
//! `group.rs`, the slots and live groups in `slots.rs`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::group;
use super::slots::KILL_GRACE;
use super::{opt_str, union, OpError};

pub use super::group::OUTPUT_CAP;
pub use super::slots::{ExecSlots, MAX_CONCURRENT};

pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
pub const MAX_TIMEOUT_MS: u64 = 600_000;

fn empty_result() -> Value {
    json!({
        "stdout": "", "stderr": "", "exitCode": null, "signal": null,
        "durationMs": 0, "timedOut": false, "truncated": false,
    })
}

struct ExecInput {
    command: String,
    cwd: Option<String>,
    timeout_ms: u64,
    env: Vec<(String, String)>,
}

fn parse(body: &Map<String, Value>) -> Result<ExecInput, OpError> {
    let command = match body.get("command") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(OpError::invalid("command must not be empty.")),
        _ => {
            return Err(OpError::invalid(
                "command must be a string run by /bin/sh -c.",
            ))
        }
    };
    let cwd = opt_str(body, &["cwd"])?;
    let timeout_ms = match body.get("timeoutMs").or_else(|| body.get("timeout_ms")) {
        None | Some(Value::Null) => DEFAULT_TIMEOUT_MS,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_TIMEOUT_MS).contains(&n) => n,
            _ => {
                return Err(OpError::invalid(format!(
                    "timeoutMs must be an integer from 1 to {MAX_TIMEOUT_MS}."
                )))
            }
        },
    };
    let mut env = Vec::new();
    match body.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let valid_name = !k.is_empty()
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !k.starts_with(|c: char| c.is_ascii_digit());
                if !valid_name {
                    return Err(OpError::invalid(format!(
                        "env name {k:?} is not a valid variable name."
                    )));
                }
                if k.starts_with("BAA_") || k.starts_with("DYLD_") || k.starts_with("LD_") {
                    return Err(OpError::invalid(format!("env name {k} is reserved.")));
                }
                let Some(v) = v.as_str() else {
                    return Err(OpError::invalid(format!(
                        "env value of {k} must be a string."
                    )));
                };
                env.push((k.clone(), v.to_string()));
            }
        }
        Some(_) => return Err(OpError::invalid("env must be an object of strings.")),
    }
    Ok(ExecInput {
        command,
        cwd,
        timeout_ms,
        env,
    })
}

/// The environment every command starts from: enough to behave like a login tool, and
/// nothing of the daemon's own (no token).
fn base_env() -> Vec<(String, String)> {
    let mut env = vec![(
        "PATH".to_string(),
        std::env::var("PATH").unwrap_or_else(|_| {
            "/usr/local/bin:/opt/homebrew/bin:/usr/bin:/bin:/usr/sbin:/sbin".into()
        }),
    )];
    for k in [
        "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TMPDIR", "SHELL",
    ] {
        if let Ok(v) = std::env::var(k) {
            env.push((k.to_string(), v));
        }
    }
    env
}

/// True for folders macOS guards with TCC (a launchd job touching them blocks on a
/// permission prompt nobody sees).
pub fn tcc_protected(cwd: &Path, home: &Path) -> bool {
    ["Desktop", "Documents", "Downloads"]
        .iter()
        .any(|d| cwd.starts_with(home.join(d)))
}

fn under_launchd() -> bool {
    cfg!(target_os = "macos")
        && std::env::var("XPC_SERVICE_NAME").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Runs the request and returns the union value.
pub fn run(body: &Map<String, Value>, slots: &ExecSlots) -> Value {
    let input = match parse(body) {
        Ok(i) => i,
        Err(e) => return union("exec", echo_raw(body), empty_result(), Some(e)),
    };
    let echo = json!({
        "command": input.command,
        "cwd": input.cwd,
        "timeoutMs": input.timeout_ms,
        // Values may be secrets: same shape as the input, values redacted.
        "env": input.env.iter().map(|(k, _)| (k.clone(), Value::String("<redacted>".into()))).collect::<Map<String, Value>>(),
    });
    let cwd = match &input.cwd {
        None => None,
        Some(c) => {
            let p = Path::new(c);
            if !p.is_absolute() {
                return union(
                    "exec",
                    echo,
                    empty_result(),
                    Some(OpError::invalid("cwd must be an absolute path.")),
                );
            }
            if !p.is_dir() {
                return union(
                    "exec",
                    echo,
                    empty_result(),
                    Some(OpError::new(
                        "CWD_NOT_FOUND",
                        format!("cwd {c} is not an existing directory."),
                    )),
                );
            }
            if under_launchd() {
                if let Ok(home) = std::env::var("HOME") {
                    if tcc_protected(p, Path::new(&home)) {
                        return union("exec", echo, empty_result(), Some(OpError::new(
                            "TCC_PROTECTED_PATH",
                            format!("cwd {c} is inside a macOS privacy-protected folder (Desktop/Documents/Downloads); a launchd job cannot use it without a Full Disk Access grant."),
                        )));
                    }
                }
            }
            Some(p.to_path_buf())
        }
    };
    let mut slot = match slots.take() {
        Ok(s) => s,
        Err(e) => return union("exec", echo, empty_result(), Some(e)),
    };
    let (result, error) = execute(&input, cwd.as_deref(), &mut slot);
    union("exec", echo, result, error)
}

fn echo_raw(body: &Map<String, Value>) -> Value {
    json!({ "command": body.get("command").cloned().unwrap_or(Value::Null), "cwd": body.get("cwd").cloned().unwrap_or(Value::Null) })
}

fn execute(
    input: &ExecInput,
    cwd: Option<&Path>,
    slot: &mut super::slots::Slot,
) -> (Value, Option<OpError>) {
    let started = Instant::now();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&input.command)
        .env_clear()
        .envs(base_env())
        .envs(input.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own session (and so its own process group): children that leave the group with
    // setpgid stay in the session, and the whole session is killed when the exec ends.
    baa::common::proc::set_new_session(&mut cmd);
    if let Some(c) = cwd {
        cmd.current_dir(c);
    }
    let timeout = Duration::from_millis(input.timeout_ms);
    let outcome = match group::run(&mut cmd, timeout, slot) {
        Ok(o) => o,
        Err(e) => {
            return (
                empty_result(),
                Some(OpError::new(
                    "SPAWN_FAILED",
                    format!("Could not start /bin/sh: {e}."),
                )),
            )
        }
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    let (exit_code, signal) = match outcome.status {
        Some(s) => {
            use std::os::unix::process::ExitStatusExt;
            (s.code(), s.signal().map(signal_name))
        }
        None => (None, None),
    };
    let result = json!({
        "stdout": String::from_utf8_lossy(&outcome.stdout),
        "stderr": String::from_utf8_lossy(&outcome.stderr),
        "exitCode": exit_code,
        "signal": signal,
        "durationMs": duration_ms,
        "timedOut": outcome.timed_out,
        "truncated": outcome.truncated,
    });
    let error = if outcome.aborted {
        Some(OpError::new(
            "EXEC_ABORTED",
            "The conductor is stopping; the command's process group was killed.",
        ))
    } else if outcome.timed_out {
        Some(OpError::new(
            "EXEC_TIMEOUT",
            format!(
                "Command timed out after {} ms; its process group was killed (SIGTERM, SIGKILL after {} s).",
                input.timeout_ms,
                KILL_GRACE.as_secs()
            ),
        ))
    } else if exit_code != Some(0) {
        Some(OpError::new(
            "EXEC_FAILED",
            match (exit_code, signal) {
                (Some(c), _) => format!("Command exited with status {c}."),
                (None, Some(s)) => format!("Command was killed by {s}."),
                _ => "Command ended abnormally.".to_string(),
            },
        ))
    } else {
        None
    };
    (result, error)
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGPIPE => "SIGPIPE".into(),
        other => format!("SIG{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn runs_and_reports() {
        let slots = ExecSlots::default();
        let v = run(
            &body(json!({"command": "printf out; printf err >&2; exit 3"})),
            &slots,
        );
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["error"]["code"], "EXEC_FAILED");
        assert_eq!(v["result"]["stdout"], "out");
        assert_eq!(v["result"]["stderr"], "err");
        assert_eq!(v["result"]["exitCode"], 3);
        let v = run(
            &body(json!({"command": "echo $FOO", "env": {"FOO": "bar"}})),
            &slots,
        );
        assert_eq!(
            (v["ok"].clone(), v["result"]["stdout"].clone()),
            (json!(true), json!("bar\n")),
            "{v}"
        );
    }

    #[test]
    fn invalid_inputs_keep_the_result_shape() {
        let slots = ExecSlots::default();
        for bad in [
            json!({"command": ["echo", "hi"]}),
            json!({"command": "x", "timeoutMs": 0}),
            json!({"command": "x", "env": {"BAA_SHARED_TOKEN": "x"}}),
            json!({"command": "x", "cwd": "rel"}),
        ] {
            let v = run(&body(bad.clone()), &slots);
            assert_eq!(v["error"]["code"], "INVALID_INPUT", "{bad} → {v}");
            assert_eq!(v["result"], empty_result(), "{v}");
        }
    }

    #[test]
    fn token_is_not_inherited() {
        // The daemon's own environment never reaches the command.
        std::env::set_var("BAA_SHARED_TOKEN_TEST_PROBE", "leak");
        let v = run(&body(json!({"command": "env"})), &ExecSlots::default());
        assert!(
            !v["result"]["stdout"].as_str().unwrap().contains("leak"),
            "{v}"
        );
    }

    /// The defect: a child that left the shell's process group with `setpgid` outlived its
    /// exec (only the group was killed). It stays in the exec's session, which is killed.
    #[cfg(target_os = "linux")]
    #[test]
    fn setpgid_child_does_not_outlive_its_exec() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("exec-setpgid"));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("child");
        // The child writes its pid and group once it has left the shell's group.
        let command = format!(
            "perl -e 'setpgrp(0,0); open(my $f, \">\", $ARGV[0]) or die; print $f \"$$ \" . getpgrp(); close $f; sleep 30' {p} >/dev/null 2>&1 &
             while [ ! -s {p} ]; do sleep 0.01; done; cat {p}",
            p = out.display()
        );
        let v = run(
            &body(json!({"command": command, "timeoutMs": 10_000})),
            &ExecSlots::default(),
        );
        assert_eq!(v["ok"], true, "{v}");
        let seen = v["result"]["stdout"].as_str().unwrap_or_default();
        let ids: Vec<u32> = seen
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        let [pid, pgid] = ids[..] else {
            panic!("no pid and group in {v}")
        };
        assert_eq!(
            pid, pgid,
            "the child did not leave the shell's group: {seen}"
        );
        let gone = (0..250).any(|_| {
            let gone = !baa::common::proc::pid_alive(pid) || baa::common::proc::is_zombie(pid);
            if !gone {
                std::thread::sleep(Duration::from_millis(20));
            }
            gone
        });
        if !gone {
            let _ = baa::common::proc::kill_pid(pid, libc::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(gone, "the setpgid child {pid} outlived its exec");
    }

    #[test]
    fn tcc_paths() {
        let home = Path::new("/Users/g");
        assert!(tcc_protected(Path::new("/Users/g/Desktop/p"), home));
        assert!(tcc_protected(Path::new("/Users/g/Documents"), home));
        assert!(!tcc_protected(Path::new("/Users/g/code"), home));
        assert!(!tcc_protected(Path::new("/Users/g/DesktopX"), home));
    }
}
