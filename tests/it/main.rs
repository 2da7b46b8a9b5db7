//! The one integration-test crate: every test here drives the real binaries over loopback.
//! One crate means one link step, which matters on a 2-core machine.

mod codex_rig;
mod http_layer;
mod status_api;
mod support;
mod torture;
