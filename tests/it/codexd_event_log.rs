//! codexd's event log under faults, with the stub child: `events.jsonl` rotating under a
//! burst while readers reconnect with `?since=`, a `since` older than what is kept
//! (410 `since_expired`), the log file deleted or replaced under the daemon, and
//! SIGKILL while rotations happen. Tiny `BAA_CODEXD_EVENT_LOG_MAX_BYTES` makes a burst
//! rotate many times.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::codexd::*;
use crate::support::daemon::{wait_for, Daemon, Spawn};
use crate::support::http::{get, raw, raw_status};
use crate::support::tmp::TempDir;
use crate::support::ws::connect;

const T: Duration = Duration::from_secs(30);

fn with_log_limits(dirs: &Dirs, max_bytes: u64, keep: usize) -> Spawn {
    with_stub(dirs, "normal")
        .env("BAA_CODEXD_EVENT_LOG_MAX_BYTES", max_bytes.to_string())
        .env("BAA_CODEXD_EVENT_LOG_KEEP", keep.to_string())
}

fn last_seq(d: &Daemon) -> u64 {
    get(&d.url("/v1/codexd/status")).json()["data"]["snapshot"]["daemon"]["lastSeq"]
        .as_u64()
        .expect("lastSeq")
}

/// Rotated segment ranges in the logs dir, oldest first.
fn segments(logs: &Path) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = std::fs::read_dir(logs)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let range = name.strip_prefix("events.")?.strip_suffix(".jsonl")?;
            let (a, b) = range.split_once('-')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect();
    v.sort();
    v
}

/// Every event after `since` through plain GET pages (limit 1000) up to `last`.
fn page_all(d: &Daemon, since: u64, last: u64) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut at = since;
    while at < last {
        let page = get(&d.url(&format!("/v1/codexd/events?since={at}&limit=1000"))).expect(200);
        let events = page["data"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let Some(next) = events.last().and_then(|e| e["seq"].as_u64()) else {
            panic!("no events after {at} (want up to {last}): {page}");
        };
        out.extend(events);
        at = next;
    }
    out
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

/// A client that reads the stream from `since` the way a real one must: whenever its
/// connection ends (dropped as too slow, or it hangs up on purpose after `hang_up_every`
/// frames), it reconnects with the last seq it saw. Returns every frame, until `done`.
fn read_reconnecting(
    d: &Daemon,
    since: u64,
    hang_up_every: usize,
    done: impl Fn(&Value) -> bool,
) -> (Vec<Value>, usize) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut got: Vec<Value> = Vec::new();
    let mut connects = 0;
    let mut last = since;
    loop {
        assert!(
            Instant::now() < deadline,
            "stream not done after {} frames, {connects} connects",
            got.len()
        );
        let mut ws = connect(&d.addr, &format!("/v1/codexd/events?since={last}"), &[])
            .unwrap_or_else(|s| panic!("reconnect with since={last}: status {s}"));
        connects += 1;
        let mut this_time = 0;
        while let Some(v) = ws.next_json(Duration::from_secs(10)) {
            last = v["seq"].as_u64().expect("seq");
            let end = done(&v);
            got.push(v);
            this_time += 1;
            if end {
                return (got, connects);
            }
            if this_time == hang_up_every {
                break;
            }
        }
        ws.close();
    }
}

#[test]
fn event_log_rotation_under_a_burst_gives_a_reconnecting_since_reader_every_event_once() {
    let tmp = TempDir::new("codexd-evlog-rotate");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = start_running(with_log_limits(&dirs, 64 * 1024, 1000));
    let sid = create_session(&d, json!({}))["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let mark = last_seq(&d);
    let tid = turn(&d, &sid, "burst:20000");
    // Hangs up every 3000 frames, so it reconnects across many rotations, both while
    // the burst is still being written and after.
    let (got, connects) = read_reconnecting(&d, mark, 3000, |e| {
        is_type(e, "turn.completed") && e["detail"]["turnId"] == tid.as_str()
    });
    assert!(connects >= 5, "only {connects} connects");
    let s = seqs(&got);
    assert_eq!(s.first(), Some(&(mark + 1)));
    assert_contiguous(&got);

    let segs = segments(&dirs.logs);
    assert!(segs.len() >= 20, "few rotations: {segs:?}");
    assert!(
        segs.windows(2).all(|w| w[0].1 + 1 == w[1].0),
        "segments not contiguous: {segs:?}"
    );
    // A second reader, all at once by plain GET, from before the first rotation.
    let last = *s.last().unwrap();
    let paged = page_all(&d, 0, last);
    assert_eq!(seqs(&paged), (1..=last).collect::<Vec<_>>());
    assert_eq!(
        paged[mark as usize..],
        got[..],
        "GET pages differ from the stream"
    );
}

#[test]
fn since_older_than_the_kept_log_is_410_since_expired_with_the_oldest_seq() {
    let tmp = TempDir::new("codexd-evlog-expired");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = start_running(with_log_limits(&dirs, 64 * 1024, 1));
    let sid = create_session(&d, json!({}))["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let tid = turn(&d, &sid, "burst:8000");
    wait_turn_done(&d, &sid, &tid, T);
    // The session shows the turn done a moment before its last two events (the relayed
    // `turn/completed`, then `turn.completed`) are appended, and either may rotate the
    // log: the oldest kept seq is read once the turn's final event is out.
    wait_for(T, || {
        let status = get(&d.url("/v1/codexd/status")).expect(200);
        let events = status["data"]["snapshot"]["recentEvents"]["events"].as_array()?;
        events
            .iter()
            .any(|e| is_type(e, "turn.completed") && e["detail"]["turnId"] == tid.as_str())
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no turn.completed event for {tid}\nlog:\n{}", d.log()));

    let err = get(&d.url("/v1/codexd/events?since=0")).expect_error(410, "since_expired");
    let oldest = err["details"]["oldest_seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no details.oldest_seq: {err}"));
    assert!(oldest > 1, "{err}");
    assert_eq!(err["details"]["since"], 0, "{err}");
    // The WebSocket upgrade is refused with the same JSON, before any frame.
    let req = format!(
        "GET /v1/codexd/events?since={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        oldest - 2,
        d.addr
    );
    let resp = raw(&d.addr, req.as_bytes(), Duration::from_secs(10));
    assert_eq!(raw_status(&resp), 410, "{resp}");
    assert!(resp.contains("\"since_expired\""), "{resp}");
    assert!(
        resp.contains(&format!("\"oldest_seq\": {oldest}")),
        "{resp}"
    );

    // From the oldest kept on, everything is there.
    let page = get(&d.url(&format!("/v1/codexd/events?since={}&limit=5", oldest - 1))).expect(200);
    assert_eq!(page["data"]["events"][0]["seq"], oldest, "{page}");
    assert_eq!(page["data"]["oldestSeq"], oldest, "{page}");
    let mut ws = events_ws(&d, Some(oldest - 1));
    let first = ws.next_json(T).expect("first replayed frame");
    assert_eq!(first["seq"], oldest, "{first}");
}

#[test]
fn replaced_or_deleted_event_log_is_reopened_and_new_events_reach_the_new_file() {
    let tmp = TempDir::new("codexd-evlog-replaced");
    let dirs = Dirs::under(&tmp.child("root"));
    let d = start_running(with_stub(&dirs, "normal"));
    let sid = create_session(&d, json!({}))["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let path = dirs.logs.join("events.jsonl");
    let seqs_in = |p: &Path| -> BTreeSet<u64> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["seq"].as_u64())
            .collect()
    };
    // Until a turn's events show up in the file at `path` (the check runs at most once
    // a second, on an append), run turns.
    let until_written = |what: &str| -> BTreeSet<u64> {
        wait_for(T, || {
            let before = last_seq(&d);
            let tid = turn(&d, &sid, "hello");
            wait_turn_done(&d, &sid, &tid, T);
            let s = seqs_in(&path);
            s.iter().any(|x| *x > before).then_some(s)
        })
        .unwrap_or_else(|| panic!("{what}: no new event reached {}", path.display()))
    };

    // Deleted (log rotation by hand, `rm`): a new file appears at the path.
    std::fs::rename(&path, dirs.logs.join("moved-away.jsonl")).unwrap();
    let mark = last_seq(&d);
    let written = until_written("after delete");
    assert!(
        written.iter().all(|s| *s > mark),
        "old events in the new file: {written:?}"
    );
    assert!(d.log().contains("was deleted under codexd"), "{}", d.log());

    // Replaced by another file: writes move to it.
    let other = dirs.logs.join("other.jsonl");
    std::fs::write(&other, b"").unwrap();
    std::fs::rename(&other, &path).unwrap();
    let mark = last_seq(&d);
    let written = until_written("after replace");
    assert!(written.iter().all(|s| *s > mark), "{written:?}");
    assert!(d.log().contains("was replaced under codexd"), "{}", d.log());
    // The events the lost file held are not offered as if nothing happened: a `since`
    // before the new file is served from memory (the ring still has them) or refused.
    let r = get(&d.url("/v1/codexd/events?since=0&limit=1000"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_contiguous(r.json()["data"]["events"].as_array().unwrap());
}

#[test]
fn sigkill_while_rotating_then_restart_continues_seq_and_every_acknowledged_event_is_readable() {
    let tmp = TempDir::new("codexd-evlog-kill9");
    let dirs = Dirs::under(&tmp.child("root"));
    // ~15 events per file: a burst rotates thousands of times a second, so the kills
    // land among renames, creates and deletes (each step is pinned by a unit test in
    // event_log.rs too).
    let spawn = || with_log_limits(&dirs, 4096, 100_000);
    let mut acknowledged: Vec<Value> = Vec::new();
    for _ in 0..3 {
        let mut d = start_running(spawn());
        let sid = create_session(&d, json!({}))["sessionId"]
            .as_str()
            .unwrap()
            .to_string();
        let mark = last_seq(&d);
        turn(&d, &sid, "burst:50000");
        // Take a few thousand events as a live client would (reconnecting with since if
        // it falls behind on a loaded machine), then kill -9 mid-burst.
        let deltas = std::cell::Cell::new(0);
        let (got, _) = read_reconnecting(&d, mark, usize::MAX, |e| {
            if e["type"] == "item/agentMessage/delta" {
                deltas.set(deltas.get() + 1);
            }
            deltas.get() >= 2000
        });
        acknowledged.extend(got);
        d.kill9();
    }
    let d = start_running(spawn());
    let last_before = acknowledged.last().unwrap()["seq"].as_u64().unwrap();
    let all = page_all(&d, 0, last_seq(&d));
    let s = seqs(&all);
    assert_eq!(s.first(), Some(&1));
    assert_contiguous(&all);
    let on_disk: BTreeSet<u64> = s.iter().copied().collect();
    let missing: Vec<u64> = seqs(&acknowledged)
        .into_iter()
        .filter(|x| !on_disk.contains(x))
        .collect();
    assert_eq!(missing, Vec::<u64>::new(), "acknowledged events lost");
    for a in &acknowledged {
        let seq = a["seq"].as_u64().unwrap() as usize;
        assert_eq!(&all[seq - 1], a, "event {seq} differs on disk");
    }
    let last = *s.last().unwrap();
    assert!(
        last > last_before,
        "last seq {last} not after {last_before}"
    );
    let started = all
        .iter()
        .rev()
        .find(|e| e["type"] == "daemon.started")
        .expect("daemon.started");
    let segs = segments(&dirs.logs);
    assert!(
        segs.windows(2).all(|w| w[0].1 + 1 == w[1].0),
        "segments not contiguous: {segs:?}"
    );
    assert!(
        started["seq"].as_u64().unwrap() > last_before,
        "seq did not continue: {started}"
    );
}
