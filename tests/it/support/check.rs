//! Assertions that say what they compared: a failing test prints both values, not `false`.

use std::fmt::Debug;

/// Asserts `got == want`; on a mismatch panics at the caller naming `what` and both values.
#[track_caller]
pub fn compare<G, W>(what: &str, got: G, want: W)
where
    G: PartialEq<W> + Debug,
    W: Debug,
{
    if got != want {
        panic!("{what}: got {got:?}, want {want:?}");
    }
}
