//! Schedules: cron-timed tasks the lease holder queues by itself.
//!
//! - `model`: the schedule record; `validate`: create and patch bodies (the task body is
//!   checked exactly as `POST /v1/tasks` checks it);
//! - `store`: one JSON file per schedule (`<state>/schedules/<id>.json`);
//! - `clock`: the time the fire loop reads (the system clock, or a test's clock file);
//! - `fire`: what one due schedule does (fire, catch up or skip) and its idempotency key;
//!   `firer`: the one thread that fires, while this conductor holds a healthy lease;
//! - `api`: create, list, show, patch and delete, for the routes.

pub mod api;
pub mod clock;
pub mod fire;
pub mod firer;
pub mod model;
pub mod store;
pub mod validate;

use crossbeam_channel::{bounded, Receiver, Sender};

use clock::Clock;
use store::ScheduleStore;

/// What the fire loop and the routes share; the app owns it.
pub struct Schedules {
    pub store: ScheduleStore,
    pub clock: Clock,
    wake_tx: Sender<()>,
    wake_rx: Receiver<()>,
}

impl Schedules {
    pub fn new(store: ScheduleStore, clock: Clock) -> Schedules {
        // One pending wake is enough: the loop looks at every schedule when it wakes.
        let (wake_tx, wake_rx) = bounded(1);
        Schedules {
            store,
            clock,
            wake_tx,
            wake_rx,
        }
    }

    /// A schedule changed: the fire loop looks again at once.
    pub fn wake(&self) {
        let _ = self.wake_tx.try_send(());
    }

    pub fn receiver(&self) -> Receiver<()> {
        self.wake_rx.clone()
    }
}
