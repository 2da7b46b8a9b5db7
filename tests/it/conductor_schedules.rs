//! Schedules on a real conductor, with a fake clock (`BAA_CONDUCTOR_CLOCK_FILE`) stepped
//! minute by minute: each minute fires exactly once, across a `kill -9` within the catch-up
//! window and across a standby takeover; `skip` and `buffer_one`; a fire under pause queues
//! its task; bad bodies name the field; writes need the token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::codexd::{start_running, with_stub, Dirs};
use crate::support::conductor::{self, TOKEN};
use crate::support::daemon::{wait_for, Daemon, Spawn};
use crate::support::http::{get, post, Resp};
use crate::support::tmp::TempDir;

/// A whole minute (2027-01-15T08:00:00Z): the clock starts 30 s after it.
const T0: u64 = 1_800_000_000_000;
const MIN: u64 = 60_000;

/// The fake clock: written atomically (a temp file renamed over it).
struct FakeClock {
    path: PathBuf,
}

impl FakeClock {
    fn new(dir: &TempDir, ms: u64) -> FakeClock {
        let c = FakeClock {
            path: dir.join("clock"),
        };
        c.set(ms);
        c
    }

    fn set(&self, ms: u64) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, ms.to_string()).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }
}

fn rfc(ms: u64) -> String {
    // Epoch ms → `YYYY-MM-DDTHH:MM:SS.000Z` for the minutes used here (2027-01-15).
    let s = (ms - T0) / 1000 + 8 * 3600;
    format!(
        "2027-01-15T{:02}:{:02}:{:02}.000Z",
        s / 3600,
        (s % 3600) / 60,
        s % 60
    )
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

/// `method url` with `body`, with or without the bearer token.
#[track_caller]
fn send(method: &str, url: &str, body: Option<&Value>, token: bool) -> Resp {
    let a = agent();
    let auth = format!("Bearer {TOKEN}");
    let with = |r: ureq::RequestBuilder<ureq::typestate::WithBody>| {
        let r = r.header("Content-Type", "application/json");
        let r = if token {
            r.header("Authorization", &auth)
        } else {
            r
        };
        r.send(body.map(|b| b.to_string()).unwrap_or_default())
    };
    let r = match method {
        "POST" => with(a.post(url)),
        "PATCH" => with(a.patch(url)),
        "DELETE" => {
            let r = a.delete(url);
            let r = if token {
                r.header("Authorization", &auth)
            } else {
                r
            };
            r.call()
        }
        other => panic!("unsupported {other}"),
    };
    let mut r = r.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    Resp {
        status: r.status().as_u16(),
        headers: Vec::new(),
        body: r.body_mut().read_to_string().unwrap_or_default(),
    }
}

/// A conductor on `state` (shared by a standby) going by `clock`.
fn spawn(dir: &TempDir, node: &str, role: &str, clock: &FakeClock, codexd: Option<&str>) -> Spawn {
    let s = conductor::spawn(dir, node, role)
        .env("BAA_SHARED_TOKEN", TOKEN)
        .env("BAA_CONDUCTOR_CLOCK_FILE", &clock.path);
    match codexd {
        Some(base) => s.env("BAA_CODEXD_LOCAL_API_BASE", base),
        None => s,
    }
}

fn task_body(dir: &Path, prompt: &str) -> Value {
    json!({"title": "scheduled", "prompt": prompt, "cwd": dir.display().to_string()})
}

#[track_caller]
fn create(d: &Daemon, body: Value) -> Value {
    send("POST", &d.url("/v1/schedules"), Some(&body), true).expect(201)["data"]["schedule"].clone()
}

#[track_caller]
fn schedule(d: &Daemon, id: &str) -> Value {
    get(&d.url(&format!("/v1/schedules/{id}"))).expect(200)["data"]["schedule"].clone()
}

/// Waits until the schedule's last fire is the one at `at` and returns the schedule.
#[track_caller]
fn wait_fire(d: &Daemon, id: &str, at: u64) -> Value {
    let want = rfc(at);
    wait_for(Duration::from_secs(15), || {
        let s = schedule(d, id);
        (s["last_fire"]["at"] == want.as_str()).then_some(s)
    })
    .unwrap_or_else(|| panic!("no fire at {want}: {}\nlog:\n{}", schedule(d, id), d.log()))
}

/// The idempotency keys of the schedule's tasks, sorted (each names its fire time).
#[track_caller]
fn fired_keys(d: &Daemon, id: &str) -> Vec<String> {
    let v = get(&d.url("/v1/tasks?limit=100")).expect(200);
    let mut keys: Vec<String> = v["data"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["schedule_id"] == id)
        .map(|t| t["idempotency_key"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

fn keys_for(id: &str, minutes: &[u64]) -> Vec<String> {
    minutes
        .iter()
        .map(|m| format!("schedule:{id}:{}", rfc(T0 + m * MIN)))
        .collect()
}

#[test]
fn schedule_every_minute_fires_once_per_minute_and_a_fire_under_pause_queues_its_task() {
    let dir = TempDir::new("sched-minutes");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let clock = FakeClock::new(&dir, T0 + 30_000);
    let d = spawn(&dir, "mini-main", "primary", &clock, Some(&codexd.base)).start();
    post(&d.url("/v1/system/pause"), &json!({"requested_by": "test"})).expect(200);
    let s = create(
        &d,
        json!({"name": "every minute", "cron": "* * * * *", "timezone": "UTC",
               "task": task_body(dir.path(), "hello"), "overlap": "allow"}),
    );
    let id = s["schedule_id"].as_str().unwrap().to_string();
    assert_eq!(s["next_fire_at"], rfc(T0 + MIN));
    for m in 1..=4u64 {
        clock.set(T0 + m * MIN + 200);
        let s = wait_fire(&d, &id, T0 + m * MIN);
        assert_eq!(s["last_fire"]["outcome"], "fired");
        assert_eq!(s["next_fire_at"], rfc(T0 + (m + 1) * MIN));
        let minutes: Vec<u64> = (1..=m).collect();
        assert_eq!(fired_keys(&d, &id), keys_for(&id, &minutes));
        // Paused: the task waits in the queue.
        assert_eq!(s["last_fire"]["task_status"], "queued", "{s}");
    }
    let s = schedule(&d, &id);
    assert_eq!(
        s["counts"],
        json!({"fired": 4, "skipped": 0, "caught_up": 0, "failed": 0})
    );
    // Resumed, the queued tasks run.
    post(
        &d.url("/v1/system/resume"),
        &json!({"requested_by": "test"}),
    )
    .expect(200);
    let done = wait_for(Duration::from_secs(30), || {
        let s = schedule(&d, &id);
        (s["last_fire"]["task_status"] == "succeeded").then_some(())
    });
    assert!(done.is_some(), "{}\n{}", schedule(&d, &id), d.log());
    let log = d.log();
    assert_eq!(log.matches("event=schedule.fired").count(), 4, "{log}");
}

#[test]
fn schedule_kill9_within_the_catchup_window_queues_the_missed_fire_once() {
    let dir = TempDir::new("sched-kill9");
    let clock = FakeClock::new(&dir, T0 + 30_000);
    let mut d = spawn(&dir, "mini-main", "primary", &clock, None).start();
    post(&d.url("/v1/system/pause"), &json!({"requested_by": "test"})).expect(200);
    let s = create(
        &d,
        json!({"name": "m", "cron": "* * * * *", "timezone": "UTC", "overlap": "allow",
               "catchup_window_s": 120, "task": task_body(dir.path(), "hello")}),
    );
    let id = s["schedule_id"].as_str().unwrap().to_string();
    clock.set(T0 + MIN + 100);
    wait_fire(&d, &id, T0 + MIN);
    d.kill9();

    // Down over minute 2: the restart queues it once, late.
    clock.set(T0 + 2 * MIN + 10_000);
    let mut d = spawn(&dir, "mini-main", "primary", &clock, None).start();
    let s = wait_fire(&d, &id, T0 + 2 * MIN);
    assert_eq!(s["last_fire"]["outcome"], "caught_up", "{s}");
    assert_eq!(fired_keys(&d, &id), keys_for(&id, &[1, 2]));

    // A crash after the task was queued but before the schedule recorded it: the record
    // still says minute 2 is next. The restart fires minute 2 again and gets the same task.
    let task_2 = s["last_fire"]["task_id"].clone();
    d.kill9();
    let file = dir.join("state/schedules").join(format!("{id}.json"));
    let mut rec: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    rec["next_fire_at"] = json!(rfc(T0 + 2 * MIN));
    rec["last_fire"]["at"] = json!(rfc(T0 + MIN));
    std::fs::write(&file, rec.to_string()).unwrap();
    clock.set(T0 + 2 * MIN + 40_000);
    let mut d = spawn(&dir, "mini-main", "primary", &clock, None).start();
    let s = wait_fire(&d, &id, T0 + 2 * MIN);
    assert_eq!(s["last_fire"]["task_id"], task_2, "{s}");
    assert_eq!(fired_keys(&d, &id), keys_for(&id, &[1, 2]));
    assert!(d.log().contains("replayed=true"), "{}", d.log());

    // Down over minutes 3 and 4: only the latest missed fire is queued, the one before it
    // is counted as skipped; minute 5 then fires on time.
    d.kill9();
    clock.set(T0 + 4 * MIN + 31_000);
    let d = spawn(&dir, "mini-main", "primary", &clock, None).start();
    let s = wait_fire(&d, &id, T0 + 4 * MIN);
    assert_eq!(s["last_fire"]["outcome"], "caught_up", "{s}");
    // Minute 3 was passed over (only the latest missed fire is queued).
    assert_eq!(s["counts"]["skipped"], 1, "{s}");
    assert_eq!(fired_keys(&d, &id), keys_for(&id, &[1, 2, 4]));
    clock.set(T0 + 5 * MIN + 100);
    let s = wait_fire(&d, &id, T0 + 5 * MIN);
    assert_eq!(s["last_fire"]["outcome"], "fired");
    assert_eq!(fired_keys(&d, &id), keys_for(&id, &[1, 2, 4, 5]));
}

#[test]
fn schedule_missed_beyond_the_window_is_skipped_with_a_log_line() {
    let dir = TempDir::new("sched-missed");
    let clock = FakeClock::new(&dir, T0 + 30_000);
    let mut d = spawn(&dir, "mini-main", "primary", &clock, None).start();
    post(&d.url("/v1/system/pause"), &json!({"requested_by": "test"})).expect(200);
    let s = create(
        &d,
        json!({"name": "m", "cron": "* * * * *", "timezone": "UTC",
               "task": task_body(dir.path(), "hello")}),
    );
    let id = s["schedule_id"].as_str().unwrap().to_string();
    d.kill9();
    // catchup_window_s 0: minute 1, missed while down, is skipped — and announced.
    clock.set(T0 + MIN + 5_000);
    let hook = crate::support::stub::Stub::start("127.0.0.1:0", |_| {
        crate::support::stub::json(200, json!({}))
    });
    let d = spawn(&dir, "mini-main", "primary", &clock, None)
        .env("BAA_NOTIFY_URLS", format!("{}/hook", hook.base))
        .start();
    let s = wait_fire(&d, &id, T0 + MIN);
    assert_eq!(s["last_fire"]["outcome"], "skipped_missed", "{s}");
    let announced = wait_for(Duration::from_secs(15), || {
        let seen = hook.seen.lock().unwrap().clone();
        let skipped: Vec<Value> = seen
            .into_iter()
            .map(|x| x.body)
            .filter(|b| b["kind"] == "schedule.skipped")
            .collect();
        (!skipped.is_empty()).then_some(skipped)
    })
    .unwrap_or_else(|| panic!("no schedule.skipped notification\nlog:\n{}", d.log()));
    assert_eq!(announced.len(), 1, "{announced:#?}");
    assert_eq!(
        announced[0]["detail"]["schedule_id"],
        id.as_str(),
        "{:#}",
        announced[0]
    );
    assert_eq!(
        announced[0]["detail"]["at"],
        rfc(T0 + MIN),
        "{:#}",
        announced[0]
    );
    assert_eq!(s["next_fire_at"], rfc(T0 + 2 * MIN));
    assert!(fired_keys(&d, &id).is_empty());
    assert!(
        d.log().contains("event=schedule.skipped")
            && d.log().contains("why=missed")
            && d.log().contains("catchup_window_s=0"),
        "{}",
        d.log()
    );
}

#[test]
fn schedule_standby_takeover_fires_each_minute_once() {
    let dir = TempDir::new("sched-takeover");
    let clock = FakeClock::new(&dir, T0 + 30_000);
    let mut leader = spawn(&dir, "mini-main", "primary", &clock, None).start();
    let standby = spawn(&dir, "mini-standby", "standby", &clock, None).start();
    post(
        &leader.url("/v1/system/pause"),
        &json!({"requested_by": "test"}),
    )
    .expect(200);
    let s = create(
        &leader,
        json!({"name": "m", "cron": "* * * * *", "timezone": "UTC", "overlap": "allow",
               "catchup_window_s": 300, "task": task_body(dir.path(), "hello")}),
    );
    let id = s["schedule_id"].as_str().unwrap().to_string();
    // A standby refuses writes and never fires.
    send(
        "POST",
        &standby.url("/v1/schedules"),
        Some(&json!({})),
        true,
    )
    .expect_error(409, "not_leader");
    clock.set(T0 + MIN + 100);
    wait_fire(&leader, &id, T0 + MIN);
    conductor::wait_lease_ticks(&standby, 3);
    assert_eq!(fired_keys(&leader, &id), keys_for(&id, &[1]));
    assert!(
        !standby.log().contains("event=schedule."),
        "{}",
        standby.log()
    );

    // The leader dies; minute 2 passes while nobody fires; the standby takes over and
    // queues it once (within the window), then fires minute 3 on time.
    leader.kill9();
    clock.set(T0 + 2 * MIN + 5_000);
    let s = wait_fire(&standby, &id, T0 + 2 * MIN);
    assert_eq!(s["last_fire"]["outcome"], "caught_up", "{s}");
    clock.set(T0 + 3 * MIN + 100);
    let s = wait_fire(&standby, &id, T0 + 3 * MIN);
    assert_eq!(s["last_fire"]["outcome"], "fired", "{s}");
    assert_eq!(fired_keys(&standby, &id), keys_for(&id, &[1, 2, 3]));
}

#[test]
fn schedule_overlap_skip_and_buffer_one() {
    let dir = TempDir::new("sched-overlap");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let clock = FakeClock::new(&dir, T0 + 30_000);
    let d = spawn(&dir, "mini-main", "primary", &clock, Some(&codexd.base)).start();
    // The stub holds this turn on an approval: the task stays running.
    let s = create(
        &d,
        json!({"name": "held", "cron": "* * * * *", "timezone": "UTC",
               "task": task_body(dir.path(), "huge-request:10")}),
    );
    let id = s["schedule_id"].as_str().unwrap().to_string();
    assert_eq!(s["overlap"], "skip");
    clock.set(T0 + MIN + 100);
    let s = wait_fire(&d, &id, T0 + MIN);
    let first = s["last_fire"]["task_id"].as_str().unwrap().to_string();
    let running = wait_for(Duration::from_secs(20), || {
        let t = get(&d.url(&format!("/v1/tasks/{first}"))).expect(200);
        (t["data"]["task"]["status"] == "running").then_some(())
    });
    assert!(running.is_some(), "{}", d.log());

    // skip: the previous task runs, so minute 2 is skipped.
    clock.set(T0 + 2 * MIN + 100);
    let s = wait_fire(&d, &id, T0 + 2 * MIN);
    assert_eq!(s["last_fire"]["outcome"], "skipped_overlap", "{s}");
    assert_eq!(s["last_fire"]["task_id"], first.as_str());
    assert_eq!(fired_keys(&d, &id), keys_for(&id, &[1]));
    assert!(d.log().contains("why=overlap"), "{}", d.log());

    // buffer_one: one task waits behind the running one, no more.
    let p = send(
        "PATCH",
        &d.url(&format!("/v1/schedules/{id}")),
        Some(&json!({"overlap": "buffer_one"})),
        true,
    )
    .expect(200);
    assert_eq!(p["data"]["schedule"]["next_fire_at"], rfc(T0 + 3 * MIN));
    clock.set(T0 + 3 * MIN + 100);
    let s = wait_fire(&d, &id, T0 + 3 * MIN);
    assert_eq!(s["last_fire"]["outcome"], "fired", "{s}");
    assert_eq!(s["last_fire"]["task_status"], "queued", "{s}");
    clock.set(T0 + 4 * MIN + 100);
    let s = wait_fire(&d, &id, T0 + 4 * MIN);
    assert_eq!(s["last_fire"]["outcome"], "skipped_overlap", "{s}");
    assert_eq!(fired_keys(&d, &id), keys_for(&id, &[1, 3]));
    assert_eq!(
        s["counts"],
        json!({"fired": 2, "skipped": 2, "caught_up": 0, "failed": 0})
    );
}

#[test]
fn schedule_bad_bodies_name_the_field_and_writes_need_the_token() {
    let dir = TempDir::new("sched-bodies");
    let clock = FakeClock::new(&dir, T0 + 30_000);
    // No timezone given: the node's zone ($TZ here).
    let d = spawn(&dir, "mini-main", "primary", &clock, None)
        .env("TZ", "Asia/Tokyo")
        .start();
    let url = d.url("/v1/schedules");
    let task = task_body(dir.path(), "p");
    let cases = [
        (json!({"cron": "* * * * *", "task": task}), "name"),
        (
            json!({"name": "n", "cron": "60 * * * *", "task": task}),
            "cron",
        ),
        (
            json!({"name": "n", "cron": "* * * FOO *", "task": task}),
            "cron",
        ),
        (
            json!({"name": "n", "cron": "* * * * *", "timezone": "Nowhere/City", "task": task}),
            "timezone",
        ),
        (
            json!({"name": "n", "cron": "* * * * *", "task": {"title": "t"}}),
            "task.prompt",
        ),
        (
            json!({"name": "n", "cron": "* * * * *", "task": {"title": "t", "prompt": "p", "cwd": "/nonexistent-dir"}}),
            "task.cwd",
        ),
        (
            json!({"name": "n", "cron": "* * * * *", "task": task, "overlap": "sometimes"}),
            "overlap",
        ),
        (
            json!({"name": "n", "cron": "* * * * *", "task": task, "catchup_window_s": "1h"}),
            "catchup_window_s",
        ),
        (
            json!({"name": "n", "cron": "* * * * *", "task": task, "colour": "red"}),
            "colour",
        ),
    ];
    for (body, field) in cases {
        let e = send("POST", &url, Some(&body), true).expect_error(400, "invalid_request");
        assert_eq!(e["details"]["field"], field, "{body}: {e}");
    }
    let ok = json!({"name": "n", "cron": "*/5 * * * *", "task": task});
    send("POST", &url, Some(&ok), false).expect_error(401, "unauthorized");
    let s = create(&d, ok);
    let id = s["schedule_id"].as_str().unwrap();
    assert_eq!(s["timezone"], "Asia/Tokyo");
    let one = d.url(&format!("/v1/schedules/{id}"));
    send("PATCH", &one, Some(&json!({"enabled": false})), false).expect_error(401, "unauthorized");
    send("DELETE", &one, None, false).expect_error(401, "unauthorized");
    let e = send("PATCH", &one, Some(&json!({"cron": "* * 31 2 *x"})), true)
        .expect_error(400, "invalid_request");
    assert_eq!(e["details"]["field"], "cron");
    let p = send("PATCH", &one, Some(&json!({"enabled": false})), true).expect(200);
    assert_eq!(p["data"]["schedule"]["next_fire_at"], Value::Null);
    let p = send("PATCH", &one, Some(&json!({"enabled": true})), true).expect(200);
    assert_eq!(p["data"]["schedule"]["next_fire_at"], rfc(T0 + 5 * MIN));
    let list = get(&url).expect(200);
    assert_eq!(list["data"]["count"], 1);
    send("DELETE", &one, None, true).expect(200);
    get(&one).expect_error(404, "not_found");
    send("DELETE", &one, None, true).expect_error(404, "not_found");
}

/// `baa-conductor schedule <args>` against `d`, with the token in the environment.
fn schedule_cli(d: &Daemon, args: &[&str], token: bool) -> crate::support::daemon::Ran {
    let s = Spawn::new(crate::support::daemon::CONDUCTOR)
        .arg("schedule")
        .args(args)
        .args(["--conductor-url", &d.url("")]);
    if token {
        s.env("BAA_SHARED_TOKEN", TOKEN).output()
    } else {
        s.output()
    }
}

#[test]
fn schedule_cli_add_list_show_disable_enable_rm() {
    let dir = TempDir::new("sched-cli");
    let clock = FakeClock::new(&dir, T0 + 30_000);
    let d = spawn(&dir, "mini-main", "primary", &clock, None).start();
    let cwd = dir.path().display().to_string();
    let add = [
        "add",
        "--name",
        "nightly",
        "--cron",
        "0 3 * * *",
        "--timezone",
        "UTC",
        "--title",
        "t",
        "--prompt",
        "p",
        "--cwd",
        &cwd,
        "--overlap",
        "buffer_one",
    ];
    // Writes need the token.
    let r = schedule_cli(&d, &add, false);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(r.stderr.contains("needs the bearer token"), "{r:?}");
    let r = schedule_cli(&d, &add, true);
    assert!(r.status.success(), "{r:?}");
    let id = r.stdout.split_whitespace().next().unwrap().to_string();
    assert_eq!(r.stdout, format!("{id} on next 2027-01-16T03:00:00.000Z\n"));
    let r = schedule_cli(&d, &["list"], false);
    assert!(
        r.stdout.contains(&id) && r.stdout.contains("nightly"),
        "{r:?}"
    );
    let r = schedule_cli(&d, &["show", &id, "--json"], false);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["data"]["schedule"]["overlap"], "buffer_one");
    let r = schedule_cli(&d, &["disable", &id], true);
    assert_eq!(r.stdout, format!("{id} off next -\n"), "{r:?}");
    assert_eq!(schedule(&d, &id)["enabled"], false);
    let r = schedule_cli(&d, &["enable", &id], true);
    assert!(
        r.stdout.starts_with(&format!("{id} on next 2027-01-16")),
        "{r:?}"
    );
    // An API refusal: exit 1 with its code.
    let r = schedule_cli(
        &d,
        &[
            "add", "--name", "n", "--cron", "* * *", "--title", "t", "--prompt", "p",
        ],
        true,
    );
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    assert!(r.stderr.contains("invalid_request"), "{r:?}");
    // A usage error: exit 2.
    assert_eq!(schedule_cli(&d, &["rm"], true).status.code(), Some(2));
    let r = schedule_cli(&d, &["rm", &id], true);
    assert!(r.status.success(), "{r:?}");
    get(&d.url(&format!("/v1/schedules/{id}"))).expect_error(404, "not_found");
}

#[test]
fn schedule_in_the_nodes_zone_given_as_a_posix_tz_string_fires_on_its_wall_clock() {
    let dir = TempDir::new("sched-posix-tz");
    let clock = FakeClock::new(&dir, T0 + 30_000);
    // Three hours east of UTC, no zoneinfo file of that name.
    let d = spawn(&dir, "mini-main", "primary", &clock, None)
        .env("TZ", "XYZ-3")
        .start();
    let s = create(
        &d,
        json!({"name": "noon", "cron": "0 12 * * *", "task": task_body(dir.path(), "p")}),
    );
    // 12:00 at UTC+3 is 09:00 UTC.
    assert_eq!(s["next_fire_at"], "2027-01-15T09:00:00.000Z", "{s}");
    assert!(!d.log().contains("computed in UTC"), "{}", d.log());
}
