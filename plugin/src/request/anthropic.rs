//! The Anthropic Messages body and headers (spec §5): system blocks, text and image parts,
//! tools and tool results, stop sequences, and the sampling, `max_tokens` and reasoning rules
//! per Claude family (adaptive thinking or a budget).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{set_header, CanonicalRequest, ReasoningLevel};
use crate::catalog::ModelRow;

/// Claude model families with special rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaudeFamily {
    /// Claude Opus 4.7.
    Opus47,
    /// Claude Opus 5.
    Opus5,
    /// Claude Sonnet 5.
    Sonnet5,
    /// Claude Mythos 5.
    Mythos5,
    /// Claude Mythos Preview.
    MythosPreview,
    /// Any other Claude model.
    Other,
}

impl ClaudeFamily {
    /// The family of a model id.
    pub fn of(id: &str) -> Self {
        let id = id.to_lowercase();
        if id.contains("claude-opus-4-7") {
            Self::Opus47
        } else if id.contains("claude-opus-5") {
            Self::Opus5
        } else if id.contains("claude-sonnet-5") {
            Self::Sonnet5
        } else if id.contains("claude-mythos-5") {
            Self::Mythos5
        } else if id.contains("claude-mythos-preview") {
            Self::MythosPreview
        } else {
            Self::Other
        }
    }

    fn rejects_temperature(self) -> bool {
        self != Self::Other
    }

    fn adaptive(self) -> bool {
        matches!(
            self,
            Self::Opus5 | Self::Sonnet5 | Self::Mythos5 | Self::MythosPreview
        )
    }

    fn default_max_is_model_max(self) -> bool {
        matches!(self, Self::Opus5 | Self::Sonnet5 | Self::Mythos5)
    }
}

/// The thinking settings a request ends up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Thinking {
    /// No thinking block sent.
    None,
    /// `thinking: {type: "adaptive"}` + `output_config: {effort}`.
    Adaptive(&'static str),
    /// `thinking: {type: "enabled", budget_tokens}`.
    Budget(u64),
}

/// Effective level after the reasoning table of spec §5 (`None` = send no thinking).
pub fn effective_level(
    family: ClaudeFamily,
    level: Option<ReasoningLevel>,
) -> Option<ReasoningLevel> {
    use ReasoningLevel as L;
    match family {
        ClaudeFamily::Opus47 => None,
        ClaudeFamily::Opus5 => match level {
            None => Some(L::High),
            Some(L::Off) => None,
            Some(L::Minimal) => Some(L::Low),
            Some(l) => Some(l),
        },
        ClaudeFamily::Sonnet5 | ClaudeFamily::Mythos5 => match level {
            None => Some(L::High),
            Some(L::Off) | Some(L::Minimal) => Some(L::Low),
            Some(l) => Some(l),
        },
        ClaudeFamily::MythosPreview => match level {
            None => Some(L::High),
            Some(L::Off) | Some(L::Minimal) => Some(L::Low),
            Some(L::XHigh) | Some(L::Max) => Some(L::High),
            Some(l) => Some(l),
        },
        ClaudeFamily::Other => match level {
            None | Some(L::Off) => None,
            Some(l) => Some(l),
        },
    }
}

fn budget_for(level: ReasoningLevel) -> u64 {
    match level {
        ReasoningLevel::Minimal => 1024,
        ReasoningLevel::Low => 2048,
        ReasoningLevel::Medium => 8192,
        _ => 16384,
    }
}

/// True when the canonical `tool_choice` forces a tool call (`"required"` or a named function).
fn forces_tool_use(req: &CanonicalRequest) -> bool {
    match req.body.get("tool_choice") {
        Some(Value::String(s)) => s == "required",
        Some(Value::Object(o)) => o.contains_key("function"),
        _ => false,
    }
}

/// `(max_tokens, thinking)` for a Claude request.
pub fn claude_limits(req: &CanonicalRequest, model: &ModelRow) -> (u64, Thinking) {
    let family = ClaudeFamily::of(&model.id);
    let caller_max = req.body.get("max_tokens").and_then(Value::as_u64);
    let base = caller_max.unwrap_or(if family.default_max_is_model_max() {
        model.max_tokens
    } else {
        model.max_tokens.min(32000)
    });
    let Some(level) = effective_level(family, req.reasoning) else {
        return (base, Thinking::None);
    };
    if forces_tool_use(req) {
        // Anthropic refuses thinking with a forced tool choice; the caller's explicit tool
        // choice wins over the reasoning level.
        return (base, Thinking::None);
    }
    if family.adaptive() {
        let effort = match (family, level) {
            (
                ClaudeFamily::Opus5 | ClaudeFamily::Sonnet5,
                ReasoningLevel::Minimal | ReasoningLevel::Low,
            ) => "low",
            (ClaudeFamily::Opus5 | ClaudeFamily::Sonnet5, ReasoningLevel::Medium) => "medium",
            (ClaudeFamily::Opus5 | ClaudeFamily::Sonnet5, ReasoningLevel::XHigh) => "xhigh",
            (ClaudeFamily::Opus5 | ClaudeFamily::Sonnet5, ReasoningLevel::Max) => "max",
            (ClaudeFamily::Opus5 | ClaudeFamily::Sonnet5, _) => "high",
            (_, l) => l.as_str(),
        };
        return (base, Thinking::Adaptive(effort));
    }
    let mut budget = req
        .body
        .get("reasoning_budget")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| budget_for(level));
    let max_tokens = base.saturating_add(budget).min(model.max_tokens);
    if max_tokens <= budget {
        budget = max_tokens.saturating_sub(1024);
    }
    if budget < 1024 {
        (max_tokens, Thinking::None)
    } else {
        (max_tokens, Thinking::Budget(budget))
    }
}

/// The Anthropic Messages body translated from the canonical request.
pub fn anthropic_body(req: &CanonicalRequest, model: &ModelRow) -> Value {
    let family = ClaudeFamily::of(&model.id);
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    let (system, messages) = translate_messages(
        req.body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]),
    );
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    body.insert("messages".into(), Value::Array(messages));
    let (max_tokens, thinking) = claude_limits(req, model);
    body.insert("max_tokens".into(), json!(max_tokens));
    match thinking {
        Thinking::None => {}
        Thinking::Adaptive(effort) => {
            body.insert("thinking".into(), json!({"type": "adaptive"}));
            body.insert("output_config".into(), json!({"effort": effort}));
        }
        Thinking::Budget(b) => {
            body.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": b}),
            );
        }
    }
    // With thinking on, Anthropic takes only temperature 1 and top_p from 0.95 to 1: other
    // values are dropped rather than refused upstream.
    let thinking_on = body.contains_key("thinking");
    if let Some(t) = req
        .body
        .get("temperature")
        .filter(|_| !family.rejects_temperature())
        .filter(|t| !thinking_on || t.as_f64() == Some(1.0))
    {
        body.insert("temperature".into(), t.clone());
    }
    if let Some(p) = req
        .body
        .get("top_p")
        .filter(|p| !thinking_on || p.as_f64().is_some_and(|p| p >= 0.95))
    {
        body.insert("top_p".into(), p.clone());
    }
    match req.body.get("stop") {
        Some(Value::String(s)) => {
            body.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            body.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(Value::Array(tools)) = req.body.get("tools") {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                let f = if t.get("function").is_some() { &t["function"] } else { t };
                let mut out = json!({"name": f["name"], "input_schema": f.get("parameters").cloned().unwrap_or(json!({"type": "object"}))});
                if let Some(d) = f.get("description") {
                    out["description"] = d.clone();
                }
                out
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = req.body.get("tool_choice") {
        let translated = match choice {
            Value::String(s) if s == "auto" => Some(json!({"type": "auto"})),
            Value::String(s) if s == "required" => Some(json!({"type": "any"})),
            Value::String(s) if s == "none" => Some(json!({"type": "none"})),
            Value::Object(o) => o
                .get("function")
                .map(|f| json!({"type": "tool", "name": f["name"]})),
            _ => None,
        };
        if let Some(t) = translated {
            body.insert("tool_choice".into(), t);
        }
    }
    body.insert("stream".into(), json!(true));
    Value::Object(body)
}

/// OpenAI content as Anthropic blocks. Empty text is left out: Anthropic refuses an empty
/// text block, and OpenAI histories often carry `content: ""` beside tool calls.
fn content_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts.iter().filter_map(part_block).collect(),
        _ => Vec::new(),
    }
}

fn part_block(part: &Value) -> Option<Value> {
    match part["type"].as_str()? {
        "text" if part["text"] == "" => None,
        "text" => Some(json!({"type": "text", "text": part["text"]})),
        "image_url" => {
            let url = part["image_url"]["url"]
                .as_str()
                .or_else(|| part["image_url"].as_str())?;
            if let Some(rest) = url.strip_prefix("data:") {
                let (meta, data) = rest.split_once(',')?;
                let media_type = meta.strip_suffix(";base64")?;
                Some(
                    json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}),
                )
            } else {
                Some(json!({"type": "image", "source": {"type": "url", "url": url}}))
            }
        }
        _ => None,
    }
}

/// The thinking blocks of an assistant turn, kept verbatim with their signatures: content parts
/// `{type: "thinking", thinking, signature}` and `{type: "redacted_thinking", data}` (as the
/// Anthropic API returns them), else the message-level pair `reasoning_content` +
/// `reasoning_signature` (what a host accumulates from reasoning events). Thinking without a
/// signature is not sent: Anthropic refuses unsigned thinking blocks.
fn thinking_blocks(message: &Value) -> Vec<Value> {
    let parts: Vec<Value> = message["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|part| match part["type"].as_str()? {
            "thinking" => Some(json!({
                "type": "thinking",
                "thinking": part["thinking"].as_str()?,
                "signature": part["signature"].as_str()?,
            })),
            "redacted_thinking" => Some(json!({
                "type": "redacted_thinking",
                "data": part["data"].as_str()?,
            })),
            _ => None,
        })
        .collect();
    if !parts.is_empty() {
        return parts;
    }
    match (
        message["reasoning_content"].as_str(),
        message["reasoning_signature"].as_str(),
    ) {
        (Some(thinking), Some(signature)) if !signature.is_empty() => {
            vec![json!({"type": "thinking", "thinking": thinking, "signature": signature})]
        }
        _ => Vec::new(),
    }
}

/// Splits system prompts out and turns OpenAI messages into Anthropic messages.
fn translate_messages(messages: &[Value]) -> (Vec<Value>, Vec<Value>) {
    let mut system = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for m in messages {
        match m["role"].as_str().unwrap_or_default() {
            "system" | "developer" => system.extend(content_blocks(&m["content"])),
            "assistant" => {
                // Thinking blocks first (Anthropic wants them before text and tool use), then
                // the rest; a refused multi-turn tool call with thinking is the cost otherwise.
                let mut blocks = thinking_blocks(m);
                blocks.extend(content_blocks(&m["content"]));
                for call in m["tool_calls"].as_array().into_iter().flatten() {
                    let args = call["function"]["arguments"].as_str().unwrap_or("{}");
                    let input: Value =
                        crate::limits::parse_json(args).unwrap_or_else(|_| json!({}));
                    blocks.push(json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": input}));
                }
                out.push(json!({"role": "assistant", "content": blocks}));
            }
            "tool" => {
                let result = json!({"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": content_blocks(&m["content"])});
                // Consecutive tool results go into one user turn.
                match out.last_mut() {
                    Some(last)
                        if last["role"] == "user"
                            && last["content"][0]["type"] == "tool_result" =>
                    {
                        last["content"]
                            .as_array_mut()
                            .expect("content array")
                            .push(result);
                    }
                    _ => out.push(json!({"role": "user", "content": [result]})),
                }
            }
            _ => out.push(json!({"role": "user", "content": content_blocks(&m["content"])})),
        }
    }
    (system, out)
}

/// Anthropic headers in order: fixed ones, then the model's, then the caller's (later wins).
pub fn anthropic_headers(
    model_headers: Option<&BTreeMap<String, String>>,
    caller: &[(String, String)],
) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = vec![
        ("accept".into(), "application/json".into()),
        ("anthropic-version".into(), "2023-06-01".into()),
        (
            "anthropic-beta".into(),
            "fine-grained-tool-streaming-2025-05-14".into(),
        ),
    ];
    let later = model_headers
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(caller.iter().cloned());
    for (k, v) in later {
        set_header(&mut headers, k, v);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        catalog::{claude_rows, discovered_row},
        request::test_support::req,
    };
    use std::time::SystemTime;

    fn row(id: &str) -> ModelRow {
        claude_rows(SystemTime::UNIX_EPOCH)
            .into_iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| {
                let mut r = discovered_row(id);
                r.max_tokens = 64000;
                r
            })
    }

    fn level(s: &str) -> Value {
        if s == "unset" {
            json!({})
        } else {
            json!({"reasoning": s})
        }
    }

    #[test]
    fn a_forced_tool_choice_turns_thinking_off() {
        let opus = row("anthropic.claude-opus-5");
        let with = |choice: Value| {
            let mut extra = json!({"reasoning": "high"});
            if !choice.is_null() {
                extra["tool_choice"] = choice;
            }
            claude_limits(&req(extra), &opus).1
        };
        assert_eq!(with(Value::Null), Thinking::Adaptive("high"));
        assert_eq!(with(json!("auto")), Thinking::Adaptive("high"));
        assert_eq!(with(json!("none")), Thinking::Adaptive("high"));
        assert_eq!(with(json!({"type": "auto"})), Thinking::Adaptive("high"));
        assert_eq!(with(json!("required")), Thinking::None);
        assert_eq!(
            with(json!({"type": "function", "function": {"name": "f"}})),
            Thinking::None
        );
    }

    /// One assertion per row of the reasoning table in spec §5.
    #[test]
    fn reasoning_table_rows() {
        let cases: &[(&str, [&str; 5])] = &[
            // model, [unset, off, minimal, xhigh, max] -> expected thinking
            (
                "anthropic.claude-opus-4-7",
                ["none", "none", "none", "none", "none"],
            ),
            (
                "anthropic.claude-opus-5",
                [
                    "adaptive:high",
                    "none",
                    "adaptive:low",
                    "adaptive:xhigh",
                    "adaptive:max",
                ],
            ),
            (
                "anthropic.claude-sonnet-5",
                [
                    "adaptive:high",
                    "adaptive:low",
                    "adaptive:low",
                    "adaptive:xhigh",
                    "adaptive:max",
                ],
            ),
            (
                "anthropic.claude-mythos-5",
                [
                    "adaptive:high",
                    "adaptive:low",
                    "adaptive:low",
                    "adaptive:xhigh",
                    "adaptive:max",
                ],
            ),
            (
                "anthropic.claude-mythos-preview",
                [
                    "adaptive:high",
                    "adaptive:low",
                    "adaptive:low",
                    "adaptive:high",
                    "adaptive:high",
                ],
            ),
            (
                "anthropic.claude-haiku-4-5",
                [
                    "none",
                    "none",
                    "budget:1024",
                    "budget:16384",
                    "budget:16384",
                ],
            ),
        ];
        for (id, expected) in cases {
            for (lvl, want) in ["unset", "off", "minimal", "xhigh", "max"]
                .iter()
                .zip(expected)
            {
                let (_, thinking) = claude_limits(&req(level(lvl)), &row(id));
                let got = match thinking {
                    Thinking::None => "none".to_string(),
                    Thinking::Adaptive(e) => format!("adaptive:{e}"),
                    Thinking::Budget(b) => format!("budget:{b}"),
                };
                assert_eq!(&got, want, "{id} with reasoning {lvl}");
            }
        }
        // "other" column: medium passes through for adaptive models and becomes 8192 for budget ones.
        assert_eq!(
            claude_limits(&req(level("medium")), &row("anthropic.claude-opus-5")).1,
            Thinking::Adaptive("medium")
        );
        assert_eq!(
            claude_limits(&req(level("low")), &row("anthropic.claude-mythos-5")).1,
            Thinking::Adaptive("low")
        );
        assert_eq!(
            claude_limits(&req(level("medium")), &row("anthropic.claude-haiku-4-5")).1,
            Thinking::Budget(8192)
        );
        assert_eq!(
            claude_limits(&req(level("low")), &row("anthropic.claude-haiku-4-5")).1,
            Thinking::Budget(2048)
        );
    }

    #[test]
    fn max_tokens_rules() {
        // Opus 5 / Sonnet 5 / Mythos 5 default to the model max; others to min(max, 32000).
        assert_eq!(
            claude_limits(&req(json!({})), &row("anthropic.claude-opus-5")).0,
            128_000
        );
        assert_eq!(
            claude_limits(&req(json!({})), &row("anthropic.claude-opus-4-7")).0,
            32_000
        );
        assert_eq!(
            claude_limits(
                &req(json!({"max_tokens": 100})),
                &row("anthropic.claude-opus-5")
            )
            .0,
            100
        );
        // Budget models: max_tokens = min(base + budget, model max).
        let haiku = row("anthropic.claude-haiku-4-5");
        assert_eq!(
            claude_limits(&req(json!({"reasoning": "high"})), &haiku),
            (48_384, Thinking::Budget(16384))
        );
        // max_tokens <= budget: budget = max_tokens - 1024.
        let mut small = haiku.clone();
        small.max_tokens = 10_000;
        assert_eq!(
            claude_limits(
                &req(json!({"reasoning": "high", "max_tokens": 5000})),
                &small
            ),
            (10_000, Thinking::Budget(8976))
        );
        // Budget below 1024 means thinking off.
        small.max_tokens = 1500;
        assert_eq!(
            claude_limits(
                &req(json!({"reasoning": "high", "max_tokens": 100})),
                &small
            ),
            (1500, Thinking::None)
        );
        // Caller budget override.
        assert_eq!(
            claude_limits(
                &req(json!({"reasoning": "low", "reasoning_budget": 3000})),
                &haiku
            )
            .1,
            Thinking::Budget(3000)
        );
    }

    #[test]
    fn anthropic_translation() {
        let r = req(json!({
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": "calling", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
                {"role": "tool", "tool_call_id": "c2", "content": "43"}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}],
            "tool_choice": "required",
            "stop": ["END"],
            "temperature": 0.2
        }));
        let body = anthropic_body(&r, &row("anthropic.claude-haiku-4-5"));
        assert_eq!(
            body["system"],
            json!([{"type": "text", "text": "be brief"}])
        );
        assert_eq!(
            body["messages"][0]["content"][1]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "AAAA"})
        );
        assert_eq!(
            body["messages"][1]["content"][1],
            json!({"type": "tool_use", "id": "c1", "name": "f", "input": {"x": 1}})
        );
        assert_eq!(
            body["messages"][2]["content"].as_array().unwrap().len(),
            2,
            "tool results merged"
        );
        assert_eq!(body["messages"][2]["content"][0]["tool_use_id"], "c1");
        assert_eq!(body["tools"][0]["input_schema"], json!({"type": "object"}));
        assert_eq!(body["tool_choice"], json!({"type": "any"}));
        assert_eq!(body["stop_sequences"], json!(["END"]));
        assert_eq!(body["temperature"], json!(0.2));
        assert_eq!(body["stream"], json!(true));
        // Temperature is dropped for models that reject overrides.
        for id in [
            "anthropic.claude-opus-4-7",
            "anthropic.claude-opus-5",
            "anthropic.claude-sonnet-5",
            "anthropic.claude-mythos-5",
            "anthropic.claude-mythos-preview",
        ] {
            assert!(
                anthropic_body(&r, &row(id)).get("temperature").is_none(),
                "{id}"
            );
        }
    }

    #[test]
    fn sampling_with_thinking_on_keeps_only_what_anthropic_takes() {
        let row = row("anthropic.claude-opus-4-1");
        let body = |extra: Value| anthropic_body(&req(extra), &row);
        // Thinking on: temperature only 1, top_p only from 0.95.
        let on = |t: f64, p: f64| body(json!({"reasoning": "high", "temperature": t, "top_p": p}));
        let b = on(1.0, 0.95);
        assert_eq!(
            (b["temperature"].clone(), b["top_p"].clone()),
            (json!(1.0), json!(0.95))
        );
        let b = on(0.5, 0.94);
        assert!(
            b.get("temperature").is_none() && b.get("top_p").is_none(),
            "{b}"
        );
        // Thinking off: both as given.
        let b = body(json!({"temperature": 0.5, "top_p": 0.5}));
        assert_eq!(b.get("thinking"), None);
        assert_eq!(
            (b["temperature"].clone(), b["top_p"].clone()),
            (json!(0.5), json!(0.5))
        );
    }

    #[test]
    fn stop_and_tool_choice_translate_to_anthropic_shapes() {
        let row = row("anthropic.claude-haiku-4-5");
        let body = |extra: Value| anthropic_body(&req(extra), &row);
        assert_eq!(
            body(json!({"stop": "END"}))["stop_sequences"],
            json!(["END"])
        );
        assert_eq!(body(json!({"stop": 5})).get("stop_sequences"), None);
        for (choice, expected) in [
            (json!("auto"), Some(json!({"type": "auto"}))),
            (json!("required"), Some(json!({"type": "any"}))),
            (json!("none"), Some(json!({"type": "none"}))),
            (
                json!({"type": "function", "function": {"name": "f"}}),
                Some(json!({"type": "tool", "name": "f"})),
            ),
            (json!({"type": "auto"}), None),
            (json!("sometimes"), None),
        ] {
            assert_eq!(
                body(json!({"tool_choice": choice})).get("tool_choice"),
                expected.as_ref(),
                "{choice}"
            );
        }
    }

    #[test]
    fn a_tool_result_after_a_user_text_turn_starts_its_own_turn() {
        let r = req(json!({"messages": [
            {"role": "user", "content": "q"},
            {"role": "tool", "tool_call_id": "t1", "content": "42"},
        ]}));
        let messages = anthropic_body(&r, &row("anthropic.claude-haiku-4-5"))["messages"].clone();
        assert_eq!(messages.as_array().unwrap().len(), 2, "{messages}");
        assert_eq!(
            messages[0]["content"],
            json!([{"type": "text", "text": "q"}])
        );
        assert_eq!(messages[1]["content"][0]["type"], "tool_result");
    }

    #[test]
    fn caller_numbers_saturate_instead_of_overflowing() {
        // Failed before the fix: `base + budget` overflowed (a panic in debug builds).
        let row = row("anthropic.claude-opus-4-1");
        let (max, thinking) = claude_limits(
            &req(json!({"max_tokens": u64::MAX, "reasoning": "high"})),
            &row,
        );
        assert_eq!((max, thinking), (64000, Thinking::Budget(16384)));
        let (max, thinking) = claude_limits(
            &req(json!({"reasoning": "high", "reasoning_budget": u64::MAX})),
            &row,
        );
        // min(32000 + MAX, 64000) = 64000 <= budget, so budget = 64000 - 1024.
        assert_eq!((max, thinking), (64000, Thinking::Budget(62976)));
        let r = CanonicalRequest::parse(&format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"max_retry_delay_ms":{}}}"#,
            u64::MAX
        ))
        .unwrap();
        assert_eq!(r.max_retry_delay_ms, u64::MAX);
    }

    #[test]
    fn assistant_thinking_blocks_are_kept_with_their_signatures() {
        // Failed before the fix: thinking parts were dropped, so a multi-turn tool call with
        // thinking was refused upstream.
        let tool_call =
            json!([{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]);
        let turns = |assistant: Value| {
            req(json!({"messages": [
                {"role": "user", "content": "q"},
                assistant,
                {"role": "tool", "tool_call_id": "t1", "content": "42"},
            ]}))
        };
        let row = row("anthropic.claude-opus-4-1");
        let r = turns(json!({"role": "assistant", "content": [
            {"type": "text", "text": "let me check"},
            {"type": "thinking", "thinking": "need f", "signature": "sig-1"},
            {"type": "redacted_thinking", "data": "opaque"},
        ], "tool_calls": tool_call}));
        assert_eq!(
            anthropic_body(&r, &row)["messages"][1]["content"],
            json!([
                {"type": "thinking", "thinking": "need f", "signature": "sig-1"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "let me check"},
                {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
            ])
        );
        let r = turns(
            json!({"role": "assistant", "content": null, "reasoning_content": "need f",
            "reasoning_signature": "sig-2", "tool_calls": tool_call}),
        );
        assert_eq!(
            anthropic_body(&r, &row)["messages"][1]["content"],
            json!([
                {"type": "thinking", "thinking": "need f", "signature": "sig-2"},
                {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
            ])
        );
        // Unsigned thinking (no signature, or an empty one) is not sent.
        let r = turns(
            json!({"role": "assistant", "content": "", "reasoning_content": "x",
            "reasoning_signature": "", "tool_calls": tool_call}),
        );
        assert_eq!(
            anthropic_body(&r, &row)["messages"][1]["content"],
            json!([{"type": "tool_use", "id": "t1", "name": "f", "input": {}}])
        );
        // An empty text part is left out as well.
        let r = turns(
            json!({"role": "assistant", "content": [{"type": "text", "text": ""}],
            "tool_calls": tool_call}),
        );
        assert_eq!(
            anthropic_body(&r, &row)["messages"][1]["content"],
            json!([{"type": "tool_use", "id": "t1", "name": "f", "input": {}}])
        );
        let r = turns(
            json!({"role": "assistant", "content": "", "reasoning_content": "x",
            "tool_calls": tool_call}),
        );
        let content = anthropic_body(&r, &row)["messages"][1]["content"].clone();
        assert!(
            content
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["type"] != "thinking"),
            "{content}"
        );
    }

    #[test]
    fn header_order_and_override() {
        let model: BTreeMap<String, String> = [
            ("x-model".to_string(), "m".to_string()),
            ("anthropic-beta".to_string(), "mine".to_string()),
        ]
        .into();
        let h = anthropic_headers(Some(&model), &[("X-Model".into(), "caller".into())]);
        let names: Vec<&str> = h.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["accept", "anthropic-version", "anthropic-beta", "x-model"]
        );
        assert_eq!(h[2].1, "mine");
        assert_eq!(h[3].1, "caller");
    }

    #[test]
    fn deep_tool_call_arguments_are_not_parsed() {
        let args = "[".repeat(20_000);
        let r = req(json!({"messages": [
            {"role": "assistant", "content": "", "tool_calls": [{"id": "t", "type": "function",
                "function": {"name": "f", "arguments": args}}]},
        ]}));
        let body = anthropic_body(&r, &row("anthropic.claude-opus-4-1"));
        let content = body["messages"][0]["content"].as_array().unwrap().clone();
        let tool_use = content.iter().find(|b| b["type"] == "tool_use").unwrap();
        assert_eq!(tool_use["input"], json!({}));
    }
}
