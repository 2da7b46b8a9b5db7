//! Notifications: a loopback webhook receiver gets exactly one signed delivery per event,
//! also after it was down and came back and across a conductor restart; a waiting
//! approval's signed link answers that request once and is refused otherwise.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use baa::common::http::{Reply, Request, Response, Server, ServerConfig, ServerHandle};
use baa::common::time::now_ms;

use crate::support::codexd::{start_running, with_stub, Dirs};
use crate::support::daemon::wait_for;
use crate::support::http::{get, Client};
use crate::support::tasks::{self, TaskConductor};
use crate::support::tmp::TempDir;

const T: Duration = Duration::from_secs(30);
const SECRET: &str = "notify-test-secret";

#[derive(Clone, Debug)]
struct Delivery {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Delivery {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook receiver on `addr` that records every request and answers 200.
struct Receiver {
    handle: Option<ServerHandle>,
    got: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    #[track_caller]
    fn start(addr: &str, got: Arc<Mutex<Vec<Delivery>>>) -> Receiver {
        let log = got.clone();
        let handler = Arc::new(move |req: &Request| {
            log.lock().unwrap().push(Delivery {
                headers: req.headers.clone(),
                body: req.body.clone(),
            });
            Reply::Http(Response::text(200, "ok\n"))
        });
        let handle = Server::bind(addr, ServerConfig::default(), handler).expect("bind receiver");
        Receiver {
            handle: Some(handle),
            got,
        }
    }

    fn all(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    #[track_caller]
    fn wait_count(&self, n: usize, what: &str) -> Vec<Delivery> {
        wait_for(T, || Some(self.all()).filter(|a| a.len() >= n))
            .unwrap_or_else(|| panic!("no {n} deliveries ({what}): {:?}", self.all()))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.stop(Duration::from_secs(2));
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[track_caller]
fn assert_signed(d: &Delivery) {
    let ts = d.header("X-Baa-Timestamp");
    let mut msg = format!("{ts}.").into_bytes();
    msg.extend_from_slice(&d.body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, &msg);
    let want: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        d.header("X-Baa-Signature"),
        format!("sha256={want}"),
        "{d:?}"
    );
}

fn conductor(dir: &TempDir, codexd: &str, hook: &str) -> TaskConductor {
    TaskConductor {
        d: tasks::spawn(dir, codexd, "mini-main", "primary")
            .env("BAA_NOTIFY_URLS", hook)
            .env("BAA_NOTIFY_SECRET", SECRET)
            .start(),
    }
}

fn notifications(c: &TaskConductor) -> Value {
    get(&c.url("/v1/notifications")).expect(200)["data"].clone()
}

#[test]
fn webhook_gets_one_signed_delivery_per_event_after_being_down_and_across_a_restart() {
    let dir = TempDir::new("notify-webhook");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let addr = format!("127.0.0.1:{}", free_port());
    let hook = format!("http://{addr}/hook");
    let mut c = conductor(&dir, &codexd.base, &hook);

    // The receiver is down: the delivery fails and stays pending.
    let id = c.create(serde_json::json!({"title": "one", "prompt": "hello"}));
    c.wait_status(&id, "succeeded", T);
    let n = wait_for(T, || {
        let n = notifications(&c);
        (n["deliveries"][0]["tries"].as_u64() >= Some(1)).then_some(n)
    })
    .expect("a failed try");
    assert_eq!(n["deliveries"][0]["status"], "pending", "{n:#}");
    assert_eq!(n["deliveries"][0]["kind"], "task.succeeded", "{n:#}");
    assert!(n["deliveries"][0]["last_error"].is_string(), "{n:#}");

    // It comes back: exactly one signed delivery.
    let got = Arc::new(Mutex::new(Vec::new()));
    let r = Receiver::start(&addr, got.clone());
    let d = r.wait_count(1, "after the receiver came back")[0].clone();
    assert_signed(&d);
    let body = d.json();
    assert_eq!(body["kind"], "task.succeeded", "{body:#}");
    assert_eq!(body["task"]["task_id"], id.as_str(), "{body:#}");
    assert_eq!(body["task"]["status"], "succeeded", "{body:#}");
    assert_eq!(body["node"], "mini-main", "{body:#}");
    assert!(
        body["task"].get("prompt").is_none(),
        "no prompt unless asked: {body:#}"
    );
    assert_eq!(d.header("X-Baa-Event"), "task.succeeded");
    wait_for(T, || {
        (notifications(&c)["counts"]["delivered"] == 1).then_some(())
    })
    .expect("marked delivered");

    // A restart: the delivered entry is not sent again; a new event is sent once.
    c.d.terminate(T);
    let c = conductor(&dir, &codexd.base, &hook);
    assert_eq!(notifications(&c)["counts"]["delivered"], 1);
    let id2 = c.create(serde_json::json!({"title": "two", "prompt": "boom fail"}));
    let st = c.wait_task(&id2, "finished", T, |t| {
        t["task"]["status"] == "failed" || t["task"]["status"] == "succeeded"
    });
    let all = r.wait_count(2, "the second task's outcome");
    wait_for(T, || {
        (notifications(&c)["counts"]["delivered"] == 2).then_some(())
    })
    .expect("second marked delivered");
    let all_now = r.all();
    assert_eq!(all_now.len(), 2, "exactly one delivery per event: {all:?}");
    let second = all_now[1].json();
    assert_signed(&all_now[1]);
    assert_eq!(second["task"]["task_id"], id2.as_str(), "{second:#} {st:#}");
}

#[test]
fn a_waiting_approvals_signed_link_answers_that_request_once() {
    let dir = TempDir::new("notify-approval");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let got = Arc::new(Mutex::new(Vec::new()));
    let r = Receiver::start("127.0.0.1:0", got);
    let addr = r.handle.as_ref().unwrap().local_addr();
    let c = conductor(&dir, &codexd.base, &format!("http://{addr}/hook"));
    let id = c.create(serde_json::json!({"title": "needs ok", "prompt": "approval please"}));
    let rid = c.wait_waiting(&id, T);
    let d = r.wait_count(1, "the approval notification")[0].clone();
    assert_signed(&d);
    let body = d.json();
    assert_eq!(body["kind"], "task.waiting", "{body:#}");
    assert_eq!(
        body["task"]["waiting"]["request_id"],
        rid.as_str(),
        "{body:#}"
    );
    assert_eq!(body["priority"], "high", "{body:#}");
    let accept = body["actions"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(body["actions"][0]["decision"], "accept", "{body:#}");
    assert!(
        accept.contains(&format!("/v1/approvals/{rid}/accept?exp=")),
        "{accept}"
    );
    let http = Client::new();
    let post = |url: &str| http.post_raw(url, b"", &[]);

    // Tampered signature, another request id, another decision: refused.
    let mut tampered = accept.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    post(&tampered).expect_error(403, "approval_link_invalid");
    post(&accept.replace(&rid, "req_other")).expect_error(403, "approval_link_invalid");
    post(&accept.replace("/accept?", "/decline?")).expect_error(403, "approval_link_invalid");
    // Expired: signed with the node's key, but its exp has passed.
    let key = std::fs::read_to_string(dir.child("state").join("notify-approval.key")).ok();
    if let Some(key) = key.filter(|k| !k.trim().is_empty()) {
        let exp = now_ms() / 1000 - 5;
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.trim().as_bytes());
        let sig: String = ring::hmac::sign(&k, format!("{rid}\naccept\n{exp}").as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let base = accept.split("/v1/").next().unwrap();
        post(&format!(
            "{base}/v1/approvals/{rid}/accept?exp={exp}&sig={sig}"
        ))
        .expect_error(403, "approval_link_expired");
    } else {
        panic!("no approval key file under {}", dir.path().display());
    }

    // The link answers it once.
    post(&accept).expect(200);
    let t = c.wait_status(&id, "succeeded", T);
    assert_eq!(t["task"]["final_message"], "decision: accept", "{t:#}");
    post(&accept).expect_error(403, "approval_already_answered");
}
