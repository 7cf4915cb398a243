//! Decoder for Anthropic Messages SSE events.

use std::{borrow::Cow, collections::BTreeSet};

use serde::Deserialize;

use super::{events::*, sse::SseEventRef, Decoder};

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
    #[serde(
        rename = "type",
        default,
        borrow,
        deserialize_with = "super::borrowed::opt_str"
    )]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "super::borrowed::opt_str")]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "super::borrowed::opt_str")]
    thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "super::borrowed::opt_str")]
    signature: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "super::borrowed::opt_str")]
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

impl AnthropicDecoder {
    /// Decodes `data` typed when it is a content block delta; false when it is not one.
    fn block_delta(data: &str, out: &mut Vec<StreamEvent>) -> bool {
        match crate::limits::parse_json_borrowed::<BlockDelta>(data) {
            Ok(delta) if delta.kind == "content_block_delta" => {
                let index = delta.index.unwrap_or(0) as u32;
                Self::on_delta(index, delta.delta.unwrap_or_default(), out);
                true
            }
            _ => false,
        }
    }
}

impl Decoder for AnthropicDecoder {
    fn on_event(&mut self, ev: SseEventRef<'_>, out: &mut Vec<StreamEvent>) -> bool {
        // Nearly every event: a text delta, matched by its bytes; then any other delta, typed.
        if let Some((_, text)) = super::anthropic_text::text_delta(ev.data) {
            out.push(StreamEvent::TextDelta {
                text: text.into_owned(),
            });
            return false;
        }
        if Self::block_delta(ev.data, out) {
            return false;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::ErrorKind;
    use serde_json::{json, Value};

    /// Decodes payloads (each sent with its `event:` name, as Anthropic does); stops at the
    /// first event that ends the stream, like the stream task. Returns the events and whether
    /// one ended it.
    fn decode(events: &[Value]) -> (Vec<StreamEvent>, bool) {
        let mut d = AnthropicDecoder::default();
        let mut out = Vec::new();
        for e in events {
            let ev = SseEventRef {
                event: e["type"].as_str(),
                data: &e.to_string(),
            };
            if d.on_event(ev, &mut out) {
                return (out, true);
            }
        }
        (out, false)
    }

    mod text_delta_matches_the_typed_decoder {
        use super::*;
        use proptest::prelude::*;

        /// A compact text delta of `text` at `index`, as the Messages API writes it.
        fn compact(index: u64, text: &str) -> String {
            format!(
                r#"{{"type":"content_block_delta","index":{index},"delta":{{"type":"text_delta","text":{}}}}}"#,
                Value::from(text)
            )
        }

        fn typed(data: &str) -> Vec<StreamEvent> {
            let mut out = Vec::new();
            AnthropicDecoder::block_delta(data, &mut out);
            out
        }

        proptest! {
            /// Every compact text delta is taken by its bytes, with the typed decoder's text.
            #[test]
            fn every_compact_text_delta_is_matched(index in 0u64..1_000_000_000, text in any::<String>()) {
                let data = compact(index, &text);
                let (i, t) = crate::stream::anthropic_text::text_delta(&data).expect("matched");
                prop_assert_eq!(u64::from(i), index);
                prop_assert_eq!(t.as_ref(), text.as_str());
                prop_assert_eq!(typed(&data), vec![StreamEvent::TextDelta { text }]);
            }

            /// Whatever the bytes match gives what the typed decoder gives, after any one
            /// byte of a compact delta is removed, doubled or replaced.
            #[test]
            fn an_altered_delta_is_matched_only_where_the_typed_decoder_agrees(
                index in 0u64..100_000_000_000,
                text in "[a-z\\\"\\u{1}é]{0,6}",
                edit in crate::stream::shape::strategies::edit(),
            ) {
                let Some(data) = edit.apply(&compact(index, &text)) else { return Ok(()); };
                if let Some((_, t)) = crate::stream::anthropic_text::text_delta(&data) {
                    prop_assert_eq!(typed(&data), vec![StreamEvent::TextDelta { text: t.into_owned() }], "{}", data);
                }
            }
        }
    }

    fn delta(index: u64, delta: Value) -> Value {
        json!({"type": "content_block_delta", "index": index, "delta": delta})
    }

    #[test]
    fn a_whole_stream_becomes_the_normalized_events() {
        let (events, ended) = decode(&[
            json!({"type": "message_start", "message": {"id": "msg_1", "model": "m",
                "usage": {"input_tokens": 7, "output_tokens": 1, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 2}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            delta(0, json!({"type": "thinking_delta", "thinking": "hmm"})),
            delta(0, json!({"type": "signature_delta", "signature": "sig"})),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "ping"}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
            delta(1, json!({"type": "text_delta", "text": "Hi \"you\""})),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {}}}),
            delta(
                2,
                json!({"type": "input_json_delta", "partial_json": "{\"a\":"}),
            ),
            delta(2, json!({"type": "input_json_delta", "partial_json": "1}"})),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5, "input_tokens": 8}}),
            json!({"type": "message_stop"}),
        ]);
        assert!(ended);
        assert_eq!(
            events,
            vec![
                StreamEvent::Start {
                    id: Some("msg_1".into()),
                    model: Some("m".into())
                },
                StreamEvent::ReasoningDelta {
                    text: "hmm".into(),
                    signature: None
                },
                StreamEvent::ReasoningDelta {
                    text: String::new(),
                    signature: Some("sig".into())
                },
                StreamEvent::TextDelta {
                    text: "Hi \"you\"".into()
                },
                StreamEvent::ToolCallStart {
                    index: 2,
                    id: "toolu_1".into(),
                    name: "get".into()
                },
                StreamEvent::ToolCallDelta {
                    index: 2,
                    arguments: "{\"a\":".into()
                },
                StreamEvent::ToolCallDelta {
                    index: 2,
                    arguments: "1}".into()
                },
                StreamEvent::ToolCallEnd { index: 2 },
                StreamEvent::Usage(Usage {
                    input: 8,
                    output: 5,
                    cache_read: 3,
                    cache_write: 2,
                    reasoning: 0
                }),
                StreamEvent::Done {
                    stop_reason: StopReason::ToolUse
                },
            ]
        );
    }

    /// The hot path copies no string it does not keep: a delta's type and text are borrowed
    /// from the event's data.
    #[test]
    fn a_delta_borrows_its_strings() {
        let text = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x","thinking":"t","signature":"s","partial_json":"{}"}}"#;
        let d = crate::limits::parse_json_borrowed::<BlockDelta>(text).unwrap();
        assert!(matches!(d.kind, Cow::Borrowed(_)));
        let part = d.delta.unwrap();
        for s in [
            &part.kind,
            &part.text,
            &part.thinking,
            &part.signature,
            &part.partial_json,
        ] {
            assert!(matches!(s, Some(Cow::Borrowed(_))), "{s:?}");
        }
    }

    #[test]
    fn the_lenient_reading_of_a_delta_gives_the_same_events() {
        // A duplicate key is refused by the typed decoder and read through `Value` (last wins).
        let dup = r#"{"type": "content_block_delta", "index": 3, "index": 4, "delta": {"type": "input_json_delta", "partial_json": "x"}}"#;
        let mut d = AnthropicDecoder::default();
        let mut out = Vec::new();
        let ev = SseEventRef {
            event: Some("content_block_delta"),
            data: dup,
        };
        assert!(!d.on_event(ev, &mut out));
        // A delta named only by its `event:` line is a delta too.
        let data = json!({"delta": {"type": "text_delta", "text": "t"}}).to_string();
        let ev = SseEventRef {
            event: Some("content_block_delta"),
            data: &data,
        };
        assert!(!d.on_event(ev, &mut out));
        assert_eq!(
            out,
            vec![
                StreamEvent::ToolCallDelta {
                    index: 4,
                    arguments: "x".into()
                },
                StreamEvent::TextDelta { text: "t".into() },
            ]
        );
    }

    #[test]
    fn every_stop_reason_maps_as_the_spec_says() {
        for (upstream, want) in [
            ("end_turn", StopReason::Stop),
            ("stop_sequence", StopReason::Stop),
            ("pause_turn", StopReason::Stop),
            ("max_tokens", StopReason::Length),
            ("model_context_window_exceeded", StopReason::Length),
            ("tool_use", StopReason::ToolUse),
            ("refusal", StopReason::ContentFilter),
            ("something_new", StopReason::Other),
        ] {
            let (events, _) = decode(&[
                json!({"type": "message_delta", "delta": {"stop_reason": upstream}}),
                json!({"type": "message_stop"}),
            ]);
            assert_eq!(
                events.last(),
                Some(&StreamEvent::Done { stop_reason: want }),
                "{upstream}"
            );
        }
        let (events, _) = decode(&[json!({"type": "message_stop"})]);
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Done {
                stop_reason: StopReason::Stop
            })
        );
    }

    #[test]
    fn an_error_event_ends_the_stream_and_eof_is_an_early_end() {
        let (events, ended) = decode(&[
            json!({"type": "message_start", "message": {"id": "m"}}),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            json!({"type": "message_stop"}),
        ]);
        assert!(ended);
        assert_eq!(events.len(), 2, "nothing after the error: {events:?}");
        match &events[1] {
            StreamEvent::Error(e) => {
                assert_eq!(e.kind, ErrorKind::Overloaded);
                assert!(e.message.contains("Overloaded"), "{e:?}");
            }
            other => panic!("{other:?}"),
        }
        let mut out = Vec::new();
        AnthropicDecoder::default().on_eof(&mut out);
        match out.as_slice() {
            [StreamEvent::Error(e)] => {
                assert_eq!(e.kind, ErrorKind::Network);
                assert!(e.message.contains("message_stop"), "{e:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_text_block_stop_is_not_a_tool_call_end() {
        let (events, ended) = decode(&[
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_stop", "index": 5}),
        ]);
        assert!(!ended);
        assert!(events.is_empty(), "{events:?}");
    }
}
