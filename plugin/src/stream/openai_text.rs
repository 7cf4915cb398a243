//! A Chat Completions chunk read by its shape: compact JSON whose values are plain (strings,
//! integers, `true`, `false`, `null`, `[]`) except `choices`, a list of flat objects each with a
//! flat `delta`, as in
//! `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}]}`:
//! nearly every chunk of a stream. Keys may come in any order.
//!
//! What it gives is the [`Chunk`] the typed decoder would give. Anything else (whitespace, a
//! fraction, an escaped key, a repeated key the typed decoder reads, a `usage` object, an
//! `error`, tool calls, a value of another type than the typed decoder takes) is not this
//! shape, and the typed decoder reads it (a property test holds the two to the same chunk).

use super::{
    openai_chunk::{Choice, Chunk, Delta},
    shape::{items, members, once, opt_string, skip_value},
};

/// The chunk `data` holds when it is this shape; `None` for anything else.
pub fn chunk(data: &str) -> Option<Chunk<'_>> {
    let mut rest = data;
    let mut chunk = Chunk::default();
    let mut seen = Seen::default();
    members(&mut rest, |name, rest| {
        match name {
            "id" => chunk.id = once(&mut seen.id).and_then(|()| opt_string(rest))?,
            "model" => chunk.model = once(&mut seen.model).and_then(|()| opt_string(rest))?,
            "choices" => {
                once(&mut seen.choices)?;
                chunk.choices = choices(rest)?;
            }
            // No usage: `null` only (the typed decoder reads an object).
            "usage" => {
                once(&mut seen.usage)?;
                *rest = rest.strip_prefix("null")?;
            }
            // Present at all, whatever its value, means the stream failed: the typed way.
            "error" => return None,
            _ => skip_value(rest)?,
        }
        Some(())
    })?;
    rest.is_empty().then_some(chunk)
}

/// The keys of one object that the typed decoder reads, each allowed once (it refuses a
/// repeated one).
#[derive(Default)]
struct Seen {
    id: bool,
    model: bool,
    choices: bool,
    usage: bool,
    delta: bool,
    finish_reason: bool,
    content: bool,
    reasoning_content: bool,
    reasoning: bool,
}

/// The `choices` list: flat objects, each with a flat `delta`.
fn choices<'a>(rest: &mut &'a str) -> Option<Vec<Choice<'a>>> {
    let mut choices = Vec::new();
    items(rest, |rest| {
        choices.push(choice(rest)?);
        Some(())
    })?;
    Some(choices)
}

fn choice<'a>(rest: &mut &'a str) -> Option<Choice<'a>> {
    let mut choice = Choice::default();
    let mut seen = Seen::default();
    members(rest, |name, rest| {
        match name {
            "delta" => {
                once(&mut seen.delta)?;
                choice.delta = delta(rest)?;
            }
            "finish_reason" => {
                choice.finish_reason =
                    once(&mut seen.finish_reason).and_then(|()| opt_string(rest))?
            }
            _ => skip_value(rest)?,
        }
        Some(())
    })?;
    Some(choice)
}

fn delta<'a>(rest: &mut &'a str) -> Option<Delta<'a>> {
    let mut delta = Delta::default();
    let mut seen = Seen::default();
    members(rest, |name, rest| {
        match name {
            "content" => delta.content = once(&mut seen.content).and_then(|()| opt_string(rest))?,
            "reasoning_content" => {
                delta.reasoning_content =
                    once(&mut seen.reasoning_content).and_then(|()| opt_string(rest))?
            }
            "reasoning" => {
                delta.reasoning = once(&mut seen.reasoning).and_then(|()| opt_string(rest))?
            }
            // Tool calls go the typed way.
            "tool_calls" => return None,
            _ => skip_value(rest)?,
        }
        Some(())
    })?;
    Some(delta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn typed(data: &str) -> Result<Chunk<'_>, String> {
        crate::limits::parse_json_borrowed::<Chunk>(data)
    }

    #[test]
    fn text_chunks_read_as_the_typed_decoder_reads_them() {
        for data in [
            r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"choices":[{"delta":{"content":"a\"b\n"},"finish_reason":null,"index":0}],"id":"chatcmpl-mock","model":"m","object":"chat.completion.chunk"}"#,
            r#"{"id":null,"choices":[{"delta":{"reasoning_content":"r","reasoning":"r"}},{"delta":{},"finish_reason":"stop"}],"usage":null}"#,
            r#"{"id":"c","choices":[]}"#,
            "{}",
        ] {
            let chunk = chunk(data).unwrap_or_else(|| panic!("not taken: {data}"));
            assert_eq!(Ok(&chunk), typed(data).as_ref(), "{data}");
        }
    }

    mod matches_the_typed_decoder {
        use super::*;
        use proptest::prelude::*;
        use serde_json::Value;

        /// A compact object of `members`.
        fn object(members: &[(&str, String)]) -> String {
            let inner: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::from(*k)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }

        fn members(
            keys: Vec<&'static str>,
            value: impl Strategy<Value = String>,
        ) -> impl Strategy<Value = Vec<(&'static str, String)>> {
            prop::collection::vec((prop::sample::select(keys), value), 0..4)
        }

        fn chunk_text() -> impl Strategy<Value = String> {
            let delta = members(
                vec![
                    "content",
                    "reasoning_content",
                    "reasoning",
                    "role",
                    "tool_calls",
                ],
                crate::stream::shape::strategies::plain_value(),
            )
            .prop_map(|m| object(&m));
            let choice = (
                delta,
                members(
                    vec!["index", "finish_reason", "logprobs", "delta"],
                    crate::stream::shape::strategies::plain_value(),
                ),
            )
                .prop_map(|(delta, mut rest)| {
                    rest.push(("delta", delta));
                    object(&rest)
                });
            (
                prop::collection::vec(choice, 0..3),
                members(
                    vec!["id", "model", "object", "created", "usage", "choices"],
                    crate::stream::shape::strategies::plain_value(),
                ),
            )
                .prop_map(|(choices, mut rest)| {
                    rest.push(("choices", format!("[{}]", choices.join(","))));
                    object(&rest)
                })
        }

        proptest! {
            /// Whatever the shape reading takes, it reads as the typed decoder does: chunks of a
            /// grammar of what servers send, and any one byte of them removed, doubled or
            /// replaced.
            #[test]
            fn a_chunk_read_by_its_shape_is_what_the_typed_decoder_reads(
                data in chunk_text(),
                edit in crate::stream::shape::strategies::edit(),
            ) {
                let Some(data) = edit.apply(&data) else { return Ok(()); };
                if let Some(chunk) = chunk(&data) {
                    prop_assert_eq!(Ok(chunk), typed(&data), "{}", data);
                }
            }

            /// A text chunk of any text is taken, with that text.
            #[test]
            fn every_text_chunk_is_taken(text in any::<String>(), created in any::<u32>()) {
                let data = format!(
                    r#"{{"id":"c1","object":"chat.completion.chunk","created":{created},"model":"m","choices":[{{"index":0,"delta":{{"content":{}}},"logprobs":null,"finish_reason":null}}]}}"#,
                    Value::from(text.as_str())
                );
                let chunk = chunk(&data).expect("taken");
                prop_assert_eq!(chunk.choices[0].delta.content.as_deref(), Some(text.as_str()));
                prop_assert_eq!(Ok(chunk), typed(&data));
            }
        }
    }

    #[test]
    fn the_local_servers_chunks_are_this_shape() {
        let steps = mantle_mock_server::openai_text_stream("m", "a \"quoted\" text\n", 3);
        let mut texts: Vec<String> = Vec::new();
        for (_, data) in super::super::shape::scripted_events(steps) {
            if data == "[DONE]" || data.contains("\"usage\":{") {
                continue;
            }
            let chunk = chunk(&data).unwrap_or_else(|| panic!("not taken: {data}"));
            texts.extend(chunk.choices[0].delta.content.clone().map(Cow::into_owned));
        }
        assert_eq!(texts.concat(), "a \"quoted\" text\n");
    }

    #[test]
    fn anything_else_is_left_to_the_typed_decoder() {
        for data in [
            r#"{"id":"c","choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":1}}"#,
            r#"{"id":"c","error":null}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":null}}]}"#,
            r#"{"id":"c","id":"d"}"#,
            r#"{"choices":[{"delta":{"content":"x","content":"y"}}]}"#,
            r#"{"choices":[{"delta":{},"delta":{}}]}"#,
            r#"{"choices":null}"#,
            r#"{"choices":[{"delta":null}]}"#,
            r#"{"id":5}"#,
            r#"{"created":1.5}"#,
            r#"{"id":"c", "model":"m"}"#,
            r#"{"i\u0064":"c"}"#,
            r#"{"id":"c"} "#,
            r#"{"id":"c""#,
            r#"{"choices":[{"delta":{"content":"x"}}"#,
            r#"{"choices":[{"delta":{"content":"x"}},]}"#,
            r#"{"logprobs":{"content":[]}}"#,
        ] {
            assert_eq!(chunk(data), None, "{data}");
        }
    }
}
