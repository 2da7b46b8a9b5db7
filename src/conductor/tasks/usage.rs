//! A task's token cost, `usage_total`, from its turns' usage records.
//!
//! codex reports a turn's usage as the thread's token usage after it (`tokenUsage {total,
//! last}`): `total` is CUMULATIVE over the thread's turns, `last` only the turn's last
//! model response (a turn with a tool call makes several). Summing either per turn would
//! be wrong, so the turns' own amounts are the differences of `total`, and their sum over a
//! thread is the thread's last `total` (the task's thread is its own: created by its first
//! run, continued by its retries). Each run ref keeps its thread and the latest `total`
//! its steps recorded; the task's total is, per thread, the largest of those, summed over
//! its threads (a retry that had to start a new thread adds that thread's). Derived from
//! the run's step records like `steps_done`, so applying it again changes nothing.

use serde_json::Value;

use super::model::{Run, RunRef, UsageTotal};

/// One usage breakdown (`total` of a turn's `tokenUsage`); `None` when it has none.
pub fn breakdown(usage: &Value) -> Option<UsageTotal> {
    let b = usage.get("total").filter(|t| t.is_object())?;
    let n = |k: &str| b.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(UsageTotal {
        input_tokens: n("inputTokens"),
        cached_input_tokens: n("cachedInputTokens"),
        output_tokens: n("outputTokens"),
        reasoning_tokens: n("reasoningOutputTokens"),
    })
}

fn tokens(u: &UsageTotal) -> u64 {
    u.input_tokens.saturating_add(u.output_tokens)
}

/// The thread's cumulative usage after the latest of `run`'s steps that recorded one (the
/// largest: it only grows within a thread).
pub fn of_run(run: &Run) -> Option<UsageTotal> {
    run.steps
        .iter()
        .filter_map(|s| s.usage.as_ref().and_then(breakdown))
        .max_by_key(tokens)
}

/// The sum over `runs`' threads of each thread's latest cumulative usage; `None` when no
/// run recorded any. A run without a thread counts on its own.
pub fn total(runs: &[RunRef]) -> Option<UsageTotal> {
    let mut per_thread: Vec<(Option<&str>, UsageTotal)> = Vec::new();
    for r in runs {
        let Some(u) = r.usage else { continue };
        let thread = r.thread_id.as_deref();
        match per_thread
            .iter_mut()
            .find(|(t, _)| thread.is_some() && *t == thread)
        {
            Some((_, best)) if tokens(&u) > tokens(best) => *best = u,
            Some(_) => {}
            None => per_thread.push((thread, u)),
        }
    }
    (!per_thread.is_empty()).then(|| {
        per_thread
            .iter()
            .fold(UsageTotal::default(), |a, (_, u)| add(&a, u))
    })
}

pub fn add(a: &UsageTotal, b: &UsageTotal) -> UsageTotal {
    UsageTotal {
        input_tokens: a.input_tokens.saturating_add(b.input_tokens),
        cached_input_tokens: a.cached_input_tokens.saturating_add(b.cached_input_tokens),
        output_tokens: a.output_tokens.saturating_add(b.output_tokens),
        reasoning_tokens: a.reasoning_tokens.saturating_add(b.reasoning_tokens),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn usage(input: u64, cached: u64, output: u64, reasoning: u64) -> Value {
        json!({
            "total": {"totalTokens": input + output, "inputTokens": input, "cachedInputTokens": cached,
                "outputTokens": output, "reasoningOutputTokens": reasoning},
            // The last model response only: never summed.
            "last": {"totalTokens": 1, "inputTokens": 1, "cachedInputTokens": 0, "outputTokens": 0, "reasoningOutputTokens": 0},
        })
    }

    fn u(i: u64, c: u64, o: u64, r: u64) -> UsageTotal {
        UsageTotal {
            input_tokens: i,
            cached_input_tokens: c,
            output_tokens: o,
            reasoning_tokens: r,
        }
    }

    fn run_ref(id: &str, thread: Option<&str>, usage: Option<UsageTotal>) -> RunRef {
        RunRef {
            run_id: id.into(),
            attempt: 1,
            status: "failed".into(),
            started_at: None,
            thread_id: thread.map(str::to_string),
            usage,
        }
    }

    #[test]
    fn a_run_takes_its_threads_latest_cumulative_usage_not_a_sum_of_turns() {
        let mut r: Run = serde_json::from_value(json!({
            "run_id": "r1", "task_id": "t1", "status": "running"
        }))
        .unwrap();
        assert_eq!(of_run(&r), None);
        r.step_mut(0).usage = Some(usage(100, 10, 20, 5));
        r.step_mut(1).usage = Some(usage(250, 90, 45, 7));
        r.step_mut(2).usage = Some(json!({"odd": true}));
        assert_eq!(of_run(&r), Some(u(250, 90, 45, 7)));
    }

    #[test]
    fn the_task_sums_threads_and_counts_a_thread_once() {
        assert_eq!(total(&[run_ref("a", Some("th1"), None)]), None);
        let runs = [
            run_ref("a", Some("th1"), Some(u(100, 0, 10, 1))),
            // A retry continuing the thread: its total includes the first run's turns.
            run_ref("b", Some("th1"), Some(u(300, 50, 30, 2))),
            // A retry on a new thread.
            run_ref("c", Some("th2"), Some(u(40, 0, 4, 0))),
            run_ref("d", None, Some(u(1, 1, 1, 1))),
        ];
        assert_eq!(total(&runs), Some(u(341, 51, 35, 3)));
    }
}
