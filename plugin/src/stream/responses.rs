//! Decoder for the OpenAI Responses stream (spec §7): typed events (`data.type`, echoed in the
//! SSE `event:` field) mapped to the same normalized events as the other two routes.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::{events::*, sse::SseEventRef, Decoder};

/// State of one Responses stream.
#[derive(Debug, Default)]
pub struct ResponsesDecoder {
    started: bool,
    /// `output_index` of each function call, in order: the position is the normalized index.
    calls: Vec<u64>,
    /// Calls whose arguments are complete.
    ended: Vec<u64>,
}

impl ResponsesDecoder {
    fn call_index(&self, output_index: u64) -> Option<u32> {
        self.calls
            .iter()
            .position(|i| *i == output_index)
            .and_then(|p| u32::try_from(p).ok())
    }

    fn end_call(&mut self, output_index: u64, out: &mut Vec<StreamEvent>) {
        if let Some(index) = self.call_index(output_index) {
            if !self.ended.contains(&output_index) {
                self.ended.push(output_index);
                out.push(StreamEvent::ToolCallEnd { index });
            }
        }
    }

    /// Usage and the terminal event from a finished `response` object.
    fn finish(&mut self, response: &Value, stop_reason: StopReason, out: &mut Vec<StreamEvent>) {
        for output_index in self.calls.clone() {
            self.end_call(output_index, out);
        }
        let u = &response["usage"];
        if u.is_object() {
            out.push(StreamEvent::Usage(Usage {
                input: u["input_tokens"].as_u64().unwrap_or(0),
                output: u["output_tokens"].as_u64().unwrap_or(0),
                cache_read: u["input_tokens_details"]["cached_tokens"]
                    .as_u64()
                    .unwrap_or(0),
                cache_write: 0,
                reasoning: u["output_tokens_details"]["reasoning_tokens"]
                    .as_u64()
                    .unwrap_or(0),
            }));
        }
        out.push(StreamEvent::Done { stop_reason });
    }
}

/// A text or reasoning delta event, decoded typed and borrowing (the hot path of the route);
/// every other event, or a delta the typed decoder does not take, goes through `Value`.
#[derive(Debug, Deserialize, PartialEq)]
struct TextDelta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "super::borrowed::opt_str")]
    delta: Option<Cow<'a, str>>,
}

impl Decoder for ResponsesDecoder {
    fn on_event(&mut self, ev: SseEventRef<'_>, out: &mut Vec<StreamEvent>) -> bool {
        // Nearly every event: a delta, read by its flat shape, else typed.
        let fast = super::responses_text::delta_event(ev.data)
            .map(|(kind, delta)| TextDelta { kind, delta })
            .or_else(|| crate::limits::parse_json_borrowed::<TextDelta>(ev.data).ok());
        if let Some(fast) = fast {
            let reasoning = match fast.kind.as_ref() {
                "response.output_text.delta" => Some(false),
                "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                    Some(true)
                }
                _ => None,
            };
            if let Some(reasoning) = reasoning {
                if !self.started {
                    self.started = true;
                    out.push(StreamEvent::Start {
                        id: None,
                        model: None,
                    });
                }
                if let Some(text) = fast.delta.filter(|t| !t.is_empty()) {
                    let text = text.into_owned();
                    out.push(if reasoning {
                        StreamEvent::ReasoningDelta {
                            text,
                            signature: None,
                        }
                    } else {
                        StreamEvent::TextDelta { text }
                    });
                }
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
        if !self.started && kind != "error" {
            self.started = true;
            let response = &v["response"];
            out.push(StreamEvent::Start {
                id: response["id"].as_str().map(str::to_string),
                model: response["model"].as_str().map(str::to_string),
            });
        }
        match kind.as_str() {
            "response.output_text.delta" => {
                if let Some(text) = v["delta"].as_str().filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::TextDelta {
                        text: text.to_string(),
                    });
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                if let Some(text) = v["delta"].as_str().filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::ReasoningDelta {
                        text: text.to_string(),
                        signature: None,
                    });
                }
            }
            "response.output_item.added" if v["item"]["type"] == "function_call" => {
                let output_index = v["output_index"].as_u64().unwrap_or(0);
                if self.call_index(output_index).is_none() {
                    self.calls.push(output_index);
                    let item = &v["item"];
                    out.push(StreamEvent::ToolCallStart {
                        index: self.call_index(output_index).unwrap_or(0),
                        id: item["call_id"].as_str().unwrap_or_default().to_string(),
                        name: item["name"].as_str().unwrap_or_default().to_string(),
                    });
                    if let Some(args) = item["arguments"].as_str().filter(|a| !a.is_empty()) {
                        out.push(StreamEvent::ToolCallDelta {
                            index: self.call_index(output_index).unwrap_or(0),
                            arguments: args.to_string(),
                        });
                    }
                }
            }
            "response.function_call_arguments.delta" => {
                let output_index = v["output_index"].as_u64().unwrap_or(0);
                if let (Some(index), Some(args)) = (
                    self.call_index(output_index),
                    v["delta"].as_str().filter(|a| !a.is_empty()),
                ) {
                    out.push(StreamEvent::ToolCallDelta {
                        index,
                        arguments: args.to_string(),
                    });
                }
            }
            "response.function_call_arguments.done" => {
                self.end_call(v["output_index"].as_u64().unwrap_or(0), out);
            }
            "response.completed" => {
                let stop = if self.calls.is_empty() {
                    StopReason::Stop
                } else {
                    StopReason::ToolUse
                };
                self.finish(&v["response"], stop, out);
                return true;
            }
            "response.incomplete" => {
                let response = &v["response"];
                let stop = match response["incomplete_details"]["reason"].as_str() {
                    Some("max_output_tokens") => StopReason::Length,
                    Some("content_filter") => StopReason::ContentFilter,
                    _ => StopReason::Other,
                };
                self.finish(response, stop, out);
                return true;
            }
            "response.failed" => {
                out.push(super::upstream_error_event(&v["response"]["error"]));
                return true;
            }
            "error" => {
                let error = if v["error"].is_object() {
                    &v["error"]
                } else {
                    &v
                };
                out.push(super::upstream_error_event(error));
                return true;
            }
            _ => {}
        }
        false
    }

    fn on_eof(&mut self, out: &mut Vec<StreamEvent>) {
        out.push(super::ended_early("response.completed"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::ErrorKind;
    use serde_json::json;

    /// The hot path copies no string it does not keep: a delta's type and text are borrowed
    /// from the event's data.
    #[test]
    fn a_delta_borrows_its_strings() {
        let text = r#"{"type":"response.output_text.delta","item_id":"i","delta":"x"}"#;
        let d = crate::limits::parse_json_borrowed::<TextDelta>(text).unwrap();
        assert!(matches!(d.kind, Cow::Borrowed(_)));
        assert!(matches!(d.delta, Some(Cow::Borrowed("x"))), "{:?}", d.delta);
    }

    mod delta_shape_matches_the_typed_decoder {
        use super::*;
        use proptest::prelude::*;

        fn flat(kind: &str, fields: &[(String, String)]) -> String {
            let mut data = format!("{{\"type\":{}", Value::from(kind));
            for (key, value) in fields {
                data.push_str(&format!(",\"{key}\":{value}"));
            }
            data.push('}');
            data
        }

        proptest! {
            /// Whatever the shape reading takes, it reads as the typed decoder does, for flat
            /// events and for any one byte of them removed, doubled or replaced.
            #[test]
            fn a_delta_read_by_its_shape_is_what_the_typed_decoder_reads(
                kind in prop::sample::select(vec!["response.output_text.delta", "response.reasoning_text.delta", "response.created"]),
                fields in prop::collection::vec((prop::sample::select(vec!["delta", "item_id", "sequence_number", "logprobs", "type"]), crate::stream::shape::strategies::plain_value()), 0..5),
                edit in crate::stream::shape::strategies::edit(),
            ) {
                let fields: Vec<(String, String)> = fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                let Some(data) = edit.apply(&flat(kind, &fields)) else { return Ok(()); };
                if let Some((kind, delta)) = crate::stream::responses_text::delta_event(&data) {
                    let typed = crate::limits::parse_json_borrowed::<TextDelta>(&data);
                    prop_assert_eq!(typed, Ok(TextDelta { kind, delta }), "{}", data);
                }
            }

            /// Every flat event without a repeated `type` or `delta` is taken by its shape.
            #[test]
            fn every_flat_event_is_taken(
                text in any::<String>(),
                seq in any::<u32>(),
            ) {
                let data = flat("response.output_text.delta", &[
                    ("sequence_number".into(), seq.to_string()),
                    ("item_id".into(), "\"msg_1\"".into()),
                    ("delta".into(), Value::from(text.as_str()).to_string()),
                    ("logprobs".into(), "[]".into()),
                ]);
                let (kind, delta) = crate::stream::responses_text::delta_event(&data).expect("taken");
                prop_assert_eq!(kind.as_ref(), "response.output_text.delta");
                prop_assert_eq!(delta.as_deref(), Some(text.as_str()));
            }
        }
    }

    fn decode(events: &[Value]) -> Vec<StreamEvent> {
        let mut d = ResponsesDecoder::default();
        let mut out = Vec::new();
        for e in events {
            if d.on_event(
                SseEventRef {
                    event: e["type"].as_str(),
                    data: &e.to_string(),
                },
                &mut out,
            ) {
                return out;
            }
        }
        d.on_eof(&mut out);
        out
    }

    #[test]
    fn text_reasoning_tool_calls_and_usage() {
        let events = decode(&[
            json!({"type": "response.created", "response": {"id": "resp_1", "model": "openai.gpt-5.5"}}),
            json!({"type": "response.in_progress", "response": {"id": "resp_1"}}),
            json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning"}}),
            json!({"type": "response.reasoning_summary_text.delta", "output_index": 0, "delta": "think"}),
            json!({"type": "response.output_item.added", "output_index": 1, "item": {"type": "message"}}),
            json!({"type": "response.content_part.added", "output_index": 1}),
            json!({"type": "response.output_text.delta", "output_index": 1, "delta": "Hi"}),
            json!({"type": "response.output_item.added", "output_index": 2,
                "item": {"type": "function_call", "call_id": "call_9", "name": "get", "arguments": ""}}),
            json!({"type": "response.function_call_arguments.delta", "output_index": 2, "delta": "{\"a\":"}),
            json!({"type": "response.function_call_arguments.delta", "output_index": 2, "delta": "1}"}),
            json!({"type": "response.function_call_arguments.done", "output_index": 2, "arguments": "{\"a\":1}"}),
            json!({"type": "response.output_item.done", "output_index": 2}),
            json!({"type": "response.completed", "response": {"id": "resp_1", "usage": {
                "input_tokens": 10, "output_tokens": 5,
                "input_tokens_details": {"cached_tokens": 3},
                "output_tokens_details": {"reasoning_tokens": 2}}}}),
        ]);
        assert_eq!(
            events,
            vec![
                StreamEvent::Start {
                    id: Some("resp_1".into()),
                    model: Some("openai.gpt-5.5".into())
                },
                StreamEvent::ReasoningDelta {
                    text: "think".into(),
                    signature: None
                },
                StreamEvent::TextDelta { text: "Hi".into() },
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "call_9".into(),
                    name: "get".into()
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "{\"a\":".into()
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "1}".into()
                },
                StreamEvent::ToolCallEnd { index: 0 },
                StreamEvent::Usage(Usage {
                    input: 10,
                    output: 5,
                    cache_read: 3,
                    cache_write: 0,
                    reasoning: 2
                }),
                StreamEvent::Done {
                    stop_reason: StopReason::ToolUse
                },
            ]
        );
    }

    #[test]
    fn incomplete_failed_error_and_eof() {
        let created = json!({"type": "response.created", "response": {"id": "r"}});
        let incomplete = decode(&[
            created.clone(),
            json!({"type": "response.output_text.delta", "delta": "par"}),
            json!({"type": "response.incomplete", "response": {"incomplete_details": {"reason": "max_output_tokens"}}}),
        ]);
        assert_eq!(
            incomplete.last(),
            Some(&StreamEvent::Done {
                stop_reason: StopReason::Length
            })
        );
        let failed = decode(&[
            created.clone(),
            json!({"type": "response.output_text.delta", "delta": "par"}),
            json!({"type": "response.failed", "response": {"error": {"code": "server_error", "message": "The server is overloaded"}}}),
        ]);
        match failed.last() {
            Some(StreamEvent::Error(e)) => {
                assert_eq!(e.kind, ErrorKind::Overloaded);
                assert_eq!(e.message, "The server is overloaded");
            }
            other => panic!("{other:?}"),
        }
        let error = decode(&[
            json!({"type": "error", "code": "rate_limit_exceeded", "message": "slow down"}),
        ]);
        match error.as_slice() {
            [StreamEvent::Error(e)] => assert_eq!(
                (e.kind, e.message.as_str()),
                (ErrorKind::RateLimit, "slow down")
            ),
            other => panic!("{other:?}"),
        }
        let cut = decode(&[
            created,
            json!({"type": "response.output_text.delta", "delta": "par"}),
        ]);
        assert!(matches!(cut.last(), Some(StreamEvent::Error(e)) if e.kind == ErrorKind::Network));
    }

    #[test]
    fn every_incomplete_reason_maps_as_the_spec_says() {
        for (reason, want) in [
            (json!("max_output_tokens"), StopReason::Length),
            (json!("content_filter"), StopReason::ContentFilter),
            (json!("something_new"), StopReason::Other),
            (Value::Null, StopReason::Other),
        ] {
            let events = decode(&[json!({"type": "response.incomplete",
                "response": {"incomplete_details": {"reason": reason}}})]);
            assert_eq!(
                events.last(),
                Some(&StreamEvent::Done { stop_reason: want }),
                "{reason}"
            );
        }
    }

    #[test]
    fn the_lenient_reading_of_deltas_gives_the_same_events() {
        // Duplicate keys are refused by the typed decoder and read through `Value` (last wins);
        // empty deltas are no events on either path.
        let dup = |kind: &str, a: &str, b: &str| {
            format!(r#"{{"type": "{kind}", "delta": "{a}", "delta": "{b}"}}"#)
        };
        let mut d = ResponsesDecoder::default();
        let mut out = Vec::new();
        for data in [
            dup("response.output_text.delta", "x", "text"),
            dup("response.reasoning_text.delta", "x", "thought"),
            dup("response.reasoning_summary_text.delta", "x", "summary"),
            dup("response.output_text.delta", "x", ""),
            dup("response.reasoning_text.delta", "x", ""),
            json!({"type": "response.output_text.delta", "delta": ""}).to_string(),
            json!({"type": "response.reasoning_text.delta", "delta": ""}).to_string(),
        ] {
            let ev = SseEventRef {
                event: None,
                data: &data,
            };
            assert!(!d.on_event(ev, &mut out));
        }
        assert_eq!(
            out,
            vec![
                StreamEvent::Start {
                    id: None,
                    model: None
                },
                StreamEvent::TextDelta {
                    text: "text".into()
                },
                StreamEvent::ReasoningDelta {
                    text: "thought".into(),
                    signature: None
                },
                StreamEvent::ReasoningDelta {
                    text: "summary".into(),
                    signature: None
                },
            ]
        );
    }

    #[test]
    fn a_call_ends_when_its_arguments_are_done_not_at_completion() {
        let events = decode(&[
            json!({"type": "response.created", "response": {"id": "r"}}),
            json!({"type": "response.output_item.added", "output_index": 0,
                "item": {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}}),
            json!({"type": "response.function_call_arguments.done", "output_index": 0, "arguments": "{}"}),
            json!({"type": "response.output_text.delta", "delta": "after"}),
            json!({"type": "response.completed", "response": {"id": "r"}}),
        ]);
        assert_eq!(
            events[1..],
            [
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "c".into(),
                    name: "f".into()
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "{}".into()
                },
                StreamEvent::ToolCallEnd { index: 0 },
                StreamEvent::TextDelta {
                    text: "after".into()
                },
                StreamEvent::Done {
                    stop_reason: StopReason::ToolUse
                },
            ]
        );
    }
}
