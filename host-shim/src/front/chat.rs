//! `POST /v1/chat/completions`: OpenAI Chat Completions in, the plugin's canonical request
//! (itself Chat Completions shaped) to the plugin, OpenAI's `chat.completion.chunk` stream or
//! `chat.completion` object out. Reasoning is sent as `reasoning_content`, as DeepSeek and vLLM
//! do (the field OpenAI-compatible clients read).

use axum::response::Response;
use mantle_host_shim::{Event, EventKind};
use serde_json::{json, Value};

use super::{
    accumulate::{Reply, Usage},
    answer,
    errors::Surface,
    prologue, sse, unix_now, ApiError, FrontState,
};

/// Fields this front handles itself and never passes to the plugin.
const FRONT_FIELDS: [&str; 5] = [
    "stream",
    "stream_options",
    "n",
    "reasoning_effort",
    "max_completion_tokens",
];

/// What the client asked of the response itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Stream chunks (`stream: true`).
    pub stream: bool,
    /// Send a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// The canonical request for a Chat Completions body, and the response shape asked for.
pub fn canonical(body: Value) -> Result<(Value, Shape), ApiError> {
    let (mut body, model, stream) = prologue(body, None)?;
    match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => {}
        _ => return Err(ApiError::invalid("messages", "required, a non-empty array")),
    }
    let include_usage = match body.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(ApiError::invalid(
                    "stream_options.include_usage",
                    "expected a boolean",
                ))
            }
        },
        Some(_) => return Err(ApiError::invalid("stream_options", "expected an object")),
    };
    if body
        .get("n")
        .is_some_and(|n| !n.is_null() && n.as_u64() != Some(1))
    {
        return Err(ApiError::invalid("n", "only n = 1 is supported"));
    }
    let reasoning = match body.get("reasoning_effort") {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) => Some(reasoning_level(e)?),
        Some(_) => return Err(ApiError::invalid("reasoning_effort", "expected a string")),
    };
    if !body.contains_key("max_tokens") {
        if let Some(max) = body.get("max_completion_tokens").cloned() {
            body.insert("max_tokens".into(), max);
        }
    }
    for k in FRONT_FIELDS {
        body.remove(k);
    }
    body.insert("model".into(), json!(model));
    if let Some(level) = reasoning {
        body.insert("reasoning".into(), json!(level));
    }
    Ok((
        Value::Object(body),
        Shape {
            stream,
            include_usage,
        },
    ))
}

/// OpenAI's `reasoning_effort` as the plugin's reasoning level.
fn reasoning_level(effort: &str) -> Result<&'static str, ApiError> {
    Ok(match effort {
        "none" => "off",
        "minimal" => "minimal",
        "low" => "low",
        "medium" => "medium",
        "high" => "high",
        "xhigh" => "xhigh",
        other => {
            return Err(ApiError::invalid(
                "reasoning_effort",
                format!("expected none, minimal, low, medium, high or xhigh, found {other:?}"),
            ))
        }
    })
}

/// Answers one Chat Completions request.
pub async fn handle(state: &FrontState, body: Value) -> Response {
    let (request, shape) = match canonical(body) {
        Ok(pair) => pair,
        Err(e) => return e.into_response(Surface::OpenAi),
    };
    answer(
        state,
        request,
        Surface::OpenAi,
        shape.stream,
        |model, version| ChunkEncoder::new(model, shape.include_usage, version),
        completion,
    )
    .await
}

/// OpenAI's `finish_reason` for the plugin's stop reason.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "length" => "length",
        "tool_use" => "tool_calls",
        "content_filter" => "content_filter",
        _ => "stop",
    }
}

/// OpenAI's `usage` object.
pub fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input,
        "completion_tokens": u.output,
        "total_tokens": u.input + u.output,
        "prompt_tokens_details": {"cached_tokens": u.cache_read},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning},
    })
}

fn completion_id(upstream: Option<&str>) -> String {
    match upstream {
        Some(id) if id.starts_with("chatcmpl-") => id.to_string(),
        Some(id) if !id.is_empty() => format!("chatcmpl-{id}"),
        _ => format!("chatcmpl-mantle{}", unix_now()),
    }
}

/// OpenAI's `system_fingerprint` (the backend configuration): the serving plugin version.
pub fn fingerprint(version: &str) -> String {
    format!("mantle-{version}")
}

/// The non-streaming `chat.completion` object.
pub fn completion(reply: &Reply, model: &str, version: &str) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": if reply.text.is_empty() && !reply.tool_calls.is_empty() {
            Value::Null
        } else {
            json!(reply.text)
        },
        "refusal": null,
    });
    if !reply.reasoning.is_empty() {
        message["reasoning_content"] = json!(reply.reasoning);
    }
    if !reply.tool_calls.is_empty() {
        message["tool_calls"] = reply
            .tool_calls
            .iter()
            .map(|c| {
                json!({"id": c.id, "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments}})
            })
            .collect();
    }
    let mut out = json!({
        "id": completion_id(reply.id.as_deref()),
        "object": "chat.completion",
        "created": unix_now(),
        "model": reply.model.as_deref().unwrap_or(model),
        "system_fingerprint": fingerprint(version),
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(&reply.stop_reason),
        }],
    });
    if let Some(u) = &reply.usage {
        out["usage"] = usage_json(u);
    }
    out
}

/// Plugin events as `chat.completion.chunk` frames, then `data: [DONE]`.
pub struct ChunkEncoder {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    usage: Option<Usage>,
    sent_role: bool,
    fingerprint: String,
}

impl ChunkEncoder {
    /// An encoder for a request to `model`, served by plugin `version`.
    pub fn new(model: String, include_usage: bool, version: &str) -> Self {
        ChunkEncoder {
            fingerprint: fingerprint(version),
            id: completion_id(None),
            created: unix_now(),
            model,
            include_usage,
            usage: None,
            sent_role: false,
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Value) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        })
    }

    fn delta(&mut self, out: &mut String, mut delta: Value) {
        if !self.sent_role {
            self.sent_role = true;
            delta["role"] = json!("assistant");
        }
        sse::data(out, &self.chunk(delta, Value::Null));
    }
}

impl sse::Encoder for ChunkEncoder {
    fn encode(&mut self, event: &Event, out: &mut String) {
        let v = event.value();
        match event.kind {
            EventKind::Start => {
                if let Some(id) = v["id"].as_str() {
                    self.id = completion_id(Some(id));
                }
                if let Some(m) = v["model"].as_str() {
                    self.model = m.to_string();
                }
                self.delta(out, json!({"content": ""}));
            }
            EventKind::TextDelta => self.delta(out, json!({"content": event.text})),
            EventKind::ReasoningDelta if !event.text.is_empty() => {
                self.delta(out, json!({"reasoning_content": event.text}))
            }
            EventKind::ReasoningDelta | EventKind::ToolCallEnd => {}
            EventKind::ToolCallStart => self.delta(
                out,
                json!({"tool_calls": [{"index": v["index"], "id": v["id"], "type": "function",
                    "function": {"name": v["name"], "arguments": ""}}]}),
            ),
            EventKind::ToolCallDelta => self.delta(
                out,
                json!({"tool_calls": [{"index": v["index"], "function": {"arguments": event.text}}]}),
            ),
            EventKind::Usage => self.usage = Some(Usage::from_event(&v)),
            EventKind::Done => {
                let reason = finish_reason(v["stop_reason"].as_str().unwrap_or("stop"));
                if !self.sent_role {
                    self.delta(out, json!({"content": ""}));
                }
                sse::data(out, &self.chunk(json!({}), json!(reason)));
                if self.include_usage {
                    let usage = usage_json(&self.usage.unwrap_or_default());
                    let mut last = self.chunk(json!({}), Value::Null);
                    last["choices"] = json!([]);
                    last["usage"] = usage;
                    sse::data(out, &last);
                }
                out.push_str("data: [DONE]\n\n");
            }
            EventKind::Error => {
                // Mid-stream: OpenAI's clients raise on a `data:` object with an `error` key.
                let error = ApiError::from_event(&v);
                sse::data(out, &error.body(Surface::OpenAi));
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
    fn canonical_maps_the_openai_fields() {
        let (req, shape) = canonical(json!({
            "model": "amazon-bedrock-mantle/openai.gpt-oss-120b",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": true, "stream_options": {"include_usage": true},
            "reasoning_effort": "none", "max_completion_tokens": 99, "n": 1, "temperature": 0.5,
        }))
        .unwrap();
        assert_eq!(
            shape,
            Shape {
                stream: true,
                include_usage: true
            }
        );
        assert_eq!(
            req,
            json!({"model": "openai.gpt-oss-120b", "messages": [{"role": "user", "content": "hi"}],
                "reasoning": "off", "max_tokens": 99, "temperature": 0.5})
        );
    }

    #[test]
    fn canonical_names_the_bad_field() {
        for (body, field) in [
            (
                json!({"messages": [{"role": "user", "content": "x"}]}),
                "model",
            ),
            (json!({"model": "m"}), "messages"),
            (json!({"model": "m", "messages": []}), "messages"),
            (
                json!({"model": "m", "messages": [{}], "stream": "yes"}),
                "stream",
            ),
            (json!({"model": "m", "messages": [{}], "n": 2}), "n"),
            (
                json!({"model": "m", "messages": [{}], "reasoning_effort": "huge"}),
                "reasoning_effort",
            ),
        ] {
            let e = canonical(body).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(field));
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn chunks_carry_role_once_then_content_reasoning_tools_finish_usage_done() {
        let mut enc = ChunkEncoder::new("m".into(), true, "0.1.0+v2");
        let mut out = String::new();
        for e in [
            event(EventKind::Start, "", json!({"id": "abc", "model": "up"})),
            event(EventKind::ReasoningDelta, "think", json!({})),
            event(EventKind::TextDelta, "Hi", json!({})),
            event(
                EventKind::ToolCallStart,
                "",
                json!({"index": 0, "id": "call_1", "name": "get"}),
            ),
            event(EventKind::ToolCallDelta, "{}", json!({"index": 0})),
            event(EventKind::ToolCallEnd, "", json!({"index": 0})),
            event(
                EventKind::Usage,
                "",
                json!({"input": 3, "output": 4, "cache_read": 1, "reasoning": 2}),
            ),
            event(EventKind::Done, "", json!({"stop_reason": "tool_use"})),
        ] {
            enc.encode(&e, &mut out);
        }
        let frames: Vec<&str> = out.split("\n\n").filter(|f| !f.is_empty()).collect();
        assert_eq!(frames.len(), 8, "{out}");
        assert_eq!(frames[7], "data: [DONE]");
        let chunks: Vec<Value> = frames[..7]
            .iter()
            .map(|f| serde_json::from_str(f.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        assert!(chunks.iter().all(|c| c["id"] == "chatcmpl-abc"));
        assert!(chunks
            .iter()
            .all(|c| c["system_fingerprint"] == "mantle-0.1.0+v2"));
        let deltas: Vec<&Value> = chunks[..6]
            .iter()
            .map(|c| &c["choices"][0]["delta"])
            .collect();
        assert_eq!(deltas[0], &json!({"role": "assistant", "content": ""}));
        assert_eq!(deltas[1], &json!({"reasoning_content": "think"}));
        assert_eq!(deltas[2], &json!({"content": "Hi"}));
        assert_eq!(deltas[3]["tool_calls"][0]["function"]["name"], "get");
        assert_eq!(deltas[4]["tool_calls"][0]["function"]["arguments"], "{}");
        assert_eq!(chunks[5]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[6]["choices"], json!([]));
        assert_eq!(chunks[6]["usage"]["total_tokens"], 7);
        assert_eq!(
            chunks[6]["usage"]["completion_tokens_details"]["reasoning_tokens"],
            2
        );
    }
}
