//! Logging shared by the daemons: the logger set-up (`RUST_LOG` filters, default `info`,
//! millisecond timestamps — launchd log files have no other clock), the one `key=value`
//! shape of lifecycle lines ([`event`]), and the daemon's own size-based rotation of its
//! log file (`BAA_LOG_FILE`, see `docs/runtime/logs.md` for why not newsyslog).
//!
//! A lifecycle line reads `event=turn.completed session=s1 status=completed
//! duration_ms=812`: one line per event, keys fixed by the caller, values written with
//! `Display` (never `Debug`, so no `Some(..)` and no Rust string quoting), and quoted only
//! when they would otherwise not split back apart (spaces, `=`, `"`, control characters,
//! or empty). Lines are logged under the target `event`, so `RUST_LOG=info,event=off`
//! silences them and `RUST_LOG=warn,event=info` keeps only them and the warnings.

use std::fmt::{self, Display, Write as _};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::common::logfile;
use crate::common::settings::Setting;

/// The log target of lifecycle lines.
pub const EVENT_TARGET: &str = "event";

/// Rotated files kept next to the live one (`<file>.1` newest … `<file>.3` oldest).
pub const LOG_FILE_KEEP: u32 = 3;
const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
const MIN_MAX_BYTES: u64 = 4096;

pub const LOG_FILE: Setting = Setting::env("BAA_LOG_FILE")
    .help("log file the daemon writes (and rotates) itself; its stderr is pointed at it too. Unset: logs go to stderr as is")
    .external();
pub const LOG_MAX_BYTES: Setting = Setting::env("BAA_LOG_MAX_BYTES")
    .default("10485760")
    .help("BAA_LOG_FILE rotates to <file>.1 past this size; 3 rotated files are kept (>= 4096)")
    .external();

/// Starts the logger. With `BAA_LOG_FILE` set, stderr (fd 2) is first pointed at that file
/// and the logger rotates it by size; a file that cannot be opened is reported on the
/// original stderr and logging carries on there.
pub fn init() {
    let env = env_logger::Env::default().default_filter_or("info");
    let mut builder = env_logger::Builder::from_env(env);
    builder.format_timestamp_millis();
    let file = std::env::var_os("BAA_LOG_FILE").filter(|v| !v.is_empty());
    let target = match file {
        Some(path) => {
            let max = max_bytes_from_env();
            match RotatingStderr::open(PathBuf::from(path), max) {
                Ok(w) => env_logger::Target::Pipe(Box::new(w)),
                Err(e) => {
                    let _ = writeln!(io::stderr(), "cannot log to BAA_LOG_FILE: {e}");
                    env_logger::Target::Stderr
                }
            }
        }
        None => env_logger::Target::Stderr,
    };
    let _ = builder.target(target).try_init();
}

/// `BAA_LOG_MAX_BYTES`, or the default when unset or not a number >= 4096 (a logger has
/// nowhere to report a bad value but the log it is setting up, so it says so there once).
fn max_bytes_from_env() -> u64 {
    match std::env::var("BAA_LOG_MAX_BYTES") {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<u64>() {
            Ok(n) if n >= MIN_MAX_BYTES => n,
            _ => {
                let _ = writeln!(
                    io::stderr(),
                    "BAA_LOG_MAX_BYTES={v:?}: expected a number >= {MIN_MAX_BYTES}; using {DEFAULT_MAX_BYTES}"
                );
                DEFAULT_MAX_BYTES
            }
        },
        _ => DEFAULT_MAX_BYTES,
    }
}

/// Logs one lifecycle line at `info`: `event=<name> k=v …`.
pub fn event(name: &str, fields: &[(&str, &dyn Display)]) {
    if log::log_enabled!(target: EVENT_TARGET, log::Level::Info) {
        log::info!(target: EVENT_TARGET, "{}", event_line(name, fields));
    }
}

/// Logs one `key=value` line at `debug` (the per-request access log).
pub fn debug_event(name: &str, fields: &[(&str, &dyn Display)]) {
    if log::log_enabled!(target: EVENT_TARGET, log::Level::Debug) {
        log::debug!(target: EVENT_TARGET, "{}", event_line(name, fields));
    }
}

/// The text of a lifecycle line (what [`event`] logs).
pub fn event_line(name: &str, fields: &[(&str, &dyn Display)]) -> String {
    let mut out = String::from("event=");
    push_value(&mut out, name);
    let mut buf = String::new();
    for (key, value) in fields {
        buf.clear();
        let _ = write!(buf, "{value}");
        out.push(' ');
        out.push_str(key);
        out.push('=');
        push_value(&mut out, &buf);
    }
    out
}

/// A value as written in a line: bare when it splits back unambiguously, else quoted with
/// `\"`, `\\`, `\n`, `\r`, `\t` and `\u{..}` escapes.
fn push_value(out: &mut String, v: &str) {
    let bare = !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c == '=' || c == '"' || c.is_control());
    if bare {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// An optional value for a line: the value, or `-` when there is none.
pub struct Opt<'a, T: Display>(pub Option<&'a T>);

impl<T: Display> Display for Opt<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// The logger's writer when `BAA_LOG_FILE` is set: writes to fd 2, which points at the
/// file, and rotates the file at a record boundary (`flush`, which env_logger calls once
/// after each record) once it has passed its size. Rotation renames `<file>` to `<file>.1`
/// (shifting older ones up to [`LOG_FILE_KEEP`]), opens a fresh `<file>` and points fd 2 at
/// it, so a panic message or anything else written to stderr lands in the live file too.
struct RotatingStderr {
    path: PathBuf,
    written: u64,
    max_bytes: u64,
}

impl RotatingStderr {
    fn open(path: PathBuf, max_bytes: u64) -> io::Result<RotatingStderr> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let file = open_append(&path)?;
        let written = file.metadata()?.len();
        point_stderr_at(&file)?;
        Ok(RotatingStderr {
            path,
            written,
            max_bytes,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        logfile::rotate_files(&self.path, LOG_FILE_KEEP)?;
        let file = open_append(&self.path)?;
        point_stderr_at(&file)
    }
}

impl Write for RotatingStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = io::stderr().write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()?;
        if self.written >= self.max_bytes {
            // Counted as rotated even when it failed, so a full disk is not retried (and
            // reported) on every line; the next try comes after another `max_bytes`.
            self.written = 0;
            if let Err(e) = self.rotate() {
                let _ = writeln!(
                    io::stderr(),
                    "cannot rotate {}: {e}; writing on",
                    self.path.display()
                );
            }
        }
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn point_stderr_at(file: &File) -> io::Result<()> {
    // SAFETY: dup2 on two descriptors this process owns; fd 2 is replaced atomically.
    if unsafe { libc::dup2(file.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_line_is_key_value_with_display_values() {
        let id = "s-1".to_string();
        let ms: u64 = 812;
        let line = event_line(
            "turn.completed",
            &[
                ("session", &id),
                ("status", &"completed"),
                ("duration_ms", &ms),
            ],
        );
        assert_eq!(
            line,
            "event=turn.completed session=s-1 status=completed duration_ms=812"
        );
    }

    #[test]
    fn values_with_spaces_equals_quotes_or_nothing_are_quoted_and_escaped() {
        let line = event_line(
            "mode.changed",
            &[
                ("by", &"new bie"),
                ("reason", &"a=b"),
                ("note", &"say \"hi\" \\ ok"),
                ("empty", &""),
                ("nl", &"a\nb\tc\u{1}"),
            ],
        );
        assert_eq!(
            line,
            r#"event=mode.changed by="new bie" reason="a=b" note="say \"hi\" \\ ok" empty="" nl="a\nb\tc\u{1}""#
        );
    }

    #[test]
    fn optional_values_print_a_dash_never_some() {
        let who = Some("newbie".to_string());
        let none: Option<String> = None;
        let line = event_line(
            "mode.changed",
            &[("by", &Opt(who.as_ref())), ("reason", &Opt(none.as_ref()))],
        );
        assert_eq!(line, "event=mode.changed by=newbie reason=-");
    }
}
