//! The automation mode file under damage and under a second writer: a corrupt
//! `system-state.json` must never un-pause automation or send `version` backwards, the
//! recovery must be visible (runtime warnings, status page), and the read cache must see
//! another conductor's writes at once.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::support::check::compare;
use crate::support::conductor;
use crate::support::daemon::{Spawn, STATUS_API};
use crate::support::http::{get, post};
use crate::support::tmp::TempDir;

fn state(c: &crate::support::daemon::Daemon) -> Value {
    get(&c.url("/v1/system/state")).expect(200)["data"].clone()
}

fn mode_version(s: &Value) -> (Value, Value) {
    (s["mode"].clone(), s["version"].clone())
}

#[test]
fn corrupt_system_state_does_not_unpause_automation() {
    let dir = TempDir::new("corrupt-state");
    let mut c = conductor::spawn(&dir, "mini-main", "primary").start();
    for _ in 0..40 {
        post(&c.url("/v1/system/drain"), &json!({})).expect(200);
    }
    post(
        &c.url("/v1/system/pause"),
        &json!({"requested_by": "ops", "reason": "maintenance"}),
    )
    .expect(200);
    compare(
        "exit code after SIGTERM",
        c.terminate(Duration::from_secs(15)).code(),
        Some(0),
    );

    // A torn write from outside (or a bad hand edit): the last good copy comes back.
    let file = dir.join("state/system-state.json");
    std::fs::write(&file, b"{\"mode\": \"paused\", \"holder_id\": nu").unwrap();
    let mut c = conductor::spawn(&dir, "mini-main", "primary").start();
    let s = state(&c);
    assert_eq!(
        (mode_version(&s), s["requested_by"].clone()),
        ((json!("paused"), json!(41)), json!("ops")),
        "{s}"
    );
    let warnings = get(&c.url("/v1/runtime")).expect(200)["data"]["warnings"].to_string();
    assert!(
        warnings.contains("moved aside") && warnings.contains("last good copy"),
        "{warnings}"
    );
    compare(
        "exit code after SIGTERM",
        c.terminate(Duration::from_secs(15)).code(),
        Some(0),
    );

    // Both copies gone bad: paused by the conductor itself, above every version still
    // legible (here in the torn last-good copy).
    std::fs::write(&file, b"\x00\x00garbage").unwrap();
    std::fs::write(
        dir.join("state/system-state.last-good.json"),
        b"{\"mode\": \"running\", \"version\": 41, \"upd",
    )
    .unwrap();
    let c = conductor::spawn(&dir, "mini-main", "primary").start();
    let s = state(&c);
    assert_eq!(
        (mode_version(&s), s["requested_by"].clone()),
        ((json!("paused"), json!(42)), json!("baa-conductor")),
        "{s}"
    );
    let reason = s["reason"].as_str().unwrap_or_default().to_string();
    let aside: Vec<String> = std::fs::read_dir(dir.join("state"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("system-state.json.corrupt-"))
        .collect();
    assert!(
        aside.iter().any(|n| reason.contains(n.as_str())),
        "the reason names a moved-aside file: {reason:?} vs {aside:?}"
    );

    // The status page shows the condition.
    let status = Spawn::new(STATUS_API)
        .env("BAA_STATUS_API_HOST", "127.0.0.1")
        .env("BAA_STATUS_API_PORT", "0")
        .env("BAA_CONDUCTOR_LOCAL_API", &c.base)
        .env("BAA_CODEXD_LOCAL_API_BASE", "http://127.0.0.1:9")
        .start();
    let page = get(&status.url("/")).body;
    assert!(
        page.contains("system state: system-state.json was unreadable"),
        "the status page shows the recovery warning:\n{page}"
    );

    // An operator's resume goes on from there and clears the warning.
    let r = post(&c.url("/v1/system/resume"), &json!({"requested_by": "ops"})).expect(200)["data"]
        .clone();
    assert_eq!(mode_version(&r), (json!("running"), json!(43)));
    let warnings = get(&c.url("/v1/runtime")).expect(200)["data"]["warnings"].to_string();
    assert!(!warnings.contains("system state"), "{warnings}");
}

#[test]
fn system_state_cache_sees_a_second_conductors_writes() {
    let dir = TempDir::new("state-cache");
    let leader = conductor::spawn(&dir, "mini-main", "primary").start();
    let standby = conductor::spawn(&dir, "mini-standby", "standby").start();
    assert_eq!(mode_version(&state(&standby)), (json!("running"), json!(0)));
    let file = dir.join("state/system-state.json");
    for (i, action) in ["pause", "drain", "resume", "pause", "resume", "drain"]
        .iter()
        .enumerate()
    {
        let w = post(&leader.url(&format!("/v1/system/{action}")), &json!({})).expect(200)["data"]
            .clone();
        // Read at once: the file is fresh, possibly in the same mtime tick as the last one.
        assert_eq!(
            mode_version(&state(&standby)),
            mode_version(&w),
            "write {i} ({action})"
        );
        if i % 2 == 1 {
            // Age the file so the standby serves it from its cache, then change it again.
            let old = SystemTime::now() - Duration::from_secs(3600);
            std::fs::File::options()
                .write(true)
                .open(&file)
                .unwrap()
                .set_modified(old)
                .unwrap();
            for _ in 0..3 {
                assert_eq!(mode_version(&state(&standby)), mode_version(&w));
            }
        }
    }
}

#[test]
fn a_mode_never_changed_reports_when_it_was_first_written_across_restarts() {
    let dir = TempDir::new("state-first-written");
    let mut c = conductor::spawn(&dir, "mini-main", "primary").start();
    let first = state(&c);
    assert_eq!(
        mode_version(&first),
        (json!("running"), json!(0)),
        "{first}"
    );
    let written = first["updated_at"].clone();
    // Written at the first start, not made up per request: on disk already.
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(dir.join("state/system-state.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk["updated_at"], written, "{on_disk}");
    assert!(c.terminate(Duration::from_secs(15)).success());
    let c = conductor::spawn(&dir, "mini-main", "primary").start();
    let again = state(&c);
    assert_eq!(
        (mode_version(&again), again["updated_at"].clone()),
        ((json!("running"), json!(0)), written),
        "{again}"
    );
}
