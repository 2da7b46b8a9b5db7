//! The `baa-conductor task …` command line, parsed without a process: argv in, a
//! [`TaskArgs`] out, or a one-line usage error. The usage text is generated from the same
//! tables the parser reads, so help and parser never disagree.

use std::ffi::OsString;

use baa::common::settings::Flags;

use crate::client_target::CONDUCTOR_URL;

/// One `task` subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sub {
    Add(NewTask),
    List {
        status: Option<String>,
        limit: Option<u32>,
    },
    Show {
        id: String,
    },
    Logs {
        id: String,
        follow: bool,
        limit: Option<u32>,
    },
    Cancel {
        id: String,
    },
    Retry {
        id: String,
    },
    Diff {
        id: String,
        max_bytes: Option<u64>,
    },
    Merge {
        id: String,
        into: Option<String>,
    },
    Discard {
        id: String,
    },
}

/// Where `task add` takes its prompt from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    Text(String),
    /// `--prompt -`: read stdin.
    Stdin,
    Steps(Vec<String>),
}

/// `task add`'s flags, as given (the API validates them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub title: String,
    pub prompt: Prompt,
    pub cwd: Option<String>,
    pub model: Option<String>,
    pub priority: Option<i64>,
    pub idempotency_key: Option<String>,
    pub max_attempts: Option<u32>,
    pub timeout_s: Option<u64>,
}

/// What `help` prints, or a subcommand to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Help,
    Run(Sub),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskArgs {
    pub action: Action,
    pub json: bool,
    /// Settings flags (`--conductor-url`), for the resolver.
    pub flags: Flags,
}

/// The subcommands: name, operands, help. The usage text is this table.
pub const SUBCOMMANDS: &[(&str, &str, &str)] = &[
    (
        "add",
        "--title T (--prompt P | --prompt - | --step S ...) [--cwd DIR] [--model M] [--priority N] [--idempotency-key K] [--max-attempts N] [--timeout-s S]",
        "queue a task; one --step per Codex turn, --prompt - reads the prompt from stdin; prints the task id",
    ),
    (
        "list",
        "[--status S] [--limit N]",
        "tasks, newest first: id, status, priority, title, age",
    ),
    ("show", "ID", "one task with its runs and their steps"),
    (
        "logs",
        "ID [--follow] [--limit N]",
        "the task's log, one line per entry; --follow polls until the task finishes (exit 0 if it succeeded, 1 if not)",
    ),
    (
        "cancel",
        "ID",
        "cancel a queued task, or interrupt a running one",
    ),
    ("retry", "ID", "queue a failed or canceled task again"),
    (
        "diff",
        "ID [--max-bytes N]",
        "what a worktree task changed: the diff of its branch against its base on stdout (before a result, its worktree's uncommitted diff), the stat on stderr",
    ),
    (
        "merge",
        "ID [--into BRANCH]",
        "merge a succeeded task's branch into BRANCH (default: the branch its base came from); needs BAA_SHARED_TOKEN or BAA_SHARED_TOKEN_FILE",
    ),
    (
        "discard",
        "ID",
        "remove a finished task's worktree and branch; needs BAA_SHARED_TOKEN or BAA_SHARED_TOKEN_FILE",
    ),
];

/// Value flags per subcommand (switches are `--json`, `--follow`, `--help`).
fn value_flags(sub: &str) -> &'static [&'static str] {
    match sub {
        "add" => &[
            "title",
            "prompt",
            "step",
            "cwd",
            "model",
            "priority",
            "idempotency-key",
            "max-attempts",
            "timeout-s",
        ],
        "list" => &["status", "limit"],
        "logs" => &["limit"],
        "diff" => &["max-bytes"],
        "merge" => &["into"],
        _ => &[],
    }
}

pub fn usage(binary: &str) -> String {
    let mut out = format!(
        "{binary} task: talk to a running conductor's task queue (worker mode).\n\nUSAGE:\n    {binary} task <SUBCOMMAND> [ID] [FLAGS] [--json] [--conductor-url URL]\n\nSUBCOMMANDS:\n"
    );
    for (name, operands, help) in SUBCOMMANDS {
        out.push_str(&format!("    {name} {operands}\n        {help}\n"));
    }
    out.push_str(&format!(
        "\nFLAGS:\n    --json                   print the API's JSON answer as received (logs --follow: one JSON line per entry)\n    --conductor-url <URL>    {}\n{}\nEXIT CODES: 0 ok, 1 the API refused (its code and message on stderr) or is unreachable, 2 usage error.\nMore: docs/tasks.md.\n",
        CONDUCTOR_URL.help,
        crate::client_target::WHERE
    ));
    out
}

/// A command line that cannot be run as given (exit 2), in the words printed.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for UsageError {
    fn from(s: String) -> Self {
        UsageError(s)
    }
}

impl From<&str> for UsageError {
    fn from(s: &str) -> Self {
        UsageError(s.to_string())
    }
}

/// Parses the arguments after `task`.
pub fn parse(args: Vec<OsString>) -> Result<TaskArgs, UsageError> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut sub: Option<String> = None;
    let mut id: Option<String> = None;
    let (mut help, mut json, mut follow) = (false, false, false);
    let mut flags = Flags::default();
    let mut values: Vec<(String, String)> = Vec::new();
    while let Some(arg) = p.next().map_err(|e| UsageError(e.to_string()))? {
        match arg {
            Short('h') | Long("help") => help = true,
            Long("json") => json = true,
            Long("follow") | Short('f') => follow = true,
            Long("conductor-url") => {
                flags.set("conductor-url", value(&mut p, "conductor-url", "URL")?);
            }
            Long(name) => {
                let name = name.to_string();
                let Some(flag) = sub
                    .as_deref()
                    .and_then(|s| value_flags(s).iter().find(|f| **f == name))
                else {
                    return Err(UsageError(match &sub {
                        Some(s) => format!("task {s}: unknown flag --{name}"),
                        None => format!("unknown flag --{name}"),
                    }));
                };
                let v = value(&mut p, flag, "VALUE")?;
                values.push((name, v));
            }
            Short(c) => return Err(format!("unknown flag -{c}").into()),
            Value(v) if sub.is_none() => sub = Some(v.to_string_lossy().into_owned()),
            Value(v) if id.is_none() => id = Some(v.to_string_lossy().into_owned()),
            Value(v) => return Err(format!("unexpected argument {:?}", v.to_string_lossy()).into()),
        }
    }
    if help || sub.as_deref() == Some("help") {
        return Ok(TaskArgs {
            action: Action::Help,
            json,
            flags,
        });
    }
    let Some(name) = sub else {
        return Err(format!("missing subcommand ({})", names()).into());
    };
    if !SUBCOMMANDS.iter().any(|(n, _, _)| *n == name) {
        return Err(format!("unknown subcommand {name:?} (expected {})", names()).into());
    }
    if follow && name != "logs" {
        return Err(format!("task {name} takes no --follow").into());
    }
    let take_id = |id: Option<String>| {
        id.filter(|s| !s.is_empty())
            .ok_or_else(|| UsageError(format!("task {name} needs a task ID")))
    };
    let sub = match name.as_str() {
        "add" => {
            if let Some(extra) = id {
                return Err(format!("unexpected argument {extra:?}").into());
            }
            Sub::Add(new_task(values)?)
        }
        "list" => {
            if let Some(extra) = id {
                return Err(format!("unexpected argument {extra:?}").into());
            }
            let mut status = None;
            let mut limit = None;
            for (k, v) in values {
                match k.as_str() {
                    "status" => status = Some(v),
                    _ => limit = Some(number(&k, &v)?),
                }
            }
            Sub::List { status, limit }
        }
        "logs" => {
            let mut limit = None;
            for (k, v) in values {
                limit = Some(number(&k, &v)?);
            }
            Sub::Logs {
                id: take_id(id)?,
                follow,
                limit,
            }
        }
        "show" => Sub::Show { id: take_id(id)? },
        "cancel" => Sub::Cancel { id: take_id(id)? },
        "diff" => {
            let mut max_bytes = None;
            for (k, v) in values {
                max_bytes = Some(number(&k, &v)?);
            }
            Sub::Diff {
                id: take_id(id)?,
                max_bytes,
            }
        }
        "merge" => Sub::Merge {
            id: take_id(id)?,
            into: values.into_iter().map(|(_, v)| v).next_back(),
        },
        "discard" => Sub::Discard { id: take_id(id)? },
        _ => Sub::Retry { id: take_id(id)? },
    };
    Ok(TaskArgs {
        action: Action::Run(sub),
        json,
        flags,
    })
}

fn names() -> String {
    let names: Vec<&str> = SUBCOMMANDS.iter().map(|(n, _, _)| *n).collect();
    names.join(", ")
}

fn value(p: &mut lexopt::Parser, flag: &str, what: &str) -> Result<String, UsageError> {
    p.value()
        .map_err(|_| UsageError(format!("--{flag} needs a value ({what})")))?
        .into_string()
        .map_err(|_| UsageError(format!("--{flag}: the value is not valid UTF-8")))
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, UsageError> {
    v.trim()
        .parse()
        .map_err(|_| UsageError(format!("--{flag} must be a number, got {v:?}")))
}

fn new_task(values: Vec<(String, String)>) -> Result<NewTask, UsageError> {
    let mut title = None;
    let mut prompt = None;
    let mut steps = Vec::new();
    let mut t = NewTask {
        title: String::new(),
        prompt: Prompt::Steps(Vec::new()),
        cwd: None,
        model: None,
        priority: None,
        idempotency_key: None,
        max_attempts: None,
        timeout_s: None,
    };
    for (k, v) in values {
        match k.as_str() {
            "title" => title = Some(v),
            "prompt" => prompt = Some(v),
            "step" => steps.push(v),
            "cwd" => t.cwd = Some(v),
            "model" => t.model = Some(v),
            "priority" => t.priority = Some(number(&k, &v)?),
            "idempotency-key" => t.idempotency_key = Some(v),
            "max-attempts" => t.max_attempts = Some(number(&k, &v)?),
            _ => t.timeout_s = Some(number(&k, &v)?),
        }
    }
    t.title = title.ok_or("task add needs --title")?;
    t.prompt = match (prompt, steps.is_empty()) {
        (Some(_), false) => return Err("task add takes --prompt or --step, not both".into()),
        (Some(p), true) if p == "-" => Prompt::Stdin,
        (Some(p), true) => Prompt::Text(p),
        (None, false) => Prompt::Steps(steps),
        (None, true) => return Err("task add needs --prompt (or - for stdin) or --step".into()),
    };
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<TaskArgs, UsageError> {
        parse(args.iter().map(OsString::from).collect())
    }

    fn run(args: &[&str]) -> Sub {
        match parse_strs(args) {
            Ok(TaskArgs {
                action: Action::Run(s),
                ..
            }) => s,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn add_takes_steps_in_order_and_numbers() {
        let Sub::Add(t) = run(&[
            "add",
            "--title",
            "t",
            "--step",
            "one",
            "--step",
            "two",
            "--priority",
            "-3",
            "--max-attempts",
            "2",
            "--timeout-s",
            "60",
            "--cwd",
            "/tmp",
        ]) else {
            panic!()
        };
        assert_eq!(t.prompt, Prompt::Steps(vec!["one".into(), "two".into()]));
        assert_eq!(
            (t.priority, t.max_attempts, t.timeout_s, t.cwd.as_deref()),
            (Some(-3), Some(2), Some(60), Some("/tmp"))
        );
        let Sub::Add(t) = run(&["add", "--title", "t", "--prompt", "-"]) else {
            panic!()
        };
        assert_eq!(t.prompt, Prompt::Stdin);
    }

    #[test]
    fn ids_flags_and_json() {
        assert_eq!(
            run(&["logs", "t1", "--follow"]),
            Sub::Logs {
                id: "t1".into(),
                follow: true,
                limit: None
            }
        );
        let a = parse_strs(&["--json", "show", "t1", "--conductor-url", "http://x:1"]).unwrap();
        assert!(a.json);
        assert_eq!(a.flags.get("conductor-url"), Some("http://x:1"));
        assert_eq!(parse_strs(&["help"]).unwrap().action, Action::Help);
        assert_eq!(
            run(&["merge", "t1", "--into", "release"]),
            Sub::Merge {
                id: "t1".into(),
                into: Some("release".into())
            }
        );
        assert_eq!(
            run(&["diff", "t1", "--max-bytes", "100"]),
            Sub::Diff {
                id: "t1".into(),
                max_bytes: Some(100)
            }
        );
        assert_eq!(run(&["discard", "t1"]), Sub::Discard { id: "t1".into() });
        assert_eq!(parse_strs(&["add", "--help"]).unwrap().action, Action::Help);
    }

    #[test]
    fn usage_errors_say_what_is_wrong() {
        for (args, want) in [
            (
                &[][..],
                "missing subcommand (add, list, show, logs, cancel, retry, diff, merge, discard)",
            ),
            (
                &["frob"][..],
                "unknown subcommand \"frob\" (expected add, list, show, logs, cancel, retry, diff, merge, discard)",
            ),
            (&["show"][..], "task show needs a task ID"),
            (&["show", "a", "b"][..], "unexpected argument \"b\""),
            (&["add", "--prompt", "p"][..], "task add needs --title"),
            (
                &["add", "--title", "t"][..],
                "task add needs --prompt (or - for stdin) or --step",
            ),
            (
                &["add", "--title", "t", "--prompt", "p", "--step", "s"][..],
                "task add takes --prompt or --step, not both",
            ),
            (
                &["add", "--title", "t", "--prompt", "p", "--priority", "high"][..],
                "--priority must be a number, got \"high\"",
            ),
            (
                &["list", "--bogus", "1"][..],
                "task list: unknown flag --bogus",
            ),
            (
                &["show", "t", "--limit", "1"][..],
                "task show: unknown flag --limit",
            ),
            (
                &["cancel", "t", "--follow"][..],
                "task cancel takes no --follow",
            ),
            (&["list", "--limit"][..], "--limit needs a value (VALUE)"),
            (&["merge"][..], "task merge needs a task ID"),
            (
                &["diff", "t", "--max-bytes", "lots"][..],
                "--max-bytes must be a number, got \"lots\"",
            ),
            (
                &["discard", "t", "--into", "main"][..],
                "task discard: unknown flag --into",
            ),
        ] {
            assert_eq!(parse_strs(args).unwrap_err().0, want, "{args:?}");
        }
    }

    #[test]
    fn usage_lists_every_subcommand() {
        let text = usage("baa-conductor");
        for (name, _, _) in SUBCOMMANDS {
            assert!(
                text.contains(&format!("\n    {name} ")),
                "{name} missing:\n{text}"
            );
        }
    }
}
