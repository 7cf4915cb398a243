//! Decoder for Anthropic Messages SSE events.

use std::collections::BTreeSet;

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

impl Decoder for AnthropicDecoder {
    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<StreamEvent>) -> bool {
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
                match d["type"].as_str().unwrap_or_default() {
                    "text_delta" => out.push(StreamEvent::TextDelta {
                        text: d["text"].as_str().unwrap_or_default().into(),
                    }),
                    "thinking_delta" => out.push(StreamEvent::ReasoningDelta {
                        text: d["thinking"].as_str().unwrap_or_default().into(),
                        signature: None,
                    }),
                    "signature_delta" => out.push(StreamEvent::ReasoningDelta {
                        text: String::new(),
                        signature: d["signature"].as_str().map(str::to_string),
                    }),
                    "input_json_delta" => out.push(StreamEvent::ToolCallDelta {
                        index,
                        arguments: d["partial_json"].as_str().unwrap_or_default().into(),
                    }),
                    _ => {}
                }
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
