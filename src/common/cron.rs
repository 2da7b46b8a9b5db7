//! Five-field cron expressions (`minute hour day-of-month month day-of-week`) and their next
//! fire time on a time zone's wall clock, std only.
//!
//! Syntax, as Vixie cron: `*`, lists `a,b`, ranges `a-b`, steps `*/n`, `a-b/n` and `a/n`
//! (from `a` to the field's maximum), month names `JAN`–`DEC` and weekday names `SUN`–`SAT`
//! in any case, and both 0 and 7 for Sunday. The day rule is Vixie's too: when both
//! day-of-month and day-of-week are restricted (neither field starts with `*`), a day matches
//! if either matches; otherwise both must (so `*/2` in one of them still means "and").
//!
//! Daylight-saving changes, as cron handles them for jobs at fixed times:
//! - a wall time that does not exist (clocks spring forward over it) fires once, at the first
//!   instant after the gap (`30 2 * * *` on the spring-forward night in Berlin fires at
//!   03:00 CEST); every skipped minute maps to that one instant, so `*/15 * * * *` fires once
//!   there, not four times;
//! - a wall time that exists twice (clocks fall back) fires once, at its first occurrence;
//!   the repeated hour does not fire again.
//!
//! Vixie cron runs `*`-hour jobs in a repeated hour a second time; here every wall time fires
//! once, so a schedule fires at most once per wall-clock minute (as croniter does too).
//!
//! Python's `croniter` (the oracle of tests/it/cron_oracle.rs) agrees with this except where
//! that test lists otherwise; on DST edges it differs from cron and this follows cron:
//! croniter moves a fire in a skipped hour by the size of the gap (02:30 to 03:30), where
//! cron runs it right after the gap (03:00).

use std::fmt;

use crate::common::time::{civil_from_days, days_from_civil};
use crate::common::tz::{LocalTime, Tz};

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday = 0 (7 folded into 0).
    weekdays: u8,
    /// Both day fields restricted: a day matches if either does (Vixie's rule).
    day_or: bool,
}

/// Which of the five fields a [`CronError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronField {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

/// Why an expression is not a cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CronError {
    /// Not exactly five whitespace-separated fields.
    FieldCount(usize),
    /// One field's `value` (the offending part) is wrong for `reason`.
    Field {
        field: CronField,
        value: String,
        reason: &'static str,
    },
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CronField::Minute => "minute",
            CronField::Hour => "hour",
            CronField::DayOfMonth => "day-of-month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
        })
    }
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CronError::FieldCount(n) => write!(
                f,
                "a cron expression has 5 fields (minute hour day-of-month month day-of-week), not {n}"
            ),
            CronError::Field { field, value, reason } => {
                let names = match field {
                    CronField::Minute => "0-59",
                    CronField::Hour => "0-23",
                    CronField::DayOfMonth => "1-31",
                    CronField::Month => "1-12 or JAN-DEC",
                    CronField::DayOfWeek => "0-7 or SUN-SAT, 0 and 7 = Sunday",
                };
                write!(f, "cron {field} field ({names}): `{value}` {reason}")
            }
        }
    }
}

impl std::error::Error for CronError {}

/// How far ahead [`Cron::next_after`] looks before it answers `None` (`0 0 30 2 *`).
const SEARCH_DAYS: i64 = 5 * 366;

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

struct Spec {
    field: CronField,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// Value of the first name (`JAN` = 1, `SUN` = 0).
    first_name: u32,
}

const SPECS: [Spec; 5] = [
    Spec {
        field: CronField::Minute,
        min: 0,
        max: 59,
        names: &[],
        first_name: 0,
    },
    Spec {
        field: CronField::Hour,
        min: 0,
        max: 23,
        names: &[],
        first_name: 0,
    },
    Spec {
        field: CronField::DayOfMonth,
        min: 1,
        max: 31,
        names: &[],
        first_name: 0,
    },
    Spec {
        field: CronField::Month,
        min: 1,
        max: 12,
        names: &MONTHS,
        first_name: 1,
    },
    Spec {
        field: CronField::DayOfWeek,
        min: 0,
        max: 7,
        names: &WEEKDAYS,
        first_name: 0,
    },
];

impl Cron {
    pub fn parse(expr: &str) -> Result<Cron, CronError> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError::FieldCount(fields.len()));
        }
        let mut bits = [0u64; 5];
        for ((text, spec), out) in fields.iter().zip(&SPECS).zip(&mut bits) {
            *out = spec.parse(text)?;
        }
        let weekdays = (bits[4] | (bits[4] >> 7)) & 0x7f;
        Ok(Cron {
            minutes: bits[0],
            hours: bits[1] as u32,
            days: bits[2] as u32,
            months: bits[3] as u16,
            weekdays: weekdays as u8,
            day_or: !fields[2].starts_with('*') && !fields[4].starts_with('*'),
        })
    }

    /// The first fire time strictly after `after_ms` (UTC epoch ms), in `tz`'s wall clock;
    /// `None` when nothing fires within five years (`0 0 30 2 *`).
    pub fn next_after(&self, after_ms: i64, tz: &Tz) -> Option<i64> {
        let after_s = after_ms.div_euclid(1000);
        let wall_now = after_s + i64::from(tz.offset_at(after_s));
        let mut from = (wall_now.div_euclid(60) + 1) * 60;
        let last_day = from.div_euclid(86_400) + SEARCH_DAYS;
        loop {
            let wall = self.next_wall_time(from, last_day)?;
            let fire_s = match tz.resolve(wall) {
                LocalTime::Single(at) => at,
                LocalTime::Ambiguous { earlier, .. } => earlier,
                LocalTime::Gap { gap_end } => gap_end,
            };
            let fire_ms = fire_s.checked_mul(1000)?;
            if fire_ms > after_ms {
                return Some(fire_ms);
            }
            // The first occurrence of a repeated wall time already passed: it does not fire
            // again in the repeated hour.
            from = wall + 60;
        }
    }

    /// The first matching wall time (seconds, local epoch) at or after `from` (a whole
    /// minute), on or before day `last_day`.
    fn next_wall_time(&self, from: i64, last_day: i64) -> Option<i64> {
        let mut day = from.div_euclid(86_400);
        let mut start_minute = from.rem_euclid(86_400) / 60;
        while day <= last_day {
            let (y, m, d) = civil_from_days(day);
            if self.months & (1 << m) == 0 {
                // Skip the rest of a month that never fires.
                day = if m == 12 {
                    days_from_civil(y + 1, 1, 1)
                } else {
                    days_from_civil(y, m + 1, 1)
                };
                start_minute = 0;
                continue;
            }
            if self.day_matches(d, day) {
                if let Some(minute) = self.first_time_from(start_minute as u32) {
                    return Some(day * 86_400 + i64::from(minute) * 60);
                }
            }
            day += 1;
            start_minute = 0;
        }
        None
    }

    fn day_matches(&self, d: u32, day: i64) -> bool {
        let weekday = (day + 4).rem_euclid(7) as u32;
        let by_date = self.days & (1 << d) != 0;
        let by_weekday = self.weekdays & (1 << weekday) != 0;
        if self.day_or {
            by_date || by_weekday
        } else {
            by_date && by_weekday
        }
    }

    /// The first matching minute of the day (0..1440) at or after `minute_of_day`.
    fn first_time_from(&self, minute_of_day: u32) -> Option<u32> {
        let (h0, m0) = (minute_of_day / 60, minute_of_day % 60);
        for h in h0..24 {
            if self.hours & (1 << h) == 0 {
                continue;
            }
            let from = if h == h0 { m0 } else { 0 };
            let left = self.minutes >> from;
            if left != 0 {
                return Some(h * 60 + from + left.trailing_zeros());
            }
        }
        None
    }
}

impl Spec {
    /// The field's values as a bit set (bit `v` for value `v`).
    fn parse(&self, text: &str) -> Result<u64, CronError> {
        let mut bits = 0u64;
        for item in text.split(',') {
            bits |= self.item(item)?;
        }
        Ok(bits)
    }

    fn err(&self, value: &str, reason: &'static str) -> CronError {
        CronError::Field {
            field: self.field,
            value: value.into(),
            reason,
        }
    }

    fn item(&self, item: &str) -> Result<u64, CronError> {
        if item.is_empty() {
            return Err(self.err(item, "is an empty list item"));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| self.err(item, "has a step that is not a number"))?;
                if step == 0 {
                    return Err(self.err(item, "has a step of 0"));
                }
                (range, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (self.min, self.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (lo, hi) = (self.value(a, item)?, self.value(b, item)?);
            if lo > hi {
                return Err(self.err(item, "is a reversed range"));
            }
            (lo, hi)
        } else {
            let v = self.value(range, item)?;
            // `a/n` runs from `a` to the field's maximum.
            (v, if step.is_some() { self.max } else { v })
        };
        let step = step.unwrap_or(1);
        if step > self.max {
            return Err(self.err(item, "has a step larger than the field's range"));
        }
        Ok((lo..=hi)
            .step_by(step as usize)
            .fold(0, |bits, v| bits | (1 << v)))
    }

    fn value(&self, text: &str, item: &str) -> Result<u32, CronError> {
        let v = if text.bytes().all(|c| c.is_ascii_digit()) && !text.is_empty() {
            text.parse()
                .map_err(|_| self.err(item, "is not a number"))?
        } else {
            let found = self.names.iter().position(|n| n.eq_ignore_ascii_case(text));
            match found {
                Some(i) => i as u32 + self.first_name,
                None if self.names.is_empty() => return Err(self.err(item, "is not a number")),
                None => return Err(self.err(item, "is not a number or a name")),
            }
        };
        if v < self.min || v > self.max {
            return Err(self.err(item, "is out of range"));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Epoch ms of a UTC wall time.
    fn utc(y: i64, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
        (days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60) * 1000
    }

    #[track_caller]
    fn chain(expr: &str, from: i64, tz: &Tz, n: usize) -> Vec<i64> {
        let cron = Cron::parse(expr).unwrap();
        let mut at = from;
        (0..n)
            .map(|_| {
                at = cron.next_after(at, tz).unwrap();
                at
            })
            .collect()
    }

    #[track_caller]
    fn field_error(expr: &str) -> (CronField, String) {
        match Cron::parse(expr) {
            Err(CronError::Field { field, value, .. }) => (field, value),
            other => panic!("{expr}: {other:?}"),
        }
    }

    #[test]
    fn refuses_bad_expressions_naming_the_field_and_value() {
        assert_eq!(Cron::parse("* * * * * *"), Err(CronError::FieldCount(6)));
        assert_eq!(Cron::parse("* * * *"), Err(CronError::FieldCount(4)));
        assert_eq!(Cron::parse(""), Err(CronError::FieldCount(0)));
        let cases = [
            ("60 * * * *", CronField::Minute, "60"),
            ("* 24 * * *", CronField::Hour, "24"),
            ("* * 0 * *", CronField::DayOfMonth, "0"),
            ("* * 32 * *", CronField::DayOfMonth, "32"),
            ("* * * 13 *", CronField::Month, "13"),
            ("* * * * 8", CronField::DayOfWeek, "8"),
            ("*/0 * * * *", CronField::Minute, "*/0"),
            ("1,,2 * * * *", CronField::Minute, ""),
            ("5-1 * * * *", CronField::Minute, "5-1"),
            ("* * * DEC-JAN *", CronField::Month, "DEC-JAN"),
            ("* * * * FOO", CronField::DayOfWeek, "FOO"),
            ("* * * * MON-", CronField::DayOfWeek, "MON-"),
            ("* * * JANUARY *", CronField::Month, "JANUARY"),
            ("* MON * * *", CronField::Hour, "MON"),
            ("*/x * * * *", CronField::Minute, "*/x"),
            ("-1 * * * *", CronField::Minute, "-1"),
            ("*/60 * * * *", CronField::Minute, "*/60"),
            ("1-2-3 * * * *", CronField::Minute, "1-2-3"),
        ];
        for (expr, field, value) in cases {
            assert_eq!(field_error(expr), (field, value.to_string()), "{expr}");
        }
        let message = Cron::parse("61 * * * *").unwrap_err().to_string();
        assert!(
            message.contains("minute") && message.contains("`61`"),
            "{message}"
        );
    }

    #[test]
    fn names_any_case_and_both_sundays() {
        assert_eq!(
            Cron::parse("0 0 * jan-Mar sun").unwrap(),
            Cron::parse("0 0 * 1-3 0").unwrap()
        );
        assert_eq!(
            Cron::parse("0 0 * * 7").unwrap(),
            Cron::parse("0 0 * * 0").unwrap()
        );
        assert_eq!(
            Cron::parse("0 0 * * 5-7").unwrap(),
            Cron::parse("0 0 * * FRI,SAT,SUN").unwrap()
        );
        assert_eq!(
            Cron::parse("0 0 * * mon-fri").unwrap(),
            Cron::parse("0 0 * * 1-5").unwrap()
        );
    }

    #[test]
    fn steps_ranges_and_lists() {
        let utc_tz = Tz::utc();
        let start = utc(2026, 1, 1, 0, 0);
        let minutes = |expr: &str| -> Vec<i64> {
            chain(expr, start, &utc_tz, 5)
                .iter()
                .map(|ms| (ms - start) / 60_000)
                .collect()
        };
        assert_eq!(minutes("*/15 * * * *"), [15, 30, 45, 60, 75]);
        assert_eq!(minutes("1-30/5 * * * *"), [1, 6, 11, 16, 21]);
        assert_eq!(minutes("5/10 * * * *"), [5, 15, 25, 35, 45]);
        assert_eq!(minutes("50/10 * * * *"), [50, 110, 170, 230, 290]);
        assert_eq!(minutes("0,7,58-59 * * * *"), [7, 58, 59, 60, 67]);
        // `*/7` on weekdays is Sunday (0) and Sunday (7): every Sunday.
        let sundays = chain("0 12 * * */7", start, &utc_tz, 2);
        assert_eq!(sundays, [utc(2026, 1, 4, 12, 0), utc(2026, 1, 11, 12, 0)]);
    }

    #[test]
    fn next_is_strictly_after() {
        let cron = Cron::parse("30 9 * * *").unwrap();
        let at = utc(2026, 5, 1, 9, 30);
        assert_eq!(cron.next_after(at - 1, &Tz::utc()), Some(at));
        assert_eq!(cron.next_after(at, &Tz::utc()), Some(at + 86_400_000));
        assert_eq!(
            cron.next_after(at + 59_999, &Tz::utc()),
            Some(at + 86_400_000)
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_restricted() {
        let tz = Tz::utc();
        // 2026-03-01 is a Sunday. "1st or 15th, or any Friday".
        let either = chain("0 0 1,15 * FRI", utc(2026, 2, 28, 0, 0), &tz, 4);
        let want = [
            utc(2026, 3, 1, 0, 0),
            utc(2026, 3, 6, 0, 0),
            utc(2026, 3, 13, 0, 0),
            utc(2026, 3, 15, 0, 0),
        ];
        assert_eq!(either, want);
        // A `*`-led field (even `*/2`) means "and": odd days that are Fridays.
        let both = chain("0 0 */2 * FRI", utc(2026, 2, 28, 0, 0), &tz, 2);
        assert_eq!(both, [utc(2026, 3, 13, 0, 0), utc(2026, 3, 27, 0, 0)]);
        let weekdays_only = chain("0 0 * * 1", utc(2026, 2, 28, 0, 0), &tz, 1);
        assert_eq!(weekdays_only, [utc(2026, 3, 2, 0, 0)]);
    }

    #[test]
    fn leap_days_and_impossible_dates() {
        let tz = Tz::utc();
        let leap = chain("0 0 29 2 *", utc(2026, 1, 1, 0, 0), &tz, 2);
        assert_eq!(leap, [utc(2028, 2, 29, 0, 0), utc(2032, 2, 29, 0, 0)]);
        // 2100 is not a leap year: the next after 2096 is 2104, beyond the five-year search.
        let cron = Cron::parse("0 0 29 feb *").unwrap();
        assert_eq!(cron.next_after(utc(2096, 3, 1, 0, 0), &tz), None);
        assert_eq!(Cron::parse("0 0 30 2 *").unwrap().next_after(0, &tz), None);
        assert_eq!(
            Cron::parse("0 0 31 4,6,9,11 *").unwrap().next_after(0, &tz),
            None
        );
        // An OR rule rescues an impossible date.
        let or = chain("0 0 30 2 MON", utc(2026, 2, 1, 0, 0), &tz, 1);
        assert_eq!(or, [utc(2026, 2, 2, 0, 0)]);
    }

    fn zone(name: &str) -> Tz {
        Tz::named(name).unwrap()
    }

    #[test]
    fn berlin_gap_fires_once_after_it_and_overlap_fires_once_first() {
        let berlin = zone("Europe/Berlin");
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let spring = chain("30 2 * * *", utc(2026, 3, 28, 0, 0), &berlin, 3);
        assert_eq!(
            spring,
            [
                utc(2026, 3, 28, 1, 30),
                utc(2026, 3, 29, 1, 0),
                utc(2026, 3, 30, 0, 30)
            ]
        );
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 fires at its first occurrence.
        let fall = chain("30 2 * * *", utc(2026, 10, 24, 0, 0), &berlin, 3);
        assert_eq!(
            fall,
            [
                utc(2026, 10, 24, 0, 30),
                utc(2026, 10, 25, 0, 30),
                utc(2026, 10, 26, 1, 30)
            ]
        );
        // Started inside the repeated hour (second pass): 02:30 already fired.
        let inside = chain("30 2 * * *", utc(2026, 10, 25, 1, 10), &berlin, 1);
        assert_eq!(inside, [utc(2026, 10, 26, 1, 30)]);
    }

    #[test]
    fn new_york_every_half_hour_across_both_changes() {
        let ny = zone("America/New_York");
        // 2026-03-08 01:00 EST = 06:00 UTC; 02:00 and 02:30 do not exist and fold into 03:00 EDT.
        let spring = chain("*/30 * * * *", utc(2026, 3, 8, 6, 0), &ny, 3);
        assert_eq!(
            spring,
            [
                utc(2026, 3, 8, 6, 30),
                utc(2026, 3, 8, 7, 0),
                utc(2026, 3, 8, 7, 30)
            ]
        );
        // 2026-11-01 00:00 EDT = 04:00 UTC; the repeated 01:00-01:59 (EST) does not fire again.
        let fall = chain("*/30 * * * *", utc(2026, 11, 1, 4, 0), &ny, 4);
        let want = [
            utc(2026, 11, 1, 4, 30),
            utc(2026, 11, 1, 5, 0),
            utc(2026, 11, 1, 5, 30),
            utc(2026, 11, 1, 7, 0),
        ];
        assert_eq!(fall, want);
    }

    #[test]
    fn half_hour_offsets() {
        let kolkata = zone("Asia/Kolkata");
        assert_eq!(
            chain("30 5 * * *", utc(2026, 1, 1, 0, 0), &kolkata, 1),
            [utc(2026, 1, 2, 0, 0)]
        );
        let adelaide = zone("Australia/Adelaide");
        // 09:00 ACDT (+10:30) in January is 22:30 UTC the day before.
        assert_eq!(
            chain("0 9 * * *", utc(2026, 1, 1, 0, 0), &adelaide, 1),
            [utc(2026, 1, 1, 22, 30)]
        );
        // 2026-10-04 02:15 does not exist (02:00 ACST -> 03:00 ACDT at 16:30 UTC the day before).
        let gap = chain("15 2 4 10 *", utc(2026, 10, 1, 0, 0), &adelaide, 1);
        assert_eq!(gap, [utc(2026, 10, 3, 16, 30)]);
    }

    #[test]
    fn far_future_follows_the_footer_rule() {
        let berlin = zone("Europe/Berlin");
        // 2060-03-28 is the last Sunday of March 2060.
        let spring = chain("30 2 * * SUN", utc(2060, 3, 20, 0, 0), &berlin, 2);
        assert_eq!(spring, [utc(2060, 3, 21, 1, 30), utc(2060, 3, 28, 1, 0)]);
    }

    #[test]
    fn extreme_instants_answer_without_panicking() {
        let every = Cron::parse("* * * * *").unwrap();
        for tz in [Tz::utc(), zone("America/New_York")] {
            assert_eq!(every.next_after(i64::MAX, &tz), None);
            // (New York's local mean time, -4:56:02, puts fires off the UTC minute.)
            assert!(every.next_after(i64::MIN, &tz).is_some());
            assert_eq!(every.next_after(-1, &Tz::utc()), Some(0));
        }
    }

    #[test]
    fn is_fast() {
        let tz = Tz::utc();
        let exprs = [
            "*/5 * * * *",
            "0 0 29 2 *",
            "15 3 1-7 * MON",
            "0 0 30 2 *",
            "59 23 31 12 *",
        ];
        let crons: Vec<Cron> = exprs.iter().map(|e| Cron::parse(e).unwrap()).collect();
        let started = std::time::Instant::now();
        for i in 0..100 {
            crons[i % crons.len()].next_after(utc(2026, 6, 1, 0, 0), &tz);
        }
        // Generous for a loaded debug build; the bench prints the real figure.
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
    }
}
