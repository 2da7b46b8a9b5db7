//! Running `baa-codexd` in tests: against its built-in stub child (fault injection) or the
//! real pinned `codex app-server` on the mock model, with helpers for sessions, turns (on
//! codexd or through the conductor's proxy) and the event stream. Every wait is bounded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::codex::{codex_binary, MockCodexHome};
use super::daemon::{wait_for, wait_for_every, Daemon, Spawn, CODEXD};
use super::http::{get, Client, Resp};
use super::ws::{connect, WsClient};

/// How long a real codex child may take to answer initialize (a loaded 2-core machine).
const CHILD_START: Duration = Duration::from_secs(30);

/// Dirs of one codexd instance; reuse them to restart "the same" daemon.
#[derive(Clone)]
pub struct Dirs {
    pub state: PathBuf,
    pub logs: PathBuf,
}

impl Dirs {
    pub fn under(root: &Path) -> Dirs {
        Dirs {
            state: root.join("state/codexd"),
            logs: root.join("logs/codexd"),
        }
    }
}

/// A codexd command line with fast restart settings, not yet started.
pub fn codexd(dirs: &Dirs) -> Spawn {
    Spawn::new(CODEXD)
        .arg("start")
        .env("BAA_CODEXD_LOCAL_API_BASE", "http://127.0.0.1:0")
        .env("BAA_CODEXD_STATE_DIR", &dirs.state)
        .env("BAA_CODEXD_LOGS_DIR", &dirs.logs)
        .env("BAA_CODEXD_RESTART_BASE_MS", "100")
        .env("BAA_CODEXD_RESTART_MAX_MS", "1000")
        .env("BAA_CODEXD_REQUEST_TIMEOUT_MS", "15000")
        .env("BAA_CODEXD_STOP_GRACE_MS", "2000")
}

/// codexd whose child is the built-in stub in `mode`.
pub fn with_stub(dirs: &Dirs, mode: &str) -> Spawn {
    codexd(dirs)
        .env("BAA_CODEXD_SERVER_COMMAND", CODEXD)
        .env("BAA_CODEXD_SERVER_ARGS", "__stub-app-server")
        .env("BAA_CODEXD_STUB_MODE", mode)
}

/// codexd whose child is the real native codex on `home`'s CODEX_HOME (its mock model),
/// working in `home.work`.
pub fn with_mock_codex(dirs: &Dirs, home: &MockCodexHome) -> Spawn {
    codexd(dirs)
        .env("BAA_CODEXD_SERVER_COMMAND", codex_binary())
        .env("BAA_CODEXD_SERVER_ARGS", "app-server")
        .env("BAA_CODEXD_SERVER_CWD", &home.work)
        .env("CODEX_HOME", &home.home)
}

/// [`with_mock_codex`] in unix mode: the child listens on `<state>/app-server.sock`, runs
/// in its own session and outlives codexd. Pair it with a [`LeftChild`].
pub fn with_mock_codex_unix(dirs: &Dirs, home: &MockCodexHome) -> Spawn {
    with_mock_codex(dirs, home).env("BAA_CODEXD_SERVER_ENDPOINT", "unix://")
}

/// Stops, on drop, the app-server recorded in `dirs` (a unix-mode child outlives codexd
/// by design, so a test must not leave it behind). Only that exact process (pid and start
/// time), as `baa-codexd stop-child` would.
pub struct LeftChild {
    state: PathBuf,
}

impl LeftChild {
    pub fn of(dirs: &Dirs) -> LeftChild {
        LeftChild {
            state: dirs.state.clone(),
        }
    }

    /// The recorded child: `(pid, startTime)`, if any.
    pub fn recorded(&self) -> Option<(u32, String)> {
        let text = std::fs::read_to_string(self.state.join("daemon-state.json")).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        let c = &v["child"];
        Some((
            c["pid"].as_u64()? as u32,
            c["startTime"].as_str()?.to_string(),
        ))
    }
}

impl Drop for LeftChild {
    fn drop(&mut self) {
        if let Some((pid, start)) = self.recorded() {
            baa::common::proc::kill_if_same(pid, &start, Duration::from_secs(2));
        }
    }
}

/// The `child` object of codexd's status.
#[track_caller]
pub fn child_status(d: &Daemon) -> Value {
    get(&d.url("/v1/codexd/status")).json()["data"]["snapshot"]["daemon"]["child"].clone()
}

/// Waits until the child runs with a pid `pred` accepts; returns the child status.
#[track_caller]
pub fn wait_child(
    d: &Daemon,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let found = wait_for(timeout, || {
        let c = child_status(d);
        (c["status"] == "running" && pred(&c)).then_some(c)
    });
    let Some(c) = found else {
        panic!(
            "child never {what}: {:#}\nlog:\n{}",
            child_status(d),
            d.log()
        )
    };
    c
}

/// Starts `spawn` and waits until its child answered initialize.
#[track_caller]
pub fn start_running(spawn: Spawn) -> Daemon {
    let d = spawn.start();
    wait_child_running(&d, CHILD_START);
    d
}

/// Waits until the child answered initialize; returns the status data.
#[track_caller]
pub fn wait_child_running(d: &Daemon, timeout: Duration) -> Value {
    let found = wait_for(timeout, || {
        let v = get(&d.url("/v1/codexd/status")).json();
        (v["data"]["snapshot"]["daemon"]["child"]["status"] == "running").then_some(v)
    });
    let Some(v) = found else {
        panic!(
            "child never running: {}\nlog:\n{}",
            get(&d.url("/v1/codexd/status")).body,
            d.log()
        )
    };
    v
}

#[track_caller]
pub fn child_pid(d: &Daemon) -> u32 {
    get(&d.url("/v1/codexd/status")).json()["data"]["snapshot"]["daemon"]["child"]["pid"]
        .as_u64()
        .expect("child pid") as u32
}

/// The session and turn routes of codexd (`/v1/codexd/…`) or of the conductor's proxy of
/// them (`/v1/codex/…`): one set of calls, and the one turn waiter, for both.
pub struct CodexApi<'a> {
    d: &'a Daemon,
    prefix: &'static str,
    client: Client,
    poll: Duration,
}

impl<'a> CodexApi<'a> {
    pub fn codexd(d: &'a Daemon) -> Self {
        Self::new(d, "/v1/codexd")
    }

    pub fn conductor(d: &'a Daemon) -> Self {
        Self::new(d, "/v1/codex")
    }

    fn new(d: &'a Daemon, prefix: &'static str) -> Self {
        CodexApi {
            d,
            prefix,
            client: Client::new(),
            poll: Duration::from_millis(25),
        }
    }

    /// Polls the session this often while waiting for a turn (default 25 ms).
    pub fn polling(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// `rest` under this API's prefix, e.g. `/sessions`.
    pub fn url(&self, rest: &str) -> String {
        self.d.url(&format!("{}{rest}", self.prefix))
    }

    /// Creates a session (asserting 201); returns it.
    #[track_caller]
    pub fn create_session(&self, body: Value) -> Value {
        let v = self.client.post(&self.url("/sessions"), &body).expect(201);
        v["data"]["session"].clone()
    }

    #[track_caller]
    pub fn start_turn(&self, session_id: &str, input: &str) -> Resp {
        self.client.post(
            &self.url("/turn"),
            &json!({"sessionId": session_id, "input": input}),
        )
    }

    /// Starts a turn and returns its id (asserting 202).
    #[track_caller]
    pub fn turn(&self, session_id: &str, input: &str) -> String {
        let v = self.start_turn(session_id, input).expect(202);
        assert_eq!(v["data"]["accepted"], true, "{v}");
        let Some(id) = v["data"]["turnId"].as_str() else {
            panic!("no turnId: {v}")
        };
        id.to_string()
    }

    #[track_caller]
    pub fn session(&self, session_id: &str) -> Value {
        let url = self.url(&format!("/sessions/{session_id}"));
        self.client.get(&url).expect(200)["data"]["session"].clone()
    }

    /// One page of the session's turn records (`GET …/sessions/:id/turns`), asserting 200.
    #[track_caller]
    pub fn turns_page(&self, session_id: &str, limit: usize, cursor: Option<&str>) -> Value {
        let mut url = self.url(&format!("/sessions/{session_id}/turns?limit={limit}"));
        if let Some(c) = cursor {
            url.push_str(&format!("&cursor={}", encode(c)));
        }
        self.client.get(&url).expect(200)["data"].clone()
    }

    /// Every turn record of the session, newest first, following `nextCursor` page by page
    /// (at most 100 pages); also returns how many pages it took.
    #[track_caller]
    pub fn all_turns(&self, session_id: &str, limit: usize) -> (Vec<Value>, usize) {
        let mut turns = Vec::new();
        let mut cursor: Option<String> = None;
        for page in 1..=100 {
            let data = self.turns_page(session_id, limit, cursor.as_deref());
            let got = data["turns"].as_array().cloned().unwrap_or_default();
            assert!(got.len() <= limit, "page over the limit: {data}");
            turns.extend(got);
            match data["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return (turns, page),
            }
        }
        panic!("more than 100 pages of turns for {session_id}")
    }

    #[track_caller]
    pub fn delete_session(&self, session_id: &str) -> Resp {
        self.client
            .request("DELETE", &self.url(&format!("/sessions/{session_id}")))
    }

    #[track_caller]
    pub fn compact(&self, session_id: &str) -> Resp {
        self.client.post(
            &self.url(&format!("/sessions/{session_id}/compact")),
            &json!({}),
        )
    }

    #[track_caller]
    pub fn fork(&self, session_id: &str, body: Value) -> Resp {
        self.client
            .post(&self.url(&format!("/sessions/{session_id}/fork")), &body)
    }

    #[track_caller]
    pub fn review(&self, body: Value) -> Resp {
        self.client.post(&self.url("/review"), &body)
    }

    /// `GET …/threads?<query>` data, asserting 200.
    #[track_caller]
    pub fn threads(&self, query: &str) -> Value {
        self.client
            .get(&self.url(&format!("/threads?{query}")))
            .expect(200)["data"]
            .clone()
    }

    /// The session ids of `GET …/sessions` (`?archived=true` with `archived`).
    #[track_caller]
    pub fn session_ids(&self, archived: bool) -> Vec<String> {
        let url = self.url(if archived {
            "/sessions?archived=true"
        } else {
            "/sessions"
        });
        let v = self.client.get(&url).expect(200);
        v["data"]["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["sessionId"].as_str().map(str::to_string))
            .collect()
    }

    /// Waits until the session's last turn is `turn_id` and finished; returns the session.
    #[track_caller]
    pub fn wait_turn_done(&self, session_id: &str, turn_id: &str, timeout: Duration) -> Value {
        let done = wait_for_every(timeout, self.poll, || {
            let s = self.session(session_id);
            (s["lastTurnId"] == turn_id && s["currentTurnId"].is_null()).then_some(s)
        });
        let Some(s) = done else {
            panic!(
                "turn {turn_id} did not finish within {timeout:?}; session: {:#}\nlog:\n{}",
                self.session(session_id),
                self.d.log()
            )
        };
        s
    }
}

/// [`CodexApi::create_session`] on codexd.
#[track_caller]
pub fn create_session(d: &Daemon, body: Value) -> Value {
    CodexApi::codexd(d).create_session(body)
}

#[track_caller]
pub fn start_turn(d: &Daemon, session_id: &str, input: &str) -> Resp {
    CodexApi::codexd(d).start_turn(session_id, input)
}

#[track_caller]
pub fn turn(d: &Daemon, session_id: &str, input: &str) -> String {
    CodexApi::codexd(d).turn(session_id, input)
}

#[track_caller]
pub fn session(d: &Daemon, session_id: &str) -> Value {
    CodexApi::codexd(d).session(session_id)
}

#[track_caller]
pub fn wait_turn_done(d: &Daemon, session_id: &str, turn_id: &str, timeout: Duration) -> Value {
    CodexApi::codexd(d).wait_turn_done(session_id, turn_id, timeout)
}

/// The event stream, optionally replaying after `since`.
#[track_caller]
pub fn events_ws(d: &Daemon, since: Option<u64>) -> WsClient {
    let path = match since {
        Some(s) => format!("/v1/codexd/events?since={s}"),
        None => "/v1/codexd/events".to_string(),
    };
    match connect(&d.addr, &path, &[]) {
        Ok(ws) => ws,
        Err(s) => panic!("ws connect failed: {s}"),
    }
}

/// Reads frames until one matches; returns every frame read (the match last).
#[track_caller]
pub fn read_until(
    ws: &mut WsClient,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match ws.next_json(left) {
            Some(v) => {
                let hit = pred(&v);
                seen.push(v);
                if hit {
                    return seen;
                }
            }
            None => panic!(
                "no event matching {what} within {timeout:?} (the stream {} after {:?}); saw types: {:?}",
                if std::time::Instant::now() < deadline {
                    "closed or failed"
                } else {
                    "was silent"
                },
                timeout.saturating_sub(deadline.saturating_duration_since(std::time::Instant::now())),
                seen.iter()
                    .map(|e| e["type"].as_str().unwrap_or("?").to_string())
                    .collect::<Vec<_>>()
            ),
        }
    }
}

pub fn is_type(e: &Value, t: &str) -> bool {
    e["type"] == t
}

/// Asserts seqs strictly increase by one.
#[track_caller]
pub fn assert_contiguous(events: &[Value]) {
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seqs not contiguous: {seqs:?}"
    );
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
