//! JSON-RPC to the child, whatever carries it: our request ids, correlation of responses,
//! and a deadline on every request (the app-server silently drops lines it cannot parse,
//! so a request without a deadline could wait for ever).
//!
//! Messages go out through a bounded queue to the transport's one writer (the stdin
//! writer thread in stdio mode, the socket thread in unix mode; `child::stdio`,
//! `child::socket`), so a child that stops reading can never block an HTTP handler.
//! Closing the `Rpc` fires a stop pipe the writer waits on beside its pipe or socket, so
//! it ends at once even while the child is not reading. Responses come back through the
//! dispatcher (`on_response`), which is the same for both transports.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use serde_json::{json, Value};

use baa::common::proc::{StopPipe, WakePipe};
use baa::common::sync::lock;

/// Messages that may wait for the writer; past this the child is `Backlogged`.
const OUT_QUEUE: usize = 1024;

/// Why a request did not produce a result.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcError {
    /// No response within the deadline.
    Timeout { method: String, ms: u64 },
    /// The child exited (or its pipes closed) before answering.
    ChildGone,
    /// The outbound queue is full: the child stopped reading its stdin.
    Backlogged,
    /// The child's answer was a line over codexd's line limit (it was cut, not read).
    TooLarge { bytes: u64, limit: usize },
    /// The child answered with a JSON-RPC error object.
    Server {
        code: i64,
        message: String,
        data: Value,
    },
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcError::Timeout { method, ms } => {
                write!(
                    f,
                    "{method}: no response from the app-server within {ms} ms"
                )
            }
            RpcError::ChildGone => f.write_str("the app-server exited before answering"),
            RpcError::Backlogged => f.write_str("the app-server is not reading its input"),
            RpcError::TooLarge { bytes, limit } => write!(
                f,
                "the app-server answered with a {bytes}-byte line, over codexd's {limit}-byte limit"
            ),
            RpcError::Server { code, message, .. } => {
                write!(f, "app-server error {code}: {message}")
            }
        }
    }
}

type Waiter = Sender<Result<Value, RpcError>>;

/// Asking the current child something: its [`Link`](crate::child::Link) in the daemon, a
/// fake in unit tests. `generation` says which child answered, for caches kept per child.
pub trait Ask {
    fn generation(&self) -> u64;
    fn ask(&self, method: &str, params: Value, timeout: Duration) -> Result<Value, RpcError>;
}

pub struct Rpc {
    out: Sender<Vec<u8>>,
    /// Rung after each queued message when the writer waits in poll(2) rather than on
    /// the queue (the socket thread also waits for inbound frames).
    wake: Option<Arc<WakePipe>>,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Waiter>>,
    closed: AtomicBool,
    /// Fired by `close`: wakes the writer wherever it waits.
    stop: Arc<StopPipe>,
}

/// The writer's end of an [`Rpc`]: each message is one JSON document without a newline
/// (the stdio writer adds one, the socket writer sends it as a text frame). An empty
/// message, the fired `stop` pipe, or a queue with no sender left means: stop.
pub struct Outbound {
    pub rx: Receiver<Vec<u8>>,
    pub stop: Arc<StopPipe>,
    pub wake: Option<Arc<WakePipe>>,
}

impl Rpc {
    /// An Rpc and the outbound end its transport's writer drains. With `wake`, every
    /// queued message also rings it.
    pub fn new(wake: Option<Arc<WakePipe>>) -> std::io::Result<(Rpc, Outbound)> {
        let stop = Arc::new(StopPipe::new()?);
        let (tx, rx) = bounded::<Vec<u8>>(OUT_QUEUE);
        let outbound = Outbound {
            rx,
            stop: stop.clone(),
            wake: wake.clone(),
        };
        let rpc = Rpc {
            out: tx,
            wake,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            stop,
        };
        Ok((rpc, outbound))
    }

    fn send_line(&self, v: &Value) -> Result<(), RpcError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(RpcError::ChildGone);
        }
        let msg = serde_json::to_vec(v).unwrap_or_default();
        let sent = match self.out.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(RpcError::Backlogged),
            Err(TrySendError::Disconnected(_)) => Err(RpcError::ChildGone),
        };
        if let Some(w) = &self.wake {
            w.wake();
        }
        sent
    }

    /// Sends `method` with `params` and waits up to `timeout` for its response.
    pub fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = bounded(1);
        lock(&self.pending).insert(id, tx);
        // Every request carries params, at least `{}`: the app-server rejects requests
        // without them.
        let params = if params.is_null() { json!({}) } else { params };
        if let Err(e) = self.send_line(&json!({"id": id, "method": method, "params": params})) {
            self.forget(id);
            return Err(e);
        }
        let result = match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err(RpcError::Timeout {
                method: method.to_string(),
                ms: timeout.as_millis() as u64,
            }),
            Err(RecvTimeoutError::Disconnected) => Err(RpcError::ChildGone),
        };
        self.forget(id);
        result
    }

    fn forget(&self, id: u64) {
        lock(&self.pending).remove(&id);
    }

    pub fn notify(&self, method: &str, params: Option<Value>) -> Result<(), RpcError> {
        let msg = match params {
            Some(p) => json!({"method": method, "params": p}),
            None => json!({"method": method}),
        };
        self.send_line(&msg)
    }

    /// Answers a server-initiated request with a result.
    pub fn respond(&self, id: &Value, result: Value) -> Result<(), RpcError> {
        self.send_line(&json!({"id": id, "result": result}))
    }

    /// Answers a server-initiated request with an error.
    pub fn respond_error(&self, id: &Value, code: i64, message: &str) -> Result<(), RpcError> {
        self.send_line(&json!({"id": id, "error": {"code": code, "message": message}}))
    }

    /// Routes a response message (`id` + `result`|`error`) to its waiter. Returns false for
    /// an id nobody waits for (late or unknown).
    pub fn on_response(&self, msg: &Value) -> bool {
        let Some(id) = msg.get("id").and_then(id_as_u64) else {
            return false;
        };
        let waiter = lock(&self.pending).remove(&id);
        let Some(waiter) = waiter else {
            return false;
        };
        let result = match msg.get("error") {
            Some(err) if !err.is_null() => Err(RpcError::Server {
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error")
                    .to_string(),
                data: err.get("data").cloned().unwrap_or(Value::Null),
            }),
            _ => Ok(msg.get("result").cloned().unwrap_or(Value::Null)),
        };
        let _ = waiter.send(result);
        true
    }

    /// Fails the request `id` with `err` (its response could not be read). Returns false
    /// if nobody waits for it.
    pub fn fail(&self, id: &Value, err: RpcError) -> bool {
        let waiter = id_as_u64(id).and_then(|id| lock(&self.pending).remove(&id));
        match waiter {
            Some(w) => {
                let _ = w.send(Err(err));
                true
            }
            None => false,
        }
    }

    /// Fails every waiting request with `ChildGone` and refuses new ones.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let waiters: Vec<Waiter> = lock(&self.pending).drain().map(|(_, w)| w).collect();
        for w in waiters {
            let _ = w.send(Err(RpcError::ChildGone));
        }
        // The stop pipe wakes a writer waiting on a full pipe or socket; an empty message
        // wakes one waiting for work. Either way it stops, which closes the child's stdin
        // (stdio) or the connection (unix).
        self.stop.fire();
        let _ = self.out.try_send(Vec::new());
        if let Some(w) = &self.wake {
            w.wake();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub fn pending_count(&self) -> usize {
        lock(&self.pending).len()
    }
}

impl Drop for Rpc {
    fn drop(&mut self) {
        self.close();
    }
}

fn id_as_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::thread;

    use crate::child::stdio::stdin_writer;

    fn start(stdin: std::process::ChildStdin) -> (Rpc, thread::JoinHandle<()>) {
        let (rpc, out) = Rpc::new(None).unwrap();
        let writer = stdin_writer(stdin, out, "test-writer").unwrap();
        (rpc, writer)
    }

    /// `cat` echoes our request back, which is not a response; a reply we inject by hand is.
    #[test]
    fn correlates_and_times_out() {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (rpc, writer) = start(child.stdin.take().unwrap());
        let rpc = std::sync::Arc::new(rpc);
        let out = child.stdout.take().unwrap();
        let r2 = rpc.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
                if v["method"] == "echo" {
                    r2.on_response(&json!({"id": v["id"], "result": v["params"]}));
                } else if v["method"] == "fail" {
                    r2.on_response(
                        &json!({"id": v["id"], "error": {"code": -32600, "message": "nope"}}),
                    );
                }
            }
        });
        let got = rpc.request("echo", json!({"x": 1}), Duration::from_secs(5));
        assert_eq!(got, Ok(json!({"x": 1})));
        let got = rpc.request("fail", Value::Null, Duration::from_secs(5));
        assert!(
            matches!(&got, Err(RpcError::Server { code: -32600, .. })),
            "{got:?}"
        );
        let got = rpc.request("silent", json!({}), Duration::from_millis(100));
        assert!(matches!(&got, Err(RpcError::Timeout { .. })), "{got:?}");
        assert_eq!(rpc.pending_count(), 0);
        rpc.close();
        assert_eq!(
            rpc.request("echo", json!({}), Duration::from_secs(1)),
            Err(RpcError::ChildGone)
        );
        drop(rpc);
        writer.join().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
    }

    /// A child that never reads its stdin: the writer blocks on the full pipe, and
    /// closing the Rpc must still end it at once (before, it waited for the child to die).
    #[test]
    fn close_ends_a_writer_stuck_on_a_child_that_does_not_read() {
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let (rpc, writer) = start(child.stdin.take().unwrap());
        let big = "x".repeat(1024 * 1024);
        rpc.notify("fill", Some(json!({"pad": big}))).unwrap();
        rpc.close();
        let (tx, rx) = bounded(1);
        thread::spawn(move || {
            let _ = writer.join();
            let _ = tx.send(());
        });
        let joined = rx.recv_timeout(Duration::from_secs(5));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(joined, Ok(()), "writer still blocked after close");
    }
}
