//! A small HTTP/1.1 server on `std::net` + `httparse`, with WebSocket upgrades handed to
//! tungstenite on the same listener. Chosen over tiny_http 0.12, which has no socket
//! timeouts, unbounded threads and an accept loop that dies on one error.
//!
//! - `server`: listener, accept loop, connection cap, graceful stop.
//! - `conn`: one connection's keep-alive loop, limits and timeouts.
//! - `head`: reading a request head under a total deadline.
//! - `request` / `response`: plain values handlers work with.
//! - `stream`: the streamed reply (server-sent events) and the writer its body uses.
//! - `router`: the route table type that drives dispatch and self-description.
//! - `guard`: Host / Origin checks against DNS rebinding and browser CSRF.

pub mod conn;
pub mod guard;
pub mod head;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod stream;

pub use request::Request;
pub use response::{Reply, Response, WsHandler};
pub use server::{Handler, Server, ServerConfig, ServerHandle};
pub use stream::{Stream, StreamWriter};
