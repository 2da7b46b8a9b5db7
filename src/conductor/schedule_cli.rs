//! `baa-conductor schedule add|list|show|enable|disable|rm`: a client of a running
//! conductor's schedule routes (`/v1/schedules*`), built like `task` (same settings, same
//! exit codes, `--json` prints the API's answer as received). The writes send the bearer
//! token from `BAA_SHARED_TOKEN` or `BAA_SHARED_TOKEN_FILE` (else node.env's; see
//! `client_target`).

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Map, Value};

use baa::common::cli::{self, USAGE_EXIT};
use baa::common::client::encode_component;
use baa::common::settings::Flags;

use crate::client_target;
use crate::task_cli::{self, Api, CliError};

const BINARY: &str = "baa-conductor";
const TOTAL: Duration = Duration::from_secs(10);

/// name, operands, help: the usage text is this table.
const SUBCOMMANDS: &[(&str, &str, &str)] = &[
    (
        "add",
        "--name N --cron EXPR --title T --prompt P [--timezone TZ] [--cwd DIR] [--overlap skip|buffer_one|allow] [--catchup-window-s S] [--disabled]",
        "create a schedule that queues that task at each fire; prints its id and next fire",
    ),
    ("list", "", "schedules: id, on/off, cron, zone, next fire, last outcome, counts, name"),
    ("show", "ID", "one schedule with its last fire and counts"),
    ("enable", "ID", "fire again, from the next fire after now"),
    ("disable", "ID", "stop firing (the schedule stays)"),
    ("rm", "ID", "delete the schedule (its tasks stay)"),
];

const ADD_FLAGS: &[&str] = &[
    "name",
    "cron",
    "title",
    "prompt",
    "timezone",
    "cwd",
    "overlap",
    "catchup-window-s",
];

fn usage() -> String {
    let mut out = format!(
        "{BINARY} schedule: manage a running conductor's schedules (cron-timed tasks).\n\nUSAGE:\n    {BINARY} schedule <SUBCOMMAND> [ID] [FLAGS] [--json] [--conductor-url URL]\n\nSUBCOMMANDS:\n"
    );
    for (name, operands, help) in SUBCOMMANDS {
        out.push_str(&format!("    {name} {operands}\n        {help}\n"));
    }
    out.push_str(crate::client_target::WHERE);
    out.push_str("\nadd, enable, disable and rm need BAA_SHARED_TOKEN or BAA_SHARED_TOKEN_FILE.\nEXIT CODES: 0 ok, 1 the API refused or is unreachable, 2 usage error.\nMore: docs/tasks.md#schedules.\n");
    out
}

/// One parsed command line.
#[derive(Debug, PartialEq)]
struct Args {
    help: bool,
    json: bool,
    sub: String,
    id: Option<String>,
    values: Vec<(String, String)>,
    disabled: bool,
    flags: Flags,
}

fn parse(args: Vec<OsString>) -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut a = Args {
        help: false,
        json: false,
        sub: String::new(),
        id: None,
        values: Vec::new(),
        disabled: false,
        flags: Flags::default(),
    };
    let value = |p: &mut lexopt::Parser, flag: &str| -> Result<String, String> {
        p.value()
            .map_err(|_| format!("--{flag} needs a value"))?
            .into_string()
            .map_err(|_| format!("--{flag}: the value is not valid UTF-8"))
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => a.help = true,
            Long("json") => a.json = true,
            Long("disabled") if a.sub == "add" => a.disabled = true,
            Long("conductor-url") => {
                let v = value(&mut p, "conductor-url")?;
                a.flags.set("conductor-url", v);
            }
            Long(name) if a.sub == "add" && ADD_FLAGS.contains(&name) => {
                let name = name.to_string();
                let v = value(&mut p, &name)?;
                a.values.push((name, v));
            }
            Long(name) => return Err(format!("unknown flag --{name}")),
            Short(c) => return Err(format!("unknown flag -{c}")),
            Value(v) if a.sub.is_empty() => a.sub = v.to_string_lossy().into_owned(),
            Value(v) if a.id.is_none() => a.id = Some(v.to_string_lossy().into_owned()),
            Value(v) => return Err(format!("unexpected argument {:?}", v.to_string_lossy())),
        }
    }
    if a.help || a.sub == "help" {
        a.help = true;
        return Ok(a);
    }
    let names: Vec<&str> = SUBCOMMANDS.iter().map(|(n, _, _)| *n).collect();
    if a.sub.is_empty() {
        return Err(format!("missing subcommand ({})", names.join(", ")));
    }
    if !names.contains(&a.sub.as_str()) {
        return Err(format!(
            "unknown subcommand {:?} (expected {})",
            a.sub,
            names.join(", ")
        ));
    }
    let needs_id = !matches!(a.sub.as_str(), "add" | "list");
    match (&a.id, needs_id) {
        (None, true) => return Err(format!("schedule {} needs a schedule ID", a.sub)),
        (Some(extra), false) => return Err(format!("unexpected argument {extra:?}")),
        _ => {}
    }
    Ok(a)
}

/// The create body from `add`'s flags (the API checks every value).
fn add_body(values: &[(String, String)], disabled: bool) -> Result<Value, String> {
    let get = |k: &str| {
        values
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let need = |k: &str| get(k).ok_or_else(|| format!("schedule add needs --{k}"));
    let mut task = Map::new();
    task.insert("title".into(), json!(need("title")?));
    task.insert("prompt".into(), json!(need("prompt")?));
    if let Some(cwd) = get("cwd") {
        task.insert("cwd".into(), json!(cwd));
    }
    let mut body = json!({"name": need("name")?, "cron": need("cron")?, "task": task});
    if let Some(tz) = get("timezone") {
        body["timezone"] = json!(tz);
    }
    if let Some(o) = get("overlap") {
        body["overlap"] = json!(o);
    }
    if let Some(w) = get("catchup-window-s") {
        let n: u64 = w
            .trim()
            .parse()
            .map_err(|_| format!("--catchup-window-s must be a number, got {w:?}"))?;
        body["catchup_window_s"] = json!(n);
    }
    if disabled {
        body["enabled"] = json!(false);
    }
    Ok(body)
}

fn usage_error(message: &str) -> ExitCode {
    cli::error_line(
        BINARY,
        &format!("{message} (try '{BINARY} schedule --help')"),
    );
    ExitCode::from(USAGE_EXIT)
}

/// Runs `baa-conductor schedule <args>` (the words after `schedule`).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let a = match parse(args) {
        Ok(a) => a,
        Err(e) => return usage_error(&e),
    };
    if a.help {
        return cli::print(BINARY, &usage());
    }
    let writes = !matches!(a.sub.as_str(), "list" | "show");
    let (target, token) = match client_target::for_this_process(BINARY, &a.flags, writes) {
        Ok(t) => t,
        Err(e) => return usage_error(&e.to_string()),
    };
    let api = Api {
        base: target.base,
        from: target.from,
        token,
    };
    let one = |id: &str| format!("/v1/schedules/{}", encode_component(id));
    let id = a.id.clone().unwrap_or_default();
    let result: Result<ExitCode, CliError> = match a.sub.as_str() {
        "add" => match add_body(&a.values, a.disabled) {
            Ok(body) => api
                .send_auth("POST", "/v1/schedules", Some(&body), TOTAL)
                .map(|ans| task_cli::output(&ans, a.json, |d| line(&d["schedule"]))),
            Err(e) => return usage_error(&e),
        },
        "list" => api
            .get("/v1/schedules", TOTAL)
            .map(|ans| task_cli::output(&ans, a.json, list)),
        "show" => api
            .get(&one(&id), TOTAL)
            .map(|ans| task_cli::output(&ans, a.json, |d| show(&d["schedule"]))),
        "enable" | "disable" => api
            .send_auth(
                "PATCH",
                &one(&id),
                Some(&json!({"enabled": a.sub == "enable"})),
                TOTAL,
            )
            .map(|ans| task_cli::output(&ans, a.json, |d| line(&d["schedule"]))),
        _ => api
            .send_auth("DELETE", &one(&id), None, TOTAL)
            .map(|ans| task_cli::output(&ans, a.json, |_| format!("{id} deleted\n"))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            cli::error_line(BINARY, &e.to_string());
            ExitCode::FAILURE
        }
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// `ID on|off next <time>`.
fn line(s: &Value) -> String {
    format!(
        "{} {} next {}\n",
        text(&s["schedule_id"]),
        if s["enabled"] == true { "on" } else { "off" },
        text(&s["next_fire_at"])
    )
}

fn counts(s: &Value) -> String {
    let c = &s["counts"];
    format!(
        "fired {} caught_up {} skipped {} failed {}",
        c["fired"], c["caught_up"], c["skipped"], c["failed"]
    )
}

fn list(d: &Value) -> String {
    let mut out = String::new();
    for s in d["schedules"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{}  {}  {:<15}  {}  next {}  last {}  {}  {}\n",
            text(&s["schedule_id"]),
            if s["enabled"] == true { "on " } else { "off" },
            text(&s["cron"]),
            text(&s["timezone"]),
            text(&s["next_fire_at"]),
            text(&s["last_fire"]["outcome"]),
            counts(s),
            text(&s["name"]),
        ));
    }
    if out.is_empty() {
        out.push_str("no schedules\n");
    }
    out
}

fn show(s: &Value) -> String {
    let l = &s["last_fire"];
    format!(
        "{}  {}\n  cron {} in {}, overlap {}, catch-up window {} s, {}\n  next fire {}\n  last fire {} {} task {} ({})\n  {}\n  task {}\n",
        text(&s["schedule_id"]),
        text(&s["name"]),
        text(&s["cron"]),
        text(&s["timezone"]),
        text(&s["overlap"]),
        s["catchup_window_s"],
        if s["enabled"] == true { "enabled" } else { "disabled" },
        text(&s["next_fire_at"]),
        text(&l["at"]),
        text(&l["outcome"]),
        text(&l["task_id"]),
        text(&l["task_status"]),
        counts(s),
        s["task"],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Result<Args, String> {
        parse(words.iter().map(OsString::from).collect())
    }

    #[test]
    fn add_builds_the_create_body_and_bad_lines_are_usage_errors() {
        let a = args(&[
            "add",
            "--name",
            "n",
            "--cron",
            "0 3 * * *",
            "--title",
            "t",
            "--prompt",
            "p",
            "--timezone",
            "UTC",
            "--overlap",
            "allow",
            "--catchup-window-s",
            "60",
            "--disabled",
        ])
        .unwrap();
        let body = add_body(&a.values, a.disabled).unwrap();
        assert_eq!(
            body,
            json!({"name": "n", "cron": "0 3 * * *", "timezone": "UTC", "overlap": "allow",
                   "catchup_window_s": 60, "enabled": false, "task": {"title": "t", "prompt": "p"}})
        );
        assert!(
            add_body(&args(&["add", "--name", "n"]).unwrap().values, false)
                .unwrap_err()
                .contains("needs --title")
        );
        assert!(args(&["show"]).unwrap_err().contains("needs a schedule ID"));
        assert!(args(&["list", "x"]).unwrap_err().contains("unexpected"));
        assert!(args(&["list", "--cron", "x"])
            .unwrap_err()
            .contains("unknown flag"));
        assert!(args(&["fire"]).unwrap_err().contains("unknown subcommand"));
        assert!(args(&["rm", "sched_1"]).is_ok());
    }
}
