//! One plugin stream as an async feed of events. The plugin's pull handle blocks (with a
//! timeout), so each stream is pulled on a blocking thread of the front's runtime and its
//! events are handed over a bounded channel. When the HTTP client goes away the channel's
//! receiver is dropped; the puller sees it within one pull (50 ms) and drops the plugin stream,
//! which cancels the upstream request.

use std::time::Duration;

use axum::http::StatusCode;
use mantle_host_shim::{swap::version_label, Event, EventKind};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{ApiError, FrontState};

/// How long one pull waits before the puller checks whether the client is still there.
const PULL_SLICE: Duration = Duration::from_millis(50);

/// Events buffered between the puller and the HTTP response.
const CHANNEL_EVENTS: usize = 256;

/// A started plugin stream, its events still to come.
pub struct Feed {
    /// The plugin version serving it.
    pub version: String,
    /// The first event, already pulled (so a failed start can be answered with a status).
    pub first: Event,
    /// The events after the first.
    pub rest: mpsc::Receiver<Event>,
}

impl Feed {
    /// The next event after the first; `None` once the terminal event was delivered (or the
    /// puller stopped).
    pub async fn next(&mut self) -> Option<Event> {
        self.rest.recv().await
    }
}

/// Starts a plugin stream for a canonical request on the current version and waits for its
/// first event. A request the plugin refuses at start (malformed) is a 400; a stream whose
/// first event is its terminal error is answered by the caller from [`Feed::first`].
pub async fn open(state: &FrontState, request: Value) -> Result<Feed, ApiError> {
    let swap = state.swap.clone();
    let (first_tx, first_rx) = oneshot::channel::<Result<(String, Event), ApiError>>();
    let (tx, rx) = mpsc::channel(CHANNEL_EVENTS);
    tokio::task::spawn_blocking(move || {
        let provider = swap.provider();
        let version = version_label(provider.plugin().facts());
        let mut stream = match provider.stream(&request.to_string()) {
            Ok(s) => s,
            Err(e) => {
                let status = match e.code {
                    mantle_host_shim::ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
                    mantle_host_shim::ErrorCode::AuthUnavailable => StatusCode::UNAUTHORIZED,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                let _ = first_tx.send(Err(ApiError::new(status, e.message.to_string())));
                return;
            }
        };
        drop(provider);
        let mut first_tx = Some(first_tx);
        loop {
            let closed = match &first_tx {
                Some(f) => f.is_closed(),
                None => tx.is_closed(),
            };
            if closed {
                // The client went away: dropping the stream cancels the upstream request.
                return;
            }
            // A busy stream's events come in batches: one plugin crossing for many.
            let Ok(events) = stream.next_batch(PULL_SLICE, CHANNEL_EVENTS as u32) else {
                return;
            };
            for event in events {
                let terminal = event.kind.is_terminal();
                let delivered = match first_tx.take() {
                    Some(f) => f.send(Ok((version.clone(), event))).is_ok(),
                    None => tx.blocking_send(event).is_ok(),
                };
                if !delivered || terminal {
                    return;
                }
            }
        }
    });
    let (version, first) = first_rx.await.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the plugin stream ended without an event",
        )
    })??;
    Ok(Feed {
        version,
        first,
        rest: rx,
    })
}

/// True when an event is the terminal error.
pub fn is_error(event: &Event) -> bool {
    event.kind == EventKind::Error
}
