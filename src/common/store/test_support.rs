//! Helpers shared by the store's tests.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::JsonStore;
use crate::common::state_health;

pub(super) fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "baa-store-{tag}-{}",
        crate::common::ids::new_id("t")
    ));
    fs::create_dir_all(&d).unwrap();
    d
}

pub(super) fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// `f` on another thread, failing the test if it has not returned within 5 s (the
/// defect: an open of a FIFO for reading waits for a writer forever).
#[track_caller]
pub(super) fn promptly<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("blocked on a state path")
}

pub(super) fn problems(d: &Path) -> Vec<(state_health::Level, String)> {
    state_health::under(d)
        .into_iter()
        .map(|p| (p.level, p.message))
        .collect()
}

pub(super) fn s_read(d: &Path, name: &str) -> Value {
    JsonStore::open(d)
        .unwrap()
        .read::<Value>(name)
        .unwrap()
        .unwrap()
}
