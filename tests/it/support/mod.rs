//! Shared helpers for the integration tests (and the benches in `benches/`, which include
//! this module): temp dirs, real daemons on free loopback ports, the real codex app-server
//! rig and its mock model, and small HTTP/WebSocket clients with timeouts on every call.

#![allow(dead_code)]

pub mod bench;
pub mod check;
pub mod codex;
pub mod codexd;
pub mod conductor;
pub mod daemon;
pub mod git;
pub mod http;
pub mod mcp;
pub mod mock_model;
pub mod python;
pub mod rng;
pub mod status_api;
pub mod stub;
pub mod tasks;
pub mod tmp;
pub mod ws;
