//! A Responses API delta event recognized by its shape: a compact, flat JSON object whose first key
//! is `type`, as in
//! `{"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi","logprobs":[]}`:
//! the one event of nearly every Responses stream, whose other keys vary with the API's version.
//!
//! The typed decoder ([`super::responses`]) costs 170-220 ns such an event (2,650 instructions:
//! serde's visit of every key); this reading 115-136 ns (2,050), measured alone on the development
//! VM with the local server's delta of 8 characters. (With a loop of its own instead of
//! [`super::shape::members`] it was 1,920 instructions: the shared reader costs about 130.) Only
//! the object's frame is read here: keys of plain ASCII letters, digits and `_`, each value a
//! string, an integer, `true`, `false`, `null` or `[]`, no whitespace, nothing after the closing
//! brace (read by [`super::shape::members`]). Every string value is read as JSON
//! ([`super::shape::string`]: escapes by `serde_json`). Anything else (a nested object, a fraction,
//! whitespace, a repeated `type` or `delta`, `type` not first) is not this shape, and the typed
//! decoder reads it, so the two give the same events (a property test checks it).

use std::borrow::Cow;

use super::shape::{members, once, opt_string, skip_value, string};

/// The bytes before the type's value.
const HEAD: &str = r#"{"type":"#;

/// A delta event's type and its `delta` (`None` when absent or `null`), when `data` is this
/// shape; `None` for anything else, which the typed decoder then reads.
pub fn delta_event(data: &str) -> Option<(Cow<'_, str>, Option<Cow<'_, str>>)> {
    if !data.starts_with(HEAD) {
        return None;
    }
    let mut rest = data;
    let mut kind = None;
    let mut delta = None;
    let mut seen_delta = false;
    members(&mut rest, |name, rest| {
        match name {
            // First (the prefix above), and only once.
            "type" if kind.is_none() => kind = Some(string(rest)?),
            "type" => return None,
            "delta" => delta = once(&mut seen_delta).and_then(|()| opt_string(rest))?,
            _ => skip_value(rest)?,
        }
        Some(())
    })?;
    rest.is_empty().then_some((kind?, delta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_delta_is_taken_whatever_its_other_keys() {
        let openai = r#"{"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi","logprobs":[],"obfuscation":"x1"}"#;
        assert!(matches!(
            delta_event(openai),
            Some((
                Cow::Borrowed("response.output_text.delta"),
                Some(Cow::Borrowed("Hi"))
            ))
        ));
        let escaped = r#"{"type":"response.reasoning_text.delta","delta":"a\"b\n","n":-3,"f":false,"t":true}"#;
        assert_eq!(
            delta_event(escaped),
            Some((
                Cow::Borrowed("response.reasoning_text.delta"),
                Some(Cow::Owned("a\"b\n".to_string()))
            ))
        );
        assert_eq!(
            delta_event(r#"{"type":"response.output_text.delta","delta":null}"#),
            Some((Cow::Borrowed("response.output_text.delta"), None))
        );
        assert_eq!(
            delta_event(r#"{"type":"response.created"}"#),
            Some((Cow::Borrowed("response.created"), None))
        );
    }

    /// The local server writes its text deltas as the Responses API does, so the tests and
    /// benches against it take this path.
    #[test]
    fn the_local_servers_text_deltas_are_this_shape() {
        let steps = mantle_mock_server::responses_text_stream("m", "a \"quoted\" text\n", 3);
        let mut matched = Vec::new();
        for (event, data) in super::super::shape::scripted_events(steps) {
            if event.starts_with("event: response.output_text.delta\n") {
                let (kind, delta) = delta_event(&data).expect("a text delta of the local server");
                assert_eq!(kind, "response.output_text.delta");
                matched.push(delta.expect("its text").into_owned());
            }
        }
        assert_eq!(matched.concat(), "a \"quoted\" text\n");
        assert_eq!(matched.len(), 6);
    }

    #[test]
    fn anything_else_is_left_to_the_typed_decoder() {
        for data in [
            // Not flat, not compact, type not first, repeated keys.
            r#"{"type":"response.created","response":{"id":"r"}}"#,
            r#"{"type":"response.output_text.delta","logprobs":[1]}"#,
            r#"{"type": "response.output_text.delta","delta":"x"}"#,
            r#"{"type":"response.output_text.delta", "delta":"x"}"#,
            r#"{"delta":"x","type":"response.output_text.delta"}"#,
            r#"{"type":"response.output_text.delta","delta":"x","delta":"y"}"#,
            r#"{"type":"response.output_text.delta","type":"x"}"#,
            // Keys and values this reading does not take.
            r#"{"type":"response.output_text.delta","it\u0065m":"x"}"#,
            r#"{"type":"response.output_text.delta","":1}"#,
            r#"{"type":"response.output_text.delta","n":01}"#,
            r#"{"type":"response.output_text.delta","n":1.5}"#,
            r#"{"type":"response.output_text.delta","n":1e3}"#,
            r#"{"type":"response.output_text.delta","n":-}"#,
            r#"{"type":"response.output_text.delta","delta":5}"#,
            r#"{"type":"response.output_text.delta","delta":"x"} "#,
            r#"{"type":"response.output_text.delta","delta":"x""#,
            r#"{"type":5}"#,
            "{\"type\":\"response.output_text.delta\",\"delta\":\"a\u{1}\"}",
        ] {
            assert_eq!(delta_event(data), None, "{data}");
        }
    }
}
