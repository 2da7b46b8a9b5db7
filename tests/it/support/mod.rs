//! Shared helpers for the integration tests: temp dirs, real daemons on free loopback
//! ports, and small HTTP/WebSocket clients with timeouts on every call.

#![allow(dead_code)]

pub mod daemon;
pub mod http;
pub mod tmp;
pub mod ws;
