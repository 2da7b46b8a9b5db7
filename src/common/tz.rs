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
        let dir = std::env::var_os("TZDIR").map_or_else(|| PathBuf::from(ZONEINFO), PathBuf::from);
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
