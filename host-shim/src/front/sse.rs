//! Server-sent events out of a plugin feed: each API's encoder turns one plugin event into its
//! own SSE frames; this module runs the feed through it as a streaming HTTP body.

use axum::{
    body::{Body, Bytes},
    http::{header, StatusCode},
    response::Response,
};
use futures_util::stream;
use mantle_host_shim::Event;
use serde_json::Value;

use super::{feed::Feed, with_version};

/// Turns plugin events into one API's SSE frames.
pub trait Encoder: Send + 'static {
    /// Appends the frames for one event (possibly none).
    fn encode(&mut self, event: &Event, out: &mut String);
}

/// Appends a `data:` frame.
pub fn data(out: &mut String, payload: &Value) {
    out.push_str("data: ");
    out.push_str(&payload.to_string());
    out.push_str("\n\n");
}

/// Appends an `event:` + `data:` frame.
pub fn named(out: &mut String, event: &str, payload: &Value) {
    out.push_str("event: ");
    out.push_str(event);
    out.push('\n');
    data(out, payload);
}

/// A 200 `text/event-stream` response that encodes the feed as it arrives. Dropping the body
/// (the client went away) drops the feed, which cancels the upstream request.
pub fn response(feed: Feed, encoder: impl Encoder) -> Response {
    let version = feed.version.clone();
    let first = Some(feed.first.clone());
    let frames = stream::unfold(
        (feed, encoder, first),
        |(mut feed, mut encoder, mut pending)| async move {
            loop {
                let event = match pending.take() {
                    Some(event) => event,
                    None => feed.next().await?,
                };
                let mut out = String::new();
                encoder.encode(&event, &mut out);
                if !out.is_empty() {
                    let frame = Ok::<Bytes, std::convert::Infallible>(Bytes::from(out));
                    return Some((frame, (feed, encoder, None)));
                }
            }
        },
    );
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(frames))
        .expect("static SSE response");
    with_version(response, &version)
}
