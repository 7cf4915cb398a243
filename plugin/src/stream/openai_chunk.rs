//! One OpenAI Chat Completions chunk, decoded typed and borrowing from the SSE data (no copy of
//! its strings, no map per object: the hot path of the route). A chunk the typed decoder does
//! not take (a field of an unexpected type, a duplicate key) is read through
//! `serde_json::Value` instead, with the same lenient rules the decoder always had: a field of
//! the wrong type counts as absent. Both ways give the same [`Chunk`].

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

/// A chunk's fields the decoder uses.
#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct Chunk<'a> {
    /// Completion id.
    #[serde(default, borrow, deserialize_with = "super::borrowed::opt_str")]
    pub id: Option<Cow<'a, str>>,
    /// Model as the upstream reports it.
    #[serde(default, borrow, deserialize_with = "super::borrowed::opt_str")]
    pub model: Option<Cow<'a, str>>,
    /// Choices (one in practice).
    #[serde(default, borrow)]
    pub choices: Vec<Choice<'a>>,
    /// Usage, on the last chunk.
    #[serde(default)]
    pub usage: Option<ChunkUsage>,
    /// An in-stream error: present (whatever its value) means the stream failed.
    #[serde(default, deserialize_with = "present")]
    pub error: Option<Value>,
}

/// One choice of a chunk.
#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct Choice<'a> {
    /// What this chunk adds.
    #[serde(default, borrow)]
    pub delta: Delta<'a>,
    /// Why the model stopped, on the finishing chunk.
    #[serde(default, borrow, deserialize_with = "super::borrowed::opt_str")]
    pub finish_reason: Option<Cow<'a, str>>,
}

/// A choice's delta.
#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct Delta<'a> {
    /// Assistant text.
    #[serde(default, borrow, deserialize_with = "super::borrowed::opt_str")]
    pub content: Option<Cow<'a, str>>,
    /// Reasoning text (DeepSeek, vLLM and Mantle's name).
    #[serde(default, borrow, deserialize_with = "super::borrowed::opt_str")]
    pub reasoning_content: Option<Cow<'a, str>>,
    /// Reasoning text (Mantle also sends this name, spec §7).
    #[serde(default, borrow, deserialize_with = "super::borrowed::opt_str")]
    pub reasoning: Option<Cow<'a, str>>,
    /// Tool-call fragments.
    #[serde(default, borrow, deserialize_with = "null_as_empty")]
    pub tool_calls: Vec<ToolCall<'a>>,
}

/// A fragment of one tool call.
#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct ToolCall<'a> {
    /// The upstream's index of the call.
    #[serde(default)]
    pub index: Option<u64>,
    /// Call id (first fragment).
    #[serde(default, borrow, deserialize_with = "super::borrowed::opt_str")]
    pub id: Option<Cow<'a, str>>,
    /// Name and argument fragment.
    #[serde(default, borrow)]
    pub function: Option<Function<'a>>,
}

/// A tool call's function part.
#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct Function<'a> {
    /// Tool name (first fragment).
    #[serde(default, borrow, deserialize_with = "super::borrowed::opt_str")]
    pub name: Option<Cow<'a, str>>,
    /// A fragment of the JSON arguments.
    #[serde(default, borrow, deserialize_with = "super::borrowed::opt_str")]
    pub arguments: Option<Cow<'a, str>>,
}

/// Token usage as Chat Completions reports it.
#[derive(Debug, Default, Deserialize, PartialEq, Clone, Copy)]
pub struct ChunkUsage {
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    /// Completion tokens.
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    /// Prompt details.
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptDetails>,
    /// Completion details.
    #[serde(default)]
    pub completion_tokens_details: Option<CompletionDetails>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Default, Deserialize, PartialEq, Clone, Copy)]
pub struct PromptDetails {
    /// Cached prompt tokens.
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Default, Deserialize, PartialEq, Clone, Copy)]
pub struct CompletionDetails {
    /// Reasoning tokens.
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<Vec<T>>::deserialize(d).map(Option::unwrap_or_default)
}

fn text(v: &Value) -> Option<Cow<'_, str>> {
    v.as_str().map(Cow::Borrowed)
}

impl<'a> Chunk<'a> {
    /// Reads a chunk from a parsed value, leniently: a field of the wrong type is absent.
    pub fn from_value(v: &'a Value) -> Chunk<'a> {
        let usage = &v["usage"];
        Chunk {
            id: text(&v["id"]),
            model: text(&v["model"]),
            choices: v["choices"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| Choice {
                    delta: Delta::from_value(&c["delta"]),
                    finish_reason: text(&c["finish_reason"]),
                })
                .collect(),
            usage: usage.is_object().then(|| ChunkUsage {
                prompt_tokens: usage["prompt_tokens"].as_u64(),
                completion_tokens: usage["completion_tokens"].as_u64(),
                prompt_tokens_details: Some(PromptDetails {
                    cached_tokens: usage["prompt_tokens_details"]["cached_tokens"].as_u64(),
                }),
                completion_tokens_details: Some(CompletionDetails {
                    reasoning_tokens: usage["completion_tokens_details"]["reasoning_tokens"]
                        .as_u64(),
                }),
            }),
            error: v.get("error").cloned(),
        }
    }
}

impl<'a> Delta<'a> {
    fn from_value(d: &'a Value) -> Delta<'a> {
        Delta {
            content: text(&d["content"]),
            reasoning_content: text(&d["reasoning_content"]),
            reasoning: text(&d["reasoning"]),
            tool_calls: d["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|call| ToolCall {
                    index: call["index"].as_u64(),
                    id: text(&call["id"]),
                    function: Some(Function {
                        name: text(&call["function"]["name"]),
                        arguments: text(&call["function"]["arguments"]),
                    }),
                })
                .collect(),
        }
    }
}

impl ChunkUsage {
    /// The normalized usage.
    pub fn normalized(&self) -> super::events::Usage {
        super::events::Usage {
            input: self.prompt_tokens.unwrap_or(0),
            output: self.completion_tokens.unwrap_or(0),
            cache_read: self
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            cache_write: 0,
            reasoning: self
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The typed decoder and the lenient `Value` reader agree wherever the typed one decodes.
    #[test]
    fn typed_and_value_readings_agree() {
        let chunks = [
            json!({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi \"x\""}, "finish_reason": null}]}),
            json!({"choices": [{"delta": {"reasoning_content": "r", "reasoning": "s"}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 1, "id": "call_1", "type": "function", "function": {"name": "get", "arguments": ""}}]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 1, "function": {"arguments": "{\"a\":1}"}}]}}]}),
            json!({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 3}, "completion_tokens_details": {"reasoning_tokens": 2}}}),
            json!({"choices": [{"delta": {"content": null, "tool_calls": null}}], "usage": null}),
            json!({"error": {"message": "boom"}}),
            json!({"error": null}),
        ];
        for c in chunks {
            let text = c.to_string();
            let typed: Chunk =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let mut lenient = Chunk::from_value(&c);
            // The lenient reader fills the details it found absent; compare what is used.
            let norm = |u: &Option<ChunkUsage>| u.map(|u| u.normalized());
            assert_eq!(norm(&typed.usage), norm(&lenient.usage), "{text}");
            lenient.usage = typed.usage;
            for (t, l) in typed.choices.iter().zip(lenient.choices.iter_mut()) {
                for (tc, lc) in t.delta.tool_calls.iter().zip(l.delta.tool_calls.iter_mut()) {
                    if tc.function.is_none() {
                        lc.function = None;
                    }
                }
            }
            assert_eq!(typed, lenient, "{text}");
        }
    }

    /// The hot path copies no string it does not keep: every unescaped string of a chunk is
    /// borrowed from the event's data.
    #[test]
    fn unescaped_strings_are_borrowed_not_copied() {
        let text = r#"{"id":"c1","model":"m","choices":[{"delta":{"content":"x","reasoning_content":"r","reasoning":"s","tool_calls":[{"index":0,"id":"t","function":{"name":"n","arguments":"{}"}}]},"finish_reason":"stop"}]}"#;
        let chunk: Chunk = serde_json::from_str(text).unwrap();
        let choice = &chunk.choices[0];
        let call = &choice.delta.tool_calls[0];
        let function = call.function.as_ref().unwrap();
        for s in [
            &chunk.id,
            &chunk.model,
            &choice.finish_reason,
            &choice.delta.content,
            &choice.delta.reasoning_content,
            &choice.delta.reasoning,
            &call.id,
            &function.name,
            &function.arguments,
        ] {
            assert!(matches!(s, Some(Cow::Borrowed(_))), "{s:?} in {text}");
        }
    }

    #[test]
    fn what_the_typed_decoder_refuses_the_lenient_reader_takes() {
        for text in [
            r#"{"choices": [{"delta": {"content": 5}}]}"#,
            r#"{"choices": null}"#,
            r#"{"id": "a", "id": "b"}"#,
            r#"[1, 2]"#,
        ] {
            assert!(serde_json::from_str::<Chunk>(text).is_err(), "{text}");
            let v: Value = serde_json::from_str(text).unwrap();
            let _ = Chunk::from_value(&v);
        }
        let v: Value = serde_json::from_str(r#"{"choices": [{"delta": {"content": 5}}]}"#).unwrap();
        assert_eq!(Chunk::from_value(&v).choices[0].delta.content, None);
        let v: Value = serde_json::from_str(r#"{"id": "a", "id": "b"}"#).unwrap();
        assert_eq!(Chunk::from_value(&v).id.as_deref(), Some("b"));
    }
}
