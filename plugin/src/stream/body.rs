//! Decoding of one response body, on the thread that pulls the stream.
//!
//! The stream's task only reads: it queues each upstream read as it came. The host's pull runs
//! the SSE framing and the route's decoder over those reads, so every event is made, handed out
//! and freed on one thread: no event crosses threads, and a host that pulls many streams from
//! many threads decodes them on all of its cores.

use std::{collections::VecDeque, sync::Arc};

use super::{anthropic, openai, responses, sse, Decoder, Emitted, Route, StreamEvent};
use crate::{
    auth::Authorization,
    errors::{ErrorKind, StreamError},
};

/// The decoding state of one response body: the SSE parser, the route's decoder and what
/// every event of the stream needs (raw payloads when asked for, the scrubbing of error text).
pub struct BodyDecoder {
    parser: sse::SseParser,
    decoder: Box<dyn Decoder>,
    include_raw: bool,
    /// Scrubs upstream error text of the credentials the request was sent with.
    auth: Authorization,
}

impl std::fmt::Debug for BodyDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyDecoder")
            .field("include_raw", &self.include_raw)
            .finish_non_exhaustive()
    }
}

impl BodyDecoder {
    /// A decoder for a body of `route`.
    pub fn new(route: Route, include_raw: bool, auth: Authorization) -> Self {
        let decoder: Box<dyn Decoder> = match route {
            Route::OpenAi => Box::new(openai::OpenAiDecoder::default()),
            Route::Anthropic => Box::new(anthropic::AnthropicDecoder::default()),
            Route::Responses => Box::new(responses::ResponsesDecoder::default()),
        };
        BodyDecoder {
            parser: sse::SseParser::default(),
            decoder,
            include_raw,
            auth,
        }
    }

    /// Decodes one upstream read into `ready`; true once a terminal event was added (nothing
    /// after it is, and later reads must not be fed). Events parsed before a parse error in the
    /// same read come first, then the `protocol` error.
    pub fn feed(&mut self, bytes: &[u8], ready: &mut VecDeque<Emitted>) -> bool {
        self.decode(ready, |parser, each| parser.feed_each(bytes, each))
    }

    /// The body ended: what the parser still held, then the route's end-of-body rule (a
    /// terminal event: `done`, or the error for a stream cut short). True once a terminal
    /// event was added.
    pub fn finish(&mut self, ready: &mut VecDeque<Emitted>) -> bool {
        if self.decode(ready, |parser, each| parser.finish_each(each)) {
            return true;
        }
        let mut out = Vec::new();
        self.decoder.on_eof(&mut out);
        stage(&self.auth, &mut out, None, ready)
    }

    /// Runs `parse` (one step of the SSE parser) and decodes each event it hands out into
    /// `ready`, then the `protocol` error if the step failed; nothing after a terminal event.
    /// True once a terminal event was added.
    fn decode(
        &mut self,
        ready: &mut VecDeque<Emitted>,
        parse: impl FnOnce(
            &mut sse::SseParser,
            &mut dyn FnMut(sse::SseEventRef<'_>),
        ) -> Result<(), sse::SseError>,
    ) -> bool {
        let mut done = false;
        // Per read, not per stream: a stream waiting for its next read holds none of it.
        let mut out = Vec::new();
        let parsed = parse(&mut self.parser, &mut |ev| {
            if !done {
                done = decode_event(
                    &mut *self.decoder,
                    ev,
                    self.include_raw,
                    &self.auth,
                    &mut out,
                    ready,
                );
            }
        });
        done || self.parse_error(parsed, ready)
    }

    /// After the events of a read: the `protocol` error that ends the stream if the read did
    /// not parse (true then).
    fn parse_error(
        &self,
        parsed: Result<(), sse::SseError>,
        ready: &mut VecDeque<Emitted>,
    ) -> bool {
        match parsed {
            Ok(()) => false,
            Err(e) => {
                let error = StreamError::new(ErrorKind::Protocol, None, e.to_string());
                stage(
                    &self.auth,
                    &mut vec![StreamEvent::Error(error)],
                    None,
                    ready,
                )
            }
        }
    }
}

/// Decodes one SSE event into `ready` (through `out`, the decoder's scratch); true once a
/// terminal event was added.
fn decode_event(
    decoder: &mut dyn Decoder,
    ev: sse::SseEventRef<'_>,
    include_raw: bool,
    auth: &Authorization,
    out: &mut Vec<StreamEvent>,
    ready: &mut VecDeque<Emitted>,
) -> bool {
    decoder.on_event(ev, out);
    let raw: Option<Arc<str>> = include_raw.then(|| Arc::from(ev.data));
    stage(auth, out, raw, ready)
}

/// Moves `out`'s events into `ready` (upstream error text scrubbed of the request's
/// credentials on the way); true once a terminal event was moved (the rest of `out` is
/// dropped).
fn stage(
    auth: &Authorization,
    out: &mut Vec<StreamEvent>,
    raw: Option<Arc<str>>,
    ready: &mut VecDeque<Emitted>,
) -> bool {
    for mut event in out.drain(..) {
        if let StreamEvent::Error(e) = &mut event {
            e.message = auth.scrub(&e.message);
        }
        let terminal = event.is_terminal();
        ready.push_back(Emitted {
            event,
            raw: raw.clone(),
        });
        if terminal {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn decoder(route: Route, include_raw: bool) -> BodyDecoder {
        BodyDecoder::new(
            route,
            include_raw,
            Authorization::Bearer(Secret::new("bedrock-api-key-secret")),
        )
    }

    fn kinds(ready: &VecDeque<Emitted>) -> Vec<mantle_abi::EventKind> {
        ready.iter().map(|e| e.event.kind()).collect()
    }

    #[test]
    fn nothing_after_the_terminal_event_is_decoded() {
        use mantle_abi::EventKind as K;
        let mut d = decoder(Route::OpenAi, false);
        let mut ready = VecDeque::new();
        let body = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"late\"}}]}\n\n",
        );
        assert!(d.feed(body.as_bytes(), &mut ready));
        assert_eq!(kinds(&ready), [K::Start, K::TextDelta, K::Done]);
    }

    #[test]
    fn events_before_a_parse_error_come_first_then_one_protocol_error() {
        let mut d = decoder(Route::OpenAi, false);
        let mut ready = VecDeque::new();
        let mut body = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n".to_vec();
        body.extend_from_slice(b"data: \xff\xfe\n\n");
        assert!(d.feed(&body, &mut ready));
        assert_eq!(ready.len(), 3, "start, text, error: {ready:?}");
        assert_eq!(ready[1].event.text(), "a");
        let StreamEvent::Error(e) = &ready[2].event else {
            panic!("{ready:?}")
        };
        assert_eq!(e.kind, ErrorKind::Protocol);
    }

    #[test]
    fn a_body_that_ends_early_gets_the_routes_end_rule_and_scrubbed_errors() {
        let mut d = decoder(Route::OpenAi, false);
        let mut ready = VecDeque::new();
        let body = "data: {\"error\":{\"message\":\"bad key bedrock-api-key-secret\"}}\n\n";
        assert!(d.feed(body.as_bytes(), &mut ready));
        let StreamEvent::Error(e) = &ready[0].event else {
            panic!("{ready:?}")
        };
        assert_eq!(e.message, "bad key <redacted>");

        let mut d = decoder(Route::Anthropic, false);
        let mut ready = VecDeque::new();
        assert!(!d.feed(b"event: ping\ndata: {\"type\":\"ping\"}\n\n", &mut ready));
        assert!(ready.is_empty());
        assert!(d.finish(&mut ready));
        let StreamEvent::Error(e) = &ready[0].event else {
            panic!("{ready:?}")
        };
        assert_eq!(e.kind, ErrorKind::Network);
        assert_eq!(ready.len(), 1);
    }

    #[test]
    fn raw_payloads_are_attached_only_when_asked_for() {
        let line = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n";
        for include_raw in [false, true] {
            let mut d = decoder(Route::OpenAi, include_raw);
            let mut ready = VecDeque::new();
            d.feed(line.as_bytes(), &mut ready);
            let raw = ready[1].raw.as_deref();
            assert_eq!(
                raw,
                include_raw.then_some(r#"{"choices":[{"delta":{"content":"a"}}]}"#)
            );
        }
    }

    #[test]
    fn debug_shows_no_credentials() {
        let d = decoder(Route::Responses, true);
        assert_eq!(format!("{d:?}"), "BodyDecoder { include_raw: true, .. }");
    }
}
