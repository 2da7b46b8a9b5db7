//! Python scripts the tests run with the pinned tools in `.tools/py` (installed by
//! `scripts/install-py-tools.sh`, which `scripts/test.sh` runs): a bounded run that
//! returns the script's stdout or panics with its stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `.tools/py`, asserting `package` is installed there.
#[track_caller]
pub fn tools_path(package: &str) -> PathBuf {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/py");
    assert!(
        py.join(package).is_dir(),
        "this test needs the Python package {package} in {}: run scripts/install-py-tools.sh \
         (scripts/test.sh does)",
        py.display()
    );
    py
}

/// Runs `python3 tests/it/support/<script> args…` with `.tools/py` on PYTHONPATH (which
/// must hold `package`); kills it after `timeout`. Returns stdout; panics with stderr when
/// it fails.
#[track_caller]
pub fn run(script: &str, package: &str, args: &[&str], timeout: Duration) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let child = Command::new("python3")
        .arg(root.join("tests/it/support").join(script))
        .args(args)
        .env("PYTHONPATH", tools_path(package))
        // Only what .tools/py pins: nothing from the user's site-packages.
        .env("PYTHONNOUSERSITE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("py-{script}"))
        .spawn(move || {
            let _ = tx.send(child.wait_with_output());
        })
        .expect("spawn the python waiter");
    let output = match rx.recv_timeout(timeout) {
        Ok(output) => output.expect("python3 ran"),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("{script} did not finish within {timeout:?}");
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{script} failed ({}):\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
