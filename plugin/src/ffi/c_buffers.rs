//! The buffers a C stream's last pull handed out, which its `mantle_event`s point into.
//!
//! One arena holds every string of the pull (each event's text, JSON and raw payload, each
//! NUL-terminated), written in order; each event's spans say where its strings are. The arena
//! and the spans keep their capacity from pull to pull, so once a stream has pulled a batch
//! as big as its next one, a pull allocates nothing here (the text of each event still comes
//! from the decoder). An arena that grew past [`KEEP_BYTES`] for a big batch is given back
//! when a later pull needs less than a quarter of it, so a stream that once pulled a burst or
//! a large event does not hold that memory while it trickles or waits; so are spans past
//! [`KEEP_EVENTS`] events. Between pulls a stream so holds what its last pull handed out, as
//! before this arena, give or take the arena's growth (less than 4 times that).

use super::c::{mantle_event, mantle_event_kind};
use crate::stream::{Emitted, EventJson};

/// Arena capacity a stream keeps whatever it pulls next.
const KEEP_BYTES: usize = 4 * 1024;

/// Spans a stream keeps whatever it pulls next.
const KEEP_EVENTS: usize = 64;

/// Where one string of an event lies in the arena: `len` bytes from `start`, then a NUL.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

/// The spans of one event's strings, with its kind.
#[derive(Clone, Copy)]
struct EventSpans {
    kind: mantle_event_kind,
    text: Span,
    json: Span,
    raw: Span,
}

/// The strings of one pull's events (see the module doc).
#[derive(Default)]
pub(crate) struct EventBuffers {
    arena: Vec<u8>,
    events: Vec<EventSpans>,
}

impl EventBuffers {
    /// Buffers holding `events`, each with its JSON (for the static events that outlive every
    /// stream).
    pub(crate) fn of(events: &[Emitted]) -> Result<Self, serde_json::Error> {
        let mut buffers = EventBuffers::default();
        buffers.refill(events, EventJson::Every)?;
        Ok(buffers)
    }

    /// Replaces the buffers' contents with `events`' strings, reusing their capacity; an event
    /// that does not carry its JSON under `json` gets an empty one. On an error (an event that
    /// cannot be written as JSON) the buffers hold no event.
    pub(crate) fn refill(
        &mut self,
        events: &[Emitted],
        json: EventJson,
    ) -> Result<(), serde_json::Error> {
        self.arena.clear();
        self.events.clear();
        let needed: usize = events
            .iter()
            .map(|e| e.event.text().len() + e.raw.as_deref().map_or(0, str::len) + 64)
            .sum();
        if self.arena.capacity() > KEEP_BYTES && needed < self.arena.capacity() / 4 {
            self.arena = Vec::with_capacity(needed);
        }
        if self.events.capacity() > KEEP_EVENTS && events.len() < self.events.capacity() / 4 {
            self.events = Vec::with_capacity(events.len());
        }
        for e in events {
            let text = self.push_str(e.event.text().as_bytes());
            let start = self.arena.len();
            if e.event.carries_json(json) {
                if let Err(err) = e.event.write_json(&mut self.arena) {
                    self.arena.clear();
                    self.events.clear();
                    return Err(err);
                }
            }
            let json_span = self.terminate(start);
            let raw = self.push_str(e.raw.as_deref().unwrap_or("").as_bytes());
            self.events.push(EventSpans {
                kind: e.event.kind().into(),
                text,
                json: json_span,
                raw,
            });
        }
        Ok(())
    }

    /// Appends `bytes` and a NUL; their span.
    fn push_str(&mut self, bytes: &[u8]) -> Span {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        self.terminate(start)
    }

    /// Ends the string that began at `start` with a NUL; its span.
    fn terminate(&mut self, start: usize) -> Span {
        let len = self.arena.len() - start;
        self.arena.push(0);
        Span { start, len }
    }

    /// How many events the buffers hold.
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// The `i`th event, pointing into the arena: valid while the buffers are neither refilled
    /// nor dropped. Panics if `i >= self.len()`.
    pub(crate) fn event(&self, i: usize) -> mantle_event {
        let spans = self.events[i];
        let at = |span: Span| self.arena[span.start..].as_ptr().cast();
        mantle_event {
            kind: spans.kind,
            text: at(spans.text),
            text_len: spans.text.len,
            json: at(spans.json),
            json_len: spans.json.len,
            raw: at(spans.raw),
            raw_len: spans.raw.len,
        }
    }

    /// Frees the arena and the spans (the stream is gone).
    pub(crate) fn release(&mut self) {
        *self = EventBuffers::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{StopReason, StreamEvent};
    use std::ffi::CStr;

    fn emitted(event: StreamEvent, raw: Option<&str>) -> Emitted {
        Emitted {
            event,
            raw: raw.map(Into::into),
        }
    }

    fn text(n: usize) -> Emitted {
        emitted(
            StreamEvent::TextDelta {
                text: format!("delta {n} \"quoted\""),
            },
            Some("{\"raw\":true}"),
        )
    }

    /// The three strings of an event, each read up to its NUL, with the lengths checked.
    fn strings(e: &mantle_event) -> [String; 3] {
        [
            (e.text, e.text_len),
            (e.json, e.json_len),
            (e.raw, e.raw_len),
        ]
        .map(|(p, len)| {
            // SAFETY: the buffers are alive and hold a NUL-terminated string at `p`.
            let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
            assert_eq!(s.len(), len, "{s:?}");
            s
        })
    }

    #[test]
    fn each_event_points_at_its_own_nul_terminated_strings() {
        let events = vec![
            text(1),
            emitted(
                StreamEvent::Done {
                    stop_reason: StopReason::Stop,
                },
                None,
            ),
        ];
        let buffers = EventBuffers::of(&events).unwrap();
        assert_eq!(buffers.len(), 2);
        let first = buffers.event(0);
        assert_eq!(first.kind, mantle_event_kind::MANTLE_EVENT_TEXT_DELTA);
        assert_eq!(
            strings(&first),
            [
                "delta 1 \"quoted\"".to_string(),
                events[0].event.to_json().unwrap(),
                "{\"raw\":true}".to_string()
            ]
        );
        let last = buffers.event(1);
        assert_eq!(last.kind, mantle_event_kind::MANTLE_EVENT_DONE);
        assert_eq!(
            strings(&last),
            [
                String::new(),
                r#"{"type":"done","stop_reason":"stop"}"#.to_string(),
                String::new()
            ]
        );
    }

    #[test]
    fn a_refill_as_big_as_the_last_reuses_the_arena() {
        let batch: Vec<_> = (0..256).map(text).collect();
        let mut buffers = EventBuffers::of(&batch).unwrap();
        let (arena, spans) = (buffers.arena.as_ptr(), buffers.events.as_ptr());
        for size in [256, 200, 256, 255] {
            buffers.refill(&batch[..size], EventJson::Every).unwrap();
            assert_eq!(buffers.len(), size);
            assert_eq!(buffers.arena.as_ptr(), arena, "batch of {size}");
            assert_eq!(buffers.events.as_ptr(), spans, "batch of {size}");
            assert_eq!(
                strings(&buffers.event(size - 1))[0],
                format!("delta {} \"quoted\"", size - 1)
            );
        }
    }

    #[test]
    fn an_arena_grown_for_a_big_event_is_given_back_by_a_small_batch() {
        let big = emitted(
            StreamEvent::TextDelta {
                text: "x".repeat(1 << 20),
            },
            None,
        );
        let mut buffers = EventBuffers::of(&[big]).unwrap();
        assert!(
            buffers.arena.capacity() > 2 << 20,
            "text and JSON both held"
        );
        buffers.refill(&[text(7)], EventJson::Every).unwrap();
        assert!(
            buffers.arena.capacity() <= KEEP_BYTES,
            "{}",
            buffers.arena.capacity()
        );
        assert_eq!(strings(&buffers.event(0))[0], "delta 7 \"quoted\"");
        // Up to the kept size, the arena stays as it is.
        let kept = buffers.arena.capacity();
        let mid = emitted(
            StreamEvent::TextDelta {
                text: "y".repeat(KEEP_BYTES / 8),
            },
            None,
        );
        buffers.refill(&[mid], EventJson::Every).unwrap();
        let grown = buffers.arena.as_ptr();
        buffers.refill(&[text(8)], EventJson::Every).unwrap();
        assert!(kept < buffers.arena.capacity());
        assert_eq!(buffers.arena.as_ptr(), grown, "at most KEEP_BYTES is kept");
    }

    #[test]
    fn a_burst_is_given_back_by_the_next_small_pull() {
        let burst: Vec<_> = (0..1024).map(text).collect();
        let mut buffers = EventBuffers::of(&burst).unwrap();
        assert!(buffers.arena.capacity() > 16 * KEEP_BYTES);
        assert!(buffers.events.capacity() >= 1024);
        buffers.refill(&burst[..1], EventJson::Every).unwrap();
        assert!(buffers.arena.capacity() <= KEEP_BYTES);
        assert!(buffers.events.capacity() <= KEEP_EVENTS);
        assert_eq!(strings(&buffers.event(0))[0], "delta 0 \"quoted\"");
    }

    #[test]
    fn text_events_go_without_json_only_when_asked() {
        let events = vec![
            text(1),
            emitted(StreamEvent::ToolCallEnd { index: 2 }, None),
        ];
        let mut buffers = EventBuffers::default();
        buffers.refill(&events, EventJson::NotForText).unwrap();
        let [text_of, json, raw] = strings(&buffers.event(0));
        assert_eq!(
            (text_of.as_str(), json.as_str(), raw.as_str()),
            ("delta 1 \"quoted\"", "", "{\"raw\":true}")
        );
        assert_eq!(
            strings(&buffers.event(1))[1],
            r#"{"type":"tool_call_end","index":2}"#
        );
        buffers.refill(&events, EventJson::Every).unwrap();
        assert_eq!(
            strings(&buffers.event(0))[1],
            events[0].event.to_json().unwrap()
        );
    }

    #[test]
    fn release_frees_everything() {
        let mut buffers = EventBuffers::of(&[text(1)]).unwrap();
        buffers.release();
        assert_eq!((buffers.len(), buffers.arena.capacity()), (0, 0));
    }
}
