//! Serde helpers for the typed hot-path decoders: optional strings that borrow from the SSE
//! data instead of being copied.
//!
//! `#[serde(borrow)]` makes a plain `Cow<'a, str>` field borrow, but not an
//! `Option<Cow<'a, str>>`: serde's own `Cow` reading always allocates, so every optional
//! string of every event (an OpenAI chunk's `id` and `model`, an Anthropic delta's `type`)
//! cost an allocation and a free even where it was only compared and dropped. Fields read
//! through [`opt_str`] borrow whenever the JSON string has no escapes.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};

/// One string that borrows when it can (`#[serde(borrow)]` on a bare `Cow` does); also what
/// the shape readers read an escaped string into ([`super::shape::string`]).
#[derive(Deserialize)]
pub(crate) struct Borrowed<'a>(#[serde(borrow)] pub(crate) Cow<'a, str>);

/// Reads an optional string (`null` is `None`), borrowing from the input when the JSON string
/// has no escapes. Use as `#[serde(default, borrow, deserialize_with = "borrowed::opt_str")]`.
pub fn opt_str<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    Option::<Borrowed<'a>>::deserialize(d).map(|s| s.map(|s| s.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(default, borrow, deserialize_with = "opt_str")]
        s: Option<Cow<'a, str>>,
    }

    fn probe(json: &str) -> Option<Cow<'_, str>> {
        serde_json::from_str::<Probe>(json).unwrap().s
    }

    #[test]
    fn a_plain_string_is_borrowed_an_escaped_one_owned() {
        assert!(matches!(
            probe(r#"{"s":"plain"}"#),
            Some(Cow::Borrowed("plain"))
        ));
        let escaped = probe(r#"{"s":"a\"b"}"#);
        assert!(
            matches!(&escaped, Some(Cow::Owned(s)) if s == "a\"b"),
            "{escaped:?}"
        );
    }

    #[test]
    fn null_and_absent_are_none_and_a_number_is_refused() {
        assert_eq!(probe(r#"{"s":null}"#), None);
        assert_eq!(probe("{}"), None);
        assert!(serde_json::from_str::<Probe>(r#"{"s":5}"#).is_err());
    }
}
