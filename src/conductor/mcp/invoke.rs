//! Runs one route of the table in-process, as if an HTTP request had come in: the MCP
//! tools and resources take the same code path (validation, leader checks, envelopes)
//! as curl does, with no second implementation to drift.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use baa::common::api_error::ApiError;
use baa::common::http::router::{dispatch, Route};
use baa::common::http::{Reply, Request, RequestId};

/// A route's refusal, as the HTTP API would have put it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub details: Value,
}

impl Failure {
    /// What a model reads: the API's code and message, and the details when they say more.
    pub fn text(&self) -> String {
        let mut t = format!("{} (HTTP {}): {}", self.code, self.status, self.message);
        if self.details.as_object().is_some_and(|d| !d.is_empty()) {
            t.push_str(&format!(" Details: {}", self.details));
        }
        t
    }

    fn internal(message: String) -> Self {
        Self {
            status: 500,
            code: "internal_error".into(),
            message,
            details: Value::Null,
        }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Self {
            status: e.status,
            code: e.code,
            message: e.message,
            details: e.details.unwrap_or(Value::Null),
        }
    }
}

/// One synthesized request: `path` is already percent-encoded, `query` is `a=1&b=2`.
pub struct Call<'a> {
    pub method: &'static str,
    pub path: String,
    pub query: String,
    pub body: Option<Value>,
    /// The MCP request, whose Host and Authorization the route sees.
    pub outer: &'a Request,
}

/// The success envelope, borrowing `data` as the JSON text the route wrote.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
}

/// The route's `data` as JSON text on success, else its refusal.
pub fn run<C>(routes: &[Route<C>], ctx: &C, call: Call<'_>) -> Result<String, Failure> {
    let mut headers = Vec::with_capacity(3);
    for name in ["host", "authorization"] {
        if let Some(v) = call.outer.header(name) {
            headers.push((name.to_string(), v.to_string()));
        }
    }
    let body = match &call.body {
        Some(b) => {
            headers.push(("content-type".into(), "application/json".into()));
            serde_json::to_vec(b).unwrap_or_default()
        }
        None => Vec::new(),
    };
    let req = Request {
        method: call.method.to_string(),
        path: call.path,
        query: call.query,
        headers,
        body,
        remote: call.outer.remote,
        request_id: RequestId::next(),
    };
    let resp = match dispatch(routes, ctx, &req) {
        Err(e) => return Err(e.into()),
        Ok(Reply::Http(resp)) => resp,
        Ok(_) => {
            return Err(Failure {
                status: 400,
                code: "not_available_over_mcp".into(),
                message: "This route streams or upgrades the connection; call it over HTTP.".into(),
                details: Value::Null,
            })
        }
    };
    if resp.status < 400 {
        return match serde_json::from_slice::<Envelope>(&resp.body) {
            Ok(env) => Ok(env.data.get().to_string()),
            Err(e) => Err(Failure::internal(format!(
                "The route answered without a JSON data envelope: {e}."
            ))),
        };
    }
    let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    Err(Failure {
        status: resp.status,
        code: v["error"].as_str().unwrap_or("error").to_string(),
        message: v["message"].as_str().unwrap_or("").to_string(),
        details: v.get("details").cloned().unwrap_or(Value::Null),
    })
}
