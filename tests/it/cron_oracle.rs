//! The cron oracle: `baa::common::cron` against Python's `croniter` (pinned in
//! tools/py/requirements.txt, installed into .tools/py by scripts/install-py-tools.sh, which
//! scripts/test.sh runs; this test fails, not skips, when it is missing).
//!
//! 2,400 seeded random expressions (`*`, lists, ranges, `*/n`, `a-b/n`, `a/n`, month and
//! weekday names in any case, 7 for Sunday; both day fields restricted in a quarter of them),
//! each in two (zone, start) pairs out of four zones (UTC, Europe/Berlin, America/New_York,
//! Australia/Adelaide: two northern DST rules, a southern one with a half-hour offset) and
//! nine start instants (five right before a DST change, one on a leap day), five fires each:
//! about 24,000 queries. Every fire is one query, "the next fire after X", where X is the
//! start or our previous fire, so one difference does not cascade down a chain. croniter
//! answers the whole batch in one subprocess.
//!
//! How croniter 6.0.0 is asked, and where it is not followed:
//! - It reads a one-value range as `*` (`a-a`, and `a/n` when `a` is the field's maximum, such
//!   as `59/3`), and weekday `a/n` oddly (`6/4` as Sunday and Thursday). It is sent the
//!   equivalent `a`, or `a-max/n` (what `a/n` means in Vixie cron), instead: same schedule.
//! - The day rule: Vixie cron ORs the day fields only when neither starts with `*` (so `*/2`
//!   in one still means AND); croniter ORs whenever neither is exactly `*`. It is called with
//!   `day_or` set by Vixie's rule.
//! - Three classes of answers where croniter differs from cron are not held against us but
//!   refereed by a brute-force, minute-by-minute search of the zone's wall clock applying the
//!   documented rules, and counted (printed; about 0.7% of queries): at DST changes
//!   (croniter moves a fire in a skipped hour by the gap's size, 02:30 to 03:30, where cron
//!   fires right after the gap, 03:00; after a fall-back it can answer an hour off); a
//!   weekday field listing every day (`1-7`) ORed with a day-of-month list holding `*/n`
//!   (croniter ANDs it as `*`); and starts on a local February 29 (croniter skips March 1 for
//!   a list such as `*/3`). Any other difference fails the test.
//! - Far fires: our search stops after five years (`None`); croniter searches further. A
//!   `None` is accepted when croniter's answer is more than five years away.
//! - Zones: croniter gets pytz zones (pinned with it; with zoneinfo zones croniter 6.0.0 is an
//!   hour off across DST changes), whose rules for these four zones are the same as the
//!   system zoneinfo files ours reads.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use baa::common::cron::Cron;
use baa::common::tz::Tz;
use serde_json::{json, Value};

use crate::support::python;
use crate::support::rng::Rng;

const EXPRESSIONS: usize = 2_400;
const FIRES: usize = 5;
const ZONES: [&str; 4] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Adelaide",
];
/// Start instants (UTC ms): ordinary ones, and some right before DST changes of the zones.
const STARTS: [i64; 9] = [
    1_767_225_600_000, // 2026-01-01T00:00:00Z
    1_772_947_043_456, // 2026-03-08T05:17:23.456Z, 2 h 43 before New York springs forward
    1_774_744_860_000, // 2026-03-29T00:41:00Z, 19 min before Berlin springs forward
    1_775_311_140_000, // 2026-04-04T13:59:00Z, the night Adelaide falls back
    1_777_593_599_999, // 2026-04-30T23:59:59.999Z
    1_791_415_800_000, // 2026-10-25T00:10:00Z, 50 min before Berlin falls back
    1_793_512_200_000, // 2026-11-01T03:50:00Z, 2 h 10 before New York falls back
    1_835_481_599_000, // 2028-02-29T23:59:59Z, a leap day
    1_956_527_999_000, // 2031-12-31T23:59:59Z
];

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct FieldGen {
    min: u32,
    max: u32,
    names: &'static [&'static str],
    first_name: u32,
}

impl FieldGen {
    fn value(&self, rng: &mut Rng, v: u32) -> String {
        let i = v.wrapping_sub(self.first_name) as usize;
        match self.names.get(i) {
            Some(name) if rng.chance(40) => match rng.below(3) {
                0 => name.to_uppercase(),
                1 => name.to_string(),
                _ => name[..1].to_uppercase() + &name[1..],
            },
            _ => v.to_string(),
        }
    }

    fn step(&self, rng: &mut Rng) -> u32 {
        rng.range(1, (self.max - self.min).clamp(1, 20))
    }

    /// One list item, and how croniter is told it. croniter 6.0.0 reads a one-value range as
    /// `*`: `a-a` (with or without a step), and `a/n` when `a` is the field's maximum (`59/3`
    /// as `*/3`); and weekday `a/n` oddly (`6/4` as 0,4). So the oracle gets the equivalent
    /// `a` for those, and `a-max/n` (Vixie's meaning of `a/n`) for every other `a/n`.
    fn item(&self, rng: &mut Rng) -> (String, String) {
        let (lo, hi) = (self.min, self.max);
        let same = |s: String| (s.clone(), s);
        match rng.below(6) {
            0 => same(format!("*/{}", self.step(rng))),
            1 | 2 => {
                let v = rng.range(lo, hi);
                same(self.value(rng, v))
            }
            kind @ (3 | 4) => {
                let a = rng.range(lo, hi);
                let b = if rng.chance(10) { a } else { rng.range(a, hi) };
                let (va, vb) = (self.value(rng, a), self.value(rng, b));
                let ours = match kind {
                    3 => format!("{va}-{vb}"),
                    _ => format!("{va}-{vb}/{}", self.step(rng)),
                };
                if a == b {
                    (ours, va)
                } else {
                    (ours.clone(), ours)
                }
            }
            _ => {
                let a = rng.range(lo, hi);
                let (va, step) = (self.value(rng, a), self.step(rng));
                let oracle = if a == hi {
                    va.clone()
                } else {
                    format!("{va}-{hi}/{step}")
                };
                (format!("{va}/{step}"), oracle)
            }
        }
    }

    /// `*` in `star_percent` of fields, else a list of one to three items.
    fn field(&self, rng: &mut Rng, star_percent: usize) -> (String, String) {
        if rng.chance(star_percent) {
            return ("*".into(), "*".into());
        }
        let n = 1 + rng.below(3);
        let items: Vec<(String, String)> = (0..n).map(|_| self.item(rng)).collect();
        let join = |pick: fn(&(String, String)) -> &String| {
            items
                .iter()
                .map(pick)
                .cloned()
                .collect::<Vec<_>>()
                .join(",")
        };
        (join(|i| &i.0), join(|i| &i.1))
    }
}

const FIELDS: [FieldGen; 5] = [
    FieldGen {
        min: 0,
        max: 59,
        names: &[],
        first_name: 0,
    },
    FieldGen {
        min: 0,
        max: 23,
        names: &[],
        first_name: 0,
    },
    FieldGen {
        min: 1,
        max: 31,
        names: &[],
        first_name: 0,
    },
    FieldGen {
        min: 1,
        max: 12,
        names: &MONTHS,
        first_name: 1,
    },
    FieldGen {
        min: 0,
        max: 7,
        names: &WEEKDAYS,
        first_name: 0,
    },
];

/// An expression, and the same expression as croniter is told it (see `FieldGen::item`).
fn generate(rng: &mut Rng) -> (String, String) {
    let stars = [15, 35, 50, 60, 50];
    let fields: Vec<(String, String)> = FIELDS
        .iter()
        .zip(stars)
        .map(|(f, star)| f.field(rng, star))
        .collect();
    let join = |pick: fn(&(String, String)) -> &String| {
        fields
            .iter()
            .map(pick)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    };
    (join(|f| &f.0), join(|f| &f.1))
}

/// One "next fire after" question and our answer to it.
struct Query {
    expr: String,
    oracle_expr: String,
    zone: usize,
    after_ms: i64,
    ours: Option<i64>,
}

/// Runs croniter over every query in one subprocess (with a deadline).
#[track_caller]
fn croniter_answers(queries: &[Value]) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(root.join("tests/it/support/croniter_oracle.py"))
        .env("PYTHONPATH", python::tools_path("croniter"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input = serde_json::to_vec(queries).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::Builder::new()
        .name("croniter-stdin".into())
        .spawn(move || stdin.write_all(&input))
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::Builder::new()
        .name("croniter-wait".into())
        .spawn(move || {
            let _ = tx.send(child.wait_with_output());
        })
        .unwrap();
    let output = match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(output) => output.expect("croniter oracle ran"),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("the croniter oracle did not answer within 300 s");
        }
    };
    writer
        .join()
        .unwrap()
        .expect("queries written to the oracle");
    assert!(
        output.status.success(),
        "croniter oracle failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Vec<Value> = serde_json::from_slice(&output.stdout).expect("oracle JSON");
    assert_eq!(answers.len(), queries.len());
    answers
}

/// Vixie's day rule: OR only when neither day field starts with `*`.
fn vixie_day_or(expr: &str) -> bool {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    !fields[2].starts_with('*') && !fields[4].starts_with('*')
}

/// Whether `tz` changes its UTC offset within a day of `at_ms`.
fn near_offset_change(tz: &Tz, at_ms: i64) -> bool {
    let (s, day) = (at_ms / 1000, 86_400);
    tz.offset_at(s - day) != tz.offset_at(s) || tz.offset_at(s) != tz.offset_at(s + day)
}

/// Whether the offset at `to_ms` differs from the one at `from_ms`, or changes in between
/// (sampled every 12 hours: offsets never change twice within a day).
fn crosses_offset_change(tz: &Tz, from_ms: i64, to_ms: i64) -> bool {
    let (from, to) = (from_ms / 1000, to_ms / 1000);
    let first = tz.offset_at(from);
    (from..=to)
        .step_by(43_200)
        .chain([to])
        .any(|s| tz.offset_at(s) != first)
}

/// croniter ORs a day-of-week field that lists every weekday (`1-7`, `mon-7,3`) as `*`
/// (AND) when the day-of-month field has a `*/n` item; Vixie ORs it: every day fires.
fn every_weekday_or(expr: &str) -> bool {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let dow_only = |dow: &str| Cron::parse(&format!("0 0 1 1 {dow}")).unwrap();
    vixie_day_or(expr) && dow_only(fields[4]) == dow_only("0-6")
}

/// croniter skips March 1 for a day-of-month list (`*/3`) when it starts on a February 29.
fn local_leap_day(tz: &Tz, at_ms: i64) -> bool {
    let s = at_ms.div_euclid(1000);
    let wall_day = (s + i64::from(tz.offset_at(s))).div_euclid(86_400);
    // 2028-02-29 is day 21_243 since 1970-01-01; no other leap day is near the starts.
    wall_day == 21_243
}

/// Whether the wall time `wall_s` (seconds, local epoch) matches: cron's UTC answers are
/// the wall-clock matcher (those are compared with croniter directly).
fn matches(cron: &Cron, wall_s: i64) -> bool {
    cron.next_after(wall_s * 1000 - 1, &Tz::utc()) == Some(wall_s * 1000)
}

/// The documented DST rule by brute force, independent of `next_after`'s search in a zone:
/// walk UTC minutes after `after_ms`; each minute fires the wall times it newly reaches (all
/// of a skipped gap at once at its end; none of a repeated hour the second time).
fn brute_force(cron: &Cron, tz: &Tz, after_ms: i64) -> Option<i64> {
    let wall = |u: i64| u + i64::from(tz.offset_at(u));
    let after_s = after_ms.div_euclid(1000);
    let first = after_s.div_euclid(60) * 60;
    // Wall times already reached before the search starts (a repeated hour's first pass).
    let mut seen = (first - 3 * 3600..first)
        .step_by(60)
        .map(wall)
        .max()
        .unwrap();
    let mut u = first;
    let limit = after_s + 5 * 366 * 86_400;
    while u <= limit {
        let now = wall(u);
        let fresh = ((seen + 60)..=now).step_by(60);
        if u * 1000 > after_ms && fresh.clone().any(|w| matches(cron, w)) {
            return Some(u * 1000);
        }
        seen = seen.max(now);
        // Far from a match, skip ahead (keeping a day's margin for offset changes).
        let next = cron.next_after(now * 1000, &Tz::utc())? / 1000;
        if next - now > 2 * 86_400 {
            u += next - now - 86_400;
            seen = seen.max(wall(u - 60));
        } else {
            u += 60;
        }
    }
    None
}

#[test]
fn cron_next_fires_agree_with_croniter() {
    let zones: Vec<Tz> = ZONES
        .iter()
        .map(|z| {
            if *z == "UTC" {
                Tz::utc()
            } else {
                Tz::named(z).expect("system zoneinfo")
            }
        })
        .collect();
    let mut rng = Rng::new(0x5EED_C0DE_2026);
    let mut queries = Vec::new();
    let mut both_restricted = 0;
    let mut star_led_day_field = 0;
    let mut rewritten = 0;
    let started = Instant::now();
    for i in 0..EXPRESSIONS {
        let (expr, oracle_expr) = generate(&mut rng);
        if expr != oracle_expr {
            rewritten += 1;
        }
        let cron = Cron::parse(&expr).unwrap_or_else(|e| panic!("generated `{expr}`: {e}"));
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields[2] != "*" && fields[4] != "*" {
            both_restricted += 1;
            if !vixie_day_or(&expr) {
                star_led_day_field += 1;
            }
        }
        for pair in 0..2 {
            let zone = (i + pair) % ZONES.len();
            let start = STARTS[(i / ZONES.len() + pair * 4) % STARTS.len()];
            let mut after_ms = start;
            for _ in 0..FIRES {
                let ours = cron.next_after(after_ms, &zones[zone]);
                queries.push(Query {
                    expr: expr.clone(),
                    oracle_expr: oracle_expr.clone(),
                    zone,
                    after_ms,
                    ours,
                });
                match ours {
                    Some(at) => after_ms = at,
                    None => break,
                }
            }
        }
    }
    let ours_took = started.elapsed();
    let batch: Vec<Value> = queries
        .iter()
        .map(|q| {
            json!({"expr": q.oracle_expr, "tz": ZONES[q.zone], "after_ms": q.after_ms, "day_or": vixie_day_or(&q.expr)})
        })
        .collect();
    let started = Instant::now();
    let answers = croniter_answers(&batch);
    let oracle_took = started.elapsed();

    let five_years_ms = 5 * 365 * 86_400_000;
    let (mut agreed, mut far) = (0, 0);
    let mut refereed = [0usize; 3];
    let mut failures = Vec::new();
    for (q, answer) in queries.iter().zip(&answers) {
        let theirs = answer["next_ms"].as_i64();
        let tz = &zones[q.zone];
        match (q.ours, theirs) {
            (a, b) if a == b => {
                agreed += 1;
                continue;
            }
            (None, Some(t)) if t - q.after_ms > five_years_ms => {
                far += 1;
                continue;
            }
            _ => {}
        }
        let reach = q.ours.into_iter().chain(theirs).max().unwrap_or(q.after_ms);
        let known = if near_offset_change(tz, q.after_ms)
            || q.ours.is_some_and(|t| near_offset_change(tz, t))
            || theirs.is_some_and(|t| near_offset_change(tz, t))
            || crosses_offset_change(tz, q.after_ms, reach)
        {
            Some(0)
        } else if every_weekday_or(&q.expr) {
            Some(1)
        } else if local_leap_day(tz, q.after_ms) {
            Some(2)
        } else {
            None
        };
        let want = known.map(|_| brute_force(&Cron::parse(&q.expr).unwrap(), tz, q.after_ms));
        match known {
            Some(class) if want == Some(q.ours) => refereed[class] += 1,
            _ => failures.push(format!(
                "`{}` (croniter: `{}`) in {} after {}: ours {:?}, croniter {theirs:?} ({}), \
                 brute force {want:?}",
                q.expr, q.oracle_expr, ZONES[q.zone], q.after_ms, q.ours, answer["error"]
            )),
        }
    }
    eprintln!(
        "cron oracle: {EXPRESSIONS} expressions ({both_restricted} with both day fields \
         restricted, {star_led_day_field} of them `*`-led: AND; {rewritten} told to croniter in \
         an equivalent form), {} queries in 4 zones from 9 starts: {agreed} agree with \
         croniter, {far} beyond our 5-year search; differing and refereed by brute force: {} \
         at DST changes, {} with every weekday ORed, {} from a local February 29; ours took \
         {ours_took:?} in all, croniter {oracle_took:?}",
        queries.len(),
        refereed[0],
        refereed[1],
        refereed[2],
    );
    assert!(
        failures.is_empty(),
        "{} of {} next fires differ:\n{}",
        failures.len(),
        queries.len(),
        failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The refereed classes stay a small share: the comparison is with croniter, mostly.
    let refereed_total: usize = refereed.iter().sum();
    assert!(
        refereed_total * 50 < queries.len(),
        "{refereed_total} refereed of {}",
        queries.len()
    );
    assert!(agreed >= EXPRESSIONS * 9, "too few agreed: {agreed}");
}
