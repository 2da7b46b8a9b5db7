//! A small HTTP/1.1 server on `std::net` + `httparse`, with WebSocket upgrades handed to
//! tungstenite on the same listener. Chosen over tiny_http 0.12, which has no socket
//! timeouts, unbounded threads and an accept loop that dies on one error.
//!
//! - `server`: listener, accept loop, admission, graceful stop.
//! - `slots`: the connection table: cap, eviction of the longest waiter, per-connection state.
//! - `conn`: one connection's keep-alive loop, limits and timeouts.
//! - `head`: reading a request head under a total deadline.
//! - `socket`: deadline reads without a `setsockopt` per read; the lingering close.
//! - `config`: the handler type and the limits and timeouts a server runs with.
//! - `request` / `response`: plain values handlers work with.
//! - `status_line`: the bytes of a response head, shared by `response` and `stream`.
//! - `stream`: the streamed reply (server-sent events) and the writer its body uses.
//! - `router`: the route table type that drives dispatch and self-description.
//! - `guard`: Host / Origin checks against DNS rebinding and browser CSRF.
//!
//! Imports run one way: `server` → `conn` → `head` → `socket`, and everything may use
//! `slots`, `config`, `request` and `response`.

pub mod config;
pub mod conn;
pub mod guard;
pub mod head;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod slots;
pub mod socket;
pub mod status_line;
pub mod stream;

pub use config::{Handler, ServerConfig};
pub use request::{Request, RequestId};
pub use response::{Reply, Response, WsHandler};
pub use server::{Server, ServerHandle};
pub use stream::{Stream, StreamWriter};
