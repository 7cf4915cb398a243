//! The normalized event stream both routes produce (spec §6).

use serde::{Deserialize, Serialize};

use crate::errors::StreamError;

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Natural end or stop sequence.
    Stop,
    /// Max tokens reached.
    Length,
    /// The model wants tool results.
    ToolUse,
    /// Filtered or refused.
    ContentFilter,
    /// Anything else.
    Other,
}

/// Token usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens (excluding cache reads/writes on the Anthropic route).
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Cache-read input tokens.
    pub cache_read: u64,
    /// Cache-write input tokens.
    pub cache_write: u64,
    /// Reasoning tokens when reported.
    pub reasoning: u64,
}

/// Which events carry their JSON across the ABIs: the request's `include_json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EventJson {
    /// Every event (the default).
    #[default]
    Every,
    /// Every event but those whose kind and text are the whole event: text deltas, and
    /// reasoning deltas without a signature. Theirs is empty, which saves writing, handing out
    /// and freeing one string per token for a host that reads only `kind` and `text`.
    NotForText,
}

/// One normalized event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// The upstream accepted the request.
    Start {
        /// Upstream message id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Model as the upstream reports it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
    /// Assistant text.
    TextDelta {
        /// The delta.
        text: String,
    },
    /// Reasoning text (and/or its signature).
    ReasoningDelta {
        /// The delta (may be empty when only a signature arrives).
        text: String,
        /// Anthropic thinking signature, kept for multi-turn use.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// A tool call begins.
    ToolCallStart {
        /// Position of the call in the message.
        index: u32,
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
    },
    /// A fragment of a tool call's JSON arguments.
    ToolCallDelta {
        /// Position of the call.
        index: u32,
        /// The fragment.
        arguments: String,
    },
    /// A tool call's arguments are complete.
    ToolCallEnd {
        /// Position of the call.
        index: u32,
    },
    /// Token usage.
    Usage(Usage),
    /// Terminal: finished.
    Done {
        /// Why.
        stop_reason: StopReason,
    },
    /// Terminal: failed.
    Error(StreamError),
}

impl StreamEvent {
    /// Done or Error.
    pub fn is_terminal(&self) -> bool {
        matches!(self, StreamEvent::Done { .. } | StreamEvent::Error(_))
    }

    /// The text this event carries (text, reasoning, tool arguments), else "".
    pub fn text(&self) -> &str {
        match self {
            StreamEvent::TextDelta { text } | StreamEvent::ReasoningDelta { text, .. } => text,
            StreamEvent::ToolCallDelta { arguments, .. } => arguments,
            _ => "",
        }
    }

    /// The text this event carries, moved out (the event's other fields are dropped).
    pub fn into_text(self) -> String {
        match self {
            StreamEvent::TextDelta { text } | StreamEvent::ReasoningDelta { text, .. } => text,
            StreamEvent::ToolCallDelta { arguments, .. } => arguments,
            _ => String::new(),
        }
    }

    /// The event as JSON text (what both ABIs hand out in `json`); see [`Self::write_json`].
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let mut out = Vec::with_capacity(self.text().len() + 48);
        self.write_json(&mut out)?;
        // `write_json` writes only ASCII and `serde_json`'s own (valid UTF-8) output.
        Ok(String::from_utf8(out).expect("JSON text is UTF-8"))
    }

    /// Appends the event as JSON text to `out` (UTF-8). The per-token events are written
    /// directly (the same text `serde_json` writes, without its generic machinery: this runs
    /// once per event); the others through `serde_json`.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        fn tagged(
            out: &mut Vec<u8>,
            kind: &str,
            index: Option<u32>,
            key: &str,
            text: &str,
        ) -> Result<(), serde_json::Error> {
            out.reserve(text.len() + 48);
            out.extend_from_slice(b"{\"type\":\"");
            out.extend_from_slice(kind.as_bytes());
            out.extend_from_slice(b"\",");
            if let Some(i) = index {
                out.extend_from_slice(b"\"index\":");
                serde_json::to_writer(&mut *out, &i)?;
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            serde_json::to_writer(&mut *out, text)?;
            out.push(b'}');
            Ok(())
        }
        match self {
            StreamEvent::TextDelta { text } => tagged(out, "text_delta", None, "text", text),
            StreamEvent::ReasoningDelta {
                text,
                signature: None,
            } => tagged(out, "reasoning_delta", None, "text", text),
            StreamEvent::ToolCallDelta { index, arguments } => {
                tagged(out, "tool_call_delta", Some(*index), "arguments", arguments)
            }
            other => serde_json::to_writer(out, other),
        }
    }

    /// Whether this event carries its JSON under `policy` (else its `json` is empty).
    pub fn carries_json(&self, policy: EventJson) -> bool {
        match policy {
            EventJson::Every => true,
            EventJson::NotForText => !matches!(
                self,
                StreamEvent::TextDelta { .. }
                    | StreamEvent::ReasoningDelta {
                        signature: None,
                        ..
                    }
            ),
        }
    }

    /// The ABI kind.
    pub fn kind(&self) -> mantle_abi::EventKind {
        use mantle_abi::EventKind as K;
        match self {
            StreamEvent::Start { .. } => K::Start,
            StreamEvent::TextDelta { .. } => K::TextDelta,
            StreamEvent::ReasoningDelta { .. } => K::ReasoningDelta,
            StreamEvent::ToolCallStart { .. } => K::ToolCallStart,
            StreamEvent::ToolCallDelta { .. } => K::ToolCallDelta,
            StreamEvent::ToolCallEnd { .. } => K::ToolCallEnd,
            StreamEvent::Usage(_) => K::Usage,
            StreamEvent::Done { .. } => K::Done,
            StreamEvent::Error(_) => K::Error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written JSON of the per-token events is exactly what `serde_json` writes.
    #[test]
    fn direct_json_equals_serde_json() {
        for text in [
            "",
            "x",
            "quote \" backslash \\ newline \n tab \t",
            "\u{1} control",
            "ünïcödé ✓ 🦀",
        ] {
            for event in [
                StreamEvent::TextDelta { text: text.into() },
                StreamEvent::ReasoningDelta {
                    text: text.into(),
                    signature: None,
                },
                StreamEvent::ReasoningDelta {
                    text: text.into(),
                    signature: Some("s".into()),
                },
                StreamEvent::ToolCallDelta {
                    index: 7,
                    arguments: text.into(),
                },
                StreamEvent::ToolCallEnd {
                    index: 4_000_000_000,
                },
                StreamEvent::Done {
                    stop_reason: StopReason::Length,
                },
            ] {
                assert_eq!(
                    event.to_json().unwrap(),
                    serde_json::to_string(&event).unwrap(),
                    "{event:?}"
                );
            }
        }
    }
}

#[cfg(test)]
mod json_policy_tests {
    use super::*;

    #[test]
    fn only_events_whose_kind_and_text_are_the_whole_event_go_without_json() {
        let signed = StreamEvent::ReasoningDelta {
            text: "t".into(),
            signature: Some("s".into()),
        };
        let unsigned = StreamEvent::ReasoningDelta {
            text: "t".into(),
            signature: None,
        };
        let cases = [
            (StreamEvent::TextDelta { text: "t".into() }, false),
            (unsigned, false),
            (signed, true),
            (
                StreamEvent::ToolCallDelta {
                    index: 1,
                    arguments: "{".into(),
                },
                true,
            ),
            (StreamEvent::ToolCallEnd { index: 1 }, true),
            (
                StreamEvent::Start {
                    id: None,
                    model: None,
                },
                true,
            ),
            (StreamEvent::Usage(Usage::default()), true),
            (
                StreamEvent::Done {
                    stop_reason: StopReason::Stop,
                },
                true,
            ),
        ];
        for (event, carries) in cases {
            assert!(event.carries_json(EventJson::Every), "{event:?}");
            assert_eq!(
                event.carries_json(EventJson::NotForText),
                carries,
                "{event:?}"
            );
        }
    }
}

/// An event plus, when asked for, the upstream `data:` payload that produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    /// The normalized event.
    pub event: StreamEvent,
    /// Raw upstream payload.
    pub raw: Option<std::sync::Arc<str>>,
}

/// Fixed cost counted per queued event on top of its strings.
const EVENT_OVERHEAD_BYTES: usize = 64;

impl Emitted {
    /// A terminal error event with no raw payload (one the plugin made itself).
    pub fn error(error: StreamError) -> Self {
        Emitted {
            event: StreamEvent::Error(error),
            raw: None,
        }
    }

    /// The bytes this event holds, as counted against a stream's queue bound: its strings
    /// (a raw payload shared by several events is counted for each) plus a fixed overhead.
    pub fn payload_bytes(&self) -> usize {
        let strings = match &self.event {
            StreamEvent::Start { id, model } => {
                id.as_ref().map_or(0, String::len) + model.as_ref().map_or(0, String::len)
            }
            StreamEvent::TextDelta { text } => text.len(),
            StreamEvent::ReasoningDelta { text, signature } => {
                text.len() + signature.as_ref().map_or(0, String::len)
            }
            StreamEvent::ToolCallStart { id, name, .. } => id.len() + name.len(),
            StreamEvent::ToolCallDelta { arguments, .. } => arguments.len(),
            StreamEvent::Error(e) => e.message.len(),
            StreamEvent::ToolCallEnd { .. } | StreamEvent::Usage(_) | StreamEvent::Done { .. } => 0,
        };
        EVENT_OVERHEAD_BYTES + strings + self.raw.as_ref().map_or(0, |r| r.len())
    }
}
