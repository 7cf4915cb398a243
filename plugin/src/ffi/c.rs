//! The plain C API (`include/mantle_provider.h`, generated from this file by cbindgen).
//!
//! A thin layer over [`super`]: every function converts C arguments, calls the safe core inside
//! the panic guard, and reports a [`mantle_result`]. On failure the readable message is kept
//! per thread and read with [`mantle_last_error`].
//!
//! Conventions, for every function:
//! - Input strings are NUL-terminated UTF-8, borrowed for the duration of the call only.
//! - Every pointer argument must be non-NULL; NULL yields `MANTLE_INVALID_ARGUMENT`.
//! - Handles are `uint64_t` ids owned by the plugin. A closed or unknown handle yields
//!   `MANTLE_INVALID_HANDLE`, never undefined behaviour.
//! - Strings returned to the caller are allocated by the plugin and freed by the caller with
//!   the matching `mantle_*_free` function, exactly once.
//! - Functions are thread-safe and may be called from any thread, including a thread that runs
//!   an async runtime (no entry point enters one). One stream is pulled by one thread at a
//!   time: a second concurrent `mantle_stream_next` on the same stream returns
//!   `MANTLE_INVALID_ARGUMENT` at once (different streams are pulled in parallel freely).
//! - Texts from outside (configs, requests) are refused above 64 levels of nesting or their
//!   size limit (1 MiB configs, 64 MiB requests) before any parser runs, so hostile input
//!   cannot exhaust a small thread stack.

#![allow(non_camel_case_types)]

use std::{
    cell::RefCell,
    ffi::{c_char, CStr, CString},
};

use mantle_abi::{ErrorCode, EventKind, FfiError};
use once_cell::sync::Lazy;

use super::c_buffers::EventBuffers;
use crate::{discovery::Outcome, stream::Poll};

/// The ABI major version described by this header (see `mantle_abi_version`).
pub const MANTLE_ABI_MAJOR: u32 = 1;
/// The ABI minor version described by this header.
pub const MANTLE_ABI_MINOR: u32 = 3;
const _: () = assert!(
    MANTLE_ABI_MAJOR == mantle_abi::ABI_MAJOR && MANTLE_ABI_MINOR == mantle_abi::ABI_MINOR,
    "the C header's ABI version must equal mantle_abi's"
);

/// Result of every fallible C function. The numbers equal `mantle_abi::ErrorCode`'s.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mantle_result {
    /// Success.
    MANTLE_OK = 0,
    /// An argument was wrong: NULL pointer, invalid UTF-8, malformed request JSON.
    MANTLE_INVALID_ARGUMENT = 1,
    /// A configuration text was rejected; the message names the field.
    MANTLE_INVALID_CONFIG = 2,
    /// The handle is unknown: never created, or already closed or freed.
    MANTLE_INVALID_HANDLE = 3,
    /// No bearer token could be resolved.
    MANTLE_AUTH_UNAVAILABLE = 4,
    /// The plugin hit an internal error (including a caught panic).
    MANTLE_INTERNAL = 5,
    /// The stream already delivered its terminal event (not returned by the C API, which
    /// reports `MANTLE_POLL_FINISHED` instead; kept so the numbers match the Rust ABI).
    MANTLE_STREAM_FINISHED = 6,
    /// A caller-supplied buffer was too small (reserved).
    MANTLE_BUFFER_TOO_SMALL = 7,
}

impl From<ErrorCode> for mantle_result {
    fn from(code: ErrorCode) -> Self {
        use mantle_result::*;
        match code {
            ErrorCode::Ok => MANTLE_OK,
            ErrorCode::InvalidArgument => MANTLE_INVALID_ARGUMENT,
            ErrorCode::InvalidConfig => MANTLE_INVALID_CONFIG,
            ErrorCode::InvalidHandle => MANTLE_INVALID_HANDLE,
            ErrorCode::AuthUnavailable => MANTLE_AUTH_UNAVAILABLE,
            ErrorCode::Internal => MANTLE_INTERNAL,
            ErrorCode::StreamFinished => MANTLE_STREAM_FINISHED,
            ErrorCode::BufferTooSmall => MANTLE_BUFFER_TOO_SMALL,
        }
    }
}

/// The ABI version of this library.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mantle_version {
    /// A host refuses a library whose major differs from the one in its header.
    pub major: u32,
    /// A host accepts a library whose minor is >= the one in its header.
    pub minor: u32,
}

/// How discovery went, reported with every catalog (the JSON's `outcome.status`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mantle_outcome {
    /// Models are available (`outcome.source`: discovery, cache, stale-cache or config).
    MANTLE_OUTCOME_READY = 0,
    /// Mantle is skipped on purpose (`outcome.reason`: disabled, unsupported-region,
    /// no-credentials, credentials-error, empty).
    MANTLE_OUTCOME_SKIPPED = 1,
    /// Mantle refused the token (401/403; `outcome.http_status`).
    MANTLE_OUTCOME_AUTH_REJECTED = 2,
    /// Mantle could not be reached or answered badly (`outcome.detail`).
    MANTLE_OUTCOME_UNAVAILABLE = 3,
}

/// Kinds of normalized stream events; the numbers equal `mantle_abi::EventKind`'s.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mantle_event_kind {
    /// The upstream accepted the request; `json` has `{id, model}` when known.
    MANTLE_EVENT_START = 1,
    /// Assistant text; `text` holds the delta.
    MANTLE_EVENT_TEXT_DELTA = 2,
    /// Reasoning text; `text` holds the delta, `json` may carry a `signature`.
    MANTLE_EVENT_REASONING_DELTA = 3,
    /// A tool call begins; `json` has `{index, id, name}`.
    MANTLE_EVENT_TOOL_CALL_START = 4,
    /// Tool call arguments; `text` holds the JSON fragment, `json` has `{index}`.
    MANTLE_EVENT_TOOL_CALL_DELTA = 5,
    /// A tool call is complete; `json` has `{index}`.
    MANTLE_EVENT_TOOL_CALL_END = 6,
    /// Token usage; `json` has `{input, output, cache_read, cache_write, reasoning}`.
    MANTLE_EVENT_USAGE = 7,
    /// Terminal: the stream finished; `json` has `{stop_reason}`.
    MANTLE_EVENT_DONE = 8,
    /// Terminal: the stream failed; `json` has `{kind, status, retryable, message}`.
    MANTLE_EVENT_ERROR = 9,
}

impl From<EventKind> for mantle_event_kind {
    fn from(kind: EventKind) -> Self {
        use mantle_event_kind::*;
        match kind {
            EventKind::Start => MANTLE_EVENT_START,
            EventKind::TextDelta => MANTLE_EVENT_TEXT_DELTA,
            EventKind::ReasoningDelta => MANTLE_EVENT_REASONING_DELTA,
            EventKind::ToolCallStart => MANTLE_EVENT_TOOL_CALL_START,
            EventKind::ToolCallDelta => MANTLE_EVENT_TOOL_CALL_DELTA,
            EventKind::ToolCallEnd => MANTLE_EVENT_TOOL_CALL_END,
            EventKind::Usage => MANTLE_EVENT_USAGE,
            EventKind::Done => MANTLE_EVENT_DONE,
            EventKind::Error => MANTLE_EVENT_ERROR,
        }
    }
}

/// What one `mantle_stream_next` call produced.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum mantle_poll {
    /// `*event_out` holds the next event.
    MANTLE_POLL_EVENT = 0,
    /// Nothing arrived within the timeout; call again.
    MANTLE_POLL_PENDING = 1,
    /// The terminal event was already delivered; free the stream.
    MANTLE_POLL_FINISHED = 2,
}

/// One normalized stream event.
///
/// Lifetime: the three buffers belong to the stream and stay valid until the next
/// `mantle_stream_next` call on the same stream, or `mantle_stream_free` of it, whichever
/// comes first. Copy what you keep. Each buffer is also NUL-terminated (the NUL is not counted
/// in its length); `text` may contain NUL bytes of its own, so prefer the length.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mantle_event {
    /// What happened.
    pub kind: mantle_event_kind,
    /// Text delta for text, reasoning and tool-argument events; empty otherwise.
    pub text: *const c_char,
    /// Length of `text` in bytes.
    pub text_len: usize,
    /// The whole event as a JSON object (`{"type": ..., ...}`). Always present, except (ABI
    /// 1.3) when the request set `include_json` to false: then text deltas and reasoning
    /// deltas without a signature, whose `kind` and `text` are the whole event, have it empty.
    pub json: *const c_char,
    /// Length of `json` in bytes.
    pub json_len: usize,
    /// The upstream's raw `data:` payload when the request set `include_raw`; empty otherwise.
    pub raw: *const c_char,
    /// Length of `raw` in bytes.
    pub raw_len: usize,
}

/// A resolved bearer token. Free with `mantle_token_free`, which also wipes the token bytes.
#[repr(C)]
#[derive(Debug)]
pub struct mantle_token {
    /// The token (NUL-terminated, without `Bearer `). A secret: never log it.
    pub token: *mut c_char,
    /// Unix seconds when the token stops being valid; 0 when unknown (explicit keys).
    pub expires_at_unix: i64,
    /// Where it came from: `config`, `config-env`, `env` or `iam` (NUL-terminated).
    pub source: *mut c_char,
}

// ---------------------------------------------------------------------------------------------
// Last error, per thread.

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// A C string of `text`; interior NULs cannot be represented, so they are shown as U+FFFD.
fn c_string(text: &str) -> CString {
    CString::new(text)
        .unwrap_or_else(|_| CString::new(text.replace('\0', "\u{FFFD}")).unwrap_or_default())
}

fn set_last_error(message: &str) {
    let text = c_string(message);
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
}

/// Runs one C entry point: clears the thread's last error, guards against panics, records the
/// message of a failure, and maps the outcome to a result code.
fn entry(what: &str, f: impl FnOnce() -> Result<(), FfiError>) -> mantle_result {
    set_last_error("");
    match super::guard(what, f) {
        Ok(()) => mantle_result::MANTLE_OK,
        Err(e) => {
            set_last_error(&e.message);
            e.code.into()
        }
    }
}

fn invalid(message: String) -> FfiError {
    FfiError::new(ErrorCode::InvalidArgument, message)
}

/// Borrows a NUL-terminated UTF-8 argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn arg_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, FfiError> {
    if ptr.is_null() {
        return Err(invalid(format!("`{name}` is NULL")));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string valid for this call.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes.to_str().map_err(|e| {
        invalid(format!(
            "`{name}` is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })
}

fn check_out<T>(out: *mut T, name: &str) -> Result<(), FfiError> {
    if out.is_null() {
        Err(invalid(format!("`{name}` is NULL")))
    } else {
        Ok(())
    }
}

/// An owned C string for the caller, freed by one of the `mantle_*_free` functions.
fn owned_c_string(text: &str) -> *mut c_char {
    c_string(text).into_raw()
}

// ---------------------------------------------------------------------------------------------
// Version and errors.

/// The ABI version this library implements. Compare with `MANTLE_ABI_MAJOR`/`MANTLE_ABI_MINOR`
/// from the header you compiled against: same major, and a minor >= yours. No allocation.
#[no_mangle]
pub extern "C" fn mantle_abi_version() -> mantle_version {
    mantle_version {
        major: MANTLE_ABI_MAJOR,
        minor: MANTLE_ABI_MINOR,
    }
}

/// The plugin's version, with its build tag when it has one: `"0.1.0"`, `"0.1.0 (v2)"`.
/// A static NUL-terminated string owned by the library, valid as long as the library is
/// loaded; do not free it.
#[no_mangle]
pub extern "C" fn mantle_plugin_version() -> *const c_char {
    static VERSION: Lazy<CString> = Lazy::new(|| {
        let version = match crate::BUILD_TAG {
            "" => env!("CARGO_PKG_VERSION").to_string(),
            tag => format!("{} ({tag})", env!("CARGO_PKG_VERSION")),
        };
        c_string(&version)
    });
    VERSION.as_ptr()
}

/// The message of the most recent failed call on the calling thread (empty after a success).
/// Never NULL. The string is owned by the library and valid until the next `mantle_*` call on
/// the same thread; copy it to keep it. Never contains a secret.
#[no_mangle]
pub extern "C" fn mantle_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// A static name for a result code, e.g. `"MANTLE_INVALID_CONFIG"` (`"MANTLE_UNKNOWN"` for
/// numbers this library does not know). Owned by the library; do not free.
#[no_mangle]
pub extern "C" fn mantle_result_name(result: u32) -> *const c_char {
    let name: &'static CStr = match result {
        0 => c"MANTLE_OK",
        1 => c"MANTLE_INVALID_ARGUMENT",
        2 => c"MANTLE_INVALID_CONFIG",
        3 => c"MANTLE_INVALID_HANDLE",
        4 => c"MANTLE_AUTH_UNAVAILABLE",
        5 => c"MANTLE_INTERNAL",
        6 => c"MANTLE_STREAM_FINISHED",
        7 => c"MANTLE_BUFFER_TOO_SMALL",
        _ => c"MANTLE_UNKNOWN",
    };
    name.as_ptr()
}

/// Frees a string returned by this library (`mantle_catalog`'s JSON). NULL is a no-op.
///
/// # Safety
/// `s` is NULL or a string this library returned and that was not freed yet.
#[no_mangle]
pub unsafe extern "C" fn mantle_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    let _ = super::guard("mantle_string_free", || {
        // SAFETY: the caller returns a pointer from `CString::into_raw` in this library, once.
        drop(unsafe { CString::from_raw(s) });
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Providers.

/// Creates a provider from two JSON5 texts: the plugin config (`{discovery: {enabled}}`) and
/// the provider config (`models.providers["amazon-bedrock-mantle"]`); pass `""` for either to
/// use the defaults. On success writes the handle to `*provider_out`; close it with
/// `mantle_provider_close`. Both texts are only read during the call.
///
/// # Safety
/// String arguments are NULL or NUL-terminated; `provider_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mantle_provider_create(
    plugin_config: *const c_char,
    provider_config: *const c_char,
    provider_out: *mut u64,
) -> mantle_result {
    entry("mantle_provider_create", || {
        check_out(provider_out, "provider_out")?;
        // SAFETY: the caller's promise on the string arguments, forwarded.
        let plugin_config = unsafe { arg_str(plugin_config, "plugin_config") }?;
        // SAFETY: as above.
        let provider_config = unsafe { arg_str(provider_config, "provider_config") }?;
        let id = super::provider_create(plugin_config, provider_config)?;
        // SAFETY: checked non-NULL above; the caller promises it is writable.
        unsafe { provider_out.write(id) };
        Ok(())
    })
}

/// Closes a provider: cancels and frees its streams (with their event buffers), stops its
/// runtime. The handle (and its streams' handles) are invalid afterwards. A thread waiting in
/// `mantle_stream_next` on one of its streams returns at once with that stream's one terminal
/// event (`MANTLE_EVENT_ERROR`, kind `cancelled`, message "cancelled: the provider was
/// closed"), whose buffers are static and stay valid.
#[no_mangle]
pub extern "C" fn mantle_provider_close(provider: u64) -> mantle_result {
    entry("mantle_provider_close", || super::provider_close(provider))
}

/// Runs discovery (or serves the hour-long cache) and returns the catalog. `*outcome_out`
/// gets the outcome; `*json_out` gets a NUL-terminated JSON text `{outcome, provider}` owned
/// by the caller, to free with `mantle_string_free`. A skipped or failed discovery is an
/// outcome, not an error: the call still returns `MANTLE_OK`.
///
/// # Safety
/// `outcome_out` and `json_out` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mantle_catalog(
    provider: u64,
    outcome_out: *mut mantle_outcome,
    json_out: *mut *mut c_char,
) -> mantle_result {
    entry("mantle_catalog", || {
        check_out(outcome_out, "outcome_out")?;
        check_out(json_out, "json_out")?;
        let (outcome, json) = super::catalog(provider)?;
        let outcome = match outcome {
            Outcome::Ready { .. } => mantle_outcome::MANTLE_OUTCOME_READY,
            Outcome::Skipped { .. } => mantle_outcome::MANTLE_OUTCOME_SKIPPED,
            Outcome::AuthRejected { .. } => mantle_outcome::MANTLE_OUTCOME_AUTH_REJECTED,
            Outcome::Unavailable { .. } => mantle_outcome::MANTLE_OUTCOME_UNAVAILABLE,
        };
        // SAFETY: both checked non-NULL above; the caller promises they are writable.
        unsafe {
            outcome_out.write(outcome);
            json_out.write(owned_c_string(&json));
        }
        Ok(())
    })
}

/// Resolves the bearer token the provider would use now (explicit key, environment, or a
/// token minted from AWS credentials). Fills `*token_out`; free it with `mantle_token_free`.
///
/// # Safety
/// `token_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mantle_bearer_token(
    provider: u64,
    token_out: *mut mantle_token,
) -> mantle_result {
    entry("mantle_bearer_token", || {
        check_out(token_out, "token_out")?;
        let t = super::bearer_token(provider)?;
        let token = mantle_token {
            token: owned_c_string(t.token.expose()),
            expires_at_unix: t.expires_at.map(crate::clock::unix_seconds).unwrap_or(0),
            source: owned_c_string(t.source.as_str()),
        };
        // SAFETY: checked non-NULL above; the caller promises it is writable.
        unsafe { token_out.write(token) };
        Ok(())
    })
}

/// Frees the strings of a token filled by `mantle_bearer_token`, wiping the token bytes first,
/// and sets its pointers to NULL (so a second call is a no-op). NULL is a no-op.
///
/// # Safety
/// `token` is NULL, or points to a token filled by `mantle_bearer_token` (or already freed by
/// this function).
#[no_mangle]
pub unsafe extern "C" fn mantle_token_free(token: *mut mantle_token) {
    if token.is_null() {
        return;
    }
    let _ = super::guard("mantle_token_free", || {
        // SAFETY: non-NULL; the caller promises it is a token this library filled.
        let t = unsafe { &mut *token };
        if !t.token.is_null() {
            // SAFETY: a pointer from `CString::into_raw` in this library, freed once (nulled).
            let secret = unsafe { CString::from_raw(t.token) };
            let mut bytes = secret.into_bytes();
            zeroize::Zeroize::zeroize(&mut bytes);
            t.token = std::ptr::null_mut();
        }
        if !t.source.is_null() {
            // SAFETY: as above.
            drop(unsafe { CString::from_raw(t.source) });
            t.source = std::ptr::null_mut();
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Streams.

/// An event that could not be written as JSON (never expected: every event serializes).
fn json_failed(err: serde_json::Error) -> FfiError {
    FfiError::new(ErrorCode::Internal, err.to_string())
}

/// The terminal event handed to a pull that was running when its stream was freed or its
/// provider closed: static buffers, valid forever, since the stream's own are freed.
fn closed_stream_event(reason: &str) -> &'static EventBuffers {
    fn make(reason: &str) -> EventBuffers {
        EventBuffers::of(&[crate::stream::queue::cancelled_event(reason)])
            .expect("a cancelled event is JSON")
    }
    static PROVIDER_CLOSED: Lazy<EventBuffers> =
        Lazy::new(|| make(crate::stream::CANCELLED_PROVIDER_CLOSED));
    static STREAM_FREED: Lazy<EventBuffers> = Lazy::new(|| make(crate::stream::CANCELLED_BY_HOST));
    if reason == crate::stream::CANCELLED_PROVIDER_CLOSED {
        &PROVIDER_CLOSED
    } else {
        &STREAM_FREED
    }
}

/// Starts a streaming request. `request_json` is the canonical request (OpenAI Chat
/// Completions shaped JSON plus `reasoning`, `headers`, `include_raw`, `include_json`, ...),
/// read during the call only. On success writes the stream handle to `*stream_out`; free it
/// with `mantle_stream_free`. A malformed request fails here; upstream failures arrive later
/// as the stream's `MANTLE_EVENT_ERROR` event.
///
/// # Safety
/// `request_json` is NULL or NUL-terminated; `stream_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mantle_stream_start(
    provider: u64,
    request_json: *const c_char,
    stream_out: *mut u64,
) -> mantle_result {
    entry("mantle_stream_start", || {
        check_out(stream_out, "stream_out")?;
        // SAFETY: the caller's promise on the string argument, forwarded.
        let request = unsafe { arg_str(request_json, "request_json") }?;
        let id = super::stream_start(provider, request)?;
        // SAFETY: checked non-NULL above; the caller promises it is writable.
        unsafe { stream_out.write(id) };
        Ok(())
    })
}

/// Pulls the next event, waiting at most `timeout_ms` milliseconds (0: do not wait).
/// `*poll_out` says what happened; on `MANTLE_POLL_EVENT`, `*event_out` is filled and its
/// buffers stay valid until the next `mantle_stream_next` on this stream or its
/// `mantle_stream_free` (or its provider's close). Exactly one terminal event (DONE or ERROR)
/// is delivered; after it, calls report `MANTLE_POLL_FINISHED`. While one thread pulls a
/// stream, another thread's pull of the same stream fails with `MANTLE_INVALID_ARGUMENT`;
/// freeing the stream or closing its provider from another thread ends a waiting pull with the
/// `cancelled` terminal event.
///
/// # Safety
/// `poll_out` and `event_out` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mantle_stream_next(
    stream: u64,
    timeout_ms: u64,
    poll_out: *mut mantle_poll,
    event_out: *mut mantle_event,
) -> mantle_result {
    entry("mantle_stream_next", || {
        check_out(poll_out, "poll_out")?;
        check_out(event_out, "event_out")?;
        let slot = super::stream_slot(stream)?;
        let mut buffers = lock_c_buffers(stream, &slot)?;
        let poll = match super::pull(stream, &slot, timeout_ms)? {
            Poll::Pending => mantle_poll::MANTLE_POLL_PENDING,
            Poll::Finished => mantle_poll::MANTLE_POLL_FINISHED,
            Poll::Event(e) => {
                let event = if let Some(reason) = slot.closed.get() {
                    // Freed or closed while this pull ran: the slot's buffers are about to go,
                    // so hand out the static terminal event (this stream's one terminal event).
                    closed_stream_event(reason).event(0)
                } else {
                    buffers
                        .refill(std::slice::from_ref(&e), slot.handle.event_json())
                        .map_err(json_failed)?;
                    buffers.event(0)
                };
                // SAFETY: checked non-NULL above; the caller promises it is writable. The
                // pointers stay valid until the next pull or free of this stream (the buffers
                // live in its slot), or forever for the static closed-stream event.
                unsafe { event_out.write(event) };
                mantle_poll::MANTLE_POLL_EVENT
            }
        };
        // SAFETY: checked non-NULL above; the caller promises it is writable.
        unsafe { poll_out.write(poll) };
        Ok(())
    })
}

/// Locks a stream's C buffers for the whole of a pull: the buffers the previous events point
/// into are replaced only by this pull, and a second thread pulling the same stream is refused.
fn lock_c_buffers<'a>(
    stream: u64,
    slot: &'a super::StreamSlot,
) -> Result<std::sync::MutexGuard<'a, EventBuffers>, FfiError> {
    match slot.c_buffers.try_lock() {
        Ok(b) => Ok(b),
        Err(std::sync::TryLockError::Poisoned(p)) => Ok(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => Err(FfiError::new(
            ErrorCode::InvalidArgument,
            format!("stream {stream}: {}", crate::stream::PullBusy),
        )),
    }
}

/// ABI 1.2. Pulls up to `capacity` events in one call, waiting at most `timeout_ms`
/// milliseconds for the first (0: do not wait): the same rules as `mantle_stream_next`, with
/// one call and one lock per batch instead of per event. `events_out` points to an array of
/// `capacity` events (at least 1). On `MANTLE_POLL_EVENT`, `*count_out` (>= 1) events are
/// filled, a terminal one always last; their buffers stay valid until the next pull on this
/// stream (either function) or its `mantle_stream_free` (or its provider's close). On
/// `MANTLE_POLL_PENDING` or `MANTLE_POLL_FINISHED`, `*count_out` is 0. The library reuses one
/// buffer per stream from pull to pull (no allocation per event once it is big enough): copy
/// what you keep of an event before the next pull, whose events are written over it.
///
/// # Safety
/// `events_out` is NULL or points to `capacity` writable events; `count_out` and `poll_out`
/// are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn mantle_stream_next_batch(
    stream: u64,
    timeout_ms: u64,
    events_out: *mut mantle_event,
    capacity: usize,
    count_out: *mut usize,
    poll_out: *mut mantle_poll,
) -> mantle_result {
    entry("mantle_stream_next_batch", || {
        check_out(events_out, "events_out")?;
        check_out(count_out, "count_out")?;
        check_out(poll_out, "poll_out")?;
        if capacity == 0 {
            return Err(FfiError::new(
                ErrorCode::InvalidArgument,
                "capacity: must be at least 1",
            ));
        }
        let slot = super::stream_slot(stream)?;
        let mut buffers = lock_c_buffers(stream, &slot)?;
        let mut pulled = Vec::new();
        let (poll, count) =
            match super::pull_batch(stream, &slot, timeout_ms, capacity, &mut pulled)? {
                crate::stream::Batch::Pending => (mantle_poll::MANTLE_POLL_PENDING, 0),
                crate::stream::Batch::Finished => (mantle_poll::MANTLE_POLL_FINISHED, 0),
                crate::stream::Batch::Events => {
                    if let Some(reason) = slot.closed.get() {
                        // Freed or closed while this pull ran: only the static terminal event.
                        let event = closed_stream_event(reason).event(0);
                        // SAFETY: checked non-NULL; the caller promises `capacity` (>= 1) writable
                        // events. The static buffers are valid forever.
                        unsafe { events_out.write(event) };
                        (mantle_poll::MANTLE_POLL_EVENT, 1)
                    } else {
                        buffers
                            .refill(&pulled, slot.handle.event_json())
                            .map_err(json_failed)?;
                        for i in 0..buffers.len() {
                            // SAFETY: `i < pulled.len() <= capacity` (the batch is bounded by it),
                            // and the caller promises `capacity` writable events. The pointers
                            // stay valid until the next pull or free of this stream.
                            unsafe { events_out.add(i).write(buffers.event(i)) };
                        }
                        (mantle_poll::MANTLE_POLL_EVENT, buffers.len())
                    }
                }
            };
        // SAFETY: checked non-NULL above; the caller promises both are writable.
        unsafe {
            count_out.write(count);
            poll_out.write(poll);
        }
        Ok(())
    })
}

/// Cancels a stream: aborts the upstream request at once. The next pull yields a `cancelled`
/// error event (unless a terminal event was already delivered). The handle stays valid until
/// `mantle_stream_free`.
#[no_mangle]
pub extern "C" fn mantle_stream_cancel(stream: u64) -> mantle_result {
    entry("mantle_stream_cancel", || super::stream_cancel(stream))
}

/// Frees a stream (cancelling it if still running) and the buffers of its last event. The
/// handle is invalid afterwards.
#[no_mangle]
pub extern "C" fn mantle_stream_free(stream: u64) -> mantle_result {
    entry("mantle_stream_free", || super::stream_close(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        ptr::{null, null_mut},
        sync::Arc,
    };

    fn last_error() -> String {
        // SAFETY: the library's own thread-local string, read on the same thread.
        unsafe { CStr::from_ptr(mantle_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn result_numbers_match_the_rust_abi() {
        for code in [
            ErrorCode::Ok,
            ErrorCode::InvalidArgument,
            ErrorCode::InvalidConfig,
            ErrorCode::InvalidHandle,
            ErrorCode::AuthUnavailable,
            ErrorCode::Internal,
            ErrorCode::StreamFinished,
            ErrorCode::BufferTooSmall,
        ] {
            let c: mantle_result = code.into();
            assert_eq!(c as u32, code as u32);
            // SAFETY: a static string from the library.
            let name = unsafe { CStr::from_ptr(mantle_result_name(c as u32)) };
            assert_eq!(name.to_str().unwrap(), format!("{c:?}"));
        }
    }

    #[test]
    fn event_kind_numbers_match_the_rust_abi() {
        for n in 1..=9u32 {
            let kind: EventKind = match n {
                1 => EventKind::Start,
                2 => EventKind::TextDelta,
                3 => EventKind::ReasoningDelta,
                4 => EventKind::ToolCallStart,
                5 => EventKind::ToolCallDelta,
                6 => EventKind::ToolCallEnd,
                7 => EventKind::Usage,
                8 => EventKind::Done,
                _ => EventKind::Error,
            };
            assert_eq!(kind as u32, n);
            assert_eq!(mantle_event_kind::from(kind) as u32, n);
        }
    }

    #[test]
    fn null_pointers_are_invalid_arguments_naming_the_argument() {
        let mut id = 0u64;
        // SAFETY: NULL arguments are exactly what is being tested; the others are valid.
        let r = unsafe { mantle_provider_create(null(), c"".as_ptr(), &mut id) };
        assert_eq!(r, mantle_result::MANTLE_INVALID_ARGUMENT);
        assert!(
            last_error().contains("`plugin_config` is NULL"),
            "{}",
            last_error()
        );
        // SAFETY: as above.
        let r = unsafe { mantle_provider_create(c"".as_ptr(), c"".as_ptr(), null_mut()) };
        assert_eq!(r, mantle_result::MANTLE_INVALID_ARGUMENT);
        assert!(last_error().contains("`provider_out`"), "{}", last_error());
        // SAFETY: as above.
        unsafe { mantle_string_free(null_mut()) };
        // SAFETY: as above.
        unsafe { mantle_token_free(null_mut()) };
    }

    #[test]
    fn invalid_utf8_is_an_invalid_argument() {
        let bad = [b'{', 0xff, b'}', 0];
        let mut id = 0u64;
        // SAFETY: a NUL-terminated byte string; not UTF-8 on purpose.
        let r = unsafe { mantle_provider_create(bad.as_ptr().cast(), c"".as_ptr(), &mut id) };
        assert_eq!(r, mantle_result::MANTLE_INVALID_ARGUMENT);
        assert!(
            last_error().contains("`plugin_config` is not valid UTF-8 (invalid byte at offset 1)"),
            "{}",
            last_error()
        );
    }

    #[test]
    fn a_panic_becomes_an_internal_result_with_a_message() {
        let r = entry("mantle_test_entry", || panic!("boom in the core"));
        assert_eq!(r, mantle_result::MANTLE_INTERNAL);
        let message = last_error();
        assert!(
            message.starts_with("mantle_test_entry: internal error")
                && message.contains("boom in the core"),
            "{message}"
        );
    }

    #[test]
    fn invalid_config_names_the_key() {
        let mut id = 0u64;
        // SAFETY: valid NUL-terminated strings and a writable out-pointer.
        let r = unsafe { mantle_provider_create(c"".as_ptr(), c"{regoin: 'x'}".as_ptr(), &mut id) };
        assert_eq!(r, mantle_result::MANTLE_INVALID_CONFIG);
        assert!(last_error().contains("regoin"), "{}", last_error());
    }

    #[test]
    fn a_freed_stream_is_an_invalid_handle() {
        let mut provider = 0u64;
        // SAFETY: valid NUL-terminated strings and writable out-pointers throughout.
        unsafe {
            let r = mantle_provider_create(
                c"{discovery: {enabled: false}}".as_ptr(),
                c"{baseUrl: 'http://127.0.0.1:9/v1', apiKey: 'k'}".as_ptr(),
                &mut provider,
            );
            assert_eq!(r, mantle_result::MANTLE_OK, "{}", last_error());
            let mut stream = 0u64;
            let request =
                c"{\"model\": \"openai.gpt-oss-20b\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}";
            let r = mantle_stream_start(provider, request.as_ptr(), &mut stream);
            assert_eq!(r, mantle_result::MANTLE_OK, "{}", last_error());
            assert_eq!(mantle_stream_free(stream), mantle_result::MANTLE_OK);
            let mut poll = mantle_poll::MANTLE_POLL_PENDING;
            let mut event = std::mem::MaybeUninit::<mantle_event>::uninit();
            let r = mantle_stream_next(stream, 0, &mut poll, event.as_mut_ptr());
            assert_eq!(r, mantle_result::MANTLE_INVALID_HANDLE);
            assert!(
                last_error().contains("unknown or closed"),
                "{}",
                last_error()
            );
            assert_eq!(
                mantle_stream_cancel(stream),
                mantle_result::MANTLE_INVALID_HANDLE
            );
            assert_eq!(
                mantle_stream_free(stream),
                mantle_result::MANTLE_INVALID_HANDLE
            );
            assert_eq!(mantle_provider_close(provider), mantle_result::MANTLE_OK);
        }
    }

    #[test]
    fn success_clears_the_last_error() {
        let _ = mantle_provider_close(u64::MAX);
        assert!(last_error().contains("unknown or closed"));
        let v = mantle_abi_version();
        assert_eq!(
            (v.major, v.minor),
            (mantle_abi::ABI_MAJOR, mantle_abi::ABI_MINOR)
        );
        let mut id = 0u64;
        // SAFETY: valid NUL-terminated strings and a writable out-pointer.
        let r = unsafe {
            mantle_provider_create(
                c"{discovery: {enabled: false}}".as_ptr(),
                c"".as_ptr(),
                &mut id,
            )
        };
        assert_eq!(r, mantle_result::MANTLE_OK, "{}", last_error());
        assert_eq!(last_error(), "");
        assert_eq!(mantle_provider_close(id), mantle_result::MANTLE_OK);
    }

    #[test]
    fn deep_config_and_request_are_refused_on_a_256_kib_stack() {
        // Failed before the fix: json5 recursed 20,000 deep and the process died (SIGSEGV).
        let server = mantle_mock_server::MockMantle::start(None).unwrap();
        let cfg =
            CString::new(format!("{{baseUrl: '{}', apiKey: 'k'}}", server.base_url())).unwrap();
        let mut provider = 0u64;
        // SAFETY: valid NUL-terminated strings and a writable out-pointer.
        let r = unsafe { mantle_provider_create(c"".as_ptr(), cfg.as_ptr(), &mut provider) };
        assert_eq!(r, mantle_result::MANTLE_OK, "{}", last_error());
        let worker = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let deep = CString::new(format!("{{a: {}}}", "[".repeat(20_000))).unwrap();
                let mut id = 0u64;
                // SAFETY: as above.
                let r = unsafe { mantle_provider_create(c"".as_ptr(), deep.as_ptr(), &mut id) };
                assert_eq!(r, mantle_result::MANTLE_INVALID_CONFIG);
                assert!(
                    last_error().contains("nested deeper than the limit of 64"),
                    "{}",
                    last_error()
                );
                // SAFETY: as above.
                let r = unsafe { mantle_provider_create(deep.as_ptr(), c"".as_ptr(), &mut id) };
                assert_eq!(r, mantle_result::MANTLE_INVALID_CONFIG);
                let request = CString::new(format!(
                    r#"{{"model":"m","messages":{}}}"#,
                    "[".repeat(20_000)
                ))
                .unwrap();
                let mut stream = 0u64;
                // SAFETY: as above.
                let r = unsafe { mantle_stream_start(provider, request.as_ptr(), &mut stream) };
                assert_eq!(r, mantle_result::MANTLE_INVALID_ARGUMENT);
                assert!(last_error().contains("limit of 64"), "{}", last_error());
            })
            .unwrap();
        worker.join().expect("the small-stack thread survived");
        assert_eq!(mantle_provider_close(provider), mantle_result::MANTLE_OK);
    }

    /// Pulls once; returns the poll and, for an event, its kind and JSON (copied).
    fn pull(
        stream: u64,
        timeout_ms: u64,
    ) -> Result<(mantle_poll, Option<(mantle_event_kind, String)>), String> {
        let mut poll = mantle_poll::MANTLE_POLL_PENDING;
        let mut event = std::mem::MaybeUninit::<mantle_event>::zeroed();
        // SAFETY: writable out-pointers.
        let r = unsafe { mantle_stream_next(stream, timeout_ms, &mut poll, event.as_mut_ptr()) };
        if r != mantle_result::MANTLE_OK {
            return Err(format!("{r:?}: {}", last_error()));
        }
        if poll != mantle_poll::MANTLE_POLL_EVENT {
            return Ok((poll, None));
        }
        // SAFETY: filled on MANTLE_POLL_EVENT; valid until the next pull of this stream.
        let event = unsafe { event.assume_init() };
        // SAFETY: `json` points to `json_len` bytes (see above).
        let json = unsafe { std::slice::from_raw_parts(event.json.cast::<u8>(), event.json_len) };
        Ok((
            poll,
            Some((event.kind, String::from_utf8(json.to_vec()).unwrap())),
        ))
    }

    #[test]
    fn a_concurrent_pull_is_refused_and_provider_close_ends_a_waiting_pull_and_frees_buffers() {
        use mantle_mock_server::{openai_text_stream, MockMantle, Reply, Route, Step};
        let server = MockMantle::start(None).unwrap();
        let mut steps = openai_text_stream("m", "first", 16);
        steps.truncate(2);
        steps.push(Step::Stall);
        server.push(Route::ChatCompletions, Reply::sse(steps));
        let cfg =
            CString::new(format!("{{baseUrl: '{}', apiKey: 'k'}}", server.base_url())).unwrap();
        let (mut provider, mut stream) = (0u64, 0u64);
        // SAFETY: valid NUL-terminated strings and writable out-pointers.
        unsafe {
            assert_eq!(
                mantle_provider_create(c"".as_ptr(), cfg.as_ptr(), &mut provider),
                mantle_result::MANTLE_OK
            );
            let request =
                c"{\"model\": \"openai.gpt-oss-20b\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}";
            assert_eq!(
                mantle_stream_start(provider, request.as_ptr(), &mut stream),
                mantle_result::MANTLE_OK
            );
        }
        let mut kinds = Vec::new();
        // Bounded: a stream that ends early fails here instead of looping forever.
        for _ in 0..20 {
            if kinds.len() == 2 {
                break;
            }
            if let (_, Some((kind, _))) = pull(stream, 5_000).unwrap() {
                kinds.push(kind);
            }
        }
        assert_eq!(
            kinds,
            [
                mantle_event_kind::MANTLE_EVENT_START,
                mantle_event_kind::MANTLE_EVENT_TEXT_DELTA
            ]
        );
        let slot = Arc::downgrade(&super::super::stream_slot(stream).unwrap());

        // The waiter retries while the main thread's own probing pull happens to hold the
        // stream (either thread may be the one refused); once in, it waits up to 60 s.
        let waiter = std::thread::spawn(move || loop {
            match pull(stream, 60_000) {
                Err(e) if e.contains("another thread") => std::thread::yield_now(),
                first => break (first, pull(stream, 0)),
            }
        });
        let busy = loop {
            match pull(stream, 0) {
                Err(e) => break e,
                Ok((mantle_poll::MANTLE_POLL_PENDING, None)) => std::thread::yield_now(),
                Ok(other) => panic!("unexpected {other:?}"),
            }
        };
        assert!(
            busy.starts_with("MANTLE_INVALID_ARGUMENT") && busy.contains("another thread"),
            "{busy}"
        );

        assert_eq!(mantle_provider_close(provider), mantle_result::MANTLE_OK);
        let (first, after) = waiter.join().unwrap();
        let (poll, event) = first.expect("the waiting pull gets the terminal event");
        assert_eq!(poll, mantle_poll::MANTLE_POLL_EVENT);
        let (kind, json) = event.unwrap();
        assert_eq!(kind, mantle_event_kind::MANTLE_EVENT_ERROR);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            (v["kind"].as_str(), v["message"].as_str()),
            (
                Some("cancelled"),
                Some("cancelled: the provider was closed")
            )
        );
        assert!(after.unwrap_err().starts_with("MANTLE_INVALID_HANDLE"));
        // The stream's slot, and with it its C event buffers, is gone once the pull returned.
        assert!(
            slot.upgrade().is_none(),
            "closing the provider freed the stream's buffers"
        );
    }
}
