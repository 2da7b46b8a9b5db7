//! A codexd crash loop, announced once per loop: the conductor learns codexd's child
//! status from the reading its dispatch gate makes (`codex_hold`), so a loop is noticed
//! while tasks wait to run, which is when it matters.

use std::sync::Mutex;

use baa::common::sync::lock;
use baa::common::time::now_ms;

use super::event::{Event, Priority};

#[derive(Default)]
pub struct CrashLoopWatch {
    in_loop: Mutex<bool>,
}

impl CrashLoopWatch {
    /// The child's status as last read (None: running, or unknown); an event when it just
    /// entered `crash_loop`.
    pub fn observe(&self, child_status: Option<&str>) -> Option<Event> {
        let now = child_status == Some("crash_loop");
        let mut was = lock(&self.in_loop);
        let entered = now && !*was;
        *was = now;
        entered.then(|| {
            let mut e = Event::new(
                format!("codexd:crash_loop:{}", now_ms()),
                "codexd.crash_loop",
                "codexd: the Codex app-server is crash-looping".into(),
                Priority::High,
            );
            e.message = "codexd stopped restarting its app-server child after repeated failures; queued tasks wait. See GET /v1/codex and codexd's log; POST /v1/codexd/child/restart on codexd restarts it.".into();
            e
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announces_entering_the_loop_once() {
        let w = CrashLoopWatch::default();
        assert!(w.observe(None).is_none());
        assert!(w.observe(Some("crash_loop")).is_some());
        assert!(w.observe(Some("crash_loop")).is_none());
        assert!(w.observe(Some("starting")).is_none());
        assert!(w.observe(Some("crash_loop")).is_some());
    }
}
