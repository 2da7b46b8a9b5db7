//! The run's codexd session: its own (a resumed run), the task's (a retry continues the
//! thread), or a new one. The session and thread are recorded in the run with the first
//! step's intent (`send`), one durable write before the turn goes out, and in the task
//! once that turn is accepted.

use std::time::Instant;

use serde_json::{json, Value};

use super::super::codexd::CallError;
use super::super::model::Task;
use super::super::replies::SessionReply;
use super::book::RunBook;
use super::timings::Phase;
use super::{failed, End};

/// A session known to run nothing: its last turn, for the first step's intent.
pub struct Idle {
    pub last_turn_id: Option<String>,
}

/// Makes sure the run has a session; `Some` when it was found or made just now and runs
/// nothing (the first send then needs no poll of it).
pub fn ensure(book: &mut RunBook, task: &Task) -> Result<Option<Idle>, End> {
    let t0 = Instant::now();
    let out = ensure_inner(book, task);
    book.timings.add(Phase::Session, t0);
    out
}

fn ensure_inner(book: &mut RunBook, task: &Task) -> Result<Option<Idle>, End> {
    if let Some(sid) = book.run.session_id.clone() {
        // A resumed run whose task never learned its session (the conductor stopped
        // between the intent and the 202): the task learns it now.
        if task.session_id.as_deref() != Some(sid.as_str()) {
            record_in_task(book);
        }
        return Ok(None);
    }
    if let Some(cwd) = &book.spec.cwd {
        if !std::path::Path::new(cwd).is_dir() {
            return Err(failed(
                "cwd_missing",
                format!("cwd {cwd} is not an existing directory"),
                false,
            ));
        }
    }
    let mut session = None;
    if let Some(sid) = &task.session_id {
        match book.cx.session(sid) {
            Ok(s) if !s.is_archived() => session = Some(s),
            Ok(_) | Err(CallError::Http { status: 404, .. }) => {}
            Err(e) => return Err(failed("codexd_unavailable", e.to_string(), true)),
        }
    }
    if session.is_none() {
        if let Some(thread) = &task.thread_id {
            match create(book, Some(thread)) {
                Ok(s) => {
                    book.log(
                        "info",
                        &format!("thread {thread} adopted by a new codexd session"),
                        None,
                    );
                    session = Some(s);
                }
                Err(End::Failed {
                    retryable: false,
                    message,
                    ..
                }) => {
                    book.log("warn", &format!("the task's thread {thread} cannot be continued ({message}); continuing in a new thread without the earlier steps' context"), None);
                }
                Err(end) => return Err(end),
            }
        }
    }
    let session = match session {
        Some(s) => s,
        None => create(book, None)?,
    };
    if session.session_id.is_empty() {
        return Err(failed(
            "codexd_invalid_response",
            "codexd created a session without a sessionId",
            true,
        ));
    }
    let sid = session.session_id.clone();
    let thread = session.thread_id.clone();
    book.run.session_id = Some(sid.clone());
    book.run.thread_id = thread.clone();
    book.log(
        "info",
        &format!(
            "codexd session {sid} (thread {})",
            thread.as_deref().unwrap_or("?")
        ),
        Some(json!({"session_id": sid, "thread_id": thread})),
    );
    Ok(session.current_turn_id.is_none().then_some(Idle {
        last_turn_id: session.last_turn_id,
    }))
}

/// The run's session and thread in the task, so a retry continues the thread; written only
/// when the task does not name them yet (the task is pushed to the bridge either way).
pub fn record_in_task(book: &mut RunBook) {
    let (sid, thread, run_id) = (
        book.run.session_id.clone(),
        book.run.thread_id.clone(),
        book.run.run_id.clone(),
    );
    book.update_task(|t| {
        if (&t.session_id, &t.thread_id, t.current_run_id.as_deref())
            == (&sid, &thread, Some(run_id.as_str()))
        {
            return false;
        }
        t.session_id = sid;
        t.thread_id = thread;
        t.current_run_id = Some(run_id);
        true
    });
}

fn body(book: &RunBook, thread_id: Option<&str>) -> Value {
    let mut b = json!({
        "purpose": "worker",
        "metadata": {"task_id": book.task_id, "run_id": book.run.run_id, "source": "baa-conductor"},
    });
    let s = &book.spec;
    for (k, v) in [
        ("cwd", &s.cwd),
        ("model", &s.model),
        ("sandbox", &s.sandbox),
        ("approvalPolicy", &s.approval_policy),
    ] {
        if let Some(v) = v {
            b[k] = json!(v);
        }
    }
    if let Some(t) = thread_id {
        b["threadId"] = json!(t);
    }
    b
}

fn create(book: &RunBook, thread_id: Option<&str>) -> Result<SessionReply, End> {
    book.cx
        .create_session(&body(book, thread_id))
        .map_err(|e| match &e {
            CallError::Http {
                status,
                code,
                message,
            } if e.is_permanent() => failed(
                code,
                format!("codexd refused the session ({status}): {message}"),
                false,
            ),
            _ => failed(
                "codexd_unavailable",
                format!("cannot create the codexd session: {e}"),
                true,
            ),
        })
}
