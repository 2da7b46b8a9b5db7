//! Durable before acknowledged: a turn codexd answered 202 for is on disk before the 202
//! leaves, so a codexd SIGKILLed right after it still knows the turn, and in unix mode
//! the next codexd re-attaches to the app-server that runs it and sees it finish.
//! (Before: the turn was written by the ticker up to 100 ms later, and a kill in that
//! window lost it: the re-attach skipped the session.)

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::codexd::*;
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);
const ROUNDS: usize = 50;

/// The stub app-server serves the unix socket and outlives every codexd; each round
/// starts a turn, SIGKILLs codexd as soon as the 202 is read, starts codexd again, and
/// finds the turn known at once and then completed in the re-attached app-server.
#[test]
fn a_turn_answered_202_survives_a_sigkill_right_after_it_every_time() {
    let tmp = TempDir::new("codexd-durable");
    let dirs = Dirs::under(&tmp.child("root"));
    let _left = LeftChild::of(&dirs);
    let spawn = || with_stub(&dirs, "listen").env("BAA_CODEXD_SERVER_ENDPOINT", "unix://");
    let mut d = start_running(spawn());
    let app_pid = child_pid(&d);
    let s = create_session(&d, json!({}));
    let sid = s["sessionId"].as_str().unwrap().to_string();
    let mut gaps = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let accepted = start_turn(&d, &sid, "slow:5");
        let answered = Instant::now();
        d.signal(libc::SIGKILL);
        gaps.push(answered.elapsed());
        d.kill9();
        let v = accepted.expect(202);
        let tid = v["data"]["turnId"].as_str().unwrap().to_string();

        d = start_running(spawn());
        let s = session(&d, &sid);
        assert_eq!(
            s["lastTurnId"], tid,
            "round {round}: the restarted codexd does not know the turn it answered 202 for: {s:#}\nlog:\n{}",
            d.log()
        );
        let c = wait_child(&d, T, "attached", |c| c["attached"] == true);
        assert_eq!(c["pid"], app_pid, "round {round}: a new app-server: {c}");
        let s = wait_turn_done(&d, &sid, &tid, T);
        assert_eq!(
            (&s["lastTurnStatus"], &s["lastTurn"]["finalMessage"]),
            (&json!("completed"), &json!("slow reply")),
            "round {round}: {s:#}\nlog:\n{}",
            d.log()
        );
    }
    gaps.sort();
    let within_1ms = gaps
        .iter()
        .filter(|g| **g <= Duration::from_millis(1))
        .count();
    // The kill is the next call after the read; what is measured is until kill(2) returned.
    eprintln!(
        "{ROUNDS} rounds; kill(2) returned within 1 ms of reading the 202 in {within_1ms}, median {:?}, slowest {:?}",
        gaps[ROUNDS / 2],
        gaps[ROUNDS - 1]
    );
}

/// A state dir from before the per-session files: its `session-registry.json` becomes one
/// hot file per session at start, and the sessions go on as before.
#[test]
fn a_session_registry_from_an_older_codexd_is_migrated_at_start() {
    let tmp = TempDir::new("codexd-migrate");
    let dirs = Dirs::under(&tmp.child("root"));
    let mut d = start_running(with_stub(&dirs, "normal"));
    let sid = create_session(&d, json!({"metadata": {"k": "v"}}))["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let tid = turn(&d, &sid, "before the upgrade");
    wait_turn_done(&d, &sid, &tid, T);
    assert!(d.terminate(T).success(), "codexd exit; log:\n{}", d.log());

    // What an older codexd wrote: the whole hot set in one file, `status` the thread's.
    let hot = dirs.state.join(format!("sessions/hot/{sid}.json"));
    let mut old: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&hot).unwrap()).unwrap();
    old["status"] = json!("idle");
    old.as_object_mut().unwrap().remove("threadStatus");
    let registry = json!({"updatedAt": old["updatedAt"], "sessions": [old]});
    std::fs::write(
        dirs.state.join("session-registry.json"),
        serde_json::to_vec_pretty(&registry).unwrap(),
    )
    .unwrap();
    std::fs::remove_file(&hot).unwrap();

    let d = start_running(with_stub(&dirs, "normal"));
    let s = session(&d, &sid);
    assert_eq!(
        (
            &s["status"],
            &s["threadStatus"],
            &s["metadata"],
            &s["lastTurnId"]
        ),
        (
            &json!("active"),
            &json!("notLoaded"),
            &json!({"k": "v"}),
            &json!(tid)
        ),
        "{s:#}"
    );
    assert!(hot.is_file(), "no hot file after the migration");
    assert!(!dirs.state.join("session-registry.json").exists());
    assert!(dirs.state.join("session-registry.json.migrated").is_file());
    let tid = turn(&d, &sid, "after the upgrade");
    let s = wait_turn_done(&d, &sid, &tid, T);
    assert_eq!(
        s["lastTurn"]["finalMessage"], "stub reply: after the upgrade",
        "{s:#}"
    );
}
