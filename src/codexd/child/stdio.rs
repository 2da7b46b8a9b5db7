//! The stdio transport: the child's stdin, stdout and stderr are pipes to codexd. Its
//! stdin has one writer thread (`codexd-stdin-N`) that drains the [`Rpc`]'s queue, one
//! JSON document per line; stdout and stderr have the two pump threads of `pumps`.
//!
//! The writer's end of the pipe is non-blocking and it waits in poll(2) beside the Rpc's
//! stop pipe, so closing the `Rpc` ends the writer at once even while the child is not
//! reading. Ending the writer closes stdin: EOF, on which the app-server exits.

use std::io::{self, Write};
use std::process::ChildStdin;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use baa::common::proc::{process_start_time, set_nonblocking, wait_ready, Ready, StopPipe};

use super::generation::{Generation, Io, Proc};
use super::process::{self, StartError};
use super::pumps::Pumps;
use super::{queue, ChildEvent, Link, Settings};
use crate::rpc::{Outbound, Rpc};
use baa::common::logfile::RotatingFile;

/// Spawns generation `generation` over pipes and completes the handshake.
pub(super) fn start(
    s: &Settings,
    generation: u64,
    reports: &queue::Sender<ChildEvent>,
) -> Result<Generation, StartError> {
    let mut child = process::spawn(s)?;
    let pid = child.id();
    let start_time = process_start_time(pid);
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        process::kill(&mut child);
        return Err(StartError::Failed("pipes missing".into(), String::new()));
    };
    let writer = Rpc::new(None).and_then(|(rpc, out)| {
        stdin_writer(stdin, out, &format!("codexd-stdin-{generation}")).map(|w| (rpc, w))
    });
    let (rpc, writer) = match writer {
        Ok(r) => r,
        Err(e) => {
            process::kill(&mut child);
            return Err(StartError::Failed(
                format!("stdin writer: {e}"),
                String::new(),
            ));
        }
    };
    let link = Arc::new(Link {
        generation,
        pid,
        rpc,
    });
    // The core learns the generation (and records the pid at once: if codexd dies now,
    // the next start can find a stale child) before any of its lines.
    let ev = ChildEvent::Spawned {
        link: link.clone(),
        start_time: start_time.clone(),
        attached: false,
        socket: None,
    };
    let weight = ev.weight();
    let _ = reports.send(ev, weight);
    let mut gen = Generation {
        proc: Proc::Owned(child),
        start_time,
        link,
        io: Io::Stdio {
            writer: Some(writer),
            pumps: None,
        },
        ready_at: None,
    };
    let logs = &s.logs_dir;
    let pumps = Pumps::start(
        generation,
        (
            stdout,
            RotatingFile::open(logs.join("stdout.log"), s.log_max_bytes),
        ),
        (
            stderr,
            RotatingFile::open(logs.join("stderr.log"), s.log_max_bytes),
        ),
        reports.clone(),
    );
    match pumps {
        Ok(p) => {
            if let Io::Stdio { pumps, .. } = &mut gen.io {
                *pumps = Some(p);
            }
        }
        Err(e) => return Err(gen.fail(format!("output threads: {e}"))),
    }
    let timeout = super::HANDSHAKE_TIMEOUT.min(s.request_timeout);
    if let Err(why) = gen.handshake(s, reports, timeout) {
        return Err(gen.fail(why.to_string()));
    }
    Ok(gen)
}

/// Starts the thread that writes what `out` carries to `stdin`, one message per line. It
/// ends when the Rpc is closed or dropped, or when a write fails; ending it closes stdin.
/// The caller owns the handle and joins it after closing the Rpc.
pub fn stdin_writer(stdin: ChildStdin, out: Outbound, name: &str) -> io::Result<JoinHandle<()>> {
    set_nonblocking(&stdin)?;
    thread::Builder::new()
        .name(name.to_string())
        .spawn(move || writer_loop(stdin, &out))
}

fn writer_loop(mut stdin: ChildStdin, out: &Outbound) {
    // Ends on the close marker, when every Sender is gone, when the stop pipe fires, or
    // when a write fails.
    for mut msg in out.rx.iter() {
        if msg.is_empty() || out.stop.is_fired() {
            return;
        }
        msg.push(b'\n');
        match write_all(&mut stdin, &msg, &out.stop) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                log::warn!("writing to the app-server failed: {e}");
                return;
            }
        }
    }
}

/// Writes all of `buf` to the non-blocking pipe, waiting in poll(2) while it is full.
/// Ok(false) if `stop` fired first.
fn write_all(stdin: &mut ChildStdin, mut buf: &[u8], stop: &StopPipe) -> io::Result<bool> {
    while !buf.is_empty() {
        match stdin.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !wait_ready(stdin, Ready::Write, stop)? {
                    return Ok(false);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
