//! The OpenAI Chat Completions body (spec §5): the canonical request as given, streaming with
//! usage, the caller's reasoning level as `reasoning_effort` for reasoning models.

use serde_json::{json, Value};

use super::{CanonicalRequest, ReasoningLevel};
use crate::catalog::ModelRow;

/// The OpenAI Chat Completions body: the request as given, streaming with usage.
pub fn openai_body(req: &CanonicalRequest, model: &ModelRow) -> Value {
    let mut body = req.upstream_fields();
    body.insert("stream".into(), json!(true));
    body.insert("stream_options".into(), json!({"include_usage": true}));
    if let Some(level) = req.reasoning {
        if model.reasoning && level != ReasoningLevel::Off {
            let effort = match level {
                ReasoningLevel::Minimal | ReasoningLevel::Low => "low",
                ReasoningLevel::Medium => "medium",
                _ => "high",
            };
            body.entry("reasoning_effort").or_insert(json!(effort));
        }
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{catalog::discovered_row, request::test_support::req};

    #[test]
    fn openai_body_streams_with_usage_and_strips_own_keys() {
        let r = req(json!({"reasoning": "high", "headers": {"x": "y"}, "include_raw": true}));
        let b = openai_body(&r, &discovered_row("openai.gpt-oss-120b"));
        assert_eq!(b["stream"], json!(true));
        assert_eq!(b["stream_options"], json!({"include_usage": true}));
        assert_eq!(b["reasoning_effort"], json!("high"));
        assert!(
            b.get("headers").is_none()
                && b.get("include_raw").is_none()
                && b.get("reasoning").is_none()
        );
    }

    #[test]
    fn reasoning_levels_map_to_effort_only_for_reasoning_models() {
        let reasoning_model = discovered_row("openai.gpt-oss-120b");
        assert!(reasoning_model.reasoning);
        for (level, effort) in [
            ("minimal", Some("low")),
            ("low", Some("low")),
            ("medium", Some("medium")),
            ("high", Some("high")),
            ("xhigh", Some("high")),
            ("max", Some("high")),
            ("off", None),
        ] {
            let b = openai_body(&req(json!({"reasoning": level})), &reasoning_model);
            assert_eq!(b["reasoning_effort"].as_str(), effort, "{level}");
        }
        let mut plain = discovered_row("openai.gpt-oss-120b");
        plain.reasoning = false;
        let b = openai_body(&req(json!({"reasoning": "high"})), &plain);
        assert!(b.get("reasoning_effort").is_none(), "{b}");
        // The caller's own `reasoning_effort` is kept as given.
        let b = openai_body(
            &req(json!({"reasoning": "high", "reasoning_effort": "low"})),
            &reasoning_model,
        );
        assert_eq!(b["reasoning_effort"], json!("low"));
    }
}
