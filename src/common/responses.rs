//! The OpenAI Responses-API stream a local stand-in model sends to `codex`: the minimal
//! contract codex 0.169 was seen to accept (docs/codex-app-server-notes.md). codexd's demo
//! model and the tests' mock model both stream through these functions, so the shapes live
//! in one place; what to answer is each one's own business.

use std::io;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::http::StreamWriter;

/// Concatenated text of the last `role: "user"` message of a `/responses` request body.
/// Codex also sends user-role messages of its own (environment context, AGENTS.md), but
/// always before the prompt of the turn. Anything malformed reads as "".
pub fn last_user_text(body: &Value) -> String {
    let items = body.get("input").and_then(Value::as_array);
    let Some(msg) = items
        .into_iter()
        .flatten()
        .rev()
        .find(|i| i.get("role").and_then(Value::as_str) == Some("user"))
    else {
        return String::new();
    };
    text_of(msg.get("content"))
}

/// A string, or the joined `text` of an array of content parts (the API allows both).
pub fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// The model the request names, or a stand-in; echoed in the response events.
pub fn model_of(body: &Value) -> String {
    body.get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model")
        .to_string()
}

/// Splits a reply into about three word-aligned deltas, so clients see real streaming.
pub fn split_for_deltas(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    let per = words.len().div_ceil(3).max(1);
    words.chunks(per).map(|c| c.concat()).collect()
}

/// One event, named after its `type` as the API does.
pub fn send(w: &mut StreamWriter<'_>, event: &Value) -> io::Result<()> {
    let kind = event.get("type").and_then(Value::as_str);
    w.event(Some(kind.unwrap_or("message")), &event.to_string())
}

/// `response.created`: opens response `id`.
pub fn send_created(w: &mut StreamWriter<'_>, id: &str, model: &str) -> io::Result<()> {
    send(
        w,
        &json!({
            "type": "response.created",
            "response": {"id": id, "object": "response", "model": model, "status": "in_progress"},
        }),
    )
}

/// One assistant message: `output_item.added`, one `output_text.delta` per chunk (`gap`
/// apart, ended early if the client goes away), `output_item.done` with the whole text.
/// Codex drops deltas that arrive without the `added` event.
pub fn send_message(
    w: &mut StreamWriter<'_>,
    item_id: &str,
    chunks: &[String],
    gap: Duration,
) -> io::Result<()> {
    send_message_paced(w, item_id, chunks, |w, i| {
        if i > 0 && !gap.is_zero() {
            w.pause(gap)?;
        }
        Ok(())
    })
}

/// [`send_message`] with `before(w, i)` run before chunk `i` is sent: a stand-in model
/// that wants to hold a stream mid-way (a test that restarts a daemon while a turn
/// streams) waits there.
pub fn send_message_paced(
    w: &mut StreamWriter<'_>,
    item_id: &str,
    chunks: &[String],
    mut before: impl FnMut(&mut StreamWriter<'_>, usize) -> io::Result<()>,
) -> io::Result<()> {
    send(
        w,
        &json!({
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "message", "role": "assistant", "id": item_id, "status": "in_progress", "content": []},
        }),
    )?;
    for (i, chunk) in chunks.iter().enumerate() {
        before(w, i)?;
        send(
            w,
            &json!({
                "type": "response.output_text.delta",
                "item_id": item_id,
                "output_index": 0,
                "content_index": 0,
                "delta": chunk,
            }),
        )?;
    }
    send(
        w,
        &json!({
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {
                "type": "message",
                "role": "assistant",
                "id": item_id,
                "status": "completed",
                "content": [{"type": "output_text", "text": chunks.concat(), "annotations": []}],
            },
        }),
    )
}

/// A finished output item (a tool call) as `output_item.added` then `output_item.done`.
pub fn send_item(w: &mut StreamWriter<'_>, item: &Value) -> io::Result<()> {
    send(
        w,
        &json!({"type": "response.output_item.added", "output_index": 0, "item": item}),
    )?;
    send(
        w,
        &json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
    )
}

/// `response.completed` with a small fixed usage (so codex reports token usage). Without
/// it codex fails the turn with "stream closed before response.completed".
pub fn send_completed(w: &mut StreamWriter<'_>, id: &str, model: &str) -> io::Result<()> {
    send_completed_with(w, id, model, &usage_json(10, 0, 5, 0))
}

/// `response.completed` with the given `usage` ([`usage_json`]).
pub fn send_completed_with(
    w: &mut StreamWriter<'_>,
    id: &str,
    model: &str,
    usage: &Value,
) -> io::Result<()> {
    send(
        w,
        &json!({
            "type": "response.completed",
            "response": {
                "id": id,
                "object": "response",
                "model": model,
                "status": "completed",
                "usage": usage,
            },
        }),
    )
}

/// A Responses API `usage`: input tokens (of which cached), output (of which reasoning).
pub fn usage_json(input: u64, cached: u64, output: u64, reasoning: u64) -> Value {
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input + output,
    })
}

/// The JSON body of an OpenAI-style error answer.
pub fn error_body(message: &str, kind: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Value {
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
    }

    #[test]
    fn the_prompt_is_the_last_user_message() {
        let body = json!({"input": [user("environment"), {"role": "assistant", "content": "x"}, user("hello there")]});
        assert_eq!(last_user_text(&body), "hello there");
        let body = json!({"input": [{"role": "user", "content": "plain string"}]});
        assert_eq!(last_user_text(&body), "plain string");
    }

    #[test]
    fn malformed_bodies_read_as_an_empty_prompt() {
        for body in [
            json!(null),
            json!([1, 2]),
            json!({"input": 3}),
            json!({"input": [1, {"role": 5}]}),
            json!({"input": [{"role": "user", "content": 7}]}),
        ] {
            assert_eq!(last_user_text(&body), "", "{body}");
        }
        assert_eq!(model_of(&json!({"model": 3})), "mock-model");
    }

    #[test]
    fn deltas_concatenate_to_the_reply() {
        let text = "mock reply: say something nice";
        let chunks = split_for_deltas(text);
        assert_eq!(chunks.len(), 3, "chunks: {chunks:?}");
        assert_eq!(chunks.concat(), text);
        assert_eq!(split_for_deltas(""), Vec::<String>::new());
    }
}
