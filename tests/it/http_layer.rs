//! The HTTP layer's required properties, pinned against the real `baa-conductor` binary
//! over raw TCP: the connection cap and its fast 503, head/idle timeouts, head and body
//! limits, an accept loop that survives EMFILE, slow clients that cannot starve `/healthz`,
//! keep-alive and pipelining, request framing (Content-Length, chunked refusal, 100-continue),
//! and the graceful stop on SIGTERM/SIGINT.
//!
//! Every socket here has read and write timeouts, so a regression fails a test instead of
//! hanging the suite. Failures print what was expected next to what arrived.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::check::compare;
use crate::support::daemon::{wait_for, Daemon, Spawn, CONDUCTOR};
use crate::support::http::{post_h, raw, raw_status};
use crate::support::tmp::TempDir;

const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A conductor on a free loopback port with all its directories in a fresh temp dir.
fn conductor(extra: &[&str], env: &[(&str, &str)]) -> (TempDir, Daemon) {
    let tmp = TempDir::new("http");
    let mut spawn = Spawn::new(CONDUCTOR).arg("start").args([
        "--local-api",
        "http://127.0.0.1:0",
        "--state-dir",
        &tmp.join("state").display().to_string(),
        "--logs-dir",
        &tmp.join("logs").display().to_string(),
        "--runs-dir",
        &tmp.join("runs").display().to_string(),
        "--worktrees-dir",
        &tmp.join("worktrees").display().to_string(),
        "--tmp-dir",
        &tmp.join("tmp").display().to_string(),
    ]);
    spawn = spawn.args(extra);
    for (k, v) in env {
        spawn = spawn.env(k, v);
    }
    let daemon = spawn.start();
    (tmp, daemon)
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr.parse().expect("socket addr"), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

fn get_req(addr: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n")
}

fn get_req_close(addr: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
}

/// One parsed response read off a connection.
#[derive(Debug)]
struct RawResp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawResp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// Asserts a JSON error envelope with this status and code.
    fn expect_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.header("content-type")),
            (status, Some("application/json")),
            "expected a {status} JSON error, got {self:?}"
        );
        let v = self.json();
        assert_eq!(
            (&v["ok"], &v["error"]),
            (&Value::Bool(false), &Value::from(code)),
            "expected error {code:?}, got {v}"
        );
    }
}

/// Reads one response (status line, headers, Content-Length body). `Err` on EOF/timeout
/// before a complete response.
fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<RawResp> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidData, line.clone()))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(RawResp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Sends `bytes` on a fresh connection and reads one response.
fn exchange(addr: &str, bytes: &[u8]) -> RawResp {
    let mut s = connect(addr);
    s.write_all(bytes).expect("write request");
    let mut r = BufReader::new(s);
    read_response(&mut r).unwrap_or_else(|e| {
        panic!(
            "no response to {:?}: {e}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        )
    })
}

/// Reads until EOF; returns the bytes and whether EOF (not a timeout) ended the read.
fn read_to_eof(r: &mut impl Read) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match r.read(&mut chunk) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A reset after the server closed also means "closed".
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (out, true),
            Err(_) => return (out, false),
        }
    }
}

fn healthz_ok(addr: &str) -> bool {
    let text = raw(
        addr,
        format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(2),
    );
    raw_status(&text) == 200 && text.ends_with("\r\n\r\nok\n")
}

// ---- 1. thread per connection with a cap ---------------------------------------------

/// Opens a connection that is in the middle of a request: head sent with `Expect:
/// 100-continue` and no body yet. Returns once the server said `100 Continue`, i.e. once
/// its thread holds the request (busy, so never evicted).
fn busy_connection(addr: &str) -> BufReader<TcpStream> {
    let mut r = BufReader::new(connect(addr));
    let head = format!(
        "POST /v1/system/pause HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n"
    );
    r.get_mut().write_all(head.as_bytes()).unwrap();
    let mut interim = String::new();
    r.read_line(&mut interim).expect("interim status line");
    let mut blank = String::new();
    r.read_line(&mut blank).expect("end of interim head");
    assert_eq!(
        (interim.as_str(), blank.as_str()),
        ("HTTP/1.1 100 Continue\r\n", "\r\n"),
        "expected the server to take the request"
    );
    r
}

#[test]
fn connection_cap_answers_503_fast_when_every_slot_is_busy_and_recovers() {
    let (_tmp, d) = conductor(&["--max-connections", "8"], &[]);
    // Eight connections each in the middle of a request hold every slot.
    let mut busy: Vec<BufReader<TcpStream>> = (0..8).map(|_| busy_connection(&d.addr)).collect();
    let t0 = Instant::now();
    let over = exchange(&d.addr, get_req(&d.addr, "/healthz").as_bytes());
    let took = t0.elapsed();
    println!("9th connection answered {} in {took:?}", over.status);
    over.expect_error(503, "server_busy");
    assert_eq!(over.header("retry-after"), Some("1"), "{over:?}");
    assert!(
        took < Duration::from_secs(1),
        "the 503 must be immediate; expected < 1s, got {took:?}"
    );
    // The busy answer did not consume a slot: still busy while the eight are held.
    let again = exchange(&d.addr, get_req(&d.addr, "/healthz").as_bytes());
    assert_eq!(again.status, 503, "{again:?}");

    for s in &busy {
        let _ = s.get_ref().shutdown(Shutdown::Both);
    }
    busy.clear();
    let recovered = wait_for(Duration::from_secs(5), || healthz_ok(&d.addr).then_some(()));
    assert!(
        recovered.is_some(),
        "expected /healthz 200 once the busy connections closed; log:\n{}",
        d.log()
    );
    // And the full cap is usable again: eight concurrent keep-alive clients all served.
    // Slots are released by the connection threads as they notice the closes, so retry
    // for a moment rather than race them.
    let mut last = Vec::new();
    let all_served = wait_for(Duration::from_secs(5), || {
        let mut clients: Vec<BufReader<TcpStream>> =
            (0..8).map(|_| BufReader::new(connect(&d.addr))).collect();
        for c in &mut clients {
            let _ = c
                .get_mut()
                .write_all(get_req(&d.addr, "/healthz").as_bytes());
        }
        last = clients
            .iter_mut()
            .map(|c| read_response(c).map(|r| r.status).unwrap_or(0))
            .collect();
        (last == vec![200; 8]).then_some(())
    });
    assert!(
        all_served.is_some(),
        "all eight slots should serve again; expected eight 200s, last got {last:?}"
    );
}

/// What the slot-holding attack saw: answers by status, and connections the server closed.
#[derive(Debug, Default)]
struct AttackTally {
    connects: usize,
    closed_by_server: usize,
    statuses: Vec<u16>,
}

/// One local process holding connections open by trickling header bytes: `conns`
/// connections, each sent a partial head and then one more byte every `every`; a
/// connection the server closes is replaced at once. Counts its rounds in `rounds`; runs
/// until `stop`.
fn trickle_attack(
    addr: String,
    conns: usize,
    every: Duration,
    rounds: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> thread::JoinHandle<AttackTally> {
    use std::sync::atomic::Ordering;
    thread::Builder::new()
        .name("trickle-attack".into())
        .spawn(move || {
            let mut tally = AttackTally::default();
            let open = |tally: &mut AttackTally| -> Option<TcpStream> {
                let s = TcpStream::connect_timeout(&addr.parse().unwrap(), IO_TIMEOUT).ok()?;
                tally.connects += 1;
                s.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
                (&s).write_all(b"GET /healthz HTTP/1.1\r\nX-Trickle: ")
                    .ok()?;
                s.set_nonblocking(true).ok()?;
                Some(s)
            };
            let mut held: Vec<Option<TcpStream>> = (0..conns).map(|_| open(&mut tally)).collect();
            while !stop.load(Ordering::SeqCst) {
                let round = Instant::now();
                for slot in held.iter_mut() {
                    let alive = slot.as_mut().is_some_and(|s| {
                        let mut buf = [0u8; 512];
                        match s.read(&mut buf) {
                            Ok(0) => false,
                            Ok(n) => {
                                let text = String::from_utf8_lossy(&buf[..n]);
                                tally.statuses.push(raw_status(&text));
                                false
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                (&*s).write_all(b"a").is_ok()
                            }
                            Err(_) => false,
                        }
                    });
                    if !alive {
                        if slot.is_some() {
                            tally.closed_by_server += 1;
                        }
                        *slot = open(&mut tally);
                    }
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                }
                rounds.fetch_add(1, Ordering::SeqCst);
                // Pace the trickle (this is the attack's rhythm, not a wait for a result).
                if let Some(rest) = every.checked_sub(round.elapsed()) {
                    thread::sleep(rest);
                }
            }
            tally
        })
        .expect("spawn attacker")
}

/// Regression: one local process could hold every connection slot. 1000 connections
/// trickling a header byte every 2 s made `/healthz` answer 503 to 57 of 59 probes. Now a
/// full table evicts the connection that has waited longest for its head, so fresh
/// clients keep getting answers and nobody is answered 503.
#[test]
fn slot_holding_trickle_attack_cannot_lock_out_fresh_clients() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let (_tmp, d) = conductor(&["--max-connections", "64"], &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let attack = trickle_attack(
        d.addr.clone(),
        200,
        Duration::from_millis(250),
        rounds.clone(),
        stop.clone(),
    );
    // The table is full once the server starts evicting.
    let full = wait_for(Duration::from_secs(10), || {
        d.log().contains("connection table full").then_some(())
    });
    // Probe while the attack keeps trickling and reconnecting: at least 40 probes and
    // at least 6 attack rounds (some 1.5 s of it).
    let first_round = rounds.load(Ordering::SeqCst);
    let mut probes = Vec::new();
    while probes.len() < 40 || rounds.load(Ordering::SeqCst) < first_round + 6 {
        let t0 = Instant::now();
        let text = raw(
            &d.addr,
            format!(
                "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                d.addr
            )
            .as_bytes(),
            IO_TIMEOUT,
        );
        probes.push((raw_status(&text), t0.elapsed()));
        assert!(probes.len() < 100_000, "the attack stopped making rounds");
    }
    stop.store(true, Ordering::SeqCst);
    let tally = attack.join().expect("attacker thread");
    let mut ms: Vec<f64> = probes.iter().map(|(_, t)| t.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "{} probes under attack: p50 {:.1} ms, max {:.1} ms; attacker: {} connects, {} closed by the server, answers {:?}",
        ms.len(),
        ms[ms.len() / 2],
        ms[ms.len() - 1],
        tally.connects,
        tally.closed_by_server,
        tally.statuses
    );
    assert!(
        full.is_some(),
        "the attack never filled the table (no eviction logged); log:\n{}",
        d.log()
    );
    let failed: Vec<&(u16, Duration)> = probes.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "every fresh probe must be answered 200 while the slots are held; {} of {} were not: {failed:?}",
        failed.len(),
        probes.len()
    );
    assert!(
        !tally.statuses.contains(&503),
        "nobody may be answered 503 while connections are only waiting: {:?}",
        tally.statuses
    );
}

// ---- 2. timeouts and limits --------------------------------------------------------------

/// Connects, sends `prefix`, and measures how long until the server closes.
fn time_until_closed(addr: &str, prefix: &[u8], wait: Duration) -> (Duration, Vec<u8>, bool) {
    let mut s = connect(addr);
    s.set_read_timeout(Some(wait)).unwrap();
    let t0 = Instant::now();
    if !prefix.is_empty() {
        s.write_all(prefix).unwrap();
    }
    let (bytes, eof) = read_to_eof(&mut s);
    (t0.elapsed(), bytes, eof)
}

#[test]
fn head_timeout_is_configurable_and_total() {
    let (_tmp, d) = conductor(&["--head-timeout-ms", "1000"], &[]);
    // Silence: closed without a response after ~1 s.
    let (took, bytes, eof) = time_until_closed(&d.addr, b"", Duration::from_secs(5));
    println!("silent connection closed after {took:?} (head timeout 1 s)");
    assert!(
        eof && bytes.is_empty() && took >= Duration::from_millis(800),
        "expected a silent close after ~1s, got eof={eof} bytes={:?} after {took:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(took < Duration::from_secs(3), "expected ~1s, got {took:?}");

    // Slowloris: one header byte every 150 ms keeps each read() short, but the deadline is
    // for the whole head, so a 408 arrives after ~1 s anyway.
    let mut s = connect(&d.addr);
    let t0 = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").unwrap();
    let mut sent = 0;
    while t0.elapsed() < Duration::from_secs(4) {
        thread::sleep(Duration::from_millis(150));
        if s.write_all(b"a").is_err() {
            break;
        }
        sent += 1;
        // Stop trickling once the server has answered.
        s.set_nonblocking(true).unwrap();
        let mut peek = [0u8; 1];
        let answered = matches!(s.peek(&mut peek), Ok(n) if n > 0);
        s.set_nonblocking(false).unwrap();
        if answered {
            break;
        }
    }
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r).expect("a 408 for the trickled head");
    let took = t0.elapsed();
    println!(
        "trickled head ({sent} bytes) answered {} after {took:?}",
        resp.status
    );
    resp.expect_error(408, "request_timeout");
    assert!(
        took < Duration::from_millis(2500),
        "the head deadline must be total; expected ~1s, got {took:?}"
    );
}

#[test]
fn idle_keep_alive_connection_is_closed() {
    let (_tmp, d) = conductor(&["--idle-timeout-ms", "1000"], &[]);
    let s = connect(&d.addr);
    let mut r = BufReader::new(s);
    r.get_mut()
        .write_all(get_req(&d.addr, "/healthz").as_bytes())
        .unwrap();
    let first = read_response(&mut r).expect("first response");
    assert_eq!(
        (first.status, first.header("connection")),
        (200, Some("keep-alive")),
        "{first:?}"
    );
    let t0 = Instant::now();
    let (rest, eof) = read_to_eof(&mut r);
    let took = t0.elapsed();
    println!("idle keep-alive connection closed after {took:?} (idle timeout 1 s)");
    assert!(
        eof && rest.is_empty() && took >= Duration::from_millis(800),
        "expected a silent close after ~1s idle, got eof={eof} rest={:?} after {took:?}",
        String::from_utf8_lossy(&rest)
    );
    assert!(took < Duration::from_secs(3), "expected ~1s, got {took:?}");
}

#[test]
fn oversized_head_gets_431() {
    let (_tmp, d) = conductor(&[], &[]);
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nX-Big: {}\r\n\r\n",
        d.addr,
        "a".repeat(33 * 1024)
    );
    exchange(&d.addr, big.as_bytes()).expect_error(431, "headers_too_large");

    // A head that never ends is cut at the limit too, not buffered forever.
    let mut s = connect(&d.addr);
    s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    let line = format!("X-Filler: {}\r\n", "b".repeat(1000));
    for _ in 0..40 {
        if s.write_all(line.as_bytes()).is_err() {
            break;
        }
    }
    let mut r = BufReader::new(s);
    read_response(&mut r)
        .expect("a 431 for a 40 KB head")
        .expect_error(431, "headers_too_large");

    // Just under the limit is fine.
    let ok = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nX-Big: {}\r\n\r\n",
        d.addr,
        "a".repeat(30 * 1024)
    );
    let resp = exchange(&d.addr, ok.as_bytes());
    assert_eq!((resp.status, resp.body.as_str()), (200, "ok\n"), "{resp:?}");
}

#[test]
fn too_many_header_fields_get_431() {
    let (_tmp, d) = conductor(&[], &[]);
    let with_fields = |n: usize| {
        let mut req = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n", d.addr);
        for i in 1..n {
            req.push_str(&format!("X-F{i}: v\r\n"));
        }
        req.push_str("\r\n");
        req
    };
    // 64 fields (Host included) is the limit; 65 is over.
    let at = exchange(&d.addr, with_fields(64).as_bytes());
    assert_eq!((at.status, at.body.as_str()), (200, "ok\n"), "{at:?}");
    exchange(&d.addr, with_fields(65).as_bytes()).expect_error(431, "headers_too_large");
}

#[test]
fn body_over_limit_gets_413_without_reading_it() {
    let (_tmp, d) = conductor(&["--max-body-bytes", "2048"], &[]);
    // Claims 10 MB, sends 1 KB in the first write and more afterwards; the 413 must come
    // straight after the head, not after a 10 MB read (which would time the client out).
    let mut s = connect(&d.addr);
    let t0 = Instant::now();
    let head = format!(
        "POST /v1/system/pause HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n",
        d.addr
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&[b' '; 1024]).unwrap();
    // The server has decided once its answer starts to arrive.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut first = [0u8; 1];
    assert!(
        matches!(s.peek(&mut first), Ok(1)),
        "no answer to the over-limit head; log:\n{}",
        d.log()
    );
    // More body after the server already decided: must not cost us the 413.
    let _ = s.write_all(&[b' '; 8192]);
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r)
        .unwrap_or_else(|e| panic!("expected a 413 response, got error {e}; log:\n{}", d.log()));
    println!("413 after {:?}", t0.elapsed());
    resp.expect_error(413, "payload_too_large");
    assert_eq!(resp.header("connection"), Some("close"), "{resp:?}");
    // Within the limit works.
    let ok = post_h(
        &d.url("/v1/system/pause"),
        &serde_json::json!({"requested_by": "it", "reason": "x".repeat(100)}),
        &[],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
}

// ---- 3. file descriptors: a cap below the limit, and accept survives EMFILE ----------------

/// A conductor started under `ulimit -n <nofile>` with extra flags.
fn conductor_with_nofile(nofile: u32, extra: &str) -> (TempDir, Daemon) {
    let tmp = TempDir::new("nofile");
    let script = format!(
        "ulimit -n {nofile} || exit 99; exec \"$0\" start --local-api http://127.0.0.1:0 --state-dir {0}/state --logs-dir {0}/logs --runs-dir {0}/runs --worktrees-dir {0}/wt --tmp-dir {0}/tmp {extra}",
        tmp.str()
    );
    let d = Spawn::new("sh").args(["-c", &script, CONDUCTOR]).start();
    (tmp, d)
}

/// Regression: under `nofile=64` a connection flood used every descriptor: new clients
/// hung 4 s in the backlog and the lease renew failed with EMFILE. The cap now comes from
/// the open-files limit with descriptors kept in reserve, so fresh clients are answered at
/// once and the lease keeps renewing.
#[test]
fn low_nofile_flood_leaves_fds_for_fresh_clients_and_the_lease() {
    let (_tmp, d) = conductor_with_nofile(64, "--lease-renew-interval-ms 100");
    assert!(healthz_ok(&d.addr), "healthy before the flood");
    // The warning goes to stderr, which the test reads on its own thread: wait for it.
    let lowered = wait_for(Duration::from_secs(10), || {
        d.log()
            .contains("serving at most 16 connections")
            .then_some(())
    });
    assert!(
        lowered.is_some(),
        "expected the cap lowered to (64 - 32 reserved) / 2; log:\n{}",
        d.log()
    );
    let lease = || -> Value {
        let text = raw(
            &d.addr,
            get_req_close(&d.addr, "/v1/runtime").as_bytes(),
            IO_TIMEOUT,
        );
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        let v: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("/v1/runtime under the flood ({e}): {text:?}"));
        v["data"]["daemon"]["lease"].clone()
    };
    // 200 connections with half a head each: far more than 64 descriptors.
    let mut held = Vec::new();
    for _ in 0..200 {
        if let Ok(mut s) =
            TcpStream::connect_timeout(&d.addr.parse().unwrap(), Duration::from_millis(500))
        {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nX-Held: ");
            held.push(s);
        }
    }
    let mut probes = Vec::new();
    for _ in 0..20 {
        let t0 = Instant::now();
        let ok = healthz_ok(&d.addr);
        probes.push((ok, t0.elapsed()));
    }
    // Several renewals (100 ms apart) go by with the flood still connected.
    let mut ticks = std::collections::BTreeSet::new();
    let mut last = Value::Null;
    let renewing = wait_for(Duration::from_secs(10), || {
        last = lease();
        if last["renew_failures"] == 0 {
            ticks.insert(last["last_tick_at"].to_string());
        }
        (ticks.len() >= 5).then_some(())
    });
    println!(
        "held {} connections; probes {probes:?}; lease {last}",
        held.len()
    );
    assert!(
        probes
            .iter()
            .all(|(ok, took)| *ok && *took < Duration::from_secs(1)),
        "fresh clients must get /healthz at once under the flood: {probes:?}"
    );
    assert!(
        renewing.is_some(),
        "expected five successful lease renewals under the flood, last lease {last}; log:\n{}",
        d.log()
    );
    assert_eq!(
        (
            d.log().contains("renew attempt"),
            d.log().contains("Too many open files")
        ),
        (false, false),
        "no renew may fail and nothing may hit EMFILE; log:\n{}",
        d.log()
    );
    drop(held);
}

/// Sets a running process's open-files limit (soft and hard).
#[cfg(target_os = "linux")]
fn set_nofile(pid: u32, n: u64) {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: prlimit reads the struct we own; no old value is asked for.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &lim,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// The accept loop must outlive EMFILE. The cap normally keeps descriptors in reserve, so
/// the limit is lowered under the running daemon (its cap was sized for the old one) to
/// four more than it uses: held connections then exhaust it.
#[cfg(target_os = "linux")]
#[test]
fn accept_loop_survives_fd_exhaustion() {
    let (_tmp, d) = conductor(&[], &[]);
    assert!(healthz_ok(&d.addr), "healthy before the flood");
    let fd_dir = format!("/proc/{}/fd", d.pid());
    let in_use = std::fs::read_dir(&fd_dir)
        .unwrap_or_else(|e| panic!("{fd_dir}: {e}"))
        .count() as u64;
    set_nofile(d.pid(), in_use + 4);
    let mut held = Vec::new();
    for _ in 0..20 {
        if let Ok(s) =
            TcpStream::connect_timeout(&d.addr.parse().unwrap(), Duration::from_millis(500))
        {
            held.push(s);
        }
    }
    let saw_emfile = wait_for(Duration::from_secs(5), || {
        d.log().contains("accept failed").then_some(())
    });
    println!(
        "{in_use} fds in use at rest; held {} connections",
        held.len()
    );
    assert!(
        saw_emfile.is_some(),
        "expected the daemon to log an accept failure (EMFILE) with 20 connections and a limit of {}; log:\n{}",
        in_use + 4,
        d.log()
    );
    let mut d = d;
    assert!(
        matches!(d.child.try_wait(), Ok(None)),
        "the daemon died under fd exhaustion: {:?}; log:\n{}",
        d.child.try_wait(),
        d.log()
    );
    for s in &held {
        let _ = s.shutdown(Shutdown::Both);
    }
    drop(held);
    let back = wait_for(Duration::from_secs(10), || {
        healthz_ok(&d.addr).then_some(())
    });
    assert!(
        back.is_some(),
        "expected /healthz 200 after the connections closed; log:\n{}",
        d.log()
    );
    println!(
        "accept failures logged: {}",
        d.log().matches("accept failed").count()
    );
    let status = d.terminate(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log());
}

// ---- 4. slow clients cannot starve /healthz --------------------------------------------------

#[test]
fn stalled_half_sent_requests_do_not_delay_healthz() {
    let (_tmp, d) = conductor(&[], &[]);
    let stalled_head = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\nX-Slow: ", d.addr);
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let mut s = connect(&d.addr);
        s.write_all(stalled_head.as_bytes()).unwrap();
        stalled.push(s);
    }
    let t0 = Instant::now();
    let resp = exchange(&d.addr, get_req(&d.addr, "/healthz").as_bytes());
    let took = t0.elapsed();
    println!(
        "/healthz with 200 stalled clients: {} in {took:?}",
        resp.status
    );
    assert_eq!((resp.status, resp.body.as_str()), (200, "ok\n"), "{resp:?}");
    assert!(
        took < Duration::from_secs(2),
        "expected /healthz in < 2s behind 200 stalled clients, got {took:?}"
    );
    // The stalled ones are still being held (not dropped to make room): each still gets its
    // answer when it finishes its head.
    let mut s = stalled.pop().unwrap();
    s.write_all(b"1\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let late = read_response(&mut r).expect("the stalled request completes");
    assert_eq!(late.status, 200, "{late:?}");
}

// ---- 5. HTTP/1.1 semantics ---------------------------------------------------------------

#[test]
fn keep_alive_serves_sequential_and_pipelined_requests() {
    let (_tmp, d) = conductor(&[], &[]);
    let mut r = BufReader::new(connect(&d.addr));
    for i in 0..5 {
        r.get_mut()
            .write_all(get_req(&d.addr, "/healthz").as_bytes())
            .unwrap();
        let resp = read_response(&mut r).unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(
            (resp.status, resp.body.as_str(), resp.header("connection")),
            (200, "ok\n", Some("keep-alive")),
            "request {i} on one connection"
        );
    }
    // Two requests in one write: two responses, in order.
    let two = format!(
        "{}{}",
        get_req(&d.addr, "/healthz"),
        get_req(&d.addr, "/v1/system/state")
    );
    r.get_mut().write_all(two.as_bytes()).unwrap();
    let a = read_response(&mut r).expect("first pipelined response");
    let b = read_response(&mut r).expect("second pipelined response");
    assert_eq!((a.status, a.body.as_str()), (200, "ok\n"), "{a:?}");
    assert_eq!(b.status, 200, "{b:?}");
    assert_eq!(b.json()["data"]["mode"], "running", "{b:?}");
    // A pipelined POST with a body followed by a GET: the body boundary is respected.
    let body = r#"{"requested_by":"pipeline","reason":"two in one"}"#;
    let post_then_get = format!(
        "POST /v1/system/pause HTTP/1.1\r\nHost: {0}\r\nContent-Type: application/json\r\nContent-Length: {1}\r\n\r\n{body}{2}",
        d.addr,
        body.len(),
        get_req(&d.addr, "/v1/system/state")
    );
    r.get_mut().write_all(post_then_get.as_bytes()).unwrap();
    let p = read_response(&mut r).expect("pipelined POST response");
    let g = read_response(&mut r).expect("pipelined GET response");
    assert_eq!(
        (p.status, &p.json()["data"]["mode"]),
        (200, &Value::from("paused")),
        "{p:?}"
    );
    assert_eq!(
        (&g.json()["data"]["mode"], &g.json()["data"]["requested_by"]),
        (&Value::from("paused"), &Value::from("pipeline")),
        "{g:?}"
    );
}

#[test]
fn connection_close_and_http10_close_after_one_response() {
    let (_tmp, d) = conductor(&[], &[]);
    for (what, req) in [
        (
            "Connection: close",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                d.addr
            ),
        ),
        (
            "HTTP/1.0",
            format!("GET /healthz HTTP/1.0\r\nHost: {}\r\n\r\n", d.addr),
        ),
    ] {
        let mut s = connect(&d.addr);
        let t0 = Instant::now();
        s.write_all(req.as_bytes()).unwrap();
        let (bytes, eof) = read_to_eof(&mut s);
        let took = t0.elapsed();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            eof && took < Duration::from_secs(2),
            "{what}: expected the server to close right after the response, got eof={eof} after {took:?}: {text:?}"
        );
        assert_eq!(
            (raw_status(&text), text.matches("HTTP/1.1 ").count()),
            (200, 1),
            "{what}: one 200 response expected: {text:?}"
        );
        assert!(text.contains("Connection: close\r\n"), "{what}: {text:?}");
    }
    // HTTP/1.0 asking for keep-alive gets it.
    let mut r = BufReader::new(connect(&d.addr));
    let req = format!(
        "GET /healthz HTTP/1.0\r\nHost: {}\r\nConnection: keep-alive\r\n\r\n",
        d.addr
    );
    for i in 0..2 {
        r.get_mut().write_all(req.as_bytes()).unwrap();
        let resp = read_response(&mut r).unwrap_or_else(|e| panic!("1.0 keep-alive #{i}: {e}"));
        assert_eq!(resp.status, 200, "{resp:?}");
    }
}

#[test]
fn content_length_json_body_is_read() {
    let (_tmp, d) = conductor(&[], &[]);
    let body = r#"{"requested_by":"raw-client","reason":"maintenance"}"#;
    let req = format!(
        "POST /v1/system/pause HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        d.addr,
        body.len()
    );
    // Head and body in separate writes, the body split too.
    let mut s = connect(&d.addr);
    s.write_all(req.as_bytes()).unwrap();
    thread::sleep(Duration::from_millis(50));
    s.write_all(&body.as_bytes()[..10]).unwrap();
    thread::sleep(Duration::from_millis(50));
    s.write_all(&body.as_bytes()[10..]).unwrap();
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r).expect("pause response");
    assert_eq!(resp.status, 200, "{resp:?}");
    let v = resp.json();
    assert_eq!(
        (
            &v["data"]["mode"],
            &v["data"]["requested_by"],
            &v["data"]["reason"]
        ),
        (
            &Value::from("paused"),
            &Value::from("raw-client"),
            &Value::from("maintenance")
        ),
        "{v}"
    );
    // Malformed JSON in a well-framed body is a 400 invalid_json, and the connection lives on.
    let bad = "{not json";
    r.get_mut()
        .write_all(
            format!(
                "POST /v1/system/resume HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n{bad}",
                d.addr,
                bad.len()
            )
            .as_bytes(),
        )
        .unwrap();
    read_response(&mut r)
        .expect("invalid json response")
        .expect_error(400, "invalid_json");
    r.get_mut()
        .write_all(get_req(&d.addr, "/healthz").as_bytes())
        .unwrap();
    assert_eq!(
        read_response(&mut r).expect("healthz after 400").status,
        200
    );
}

#[test]
fn chunked_body_gets_411_and_is_never_read_as_a_request() {
    let (_tmp, d) = conductor(&[], &[]);
    // The chunk data is itself a valid request: a server that misframed the body would
    // answer it as a second response (request smuggling).
    let inner = get_req(&d.addr, "/healthz");
    let req = format!(
        "POST /v1/system/pause HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\n{inner}",
        d.addr,
        inner.len()
    );
    let mut s = connect(&d.addr);
    s.write_all(req.as_bytes()).unwrap();
    let (bytes, eof) = read_to_eof(&mut s);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(
        eof,
        "expected the connection closed after the 411: {text:?}"
    );
    assert_eq!(
        (raw_status(&text), text.matches("HTTP/1.1 ").count()),
        (411, 1),
        "exactly one 411 response expected: {text:?}"
    );
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert_eq!(v["error"], "length_required", "{v}");
    // And the pause never happened.
    let state = exchange(&d.addr, get_req(&d.addr, "/v1/system/state").as_bytes());
    assert_eq!(state.json()["data"]["mode"], "running", "{state:?}");
}

#[test]
fn conflicting_content_length_gets_400() {
    let (_tmp, d) = conductor(&[], &[]);
    let req = format!(
        "POST /v1/system/pause HTTP/1.1\r\nHost: {}\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{{}}",
        d.addr
    );
    exchange(&d.addr, req.as_bytes()).expect_error(400, "bad_request");
    let req = format!(
        "POST /v1/system/pause HTTP/1.1\r\nHost: {}\r\nContent-Length: -1\r\n\r\n",
        d.addr
    );
    exchange(&d.addr, req.as_bytes()).expect_error(400, "bad_request");
}

/// Regression: `Content-Length: +2` was read as 2 (Rust's integer parse takes a sign); a
/// proxy in front may frame it differently (request smuggling). Only digits are a length.
#[test]
fn content_length_with_a_sign_gets_400() {
    let (_tmp, d) = conductor(&[], &[]);
    for value in ["+2", " 2 2", "0x2", "2,2"] {
        let req = format!(
            "POST /v1/system/pause HTTP/1.1\r\nHost: {}\r\nContent-Length: {value}\r\n\r\n{{}}",
            d.addr
        );
        let resp = exchange(&d.addr, req.as_bytes());
        assert_eq!(
            (resp.status, resp.json()["error"].as_str()),
            (400, Some("bad_request")),
            "Content-Length {value:?}: {resp:?}"
        );
    }
    // And the pause never happened.
    let state = exchange(&d.addr, get_req(&d.addr, "/v1/system/state").as_bytes());
    assert_eq!(state.json()["data"]["mode"], "running", "{state:?}");
}

/// Regression: a request with two `Host` headers was routed by the first one.
#[test]
fn duplicate_host_gets_400() {
    let (_tmp, d) = conductor(&[], &[]);
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: {0}\r\nHost: {0}\r\n\r\n",
        d.addr
    );
    let resp = exchange(&d.addr, req.as_bytes());
    resp.expect_error(400, "bad_request");
    assert!(resp.body.contains("Duplicate Host"), "{resp:?}");
}

/// Regression: a client that sent half its body and then closed its sending side got a
/// silent close instead of an answer it could still read.
#[test]
fn body_cut_short_by_client_eof_gets_400_before_close() {
    let (_tmp, d) = conductor(&[], &[]);
    let mut s = connect(&d.addr);
    let req = format!(
        "POST /v1/system/pause HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"requested_by\":",
        d.addr
    );
    s.write_all(req.as_bytes()).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut r = BufReader::new(s);
    let resp = read_response(&mut r).expect("a 400 for the truncated body");
    resp.expect_error(400, "bad_request");
    assert!(
        resp.body.contains("ended after 16 of 100 bytes"),
        "{resp:?}"
    );
    let (rest, eof) = read_to_eof(&mut r);
    assert!(
        eof && rest.is_empty(),
        "expected a clean close after the 400"
    );
    let state = exchange(&d.addr, get_req(&d.addr, "/v1/system/state").as_bytes());
    assert_eq!(state.json()["data"]["mode"], "running", "{state:?}");
}

/// Regression: after a `Connection: close` response the server closed at once with the
/// client's pipelined requests still unread, so the kernel answered RST — 300 of 300
/// clients saw a reset instead of a clean end (and a client may lose the response). The
/// normal close now lingers like the error path: half-close, drain, then close.
#[test]
fn pipelined_request_behind_connection_close_gets_no_rst() {
    let (_tmp, d) = conductor(&[], &[]);
    let first = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        d.addr
    );
    // The first request, then a pipelined burst larger than the server reads at once:
    // the rest is still unread in the socket when the first response is done.
    let burst = format!(
        "{first}{}",
        get_req(&d.addr, "/v1/system/state").repeat(400)
    );
    let mut outcomes = Vec::new();
    for _ in 0..100 {
        let mut s = connect(&d.addr);
        let _ = s.write_all(burst.as_bytes());
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            match s.read(&mut chunk) {
                Ok(0) => break "eof",
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break "reset",
                Err(_) => break "timeout",
            }
        };
        let text = String::from_utf8_lossy(&out).into_owned();
        outcomes.push((end, raw_status(&text), text.matches("HTTP/1.1 ").count()));
    }
    let bad: Vec<_> = outcomes.iter().filter(|o| **o != ("eof", 200, 1)).collect();
    assert!(
        bad.is_empty(),
        "each client must read exactly one 200 and then a clean EOF; {} of 100 did not: {bad:?}",
        bad.len()
    );
}

/// Regression: the host-ops bearer check took only `Bearer ` and `bearer `; the scheme is
/// case-insensitive (RFC 9110 §11.1).
#[test]
fn bearer_scheme_matches_case_insensitively() {
    let (_tmp, d) = conductor(&[], &[("BAA_SHARED_TOKEN", TOKEN)]);
    let body = r#"{"command":"echo hi"}"#;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let req = format!(
            "POST /v1/exec HTTP/1.1\r\nHost: {}\r\nAuthorization: {scheme} {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            d.addr,
            body.len()
        );
        let resp = exchange(&d.addr, req.as_bytes());
        assert_eq!(
            (resp.status, &resp.json()["data"]["result"]["stdout"]),
            (200, &Value::from("hi\n")),
            "scheme {scheme:?}: {resp:?}"
        );
    }
    // Another scheme with the right token is still refused.
    let req = format!(
        "POST /v1/exec HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
        d.addr,
        body.len()
    );
    exchange(&d.addr, req.as_bytes()).expect_error(401, "unauthorized");
}

#[test]
fn malformed_requests_get_400_json() {
    let (_tmp, d) = conductor(&[], &[]);
    let mut noise = Vec::new();
    let mut x: u32 = 0x9e37_79b9;
    for _ in 0..512 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push((x & 0xff) as u8);
    }
    noise.extend_from_slice(b"\r\n\r\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad request line", b"GET\r\n\r\n".to_vec()),
        ("space in target", b"GET /a b c HTTP/1.1\r\n\r\n".to_vec()),
        ("bad version", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n".to_vec()),
        (
            "TLS hello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        ),
        ("random bytes", noise),
        (
            "header without colon",
            format!("GET /healthz HTTP/1.1\r\nHost: {}\r\nbogus\r\n\r\n", d.addr).into_bytes(),
        ),
    ];
    for (what, bytes) in cases {
        let text = raw(&d.addr, &bytes, Duration::from_secs(5));
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        assert_eq!(
            (raw_status(&text), &v["error"]),
            (400, &Value::from("bad_request")),
            "{what}: expected a 400 bad_request JSON, got {text:?}"
        );
    }
}

#[test]
fn expect_100_continue_then_the_response() {
    let (_tmp, d) = conductor(&[], &[]);
    let body = r#"{"requested_by":"curl","reason":"expect"}"#;
    let head = format!(
        "POST /v1/system/pause HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        d.addr,
        body.len()
    );
    let mut r = BufReader::new(connect(&d.addr));
    r.get_mut().write_all(head.as_bytes()).unwrap();
    let mut interim = String::new();
    r.read_line(&mut interim).expect("interim status line");
    let mut blank = String::new();
    r.read_line(&mut blank).expect("end of interim head");
    assert_eq!(
        (interim.as_str(), blank.as_str()),
        ("HTTP/1.1 100 Continue\r\n", "\r\n"),
        "expected 100 Continue before sending the body"
    );
    r.get_mut().write_all(body.as_bytes()).unwrap();
    let resp = read_response(&mut r).expect("final response");
    assert_eq!(
        (resp.status, &resp.json()["data"]["requested_by"]),
        (200, &Value::from("curl")),
        "{resp:?}"
    );
}

// ---- 5b. WebSocket protocol errors ---------------------------------------------------------

/// A raw WebSocket connection to `/ws/firefox` past its handshake.
fn ws_raw(addr: &str) -> BufReader<TcpStream> {
    let mut r = BufReader::new(connect(addr));
    let req = format!(
        "GET /ws/firefox HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    r.get_mut().write_all(req.as_bytes()).unwrap();
    let mut line = String::new();
    r.read_line(&mut line).expect("handshake status");
    assert!(line.starts_with("HTTP/1.1 101"), "handshake: {line:?}");
    loop {
        line.clear();
        r.read_line(&mut line).expect("handshake header");
        if line == "\r\n" {
            return r;
        }
    }
}

/// A masked client frame: `first` is the FIN/RSV/opcode byte.
fn ws_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads server frames until a Close frame; returns its code, or what ended the stream.
fn ws_close_code(r: &mut BufReader<TcpStream>) -> Result<u16, String> {
    loop {
        let mut head = [0u8; 2];
        r.read_exact(&mut head)
            .map_err(|e| format!("stream ended without a close frame: {e}"))?;
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                r.read_exact(&mut b).map_err(|e| e.to_string())?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                r.read_exact(&mut b).map_err(|e| e.to_string())?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        r.read_exact(&mut payload).map_err(|e| e.to_string())?;
        if head[0] & 0x0f == 0x8 {
            return payload
                .get(..2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .ok_or_else(|| "close frame without a code".to_string());
        }
    }
}

/// Regression: a WebSocket client that broke the protocol saw its TCP connection dropped
/// with no close frame. It now gets the RFC 6455 code: 1002 for a protocol error, 1007
/// for a text message that is not UTF-8, 1009 for a message over the limit.
#[test]
fn websocket_protocol_errors_close_with_1002_1007_1009() {
    let (_tmp, d) = conductor(&[], &[]);
    let huge_head = {
        // Announces 2 MiB (the limit is 1 MiB) and sends only the first 64 KiB of it.
        let mut f = vec![0x81u8, 0x80 | 127];
        f.extend_from_slice(&(2u64 * 1024 * 1024).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend(std::iter::repeat_n(b'a', 64 * 1024));
        f
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("reserved bit set", ws_frame(0xC1, b"{}"), 1002),
        ("unmasked client frame", vec![0x81, 0x02, b'{', b'}'], 1002),
        ("unknown opcode", ws_frame(0x83, b"x"), 1002),
        ("text not UTF-8", ws_frame(0x81, &[0xff, 0xfe, 0xfd]), 1007),
        ("message over the limit", huge_head, 1009),
    ];
    for (what, bytes, want) in cases {
        let mut r = ws_raw(&d.addr);
        let _ = r.get_mut().write_all(&bytes);
        let got = ws_close_code(&mut r);
        assert_eq!(got, Ok(want), "{what}");
    }
    // The bridge still works for a well-behaved client afterwards.
    let mut r = ws_raw(&d.addr);
    r.get_mut()
        .write_all(&ws_frame(0x88, &1000u16.to_be_bytes()))
        .unwrap();
    assert_eq!(ws_close_code(&mut r), Ok(1000), "a normal close is echoed");
}

// ---- 6. graceful stop ----------------------------------------------------------------------

const TOKEN: &str = "it-token-0123456789abcdef0123456789abcdef";

#[test]
fn sigterm_lets_inflight_request_finish_and_exits_0() {
    let (tmp, mut d) = conductor(&[], &[("BAA_SHARED_TOKEN", TOKEN)]);
    // An idle keep-alive connection must not hold the stop for its idle timeout.
    let mut idle = BufReader::new(connect(&d.addr));
    idle.get_mut()
        .write_all(get_req(&d.addr, "/healthz").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut idle).expect("idle warm-up").status, 200);

    let started = tmp.join("started");
    let body = serde_json::json!({
        "command": format!("touch '{}'; sleep 1; echo done", started.display()),
        "timeoutMs": 5000,
    })
    .to_string();
    let req = format!(
        "POST /v1/exec HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        d.addr,
        body.len()
    );
    let addr = d.addr.clone();
    let slow = thread::spawn(move || {
        let mut s = connect(&addr);
        s.write_all(req.as_bytes()).unwrap();
        let (bytes, _) = read_to_eof(&mut s);
        String::from_utf8_lossy(&bytes).into_owned()
    });
    // In flight: the command has started.
    let running = wait_for(Duration::from_secs(10), || started.exists().then_some(()));
    assert!(
        running.is_some(),
        "the exec never started; log:\n{}",
        d.log()
    );
    let t0 = Instant::now();
    d.signal(libc::SIGTERM);
    // Stop has begun once the listener is gone; from then on nobody new is served.
    let refused = wait_for(Duration::from_secs(3), || {
        match TcpStream::connect_timeout(&d.addr.parse().unwrap(), Duration::from_millis(200)) {
            Err(_) => Some("refused".to_string()),
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_millis(500))).ok();
                let _ = s.write_all(get_req(&d.addr, "/healthz").as_bytes());
                let (bytes, _) = read_to_eof(&mut s);
                let text = String::from_utf8_lossy(&bytes).into_owned();
                // Accepted before the stop reached the listener: fine, keep probing.
                (raw_status(&text) != 200).then_some(format!("closed: {text:?}"))
            }
        }
    });
    println!("new connection after SIGTERM: {refused:?}");
    assert!(
        refused.is_some(),
        "expected new connections refused or closed after SIGTERM"
    );
    let (rest, eof) = read_to_eof(&mut idle);
    assert!(
        eof && rest.is_empty(),
        "the idle keep-alive connection should be closed by the stop, got eof={eof} {:?}",
        String::from_utf8_lossy(&rest)
    );
    let status = d.wait_exit(Duration::from_secs(12));
    let took = t0.elapsed();
    let text = slow.join().expect("slow client thread");
    println!("exit {status:?} {took:?} after SIGTERM; slow response: {text:?}");
    assert_eq!(raw_status(&text), 200, "in-flight exec cut off: {text:?}");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    assert_eq!(
        v["data"]["result"]["stdout"], "done\n",
        "expected the exec output in the response: {text:?}"
    );
    assert!(text.contains("Connection: close\r\n"), "{text:?}");
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log());
    assert!(
        took < Duration::from_secs(5),
        "expected exit soon after the 1 s request, got {took:?}"
    );
}

#[test]
fn sigint_exits_0() {
    let (_tmp, mut d) = conductor(&[], &[]);
    compare("healthz answered ok", healthz_ok(&d.addr), true);
    let t0 = Instant::now();
    d.signal(libc::SIGINT);
    let status = d.wait_exit(Duration::from_secs(12));
    println!("SIGINT → {status:?} after {:?}", t0.elapsed());
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log());
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}
