//! codexd's own state file, damaged while codexd is down (issue 17, "damaged state that
//! does not heal"): `daemon-state.json` replaced by `{}` or by garbage in unix mode with a
//! live app-server. Before the fix codexd forgot the app-server it had started, fell back
//! to stdio leaving the old one on the socket, every turn on an existing session then
//! failed for good with "thread … already has an active writer", and the event seq
//! restarted low. Now codexd finds its app-server from the socket and the pid file beside
//! it, re-attaches, and continues the seq from the event log; a daemon-state file it
//! cannot use keeps `/readyz` at 503 with a warning that names it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::codex::MockCodexHome;
use crate::support::codexd::*;
use crate::support::daemon::{wait_for, Daemon};
use crate::support::http::get;
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);

/// Every process whose command line listens on `sock` (`--listen unix://<sock>`), read
/// from /proc: the app-servers codexd may have left there, however it lost track of them.
fn listeners_on(sock: &Path) -> Vec<u32> {
    let want = format!("unix://{}", sock.display());
    let listens = |pid: &u32| {
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
        args.windows(2)
            .any(|w| w[0] == b"--listen" && w[1] == want.as_bytes())
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(listens)
        .filter(|pid| !baa::common::proc::is_zombie(*pid))
        .collect();
    // The app-server forks to run things (git, shells); until that child execs it has the
    // same command line and binary as its parent. It is not a second app-server, and is
    // left out. (A wrapper script's child has the command line but not the binary.)
    let exe = |pid: u32| std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let forks: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|pid| {
            baa::common::proc::Stat::of(*pid)
                .map(|s| s.ppid)
                .is_some_and(|pp| pids.contains(&pp) && exe(pp) == exe(*pid))
        })
        .collect();
    pids.retain(|pid| !forks.contains(pid));
    // A fork that exec'd between the reads above had the command line but not the binary
    // any more: read again, after its binary, it is whatever it exec'd (a shell, git).
    pids.retain(listens);
    pids.sort_unstable();
    pids
}

/// Kills, on drop, every app-server listening on the socket (the test replaces the file
/// that `LeftChild` reads, so it cannot be relied on).
struct Listeners(PathBuf);

impl Drop for Listeners {
    fn drop(&mut self) {
        for pid in listeners_on(&self.0) {
            if let Some(start) = baa::common::proc::process_start_time(pid) {
                baa::common::proc::kill_if_same(pid, &start, Duration::from_secs(2));
            }
        }
    }
}

fn socket_of(dirs: &Dirs) -> PathBuf {
    dirs.state.join("app-server.sock")
}

/// The highest seq codexd has emitted, from its status.
#[track_caller]
fn last_seq(d: &Daemon) -> u64 {
    let v = get(&d.url("/v1/codexd/status")).json();
    v["data"]["snapshot"]["daemon"]["lastSeq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no lastSeq: {v}"))
}

/// Every event still kept, oldest first.
#[track_caller]
fn all_events(d: &Daemon) -> Vec<Value> {
    let v = get(&d.url("/v1/codexd/events?since=0&limit=1000")).json();
    v["data"]["events"].as_array().cloned().unwrap_or_default()
}

/// What happens to the state files while codexd is down.
enum Damage {
    /// daemon-state.json gets these bytes; its last-good copy stays.
    Replace(&'static [u8]),
    /// daemon-state.json gets these bytes, and its last-good copy is lost too.
    ReplaceAndLoseLastGood(&'static [u8]),
    /// daemon-state.json, its last-good copy and the pid file beside the socket are all
    /// lost (as with an app-server started before pid files existed).
    LoseAll,
}

/// A unix-mode codexd with a finished turn is SIGKILLed, its state is damaged, and codexd
/// starts again: it must re-attach to the same app-server (the only one left on the
/// socket, named by `from`), run a turn on the existing session, and continue the event
/// seq above the old maximum.
fn daemon_state_damaged_in_unix_mode(label: &str, damage: Damage, from: &str) {
    let home = MockCodexHome::new(label);
    let tmp = TempDir::new(label);
    let dirs = Dirs::under(&tmp.child("root"));
    let sock = socket_of(&dirs);
    let _listeners = Listeners(sock.clone());
    let mut d = start_running(with_mock_codex_unix(&dirs, &home));
    let app_pid = child_pid(&d);
    assert_eq!(listeners_on(&sock), [app_pid], "one app-server at first");
    let s = create_session(&d, json!({"cwd": home.work}));
    let sid = s["sessionId"].as_str().unwrap().to_string();
    let tid = turn(&d, &sid, "before the damage");
    let s = wait_turn_done(&d, &sid, &tid, T);
    assert_eq!(s["lastTurnStatus"], "completed", "{s}");
    let old_max = last_seq(&d);

    d.kill9();
    let file = dirs.state.join("daemon-state.json");
    let last_good = dirs.state.join(".daemon-state.json.last-good");
    assert!(last_good.is_file(), "no last-good copy was kept");
    match damage {
        Damage::Replace(bytes) => std::fs::write(&file, bytes).unwrap(),
        Damage::ReplaceAndLoseLastGood(bytes) => {
            std::fs::write(&file, bytes).unwrap();
            std::fs::remove_file(&last_good).unwrap();
        }
        Damage::LoseAll => {
            std::fs::remove_file(&file).unwrap();
            std::fs::remove_file(&last_good).unwrap();
            std::fs::remove_file(dirs.state.join("app-server.sock.pid")).unwrap();
        }
    }

    let d = start_running(with_mock_codex_unix(&dirs, &home));
    // A turn on the existing session: the thread has exactly one writer.
    let tid = turn(&d, &sid, "after the damage");
    let s = wait_turn_done(&d, &sid, &tid, T);
    assert_eq!(s["lastTurnStatus"], "completed", "{s}\nlog:\n{}", d.log());
    assert_eq!(
        s["lastTurn"]["finalMessage"], "mock reply: after the damage",
        "{s}"
    );

    // … because it runs in the same app-server, the only one on the socket.
    let c = child_status(&d);
    assert_eq!(
        (&c["transport"], &c["pid"], &c["attached"]),
        (&json!("unix"), &json!(app_pid), &json!(true)),
        "codexd did not re-attach to its app-server pid {app_pid}: {c}\nlog:\n{}",
        d.log()
    );
    assert_eq!(
        listeners_on(&sock),
        [app_pid],
        "a second app-server on the socket"
    );
    let events = all_events(&d);
    let damaged = events
        .iter()
        .find(|e| is_type(e, "state.damaged"))
        .unwrap_or_else(|| panic!("no state.damaged event: {events:?}"));
    assert_eq!(
        damaged["detail"]["appServer"],
        json!({"pid": app_pid, "from": from}),
        "{damaged}"
    );

    // The seq went on from the old maximum: no event of this codexd is numbered at or
    // below it, and the kept events have every seq once.
    // (The session shows the turn done a moment before its turn.completed is out.)
    let is_done = |e: &Value| is_type(e, "turn.completed") && e["detail"]["turnId"] == tid.as_str();
    let events = wait_for(T, || {
        let events = all_events(&d);
        events.iter().any(is_done).then_some(events)
    })
    .unwrap_or_else(|| panic!("no turn.completed for {tid}"));
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seqs not increasing: {seqs:?}"
    );
    let done = events.iter().find(|e| is_done(e)).unwrap();
    assert!(done["seq"].as_u64().unwrap() > old_max, "{done}");
    assert!(damaged["seq"].as_u64().unwrap() > old_max, "{damaged}");
    assert_eq!(damaged["detail"]["file"], "daemon-state.json", "{damaged}");
    // (Events may still have come after the status read before the kill.)
    assert!(
        damaged["detail"]["seqContinuesAfter"]
            .as_u64()
            .is_some_and(|s| s >= old_max),
        "{damaged}"
    );

    // Healed: ready, and the status still says what happened.
    wait_for(T, || (get(&d.url("/readyz")).status == 200).then_some(()))
        .unwrap_or_else(|| panic!("never ready: {}", get(&d.url("/readyz")).body));
    let status = get(&d.url("/v1/codexd/status")).json();
    let warnings = status["data"]["warnings"].to_string();
    assert!(warnings.contains("daemon-state.json"), "{status}");
    let on_disk: Value = serde_json::from_str(
        &std::fs::read_to_string(dirs.state.join("daemon-state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk["child"]["pid"], app_pid, "{on_disk}");
}

#[test]
fn real_codex_unix_daemon_state_replaced_by_empty_object_reattaches_the_same_app_server() {
    daemon_state_damaged_in_unix_mode(
        "codexd-heal-empty",
        Damage::Replace(b"{}"),
        "last-good copy",
    );
}

#[test]
fn real_codex_unix_daemon_state_replaced_by_garbage_reattaches_the_same_app_server() {
    daemon_state_damaged_in_unix_mode(
        "codexd-heal-garbage",
        Damage::Replace(b"\x00\x13not json at all {{{"),
        "last-good copy",
    );
}

#[test]
fn real_codex_unix_daemon_state_emptied_without_a_last_good_copy_finds_the_app_server_by_its_pid_file(
) {
    daemon_state_damaged_in_unix_mode(
        "codexd-heal-pidfile",
        Damage::ReplaceAndLoseLastGood(b"{}"),
        "pid file",
    );
}

#[test]
fn real_codex_unix_daemon_state_and_pid_file_lost_finds_the_app_server_on_its_socket() {
    daemon_state_damaged_in_unix_mode("codexd-heal-lost", Damage::LoseAll, "socket peer");
}

/// A directory where daemon-state.json belongs: codexd cannot read or write it, so it is
/// not ready (503 naming the file, a warning in its status) until the path is usable
/// again, and ready once it has written the file there.
#[test]
fn daemon_state_path_unusable_makes_codexd_not_ready_until_it_is_written_again() {
    let tmp = TempDir::new("codexd-heal-readyz");
    let dirs = Dirs::under(&tmp.child("root"));
    let mut d = start_running(with_stub(&dirs, "normal"));
    let ready = wait_for(T, || {
        let r = get(&d.url("/readyz"));
        (r.status == 200).then_some(r)
    })
    .unwrap_or_else(|| {
        panic!(
            "a fresh codexd never ready: {}",
            get(&d.url("/readyz")).body
        )
    });
    assert_eq!(
        ready.json()["data"]["warnings"],
        json!([]),
        "{}",
        ready.body
    );
    assert!(d.terminate(T).success(), "codexd exit; log:\n{}", d.log());

    let file = dirs.state.join("daemon-state.json");
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let d = start_running(with_stub(&dirs, "normal"));
    let r = get(&d.url("/readyz"));
    assert_eq!(r.status, 503, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"], "not_ready", "{v}");
    let reasons = v["details"]["reasons"].to_string();
    assert!(
        reasons.contains("daemon-state.json cannot be written"),
        "{v}"
    );
    let status = get(&d.url("/v1/codexd/status")).json();
    assert_eq!(status["data"]["ready"], false, "{status}");
    assert!(
        status["data"]["warnings"]
            .to_string()
            .contains("daemon-state.json was unreadable"),
        "{status}"
    );

    std::fs::remove_dir(&file).unwrap();
    wait_for(T, || (get(&d.url("/readyz")).status == 200).then_some(()))
        .unwrap_or_else(|| panic!("never ready again: {}", get(&d.url("/readyz")).body));
    let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(on_disk["mode"], "app-server", "{on_disk}");
    // What was found at start stays a warning.
    let ready = get(&d.url("/readyz")).json();
    assert!(
        ready["data"]["warnings"]
            .to_string()
            .contains("daemon-state.json was unreadable"),
        "{ready}"
    );
}

/// The seq never goes backwards even when the event log is lost with daemon-state.json:
/// the last-good copy still knows the highest seq.
#[test]
fn daemon_state_emptied_and_event_log_lost_continues_the_seq_from_the_last_good_copy() {
    let tmp = TempDir::new("codexd-heal-seq");
    let dirs = Dirs::under(&tmp.child("root"));
    let mut d = start_running(with_stub(&dirs, "normal"));
    let sid = create_session(&d, json!({}))["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let tid = turn(&d, &sid, "before the damage");
    wait_turn_done(&d, &sid, &tid, T);
    assert!(d.terminate(T).success(), "codexd exit; log:\n{}", d.log());
    let on_disk: Value = serde_json::from_str(
        &std::fs::read_to_string(dirs.state.join("daemon-state.json")).unwrap(),
    )
    .unwrap();
    let old_max = on_disk["lastSeq"].as_u64().unwrap();
    assert!(old_max > 5, "{on_disk}");

    std::fs::write(dirs.state.join("daemon-state.json"), b"{}").unwrap();
    std::fs::remove_file(dirs.state.join("recent-events.json")).unwrap();
    for entry in std::fs::read_dir(&dirs.logs).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("events") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }

    let d = start_running(with_stub(&dirs, "normal"));
    assert!(last_seq(&d) > old_max, "seq went back: {}", last_seq(&d));
    // (A `since` before the oldest event kept is refused, so read from the old maximum.)
    let page = get(&d.url(&format!("/v1/codexd/events?since={old_max}&limit=1000"))).json();
    let events = page["data"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let first = events
        .first()
        .unwrap_or_else(|| panic!("no events: {page}"));
    assert_eq!(first["seq"].as_u64(), Some(old_max + 1), "{first}");
    let damaged = events
        .iter()
        .find(|e| is_type(e, "state.damaged"))
        .unwrap_or_else(|| panic!("no state.damaged event: {events:?}"));
    assert_eq!(damaged["detail"]["lastGood"], true, "{damaged}");
    assert_eq!(damaged["detail"]["seqContinuesAfter"], old_max, "{damaged}");
}

/// The command codexd runs is a wrapper script whose child listens on the socket (as the
/// npm `codex` launcher does): the pid file names the wrapper, the socket names its child.
/// With daemon-state.json emptied and no last-good copy, codexd attaches to the listener
/// (the process it talks to), and a turn on the existing session completes.
#[test]
fn unix_wrapper_command_daemon_state_emptied_attaches_to_the_process_listening_on_the_socket() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("codexd-heal-wrapper");
    let dirs = Dirs::under(&tmp.child("root"));
    let sock = socket_of(&dirs);
    let _listeners = Listeners(sock.clone());
    let wrapper = tmp.join("codex-wrapper.sh");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\n\"{}\" \"$@\"\n", crate::support::daemon::CODEXD),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spawn = || {
        with_stub(&dirs, "listen")
            .env("BAA_CODEXD_SERVER_COMMAND", &wrapper)
            .env("BAA_CODEXD_SERVER_ENDPOINT", "unix://")
    };
    let mut d = start_running(spawn());
    let wrapper_pid = child_pid(&d);
    let sid = create_session(&d, json!({}))["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let tid = turn(&d, &sid, "before");
    wait_turn_done(&d, &sid, &tid, T);
    d.kill9();
    std::fs::write(dirs.state.join("daemon-state.json"), b"{}").unwrap();
    std::fs::remove_file(dirs.state.join(".daemon-state.json.last-good")).unwrap();

    let d = start_running(spawn());
    let c = child_status(&d);
    let pid = c["pid"].as_u64().unwrap() as u32;
    assert_eq!(c["attached"], true, "{c}\nlog:\n{}", d.log());
    assert_ne!(
        pid, wrapper_pid,
        "attached to the wrapper, not the listener: {c}"
    );
    assert!(listeners_on(&sock).contains(&pid), "{c}");
    let tid = turn(&d, &sid, "after");
    let s = wait_turn_done(&d, &sid, &tid, T);
    assert_eq!(s["lastTurnStatus"], "completed", "{s}");
    let events = all_events(&d);
    let found = events
        .iter()
        .find(|e| is_type(e, "child.found"))
        .unwrap_or_else(|| panic!("no child.found: {events:?}"));
    assert_eq!(found["detail"]["how"], "socket peer", "{found}");
}
