//! What the daemons log (issue 13 item 6, `docs/runtime/logs.md`): one `key=value` line per
//! lifecycle event, the access log at debug, nothing secret and no Rust debug formatting;
//! the host-operation audit file; and the daemon's own size-based rotation of
//! `BAA_LOG_FILE`, the file launchd's `StandardErrorPath` names.

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::codexd::{start_running, with_stub, CodexApi, Dirs};
use crate::support::conductor::TOKEN;
use crate::support::daemon::{wait_for, Spawn, STATUS_API};
use crate::support::http::{get, get_h, post, post_h};
use crate::support::tasks;
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);

/// The `event=` lines of a log, each split into its `(key, value)` pairs. Panics with the
/// line when one is not `key=value key=value …` (values bare, or quoted with `\` escapes).
fn event_lines(log: &str) -> Vec<Vec<(String, String)>> {
    log.lines()
        .filter_map(|l| l.find(" event=").map(|i| &l[i + 1..]))
        .map(|l| parse_pairs(l).unwrap_or_else(|| panic!("not key=value: {l}")))
        .collect()
}

fn parse_pairs(line: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return None;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => value.push(chars.next()?),
                    c => value.push(c),
                }
            }
            if !matches!(chars.next(), None | Some(' ')) {
                return None;
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ' ').collect();
            if value.is_empty() || value.contains('=') || value.contains('"') {
                return None;
            }
        }
        out.push((key, value));
    }
    Some(out)
}

/// The first line of event `name` whose fields include every `(key, value)` of `want`
/// (a value of `*` only asks that the key is there).
fn find<'a>(
    lines: &'a [Vec<(String, String)>],
    name: &str,
    want: &[(&str, &str)],
) -> Option<&'a Vec<(String, String)>> {
    lines.iter().find(|l| {
        let get = |k: &str| l.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        get("event") == Some(name)
            && want
                .iter()
                .all(|(k, v)| get(k).is_some_and(|got| *v == "*" || got == *v))
    })
}

#[test]
fn lifecycle_lines_of_a_walk_through_are_key_value_without_the_token_or_debug_formatting() {
    let dir = TempDir::new("logs-walk");
    let codexd = start_running(
        with_stub(&Dirs::under(&dir.child("cx")), "normal").env("RUST_LOG", "info,event=debug"),
    );
    let c = tasks::spawn(&dir, &codexd.base, "mini-main", "primary")
        .env("RUST_LOG", "info,event=debug")
        .start();
    let auth = [("Authorization", format!("Bearer {TOKEN}"))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // A session and a turn through the conductor's proxy.
    let api = CodexApi::conductor(&c);
    let v = api.create_session(json!({"purpose": "duplex"}));
    let sid = v["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string();
    let turn = api.turn(&sid, "hello there");
    let s = api.wait_turn_done(&sid, &turn, T);
    assert_eq!(s["lastTurnStatus"], "completed", "{s:#}");

    // An approval answered through the conductor, and one left to its timeout.
    let v = api.create_session(json!({"purpose": "duplex", "approvalTimeoutMs": 60000}));
    let asked = v["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string();
    let asked_turn = api.turn(&asked, "approval please");
    let rid = wait_for(T, || {
        let r = get_h(&c.url("/v1/codex/requests"), &auth).expect(200);
        r["data"]["requests"][0]["requestId"]
            .as_str()
            .map(str::to_string)
    })
    .expect("no pending approval request");
    post_h(
        &c.url(&format!("/v1/codex/requests/{rid}")),
        &json!({"decision": "accept"}),
        &auth,
    )
    .expect(200);
    api.wait_turn_done(&asked, &asked_turn, T);
    let v = api.create_session(json!({"purpose": "duplex", "approvalTimeoutMs": 100}));
    let late = v["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string();
    let late_turn = api.turn(&late, "approval please");
    api.wait_turn_done(&late, &late_turn, T);

    // Pause and resume, with who and why.
    post(
        &c.url("/v1/system/pause"),
        &json!({"requested_by": "newbie", "reason": "trying it out"}),
    )
    .expect(200);
    post(
        &c.url("/v1/system/resume"),
        &json!({"requested_by": "newbie"}),
    )
    .expect(200);

    // A command and a file read: output and content must stay out of every log.
    let work = dir.child("work");
    fs::create_dir_all(&work).unwrap();
    fs::write(work.join("notes.txt"), "file-content-never-logged").unwrap();
    let r = post_h(
        &c.url("/v1/exec"),
        &json!({"command": "printf exec-output-never-logged", "cwd": work}),
        &auth,
    )
    .expect(200);
    assert_eq!(r["data"]["ok"], true, "{r}");
    let r = post_h(
        &c.url("/v1/files/read"),
        &json!({"path": "notes.txt", "cwd": work}),
        &auth,
    )
    .expect(200);
    assert_eq!(r["data"]["ok"], true, "{r}");
    let r = post_h(
        &c.url("/v1/files/write"),
        &json!({"path": "new.txt", "cwd": work, "content": "written-content-never-logged"}),
        &auth,
    )
    .expect(200);
    assert_eq!(r["data"]["ok"], true, "{r}");

    // A two-step task to its end.
    let tc = tasks::TaskConductor { d: c };
    let task =
        tc.create(json!({"title": "log me", "steps": [{"prompt": "one"}, {"prompt": "two"}]}));
    tc.wait_status(&task, "succeeded", T);
    let c = tc.d;

    // Lines are written as things happen; the last ones may trail the answers a little.
    let wanted_conductor: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "daemon.started",
            vec![
                ("binary", "baa-conductor"),
                ("listen", "*"),
                ("version", "*"),
                ("pid", "*"),
            ],
        ),
        ("lease.acquired", vec![("node", "mini-main"), ("term", "*")]),
        (
            "mode.changed",
            vec![
                ("mode", "paused"),
                ("by", "newbie"),
                ("reason", "trying it out"),
            ],
        ),
        ("mode.changed", vec![("mode", "running"), ("by", "newbie")]),
        (
            "host.exec",
            vec![
                ("exit_code", "0"),
                ("bytes", "24"),
                ("ok", "true"),
                ("duration_ms", "*"),
                ("who", "*"),
            ],
        ),
        (
            "host.files.read",
            vec![("bytes", "25"), ("ok", "true"), ("path", "*")],
        ),
        (
            "host.files.write",
            vec![("bytes", "28"), ("ok", "true"), ("path", "*")],
        ),
        (
            "task.queued",
            vec![("task", task.as_str()), ("title", "log me"), ("steps", "2")],
        ),
        (
            "task.started",
            vec![("task", task.as_str()), ("from", "queued"), ("run", "*")],
        ),
        (
            "task.step_completed",
            vec![("task", task.as_str()), ("step", "1"), ("steps", "2")],
        ),
        (
            "task.step_completed",
            vec![("task", task.as_str()), ("step", "2"), ("steps", "2")],
        ),
        (
            "task.succeeded",
            vec![
                ("task", task.as_str()),
                ("from", "running"),
                ("steps_done", "2"),
            ],
        ),
        (
            "http.request",
            vec![
                ("method", "POST"),
                ("path", "/v1/exec"),
                ("status", "200"),
                ("duration_ms", "*"),
            ],
        ),
    ];
    let wanted_codexd: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("child.spawned", vec![("pid", "*"), ("generation", "*")]),
        ("session.created", vec![("session", sid.as_str())]),
        (
            "request.pending",
            vec![
                ("session", asked.as_str()),
                ("request", rid.as_str()),
                ("method", "*"),
            ],
        ),
        (
            "request.answered",
            vec![
                ("session", asked.as_str()),
                ("request", rid.as_str()),
                ("decision", "accept"),
            ],
        ),
        (
            "request.timeout",
            vec![("session", late.as_str()), ("by", "timeout")],
        ),
        (
            "turn.accepted",
            vec![("session", sid.as_str()), ("turn", turn.as_str())],
        ),
        (
            "turn.completed",
            vec![
                ("session", sid.as_str()),
                ("turn", turn.as_str()),
                ("status", "completed"),
                ("duration_ms", "*"),
            ],
        ),
    ];
    for (d, wanted) in [(&c, &wanted_conductor), (&codexd, &wanted_codexd)] {
        let seen = wait_for(T, || {
            let lines = event_lines(&d.log());
            wanted
                .iter()
                .all(|(name, want)| find(&lines, name, want).is_some())
                .then_some(())
        });
        if seen.is_none() {
            let lines = event_lines(&d.log());
            let missing: Vec<_> = wanted
                .iter()
                .filter(|(name, want)| find(&lines, name, want).is_none())
                .collect();
            panic!("missing lines {missing:?} in:\n{}", d.log());
        }
    }

    for (who, log) in [("conductor", c.log()), ("codexd", codexd.log())] {
        for secret in [
            TOKEN,
            "exec-output-never-logged",
            "file-content-never-logged",
            "written-content-never-logged",
        ] {
            assert!(!log.contains(secret), "{who} logged {secret}:\n{log}");
        }
        assert!(
            !log.contains("Some("),
            "{who} log has Rust debug formatting:\n{log}"
        );
    }

    // The audit file: one line per host operation, who/what/when/how it ended.
    let audit = dir.join("logs").join("conductor").join("audit.jsonl");
    let text = fs::read_to_string(&audit).unwrap_or_else(|e| panic!("{}: {e}", audit.display()));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let pick = |v: &Value| {
        json!({"op": v["op"], "cwd": v["cwd"], "command": v["command"],
               "exit_code": v["exit_code"], "bytes": v["bytes"], "ok": v["ok"], "error": v["error"]})
    };
    assert_eq!(
        lines.iter().map(pick).collect::<Vec<_>>(),
        vec![
            json!({"op": "exec", "cwd": work, "command": "printf exec-output-never-logged",
                   "exit_code": 0, "bytes": 24, "ok": true, "error": null}),
            json!({"op": "files/read", "cwd": work, "command": null,
                   "exit_code": null, "bytes": 25, "ok": true, "error": null}),
            json!({"op": "files/write", "cwd": work, "command": null,
                   "exit_code": null, "bytes": 28, "ok": true, "error": null}),
        ],
        "{text}"
    );
    for l in &lines {
        assert!(
            l["who"]
                .as_str()
                .is_some_and(|w| w.starts_with("127.0.0.1:"))
                && l["at"].is_string()
                && l["duration_ms"].is_u64(),
            "{l}"
        );
    }
    assert!(
        !text.contains(TOKEN)
            && !text.contains("file-content-never-logged")
            && !text.contains("written-content-never-logged"),
        "{text}"
    );
    let mode = fs::metadata(&audit)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.ok(), Some(0o600), "{}", audit.display());
}

/// The rotated files next to `file`: which of `.1` … `.4` exist.
fn rotated(file: &Path) -> Vec<u32> {
    (1..=4)
        .filter(|n| Path::new(&format!("{}.{n}", file.display())).exists())
        .collect()
}

#[test]
fn log_file_rotates_by_size_keeps_three_and_takes_stderr_with_it() {
    let dir = TempDir::new("logs-rotate");
    let file = dir.join("launchd").join("x.err.log");
    let mut d = Spawn::new(STATUS_API)
        .args(["--host", "127.0.0.1", "--port", "0"])
        .env("BAA_CONDUCTOR_LOCAL_API", "http://127.0.0.1:9")
        .env("BAA_CODEXD_LOCAL_API_BASE", "http://127.0.0.1:9")
        .env("BAA_LOG_FILE", &file)
        .env("BAA_LOG_MAX_BYTES", "4096")
        .env("RUST_LOG", "info,event=debug")
        .start();
    // Each request writes one access line (~150 bytes): enough of them rotate four times.
    let done = wait_for(T, || {
        let r = get(&d.url("/healthz"));
        assert_eq!(r.status, 200, "{}", r.body);
        (rotated(&file).len() == 3 && fs::metadata(&file).is_ok_and(|m| m.len() > 2048))
            .then_some(())
    });
    assert!(done.is_some(), "rotated: {:?}", rotated(&file));
    assert_eq!(
        rotated(&file),
        vec![1, 2, 3],
        "only three rotated files are kept"
    );
    for n in 1..=3 {
        let p = format!("{}.{n}", file.display());
        let len = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        let text = fs::read_to_string(&p).unwrap_or_default();
        // Rotated at a line boundary, just past the size.
        assert!(
            (4096..4096 + 1024).contains(&len) && text.ends_with('\n'),
            "{p}: {len} bytes"
        );
    }
    // The daemon's own stderr points at the live file too: the stop lines land there, and
    // nothing went to the stderr it was started with.
    d.terminate(Duration::from_secs(10));
    let live = fs::read_to_string(&file).unwrap_or_default();
    assert!(
        live.contains("event=daemon.stopped binary=baa-status-api"),
        "live file:\n{live}"
    );
    assert_eq!(d.log(), "", "the inherited stderr got output");
}
