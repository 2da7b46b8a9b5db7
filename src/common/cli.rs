//! The command line the three binaries share: `<binary> <COMMAND> [FLAGS]` with the same
//! built-ins everywhere (`help`, `-h`/`--help`, `-V`/`--version`, `settings --json`,
//! `routes [--json]`), one usage text generated from the command list and the settings
//! table, one-line usage errors with a hint (exit 2), and output that treats a closed
//! stdout (`baa-codexd status --json | head -3`) as the reader being done, not a panic.
//!
//! Parsing is pure (argv in, [`Invocation`] out) so it is unit-tested without a process;
//! the values are read later through [`crate::common::settings::Resolver`].

use std::ffi::OsString;
use std::io::{self, ErrorKind, Write};
use std::process::ExitCode;

use serde_json::Value;

use crate::common::settings::{self, Error, Flags, Kind, Setting};

/// Exit code of a usage or configuration error, in all three binaries.
pub const USAGE_EXIT: u8 = 2;

/// One of a binary's own commands (`start`, `config`, …).
pub struct Command<C: 'static> {
    pub name: &'static str,
    pub help: &'static str,
    /// Whether `--json` is accepted.
    pub json: bool,
    pub run: C,
}

/// A binary's command-line description.
pub struct Cli<C: 'static> {
    /// `baa-conductor`; the prefix of every message.
    pub binary: &'static str,
    /// One line saying what the binary is.
    pub about: &'static str,
    pub commands: &'static [Command<C>],
    /// What a bare invocation runs (status-api's launchd job runs it bare); `None` makes
    /// a missing command a usage error.
    pub bare: Option<C>,
    pub settings: &'static [Setting],
    /// Closing lines of the usage text.
    pub notes: &'static str,
}

/// What the command line asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<C> {
    Run(C),
    Help,
    Version,
    /// `settings --json`: the settings table.
    Settings,
    /// `routes [--json]`: the route table.
    Routes,
}

/// The parsed command line: the "low" args, before the environment is consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation<C> {
    pub action: Action<C>,
    pub json: bool,
    pub flags: Flags,
    /// `--OLD is now --NEW` for each renamed flag used (printed by [`Cli::main`]).
    pub warnings: Vec<String>,
}

/// Built-in commands every binary has, in usage order.
const BUILTINS: &[(&str, &str)] = &[
    (
        "settings --json",
        "print every setting as JSON: [{flag, env, default, help}]",
    ),
    (
        "routes [--json]",
        "print the route table (one line per route, or JSON); nothing is started",
    ),
    (
        "help",
        "print this text (also -h, --help); -V, --version prints the version",
    ),
];

impl<C: Copy + PartialEq> Cli<C> {
    /// Parses the arguments after the program name.
    pub fn parse(&self, args: Vec<OsString>) -> Result<Invocation<C>, Error> {
        use lexopt::prelude::*;
        let usage = |m: String| Error::Usage(m);
        let mut p = lexopt::Parser::from_args(args);
        let mut word: Option<String> = None;
        let (mut help, mut version, mut json) = (false, false, false);
        let mut flags = Flags::default();
        let mut warnings = Vec::new();
        while let Some(arg) = p.next().map_err(|e| usage(e.to_string()))? {
            match arg {
                Short('h') | Long("help") => help = true,
                Short('V') | Long("version") => version = true,
                Long("json") => json = true,
                Long(name) => {
                    let name = name.to_string();
                    let Some((flag, kind, value_name)) = self.flag(&name) else {
                        return Err(usage(format!("unknown flag --{name}")));
                    };
                    if flag != name {
                        let w = format!("--{name} is now --{flag}");
                        if !warnings.contains(&w) {
                            warnings.push(w);
                        }
                    }
                    if kind == Kind::Switch {
                        flags.set(flag, "true".to_string());
                        continue;
                    }
                    let value = p
                        .value()
                        .map_err(|_| usage(format!("--{flag} needs a value ({value_name})")))?
                        .into_string()
                        .map_err(|_| usage(format!("--{flag}: the value is not valid UTF-8")))?;
                    flags.set(flag, value);
                }
                Short(c) => return Err(usage(format!("unknown flag -{c}"))),
                Value(v) if word.is_none() => {
                    word = Some(v.to_string_lossy().into_owned());
                }
                Value(v) => {
                    return Err(usage(format!(
                        "unexpected argument {:?}",
                        v.to_string_lossy()
                    )))
                }
            }
        }
        let action = if help {
            Action::Help
        } else if version {
            Action::Version
        } else {
            match word.as_deref() {
                Some(w) => self.command(w)?,
                None => match self.bare {
                    Some(c) => Action::Run(c),
                    None => {
                        return Err(usage(format!(
                            "missing command ({})",
                            self.command_names().join(", ")
                        )))
                    }
                },
            }
        };
        if json && !self.takes_json(action) {
            let what = word.unwrap_or_else(|| "this command".to_string());
            return Err(usage(format!("{what} takes no --json")));
        }
        Ok(Invocation {
            action,
            json,
            flags,
            warnings,
        })
    }

    fn flag(&self, name: &str) -> Option<(&'static str, Kind, &'static str)> {
        self.settings
            .iter()
            .filter(|s| s.kind != Kind::External)
            .find_map(|s| {
                let named = s.flag == Some(name) || s.old_flag == Some(name);
                s.flag.filter(|_| named).map(|f| (f, s.kind, s.value_name))
            })
    }

    fn command(&self, word: &str) -> Result<Action<C>, Error> {
        if let Some(c) = self.commands.iter().find(|c| c.name == word) {
            return Ok(Action::Run(c.run));
        }
        match word {
            "help" => Ok(Action::Help),
            "settings" => Ok(Action::Settings),
            "routes" => Ok(Action::Routes),
            _ => Err(Error::Usage(format!(
                "unknown command {word:?} (expected {})",
                self.command_names().join(", ")
            ))),
        }
    }

    fn command_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.commands.iter().map(|c| c.name).collect();
        names.extend(["settings", "routes", "help"]);
        names
    }

    fn takes_json(&self, action: Action<C>) -> bool {
        match action {
            Action::Settings | Action::Routes | Action::Help | Action::Version => true,
            Action::Run(run) => self.commands.iter().any(|c| c.run == run && c.json),
        }
    }

    /// The whole usage text, generated from the commands and the settings table.
    pub fn usage(&self) -> String {
        let mut rows: Vec<(String, &str)> = self
            .commands
            .iter()
            .map(|c| {
                let label = if c.json {
                    format!("{} [--json]", c.name)
                } else {
                    c.name.to_string()
                };
                (label, c.help)
            })
            .collect();
        rows.extend(BUILTINS.iter().map(|(l, h)| (l.to_string(), *h)));
        let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let commands: String = rows
            .iter()
            .map(|(l, h)| format!("    {l:<width$}  {h}\n"))
            .collect();
        let synopsis = if self.bare.is_some() {
            format!("{} [COMMAND] [FLAGS]   (no command: start)", self.binary)
        } else {
            format!("{} <COMMAND> [FLAGS]", self.binary)
        };
        format!(
            "{} {}: {}\n\nUSAGE:\n    {synopsis}\n\nCOMMANDS:\n{commands}\n{}\nEXIT CODES: 0 ok, 1 runtime failure, {USAGE_EXIT} usage or configuration error.\n{}",
            self.binary,
            env!("CARGO_PKG_VERSION"),
            self.about,
            settings::usage_sections(self.settings),
            self.notes,
        )
    }

    /// The front end of every binary's `main`: parses, answers help, version and
    /// `settings`, and hands `routes` (the table may depend on settings) and the binary's
    /// own commands to the two functions.
    pub fn main(
        &self,
        args: Vec<OsString>,
        routes: impl FnOnce(&Invocation<C>) -> ExitCode,
        run: impl FnOnce(C, &Invocation<C>) -> ExitCode,
    ) -> ExitCode {
        let inv = match self.parse(args) {
            Ok(inv) => inv,
            Err(e) => return self.fail(&e),
        };
        for w in &inv.warnings {
            error_line(self.binary, &format!("warning: {w}"));
        }
        match inv.action {
            Action::Help => print(self.binary, &self.usage()),
            Action::Version => print(
                self.binary,
                &format!("{} {}\n", self.binary, env!("CARGO_PKG_VERSION")),
            ),
            Action::Settings => print_json(self.binary, &settings::table_json(self.settings)),
            Action::Routes => routes(&inv),
            Action::Run(c) => run(c, &inv),
        }
    }

    /// A usage or configuration error: one line on stderr,
    /// `<binary>: <what> (try '<binary> --help')`, and exit 2.
    pub fn fail(&self, e: &Error) -> ExitCode {
        error_line(self.binary, &format!("{e} (try '{} --help')", self.binary));
        ExitCode::from(USAGE_EXIT)
    }
}

/// Writes `text` to stdout. A closed stdout (EPIPE) is not an error: whoever read it
/// (`| head`) has what it wanted. Other write errors are returned.
pub fn write_stdout(text: &str) -> io::Result<()> {
    write_stdout_while_open(text).map(|_| ())
}

/// [`write_stdout`] for output that goes on (a follow loop): false once stdout is closed,
/// so the caller stops producing.
pub fn write_stdout_while_open(text: &str) -> io::Result<bool> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}

/// [`write_stdout`] for a command's whole output: exit 0, or 1 with a message when stdout
/// fails for another reason than being closed.
pub fn print(binary: &str, text: &str) -> ExitCode {
    match write_stdout(text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error_line(binary, &format!("cannot write to stdout: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Pretty JSON and a newline through [`print`].
pub fn print_json(binary: &str, v: &Value) -> ExitCode {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".to_string());
    print(binary, &(text + "\n"))
}

/// `<binary>: <message>` on stderr; never panics (a closed stderr is ignored, unlike
/// `eprintln!`).
pub fn error_line(binary: &str, message: &str) {
    let _ = writeln!(io::stderr().lock(), "{binary}: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Cmd {
        Start,
        Config,
    }

    const PORT: Setting = Setting::env("T_PORT")
        .flag("port", "PORT")
        .renamed_from("listen-port")
        .default("4318")
        .help("listen port");
    const DEMO: Setting = Setting::env("T_DEMO").switch("demo").help("demo mode");
    const LOG: Setting = Setting::env("RUST_LOG")
        .default("info")
        .help("log filter")
        .external();

    const CLI: Cli<Cmd> = Cli {
        binary: "baa-test",
        about: "a test binary",
        commands: &[
            Command {
                name: "start",
                help: "run it",
                json: false,
                run: Cmd::Start,
            },
            Command {
                name: "config",
                help: "show it",
                json: true,
                run: Cmd::Config,
            },
        ],
        bare: None,
        settings: &[PORT, DEMO, LOG],
        notes: "See the docs.\n",
    };

    fn parse(args: &[&str]) -> Result<Invocation<Cmd>, Error> {
        CLI.parse(args.iter().map(OsString::from).collect())
    }

    fn usage_err(args: &[&str]) -> String {
        match parse(args) {
            Err(Error::Usage(m)) => m,
            other => panic!("{args:?}: expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn commands_builtins_and_flags() {
        let inv = parse(&["start", "--port", "1", "--demo"]).unwrap();
        assert_eq!(inv.action, Action::Run(Cmd::Start));
        assert_eq!(inv.flags.get("port"), Some("1"));
        assert_eq!(inv.flags.get("demo"), Some("true"));
        let inv = parse(&["--port=2", "config", "--json"]).unwrap();
        assert_eq!((inv.action, inv.json), (Action::Run(Cmd::Config), true));
        assert_eq!(inv.flags.get("port"), Some("2"));
        for (args, want) in [
            (&["help"][..], Action::Help),
            (&["-h"][..], Action::Help),
            (&["start", "--help"][..], Action::Help),
            (&["--version"][..], Action::Version),
            (&["-V"][..], Action::Version),
            (&["settings", "--json"][..], Action::Settings),
            (&["routes", "--json"][..], Action::Routes),
        ] {
            assert_eq!(parse(args).unwrap().action, want, "{args:?}");
        }
    }

    #[test]
    fn usage_errors_say_what_is_wrong() {
        assert_eq!(
            usage_err(&["start", "--bogus", "1"]),
            "unknown flag --bogus"
        );
        assert_eq!(usage_err(&["start", "-x"]), "unknown flag -x");
        assert_eq!(
            usage_err(&["start", "--port"]),
            "--port needs a value (PORT)"
        );
        assert_eq!(
            usage_err(&["run"]),
            "unknown command \"run\" (expected start, config, settings, routes, help)"
        );
        assert_eq!(
            usage_err(&[]),
            "missing command (start, config, settings, routes, help)"
        );
        assert_eq!(
            usage_err(&["start", "extra"]),
            "unexpected argument \"extra\""
        );
        assert_eq!(usage_err(&["start", "--json"]), "start takes no --json");
        // External rows (read elsewhere) are variables only, never flags.
        assert_eq!(
            usage_err(&["start", "--RUST_LOG", "x"]),
            "unknown flag --RUST_LOG"
        );
    }

    /// Issue 20: a flag renamed to give one meaning per name keeps its old spelling,
    /// with a warning.
    #[test]
    fn an_old_flag_name_still_works_and_warns() {
        let inv = parse(&["start", "--listen-port", "7", "--listen-port", "8"]).unwrap();
        assert_eq!(inv.flags.get("port"), Some("8"));
        assert_eq!(
            inv.warnings,
            vec!["--listen-port is now --port".to_string()]
        );
        assert!(parse(&["start", "--port", "7"])
            .unwrap()
            .warnings
            .is_empty());
    }

    #[test]
    fn a_bare_invocation_runs_the_bare_command() {
        let cli = Cli {
            bare: Some(Cmd::Start),
            ..CLI
        };
        let inv = cli.parse(vec![OsString::from("--port"), OsString::from("0")]);
        assert_eq!(inv.unwrap().action, Action::Run(Cmd::Start));
        assert!(cli.usage().contains("baa-test [COMMAND] [FLAGS]"));
    }

    #[test]
    fn usage_is_generated() {
        let text = CLI.usage();
        for want in [
            "USAGE:\n    baa-test <COMMAND> [FLAGS]\n",
            "    start            run it\n",
            "    config [--json]  show it\n",
            "    settings --json  print every setting",
            "    routes [--json]  print the route table",
            "    --port <PORT>",
            "T_PORT (default 4318)",
            "EXIT CODES: 0 ok, 1 runtime failure, 2 usage or configuration error.\nSee the docs.\n",
        ] {
            assert!(text.contains(want), "usage lacks {want:?}:\n{text}");
        }
        assert!(
            text.contains("ENVIRONMENT (no flag):\n    RUST_LOG (default info)\n"),
            "external rows are listed as variables: {text}"
        );
    }
}
