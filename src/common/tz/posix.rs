//! POSIX TZ strings (`CET-1CEST,M3.5.0,M10.5.0/3`, `<+0330>-3:30`, `EST5EDT`): the rule a
//! TZif file's footer gives for every instant past its last transition, and what `$TZ` may
//! hold instead of a zone name.

use crate::common::time::days_from_civil;

/// One parsed POSIX TZ string: a standard offset and, when the zone has one, a yearly
/// daylight-saving rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PosixTz {
    /// Seconds east of UTC (POSIX writes them west, with the opposite sign).
    std_offset: i32,
    dst: Option<Dst>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Dst {
    offset: i32,
    start: Rule,
    /// Seconds after local midnight (standard time) of the start day; may be negative or
    /// past 24 h (RFC 8536 allows -167..167 hours).
    start_time: i64,
    end: Rule,
    /// Seconds after local midnight (daylight time) of the end day.
    end_time: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// `Jn`: day 1..=365, February 29 never counted.
    Julian1(u16),
    /// `n`: day 0..=365, February 29 counted in leap years.
    Julian0(u16),
    /// `Mm.w.d`: weekday `d` (0 = Sunday) of week `w` (1..=5, 5 = last) of month `m`.
    MonthWeekDay { month: u8, week: u8, weekday: u8 },
}

impl PosixTz {
    /// Parses a TZ string; `None` when it is not one (the caller names the source).
    pub(crate) fn parse(s: &str) -> Option<PosixTz> {
        let mut p = Cursor {
            s: s.as_bytes(),
            i: 0,
        };
        p.name()?;
        let std_offset = -p.offset()?;
        if p.done() {
            return Some(PosixTz {
                std_offset,
                dst: None,
            });
        }
        p.name()?;
        let offset = if p.peek() == Some(b',') || p.done() {
            std_offset + 3600
        } else {
            -p.offset()?
        };
        // A daylight name without rules: the US rule, as glibc assumes.
        let (start, start_time, end, end_time) = if p.done() {
            let start = Rule::MonthWeekDay {
                month: 3,
                week: 2,
                weekday: 0,
            };
            let end = Rule::MonthWeekDay {
                month: 11,
                week: 1,
                weekday: 0,
            };
            (start, 7200, end, 7200)
        } else {
            p.expect(b',')?;
            let start = p.rule()?;
            let start_time = p.rule_time()?;
            p.expect(b',')?;
            let end = p.rule()?;
            let end_time = p.rule_time()?;
            (start, start_time, end, end_time)
        };
        if !p.done() {
            return None;
        }
        let dst = Dst {
            offset,
            start,
            start_time,
            end,
            end_time,
        };
        Some(PosixTz {
            std_offset,
            dst: Some(dst),
        })
    }

    /// Seconds east of UTC at the UTC instant `utc_s`.
    pub(crate) fn offset_at(&self, utc_s: i64) -> i32 {
        let Some(dst) = &self.dst else {
            return self.std_offset;
        };
        let year = year_of(utc_s + i64::from(self.std_offset));
        // Check the neighbouring years too: a rule time past 24 h or a southern-hemisphere
        // rule can put the year's boundary inside daylight time.
        for y in [year - 1, year, year + 1] {
            let start = dst.start.day(y) * 86_400 + dst.start_time - i64::from(self.std_offset);
            let end = dst.end.day(y) * 86_400 + dst.end_time - i64::from(dst.offset);
            if start < end {
                if (start..end).contains(&utc_s) {
                    return dst.offset;
                }
            } else {
                // Southern hemisphere: daylight from `start` of this year to `end` of the next.
                let next_end = dst.end.day(y + 1) * 86_400 + dst.end_time - i64::from(dst.offset);
                if (start..next_end).contains(&utc_s) {
                    return dst.offset;
                }
            }
        }
        self.std_offset
    }
}

impl Rule {
    /// Days since 1970-01-01 of this rule's day in `year`.
    fn day(self, year: i64) -> i64 {
        let jan1 = days_from_civil(year, 1, 1);
        match self {
            Rule::Julian1(n) => {
                let n = i64::from(n);
                // Days after February 28 skip February 29 of a leap year.
                jan1 + n - 1 + i64::from(is_leap(year) && n > 59)
            }
            Rule::Julian0(n) => jan1 + i64::from(n),
            Rule::MonthWeekDay {
                month,
                week,
                weekday,
            } => {
                let first = days_from_civil(year, u32::from(month), 1);
                let first_wd = weekday_of(first);
                let mut day = first + (i64::from(weekday) - first_wd).rem_euclid(7);
                day += 7 * (i64::from(week) - 1);
                let next_month = if month == 12 {
                    days_from_civil(year + 1, 1, 1)
                } else {
                    days_from_civil(year, u32::from(month) + 1, 1)
                };
                while day >= next_month {
                    day -= 7;
                }
                day
            }
        }
    }
}

/// 0 = Sunday, for days since 1970-01-01 (a Thursday).
pub(crate) fn weekday_of(days: i64) -> i64 {
    (days + 4).rem_euclid(7)
}

pub(crate) fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn year_of(s: i64) -> i64 {
    crate::common::time::civil_from_days(s.div_euclid(86_400)).0
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn done(&self) -> bool {
        self.i == self.s.len()
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.peek() == Some(c)).then(|| self.i += 1)
    }

    /// A zone abbreviation: three or more letters, or `<...>` of letters, digits, `+`, `-`.
    fn name(&mut self) -> Option<()> {
        let start = self.i;
        if self.expect(b'<').is_some() {
            while self
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'-')
            {
                self.i += 1;
            }
            let len = self.i - start - 1;
            self.expect(b'>')?;
            return (len >= 3).then_some(());
        }
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.i += 1;
        }
        (self.i - start >= 3).then_some(())
    }

    fn number(&mut self, max_digits: usize) -> Option<i64> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) && self.i - start < max_digits {
            self.i += 1;
        }
        if self.i == start {
            return None;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()
    }

    /// `[+-]hh[:mm[:ss]]` in seconds, hours up to `max_hours`.
    fn hms(&mut self, max_hours: i64) -> Option<i64> {
        let sign = match self.peek() {
            Some(b'-') => {
                self.i += 1;
                -1
            }
            Some(b'+') => {
                self.i += 1;
                1
            }
            _ => 1,
        };
        let h = self.number(3)?;
        let mut secs = h * 3600;
        for unit in [60, 1] {
            if self.expect(b':').is_none() {
                break;
            }
            let v = self.number(2)?;
            if v > 59 {
                return None;
            }
            secs += v * unit;
        }
        (h <= max_hours).then_some(sign * secs)
    }

    fn offset(&mut self) -> Option<i32> {
        i32::try_from(self.hms(24)?).ok()
    }

    fn rule_time(&mut self) -> Option<i64> {
        if self.expect(b'/').is_none() {
            return Some(7200);
        }
        self.hms(167)
    }

    fn rule(&mut self) -> Option<Rule> {
        match self.peek()? {
            b'J' => {
                self.i += 1;
                let n = self.number(3)?;
                (1..=365).contains(&n).then_some(Rule::Julian1(n as u16))
            }
            b'M' => {
                self.i += 1;
                let month = self.number(2)?;
                self.expect(b'.')?;
                let week = self.number(1)?;
                self.expect(b'.')?;
                let weekday = self.number(1)?;
                let ok = (1..=12).contains(&month) && (1..=5).contains(&week) && weekday <= 6;
                ok.then_some(Rule::MonthWeekDay {
                    month: month as u8,
                    week: week as u8,
                    weekday: weekday as u8,
                })
            }
            _ => {
                let n = self.number(3)?;
                (n <= 365).then_some(Rule::Julian0(n as u16))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i64, m: u32, d: u32, h: i64, mi: i64) -> i64 {
        days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60
    }

    #[test]
    fn central_europe_switches_on_the_last_sundays_at_one_utc() {
        let tz = PosixTz::parse("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        // 2060-03-28 is the last Sunday of March 2060; 2060-10-31 the last of October.
        assert_eq!(tz.offset_at(utc(2060, 3, 28, 0, 59)), 3600);
        assert_eq!(tz.offset_at(utc(2060, 3, 28, 1, 0)), 7200);
        assert_eq!(tz.offset_at(utc(2060, 10, 31, 0, 59)), 7200);
        assert_eq!(tz.offset_at(utc(2060, 10, 31, 1, 0)), 3600);
        assert_eq!(tz.offset_at(utc(2060, 1, 1, 0, 0)), 3600);
    }

    #[test]
    fn us_eastern_and_the_default_rule_agree() {
        let explicit = PosixTz::parse("EST5EDT,M3.2.0,M11.1.0").unwrap();
        let implied = PosixTz::parse("EST5EDT").unwrap();
        assert_eq!(explicit, implied);
        // 2060-03-14 is the second Sunday of March: 02:00 EST = 07:00 UTC.
        assert_eq!(explicit.offset_at(utc(2060, 3, 14, 6, 59)), -5 * 3600);
        assert_eq!(explicit.offset_at(utc(2060, 3, 14, 7, 0)), -4 * 3600);
    }

    #[test]
    fn southern_hemisphere_spans_the_new_year() {
        // Australia/Adelaide: +09:30, daylight from the first Sunday of October to the first
        // Sunday of April.
        let tz = PosixTz::parse("ACST-9:30ACDT,M10.1.0,M4.1.0/3").unwrap();
        assert_eq!(tz.offset_at(utc(2060, 1, 15, 0, 0)), 37_800);
        assert_eq!(tz.offset_at(utc(2060, 6, 15, 0, 0)), 34_200);
        assert_eq!(tz.offset_at(utc(2060, 12, 31, 23, 0)), 37_800);
    }

    #[test]
    fn angle_bracket_names_julian_days_and_fixed_zones() {
        let tehran = PosixTz::parse("<+0330>-3:30").unwrap();
        assert_eq!(tehran.offset_at(0), 12_600);
        let j = PosixTz::parse("AAA3BBB,J60/2,J300/2").unwrap();
        // J60 is March 1 in every year; day 59 (0-based) is March 1 only in common years.
        assert_eq!(Rule::Julian1(60).day(2060), days_from_civil(2060, 3, 1));
        assert_eq!(Rule::Julian0(59).day(2060), days_from_civil(2060, 2, 29));
        assert_eq!(j.offset_at(utc(2060, 6, 1, 0, 0)), -2 * 3600);
        // Permanent daylight time (Africa/Casablanca's style): start Jan 1, end Dec 31 24:00+.
        let all_year = PosixTz::parse("XXX3YYY,0/0,J365/25").unwrap();
        assert_eq!(all_year.offset_at(utc(2060, 6, 1, 0, 0)), -2 * 3600);
    }

    #[test]
    fn refuses_malformed_strings() {
        for bad in [
            "",
            "C",
            "CET",
            "CET-1CEST,M3.5.0",
            "CET-1CEST,M13.5.0,M10.5.0",
            "<+03-3",
            "CET-25",
        ] {
            assert_eq!(PosixTz::parse(bad), None, "{bad}");
        }
    }
}
