//! The time the schedules go by. In production it is the system clock. A test cannot wait
//! real minutes, so the hidden setting `BAA_CONDUCTOR_CLOCK_FILE` names a file holding the
//! current time in epoch ms; the fire loop then re-reads it every tick (50 ms) instead.

use std::path::PathBuf;
use std::sync::Mutex;

use baa::common::sync::lock;
use baa::common::time::now_ms;

pub enum Clock {
    System,
    /// A test's time source; `last` is its last good value (kept while a write is under
    /// way, so time never jumps back to the system clock mid-test).
    File {
        path: PathBuf,
        last: Mutex<u64>,
    },
}

impl Clock {
    pub fn new(file: Option<PathBuf>) -> Clock {
        match file {
            None => Clock::System,
            Some(path) => Clock::File {
                path,
                last: Mutex::new(0),
            },
        }
    }

    /// Now, in epoch ms.
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => now_ms(),
            Clock::File { path, last } => {
                let read = std::fs::read_to_string(path)
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok());
                let mut last = lock(last);
                match read {
                    Some(ms) => *last = ms,
                    None if *last == 0 => *last = now_ms(),
                    None => {}
                }
                *last
            }
        }
    }

    pub fn is_fake(&self) -> bool {
        matches!(self, Clock::File { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_file_is_the_time_and_its_last_good_value_survives_a_bad_read() {
        let dir = std::env::temp_dir().join(baa::common::ids::new_id("clock-test"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("now");
        std::fs::write(&path, "1700000000000\n").unwrap();
        let c = Clock::new(Some(path.clone()));
        assert_eq!(c.now_ms(), 1_700_000_000_000);
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(c.now_ms(), 1_700_000_000_000);
        std::fs::write(&path, "1700000060000").unwrap();
        assert_eq!(c.now_ms(), 1_700_000_060_000);
        assert!(c.is_fake() && !Clock::new(None).is_fake());
        let _ = std::fs::remove_dir_all(dir);
    }
}
