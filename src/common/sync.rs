//! The one lock policy of the tree: a poisoned lock is recovered, logged and cleared.
//!
//! A `Mutex` is poisoned when a thread panics while holding it. Every daemon catches a
//! handler's panic per request, so the panic itself is already reported as a 500; what
//! must not follow is a daemon that dies on the next `lock().unwrap()`, or one that
//! silently skips its work on every later `if let Ok(..) = m.lock()` (a request that is
//! never registered waits out its whole timeout). The data behind our locks stays valid
//! across a panic (plain maps, queues and counters, each updated in one step), so the
//! guard is taken over, the poisoning is logged once with the place that found it, and
//! the flag is cleared so a later panic is reported again.

use std::panic::Location;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Locks `m`, recovering it if a panicking thread poisoned it.
#[track_caller]
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(guard) => guard,
        Err(poisoned) => {
            report(Location::caller());
            m.clear_poison();
            poisoned.into_inner()
        }
    }
}

/// `cv.wait(guard)` under the same policy.
#[track_caller]
pub fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    match cv.wait(guard) {
        Ok(guard) => guard,
        Err(poisoned) => {
            report(Location::caller());
            poisoned.into_inner()
        }
    }
}

/// `cv.wait_timeout(guard, dur)` under the same policy; true if it timed out.
#[track_caller]
pub fn wait_timeout<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    dur: std::time::Duration,
) -> (MutexGuard<'a, T>, bool) {
    match cv.wait_timeout(guard, dur) {
        Ok((guard, t)) => (guard, t.timed_out()),
        Err(poisoned) => {
            report(Location::caller());
            let (guard, t) = poisoned.into_inner();
            (guard, t.timed_out())
        }
    }
}

fn report(at: &Location<'_>) {
    log::error!(
        "a thread panicked while holding the lock taken at {}:{}; recovered it and carried on",
        at.file(),
        at.line()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn poisoned_lock_is_recovered_and_cleared() {
        let m = Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert!(!m.is_poisoned(), "poison flag not cleared");
        assert_eq!(*lock(&m), 2);
    }
}
