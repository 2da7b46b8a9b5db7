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
    path: String,
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
                path: req.path.clone(),
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

    /// The bodies of the deliveries of one event kind, in the order they came.
    fn of_kind(&self, kind: &str) -> Vec<Value> {
        self.all()
            .iter()
            .map(Delivery::json)
            .filter(|v| v["kind"] == kind)
            .collect()
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

    // A restart with the entry still pending, then the receiver comes back: exactly one
    // signed delivery.
    c.d.terminate(T);
    let mut c = conductor(&dir, &codexd.base, &hook);
    assert_eq!(
        notifications(&c)["counts"]["pending"],
        1,
        "{:#}",
        notifications(&c)
    );
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
    let c = conductor(
        &dir,
        &codexd.base,
        &format!("http://{addr}/hook,ntfy+http://{addr}/alerts"),
    );
    let id = c.create(serde_json::json!({"title": "needs ok", "prompt": "approval please"}));
    let rid = c.wait_waiting(&id, T);
    let both = r.wait_count(2, "the approval notification to both targets");
    let by_path = |p: &str| {
        both.iter()
            .find(|d| d.path == p)
            .cloned()
            .unwrap_or_else(|| panic!("nothing on {p}: {both:?}"))
    };
    let d = by_path("/hook");
    // ntfy: a short text with Title, Priority, Tags and two http action buttons.
    let n = by_path("/alerts");
    assert_eq!(n.header("Title"), "Approval needed: needs ok", "{n:?}");
    assert_eq!(n.header("Priority"), "4", "{n:?}");
    assert_eq!(n.header("Tags"), "raising_hand", "{n:?}");
    assert!(
        String::from_utf8_lossy(&n.body).starts_with("command: "),
        "{n:?}"
    );
    let actions = n.header("Actions");
    assert!(
        actions.starts_with(&format!(
            "http, Accept, http://{}/v1/approvals/{rid}/accept?exp=",
            c.d.url("")
                .trim_start_matches("http://")
                .trim_end_matches('/')
        )) && actions.contains("; http, Decline, ")
            && actions.contains("method=POST"),
        "{actions}"
    );
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
    let key = std::fs::read(dir.child("state").join("notify-approval-key.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<String>(&b).ok());
    if let Some(key) = key.filter(|k| !k.is_empty()) {
        let exp = now_ms() / 1000 - 5;
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
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

/// A self-made CA and a leaf for 127.0.0.1 signed by it (the `openssl` CLI), in `dir`.
fn test_ca(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=baa test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
}

/// Python's http.server behind TLS: appends each POST body as a line to `got.jsonl`.
const HTTPS_SERVER: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(sys.argv[3], "ab") as f:
            f.write(body + b"\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_https_receiver_with_a_test_ca_gets_its_delivery() {
    use std::io::BufRead;
    let dir = TempDir::new("notify-https");
    let tls = dir.child("tls");
    std::fs::create_dir_all(&tls).unwrap();
    test_ca(&tls);
    std::fs::write(tls.join("server.py"), HTTPS_SERVER).unwrap();
    let got = tls.join("got.jsonl");
    let mut child = Child(
        std::process::Command::new("python3")
            .arg(tls.join("server.py"))
            .args([tls.join("leaf.pem"), tls.join("leaf.key"), got.clone()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().expect("the server's port");

    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let c = TaskConductor {
        d: tasks::spawn(&dir, &codexd.base, "mini-main", "primary")
            .env("BAA_NOTIFY_URLS", format!("https://127.0.0.1:{port}/hook"))
            .env("BAA_NOTIFY_CA_FILE", tls.join("ca.pem"))
            .start(),
    };
    let id = c.create(serde_json::json!({"title": "over tls", "prompt": "hello"}));
    c.wait_status(&id, "succeeded", T);
    let text = wait_for(T, || {
        std::fs::read_to_string(&got).ok().filter(|t| !t.is_empty())
    })
    .unwrap_or_else(|| panic!("no https delivery: {:#}", notifications(&c)));
    let body: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(body["task"]["task_id"], id.as_str(), "{body:#}");
    wait_for(T, || {
        (notifications(&c)["counts"]["delivered"] == 1).then_some(())
    })
    .expect("marked delivered");
}

/// A receiver that holds every request until released does not hold up the queue.
#[test]
fn a_slow_receiver_does_not_delay_task_dispatch() {
    let dir = TempDir::new("notify-slow");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let release = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let held = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (rel, h) = (release.clone(), held.clone());
    let handler = Arc::new(move |_: &Request| {
        h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (m, cv) = &*rel;
        let mut done = m.lock().unwrap();
        while !*done {
            done = cv.wait(done).unwrap();
        }
        Reply::Http(Response::text(200, "ok\n"))
    });
    let server = Server::bind("127.0.0.1:0", ServerConfig::default(), handler).unwrap();
    let c = conductor(
        &dir,
        &codexd.base,
        &format!("http://{}/hook", server.local_addr()),
    );
    let first = c.create(serde_json::json!({"title": "first", "prompt": "hello"}));
    c.wait_status(&first, "succeeded", T);
    wait_for(T, || {
        (held.load(std::sync::atomic::Ordering::SeqCst) >= 1).then_some(())
    })
    .expect("the receiver holds the first delivery");
    // While it is held, three more tasks are dispatched and finish.
    let ids: Vec<String> = (0..3)
        .map(|i| c.create(serde_json::json!({"title": format!("t{i}"), "prompt": "hello"})))
        .collect();
    for id in &ids {
        c.wait_status(id, "succeeded", T);
    }
    assert!(
        !*release.0.lock().unwrap(),
        "still held while the tasks ran"
    );
    *release.0.lock().unwrap() = true;
    release.1.notify_all();
    server.stop(Duration::from_secs(2));
}

/// codexd's child exits at once until codexd stops restarting it: one `codexd.crash_loop`
/// notification, not one per reading of codexd's status.
#[test]
fn a_codexd_crash_loop_is_announced_once() {
    let dir = TempDir::new("notify-crash-loop");
    let codexd = with_stub(&Dirs::under(&dir.child("cx")), "exit")
        .env("BAA_CODEXD_RESTART_BASE_MS", "20")
        .env("BAA_CODEXD_CRASH_LOOP_MAX", "3")
        .env("BAA_CODEXD_CRASH_LOOP_COOLDOWN_MS", "600000")
        .start();
    wait_for(T, || {
        let v = get(&codexd.url("/v1/codexd/status")).json();
        (v["data"]["snapshot"]["daemon"]["child"]["status"] == "crash_loop").then_some(())
    })
    .expect("codexd's child in crash_loop");
    let got = Arc::new(Mutex::new(Vec::new()));
    let r = Receiver::start("127.0.0.1:0", got);
    let addr = r.handle.as_ref().unwrap().local_addr();
    let c = conductor(&dir, &codexd.base, &format!("http://{addr}/hook"));
    // A queued task makes the dispatch gate read codexd's status.
    c.create(serde_json::json!({"title": "waits", "prompt": "hello"}));
    let d = r.wait_count(1, "the crash-loop notification")[0].clone();
    assert_signed(&d);
    let body = d.json();
    assert_eq!(body["kind"], "codexd.crash_loop", "{body:#}");
    assert_eq!(body["priority"], "high", "{body:#}");
    // The gate reads the status again (a new checkedAt, twice), still in the loop.
    let checked = |c: &TaskConductor| c.runtime()["daemon"]["codexHold"]["checkedAt"].clone();
    for _ in 0..2 {
        let before = checked(&c);
        wait_for(T, || (checked(&c) != before).then_some(())).expect("the gate read again");
    }
    assert_eq!(r.all().len(), 1, "announced once: {:?}", r.all());
}

#[test]
fn the_usage_limit_hold_and_its_release_are_announced_once_each() {
    let dir = TempDir::new("notify-hold");
    let codexd = start_running(with_stub(&Dirs::under(&dir.child("cx")), "normal"));
    let got = Arc::new(Mutex::new(Vec::new()));
    let r = Receiver::start("127.0.0.1:0", got);
    let addr = r.handle.as_ref().unwrap().local_addr();
    let c = conductor(&dir, &codexd.base, &format!("http://{addr}/hook"));
    let a = c.create(serde_json::json!({"title": "uses up the limit", "prompt": "limit:3"}));
    c.wait_status(&a, "succeeded", T);
    let b = c.create(serde_json::json!({"title": "after the reset", "prompt": "after"}));
    c.wait_status(&b, "succeeded", T);
    let of = |kind: &str| r.of_kind(kind);
    let released = wait_for(T, || Some(of("queue.released")).filter(|v| !v.is_empty()))
        .unwrap_or_else(|| panic!("no queue.released delivery: {:?}", r.all()));
    let held = of("queue.held");
    assert_eq!(held.len(), 1, "{held:#?}");
    assert_eq!(released.len(), 1, "{released:#?}");
    let until = held[0]["detail"]["until"].as_str().unwrap_or_default();
    assert!(!until.is_empty(), "{:#}", held[0]);
    assert_eq!(
        released[0]["detail"]["held_until"], until,
        "{:#}",
        released[0]
    );
    for d in r.all() {
        assert_signed(&d);
    }
}

#[test]
fn a_queue_held_by_codexds_child_not_running_is_announced_and_released() {
    let dir = TempDir::new("notify-child-hold");
    let flag = dir.join("child-exits");
    std::fs::write(&flag, "x").unwrap();
    let codexd = with_stub(
        &Dirs::under(&dir.child("cx")),
        &format!("exit-while:{}", flag.display()),
    )
    .env("BAA_CODEXD_RESTART_BASE_MS", "20")
    .env("BAA_CODEXD_RESTART_MAX_MS", "200")
    .env("BAA_CODEXD_CRASH_LOOP_MAX", "100000")
    .start();
    let got = Arc::new(Mutex::new(Vec::new()));
    let r = Receiver::start("127.0.0.1:0", got);
    let addr = r.handle.as_ref().unwrap().local_addr();
    let c = TaskConductor {
        d: tasks::spawn(&dir, &codexd.base, "mini-main", "primary")
            .env("BAA_NOTIFY_URLS", format!("http://{addr}/hook"))
            .env("BAA_NOTIFY_SECRET", SECRET)
            .env("BAA_NOTIFY_HOLD_GRACE_MS", "0")
            .start(),
    };
    let id = c.create(serde_json::json!({"title": "waits for the child", "prompt": "hello"}));
    let of = |kind: &str| r.of_kind(kind);
    let held = wait_for(T, || Some(of("queue.held")).filter(|v| !v.is_empty()))
        .unwrap_or_else(|| panic!("no queue.held: {:?}\n{}", r.all(), c.d.log()));
    assert_eq!(
        held[0]["detail"]["reason"], "codexd_child_not_ready",
        "{:#}",
        held[0]
    );
    assert_eq!(c.status(&id), "queued");
    // The child runs again: the task goes, and the release is announced once.
    std::fs::remove_file(&flag).unwrap();
    c.wait_status(&id, "succeeded", T);
    let released = wait_for(T, || Some(of("queue.released")).filter(|v| !v.is_empty()))
        .unwrap_or_else(|| panic!("no queue.released: {:?}", r.all()));
    assert_eq!(released[0]["detail"]["since"], held[0]["detail"]["since"]);
    assert_eq!(
        (of("queue.held").len(), of("queue.released").len()),
        (1, 1),
        "{:?}",
        r.all()
    );
}
