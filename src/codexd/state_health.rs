//! Whether codexd's own state file is usable, for `/readyz` and the status `warnings`:
//! damage found at start stays a warning until the next start (what was wrong and what
//! codexd did about it), and makes codexd not ready until it has healed — the file written
//! again with the child settled (re-attached, replaced, or given up on). A write that
//! fails makes it not ready until a write succeeds.

use std::sync::Mutex;

use baa::common::sync::lock;
use baa::common::time::now_rfc3339;

#[derive(Default)]
pub struct StateHealth {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Damage found at start, one line each (kept until the next start).
    found: Vec<String>,
    /// The damage found at start is not healed yet.
    healing: bool,
    /// The last write of daemon-state.json failed (why); cleared by a successful one.
    write_error: Option<String>,
}

impl StateHealth {
    /// Damage found at start: a warning from now on, and not ready until [`wrote`](Self::wrote)
    /// reports a good write with the child settled.
    pub fn damaged(&self, warning: String) {
        let mut inner = lock(&self.inner);
        inner
            .found
            .push(format!("{} (at {})", warning, now_rfc3339()));
        inner.healing = true;
    }

    /// The outcome of a daemon-state write; `settled`: the child is past its start.
    pub fn wrote(&self, error: Option<String>, settled: bool) {
        let mut inner = lock(&self.inner);
        match error {
            Some(e) => inner.write_error = Some(e),
            None => {
                inner.write_error = None;
                if settled {
                    inner.healing = false;
                }
            }
        }
    }

    /// Why codexd's state is not ready now (empty: it is).
    pub fn not_ready(&self) -> Vec<String> {
        let inner = lock(&self.inner);
        let mut out = Vec::new();
        if let Some(e) = &inner.write_error {
            out.push(format!("daemon-state.json cannot be written: {e}"));
        }
        if inner.healing {
            out.push(
                "daemon-state.json was damaged at start; codexd is healing it (finding its app-server, writing the file again)".to_string(),
            );
        }
        out
    }

    /// Every warning about the state files: what is wrong now, then what was found at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = self.not_ready();
        out.extend(lock(&self.inner).found.iter().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_is_not_ready_until_a_good_write_with_a_settled_child_and_stays_a_warning() {
        let h = StateHealth::default();
        assert!(h.not_ready().is_empty() && h.warnings().is_empty());
        h.damaged("daemon-state.json was an empty object".into());
        assert_eq!(h.not_ready().len(), 1);
        h.wrote(None, false);
        assert_eq!(h.not_ready().len(), 1, "healed before the child settled");
        h.wrote(Some("Is a directory".into()), true);
        assert_eq!(h.not_ready().len(), 2);
        h.wrote(None, true);
        assert!(h.not_ready().is_empty());
        let w = h.warnings();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("daemon-state.json was an empty object"),
            "{w:?}"
        );
    }
}
