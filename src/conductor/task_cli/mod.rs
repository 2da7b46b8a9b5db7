//! `baa-conductor task add|list|show|logs|cancel|retry|diff|merge|discard`: a client of a running
//! conductor's task routes (`/v1/tasks*`), for an operator at a shell and for scripts
//! (`--json` prints the API's answer as received). It starts nothing and reads no state
//! file: everything goes through the local API, so it sees what the daemon sees.
//!
//! Same shape as the other commands: a usage error is one line with a hint and exit 2; an
//! API refusal prints its `error` code and message and exits 1; a closed stdout
//! (`task list | head -3`) ends quietly. Every request has a total timeout.

mod args;
mod held;
mod render;

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Map, Value};

use baa::common::cli::{self, USAGE_EXIT};
use baa::common::client::{encode_component, local_agent};
use baa::common::time::now_ms;

use crate::client_target::{self, UrlSource};
use args::{Action, NewTask, Prompt, Sub};

const BINARY: &str = "baa-conductor";
const CONNECT: Duration = Duration::from_secs(2);
/// Total time of one request. Cancel waits up to 10 s server-side for a running turn to
/// stop, so it gets longer.
const TOTAL: Duration = Duration::from_secs(10);
const CANCEL_TOTAL: Duration = Duration::from_secs(20);
/// A merge or discard runs git server-side (each call up to 120 s on a huge repo).
const MERGE_TOTAL: Duration = Duration::from_secs(300);
/// `logs --follow`: time between polls, and per poll.
const POLL_EVERY: Duration = Duration::from_millis(500);
const POLL_TOTAL: Duration = Duration::from_secs(5);
/// Polls in a row that may fail (a conductor restarting) before `--follow` gives up.
const POLL_FAILURES: u32 = 20;
/// The API refuses bodies over 1 MiB; a prompt read from stdin stops just past it.
const STDIN_CAP: u64 = 1024 * 1024;
/// Entries per `--follow` poll (the route's maximum).
const FOLLOW_PAGE: u32 = 500;

/// Runs `baa-conductor task <args>` (the words after `task`).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let a = match args::parse(args) {
        Ok(a) => a,
        Err(e) => return usage_error(&e.0),
    };
    let sub = match a.action {
        Action::Help => return cli::print(BINARY, &args::usage(BINARY)),
        Action::Run(sub) => sub,
    };
    // Only the commands that change the repo read the token (a bad token file does not
    // stop a `list`).
    let writes = matches!(&sub, Sub::Merge { .. } | Sub::Discard { .. });
    let (target, token) = match client_target::for_this_process(BINARY, &a.flags, writes) {
        Ok(t) => t,
        Err(e) => return usage_error(&e.to_string()),
    };
    let api = Api {
        base: target.base,
        from: target.from,
        token,
    };
    let result = match sub {
        Sub::Add(t) => add(&api, t, a.json),
        Sub::List { status, limit } => {
            let mut q = Vec::new();
            if let Some(s) = status {
                q.push(format!("status={}", encode_component(&s)));
            }
            if let Some(n) = limit {
                q.push(format!("limit={n}"));
            }
            let path = format!("/v1/tasks?{}", q.join("&"));
            api.get(&path, TOTAL)
                .map(|ans| output(&ans, a.json, |d| render::list(d, now_ms())))
        }
        Sub::Show { id } => api
            .get(&format!("/v1/tasks/{}", encode_component(&id)), TOTAL)
            .map(|ans| {
                let why = if a.json {
                    Vec::new()
                } else {
                    why_queued(&api, ans.data())
                };
                output(&ans, a.json, |d| render::show(d, now_ms(), &why))
            }),
        Sub::Logs { id, follow, limit } if follow => follow_logs(&api, &id, limit, a.json),
        Sub::Logs { id, limit, .. } => {
            let q = limit.map_or(String::new(), |n| format!("?limit={n}"));
            api.get(
                &format!("/v1/tasks/{}/logs{q}", encode_component(&id)),
                TOTAL,
            )
            .map(|ans| output(&ans, a.json, log_lines))
        }
        Sub::Cancel { id } => api
            .post(
                &format!("/v1/tasks/{}/cancel", encode_component(&id)),
                &json!({}),
                CANCEL_TOTAL,
            )
            .map(|ans| output(&ans, a.json, |d| status_line(d, "cancel"))),
        Sub::Retry { id } => api
            .post(
                &format!("/v1/tasks/{}/retry", encode_component(&id)),
                &json!({}),
                TOTAL,
            )
            .map(|ans| output(&ans, a.json, render::retried)),
        Sub::Diff { id, max_bytes } => {
            let q = max_bytes.map_or(String::new(), |n| format!("?max_bytes={n}"));
            api.get(
                &format!("/v1/tasks/{}/diff{q}", encode_component(&id)),
                TOTAL,
            )
            .map(|ans| {
                if !a.json {
                    cli::error_line(BINARY, &render::diff_summary(ans.data()));
                }
                output(&ans, a.json, |d| {
                    d["diff"].as_str().unwrap_or_default().to_string()
                })
            })
        }
        Sub::Merge { id, into } => {
            let body = into.map_or(json!({}), |b| json!({ "into": b }));
            api.post_auth(
                &format!("/v1/tasks/{}/merge", encode_component(&id)),
                &body,
                MERGE_TOTAL,
            )
            .map(|ans| output(&ans, a.json, render::merged))
        }
        Sub::Discard { id } => api
            .post_auth(
                &format!("/v1/tasks/{}/discard", encode_component(&id)),
                &json!({}),
                MERGE_TOTAL,
            )
            .map(|ans| output(&ans, a.json, render::discarded)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            cli::error_line(BINARY, &e.to_string());
            ExitCode::FAILURE
        }
    }
}

/// `task show`'s `held` lines for a queued task, from the system state and `/v1/runtime`
/// (a second and third request, made only for a queued task); what cannot be read is
/// said as such.
fn why_queued(api: &Api, data: &Value) -> Vec<String> {
    if data["task"]["status"] != "queued" {
        return Vec::new();
    }
    let read = |path: &str| match api.get(path, TOTAL) {
        Ok(ans) => Ok(ans.data().clone()),
        Err(e) => Err(format!("cannot read {path}: {e}")),
    };
    match (read("/v1/system/state"), read("/v1/runtime")) {
        (Ok(state), Ok(runtime)) => held::why_queued(&data["task"], &state, &runtime, now_ms()),
        (Err(e), _) | (_, Err(e)) => vec![e],
    }
}

/// Why a command failed (exit 1), in the words printed.
#[derive(Debug)]
pub(crate) enum CliError {
    /// No answer from the conductor at `base` (taken `from` a flag, a variable, node.env).
    Unreachable {
        base: String,
        from: UrlSource,
        cause: String,
    },
    /// The answer's body could not be read.
    Read {
        url: String,
        cause: String,
    },
    /// The answer is not the API's JSON envelope.
    NotJson {
        url: String,
        status: u16,
        start: String,
    },
    /// The API refused: its code and message.
    Refused {
        code: String,
        message: String,
        status: u16,
        /// The API's `details.hint`: what to do (e.g. how to check codexd).
        hint: Option<String>,
    },
    /// Merge or discard without a token to send.
    NoToken,
    Stdin(io::Error),
    StdinTooBig,
    Stdout(io::Error),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Unreachable { base, from, cause } => write!(
                f,
                "cannot reach the conductor at {base} ({from}): {cause} (is it running? set --conductor-url or BAA_CONDUCTOR_LOCAL_API)"
            ),
            CliError::Read { url, cause } => write!(f, "reading the answer of {url}: {cause}"),
            CliError::NotJson { url, status, start } => {
                write!(f, "{url} answered HTTP {status} with no JSON envelope: {start}")
            }
            CliError::Refused {
                code,
                message,
                status,
                hint,
            } => {
                write!(f, "{code}: {message} (HTTP {status})")?;
                match hint {
                    Some(h) => write!(f, "; {h}"),
                    None => Ok(()),
                }
            }
            CliError::NoToken => write!(
                f,
                "this command needs the bearer token: set BAA_SHARED_TOKEN_FILE (or BAA_SHARED_TOKEN), or install the node (its node.env names the token file)"
            ),
            CliError::Stdin(e) => write!(f, "reading the prompt from stdin: {e}"),
            CliError::StdinTooBig => write!(
                f,
                "the prompt on stdin is over {STDIN_CAP} bytes (the API's body limit)"
            ),
            CliError::Stdout(e) => write!(f, "cannot write to stdout: {e}"),
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    cli::error_line(BINARY, &format!("{message} (try '{BINARY} task --help')"));
    ExitCode::from(USAGE_EXIT)
}

/// An answer of the API: its raw text (what `--json` prints) and the parsed envelope.
pub(crate) struct Answer {
    text: String,
    envelope: Value,
}

impl Answer {
    pub(crate) fn data(&self) -> &Value {
        &self.envelope["data"]
    }
}

pub(crate) struct Api {
    pub(crate) base: String,
    /// Where `base` came from, for "cannot reach".
    pub(crate) from: UrlSource,
    /// Sent only by [`Api::post_auth`] and [`Api::send_auth`].
    pub(crate) token: Option<String>,
}

impl Api {
    pub(crate) fn get(&self, path: &str, total: Duration) -> Result<Answer, CliError> {
        let url = format!("{}{path}", self.base);
        self.answer(&url, local_agent(CONNECT, total).get(&url).call())
    }

    fn post(&self, path: &str, body: &Value, total: Duration) -> Result<Answer, CliError> {
        let url = format!("{}{path}", self.base);
        let sent = local_agent(CONNECT, total)
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.to_string());
        self.answer(&url, sent)
    }

    /// A POST with `Authorization: Bearer <token>`.
    fn post_auth(&self, path: &str, body: &Value, total: Duration) -> Result<Answer, CliError> {
        let token = self.token.as_deref().ok_or(CliError::NoToken)?;
        let url = format!("{}{path}", self.base);
        let sent = local_agent(CONNECT, total)
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Authorization", &format!("Bearer {token}"))
            .send(body.to_string());
        self.answer(&url, sent)
    }

    /// `method` (POST, PATCH, DELETE) with `Authorization: Bearer <token>` and a JSON
    /// body (none for a DELETE).
    pub(crate) fn send_auth(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        total: Duration,
    ) -> Result<Answer, CliError> {
        let token = self.token.as_deref().ok_or(CliError::NoToken)?;
        let url = format!("{}{path}", self.base);
        let agent = local_agent(CONNECT, total);
        let auth = format!("Bearer {token}");
        let text = body.map(Value::to_string).unwrap_or_default();
        let sent = match method {
            "PATCH" => agent
                .patch(&url)
                .header("Content-Type", "application/json")
                .header("Authorization", &auth)
                .send(text),
            "DELETE" => agent.delete(&url).header("Authorization", &auth).call(),
            _ => agent
                .post(&url)
                .header("Content-Type", "application/json")
                .header("Authorization", &auth)
                .send(text),
        };
        self.answer(&url, sent)
    }

    /// A success envelope, or the API's refusal as `<code>: <message>` (exit 1).
    fn answer(
        &self,
        url: &str,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer, CliError> {
        let mut resp = sent.map_err(|e| CliError::Unreachable {
            base: self.base.clone(),
            from: self.from.clone(),
            cause: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| CliError::Read {
                url: url.to_string(),
                cause: e.to_string(),
            })?;
        let envelope: Value = serde_json::from_str(&text).map_err(|_| CliError::NotJson {
            url: url.to_string(),
            status,
            start: render::cut(&text, 200),
        })?;
        if envelope["ok"] == true {
            return Ok(Answer { text, envelope });
        }
        Err(CliError::Refused {
            code: envelope["error"].as_str().unwrap_or("error").to_string(),
            message: envelope["message"]
                .as_str()
                .unwrap_or("no message")
                .to_string(),
            status,
            hint: envelope["details"]["hint"].as_str().map(str::to_string),
        })
    }
}

/// Prints the raw answer (`--json`) or its readable form.
pub(crate) fn output(ans: &Answer, json: bool, human: impl FnOnce(&Value) -> String) -> ExitCode {
    if json {
        let mut text = ans.text.clone();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        return cli::print(BINARY, &text);
    }
    cli::print(BINARY, &human(ans.data()))
}

fn log_lines(data: &Value) -> String {
    data["logs"]
        .as_array()
        .map(|ls| ls.iter().map(render::log_line).collect())
        .unwrap_or_default()
}

fn status_line(data: &Value, what: &str) -> String {
    let t = &data["task"];
    format!(
        "{} {}: {}\n",
        t["task_id"].as_str().unwrap_or("-"),
        what,
        t["status"].as_str().unwrap_or("-")
    )
}

/// The `POST /v1/tasks` body from `task add`'s flags; only given fields are sent, so the
/// API's defaults apply to the rest.
fn body(t: NewTask, stdin: &mut dyn Read) -> Result<Value, CliError> {
    let mut b = Map::new();
    b.insert("title".into(), json!(t.title));
    match t.prompt {
        Prompt::Text(p) => {
            b.insert("prompt".into(), json!(p));
        }
        Prompt::Stdin => {
            let mut p = String::new();
            stdin
                .take(STDIN_CAP + 1)
                .read_to_string(&mut p)
                .map_err(CliError::Stdin)?;
            if p.len() as u64 > STDIN_CAP {
                return Err(CliError::StdinTooBig);
            }
            b.insert("prompt".into(), json!(p));
        }
        Prompt::Steps(steps) => {
            let steps: Vec<Value> = steps.into_iter().map(|p| json!({"prompt": p})).collect();
            b.insert("steps".into(), Value::Array(steps));
        }
    }
    let mut opt = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            b.insert(k.into(), v);
        }
    };
    opt("cwd", t.cwd.map(Value::from));
    opt("model", t.model.map(Value::from));
    opt("priority", t.priority.map(Value::from));
    opt("idempotency_key", t.idempotency_key.map(Value::from));
    opt("max_attempts", t.max_attempts.map(Value::from));
    opt("timeout_s", t.timeout_s.map(Value::from));
    Ok(Value::Object(b))
}

fn add(api: &Api, t: NewTask, json: bool) -> Result<ExitCode, CliError> {
    let body = body(t, &mut io::stdin().lock())?;
    let ans = api.post("/v1/tasks", &body, TOTAL)?;
    Ok(output(&ans, json, |d| {
        let id = d["task"]["task_id"].as_str().unwrap_or("-");
        if d["created"] == true {
            format!("{id}\n")
        } else {
            // An idempotency replay: say so on stderr, keep stdout the id for scripts.
            cli::error_line(
                BINARY,
                &format!("task {id} already exists for this idempotency key; not queued again"),
            );
            format!("{id}\n")
        }
    }))
}

/// `logs --follow`: prints entries as they come (`?since=<seq>`) until the task is
/// finished, then exits 0 if it succeeded and 1 if not. A closed stdout ends it quietly.
fn follow_logs(api: &Api, id: &str, limit: Option<u32>, json: bool) -> Result<ExitCode, CliError> {
    let logs_path = |since: Option<u64>| {
        let page = since.map_or(limit.unwrap_or(200), |_| FOLLOW_PAGE);
        let since = since.map_or(String::new(), |s| format!("&since={s}"));
        format!(
            "/v1/tasks/{}/logs?limit={page}{since}",
            encode_component(id)
        )
    };
    let task_path = format!("/v1/tasks/{}", encode_component(id));
    let mut since: Option<u64> = None;
    let mut failures = 0;
    loop {
        // Status first, logs second: a task seen finished has all its lines written.
        let polled = api
            .get(&task_path, POLL_TOTAL)
            .and_then(|t| Ok((t, api.get(&logs_path(since), POLL_TOTAL)?)));
        let (task, logs) = match polled {
            Ok(x) => {
                failures = 0;
                x
            }
            // The first poll names an unknown task or a down conductor at once.
            Err(e) if since.is_none() || failures >= POLL_FAILURES => return Err(e),
            Err(_) => {
                failures += 1;
                std::thread::sleep(POLL_EVERY);
                continue;
            }
        };
        since.get_or_insert(0);
        for l in logs.data()["logs"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            since = since.max(l["seq"].as_u64());
            let line = if json {
                format!("{l}\n")
            } else {
                render::log_line(l)
            };
            match cli::write_stdout_while_open(&line) {
                Ok(true) => {}
                Ok(false) => return Ok(ExitCode::SUCCESS),
                Err(e) => return Err(CliError::Stdout(e)),
            }
        }
        let t = &task.data()["task"];
        match t["status"].as_str() {
            Some("succeeded") => return Ok(ExitCode::SUCCESS),
            Some(s @ ("failed" | "canceled")) => {
                let why = match &t["error"] {
                    Value::Null => String::new(),
                    e => format!(": {}", render::error(e)),
                };
                cli::error_line(BINARY, &format!("task {id} {s}{why}"));
                return Ok(ExitCode::FAILURE);
            }
            _ => std::thread::sleep(POLL_EVERY),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_task(prompt: Prompt) -> NewTask {
        NewTask {
            title: "t".into(),
            prompt,
            cwd: None,
            model: None,
            priority: Some(3),
            idempotency_key: None,
            max_attempts: None,
            timeout_s: None,
        }
    }

    #[test]
    fn the_body_sends_only_given_fields() {
        let b = body(
            new_task(Prompt::Steps(vec!["a".into(), "b".into()])),
            &mut io::empty(),
        );
        assert_eq!(
            b.unwrap(),
            json!({"title": "t", "steps": [{"prompt": "a"}, {"prompt": "b"}], "priority": 3})
        );
        let b = body(new_task(Prompt::Stdin), &mut "from stdin\n".as_bytes()).unwrap();
        assert_eq!(b["prompt"], "from stdin\n");
    }

    #[test]
    fn a_prompt_over_the_body_limit_is_refused_before_sending() {
        let big = vec![b'x'; STDIN_CAP as usize + 10];
        let e = body(new_task(Prompt::Stdin), &mut big.as_slice()).unwrap_err();
        assert!(e.to_string().contains("over 1048576 bytes"), "{e}");
    }

    #[test]
    fn ids_are_encoded() {
        assert_eq!(encode_component("task_01-a.b"), "task_01-a.b");
        assert_eq!(encode_component("a/b c"), "a%2Fb%20c");
    }
}
