//! Time zones read from the system's zoneinfo files (TZif, RFC 8536), std only.
//!
//! A [`Tz`] answers two questions: the UTC offset at an instant ([`Tz::offset_at`]) and which
//! instants a local wall-clock time names ([`Tz::resolve`]): one, two (the repeated hour when
//! clocks fall back) or none (the hour skipped when they spring forward). Instants past a
//! file's last transition follow the POSIX TZ rule in its footer, which modern "slim"
//! zoneinfo files rely on for every future year. Leap seconds (the `right/` zones) are
//! ignored: every day has 86 400 seconds here, as in Unix time.

mod posix;
mod tzif;

use std::fmt;
use std::path::{Path, PathBuf};

use posix::PosixTz;
use tzif::Table;

/// An IANA time zone (or UTC, or a bare POSIX TZ string from `$TZ`).
#[derive(Debug, Clone)]
pub struct Tz {
    name: String,
    rules: Rules,
}

#[derive(Debug, Clone)]
enum Rules {
    Fixed(i32),
    Table(Table),
    Posix(PosixTz),
}

/// Which UTC instants (seconds) a local wall-clock time names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalTime {
    /// The usual case: exactly one instant.
    Single(i64),
    /// Clocks fell back and the wall time happened twice: `earlier < later`.
    Ambiguous { earlier: i64, later: i64 },
    /// Clocks sprang forward over this wall time; `gap_end` is the first instant after the gap.
    Gap { gap_end: i64 },
}

/// Why [`Tz::named`] refused a zone.
#[derive(Debug)]
pub enum TzError {
    /// Empty, absolute, containing `..` or characters no zone name has.
    BadName(String),
    /// No such file under the zoneinfo directory (or it could not be read).
    NotFound {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a usable TZif file.
    Malformed { name: String, reason: &'static str },
}

impl fmt::Display for TzError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TzError::BadName(name) => write!(f, "`{name}` is not a time zone name"),
            TzError::NotFound { name, path, source } => {
                write!(
                    f,
                    "unknown time zone `{name}` ({}: {source})",
                    path.display()
                )
            }
            TzError::Malformed { name, reason } => {
                write!(
                    f,
                    "time zone `{name}`: its zoneinfo file is unusable: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for TzError {}

const ZONEINFO: &str = "/usr/share/zoneinfo";

impl Tz {
    pub fn utc() -> Tz {
        Tz {
            name: "UTC".into(),
            rules: Rules::Fixed(0),
        }
    }

    /// The IANA zone `name` (`Europe/Berlin`), read from `$TZDIR` or `/usr/share/zoneinfo`.
    pub fn named(name: &str) -> Result<Tz, TzError> {
        let dir = std::env::var_os("TZDIR").map_or_else(|| PathBuf::from(ZONEINFO), PathBuf::from);
        Tz::named_in(&dir, name)
    }

    /// `name` under `dir`; the name is checked here, so it can never leave `dir`.
    fn named_in(dir: &Path, name: &str) -> Result<Tz, TzError> {
        let valid = !name.is_empty()
            && !name.starts_with('/')
            && name
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..")
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"/_+-".contains(&c));
        if !valid {
            return Err(TzError::BadName(name.into()));
        }
        Tz::from_file(name, &dir.join(name))
    }

    /// The node's zone: `$TZ` (a zone name, `:name`, an absolute file or a POSIX TZ string),
    /// else the zone `/etc/localtime` is (or links to), else UTC.
    pub fn local() -> Tz {
        match std::env::var("TZ") {
            Ok(tz) if tz.is_empty() => Tz::utc(),
            Ok(tz) => Tz::from_tz_var(&tz).unwrap_or_else(Tz::utc),
            Err(_) => Tz::from_localtime(Path::new("/etc/localtime")).unwrap_or_else(Tz::utc),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Seconds east of UTC at the UTC instant `utc_s` (seconds since the epoch).
    pub fn offset_at(&self, utc_s: i64) -> i32 {
        match &self.rules {
            Rules::Fixed(offset) => *offset,
            Rules::Table(table) => table.offset_at(utc_s),
            Rules::Posix(rule) => rule.offset_at(utc_s),
        }
    }

    /// The UTC instants of the local wall time `wall_s` (seconds since 1970-01-01T00:00 local).
    pub fn resolve(&self, wall_s: i64) -> LocalTime {
        // Offsets a day either side bracket every transition near this wall time (zones do
        // not change offset twice within two days).
        let before = self.offset_at(wall_s - 93_600);
        let after = self.offset_at(wall_s + 93_600);
        let fits = |o: i32| self.offset_at(wall_s - i64::from(o)) == o;
        let mut found = [before, after, self.offset_at(wall_s)]
            .into_iter()
            .filter(|&o| fits(o))
            .map(|o| wall_s - i64::from(o))
            .collect::<Vec<i64>>();
        found.sort_unstable();
        found.dedup();
        match found[..] {
            [one] => LocalTime::Single(one),
            [earlier, .., later] => LocalTime::Ambiguous { earlier, later },
            [] => LocalTime::Gap {
                gap_end: self.gap_end(wall_s, before.min(after), before.max(after)),
            },
        }
    }

    /// The first instant whose wall time is past `wall_s`, which lies in a gap between the
    /// offsets `low` (before) and `high` (after): the transition instant.
    fn gap_end(&self, wall_s: i64, low: i32, high: i32) -> i64 {
        let (mut lo, mut hi) = (wall_s - i64::from(high), wall_s - i64::from(low));
        let past = |u: i64| u + i64::from(self.offset_at(u)) > wall_s;
        if !past(hi) {
            return hi;
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if past(mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    fn from_file(name: &str, path: &Path) -> Result<Tz, TzError> {
        let bytes = std::fs::read(path).map_err(|source| TzError::NotFound {
            name: name.into(),
            path: path.to_path_buf(),
            source,
        })?;
        let table = Table::parse(&bytes).map_err(|m| TzError::Malformed {
            name: name.into(),
            reason: m.0,
        })?;
        Ok(Tz {
            name: name.into(),
            rules: Rules::Table(table),
        })
    }

    fn from_tz_var(tz: &str) -> Option<Tz> {
        let spec = tz.strip_prefix(':').unwrap_or(tz);
        if spec.starts_with('/') {
            return Tz::from_file(zone_name_of(Path::new(spec)), Path::new(spec)).ok();
        }
        if let Ok(zone) = Tz::named(spec) {
            return Some(zone);
        }
        let rule = PosixTz::parse(spec)?;
        Some(Tz {
            name: spec.into(),
            rules: Rules::Posix(rule),
        })
    }

    fn from_localtime(path: &Path) -> Option<Tz> {
        let name = std::fs::read_link(path)
            .ok()
            .map(|target| zone_name_of(&target).to_string());
        let name = name.as_deref().unwrap_or("localtime");
        Tz::from_file(name, path).ok()
    }
}

/// `Europe/Berlin` from `/usr/share/zoneinfo/Europe/Berlin` (or the path itself).
fn zone_name_of(path: &Path) -> &str {
    let text = path.to_str().unwrap_or("localtime");
    match text.rfind("zoneinfo/") {
        Some(i) => &text[i + "zoneinfo/".len()..],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::time::days_from_civil;

    fn utc(y: i64, m: u32, d: u32, h: i64, mi: i64) -> i64 {
        days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60
    }

    /// A local wall time as seconds since 1970-01-01T00:00 local.
    fn wall(y: i64, m: u32, d: u32, h: i64, mi: i64) -> i64 {
        utc(y, m, d, h, mi)
    }

    fn zone(name: &str) -> Tz {
        Tz::named_in(Path::new(ZONEINFO), name).unwrap()
    }

    #[test]
    fn berlin_springs_forward_and_falls_back() {
        let berlin = zone("Europe/Berlin");
        assert_eq!(berlin.name(), "Europe/Berlin");
        assert_eq!(berlin.offset_at(utc(2026, 3, 29, 0, 59)), 3600);
        assert_eq!(berlin.offset_at(utc(2026, 3, 29, 1, 0)), 7200);
        assert_eq!(
            berlin.resolve(wall(2026, 3, 29, 1, 59)),
            LocalTime::Single(utc(2026, 3, 29, 0, 59))
        );
        let gap_end = utc(2026, 3, 29, 1, 0);
        assert_eq!(
            berlin.resolve(wall(2026, 3, 29, 2, 0)),
            LocalTime::Gap { gap_end }
        );
        assert_eq!(
            berlin.resolve(wall(2026, 3, 29, 2, 59)),
            LocalTime::Gap { gap_end }
        );
        assert_eq!(
            berlin.resolve(wall(2026, 3, 29, 3, 0)),
            LocalTime::Single(gap_end)
        );
        let (earlier, later) = (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30));
        assert_eq!(
            berlin.resolve(wall(2026, 10, 25, 2, 30)),
            LocalTime::Ambiguous { earlier, later }
        );
        assert_eq!(
            berlin.resolve(wall(2026, 10, 25, 3, 0)),
            LocalTime::Single(utc(2026, 10, 25, 2, 0))
        );
    }

    #[test]
    fn new_york_springs_forward_and_falls_back() {
        let ny = zone("America/New_York");
        let gap_end = utc(2026, 3, 8, 7, 0);
        assert_eq!(
            ny.resolve(wall(2026, 3, 8, 2, 30)),
            LocalTime::Gap { gap_end }
        );
        let (earlier, later) = (utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30));
        assert_eq!(
            ny.resolve(wall(2026, 11, 1, 1, 30)),
            LocalTime::Ambiguous { earlier, later }
        );
        assert_eq!(ny.offset_at(utc(2026, 7, 1, 0, 0)), -4 * 3600);
        assert_eq!(ny.offset_at(utc(2026, 1, 1, 0, 0)), -5 * 3600);
        // 1883, before standard time: local mean time, -4:56:02.
        assert_eq!(ny.offset_at(utc(1880, 1, 1, 0, 0)), -17_762);
    }

    #[test]
    fn half_hour_zones() {
        let kolkata = zone("Asia/Kolkata");
        assert_eq!(kolkata.offset_at(utc(2026, 1, 1, 0, 0)), 19_800);
        let adelaide = zone("Australia/Adelaide");
        assert_eq!(adelaide.offset_at(utc(2026, 7, 1, 0, 0)), 34_200);
        assert_eq!(adelaide.offset_at(utc(2026, 1, 1, 0, 0)), 37_800);
        // 2026-10-04, the first Sunday of October: 02:00 ACST becomes 03:00 ACDT.
        let gap_end = utc(2026, 10, 3, 16, 30);
        assert_eq!(
            adelaide.resolve(wall(2026, 10, 4, 2, 15)),
            LocalTime::Gap { gap_end }
        );
    }

    #[test]
    fn the_footer_rule_covers_dates_past_the_table() {
        // Fat zoneinfo files list transitions up to 2037; 2060 comes from the POSIX footer.
        let berlin = zone("Europe/Berlin");
        let gap_end = utc(2060, 3, 28, 1, 0);
        assert_eq!(
            berlin.resolve(wall(2060, 3, 28, 2, 30)),
            LocalTime::Gap { gap_end }
        );
        assert_eq!(berlin.offset_at(utc(2060, 10, 31, 0, 59)), 7200);
        assert_eq!(berlin.offset_at(utc(2060, 10, 31, 1, 0)), 3600);
        let ny = zone("America/New_York");
        assert_eq!(ny.offset_at(utc(2060, 3, 14, 7, 0)), -4 * 3600);
        assert_eq!(ny.offset_at(utc(2060, 3, 14, 6, 59)), -5 * 3600);
    }

    /// A "slim" TZif v2 file: no transitions at all, only the footer.
    fn slim_tzif(footer: &str) -> Vec<u8> {
        let header = |out: &mut Vec<u8>| {
            out.extend_from_slice(b"TZif2");
            out.extend_from_slice(&[0; 15]);
            for count in [0u32, 0, 0, 0, 1, 4] {
                out.extend_from_slice(&count.to_be_bytes());
            }
            out.extend_from_slice(&3600i32.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(b"CET\0");
        };
        let mut bytes = Vec::new();
        header(&mut bytes);
        header(&mut bytes);
        bytes.extend_from_slice(format!("\n{footer}\n").as_bytes());
        bytes
    }

    #[test]
    fn slim_files_rely_on_the_footer_in_any_zoneinfo_dir() {
        let dir = std::env::temp_dir().join(format!("baa-tz-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("Test")).unwrap();
        std::fs::write(
            dir.join("Test/Slim"),
            slim_tzif("CET-1CEST,M3.5.0,M10.5.0/3"),
        )
        .unwrap();
        std::fs::write(dir.join("Test/Broken"), b"TZif2 but short").unwrap();
        let slim = Tz::named_in(&dir, "Test/Slim").unwrap();
        assert_eq!(slim.offset_at(utc(2026, 7, 1, 0, 0)), 7200);
        assert_eq!(slim.offset_at(utc(2026, 12, 1, 0, 0)), 3600);
        let broken = Tz::named_in(&dir, "Test/Broken").unwrap_err();
        assert!(matches!(broken, TzError::Malformed { .. }), "{broken}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_names_that_are_not_zones() {
        for bad in [
            "",
            "/etc/passwd",
            "../etc/passwd",
            "Europe/../../etc/passwd",
            "Europe//Berlin",
            "Europe/Berlin ",
        ] {
            let err = Tz::named(bad).unwrap_err();
            assert!(matches!(err, TzError::BadName(_)), "{bad}: {err}");
        }
        let err = Tz::named("Europe/Nowhere").unwrap_err();
        assert!(matches!(err, TzError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("Europe/Nowhere"), "{err}");
    }

    #[test]
    fn tz_variable_forms() {
        assert_eq!(
            Tz::from_tz_var(":Europe/Berlin").unwrap().name(),
            "Europe/Berlin"
        );
        assert_eq!(
            Tz::from_tz_var("Asia/Kolkata").unwrap().offset_at(0),
            19_800
        );
        let file = Tz::from_tz_var("/usr/share/zoneinfo/Asia/Kolkata").unwrap();
        assert_eq!((file.name(), file.offset_at(0)), ("Asia/Kolkata", 19_800));
        let posix = Tz::from_tz_var("<+0330>-3:30").unwrap();
        assert_eq!((posix.name(), posix.offset_at(0)), ("<+0330>-3:30", 12_600));
        assert!(Tz::from_tz_var("Not a zone").is_none());
        assert_eq!(Tz::utc().offset_at(0), 0);
        assert_eq!(Tz::utc().resolve(42), LocalTime::Single(42));
    }

    #[test]
    fn localtime_names_the_zone_it_links_to() {
        let link = std::env::temp_dir().join(format!("baa-localtime-{}", std::process::id()));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/usr/share/zoneinfo/Europe/Berlin", &link).unwrap();
        let tz = Tz::from_localtime(&link).unwrap();
        std::fs::remove_file(&link).unwrap();
        assert_eq!(tz.name(), "Europe/Berlin");
        assert_eq!(tz.offset_at(utc(2026, 7, 1, 0, 0)), 7200);
    }
}
