//! The canonical request (OpenAI Chat Completions shaped JSON) and its translation to each
//! route's body, with the sampling and reasoning rules of spec §5.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::catalog::ModelRow;

pub mod responses;

/// Keys of the canonical request that are ours, not OpenAI's; never sent upstream.
const OWN_KEYS: [&str; 6] = [
    "reasoning",
    "reasoning_budget",
    "headers",
    "include_raw",
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
            max_retry_delay_ms,
            first_byte_timeout_ms,
            idle_timeout_ms,
        })
    }

    fn upstream_fields(&self) -> Map<String, Value> {
        let mut body = self.body.clone();
        for k in OWN_KEYS {
            body.remove(k);
        }
        body
    }
}

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

fn content_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts.iter().filter_map(part_block).collect(),
        _ => Vec::new(),
    }
}

fn part_block(part: &Value) -> Option<Value> {
    match part["type"].as_str()? {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{claude_rows, discovered_row};
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

    fn req(extra: Value) -> CanonicalRequest {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        CanonicalRequest::parse(&body.to_string()).unwrap()
    }

    fn level(s: &str) -> Value {
        if s == "unset" {
            json!({})
        } else {
            json!({"reasoning": s})
        }
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
    fn deep_requests_are_refused_before_parsing() {
        let deep = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":{}1{}}}]}}"#,
            "[".repeat(20_000),
            "]".repeat(20_000)
        );
        let e = CanonicalRequest::parse(&deep).unwrap_err();
        assert!(e.contains("nested deeper than the limit of 64"), "{e}");
        // A tool call's argument string nested deeply is not parsed either.
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
        // Unsigned thinking is not sent.
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
}
