//! The conductor's read/write API over real HTTP: probes, runtime snapshot,
//! self-description, automation mode, tasks/runs/logs and controllers. The error model
//! (404/405, bad queries and bodies) is handler tests in src/conductor/route_tests.rs.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::check::compare;
use crate::support::conductor::{self, TOKEN};
use crate::support::daemon::wait_for;
use crate::support::http::{get, post, post_raw};
use crate::support::tmp::TempDir;

fn paths(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|e| e["path"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn conductor_probes_and_runtime_snapshot() {
    let c = conductor::start("probes");
    assert_eq!(get(&c.url("/healthz")).body, "ok\n");
    assert_eq!(get(&c.url("/rolez")).body, "leader\n");
    let ready = wait_for(Duration::from_secs(5), || {
        Some(get(&c.url("/readyz"))).filter(|r| r.status == 200)
    });
    assert_eq!(ready.map(|r| r.body).as_deref(), Some("ready\n"));

    let rt = get(&c.url("/v1/runtime")).expect(200);
    assert_eq!(rt["ok"], true);
    assert!(
        rt["request_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("req_")),
        "{rt}"
    );
    let d = &rt["data"];
    assert_eq!(d["identity"], "mini-main@testhost(primary)");
    assert_eq!(d["controlApi"]["localApiBase"], c.d.base);
    assert_eq!(
        d["controlApi"]["firefoxWsUrl"],
        format!("ws://{}/ws/firefox", c.d.addr)
    );
    assert_eq!(d["controlApi"]["hasSharedToken"], true);
    assert_eq!(d["controlApi"]["usesPlaceholderToken"], false);
    assert_eq!(d["codexd"]["localApiBase"], Value::Null);
    assert_eq!(d["daemon"]["nodeId"], "mini-main");
    assert_eq!(d["daemon"]["leaseState"], "leader");
    assert_eq!(d["daemon"]["schedulerEnabled"], true);
    assert_eq!(d["runtime"]["pid"], c.d.pid());
    assert_eq!(d["runtime"]["started"], true);
    let warnings = d["warnings"].to_string();
    assert!(
        warnings.contains("/v1/codex routes will stay unavailable"),
        "{warnings}"
    );
    assert!(
        !rt.to_string().contains(TOKEN),
        "the token leaked into /v1/runtime"
    );

    let h = get(&c.url("/health")).expect(200);
    assert_eq!(h["data"]["status"], "ok");
    let v = get(&c.url("/v1/version")).expect(200);
    assert_eq!(v["data"]["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn conductor_describe_surfaces_come_from_the_route_table() {
    let c = conductor::start("describe");
    let all = get(&c.url("/describe")).expect(200)["data"].clone();
    assert_eq!(all["name"], "baa-conductor-daemon");
    assert_eq!(
        all["describe_endpoints"]["business"]["path"],
        "/describe/business"
    );
    assert_eq!(
        all["describe_endpoints"]["control"]["path"],
        "/describe/control"
    );
    assert_eq!(all["system"]["mode"], "running");
    assert_eq!(all["codex"]["backend"], "independent_codexd");
    assert_eq!(all["codex"]["enabled"], false);
    assert_eq!(all["codex"]["route_prefix"], "/v1/codex");
    assert_eq!(all["codex"]["auth_mode"], "local_network_only");
    assert_eq!(all["host_operations"]["enabled"], true);
    assert_eq!(
        all["host_operations"]["auth"]["header"],
        "Authorization: Bearer <BAA_SHARED_TOKEN>"
    );
    assert_eq!(all["host_operations"]["auth"]["configured"], true);
    assert_eq!(all["websocket"]["path"], "/ws/firefox");
    for ex in all["examples"].as_array().unwrap() {
        let curl = ex["curl"].as_str().unwrap();
        assert!(
            curl.starts_with("curl ") && curl.contains(&c.d.base),
            "{curl}"
        );
    }
    let text = all.to_string();
    assert!(
        !text.contains("/v1/runs"),
        "runs must not be advertised: {text}"
    );
    assert!(!text.contains("/v1/codex/runs"), "{text}");
    let codex = paths(&all["codex"]["routes"]);
    assert!(
        codex.contains(&"/v1/codex/turn/interrupt".to_string()),
        "{codex:?}"
    );

    let biz = get(&c.url("/describe/business")).expect(200)["data"].clone();
    assert_eq!(biz["surface"], "business");
    let p = paths(&biz["endpoints"]);
    for must in [
        "/v1/codex",
        "/v1/codex/sessions",
        "/v1/codex/turn",
        "/v1/tasks",
        "/v1/controllers",
        "/health",
        "/v1/version",
    ] {
        assert!(
            p.contains(&must.to_string()),
            "business lacks {must}: {p:?}"
        );
    }
    for never in [
        "/v1/exec",
        "/v1/files/read",
        "/v1/system/pause",
        "/v1/runs",
        "/v1/runs/:run_id",
    ] {
        assert!(!p.contains(&never.to_string()), "business lists {never}");
    }

    let ctl = get(&c.url("/describe/control")).expect(200)["data"].clone();
    assert_eq!(ctl["surface"], "control");
    assert_eq!(
        ctl["host_operations"]["auth"]["header"],
        "Authorization: Bearer <BAA_SHARED_TOKEN>"
    );
    let p = paths(&ctl["endpoints"]);
    for must in [
        "/v1/system/state",
        "/v1/system/pause",
        "/v1/system/resume",
        "/v1/system/drain",
        "/v1/exec",
        "/v1/files/read",
        "/v1/files/write",
        "/healthz",
        "/readyz",
        "/rolez",
    ] {
        assert!(p.contains(&must.to_string()), "control lacks {must}: {p:?}");
    }
    assert!(
        !p.iter().any(|x| x.starts_with("/v1/tasks")),
        "control lists tasks: {p:?}"
    );

    let caps = get(&c.url("/v1/capabilities")).expect(200)["data"].clone();
    for key in [
        "read_endpoints",
        "write_endpoints",
        "diagnostics",
        "codex",
        "runtime",
        "system",
        "recommended_flow",
        "notes",
    ] {
        assert!(!caps[key].is_null(), "capabilities lacks {key}");
    }
    assert!(!caps.to_string().contains("/v1/runs"), "{caps}");
    let reads = paths(&caps["read_endpoints"]);
    assert!(reads.contains(&"/v1/codex".to_string()), "{reads:?}");

    // Everything advertised without a path parameter is actually served.
    for list in [&caps["read_endpoints"], &caps["diagnostics"]] {
        for path in paths(list) {
            if path.contains(':') {
                continue;
            }
            let r = get(&c.url(&path));
            assert_ne!(r.status, 404, "{path} is advertised but not served");
            assert_ne!(r.status, 405, "{path} is advertised but not served");
        }
    }
}

#[test]
fn conductor_system_mode_changes_persist_across_restart() {
    let mut c = conductor::start("mode");
    let s = get(&c.url("/v1/system/state")).expect(200)["data"].clone();
    assert_eq!(
        (
            s["mode"].clone(),
            s["version"].clone(),
            s["holder_id"].clone()
        ),
        (json!("running"), json!(0), json!("mini-main"))
    );

    let p = post(
        &c.url("/v1/system/pause"),
        &json!({"requested_by": "ops-cli", "reason": "maintenance"}),
    )
    .expect(200)["data"]
        .clone();
    assert_eq!(
        (
            p["mode"].clone(),
            p["version"].clone(),
            p["requested_by"].clone(),
            p["reason"].clone()
        ),
        (
            json!("paused"),
            json!(1),
            json!("ops-cli"),
            json!("maintenance")
        )
    );
    assert!(
        p["updated_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{p}"
    );
    assert_eq!(get(&c.url("/v1/system/state")).expect(200)["data"], p);

    let d = post(&c.url("/v1/system/drain"), &json!({"requestedBy": "camel"})).expect(200)["data"]
        .clone();
    assert_eq!(
        (
            d["mode"].clone(),
            d["version"].clone(),
            d["requested_by"].clone()
        ),
        (json!("draining"), json!(2), json!("camel"))
    );
    // A bodiless POST is allowed (curl -X POST).
    let r = post_raw(&c.url("/v1/system/resume"), b"", &[]).expect(200)["data"].clone();
    assert_eq!(
        (r["mode"].clone(), r["version"].clone()),
        (json!("running"), json!(3))
    );

    post(
        &c.url("/v1/system/pause"),
        &json!({"requested_by": "before-restart"}),
    )
    .expect(200);
    let status = c.d.terminate(Duration::from_secs(15));
    assert!(status.success(), "SIGTERM exit: {status}");
    let d2 = conductor::spawn(&c.dir, "mini-main", "primary").start();
    let s = get(&d2.url("/v1/system/state")).expect(200)["data"].clone();
    assert_eq!(
        (
            s["mode"].clone(),
            s["version"].clone(),
            s["requested_by"].clone()
        ),
        (json!("paused"), json!(4), json!("before-restart"))
    );
}

/// Today's single-file `tasks.json` / `runs.json` are migrated at start to one file per
/// record, and the read routes keep their shapes over them.
#[test]
fn conductor_tasks_runs_and_logs_read_from_the_store() {
    let dir = crate::support::tmp::TempDir::new("records");
    let store = baa::common::store::JsonStore::open(dir.join("state")).unwrap();
    let tasks: Vec<Value> = (0..30)
        .map(|i| {
            json!({
                "task_id": format!("task_{i:02}"), "title": format!("Task {i}"),
                "status": if i % 3 == 0 { "queued" } else { "succeeded" }, "kind": "shell",
                "input": {"n": i}, "created_at": format!("2026-11-01T00:00:{i:02}.000Z"),
                "updated_at": null, "started_at": null, "finished_at": null,
                "current_run_id": if i == 29 { json!("run_b") } else { Value::Null }, "error": null
            })
        })
        .collect();
    store
        .write("tasks.json", &json!({ "tasks": tasks }))
        .unwrap();
    store
        .write(
            "runs.json",
            &json!({"runs": [
                {"run_id": "run_a", "task_id": "task_29", "status": "failed", "attempt": 1, "worker": "conductor", "session_id": null, "started_at": "2026-11-01T01:00:00.000Z", "finished_at": "2026-11-01T01:00:05.000Z", "exit": {"code": 1}, "error": "boom"},
                {"run_id": "run_b", "task_id": "task_29", "status": "running", "attempt": 2, "worker": "codexd", "session_id": "s1", "started_at": "2026-11-01T02:00:00.000Z", "finished_at": null, "exit": null, "error": null}
            ]}),
        )
        .unwrap();
    let logs_dir = dir.join("state/task-logs");
    std::fs::create_dir_all(&logs_dir).unwrap();
    let mut log = String::new();
    for seq in 1..=260u64 {
        let run = if seq <= 10 { "run_a" } else { "run_b" };
        log.push_str(&format!("{}\n", json!({"seq": seq, "task_id": "task_29", "run_id": run, "level": "info", "message": format!("line {seq}"), "created_at": "2026-11-01T02:00:00.000Z"})));
    }
    std::fs::write(logs_dir.join("task_29.jsonl"), log).unwrap();
    let c = conductor::spawn(&dir, "mini-main", "primary").start();

    let l = get(&c.url("/v1/tasks")).expect(200)["data"].clone();
    assert_eq!(
        (l["count"].clone(), l["limit"].clone()),
        (json!(20), json!(20))
    );
    assert_eq!(l["tasks"][0]["task_id"], "task_29", "newest first");
    assert_eq!(
        l["tasks"][0]["input"],
        json!({"n": 29}),
        "the record as it was"
    );
    let q = get(&c.url("/v1/tasks?status=queued&limit=100")).expect(200)["data"].clone();
    assert_eq!(q["count"], 10);
    let statuses: Vec<&Value> = q["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["status"])
        .collect();
    compare("statuses", statuses, vec![&json!("queued"); 10]);

    let t = get(&c.url("/v1/tasks/task_29")).expect(200)["data"].clone();
    assert_eq!(t["task"]["current_run_id"], "run_b");
    assert_eq!(t["runs"].as_array().unwrap().len(), 2);

    let logs = get(&c.url("/v1/tasks/task_29/logs")).expect(200)["data"].clone();
    assert_eq!(
        (logs["count"].clone(), logs["limit"].clone()),
        (json!(200), json!(200))
    );
    assert_eq!(
        logs["logs"][199]["seq"], 260,
        "the most recent lines, oldest first"
    );
    let logs =
        get(&c.url("/v1/tasks/task_29/logs?run_id=run_a&limit=500")).expect(200)["data"].clone();
    assert_eq!(logs["count"], 10);
    let logs = get(&c.url("/v1/tasks/task_29/logs?since=255")).expect(200)["data"].clone();
    assert_eq!(logs["count"], 5);

    let runs = get(&c.url("/v1/runs")).expect(200)["data"].clone();
    assert_eq!(runs["count"], 2);
    assert_eq!(runs["runs"][0]["run_id"], "run_b");
    let run = get(&c.url("/v1/runs/run_a")).expect(200)["data"].clone();
    assert_eq!(run["run"]["exit"]["code"], 1);

    // Migrated once: the old files are renamed, one file per record remains.
    let names: Vec<String> = std::fs::read_dir(dir.join("state"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("tasks.json.migrated-"))
            && !names.contains(&"tasks.json".to_string()),
        "{names:?}"
    );
    for file in ["state/tasks/task_29.json", "state/runs/run_b.json"] {
        assert!(dir.join(file).is_file(), "no {file}");
    }

    // A corrupt task file is moved aside at the next start, not a crash loop or a 500.
    let mut c = c;
    c.terminate(Duration::from_secs(10));
    // (Without its last-good copy: with one, the file is healed from it.)
    std::fs::remove_file(dir.join("state/tasks/.task_29.json.last-good")).unwrap();
    std::fs::write(dir.join("state/tasks/task_29.json"), b"{\"task_id\": [").unwrap();
    let c = conductor::spawn(&dir, "mini-main", "primary").start();
    assert_eq!(
        get(&c.url("/v1/tasks?limit=100")).expect(200)["data"]["count"],
        29
    );
    get(&c.url("/v1/tasks/task_29")).expect_error(404, "not_found");
    let aside = std::fs::read_dir(dir.join("state/tasks"))
        .unwrap()
        .flatten()
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("task_29.json.corrupt-")
        });
    assert!(aside, "corrupt file was not moved aside");
    let warnings = get(&c.url("/v1/runtime")).expect(200)["data"]["warnings"].to_string();
    assert!(warnings.contains("task_29.json"), "{warnings}");
}

#[test]
fn conductor_controllers_report_heartbeats() {
    let c = conductor::start("controllers");
    let list = wait_for(Duration::from_secs(5), || {
        let d = get(&c.url("/v1/controllers")).expect(200)["data"].clone();
        (d["count"] == 1).then_some(d)
    })
    .expect("one controller heartbeat");
    let me = &list["controllers"][0];
    assert_eq!(me["node_id"], "mini-main");
    assert_eq!(me["role"], "primary");
    assert_eq!(me["status"], "alive");
    assert_eq!(me["lease_holder"], true);
    assert!(
        me["last_heartbeat_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{me}"
    );
}

/// Issue 13: `/describe` examples carried `/Users/george/code/baa-conductor`, the original
/// author's checkout. They use the configured repo root, else the working directory.
#[test]
fn describe_examples_use_the_configured_repo_root_not_the_authors_home() {
    let dir = TempDir::new("describe-root");
    let checkout = dir.join("my checkout");
    let c = conductor::spawn(&dir, "mini-main", "primary")
        .args(["--repo-root", &checkout.display().to_string()])
        .start();
    let all = get(&c.url("/describe")).expect(200)["data"].clone();
    let text = all.to_string();
    assert!(
        !text.contains("/Users/"),
        "a home path in /describe: {text}"
    );
    let create = all["examples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "/v1/codex/sessions")
        .unwrap_or_else(|| panic!("no session example: {text}"))
        .clone();
    let want = format!("\"cwd\":\"{}\"", checkout.display());
    assert!(create["curl"].as_str().unwrap().contains(&want), "{create}");
    drop(c);

    // Unset: the working directory (launchd's WorkingDirectory is the checkout).
    let c = conductor::spawn(&dir, "mini-main", "primary").start();
    let text = get(&c.url("/describe")).expect(200)["data"].to_string();
    let want = format!("\\\"cwd\\\":\\\"{}\\\"", dir.path().display());
    assert!(text.contains(&want), "no {want} in {text}");
}
