//! The stream task's contract (spec §4, §5) through the safe core, against the local server:
//! which answers are retried and how often, what an error says, when the task lets go of the
//! upstream, and what the host's handle does. The same rules are checked through the ABI by the
//! integration tests; these pin them in the plugin's own suite (the one mutation testing runs).

use std::time::Duration;

use mantle_mock_server::{openai_text_stream, sse_data, MockMantle, Reply, Route, Step};
use mantle_provider::{
    errors::{ErrorKind, StreamError},
    provider::{Provider, ProviderOptions},
    stream::{Poll, StreamEvent, StreamHandle, MAX_ATTEMPTS},
};
use serde_json::json;

const CHAT: &str = "/v1/chat/completions";

fn provider(server: &MockMantle) -> Provider {
    let cfg = json!({"baseUrl": server.base_url(), "apiKey": "k"}).to_string();
    Provider::new("", &cfg, ProviderOptions::default()).unwrap()
}

fn start(p: &Provider, extra: serde_json::Value) -> StreamHandle {
    let mut req = json!({"model": "openai.gpt-oss-20b",
        "messages": [{"role": "user", "content": "hi"}]});
    req.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    p.start_stream(&req.to_string()).unwrap()
}

/// Every event up to and including the terminal one (which must come within 20 s).
fn events(stream: &StreamHandle) -> Vec<StreamEvent> {
    let mut out = Vec::new();
    loop {
        match stream.next(Duration::from_secs(20)).unwrap() {
            Poll::Event(e) => out.push(e.event),
            Poll::Pending => panic!("stalled after {out:?}"),
            Poll::Finished => return out,
        }
    }
}

fn error_of(events: &[StreamEvent]) -> &StreamError {
    match events.last() {
        Some(StreamEvent::Error(e)) => e,
        other => panic!("expected a terminal error, got {other:?}"),
    }
}

/// Waits until the server has received a request on the chat route.
fn wait_for_request(server: &MockMantle) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.requests_to(CHAT).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no request arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn text_of(events: &[StreamEvent]) -> String {
    events.iter().map(StreamEvent::text).collect()
}

#[test]
fn a_5xx_is_retried_until_the_attempt_limit_then_reported() {
    let server = MockMantle::start(None).unwrap();
    for _ in 0..MAX_ATTEMPTS {
        server.push(
            Route::ChatCompletions,
            Reply::status(500, json!({"error": {"message": "boom"}}).to_string()),
        );
    }
    let p = provider(&server);
    let got = events(&start(&p, json!({})));
    let e = error_of(&got);
    assert_eq!(e.kind, ErrorKind::Internal);
    assert_eq!(e.status, Some(500));
    assert_eq!(e.message, "upstream HTTP 500: boom");
    assert_eq!(server.requests_to(CHAT).len(), MAX_ATTEMPTS as usize);
}

#[test]
fn a_429_is_retried_and_the_retry_succeeds() {
    let server = MockMantle::start(None).unwrap();
    server.push(
        Route::ChatCompletions,
        Reply::Status {
            status: 429,
            body: "slow down".into(),
            headers: vec![("retry-after".into(), "0".into())],
        },
    );
    let p = provider(&server);
    let got = events(&start(&p, json!({})));
    assert_eq!(text_of(&got), "echo: hi", "{got:?}");
    assert_eq!(server.requests_to(CHAT).len(), 2);
}

#[test]
fn a_4xx_other_than_429_is_not_retried() {
    for status in [400, 404, 499] {
        let server = MockMantle::start(None).unwrap();
        server.push(
            Route::ChatCompletions,
            Reply::status(status, json!({"error": {"message": "no"}}).to_string()),
        );
        let p = provider(&server);
        let got = events(&start(&p, json!({})));
        let e = error_of(&got);
        assert_eq!(e.status, Some(status));
        assert_eq!(e.message, format!("upstream HTTP {status}: no"));
        assert_eq!(server.requests_to(CHAT).len(), 1, "status {status}");
    }
}

#[test]
fn an_error_body_is_read_whole_up_to_64_kib() {
    let server = MockMantle::start(None).unwrap();
    // Larger than a small cap, well under 64 KiB: read whole, so its JSON message is found.
    let long = "m".repeat(20_000);
    server.push(
        Route::ChatCompletions,
        Reply::status(400, json!({"error": {"message": long}}).to_string()),
    );
    // Over 64 KiB: cut there, so the JSON no longer parses and the message is the text's start;
    // a rate-limit phrase inside the first 64 KiB still classifies it.
    let mut big = "p".repeat(40_000);
    big.push_str(" too many requests ");
    big.push_str(&"q".repeat(60_000));
    let body = json!({"error": {"message": big}}).to_string();
    server.push(Route::ChatCompletions, Reply::status(400, body.clone()));
    let p = provider(&server);
    let e = error_of(&events(&start(&p, json!({})))).clone();
    assert_eq!(e.message, format!("upstream HTTP 400: {long}"));
    assert_eq!(e.kind, ErrorKind::BadRequest);
    let e = error_of(&events(&start(&p, json!({})))).clone();
    assert_eq!(
        e.message,
        format!("upstream HTTP 400: {}", &body[..500]),
        "the cut body is not JSON any more"
    );
    assert_eq!(e.kind, ErrorKind::RateLimit);
}

#[test]
fn the_task_lets_go_of_the_upstream_at_an_in_stream_error() {
    let server = MockMantle::start(None).unwrap();
    let mut steps = openai_text_stream("m", "ab", 1);
    steps.truncate(2); // the role chunk and "a"
    steps.push(sse_data(
        &json!({"error": {"message": "model crashed", "type": "server_error"}}),
    ));
    steps.push(Step::Stall);
    server.push(Route::ChatCompletions, Reply::sse(steps));
    let p = provider(&server);
    let stream = start(&p, json!({}));
    let got = events(&stream);
    assert_eq!(text_of(&got), "a");
    assert!(error_of(&got).message.contains("model crashed"), "{got:?}");
    // The handle is still alive: the task itself dropped the response.
    assert!(
        server.wait_aborted_bodies(1, Duration::from_secs(10)),
        "the upstream body was not released after the terminal event"
    );
    drop(stream);
}

#[test]
fn cancel_ends_the_stream_and_releases_the_upstream() {
    let server = MockMantle::start(None).unwrap();
    server.push(Route::ChatCompletions, Reply::sse(vec![Step::Stall]));
    let p = provider(&server);
    let stream = start(&p, json!({}));
    assert_eq!(format!("{stream:?}"), "StreamHandle { .. }");
    assert!(!stream.is_finished());
    wait_for_request(&server);
    stream.cancel();
    let got = events(&stream);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(error_of(&got).kind, ErrorKind::Cancelled);
    assert!(stream.is_finished());
    assert!(server.wait_aborted_bodies(1, Duration::from_secs(10)));
}

#[test]
fn dropping_the_handle_releases_the_upstream() {
    let server = MockMantle::start(None).unwrap();
    server.push(Route::ChatCompletions, Reply::sse(vec![Step::Stall]));
    let p = provider(&server);
    let stream = start(&p, json!({}));
    // Once the request is in flight, drop without pulling.
    wait_for_request(&server);
    drop(stream);
    assert!(server.wait_aborted_bodies(1, Duration::from_secs(10)));
}

#[test]
fn a_finished_stream_reports_finished() {
    let server = MockMantle::start(None).unwrap();
    let p = provider(&server);
    let stream = start(&p, json!({}));
    let got = events(&stream);
    assert!(
        matches!(got.last(), Some(StreamEvent::Done { .. })),
        "{got:?}"
    );
    assert!(stream.is_finished());
    assert!(matches!(
        stream.next(Duration::ZERO).unwrap(),
        Poll::Finished
    ));
}

#[test]
fn one_recovery_of_each_kind_then_the_refusal_is_final() {
    let server = MockMantle::start(None).unwrap();
    let refuse = |message: &str| {
        Reply::status(
            400,
            json!({"error": {"message": message, "type": "invalid_request_error"}}).to_string(),
        )
    };
    let p = provider(&server);
    let model = json!({"model": "qwen.qwen3-32b", "top_p": 0.5, "seed": 7});
    // A refused parameter is dropped once; a second refused parameter is final.
    server.push(
        Route::ChatCompletions,
        refuse("Unsupported parameter: 'top_p' is not supported with this model."),
    );
    server.push(
        Route::ChatCompletions,
        refuse("Unsupported parameter: 'seed' is not supported with this model."),
    );
    let got = events(&start(&p, model.clone()));
    let e = error_of(&got);
    assert_eq!(e.kind, ErrorKind::BadRequest);
    assert_eq!(
        e.message,
        "upstream HTTP 400: Unsupported parameter: 'seed' is not supported with this model."
    );
    let sent = server.requests_to(CHAT);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].json()["top_p"], json!(0.5));
    assert!(sent[1].json().get("top_p").is_none());
    // A route refused on both routes: one error naming both URLs.
    server.clear_requests();
    let model = json!({"model": "qwen.qwen3-32b"});
    server.push(
        Route::ChatCompletions,
        refuse("The model 'qwen.qwen3-32b' does not support the '/v1/chat/completions' API"),
    );
    server.push(
        Route::Responses,
        refuse("The model 'qwen.qwen3-32b' does not support the '/v1/responses' API"),
    );
    let got = events(&start(&p, model));
    let base = server.base_url();
    assert_eq!(
        error_of(&got).message,
        format!(
            "upstream HTTP 400: The model 'qwen.qwen3-32b' does not support the '/v1/responses' \
             API (tried {base}/chat/completions and {base}/responses)"
        )
    );
    assert_eq!(server.requests_to(CHAT).len(), 1);
    assert_eq!(server.requests_to("/v1/responses").len(), 1);
}

/// The idle timeout runs from the last read, not from the start of the body: a stream whose
/// reads come 120 ms apart outlives a 300 ms idle limit, and one that then stalls fails 300 ms
/// after its last read.
#[test]
fn the_idle_timeout_counts_from_the_last_read() {
    let server = MockMantle::start(None).unwrap();
    let chunk =
        |text: &str| sse_data(&json!({"choices": [{"index": 0, "delta": {"content": text}}]}));
    let mut steady = Vec::new();
    for _ in 0..6 {
        steady.push(Step::Sleep(Duration::from_millis(120)));
        steady.push(chunk("x"));
    }
    let mut finished = steady.clone();
    finished.push(sse_data(
        &json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
    ));
    finished.push(Step::Bytes(b"data: [DONE]\n\n".to_vec()));
    server.push(Route::ChatCompletions, Reply::sse(finished));
    let mut stalled = steady;
    stalled.push(Step::Stall);
    server.push(Route::ChatCompletions, Reply::sse(stalled));

    let p = provider(&server);
    let idle = json!({"timeouts": {"idle_ms": 300}});
    let got = events(&start(&p, idle.clone()));
    assert_eq!(text_of(&got), "xxxxxx", "{got:?}");
    assert!(
        matches!(got.last(), Some(StreamEvent::Done { .. })),
        "{got:?}"
    );

    let began = std::time::Instant::now();
    let got = events(&start(&p, idle));
    let elapsed = began.elapsed();
    assert_eq!(text_of(&got), "xxxxxx", "{got:?}");
    let e = error_of(&got);
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::Timeout, "no data for 300 ms")
    );
    // Six reads 120 ms apart, then 300 ms of silence.
    assert!(
        elapsed >= Duration::from_millis(6 * 120 + 300),
        "{elapsed:?}"
    );
}
