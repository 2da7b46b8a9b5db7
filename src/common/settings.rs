//! One settings table for the three daemons: each setting's flag, environment variable,
//! default and help in one row, and the typed accessors that read a row.
//!
//! A daemon declares its table as `const` rows (`config.rs`), the command line is parsed
//! against it (`common::cli`), and its `resolve` reads every value through a [`Resolver`]:
//! a pure step over the typed flags and an environment lookup function, unit-tested without
//! a process, as ripgrep does. The same rows generate the usage text and
//! `settings --json`, so the documentation a binary prints cannot drift from what it reads.
//!
//! The rules every binary follows: a flag wins over its variable; values are trimmed; an
//! empty value counts as unset (launchd plists and scripts write `KEY=` for "not
//! configured"); URLs lose their trailing slashes. An error names where the bad value came
//! from: `--server-strategy: expected spawn or external, got "x"` when the flag was typed,
//! `BAA_CODEXD_SERVER_STRATEGY="x": expected spawn or external` when the variable was set.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::common::netaddr::ListenUrl;
use crate::common::secret::read_token_file;

/// What a setting falls back to when neither its flag nor its variable is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// This value, parsed exactly like a given one.
    Value(&'static str),
    /// Worked out by the daemon from other settings (e.g. `${BAA_STATE_DIR}/codexd`);
    /// the text is for the usage and the docs, the accessor sees the setting as unset.
    Derived(&'static str),
    /// None: optional settings read as absent, required ones are an error.
    Unset,
}

/// How the setting is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The flag takes a value (`--port 4318`).
    Value,
    /// The flag takes no value and means "on" (`--demo`); the variable is a boolean.
    Switch,
    /// Read outside the config parse (by `env_logger`, `/v1/exec`, the stub child); listed
    /// so `settings --json` names every variable the binary reads.
    External,
}

/// One row of a settings table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Long flag without its dashes; `None` for variables that have no flag.
    pub flag: Option<&'static str>,
    /// Environment variable; `None` for flag-only settings.
    pub env: Option<&'static str>,
    /// Placeholder for the flag's value in the usage text (`URL`, `DIR`, `MS`).
    pub value_name: &'static str,
    pub default: Fallback,
    pub help: &'static str,
    pub kind: Kind,
    /// Left out of the usage text (still in `settings --json`): test hooks and variables
    /// the daemon only passes on.
    pub hidden: bool,
    /// The flag's old name, still accepted with a warning (`--host` of `--conductor-host`).
    pub old_flag: Option<&'static str>,
}

impl Setting {
    /// A variable without a flag, no default, no help yet (the `const fn` builders below
    /// fill those in).
    pub const fn env(env: &'static str) -> Setting {
        Setting {
            flag: None,
            env: Some(env),
            value_name: "VALUE",
            default: Fallback::Unset,
            help: "",
            kind: Kind::Value,
            hidden: false,
            old_flag: None,
        }
    }

    /// Keeps `old` working as the flag's former name; using it warns (scripts and plists
    /// that still pass it go on working while they are updated).
    pub const fn renamed_from(mut self, old: &'static str) -> Setting {
        self.old_flag = Some(old);
        self
    }

    /// Adds a flag that takes a value shown as `value_name` in the usage text.
    pub const fn flag(mut self, flag: &'static str, value_name: &'static str) -> Setting {
        self.flag = Some(flag);
        self.value_name = value_name;
        self
    }

    /// Makes the flag a value-less switch (`--demo`); the variable reads as a boolean.
    pub const fn switch(mut self, flag: &'static str) -> Setting {
        self.flag = Some(flag);
        self.value_name = "";
        self.kind = Kind::Switch;
        self
    }

    pub const fn default(mut self, value: &'static str) -> Setting {
        self.default = Fallback::Value(value);
        self
    }

    pub const fn derived(mut self, description: &'static str) -> Setting {
        self.default = Fallback::Derived(description);
        self
    }

    pub const fn help(mut self, help: &'static str) -> Setting {
        self.help = help;
        self
    }

    pub const fn external(mut self) -> Setting {
        self.kind = Kind::External;
        self
    }

    pub const fn hidden(mut self) -> Setting {
        self.hidden = true;
        self
    }

    /// The name a person would look up: the flag (`--node-id`) or else the variable.
    pub fn name(&self) -> String {
        match (self.flag, self.env) {
            (Some(f), _) => format!("--{f}"),
            (None, Some(e)) => e.to_string(),
            (None, None) => "?".to_string(),
        }
    }

    /// `BAA_STATE_DIR (or --state-dir)`: both ways to set it, for "is not set" messages.
    pub fn both_names(&self) -> String {
        match (self.env, self.flag) {
            (Some(e), Some(f)) => format!("{e} (or --{f})"),
            (Some(e), None) => e.to_string(),
            (None, Some(f)) => format!("--{f}"),
            (None, None) => "?".to_string(),
        }
    }

    fn same(&self, other: &Setting) -> bool {
        self.flag == other.flag && self.env == other.env
    }

    fn default_text(&self) -> Option<&'static str> {
        match self.default {
            Fallback::Value(v) | Fallback::Derived(v) => Some(v),
            Fallback::Unset => None,
        }
    }
}

/// `[{flag, env, default, help}]`, every row including hidden ones: what
/// `<binary> settings --json` prints and `tests/it/docs_drift.rs` checks the docs against.
pub fn table_json(table: &[Setting]) -> Value {
    Value::Array(
        table
            .iter()
            .map(|s| {
                json!({
                    "flag": s.flag.map(|f| format!("--{f}")),
                    "env": s.env,
                    "default": s.default_text(),
                    "help": s.help,
                })
            })
            .collect(),
    )
}

/// The FLAGS and ENVIRONMENT sections of a usage text, generated from the table.
pub fn usage_sections(table: &[Setting]) -> String {
    let mut out = String::new();
    let with_flag: Vec<&Setting> = table
        .iter()
        .filter(|s| !s.hidden && s.flag.is_some())
        .collect();
    if !with_flag.is_empty() {
        out.push_str("FLAGS (each overrides the variable shown; empty values count as unset):\n");
        for s in with_flag {
            let mut head = s.name();
            if s.kind != Kind::Switch {
                head.push_str(&format!(" <{}>", s.value_name));
            }
            let mut line = format!("    {head:<34}");
            if let Some(e) = s.env {
                line.push_str(e);
            }
            if let Some(d) = s.default_text() {
                line.push_str(&format!(" (default {d})"));
            }
            out.push_str(line.trim_end());
            out.push('\n');
            out.push_str(&format!("        {}\n", s.help));
        }
    }
    let env_only: Vec<&Setting> = table
        .iter()
        .filter(|s| !s.hidden && s.flag.is_none())
        .collect();
    if !env_only.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str("ENVIRONMENT (no flag):\n");
        for s in env_only {
            let mut line = format!("    {}", s.env.unwrap_or("?"));
            if let Some(d) = s.default_text() {
                line.push_str(&format!(" (default {d})"));
            }
            out.push_str(&line);
            out.push('\n');
            out.push_str(&format!("        {}\n", s.help));
        }
    }
    out
}

/// Where a value came from; errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Flag(&'static str),
    Env(&'static str),
    /// The table's own default (a bad one is a bug, caught by each daemon's unit tests).
    Default(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(name) => write!(f, "--{name}"),
            Origin::Env(name) => f.write_str(name),
            Origin::Default(name) => write!(f, "the default of {name}"),
        }
    }
}

/// Every way a command line or a configuration can be refused; all exit 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The command line itself: an unknown flag or command, a flag without its value.
    Usage(String),
    /// A value that does not parse or is out of range. `value` is `None` for secrets,
    /// which are never echoed.
    Invalid {
        origin: Origin,
        value: Option<String>,
        problem: String,
    },
    /// A required setting is set neither by flag nor by variable; `names` says both.
    Missing { names: String },
    /// A rule about a value beyond its syntax (where it may listen, a token file's mode),
    /// or across several settings.
    Rule {
        origin: Option<Origin>,
        message: String,
    },
}

impl Error {
    pub fn rule(message: impl Into<String>) -> Error {
        Error::Rule {
            origin: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => f.write_str(m),
            Error::Invalid {
                origin,
                value,
                problem,
            } => match (origin, value) {
                (Origin::Env(name), Some(v)) => write!(f, "{name}={v:?}: {problem}"),
                (_, Some(v)) => write!(f, "{origin}: {problem}, got {v:?}"),
                (_, None) => write!(f, "{origin}: {problem}"),
            },
            Error::Missing { names } => write!(f, "{names} must be set (it has no default)"),
            Error::Rule {
                origin: Some(o),
                message,
            } => write!(f, "{o}: {message}"),
            Error::Rule {
                origin: None,
                message,
            } => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Flag values as typed on the command line, before the environment is consulted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags(Vec<(&'static str, String)>);

impl Flags {
    /// Records `--flag value`; a repeated flag's last value wins, as in most tools.
    pub fn set(&mut self, flag: &'static str, value: String) {
        self.0.retain(|(f, _)| *f != flag);
        self.0.push((flag, value));
    }

    pub fn get(&self, flag: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| *f == flag)
            .map(|(_, v)| v.as_str())
    }
}

/// A value after the flag > variable > default rule, trimmed and non-empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    pub origin: Origin,
    pub text: String,
}

/// Reads settings of one table from flags and an environment lookup. Every accessor
/// takes a row of the table (a `const`), so a misspelt setting is a compile error, not a
/// silent `None`.
pub struct Resolver<'a> {
    table: &'a [Setting],
    flags: &'a Flags,
    env: &'a dyn Fn(&str) -> Option<String>,
    cwd: &'a Path,
    /// Rows read so far, so a unit test can check that the table and the parse agree.
    read: RefCell<BTreeSet<String>>,
}

impl<'a> Resolver<'a> {
    /// `env` looks a variable up (`|k| std::env::var(k).ok()` in a binary, a map in tests);
    /// `cwd` anchors relative paths that were given explicitly.
    pub fn new(
        table: &'a [Setting],
        flags: &'a Flags,
        env: &'a dyn Fn(&str) -> Option<String>,
        cwd: &'a Path,
    ) -> Self {
        Resolver {
            table,
            flags,
            env,
            cwd,
            read: RefCell::new(BTreeSet::new()),
        }
    }

    /// The working directory explicit relative paths are anchored at.
    pub fn cwd(&self) -> &Path {
        self.cwd
    }

    /// Rows of the table that no accessor has read, other than `External` ones. A daemon's
    /// unit test asserts this is empty after `resolve`: a row nobody reads is a lie in the
    /// usage text.
    pub fn unread(&self) -> Vec<String> {
        let read = self.read.borrow();
        self.table
            .iter()
            .filter(|s| s.kind != Kind::External)
            .map(Setting::name)
            .filter(|n| !read.contains(n))
            .collect()
    }

    /// What the user set (flag, else variable), trimmed; `None` when unset or empty.
    pub fn given(&self, s: &Setting) -> Option<Given> {
        debug_assert!(
            self.table.iter().any(|t| t.same(s)),
            "{} is read but not in the settings table",
            s.name()
        );
        self.read.borrow_mut().insert(s.name());
        let from_flag = s.flag.and_then(|f| {
            let v = self.flags.get(f)?.trim();
            (!v.is_empty()).then(|| Given {
                origin: Origin::Flag(f),
                text: v.to_string(),
            })
        });
        from_flag.or_else(|| {
            let name = s.env?;
            let v = (self.env)(name)?;
            let v = v.trim();
            (!v.is_empty()).then(|| Given {
                origin: Origin::Env(name),
                text: v.to_string(),
            })
        })
    }

    pub fn is_given(&self, s: &Setting) -> bool {
        self.given(s).is_some()
    }

    /// The given value, else the table's default value.
    fn value(&self, s: &Setting) -> Option<Given> {
        self.given(s).or_else(|| match s.default {
            Fallback::Value(v) => Some(Given {
                origin: Origin::Default(s.env.or(s.flag).unwrap_or("?")),
                text: v.to_string(),
            }),
            Fallback::Derived(_) | Fallback::Unset => None,
        })
    }

    fn required(&self, s: &Setting) -> Result<Given> {
        self.value(s).ok_or_else(|| Error::Missing {
            names: s.both_names(),
        })
    }

    /// An error about this setting's value, naming where it came from.
    pub fn invalid(&self, s: &Setting, problem: impl Into<String>) -> Error {
        match self.value(s) {
            Some(g) => invalid(&g, problem),
            None => Error::Missing {
                names: s.both_names(),
            },
        }
    }

    /// A rule about this setting beyond its syntax, naming where the value came from.
    pub fn rule(&self, s: &Setting, message: impl Into<String>) -> Error {
        Error::Rule {
            origin: self.value(s).map(|g| g.origin),
            message: message.into(),
        }
    }

    pub fn string(&self, s: &Setting) -> Result<String> {
        self.required(s).map(|g| g.text)
    }

    pub fn opt_string(&self, s: &Setting) -> Option<String> {
        self.value(s).map(|g| g.text)
    }

    /// An integer within `range`. Parsed wide and converted with `try_from`, so a value
    /// too big for the field is an error, never a silent truncation.
    pub fn number<T>(&self, s: &Setting, range: RangeInclusive<T>) -> Result<T>
    where
        T: TryFrom<i128> + TryInto<i128> + PartialOrd + Copy + fmt::Display,
    {
        let g = self.required(s)?;
        let expected = describe_range(&range);
        let n: i128 = g
            .text
            .parse()
            .map_err(|_| invalid(&g, format!("expected {expected}")))?;
        match T::try_from(n) {
            Ok(v) if range.contains(&v) => Ok(v),
            _ => Err(invalid(&g, format!("expected {expected}"))),
        }
    }

    /// A path; a relative one is anchored at the working directory it was given in.
    pub fn path(&self, s: &Setting) -> Result<PathBuf> {
        self.required(s)
            .map(|g| absolute(Path::new(&g.text), self.cwd))
    }

    pub fn opt_path(&self, s: &Setting) -> Option<PathBuf> {
        self.value(s)
            .map(|g| absolute(Path::new(&g.text), self.cwd))
    }

    /// An `http://` or `https://` URL with its trailing slashes dropped.
    pub fn url(&self, s: &Setting) -> Result<String> {
        let g = self.required(s)?;
        check_url(&g)
    }

    pub fn opt_url(&self, s: &Setting) -> Result<Option<String>> {
        self.value(s).map(|g| check_url(&g)).transpose()
    }

    /// An `http://HOST:PORT` listen URL (no path), trailing slashes dropped; returns the
    /// normalised text and the parsed address.
    pub fn listen_url(&self, s: &Setting) -> Result<(String, ListenUrl)> {
        let g = self.required(s)?;
        let text = g.text.trim_end_matches('/').to_string();
        let url = ListenUrl::parse(&text).map_err(|e| invalid(&g, e.to_string()))?;
        Ok((text, url))
    }

    /// A comma-separated list, items trimmed, empty items dropped; unset is empty.
    pub fn list(&self, s: &Setting) -> Vec<String> {
        self.value(s)
            .map(|g| {
                g.text
                    .split(',')
                    .map(str::trim)
                    .filter(|i| !i.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `1/true/yes/on` or `0/false/no/off` (any case); unset is the default, else false.
    /// A switch flag given on the command line reads as true.
    pub fn bool(&self, s: &Setting) -> Result<bool> {
        let Some(g) = self.value(s) else {
            return Ok(false);
        };
        match g.text.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(invalid(&g, "expected 1 or 0 (true/false, yes/no, on/off)")),
        }
    }

    /// One of `choices`, exactly as written there.
    pub fn choice(&self, s: &Setting, choices: &[&'static str]) -> Result<&'static str> {
        let g = self.required(s)?;
        choices
            .iter()
            .find(|c| **c == g.text)
            .copied()
            .ok_or_else(|| invalid(&g, format!("expected {}", or_list(choices))))
    }

    /// A secret given directly (`value`) or in a file (`file`). A typed flag beats a
    /// variable across the pair; at the same level the direct value wins. The file must
    /// be a regular file nobody but its owner can read or write (mode 0600 or stricter):
    /// anything looser is refused, naming the file, its mode and the fix. The file's
    /// content is trimmed; an empty file counts as unset. The secret is never echoed.
    pub fn secret(&self, value: &Setting, file: &Setting) -> Result<Option<String>> {
        let direct = self.given(value);
        let path = self.given(file);
        let use_file = match (&direct, &path) {
            (Some(d), Some(p)) => {
                matches!(p.origin, Origin::Flag(_)) && matches!(d.origin, Origin::Env(_))
            }
            (None, Some(_)) => true,
            _ => false,
        };
        if !use_file {
            return Ok(direct.map(|g| g.text));
        }
        let Some(p) = path else { return Ok(None) };
        let file = absolute(Path::new(&p.text), self.cwd);
        read_token_file(&file).map_err(|problem| Error::Rule {
            origin: Some(p.origin),
            message: problem.to_string(),
        })
    }
}

fn invalid(g: &Given, problem: impl Into<String>) -> Error {
    Error::Invalid {
        origin: g.origin,
        value: Some(g.text.clone()),
        problem: problem.into(),
    }
}

fn check_url(g: &Given) -> Result<String> {
    let text = g.text.trim_end_matches('/');
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => {
            Ok(text.to_string())
        }
        _ => Err(invalid(g, "expected an http:// or https:// URL")),
    }
}

fn describe_range<T>(range: &RangeInclusive<T>) -> String
where
    T: TryInto<i128> + Copy + fmt::Display,
{
    // A top beyond u32 is a type's limit nobody means: say ">= 1", not ">= 1 and <= 2^64-1".
    let lo: Option<i128> = (*range.start()).try_into().ok();
    let hi: Option<i128> = (*range.end()).try_into().ok();
    let huge = |v: Option<i128>| v.is_none_or(|v| v.unsigned_abs() > u128::from(u32::MAX));
    match (huge(lo), huge(hi)) {
        (true, true) => "an integer".to_string(),
        (false, true) => format!("an integer >= {}", range.start()),
        _ => format!("an integer from {} to {}", range.start(), range.end()),
    }
}

fn or_list(choices: &[&str]) -> String {
    match choices {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn absolute(p: &Path, cwd: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    const PORT: Setting = Setting::env("T_PORT")
        .flag("port", "PORT")
        .default("4318")
        .help("listen port");
    const NAME: Setting = Setting::env("T_NAME").flag("name", "NAME").help("a name");
    const MODE: Setting = Setting::env("T_MODE")
        .flag("mode", "MODE")
        .default("spawn")
        .help("spawn or external");
    const DEMO: Setting = Setting::env("T_DEMO").switch("demo").help("demo mode");
    const BASE: Setting = Setting::env("T_BASE").help("a URL");
    const ITEMS: Setting = Setting::env("T_ITEMS").help("a list");
    const TOKEN: Setting = Setting::env("T_TOKEN").flag("token", "TOKEN").help("token");
    const TOKEN_FILE: Setting = Setting::env("T_TOKEN_FILE")
        .flag("token-file", "PATH")
        .help("token file");
    const LOG: Setting = Setting::env("T_LOG")
        .default("info")
        .help("log filter")
        .external();
    const TABLE: &[Setting] = &[PORT, NAME, MODE, DEMO, BASE, ITEMS, TOKEN, TOKEN_FILE, LOG];

    struct Case {
        flags: Flags,
        env: HashMap<String, String>,
    }

    fn case(flags: &[(&'static str, &str)], env: &[(&str, &str)]) -> Case {
        let mut f = Flags::default();
        for (k, v) in flags {
            f.set(k, v.to_string());
        }
        Case {
            flags: f,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    impl Case {
        fn with<T>(&self, f: impl FnOnce(&Resolver) -> T) -> T {
            let env = |k: &str| self.env.get(k).cloned();
            let r = Resolver::new(TABLE, &self.flags, &env, Path::new("/srv/app"));
            f(&r)
        }
    }

    #[test]
    fn flag_wins_over_env_values_are_trimmed_and_empty_is_unset() {
        let c = case(
            &[("port", " 5000 ")],
            &[("T_PORT", "6000"), ("T_NAME", "  ")],
        );
        c.with(|r| {
            assert_eq!(r.number::<u16>(&PORT, 0..=u16::MAX), Ok(5000));
            assert_eq!(r.opt_string(&NAME), None);
        });
        let c = case(&[("port", "")], &[("T_PORT", "6000")]);
        c.with(|r| assert_eq!(r.number::<u16>(&PORT, 0..=u16::MAX), Ok(6000)));
        let c = case(&[], &[]);
        c.with(|r| {
            assert_eq!(r.number::<u16>(&PORT, 0..=u16::MAX), Ok(4318));
            assert_eq!(
                r.string(&NAME),
                Err(Error::Missing {
                    names: "T_NAME (or --name)".into()
                })
            );
        });
    }

    #[test]
    fn errors_name_the_flag_or_the_variable_the_value_came_from() {
        let c = case(&[("mode", "x")], &[]);
        let e = c.with(|r| r.choice(&MODE, &["spawn", "external"]).unwrap_err());
        assert_eq!(
            e.to_string(),
            "--mode: expected spawn or external, got \"x\""
        );
        let c = case(&[], &[("T_MODE", "x")]);
        let e = c.with(|r| r.choice(&MODE, &["spawn", "external"]).unwrap_err());
        assert_eq!(e.to_string(), "T_MODE=\"x\": expected spawn or external");
    }

    #[test]
    fn numbers_are_range_checked_without_narrowing() {
        for (text, want) in [
            (
                "70000",
                "T_PORT=\"70000\": expected an integer from 1 to 65535",
            ),
            ("0", "T_PORT=\"0\": expected an integer from 1 to 65535"),
            ("-1", "T_PORT=\"-1\": expected an integer from 1 to 65535"),
            (
                "12ms",
                "T_PORT=\"12ms\": expected an integer from 1 to 65535",
            ),
        ] {
            let c = case(&[], &[("T_PORT", text)]);
            let e = c.with(|r| r.number::<u16>(&PORT, 1..=u16::MAX).unwrap_err());
            assert_eq!(e.to_string(), want);
        }
        let c = case(&[("port", "5000000000")], &[]);
        let e = c.with(|r| r.number::<u32>(&PORT, 100..=60_000).unwrap_err());
        assert_eq!(
            e.to_string(),
            "--port: expected an integer from 100 to 60000, got \"5000000000\""
        );
        let c = case(&[("port", "-5")], &[]);
        let e = c.with(|r| r.number::<u64>(&PORT, 1..=u64::MAX).unwrap_err());
        assert_eq!(
            e.to_string(),
            "--port: expected an integer >= 1, got \"-5\""
        );
        let c = case(&[("port", "-7")], &[]);
        assert_eq!(
            c.with(|r| r.number::<i64>(&PORT, i64::MIN..=i64::MAX)),
            Ok(-7)
        );
        let c = case(&[("port", "x")], &[]);
        let e = c.with(|r| r.number::<i64>(&PORT, i64::MIN..=i64::MAX).unwrap_err());
        assert_eq!(e.to_string(), "--port: expected an integer, got \"x\"");
    }

    #[test]
    fn paths_urls_lists_and_bools() {
        let c = case(
            &[("demo", "true")],
            &[
                ("T_NAME", "rel/dir"),
                ("T_BASE", "http://127.0.0.1:4317//"),
                ("T_ITEMS", " a, ,b ,"),
            ],
        );
        c.with(|r| {
            assert_eq!(r.path(&NAME), Ok(PathBuf::from("/srv/app/rel/dir")));
            assert_eq!(r.url(&BASE), Ok("http://127.0.0.1:4317".to_string()));
            assert_eq!(r.list(&ITEMS), vec!["a", "b"]);
            assert_eq!(r.bool(&DEMO), Ok(true));
            let (text, url) = r.listen_url(&BASE).unwrap();
            assert_eq!((text.as_str(), url.port), ("http://127.0.0.1:4317", 4317));
        });
        let c = case(&[], &[("T_DEMO", "maybe"), ("T_BASE", "127.0.0.1:1")]);
        c.with(|r| {
            assert!(r.bool(&DEMO).unwrap_err().to_string().contains("T_DEMO"));
            assert_eq!(
                r.url(&BASE).unwrap_err().to_string(),
                "T_BASE=\"127.0.0.1:1\": expected an http:// or https:// URL"
            );
            assert!(r.listen_url(&BASE).is_err());
        });
        let c = case(&[], &[("T_DEMO", "OFF")]);
        assert_eq!(c.with(|r| r.bool(&DEMO)), Ok(false));
        assert_eq!(case(&[], &[]).with(|r| r.bool(&DEMO)), Ok(false));
    }

    fn token_file(tag: &str, mode: u32, content: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(crate::common::ids::new_id(tag));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("token");
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn secret_file_must_be_0600_or_stricter() {
        let loose = token_file("tok", 0o644, "s3cret-token\n");
        let shown = loose.display().to_string();
        let c = case(&[], &[("T_TOKEN_FILE", shown.as_str())]);
        let e = c
            .with(|r| r.secret(&TOKEN, &TOKEN_FILE).unwrap_err())
            .to_string();
        assert!(e.starts_with("T_TOKEN_FILE: "), "{e}");
        assert!(e.contains("mode 0644"), "{e}");
        assert!(e.contains(&format!("chmod 600 {shown}")), "{e}");
        assert!(!e.contains("s3cret"), "{e}");

        let strict = token_file("tok", 0o600, "  s3cret-token\n");
        let shown = strict.display().to_string();
        let c = case(&[], &[("T_TOKEN_FILE", shown.as_str())]);
        assert_eq!(
            c.with(|r| r.secret(&TOKEN, &TOKEN_FILE)),
            Ok(Some("s3cret-token".to_string()))
        );
        let c = case(
            &[],
            &[("T_TOKEN_FILE", shown.as_str()), ("T_TOKEN", "direct")],
        );
        assert_eq!(
            c.with(|r| r.secret(&TOKEN, &TOKEN_FILE)),
            Ok(Some("direct".to_string())),
            "the variable beats the file variable"
        );
        let c = case(&[("token-file", shown.as_str())], &[("T_TOKEN", "direct")]);
        assert_eq!(
            c.with(|r| r.secret(&TOKEN, &TOKEN_FILE)),
            Ok(Some("s3cret-token".to_string())),
            "a typed flag beats a variable"
        );
        let empty = token_file("tok", 0o400, " \n");
        let shown = empty.display().to_string();
        let c = case(&[], &[("T_TOKEN_FILE", shown.as_str())]);
        assert_eq!(c.with(|r| r.secret(&TOKEN, &TOKEN_FILE)), Ok(None));
        let c = case(&[], &[("T_TOKEN_FILE", "/nonexistent/token")]);
        let e = c
            .with(|r| r.secret(&TOKEN, &TOKEN_FILE).unwrap_err())
            .to_string();
        assert!(e.contains("cannot read /nonexistent/token"), "{e}");
        for p in [loose, strict, empty] {
            let _ = std::fs::remove_dir_all(p.parent().unwrap());
        }
    }

    #[test]
    fn unread_lists_rows_no_accessor_touched() {
        let c = case(&[], &[]);
        let unread = c.with(|r| {
            let _ = r.opt_string(&NAME);
            let _ = r.number::<u16>(&PORT, 0..=u16::MAX);
            r.unread()
        });
        assert_eq!(
            unread,
            vec![
                "--mode",
                "--demo",
                "T_BASE",
                "T_ITEMS",
                "--token",
                "--token-file"
            ]
        );
    }

    #[test]
    fn usage_and_json_come_from_the_table() {
        let text = usage_sections(TABLE);
        assert!(
            text.contains("    --port <PORT>                     T_PORT (default 4318)\n        listen port\n"),
            "{text}"
        );
        assert!(text.contains("    --demo "), "{text}");
        assert!(
            text.contains("ENVIRONMENT (no flag):\n    T_BASE\n"),
            "{text}"
        );
        let json = table_json(TABLE);
        assert_eq!(
            json[0],
            json!({"flag": "--port", "env": "T_PORT", "default": "4318", "help": "listen port"})
        );
        assert_eq!(json[4]["flag"], Value::Null);
        assert_eq!(json.as_array().map(Vec::len), Some(TABLE.len()));
    }
}
