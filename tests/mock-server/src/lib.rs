//! A local Mantle-compatible server for tests, benchmarks and the demo.
//!
//! It speaks the routes the provider uses: `GET /v1/models`, `POST /v1/chat/completions`
//! (OpenAI SSE), `POST /anthropic/v1/messages` (Anthropic SSE) and `POST /openai/v1/responses` /
//! `POST /v1/responses` (Responses SSE). Like Mantle it refuses GPT-5.x, Gemma 4 and xAI ids
//! outside `/openai/v1/responses` with Mantle's message, and validates request bodies.
//! It checks `Authorization: Bearer <token>` (401 on a wrong or missing token, and on a request
//! that only carries `x-api-key`), or, once given test credentials, SigV4 signatures for service
//! `bedrock-mantle` ([`sigv4`]: 403 with AWS's message on a bad one), records every request for assertions, and plays scripted
//! replies with fault injection: status codes, delays, stalls, disconnects mid-stream,
//! malformed chunks and oversized bodies. It binds loopback only, port 0 by default.
//!
//! With no script queued, chat routes answer `echo: <last user text>` as a well-formed stream,
//! so concurrent tests can check every stream got its own text back; asked to reason, the
//! model thinks first, and forced to call a tool, it calls it ([`behave`]).

pub mod behave;
pub mod ecs;
pub mod sigv4;
mod template;
pub mod testkit;
pub mod validate;

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::Response,
    serve::ListenerExt,
    Router,
};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Which upstream route a script applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `GET /v1/models`
    Models,
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /anthropic/v1/messages`
    AnthropicMessages,
    /// `POST /openai/v1/responses` and `POST /v1/responses`
    Responses,
}

/// One step of a scripted streaming body.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send these bytes as one chunk.
    Bytes(Vec<u8>),
    /// Wait before the next step.
    Sleep(Duration),
    /// Never send anything again (the connection stays open).
    Stall,
    /// Abort the connection mid-body.
    Disconnect,
}

/// A scripted reply.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A status with a body and extra headers (e.g. `retry-after`).
    Status {
        status: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    /// A 200 streaming body played step by step, with the given content type.
    Stream {
        content_type: String,
        steps: Vec<Step>,
    },
    /// Wait before answering at all (delays the first byte, headers included).
    Delayed(Duration, Box<Reply>),
}

impl Reply {
    /// A status reply with a JSON or text body.
    pub fn status(status: u16, body: impl Into<String>) -> Self {
        Reply::Status {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// A 200 JSON reply.
    pub fn json(value: &Value) -> Self {
        Reply::Status {
            status: 200,
            body: value.to_string(),
            headers: Vec::new(),
        }
    }

    /// An SSE reply from steps.
    pub fn sse(steps: Vec<Step>) -> Self {
        Reply::Stream {
            content_type: "text/event-stream".into(),
            steps,
        }
    }
}

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers in wire order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (Null when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Default)]
struct Inner {
    token: Mutex<Option<String>>,
    models: Mutex<Vec<Value>>,
    scripts: Mutex<Vec<(Route, VecDeque<Reply>)>>,
    requests: Mutex<Vec<RecordedRequest>>,
    body_drops: AtomicUsize,
    body_drop_notify: tokio::sync::Notify,
    /// Pause between the chunks of default (unscripted) streaming replies.
    step_delay: Mutex<Duration>,
    /// Answer 404 "does not exist" for model ids it does not list, as Mantle does.
    strict_models: std::sync::atomic::AtomicBool,
    /// When set, every request must carry a valid SigV4 signature made with these keys.
    sigv4: Mutex<Option<sigv4::SigV4Keys>>,
}

/// A running local server. Dropping it stops the server.
pub struct MockMantle {
    addr: SocketAddr,
    inner: Arc<Inner>,
    _server: ServerThread,
}

/// Model ids served by default: a few open-weight models and Claude ids.
pub const DEFAULT_MODELS: &[&str] = &[
    "openai.gpt-oss-120b",
    "openai.gpt-oss-20b",
    "qwen.qwen3-32b",
    "deepseek.r1",
    "openai.gpt-5.5",
    "anthropic.claude-opus-4-7",
];

impl MockMantle {
    /// Starts a server on `127.0.0.1:0` in its own thread and runtime, requiring `token`
    /// (`None` accepts any bearer token but still refuses a request without one).
    pub fn start(token: Option<&str>) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("static address"), token)
    }

    /// Starts a server on a given loopback address.
    pub fn start_on(addr: SocketAddr, token: Option<&str>) -> std::io::Result<Self> {
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the mock server binds loopback addresses only",
            ));
        }
        let inner = Arc::new(Inner::default());
        *inner.token.lock().unwrap() = token.map(str::to_string);
        inner.strict_models.store(true, Ordering::SeqCst);
        *inner.models.lock().unwrap() = DEFAULT_MODELS
            .iter()
            .map(|id| json!({"id": id, "object": "model"}))
            .collect();
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let server = ServerThread::start(std_listener, app, "mock-mantle", 2)?;
        Ok(MockMantle {
            addr,
            inner,
            _server: server,
        })
    }

    /// `http://127.0.0.1:PORT` (use as the provider's `baseUrl` origin).
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1`, the OpenAI-compatible base.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.origin())
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the accepted bearer token.
    pub fn set_token(&self, token: Option<&str>) {
        *self.inner.token.lock().unwrap() = token.map(str::to_string);
    }

    /// Replaces the rows served by `GET /v1/models`.
    pub fn set_models(&self, rows: Vec<Value>) {
        *self.inner.models.lock().unwrap() = rows;
    }

    /// Adds rows for `ids` to those served by `GET /v1/models` (so that strict models serves
    /// them too).
    pub fn add_models(&self, ids: &[&str]) {
        let mut models = self.inner.models.lock().unwrap();
        models.extend(ids.iter().map(|id| json!({"id": id, "object": "model"})));
    }

    /// Makes default (unscripted) streaming replies pause this long between chunks, so streams
    /// stay in flight for a while (e.g. across a hot-swap).
    pub fn set_step_delay(&self, delay: Duration) {
        *self.inner.step_delay.lock().unwrap() = delay;
    }

    /// Like Mantle, answer 404 `The model '<id>' does not exist` for a model id that is neither
    /// in the listed models nor a Claude id. On by default; a test about something else that
    /// streams a made-up id lists it with [`MockMantle::set_models`] or turns this off.
    pub fn set_strict_models(&self, strict: bool) {
        self.inner.strict_models.store(strict, Ordering::SeqCst);
    }

    /// Requires a valid SigV4 signature (service `bedrock-mantle`, these keys and region) on
    /// every request instead of a bearer token; `None` goes back to bearer tokens.
    pub fn set_sigv4(&self, keys: Option<sigv4::SigV4Keys>) {
        *self.inner.sigv4.lock().unwrap() = keys;
    }

    /// Queues a scripted reply for the next request on `route` (FIFO per route).
    pub fn push(&self, route: Route, reply: Reply) {
        let mut scripts = self.inner.scripts.lock().unwrap();
        match scripts.iter_mut().find(|(r, _)| *r == route) {
            Some((_, queue)) => queue.push_back(reply),
            None => scripts.push((route, VecDeque::from([reply]))),
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// Queues the reasoning + text + tool-call scripts on both routes (one request each):
    /// [`openai_tool_and_reasoning_stream`] and [`anthropic_tool_and_thinking_stream`].
    pub fn push_reasoning_and_tool_streams(&self) {
        self.push(
            Route::ChatCompletions,
            Reply::sse(openai_tool_and_reasoning_stream()),
        );
        self.push(
            Route::AnthropicMessages,
            Reply::sse(anthropic_tool_and_thinking_stream()),
        );
    }

    /// Requests received on one path.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Forgets recorded requests.
    pub fn clear_requests(&self) {
        self.inner.requests.lock().unwrap().clear();
    }

    /// How many streaming bodies were dropped before they finished (client went away).
    pub fn aborted_bodies(&self) -> usize {
        self.inner.body_drops.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` streaming bodies were dropped early, or the timeout passes.
    pub fn wait_aborted_bodies(&self, n: usize, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.aborted_bodies() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.aborted_bodies() >= n
    }
}

/// An axum app served on its own thread and runtime; dropping it shuts the server down.
pub(crate) struct ServerThread {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Serves `app` on a non-blocking `listener` with `workers` runtime threads.
    pub(crate) fn start(
        listener: std::net::TcpListener,
        app: Router,
        name: &str,
        workers: usize,
    ) -> std::io::Result<Self> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .thread_name("mock-server")
                    .enable_all()
                    .build()
                    .expect("mock server runtime");
                rt.block_on(async move {
                    // Streams are many small writes: without TCP_NODELAY, Nagle's algorithm
                    // holds each back until the client's (delayed) ACK, up to 40 ms.
                    let listener =
                        TcpListener::from_std(listener)
                            .expect("listener")
                            .tap_io(|tcp| {
                                let _ = tcp.set_nodelay(true);
                            });
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = rx.await;
                        })
                        .await;
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(ServerThread {
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn next_script(inner: &Inner, route: Route) -> Option<Reply> {
    let mut scripts = inner.scripts.lock().unwrap();
    scripts
        .iter_mut()
        .find(|(r, _)| *r == route)
        .and_then(|(_, q)| q.pop_front())
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = RecordedRequest {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    inner.requests.lock().unwrap().push(recorded.clone());

    let route = match (method.as_str(), uri.path()) {
        ("GET", "/v1/models") => Route::Models,
        ("POST", "/v1/chat/completions") => Route::ChatCompletions,
        ("POST", "/openai/v1/responses") | ("POST", "/v1/responses") => Route::Responses,
        ("POST", "/anthropic/v1/messages") => Route::AnthropicMessages,
        _ => {
            return plain(
                404,
                &json!({"error": {"message": "no such route", "type": "not_found"}}).to_string(),
            )
        }
    };

    if let Some(rejection) = check_auth(&inner, &recorded) {
        return rejection;
    }
    if let Some(rejection) = check_body(route, &recorded.body) {
        return rejection;
    }
    if let Some(rejection) = check_model_exists(&inner, route, &recorded) {
        return rejection;
    }
    if let Some(rejection) = check_route(route, &recorded) {
        return rejection;
    }

    let reply = match next_script(&inner, route) {
        Some(reply) => reply,
        None => default_reply(&inner, route, &recorded.json()),
    };
    play(inner, reply).await
}

fn check_auth(inner: &Inner, req: &RecordedRequest) -> Option<Response> {
    if let Some(keys) = inner.sigv4.lock().unwrap().as_ref() {
        let refused = sigv4::verify(keys, req).err()?;
        return Some(plain(
            403,
            &json!({"error": {"message": refused, "type": "authentication_error",
                "code": "InvalidSignatureException"}})
            .to_string(),
        ));
    }
    let expected = inner.token.lock().unwrap().clone();
    let bearer = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = match (bearer, expected) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(got), Some(want)) => got == want,
    };
    if ok {
        return None;
    }
    let why = if bearer.is_none() && req.header("x-api-key").is_some() {
        "x-api-key is not accepted; send Authorization: Bearer"
    } else {
        "invalid or missing bearer token"
    };
    Some(plain(
        401,
        &json!({"error": {"message": why, "type": "authentication_error"}}).to_string(),
    ))
}

/// With strict models on: 404 for an id the server does not list (Claude ids are served on the
/// Anthropic route whether listed or not, as the curated rows are).
fn check_model_exists(inner: &Inner, route: Route, req: &RecordedRequest) -> Option<Response> {
    if route == Route::Models || !inner.strict_models.load(Ordering::SeqCst) {
        return None;
    }
    let model = req.json()["model"].as_str().unwrap_or_default().to_string();
    let listed = inner
        .models
        .lock()
        .unwrap()
        .iter()
        .any(|m| m["id"] == model.as_str());
    if listed || model.starts_with("anthropic.") {
        return None;
    }
    Some(plain(
        404,
        &json!({"error": {"message": format!("The model '{model}' does not exist"),
            "type": "invalid_request_error", "code": "model_not_found", "param": "model"}})
        .to_string(),
    ))
}

/// Model families Mantle serves only on the Responses API under `/openai/v1` (spec §7).
const RESPONSES_ONLY: &[&str] = &["openai.gpt-5", "google.gemma-4", "xai."];

/// Refuses a model on a route Mantle does not serve it on, with Mantle's message (spec §7).
fn check_route(route: Route, req: &RecordedRequest) -> Option<Response> {
    let model = req.json()["model"].as_str().unwrap_or_default().to_string();
    let responses_only = RESPONSES_ONLY.iter().any(|p| model.starts_with(p));
    let path = req.path.split('?').next().unwrap_or_default();
    let refused = match route {
        Route::ChatCompletions => responses_only,
        Route::Responses => responses_only && path != "/openai/v1/responses",
        _ => false,
    };
    if refused {
        return Some(plain(
            400,
            &json!({"error": {"message": format!("The model '{model}' does not support the '{path}' API"),
                "type": "validation_error", "code": null, "param": "model"}})
            .to_string(),
        ));
    }
    // GPT-5.x and the other Responses-only families take no sampling overrides (strict
    // parameters, spec §7).
    let body = req.json();
    let sampling = ["temperature", "top_p"]
        .into_iter()
        .find(|p| body.get(*p).is_some());
    match (route, responses_only, sampling) {
        (Route::Responses, true, Some(param)) => Some(plain(
            400,
            &json!({"error": {"message": format!("Unsupported parameter: '{param}' is not supported with this model."),
                "type": "invalid_request_error", "code": "unsupported_parameter", "param": param}})
            .to_string(),
        )),
        _ => None,
    }
}

/// Validates a request body like the real API does (see [`validate`]): a 400 in the surface's
/// own error shape, naming the field.
fn check_body(route: Route, body: &[u8]) -> Option<Response> {
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    let verdict = match (&parsed, route) {
        (_, Route::Models) => return None,
        (Err(e), _) => Err(validate::Invalid {
            param: "body".into(),
            message: format!("the request body is not valid JSON: {e}"),
        }),
        (Ok(v), Route::ChatCompletions) => validate::chat_completions(v),
        (Ok(v), Route::Responses) => validate::responses(v),
        (Ok(v), Route::AnthropicMessages) => validate::anthropic_messages(v),
    };
    let invalid = verdict.err()?;
    let body = match route {
        Route::AnthropicMessages => json!({"type": "error", "error": {
            "type": "invalid_request_error", "message": invalid.message}}),
        _ => json!({"error": {"message": invalid.message, "type": "invalid_request_error",
            "param": invalid.param, "code": null}}),
    };
    Some(plain(400, &body.to_string()))
}

fn plain(status: u16, body: &str) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("static response")
}

fn default_reply(inner: &Inner, route: Route, request: &Value) -> Reply {
    let model = request["model"].as_str().unwrap_or("unknown");
    let steps = match route {
        Route::Models => {
            let rows = inner.models.lock().unwrap().clone();
            return Reply::json(&json!({"object": "list", "data": rows}));
        }
        route => behave::stream_for(route, model, &behave::Plan::of(route, request), 8),
    };
    let delay = *inner.step_delay.lock().unwrap();
    if delay.is_zero() {
        return Reply::sse(steps);
    }
    let mut paced = Vec::with_capacity(steps.len() * 2);
    for step in steps {
        if !paced.is_empty() {
            paced.push(Step::Sleep(delay));
        }
        paced.push(step);
    }
    Reply::sse(paced)
}

/// `echo: <text of the last user message>` for either request shape.
pub fn echo_text(request: &Value) -> String {
    if let Some(text) = request["input"].as_str() {
        return format!("echo: {text}");
    }
    let messages = request["messages"]
        .as_array()
        .or(request["input"].as_array());
    let last_user = messages
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .cloned()
        .unwrap_or(Value::Null);
    let text = match &last_user["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    };
    format!("echo: {text}")
}

/// An OpenAI Responses event (`event:` line named after its `type`, then `data:`).
pub fn responses_event(payload: &Value) -> Step {
    let kind = payload["type"].as_str().unwrap_or("message");
    Step::Bytes(format!("event: {kind}\ndata: {payload}\n\n").into_bytes())
}

/// One Responses text delta event (of item `msg_mock`) as the OpenAI Responses API writes it:
/// compact JSON with its keys in the API's order (`type` first, then `sequence_number`,
/// `item_id`, `output_index`, `content_index`, `delta`, `logprobs`), not sorted as a
/// `serde_json::Value` would write them. The plugin reads this flat shape without a full
/// decode (its `stream::responses_text`); every other shape goes its typed way.
pub fn responses_text_delta(sequence_number: u64, text: &str) -> String {
    format!(
        "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":{sequence_number},\"item_id\":\"msg_mock\",\"output_index\":0,\"content_index\":0,\"delta\":{},\"logprobs\":[]}}\n\n",
        Value::from(text)
    )
}

/// A Responses stream of `text` in `chunk_chars` pieces: created, in_progress, a message item
/// with output_text deltas, completed with usage.
pub fn responses_text_stream(model: &str, text: &str, chunk_chars: usize) -> Vec<Step> {
    let response =
        json!({"id": "resp_mock", "object": "response", "model": model, "status": "in_progress"});
    let mut steps = vec![
        responses_event(
            &json!({"type": "response.created", "sequence_number": 0, "response": response}),
        ),
        responses_event(
            &json!({"type": "response.in_progress", "sequence_number": 1, "response": response}),
        ),
        responses_event(
            &json!({"type": "response.output_item.added", "sequence_number": 2, "output_index": 0,
            "item": {"id": "msg_mock", "type": "message", "role": "assistant", "status": "in_progress", "content": []}}),
        ),
        responses_event(
            &json!({"type": "response.content_part.added", "sequence_number": 3, "item_id": "msg_mock",
            "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
        ),
    ];
    let delta = template::EventTemplate::new(Step::Bytes(
        responses_text_delta(template::SEQUENCE_HOLE, template::TEXT_HOLE).into_bytes(),
    ));
    let mut seq = 4;
    for piece in template::char_chunks(text, chunk_chars) {
        steps.push(Step::Bytes(delta.fill(piece, seq)));
        seq += 1;
    }
    steps.push(responses_event(
        &json!({"type": "response.output_text.done", "sequence_number": seq,
        "item_id": "msg_mock", "output_index": 0, "content_index": 0, "text": text}),
    ));
    steps.push(responses_event(&json!({"type": "response.output_item.done", "sequence_number": seq + 1,
        "output_index": 0, "item": {"id": "msg_mock", "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}})));
    steps.push(responses_event(&json!({"type": "response.completed", "sequence_number": seq + 2,
        "response": {"id": "resp_mock", "object": "response", "model": model, "status": "completed",
            "usage": {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 18}}})));
    steps
}

/// An SSE `data:` event with a trailing blank line.
pub fn sse_data(payload: &Value) -> Step {
    Step::Bytes(format!("data: {payload}\n\n").into_bytes())
}

/// A complete OpenAI Chat Completions stream that says `text`, split every `chunk_chars`.
pub fn openai_text_stream(model: &str, text: &str, chunk_chars: usize) -> Vec<Step> {
    let mut steps = vec![sse_data(&json!({
        "id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": model,
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]
    }))];
    let delta = template::EventTemplate::new(sse_data(&json!({
        "id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": model,
        "choices": [{"index": 0, "delta": {"content": template::TEXT_HOLE}, "finish_reason": null}]
    })));
    for piece in template::char_chunks(text, chunk_chars) {
        steps.push(Step::Bytes(delta.fill(piece, 0)));
    }
    steps.push(sse_data(&json!({
        "id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": model,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    })));
    steps.push(sse_data(&json!({
        "id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": model, "choices": [],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    })));
    steps.push(Step::Bytes(b"data: [DONE]\n\n".to_vec()));
    steps
}

/// An Anthropic SSE event (`event:` line plus `data:` line).
pub fn anthropic_event(event: &str, payload: &Value) -> Step {
    Step::Bytes(format!("event: {event}\ndata: {payload}\n\n").into_bytes())
}

/// One Anthropic text delta event as the Messages API writes it: compact JSON with its keys
/// in Anthropic's order (`type`, `index`, `delta` with `type` then `text`), not sorted as a
/// `serde_json::Value` would write them. The plugin takes this exact shape by its bytes
/// (its `stream::anthropic_text`); every other shape goes its typed way.
pub fn anthropic_text_delta(index: u32, text: &str) -> String {
    format!(
        "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"text_delta\",\"text\":{}}}}}\n\n",
        Value::from(text)
    )
}

/// A complete Anthropic Messages stream that says `text`, split every `chunk_chars`.
pub fn anthropic_text_stream(model: &str, text: &str, chunk_chars: usize) -> Vec<Step> {
    let mut steps = vec![
        anthropic_event(
            "message_start",
            &json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant",
                "model": model, "content": [], "stop_reason": null,
                "usage": {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 2}}}),
        ),
        anthropic_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        anthropic_event("ping", &json!({"type": "ping"})),
    ];
    let delta = template::EventTemplate::new(Step::Bytes(
        anthropic_text_delta(0, template::TEXT_HOLE).into_bytes(),
    ));
    for piece in template::char_chunks(text, chunk_chars) {
        steps.push(Step::Bytes(delta.fill(piece, 0)));
    }
    steps.push(anthropic_event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    steps.push(anthropic_event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 9}}),
    ));
    steps.push(anthropic_event(
        "message_stop",
        &json!({"type": "message_stop"}),
    ));
    steps
}

/// An OpenAI stream with reasoning (`reasoning_content` then `reasoning`), text `Hi`, one tool
/// call `get({"a":1})` split over deltas, usage and `[DONE]`.
///
/// Like Mantle (spec §7), reasoning arrives both as `reasoning_content` and as `reasoning`, and
/// the streamed tool call is numbered from 1: the plugin must still report it as index 0.
pub fn openai_tool_and_reasoning_stream() -> Vec<Step> {
    let chunk = |delta: Value, finish: Value| {
        sse_data(
            &json!({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    vec![
        chunk(json!({"role": "assistant"}), Value::Null),
        chunk(json!({"reasoning_content": "think "}), Value::Null),
        chunk(json!({"reasoning": "more"}), Value::Null),
        chunk(json!({"content": "Hi"}), Value::Null),
        chunk(
            json!({"tool_calls": [{"index": 1, "id": "call_1", "type": "function", "function": {"name": "get", "arguments": ""}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"a\":"}}]}),
            Value::Null,
        ),
        chunk(
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "1}"}}]}),
            Value::Null,
        ),
        chunk(json!({}), json!("tool_calls")),
        sse_data(
            &json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 3}, "completion_tokens_details": {"reasoning_tokens": 2}}}),
        ),
        Step::Bytes(b"data: [DONE]\n\n".to_vec()),
    ]
}

/// The Anthropic twin of [`openai_tool_and_reasoning_stream`]: thinking (with a signature), a
/// ping, text `Hi`, a `tool_use` block `get({"a":1})`, usage and `tool_use` stop reason.
pub fn anthropic_tool_and_thinking_stream() -> Vec<Step> {
    vec![
        anthropic_event(
            "message_start",
            &json!({"type": "message_start", "message": {"id": "msg_1", "model": "m", "usage": {"input_tokens": 7, "output_tokens": 1, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 0}}}),
        ),
        anthropic_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        ),
        anthropic_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "think "}}),
        ),
        anthropic_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "more"}}),
        ),
        anthropic_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig=="}}),
        ),
        anthropic_event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ),
        anthropic_event("ping", &json!({"type": "ping"})),
        anthropic_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
        ),
        anthropic_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}}),
        ),
        anthropic_event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 1}),
        ),
        anthropic_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {}}}),
        ),
        anthropic_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
        ),
        anthropic_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
        ),
        anthropic_event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 2}),
        ),
        anthropic_event(
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}}),
        ),
        anthropic_event("message_stop", &json!({"type": "message_stop"})),
    ]
}

/// Counts a body as aborted when it is dropped before its last step was sent.
struct DropGuard {
    inner: Arc<Inner>,
    finished: bool,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.inner.body_drops.fetch_add(1, Ordering::SeqCst);
            self.inner.body_drop_notify.notify_waiters();
        }
    }
}

async fn play(inner: Arc<Inner>, reply: Reply) -> Response {
    let mut reply = reply;
    while let Reply::Delayed(delay, next) = reply {
        tokio::time::sleep(delay).await;
        reply = *next;
    }
    match reply {
        Reply::Status {
            status,
            body,
            headers,
        } => {
            let mut builder = Response::builder()
                .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
                .header("content-type", "application/json");
            for (k, v) in headers {
                builder = builder.header(k, v);
            }
            builder.body(Body::from(body)).expect("scripted response")
        }
        Reply::Stream {
            content_type,
            steps,
        } => {
            let guard = DropGuard {
                inner,
                finished: false,
            };
            let state = (VecDeque::from(steps), guard);
            let body_stream = stream::unfold(state, |(mut steps, mut guard)| async move {
                loop {
                    match steps.pop_front() {
                        None => {
                            guard.finished = true;
                            drop(guard);
                            return None;
                        }
                        Some(Step::Bytes(b)) => {
                            return Some((
                                Ok::<Bytes, std::io::Error>(Bytes::from(b)),
                                (steps, guard),
                            ))
                        }
                        Some(Step::Sleep(d)) => tokio::time::sleep(d).await,
                        Some(Step::Stall) => std::future::pending::<()>().await,
                        Some(Step::Disconnect) => {
                            guard.finished = true;
                            return Some((
                                Err(std::io::Error::new(
                                    std::io::ErrorKind::ConnectionAborted,
                                    "scripted disconnect",
                                )),
                                (steps, guard),
                            ));
                        }
                    }
                }
            })
            .boxed();
            Response::builder()
                .status(200)
                .header("content-type", content_type)
                .header("cache-control", "no-cache")
                .body(Body::from_stream(body_stream))
                .expect("stream response")
        }
        Reply::Delayed(..) => unreachable!("delays are unwrapped above"),
    }
}

#[cfg(test)]
mod text_stream_tests {
    use super::*;

    /// The pieces of `text`, every `chunk_chars` characters, as the streams were first built.
    fn pieces(text: &str, chunk_chars: usize) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        chars
            .chunks(chunk_chars.max(1))
            .map(|c| c.iter().collect())
            .collect()
    }

    fn bytes(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::Bytes(b) => String::from_utf8(b.clone()).unwrap(),
                other => panic!("not bytes: {other:?}"),
            })
            .collect()
    }

    const TEXTS: [&str; 3] = [
        "echo: hello world, a longer reply",
        "quote \" backslash \\ ctl \u{1} tab \t é 😀 \u{2028}",
        "",
    ];

    /// Checks that the deltas of `steps` (after `head` events, before the last 3) are, byte
    /// for byte, `by_value` of each piece and its position.
    fn check_deltas(
        steps: &[Step],
        head: usize,
        text: &str,
        chunk: usize,
        by_value: impl Fn(usize, &str) -> String,
    ) {
        let expected: Vec<String> = pieces(text, chunk)
            .iter()
            .enumerate()
            .map(|(i, p)| by_value(i, p))
            .collect();
        let steps = bytes(steps);
        assert_eq!(
            steps[head..steps.len() - 3],
            expected[..],
            "{text:?} / {chunk}"
        );
    }

    #[test]
    fn text_deltas_are_what_a_value_per_delta_serializes_to() {
        for text in TEXTS {
            for chunk in [1, 3, 8] {
                check_deltas(
                    &openai_text_stream("m", text, chunk),
                    1,
                    text,
                    chunk,
                    |_, p| {
                        format!(
                            "data: {}\n\n",
                            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
                        "model": "m", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": null}]})
                        )
                    },
                );
                check_deltas(
                    &anthropic_text_stream("m", text, chunk),
                    3,
                    text,
                    chunk,
                    |_, p| {
                        // Serialized in declaration order: Anthropic's key order.
                        #[derive(serde::Serialize)]
                        struct Delta<'a> {
                            #[serde(rename = "type")]
                            kind: &'a str,
                            text: &'a str,
                        }
                        #[derive(serde::Serialize)]
                        struct Event<'a> {
                            #[serde(rename = "type")]
                            kind: &'a str,
                            index: u32,
                            delta: Delta<'a>,
                        }
                        let event = Event {
                            kind: "content_block_delta",
                            index: 0,
                            delta: Delta {
                                kind: "text_delta",
                                text: p,
                            },
                        };
                        format!(
                            "event: content_block_delta\ndata: {}\n\n",
                            serde_json::to_string(&event).unwrap()
                        )
                    },
                );
                check_deltas(
                    &responses_text_stream("m", text, chunk),
                    4,
                    text,
                    chunk,
                    |i, p| {
                        // Serialized in declaration order: the Responses API's key order.
                        #[derive(serde::Serialize)]
                        struct Delta<'a> {
                            #[serde(rename = "type")]
                            kind: &'a str,
                            sequence_number: usize,
                            item_id: &'a str,
                            output_index: u32,
                            content_index: u32,
                            delta: &'a str,
                            logprobs: [u8; 0],
                        }
                        let event = Delta {
                            kind: "response.output_text.delta",
                            sequence_number: i + 4,
                            item_id: "msg_mock",
                            output_index: 0,
                            content_index: 0,
                            delta: p,
                            logprobs: [],
                        };
                        format!(
                            "event: response.output_text.delta\ndata: {}\n\n",
                            serde_json::to_string(&event).unwrap()
                        )
                    },
                );
            }
        }
    }
}
