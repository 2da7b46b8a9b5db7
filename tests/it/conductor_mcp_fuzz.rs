//! Fuzzed JSON-RPC against the conductor's `/mcp`, from a seeded generator (the same
//! messages every run; the seed is printed): bad `jsonrpc` versions, missing and
//! wrongly-typed ids, wrong types everywhere, params near and over the body limit,
//! batches of 1,000, deep nesting, duplicate keys and random bytes. Every answer must be a
//! JSON-RPC answer or error, or a proper HTTP error (413); never a 5xx, a panic or a
//! dropped connection; and the conductor must still answer `/healthz` and the session
//! after.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::support::conductor::{self, TOKEN};
use crate::support::http::{get, Resp};
use crate::support::mcp::Mcp;
use crate::support::tmp::TempDir;

const SEED: u64 = 0x6d63_7066_757a_7a21;
const BODY_LIMIT: usize = 256 * 1024;
/// The JSON-RPC codes the endpoint may answer with.
const CODES: &[i64] = &[
    -32700, -32600, -32601, -32602, -32603, -32000, -32001, -32002,
];

/// splitmix64: small, deterministic, no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn string(&mut self) -> String {
        const PARTS: &[&str] = &[
            "a", "Z", "0", " ", "\"", "\\", "\n", "\u{0}", "é", "🦀", "baa://", "tasks/", "/",
            "%2F", "..", "{", "]", "null", "\u{202e}",
        ];
        let n = self.below(12);
        (0..n).map(|_| *self.pick(PARTS)).collect()
    }

    fn value(&mut self, depth: usize) -> Value {
        match self.below(if depth > 3 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => json!(self.chance(50)),
            2 => json!(self.next() as i64),
            3 => json!((self.next() % 1000) as f64 / 7.0),
            4 | 5 => json!(self.string()),
            6 => Value::Array((0..self.below(4)).map(|_| self.value(depth + 1)).collect()),
            _ => {
                let mut m = Map::new();
                for _ in 0..self.below(4) {
                    let k = self.pick(KEYS).to_string();
                    m.insert(k, self.value(depth + 1));
                }
                Value::Object(m)
            }
        }
    }
}

const KEYS: &[&str] = &[
    "jsonrpc",
    "id",
    "method",
    "params",
    "name",
    "arguments",
    "uri",
    "task_id",
    "limit",
    "title",
    "prompt",
    "status",
    "protocolVersion",
    "cursor",
    "x",
];
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "notifications/initialized",
    "notifications/cancelled",
    "prompts/list",
    "logging/setLevel",
    "nope/nope",
    "",
    "tools/call ",
];
const TOOLS: &[&str] = &[
    "tasks_list",
    "tasks_read",
    "tasks_logs_read",
    "tasks_diff",
    "tasks_summary",
    "system_state",
    "probe_runtime",
    "tasks_create",
    "system_pause",
    "codex_requests_list",
    "host_exec",
    "nope",
    "tasks.list",
    "",
];
const URIS: &[&str] = &[
    "baa://system/state",
    "baa://status",
    "baa://tasks/x",
    "baa://tasks/x/log",
    "baa://tasks/",
    "baa://",
    "file:///etc/passwd",
    "",
];

/// One message: mostly well-formed enough to reach the methods, often wrong somewhere.
fn message(rng: &mut Rng) -> Value {
    let mut m = Map::new();
    if !rng.chance(10) {
        let v = match rng.below(10) {
            0 => json!("1.0"),
            1 => json!(2.0),
            2 => Value::Null,
            3 => rng.value(2),
            _ => json!("2.0"),
        };
        m.insert("jsonrpc".into(), v);
    }
    if !rng.chance(25) {
        let id = match rng.below(10) {
            0 => Value::Null,
            1 => json!(1.5),
            2 => rng.value(2),
            3 => json!(rng.string()),
            _ => json!(rng.below(1_000_000)),
        };
        m.insert("id".into(), id);
    }
    if !rng.chance(5) {
        let method = if rng.chance(90) {
            json!(rng.pick(METHODS))
        } else {
            rng.value(2)
        };
        m.insert("method".into(), method);
    }
    if rng.chance(80) {
        let params = if rng.chance(85) {
            let mut p = Map::new();
            if rng.chance(70) {
                p.insert("name".into(), json!(rng.pick(TOOLS)));
            }
            if rng.chance(60) {
                let args = if rng.chance(70) {
                    let mut a = Map::new();
                    for _ in 0..rng.below(4) {
                        a.insert(rng.pick(KEYS).to_string(), rng.value(1));
                    }
                    Value::Object(a)
                } else {
                    rng.value(1)
                };
                p.insert("arguments".into(), args);
            }
            if rng.chance(40) {
                p.insert("uri".into(), json!(rng.pick(URIS)));
            }
            if rng.chance(20) {
                p.insert("protocolVersion".into(), rng.value(1));
            }
            Value::Object(p)
        } else {
            rng.value(1)
        };
        m.insert("params".into(), params);
    }
    if rng.chance(5) {
        m.insert("result".into(), rng.value(1));
    }
    Value::Object(m)
}

/// Asserts `v` is one JSON-RPC answer: `jsonrpc: "2.0"`, an id, a result or an error
/// with a known code and a message.
#[track_caller]
fn assert_answer(v: &Value, context: &str) {
    assert_eq!(v["jsonrpc"], "2.0", "{context}: {v}");
    assert!(v.get("id").is_some(), "{context}: no id: {v}");
    match (v.get("result"), v.get("error")) {
        (Some(_), None) => {}
        (None, Some(e)) => {
            let code = e["code"].as_i64().unwrap_or(0);
            assert!(CODES.contains(&code), "{context}: code {code}: {v}");
            assert!(
                e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{context}: {v}"
            );
        }
        _ => panic!("{context}: neither result nor error: {v}"),
    }
}

/// Every status the endpoint may give, with the body that goes with it.
#[track_caller]
fn assert_proper(r: &Resp, context: &str) {
    match r.status {
        202 => assert!(r.body.is_empty(), "{context}: 202 with a body {:?}", r.body),
        200 => match r.json() {
            Value::Array(items) => {
                assert!(!items.is_empty(), "{context}: an empty batch answer");
                items.iter().for_each(|a| assert_answer(a, context));
            }
            v => assert_answer(&v, context),
        },
        400 | 404 | 503 => {
            let v = r.json();
            assert_answer(&v, context);
            assert!(
                v.get("error").is_some(),
                "{context}: {} without an error: {v}",
                r.status
            );
        }
        413 => assert_eq!(r.json()["error"], "payload_too_large", "{context}"),
        other => panic!("{context}: status {other}: {}", r.body),
    }
}

/// "status", plus the error code or whether a tool call failed, for the tally.
fn outcome(r: &Resp) -> String {
    if r.status == 202 {
        return "202".into();
    }
    let v = r.json();
    if let Some(code) = v["error"]["code"].as_i64() {
        return format!("{} {code}", r.status);
    }
    if v["result"]["isError"] == true {
        return format!("{} tool error", r.status);
    }
    format!("{} result", r.status)
}

/// Claims a body over the limit; the answer must be a 413 right after the head.
fn over_the_limit(addr: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        BODY_LIMIT + 1
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut status_line = String::new();
    r.read_line(&mut status_line).expect("status line");
    let mut length = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("header");
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).expect("body");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn mcp_fuzzed_json_rpc_always_gets_a_json_rpc_or_http_error_and_nothing_panics() {
    let dir = TempDir::new("mcp-fuzz");
    let d = conductor::spawn(&dir, "mini-main", "primary")
        .env("BAA_SHARED_TOKEN", TOKEN)
        .args(["--max-body-bytes", &BODY_LIMIT.to_string()])
        .start();
    let base = d.url("");
    println!("seed {SEED:#x}");
    let mut rng = Rng(SEED);
    let mut current = Mcp::connect(&base, "2025-06-18", None);
    let mut legacy = Mcp::connect(&base, "2025-03-26", None);

    // Random messages, alternating between a session without batches and one with them.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..600 {
        let msg = message(&mut rng);
        let m = if i % 2 == 0 {
            &mut current
        } else {
            &mut legacy
        };
        let r = m.send(&msg);
        assert_proper(&r, &format!("message {i} {msg}"));
        *seen.entry(outcome(&r)).or_default() += 1;
    }
    println!("outcomes: {seen:?}");
    // The generator reached every kind of answer (else it tests less than it says).
    for kind in [
        "202",
        "200 result",
        "200 tool error",
        "200 -32601",
        "200 -32602",
        "400 -32600",
        "400 -32602",
    ] {
        assert!(seen.contains_key(kind), "no {kind:?} among {seen:?}");
    }

    // Batches of 1,000: answered in order where the version has them, refused where not.
    let pings: Vec<Value> = (0..1000)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "ping"}))
        .collect();
    let r = legacy.send(&Value::Array(pings.clone()));
    assert_proper(&r, "1,000 pings");
    let answers = r.json();
    assert_eq!(answers.as_array().map(Vec::len), Some(1000));
    assert_eq!(
        (answers[0]["id"].clone(), answers[999]["id"].clone()),
        (json!(0), json!(999))
    );
    let r = current.send(&Value::Array(pings.clone()));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], -32600);
    let mut over = pings;
    over.push(json!({"jsonrpc": "2.0", "id": 1000, "method": "ping"}));
    let r = legacy.send(&Value::Array(over));
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (400, json!(-32600))
    );
    let random: Vec<Value> = (0..1000).map(|_| message(&mut rng)).collect();
    assert_proper(&legacy.send(&Value::Array(random)), "1,000 random messages");
    let mixed: Vec<Value> = (0..1000).map(|_| rng.value(0)).collect();
    assert_proper(&legacy.send(&Value::Array(mixed)), "1,000 random values");

    // Params near the body limit are answered; over it, a 413 before the body is read.
    let pad = "x".repeat(BODY_LIMIT - 512);
    for msg in [
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": pad}}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "tasks_create", "arguments": {"title": pad}}}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "tasks_list", "arguments": {"status": pad}}}),
        json!({"jsonrpc": "2.0", "id": 4, "method": "resources/read", "params": {"uri": format!("baa://tasks/{pad}")}}),
    ] {
        let r = current.send(&msg);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_proper(&r, "near the limit");
    }
    let addr = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let (status, body) = over_the_limit(&addr);
    assert_eq!(status, 413, "{body}");

    // Structure the parser refuses, and raw bytes.
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let deep_params = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{}1{}}}"#,
        r#"{"a":"#.repeat(70),
        "}".repeat(70)
    );
    for raw in [
        deep.as_bytes(),
        deep_params.as_bytes(),
        br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
        b"",
        b"null",
        b"[]",
        b"\"2.0\"",
        b"\xff\xfe{}",
    ] {
        let r = current.send_raw(raw);
        assert_proper(&r, &String::from_utf8_lossy(raw));
        assert_eq!(r.status, 400, "{}", r.body);
    }
    for i in 0..200 {
        let len = rng.below(2048);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if i % 3 == 0 {
            let mut prefixed = br#"{"jsonrpc":"2.0","id":1,"method":"#.to_vec();
            prefixed.append(&mut bytes);
            bytes = prefixed;
        }
        let m = if i % 2 == 0 {
            &mut current
        } else {
            &mut legacy
        };
        assert_proper(&m.send_raw(&bytes), &format!("random bytes {i}"));
    }

    // Still up, and the sessions still answer.
    assert_eq!(get(&d.url("/healthz")).body, "ok\n");
    assert_eq!(current.result("ping", json!({})), json!({}));
    assert_eq!(legacy.result("ping", json!({})), json!({}));
    let log = d.log();
    assert!(!log.contains("panicked"), "a handler panicked:\n{log}");
}
