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

/// Everything but RFC 3986 unreserved characters is encoded (a path segment or a query
/// component).
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes `s` for a path segment or a query component of a URL this node calls.
pub fn encode_component(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
}
