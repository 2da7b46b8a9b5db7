//! Issue 20: on a node whose daemons listen on a Tailscale address, commands run on the
//! node itself still reach them over loopback, whether or not Tailscale is up yet.
//! 100.64.0.1 is never an address of the test machine, so its bind fails here exactly as
//! it does on a Mac where launchd starts us before Tailscale.

use serde_json::Value;

use crate::support::conductor;
use crate::support::daemon::{Spawn, STATUS_API};
use crate::support::http::get;
use crate::support::tmp::TempDir;

const TAILNET: &str = "100.64.0.1";

#[test]
fn conductor_on_tailscale_answers_on_loopback_while_the_tailnet_bind_waits() {
    let dir = TempDir::new("tailnet-loopback");
    let d = conductor::spawn(&dir, "mini-main", "primary")
        .env("BAA_CONDUCTOR_LOCAL_API", format!("http://{TAILNET}:0"))
        .env("BAA_CONDUCTOR_LOCAL_API_ALLOWED_HOSTS", TAILNET)
        // The spawn helper's --local-api flag would win over the variable.
        .args(["--local-api", &format!("http://{TAILNET}:0")])
        .start();
    assert!(
        d.addr.starts_with("127.0.0.1:"),
        "announced {}: the loopback listener, the tailnet one being down",
        d.addr
    );
    let port = d.port();
    let health = get(&format!("http://127.0.0.1:{port}/healthz"));
    assert_eq!(health.status, 200, "{}", health.body);
    let localhost = crate::support::http::get_h(
        &format!("http://127.0.0.1:{port}/healthz"),
        &[("Host", &format!("localhost:{port}"))],
    );
    assert_eq!(localhost.status, 200, "{}", localhost.body);

    let runtime = get(&format!("http://127.0.0.1:{port}/v1/runtime")).expect(200)["data"].clone();
    let listeners = runtime["listeners"].as_array().expect("listeners").clone();
    let find = |url: String| -> Value {
        listeners
            .iter()
            .find(|l| l["url"] == url.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("no listener {url} in {listeners:?}"))
    };
    let tailnet = find(format!("http://{TAILNET}:{port}"));
    assert_eq!(tailnet["bound"], false, "{tailnet}");
    assert!(
        tailnet["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{tailnet}"
    );
    let lo = find(format!("http://127.0.0.1:{port}"));
    assert_eq!(lo["bound"], true, "{lo}");
    assert!(lo.get("error").is_none(), "{lo}");
    assert!(
        d.log()
            .contains(&format!("cannot listen on {TAILNET}:{port} yet")),
        "no warning about the tailnet bind:\n{}",
        d.log()
    );
}

#[test]
fn status_api_on_tailscale_answers_on_loopback() {
    let d = Spawn::new(STATUS_API)
        .args(["start", "--host", TAILNET, "--port", "0"])
        .start();
    assert!(d.addr.starts_with("127.0.0.1:"), "announced {}", d.addr);
    let health = get(&d.url("/healthz"));
    assert_eq!(health.status, 200, "{}", health.body);
}
