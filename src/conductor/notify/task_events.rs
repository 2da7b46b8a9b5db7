//! Which task changes are announced: a task that just succeeded or failed, and a running
//! turn that waits for an approval (one event per request). Progress writes announce
//! nothing; the event ids are stable, so the outbox drops a repeat of the same fact.

use serde_json::{json, Value};

use baa::common::time::{ms_from_rfc3339, now_ms};

use super::approval::LinkKey;
use super::event::{Action, Event, Priority};
use crate::tasks::model::Task;

/// A terminal status older than this is not announced: the janitor or a merge touching an
/// old task after a restart is not news.
const FRESH_MS: u64 = 3600 * 1000;

/// What links and optional fields the events carry.
pub struct Context<'a> {
    pub links: &'a LinkKey,
    /// Where the approval links point (a base URL the phone can reach).
    pub action_base: &'a str,
    pub include_prompt: bool,
}

/// The event `task` announces now, if any.
pub fn event_for(task: &Task, cx: &Context<'_>) -> Option<Event> {
    match task.status.as_str() {
        "succeeded" | "failed" if fresh(task) => Some(finished(task, cx)),
        "running" => task.waiting.as_ref().and_then(|w| waiting(task, w, cx)),
        _ => None,
    }
}

fn fresh(task: &Task) -> bool {
    task.finished_at
        .as_deref()
        .and_then(ms_from_rfc3339)
        .is_some_and(|at| now_ms().saturating_sub(at) < FRESH_MS)
}

fn task_json(task: &Task, cx: &Context<'_>) -> Value {
    let mut t = json!({"task_id": task.task_id, "title": task.title, "status": task.status});
    if let Some(s) = &task.schedule_id {
        t["schedule_id"] = json!(s);
    }
    if cx.include_prompt {
        if let Some(p) = task.input.get("prompt").filter(|p| !p.is_null()) {
            t["prompt"] = p.clone();
        }
        if let Some(steps) = task.input.get("steps").and_then(Value::as_array) {
            t["prompts"] = steps
                .iter()
                .map(|s| s.get("prompt").cloned().unwrap_or(Value::Null))
                .collect();
        }
    }
    t
}

fn finished(task: &Task, cx: &Context<'_>) -> Event {
    let ok = task.status == "succeeded";
    let mut e = Event::new(
        format!("task:{}:{}:{}", task.task_id, task.status, task.runs.len()),
        if ok { "task.succeeded" } else { "task.failed" },
        format!("Task {}: {}", task.status, cut(&task.title, 120)),
        if ok {
            Priority::Default
        } else {
            Priority::High
        },
    );
    let mut t = task_json(task, cx);
    if ok {
        e.message = task
            .final_message
            .as_deref()
            .map(|m| cut(m, 300))
            .unwrap_or_else(|| "Done.".into());
    } else {
        let err = task.error.clone().unwrap_or(Value::Null);
        e.message = err
            .get("message")
            .and_then(Value::as_str)
            .map(|m| cut(m, 300))
            .unwrap_or_else(|| "The task failed.".into());
        t["error"] = err;
    }
    e.task = Some(t);
    e
}

fn waiting(task: &Task, w: &Value, cx: &Context<'_>) -> Option<Event> {
    let request_id = w.get("request_id")?.as_str()?;
    let what = w
        .get("command")
        .or_else(|| w.get("path"))
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    let kind = w.get("kind").and_then(Value::as_str).unwrap_or("approval");
    let mut e = Event::new(
        format!("task:{}:waiting:{request_id}", task.task_id),
        "task.waiting",
        format!("Approval needed: {}", cut(&task.title, 120)),
        Priority::High,
    );
    e.message = format!("{kind}: {}", cut(&what, 300));
    let exp = LinkKey::expiry(w.get("deadline_at").and_then(Value::as_str));
    e.actions = [("Accept", "accept"), ("Decline", "decline")]
        .into_iter()
        .map(|(label, decision)| Action {
            label: label.into(),
            decision: decision.into(),
            url: cx.links.link(cx.action_base, request_id, decision, exp),
        })
        .collect();
    let mut t = task_json(task, cx);
    let mut waiting = w.clone();
    waiting["answer"] = json!({
        "api": format!("POST /v1/codex/requests/{request_id} with {{\"decision\": \"accept\"|\"decline\"}} and the bearer token"),
        "links_expire_at": exp,
    });
    t["waiting"] = waiting;
    e.task = Some(t);
    Some(e)
}

fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
