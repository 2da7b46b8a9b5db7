//! `baa-codexd smoke`: runs the daemon against the built-in stub child for
//! `BAA_CODEXD_SMOKE_LIFETIME_MS`, drives one session and one turn over HTTP, stops it, and
//! checks that the dirs, the four state files and the event log were written.
//!
//! It uses `<state_dir>/smoke` and `<logs_dir>/smoke`, never the live daemon's files (a
//! smoke run must not touch the live registry nor mistake the live child for a stale one).

use std::fmt;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use baa::common::cli;
use baa::common::client::local_agent;
use baa::common::netaddr::ListenUrl;
use baa::common::signals::StopFlag;

use crate::config::{Config, Strategy};
use crate::state;

pub fn run(mut cfg: Config) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            cli::error_line("smoke", &format!("cannot find my own executable: {e}"));
            return 1;
        }
    };
    cfg.state_dir = cfg.state_dir.join("smoke");
    cfg.logs_dir = cfg.logs_dir.join("smoke");
    let _ = std::fs::remove_dir_all(&cfg.state_dir);
    let _ = std::fs::remove_dir_all(&cfg.logs_dir);
    cfg.strategy = Strategy::Spawn;
    cfg.server_command = exe.display().to_string();
    cfg.server_args = vec!["__stub-app-server".into()];
    cfg.server_cwd = None;
    cfg.listen = ListenUrl {
        host: "127.0.0.1".into(),
        port: 0,
    };
    cfg.local_api_base = "http://127.0.0.1:0".into();
    let lifetime = Duration::from_millis(cfg.smoke_lifetime_ms);
    let (state_dir, logs_dir) = (cfg.state_dir.clone(), cfg.logs_dir.clone());

    let stop = StopFlag::new();
    let running = match crate::serve::start(cfg, stop.clone()) {
        Ok(r) => r,
        Err(e) => {
            cli::error_line("smoke", &format!("FAIL daemon did not start: {e}"));
            return 1;
        }
    };
    let started = Instant::now();
    let mut failures: Vec<String> = Vec::new();
    let turn = drive(&running.base);
    match &turn {
        Ok(msg) => say(&format!("smoke: ok turn completed: {msg}")),
        Err(e) => failures.push(format!("turn: {e}")),
    }
    let left = lifetime.saturating_sub(started.elapsed());
    stop.sleep(left);
    running.shutdown();

    for dir in [&state_dir, &logs_dir] {
        if !dir.is_dir() {
            failures.push(format!("missing dir {}", dir.display()));
        }
    }
    for name in state::ALL_FILES {
        let p = state_dir.join(name);
        match std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        {
            Some(_) => say(&format!("smoke: ok {}", p.display())),
            None => failures.push(format!("{} missing or not JSON", p.display())),
        }
    }
    let events = logs_dir.join("events.jsonl");
    match baa::common::jsonl::JsonlLog::read_all(&events) {
        Ok(v) if !v.is_empty() => say(&format!(
            "smoke: ok {} ({} events)",
            events.display(),
            v.len()
        )),
        _ => failures.push(format!("{} missing or empty", events.display())),
    }
    if failures.is_empty() {
        say("smoke: PASS");
        0
    } else {
        for f in &failures {
            say(&format!("smoke: FAIL {f}"));
        }
        1
    }
}

/// One line of the report on stdout; a closed stdout (`| head`) is not a panic.
fn say(line: &str) {
    let _ = cli::write_stdout(&format!("{line}\n"));
}

/// Why the smoke turn did not complete.
#[derive(Debug)]
enum DriveError {
    /// A request failed: the method and path, and the client's error or the reply.
    Request {
        what: String,
        why: String,
    },
    /// Polling the session failed (the client's error).
    Poll(String),
    NotCompleted {
        session: Value,
    },
}

impl fmt::Display for DriveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriveError::Request { what, why } => write!(f, "{what}: {why}"),
            DriveError::Poll(why) => f.write_str(why),
            DriveError::NotCompleted { session } => {
                write!(f, "turn did not complete: {session}")
            }
        }
    }
}

/// Creates a session, runs one turn and waits (bounded) for its final message.
fn drive(base: &str) -> Result<String, DriveError> {
    let agent = local_agent(Duration::from_secs(2), Duration::from_secs(10));
    let failed = |what: String| {
        move |why: &dyn fmt::Display| DriveError::Request {
            what: what.clone(),
            why: why.to_string(),
        }
    };
    let post = |path: &str, body: Value| -> Result<Value, DriveError> {
        let fail = failed(format!("POST {path}"));
        let mut r = agent
            .post(&format!("{base}{path}"))
            .send_json(&body)
            .map_err(|e| fail(&e))?;
        let v: Value = r.body_mut().read_json().map_err(|e| fail(&e))?;
        if v["ok"] != json!(true) {
            return Err(fail(&v));
        }
        Ok(v)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let created = loop {
        match post("/v1/codexd/sessions", json!({"purpose": "worker"})) {
            Ok(v) => break v,
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let sid = created["data"]["session"]["sessionId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    post(
        "/v1/codexd/turn",
        json!({"sessionId": sid, "input": "smoke"}),
    )?;
    let fail = |e: &dyn fmt::Display| DriveError::Poll(e.to_string());
    loop {
        let mut r = agent
            .get(&format!("{base}/v1/codexd/sessions/{sid}"))
            .call()
            .map_err(|e| fail(&e))?;
        let v: Value = r.body_mut().read_json().map_err(|e| fail(&e))?;
        let last = &v["data"]["session"]["lastTurn"];
        if last["status"] == "completed" {
            return Ok(last["finalMessage"]
                .as_str()
                .unwrap_or_default()
                .to_string());
        }
        if Instant::now() > deadline {
            return Err(DriveError::NotCompleted {
                session: v["data"]["session"].clone(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
