//! The upstream fault matrix, on both routes, through both ABIs pulled raw (the `abi_stable`
//! module's `stream_next` and `stream_next_batch`, and the C API's `mantle_stream_next` and
//! `mantle_stream_next_batch` from a `dlopen`ed copy): every
//! fault ends the stream with exactly one terminal event of the right kind, nothing after it,
//! and closing the providers leaves no plugin thread behind.
//!
//! One test function, so the process's thread count is this test's alone.

mod common;

use std::{ffi::CString, time::Duration};

use common::{
    c_api::{CApi, CEvent},
    raw,
};
use mantle_abi::EventKind;
use mantle_mock_server::{
    anthropic_event, anthropic_text_stream, openai_text_stream, sse_data, MockMantle, Reply, Route,
    Step,
};
use serde_json::{json, Value};

/// A model on each route: (upstream route, model id).
const ROUTES: [(Route, &str); 2] = [
    (Route::ChatCompletions, "openai.gpt-oss-120b"),
    (Route::AnthropicMessages, "anthropic.claude-opus-4-7"),
];

/// What a fault must end with.
struct Expect {
    kind: &'static str,
    status: Option<u16>,
    /// Requests the plugin sends for it (retries included).
    requests: usize,
    /// A piece of the terminal event's message.
    message: &'static str,
}

struct Fault {
    name: &'static str,
    /// Replies to queue for one stream on `route` for `model`.
    replies: fn(Route, &str) -> Vec<Reply>,
    expect: Expect,
}

fn valid_stream(route: Route, model: &str) -> Vec<Step> {
    match route {
        Route::AnthropicMessages => anthropic_text_stream(model, "partial text", 4),
        _ => openai_text_stream(model, "partial text", 4),
    }
}

/// The stream's opening events (start + first text), no terminal.
fn opening(route: Route, model: &str) -> Vec<Step> {
    let mut steps = valid_stream(route, model);
    let keep = match route {
        Route::AnthropicMessages => 3, // message_start, content_block_start, first delta
        _ => 2,                        // role chunk, first delta
    };
    steps.truncate(keep);
    steps
}

fn with(mut steps: Vec<Step>, more: Vec<Step>) -> Vec<Reply> {
    steps.extend(more);
    vec![Reply::sse(steps)]
}

fn status_times(status: u16, n: usize, retry_after: Option<&str>) -> Vec<Reply> {
    (0..n)
        .map(|_| Reply::Status {
            status,
            body: json!({"error": {"message": format!("upstream said {status}"), "type": "x"}})
                .to_string(),
            headers: retry_after
                .map(|v| vec![("retry-after".to_string(), v.to_string())])
                .unwrap_or_default(),
        })
        .collect()
}

/// A fault's expected end: terminal kind, HTTP status, requests sent, a piece of the message.
const fn expect(
    kind: &'static str,
    status: Option<u16>,
    requests: usize,
    message: &'static str,
) -> Expect {
    Expect {
        kind,
        status,
        requests,
        message,
    }
}

/// The stream's opening events, then `bytes`.
fn opening_then(route: Route, model: &str, bytes: &[u8]) -> Vec<Reply> {
    with(opening(route, model), vec![Step::Bytes(bytes.to_vec())])
}

fn fault(name: &'static str, replies: fn(Route, &str) -> Vec<Reply>, expect: Expect) -> Fault {
    Fault {
        name,
        replies,
        expect,
    }
}

fn faults() -> Vec<Fault> {
    let once = 1;
    vec![
        fault(
            "429 with retry-after",
            |_, _| status_times(429, 3, Some("0")),
            expect("rate_limit", Some(429), 3, "upstream HTTP 429"),
        ),
        fault(
            "429 without retry-after",
            |_, _| status_times(429, 3, None),
            expect("rate_limit", Some(429), 3, "upstream HTTP 429"),
        ),
        fault(
            "500",
            |_, _| status_times(500, 3, Some("0")),
            expect("internal", Some(500), 3, "upstream HTTP 500"),
        ),
        fault(
            "503",
            |_, _| status_times(503, 3, Some("0")),
            expect("overloaded", Some(503), 3, "upstream HTTP 503"),
        ),
        fault(
            "stall before headers (not retried: the request was sent)",
            |r, m| {
                vec![Reply::Delayed(
                    Duration::from_secs(30),
                    Box::new(Reply::sse(valid_stream(r, m))),
                )]
            },
            expect("timeout", None, once, "no response within 300 ms"),
        ),
        fault(
            "stall mid-body",
            |r, m| with(opening(r, m), vec![Step::Stall]),
            expect("timeout", None, once, "no data for 300 ms"),
        ),
        fault(
            "disconnect mid-body",
            |r, m| {
                with(
                    opening(r, m),
                    vec![Step::Sleep(Duration::from_millis(100)), Step::Disconnect],
                )
            },
            expect("network", None, once, "stream interrupted"),
        ),
        fault(
            "malformed SSE data",
            |r, m| opening_then(r, m, b"event: content_block_delta\ndata: {not json}\n\n"),
            expect("protocol", None, once, "malformed"),
        ),
        fault(
            "oversized line",
            |r, m| opening_then(r, m, &[b'a'; 1024 * 1024 + 1]),
            expect("protocol", None, once, "exceeds 1048576 bytes"),
        ),
        fault(
            "invalid UTF-8",
            |r, m| opening_then(r, m, b"data: {\"x\": \"\xff\"}\n\n"),
            expect("protocol", None, once, "not valid UTF-8"),
        ),
        fault(
            "truncated JSON at the end of the body",
            |r, m| {
                opening_then(
                    r,
                    m,
                    b"event: content_block_delta\ndata: {\"type\":\"content_bl",
                )
            },
            expect("protocol", None, once, "malformed"),
        ),
        fault(
            "deeply nested JSON event",
            |r, m| opening_then(r, m, format!("data: {}\n\n", "[".repeat(10_000)).as_bytes()),
            expect("protocol", None, once, "limit of 64"),
        ),
        fault(
            "events after the terminal one",
            |r, m| {
                let extra = match r {
                    Route::AnthropicMessages => anthropic_event(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "late"}}),
                    ),
                    _ => {
                        sse_data(&json!({"choices": [{"index": 0, "delta": {"content": "late"}}]}))
                    }
                };
                with(valid_stream(r, m), vec![extra.clone(), extra])
            },
            expect("done", None, once, ""),
        ),
        fault(
            "body ends without a terminal event",
            |r, m| vec![Reply::sse(opening(r, m))],
            expect("network", None, once, "closed the stream before"),
        ),
    ]
}

fn request(model: &str) -> String {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "x"}],
        "max_retry_delay_ms": 1000,
        "timeouts": {"first_byte_ms": 300, "idle_ms": 300},
    })
    .to_string()
}

/// The terminal event's JSON after checking the stream's shape; `texts` = the text deltas.
fn check(name: &str, api: &str, events: &[(EventKind, String, Value)], expect: &Expect) {
    let (kind, _, json) = raw::only_terminal(events);
    let what = format!("{name} ({api}): {events:?}");
    match expect.kind {
        "done" => {
            assert_eq!(*kind, EventKind::Done, "{what}");
            let texts: String = events
                .iter()
                .filter(|e| e.0 == EventKind::TextDelta)
                .map(|e| e.1.as_str())
                .collect();
            assert_eq!(
                texts, "partial text",
                "nothing after the terminal event: {what}"
            );
        }
        want => {
            assert_eq!(*kind, EventKind::Error, "{what}");
            assert_eq!(json["kind"], want, "{what}");
            assert_eq!(
                json["status"].as_u64().map(|s| s as u16),
                expect.status,
                "{what}"
            );
            let message = json["message"].as_str().unwrap_or_default();
            assert!(message.contains(expect.message), "{what}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The C API, from a separately dlopened copy of the library.

impl CApi {
    /// Pulls a stream to `FINISHED` (twice); returns the events with their buffers copied.
    fn drain(&self, provider: u64, request: &str) -> Vec<(EventKind, String, Value)> {
        let request = CString::new(request).unwrap();
        let mut stream = 0;
        // SAFETY: as above.
        let rc = unsafe { (self.start)(provider, request.as_ptr(), &mut stream) };
        assert_eq!(rc, 0, "{}", self.error());
        let mut events = Vec::new();
        let end = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                std::time::Instant::now() < end,
                "C stream did not finish: {events:?}"
            );
            let (mut poll, mut ev) = (u32::MAX, std::mem::MaybeUninit::<CEvent>::zeroed());
            // SAFETY: writable out pointers.
            let rc = unsafe { (self.next)(stream, 200, &mut poll, ev.as_mut_ptr()) };
            assert_eq!(rc, 0, "{}", self.error());
            match poll {
                0 => {
                    // SAFETY: filled by the library on MANTLE_POLL_EVENT; the buffers are valid
                    // until the next pull of this stream.
                    events.push(unsafe { copy_event(&ev.assume_init()) });
                }
                1 => {}
                2 => break,
                p => panic!("unknown poll {p}"),
            }
        }
        let (mut poll, mut ev) = (u32::MAX, std::mem::MaybeUninit::<CEvent>::zeroed());
        // SAFETY: as above.
        assert_eq!(
            unsafe { (self.next)(stream, 0, &mut poll, ev.as_mut_ptr()) },
            0
        );
        assert_eq!(poll, 2, "FINISHED stays FINISHED");
        // SAFETY: a handle this library gave out, freed once.
        assert_eq!(unsafe { (self.free)(stream) }, 0);
        events
    }
}

/// Copies a C event out of the library's buffers.
///
/// # Safety
/// `ev` was filled by a pull of the library and no later pull of its stream ran yet.
unsafe fn copy_event(ev: &CEvent) -> (EventKind, String, Value) {
    // SAFETY: the caller's promise: the buffers are valid for their lengths.
    let text = unsafe { std::slice::from_raw_parts(ev.text.cast::<u8>(), ev.text_len) };
    // SAFETY: as above.
    let json = unsafe { std::slice::from_raw_parts(ev.json.cast::<u8>(), ev.json_len) };
    let kind = match ev.kind {
        1 => EventKind::Start,
        2 => EventKind::TextDelta,
        3 => EventKind::ReasoningDelta,
        4 => EventKind::ToolCallStart,
        5 => EventKind::ToolCallDelta,
        6 => EventKind::ToolCallEnd,
        7 => EventKind::Usage,
        8 => EventKind::Done,
        9 => EventKind::Error,
        k => panic!("unknown event kind {k}"),
    };
    (
        kind,
        String::from_utf8(text.to_vec()).unwrap(),
        serde_json::from_slice(json).unwrap(),
    )
}

impl CApi {
    /// Like [`CApi::drain`], through `mantle_stream_next_batch` with room for `capacity` events.
    fn drain_batch(
        &self,
        provider: u64,
        request: &str,
        capacity: usize,
    ) -> Vec<(EventKind, String, Value)> {
        let request = CString::new(request).unwrap();
        let mut stream = 0;
        // SAFETY: NUL-terminated input, a writable out pointer.
        let rc = unsafe { (self.start)(provider, request.as_ptr(), &mut stream) };
        assert_eq!(rc, 0, "{}", self.error());
        let mut events = Vec::new();
        let mut room = vec![std::mem::MaybeUninit::<CEvent>::zeroed(); capacity];
        let end = std::time::Instant::now() + Duration::from_secs(30);
        let pull = |room: &mut [std::mem::MaybeUninit<CEvent>]| {
            let (mut count, mut poll) = (usize::MAX, u32::MAX);
            // SAFETY: `room` holds `capacity` writable events; writable out pointers.
            let rc = unsafe {
                (self.next_batch)(
                    stream,
                    200,
                    room.as_mut_ptr().cast(),
                    capacity,
                    &mut count,
                    &mut poll,
                )
            };
            assert_eq!(rc, 0, "{}", self.error());
            (count, poll)
        };
        loop {
            assert!(
                std::time::Instant::now() < end,
                "C stream did not finish: {events:?}"
            );
            match pull(&mut room) {
                (n, 0) => {
                    assert!((1..=capacity).contains(&n), "{n} events for {capacity}");
                    for (i, slot) in room[..n].iter().enumerate() {
                        // SAFETY: the library filled the first `n` events; their buffers
                        // are valid until the next pull of this stream.
                        let e = unsafe { copy_event(&slot.assume_init()) };
                        assert!(
                            !e.0.is_terminal() || i == n - 1,
                            "a terminal event ends its batch"
                        );
                        events.push(e);
                    }
                }
                (0, 1) => {}
                (0, 2) => break,
                other => panic!("unexpected (count, poll) {other:?}"),
            }
        }
        assert_eq!(pull(&mut room), (0, 2), "FINISHED stays FINISHED");
        // SAFETY: a handle this library gave out, freed once.
        assert_eq!(unsafe { (self.free)(stream) }, 0);
        events
    }
}

#[test]
fn every_fault_on_every_route_through_both_abis_ends_with_exactly_one_terminal_event() {
    let server = MockMantle::start(None).unwrap();
    let c_api = CApi::load(
        &common::plugin_path(),
        &common::tempdir().join("c-api-copy.so"),
    );
    raw::module(); // the Rust ABI copy is loaded before the baseline too
    let baseline = common::thread_count();
    let cfg = json!({"baseUrl": server.base_url(), "apiKey": "k"}).to_string();
    let rust_provider = raw::provider_create("", &cfg).unwrap();
    let c_provider = c_api.provider("", &cfg);

    for fault in faults() {
        for (route, model) in ROUTES {
            for api in ["rust-abi", "rust-abi-batch", "c-api", "c-api-batch"] {
                server.clear_requests();
                for reply in (fault.replies)(route, model) {
                    server.push(route, reply);
                }
                let events = match api {
                    "rust-abi" => {
                        let stream = raw::stream_start(rust_provider, &request(model)).unwrap();
                        let events = raw::drain(stream, Duration::from_secs(30));
                        (raw::module().stream_close())(stream)
                            .into_result()
                            .unwrap();
                        events
                    }
                    "rust-abi-batch" => {
                        let stream = raw::stream_start(rust_provider, &request(model)).unwrap();
                        let events = raw::drain_batch(stream, 3, Duration::from_secs(30));
                        (raw::module().stream_close())(stream)
                            .into_result()
                            .unwrap();
                        events
                    }
                    "c-api-batch" => c_api.drain_batch(c_provider, &request(model), 2),
                    _ => c_api.drain(c_provider, &request(model)),
                };
                let name = format!("{} on {model}", fault.name);
                check(&name, api, &events, &fault.expect);
                let path = match route {
                    Route::AnthropicMessages => "/anthropic/v1/messages",
                    _ => "/v1/chat/completions",
                };
                assert_eq!(
                    server.requests_to(path).len(),
                    fault.expect.requests,
                    "{name} ({api}): requests sent"
                );
            }
        }
    }

    raw::provider_close(rust_provider);
    c_api.close_provider(c_provider);
    let left = common::wait_threads_at_most(baseline, Duration::from_secs(10));
    assert!(
        left <= baseline,
        "threads: {left} after close, {baseline} before the providers"
    );
}
