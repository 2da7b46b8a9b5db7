//! kill -9 torture of the state write path (research/reliability-security.md §1.4).
//!
//! A child process runs the REAL write path in a loop — `JsonStore::write` for three state
//! files with an increasing `seq`, then `JsonlLog::append` of an event — and prints
//! `torture-ack <seq>` after each round returns. The parent SIGKILLs it at a random moment
//! 0–50 ms after its k-th acknowledged round (k random in 0–2; 0 counts from the spawn),
//! over and over, and after every kill checks what a restarted daemon would rely on:
//!
//! - every state file exists, is non-empty and parses, and its `seq` ≥ the last ack;
//! - reopening the store (`JsonStore::open`) sweeps the dead writer's `.*.tmp` files;
//! - `JsonlLog::open` cuts any torn tail, every remaining line parses, seqs only increase,
//!   and every acknowledged seq is in the log.
//!
//! The child is this test binary itself, re-executed to run the `#[ignore]`d
//! `writer_process` test, which does nothing unless `BAA_TORTURE_DIR` is set.
//! Set `BAA_TORTURE_SEED` to replay a failing run. The default run makes 50 kills;
//! `BAA_TORTURE_FULL=1` makes the full 220.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::unbounded;

use baa::common::jsonl::JsonlLog;
use baa::common::store::JsonStore;
use serde_json::{json, Value};

use crate::support::tmp::TempDir;

const STATE_FILES: [&str; 3] = ["system.json", "lease.json", "controllers.json"];
const EVENTS: &str = "events.jsonl";
const DIR_ENV: &str = "BAA_TORTURE_DIR";
/// Kills of the default run and of the full one (`BAA_TORTURE_FULL=1`).
const KILLS: usize = 50;
const FULL_KILLS: usize = 220;
const FULL_ENV: &str = "BAA_TORTURE_FULL";
/// Acknowledged rounds wanted before stopping, 100 per 220 kills; on a loaded machine the
/// writer starts slower, so more kills are made (up to `MAX_TIME`) until this much real
/// work was cut.
const MIN_ACKS_PER_220_KILLS: usize = 100;
const MAX_TIME: Duration = Duration::from_secs(30);

/// xorshift64: a tiny PRNG so a failing run can be replayed from its printed seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Highest seq in the state files, so a restarted writer continues it. State files are
/// written before the event, so no logged event has a higher seq.
fn seq_on_disk(dir: &Path) -> u64 {
    let mut max = 0;
    for name in STATE_FILES {
        if let Ok(bytes) = fs::read(dir.join(name)) {
            if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                max = max.max(v["seq"].as_u64().unwrap_or(0));
            }
        }
    }
    max
}

/// The child: writes forever until killed. Returns at once in a normal test run.
#[test]
#[ignore = "run by torture::kill9_state_writes as a child process"]
fn writer_process() {
    let Some(dir) = std::env::var_os(DIR_ENV).map(PathBuf::from) else {
        return;
    };
    let store = JsonStore::open(&dir).expect("open store");
    let (mut log, _) = JsonlLog::open(dir.join(EVENTS), true).expect("open log");
    let mut seq = seq_on_disk(&dir);
    loop {
        seq += 1;
        for name in STATE_FILES {
            // A few KB per file so a write is more than one page of work.
            let state = json!({"seq": seq, "file": name, "pad": "s".repeat(3000 + (seq as usize % 5) * 700)});
            store.write(name, &state).expect("state write");
        }
        // Events vary up to ~64 KB so a kill can land inside one append's write().
        let pad = "e".repeat((seq as usize * 7919) % (64 * 1024));
        log.append(&json!({"seq": seq, "pad": pad}))
            .expect("event append");
        println!("\ntorture-ack {seq}");
    }
}

/// Parses `torture-ack N` lines; returns the highest N.
fn last_ack(stdout: &str) -> Option<u64> {
    stdout
        .lines()
        .filter_map(|l| l.split("torture-ack ").nth(1))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .max()
}

/// What the log held at the previous check: lines before `verified` parsed then and are
/// never rewritten (appends only; repair only cuts an unparsable tail), so each check
/// parses only what was added since.
#[derive(Default)]
struct LogSeen {
    verified: usize,
    seqs: Vec<u64>,
    torn_tails: usize,
}

/// Every invariant a restart depends on; panics with the evidence when one breaks.
fn check_after_kill(dir: &Path, acked: &[u64], seen: &mut LogSeen, round: usize, seed: u64) {
    let last = acked.last().copied().unwrap_or(0);
    let ctx = format!("round {round}, seed {seed}, last ack {last}");
    for name in STATE_FILES {
        let path = dir.join(name);
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{ctx}: {name} missing: {e}"));
        assert!(!bytes.is_empty(), "{ctx}: {name} is empty");
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{ctx}: {name} does not parse ({e}); first bytes {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(120)])
            )
        });
        let seq = v["seq"].as_u64().unwrap_or(0);
        assert!(
            seq >= last,
            "{ctx}: {name} went back: expected seq >= {last}, got {seq}"
        );
    }

    // The next start's sweep removes the dead writer's temps.
    drop(JsonStore::open(dir).unwrap_or_else(|e| panic!("{ctx}: reopen store: {e}")));
    let temps: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
        .collect();
    assert!(
        temps.is_empty(),
        "{ctx}: temps left after reopen: {temps:?}"
    );

    let log_path = dir.join(EVENTS);
    let before = fs::read(&log_path).unwrap_or_default();
    let torn = !before.is_empty() && before.last() != Some(&b'\n');
    let (log, cut) =
        JsonlLog::open(&log_path, true).unwrap_or_else(|e| panic!("{ctx}: open log: {e}"));
    drop(log);
    assert!(
        !torn || cut > 0,
        "{ctx}: the log ended mid-line but open() cut nothing"
    );
    seen.torn_tails += usize::from(torn);
    let after = fs::read(&log_path).unwrap();
    assert!(
        after.len() >= seen.verified,
        "{ctx}: the log shrank below already verified lines: {} < {}",
        after.len(),
        seen.verified
    );
    assert!(
        after.is_empty() || after.last() == Some(&b'\n'),
        "{ctx}: log still ends mid-line after repair"
    );
    for line in after[seen.verified..].split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_slice(line).unwrap_or_else(|e| {
            panic!(
                "{ctx}: log line after byte {} does not parse after repair ({e}): {:?}",
                seen.verified,
                String::from_utf8_lossy(&line[..line.len().min(80)])
            )
        });
        let seq = v["seq"].as_u64().unwrap_or(0);
        assert!(
            seen.seqs.last().is_none_or(|prev| *prev < seq),
            "{ctx}: log seqs not strictly increasing: {:?} then {seq}",
            seen.seqs.last()
        );
        seen.seqs.push(seq);
    }
    seen.verified = after.len();
    let missing: Vec<u64> = acked
        .iter()
        .filter(|s| seen.seqs.binary_search(s).is_err())
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{ctx}: acknowledged events missing from the log: {missing:?}"
    );
}

#[test]
fn kill9_state_writes() {
    let seed = std::env::var("BAA_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    let kills = if std::env::var_os(FULL_ENV).is_some_and(|v| v != "0") {
        FULL_KILLS
    } else {
        KILLS
    };
    let min_acks = kills * MIN_ACKS_PER_220_KILLS / FULL_KILLS;
    println!("torture seed {seed} (replay with BAA_TORTURE_SEED={seed}), {kills} kills");
    let mut rng = XorShift(seed);
    let tmp = TempDir::new("torture");
    let dir = tmp.join("state");
    // Seed every file so "exists" holds from the first kill on.
    {
        let store = JsonStore::open(&dir).unwrap();
        for name in STATE_FILES {
            store.write(name, &json!({"seq": 0, "file": name})).unwrap();
        }
    }
    let exe = std::env::current_exe().expect("current exe");
    let started = Instant::now();
    let mut acked: Vec<u64> = Vec::new();
    let mut seen = LogSeen::default();
    let mut rounds_with_acks = 0;
    let mut round = 0;
    while round < kills || (acked.len() < min_acks && started.elapsed() < MAX_TIME) {
        // Kill 0–50 ms after the writer's k-th acknowledged round (k = 0 counts from the
        // spawn): on a loaded machine a process can take longer than 50 ms to start, and a
        // delay counted from the spawn alone then kills nearly every writer before it
        // wrote anything (58 acks in 727 kills at load 7 on 2 cores).
        let wait_acks = (rng.next() % 3) as usize;
        let delay = Duration::from_micros(rng.next() % 50_000);
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "torture::writer_process",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(DIR_ENV, &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("stdout");
        // The writer's lines, forwarded so the wait for its k-th ack is bounded.
        let (tx, lines) = unbounded::<String>();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut out = String::new();
        let until = Instant::now() + Duration::from_secs(10);
        let mut acks_seen = 0;
        while acks_seen < wait_acks {
            let Ok(line) = lines.recv_deadline(until) else {
                break;
            };
            acks_seen += usize::from(line.contains("torture-ack "));
            out.push_str(&line);
            out.push('\n');
        }
        thread::sleep(delay);
        // SIGKILL: no destructors, no flushes, exactly what launchd's hard stop does.
        child.kill().expect("kill writer");
        child.wait().expect("reap writer");
        // The writer is dead, so its end of the pipe is closed and the reader ends.
        reader.join().expect("stdout reader");
        for line in lines.try_iter() {
            out.push_str(&line);
            out.push('\n');
        }
        if let Some(n) = last_ack(&out) {
            let first_new = acked.last().map_or(1, |l| l + 1);
            // Acks from this run are consecutive from where the previous run stopped or
            // beyond (an unacknowledged write may have advanced the seq).
            let run: Vec<u64> = out
                .lines()
                .filter_map(|l| l.split("torture-ack ").nth(1))
                .filter_map(|n| n.trim().parse::<u64>().ok())
                .collect();
            assert!(
                run.first().is_some_and(|f| *f >= first_new) && n >= first_new,
                "round {round}: acks {run:?} do not continue after {:?}",
                acked.last()
            );
            acked.extend(run);
            rounds_with_acks += 1;
        }
        check_after_kill(&dir, &acked, &mut seen, round, seed);
        round += 1;
    }
    println!(
        "{round} kills in {:?}: {} acknowledged rounds ({rounds_with_acks} runs acked something), {} log lines, {} torn tail(s) repaired",
        started.elapsed(),
        acked.len(),
        seen.seqs.len(),
        seen.torn_tails,
    );
    // A run where the writer never got going proves nothing: demand real work.
    assert!(
        acked.len() >= min_acks,
        "expected at least {min_acks} acknowledged writes, got {} in {round} kills over {:?} (seed {seed})",
        acked.len(),
        started.elapsed()
    );
}
