//! Structured stream errors and the upstream-text classification of spec §6.

use serde::{Deserialize, Serialize};

/// Error kinds a host can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// 401/403: the token was refused.
    Auth,
    /// 429 or a rate-limit message.
    RateLimit,
    /// 503/529 or an overload message.
    Overloaded,
    /// The prompt does not fit the model.
    ContextOverflow,
    /// The request was refused as malformed.
    BadRequest,
    /// Connect, first-byte or idle timeout.
    Timeout,
    /// Connection failure.
    Network,
    /// The upstream broke the stream format.
    Protocol,
    /// The host cancelled.
    Cancelled,
    /// Anything else.
    Internal,
}

impl ErrorKind {
    /// Whether retrying the same request may succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimit | ErrorKind::Overloaded | ErrorKind::Timeout | ErrorKind::Network
        )
    }
}

/// A structured stream error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamError {
    /// What kind.
    pub kind: ErrorKind,
    /// HTTP status when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Whether a retry may help.
    pub retryable: bool,
    /// Readable message (never a token).
    pub message: String,
}

impl StreamError {
    /// An error of a given kind; `retryable` follows the kind.
    pub fn new(kind: ErrorKind, status: Option<u16>, message: impl Into<String>) -> Self {
        StreamError {
            kind,
            status,
            retryable: kind.retryable(),
            message: message.into(),
        }
    }

    /// Classifies an upstream failure from its status and text (body or error event).
    pub fn from_upstream(status: Option<u16>, text: &str) -> Self {
        let kind = classify_text(text).unwrap_or(kind_for_status(status));
        let kind = match (kind, status) {
            // A 401/403 is an auth failure whatever its text says.
            (_, Some(401)) | (_, Some(403)) => ErrorKind::Auth,
            (k, _) => k,
        };
        let mut err = StreamError::new(kind, status, summarize(status, text));
        if status.is_some_and(|s| s >= 500) {
            err.retryable = true;
        }
        err
    }
}

/// The kind a bare HTTP status implies.
fn kind_for_status(status: Option<u16>) -> ErrorKind {
    match status {
        Some(401) | Some(403) => ErrorKind::Auth,
        Some(429) => ErrorKind::RateLimit,
        Some(503) | Some(529) => ErrorKind::Overloaded,
        Some(408) | Some(504) => ErrorKind::Timeout,
        Some(400) | Some(404) | Some(413) | Some(422) => ErrorKind::BadRequest,
        _ => ErrorKind::Internal,
    }
}

/// Rate limit, then overloaded, then context overflow, by the spec's patterns (case-insensitive).
pub fn classify_text(text: &str) -> Option<ErrorKind> {
    let t = text.to_lowercase();
    if t.contains("rate_limit") || t.contains("too many requests") || t.contains("429") {
        return Some(ErrorKind::RateLimit);
    }
    if t.contains("overloaded")
        || t.contains("503")
        || contains_in_order(&t, "service", "unavailable")
    {
        return Some(ErrorKind::Overloaded);
    }
    if t.contains("context_length_exceeded") || contains_in_order3(&t, "max", "tokens", "exceeded")
    {
        return Some(ErrorKind::ContextOverflow);
    }
    None
}

fn contains_in_order(t: &str, a: &str, b: &str) -> bool {
    t.find(a).is_some_and(|i| t[i + a.len()..].contains(b))
}

fn contains_in_order3(t: &str, a: &str, b: &str, c: &str) -> bool {
    t.find(a)
        .is_some_and(|i| contains_in_order(&t[i + a.len()..], b, c))
}

/// A short message from an upstream error body: its `error.message` / `message` when JSON.
fn summarize(status: Option<u16>, text: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(text).ok();
    let detail = parsed
        .as_ref()
        .and_then(|v| {
            v["error"]["message"]
                .as_str()
                .or_else(|| v["message"].as_str())
                .or_else(|| v["error"].as_str())
        })
        .map(str::to_string)
        .unwrap_or_else(|| text.chars().take(500).collect());
    match status {
        Some(s) => format!("upstream HTTP {s}: {detail}"),
        None => detail,
    }
}

/// An error with its sources joined (`a: b: c`).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_patterns_and_precedence() {
        assert_eq!(
            classify_text("Rate_Limit_Error"),
            Some(ErrorKind::RateLimit)
        );
        assert_eq!(
            classify_text("Too Many Requests"),
            Some(ErrorKind::RateLimit)
        );
        assert_eq!(
            classify_text("status 429 overloaded"),
            Some(ErrorKind::RateLimit),
            "rate limit wins"
        );
        assert_eq!(classify_text("Overloaded"), Some(ErrorKind::Overloaded));
        assert_eq!(
            classify_text("Service Temporarily Unavailable"),
            Some(ErrorKind::Overloaded)
        );
        assert_eq!(classify_text("HTTP 503"), Some(ErrorKind::Overloaded));
        assert_eq!(
            classify_text("context_length_exceeded"),
            Some(ErrorKind::ContextOverflow)
        );
        assert_eq!(
            classify_text("max input tokens exceeded"),
            Some(ErrorKind::ContextOverflow)
        );
        assert_eq!(classify_text("tokens exceeded max"), None);
        assert_eq!(classify_text("unavailable service"), None);
    }

    #[test]
    fn from_upstream_status_and_body() {
        let e = StreamError::from_upstream(
            Some(400),
            r#"{"error":{"message":"prompt is too long: max tokens exceeded"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::ContextOverflow);
        assert_eq!(e.status, Some(400));
        assert!(!e.retryable);
        assert!(e.message.contains("prompt is too long"));
        let e = StreamError::from_upstream(Some(429), "slow down");
        assert_eq!((e.kind, e.retryable), (ErrorKind::RateLimit, true));
        let e = StreamError::from_upstream(Some(401), "rate_limit nonsense");
        assert_eq!(e.kind, ErrorKind::Auth);
        let e = StreamError::from_upstream(Some(500), "boom");
        assert_eq!((e.kind, e.retryable), (ErrorKind::Internal, true));
    }
}
