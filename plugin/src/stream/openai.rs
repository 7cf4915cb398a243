//! Decoder for OpenAI Chat Completions SSE chunks.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{events::*, sse::SseEvent, Decoder};

/// State of one OpenAI stream.
#[derive(Debug, Default)]
pub struct OpenAiDecoder {
    started: bool,
    open_tools: BTreeSet<u32>,
    /// Upstream tool-call index -> normalized index (0, 1, ... in order of first appearance):
    /// some servers number streamed tool calls from 1, or skip numbers (spec §7).
    tool_indexes: Vec<u64>,
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
    /// The normalized index of an upstream tool-call index.
    fn tool_index(&mut self, upstream: u64) -> u32 {
        let position = match self.tool_indexes.iter().position(|i| *i == upstream) {
            Some(p) => p,
            None => {
                self.tool_indexes.push(upstream);
                self.tool_indexes.len() - 1
            }
        };
        u32::try_from(position).unwrap_or(u32::MAX)
    }

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
        let chunk: Value = match super::parse_payload(&ev.data) {
            Ok(v) => v,
            Err(error) => {
                out.push(error);
                return true;
            }
        };
        if let Some(err) = chunk.get("error") {
            out.push(super::upstream_error_event(err));
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
                let index = self.tool_index(call["index"].as_u64().unwrap_or(0));
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
            None => out.push(super::ended_early("it finished")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[Value]) -> Vec<StreamEvent> {
        let mut d = OpenAiDecoder::default();
        let mut out = Vec::new();
        for c in chunks {
            d.on_event(
                &SseEvent {
                    event: None,
                    data: c.to_string(),
                },
                &mut out,
            );
        }
        d.on_event(
            &SseEvent {
                event: None,
                data: "[DONE]".into(),
            },
            &mut out,
        );
        out
    }

    #[test]
    fn tool_indexes_from_one_or_with_gaps_are_renumbered_and_ids_kept() {
        use serde_json::json;
        let call = |index: u64, id: Option<&str>, name: Option<&str>, args: &str| {
            let mut c = json!({"index": index, "function": {"arguments": args}});
            if let Some(id) = id {
                c["id"] = json!(id);
                c["type"] = json!("function");
                c["function"]["name"] = json!(name.unwrap());
            }
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [c]}}]})
        };
        let events = decode(&[
            json!({"choices": [{"index": 0, "delta": {"content": " Hello"}}]}),
            call(1, Some("functions.get_weather:0"), Some("get_weather"), ""),
            call(1, None, None, "{\"city\":"),
            call(3, Some("functions.get_time:1"), Some("get_time"), "{}"),
            call(1, None, None, "\"Oslo\"}"),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        ]);
        let calls: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCallStart { index, id, name } => {
                    Some(format!("start {index} {id} {name}"))
                }
                StreamEvent::ToolCallDelta { index, arguments } => {
                    Some(format!("delta {index} {arguments}"))
                }
                StreamEvent::ToolCallEnd { index } => Some(format!("end {index}")),
                _ => None,
            })
            .collect();
        assert_eq!(
            calls,
            [
                "start 0 functions.get_weather:0 get_weather",
                "delta 0 {\"city\":",
                "start 1 functions.get_time:1 get_time",
                "delta 1 {}",
                "delta 0 \"Oslo\"}",
                "end 0",
                "end 1",
            ]
        );
        // Text that starts with a space (Kimi) is kept as given.
        assert!(events.contains(&StreamEvent::TextDelta {
            text: " Hello".into()
        }));
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Done {
                stop_reason: StopReason::ToolUse
            })
        );
    }

    #[test]
    fn reasoning_arrives_as_reasoning_content_or_reasoning() {
        use serde_json::json;
        let events = decode(&[
            json!({"choices": [{"index": 0, "delta": {"reasoning_content": "a"}}]}),
            json!({"choices": [{"index": 0, "delta": {"reasoning": "b"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "c"}, "finish_reason": "stop"}]}),
        ]);
        let reasoning: String = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ReasoningDelta { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(reasoning, "ab");
    }
}
