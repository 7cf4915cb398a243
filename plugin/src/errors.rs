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

    /// Classifies an upstream failure from its status and text (body or error event), as
    /// spec §6 orders it: a decisive HTTP status first (401/403 `auth`, 429 `rate_limit`,
    /// 503/529 `overloaded`), then the text patterns, then what the bare status implies.
    pub fn from_upstream(status: Option<u16>, text: &str) -> Self {
        let kind = decisive_status_kind(status)
            .or_else(|| classify_text(text))
            .unwrap_or_else(|| fallback_status_kind(status));
        let mut err = StreamError::new(kind, status, summarize(status, text));
        if status.is_some_and(|s| s >= 500) {
            err.retryable = true;
        }
        err
    }
}

/// The statuses that decide the kind whatever the text says.
fn decisive_status_kind(status: Option<u16>) -> Option<ErrorKind> {
    match status? {
        401 | 403 => Some(ErrorKind::Auth),
        429 => Some(ErrorKind::RateLimit),
        503 | 529 => Some(ErrorKind::Overloaded),
        _ => None,
    }
}

/// The kind a status implies when neither it decides nor a pattern matched.
fn fallback_status_kind(status: Option<u16>) -> ErrorKind {
    match status {
        Some(408) | Some(504) => ErrorKind::Timeout,
        Some(400) | Some(404) | Some(413) | Some(422) => ErrorKind::BadRequest,
        _ => ErrorKind::Internal,
    }
}

/// Rate limit, then overloaded, then context overflow, by the spec's patterns: like the
/// reference's JavaScript regexes (`/…/i`, no `u` flag), ASCII letters match either case and
/// `.` never crosses a line terminator (LF, CR, U+2028, U+2029).
pub fn classify_text(text: &str) -> Option<ErrorKind> {
    let t = text.to_ascii_lowercase();
    let lines = || t.split(['\n', '\r', '\u{2028}', '\u{2029}']);
    if t.contains("rate_limit") || t.contains("too many requests") || t.contains("429") {
        return Some(ErrorKind::RateLimit);
    }
    if t.contains("overloaded")
        || t.contains("503")
        || lines().any(|l| contains_in_order(l, &["service", "unavailable"]))
    {
        return Some(ErrorKind::Overloaded);
    }
    if t.contains("context_length_exceeded")
        || lines().any(|l| contains_in_order(l, &["max", "tokens", "exceeded"]))
    {
        return Some(ErrorKind::ContextOverflow);
    }
    None
}

/// True when `parts` occur in `line` in order, without overlapping (`a.*b.*c`).
fn contains_in_order(line: &str, parts: &[&str]) -> bool {
    let mut rest = line;
    for part in parts {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// A short message from an upstream error body: its `error.message` / `message` when JSON.
fn summarize(status: Option<u16>, text: &str) -> String {
    let parsed: Option<serde_json::Value> = crate::limits::parse_json(text).ok();
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

    #[test]
    fn the_status_decides_before_the_text() {
        // Failed before the fix: the text pattern won over the status.
        let e = StreamError::from_upstream(Some(429), "max tokens per minute exceeded");
        assert_eq!((e.kind, e.retryable), (ErrorKind::RateLimit, true));
        let e = StreamError::from_upstream(Some(503), "context_length_exceeded");
        assert_eq!((e.kind, e.retryable), (ErrorKind::Overloaded, true));
        let e = StreamError::from_upstream(Some(529), "rate_limit");
        assert_eq!((e.kind, e.retryable), (ErrorKind::Overloaded, true));
        let e = StreamError::from_upstream(Some(403), "too many requests");
        assert_eq!((e.kind, e.retryable), (ErrorKind::Auth, false));
        // The patterns refine the statuses that do not decide.
        let e = StreamError::from_upstream(Some(400), "context_length_exceeded");
        assert_eq!((e.kind, e.retryable), (ErrorKind::ContextOverflow, false));
        let e = StreamError::from_upstream(Some(500), "the model is Overloaded");
        assert_eq!((e.kind, e.retryable), (ErrorKind::Overloaded, true));
        let e = StreamError::from_upstream(Some(400), "too many requests");
        assert_eq!((e.kind, e.retryable), (ErrorKind::RateLimit, true));
        let e = StreamError::from_upstream(Some(404), "no such model");
        assert_eq!((e.kind, e.retryable), (ErrorKind::BadRequest, false));
        // The bare status when neither it decides nor a pattern matches.
        for (status, kind, retryable) in [
            (408, ErrorKind::Timeout, true),
            (504, ErrorKind::Timeout, true),
            (400, ErrorKind::BadRequest, false),
            (404, ErrorKind::BadRequest, false),
            (413, ErrorKind::BadRequest, false),
            (422, ErrorKind::BadRequest, false),
            (409, ErrorKind::Internal, false),
            (502, ErrorKind::Internal, true),
        ] {
            let e = StreamError::from_upstream(Some(status), "no pattern here");
            assert_eq!(
                (e.kind, e.retryable, e.status),
                (kind, retryable, Some(status)),
                "{status}"
            );
        }
        let e = StreamError::from_upstream(None, "no pattern here");
        assert_eq!(
            (e.kind, e.retryable, e.status),
            (ErrorKind::Internal, false, None)
        );
        let e = StreamError::from_upstream(None, "service is unavailable");
        assert_eq!((e.kind, e.status), (ErrorKind::Overloaded, None));
    }

    #[derive(Debug)]
    struct Chained(&'static str, Option<Box<Chained>>);

    impl std::fmt::Display for Chained {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Chained {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn error_chain_joins_sources_once() {
        // Surviving mutants (empty or constant chain, no de-duplication) had no assertion.
        let root = Chained("connection refused", None);
        let mid = Chained("connect failed", Some(Box::new(root)));
        let top = Chained("request failed", Some(Box::new(mid)));
        assert_eq!(
            error_chain(&top),
            "request failed: connect failed: connection refused"
        );
        let repeated = Chained(
            "request failed: connection refused",
            Some(Box::new(Chained("connection refused", None))),
        );
        assert_eq!(error_chain(&repeated), "request failed: connection refused");
        assert_eq!(error_chain(&Chained("alone", None)), "alone");
    }

    #[test]
    fn dot_does_not_cross_line_breaks() {
        // Failed before the fix: the old matcher searched across lines.
        for sep in ["\n", "\r", "\u{2028}", "\u{2029}", "\r\n"] {
            assert_eq!(
                classify_text(&format!("service{sep}unavailable")),
                None,
                "{sep:?}"
            );
            assert_eq!(
                classify_text(&format!("max{sep}tokens exceeded")),
                None,
                "{sep:?}"
            );
            assert_eq!(
                classify_text(&format!("max tokens{sep}exceeded")),
                None,
                "{sep:?}"
            );
        }
        assert_eq!(
            classify_text("line one\nservice is temporarily unavailable"),
            Some(ErrorKind::Overloaded)
        );
        assert_eq!(
            classify_text("MAX\ttokens EXCEEDED"),
            Some(ErrorKind::ContextOverflow),
            "tabs are not line terminators"
        );
        // Only ASCII letters fold case, as in a JavaScript regex without the u flag.
        assert_eq!(classify_text("to\u{212A}ens max tokens"), None);
        assert_eq!(classify_text("max to\u{212A}ens exceeded"), None);
    }
}
