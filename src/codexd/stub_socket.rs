//! The stub child's listen mode (`BAA_CODEXD_STUB_MODE=listen` with `--listen
//! unix://PATH`): the same JSON-RPC as its stdio mode, served as WebSocket text frames on a
//! Unix socket, one connection at a time (the newest gets every message, like a client
//! that resumed its threads), so codexd's unix transport, its re-attach and a connection
//! lost while the child runs on can be tested without the real codex.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::Receiver;
use tungstenite::{Message, WebSocket};

use baa::common::sync::lock;

use crate::stub::{handle_line, Out, Stub};

/// How long a read waits before the connection looks at its outbound queue again.
const TICK: Duration = Duration::from_millis(10);

/// Serves `path` until the process is killed. Returns an exit code only on failure.
pub fn serve(stub: &Arc<Stub>, path: &Path) -> i32 {
    // A socket file left by a killed stub would refuse the bind.
    let _ = std::fs::remove_file(path);
    let listener = match UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("stub app-server: cannot listen on {}: {e}", path.display());
            return 1;
        }
    };
    eprintln!("stub app-server: listening on {}", path.display());
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let ws = match tungstenite::accept(stream) {
            Ok(ws) => ws,
            Err(e) => {
                eprintln!("stub app-server: WebSocket upgrade failed: {e}");
                continue;
            }
        };
        let (tx, rx) = crossbeam_channel::unbounded::<String>();
        let drop = Arc::new(AtomicBool::new(false));
        *lock(&stub.out) = Out::Socket {
            tx: Some(tx),
            drop: drop.clone(),
        };
        let s = stub.clone();
        let spawned = thread::Builder::new()
            .name("stub-connection".into())
            .spawn(move || connection(&s, ws, &rx, &drop));
        if let Err(e) = spawned {
            eprintln!("stub app-server: cannot start a connection thread: {e}");
        }
    }
    0
}

fn connection(
    stub: &Arc<Stub>,
    mut ws: WebSocket<std::os::unix::net::UnixStream>,
    rx: &Receiver<String>,
    drop: &AtomicBool,
) {
    if ws.get_ref().set_read_timeout(Some(TICK)).is_err() {
        return;
    }
    loop {
        if drop.load(Ordering::SeqCst) {
            // Abrupt, as a crashed transport would: no close frame.
            let _ = ws.get_ref().shutdown(std::net::Shutdown::Both);
            return;
        }
        while let Ok(text) = rx.try_recv() {
            if ws.send(Message::text(text)).is_err() {
                return;
            }
        }
        match ws.read() {
            Ok(Message::Text(t)) => handle_line(stub, t.as_str()),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}
