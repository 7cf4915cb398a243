//! Decoder for OpenAI Chat Completions SSE chunks.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{events::*, sse::SseEvent, Decoder};
use crate::errors::{ErrorKind, StreamError};

/// State of one OpenAI stream.
#[derive(Debug, Default)]
pub struct OpenAiDecoder {
    started: bool,
    open_tools: BTreeSet<u32>,
    stop: Option<StopReason>,
}

fn stop_reason(s: &str) -> StopReason {
    match s {
        "stop" => StopReason::Stop,
        "length" => StopReason::Length,
        "tool_calls" | "function_call" => StopReason::ToolUse,
        "content_filter" => StopReason::ContentFilter,
        _ => StopReason::Other,
    }
}

impl OpenAiDecoder {
    fn close_tools(&mut self, out: &mut Vec<StreamEvent>) {
        for index in std::mem::take(&mut self.open_tools) {
            out.push(StreamEvent::ToolCallEnd { index });
        }
    }
}

impl Decoder for OpenAiDecoder {
    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<StreamEvent>) -> bool {
        if ev.data.trim() == "[DONE]" {
            self.close_tools(out);
            out.push(StreamEvent::Done {
                stop_reason: self.stop.unwrap_or(StopReason::Stop),
            });
            return true;
        }
        let chunk: Value = match crate::limits::parse_json(&ev.data) {
            Ok(v) => v,
            Err(e) => {
                out.push(StreamEvent::Error(StreamError::new(
                    ErrorKind::Protocol,
                    None,
                    format!("malformed chunk: {e}"),
                )));
                return true;
            }
        };
        if let Some(err) = chunk.get("error") {
            out.push(StreamEvent::Error(StreamError::from_upstream(
                None,
                &serde_json::json!({"error": err}).to_string(),
            )));
            return true;
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: chunk["id"].as_str().map(str::to_string),
                model: chunk["model"].as_str().map(str::to_string),
            });
        }
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            let delta = &choice["delta"];
            for key in ["reasoning_content", "reasoning"] {
                if let Some(text) = delta[key].as_str().filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::ReasoningDelta {
                        text: text.to_string(),
                        signature: None,
                    });
                }
            }
            if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
                out.push(StreamEvent::TextDelta {
                    text: text.to_string(),
                });
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = call["index"].as_u64().unwrap_or(0) as u32;
                if !self.open_tools.contains(&index) {
                    self.open_tools.insert(index);
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id: call["id"].as_str().unwrap_or_default().to_string(),
                        name: call["function"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    });
                }
                if let Some(args) = call["function"]["arguments"]
                    .as_str()
                    .filter(|a| !a.is_empty())
                {
                    out.push(StreamEvent::ToolCallDelta {
                        index,
                        arguments: args.to_string(),
                    });
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                self.stop = Some(stop_reason(reason));
                self.close_tools(out);
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            out.push(StreamEvent::Usage(Usage {
                input: u["prompt_tokens"].as_u64().unwrap_or(0),
                output: u["completion_tokens"].as_u64().unwrap_or(0),
                cache_read: u["prompt_tokens_details"]["cached_tokens"]
                    .as_u64()
                    .unwrap_or(0),
                cache_write: 0,
                reasoning: u["completion_tokens_details"]["reasoning_tokens"]
                    .as_u64()
                    .unwrap_or(0),
            }));
        }
        false
    }

    fn on_eof(&mut self, out: &mut Vec<StreamEvent>) {
        match self.stop {
            // Some servers end after the finish chunk without `[DONE]`.
            Some(stop_reason) => {
                self.close_tools(out);
                out.push(StreamEvent::Done { stop_reason });
            }
            None => out.push(StreamEvent::Error(StreamError::new(
                ErrorKind::Network,
                None,
                "upstream closed the stream before it finished",
            ))),
        }
    }
}
