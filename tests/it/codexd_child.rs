//! codexd's child supervision against the built-in stub: the order of an approval's answer
//! and the child's reaction on the event stream, stdout lines over codexd's line limit,
//! and the umask the child runs with.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::codexd::*;
use crate::support::daemon::Daemon;
use crate::support::http::post;
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);
/// codexd's line limit (`child::MAX_LINE`, 32 MiB) plus some.
const OVER_LIMIT: usize = 32 * 1024 * 1024 + 100_000;
/// Writing, reading and cutting two 32 MiB lines in debug builds takes seconds alone and
/// several times that on a loaded 2-core machine; this only bounds a failure.
const HUGE_T: Duration = Duration::from_secs(120);

fn position(seen: &[Value], what: &str, pred: impl Fn(&Value) -> bool) -> usize {
    seen.iter().position(pred).unwrap_or_else(|| {
        panic!(
            "no {what} among {:?}",
            seen.iter().map(|e| e["type"].clone()).collect::<Vec<_>>()
        )
    })
}

/// The flake `no event matching declined commandExecution within 30s` in
/// `real_codex_approvals_are_answered_over_http_and_by_timeout` was codexd's: it sent the
/// answer before it emitted `request.timeout`, so a quick child's reaction could come
/// first on the stream. The event that says a request was answered must precede whatever
/// the child does with the answer.
#[test]
fn approval_answer_event_precedes_the_childs_reaction_to_it() {
    let tmp = TempDir::new("codexd-answer-order");
    let d = with_stub(&Dirs::under(&tmp.child("root")), "normal").start();
    wait_child_running(&d, T);
    let mut ws = events_ws(&d, None);
    let resolved = |e: &Value| is_type(e, "serverRequest/resolved");

    // Answered over HTTP.
    let s = create_session(&d, json!({"approvalTimeoutMs": 60000}));
    let sid = s["sessionId"].as_str().unwrap();
    turn(&d, sid, "approval please");
    let seen = read_until(&mut ws, T, "request.pending", |e| {
        is_type(e, "request.pending")
    });
    let rid = seen.last().unwrap()["detail"]["requestId"]
        .as_str()
        .unwrap()
        .to_string();
    post(
        &d.url(&format!("/v1/codexd/requests/{rid}")),
        &json!({"decision": "accept"}),
    )
    .expect(200);
    let seen = read_until(&mut ws, T, "turn.completed", |e| {
        is_type(e, "turn.completed")
    });
    let answered = position(&seen, "request.answered", |e| {
        is_type(e, "request.answered")
    });
    assert!(
        answered < position(&seen, "serverRequest/resolved", resolved),
        "the child's reaction came before request.answered: {:?}",
        seen.iter().map(|e| e["type"].clone()).collect::<Vec<_>>()
    );

    // Answered by the timeout, several times (the race needs a scheduler's bad moment).
    for _ in 0..5 {
        let s = create_session(&d, json!({"approvalTimeoutMs": 100}));
        turn(&d, s["sessionId"].as_str().unwrap(), "approval please");
        let seen = read_until(&mut ws, T, "turn.completed", |e| {
            is_type(e, "turn.completed")
        });
        let timeout = position(&seen, "request.timeout", |e| is_type(e, "request.timeout"));
        assert!(
            timeout < position(&seen, "serverRequest/resolved", resolved),
            "the child's reaction came before request.timeout: {:?}",
            seen.iter().map(|e| e["type"].clone()).collect::<Vec<_>>()
        );
    }
}

fn line_too_long(d: &Daemon, ws: &mut crate::support::ws::WsClient) -> Value {
    let seen = read_until(ws, HUGE_T, "child.line_too_long", |e| {
        is_type(e, "child.line_too_long")
    });
    let e = seen.last().unwrap().clone();
    assert_eq!(e["level"], "error", "{e}");
    assert!(
        e["detail"]["bytes"].as_u64().unwrap_or(0) > OVER_LIMIT as u64,
        "{e}\nlog:\n{}",
        d.log()
    );
    e
}

/// A child printing a line over the limit must neither grow codexd's memory without bound
/// nor stall anything silently: the line is cut, recorded as an error event, and the turn
/// goes on; an oversized request is still answered (with an error), so its turn does not
/// wait for ever.
#[test]
fn child_lines_over_the_limit_are_cut_recorded_and_never_a_silent_stall() {
    let tmp = TempDir::new("codexd-huge-lines");
    let d = with_stub(&Dirs::under(&tmp.child("root")), "normal").start();
    wait_child_running(&d, T);
    let pid = child_pid(&d);
    let mut ws = events_ws(&d, None);
    let s = create_session(&d, json!({"approvalTimeoutMs": 60000}));
    let sid = s["sessionId"].as_str().unwrap();

    let tid = turn(&d, sid, &format!("huge:{OVER_LIMIT}"));
    let e = line_too_long(&d, &mut ws);
    assert_eq!(e["detail"]["message"], "other", "{e}");
    let s = wait_turn_done(&d, sid, &tid, HUGE_T);
    assert_eq!(
        s["lastTurn"]["finalMessage"],
        format!("sent a {OVER_LIMIT}-byte line"),
        "{s}"
    );

    let tid = turn(&d, sid, &format!("huge-request:{OVER_LIMIT}"));
    let e = line_too_long(&d, &mut ws);
    assert_eq!(
        (&e["detail"]["message"], &e["detail"]["answered"]),
        (&json!("request"), &json!(true)),
        "{e}"
    );
    let s = wait_turn_done(&d, sid, &tid, HUGE_T);
    let msg = s["lastTurn"]["finalMessage"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("answered with error: codexd cannot read"),
        "{s}"
    );
    assert_eq!(child_pid(&d), pid, "the child was restarted");
}

/// codex's child writes state and logs holding prompts and answers: umask 077.
#[test]
fn child_runs_with_umask_077() {
    let tmp = TempDir::new("codexd-child-umask");
    let work = tmp.child("work");
    std::fs::create_dir_all(&work).unwrap();
    let d = with_stub(&Dirs::under(&tmp.child("root")), "normal")
        .env("BAA_CODEXD_SERVER_CWD", &work)
        .start();
    wait_child_running(&d, T);
    let s = create_session(&d, json!({}));
    let sid = s["sessionId"].as_str().unwrap();
    let tid = turn(&d, sid, "write-file");
    let s = wait_turn_done(&d, sid, &tid, T);
    assert_eq!(
        s["lastTurn"]["finalMessage"], "wrote stub-written-file",
        "{s}"
    );
    let mode = std::fs::metadata(work.join("stub-written-file"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode & 0o077, 0, "file mode {mode:o}");
}
