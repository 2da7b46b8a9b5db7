//! What the conductor announces: a kind, a title, a priority and the JSON body parts.

use serde_json::{json, Value};

/// The kinds of notification (`BAA_NOTIFY_EVENTS` names them).
pub const KINDS: &[&str] = &[
    "task.succeeded",
    "task.failed",
    "task.waiting",
    "schedule.skipped",
    "schedule.caught_up",
    "queue.held",
    "queue.released",
    "codexd.crash_loop",
];

/// The default filter: everything but a schedule catching up (that queues a task, whose
/// outcome is announced anyway).
pub const DEFAULT_KINDS: &[&str] = &[
    "task.succeeded",
    "task.failed",
    "task.waiting",
    "schedule.skipped",
    "queue.held",
    "queue.released",
    "codexd.crash_loop",
];

/// How urgent (ntfy: 3 and 4 of its 1-5 scale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Default,
    High,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Default => "default",
            Priority::High => "high",
        }
    }
}

/// An accept/decline button of an approval notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub label: String,
    /// The decision it sends (`accept`, `decline`).
    pub decision: String,
    /// The signed answer URL (POST, no body).
    pub url: String,
}

/// One announcement. `id` is stable for the same fact (a task's terminal status, one
/// approval request), so the outbox drops a repeat of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub kind: &'static str,
    pub title: String,
    pub message: String,
    pub priority: Priority,
    /// `{task_id, title, status, error?, waiting?}` for task events.
    pub task: Option<Value>,
    pub actions: Vec<Action>,
    /// Free-form detail for the other kinds (schedule, queue, codexd).
    pub detail: Option<Value>,
}

impl Event {
    pub fn new(id: String, kind: &'static str, title: String, priority: Priority) -> Event {
        Event {
            id,
            kind,
            title,
            message: String::new(),
            priority,
            task: None,
            actions: Vec::new(),
            detail: None,
        }
    }

    /// The JSON body webhooks get (the schema is in docs/tasks.md#notifications).
    pub fn body(&self, at: &str, node: &str) -> Value {
        let mut b = json!({
            "id": self.id,
            "kind": self.kind,
            "at": at,
            "title": self.title,
            "message": self.message,
            "priority": self.priority.as_str(),
            "node": node,
        });
        if let Some(t) = &self.task {
            b["task"] = t.clone();
        }
        if let Some(d) = &self.detail {
            b["detail"] = d.clone();
        }
        if !self.actions.is_empty() {
            b["actions"] = self
                .actions
                .iter()
                .map(|a| json!({"label": a.label, "decision": a.decision, "method": "POST", "url": a.url}))
                .collect();
        }
        b
    }

    /// ntfy tags (emoji short codes on the phone).
    pub fn tags(&self) -> &'static str {
        match self.kind {
            "task.succeeded" => "white_check_mark",
            "task.failed" => "x",
            "task.waiting" => "raising_hand",
            "codexd.crash_loop" => "rotating_light",
            "queue.held" => "pause_button",
            "queue.released" => "arrow_forward",
            _ => "calendar",
        }
    }
}
