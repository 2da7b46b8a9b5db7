//! The status-api route table and the request entry point.
//!
//! Everything is read-only: the table holds only GET routes, so any other method on a
//! known path is a 405 from the shared dispatcher, and an unknown path a 404. Host and
//! Origin are checked before routing, as on the other daemons: the page names who paused
//! automation and why, which a foreign web page must not be able to read via DNS rebinding.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::advice::Site;
use super::aggregate;
use super::fetch::{self, Upstreams};
use super::page;
use crate::common::api_error::{ok_envelope, ApiError};
use crate::common::http::guard::HostPolicy;
use crate::common::http::router::{self, dispatch, Params, Route};
use crate::common::http::{Reply, Request, Response};

pub struct Ctx {
    pub upstreams: Upstreams,
    /// Where the node's logs are, for the page's hints.
    pub site: Site,
    pub policy: HostPolicy,
}

/// Upstream bounds: a dead peer fails at connect, a wedged one at the total deadline,
/// so a page load never waits much longer than `TOTAL_TIMEOUT`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
pub const TOTAL_TIMEOUT: Duration = Duration::from_millis(1500);

/// The table, one route per line (`rustfmt::skip`: a table reads down its columns).
#[rustfmt::skip]
pub static ROUTES: &[Route<Ctx>] = &[
    Route::probe("probe.healthz", "GET", "/healthz", "Liveness probe: ok", healthz),
    Route::read("status.json", "GET", "/v1/status", "Aggregated conductor, codexd and task status, each part marked reachable or not, with what to do about each warning", status_json),
    Route::read("status.page", "GET", "/", "Human-readable status page", status_page),
];

/// `baa-status-api routes [--json]`: the table above, printed without starting anything.
pub fn command(json: bool) -> ExitCode {
    crate::common::cli::print("baa-status-api", &router::render_table(ROUTES, json))
}

/// JSON and text replies may not load or run anything at all.
const CSP_STRICT: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Serves one request: guards, dispatch, errors as JSON envelopes, security headers.
pub fn handle(ctx: &Ctx, req: &Request) -> Response {
    let result = ctx
        .policy
        .check(req)
        .and_then(|()| ctx.policy.check_origin(req))
        .and_then(|()| dispatch(ROUTES, ctx, req));
    let resp = match result {
        Ok(Reply::Http(resp)) => resp,
        Ok(Reply::WebSocket(_) | Reply::Stream(_)) => {
            ApiError::internal("This daemon serves no WebSocket or stream.")
                .to_response(&req.request_id, true)
        }
        Err(e) => e.to_response(&req.request_id, true),
    };
    let resp = if resp.header("Content-Security-Policy").is_none() {
        resp.with_header("Content-Security-Policy", CSP_STRICT)
    } else {
        resp
    };
    resp.with_header("Referrer-Policy", "no-referrer")
}

fn healthz(_: &Ctx, _: &Request, _: &Params) -> Result<Reply, ApiError> {
    Ok(Response::text(200, "ok\n").into())
}

fn status_data(ctx: &Ctx) -> Value {
    let raw = fetch::fetch_all(&ctx.upstreams);
    aggregate::build(&ctx.site, &raw, &crate::common::time::now_rfc3339())
}

fn status_json(ctx: &Ctx, req: &Request, _: &Params) -> Result<Reply, ApiError> {
    let body = ok_envelope(&req.request_id, status_data(ctx));
    Ok(Response::json_value(200, &body, true).into())
}

fn status_page(ctx: &Ctx, _: &Request, _: &Params) -> Result<Reply, ApiError> {
    let nonce = nonce();
    let html = page::render(&status_data(ctx), &nonce, crate::common::time::now_ms());
    // Only our own nonce-tagged <style>/<script> run; the script may only call back here.
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; \
         form-action 'none'"
    );
    Ok(Response::html(200, html)
        .with_header("Content-Security-Policy", csp)
        .into())
}

/// A per-response CSP nonce from the OS RNG: injected markup cannot guess it. Falls back
/// to a time-based id, which still only matters if escaping were ever missed.
fn nonce() -> String {
    let mut buf = [0u8; 16];
    let from_os = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    match from_os {
        Ok(()) => buf.iter().map(|b| format!("{b:02x}")).collect(),
        Err(_) => crate::common::ids::new_id("n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx {
            // Port 1 on loopback: nothing listens, so fetches fail fast.
            upstreams: Upstreams {
                conductor_base: "http://127.0.0.1:1".into(),
                codexd_base: "http://127.0.0.1:1".into(),
                connect_timeout: CONNECT_TIMEOUT,
                total_timeout: TOTAL_TIMEOUT,
            },
            site: Site {
                logs_dir: None,
                label_prefix: "so.makefile".into(),
                conductor_base: "http://127.0.0.1:1".into(),
                codexd_base: "http://127.0.0.1:1".into(),
            },
            policy: HostPolicy::for_listener("127.0.0.1:4318".parse().unwrap(), &[]),
        }
    }

    fn call(method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut h = vec![("Host", "127.0.0.1:4318")];
        h.extend_from_slice(headers);
        handle(&ctx(), &Request::fake(method, path, &h, b""))
    }

    #[test]
    fn read_only_and_guarded() {
        assert_eq!(call("GET", "/healthz", &[]).body, b"ok\n");
        for path in ["/", "/v1/status", "/healthz"] {
            for method in ["POST", "PUT", "DELETE", "PATCH"] {
                let r = call(method, path, &[]);
                assert_eq!(r.status, 405, "{method} {path}");
                assert_eq!(r.header("Allow"), Some("GET"));
            }
        }
        assert_eq!(call("GET", "/nope", &[]).status, 404);
        let foreign = handle(
            &ctx(),
            &Request::fake("GET", "/", &[("Host", "evil.example:4318")], b""),
        );
        assert_eq!(foreign.status, 403);
        let origin = call("GET", "/v1/status", &[("Origin", "https://evil.example")]);
        assert_eq!(origin.status, 403);
        assert!(call("GET", "/nope", &[])
            .header("Content-Security-Policy")
            .is_some_and(|c| c.starts_with("default-src 'none'")));
    }

    #[test]
    fn page_csp_carries_the_nonce_used_in_the_page() {
        let r = call("GET", "/", &[]);
        assert_eq!(r.status, 200);
        let csp = r.header("Content-Security-Policy").unwrap().to_string();
        let nonce = csp
            .split("'nonce-")
            .nth(1)
            .unwrap()
            .split('\'')
            .next()
            .unwrap();
        assert_eq!(nonce.len(), 32, "{csp}");
        let html = String::from_utf8(r.body).unwrap();
        assert!(
            html.contains(&format!("<script nonce=\"{nonce}\">")),
            "{html}"
        );
    }
}
