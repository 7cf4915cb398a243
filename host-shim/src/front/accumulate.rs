//! A whole reply gathered from a plugin stream's events, for the non-streaming form of each API.

use mantle_host_shim::{Event, EventKind};
use serde_json::Value;

use super::feed::Feed;

/// One tool call of a reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCall {
    /// Call id.
    pub id: String,
    /// Tool name.
    pub name: String,
    /// The JSON arguments as streamed (concatenated fragments).
    pub arguments: String,
}

/// Token usage as the plugin reports it (`{input, output, cache_read, cache_write, reasoning}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Input tokens (cache reads and writes excluded on the Anthropic route).
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Cache-read input tokens.
    pub cache_read: u64,
    /// Cache-write input tokens.
    pub cache_write: u64,
    /// Reasoning tokens.
    pub reasoning: u64,
}

impl Usage {
    /// Reads a usage event's JSON.
    pub fn from_event(v: &Value) -> Self {
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        Usage {
            input: n("input"),
            output: n("output"),
            cache_read: n("cache_read"),
            cache_write: n("cache_write"),
            reasoning: n("reasoning"),
        }
    }
}

/// A reply gathered to its end.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// Upstream message id, when known.
    pub id: Option<String>,
    /// Model as the upstream reported it, when known.
    pub model: Option<String>,
    /// Assistant text.
    pub text: String,
    /// Reasoning text.
    pub reasoning: String,
    /// Reasoning signature (Anthropic), when one came.
    pub signature: Option<String>,
    /// Tool calls in order.
    pub tool_calls: Vec<ToolCall>,
    /// Usage, when reported.
    pub usage: Option<Usage>,
    /// The plugin's stop reason (`stop`, `length`, `tool_use`, `content_filter`, `other`).
    pub stop_reason: String,
    /// The terminal error event's JSON, when the stream failed.
    pub error: Option<Value>,
}

impl Reply {
    /// Adds one event.
    pub fn add(&mut self, event: &Event) {
        let v = event.value();
        match event.kind {
            EventKind::Start => {
                self.id = v["id"].as_str().map(str::to_string);
                self.model = v["model"].as_str().map(str::to_string);
            }
            EventKind::TextDelta => self.text.push_str(&event.text),
            EventKind::ReasoningDelta => {
                self.reasoning.push_str(&event.text);
                if let Some(s) = v["signature"].as_str() {
                    self.signature.get_or_insert_with(String::new).push_str(s);
                }
            }
            EventKind::ToolCallStart => self.tool_calls.push(ToolCall {
                id: v["id"].as_str().unwrap_or_default().to_string(),
                name: v["name"].as_str().unwrap_or_default().to_string(),
                arguments: String::new(),
            }),
            EventKind::ToolCallDelta => {
                if let Some(call) = self.tool_calls.last_mut() {
                    call.arguments.push_str(&event.text);
                }
            }
            EventKind::Usage => self.usage = Some(Usage::from_event(&v)),
            EventKind::Done => {
                self.stop_reason = v["stop_reason"].as_str().unwrap_or("stop").to_string();
            }
            EventKind::Error => self.error = Some(v),
            EventKind::ToolCallEnd => {}
        }
    }

    /// Gathers a whole feed (its first event included).
    pub async fn gather(mut feed: Feed) -> Reply {
        let mut reply = Reply::default();
        reply.add(&feed.first);
        while let Some(event) = feed.next().await {
            reply.add(&event);
        }
        if reply.error.is_none() && reply.stop_reason.is_empty() {
            reply.error = Some(serde_json::json!({
                "kind": "internal", "message": "the stream ended without a terminal event"}));
        }
        reply
    }
}

/// Parses a tool call's streamed arguments as a JSON object (`{}` when empty or not JSON).
pub fn arguments_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(Default::default()),
    }
}
