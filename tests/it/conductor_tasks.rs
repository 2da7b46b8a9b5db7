//! Worker mode against codexd's built-in stub child: the queue, its order and the
//! scheduler's cap, bad bodies, idempotency, cancel and retry, the dispatch gate, and what
//! the status surfaces report. The real app-server is in `conductor_tasks_real.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use baa::common::time::ms_from_rfc3339;

use crate::support::codexd::{start_running, with_stub, Dirs};
use crate::support::daemon::{wait_for, Daemon};
use crate::support::http::get;
use crate::support::tasks::{self, codexd_session_ids, runs, TaskConductor};
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);

fn stack(tag: &str, mode: &str) -> (TempDir, Daemon, TaskConductor) {
    let dir = TempDir::new(tag);
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), mode));
    let c = tasks::start(&dir, &codexd.base);
    (dir, codexd, c)
}

#[test]
fn stub_three_step_task_runs_its_steps_in_order_in_one_session() {
    let (_dir, _codexd, c) = stack("tasks-stub-3", "normal");
    let id = c.create(json!({"title": "three", "steps": [
        {"prompt": "first"}, {"prompt": "second"}, {"prompt": "third"}]}));
    let t = c.wait_status(&id, "succeeded", T);
    let run = &t["runs"][0];
    assert_eq!(run["status"], "succeeded", "{t:#}");
    let steps: Vec<(&Value, &Value)> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (&s["index"], &s["status"]))
        .collect();
    assert_eq!(
        steps,
        [
            (&json!(0), &json!("completed")),
            (&json!(1), &json!("completed")),
            (&json!(2), &json!("completed"))
        ],
        "{t:#}"
    );
    assert_eq!(run["final_message"], "stub reply: third", "{t:#}");
    assert_eq!(t["task"]["steps_done"], 3);
    let msgs = c.log_messages(&id);
    for want in [
        "step 1/3 started",
        "step 2/3 completed",
        "final message: stub reply: third",
        "succeeded",
    ] {
        assert!(
            msgs.iter().any(|m| m.contains(want)),
            "no {want:?} in {msgs:#?}"
        );
    }
}

/// A conductor with no reachable codexd, paused: tasks are accepted and stay queued.
fn paused_without_codexd(tag: &str) -> (TempDir, TaskConductor) {
    let dir = TempDir::new(tag);
    let c = tasks::start(&dir, "http://127.0.0.1:9");
    c.system(
        "pause",
        json!({"requested_by": "test", "reason": "hold the queue"}),
    );
    (dir, c)
}

#[test]
fn stub_bad_task_bodies_get_400_naming_the_field() {
    let (dir, c) = paused_without_codexd("tasks-bad-bodies");
    let t = |extra: Value| {
        let mut b = json!({"title": "t", "prompt": "p"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let steps21: Vec<Value> = (0..21)
        .map(|i| json!({"prompt": format!("s{i}")}))
        .collect();
    let missing = dir.join("no-such-dir").display().to_string();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"prompt": "p"}), "title"),
        (t(json!({"title": ""})), "title"),
        (t(json!({"title": "   "})), "title"),
        (t(json!({"title": "x".repeat(201)})), "title"),
        (t(json!({"title": 7})), "title"),
        (json!({"title": "t"}), "prompt"),
        (t(json!({"steps": [{"prompt": "a"}]})), "prompt"),
        (t(json!({"prompt": "x".repeat(64 * 1024 + 1)})), "prompt"),
        (t(json!({"prompt": ["a"]})), "prompt"),
        (json!({"title": "t", "steps": []}), "steps"),
        (json!({"title": "t", "steps": steps21}), "steps"),
        (json!({"title": "t", "steps": {"prompt": "a"}}), "steps"),
        (
            json!({"title": "t", "steps": [{"prompt": "a"}, {"model": "m"}]}),
            "steps[1].prompt",
        ),
        (
            json!({"title": "t", "steps": [{"prompt": ""}]}),
            "steps[0].prompt",
        ),
        (json!({"title": "t", "steps": ["a"]}), "steps[0]"),
        (
            json!({"title": "t", "steps": [{"prompt": "a", "cwd": "/"}]}),
            "steps[0].cwd",
        ),
        (t(json!({"cwd": "relative/dir"})), "cwd"),
        (t(json!({"cwd": missing})), "cwd"),
        (t(json!({"max_attempts": 0})), "max_attempts"),
        (t(json!({"max_attempts": 11})), "max_attempts"),
        (t(json!({"maxAttempts": "2"})), "max_attempts"),
        (t(json!({"priority": "high"})), "priority"),
        (t(json!({"priority": 1.5})), "priority"),
        (t(json!({"timeout_s": 0})), "timeout_s"),
        (t(json!({"timeout_s": -5})), "timeout_s"),
        (t(json!({"timeout_s": "60"})), "timeout_s"),
        (t(json!({"sandbox": "wide-open"})), "sandbox"),
        (t(json!({"approval_policy": "maybe"})), "approval_policy"),
        (t(json!({"idempotency_key": 12})), "idempotency_key"),
        // Unknown fields are refused, not ignored: a typo must not queue a different task.
        (t(json!({"promt": "typo"})), "promt"),
        (t(json!({"worker": "shell"})), "worker"),
    ];
    for (body, field) in &cases {
        let r = c.post_task(body.clone());
        let v = r.expect_error(400, "invalid_request");
        assert_eq!(v["details"]["field"], *field, "{v}");
        let msg = v["message"].as_str().unwrap_or_default();
        let named = field.split('.').next_back().unwrap_or(field);
        assert!(msg.contains(named), "message does not name {field}: {msg}");
    }
    // A body that is not a JSON object.
    for raw in [&b"[1, 2]"[..], b"\"a task\"", b"42", b"{\"title\": "] {
        let r = crate::support::http::post_raw(
            &c.url("/v1/tasks"),
            raw,
            &[("Content-Type", "application/json")],
        );
        assert_eq!(
            r.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(raw),
            r.body
        );
        assert_eq!(r.json()["error"], "invalid_json", "{}", r.body);
    }
    assert_eq!(c.summary()["queued"], 0, "a bad body queued something");
    c.cancel("task_0000000000000000")
        .expect_error(404, "not_found");
    // Edge values that are fine.
    let ok = c.create(t(
        json!({"title": "x".repeat(200), "prompt": "x".repeat(64 * 1024),
        "cwd": dir.path().display().to_string(), "max_attempts": 10, "timeout_s": 1,
        "priority": -3}),
    ));
    let task = c.task(&ok)["task"].clone();
    let lines = c.logs(&ok);
    let last = lines.last().unwrap()["seq"].as_u64().unwrap();
    let after =
        get(&c.url(&format!("/v1/tasks/{ok}/logs?since={}", last - 1))).expect(200)["data"].clone();
    assert_eq!(after["count"], 1, "{after:#}");
    assert_eq!(
        (task["priority"].clone(), task["max_attempts"].clone()),
        (json!(-3), json!(10)),
        "{task:#}"
    );
}

#[test]
fn stub_idempotency_key_replays_the_same_task_and_queues_one() {
    let (_dir, c) = paused_without_codexd("tasks-idem");
    let body = json!({"title": "once", "prompt": "p", "idempotency_key": "curl-retry-1"});
    let first = c.post_task(body.clone()).expect(201)["data"].clone();
    assert_eq!(first["created"], true, "{first}");
    // A retried curl, even with another body, gets the task the key first queued.
    for again in [
        body,
        json!({"title": "other", "prompt": "q", "idempotencyKey": "curl-retry-1"}),
    ] {
        let second = c.post_task(again).expect(200)["data"].clone();
        assert_eq!(second["created"], false, "{second}");
        assert_eq!(
            second["task"]["task_id"], first["task"]["task_id"],
            "{second}"
        );
        assert_eq!(second["task"]["title"], "once", "{second}");
    }
    let other = c.create(json!({"title": "two", "prompt": "p", "idempotency_key": "curl-retry-2"}));
    assert_ne!(json!(other), first["task"]["task_id"]);
    assert_eq!(c.summary()["queued"], 2);
    // Eight callers racing with one new key: one 201, seven 200s, all the same task.
    let url = c.url("/v1/tasks");
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let r = crate::support::http::post(
                    &url,
                    &json!({"title": format!("racer {i}"), "prompt": "p", "idempotency_key": "race"}),
                );
                (r.status, r.json()["data"]["task"]["task_id"].clone())
            })
        })
        .collect();
    let got: Vec<(u16, Value)> = racers.into_iter().map(|h| h.join().unwrap()).collect();
    let created = got.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 1, "{got:?}");
    assert!(
        got.iter()
            .all(|(s, id)| (*s == 201 || *s == 200) && *id == got[0].1),
        "{got:?}"
    );
    let list = get(&c.url("/v1/tasks")).expect(200)["data"].clone();
    assert_eq!(list["count"], 3, "{list:#}");
}

#[test]
fn stub_pause_holds_the_queue_and_resume_releases_it() {
    let (_dir, codexd, c) = stack("tasks-pause", "normal");
    c.system("pause", json!({"requested_by": "test", "reason": "hold"}));
    let id = c.create(json!({"title": "held", "prompt": "wait for resume"}));
    c.wait_passes(3);
    let t = c.task(&id);
    assert_eq!(t["task"]["status"], "queued", "{t:#}");
    assert_eq!(t["runs"], json!([]), "{t:#}");
    assert_eq!(
        codexd_session_ids(&codexd),
        Vec::<String>::new(),
        "codexd saw a session while paused"
    );
    let rt = c.runtime();
    assert_eq!(rt["daemon"]["schedulerEnabled"], false, "{rt:#}");
    assert_eq!(rt["daemon"]["scheduler"]["queued"], 1, "{rt:#}");
    c.system("resume", json!({"requested_by": "test"}));
    let t = c.wait_status(&id, "succeeded", T);
    assert_eq!(runs(&t), [(1, "succeeded".to_string())], "{t:#}");
    assert_eq!(
        t["runs"][0]["final_message"], "stub reply: wait for resume",
        "{t:#}"
    );
}

#[test]
fn stub_pause_with_interrupt_puts_the_running_task_back_in_the_queue() {
    let (_dir, codexd, c) = stack("tasks-pause-int", "normal");
    let id = c.create(json!({"title": "interrupted", "prompt": "approval please"}));
    c.wait_waiting(&id, T);
    let sid = c.task(&id)["runs"][0]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let st = c.system("pause", json!({"requested_by": "test", "interrupt": true}));
    assert_eq!(st["mode"], "paused", "{st}");
    // The turn is interrupted; its run ends `paused` and the task waits in the queue.
    let t = c.wait_task(&id, "back in the queue", T, |t| {
        t["task"]["status"] == "queued" && t["runs"][0]["status"] == "paused"
    });
    assert!(t["task"]["waiting"].is_null(), "{t:#}");
    let s = get(&codexd.url(&format!("/v1/codexd/sessions/{sid}"))).expect(200)["data"]["session"]
        .clone();
    assert_eq!(s["lastTurnStatus"], "interrupted", "{s:#}");
    c.wait_passes(2);
    assert_eq!(c.status(&id), "queued");
    // Resume: a new run (attempt 2) continues the task at the interrupted step.
    c.system("resume", json!({}));
    let rid = c.wait_waiting(&id, T);
    c.answer(&rid, "accept").expect(200);
    let t = c.wait_status(&id, "succeeded", T);
    assert_eq!(
        runs(&t),
        [(1, "paused".to_string()), (2, "succeeded".to_string())],
        "{t:#}"
    );
    assert_eq!(t["task"]["final_message"], "decision: accept", "{t:#}");
}

#[test]
fn stub_drain_finishes_the_running_task_starts_no_other_and_reports_drained() {
    let (_dir, codexd, c) = stack("tasks-drain", "normal");
    let a = c.create(json!({"title": "running", "prompt": "approval to finish"}));
    let rid = c.wait_waiting(&a, T);
    let b = c.create(json!({"title": "next", "prompt": "never while draining"}));
    let st = c.system(
        "drain",
        json!({"requested_by": "test", "reason": "upgrade"}),
    );
    assert_eq!(
        (st["mode"].clone(), st["drained"].clone()),
        (json!("draining"), json!(false)),
        "{st}"
    );
    c.wait_passes(2);
    let st = c.state();
    assert_eq!(st["drained"], false, "a run is in flight: {st}");
    assert_eq!(c.status(&b), "queued");
    // The running task finishes...
    c.answer(&rid, "accept").expect(200);
    c.wait_status(&a, "succeeded", T);
    let st = wait_for(T, || Some(c.state()).filter(|s| s["drained"] == true))
        .unwrap_or_else(|| panic!("never drained: {}", c.state()));
    assert_eq!(st["mode"], "draining", "{st}");
    // ...and nothing else starts.
    c.wait_passes(3);
    assert_eq!(c.status(&b), "queued");
    assert_eq!(
        codexd_session_ids(&codexd).len(),
        1,
        "only the first task's session"
    );
    c.system("resume", json!({}));
    c.wait_status(&b, "succeeded", T);
    assert_eq!(c.state()["drained"], false);
}

#[test]
fn stub_cancel_of_queued_finished_and_unknown_tasks() {
    let (_dir, codexd, c) = stack("tasks-cancel", "normal");
    c.system("pause", json!({}));
    let q = c.create(json!({"title": "to cancel", "prompt": "never runs"}));
    let v = c.cancel(&q).expect(200);
    assert_eq!(v["data"]["task"]["status"], "canceled", "{v}");
    assert!(v["data"]["task"]["finished_at"].is_string(), "{v}");
    c.system("resume", json!({}));
    let done = c.create(json!({"title": "runs", "prompt": "hello"}));
    c.wait_status(&done, "succeeded", T);
    c.wait_passes(2);
    let t = c.task(&q);
    assert_eq!(
        (t["task"]["status"].clone(), t["runs"].clone()),
        (json!("canceled"), json!([])),
        "{t:#}"
    );
    assert_eq!(
        codexd_session_ids(&codexd).len(),
        1,
        "the canceled task never reached codexd"
    );
    for id in [&q, &done] {
        let v = c.cancel(id).expect_error(409, "task_finished");
        assert_eq!(v["details"]["task_id"], json!(id), "{v}");
    }
    c.cancel("task_0000000000000000")
        .expect_error(404, "not_found");
    c.retry("task_0000000000000000")
        .expect_error(404, "not_found");
    c.retry(&done).expect_error(409, "task_not_retryable");
    let msgs = c.log_messages(&q);
    assert!(
        msgs.iter().any(|m| m.contains("canceled while queued")),
        "{msgs:#?}"
    );
}

#[test]
fn stub_cancel_of_a_running_task_then_retry_continues_at_the_first_step_not_completed() {
    let (_dir, codexd, c) = stack("tasks-cancel-retry", "normal");
    let id = c.create(json!({"title": "three", "steps": [
        {"prompt": "one"}, {"prompt": "approval two"}, {"prompt": "three"}]}));
    c.wait_waiting(&id, T);
    let v = c.cancel(&id).expect(200);
    assert_eq!(v["data"]["task"]["status"], "canceled", "{v}");
    let t = c.task(&id);
    let run = &t["runs"][0];
    assert_eq!(run["status"], "canceled", "{t:#}");
    assert_eq!(run["steps"][0]["status"], "completed", "{t:#}");
    assert_eq!(t["task"]["steps_done"], 1, "{t:#}");
    let sid = run["session_id"].as_str().unwrap().to_string();
    let s = get(&codexd.url(&format!("/v1/codexd/sessions/{sid}"))).expect(200)["data"]["session"]
        .clone();
    assert_eq!(s["lastTurnStatus"], "interrupted", "{s:#}");

    let v = c.retry(&id).expect(200);
    assert_eq!(v["data"]["task"]["status"], "queued", "{v}");
    let rid = c.wait_waiting(&id, T);
    c.answer(&rid, "accept").expect(200);
    let t = c.wait_status(&id, "succeeded", T);
    assert_eq!(
        runs(&t),
        [(1, "canceled".to_string()), (2, "succeeded".to_string())],
        "{t:#}"
    );
    let second = t["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["attempt"] == 2)
        .unwrap()
        .clone();
    let indexes: Vec<&Value> = second["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["index"])
        .collect();
    assert_eq!(
        indexes,
        [&json!(1), &json!(2)],
        "the retry began at step 2: {second:#}"
    );
    assert_eq!(t["task"]["steps_done"], 3, "{t:#}");
    // Step 1 ran once over both runs, in one thread (the stub cannot list a thread's
    // turns; the real-app-server tests count prompts at the model).
    let msgs = c.log_messages(&id);
    let starts = |n: usize| {
        let want = format!("step {n}/3 started");
        msgs.iter().filter(|m| m.contains(&want)).count()
    };
    assert_eq!((starts(1), starts(2), starts(3)), (1, 2, 1), "{msgs:#?}");
    assert_eq!(
        t["runs"][0]["thread_id"], t["runs"][1]["thread_id"],
        "{t:#}"
    );
}

#[test]
fn stub_failed_task_is_retried_to_max_attempts_then_retry_queues_it_again() {
    let (_dir, _codexd, c) = stack("tasks-fail-retry", "normal");
    let id = c.create(json!({"title": "fails", "prompt": "fail please", "max_attempts": 2}));
    let t = c.wait_status(&id, "failed", T);
    assert_eq!(
        runs(&t),
        [(1, "failed".to_string()), (2, "failed".to_string())],
        "{t:#}"
    );
    assert_eq!(t["task"]["error"]["retryable"], true, "{t:#}");
    let v = c.retry(&id).expect(200);
    assert_eq!(v["data"]["task"]["status"], "queued", "{v}");
    assert!(v["data"]["task"]["error"].is_null(), "{v}");
    // A manual retry gives the task max_attempts again: runs 3 and 4.
    let t = c.wait_task(&id, "failed after four runs", T, |t| {
        t["task"]["status"] == "failed" && t["runs"].as_array().is_some_and(|r| r.len() == 4)
    });
    let attempts: Vec<u64> = runs(&t).into_iter().map(|(a, _)| a).collect();
    assert_eq!(attempts, [1, 2, 3, 4], "{t:#}");
}

#[test]
fn stub_200_tasks_at_max_running_2_start_by_priority_then_fifo() {
    let dir = TempDir::new("tasks-200");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let c = TaskConductor {
        d: tasks::spawn(&dir, &codexd.base, "mini-main", "primary")
            .env("BAA_CONDUCTOR_MAX_RUNNING_TASKS", "2")
            .start(),
    };
    c.system("pause", json!({}));
    let mut expected: Vec<(i64, usize, String)> = Vec::new();
    for i in 0..200 {
        let priority = [0, 5, -2, 5, 1][i % 5];
        let id = c.create(
            json!({"title": format!("t{i}"), "prompt": format!("n{i}"), "priority": priority}),
        );
        expected.push((-priority, i, id));
    }
    expected.sort();
    assert_eq!(c.runtime()["daemon"]["scheduler"]["max_running"], 2);
    // Sample the number running while the queue drains.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, url) = (stop.clone(), c.url("/v1/runtime"));
        std::thread::spawn(move || {
            let mut max = 0;
            while !stop.load(Ordering::SeqCst) {
                let s = get(&url).json()["data"]["daemon"]["scheduler"].clone();
                max = max
                    .max(s["running"].as_u64().unwrap_or(0))
                    .max(s["in_flight"].as_u64().unwrap_or(0));
                std::thread::sleep(Duration::from_millis(10));
            }
            max
        })
    };
    c.system("resume", json!({}));
    wait_for(Duration::from_secs(240), || {
        (c.summary()["succeeded"] == 200).then_some(())
    })
    .unwrap_or_else(|| panic!("not all succeeded: {:#}\n{}", c.summary(), c.d.log()));
    stop.store(true, Ordering::SeqCst);
    let max_seen = sampler.join().unwrap();
    assert!(max_seen <= 2, "saw {max_seen} running at once");
    let mut spans: Vec<(u64, u64, usize)> = Vec::new();
    for (pos, (_, _, id)) in expected.iter().enumerate() {
        let t = c.task(id);
        assert_eq!(runs(&t), [(1, "succeeded".to_string())], "{t:#}");
        let r = &t["runs"][0];
        let ms = |k: &str| ms_from_rfc3339(r[k].as_str().unwrap()).unwrap();
        spans.push((ms("started_at"), ms("finished_at"), pos));
    }
    // Start order: a task never started after one meant to start later (ties in the same
    // millisecond allowed).
    for w in spans.windows(2) {
        assert!(
            w[0].0 <= w[1].0,
            "task #{} started at {} after #{} at {}",
            w[0].2,
            w[0].0,
            w[1].2,
            w[1].0
        );
    }
    // Never more than two runs at once.
    for &(s, _, pos) in &spans {
        let overlapping = spans
            .iter()
            .filter(|&&(s2, f2, _)| s2 <= s && s < f2)
            .count();
        assert!(
            overlapping <= 2,
            "{overlapping} runs in flight when #{pos} started"
        );
    }
    assert!(
        c.scheduler()["last_dispatch_at"].is_string(),
        "{:#}",
        c.scheduler()
    );
}

#[test]
fn stub_codex_hold_keeps_a_queued_task_waiting_until_the_limit_resets() {
    let (_dir, _codexd, c) = stack("tasks-hold", "normal");
    // A 10 s window: task a's end, b's creation and the held report all fall inside it
    // even on a loaded machine.
    let a = c.create(json!({"title": "uses up the limit", "prompt": "limit:10"}));
    c.wait_status(&a, "succeeded", T);
    let b = c.create(json!({"title": "after the limit", "prompt": "after"}));
    let held = wait_for(T, || {
        let s = c.scheduler();
        s["held"].is_object().then_some(s)
    })
    .unwrap_or_else(|| panic!("never held: {:#}\n{}", c.runtime(), c.explain(&b)));
    assert_eq!(c.status(&b), "queued", "{held:#}");
    assert!(held["held"]["until"].is_string(), "{held:#}");
    assert!(
        c.runtime()["daemon"]["codexHold"]["held"] == true,
        "{:#}",
        c.runtime()["daemon"]["codexHold"]
    );
    let until = ms_from_rfc3339(held["held"]["until"].as_str().unwrap()).unwrap();
    let t = c.wait_status(&b, "succeeded", T);
    let started = ms_from_rfc3339(t["runs"][0]["started_at"].as_str().unwrap()).unwrap();
    assert!(
        started + 1000 >= until,
        "started at {started}, held until {until}"
    );
    // The probe's turn did not hit the limit: the hold is released.
    wait_for(T, || c.scheduler()["held"].is_null().then_some(()))
        .unwrap_or_else(|| panic!("still held: {:#}", c.scheduler()));
}

/// Issue 17: at start-up the scheduler dispatched before codexd's child was ready and spent
/// an attempt (`codexd_unavailable … status starting`). A child that is not running holds
/// the queue like a used-up limit: the task stays queued with no run, and runs once the
/// child is up, in attempt 1 of its only one.
#[test]
fn stub_scheduler_waits_for_codexd_child_ready_without_spending_an_attempt() {
    let dir = TempDir::new("tasks-child-not-ready");
    let broken = dir.join("child-not-ready");
    std::fs::write(
        &broken,
        "while this file exists the stub child exits at once",
    )
    .unwrap();
    // Not start_running: codexd answers while its child keeps failing to start.
    let codexd = with_stub(
        &Dirs::under(&dir.child("cx")),
        &format!("exit-while:{}", broken.display()),
    )
    .env("BAA_CODEXD_CRASH_LOOP_MAX", "1000")
    .start();
    let c = tasks::start(&dir, &codexd.base);
    let id =
        c.create(json!({"title": "waits for the child", "prompt": "hello", "max_attempts": 1}));
    let held = wait_for(T, || {
        let s = c.scheduler();
        (s["held"]["reason"] == "codexd_child_not_ready").then_some(s)
    })
    .unwrap_or_else(|| panic!("never held: {:#}\n{}", c.runtime(), c.explain(&id)));
    // Decided several times not to run it.
    c.wait_passes(3);
    let t = c.task(&id);
    assert_eq!(t["task"]["status"], "queued", "{held:#}\n{t:#}");
    assert_eq!(t["runs"], json!([]), "{t:#}");
    std::fs::remove_file(&broken).unwrap();
    let t = c.wait_status(&id, "succeeded", T);
    assert_eq!(runs(&t), [(1, "succeeded".to_string())], "{t:#}");
    assert!(c.scheduler()["held"].is_null(), "{:#}", c.scheduler());
}

#[test]
fn stub_finished_tasks_beyond_the_retention_are_pruned_oldest_first() {
    let dir = TempDir::new("tasks-retention");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let c = TaskConductor {
        d: tasks::spawn(&dir, &codexd.base, "mini-main", "primary")
            .env("BAA_CONDUCTOR_TASK_RETENTION", "3")
            .start(),
    };
    let mut done = Vec::new();
    for i in 0..5 {
        let id = c.create(json!({"title": format!("t{i}"), "prompt": format!("p{i}")}));
        let t = c.wait_status(&id, "succeeded", T);
        done.push((id, t["runs"][0]["run_id"].as_str().unwrap().to_string()));
    }
    let state = dir.join("state");
    let gone = |id: &str, run: &str| {
        get(&c.url(&format!("/v1/tasks/{id}"))).status == 404
            && get(&c.url(&format!("/v1/runs/{run}"))).status == 404
            && !state.join("tasks").join(format!("{id}.json")).exists()
            && !state.join("runs").join(format!("{run}.json")).exists()
    };
    wait_for(T, || {
        (gone(&done[0].0, &done[0].1) && gone(&done[1].0, &done[1].1)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the two oldest were not pruned: {:#}",
            get(&c.url("/v1/tasks")).json()
        )
    });
    assert_eq!(
        get(&c.url(&format!("/v1/tasks/{}/logs", done[0].0))).status,
        404
    );
    for (id, run) in &done[2..] {
        assert_eq!(c.status(id), "succeeded");
        get(&c.url(&format!("/v1/runs/{run}"))).expect(200);
        assert!(!c.logs(id).is_empty(), "the log of {id} went too");
    }
    assert_eq!(c.summary()["succeeded"], 3);
    // No task log file of a pruned task is left anywhere under the state dir.
    let names = files_under(&state);
    for (id, _) in &done[..2] {
        assert!(
            !names.iter().any(|n| n.contains(id.as_str())),
            "{id} left {names:?}"
        );
    }
}

fn files_under(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[test]
fn stub_runtime_scheduler_is_enabled_only_on_the_leader_and_a_standby_never_dispatches() {
    let dir = TempDir::new("tasks-standby");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let leader = tasks::start(&dir, &codexd.base);
    wait_for(T, || {
        (leader.runtime()["daemon"]["leaseHolder"] == "mini-main").then_some(())
    })
    .unwrap_or_else(|| panic!("never leader: {:#}", leader.runtime()));
    let standby = TaskConductor {
        d: tasks::spawn(&dir, &codexd.base, "mini-standby", "standby").start(),
    };
    let rt = leader.runtime();
    assert_eq!(rt["daemon"]["schedulerEnabled"], true, "{rt:#}");
    let s = &rt["daemon"]["scheduler"];
    for k in ["queued", "running", "max_running"] {
        assert!(s[k].is_u64(), "{k}: {s:#}");
    }
    assert_eq!(s["max_running"], 1, "{s:#}");
    assert!(s.get("last_dispatch_at").is_some(), "{s:#}");

    standby
        .post_task(json!({"title": "t", "prompt": "p"}))
        .expect_error(409, "not_leader");
    standby.cancel("task_x").expect_error(409, "not_leader");
    let ids: Vec<String> = (0..3)
        .map(|i| leader.create(json!({"title": format!("t{i}"), "prompt": format!("p{i}")})))
        .collect();
    for id in &ids {
        let t = leader.wait_status(id, "succeeded", T);
        assert_eq!(t["runs"][0]["node_id"], "mini-main", "{t:#}");
    }
    standby.wait_passes(2);
    let rt = standby.runtime();
    assert_eq!(rt["daemon"]["schedulerEnabled"], false, "{rt:#}");
    assert_eq!(rt["daemon"]["scheduler"]["in_flight"], 0, "{rt:#}");
    assert!(
        rt["daemon"]["scheduler"]["last_dispatch_at"].is_null(),
        "the standby dispatched: {rt:#}"
    );
    // The standby still reads the leader's tasks.
    assert_eq!(standby.status(&ids[2]), "succeeded");
    // A task the paused leader keeps queued: the standby counts it and never starts it.
    leader.system("pause", json!({}));
    let q = leader.create(json!({"title": "held", "prompt": "p"}));
    wait_for(T, || (standby.scheduler()["queued"] == 1).then_some(()))
        .unwrap_or_else(|| panic!("standby never counted it: {:#}", standby.scheduler()));
    standby.wait_passes(2);
    let s = standby.scheduler();
    assert_eq!(
        (s["in_flight"].clone(), s["last_dispatch_at"].clone()),
        (json!(0), Value::Null),
        "{s:#}"
    );
    assert_eq!(standby.status(&q), "queued");
    assert_eq!(
        codexd_session_ids(&codexd).len(),
        3,
        "only the leader's three runs"
    );
}

/// Runs an example's curl command as a caller would paste it; returns the JSON it printed.
fn run_curl(curl: &str) -> Value {
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", &format!("{curl} --max-time 10")])
        .output()
        .unwrap_or_else(|e| panic!("sh: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{curl} printed no JSON ({e}): {text:?} {:?}", out.stderr))
}

#[test]
fn stub_describe_and_capabilities_task_examples_work_as_pasted() {
    let (_dir, c) = paused_without_codexd("tasks-describe");
    let biz = get(&c.url("/describe/business")).expect(200)["data"].clone();
    let ids: Vec<&str> = biz["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    for id in [
        "tasks.create",
        "tasks.cancel",
        "tasks.retry",
        "tasks.summary",
    ] {
        assert!(ids.contains(&id), "business lacks {id}: {ids:?}");
    }
    let ctl = get(&c.url("/describe/control")).expect(200)["data"].clone();
    let ctl_paths: Vec<&str> = ctl["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(ctl_paths.contains(&"/v1/codex/requests"), "{ctl_paths:?}");
    let caps = get(&c.url("/v1/capabilities")).expect(200)["data"].clone();
    for doc in [&biz, &caps] {
        let curl = |path_end: &str| -> String {
            doc["examples"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["method"] == "POST" && e["path"].as_str().unwrap().ends_with(path_end))
                .unwrap_or_else(|| panic!("no POST …{path_end} example: {:#}", doc["examples"]))
                ["curl"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let created = run_curl(&curl("/v1/tasks"));
        assert_eq!(created["ok"], true, "{created}");
        let id = created["data"]["task"]["task_id"]
            .as_str()
            .unwrap()
            .to_string();
        let canceled = run_curl(&curl("/cancel").replace("<task_id>", &id));
        assert_eq!(canceled["data"]["task"]["status"], "canceled", "{canceled}");
        let retried = run_curl(&curl("/retry").replace("<task_id>", &id));
        assert_eq!(retried["data"]["task"]["status"], "queued", "{retried}");
    }
    // The example carries an idempotency key: pasting it twice queued one task.
    let s = c.summary();
    assert_eq!(
        (s["queued"].clone(), s["canceled"].clone()),
        (json!(1), json!(0)),
        "{s:#}"
    );
    let requests = ctl["examples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "/v1/codex/requests")
        .unwrap_or_else(|| panic!("{:#}", ctl["examples"]))["curl"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        requests.contains("Authorization: Bearer $BAA_SHARED_TOKEN"),
        "{requests}"
    );
}

/// Issue 20: every interrupted step read `error step 1/1 interrupted: no error given`,
/// after a deliberate cancel, an interrupting pause or a step timeout alike.
#[test]
fn stub_interrupted_step_says_who_asked_not_no_error_given() {
    let (_dir, _codexd, c) = stack("tasks-interrupt-words", "normal");
    let line = |id: &str| -> (String, String) {
        let logs = c.logs(id);
        let l = logs
            .iter()
            .find(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("step 1/1 interrupted"))
            })
            .unwrap_or_else(|| panic!("no interrupted line: {}", c.explain(id)));
        (
            l["level"].as_str().unwrap_or_default().to_string(),
            l["message"].as_str().unwrap_or_default().to_string(),
        )
    };
    let canceled = c.create(json!({"title": "cancel me", "prompt": "approval please"}));
    c.wait_waiting(&canceled, T);
    c.cancel(&canceled).expect(200);
    c.wait_status(&canceled, "canceled", T);
    assert_eq!(
        line(&canceled),
        (
            "info".to_string(),
            "step 1/1 interrupted by a cancel of the task".to_string()
        )
    );

    let paused = c.create(json!({"title": "pause me", "prompt": "approval please"}));
    c.wait_waiting(&paused, T);
    c.system("pause", json!({"requested_by": "test", "interrupt": true}));
    c.wait_task(&paused, "back in the queue", T, |t| {
        t["task"]["status"] == "queued" && t["runs"][0]["status"] == "paused"
    });
    let (level, message) = line(&paused);
    assert_eq!(level, "info", "{message}");
    assert!(
        message.starts_with("step 1/1 interrupted by a pause with interrupt"),
        "{message}"
    );
    c.cancel(&paused).expect(200);
    c.system("resume", json!({}));

    let slow = c
        .create(json!({"title": "slow", "prompt": "slow:2000", "timeout_s": 1, "max_attempts": 1}));
    c.wait_status(&slow, "failed", T);
    assert_eq!(
        line(&slow),
        (
            "error".to_string(),
            "step 1/1 interrupted: the step ran past its timeout of 1 s".to_string()
        )
    );
    for id in [&canceled, &paused, &slow] {
        let msgs = c.log_messages(id);
        assert!(
            !msgs.iter().any(|m| m.contains("no error given")),
            "{msgs:#?}"
        );
    }
}

#[test]
fn stub_step_past_its_timeout_is_interrupted_and_fails_the_run() {
    let (_dir, codexd, c) = stack("tasks-timeout", "normal");
    // `slow:2000` streams for about 20 s; the step may take 1 s.
    let id = c
        .create(json!({"title": "slow", "prompt": "slow:2000", "timeout_s": 1, "max_attempts": 1}));
    let t = c.wait_status(&id, "failed", T);
    assert_eq!(t["task"]["error"]["code"], "step_timeout", "{t:#}");
    let run = &t["runs"][0];
    assert_eq!(run["status"], "failed", "{t:#}");
    assert_eq!(run["steps"][0]["status"], "interrupted", "{t:#}");
    let sid = run["session_id"].as_str().unwrap();
    let s = get(&codexd.url(&format!("/v1/codexd/sessions/{sid}"))).expect(200)["data"]["session"]
        .clone();
    assert_eq!(
        s["lastTurnStatus"], "interrupted",
        "the turn was left running: {s:#}"
    );
}

/// A migrated `tasks.json` record of another kind marked `running` never ran here: the
/// scheduler used to requeue it (no run in flight) and `drained` waited on it forever.
#[test]
fn stub_a_migrated_running_record_of_another_kind_is_left_alone_and_drain_reports_drained() {
    let dir = TempDir::new("tasks-legacy-running");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("tasks.json"),
        json!({"tasks": [{"task_id": "legacy_1", "title": "old", "status": "running",
            "kind": "shell", "created_at": "2026-01-01T00:00:00.000Z", "current_run_id": "r_old"}]})
        .to_string(),
    )
    .unwrap();
    let c = tasks::start(&dir, "http://127.0.0.1:9");
    let st = c.system("drain", json!({}));
    assert_eq!(st["drained"], true, "{st}");
    c.wait_passes(2);
    assert_eq!(c.status("legacy_1"), "running", "{:#}", c.task("legacy_1"));
    assert_eq!(c.state()["drained"], true);
    assert_eq!(c.scheduler()["in_flight"], 0, "{:#}", c.scheduler());
}

/// The Firefox bridge pushes each change of a task as `task_update`: queued, running and
/// succeeded, with the steps done, so the extension needs no polling.
#[test]
fn stub_firefox_bridge_pushes_task_updates_from_queued_to_succeeded() {
    let (_dir, _codexd, c) = stack("tasks-firefox", "normal");
    let mut ws = crate::support::ws::connect(&c.d.addr, "/ws/firefox", &[]).expect("ws connect");
    // The snapshot comes after the subscription: from here on no push is missed.
    ws.until(T, |v| v["type"] == "state_snapshot")
        .expect("state_snapshot");
    let id = c.create(json!({"title": "pushed", "steps": [{"prompt": "one"}, {"prompt": "two"}]}));
    let mut seen: Vec<String> = Vec::new();
    let done = ws
        .until(T, |v| {
            if v["type"] == "task_update" && v["data"]["task_id"] == id.as_str() {
                let status = v["data"]["status"].as_str().unwrap_or("?").to_string();
                if seen.last() != Some(&status) {
                    seen.push(status);
                }
                return v["data"]["status"] == "succeeded";
            }
            false
        })
        .expect("a task_update with status succeeded");
    assert_eq!(
        (
            done["data"]["steps_done"].clone(),
            done["data"]["steps_total"].clone()
        ),
        (json!(2), json!(2)),
        "{done}"
    );
    assert_eq!(seen, ["queued", "running", "succeeded"], "{seen:?}");
    ws.close();
}

/// A conductor stopped after a dispatch but before its run's first write (the run file is
/// first written with the first step's intent) leaves the task `running` with no run file:
/// the next start queues it again (nothing was sent), drops the unwritten run from the
/// task, and runs it once.
#[test]
fn stub_a_dispatch_stopped_before_its_run_file_is_queued_again_and_runs_once() {
    let dir = TempDir::new("tasks-unwritten-run");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let tasks_dir = dir.join("state").join("tasks");
    std::fs::create_dir_all(&tasks_dir).unwrap();
    let at = "2026-01-01T00:00:00.000Z";
    let id = "task_unwritten00000001";
    std::fs::write(
        tasks_dir.join(format!("{id}.json")),
        json!({
            "task_id": id, "title": "dispatched, never written", "status": "running",
            "kind": "codex",
            "input": {"prompt": "hello", "steps": [{"prompt": "hello"}], "cwd": null,
                      "timeout_s": 600, "max_attempts": 3, "priority": 0},
            "created_at": at, "updated_at": at, "started_at": at,
            "current_run_id": "run_unwritten", "priority": 0, "max_attempts": 3,
            "steps_total": 1, "steps_done": 0,
            "runs": [{"run_id": "run_unwritten", "attempt": 1, "status": "running", "started_at": at}],
        })
        .to_string(),
    )
    .unwrap();
    let c = tasks::start(&dir, &codexd.base);
    let t = c.wait_status(id, "succeeded", T);
    let refs: Vec<&Value> = t["task"]["runs"].as_array().unwrap().iter().collect();
    assert_eq!(refs.len(), 1, "{t:#}");
    assert_ne!(refs[0]["run_id"], "run_unwritten", "{t:#}");
    assert_eq!(refs[0]["status"], "succeeded", "{t:#}");
    let runs = t["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{t:#}");
    assert_eq!(runs[0]["steps"][0]["status"], "completed", "{t:#}");
    assert!(
        c.log_messages(id)
            .iter()
            .any(|m| m.starts_with("step 1/1 completed")),
        "{:#?}",
        c.log_messages(id)
    );
}

/// Issue 19 (codex#28897: the whole queue was sent at once when the limit reset): while
/// the usage limit holds the queue nothing is dispatched and each queued task shows
/// `held_until`; at the reset ONE task goes first, the probe, and only once its turn is
/// over (not hitting the limit) does the rest of the queue go, by itself.
#[test]
fn stub_usage_limit_reset_sends_one_probe_then_the_rest_of_the_queue() {
    let dir = TempDir::new("tasks-limit-probe");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let c = TaskConductor {
        d: tasks::spawn(&dir, &codexd.base, "mini-main", "primary")
            .env("BAA_CONDUCTOR_MAX_RUNNING_TASKS", "3")
            .start(),
    };
    let a = c.create(json!({"title": "uses up the limit", "prompt": "limit:6"}));
    c.wait_status(&a, "succeeded", T);
    let queued: Vec<String> = (0..3)
        .map(|i| c.create(json!({"title": format!("after {i}"), "prompt": format!("after {i}")})))
        .collect();
    let held = wait_for(T, || {
        let s = c.scheduler();
        (s["held"]["reason"] == "rate_limited").then_some(s)
    })
    .unwrap_or_else(|| panic!("never held: {:#}", c.runtime()));
    let until = held["held"]["until"].as_str().unwrap().to_string();
    assert_eq!(held["held"]["probe"], Value::Null, "{held:#}");
    for id in &queued {
        let t = wait_for(T, || {
            let t = c.task(id);
            (t["task"]["held_until"] == until.as_str()).then_some(t)
        })
        .unwrap_or_else(|| panic!("{id} not marked held: {:#}", c.task(id)));
        assert_eq!(t["runs"], json!([]), "{t:#}");
    }
    let done: Vec<Value> = queued
        .iter()
        .map(|id| c.wait_status(id, "succeeded", T))
        .collect();
    let until_ms = ms_from_rfc3339(&until).unwrap();
    let started = |t: &Value| ms_from_rfc3339(t["runs"][0]["started_at"].as_str().unwrap());
    let mut order: Vec<(u64, &Value)> = done.iter().map(|t| (started(t).unwrap(), t)).collect();
    order.sort_by_key(|(s, _)| *s);
    let (probe_start, probe) = order[0];
    assert!(
        probe_start + 1000 >= until_ms,
        "the probe went at {probe_start}, before {until_ms}"
    );
    let probe_turn_done = ms_from_rfc3339(
        probe["runs"][0]["steps"][0]["finished_at"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    for (s, t) in &order[1..] {
        assert!(
            *s >= probe_turn_done,
            "{} started at {s}, before the probe's turn ended at {probe_turn_done}",
            t["task"]["task_id"]
        );
    }
    for t in &done {
        assert_eq!(
            t["task"]["held_until"],
            Value::Null,
            "cleared when it ran: {t:#}"
        );
    }
    let log = c.d.log();
    for line in ["event=queue.held", "event=queue.released", "as the probe"] {
        assert!(log.contains(line), "no {line:?} in the log:\n{log}");
    }
    wait_for(T, || c.scheduler()["held"].is_null().then_some(()))
        .unwrap_or_else(|| panic!("still held: {:#}", c.scheduler()));
}

/// Issue 19: a probe whose turn hits the limit again extends the hold: the next task waits
/// for the new reset, not the old one.
#[test]
fn stub_usage_limit_probe_that_hits_the_limit_again_extends_the_hold() {
    let (_dir, _codexd, c) = stack("tasks-limit-probe-again", "normal");
    let a = c.create(json!({"title": "uses up the limit", "prompt": "limit:3"}));
    c.wait_status(&a, "succeeded", T);
    // The probe (first by priority) uses the limit up again.
    let probe = c.create(json!({"title": "probe", "prompt": "limit:4", "priority": 5}));
    let next = c.create(json!({"title": "next", "prompt": "after"}));
    let p = c.wait_status(&probe, "succeeded", T);
    let n = c.wait_status(&next, "succeeded", T);
    let probe_end = ms_from_rfc3339(p["runs"][0]["finished_at"].as_str().unwrap()).unwrap();
    let next_start = ms_from_rfc3339(n["runs"][0]["started_at"].as_str().unwrap()).unwrap();
    // limit:4 at the probe's turn: the new reset is at least 3 s after the probe ended.
    assert!(
        next_start >= probe_end + 2500,
        "next started {} ms after the probe that hit the limit again",
        next_start as i64 - probe_end as i64
    );
    assert!(
        c.d.log().contains("hit the usage limit again"),
        "{}",
        c.d.log()
    );
}

/// Issue 19: the hold survives a codexd restart AND a conductor restart (one started while
/// codexd is down dispatches nothing either), and the queue resumes by itself at the reset.
#[test]
fn stub_usage_limit_hold_survives_codexd_and_conductor_restarts_and_resumes_at_the_reset() {
    let dir = TempDir::new("tasks-limit-restarts");
    let dirs = Dirs::under(&dir.child("cx"));
    let mut codexd = start_running(with_stub(&dirs, "normal"));
    let base = codexd.base.clone();
    let mut c = tasks::start(&dir, &base);
    let a = c.create(json!({"title": "uses up the limit", "prompt": "limit:12"}));
    c.wait_status(&a, "succeeded", T);
    let b = c.create(json!({"title": "waits", "prompt": "after"}));
    let held = wait_for(T, || {
        let t = c.task(&b);
        t["task"]["held_until"].as_str().map(str::to_string)
    })
    .unwrap_or_else(|| panic!("never held: {:#}", c.runtime()));
    // Both go down; the conductor comes back first, to a codexd that does not answer.
    c.d.kill9();
    codexd.terminate(T);
    let c = tasks::start(&dir, &base);
    wait_for(T, || {
        (c.scheduler()["held"]["reason"] == "codexd_unreachable").then_some(())
    })
    .unwrap_or_else(|| panic!("not held: {:#}", c.runtime()));
    c.wait_passes(3);
    assert_eq!(c.status(&b), "queued");
    assert_eq!(c.task(&b)["runs"], json!([]));
    // codexd comes back on its address and reports the hold it persisted.
    let _codexd = start_running(with_stub(&dirs, "normal").env("BAA_CODEXD_LOCAL_API_BASE", &base));
    let s = wait_for(T, || {
        let s = c.scheduler();
        (s["held"]["reason"] == "rate_limited").then_some(s)
    })
    .unwrap_or_else(|| panic!("not held by the limit: {:#}", c.runtime()));
    assert_eq!(s["held"]["until"], held.as_str(), "{s:#}");
    assert_eq!(
        c.runtime()["daemon"]["codexHold"]["until"],
        held.as_str(),
        "{:#}",
        c.runtime()
    );
    let t = c.wait_status(&b, "succeeded", T);
    let started = ms_from_rfc3339(t["runs"][0]["started_at"].as_str().unwrap()).unwrap();
    let until = ms_from_rfc3339(&held).unwrap();
    assert!(
        started + 1000 >= until,
        "started at {started}, held until {until}"
    );
    assert_eq!(runs(&t), [(1, "succeeded".to_string())], "{t:#}");
}

/// Issue 19: a step that uses the limit up stops its run before the next step (which would
/// fail at once and spend an attempt): the task goes back to the queue, held, and goes on at
/// that step after the reset.
#[test]
fn stub_usage_limit_used_up_mid_task_holds_its_next_step_until_the_reset() {
    let (_dir, _codexd, c) = stack("tasks-limit-mid-task", "normal");
    let id = c.create(json!({"title": "two steps", "max_attempts": 1, "steps": [
        {"prompt": "limit:5"}, {"prompt": "after the limit"}]}));
    let t = c.wait_status(&id, "succeeded", T);
    assert_eq!(
        runs(&t),
        [(1, "paused".to_string()), (2, "succeeded".to_string())],
        "{t:#}"
    );
    let first = &t["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["attempt"] == 1)
        .unwrap()["steps"];
    let second = t["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["attempt"] == 2)
        .unwrap();
    assert_eq!(first.as_array().map(Vec::len), Some(1), "{t:#}");
    assert_eq!(second["first_step"], 1, "{t:#}");
    let line = c
        .log_messages(&id)
        .into_iter()
        .find(|m| m.contains("usage limit is used up until"))
        .unwrap_or_else(|| panic!("no hold line: {:#?}", c.log_messages(&id)));
    let until = line
        .split("until ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .and_then(ms_from_rfc3339)
        .unwrap_or_else(|| panic!("no time in {line:?}"));
    let started = ms_from_rfc3339(second["started_at"].as_str().unwrap()).unwrap();
    assert!(
        started + 1000 >= until,
        "step 2 went at {started}, held until {until}"
    );
}
