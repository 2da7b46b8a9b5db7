//! Where a daemon listens. A daemon configured with a Tailscale address also listens on
//! loopback at the same port, so every command run on the node itself
//! (`curl http://127.0.0.1:4317/healthz`, the `task` CLI) reaches it; the Tailscale
//! address, often not up yet when launchd starts us, is retried in the background.
//!
//! - `board`: the listeners and whether each is bound (what `/v1/runtime` shows).
//! - `bind`: binding at start: loopback must bind, the Tailscale address may wait.
//! - `retry`: the thread that binds a waiting address and hands it to the server.
//! - `serving`: one HTTP server over all of them, stopped as one.

pub mod bind;
pub mod board;
pub mod retry;
pub mod serving;

pub use bind::{bind, BindError, Bound};
pub use board::Listeners;
pub use serving::Serving;

/// How often an address that could not be bound is tried again.
pub const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
