//! The cap on concurrent `files/read` and `files/write`. A read holds up to about three
//! copies of an 8 MiB file at once (the bytes, the JSON string, the serialized answer): 64
//! parallel reads took the conductor to 2.2 GB of RSS. Past the cap a call answers
//! `FILES_BUSY` at once, as exec answers `EXEC_BUSY`; nothing queues. The cap is
//! `BAA_CONDUCTOR_MAX_FILE_OPS` (default 4).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::OpError;

pub struct FileSlots {
    cap: usize,
    running: AtomicUsize,
}

impl FileSlots {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            running: AtomicUsize::new(0),
        }
    }

    /// A slot for one file operation, or `FILES_BUSY` when `cap` are running.
    pub fn take(&self) -> Result<FileSlot<'_>, OpError> {
        let taken = self
            .running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.cap).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(FileSlot { slots: self }),
            Err(_) => Err(OpError::new(
                "FILES_BUSY",
                format!(
                    "{} file operations are already running; retry when one finishes.",
                    self.cap
                ),
            )),
        }
    }
}

/// One running file operation's claim; dropping it frees the slot.
pub struct FileSlot<'a> {
    slots: &'a FileSlots,
}

impl Drop for FileSlot<'_> {
    fn drop(&mut self) {
        self.slots.running.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_ops_beyond_the_cap_are_busy_until_one_ends() {
        let slots = FileSlots::new(2);
        let a = slots.take().unwrap();
        let _b = slots.take().unwrap();
        let e = slots.take().err().expect("a third op is refused");
        assert_eq!(e.code, "FILES_BUSY");
        assert!(e.message.contains("2 file operations"), "{}", e.message);
        drop(a);
        assert!(slots.take().is_ok(), "a freed slot is taken again");
    }
}
