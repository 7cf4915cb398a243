//! `POST /v1/messages`: Anthropic Messages in, translated to the plugin's canonical request
//! (Chat Completions shaped), Anthropic's event stream or `message` object out.
//!
//! Translation: `system` becomes a system message; text and image blocks become content
//! parts; `tool_use` blocks become the assistant's `tool_calls` and `tool_result` blocks
//! `tool` messages (placed before the user's other blocks, as Chat Completions requires);
//! `thinking` blocks of earlier turns are dropped; `tools` become functions; `tool_choice`
//! `auto`/`any`/`tool`/`none` become `auto`/`required`/a named function/`none`; `thinking`
//! and `output_config.effort` become the plugin's `reasoning` level (a budget also as
//! `reasoning_budget`). Fields this front cannot honour are a 400 naming them.

use axum::response::Response;
use mantle_host_shim::{Event, EventKind};
use serde_json::{json, Map, Value};

use super::{
    accumulate::{arguments_object, Reply, Usage},
    answer,
    errors::Surface,
    prologue, sse, unix_now, ApiError, FrontState,
};

/// Request fields this front accepts.
const KNOWN_FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "stream",
    "temperature",
    "top_p",
    "stop_sequences",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "metadata",
];

/// The canonical request for a Messages body, and whether to stream.
pub fn canonical(body: Value) -> Result<(Value, bool), ApiError> {
    let (body, model, stream) = prologue(body, Some(KNOWN_FIELDS))?;
    let mut messages = Vec::new();
    if let Some(system) = body.get("system") {
        let text = system_text(system)?;
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    let turns = match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        _ => return Err(ApiError::invalid("messages", "required, a non-empty array")),
    };
    for (i, turn) in turns.iter().enumerate() {
        translate_turn(turn, i, &mut messages)?;
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    for field in ["max_tokens", "temperature", "top_p"] {
        if let Some(v) = body.get(field).filter(|v| !v.is_null()) {
            out.insert(field.into(), v.clone());
        }
    }
    if let Some(stop) = body.get("stop_sequences").filter(|v| !v.is_null()) {
        out.insert("stop".into(), stop.clone());
    }
    if let Some(tools) = body.get("tools").filter(|v| !v.is_null()) {
        out.insert("tools".into(), translate_tools(tools)?);
    }
    if let Some(choice) = body.get("tool_choice").filter(|v| !v.is_null()) {
        out.insert("tool_choice".into(), translate_tool_choice(choice)?);
    }
    reasoning(&body, &mut out)?;
    Ok((Value::Object(out), stream))
}

fn system_text(system: &Value) -> Result<String, ApiError> {
    match system {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => blocks
            .iter()
            .enumerate()
            .map(|(i, b)| match (b["type"].as_str(), b["text"].as_str()) {
                (Some("text"), Some(t)) => Ok(t.to_string()),
                _ => Err(ApiError::invalid(
                    &format!("system[{i}]"),
                    "expected a text block",
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|parts| parts.join("\n")),
        _ => Err(ApiError::invalid(
            "system",
            "expected a string or text blocks",
        )),
    }
}

/// Text of a `tool_result`'s content (a string or text blocks).
fn tool_result_text(content: &Value, at: &str) -> Result<String, ApiError> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => Ok(blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("")),
        _ => Err(ApiError::invalid(at, "expected a string or content blocks")),
    }
}

fn image_part(block: &Value, at: &str) -> Result<Value, ApiError> {
    let source = &block["source"];
    let url = match source["type"].as_str() {
        Some("base64") => format!(
            "data:{};base64,{}",
            source["media_type"].as_str().unwrap_or("image/png"),
            source["data"].as_str().unwrap_or_default()
        ),
        Some("url") => source["url"].as_str().unwrap_or_default().to_string(),
        _ => {
            return Err(ApiError::invalid(
                &format!("{at}.source.type"),
                "expected base64 or url",
            ))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn translate_turn(turn: &Value, i: usize, out: &mut Vec<Value>) -> Result<(), ApiError> {
    let at = format!("messages[{i}]");
    let role = turn["role"].as_str().unwrap_or_default();
    if role != "user" && role != "assistant" {
        return Err(ApiError::invalid(
            &format!("{at}.role"),
            "expected user or assistant",
        ));
    }
    let blocks = match &turn["content"] {
        Value::String(s) => {
            out.push(json!({"role": role, "content": s}));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => {
            return Err(ApiError::invalid(
                &format!("{at}.content"),
                "expected a string or content blocks",
            ))
        }
    };
    let mut parts = Vec::new();
    let mut tool_calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("{at}.content[{j}]");
        match (role, block["type"].as_str().unwrap_or_default()) {
            (_, "text") => parts.push(json!({"type": "text",
                "text": block["text"].as_str().unwrap_or_default()})),
            ("user", "image") => parts.push(image_part(block, &at)?),
            ("user", "tool_result") => out.push(json!({
                "role": "tool",
                "tool_call_id": block["tool_use_id"].as_str().unwrap_or_default(),
                "content": tool_result_text(&block["content"], &format!("{at}.content"))?,
            })),
            ("assistant", "tool_use") => tool_calls.push(json!({
                "id": block["id"].as_str().unwrap_or_default(),
                "type": "function",
                "function": {
                    "name": block["name"].as_str().unwrap_or_default(),
                    "arguments": block.get("input").cloned().unwrap_or(json!({})).to_string(),
                },
            })),
            ("assistant", "thinking" | "redacted_thinking") => {}
            (_, other) => {
                return Err(ApiError::invalid(
                    &format!("{at}.type"),
                    format!("{at}.type: block type {other:?} is not supported in a {role} turn"),
                ))
            }
        }
    }
    if role == "assistant" {
        let text: String = parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("");
        let mut message = json!({"role": "assistant", "content": text});
        if !tool_calls.is_empty() {
            message["tool_calls"] = Value::Array(tool_calls);
        }
        out.push(message);
    } else if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

fn translate_tools(tools: &Value) -> Result<Value, ApiError> {
    let list = tools
        .as_array()
        .ok_or_else(|| ApiError::invalid("tools", "expected an array"))?;
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            let name = t["name"].as_str().ok_or_else(|| {
                ApiError::invalid(&format!("tools[{i}].name"), "required, a string")
            })?;
            if t.get("type").is_some_and(|ty| ty != "custom") {
                return Err(ApiError::invalid(
                    &format!("tools[{i}].type"),
                    format!(
                        "tools[{i}].type: server tools ({}) are not supported by this provider",
                        t["type"]
                    ),
                ));
            }
            let mut function = json!({
                "name": name,
                "parameters": t.get("input_schema").cloned().unwrap_or(json!({"type": "object"})),
            });
            if let Some(d) = t["description"].as_str() {
                function["description"] = json!(d);
            }
            Ok(json!({"type": "function", "function": function}))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn translate_tool_choice(choice: &Value) -> Result<Value, ApiError> {
    Ok(match choice["type"].as_str() {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => match choice["name"].as_str() {
            Some(name) => json!({"type": "function", "function": {"name": name}}),
            None => {
                return Err(ApiError::invalid(
                    "tool_choice.name",
                    "required for type tool",
                ))
            }
        },
        _ => {
            return Err(ApiError::invalid(
                "tool_choice.type",
                "expected auto, any, tool or none",
            ))
        }
    })
}

/// `thinking` and `output_config.effort` as the plugin's `reasoning` (and `reasoning_budget`).
fn reasoning(body: &Map<String, Value>, out: &mut Map<String, Value>) -> Result<(), ApiError> {
    let effort = match body.get("output_config").map(|c| &c["effort"]) {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) => Some(match e.as_str() {
            "low" | "medium" | "high" | "xhigh" | "max" => e.clone(),
            other => {
                return Err(ApiError::invalid(
                    "output_config.effort",
                    format!("expected low, medium, high, xhigh or max, found {other:?}"),
                ))
            }
        }),
        Some(_) => {
            return Err(ApiError::invalid(
                "output_config.effort",
                "expected a string",
            ))
        }
    };
    let level = match body.get("thinking") {
        None | Some(Value::Null) => effort,
        Some(t) => match t["type"].as_str() {
            Some("disabled") => Some("off".to_string()),
            Some("adaptive") => Some(effort.unwrap_or_else(|| "high".into())),
            Some("enabled") => {
                let budget = t["budget_tokens"].as_u64().ok_or_else(|| {
                    ApiError::invalid("thinking.budget_tokens", "required, a positive integer")
                })?;
                out.insert("reasoning_budget".into(), json!(budget));
                Some(
                    match budget {
                        0..=1024 => "minimal",
                        1025..=2048 => "low",
                        2049..=8192 => "medium",
                        _ => "high",
                    }
                    .to_string(),
                )
            }
            _ => {
                return Err(ApiError::invalid(
                    "thinking.type",
                    "expected enabled, adaptive or disabled",
                ))
            }
        },
    };
    if let Some(level) = level {
        out.insert("reasoning".into(), json!(level));
    }
    Ok(())
}

/// Answers one Messages request.
pub async fn handle(state: &FrontState, body: Value) -> Response {
    let (request, stream) = match canonical(body) {
        Ok(pair) => pair,
        Err(e) => return e.into_response(Surface::Anthropic),
    };
    answer(
        state,
        request,
        Surface::Anthropic,
        stream,
        |model, _| MessageEncoder::new(model),
        |reply, model, _| message(reply, model),
    )
    .await
}

/// Anthropic's `stop_reason` for the plugin's.
pub fn stop_reason(plugin: &str) -> &'static str {
    match plugin {
        "length" => "max_tokens",
        "tool_use" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input,
        "output_tokens": u.output,
        "cache_read_input_tokens": u.cache_read,
        "cache_creation_input_tokens": u.cache_write,
    })
}

fn message_id(upstream: Option<&str>) -> String {
    match upstream {
        Some(id) if id.starts_with("msg_") => id.to_string(),
        Some(id) if !id.is_empty() => format!("msg_{id}"),
        _ => format!("msg_mantle{}", unix_now()),
    }
}

/// The non-streaming `message` object: thinking, text and tool_use blocks in that order.
pub fn message(reply: &Reply, model: &str) -> Value {
    let mut content = Vec::new();
    if !reply.reasoning.is_empty() || reply.signature.is_some() {
        content.push(json!({"type": "thinking", "thinking": reply.reasoning,
            "signature": reply.signature.as_deref().unwrap_or_default()}));
    }
    if !reply.text.is_empty() {
        content.push(json!({"type": "text", "text": reply.text}));
    }
    for call in &reply.tool_calls {
        content.push(json!({"type": "tool_use", "id": call.id, "name": call.name,
            "input": arguments_object(&call.arguments)}));
    }
    json!({
        "id": message_id(reply.id.as_deref()),
        "type": "message",
        "role": "assistant",
        "model": reply.model.as_deref().unwrap_or(model),
        "content": content,
        "stop_reason": stop_reason(&reply.stop_reason),
        "stop_sequence": null,
        "usage": usage_json(&reply.usage.unwrap_or_default()),
    })
}

/// Which kind of content block is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    ToolUse,
}

/// Plugin events as Anthropic's `message_start` ... `message_stop` events.
pub struct MessageEncoder {
    model: String,
    started: bool,
    open: Option<Block>,
    next_index: u32,
    usage: Option<Usage>,
}

impl MessageEncoder {
    /// An encoder for a request to `model`.
    pub fn new(model: String) -> Self {
        MessageEncoder {
            model,
            started: false,
            open: None,
            next_index: 0,
            usage: None,
        }
    }

    fn start(&mut self, out: &mut String, id: Option<&str>, model: Option<&str>) {
        if self.started {
            return;
        }
        self.started = true;
        let model = model.unwrap_or(&self.model).to_string();
        sse::named(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": message_id(id), "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        );
    }

    fn close(&mut self, out: &mut String) {
        if self.open.take().is_some() {
            let index = self.next_index - 1;
            sse::named(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    /// Opens a block of `kind` unless one is open already; returns its index.
    fn open(&mut self, out: &mut String, kind: Block, block: Value) -> u32 {
        if self.open == Some(kind) && kind != Block::ToolUse {
            return self.next_index - 1;
        }
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some(kind);
        sse::named(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        index
    }

    fn delta(out: &mut String, index: u32, delta: Value) {
        sse::named(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
    }
}

impl sse::Encoder for MessageEncoder {
    fn encode(&mut self, event: &Event, out: &mut String) {
        let v = event.value();
        if event.kind == EventKind::Start {
            self.start(out, v["id"].as_str(), v["model"].as_str());
            return;
        }
        self.start(out, None, None);
        match event.kind {
            EventKind::Start => {}
            EventKind::ToolCallEnd => {
                if self.open == Some(Block::ToolUse) {
                    self.close(out);
                }
            }
            EventKind::TextDelta => {
                let i = self.open(out, Block::Text, json!({"type": "text", "text": ""}));
                Self::delta(out, i, json!({"type": "text_delta", "text": event.text}));
            }
            EventKind::ReasoningDelta => {
                let i = self.open(
                    out,
                    Block::Thinking,
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                );
                if !event.text.is_empty() {
                    Self::delta(
                        out,
                        i,
                        json!({"type": "thinking_delta", "thinking": event.text}),
                    );
                }
                if let Some(sig) = v["signature"].as_str() {
                    Self::delta(out, i, json!({"type": "signature_delta", "signature": sig}));
                }
            }
            EventKind::ToolCallStart => {
                self.open(
                    out,
                    Block::ToolUse,
                    json!({"type": "tool_use", "id": v["id"], "name": v["name"], "input": {}}),
                );
            }
            EventKind::ToolCallDelta => {
                let i = self.next_index.saturating_sub(1);
                Self::delta(
                    out,
                    i,
                    json!({"type": "input_json_delta", "partial_json": event.text}),
                );
            }
            EventKind::Usage => self.usage = Some(Usage::from_event(&v)),
            EventKind::Done => {
                self.close(out);
                let reason = stop_reason(v["stop_reason"].as_str().unwrap_or("stop"));
                sse::named(
                    out,
                    "message_delta",
                    &json!({"type": "message_delta",
                        "delta": {"stop_reason": reason, "stop_sequence": null},
                        "usage": usage_json(&self.usage.unwrap_or_default())}),
                );
                sse::named(out, "message_stop", &json!({"type": "message_stop"}));
            }
            EventKind::Error => {
                let error = ApiError::from_event(&v);
                sse::named(out, "error", &error.body(Surface::Anthropic));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_event as event;
    use super::*;
    use sse::Encoder;

    #[test]
    fn canonical_translates_system_blocks_tools_and_thinking() {
        let (req, stream) = canonical(json!({
            "model": "anthropic.claude-sonnet-5", "max_tokens": 100, "stream": true,
            "system": [{"type": "text", "text": "be brief"}],
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "checking"},
                    {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {"type": "text", "text": "thanks"}]},
            ],
            "tools": [{"name": "get", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"},
            "thinking": {"type": "enabled", "budget_tokens": 3000},
            "stop_sequences": ["END"],
        }))
        .unwrap();
        assert!(stream);
        assert_eq!(
            req,
            json!({
                "model": "anthropic.claude-sonnet-5", "max_tokens": 100,
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "weather?"},
                    {"role": "assistant", "content": "checking", "tool_calls": [{"id": "toolu_1",
                        "type": "function", "function": {"name": "get", "arguments": "{\"city\":\"Oslo\"}"}}]},
                    {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
                    {"role": "user", "content": [{"type": "text", "text": "thanks"}]},
                ],
                "tools": [{"type": "function", "function": {"name": "get", "description": "d",
                    "parameters": {"type": "object"}}}],
                "tool_choice": "required",
                "reasoning": "medium", "reasoning_budget": 3000,
                "stop": ["END"],
            })
        );
    }

    #[test]
    fn canonical_refuses_what_it_cannot_honour() {
        let base = |extra: Value| {
            let mut b = json!({"model": "m", "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}]});
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            b
        };
        for (body, field) in [
            (base(json!({"top_k": 3})), "top_k"),
            (
                base(json!({"thinking": {"type": "enabled"}})),
                "thinking.budget_tokens",
            ),
            (
                base(json!({"tool_choice": {"type": "tool"}})),
                "tool_choice.name",
            ),
            (
                base(json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]})),
                "tools[0].type",
            ),
            (
                base(json!({"messages": [{"role": "system", "content": "x"}]})),
                "messages[0].role",
            ),
        ] {
            let e = canonical(body).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(field), "{}", e.message);
        }
    }

    #[test]
    fn events_become_blocks_with_consecutive_indexes() {
        let mut enc = MessageEncoder::new("m".into());
        let mut out = String::new();
        for e in [
            event(EventKind::Start, "", json!({"id": "msg_1"})),
            event(EventKind::ReasoningDelta, "think", json!({})),
            event(EventKind::ReasoningDelta, "", json!({"signature": "sig"})),
            event(EventKind::TextDelta, "Hi", json!({})),
            event(
                EventKind::ToolCallStart,
                "",
                json!({"index": 0, "id": "t1", "name": "get"}),
            ),
            event(EventKind::ToolCallDelta, "{}", json!({"index": 0})),
            event(EventKind::ToolCallEnd, "", json!({"index": 0})),
            event(EventKind::Usage, "", json!({"input": 3, "output": 4})),
            event(EventKind::Done, "", json!({"stop_reason": "tool_use"})),
        ] {
            enc.encode(&e, &mut out);
        }
        let events: Vec<Value> = out
            .split("\n\n")
            .filter(|f| !f.is_empty())
            .map(|f| serde_json::from_str(f.split_once("data: ").unwrap().1).unwrap())
            .collect();
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            events[3]["delta"],
            json!({"type": "signature_delta", "signature": "sig"})
        );
        assert_eq!(events[5]["index"], 1);
        assert_eq!(events[8]["index"], 2);
        assert_eq!(events[8]["content_block"]["name"], "get");
        assert_eq!(events[11]["delta"]["stop_reason"], "tool_use");
        assert_eq!(events[11]["usage"]["output_tokens"], 4);
    }
}
