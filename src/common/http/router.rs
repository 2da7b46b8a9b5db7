//! The route table type. One table per daemon drives dispatch, `/describe*` and
//! `/v1/capabilities`, so what is served and what is advertised cannot drift apart.

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

/// Path parameters captured by `:name` segments.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub type RouteFn<C> = fn(&C, &Request, &Params) -> Result<Reply, ApiError>;

pub struct Route<C> {
    pub id: &'static str,
    pub kind: RouteKind,
    pub method: &'static str,
    /// `/v1/tasks/:task_id` style; `:name` matches one non-empty segment.
    pub pattern: &'static str,
    pub summary: &'static str,
    /// Served but left out of every self-description when false.
    pub listed: bool,
    pub handler: RouteFn<C>,
}

impl<C> Route<C> {
    /// `{id, kind, method, path, summary}` for self-description.
    pub fn describe(&self) -> Value {
        json!({
            "id": self.id,
            "kind": self.kind.as_str(),
            "method": self.method,
            "path": self.pattern,
            "summary": self.summary,
        })
    }
}

/// Finds the route for `req` and runs it. Unknown path → 404 `not_found`; known path with
/// another method → 405 `method_not_allowed` with `Allow`.
pub fn dispatch<C>(routes: &[Route<C>], ctx: &C, req: &Request) -> Result<Reply, ApiError> {
    let mut allowed: Vec<&'static str> = Vec::new();
    for route in routes {
        if let Some(params) = match_path(route.pattern, &req.path) {
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
pub fn match_path(pattern: &'static str, path: &str) -> Option<Params> {
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

    fn table() -> Vec<Route<()>> {
        vec![
            Route {
                id: "a",
                kind: RouteKind::Read,
                method: "GET",
                pattern: "/v1/x/:id",
                summary: "",
                listed: true,
                handler: ok,
            },
            Route {
                id: "b",
                kind: RouteKind::Write,
                method: "POST",
                pattern: "/v1/x/:id",
                summary: "",
                listed: true,
                handler: ok,
            },
            Route {
                id: "c",
                kind: RouteKind::Read,
                method: "GET",
                pattern: "/v1/x",
                summary: "",
                listed: true,
                handler: ok,
            },
        ]
    }

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
        let t = table();
        assert_eq!(
            body(dispatch(
                &t,
                &(),
                &Request::fake("GET", "/v1/x/a%20b", &[], b"")
            )),
            "a b"
        );
        assert_eq!(
            body(dispatch(&t, &(), &Request::fake("GET", "/v1/x", &[], b""))),
            "none"
        );
        assert_eq!(
            body(dispatch(&t, &(), &Request::fake("GET", "/v1/x/", &[], b""))),
            "404 not_found"
        );
        assert_eq!(
            body(dispatch(
                &t,
                &(),
                &Request::fake("GET", "/v1/x/a/b", &[], b"")
            )),
            "404 not_found"
        );
        let err = dispatch(&t, &(), &Request::fake("DELETE", "/v1/x/1", &[], b""))
            .err()
            .unwrap();
        assert_eq!(err.status, 405);
        assert_eq!(err.headers[0].1, "GET, POST");
    }
}
