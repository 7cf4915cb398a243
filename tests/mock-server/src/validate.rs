//! Request-body validation against the public API shapes, as real servers answer: an unknown
//! top-level field, a missing required one, a wrong type or an out-of-range value is a 400
//! naming the field. So an echo stream from this server proves the plugin sent a valid body.
//!
//! Sources: OpenAI's Chat Completions reference (request body), Anthropic's Messages reference
//! (request body, extended-thinking constraints), and what Mantle adds (spec §5, §7):
//! adaptive-only Claude models refuse `thinking.type: "enabled"`, and models that reject
//! sampling overrides refuse `temperature`.

use serde_json::{Map, Value};

/// Why a body was refused: the field path and a message naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The offending field (`messages[1].content`).
    pub param: String,
    /// What is wrong, naming the field.
    pub message: String,
}

fn invalid(param: impl Into<String>, message: impl Into<String>) -> Invalid {
    let param = param.into();
    let message = message.into();
    Invalid {
        message: if message.contains(&param) {
            message
        } else {
            format!("{param}: {message}")
        },
        param,
    }
}

type Check = Result<(), Invalid>;

fn is_int(v: &Value) -> bool {
    v.is_u64() || v.is_i64()
}

fn expect(ok: bool, param: &str, what: &str) -> Check {
    if ok {
        Ok(())
    } else {
        Err(invalid(param, format!("expected {what}")))
    }
}

fn number_in(v: &Value, param: &str, lo: f64, hi: f64) -> Check {
    match v.as_f64() {
        Some(n) if (lo..=hi).contains(&n) => Ok(()),
        _ => Err(invalid(
            param,
            format!("expected a number from {lo} to {hi}"),
        )),
    }
}

fn string_or_strings(v: &Value, param: &str) -> Check {
    let ok = v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
    expect(ok, param, "a string or an array of strings")
}

fn only_known(obj: &Map<String, Value>, known: &[&str], at: &str) -> Check {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => {
            let param = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            Err(invalid(
                param.clone(),
                format!("Unrecognized request argument supplied: {param}"),
            ))
        }
        None => Ok(()),
    }
}

/// The OpenAI-shaped prologue: a JSON object with only `known` top-level fields and a string
/// `model`.
fn object_with_model<'a>(
    body: &'a Value,
    known: &[&str],
) -> Result<&'a Map<String, Value>, Invalid> {
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("body", "the request body must be a JSON object"))?;
    only_known(obj, known, "")?;
    expect(
        obj.get("model").is_some_and(Value::is_string),
        "model",
        "a string (required)",
    )?;
    Ok(obj)
}

// ---------------------------------------------------------------------------------------------
// OpenAI Chat Completions.

const CHAT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "response_format",
    "seed",
    "user",
    "frequency_penalty",
    "presence_penalty",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "metadata",
    "store",
    "service_tier",
    "modalities",
    "prediction",
    "audio",
    "web_search_options",
    "verbosity",
    "prompt_cache_key",
    "safety_identifier",
];

/// Checks a Chat Completions request body.
pub fn chat_completions(body: &Value) -> Check {
    let obj = object_with_model(body, CHAT_FIELDS)?;
    let messages = obj.get("messages").and_then(Value::as_array);
    let Some(messages) = messages.filter(|m| !m.is_empty()) else {
        return Err(invalid("messages", "expected a non-empty array (required)"));
    };
    for (i, m) in messages.iter().enumerate() {
        chat_message(m, &format!("messages[{i}]"))?;
    }
    if let Some(v) = obj.get("stream") {
        expect(v.is_boolean(), "stream", "a boolean")?;
    }
    if let Some(v) = obj.get("stream_options") {
        let o = v
            .as_object()
            .ok_or_else(|| invalid("stream_options", "expected an object"))?;
        only_known(
            o,
            &["include_usage", "include_obfuscation"],
            "stream_options",
        )?;
        if obj.get("stream") != Some(&Value::Bool(true)) {
            return Err(invalid(
                "stream_options",
                "stream_options is only allowed when stream is true",
            ));
        }
    }
    for f in [
        "max_tokens",
        "max_completion_tokens",
        "n",
        "seed",
        "top_logprobs",
    ] {
        if let Some(v) = obj.get(f) {
            expect(
                is_int(v) && v.as_i64().is_none_or(|n| n >= 0),
                f,
                "a non-negative integer",
            )?;
        }
    }
    if let Some(v) = obj.get("temperature") {
        number_in(v, "temperature", 0.0, 2.0)?;
    }
    if let Some(v) = obj.get("top_p") {
        number_in(v, "top_p", 0.0, 1.0)?;
    }
    for f in ["frequency_penalty", "presence_penalty"] {
        if let Some(v) = obj.get(f) {
            number_in(v, f, -2.0, 2.0)?;
        }
    }
    if let Some(v) = obj.get("stop") {
        string_or_strings(v, "stop")?;
    }
    if let Some(v) = obj.get("reasoning_effort") {
        let ok = v
            .as_str()
            .is_some_and(|e| ["none", "minimal", "low", "medium", "high", "xhigh"].contains(&e));
        expect(
            ok,
            "reasoning_effort",
            "one of none, minimal, low, medium, high, xhigh",
        )?;
    }
    if let Some(v) = obj.get("tools") {
        let tools = v
            .as_array()
            .ok_or_else(|| invalid("tools", "expected an array"))?;
        for (i, t) in tools.iter().enumerate() {
            let at = format!("tools[{i}]");
            let o = t
                .as_object()
                .ok_or_else(|| invalid(&at, "expected an object"))?;
            only_known(o, &["type", "function"], &at)?;
            expect(
                t["type"] == "function",
                &format!("{at}.type"),
                "\"function\"",
            )?;
            let f = t["function"].as_object().ok_or_else(|| {
                invalid(format!("{at}.function"), "expected an object (required)")
            })?;
            only_known(
                f,
                &["name", "description", "parameters", "strict"],
                &format!("{at}.function"),
            )?;
            expect(
                f.get("name").is_some_and(Value::is_string),
                &format!("{at}.function.name"),
                "a string (required)",
            )?;
            if let Some(p) = f.get("parameters") {
                expect(
                    p.is_object(),
                    &format!("{at}.function.parameters"),
                    "a JSON Schema object",
                )?;
            }
        }
    }
    if let Some(v) = obj.get("tool_choice") {
        let ok = match v {
            Value::String(s) => ["none", "auto", "required"].contains(&s.as_str()),
            Value::Object(o) => {
                o.get("type") == Some(&Value::from("function")) && o["function"]["name"].is_string()
            }
            _ => false,
        };
        expect(
            ok,
            "tool_choice",
            "\"none\", \"auto\", \"required\" or {type: \"function\", function: {name}}",
        )?;
    }
    Ok(())
}

fn chat_message(m: &Value, at: &str) -> Check {
    let o = m
        .as_object()
        .ok_or_else(|| invalid(at, "expected an object"))?;
    let role = o.get("role").and_then(Value::as_str).unwrap_or_default();
    let content = o.get("content").unwrap_or(&Value::Null);
    let content_at = format!("{at}.content");
    match role {
        "system" | "developer" | "user" => chat_content(content, &content_at, role)?,
        "assistant" => {
            let has_calls = o
                .get("tool_calls")
                .is_some_and(|c| c.as_array().is_some_and(|a| !a.is_empty()));
            if !(content.is_null() && has_calls) {
                chat_content(content, &content_at, role)?;
            }
            if let Some(calls) = o.get("tool_calls") {
                let calls = calls
                    .as_array()
                    .ok_or_else(|| invalid(format!("{at}.tool_calls"), "expected an array"))?;
                for (i, c) in calls.iter().enumerate() {
                    let cat = format!("{at}.tool_calls[{i}]");
                    expect(
                        c["id"].is_string(),
                        &format!("{cat}.id"),
                        "a string (required)",
                    )?;
                    expect(
                        c["type"] == "function",
                        &format!("{cat}.type"),
                        "\"function\"",
                    )?;
                    expect(
                        c["function"]["name"].is_string(),
                        &format!("{cat}.function.name"),
                        "a string (required)",
                    )?;
                    expect(
                        c["function"]["arguments"].is_string(),
                        &format!("{cat}.function.arguments"),
                        "a string of JSON (required)",
                    )?;
                }
            }
        }
        "tool" => {
            expect(
                o.get("tool_call_id").is_some_and(Value::is_string),
                &format!("{at}.tool_call_id"),
                "a string (required)",
            )?;
            chat_content(content, &content_at, role)?;
        }
        other => {
            return Err(invalid(
                format!("{at}.role"),
                format!(
                    "expected one of system, developer, user, assistant, tool; found {other:?}"
                ),
            ))
        }
    }
    Ok(())
}

fn chat_content(content: &Value, at: &str, role: &str) -> Check {
    match content {
        Value::String(_) => Ok(()),
        Value::Array(parts) => {
            for (i, p) in parts.iter().enumerate() {
                let pat = format!("{at}[{i}]");
                let ok = match p["type"].as_str() {
                    Some("text") => p["text"].is_string(),
                    Some("image_url") if role == "user" => p["image_url"]["url"].is_string(),
                    Some("refusal") if role == "assistant" => p["refusal"].is_string(),
                    _ => false,
                };
                expect(
                    ok,
                    &pat,
                    "a content part: {type: \"text\", text} (or \"image_url\" for user messages)",
                )?;
            }
            Ok(())
        }
        _ => Err(invalid(
            at,
            "expected a string or an array of content parts (required)",
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAI Responses.

const RESPONSES_FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "max_output_tokens",
    "temperature",
    "top_p",
    "reasoning",
    "tools",
    "tool_choice",
    "stream",
    "parallel_tool_calls",
    "store",
    "metadata",
    "previous_response_id",
    "text",
    "truncation",
    "user",
    "include",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "background",
    "top_logprobs",
    "max_tool_calls",
    "conversation",
    "prompt",
    "stream_options",
];

/// Checks a Responses request body.
pub fn responses(body: &Value) -> Check {
    let obj = object_with_model(body, RESPONSES_FIELDS)?;
    match obj.get("input") {
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("input[{i}]");
                let ok = match item["type"].as_str() {
                    Some("function_call") => {
                        item["call_id"].is_string()
                            && item["name"].is_string()
                            && item["arguments"].is_string()
                    }
                    Some("function_call_output") => {
                        item["call_id"].is_string() && item["output"].is_string()
                    }
                    Some("message") | None => {
                        let role_ok = item["role"].as_str().is_some_and(|r| {
                            ["user", "assistant", "system", "developer"].contains(&r)
                        });
                        let content_ok = item["content"].is_string()
                            || item["content"].as_array().is_some_and(|parts| {
                                parts.iter().all(|p| {
                                    matches!(
                                        p["type"].as_str(),
                                        Some("input_text") | Some("output_text")
                                    ) && p["text"].is_string()
                                        || p["type"] == "input_image" && p["image_url"].is_string()
                                })
                            });
                        role_ok && content_ok
                    }
                    _ => false,
                };
                expect(
                    ok,
                    &at,
                    "a message, function_call or function_call_output item",
                )?;
            }
        }
        _ => {
            return Err(invalid(
                "input",
                "expected a string or an array of input items (required)",
            ))
        }
    }
    if let Some(v) = obj.get("max_output_tokens") {
        expect(v.is_u64(), "max_output_tokens", "a non-negative integer")?;
    }
    if let Some(v) = obj.get("temperature") {
        number_in(v, "temperature", 0.0, 2.0)?;
    }
    if let Some(v) = obj.get("reasoning") {
        let ok = v["effort"]
            .as_str()
            .is_none_or(|e| ["none", "minimal", "low", "medium", "high", "xhigh"].contains(&e));
        expect(
            v.is_object() && ok,
            "reasoning.effort",
            "one of none, minimal, low, medium, high, xhigh",
        )?;
    }
    if let Some(v) = obj.get("tools") {
        let tools = v
            .as_array()
            .ok_or_else(|| invalid("tools", "expected an array"))?;
        for (i, t) in tools.iter().enumerate() {
            let ok =
                t["type"] == "function" && t["name"].is_string() && t.get("function").is_none();
            expect(
                ok,
                &format!("tools[{i}]"),
                "a function tool {type: \"function\", name, parameters}",
            )?;
        }
    }
    if let Some(v) = obj.get("tool_choice") {
        let ok = match v {
            Value::String(s) => ["none", "auto", "required"].contains(&s.as_str()),
            Value::Object(o) => {
                o.get("type") == Some(&Value::from("function"))
                    && o.get("name").is_some_and(Value::is_string)
            }
            _ => false,
        };
        expect(
            ok,
            "tool_choice",
            "\"none\", \"auto\", \"required\" or {type: \"function\", name}",
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Anthropic Messages.

const MESSAGES_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "metadata",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
];

/// Claude models that only take adaptive thinking on Mantle (spec §5).
const ADAPTIVE_ONLY: &[&str] = &[
    "anthropic.claude-opus-5",
    "anthropic.claude-sonnet-5",
    "anthropic.claude-mythos-5",
    "anthropic.claude-mythos-preview",
];

/// Claude models that refuse sampling overrides on Mantle (spec §5).
const NO_TEMPERATURE: &[&str] = &[
    "anthropic.claude-opus-4-7",
    "anthropic.claude-opus-5",
    "anthropic.claude-sonnet-5",
    "anthropic.claude-mythos-5",
    "anthropic.claude-mythos-preview",
];

/// Checks an Anthropic Messages request body.
pub fn anthropic_messages(body: &Value) -> Check {
    let Some(obj) = body.as_object() else {
        return Err(invalid("body", "the request body must be a JSON object"));
    };
    if let Some(k) = obj.keys().find(|k| !MESSAGES_FIELDS.contains(&k.as_str())) {
        return Err(invalid(
            k.clone(),
            format!("{k}: Extra inputs are not permitted"),
        ));
    }
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("model", "Field required (a string)"))?;
    let max_tokens = obj
        .get("max_tokens")
        .and_then(Value::as_u64)
        .filter(|n| *n >= 1)
        .ok_or_else(|| invalid("max_tokens", "Field required (an integer >= 1)"))?;
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| invalid("messages", "Field required (a non-empty array)"))?;
    for (i, m) in messages.iter().enumerate() {
        let at = format!("messages.{i}");
        let o = m
            .as_object()
            .ok_or_else(|| invalid(&at, "expected an object"))?;
        only_known(o, &["role", "content"], &at)?;
        let role = o.get("role").and_then(Value::as_str).unwrap_or_default();
        expect(
            role == "user" || role == "assistant",
            &format!("{at}.role"),
            "\"user\" or \"assistant\"",
        )?;
        match o.get("content") {
            Some(Value::String(_)) => {}
            Some(Value::Array(blocks)) => {
                for (j, b) in blocks.iter().enumerate() {
                    content_block(b, &format!("{at}.content.{j}"), role)?;
                }
            }
            _ => {
                return Err(invalid(
                    format!("{at}.content"),
                    "Field required (a string or an array of content blocks)",
                ))
            }
        }
    }
    match obj.get("system") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(blocks)) => {
            for (j, b) in blocks.iter().enumerate() {
                expect(
                    b["type"] == "text" && b["text"].is_string(),
                    &format!("system.{j}"),
                    "a text block {type: \"text\", text}",
                )?;
            }
        }
        Some(_) => {
            return Err(invalid(
                "system",
                "expected a string or an array of text blocks",
            ))
        }
    }
    if let Some(v) = obj.get("stop_sequences") {
        expect(
            v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            "stop_sequences",
            "an array of strings",
        )?;
    }
    if let Some(v) = obj.get("stream") {
        expect(v.is_boolean(), "stream", "a boolean")?;
    }
    if let Some(v) = obj.get("temperature") {
        if NO_TEMPERATURE.contains(&model) {
            return Err(invalid(
                "temperature",
                "`temperature` is deprecated for this model",
            ));
        }
        number_in(v, "temperature", 0.0, 1.0)?;
    }
    if let Some(v) = obj.get("top_p") {
        number_in(v, "top_p", 0.0, 1.0)?;
    }
    if let Some(v) = obj.get("top_k") {
        expect(v.is_u64(), "top_k", "a non-negative integer")?;
    }
    if let Some(v) = obj.get("tools") {
        let tools = v
            .as_array()
            .ok_or_else(|| invalid("tools", "expected an array"))?;
        for (i, t) in tools.iter().enumerate() {
            let at = format!("tools.{i}");
            let o = t
                .as_object()
                .ok_or_else(|| invalid(&at, "expected an object"))?;
            only_known(
                o,
                &[
                    "name",
                    "description",
                    "input_schema",
                    "cache_control",
                    "type",
                ],
                &at,
            )?;
            expect(
                o.get("name").is_some_and(Value::is_string),
                &format!("{at}.name"),
                "a string (required)",
            )?;
            expect(
                o.get("input_schema").is_some_and(|s| s["type"] == "object"),
                &format!("{at}.input_schema"),
                "a JSON Schema of type object (required)",
            )?;
        }
    }
    let forced_tool = match obj.get("tool_choice") {
        None => false,
        Some(v) => {
            let kind = v["type"].as_str().unwrap_or_default();
            let ok = match kind {
                "auto" | "any" | "none" => true,
                "tool" => v["name"].is_string(),
                _ => false,
            };
            expect(
                ok,
                "tool_choice",
                "{type: auto | any | none} or {type: \"tool\", name}",
            )?;
            kind == "any" || kind == "tool"
        }
    };
    let thinking_on = match obj.get("thinking") {
        None => false,
        Some(t) => match t["type"].as_str() {
            Some("disabled") => false,
            Some("adaptive") => true,
            Some("enabled") => {
                if ADAPTIVE_ONLY.contains(&model) {
                    return Err(invalid("thinking.type", format!("thinking.type: \"enabled\" is not supported for {model}; use \"adaptive\"")));
                }
                let budget = t["budget_tokens"].as_u64().ok_or_else(|| {
                    invalid("thinking.budget_tokens", "Field required (an integer)")
                })?;
                if budget < 1024 {
                    return Err(invalid(
                        "thinking.budget_tokens",
                        "thinking.budget_tokens: Input should be greater than or equal to 1024",
                    ));
                }
                if budget >= max_tokens {
                    return Err(invalid(
                        "max_tokens",
                        "`max_tokens` must be greater than `thinking.budget_tokens`",
                    ));
                }
                true
            }
            _ => {
                return Err(invalid(
                    "thinking.type",
                    "expected \"enabled\", \"adaptive\" or \"disabled\"",
                ))
            }
        },
    };
    if let Some(v) = obj.get("output_config") {
        let ok = v["effort"]
            .as_str()
            .is_some_and(|e| ["low", "medium", "high", "xhigh", "max"].contains(&e));
        expect(
            ok,
            "output_config.effort",
            "one of low, medium, high, xhigh, max",
        )?;
    }
    if thinking_on {
        if obj
            .get("temperature")
            .is_some_and(|t| t.as_f64() != Some(1.0))
        {
            return Err(invalid(
                "temperature",
                "`temperature` may only be set to 1 when thinking is enabled",
            ));
        }
        if obj.contains_key("top_k") {
            return Err(invalid(
                "top_k",
                "`top_k` is not supported when thinking is enabled",
            ));
        }
        if obj
            .get("top_p")
            .is_some_and(|p| p.as_f64().is_some_and(|p| p < 0.95))
        {
            return Err(invalid(
                "top_p",
                "`top_p` must be between 0.95 and 1 when thinking is enabled",
            ));
        }
        if forced_tool {
            return Err(invalid(
                "tool_choice",
                "Thinking may not be enabled when tool_choice forces tool use",
            ));
        }
    }
    Ok(())
}

fn content_block(b: &Value, at: &str, role: &str) -> Check {
    let kind = b["type"].as_str().unwrap_or_default();
    if kind == "text" && b["text"] == "" {
        // Anthropic's own words for it.
        return Err(invalid(
            format!("{at}.text"),
            "text content blocks must be non-empty",
        ));
    }
    let ok = match (kind, role) {
        ("text", _) => b["text"].is_string(),
        ("image", "user") => match b["source"]["type"].as_str() {
            Some("base64") => {
                b["source"]["media_type"].is_string() && b["source"]["data"].is_string()
            }
            Some("url") => b["source"]["url"].is_string(),
            _ => false,
        },
        ("tool_use", "assistant") => {
            b["id"].is_string() && b["name"].is_string() && b["input"].is_object()
        }
        ("tool_result", "user") => b["tool_use_id"].is_string(),
        ("thinking", "assistant") => b["thinking"].is_string() && b["signature"].is_string(),
        ("redacted_thinking", "assistant") => b["data"].is_string(),
        _ => false,
    };
    expect(
        ok,
        at,
        &format!("a valid content block for a {role} message (found type {kind:?})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_refusals_name_the_field() {
        let ok = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true,
            "stream_options": {"include_usage": true}});
        assert_eq!(chat_completions(&ok), Ok(()));
        let mut bad = ok.clone();
        bad["reasoning"] = json!("high");
        assert_eq!(chat_completions(&bad).unwrap_err().param, "reasoning");
        let mut bad = ok.clone();
        bad["messages"][0]["role"] = json!("robot");
        assert_eq!(
            chat_completions(&bad).unwrap_err().param,
            "messages[0].role"
        );
        let mut bad = ok.clone();
        bad["temperature"] = json!("hot");
        assert_eq!(chat_completions(&bad).unwrap_err().param, "temperature");
        let bad = json!({"messages": [{"role": "user", "content": "x"}]});
        assert_eq!(chat_completions(&bad).unwrap_err().param, "model");
    }

    #[test]
    fn anthropic_refusals_name_the_field() {
        let ok = json!({"model": "anthropic.claude-opus-4-1", "max_tokens": 4096,
            "messages": [{"role": "user", "content": "hi"}],
            "thinking": {"type": "enabled", "budget_tokens": 2048}});
        assert_eq!(anthropic_messages(&ok), Ok(()));
        let mut bad = ok.clone();
        bad["thinking"]["budget_tokens"] = json!(4096);
        assert_eq!(anthropic_messages(&bad).unwrap_err().param, "max_tokens");
        let mut bad = ok.clone();
        bad["temperature"] = json!(0.3);
        assert_eq!(anthropic_messages(&bad).unwrap_err().param, "temperature");
        let mut bad = ok.clone();
        bad["model"] = json!("anthropic.claude-opus-5");
        assert_eq!(anthropic_messages(&bad).unwrap_err().param, "thinking.type");
        let mut bad = ok.clone();
        bad["stream_options"] = json!({});
        assert_eq!(
            anthropic_messages(&bad).unwrap_err().param,
            "stream_options"
        );
        let mut bad = ok.clone();
        bad["messages"][0]["content"] = json!([{"type": "text", "text": ""}]);
        let e = anthropic_messages(&bad).unwrap_err();
        assert_eq!(e.param, "messages.0.content.0.text");
        assert_eq!(
            e.message,
            "messages.0.content.0.text: text content blocks must be non-empty"
        );
        let mut bad = ok;
        bad.as_object_mut().unwrap().remove("max_tokens");
        assert_eq!(anthropic_messages(&bad).unwrap_err().param, "max_tokens");
    }
}
