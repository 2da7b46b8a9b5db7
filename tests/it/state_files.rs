//! The state-file rule across daemons (common::store): whatever sits at a state path — a
//! FIFO, a directory — a daemon never blocks on it, answers its probes and stops on SIGTERM.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::codexd::{create_session, session, start_running, turn, with_stub, Dirs};
use crate::support::conductor;
use crate::support::http::{get, post};
use crate::support::tmp::TempDir;

/// Far below the defects' hangs (forever), generous for a loaded machine.
const PROMPT: Duration = Duration::from_secs(10);

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );
}

/// The defect: codexd bound its port, then blocked opening the FIFO for reading, never
/// answered and ignored SIGTERM. Every codexd state file is a FIFO here, the legacy
/// registry that the start migrates included.
#[test]
fn fifo_at_session_registry_hung_codexd() {
    let tmp = TempDir::new("codexd-fifos");
    let dirs = Dirs::under(&tmp.child("root"));
    std::fs::create_dir_all(dirs.state.join("sessions/hot")).unwrap();
    for name in [
        "session-registry.json",
        "identity.json",
        "daemon-state.json",
        "recent-events.json",
        "sessions/hot/s-fifo.json",
    ] {
        mkfifo(&dirs.state.join(name));
    }
    let t = Instant::now();
    let mut d = with_stub(&dirs, "normal").start();
    let health = get(&d.url("/healthz"));
    assert!(
        t.elapsed() < PROMPT,
        "start and /healthz took {:?}; log:\n{}",
        t.elapsed(),
        d.log()
    );
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(
        d.log().contains("session-registry.json is a FIFO"),
        "the log names the FIFO:\n{}",
        d.log()
    );
    let warnings = get(&d.url("/v1/codexd/status")).expect(200)["data"]["warnings"].to_string();
    assert!(
        warnings.contains("session-registry.json is a FIFO"),
        "status warnings name it: {warnings}"
    );
    let t = Instant::now();
    let status = d.terminate(PROMPT);
    assert!(
        status.success() && t.elapsed() < PROMPT,
        "SIGTERM: {status:?} after {:?}; log:\n{}",
        t.elapsed(),
        d.log()
    );
}

/// A record damaged in place while the conductor was down (`echo {} >`, here in a task
/// file) comes back from its last-good copy at the next start, and `warnings` says so.
#[test]
fn garbage_in_a_task_file_is_healed_from_its_copy() {
    let dir = TempDir::new("task-heal");
    let mut c = conductor::spawn(&dir, "mini-main", "primary").start();
    // Paused, so the task stays queued (no codexd here).
    post(&c.url("/v1/system/pause"), &json!({})).expect(200);
    let t = post(
        &c.url("/v1/tasks"),
        &json!({"title": "keep me", "prompt": "p"}),
    )
    .expect(201)["data"]
        .clone();
    let id = t["task"]["task_id"].as_str().unwrap().to_string();
    assert!(c.terminate(Duration::from_secs(15)).success());
    std::fs::write(dir.join(&format!("state/tasks/{id}.json")), b"{}\n").unwrap();
    let c = conductor::spawn(&dir, "mini-main", "primary").start();
    let got = get(&c.url(&format!("/v1/tasks/{id}"))).expect(200)["data"].clone();
    assert_eq!(got["task"]["title"], "keep me", "{got}");
    let w = get(&c.url("/v1/runtime")).expect(200)["data"]["warnings"].to_string();
    assert!(
        w.contains(&format!("{id}.json is corrupt"))
            && w.contains("restored from its last good copy"),
        "{w}"
    );
}

/// The defect: a truncated or garbage session record was moved aside and the session was
/// gone, with no last-good copy. Now each hot session file has one: damage in place while
/// codexd is down (truncation, `echo {} >`) and the session comes back as it was.
#[test]
fn truncated_session_file_lost_the_session_with_no_last_good_copy() {
    let tmp = TempDir::new("codexd-session-heal");
    let dirs = Dirs::under(&tmp.child("root"));
    let mut d = start_running(with_stub(&dirs, "normal"));
    let mut ids = Vec::new();
    for _ in 0..2 {
        let sid = create_session(&d, json!({"metadata": {"keep": "me"}}))["sessionId"]
            .as_str()
            .unwrap()
            .to_string();
        ids.push(sid);
    }
    let tid = turn(&d, &ids[0], "before the damage");
    assert!(
        d.terminate(PROMPT).success(),
        "codexd exit; log:\n{}",
        d.log()
    );

    let hot = |sid: &str| dirs.state.join(format!("sessions/hot/{sid}.json"));
    std::fs::OpenOptions::new()
        .write(true)
        .open(hot(&ids[0]))
        .unwrap()
        .set_len(20)
        .unwrap();
    std::fs::write(hot(&ids[1]), b"{}\n").unwrap();

    let d = start_running(with_stub(&dirs, "normal"));
    let s = session(&d, &ids[0]);
    assert_eq!(
        (&s["metadata"], &s["lastTurnId"]),
        (&json!({"keep": "me"}), &json!(tid)),
        "{s:#}"
    );
    assert_eq!(session(&d, &ids[1])["metadata"], json!({"keep": "me"}));
    let warnings = get(&d.url("/v1/codexd/status")).expect(200)["data"]["warnings"].to_string();
    assert!(
        warnings.contains(&format!("{}.json is corrupt", ids[0]))
            && warnings.contains("restored from its last good copy"),
        "{warnings}"
    );
}
