//! The state-file rule across daemons (common::store): whatever sits at a state path — a
//! FIFO, a directory — a daemon never blocks on it, answers its probes and stops on SIGTERM.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::codexd::{with_stub, Dirs};
use crate::support::http::get;
use crate::support::tmp::TempDir;

/// Far below the defects' hangs (forever), generous for a loaded machine.
const PROMPT: Duration = Duration::from_secs(10);

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );
}

/// The defect: codexd bound its port, then blocked opening the FIFO for reading, never
/// answered and ignored SIGTERM. Every codexd state file is a FIFO here, the legacy
/// registry that the start migrates included.
#[test]
fn fifo_at_session_registry_hung_codexd() {
    let tmp = TempDir::new("codexd-fifos");
    let dirs = Dirs::under(&tmp.child("root"));
    std::fs::create_dir_all(dirs.state.join("sessions/hot")).unwrap();
    for name in [
        "session-registry.json",
        "identity.json",
        "daemon-state.json",
        "recent-events.json",
        "sessions/hot/s-fifo.json",
    ] {
        mkfifo(&dirs.state.join(name));
    }
    let t = Instant::now();
    let mut d = with_stub(&dirs, "normal").start();
    let health = get(&d.url("/healthz"));
    assert!(
        t.elapsed() < PROMPT,
        "start and /healthz took {:?}; log:\n{}",
        t.elapsed(),
        d.log()
    );
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(
        d.log().contains("session-registry.json is a FIFO"),
        "the log names the FIFO:\n{}",
        d.log()
    );
    let t = Instant::now();
    let status = d.terminate(PROMPT);
    assert!(
        status.success() && t.elapsed() < PROMPT,
        "SIGTERM: {status:?} after {:?}; log:\n{}",
        t.elapsed(),
        d.log()
    );
}
