//! The route table type. One table per daemon drives dispatch, the daemon's self-description
//! (`/describe*`, `/v1/capabilities`, `/v1/codexd/status`) and `<binary> routes --json`, so
//! what is served and what is advertised cannot drift apart.
//!
//! A route is made only by `Route::read`, `Route::write` or `Route::probe` (the kind is
//! what a caller may expect: reads change nothing, writes change state, probes are
//! low-level diagnostics), optionally `.hidden()` (served, never listed) and, for a path
//! taken from configuration, `.at(path)`. The constructors are `const fn`, so a table is a
//! `static`; a configured path makes an owned copy of the table at start.

use std::borrow::Cow;

use serde_json::{json, Value};

use super::request::{percent_decode, Request};
use super::response::Reply;
use crate::common::api_error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Read,
    Write,
    Probe,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Read => "read",
            RouteKind::Write => "write",
            RouteKind::Probe => "probe",
        }
    }
}

/// Path parameters captured by `:name` segments; the names borrow from the route.
#[derive(Debug, Default, Clone)]
pub struct Params<'r>(Vec<(&'r str, String)>);

impl Params<'_> {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub type RouteFn<C> = fn(&C, &Request, &Params<'_>) -> Result<Reply, ApiError>;

/// One served route. Fields are private: the constructors are the only way to make one.
pub struct Route<C> {
    id: &'static str,
    kind: RouteKind,
    method: &'static str,
    /// `/v1/tasks/:task_id` style; `:name` matches one non-empty segment. Owned only when
    /// the path comes from configuration (`at`).
    pattern: Cow<'static, str>,
    summary: &'static str,
    /// Served but left out of every self-description when false.
    listed: bool,
    handler: RouteFn<C>,
}

// By hand: a derive would require `C: Clone`, but only the fn pointer mentions `C`.
impl<C> Clone for Route<C> {
    fn clone(&self) -> Self {
        Self {
            pattern: self.pattern.clone(),
            ..*self
        }
    }
}

impl<C> Route<C> {
    const fn new(
        kind: RouteKind,
        id: &'static str,
        method: &'static str,
        pattern: &'static str,
        summary: &'static str,
        handler: RouteFn<C>,
    ) -> Self {
        Self {
            id,
            kind,
            method,
            pattern: Cow::Borrowed(pattern),
            summary,
            listed: true,
            handler,
        }
    }

    /// A route that changes nothing. The method is explicit: a WebSocket upgrade is a GET,
    /// and a read with a body may be a POST.
    pub const fn read(
        id: &'static str,
        method: &'static str,
        pattern: &'static str,
        summary: &'static str,
        handler: RouteFn<C>,
    ) -> Self {
        Self::new(RouteKind::Read, id, method, pattern, summary, handler)
    }

    /// A route that changes state or acts on the host.
    pub const fn write(
        id: &'static str,
        method: &'static str,
        pattern: &'static str,
        summary: &'static str,
        handler: RouteFn<C>,
    ) -> Self {
        Self::new(RouteKind::Write, id, method, pattern, summary, handler)
    }

    /// A low-level diagnostic (liveness, readiness, role).
    pub const fn probe(
        id: &'static str,
        method: &'static str,
        pattern: &'static str,
        summary: &'static str,
        handler: RouteFn<C>,
    ) -> Self {
        Self::new(RouteKind::Probe, id, method, pattern, summary, handler)
    }

    /// Served, but never listed in a self-description (`listed: false` in `routes --json`).
    pub const fn hidden(mut self) -> Self {
        self.listed = false;
        self
    }

    /// The same route at a path taken from configuration.
    pub fn at(mut self, pattern: impl Into<String>) -> Self {
        self.pattern = Cow::Owned(pattern.into());
        self
    }

    pub fn id(&self) -> &'static str {
        self.id
    }

    pub fn kind(&self) -> RouteKind {
        self.kind
    }

    pub fn method(&self) -> &'static str {
        self.method
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    pub fn summary(&self) -> &'static str {
        self.summary
    }

    pub fn listed(&self) -> bool {
        self.listed
    }

    /// `{id, kind, method, path, summary}` for self-description.
    pub fn describe(&self) -> Value {
        json!({
            "id": self.id,
            "kind": self.kind.as_str(),
            "method": self.method,
            "path": self.pattern(),
            "summary": self.summary,
        })
    }

    /// `{id, kind, method, path, summary, listed}`: one entry of `routes --json`.
    pub fn to_json(&self) -> Value {
        let mut v = self.describe();
        v["listed"] = Value::Bool(self.listed);
        v
    }
}

/// The route with this id, if the table has it.
pub fn find<'t, C>(routes: &'t [Route<C>], id: &str) -> Option<&'t Route<C>> {
    routes.iter().find(|r| r.id == id)
}

/// Every route, hidden ones included, as `<binary> routes --json` prints them.
pub fn table_json<C>(routes: &[Route<C>]) -> Value {
    Value::Array(routes.iter().map(Route::to_json).collect())
}

/// What `<binary> routes [--json]` prints: one line per route, or the JSON of
/// [`table_json`]. The command line and the printing are `common::cli`'s.
pub fn render_table<C>(routes: &[Route<C>], json: bool) -> String {
    if json {
        let mut s = serde_json::to_string_pretty(&table_json(routes)).unwrap_or_default();
        s.push('\n');
        return s;
    }
    routes
        .iter()
        .map(|r| {
            let hidden = if r.listed { "" } else { "  (hidden)" };
            format!(
                "{:<7} {:<34} {:<6} {}{hidden}\n",
                r.method,
                r.pattern(),
                r.kind.as_str(),
                r.id
            )
        })
        .collect()
}

/// Finds the route for `req` and runs it. Unknown path → 404 `not_found`; known path with
/// another method → 405 `method_not_allowed` with `Allow`.
pub fn dispatch<C>(routes: &[Route<C>], ctx: &C, req: &Request) -> Result<Reply, ApiError> {
    let mut allowed: Vec<&'static str> = Vec::new();
    for route in routes {
        if let Some(params) = match_path(route.pattern(), &req.path) {
            if route.method == req.method || (req.method == "HEAD" && route.method == "GET") {
                return (route.handler)(ctx, req, &params);
            }
            if !allowed.contains(&route.method) {
                allowed.push(route.method);
            }
        }
    }
    if allowed.is_empty() {
        Err(ApiError::route_not_found(&req.method, &req.path))
    } else {
        Err(ApiError::method_not_allowed(
            &req.method,
            &req.path,
            &allowed,
        ))
    }
}

/// Matches `path` against `pattern`, returning captured params.
pub fn match_path<'r>(pattern: &'r str, path: &str) -> Option<Params<'r>> {
    let mut params = Vec::new();
    let mut pat = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (pat.next(), got.next()) {
            (None, None) => return Some(Params(params)),
            (Some(p), Some(g)) => {
                if let Some(name) = p.strip_prefix(':') {
                    if g.is_empty() {
                        return None;
                    }
                    params.push((name, percent_decode(g)));
                } else if p != g {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::http::Response;

    fn ok(_: &(), _: &Request, p: &Params) -> Result<Reply, ApiError> {
        Ok(Response::text(200, p.get("id").unwrap_or("none").to_string()).into())
    }

    static TABLE: &[Route<()>] = &[
        Route::read("a", "GET", "/v1/x/:id", "read one", ok),
        Route::write("b", "POST", "/v1/x/:id", "write one", ok),
        Route::read("c", "GET", "/v1/x", "read all", ok),
        Route::probe("d", "GET", "/healthz", "alive", ok).hidden(),
    ];

    fn body(r: Result<Reply, ApiError>) -> String {
        match r {
            Ok(Reply::Http(resp)) => String::from_utf8(resp.body).unwrap(),
            Ok(Reply::WebSocket(_)) => "ws".into(),
            Ok(Reply::Stream(_)) => "stream".into(),
            Err(e) => format!("{} {}", e.status, e.code),
        }
    }

    #[test]
    fn dispatches_with_params_and_errors() {
        let t = TABLE;
        assert_eq!(
            body(dispatch(
                t,
                &(),
                &Request::fake("GET", "/v1/x/a%20b", &[], b"")
            )),
            "a b"
        );
        assert_eq!(
            body(dispatch(t, &(), &Request::fake("GET", "/v1/x", &[], b""))),
            "none"
        );
        assert_eq!(
            body(dispatch(t, &(), &Request::fake("GET", "/v1/x/", &[], b""))),
            "404 not_found"
        );
        assert_eq!(
            body(dispatch(
                t,
                &(),
                &Request::fake("GET", "/v1/x/a/b", &[], b"")
            )),
            "404 not_found"
        );
        let err = dispatch(t, &(), &Request::fake("DELETE", "/v1/x/1", &[], b""))
            .err()
            .unwrap();
        assert_eq!(err.status, 405);
        assert_eq!(err.headers[0].1, "GET, POST");
    }

    #[test]
    fn constructors_set_kind_method_and_listing() {
        let got: Vec<_> = TABLE
            .iter()
            .map(|r| (r.id(), r.kind(), r.method(), r.pattern(), r.listed()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", RouteKind::Read, "GET", "/v1/x/:id", true),
                ("b", RouteKind::Write, "POST", "/v1/x/:id", true),
                ("c", RouteKind::Read, "GET", "/v1/x", true),
                ("d", RouteKind::Probe, "GET", "/healthz", false),
            ]
        );
        // A read may use any method (a WebSocket upgrade is a GET, a read with a body a POST).
        let r = Route::<()>::read("q", "POST", "/v1/query", "s", ok);
        assert_eq!((r.kind(), r.method()), (RouteKind::Read, "POST"));
    }

    #[test]
    fn hidden_routes_are_served_and_only_listed_in_the_full_table() {
        assert_eq!(
            body(dispatch(
                TABLE,
                &(),
                &Request::fake("GET", "/healthz", &[], b"")
            )),
            "none"
        );
        assert_eq!(
            TABLE[3].describe(),
            json!({"id": "d", "kind": "probe", "method": "GET", "path": "/healthz", "summary": "alive"})
        );
        assert_eq!(
            table_json(TABLE)[3],
            json!({"id": "d", "kind": "probe", "method": "GET", "path": "/healthz", "summary": "alive", "listed": false})
        );
        assert_eq!(table_json(TABLE)[0]["listed"], json!(true));
        assert_eq!(find(TABLE, "c").map(Route::pattern), Some("/v1/x"));
        assert!(find(TABLE, "zz").is_none());
    }

    #[test]
    fn a_configured_path_replaces_the_pattern() {
        let t: Vec<Route<()>> = TABLE
            .iter()
            .map(|r| match r.id() {
                "c" => r.clone().at(String::from("/custom/:id")),
                _ => r.clone(),
            })
            .collect();
        assert_eq!(t[2].pattern(), "/custom/:id");
        assert_eq!(TABLE[2].pattern(), "/v1/x", "the static table is untouched");
        assert_eq!(
            body(dispatch(
                &t,
                &(),
                &Request::fake("GET", "/custom/7", &[], b"")
            )),
            "7"
        );
        assert_eq!(
            body(dispatch(&t, &(), &Request::fake("GET", "/v1/x", &[], b""))),
            "404 not_found"
        );
    }
}
