//! The Firefox WebSocket bridge on the conductor's listener.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::conductor;
use crate::support::http::{get, post};
use crate::support::tmp::TempDir;
use crate::support::ws::{connect, WsClient};

fn open(addr: &str) -> WsClient {
    let mut ws = connect(addr, "/ws/firefox", &[]).expect("ws connect");
    let hello = ws.next_json(Duration::from_secs(5)).expect("hello");
    assert_eq!(hello["type"], "hello", "{hello}");
    let snap = ws.next_json(Duration::from_secs(5)).expect("snapshot");
    assert_eq!(snap["type"], "state_snapshot", "{snap}");
    ws
}

#[test]
fn firefox_bridge_snapshots_actions_and_broadcasts() {
    let c = conductor::start("firefox");
    let mut a = connect(&c.d.addr, "/ws/firefox", &[]).expect("connect");
    let hello = a.next_json(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (
            hello["type"].clone(),
            hello["identity"].clone(),
            hello["role"].clone()
        ),
        (
            json!("hello"),
            json!("mini-main@testhost(primary)"),
            json!("leader")
        )
    );
    let snap = a.next_json(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (
            snap["type"].clone(),
            snap["data"]["mode"].clone(),
            snap["data"]["version"].clone()
        ),
        (json!("state_snapshot"), json!("running"), json!(0))
    );
    let mut b = open(&c.d.addr);

    a.send_json(&json!({"type": "action_request", "requestId": "r1", "action": "pause", "requested_by": "firefox", "reason": "tab closed"}));
    let result = a
        .until(Duration::from_secs(5), |v| v["type"] == "action_result")
        .expect("action_result");
    assert_eq!(
        (
            result["requestId"].clone(),
            result["ok"].clone(),
            result["data"]["mode"].clone(),
            result["data"]["requested_by"].clone()
        ),
        (json!("r1"), json!(true), json!("paused"), json!("firefox")),
        "{result}"
    );
    let pushed = b
        .until(Duration::from_secs(5), |v| v["type"] == "state_snapshot")
        .expect("b gets the change");
    assert_eq!(
        (
            pushed["data"]["mode"].clone(),
            pushed["data"]["version"].clone()
        ),
        (json!("paused"), json!(1))
    );
    // Same contract as HTTP: the HTTP state shows the WS change, and an HTTP change is pushed.
    assert_eq!(
        get(&c.url("/v1/system/state")).expect(200)["data"],
        result["data"]
    );
    post(
        &c.url("/v1/system/resume"),
        &json!({"requested_by": "http"}),
    )
    .expect(200);
    let pushed = b
        .until(Duration::from_secs(5), |v| {
            v["type"] == "state_snapshot" && v["data"]["version"] == 2
        })
        .expect("HTTP change pushed");
    assert_eq!(pushed["data"]["mode"], "running");

    // Bad frames get error frames; the connection survives.
    a.ws.send(tungstenite::Message::text("not json")).unwrap();
    assert_eq!(
        a.until(Duration::from_secs(5), |v| v["type"] == "error")
            .unwrap()["error"],
        "invalid_json"
    );
    a.send_json(&json!({"type": "teleport", "requestId": "r2"}));
    let e = a
        .until(Duration::from_secs(5), |v| v["type"] == "error")
        .unwrap();
    assert_eq!(
        (e["error"].clone(), e["requestId"].clone()),
        (json!("unknown_type"), json!("r2"))
    );
    a.send_json(&json!({"type": "action_request", "requestId": "r3", "action": "explode"}));
    let r = a
        .until(Duration::from_secs(5), |v| v["type"] == "action_result")
        .unwrap();
    assert_eq!(
        (r["ok"].clone(), r["error"]["error"].clone()),
        (json!(false), json!("invalid_action"))
    );
    a.send_json(&json!({"type": "ping", "requestId": "r4"}));
    assert_eq!(
        a.until(Duration::from_secs(5), |v| v["type"] == "pong")
            .unwrap()["requestId"],
        "r4"
    );
    a.close();
    b.close();
}

#[test]
fn firefox_bridge_checks_origins() {
    let dir = TempDir::new("ff-origin");
    let d = conductor::spawn(&dir, "mini-main", "primary")
        .args(["--firefox-origins", "moz-extension://1111-2222"])
        .start();
    for bad in [
        "https://evil.example",
        "moz-extension://3333-4444",
        "null",
        "http://127.0.0.1:1",
    ] {
        assert_eq!(
            connect(&d.addr, "/ws/firefox", &[("Origin", bad)]).err(),
            Some(403),
            "{bad}"
        );
    }
    let mut ok = connect(
        &d.addr,
        "/ws/firefox",
        &[("Origin", "moz-extension://1111-2222")],
    )
    .expect("pinned origin");
    assert_eq!(
        ok.next_json(Duration::from_secs(5)).unwrap()["type"],
        "hello"
    );
    // Plain HTTP GET on the WS route is a clear error, not a hang.
    let r = get(&d.url("/ws/firefox"));
    assert_eq!(r.status, 426, "{}", r.body);
}

#[test]
fn firefox_slow_client_is_dropped_without_blocking_others() {
    let c = conductor::start("ff-slow");
    // `slow` connects and never reads again.
    let slow = connect(&c.d.addr, "/ws/firefox", &[]).expect("slow");
    let mut fast = open(&c.d.addr);
    let reason = "r".repeat(1900);
    let started = Instant::now();
    let mut last = 0;
    for i in 0..150 {
        let v = post(
            &c.url("/v1/system/pause"),
            &json!({"requested_by": format!("burst-{i}"), "reason": reason}),
        )
        .expect(200);
        last = v["data"]["version"].as_u64().unwrap();
        // Let `fast` keep up; `slow` never reads.
        while let Some(v) = fast.next_json(Duration::from_millis(1)) {
            let _ = v;
        }
    }
    let burst = started.elapsed();
    println!("150 state changes with a stalled subscriber took {burst:?}");
    assert!(
        burst < Duration::from_secs(30),
        "writes were held up by a slow subscriber: {burst:?}"
    );
    let got = fast.until(Duration::from_secs(5), |v| v["data"]["version"] == last);
    assert!(
        got.is_some() || fast.ws.can_read(),
        "fast client missed the latest snapshot"
    );
    drop(slow);
    assert_eq!(get(&c.url("/healthz")).status, 200);
}
