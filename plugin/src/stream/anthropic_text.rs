//! Anthropic's text delta recognized by its exact bytes: the one event of nearly every Anthropic
//! stream,
//! `{"type":"content_block_delta","index":N,"delta":{"type":"text_delta","text":"..."}}`,
//! compact and in this key order, as the Messages API sends it.
//!
//! The typed decoder ([`super::anthropic`]) costs 200-210 ns such an event (2,520 instructions:
//! serde's field-by-field visit of two objects); this match 20-31 ns (360), measured alone on the
//! development VM with a delta of 8 characters. Only the fixed ASCII around the two values is
//! compared here: the index must be a plain JSON integer, and the text a JSON string
//! ([`super::shape::string`]: escapes are read by `serde_json`), followed by exactly `}}`. Anything
//! else (another key order, whitespace, another field, another delta type) is not this shape, and
//! the typed decoder reads it, so the two always give the same events (a property test checks it).

use std::borrow::Cow;

/// The bytes before the index.
const HEAD: &str = r#"{"type":"content_block_delta","index":"#;
/// The bytes between the index and the text's opening quote.
const MIDDLE: &str = r#","delta":{"type":"text_delta","text":"#;
/// The bytes after the text's closing quote.
const TAIL: &str = "}}";
/// The longest index taken here (nine digits always fit a `u32`); a longer one goes the
/// typed way.
const MAX_INDEX_DIGITS: usize = 9;

/// The block index and text of `data` when it is exactly a compact text delta; `None` for
/// anything else, which the typed decoder then reads.
pub fn text_delta(data: &str) -> Option<(u32, Cow<'_, str>)> {
    let rest = data.strip_prefix(HEAD)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    // JSON has no leading zeros: "0" alone, or digits that do not start with 0.
    if digits == 0 || digits > MAX_INDEX_DIGITS || (digits > 1 && rest.starts_with('0')) {
        return None;
    }
    let index = rest[..digits].parse().ok()?;
    let mut rest = rest[digits..].strip_prefix(MIDDLE)?;
    let text = super::shape::string(&mut rest)?;
    (rest == TAIL).then_some((index, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_compact_shape_is_taken_and_its_text_borrowed_unless_escaped() {
        let plain = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#;
        assert!(matches!(
            text_delta(plain),
            Some((0, Cow::Borrowed("Hello")))
        ));
        let escaped = r#"{"type":"content_block_delta","index":12,"delta":{"type":"text_delta","text":"a\"b\n\u00e9"}}"#;
        assert!(
            matches!(text_delta(escaped), Some((12, Cow::Owned(ref t))) if t == "a\"b\né"),
            "{:?}",
            text_delta(escaped)
        );
        let empty =
            r#"{"type":"content_block_delta","index":3,"delta":{"type":"text_delta","text":""}}"#;
        assert_eq!(text_delta(empty), Some((3, Cow::Borrowed(""))));
    }

    /// The local server writes its text deltas as the Messages API does, so the tests and
    /// benches against it take this path (and the typed one for its other events).
    #[test]
    fn the_local_servers_text_deltas_are_this_shape() {
        let steps = mantle_mock_server::anthropic_text_stream("m", "a \"quoted\" text\n", 3);
        let mut matched = Vec::new();
        for (event, data) in super::super::shape::scripted_events(steps) {
            match text_delta(&data) {
                Some((0, text)) => matched.push(text.into_owned()),
                Some(other) => panic!("index {other:?}"),
                None => assert!(!event.contains("text_delta"), "{event}"),
            }
        }
        assert_eq!(matched.concat(), "a \"quoted\" text\n");
        assert_eq!(matched.len(), 6);
    }

    #[test]
    fn anything_else_is_left_to_the_typed_decoder() {
        let others = [
            // serde_json's own order (keys sorted), and whitespace after the colons.
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}}).to_string(),
            r#"{"type": "content_block_delta","index": 0,"delta": {"type": "text_delta", "text": "x"}}"#.into(),
            // Another delta type, another field, a trailing field.
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"x"}}"#.into(),
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x","extra":1}}"#.into(),
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"},"more":true}"#.into(),
            // Numbers JSON does not have, or a `u32` cannot hold; a negative one.
            r#"{"type":"content_block_delta","index":01,"delta":{"type":"text_delta","text":"x"}}"#.into(),
            r#"{"type":"content_block_delta","index":4294967296,"delta":{"type":"text_delta","text":"x"}}"#.into(),
            r#"{"type":"content_block_delta","index":-1,"delta":{"type":"text_delta","text":"x"}}"#.into(),
            r#"{"type":"content_block_delta","index":1.5,"delta":{"type":"text_delta","text":"x"}}"#.into(),
            // Not a string, not a whole string, bytes after the end, a raw control character.
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":5}}"#.into(),
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"#.into(),
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}} "#.into(),
            "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\u{1}\"}}".into(),
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\ud800"}}"#.into(),
        ];
        for data in others {
            assert_eq!(text_delta(&data), None, "{data}");
        }
    }
}
