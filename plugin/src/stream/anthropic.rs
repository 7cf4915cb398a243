//! Decoder for Anthropic Messages SSE events.

use std::{borrow::Cow, collections::BTreeSet};

use serde::Deserialize;

use super::{events::*, sse::SseEvent, Decoder};

/// State of one Anthropic stream.
#[derive(Debug, Default)]
pub struct AnthropicDecoder {
    usage: Usage,
    tool_blocks: BTreeSet<u32>,
    stop: Option<StopReason>,
}

fn stop_reason(s: &str) -> StopReason {
    match s {
        "end_turn" | "stop_sequence" | "pause_turn" => StopReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => StopReason::Length,
        "tool_use" => StopReason::ToolUse,
        "refusal" => StopReason::ContentFilter,
        _ => StopReason::Other,
    }
}

/// A `content_block_delta` event, decoded typed and borrowing (the hot path of the route);
/// every other event, or a delta the typed decoder does not take, goes through `Value`.
#[derive(Debug, Deserialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    delta: Option<DeltaPart<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct DeltaPart<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    signature: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    partial_json: Option<Cow<'a, str>>,
}

fn owned(text: Option<Cow<'_, str>>) -> String {
    text.map(Cow::into_owned).unwrap_or_default()
}

impl AnthropicDecoder {
    /// The events of a content block delta (the same for the typed and the `Value` reading).
    fn on_delta(index: u32, d: DeltaPart<'_>, out: &mut Vec<StreamEvent>) {
        match d.kind.as_deref().unwrap_or_default() {
            "text_delta" => out.push(StreamEvent::TextDelta {
                text: owned(d.text),
            }),
            "thinking_delta" => out.push(StreamEvent::ReasoningDelta {
                text: owned(d.thinking),
                signature: None,
            }),
            "signature_delta" => out.push(StreamEvent::ReasoningDelta {
                text: String::new(),
                signature: d.signature.map(Cow::into_owned),
            }),
            "input_json_delta" => out.push(StreamEvent::ToolCallDelta {
                index,
                arguments: owned(d.partial_json),
            }),
            _ => {}
        }
    }
}

impl Decoder for AnthropicDecoder {
    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<StreamEvent>) -> bool {
        if let Ok(fast) = crate::limits::parse_json_borrowed::<BlockDelta>(&ev.data) {
            if fast.kind == "content_block_delta" {
                let index = fast.index.unwrap_or(0) as u32;
                Self::on_delta(index, fast.delta.unwrap_or_default(), out);
                return false;
            }
        }
        let (v, kind) = match super::typed_payload(ev) {
            Ok(typed) => typed,
            Err(error) => {
                out.push(error);
                return true;
            }
        };
        match kind.as_str() {
            "message_start" => {
                let m = &v["message"];
                let u = &m["usage"];
                self.usage.input = u["input_tokens"].as_u64().unwrap_or(0);
                self.usage.output = u["output_tokens"].as_u64().unwrap_or(0);
                self.usage.cache_read = u["cache_read_input_tokens"].as_u64().unwrap_or(0);
                self.usage.cache_write = u["cache_creation_input_tokens"].as_u64().unwrap_or(0);
                out.push(StreamEvent::Start {
                    id: m["id"].as_str().map(str::to_string),
                    model: m["model"].as_str().map(str::to_string),
                });
            }
            "content_block_start" => {
                let index = v["index"].as_u64().unwrap_or(0) as u32;
                let block = &v["content_block"];
                if block["type"] == "tool_use" {
                    self.tool_blocks.insert(index);
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id: block["id"].as_str().unwrap_or_default().to_string(),
                        name: block["name"].as_str().unwrap_or_default().to_string(),
                    });
                }
            }
            "content_block_delta" => {
                let index = v["index"].as_u64().unwrap_or(0) as u32;
                let d = &v["delta"];
                let text = |k: &str| d[k].as_str().map(Cow::Borrowed);
                let part = DeltaPart {
                    kind: text("type"),
                    text: text("text"),
                    thinking: text("thinking"),
                    signature: text("signature"),
                    partial_json: text("partial_json"),
                };
                Self::on_delta(index, part, out);
            }
            "content_block_stop" => {
                let index = v["index"].as_u64().unwrap_or(0) as u32;
                if self.tool_blocks.remove(&index) {
                    out.push(StreamEvent::ToolCallEnd { index });
                }
            }
            "message_delta" => {
                if let Some(r) = v["delta"]["stop_reason"].as_str() {
                    self.stop = Some(stop_reason(r));
                }
                if let Some(n) = v["usage"]["output_tokens"].as_u64() {
                    self.usage.output = n;
                }
                if let Some(n) = v["usage"]["input_tokens"].as_u64() {
                    self.usage.input = n;
                }
            }
            "message_stop" => {
                out.push(StreamEvent::Usage(self.usage));
                out.push(StreamEvent::Done {
                    stop_reason: self.stop.unwrap_or(StopReason::Stop),
                });
                return true;
            }
            "error" => {
                out.push(super::upstream_error_event(&v["error"]));
                return true;
            }
            _ => {} // ping and future event types
        }
        false
    }

    fn on_eof(&mut self, out: &mut Vec<StreamEvent>) {
        out.push(super::ended_early("message_stop"));
    }
}
