//! One atomically written JSON file per schedule, `<state>/schedules/<id>.json`. There are
//! tens of schedules, not thousands, so a list reads the directory: a standby (which shares
//! the state dir and never writes) and a new leader always see what the files say.
//! Writers in this process (the routes and the fire loop) go through one lock, so a fire
//! and a PATCH of the same schedule never lose each other's change.

use std::path::Path;
use std::sync::Mutex;

use baa::common::store::{JsonStore, StoreError};
use baa::common::sync::lock;

use super::model::Schedule;

pub const SCHEDULES_DIR: &str = "schedules";

pub struct ScheduleStore {
    files: JsonStore,
    write: Mutex<()>,
}

fn file(id: &str) -> String {
    format!("{id}.json")
}

/// A schedule id from a URL names a file only when it is one of ours in shape.
pub fn safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ScheduleStore {
    pub fn open(state_dir: &Path) -> Result<ScheduleStore, StoreError> {
        Ok(ScheduleStore {
            files: JsonStore::open(state_dir.join(SCHEDULES_DIR))?,
            write: Mutex::new(()),
        })
    }

    /// Every schedule, oldest first. A file that cannot be read is logged and left out.
    pub fn list(&self) -> Vec<Schedule> {
        let Ok(entries) = std::fs::read_dir(self.files.dir()) else {
            return Vec::new();
        };
        let mut out: Vec<Schedule> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
            .filter(|id| safe_id(id))
            .filter_map(|id| match self.get(&id) {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("schedules: cannot read {id}: {e}");
                    None
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (a.created_at.as_str(), a.schedule_id.as_str())
                .cmp(&(b.created_at.as_str(), b.schedule_id.as_str()))
        });
        out
    }

    pub fn get(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        if !safe_id(id) {
            return Ok(None);
        }
        self.files.read(&file(id))
    }

    /// Writes a new schedule (durable before the caller answers).
    pub fn insert(&self, s: &Schedule) -> Result<(), StoreError> {
        let _guard = lock(&self.write);
        self.files.write(&file(&s.schedule_id), s)
    }

    /// Reads the schedule, applies `f`, writes it back; `f` returns false to leave it as
    /// it was. `None` when there is no such schedule.
    pub fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut Schedule) -> bool,
    ) -> Result<Option<Schedule>, StoreError> {
        let _guard = lock(&self.write);
        let Some(mut s) = self.get(id)? else {
            return Ok(None);
        };
        if f(&mut s) {
            self.files.write(&file(id), &s)?;
        }
        Ok(Some(s))
    }

    /// Removes the schedule; false when there was none.
    pub fn remove(&self, id: &str) -> Result<bool, StoreError> {
        let _guard = lock(&self.write);
        if self.get(id)?.is_none() {
            return Ok(false);
        }
        self.files.remove(&file(id))?;
        Ok(true)
    }
}
