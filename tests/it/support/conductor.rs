//! A real `baa-conductor` on a free loopback port with its own state dirs and fast lease
//! timing, so lease tests finish in seconds.

use std::time::Duration;

use super::daemon::{wait_for, Daemon, Spawn, CONDUCTOR};
use super::http::get;
use super::tmp::TempDir;

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub struct Conductor {
    pub d: Daemon,
    pub dir: TempDir,
}

/// Common flags: loopback port 0, dirs under `dir`, lease TTL 2 s renewed every 200 ms.
pub fn spawn(dir: &TempDir, node_id: &str, role: &str) -> Spawn {
    Spawn::new(CONDUCTOR)
        .args([
            "start",
            "--local-api",
            "http://127.0.0.1:0",
            "--node-id",
            node_id,
            "--conductor-host",
            "testhost",
            "--role",
            role,
        ])
        .args(["--state-dir", &dir.join("state").display().to_string()])
        .args(["--logs-dir", &dir.join("logs").display().to_string()])
        .args(["--runs-dir", &dir.join("runs").display().to_string()])
        .args([
            "--worktrees-dir",
            &dir.join("worktrees").display().to_string(),
        ])
        .args(["--tmp-dir", &dir.join("tmp").display().to_string()])
        // Tests put their task dirs (and repos) under the system temp dir.
        .args(["--task-roots", &std::env::temp_dir().display().to_string()])
        .args([
            "--lease-ttl-sec",
            "2",
            "--lease-renew-interval-ms",
            "200",
            "--heartbeat-interval-ms",
            "200",
        ])
        .cwd(dir.path())
}

/// A primary conductor with the test token and no codexd configured.
#[track_caller]
pub fn start(tag: &str) -> Conductor {
    let dir = TempDir::new(tag);
    let d = spawn(&dir, "mini-main", "primary")
        .env("BAA_SHARED_TOKEN", TOKEN)
        .start();
    Conductor { d, dir }
}

impl Conductor {
    pub fn url(&self, path: &str) -> String {
        self.d.url(path)
    }

    pub fn auth(&self) -> [(&'static str, String); 1] {
        [("Authorization", format!("Bearer {TOKEN}"))]
    }
}

/// The five runtime-dir variables pointing under `root`: the conductor refuses to run
/// `start` or `config` without them (they never default to the working directory).
pub fn dirs_env(root: &std::path::Path) -> [(&'static str, std::path::PathBuf); 5] {
    [
        ("BAA_STATE_DIR", root.join("state")),
        ("BAA_LOGS_DIR", root.join("logs")),
        ("BAA_RUNS_DIR", root.join("runs")),
        ("BAA_WORKTREES_DIR", root.join("worktrees")),
        ("BAA_TMP_DIR", root.join("tmp")),
    ]
}

/// Waits until `d`'s lease loop has ticked `n` more times. Each tick reads the lease file
/// and decides whether to take it, so "still standby" after this means `n` decisions not
/// to, not merely that time passed.
#[track_caller]
pub fn wait_lease_ticks(d: &Daemon, n: usize) {
    let tick =
        || get(&d.url("/v1/runtime")).json()["data"]["daemon"]["lease"]["last_tick_at"].clone();
    let mut seen = vec![tick()];
    let ticked = wait_for(Duration::from_secs(10), || {
        let t = tick();
        if !seen.contains(&t) {
            seen.push(t);
        }
        (seen.len() > n).then_some(())
    });
    if ticked.is_none() {
        panic!(
            "the lease ticked fewer than {n} times in 10 s: {seen:?}\nlog:\n{}",
            d.log()
        );
    }
}
