//! Streaming requests on both routes, behind one pull handle (spec §5, §6).
//!
//! A stream runs as a task on the provider's runtime that sends the request and queues each
//! upstream read into a bounded queue ([`queue`]: bytes; backpressure: a slow host slows the
//! upstream read, memory stays bounded). The host pulls with a timeout; its pull decodes the
//! reads into normalized events on the host's own thread ([`body`]). Exactly one terminal
//! event (done or error) is delivered; after it, pulls report `Finished`. Retries (429, 5xx,
//! failed connects; never a first-byte timeout, since the request was sent; honouring
//! `retry-after`, bounded by the caller's maximum delay) happen only before the first event
//! reaches the caller. Cancel aborts the task, which drops the upstream response and closes
//! the connection at once; so does handing out the terminal event.

pub mod anthropic;
pub mod anthropic_text;
pub mod body;
pub mod borrowed;
pub mod events;
pub mod idle;
pub mod openai;
pub mod openai_chunk;
pub mod openai_text;
pub mod queue;
pub mod recover;
pub mod responses;
pub mod responses_text;
pub mod shape;
pub mod sse;
pub mod wake;

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use queue::{EventQueue, Input, ProducerGuard};

pub use events::{Emitted, EventJson, StopReason, StreamEvent, Usage};
pub use queue::{Batch, PullBusy};

use crate::{
    auth::Authorization,
    errors::{error_chain, ErrorKind, StreamError},
    secret::Secret,
};

/// Maps SSE events of one route to normalized events.
pub trait Decoder: Send {
    /// Handles one SSE event; returns true once a terminal event was pushed.
    fn on_event(&mut self, ev: sse::SseEventRef<'_>, out: &mut Vec<StreamEvent>) -> bool;
    /// The body ended without a terminal event.
    fn on_eof(&mut self, out: &mut Vec<StreamEvent>);
}

/// Parses one SSE event's JSON payload (nesting-limited), or the `protocol` error event that
/// ends the stream: what every decoder does first.
pub fn parse_payload(data: &str) -> Result<serde_json::Value, StreamEvent> {
    crate::limits::parse_json(data).map_err(|e| {
        StreamEvent::Error(StreamError::new(
            ErrorKind::Protocol,
            None,
            format!("malformed event: {e}"),
        ))
    })
}

/// A typed event's payload and its type (the payload's `type`, else the SSE `event:` name), as
/// the Anthropic and Responses streams send them; or the `protocol` error event.
pub fn typed_payload(ev: sse::SseEventRef<'_>) -> Result<(serde_json::Value, String), StreamEvent> {
    let v = parse_payload(ev.data)?;
    let kind = v["type"]
        .as_str()
        .or(ev.event)
        .unwrap_or_default()
        .to_string();
    Ok((v, kind))
}

/// The error event for a body that ended before the route's terminal marker (`what`).
pub fn ended_early(what: &str) -> StreamEvent {
    StreamEvent::Error(StreamError::new(
        ErrorKind::Network,
        None,
        format!("upstream closed the stream before {what}"),
    ))
}

/// The error event for an upstream in-stream error object (`{message, type, code, ...}`),
/// classified like an error body (spec §6).
pub fn upstream_error_event(error: &serde_json::Value) -> StreamEvent {
    StreamEvent::Error(StreamError::from_upstream(
        None,
        &serde_json::json!({"error": error}).to_string(),
    ))
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
/// Which decoder to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// OpenAI Chat Completions.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// OpenAI Responses.
    Responses,
}

/// Everything needed to send one upstream request.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// Route (decoder).
    pub route: Route,
    /// Full URL.
    pub url: String,
    /// Headers in order (the authorization headers are added from `auth`).
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: serde_json::Value,
    /// Bearer token or SigV4 signing credentials.
    pub auth: Authorization,
    /// Attach raw payloads.
    pub include_raw: bool,
    /// Bound for one retry delay.
    pub max_retry_delay: Duration,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Rebuilds the request after a route or parameter refusal (at most once per stream).
    pub recovery: Option<recover::Recovery>,
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

/// Where a stream's task runs (a provider lane, which also counts it).
pub trait Spawner {
    /// Spawns `task`; its handle aborts it.
    fn spawn_stream<F: std::future::Future<Output = ()> + Send + 'static>(
        &self,
        task: F,
    ) -> tokio::task::AbortHandle;
}

/// The host's handle on a running stream.
pub struct StreamHandle {
    queue: Arc<EventQueue>,
    task: tokio::task::AbortHandle,
    /// Which of its events the ABIs hand out with their JSON (the request's `include_json`).
    event_json: EventJson,
}

impl std::fmt::Debug for StreamHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHandle").finish_non_exhaustive()
    }
}

/// Message of the terminal event after a host cancel.
pub const CANCELLED_BY_HOST: &str = "cancelled by the host";
/// Message of the terminal event when the stream's provider was closed.
pub const CANCELLED_PROVIDER_CLOSED: &str = "cancelled: the provider was closed";

impl StreamHandle {
    /// Starts `request` on `runtime` (a provider lane) with `client`.
    pub fn start(
        runtime: &impl Spawner,
        client: reqwest::Client,
        request: UpstreamRequest,
    ) -> Self {
        let queue = Arc::new(EventQueue::default());
        let task = runtime.spawn_stream(run(client, request, ProducerGuard(queue.clone())));
        StreamHandle {
            queue,
            task,
            event_json: EventJson::Every,
        }
    }

    /// A stream that yields one error and finishes (request rejected before sending).
    pub fn failed(runtime: &impl Spawner, error: StreamError) -> Self {
        let queue = Arc::new(EventQueue::default());
        let guard = ProducerGuard(queue.clone());
        let task = runtime.spawn_stream(async move {
            let _ = guard.0.push_event(Emitted::error(error)).await;
        });
        StreamHandle {
            queue,
            task,
            event_json: EventJson::Every,
        }
    }

    /// The stream with `policy` for which events carry their JSON.
    pub fn with_event_json(mut self, policy: EventJson) -> Self {
        self.event_json = policy;
        self
    }

    /// Which events the ABIs hand out with their JSON.
    pub fn event_json(&self) -> EventJson {
        self.event_json
    }

    /// Pulls the next event, waiting at most `timeout` (zero: do not wait). Never enters a
    /// tokio runtime, so any thread may call it, including a host's own runtime threads.
    /// A second thread pulling while one waits gets [`PullBusy`].
    pub fn next(&self, timeout: Duration) -> Result<Poll, PullBusy> {
        let poll = self.queue.pull(timeout)?;
        if matches!(&poll, Poll::Event(e) if e.event.is_terminal()) {
            self.release_upstream();
        }
        Ok(poll)
    }

    /// Pulls up to `max` events at once into `out` (see [`EventQueue::pull_batch`]); the same
    /// rules as [`StreamHandle::next`].
    pub fn next_batch(
        &self,
        timeout: Duration,
        max: usize,
        out: &mut Vec<Emitted>,
    ) -> Result<Batch, PullBusy> {
        let batch = self.queue.pull_batch(timeout, max, out)?;
        if batch == Batch::Events && out.last().is_some_and(|e| e.event.is_terminal()) {
            self.release_upstream();
        }
        Ok(batch)
    }

    /// The terminal event was handed out: whatever the upstream still sends is not read (the
    /// task stops, dropping the response, which closes the connection).
    fn release_upstream(&self) {
        self.task.abort();
    }

    /// Aborts the upstream request now. The next pull (or the one waiting now) yields a
    /// `cancelled` error unless the terminal event was already delivered.
    pub fn cancel(&self) {
        self.cancel_with(CANCELLED_BY_HOST);
    }

    /// Cancels with a given message for the terminal event.
    pub fn cancel_with(&self, reason: &'static str) {
        self.queue.cancel(reason);
        self.task.abort();
    }

    /// True once the terminal event was delivered.
    pub fn is_finished(&self) -> bool {
        self.queue.is_finished()
    }

    /// Events and payload bytes waiting for the host now.
    pub fn queued(&self) -> (usize, usize) {
        self.queue.queued()
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        self.queue.cancel(CANCELLED_BY_HOST);
        self.task.abort();
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
    let mut builder = client.post(&req.url);
    let mut content_type = None;
    for (k, v) in &req.headers {
        if k.eq_ignore_ascii_case("content-type") {
            content_type = Some(v.as_str());
        }
        builder = builder.header(k, v);
    }
    if content_type.is_none() {
        builder = builder.header("content-type", "application/json");
    }
    // The body is final here: a SigV4 signature covers these exact bytes.
    let body = serde_json::to_vec(&req.body).unwrap_or_default();
    let auth_headers = req
        .auth
        .headers(
            "POST",
            &req.url,
            Some(content_type.unwrap_or("application/json")),
            &body,
        )
        .map_err(|m| AttemptError::Fatal(StreamError::new(ErrorKind::Auth, None, m)))?;
    for (k, v) in auth_headers {
        builder = builder.header(k, v);
    }
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
            // The request was sent: a retry could run it twice upstream.
            return Err(AttemptError::Fatal(e));
        }
        Ok(Err(e)) => {
            let kind = if e.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Network
            };
            let err = StreamError::new(kind, None, format!("request failed: {}", error_chain(&e)));
            // Only a failed connect is safe to retry: nothing reached the upstream.
            return Err(if e.is_connect() {
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

/// The stream's task: sends the request (with retries and recoveries), then reads the body.
/// `guard` marks the producer done when the task ends, however it ends (an aborted task
/// drops it with the future).
///
/// Sized for the thousands of streams a gateway keeps open: a task holds, for the life of its
/// stream, the state of its largest wait, and an `async fn` keeps its arguments (and, as
/// measured, bindings a later awaited future was built from) for its whole life. So the
/// sending phase is a boxed future of its own, freed once the upstream answered; the reading
/// phase is built by a plain function ([`Answered::read`]) from what reading needs; pushes and
/// error events box their rare waits. The task's cell in a release build went from 2048 to
/// 640 bytes.
fn run(
    client: reqwest::Client,
    req: UpstreamRequest,
    guard: ProducerGuard,
) -> impl std::future::Future<Output = ()> + Send {
    let respond = Box::pin(respond(client, req, guard.0.clone()));
    async move {
        let queue = &guard.0;
        let Some(answered) = respond.await else {
            return;
        };
        answered.read(queue).await;
    }
}

/// What reading a body needs of the request that was answered (its route may differ from the
/// first request's after a recovery).
struct Answered {
    response: reqwest::Response,
    route: Route,
    include_raw: bool,
    auth: Authorization,
    idle: Duration,
}

impl Answered {
    /// Reads the body into `queue` (see [`read_body`]).
    fn read(self, queue: &Arc<EventQueue>) -> impl std::future::Future<Output = ()> + Send + '_ {
        let decoder = body::BodyDecoder::new(self.route, self.include_raw, self.auth.clone());
        read_body(
            self.response.bytes_stream(),
            Box::new(decoder),
            self.auth,
            self.idle,
            queue,
        )
    }
}

/// Sends `req` until the upstream answers with a success (retrying and recovering as the
/// contract says); `None` when it gave up, after queuing the error.
async fn respond(
    client: reqwest::Client,
    mut req: UpstreamRequest,
    queue: Arc<EventQueue>,
) -> Option<Answered> {
    let mut attempt = 0;
    // One recovery of each kind per stream; the URL a route refusal came from, for the error
    // if the other route refuses too.
    let mut route_refused_at: Option<String> = None;
    let mut parameter_dropped = false;
    let response = loop {
        attempt += 1;
        match send(&client, &req).await {
            Ok(r) => break r,
            Err(AttemptError::Fatal(mut e)) => {
                let refusal = recover::refusal(&e).filter(|r| match r {
                    recover::Refusal::WrongRoute => route_refused_at.is_none(),
                    recover::Refusal::Parameter(_) => !parameter_dropped,
                });
                let next = match (refusal, &req.recovery) {
                    (Some(refusal), Some(recovery)) => recovery
                        .0
                        .recover(&refusal, &req)
                        .map(|next| (refusal, next)),
                    _ => None,
                };
                if let Some((refusal, next)) = next {
                    tracing::debug!(?refusal, from = %req.url, to = %next.url, "retrying after a refusal");
                    match refusal {
                        recover::Refusal::WrongRoute => route_refused_at = Some(req.url.clone()),
                        recover::Refusal::Parameter(_) => parameter_dropped = true,
                    }
                    req = next;
                    attempt = 0;
                    continue;
                }
                if let Some(first) = route_refused_at.as_ref().filter(|first| **first != req.url) {
                    e.message = format!("{} (tried {first} and {})", e.message, req.url);
                }
                emit_error(&queue, &req.auth, e).await;
                return None;
            }
            Err(AttemptError::Retry(e, retry_after)) => {
                let delay = (attempt < MAX_ATTEMPTS)
                    .then(|| retry_delay(attempt, retry_after, req.max_retry_delay))
                    .flatten();
                match delay {
                    Some(d) => {
                        tracing::debug!(attempt, delay_ms = d.as_millis() as u64, kind = ?e.kind, "retrying upstream request");
                        tokio::time::sleep(d).await;
                    }
                    None => {
                        emit_error(&queue, &req.auth, e).await;
                        return None;
                    }
                }
            }
        }
    };
    Some(Answered {
        response,
        route: req.route,
        include_raw: req.include_raw,
        auth: req.auth,
        idle: req.timeouts.idle,
    })
}

/// Queues each read of a response's `body` as it came, then its end; an error event when no
/// data came for `idle` or the connection broke (scrubbed of `auth`'s credentials).
async fn read_body(
    mut body: impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
    decoder: Box<body::BodyDecoder>,
    auth: Authorization,
    idle: Duration,
    queue: &Arc<EventQueue>,
) {
    if queue.push(Input::Body(decoder)).await.is_err() {
        return;
    }
    // The idle timeout is one timer for the whole body, moved only when it fires early (data
    // came since it was set): arming a fresh timer for every read would cost a timer-wheel
    // registration and removal per read. Each read only stamps the coarse clock ([`idle`]).
    let mut watch = idle::IdleWatch::start(idle);
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    let error = loop {
        let next = tokio::select! {
            biased;
            next = body.next() => Some(next),
            () = &mut idle_timer => None,
        };
        let input = match next {
            None => {
                if let Some(left) = watch.left() {
                    idle_timer
                        .as_mut()
                        .reset(tokio::time::Instant::now() + left);
                    continue;
                }
                break StreamError::new(
                    ErrorKind::Timeout,
                    None,
                    format!("no data for {} ms", watch.limit().as_millis()),
                );
            }
            Some(next) => {
                watch.data_came();
                next
            }
        };
        let input = match input {
            None => Input::End,
            Some(Err(e)) => {
                break StreamError::new(
                    ErrorKind::Network,
                    None,
                    format!("stream interrupted: {}", error_chain(&e)),
                );
            }
            Some(Ok(bytes)) => Input::Chunk(bytes),
        };
        let end = matches!(input, Input::End);
        if queue.push(input).await.is_err() || end {
            return;
        }
    };
    // Cold: boxed, so the reading state above does not also carry the error's push.
    Box::pin(emit_error(queue, &auth, error)).await;
}

async fn emit_error(queue: &Arc<EventQueue>, auth: &Authorization, mut e: StreamError) {
    e.message = auth.scrub(&e.message);
    let _ = queue.push_event(Emitted::error(e)).await;
}

/// Tokens shorter than this are not scrubbed: they cannot be told apart from ordinary text
/// (a one-letter test key would redact every such letter of a message). Real bearer tokens are
/// hundreds of characters.
pub const MIN_SCRUBBED_TOKEN_LEN: usize = 8;

/// `text` with every occurrence of the bearer token replaced by `<redacted>` (an upstream may
/// echo the `Authorization` header back in an error body).
pub fn scrub(text: &str, token: &Secret) -> String {
    let secret = token.expose();
    if secret.len() < MIN_SCRUBBED_TOKEN_LEN || !text.contains(secret) {
        return text.to_string();
    }
    text.replace(secret, "<redacted>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_the_token_and_leaves_short_keys_alone() {
        let token = Secret::new("bedrock-api-key-abcdef");
        assert_eq!(
            scrub(
                "echoed bedrock-api-key-abcdef twice: bedrock-api-key-abcdef",
                &token
            ),
            "echoed <redacted> twice: <redacted>"
        );
        // A first version of this scrub turned "thinking" into "thin<redacted>ing" for key "k".
        let short = Secret::new("k");
        assert_eq!(
            scrub("when thinking is enabled", &short),
            "when thinking is enabled"
        );
    }

    #[test]
    fn scrub_starts_at_the_minimum_token_length() {
        let at_limit = "k".repeat(MIN_SCRUBBED_TOKEN_LEN);
        let below = "k".repeat(MIN_SCRUBBED_TOKEN_LEN - 1);
        assert_eq!(
            scrub(&format!("key {at_limit}."), &Secret::new(&at_limit)),
            "key <redacted>."
        );
        assert_eq!(
            scrub(&format!("key {below}."), &Secret::new(&below)),
            format!("key {below}.")
        );
    }

    /// A stream's task keeps its state for as long as the stream is open, and a gateway keeps
    /// thousands open (issue #13: RSS per stream within 1.05x of a direct client's). Before
    /// the sending phase was split off and boxed, this state was 1648 bytes in a test build
    /// (the task's cell 2048 bytes in a release build); now 528 (cell 640). The bound leaves
    /// room for compiler versions, and fails if a large binding comes back across the
    /// reading phase's waits.
    #[test]
    fn a_streams_task_carries_less_than_a_kib_while_it_reads() {
        let request = UpstreamRequest {
            route: Route::OpenAi,
            url: "http://127.0.0.1:9/v1/chat/completions".into(),
            headers: Vec::new(),
            body: serde_json::Value::Null,
            auth: Authorization::Bearer(Secret::new("bedrock-api-key-size")),
            include_raw: false,
            max_retry_delay: Duration::from_secs(1),
            timeouts: Timeouts::default(),
            recovery: None,
        };
        let queue = Arc::new(EventQueue::default());
        let task = run(
            reqwest::Client::new(),
            request,
            ProducerGuard(queue.clone()),
        );
        let size = std::mem::size_of_val(&task);
        assert!(size < 1024, "the stream task's state is {size} bytes");
        // A push that fits is done on the call: its future is a few words, not the wait's.
        let push = queue.push(Input::End);
        assert!(std::mem::size_of_val(&push) <= 32);
    }

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
