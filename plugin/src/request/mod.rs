//! The canonical request (OpenAI Chat Completions shaped JSON), parsed and checked here, and
//! its translation to each surface's body, one module per surface: [`openai`] (Chat
//! Completions), [`anthropic`] (Messages, with the sampling and reasoning rules of spec §5) and
//! [`responses`] (OpenAI Responses, spec §7).

use serde_json::{Map, Value};

pub mod anthropic;
pub mod openai;
pub mod responses;

pub use anthropic::{
    anthropic_body, anthropic_headers, claude_limits, effective_level, ClaudeFamily, Thinking,
};
pub use openai::openai_body;

/// Keys of the canonical request that are ours, not OpenAI's; never sent upstream.
const OWN_KEYS: [&str; 7] = [
    "reasoning",
    "reasoning_budget",
    "headers",
    "include_raw",
    "include_json",
    "max_retry_delay_ms",
    "timeouts",
];

/// A parsed canonical request.
#[derive(Debug, Clone)]
pub struct CanonicalRequest {
    /// The whole JSON object as given.
    pub body: Map<String, Value>,
    /// The model id.
    pub model: String,
    /// Caller's reasoning level, if any.
    pub reasoning: Option<ReasoningLevel>,
    /// Caller's extra headers (applied last).
    pub headers: Vec<(String, String)>,
    /// Attach the upstream `data:` payload to each event.
    pub include_raw: bool,
    /// Which events carry their JSON (`include_json`, default true: every one).
    pub event_json: crate::stream::EventJson,
    /// Upper bound for one retry delay (and for honouring `retry-after`).
    pub max_retry_delay_ms: u64,
    /// Caller overrides for the first-byte timeout, in ms.
    pub first_byte_timeout_ms: Option<u64>,
    /// Caller overrides for the idle timeout between chunks, in ms.
    pub idle_timeout_ms: Option<u64>,
}

/// Caller reasoning levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasoningLevel {
    /// Off.
    Off,
    /// Minimal.
    Minimal,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Extra high.
    XHigh,
    /// Max.
    Max,
}

impl ReasoningLevel {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "off" => Self::Off,
            "minimal" => Self::Minimal,
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            "xhigh" => Self::XHigh,
            "max" => Self::Max,
            _ => return None,
        })
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::XHigh => "xhigh",
            Self::Max => "max",
        }
    }
}

/// Default bound for one retry delay.
pub const DEFAULT_MAX_RETRY_DELAY_MS: u64 = 10_000;

impl CanonicalRequest {
    /// Parses and checks the canonical request; errors name the field.
    pub fn parse(text: &str) -> Result<Self, String> {
        crate::limits::check_text(
            text,
            crate::limits::MAX_REQUEST_BYTES,
            crate::limits::MAX_NESTING,
        )
        .map_err(|e| format!("request refused before parsing: the text {e}"))?;
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("request is not valid JSON: {e}"))?;
        let Value::Object(body) = value else {
            return Err("request must be a JSON object".into());
        };
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .ok_or("field `model`: required, a non-empty string")?
            .to_string();
        match body.get("messages") {
            Some(Value::Array(m)) if !m.is_empty() => {}
            _ => return Err("field `messages`: required, a non-empty array".into()),
        }
        let reasoning = match body.get("reasoning") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(ReasoningLevel::parse(s).ok_or_else(|| {
                format!("field `reasoning`: expected off, minimal, low, medium, high, xhigh or max, found {s:?}")
            })?),
            Some(_) => return Err("field `reasoning`: expected a string".into()),
        };
        let headers = match body.get("headers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(h)) => h
                .iter()
                .map(|(k, v)| {
                    v.as_str()
                        .map(|v| (k.clone(), v.to_string()))
                        .ok_or(format!("field `headers.{k}`: expected a string"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("field `headers`: expected an object of strings".into()),
        };
        let include_raw = body
            .get("include_raw")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let event_json = match body.get("include_json") {
            None | Some(Value::Null) | Some(Value::Bool(true)) => crate::stream::EventJson::Every,
            Some(Value::Bool(false)) => crate::stream::EventJson::NotForText,
            Some(_) => return Err("field `include_json`: expected true or false".into()),
        };
        let max_retry_delay_ms = match body.get("max_retry_delay_ms") {
            None | Some(Value::Null) => DEFAULT_MAX_RETRY_DELAY_MS,
            Some(v) => v
                .as_u64()
                .ok_or("field `max_retry_delay_ms`: expected a non-negative integer")?,
        };
        let timeout_field = |name: &str| -> Result<Option<u64>, String> {
            match body.get("timeouts").and_then(|t| t.get(name)) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().filter(|n| *n > 0).map(Some).ok_or(format!(
                    "field `timeouts.{name}`: expected a positive integer"
                )),
            }
        };
        if body
            .get("timeouts")
            .is_some_and(|t| !t.is_object() && !t.is_null())
        {
            return Err("field `timeouts`: expected an object {first_byte_ms, idle_ms}".into());
        }
        let first_byte_timeout_ms = timeout_field("first_byte_ms")?;
        let idle_timeout_ms = timeout_field("idle_ms")?;
        for (field, ok) in [
            (
                "max_tokens",
                body.get("max_tokens").is_none_or(|v| v.is_u64()),
            ),
            (
                "temperature",
                body.get("temperature").is_none_or(|v| v.is_number()),
            ),
            ("tools", body.get("tools").is_none_or(|v| v.is_array())),
        ] {
            if !ok {
                return Err(format!("field `{field}`: wrong type"));
            }
        }
        Ok(CanonicalRequest {
            body,
            model,
            reasoning,
            headers,
            include_raw,
            event_json,
            max_retry_delay_ms,
            first_byte_timeout_ms,
            idle_timeout_ms,
        })
    }

    /// The request without this crate's own keys ([`OWN_KEYS`]): what goes upstream.
    pub(crate) fn upstream_fields(&self) -> Map<String, Value> {
        let mut body = self.body.clone();
        for k in OWN_KEYS {
            body.remove(k);
        }
        body
    }
}

/// Sets a header, replacing an existing one with the same (case-insensitive) name in place.
pub fn set_header(headers: &mut Vec<(String, String)>, name: String, value: String) {
    match headers
        .iter_mut()
        .find(|(k, _)| k.eq_ignore_ascii_case(&name))
    {
        Some(slot) => slot.1 = value,
        None => headers.push((name.to_ascii_lowercase(), value)),
    }
}

/// Test helpers shared by the surface modules' tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::CanonicalRequest;
    use serde_json::{json, Value};

    /// A canonical request for model `m` saying "hi", with `extra` fields added.
    pub fn req(extra: Value) -> CanonicalRequest {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        CanonicalRequest::parse(&body.to_string()).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_requests_are_refused_before_parsing() {
        let deep = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":{}1{}}}]}}"#,
            "[".repeat(20_000),
            "]".repeat(20_000)
        );
        let e = CanonicalRequest::parse(&deep).unwrap_err();
        assert!(e.contains("nested deeper than the limit of 64"), "{e}");
    }

    #[test]
    fn parse_errors_name_the_field() {
        assert!(CanonicalRequest::parse("{").unwrap_err().contains("JSON"));
        assert!(
            CanonicalRequest::parse(r#"{"messages":[{"role":"user","content":"x"}]}"#)
                .unwrap_err()
                .contains("model")
        );
        assert!(CanonicalRequest::parse(r#"{"model":"m","messages":[]}"#)
            .unwrap_err()
            .contains("messages"));
        assert!(
            CanonicalRequest::parse(r#"{"model":"m","messages":[{}],"reasoning":"huge"}"#)
                .unwrap_err()
                .contains("reasoning")
        );
        assert!(
            CanonicalRequest::parse(r#"{"model":"m","messages":[{}],"max_tokens":"x"}"#)
                .unwrap_err()
                .contains("max_tokens")
        );
    }

    #[test]
    fn include_json_is_a_boolean_that_defaults_to_every_event() {
        use crate::stream::EventJson;
        let with = |extra: &str| {
            CanonicalRequest::parse(&format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}]{extra}}}"#
            ))
        };
        for (extra, policy) in [
            ("", EventJson::Every),
            (r#","include_json":null"#, EventJson::Every),
            (r#","include_json":true"#, EventJson::Every),
            (r#","include_json":false"#, EventJson::NotForText),
        ] {
            let r = with(extra).unwrap();
            assert_eq!(r.event_json, policy, "{extra}");
            assert!(!r.upstream_fields().contains_key("include_json"), "{extra}");
        }
        for bad in ["0", r#""false""#, "{}"] {
            assert_eq!(
                with(&format!(r#","include_json":{bad}"#)).unwrap_err(),
                "field `include_json`: expected true or false"
            );
        }
    }

    #[test]
    fn timeouts_must_be_an_object_of_positive_integers() {
        let with = |timeouts: &str| {
            CanonicalRequest::parse(&format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"timeouts":{timeouts}}}"#
            ))
        };
        let r = with(r#"{"first_byte_ms":1,"idle_ms":250}"#).unwrap();
        assert_eq!(r.first_byte_timeout_ms, Some(1));
        assert_eq!(r.idle_timeout_ms, Some(250));
        let r = with("null").unwrap();
        assert_eq!((r.first_byte_timeout_ms, r.idle_timeout_ms), (None, None));
        let r = with("{}").unwrap();
        assert_eq!((r.first_byte_timeout_ms, r.idle_timeout_ms), (None, None));
        for (bad, field) in [
            (r#"{"first_byte_ms":0}"#, "timeouts.first_byte_ms"),
            (r#"{"idle_ms":0}"#, "timeouts.idle_ms"),
            (r#"{"idle_ms":-5}"#, "timeouts.idle_ms"),
            (r#"{"first_byte_ms":"fast"}"#, "timeouts.first_byte_ms"),
        ] {
            let e = with(bad).unwrap_err();
            assert_eq!(
                e,
                format!("field `{field}`: expected a positive integer"),
                "{bad}"
            );
        }
        for bad in [r#""soon""#, "5", "[1]", "true"] {
            let e = with(bad).unwrap_err();
            assert_eq!(
                e, "field `timeouts`: expected an object {first_byte_ms, idle_ms}",
                "{bad}"
            );
        }
    }
}
