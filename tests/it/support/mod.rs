//! Shared helpers for the integration tests.

pub mod codex;
pub mod tempdir;
