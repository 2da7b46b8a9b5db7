//! The threads on the child's output pipes, one pair per generation:
//! - stdout: split into lines, copy them raw to `stdout.log`, and queue them for the core.
//!   A line over [`MAX_LINE`] is read to its end but only its head is kept; the core
//!   records it as an error event (and answers it if it was a request), so an oversized
//!   line is never a silent stall and never unbounded memory.
//! - stderr: copy to `stderr.log` and keep a tail that explains a failed start.
//!
//! Both block in poll(2) on their pipe and on a stop pipe, so [`Pumps::finish`] can end
//! them even if something that inherited the pipes keeps them open after the child died.

use std::io::{self, BufRead, BufReader, Read};
use std::process::{ChildStderr, ChildStdout};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};
use serde_json::Value;

use baa::common::proc::{wait_ready, Ready, StopPipe};
use baa::common::sync::lock;
use baa::common::text;

use super::queue;
use super::ChildEvent;
use baa::common::logfile::RotatingFile;

/// Longest stdout line passed on (app-server lines of several MB exist; its own WebSocket
/// transport caps a message at 16 MiB). A longer line is cut.
pub const MAX_LINE: usize = 32 * 1024 * 1024;
/// Bytes kept of a cut line: enough for its id and method.
pub(super) const CUT_HEAD: usize = 256;
/// Bytes of stderr kept in memory to explain a failed start.
const STDERR_TAIL: usize = 4096;
/// How long the pumps may take to reach EOF once the child is gone: the pipes close at
/// once unless something the child started still holds them.
const DRAIN: Duration = Duration::from_secs(2);

/// What a cut line was, read from its head (the app-server writes `id` first).
#[derive(Debug, Clone, PartialEq)]
pub enum CutMessage {
    /// A request from the child with this id: it must still be answered.
    Request(Value),
    /// A response to our request with this id.
    Response(Value),
    /// A notification, or a head we cannot read.
    Other,
}

/// The two output threads of one generation.
pub struct Pumps {
    stdout: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<()>>,
    stop: Arc<StopPipe>,
    /// Disconnects when both threads ended (each holds a sender, nobody sends).
    alive: Receiver<()>,
    pub stderr_tail: Arc<Mutex<String>>,
}

impl Pumps {
    /// Starts both threads. Lines go to `reports` tagged with `generation`, after
    /// whatever the supervisor queued before (the core must know the generation first).
    pub fn start(
        generation: u64,
        (stdout, stdout_log): (ChildStdout, RotatingFile),
        (stderr, stderr_log): (ChildStderr, RotatingFile),
        reports: queue::Sender<ChildEvent>,
    ) -> io::Result<Pumps> {
        let stop = Arc::new(StopPipe::new()?);
        let (alive_tx, alive) = bounded::<()>(0);
        let stderr_tail = Arc::new(Mutex::new(String::new()));
        let mut pumps = Pumps {
            stdout: None,
            stderr: None,
            stop: stop.clone(),
            alive,
            stderr_tail: stderr_tail.clone(),
        };
        let (alive, stop2) = (alive_tx.clone(), stop.clone());
        pumps.stderr = Some(
            thread::Builder::new()
                .name(format!("codexd-stderr-{generation}"))
                .spawn(move || {
                    let _alive = alive;
                    stderr_pump(stderr, &stop2, stderr_log, &stderr_tail)
                })?,
        );
        // On failure `pumps` is dropped, which stops and joins the stderr thread.
        pumps.stdout = Some(
            thread::Builder::new()
                .name(format!("codexd-stdout-{generation}"))
                .spawn(move || {
                    let _alive = alive_tx;
                    stdout_pump(generation, stdout, &stop, stdout_log, &reports)
                })?,
        );
        Ok(pumps)
    }

    /// Waits (bounded) for both threads to reach EOF, stops them if they do not, joins
    /// them, and returns the stderr tail. Call once the child is reaped.
    pub fn finish(mut self) -> String {
        let deadline = Instant::now() + DRAIN;
        if let Err(RecvTimeoutError::Timeout) = self.alive.recv_deadline(deadline) {
            log::warn!(
                "the app-server's output pipes stayed open {} ms after it exited \
                 (held by a process it started?); no longer reading them",
                DRAIN.as_millis()
            );
            self.stop.fire();
        }
        for h in [self.stdout.take(), self.stderr.take()]
            .into_iter()
            .flatten()
        {
            if h.join().is_err() {
                log::error!("an app-server output thread panicked");
            }
        }
        self.tail()
    }

    pub fn tail(&self) -> String {
        lock(&self.stderr_tail).clone()
    }
}

impl Drop for Pumps {
    /// A start that failed half-way still ends and joins what it started.
    fn drop(&mut self) {
        if self.stdout.is_some() || self.stderr.is_some() {
            self.stop.fire();
            for h in [self.stdout.take(), self.stderr.take()]
                .into_iter()
                .flatten()
            {
                let _ = h.join();
            }
        }
    }
}

/// A pipe read that blocks in poll(2) on the pipe and the stop pipe: stopped, it reads EOF.
struct Stoppable<'a, R> {
    inner: R,
    stop: &'a StopPipe,
}

impl<R: Read + std::os::fd::AsRawFd> Read for Stoppable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !wait_ready(&self.inner, Ready::Read, self.stop)? {
            return Ok(0);
        }
        self.inner.read(buf)
    }
}

fn stdout_pump(
    generation: u64,
    stdout: ChildStdout,
    stop: &StopPipe,
    mut log: RotatingFile,
    reports: &queue::Sender<ChildEvent>,
) {
    let mut reader = BufReader::with_capacity(
        256 * 1024,
        Stoppable {
            inner: stdout,
            stop,
        },
    );
    loop {
        let event = match read_line(&mut reader, MAX_LINE) {
            Ok(None) => break,
            Ok(Some(Line::Whole(bytes))) => {
                log.write(&bytes);
                if !bytes.ends_with(b"\n") {
                    log.write(b"\n");
                }
                ChildEvent::Line { generation, bytes }
            }
            Ok(Some(Line::Cut { head, bytes })) => {
                log.write(&head);
                log.write(format!(" [line of {bytes} bytes cut at {MAX_LINE}]\n").as_bytes());
                let message = cut_message(&head);
                ChildEvent::LineCut {
                    generation,
                    bytes,
                    head,
                    message,
                }
            }
            Err(e) => {
                log::warn!("reading the app-server stdout: {e}");
                break;
            }
        };
        let weight = event.weight();
        if reports.send(event, weight).is_err() {
            return;
        }
    }
    let ev = ChildEvent::StreamClosed { generation };
    let weight = ev.weight();
    let _ = reports.send(ev, weight);
}

/// One line as read from the pipe.
#[derive(Debug, PartialEq)]
enum Line {
    /// The whole line, with its newline if it had one.
    Whole(Vec<u8>),
    /// A line over the limit: its first bytes and its full length.
    Cut { head: Vec<u8>, bytes: u64 },
}

/// Reads one line; None at EOF. A line longer than `max` bytes is consumed to its end but
/// only its head is kept, so memory stays bounded.
fn read_line(r: &mut impl BufRead, max: usize) -> io::Result<Option<Line>> {
    let mut out = Vec::new();
    let mut total: u64 = 0;
    let mut cut = false;
    loop {
        let (used, done) = {
            let buf = r.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (&buf[..=i], true),
                None => (buf, false),
            };
            if !cut && out.len() + chunk.len() > max {
                cut = true;
                let room = CUT_HEAD.saturating_sub(out.len());
                out.extend_from_slice(&chunk[..room.min(chunk.len())]);
                out.truncate(CUT_HEAD);
                out.shrink_to_fit();
            } else if !cut {
                out.extend_from_slice(chunk);
            }
            (chunk.len(), done)
        };
        r.consume(used);
        total += used as u64;
        if done {
            break;
        }
    }
    if total == 0 {
        return Ok(None);
    }
    if cut {
        return Ok(Some(Line::Cut {
            head: out,
            bytes: total,
        }));
    }
    // A line that grew the buffer far past its size gives the slack back before it waits
    // in the queue (the queue counts length, memory counts capacity).
    if out.capacity() - out.len() > 64 * 1024 {
        out.shrink_to_fit();
    }
    Ok(Some(Line::Whole(out)))
}

/// Reads `{"id": <id>, "<key>"` at the start of a cut line's head.
pub(super) fn cut_message(head: &[u8]) -> CutMessage {
    let text = String::from_utf8_lossy(head);
    let rest = text.trim_start();
    let Some(rest) = rest.strip_prefix('{') else {
        return CutMessage::Other;
    };
    let Some(rest) = rest.trim_start().strip_prefix("\"id\"") else {
        return CutMessage::Other;
    };
    let Some(rest) = rest.trim_start().strip_prefix(':') else {
        return CutMessage::Other;
    };
    let rest = rest.trim_start();
    let (id, rest) = if let Some(s) = rest.strip_prefix('"') {
        match s.find(['"', '\\']) {
            Some(end) if s[end..].starts_with('"') => {
                (Value::String(s[..end].to_string()), &s[end + 1..])
            }
            _ => return CutMessage::Other,
        }
    } else {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '-'))
            .unwrap_or(rest.len());
        match rest[..end].parse::<i64>() {
            Ok(n) => (Value::from(n), &rest[end..]),
            Err(_) => return CutMessage::Other,
        }
    };
    let Some(rest) = rest.trim_start().strip_prefix(',') else {
        return CutMessage::Other;
    };
    let key = rest.trim_start();
    if key.starts_with("\"method\"") {
        CutMessage::Request(id)
    } else if key.starts_with("\"result\"") || key.starts_with("\"error\"") {
        CutMessage::Response(id)
    } else {
        CutMessage::Other
    }
}

fn stderr_pump(stderr: ChildStderr, stop: &StopPipe, mut log: RotatingFile, tail: &Mutex<String>) {
    let mut stderr = Stoppable {
        inner: stderr,
        stop,
    };
    let mut buf = [0u8; 8192];
    loop {
        let n = match stderr.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        log.write(&buf[..n]);
        let mut t = lock(tail);
        t.push_str(&String::from_utf8_lossy(&buf[..n]));
        if t.len() > STDERR_TAIL {
            let cut = t.len() - text::suffix(&t, STDERR_TAIL).len();
            t.drain(..cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(input: &[u8], max: usize) -> Vec<Line> {
        let mut r = BufReader::with_capacity(16, input);
        let mut out = Vec::new();
        while let Some(l) = read_line(&mut r, max).unwrap() {
            out.push(l);
        }
        out
    }

    #[test]
    fn long_lines_are_read_whole() {
        let big = format!("{{\"x\":\"{}\"}}\nnext\n", "a".repeat(5_000_000));
        let got = lines(big.as_bytes(), MAX_LINE);
        assert_eq!(got.len(), 2);
        assert!(
            matches!(&got[0], Line::Whole(l) if l.len() == 5_000_009),
            "first line not whole"
        );
        assert_eq!(got[1], Line::Whole(b"next\n".to_vec()));
    }

    #[test]
    fn a_line_over_the_limit_is_cut_to_its_head_and_the_next_line_is_intact() {
        let big = format!("{{\"id\":7,\"result\":\"{}\"}}\nnext", "a".repeat(1000));
        let got = lines(big.as_bytes(), 500);
        assert_eq!(got.len(), 2, "{got:?}");
        match &got[0] {
            Line::Cut { head, bytes } => {
                assert_eq!(*bytes, big.find('\n').unwrap() as u64 + 1);
                assert_eq!(head.len(), CUT_HEAD);
                assert!(head.starts_with(b"{\"id\":7,"), "{head:?}");
            }
            other => panic!("expected a cut line, got {other:?}"),
        }
        assert_eq!(got[1], Line::Whole(b"next".to_vec()));
    }

    #[test]
    fn a_cut_line_head_names_its_id_and_kind() {
        assert_eq!(
            cut_message(br#"{"id":12,"result":{"thread"#),
            CutMessage::Response(json!(12))
        );
        assert_eq!(
            cut_message(br#"{ "id" : "req-1" , "method":"item/tool/call","params":{"#),
            CutMessage::Request(json!("req-1"))
        );
        assert_eq!(
            cut_message(br#"{"method":"item/agentMessage/delta","params":{"#),
            CutMessage::Other
        );
        assert_eq!(cut_message(b"garbage"), CutMessage::Other);
    }
}
