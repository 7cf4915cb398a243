//! `mantle serve --listen ADDR`: an OpenAI- and Anthropic-compatible HTTP front over the
//! plugin, so an operator can point any official client at a plugin build before dropping it
//! into a gateway. Hot-swap works as in the load loop: each request is served by the version
//! that is current when it arrives, and a stream in flight finishes on the version it started
//! on.
//!
//! Routes, one module per API surface:
//! - `GET /v1/models`: the catalog in OpenAI's list shape ([`models`]);
//! - `POST /v1/chat/completions`: OpenAI Chat Completions, streaming or not ([`chat`]);
//! - `POST /v1/messages`: Anthropic Messages, streaming or not ([`messages`]);
//! - `POST /v1/responses`: OpenAI Responses, streaming or not ([`responses`]).
//!
//! Every response names the plugin version that served it in `x-mantle-plugin-version`.
//! A client that disconnects cancels its upstream request within one pull (50 ms).

mod accumulate;
mod chat;
mod errors;
mod feed;
mod messages;
mod models;
mod responses;
mod sse;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    serve::ListenerExt,
    Router,
};
use mantle_host_shim::swap::HotSwap;
use serde_json::Value;

pub use errors::ApiError;
use errors::Surface;

/// The largest request body accepted (the plugin's own request limit is 64 MiB).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Response header naming the plugin version that served a request.
pub const VERSION_HEADER: &str = "x-mantle-plugin-version";

/// What the HTTP front serves and how it guards itself.
#[derive(Clone)]
pub struct FrontState {
    /// The provider, hot-swappable.
    pub swap: Arc<HotSwap>,
    /// When set, every request must carry this key (`Authorization: Bearer` or `x-api-key`).
    pub api_key: Option<Arc<str>>,
}

impl std::fmt::Debug for FrontState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontState")
            .field("swap", &self.swap)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The router of the HTTP front.
pub fn router(state: FrontState) -> Router {
    Router::new()
        .route("/v1/models", get(models_handler))
        .route("/v1/chat/completions", post(chat_handler))
        .route("/v1/messages", post(messages_handler))
        .route("/v1/responses", post(responses_handler))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Binds `addr` and serves until `shutdown` resolves. Prints `listening on http://ADDR` (the
/// bound address, so port 0 can be used) once ready.
pub async fn serve(
    addr: SocketAddr,
    state: FrontState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    println!("listening on http://{bound}");
    // Streams are many small writes: without TCP_NODELAY, Nagle's algorithm holds each back
    // until the client's (delayed) ACK, up to 40 ms.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("the HTTP front failed: {e}"))
}

/// Checks the front's own key, when one was set. Both OpenAI's (`Authorization: Bearer`) and
/// Anthropic's (`x-api-key`) conventions are accepted.
fn authorize(state: &FrontState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(want) = state.api_key.as_deref() else {
        return Ok(());
    };
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let x_api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let given = bearer.or(x_api_key);
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), want.as_bytes())) {
        return Ok(());
    }
    let why = if given.is_some() {
        "invalid API key"
    } else {
        "missing API key: send Authorization: Bearer KEY or x-api-key: KEY"
    };
    Err(ApiError::new(StatusCode::UNAUTHORIZED, why))
}

/// Compares two secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses a JSON request body (a 400 naming the body otherwise).
fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ApiError::invalid(
            "body",
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::invalid(
            "body",
            format!("the request body is not valid JSON: {e}"),
        )),
    }
}

/// A request the front accepts: the client's key checked, the body parsed.
fn admit(state: &FrontState, headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    authorize(state, headers)?;
    parse_body(body)
}

/// Adds the serving version's header to a response.
fn with_version(mut response: Response, version: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(version) {
        response.headers_mut().insert(VERSION_HEADER, v);
    }
    response
}

async fn models_handler(State(state): State<FrontState>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response(Surface::OpenAi);
    }
    models::list(&state).await
}

async fn chat_handler(
    State(state): State<FrontState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match admit(&state, &headers, &body) {
        Ok(body) => chat::handle(&state, body).await,
        Err(e) => e.into_response(Surface::OpenAi),
    }
}

async fn messages_handler(
    State(state): State<FrontState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match admit(&state, &headers, &body) {
        Ok(body) => messages::handle(&state, body).await,
        Err(e) => e.into_response(Surface::Anthropic),
    }
}

async fn responses_handler(
    State(state): State<FrontState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match admit(&state, &headers, &body) {
        Ok(body) => responses::handle(&state, body).await,
        Err(e) => e.into_response(Surface::OpenAi),
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    let surface = if uri.path().starts_with("/v1/messages") {
        Surface::Anthropic
    } else {
        Surface::OpenAi
    };
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route {}: mantle serve answers GET /v1/models, POST /v1/chat/completions, \
             POST /v1/messages and POST /v1/responses",
            uri.path()
        ),
    )
    .into_response(surface)
}

/// What every surface's request starts with: a JSON object (with only `known` fields, when
/// given), a non-empty `model` (the gateway prefix removed) and an optional boolean `stream`.
fn prologue(
    body: Value,
    known: Option<&[&str]>,
) -> Result<(serde_json::Map<String, Value>, String, bool), ApiError> {
    let Value::Object(body) = body else {
        return Err(ApiError::invalid(
            "body",
            "the request body must be a JSON object",
        ));
    };
    if let Some(known) = known {
        if let Some(k) = body.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ApiError::invalid(
                k,
                format!("{k}: not supported by this provider"),
            ));
        }
    }
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => plugin_model_id(m.trim()).to_string(),
        _ => return Err(ApiError::invalid("model", "required, a non-empty string")),
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("stream", "expected a boolean")),
    };
    Ok((body, model, stream))
}

/// Answers a canonical request on one surface: a status in the surface's error shape when
/// the stream fails before its first event, else the SSE stream (`stream`) or the whole reply
/// rendered by `whole(reply, model, version)`.
async fn answer<E: sse::Encoder>(
    state: &FrontState,
    request: Value,
    surface: Surface,
    stream: bool,
    encoder: impl FnOnce(String, &str) -> E,
    whole: impl FnOnce(&accumulate::Reply, &str, &str) -> Value,
) -> Response {
    let model = request["model"].as_str().unwrap_or_default().to_string();
    let feed = match feed::open(state, request).await {
        Ok(feed) => feed,
        Err(e) => return e.into_response(surface),
    };
    if feed::is_error(&feed.first) {
        let error = ApiError::from_event(&feed.first.value());
        return with_version(error.into_response(surface), &feed.version);
    }
    if stream {
        let encoder = encoder(model, &feed.version);
        return sse::response(feed, encoder);
    }
    let version = feed.version.clone();
    let reply = accumulate::Reply::gather(feed).await;
    let response = match &reply.error {
        Some(e) => ApiError::from_event(e).into_response(surface),
        None => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            whole(&reply, &model, &version).to_string(),
        )
            .into_response(),
    };
    with_version(response, &version)
}

/// Seconds since the Unix epoch (for `created` fields).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A model id as the plugin knows it: the gateway's `amazon-bedrock-mantle/` prefix removed.
fn plugin_model_id(model: &str) -> &str {
    model
        .strip_prefix(&format!("{}/", mantle_abi::PROVIDER_ID))
        .unwrap_or(model)
}

/// A plugin event for the encoders' tests.
#[cfg(test)]
fn test_event(
    kind: mantle_host_shim::EventKind,
    text: &str,
    json: Value,
) -> mantle_host_shim::Event {
    mantle_host_shim::Event {
        kind,
        text: text.into(),
        json: json.to_string(),
        raw: String::new(),
    }
}
