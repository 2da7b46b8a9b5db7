//! Worker mode end to end: the conductor runs tasks as turns of the real pinned `codex
//! app-server` (through codexd) against the loopback mock model. What the model receives
//! is counted per prompt (`count_prompt_starts`), so "never sent twice" is checked where it
//! matters: at the model. Replies held on a `Gate` keep a turn in flight for as long as a
//! test needs, without sleeping.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::codexd::{start_running, with_mock_codex};
use crate::support::daemon::{wait_for, Daemon};
use crate::support::mock_model::{add_file_patch, keywords, Gate, Reply};
use crate::support::tasks::{self, runs, RealRig, TaskConductor};

const T: Duration = Duration::from_secs(60);

type Rig = RealRig;

fn rig(tag: &str) -> Rig {
    RealRig::new(tag)
}

impl Rig {
    fn conductor(&self) -> TaskConductor {
        tasks::start(&self.dir, &self.codexd.base)
    }

    /// A script that holds the first turn whose prompt contains `needle` on `gate`, and
    /// answers everything else by keywords.
    fn hold_first(&self, needle: &'static str, gate: &Gate) {
        let seen = Arc::new(AtomicUsize::new(0));
        let gate = gate.clone();
        self.home.mock.set_script(move |call| {
            if call.prompt.contains(needle)
                && call.tool_output().is_none()
                && seen.fetch_add(1, Ordering::SeqCst) == 0
            {
                return keywords(call).held(&gate);
            }
            keywords(call)
        });
    }

    /// Releases `gate` and runs one more task to success: whatever the model was going to
    /// get for the tasks before has reached it by then, so counting afterwards is final.
    fn release_and_settle(&self, c: &TaskConductor, gate: &Gate) {
        gate.release();
        let next = c.create(json!({"title": "after", "prompt": "next job", "cwd": self.home.work}));
        c.wait_status(&next, "succeeded", T);
    }

    /// Waits until the model received a turn start containing `needle`.
    fn wait_model(&self, needle: &str, n: usize) {
        wait_for(T, || {
            (self.home.mock.count_prompt_starts(needle) >= n).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "the model never got {needle:?} {n} time(s); codexd log:\n{}",
                self.codexd.log()
            )
        });
    }
}

fn step_statuses(run: &Value) -> Vec<String> {
    run["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn real_three_step_task_runs_in_order_in_one_thread_with_command_and_file_lines() {
    let r = rig("tasks-real-3");
    let target = r.home.work.join("made-by-step-two.txt");
    let patch = add_file_patch(&target, "hello from step two");
    r.home.mock.set_script(move |call| {
        if call.tool_output().is_some() {
            return keywords(call);
        }
        if call.prompt.contains("step one") {
            Reply::exec("call_1", "echo from-step-one")
        } else if call.prompt.contains("step two") {
            Reply::apply_patch("call_2", patch.clone())
        } else {
            keywords(call)
        }
    });
    let c = r.conductor();
    let id = c.create(json!({"title": "three steps", "cwd": r.home.work, "steps": [
        {"prompt": "step one: run a command"}, {"prompt": "step two: add a file"}, {"prompt": "step three: summarize"}]}));
    let t = c.wait_status(&id, "succeeded", T);
    let run = &t["runs"][0];
    assert_eq!(
        step_statuses(run),
        ["completed", "completed", "completed"],
        "{t:#}"
    );
    assert_eq!(
        run["final_message"], "mock reply: step three: summarize",
        "{t:#}"
    );
    assert!(target.is_file(), "step two's file was not written");
    // One thread: each step's turn is in the same session, in order.
    let sid = run["session_id"].as_str().unwrap();
    let turns = crate::support::codexd::CodexApi::codexd(&r.codexd).turns_page(sid, 10, None);
    let turn_ids: Vec<&Value> = turns["turns"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|t| &t["turnId"])
        .collect();
    let step_turns: Vec<&Value> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["turn_id"])
        .collect();
    assert_eq!(turn_ids, step_turns, "{turns:#}");
    let order: Vec<String> = r
        .home
        .mock
        .requests()
        .iter()
        .map(baa::common::responses::last_user_text)
        .filter(|p| p.starts_with("step "))
        .collect();
    let mut dedup = order.clone();
    dedup.dedup();
    assert_eq!(
        dedup,
        [
            "step one: run a command",
            "step two: add a file",
            "step three: summarize"
        ]
    );
    for step in ["step one", "step two", "step three"] {
        assert_eq!(r.home.mock.count_prompt_starts(step), 1, "{step}");
    }
    let msgs = c.log_messages(&id);
    let has = |s: &str| msgs.iter().any(|m| m.contains(s));
    assert!(
        has("command `") && has("echo from-step-one") && has("exited 0"),
        "{msgs:#?}"
    );
    assert!(has(&format!("file add: {}", target.display())), "{msgs:#?}");
    assert!(
        has("step 3/3 completed") && has("final message: mock reply: step three"),
        "{msgs:#?}"
    );
}

/// The statuses the codexd session recorded for its turns, oldest first.
fn codexd_turn_statuses(codexd: &Daemon, session_id: &str) -> Vec<(String, String)> {
    let page = crate::support::codexd::CodexApi::codexd(codexd).turns_page(session_id, 20, None);
    let mut v: Vec<(String, String)> = page["turns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["turnId"].as_str().unwrap_or_default().to_string(),
                t["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.reverse();
    v
}

#[test]
fn real_codexd_sigkill_mid_task_retries_in_attempt_two_without_resending_completed_steps() {
    let mut r = rig("tasks-real-cxkill");
    let gate = Gate::new();
    r.hold_first("step two", &gate);
    let c = r.conductor();
    let id = c.create(json!({"title": "survives codexd", "cwd": r.home.work, "max_attempts": 5, "steps": [
        {"prompt": "step one: first"}, {"prompt": "step two: killed here"}, {"prompt": "step three: last"}]}));
    r.wait_model("step two", 1);
    // Killed once codexd has answered the turn's 202 (so the turn is on its disk): a kill
    // before that answer is a lost acknowledgement, which the conductor settles by waiting
    // SEND_SETTLE_MS for the turn to show up before it sends again — another path. Under
    // load the model can see the turn while codexd is still writing it.
    wait_for(T, || {
        let msgs = c.log_messages(&id);
        msgs.iter()
            .any(|m| m.starts_with("step 2/3 started"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("step 2 never started: {:#?}", c.log_messages(&id)));
    let port = r.codexd.port();
    r.codexd.kill9();
    // launchd restarts codexd (same port, same state: the session and its thread survive);
    // the turn died with the old child, so the run fails retryable and attempt 2 goes on.
    r.codexd = start_running(with_mock_codex(&r.dirs, &r.home).env(
        "BAA_CODEXD_LOCAL_API_BASE",
        format!("http://127.0.0.1:{port}"),
    ));
    gate.release();
    let t = c.wait_task(&id, "a failed retryable first run", T, |t| {
        t["runs"].as_array().into_iter().flatten().any(|r| {
            r["attempt"] == 1 && r["status"] == "failed" && r["error"]["retryable"] == true
        })
    });
    let first = t["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["attempt"] == 1)
        .unwrap();
    assert_eq!(step_statuses(first)[0], "completed", "{t:#}");
    let t = c.wait_status(&id, "succeeded", T);
    let attempts = runs(&t);
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert_eq!(attempts.last().unwrap().1, "succeeded", "{attempts:?}");
    let last = t["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "succeeded")
        .unwrap();
    // Attempt 2 records only the steps it ran: from the first one not completed.
    let ran: Vec<(u64, String)> = last["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["index"].as_u64().unwrap_or(99),
                s["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        ran,
        [(1, "completed".to_string()), (2, "completed".to_string())],
        "{t:#}"
    );
    let first = t["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["attempt"] == 1)
        .unwrap();
    assert_eq!(
        first["session_id"], last["session_id"],
        "the retry left the thread: {t:#}"
    );
    assert_eq!(first["thread_id"], last["thread_id"], "{t:#}");
    // Step one completed in attempt 1 and was never sent again; step two was in flight when
    // codexd died, so attempt 2 sends it again (once), then step three once.
    assert_eq!(r.home.mock.count_prompt_starts("step one"), 1);
    assert_eq!(r.home.mock.count_prompt_starts("step two"), 2);
    assert_eq!(r.home.mock.count_prompt_starts("step three"), 1);
    assert_eq!(
        last["final_message"], "mock reply: step three: last",
        "{t:#}"
    );
}

#[test]
fn real_conductor_sigkill_mid_step_then_restart_finishes_and_each_prompt_reaches_the_model_once() {
    conductor_sigkill_mid_step("tasks-real-ckill", false);
}

/// The same, but the held turn finishes while no conductor runs: the restart records its
/// outcome from codexd and goes on with the next step.
#[test]
fn real_conductor_sigkill_mid_step_turn_finishes_while_down_then_restart_records_it_once() {
    conductor_sigkill_mid_step("tasks-real-ckill-done", true);
}

fn conductor_sigkill_mid_step(tag: &str, finish_while_down: bool) {
    let r = rig(tag);
    let gate = Gate::new();
    r.hold_first("step two", &gate);
    let mut c = r.conductor();
    let id = c.create(json!({"title": "survives the conductor", "cwd": r.home.work, "steps": [
        {"prompt": "step one: first"}, {"prompt": "step two: held"}, {"prompt": "step three: last"}]}));
    r.wait_model("step two", 1);
    // The model can see the turn a moment before the conductor has codexd's 202 for it.
    let t = wait_for(T, || {
        let t = c.task(&id);
        t["runs"][0]["steps"][1]["turn_id"].is_string().then_some(t)
    })
    .unwrap_or_else(|| panic!("step two's turn id was never persisted: {:#}", c.task(&id)));
    let run = &t["runs"][0];
    let held_turn = run["steps"][1]["turn_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let sid = run["session_id"].as_str().unwrap().to_string();
    c.d.kill9();
    if finish_while_down {
        gate.release();
        wait_for(T, || {
            let turns = codexd_turn_statuses(&r.codexd, &sid);
            turns
                .iter()
                .any(|(id, st)| *id == held_turn && st == "completed")
                .then_some(())
        })
        .unwrap_or_else(|| panic!("turn {held_turn} never completed at codexd"));
    }
    let c = TaskConductor {
        d: tasks::spawn(&r.dir, &r.codexd.base, "mini-main", "primary").start(),
    };
    // The restarted conductor resumes the run (following the turn still in flight, or
    // reading the one that ended); only then does the model answer.
    c.wait_task(&id, "its run resumed after the restart", T, |_| {
        c.log_messages(&id)
            .iter()
            .any(|m| m.contains("resumed by mini-main"))
    });
    gate.release();
    let t = c.wait_status(&id, "succeeded", T);
    let succeeded: Vec<&Value> = t["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "succeeded")
        .collect();
    assert_eq!(succeeded.len(), 1, "{t:#}");
    assert_eq!(
        step_statuses(succeeded[0]),
        ["completed", "completed", "completed"],
        "{t:#}"
    );
    for step in ["step one", "step two", "step three"] {
        assert_eq!(r.home.mock.count_prompt_starts(step), 1, "{step}: {t:#}");
    }
    let sid = succeeded[0]["session_id"].as_str().unwrap();
    assert_eq!(
        codexd_turn_statuses(&r.codexd, sid).len(),
        3,
        "one codexd turn per step"
    );
}

#[test]
fn real_standby_takes_the_lease_after_leader_sigkill_and_finishes_the_queue() {
    let r = rig("tasks-real-standby");
    let gate = Gate::new();
    r.hold_first("job a", &gate);
    let mut leader = r.conductor();
    let standby = TaskConductor {
        d: tasks::spawn(&r.dir, &r.codexd.base, "mini-standby", "standby").start(),
    };
    let ids: Vec<String> = ["job a", "job b", "job c"]
        .iter()
        .map(|p| leader.create(json!({"title": p, "prompt": p, "cwd": r.home.work})))
        .collect();
    r.wait_model("job a", 1);
    assert_eq!(standby.runtime()["daemon"]["schedulerEnabled"], false);
    leader.d.kill9();
    // The lease TTL is 2 s: the standby takes over, reconciles job a's turn, runs the rest.
    wait_for(T, || {
        (standby.runtime()["daemon"]["leaseState"] == "leader").then_some(())
    })
    .unwrap_or_else(|| panic!("the standby never took the lease:\n{}", standby.d.log()));
    gate.release();
    for id in &ids {
        standby.wait_status(id, "succeeded", T);
    }
    let msgs = standby.log_messages(&ids[0]);
    assert!(
        msgs.iter().any(|m| m.contains("resumed by mini-standby")),
        "job a's run was not resumed by the standby: {msgs:#?}"
    );
    for p in ["job a", "job b", "job c"] {
        assert_eq!(r.home.mock.count_prompt_starts(p), 1, "{p}");
    }
    assert_eq!(standby.runtime()["daemon"]["schedulerEnabled"], true);
}

#[test]
fn real_step_timeout_interrupts_the_turn_and_fails_the_run_with_step_timeout() {
    let r = rig("tasks-real-timeout");
    let gate = Gate::new();
    r.hold_first("step slowpoke", &gate);
    let c = r.conductor();
    // 6 s: long enough for the turn to reach the (held) model even on a loaded machine,
    // so the timeout cuts a turn the model is working on.
    let id = c.create(
        json!({"title": "too slow", "cwd": r.home.work, "timeout_s": 6, "max_attempts": 1,
        "prompt": "step slowpoke: never answered in time"}),
    );
    let t = c.wait_status(&id, "failed", T);
    let run = &t["runs"][0];
    assert_eq!(run["status"], "failed", "{t:#}");
    assert_eq!(run["error"]["code"], "step_timeout", "{t:#}");
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("timeout of 6 s"),
        "{t:#}"
    );
    let sid = run["session_id"].as_str().unwrap();
    assert_eq!(
        codexd_turn_statuses(&r.codexd, sid)
            .into_iter()
            .map(|t| t.1)
            .collect::<Vec<_>>(),
        ["interrupted"],
        "codexd's view of the turn"
    );
    let msgs = c.log_messages(&id);
    assert!(
        msgs.iter()
            .any(|m| m.contains("the step ran past its timeout")),
        "{msgs:#?}"
    );
    // Nothing more goes to the model for it: the next task's turn is the only new request.
    // (The one request normally arrived before the timeout; on a badly loaded machine the
    // timeout may cut the turn before it did.)
    let asked = r.home.mock.count_prompt("slowpoke");
    assert!(asked <= 1, "{:#?}", r.home.mock.requests());
    r.release_and_settle(&c, &gate);
    assert_eq!(
        r.home.mock.count_prompt("slowpoke"),
        asked,
        "{:#?}",
        r.home.mock.requests()
    );
}

#[test]
fn real_cancel_of_a_running_task_interrupts_the_turn_and_the_model_gets_no_more_requests() {
    let r = rig("tasks-real-cancel");
    let gate = Gate::new();
    r.hold_first("step long", &gate);
    let c = r.conductor();
    let id = c.create(json!({"title": "to cancel", "cwd": r.home.work, "steps": [
        {"prompt": "step long: held"}, {"prompt": "step after: never sent"}]}));
    r.wait_model("step long", 1);
    c.cancel(&id).expect(200);
    let t = c.wait_status(&id, "canceled", T);
    let run = &t["runs"][0];
    assert_eq!(run["status"], "canceled", "{t:#}");
    let sid = run["session_id"].as_str().unwrap();
    assert_eq!(
        codexd_turn_statuses(&r.codexd, sid)
            .into_iter()
            .map(|t| t.1)
            .collect::<Vec<_>>(),
        ["interrupted"],
        "codexd's view of the turn"
    );
    r.release_and_settle(&c, &gate);
    assert_eq!(
        r.home.mock.count_prompt("step long"),
        1,
        "{:#?}",
        r.home.mock.requests()
    );
    assert_eq!(
        r.home.mock.count_prompt("step after"),
        0,
        "{:#?}",
        r.home.mock.requests()
    );
    assert_eq!(
        c.cancel(&id).status,
        409,
        "a finished task cannot be canceled again"
    );
}

/// Issue 19: a task's `usage_total` is the sum of what its turns used. The model answers
/// each request with its own usage; step one makes two model requests (a command, then
/// the answer after its output) and step two one. codex reports the thread's CUMULATIVE
/// usage after each turn, so adding the steps' records up would count step one twice.
#[test]
fn real_task_usage_total_is_the_sum_of_the_usage_the_model_sent() {
    let r = rig("tasks-real-usage");
    r.home.mock.set_script(move |call| {
        if call.tool_output().is_some() {
            return keywords(call).usage(300, 100, 40, 8);
        }
        if call.prompt.contains("step one") {
            Reply::exec("call_1", "echo usage-one").usage(1000, 200, 50, 10)
        } else {
            keywords(call).usage(2000, 1500, 70, 20)
        }
    });
    let c = r.conductor();
    let id = c.create(json!({"title": "cost", "cwd": r.home.work, "steps": [
        {"prompt": "step one: run a command"}, {"prompt": "step two: summarize"}]}));
    let t = c.wait_status(&id, "succeeded", T)["task"].clone();
    assert_eq!(
        t["usage_total"],
        json!({"input_tokens": 3300, "cached_input_tokens": 1800, "output_tokens": 160, "reasoning_tokens": 38}),
        "{t:#}"
    );
    // The summary counts it today and in the last 7 days, under no schedule.
    let s = c.summary();
    for period in ["today", "last_7_days"] {
        let p = &s["usage"][period];
        assert_eq!(p["total"], t["usage_total"], "{period}: {s:#}");
        assert_eq!(
            p["by_schedule"]["none"], t["usage_total"],
            "{period}: {s:#}"
        );
        assert_eq!(p["tasks"], 1, "{period}: {s:#}");
    }
}

/// Issue 19: the provider's rate-limit headers (the real app-server turns them into
/// `account/rateLimits/updated`) hold the queue; at the reset one probe goes first, and
/// the rest of the queue only after its turn, by itself.
#[test]
fn real_rate_limit_headers_hold_the_queue_then_one_probe_then_the_rest() {
    let r = rig("tasks-real-limit");
    let reset = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let script_reset = reset.clone();
    r.home.mock.set_script(move |call| {
        let reply = keywords(call);
        if !call.prompt.contains("use it up") {
            return reply.header("x-codex-primary-used-percent", "10");
        }
        // Counted from the model's answer: a loaded machine may start the turn late.
        let now_s = baa::common::time::now_ms() / 1000;
        let at =
            match script_reset.compare_exchange(0, now_s + 6, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => now_s + 6,
                Err(earlier) => earlier,
            };
        reply
            .header("x-codex-primary-used-percent", "100")
            .header("x-codex-primary-window-minutes", "300")
            .header("x-codex-primary-reset-at", at.to_string())
    });
    let c = TaskConductor {
        d: tasks::spawn(&r.dir, &r.codexd.base, "mini-main", "primary")
            .env("BAA_CONDUCTOR_MAX_RUNNING_TASKS", "3")
            .start(),
    };
    let a = c.create(json!({"title": "limit", "prompt": "use it up", "cwd": r.home.work}));
    c.wait_status(&a, "succeeded", T);
    let queued: Vec<String> = (0..3)
        .map(|i| c.create(json!({"title": format!("after {i}"), "prompt": format!("after {i}"), "cwd": r.home.work})))
        .collect();
    let held = wait_for(T, || {
        let s = c.scheduler();
        (s["held"]["reason"] == "rate_limited").then_some(s)
    })
    .unwrap_or_else(|| panic!("never held: {:#}\ncodexd:\n{}", c.runtime(), r.codexd.log()));
    let until = ms_from(&held["held"]["until"]);
    assert_eq!(until / 1000, reset.load(Ordering::SeqCst), "{held:#}");
    let done: Vec<Value> = queued
        .iter()
        .map(|id| c.wait_status(id, "succeeded", T))
        .collect();
    let mut starts: Vec<(u64, &Value)> = done
        .iter()
        .map(|t| (ms_from(&t["runs"][0]["started_at"]), t))
        .collect();
    starts.sort_by_key(|(s, _)| *s);
    let (first, probe) = starts[0];
    assert!(
        first + 1000 >= until,
        "the probe went at {first}, held until {until}"
    );
    let probe_turn = ms_from(&probe["runs"][0]["steps"][0]["finished_at"]);
    for (s, t) in &starts[1..] {
        assert!(
            *s >= probe_turn,
            "{} went at {s}, before the probe's turn ended at {probe_turn}",
            t["task"]["task_id"]
        );
    }
}

#[track_caller]
fn ms_from(v: &Value) -> u64 {
    baa::common::time::ms_from_rfc3339(v.as_str().unwrap_or_default())
        .unwrap_or_else(|| panic!("not a time: {v}"))
}
