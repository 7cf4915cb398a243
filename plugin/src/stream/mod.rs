//! Streaming requests on both routes, behind one pull handle (spec §5, §6).
//!
//! A stream runs as a task on the provider's runtime and pushes normalized events into a
//! bounded channel (backpressure: a slow host slows the upstream read, memory stays bounded).
//! The host pulls with a timeout. Exactly one terminal event (done or error) is delivered;
//! after it, pulls report `Finished`. Retries (429, 5xx, connect errors, honouring
//! `retry-after`, bounded by the caller's maximum delay) happen only before the first event
//! reaches the caller. Cancel aborts the task, which drops the upstream response and closes
//! the connection at once.

pub mod anthropic;
pub mod events;
pub mod openai;
pub mod sse;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::StreamExt;
use tokio::sync::mpsc;

pub use events::{Emitted, StopReason, StreamEvent, Usage};

use crate::{
    errors::{error_chain, ErrorKind, StreamError},
    secret::Secret,
};

/// Maps SSE events of one route to normalized events.
pub trait Decoder: Send {
    /// Handles one SSE event; returns true once a terminal event was pushed.
    fn on_event(&mut self, ev: &sse::SseEvent, out: &mut Vec<StreamEvent>) -> bool;
    /// The body ended without a terminal event.
    fn on_eof(&mut self, out: &mut Vec<StreamEvent>);
}

/// Timeouts for one stream.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Until response headers arrive.
    pub first_byte: Duration,
    /// Between body chunks.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            first_byte: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }
}

/// Most attempts for one request (first try + retries).
pub const MAX_ATTEMPTS: u32 = 3;
/// First retry delay (doubles each retry), before the caller's bound.
pub const BASE_RETRY_DELAY: Duration = Duration::from_millis(200);
/// Events buffered between the task and the host.
pub const CHANNEL_CAPACITY: usize = 256;

/// Which decoder to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// OpenAI Chat Completions.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

/// Everything needed to send one upstream request.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// Route (decoder).
    pub route: Route,
    /// Full URL.
    pub url: String,
    /// Headers in order (Authorization is added from `token`).
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: serde_json::Value,
    /// Bearer token.
    pub token: Secret,
    /// Attach raw payloads.
    pub include_raw: bool,
    /// Bound for one retry delay.
    pub max_retry_delay: Duration,
    /// Timeouts.
    pub timeouts: Timeouts,
}

/// One pull's result.
#[derive(Debug, Clone, PartialEq)]
pub enum Poll {
    /// The next event.
    Event(Emitted),
    /// Nothing within the timeout.
    Pending,
    /// The terminal event was already delivered.
    Finished,
}

#[derive(Debug, Default)]
struct PullState {
    terminal_delivered: bool,
    cancelled: bool,
}

/// The host's handle on a running stream.
pub struct StreamHandle {
    rx: Mutex<mpsc::Receiver<Emitted>>,
    task: tokio::task::AbortHandle,
    runtime: tokio::runtime::Handle,
    state: Mutex<PullState>,
}

impl std::fmt::Debug for StreamHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHandle").finish_non_exhaustive()
    }
}

impl StreamHandle {
    /// Starts `request` on `runtime`.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        client: reqwest::Client,
        request: UpstreamRequest,
    ) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let task = runtime.spawn(run(client, request, tx)).abort_handle();
        StreamHandle {
            rx: Mutex::new(rx),
            task,
            runtime: runtime.clone(),
            state: Mutex::new(PullState::default()),
        }
    }

    /// A stream that yields one error and finishes (request rejected before sending).
    pub fn failed(runtime: &tokio::runtime::Handle, error: StreamError) -> Self {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(Emitted {
            event: StreamEvent::Error(error),
            raw: None,
        });
        let task = runtime.spawn(async {}).abort_handle();
        StreamHandle {
            rx: Mutex::new(rx),
            task,
            runtime: runtime.clone(),
            state: Mutex::new(PullState::default()),
        }
    }

    /// Pulls the next event, waiting at most `timeout` (zero: do not wait).
    pub fn next(&self, timeout: Duration) -> Poll {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.terminal_delivered {
            return Poll::Finished;
        }
        if state.cancelled {
            state.terminal_delivered = true;
            return Poll::Event(cancelled_event());
        }
        drop(state);
        let mut rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
        let received = if timeout.is_zero() {
            match rx.try_recv() {
                Ok(e) => Some(Some(e)),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => Some(None),
            }
        } else {
            self.runtime
                .block_on(async { tokio::time::timeout(timeout, rx.recv()).await.ok() })
        };
        drop(rx);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.terminal_delivered {
            return Poll::Finished;
        }
        match received {
            None if state.cancelled => {
                state.terminal_delivered = true;
                Poll::Event(cancelled_event())
            }
            None => Poll::Pending,
            Some(Some(e)) => {
                if e.event.is_terminal() {
                    state.terminal_delivered = true;
                }
                Poll::Event(e)
            }
            // The task ended without a terminal event: only a cancel or a crash does that.
            Some(None) => {
                state.terminal_delivered = true;
                Poll::Event(if state.cancelled {
                    cancelled_event()
                } else {
                    Emitted {
                        event: StreamEvent::Error(StreamError::new(
                            ErrorKind::Internal,
                            None,
                            "stream task ended unexpectedly",
                        )),
                        raw: None,
                    }
                })
            }
        }
    }

    /// Aborts the upstream request now. The next pull yields a `cancelled` error unless the
    /// terminal event was already delivered.
    pub fn cancel(&self) {
        self.task.abort();
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cancelled = true;
    }

    /// True once the terminal event was delivered.
    pub fn is_finished(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .terminal_delivered
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn cancelled_event() -> Emitted {
    Emitted {
        event: StreamEvent::Error(StreamError::new(
            ErrorKind::Cancelled,
            None,
            "cancelled by the host",
        )),
        raw: None,
    }
}

/// Delay before retry number `attempt` (1-based), honouring `retry-after`; `None` when the
/// wait would exceed the caller's bound.
fn retry_delay(attempt: u32, retry_after: Option<Duration>, max: Duration) -> Option<Duration> {
    let backoff = BASE_RETRY_DELAY.saturating_mul(1 << (attempt - 1).min(10));
    let delay = retry_after.unwrap_or(backoff);
    (delay <= max).then_some(delay)
}

/// Parses `retry-after` (seconds or an HTTP date).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

enum AttemptError {
    /// Worth another attempt (before anything reached the caller).
    Retry(StreamError, Option<Duration>),
    /// Final.
    Fatal(StreamError),
}

async fn send(
    client: &reqwest::Client,
    req: &UpstreamRequest,
) -> Result<reqwest::Response, AttemptError> {
    let mut builder = client
        .post(&req.url)
        .header("authorization", format!("Bearer {}", req.token.expose()));
    let mut has_content_type = false;
    for (k, v) in &req.headers {
        has_content_type |= k.eq_ignore_ascii_case("content-type");
        builder = builder.header(k, v);
    }
    if !has_content_type {
        builder = builder.header("content-type", "application/json");
    }
    let body = serde_json::to_vec(&req.body).unwrap_or_default();
    let response = match tokio::time::timeout(req.timeouts.first_byte, builder.body(body).send())
        .await
    {
        Err(_) => {
            let e = StreamError::new(
                ErrorKind::Timeout,
                None,
                format!(
                    "no response within {} ms",
                    req.timeouts.first_byte.as_millis()
                ),
            );
            return Err(AttemptError::Retry(e, None));
        }
        Ok(Err(e)) => {
            let kind = if e.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Network
            };
            let err = StreamError::new(kind, None, format!("request failed: {}", error_chain(&e)));
            return Err(if e.is_connect() || e.is_timeout() {
                AttemptError::Retry(err, None)
            } else {
                AttemptError::Fatal(err)
            });
        }
        Ok(Ok(r)) => r,
    };
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    // Error bodies are small; cap what we read anyway.
    let text = tokio::time::timeout(req.timeouts.idle, read_capped(response, 64 * 1024))
        .await
        .unwrap_or_default();
    let err = StreamError::from_upstream(Some(status), &text);
    if status == 429 || status >= 500 {
        Err(AttemptError::Retry(err, retry_after))
    } else {
        Err(AttemptError::Fatal(err))
    }
}

async fn read_capped(response: reqwest::Response, cap: usize) -> String {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        body.extend_from_slice(&chunk);
        if body.len() >= cap {
            body.truncate(cap);
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

async fn run(client: reqwest::Client, req: UpstreamRequest, tx: mpsc::Sender<Emitted>) {
    let mut attempt = 0;
    let response = loop {
        attempt += 1;
        match send(&client, &req).await {
            Ok(r) => break r,
            Err(AttemptError::Fatal(e)) => return emit_error(&tx, e).await,
            Err(AttemptError::Retry(e, retry_after)) => {
                let delay = (attempt < MAX_ATTEMPTS)
                    .then(|| retry_delay(attempt, retry_after, req.max_retry_delay))
                    .flatten();
                match delay {
                    Some(d) => {
                        tracing::debug!(attempt, delay_ms = d.as_millis() as u64, kind = ?e.kind, "retrying upstream request");
                        tokio::time::sleep(d).await;
                    }
                    None => return emit_error(&tx, e).await,
                }
            }
        }
    };
    let mut decoder: Box<dyn Decoder> = match req.route {
        Route::OpenAi => Box::new(openai::OpenAiDecoder::default()),
        Route::Anthropic => Box::new(anthropic::AnthropicDecoder::default()),
    };
    let mut parser = sse::SseParser::default();
    let mut body = response.bytes_stream();
    let mut sse_events = Vec::new();
    let mut out = Vec::new();
    loop {
        let chunk = match tokio::time::timeout(req.timeouts.idle, body.next()).await {
            Err(_) => {
                let e = StreamError::new(
                    ErrorKind::Timeout,
                    None,
                    format!("no data for {} ms", req.timeouts.idle.as_millis()),
                );
                return emit_error(&tx, e).await;
            }
            Ok(None) => None,
            Ok(Some(Err(e))) => {
                return emit_error(
                    &tx,
                    StreamError::new(
                        ErrorKind::Network,
                        None,
                        format!("stream interrupted: {}", error_chain(&e)),
                    ),
                )
                .await
            }
            Ok(Some(Ok(bytes))) => Some(bytes),
        };
        let parsed = match &chunk {
            Some(bytes) => parser.feed(bytes, &mut sse_events),
            None => parser.finish(&mut sse_events),
        };
        if let Err(e) = parsed {
            return emit_error(
                &tx,
                StreamError::new(ErrorKind::Protocol, None, e.to_string()),
            )
            .await;
        }
        for ev in sse_events.drain(..) {
            let done = decoder.on_event(&ev, &mut out);
            let raw: Option<Arc<str>> = req.include_raw.then(|| Arc::from(ev.data.as_str()));
            for event in out.drain(..) {
                let terminal = event.is_terminal();
                if tx
                    .send(Emitted {
                        event,
                        raw: raw.clone(),
                    })
                    .await
                    .is_err()
                    || terminal
                {
                    return;
                }
            }
            if done {
                return;
            }
        }
        if chunk.is_none() {
            decoder.on_eof(&mut out);
            for event in out.drain(..) {
                let terminal = event.is_terminal();
                if tx.send(Emitted { event, raw: None }).await.is_err() || terminal {
                    return;
                }
            }
            return;
        }
    }
}

async fn emit_error(tx: &mpsc::Sender<Emitted>, e: StreamError) {
    let _ = tx
        .send(Emitted {
            event: StreamEvent::Error(e),
            raw: None,
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_bounds() {
        let max = Duration::from_secs(1);
        assert_eq!(retry_delay(1, None, max), Some(Duration::from_millis(200)));
        assert_eq!(retry_delay(2, None, max), Some(Duration::from_millis(400)));
        assert_eq!(
            retry_delay(1, Some(Duration::from_millis(700)), max),
            Some(Duration::from_millis(700))
        );
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(5)), max),
            None,
            "retry-after beyond the bound: no retry"
        );
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
