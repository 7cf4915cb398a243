//! Errors of the HTTP front, in each API's own shape: OpenAI's
//! `{"error": {message, type, param, code}}` and Anthropic's
//! `{"type": "error", "error": {type, message}}`, with the status the plugin's error implies.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{json, Value};

/// Which API's error shape to answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// OpenAI Chat Completions, Responses and the models list.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

/// An error answered to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Readable message (never a secret: plugin messages are already scrubbed).
    pub message: String,
    /// The request field at fault, when one is.
    pub param: Option<String>,
}

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            param: None,
        }
    }

    /// A 400 naming the field at fault.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: if message.contains(param) {
                message
            } else {
                format!("{param}: {message}")
            },
            param: Some(param.to_string()),
        }
    }

    /// The error a plugin stream's terminal `error` event describes
    /// (`{kind, status, retryable, message}`).
    pub fn from_event(event: &Value) -> Self {
        let message = event["message"]
            .as_str()
            .unwrap_or("the stream failed")
            .to_string();
        let upstream = event["status"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .filter(|s| s.is_client_error() || s.is_server_error());
        let status = upstream.unwrap_or(match event["kind"].as_str().unwrap_or("") {
            "auth" => StatusCode::UNAUTHORIZED,
            "rate_limit" => StatusCode::TOO_MANY_REQUESTS,
            "overloaded" => StatusCode::SERVICE_UNAVAILABLE,
            "context_overflow" | "bad_request" => StatusCode::BAD_REQUEST,
            "timeout" => StatusCode::GATEWAY_TIMEOUT,
            "network" | "protocol" => StatusCode::BAD_GATEWAY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        });
        ApiError::new(status, message)
    }

    /// OpenAI's error `type` for this status.
    fn openai_type(&self) -> &'static str {
        match self.status.as_u16() {
            400 | 404 | 409 | 413 | 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            _ => "server_error",
        }
    }

    /// Anthropic's error `type` for this status.
    fn anthropic_type(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        }
    }

    /// The error body in a surface's shape.
    pub fn body(&self, surface: Surface) -> Value {
        match surface {
            Surface::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.openai_type(),
                "param": self.param,
                "code": null,
            }}),
            Surface::Anthropic => json!({"type": "error", "error": {
                "type": self.anthropic_type(),
                "message": self.message,
            }}),
        }
    }

    /// The HTTP response in a surface's shape.
    pub fn into_response(self, surface: Surface) -> Response {
        let body = self.body(surface).to_string();
        (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_status_wins_then_the_kind_decides() {
        let e =
            ApiError::from_event(&json!({"kind": "bad_request", "status": 404, "message": "m"}));
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        for (kind, status) in [
            ("auth", 401),
            ("rate_limit", 429),
            ("overloaded", 503),
            ("context_overflow", 400),
            ("bad_request", 400),
            ("timeout", 504),
            ("network", 502),
            ("protocol", 502),
            ("cancelled", 500),
            ("internal", 500),
        ] {
            let e = ApiError::from_event(&json!({"kind": kind, "message": "m"}));
            assert_eq!(e.status.as_u16(), status, "{kind}");
        }
        // A 200 or a 3xx status is not an error status: the kind decides.
        let e = ApiError::from_event(&json!({"kind": "protocol", "status": 200, "message": "m"}));
        assert_eq!(e.status, StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn each_surface_has_its_own_shape() {
        let e = ApiError::invalid("messages", "required");
        assert_eq!(
            e.body(Surface::OpenAi),
            json!({"error": {"message": "messages: required", "type": "invalid_request_error",
                "param": "messages", "code": null}})
        );
        assert_eq!(
            e.body(Surface::Anthropic),
            json!({"type": "error", "error": {"type": "invalid_request_error",
                "message": "messages: required"}})
        );
        let e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy");
        assert_eq!(
            e.body(Surface::Anthropic)["error"]["type"],
            "overloaded_error"
        );
        assert_eq!(e.body(Surface::OpenAi)["error"]["type"], "server_error");
    }
}
