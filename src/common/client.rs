//! The HTTP client configuration used for daemon-to-daemon calls on the node.

use std::time::Duration;

/// A ureq agent for loopback calls: never routed through `$HTTP_PROXY`, non-2xx answers
/// returned as responses (their JSON bodies matter), and bounded in time end to end.
pub fn local_agent(connect: Duration, total: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(connect))
        .timeout_global(Some(total))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}
