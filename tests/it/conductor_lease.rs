//! Lease, role and readiness with two real conductors sharing one state dir.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::check::compare;
use crate::support::conductor;
use crate::support::daemon::wait_for;
use crate::support::http::{get, post};
use crate::support::tmp::TempDir;

#[test]
fn conductor_standby_stays_standby_then_takes_over_after_leader_sigkill() {
    let dir = TempDir::new("lease");
    let mut leader = conductor::spawn(&dir, "mini-main", "primary").start();
    let standby = conductor::spawn(&dir, "mini-standby", "standby").start();

    assert_eq!(get(&leader.url("/rolez")).body, "leader\n");
    // Several renew ticks of the standby: it must not grab a live lease.
    conductor::wait_lease_ticks(&standby, 4);
    assert_eq!(get(&standby.url("/rolez")).body, "standby\n");
    let r = get(&standby.url("/readyz"));
    assert_eq!((r.status, r.body.as_str()), (503, "not ready: standby\n"));
    assert_eq!(get(&standby.url("/healthz")).status, 200);
    assert_eq!(
        get(&standby.url("/v1/system/state")).expect(200)["data"]["holder_id"],
        "mini-main"
    );
    post(
        &standby.url("/v1/system/pause"),
        &json!({"reason": "wrong node"}),
    )
    .expect_error(409, "not_leader");
    let rt = get(&standby.url("/v1/runtime")).expect(200)["data"].clone();
    assert_eq!(
        (
            rt["daemon"]["leaseState"].clone(),
            rt["daemon"]["leaseHolder"].clone()
        ),
        (json!("standby"), json!("mini-main"))
    );
    // The worktree janitor acts on the lease holder only (four lease ticks above: a standby
    // that thought itself leader would have made its first pass at once).
    assert_eq!(rt["worktrees"]["passes"], 0, "{:#}", rt["worktrees"]);
    assert!(rt["worktrees"]["measured_at"].is_null());
    post(
        &leader.url("/v1/system/pause"),
        &json!({"requested_by": "leader"}),
    )
    .expect(200);

    let both = wait_for(Duration::from_secs(5), || {
        let d = get(&standby.url("/v1/controllers")).expect(200)["data"].clone();
        (d["count"] == 2).then_some(d)
    })
    .expect("both controllers heartbeat");
    let holders: Vec<_> = both["controllers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["lease_holder"] == true)
        .map(|c| c["node_id"].clone())
        .collect();
    assert_eq!(holders, vec![json!("mini-main")]);

    // Leader dies without releasing: the standby waits out the TTL (2 s) and takes over.
    let killed = Instant::now();
    leader.kill9();
    let took = wait_for(Duration::from_secs(8), || {
        (get(&standby.url("/rolez")).body == "leader\n").then(|| killed.elapsed())
    })
    .unwrap_or_else(|| panic!("standby never took over; log:\n{}", standby.log()));
    println!("takeover after SIGKILL took {took:?} (TTL 2 s, renew 200 ms)");
    assert!(
        took >= Duration::from_millis(1500),
        "took over before the lease expired: {took:?}"
    );
    let ready = wait_for(Duration::from_secs(3), || {
        (get(&standby.url("/readyz")).status == 200).then_some(())
    });
    assert!(ready.is_some(), "new leader not ready");
    // Its janitor starts with the lease.
    let janitor = wait_for(Duration::from_secs(5), || {
        let w = get(&standby.url("/v1/runtime")).expect(200)["data"]["worktrees"].clone();
        (w["passes"].as_u64() >= Some(1)).then_some(w)
    });
    assert!(janitor.is_some(), "no janitor pass on the new leader");
    let st = get(&standby.url("/v1/system/state")).expect(200)["data"].clone();
    assert_eq!(
        (
            st["holder_id"].clone(),
            st["mode"].clone(),
            st["requested_by"].clone()
        ),
        (json!("mini-standby"), json!("paused"), json!("leader")),
        "state survives the takeover"
    );
    post(
        &standby.url("/v1/system/resume"),
        &json!({"requested_by": "new-leader"}),
    )
    .expect(200);
}

#[test]
fn conductor_graceful_stop_releases_the_lease_at_once() {
    let dir = TempDir::new("release");
    let mut leader = conductor::spawn(&dir, "mini-main", "primary").start();
    let standby = conductor::spawn(&dir, "mini-standby", "standby").start();
    conductor::wait_lease_ticks(&standby, 2);
    assert_eq!(get(&standby.url("/rolez")).body, "standby\n");
    let stopped = Instant::now();
    compare(
        "leader exit code after SIGTERM",
        leader.terminate(Duration::from_secs(15)).code(),
        Some(0),
    );
    let took = wait_for(Duration::from_secs(8), || {
        (get(&standby.url("/rolez")).body == "leader\n").then(|| stopped.elapsed())
    })
    .expect("takeover");
    println!("takeover after SIGTERM took {took:?}");
}

#[test]
fn conductor_renew_failures_degrade_readiness_but_stay_observable() {
    let c = conductor::start("degraded");
    assert_eq!(get(&c.url("/rolez")).body, "leader\n");
    // A directory in place of the lease file makes every renewal fail. The swap is done
    // holding the lease lock, as every lease writer does: without it the 200 ms renew can
    // recreate the file between the remove and the mkdir (`File exists`).
    let lease = c.dir.join("state/lease.json");
    {
        let _lock = LeaseLock::hold(&c.dir.join("state/lease.lock"));
        std::fs::remove_file(&lease).unwrap();
        std::fs::create_dir(&lease).unwrap();
    }
    let degraded = wait_for(Duration::from_secs(5), || {
        let rt = get(&c.url("/v1/runtime")).expect(200)["data"].clone();
        (rt["daemon"]["leaseState"] == "degraded").then_some(rt)
    })
    .expect("lease state degraded");
    assert!(
        degraded["daemon"]["lease"]["renew_failures"]
            .as_u64()
            .unwrap()
            >= 2,
        "{degraded}"
    );
    assert!(
        degraded["daemon"]["lease"]["last_error"].is_string(),
        "{degraded}"
    );
    assert_eq!(get(&c.url("/readyz")).status, 503);
    assert_eq!(get(&c.url("/healthz")).body, "ok\n");
    // Repair: renewals recover and the node is ready again.
    std::fs::remove_dir(&lease).unwrap();
    let ok = wait_for(Duration::from_secs(5), || {
        (get(&c.url("/readyz")).status == 200).then_some(())
    });
    assert!(ok.is_some(), "did not recover:\n{}", c.d.log());
}

/// The conductor's lease lock (`flock` on `lease.lock`), held by the test like a writer.
struct LeaseLock(std::fs::File);

impl LeaseLock {
    fn hold(path: &std::path::Path) -> Self {
        use std::os::unix::io::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // SAFETY: flock on an fd we own; blocks only while a renew holds it (milliseconds).
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
        Self(f)
    }
}

impl Drop for LeaseLock {
    fn drop(&mut self) {
        use std::os::unix::io::AsRawFd;
        // SAFETY: unlocking an fd we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}
