//! The automation mode file under damage and under a second writer: a corrupt
//! `system-state.json` must never un-pause automation or send `version` backwards, the
//! recovery must be visible (runtime warnings, status page), and the read cache must see
//! another conductor's writes at once. A FIFO or a directory at the path must never hang a
//! request, and `/readyz` says 503 while the file cannot be used.

use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::support::check::compare;
use crate::support::conductor;
use crate::support::daemon::{wait_for, Daemon, Spawn, STATUS_API};
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
        dir.join("state/.system-state.json.last-good"),
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

/// How long a request may take here: generous for a loaded machine, far below the 40 s+
/// hangs of the defects (and below the client's own 30 s timeout).
const PROMPT: Duration = Duration::from_secs(5);

/// `f` (one request) answered within [`PROMPT`].
#[track_caller]
fn promptly<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    assert!(
        t.elapsed() < PROMPT,
        "{what} took {:?} (a state file blocked it)",
        t.elapsed()
    );
    out
}

/// Puts a FIFO at `path` in one step (made beside it, renamed over it): the running
/// conductor never sees the path missing in between, which it would restore.
fn mkfifo(path: &std::path::Path) {
    let beside = path.with_extension("fifo-tmp");
    let c = std::ffi::CString::new(beside.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    std::fs::rename(&beside, path).unwrap();
}

/// Replaces the file at `path` by a directory. A directory cannot be renamed over a file,
/// so the running conductor may restore the file in between: try again until it sticks.
#[track_caller]
fn plant_dir(path: &std::path::Path) {
    let planted = wait_for(Duration::from_secs(10), || {
        let _ = std::fs::remove_file(path);
        std::fs::create_dir(path).ok()
    });
    assert!(
        planted.is_some(),
        "could not put a directory at {}",
        path.display()
    );
}

fn readyz(c: &Daemon) -> (u16, String) {
    let r = get(&c.url("/readyz"));
    (r.status, r.body)
}

fn runtime_warnings(c: &Daemon) -> String {
    get(&c.url("/v1/runtime")).expect(200)["data"]["warnings"].to_string()
}

/// A leader that answers `/readyz` 200 (the lease is taken within a tick or two).
#[track_caller]
fn ready(c: &Daemon) {
    let got = wait_for(Duration::from_secs(15), || {
        (readyz(c).0 == 200).then_some(())
    });
    assert!(got.is_some(), "never ready: {:?}", readyz(c));
}

#[test]
fn fifo_at_system_state_hung_healthz_and_pause() {
    let dir = TempDir::new("state-fifo");
    let file = dir.join("state/system-state.json");
    let c = conductor::spawn(&dir, "mini-main", "primary").start();
    ready(&c);
    post(&c.url("/v1/system/pause"), &json!({"requested_by": "ops"})).expect(200);

    // A FIFO replaces the file under the running conductor.
    mkfifo(&file);
    promptly("GET /healthz", || {
        assert_eq!(get(&c.url("/healthz")).body, "ok\n")
    });
    let s = promptly("GET /v1/system/state", || state(&c));
    assert_eq!(mode_version(&s), (json!("paused"), json!(1)), "{s}");
    let w = promptly("GET /v1/runtime", || runtime_warnings(&c));
    assert!(
        w.contains("is a FIFO") && w.contains("last good copy"),
        "{w}"
    );
    // Served from the copy and written back over the FIFO: usable again at once.
    assert!(std::fs::symlink_metadata(&file).unwrap().is_file());
    let r = promptly("POST /v1/system/resume", || {
        post(&c.url("/v1/system/resume"), &json!({})).expect(200)["data"].clone()
    });
    assert_eq!(mode_version(&r), (json!("running"), json!(2)));
    // The same again right before a pause: it answers, above the version before.
    mkfifo(&file);
    let r = promptly("POST /v1/system/pause", || {
        post(&c.url("/v1/system/pause"), &json!({})).expect(200)["data"].clone()
    });
    assert_eq!(mode_version(&r), (json!("paused"), json!(3)));
    assert_eq!(readyz(&c).0, 200);
}

#[test]
fn fifo_at_system_state_blocked_the_conductors_start() {
    let dir = TempDir::new("state-fifo-start");
    let mut c = conductor::spawn(&dir, "mini-main", "primary").start();
    for _ in 0..4 {
        post(&c.url("/v1/system/drain"), &json!({})).expect(200);
    }
    assert!(c.terminate(Duration::from_secs(15)).success());
    // Both the file and its copy are FIFOs: nothing to restore, nothing may block.
    mkfifo(&dir.join("state/system-state.json"));
    mkfifo(&dir.join("state/.system-state.json.last-good"));
    let c = promptly("the conductor's start", || {
        conductor::spawn(&dir, "mini-main", "primary").start()
    });
    promptly("GET /healthz", || {
        assert_eq!(get(&c.url("/healthz")).body, "ok\n")
    });
    let s = promptly("GET /v1/system/state", || state(&c));
    assert_eq!(
        (mode_version(&s), s["requested_by"].clone()),
        ((json!("paused"), json!(5)), json!("baa-conductor")),
        "paused by the conductor, above the 4 versions handed out: {s}"
    );
    assert!(
        s["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("is a FIFO"),
        "{s}"
    );
    ready(&c);
}

#[test]
fn directory_at_system_state_gave_500s_while_ready() {
    let dir = TempDir::new("state-dir");
    let file = dir.join("state/system-state.json");
    let c = conductor::spawn(&dir, "mini-main", "primary").start();
    ready(&c);
    post(&c.url("/v1/system/drain"), &json!({})).expect(200);

    plant_dir(&file);
    // Not ready, and saying why.
    let (status, body) = promptly("GET /readyz", || readyz(&c));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("system-state.json is a directory"), "{body}");
    // Reads are served from the last good copy; the warning names the path and what it is.
    assert_eq!(mode_version(&state(&c)), (json!("draining"), json!(1)));
    let w = runtime_warnings(&c);
    assert!(w.contains("system-state.json is a directory"), "{w}");
    // A change cannot be persisted: a clear error naming the directory, not a hang.
    let e = post(&c.url("/v1/system/pause"), &json!({})).expect(500);
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("is a directory"),
        "{e}"
    );
    // The operator removes it: ready again, on the last good state. The failed pause's
    // version was recorded in the history before its write failed, so the restored state
    // takes the next one: versions skip, never repeat.
    std::fs::remove_dir(&file).unwrap();
    ready(&c);
    let s = state(&c);
    assert_eq!(
        mode_version(&s),
        (json!("draining"), json!(3)),
        "{s}\n{}",
        c.log()
    );
    let r = post(&c.url("/v1/system/resume"), &json!({})).expect(200)["data"].clone();
    assert_eq!(mode_version(&r), (json!("running"), json!(4)));
    assert!(!runtime_warnings(&c).contains("is a directory"));
}

#[test]
fn garbage_at_system_state_is_healed_from_its_copy_while_running() {
    let dir = TempDir::new("state-garbage");
    let file = dir.join("state/system-state.json");
    let c = conductor::spawn(&dir, "mini-main", "primary").start();
    ready(&c);
    post(&c.url("/v1/system/pause"), &json!({"reason": "night"})).expect(200);
    // Damage in place (same inode): `echo {} >` and then a truncation.
    for damage in [&b"{}\n"[..], &b"{\"mode\": \"pa"[..]] {
        std::fs::write(&file, damage).unwrap();
        let s = state(&c);
        assert_eq!(
            (mode_version(&s), s["reason"].clone()),
            ((json!("paused"), json!(1)), json!("night")),
            "{s}"
        );
        assert_eq!(readyz(&c).0, 200, "healed at once");
        assert!(runtime_warnings(&c).contains("last good copy"));
    }
}

#[test]
fn system_state_version_went_backwards_when_no_copy_was_readable() {
    let dir = TempDir::new("state-version");
    let mut c = conductor::spawn(&dir, "mini-main", "primary").start();
    for _ in 0..7 {
        post(&c.url("/v1/system/drain"), &json!({})).expect(200);
    }
    assert!(c.terminate(Duration::from_secs(15)).success());
    // Both copies destroyed, no version legible in either.
    std::fs::write(dir.join("state/system-state.json"), b"{}").unwrap();
    std::fs::write(dir.join("state/.system-state.json.last-good"), b"{}").unwrap();
    let mut c = conductor::spawn(&dir, "mini-main", "primary").start();
    let s = state(&c);
    assert_eq!(mode_version(&s), (json!("paused"), json!(8)), "{s}");
    assert!(c.terminate(Duration::from_secs(15)).success());
    // Both deleted: still not a fresh install, still above.
    std::fs::remove_file(dir.join("state/system-state.json")).unwrap();
    std::fs::remove_file(dir.join("state/.system-state.json.last-good")).unwrap();
    let c = conductor::spawn(&dir, "mini-main", "primary").start();
    let s = state(&c);
    assert_eq!(mode_version(&s), (json!("paused"), json!(9)), "{s}");
    let r = post(&c.url("/v1/system/resume"), &json!({})).expect(200)["data"].clone();
    assert_eq!(mode_version(&r), (json!("running"), json!(10)));
}
