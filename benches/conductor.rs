//! Numbers for the release `baa-conductor`, printed, never asserted: start-to-`/healthz`
//! time, idle RSS and thread count, release binary sizes, requests/s with p50/p99
//! latency for `GET /healthz` and `GET /v1/system/state` over 16 and 64 keep-alive
//! connections, and `/healthz` latency for fresh clients while 1000 connections trickle
//! header bytes to hold every slot (issue 9's slot-holding attack; goal p99 < 100 ms, no
//! 503). Run with `scripts/bench/conductor.sh` (or `cargo bench --bench conductor`).
//!
//! The load clients are raw TCP on plain threads, one connection each, sending the same
//! prebuilt request back-to-back for a fixed time; client and server share the machine,
//! so on a 2-core box the figures are a floor, not a ceiling.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const CONDUCTOR: &str = env!("CARGO_BIN_EXE_baa-conductor");
const BINARIES: [&str; 3] = [
    env!("CARGO_BIN_EXE_baa-conductor"),
    env!("CARGO_BIN_EXE_baa-codexd"),
    env!("CARGO_BIN_EXE_baa-status-api"),
];
const LOAD_TIME: Duration = Duration::from_secs(3);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A conductor process on a fixed port, killed and reaped on drop.
struct Conductor {
    child: Child,
    addr: String,
}

impl Drop for Conductor {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(12);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Spawns the conductor and returns it with the time from spawn to the first 200 on
/// `/healthz`.
fn start(dir: &Path) -> (Conductor, Duration) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let t0 = Instant::now();
    let child = Command::new(CONDUCTOR)
        .args(["start", "--local-api", &format!("http://{addr}")])
        .args([
            "--root",
            &dir.display().to_string(),
            "--max-connections",
            "512",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn baa-conductor");
    let conductor = Conductor { child, addr };
    let request = get_request(&conductor.addr, "/healthz");
    loop {
        if let Ok(mut s) = TcpStream::connect(&conductor.addr) {
            s.set_read_timeout(Some(IO_TIMEOUT)).ok();
            s.set_write_timeout(Some(IO_TIMEOUT)).ok();
            let mut buf = Vec::new();
            if s.write_all(&request).is_ok() && read_one(&mut s, &mut buf) == Some(200) {
                return (conductor, t0.elapsed());
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "baa-conductor did not answer /healthz within 10 s"
        );
        thread::sleep(Duration::from_micros(500));
    }
}

fn get_request(addr: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes()
}

/// Reads exactly one response (Content-Length framed) and returns its status. `buf`
/// carries bytes between calls (there are none with one request in flight, but be exact).
fn read_one(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<u16> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).ok()?;
            let status = head.split(' ').nth(1)?.parse().ok()?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                let n = s.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..total);
            return Some(status);
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

struct LoadResult {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    /// Sorted per-request latencies in microseconds.
    latencies: Vec<u32>,
}

impl LoadResult {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies[i]) / 1000.0
    }
}

fn load(addr: &str, path: &str, conns: usize) -> LoadResult {
    let request = get_request(addr, path);
    let started = Instant::now();
    let deadline = started + LOAD_TIME;
    let workers: Vec<_> = (0..conns)
        .map(|i| {
            let request = request.clone();
            let addr = addr.to_string();
            thread::Builder::new()
                .name(format!("bench-client-{i}"))
                .spawn(move || {
                    let mut lat = Vec::with_capacity(64 * 1024);
                    let mut errors = 0usize;
                    let Ok(mut s) = TcpStream::connect(&addr) else {
                        return (lat, 1);
                    };
                    s.set_nodelay(true).ok();
                    s.set_read_timeout(Some(IO_TIMEOUT)).ok();
                    s.set_write_timeout(Some(IO_TIMEOUT)).ok();
                    let mut buf = Vec::with_capacity(16 * 1024);
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        if s.write_all(&request).is_err() {
                            errors += 1;
                            break;
                        }
                        match read_one(&mut s, &mut buf) {
                            Some(200) => lat.push(t.elapsed().as_micros() as u32),
                            Some(_) => errors += 1,
                            None => {
                                errors += 1;
                                break;
                            }
                        }
                    }
                    (lat, errors)
                })
                .expect("spawn bench client")
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (lat, err) = w.join().expect("bench client");
        latencies.extend(lat);
        errors += err;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    LoadResult {
        requests: latencies.len(),
        errors,
        elapsed,
        latencies,
    }
}

/// (VmRSS KiB, threads) of a process: /proc on Linux, `ps` elsewhere.
fn rss_and_threads(pid: u32) -> (Option<u64>, Option<u64>) {
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        };
        return (field("VmRSS:"), field("Threads:"));
    }
    let rss = Command::new("ps")
        .args(["-o", "rss=", "-p", &pid.to_string()])
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok());
    (rss, None)
}

fn fmt_opt(v: Option<u64>, unit: &str) -> String {
    v.map_or("n/a".to_string(), |v| {
        format!("{v} {unit}").trim_end().to_string()
    })
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is ignored.
    let dir: PathBuf = std::env::temp_dir().join(format!("baa-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    println!("baa-conductor benchmark ({})", CONDUCTOR);
    println!(
        "cores: {}",
        thread::available_parallelism().map_or(0, |n| n.get())
    );

    println!("\n== release binary sizes ==");
    for bin in BINARIES {
        let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
        let name = Path::new(bin)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("{name:<16} {size:>9} B ({} KiB)", size / 1024);
    }

    println!("\n== start to first /healthz 200 (5 cold starts, fresh state dir each) ==");
    let mut starts = Vec::new();
    for i in 0..5 {
        let (c, took) = start(&dir.join(format!("start-{i}")));
        starts.push(took);
        drop(c);
    }
    starts.sort();
    println!(
        "min {:.1} ms, median {:.1} ms, max {:.1} ms",
        starts[0].as_secs_f64() * 1e3,
        starts[2].as_secs_f64() * 1e3,
        starts[4].as_secs_f64() * 1e3
    );

    let (conductor, _) = start(&dir.join("load"));
    let pid = conductor.child.id();
    thread::sleep(Duration::from_millis(500));
    let (rss, threads) = rss_and_threads(pid);
    println!("\n== idle ==");
    println!(
        "RSS {}, threads {}",
        fmt_opt(rss, "KiB"),
        fmt_opt(threads, "")
    );

    println!(
        "\n== keep-alive load, {} s each ==",
        LOAD_TIME.as_secs_f64()
    );
    println!(
        "{:<18} {:>5} {:>10} {:>9} {:>9} {:>9} {:>7}",
        "route", "conns", "req/s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    for path in ["/healthz", "/v1/system/state"] {
        for conns in [16, 64] {
            let r = load(&conductor.addr, path, conns);
            println!(
                "{:<18} {:>5} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>7}",
                path,
                conns,
                r.requests as f64 / r.elapsed.as_secs_f64(),
                r.percentile(0.50),
                r.percentile(0.99),
                r.percentile(1.0),
                r.errors
            );
        }
    }
    let (rss_after, threads_after) = rss_and_threads(pid);
    thread::sleep(Duration::from_millis(500));
    let (rss_settled, threads_settled) = rss_and_threads(pid);
    println!(
        "\nafter load: RSS {}, threads {}; 0.5 s later: RSS {}, threads {}",
        fmt_opt(rss_after, "KiB"),
        fmt_opt(threads_after, ""),
        fmt_opt(rss_settled, "KiB"),
        fmt_opt(threads_settled, "")
    );
    drop(conductor);

    let (conductor, _) = start(&dir.join("attack"));
    slot_holding_attack(&conductor.addr);
    drop(conductor);
    let _ = std::fs::remove_dir_all(&dir);
}

/// 1000 connections each send half a head and then one byte every 2 s, reconnecting when
/// the server closes them; meanwhile a fresh client asks `/healthz` every 50 ms for 10 s.
fn slot_holding_attack(addr: &str) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    const ATTACKERS: usize = 1000;
    println!("\n== /healthz under a slot-holding attack ({ATTACKERS} connections trickling a header byte every 2 s, cap 512) ==");
    let stop = Arc::new(AtomicBool::new(false));
    let reconnects = Arc::new(AtomicUsize::new(0));
    let attacker = {
        let (addr, stop, reconnects) = (addr.to_string(), stop.clone(), reconnects.clone());
        thread::Builder::new()
            .name("bench-attacker".into())
            .spawn(move || {
                let open = || -> Option<TcpStream> {
                    let mut s = TcpStream::connect(&addr).ok()?;
                    s.write_all(b"GET /healthz HTTP/1.1\r\nX-Trickle: ").ok()?;
                    s.set_nonblocking(true).ok()?;
                    Some(s)
                };
                let mut held: Vec<Option<TcpStream>> = (0..ATTACKERS).map(|_| open()).collect();
                while !stop.load(Ordering::SeqCst) {
                    let round = Instant::now();
                    for slot in held.iter_mut() {
                        let alive = slot.as_mut().is_some_and(|s| {
                            let mut buf = [0u8; 512];
                            match s.read(&mut buf) {
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                    s.write_all(b"a").is_ok()
                                }
                                _ => false,
                            }
                        });
                        if !alive {
                            reconnects.fetch_add(1, Ordering::Relaxed);
                            *slot = open();
                        }
                    }
                    while round.elapsed() < Duration::from_secs(2) && !stop.load(Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(20));
                    }
                }
            })
            .expect("spawn attacker")
    };
    // Let the attack fill the table first.
    thread::sleep(Duration::from_secs(3));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut latencies = Vec::new();
    let mut statuses: std::collections::BTreeMap<u16, usize> = Default::default();
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let t = Instant::now();
        let status = TcpStream::connect(addr)
            .ok()
            .and_then(|mut s| {
                s.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
                s.write_all(request.as_bytes()).ok()?;
                read_one(&mut s, &mut Vec::new())
            })
            .unwrap_or(0);
        latencies.push(t.elapsed().as_micros() as u32);
        *statuses.entry(status).or_default() += 1;
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    let _ = attacker.join();
    latencies.sort_unstable();
    let r = LoadResult {
        requests: latencies.len(),
        errors: 0,
        elapsed: Duration::ZERO,
        latencies,
    };
    println!(
        "{} probes: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; statuses {statuses:?} (0 = no answer); attacker reconnects {}",
        r.requests,
        r.percentile(0.50),
        r.percentile(0.99),
        r.percentile(1.0),
        reconnects.load(Ordering::Relaxed)
    );
}
