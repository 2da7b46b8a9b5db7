//! What a Codex user reads back and does after a turn, against the real pinned
//! `codex app-server` on the offline mock model: the full turn record (commands with exit
//! codes, file changes, the diff), turn history paged past the event ring, `lastTurnStatus`
//! while turns run, threads, review of an uncommitted change, and the session lifecycle
//! (compact, fork, delete, the archive of idle sessions). The proxy test runs through the
//! conductor's `/v1/codex/…` routes, the others against codexd directly.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::check::compare;
use crate::support::codex::MockCodexHome;
use crate::support::codexd::*;
use crate::support::conductor;
use crate::support::daemon::{wait_for, Daemon};
use crate::support::http::get;
use crate::support::mock_model::{
    add_file_patch, is_review_request, keywords, reply_for_prompt, review_findings, Gate, Reply,
};
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);

fn start(home: &MockCodexHome, dirs: &Dirs) -> Daemon {
    start_running(with_mock_codex(dirs, home))
}

fn sid_of(session: &Value) -> String {
    session["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no sessionId: {session}"))
        .to_string()
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.email=it@example.invalid", "-c", "user.name=it"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("git {args:?}: {e}"));
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn real_codex_turn_record_has_commands_with_exit_codes_file_changes_and_the_diff() {
    let home = MockCodexHome::new("history-record");
    let target = home.work.join("patched.txt");
    let patch = add_file_patch(&target, "hello from mock patch");
    // One turn: a command that exits 3, then a patch adding a file, then the answer.
    home.mock.set_script(move |call| {
        if !call.prompt.contains("do the work") {
            return keywords(call);
        }
        match call.tool_calls_so_far() {
            0 => Reply::exec("call_cmd_1", "echo working; exit 3"),
            1 => Reply::apply_patch("call_patch_1", patch.clone()),
            _ => Reply::text("work done"),
        }
    });
    let tmp = TempDir::new("history-record-dirs");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = start(&home, &dirs);
    let api = CodexApi::codexd(&d);
    let sid = sid_of(&api.create_session(json!({"cwd": home.work})));
    let tid = api.turn(&sid, "do the work");
    let s = api.wait_turn_done(&sid, &tid, T);
    let r = &s["lastTurn"];
    assert_eq!(
        (&r["status"], &r["kind"], &r["finalMessage"]),
        (&json!("completed"), &json!("turn"), &json!("work done")),
        "{r:#}"
    );
    assert_eq!(r["commandCount"], 1, "{r:#}");
    let cmd = &r["commands"][0];
    assert!(
        cmd["command"]
            .as_str()
            .is_some_and(|c| c.contains("echo working; exit 3")),
        "{cmd}"
    );
    assert_eq!(
        (&cmd["exitCode"], &cmd["status"]),
        (&json!(3), &json!("failed")),
        "{cmd}"
    );
    assert!(cmd["durationMs"].is_u64(), "{cmd}");
    assert_eq!(
        r["fileChanges"],
        json!([{"path": target, "kind": "add"}]),
        "{r:#}"
    );
    let diff = r["diff"]
        .as_str()
        .unwrap_or_else(|| panic!("no diff: {r:#}"));
    assert!(
        diff.contains("+++ b/patched.txt") && diff.contains("+hello from mock patch"),
        "{diff}"
    );
    assert_eq!(r["diffTruncated"], false, "{r:#}");
    assert_eq!(r["diffBytes"], diff.len(), "{r:#}");
    assert!(r["usage"].is_object() && r["durationMs"].is_u64(), "{r:#}");

    // The same record from the app-server's history, with codexd's usage and diff merged in.
    let page = api.turns_page(&sid, 5, None);
    assert_eq!(page["source"], "app-server", "{page:#}");
    let listed = &page["turns"][0];
    for key in [
        "turnId",
        "status",
        "commands",
        "fileChanges",
        "diff",
        "usage",
        "finalMessage",
    ] {
        assert_eq!(
            listed[key], r[key],
            "{key}: listed {listed:#}\nlastTurn {r:#}"
        );
    }

    // The list and status carry only a summary; the session's hot file too.
    let listed = get(&d.url("/v1/codexd/sessions")).expect(200);
    let summary = &listed["data"]["sessions"][0]["lastTurn"];
    assert_eq!(
        (
            &summary["summary"],
            &summary["commandCount"],
            &summary["diff"]
        ),
        (&json!(true), &json!(1), &Value::Null),
        "{summary:#}"
    );
    let hot = dirs.state.join(format!("sessions/hot/{sid}.json"));
    let stored = std::fs::read_to_string(&hot).unwrap();
    assert!(
        stored.contains(r["turnId"].as_str().unwrap()) && !stored.contains("hello from mock patch"),
        "{stored}"
    );
}

#[test]
fn last_turn_status_was_null_during_a_first_turn_and_stale_during_later_ones() {
    let home = MockCodexHome::new("history-inprogress");
    let gates = [Gate::new(), Gate::new()];
    let held = gates.clone();
    home.mock.set_script(move |call| {
        let reply = Reply::text(reply_for_prompt(&call.prompt));
        match call.prompt.as_str() {
            "first held" => reply.held(&held[0]),
            "second held" => reply.held(&held[1]),
            _ => reply,
        }
    });
    let tmp = TempDir::new("history-inprogress-dirs");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = start(&home, &dirs);
    let api = CodexApi::codexd(&d);
    let sid = sid_of(&api.create_session(json!({"cwd": home.work})));

    for (prompt, gate) in ["first held", "second held"].iter().zip(&gates) {
        let accepted = api.start_turn(&sid, prompt).expect(202);
        let tid = accepted["data"]["turnId"].as_str().unwrap().to_string();
        let from_202 = &accepted["data"]["session"];
        assert_eq!(
            (&from_202["lastTurnId"], &from_202["lastTurnStatus"]),
            (&json!(tid), &json!("inProgress")),
            "{from_202:#}"
        );
        // The model holds the reply: the turn is running for as long as this checks.
        let s = api.session(&sid);
        assert_eq!(
            (
                &s["lastTurnId"],
                &s["lastTurnStatus"],
                &s["lastTurn"]["status"],
                &s["status"],
                &s["threadStatus"]
            ),
            (
                &json!(tid),
                &json!("inProgress"),
                &json!("inProgress"),
                &json!("active"),
                &json!("active")
            ),
            "{s:#}"
        );
        gate.release();
        let s = api.wait_turn_done(&sid, &tid, T);
        assert_eq!(
            (
                &s["lastTurnStatus"],
                &s["lastTurn"]["finalMessage"],
                &s["status"],
                &s["threadStatus"]
            ),
            (
                &json!("completed"),
                &json!(reply_for_prompt(prompt)),
                &json!("active"),
                &json!("idle")
            ),
            "{s:#}"
        );
    }
}

#[test]
fn real_codex_turns_page_through_more_turns_than_the_event_ring_holds() {
    let home = MockCodexHome::new("history-paging");
    let tmp = TempDir::new("history-paging-dirs");
    let dirs = Dirs::under(&tmp.child("root"));
    let mut d = start_running(with_mock_codex(&dirs, &home).env("BAA_CODEXD_RECENT_EVENTS", "20"));
    let api = CodexApi::codexd(&d);
    let sid = sid_of(&api.create_session(json!({"cwd": home.work})));
    let prompts: Vec<String> = (1..=5).map(|i| format!("paged turn {i}")).collect();
    let mut ids = Vec::new();
    for p in &prompts {
        let tid = api.turn(&sid, p);
        api.wait_turn_done(&sid, &tid, T);
        ids.push(tid);
    }
    // The recent-events ring no longer holds the first turn's events.
    let status = get(&d.url("/v1/codexd/status")).expect(200);
    let ring = status["data"]["snapshot"]["recentEvents"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(ring.len() <= 20, "{} events in the ring", ring.len());
    assert!(
        !ring
            .iter()
            .any(|e| e["detail"]["turnId"] == ids[0].as_str()),
        "the first turn is still in the ring"
    );

    let check = |api: &CodexApi, with_usage: bool| {
        let (turns, pages) = api.all_turns(&sid, 2);
        let got: Vec<&str> = turns
            .iter()
            .map(|t| t["turnId"].as_str().unwrap_or("?"))
            .collect();
        let want: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
        assert_eq!(got, want, "newest first, every turn once");
        assert_eq!(pages, 3);
        for (t, p) in turns.iter().zip(prompts.iter().rev()) {
            assert_eq!(
                (&t["status"], &t["finalMessage"], t["usage"].is_object()),
                (&json!("completed"), &json!(reply_for_prompt(p)), with_usage),
                "{t:#}"
            );
        }
    };
    check(&api, true);
    get(&d.url(&format!("/v1/codexd/sessions/{sid}/turns?limit=0")))
        .expect_error(400, "invalid_query");
    get(&d.url("/v1/codexd/sessions/cxs_nope/turns")).expect_error(404, "not_found");

    // With every event and codexd's own turn records gone, the history is still the
    // app-server's (only codexd's usage is missing).
    compare("exit code after SIGTERM", d.terminate(T).code(), Some(0));
    for f in [
        dirs.logs.join("events.jsonl"),
        dirs.state.join("recent-events.json"),
        dirs.state.join(format!("sessions/{sid}.turns.jsonl")),
    ] {
        std::fs::remove_file(&f).unwrap_or_else(|e| panic!("remove {}: {e}", f.display()));
    }
    let d = start(&home, &dirs);
    check(&CodexApi::codexd(&d), false);
}

#[test]
fn real_codex_sessions_compact_fork_delete_and_threads() {
    let home = MockCodexHome::new("history-lifecycle");
    let gate = Gate::new();
    let held = gate.clone();
    home.mock
        .set_script(move |call| match call.prompt.as_str() {
            "held in the fork" => Reply::text("fork answer").held(&held),
            _ => keywords(call),
        });
    let tmp = TempDir::new("history-lifecycle-dirs");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = start(&home, &dirs);
    let api = CodexApi::codexd(&d);
    let a = api.create_session(json!({"cwd": home.work, "metadata": {"k": "v"}}));
    let a_id = sid_of(&a);
    assert_eq!(
        (&a["status"], &a["threadStatus"]),
        (&json!("active"), &json!("idle")),
        "{a:#}"
    );
    api.compact(&a_id).expect_error(409, "no_history");
    api.fork(&a_id, json!({})).expect_error(409, "no_history");
    let t1 = api.turn(&a_id, "remember the word walrus");
    api.wait_turn_done(&a_id, &t1, T);

    // Compact: a turn of its own, 202 with its id.
    let c = api.compact(&a_id).expect(202);
    let ct = c["data"]["turnId"]
        .as_str()
        .unwrap_or_else(|| panic!("no compaction turn id: {c:#}"))
        .to_string();
    assert_ne!(ct, t1);
    let s = api.wait_turn_done(&a_id, &ct, T);
    assert_eq!(
        (&s["lastTurnStatus"], &s["lastTurn"]["kind"]),
        (&json!("completed"), &json!("compact")),
        "{s:#}"
    );

    // Fork: a new session on a new thread that carries the history.
    let f = api.fork(&a_id, json!({"purpose": "worker"})).expect(201);
    let b = &f["data"]["session"];
    let b_id = sid_of(b);
    assert_eq!(
        (&b["forkedFrom"], &b["purpose"], &b["metadata"]),
        (&json!(a_id), &json!("worker"), &json!({"k": "v"})),
        "{b:#}"
    );
    assert_ne!(b["threadId"], a["threadId"], "{b:#}");
    let seen_before = home.mock.count();
    let bt = api.turn(&b_id, "what was the word");
    api.wait_turn_done(&b_id, &bt, T);
    let asked = home.mock.requests()[seen_before..].to_vec();
    assert!(
        asked.iter().any(|r| r.to_string().contains("walrus")),
        "the fork's turn did not carry the source's history"
    );

    // Delete: 409 while a turn runs, then the thread is archived and the session leaves the
    // hot registry, still readable by id.
    let running = api.turn(&b_id, "held in the fork");
    let s = api.session(&b_id);
    assert_eq!(
        (&s["status"], &s["threadStatus"]),
        (&json!("active"), &json!("active")),
        "{s:#}"
    );
    api.delete_session(&b_id).expect_error(409, "turn_running");
    gate.release();
    api.wait_turn_done(&b_id, &running, T);
    let del = api.delete_session(&b_id).expect(200);
    assert_eq!(
        (&del["data"]["deleted"], &del["data"]["session"]["status"]),
        (&json!(true), &json!("archived")),
        "{del:#}"
    );
    let s = api.session(&b_id);
    assert_eq!(
        (
            &s["status"],
            &s["archiveReason"],
            &s["lastTurn"]["finalMessage"]
        ),
        (&json!("archived"), &json!("deleted"), &json!("fork answer")),
        "{s:#}"
    );
    let (open, archived) = (api.session_ids(false), api.session_ids(true));
    assert!(!open.contains(&b_id), "{b_id} still open: {open:?}");
    assert!(
        archived.contains(&b_id),
        "{b_id} not archived: {archived:?}"
    );
    api.start_turn(&b_id, "after the delete")
        .expect_error(409, "session_deleted");
    let again = api.delete_session(&b_id).expect(200);
    assert_eq!(again["data"]["alreadyDeleted"], true, "{again:#}");
    // The archived fork's history: its own two turns, then the source's it carries (whose
    // records, usage included, are the source's).
    let (turns, _) = api.all_turns(&b_id, 10);
    let ids: Vec<&str> = turns
        .iter()
        .map(|t| t["turnId"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        ids,
        [running.as_str(), bt.as_str(), ct.as_str(), t1.as_str()],
        "{turns:#?}"
    );
    assert!(turns.iter().all(|t| t["usage"].is_object()), "{turns:#?}");

    // Threads: A's thread with its session; B's among the archived ones.
    let cwd = encode(&home.work.display().to_string());
    let live = api.threads(&format!("cwd={cwd}&limit=10"));
    let by_id = |list: &Value, id: &Value| {
        list["threads"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| &t["threadId"] == id)
            .cloned()
    };
    let at = by_id(&live, &a["threadId"]).unwrap_or_else(|| panic!("A's thread missing: {live:#}"));
    assert_eq!(at["sessionId"], a_id.as_str(), "{at:#}");
    assert!(by_id(&live, &b["threadId"]).is_none(), "{live:#}");
    let archived = api.threads(&format!("cwd={cwd}&archived=true"));
    assert!(by_id(&archived, &b["threadId"]).is_some(), "{archived:#}");
    let searched = api.threads("search=walrus");
    assert!(by_id(&searched, &a["threadId"]).is_some(), "{searched:#}");
    get(&d.url("/v1/codexd/threads?archived=maybe")).expect_error(400, "invalid_query");
}

#[test]
fn review_of_an_uncommitted_change_in_a_temp_git_repo_through_the_conductor() {
    let home = MockCodexHome::new("history-review");
    let repo_dir = TempDir::new("history-review-repo");
    let repo = repo_dir.path().to_path_buf();
    std::fs::write(repo.join("lib.txt"), "one\n").unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "first"]);
    std::fs::write(repo.join("lib.txt"), "one\ntwo\n").unwrap();
    let file = repo.join("lib.txt");
    let gate = Gate::new();
    let held = gate.clone();
    home.mock.set_script(move |call| {
        if is_review_request(call) {
            review_findings("[P1] two is wrong", "the second line breaks it", &file).held(&held)
        } else {
            keywords(call)
        }
    });
    let tmp = TempDir::new("history-review-dirs");
    let dirs = Dirs::under(&tmp.child("root"));
    let cx = start(&home, &dirs);
    let cdir = TempDir::new("history-review-conductor");
    let c = conductor::spawn(&cdir, "mini-main", "primary")
        .env("BAA_CODEXD_LOCAL_API_BASE", &cx.base)
        .start();
    let api = CodexApi::conductor(&c);

    api.review(json!({"cwd": repo, "target": "everything"}))
        .expect_error(400, "invalid_request");
    api.review(json!({"target": "uncommittedChanges"}))
        .expect_error(400, "invalid_request");
    let r = api
        .review(json!({"cwd": repo, "target": "uncommittedChanges", "bogus": 1}))
        .expect(202);
    let sid = sid_of(&r["data"]["session"]);
    let tid = r["data"]["turnId"].as_str().unwrap().to_string();
    assert_eq!(
        r["data"]["session"]["lastTurnStatus"], "inProgress",
        "{r:#}"
    );
    gate.release();
    let s = api.wait_turn_done(&sid, &tid, T);
    let last = &s["lastTurn"];
    assert_eq!(
        (&last["status"], &last["kind"]),
        (&json!("completed"), &json!("review")),
        "{last:#}"
    );
    let review = last["review"]
        .as_str()
        .unwrap_or_else(|| panic!("no findings: {last:#}"));
    assert!(
        review.contains("[P1] two is wrong") && review.contains("the second line breaks it"),
        "{review}"
    );
    let prompt_sent = home
        .mock
        .requests()
        .iter()
        .any(|b| b.to_string().contains("provide prioritized findings"));
    assert!(prompt_sent, "codex never asked the model for a review");

    // Turn history and delete through the proxy too.
    let page = api.turns_page(&sid, 5, None);
    assert_eq!(page["turns"][0]["review"], last["review"], "{page:#}");
    let del = api.delete_session(&sid).expect(200);
    assert_eq!(del["data"]["session"]["status"], "archived", "{del:#}");
    api.delete_session("cxs_unknown")
        .expect_error(404, "not_found");
}

#[test]
fn sessions_idle_beyond_the_retention_leave_the_hot_registry_and_come_back_on_a_turn() {
    let tmp = TempDir::new("history-retention");
    let dirs = Dirs::under(&tmp.child("root"));
    let d =
        start_running(with_stub(&dirs, "normal").env("BAA_CODEXD_SESSION_RETENTION_MS", "1500"));
    let api = CodexApi::codexd(&d);
    let sid = sid_of(&api.create_session(json!({"cwd": "/tmp"})));
    let tid = api.turn(&sid, "before the archive");
    api.wait_turn_done(&sid, &tid, T);
    let hot = dirs.state.join(format!("sessions/hot/{sid}.json"));
    assert!(hot.is_file(), "{}", hot.display());
    wait_for(T, || {
        let listed = api.session_ids(false).contains(&sid);
        (!listed && !hot.exists()).then_some(())
    })
    .unwrap_or_else(|| panic!("session never left the hot registry; log:\n{}", d.log()));
    let file = dirs.state.join(format!("sessions/{sid}.json"));
    assert!(file.is_file(), "no {}", file.display());
    let s = api.session(&sid);
    assert_eq!(
        (
            &s["archiveReason"],
            &s["status"],
            &s["lastTurn"]["finalMessage"]
        ),
        (
            &json!("retention"),
            &json!("active"),
            &json!("stub reply: before the archive")
        ),
        "{s:#}"
    );
    let archived = api.session_ids(true);
    assert!(archived.contains(&sid), "{sid} not archived: {archived:?}");

    // A new turn brings it back to the hot registry (from the 202 on: it is running; the
    // stub streams a `slow` turn for about a second).
    let accepted = api.start_turn(&sid, "slow:100").expect(202);
    let back = &accepted["data"]["session"];
    assert_eq!(
        (&back["archivedAt"], &back["lastTurnStatus"]),
        (&Value::Null, &json!("inProgress")),
        "{back:#}"
    );
    let open = api.session_ids(false);
    assert!(open.contains(&sid), "{sid} not open again: {open:?}");
    let tid = accepted["data"]["turnId"].as_str().unwrap().to_string();
    let s = api.wait_turn_done(&sid, &tid, T);
    assert_eq!(s["lastTurnStatus"], "completed", "{s:#}");
}
