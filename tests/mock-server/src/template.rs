//! Events serialized once and filled per delta.
//!
//! A text stream's deltas differ only in their text (and, on the Responses API, their sequence
//! number). Building a `serde_json::Value` and serializing it for each of 20,000 deltas took the
//! server 14-22 ms per stream before its first byte went out: a third of what the benchmarks
//! timed against it. An [`EventTemplate`] serializes the event once, with marked holes, and
//! fills the holes per delta: the same bytes (a test checks them against the `Value` path), for
//! a fraction of the work.

use std::io::Write;

use serde_json::Value;

use crate::Step;

/// The string a template's text hole holds while the event is serialized.
pub(crate) const TEXT_HOLE: &str = "\u{1}mock-text-hole\u{1}";

/// The number a template's sequence-number hole holds while the event is serialized.
pub(crate) const SEQUENCE_HOLE: u64 = 9_007_199_254_740_991;

/// What fills a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hole {
    /// A JSON string (quoted and escaped as `serde_json` does).
    Text,
    /// An unsigned integer.
    Sequence,
}

/// A serialized event with holes for a delta's text and sequence number.
#[derive(Debug, Clone)]
pub(crate) struct EventTemplate {
    /// Literal bytes, one more than there are holes.
    literals: Vec<String>,
    /// The holes between the literals, in order.
    holes: Vec<Hole>,
    /// The literals' length in all.
    literal_bytes: usize,
}

impl EventTemplate {
    /// The template of `event`, as the framing helpers (`sse_data`, `anthropic_event`,
    /// `responses_event`) built it from a payload that holds [`TEXT_HOLE`] once and
    /// [`SEQUENCE_HOLE`] at most once.
    ///
    /// # Panics
    /// When `event` is not bytes, the text hole is missing or repeated, or the sequence hole
    /// repeated: a template that would fill the wrong bytes is a bug in the caller.
    pub(crate) fn new(event: Step) -> Self {
        let Step::Bytes(bytes) = event else {
            panic!("a template is made of an event's bytes, not {event:?}")
        };
        let serialized = String::from_utf8(bytes).expect("the helpers write UTF-8");
        let text_mark = Value::from(TEXT_HOLE).to_string();
        let sequence_mark = SEQUENCE_HOLE.to_string();
        let mut marks: Vec<(usize, usize, Hole)> = Vec::new();
        for (mark, hole) in [(&text_mark, Hole::Text), (&sequence_mark, Hole::Sequence)] {
            let found: Vec<usize> = serialized
                .match_indices(mark.as_str())
                .map(|m| m.0)
                .collect();
            assert!(found.len() <= 1, "{hole:?} hole repeated in {serialized}");
            marks.extend(found.into_iter().map(|at| (at, mark.len(), hole)));
        }
        assert!(
            marks.iter().any(|m| m.2 == Hole::Text),
            "no text hole in {serialized}"
        );
        marks.sort_by_key(|m| m.0);
        let (mut literals, mut holes, mut from) = (Vec::new(), Vec::new(), 0);
        for (at, len, hole) in marks {
            literals.push(serialized[from..at].to_string());
            holes.push(hole);
            from = at + len;
        }
        literals.push(serialized[from..].to_string());
        let literal_bytes = literals.iter().map(String::len).sum();
        EventTemplate {
            literals,
            holes,
            literal_bytes,
        }
    }

    /// The event with `text` (and `sequence`, where the template has that hole).
    pub(crate) fn fill(&self, text: &str, sequence: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.literal_bytes + text.len() + 24);
        for (literal, hole) in self.literals.iter().zip(&self.holes) {
            out.extend_from_slice(literal.as_bytes());
            match hole {
                Hole::Text => serde_json::to_writer(&mut out, text).expect("writing to a Vec"),
                Hole::Sequence => write!(out, "{sequence}").expect("writing to a Vec"),
            }
        }
        out.extend_from_slice(self.literals.last().expect("one literal").as_bytes());
        out
    }
}

/// `text` in pieces of `chunk_chars` characters (at least 1), as slices of it.
pub(crate) fn char_chunks(text: &str, chunk_chars: usize) -> impl Iterator<Item = &str> {
    let chunk_chars = chunk_chars.max(1);
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .char_indices()
            .nth(chunk_chars)
            .map_or(rest.len(), |(at, _)| at);
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_filled_template_is_the_serialized_value_byte_for_byte() {
        let texts = [
            "",
            "plain",
            "quote \" backslash \\ slash /",
            "ctl \u{0} \u{1f} \n \t \r",
            "é 😀 \u{2028} \u{7f}",
            TEXT_HOLE,
        ];
        let template = EventTemplate::new(crate::responses_event(
            &json!({"type": "response.output_text.delta", "sequence_number": SEQUENCE_HOLE,
                "item_id": "msg_mock", "delta": TEXT_HOLE}),
        ));
        for (seq, text) in texts.iter().enumerate() {
            let by_value = format!(
                "event: response.output_text.delta\ndata: {}\n\n",
                json!({"type": "response.output_text.delta", "sequence_number": seq,
                    "item_id": "msg_mock", "delta": text})
            );
            assert_eq!(
                String::from_utf8(template.fill(text, seq as u64)).unwrap(),
                by_value
            );
        }
    }

    #[test]
    fn a_template_without_a_text_hole_or_with_two_is_refused() {
        let none =
            std::panic::catch_unwind(|| EventTemplate::new(crate::sse_data(&json!({"a": 1}))));
        assert!(none.is_err());
        let two = std::panic::catch_unwind(|| {
            EventTemplate::new(crate::sse_data(&json!({"a": TEXT_HOLE, "b": TEXT_HOLE})))
        });
        assert!(two.is_err());
    }

    #[test]
    fn char_chunks_split_on_characters_not_bytes() {
        let pieces: Vec<&str> = char_chunks("héllo wörld", 3).collect();
        assert_eq!(pieces, ["hél", "lo ", "wör", "ld"]);
        assert_eq!(char_chunks("", 8).count(), 0);
        assert_eq!(char_chunks("ab", 0).collect::<Vec<_>>(), ["a", "b"]);
    }
}
