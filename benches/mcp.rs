//! The MCP endpoint's cost over the route it wraps, printed, never asserted
//! (`scripts/bench/mcp.sh`, or `cargo bench --bench mcp`): p50/p90/p99 of `tools/call` of a
//! read tool on `POST /mcp` against the plain HTTP route, on the release conductor.
//!
//! - `tasks_list` vs `GET /v1/tasks` over 50 queued tasks (the system is paused, so they
//!   stay queued and both sides read the same list);
//! - `system_state` vs `GET /v1/system/state`.
//!
//! One MCP session (initialized once, its `Mcp-Session-Id` and bearer token on every
//! call) and one plain client, each a keep-alive ureq agent of its own; the two sides
//! alternate request by request, so drift hits both equally. Aim (issue 21): within 1.5x
//! at p50.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::Instant;

use serde_json::{json, Value};

use support::bench::{ms_since, run, stats, timed_get};
use support::conductor::{self, TOKEN};
use support::http::{Client, Resp};
use support::tmp::TempDir;

const N: usize = 2000;
const WARMUP: usize = 100;
const TASKS: usize = 50;

fn main() {
    run(&[("mcp_tools_call_vs_http_route", mcp_tools_call_vs_http_route)]);
}

/// One MCP session over its own keep-alive client.
struct Mcp {
    client: Client,
    url: String,
    session: String,
    auth: String,
    next_id: u64,
}

impl Mcp {
    fn post(&self, body: &Value, session: bool) -> Resp {
        let mut headers = vec![
            ("Accept", "application/json, text/event-stream"),
            ("Authorization", self.auth.as_str()),
        ];
        if session {
            headers.push(("Mcp-Session-Id", self.session.as_str()));
            headers.push(("MCP-Protocol-Version", "2025-11-25"));
        }
        self.client
            .post_raw(&self.url, &serde_json::to_vec(body).unwrap(), &headers)
    }

    fn open(url: String) -> Mcp {
        let mut mcp = Mcp {
            client: Client::new(),
            url,
            session: String::new(),
            auth: format!("Bearer {TOKEN}"),
            next_id: 1,
        };
        let init = mcp.post(
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "baa-bench", "version": "0"}}}),
            false,
        );
        assert_eq!(init.status, 200, "initialize: {}", init.body);
        mcp.session = init
            .header("mcp-session-id")
            .unwrap_or_else(|| panic!("no Mcp-Session-Id: {}", init.body))
            .to_string();
        let r = mcp.post(
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            true,
        );
        assert!(r.status < 300, "initialized: {} {}", r.status, r.body);
        mcp
    }

    /// Milliseconds for one `tools/call` of `tool` answered without an error.
    fn timed_call(&mut self, tool: &str) -> f64 {
        self.call(tool).0
    }

    /// One `tools/call` of `tool`: milliseconds and the answer's size in bytes.
    fn call(&mut self, tool: &str) -> (f64, usize) {
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
            "params": {"name": tool, "arguments": {}}});
        let t0 = Instant::now();
        let r = self.post(&body, true);
        let took = ms_since(t0);
        let v = r.json();
        assert!(
            r.status == 200 && v["result"]["isError"] == false,
            "{tool}: {} {}",
            r.status,
            r.body
        );
        (took, r.body.len())
    }
}

fn mcp_tools_call_vs_http_route() {
    let dir = TempDir::new("bench-mcp");
    let c = conductor::spawn(&dir, "mini-main", "primary")
        .env("BAA_SHARED_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .start();
    let auth = format!("Bearer {TOKEN}");
    let setup = Client::new();
    let paused = setup.post_raw(
        &c.url("/v1/system/pause"),
        br#"{"reason":"bench"}"#,
        &[("Authorization", &auth)],
    );
    assert_eq!(paused.status, 200, "pause: {}", paused.body);
    for i in 0..TASKS {
        let r = setup.post(
            &c.url("/v1/tasks"),
            &json!({"title": format!("bench task {i}"), "prompt": "stay queued"}),
        );
        assert_eq!(r.status, 201, "create: {}", r.body);
    }

    let mut mcp = Mcp::open(c.url("/mcp"));
    let plain = Client::new();
    for (tool, path) in [
        ("tasks_list", "/v1/tasks"),
        ("system_state", "/v1/system/state"),
    ] {
        let url = c.url(path);
        println!(
            "{tool}: answer {} bytes on /mcp, {} bytes from GET {path}",
            mcp.call(tool).1,
            plain.get(&url).body.len()
        );
        for _ in 0..WARMUP {
            mcp.timed_call(tool);
            timed_get(&plain, &url);
        }
        let (mut via_mcp, mut direct) = (Vec::with_capacity(N), Vec::with_capacity(N));
        for _ in 0..N {
            via_mcp.push(mcp.timed_call(tool));
            direct.push(timed_get(&plain, &url));
        }
        let p50 = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let ratio = p50(&via_mcp) / p50(&direct);
        stats(&format!("tools/call {tool}"), via_mcp);
        stats(&format!("GET {path}"), direct);
        println!("{tool}: MCP / HTTP at p50 = {ratio:.2}x (aim: within 1.5x)");
    }
}
