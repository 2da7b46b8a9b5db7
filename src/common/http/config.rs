//! What a server is configured with: the application handler and the limits and timeouts
//! every connection is held to.

use std::sync::Arc;
use std::time::Duration;

use super::request::Request;
use super::response::Reply;

/// The application: turns a request into a reply. Runs on the connection's thread.
pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Prefix for thread names (`<name>-accept`, `<name>-conn`).
    pub name: String,
    /// Connections served at once (HTTP and WebSocket). Lowered at start to what the
    /// open-files limit can carry (see `slots::fd_cap`). When every slot is taken, the
    /// connection that has waited longest for a request head is closed to make room; only
    /// when all are busy does a newcomer get an immediate 503.
    pub max_connections: usize,
    /// Total time allowed to receive a request head once its first byte arrived, and for
    /// the first request's first byte after accept.
    pub head_timeout: Duration,
    /// The head timeout while at least half the connection slots are taken, so clients
    /// that trickle their heads give their slots back quickly.
    pub pressure_head_timeout: Duration,
    /// How long a keep-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Longest pause allowed while a body is being received.
    pub body_timeout: Duration,
    /// Longest a single response write may block on a client that does not read.
    pub write_timeout: Duration,
    pub max_head_bytes: usize,
    pub max_body_bytes: usize,
    /// Largest WebSocket message accepted from a client.
    pub max_ws_message_bytes: usize,
    /// Pretty-print the JSON error bodies the server itself produces.
    pub pretty_json: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            name: "http".to_string(),
            max_connections: 512,
            head_timeout: Duration::from_secs(10),
            pressure_head_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_head_bytes: 32 * 1024,
            max_body_bytes: 1024 * 1024,
            max_ws_message_bytes: 1024 * 1024,
            pretty_json: false,
        }
    }
}
