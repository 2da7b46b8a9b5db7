//! What a failed JSON-RPC call to the child becomes for an HTTP client.

use serde_json::json;

use baa::common::api_error::ApiError;

use crate::experimental;
use crate::rpc::RpcError;

/// An RPC failure as an HTTP error.
pub fn rpc_error(e: RpcError) -> ApiError {
    match &e {
        RpcError::Timeout { .. } => ApiError::new(504, "app_server_timeout", e.to_string()),
        RpcError::ChildGone | RpcError::Backlogged => {
            ApiError::new(503, "app_server_unavailable", e.to_string())
        }
        RpcError::TooLarge { .. } => {
            ApiError::new(502, "app_server_response_too_large", e.to_string())
        }
        // The child refused an experimental field codexd did not catch itself.
        RpcError::Server { message, .. } if experimental::is_child_rejection(message) => {
            let field = message
                .split_whitespace()
                .next()
                .and_then(|m| m.rsplit('.').next())
                .unwrap_or("a field");
            experimental::disabled(&[field.to_string()])
        }
        RpcError::Server {
            code,
            message,
            data,
        } => ApiError::new(
            400,
            "app_server_rejected",
            format!("The app-server refused the request: {message}"),
        )
        .with_details(
            json!({"upstreamCode": code, "upstreamMessage": message, "upstreamData": data}),
        ),
    }
}
