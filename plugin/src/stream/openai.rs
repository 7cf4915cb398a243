//! Decoder for OpenAI Chat Completions SSE chunks.

use std::{borrow::Cow, collections::BTreeSet};

use serde_json::Value;

use super::{events::*, openai_chunk::Chunk, sse::SseEventRef, Decoder};

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

impl OpenAiDecoder {
    /// The events of one chunk.
    fn on_chunk(&mut self, chunk: Chunk<'_>, out: &mut Vec<StreamEvent>) -> bool {
        if let Some(err) = &chunk.error {
            out.push(super::upstream_error_event(err));
            return true;
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: chunk.id.map(Cow::into_owned),
                model: chunk.model.map(Cow::into_owned),
            });
        }
        for choice in chunk.choices {
            let delta = choice.delta;
            for text in [delta.reasoning_content, delta.reasoning]
                .into_iter()
                .flatten()
            {
                if !text.is_empty() {
                    out.push(StreamEvent::ReasoningDelta {
                        text: text.into_owned(),
                        signature: None,
                    });
                }
            }
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                out.push(StreamEvent::TextDelta {
                    text: text.into_owned(),
                });
            }
            for call in delta.tool_calls {
                let index = self.tool_index(call.index.unwrap_or(0));
                let function = call.function.unwrap_or_default();
                if !self.open_tools.contains(&index) {
                    self.open_tools.insert(index);
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id: call.id.map(Cow::into_owned).unwrap_or_default(),
                        name: function.name.map(Cow::into_owned).unwrap_or_default(),
                    });
                }
                if let Some(args) = function.arguments.filter(|a| !a.is_empty()) {
                    out.push(StreamEvent::ToolCallDelta {
                        index,
                        arguments: args.into_owned(),
                    });
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.stop = Some(stop_reason(&reason));
                self.close_tools(out);
            }
        }
        if let Some(u) = chunk.usage {
            out.push(StreamEvent::Usage(u.normalized()));
        }
        false
    }
}

impl Decoder for OpenAiDecoder {
    fn on_event(&mut self, ev: SseEventRef<'_>, out: &mut Vec<StreamEvent>) -> bool {
        if ev.data.trim() == "[DONE]" {
            self.close_tools(out);
            out.push(StreamEvent::Done {
                stop_reason: self.stop.unwrap_or(StopReason::Stop),
            });
            return true;
        }
        // By its shape first (nearly every chunk), then typed and borrowing; anything neither
        // takes is read leniently through a `Value` (`openai_chunk`).
        if let Some(chunk) = super::openai_text::chunk(ev.data) {
            return self.on_chunk(chunk, out);
        }
        if let Ok(chunk) = crate::limits::parse_json_borrowed::<Chunk>(ev.data) {
            return self.on_chunk(chunk, out);
        }
        let value: Value = match super::parse_payload(ev.data) {
            Ok(v) => v,
            Err(error) => {
                out.push(error);
                return true;
            }
        };
        self.on_chunk(Chunk::from_value(&value), out)
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
    use serde_json::json;

    fn decode(chunks: &[Value]) -> Vec<StreamEvent> {
        let mut d = OpenAiDecoder::default();
        let mut out = Vec::new();
        for c in chunks {
            d.on_event(
                SseEventRef {
                    event: None,
                    data: &c.to_string(),
                },
                &mut out,
            );
        }
        d.on_event(
            SseEventRef {
                event: None,
                data: "[DONE]",
            },
            &mut out,
        );
        out
    }

    #[test]
    fn the_end_of_the_body_finishes_after_a_finish_reason_and_fails_before_one() {
        let mut d = OpenAiDecoder::default();
        let mut out = Vec::new();
        let chunk = json!({"choices": [{"delta": {"content": "x"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 2,
                "prompt_tokens_details": {"cached_tokens": 1},
                "completion_tokens_details": {"reasoning_tokens": 1}}});
        d.on_event(
            SseEventRef {
                event: None,
                data: &chunk.to_string(),
            },
            &mut out,
        );
        d.on_eof(&mut out);
        assert_eq!(
            out[1..],
            [
                StreamEvent::TextDelta { text: "x".into() },
                StreamEvent::Usage(Usage {
                    input: 4,
                    output: 2,
                    cache_read: 1,
                    cache_write: 0,
                    reasoning: 1
                }),
                StreamEvent::Done {
                    stop_reason: StopReason::Length
                },
            ]
        );
        let mut out = Vec::new();
        OpenAiDecoder::default().on_eof(&mut out);
        assert!(
            matches!(out.as_slice(), [StreamEvent::Error(e)] if e.message.contains("it finished")),
            "{out:?}"
        );
    }

    #[test]
    fn every_finish_reason_maps_as_the_spec_says() {
        for (upstream, want) in [
            ("stop", StopReason::Stop),
            ("length", StopReason::Length),
            ("tool_calls", StopReason::ToolUse),
            ("function_call", StopReason::ToolUse),
            ("content_filter", StopReason::ContentFilter),
            ("something_new", StopReason::Other),
        ] {
            let events = decode(&[json!({"choices": [{"delta": {}, "finish_reason": upstream}]})]);
            assert_eq!(
                events.last(),
                Some(&StreamEvent::Done { stop_reason: want }),
                "{upstream}"
            );
        }
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
