//! Streaming through the ABI on both routes: normalized events, errors, retries, timeouts,
//! cancellation, bounded memory and concurrency (spec §5, §6).

mod common;

use std::time::{Duration, Instant};

use common::*;
use mantle_host_shim::{Event, EventKind};
use mantle_mock_server::{
    anthropic_event, anthropic_tool_and_thinking_stream, openai_tool_and_reasoning_stream,
    sse_data, MockMantle, Reply, Route, Step,
};
use serde_json::{json, Value};

/// The events as comparable JSON, without Start (whose id/model differ by route).
fn normalized(events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.kind != EventKind::Start)
        .map(|e| e.value())
        .collect()
}

#[test]
fn openai_route_text_reasoning_tools_usage() {
    let server = MockMantle::start(None).unwrap();
    server.push(
        Route::ChatCompletions,
        Reply::sse(openai_tool_and_reasoning_stream()),
    );
    let provider = provider_for(&server, "k");
    let events = run_stream(&provider, &request("openai.gpt-oss-120b", "x"));
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    use EventKind::*;
    assert_eq!(
        kinds,
        [
            Start,
            ReasoningDelta,
            ReasoningDelta,
            TextDelta,
            ToolCallStart,
            ToolCallDelta,
            ToolCallDelta,
            ToolCallEnd,
            Usage,
            Done
        ]
    );
    assert_eq!(
        events[4].value(),
        json!({"type": "tool_call_start", "index": 0, "id": "call_1", "name": "get"})
    );
    assert_eq!(
        events[8].value(),
        json!({"type": "usage", "input": 10, "output": 5, "cache_read": 3, "cache_write": 0, "reasoning": 2})
    );
    assert_eq!(terminal(&events).value()["stop_reason"], "tool_use");
    let sent = server.requests_to("/v1/chat/completions")[0].json();
    assert_eq!(sent["stream"], json!(true));
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
}

#[test]
fn anthropic_route_events_headers_and_bearer_only() {
    let server = MockMantle::start(Some("tok")).unwrap();
    server.push(
        Route::AnthropicMessages,
        Reply::sse(anthropic_tool_and_thinking_stream()),
    );
    let provider = provider_for(&server, "tok");
    let mut req = request("anthropic.claude-opus-4-7", "x");
    req["headers"] =
        json!({"x-caller": "c", "x-api-key": "must-not-pass", "authorization": "Bearer evil"});
    let events = run_stream(&provider, &req);
    use EventKind::*;
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            Start,
            ReasoningDelta,
            ReasoningDelta,
            ReasoningDelta,
            TextDelta,
            ToolCallStart,
            ToolCallDelta,
            ToolCallDelta,
            ToolCallEnd,
            Usage,
            Done
        ]
    );
    assert_eq!(
        events[3].value()["signature"],
        "sig==",
        "thinking signature kept"
    );
    assert_eq!(
        events[9].value(),
        json!({"type": "usage", "input": 7, "output": 5, "cache_read": 3, "cache_write": 0, "reasoning": 0})
    );
    assert_eq!(terminal(&events).value()["stop_reason"], "tool_use");

    let r = &server.requests_to("/anthropic/v1/messages")[0];
    assert_eq!(r.header("authorization"), Some("Bearer tok"));
    assert_eq!(
        r.header("x-api-key"),
        None,
        "the bearer token is never sent as x-api-key"
    );
    let names: Vec<&str> = r
        .headers
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| ["accept", "anthropic-version", "anthropic-beta", "x-caller"].contains(k))
        .collect();
    assert_eq!(
        names,
        ["accept", "anthropic-version", "anthropic-beta", "x-caller"],
        "headers in the specified order"
    );
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        r.header("anthropic-beta"),
        Some("fine-grained-tool-streaming-2025-05-14")
    );
    assert_eq!(r.header("accept"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["model"], "anthropic.claude-opus-4-7");
    assert!(body.get("thinking").is_none(), "Opus 4.7 never thinks");
    assert_eq!(body["max_tokens"], 32000);
}

#[test]
fn both_routes_yield_the_same_normalized_events() {
    let server = MockMantle::start(None).unwrap();
    server.push_reasoning_and_tool_streams();
    let provider = provider_for(&server, "k");
    let a = normalized(&run_stream(&provider, &request("openai.gpt-oss-120b", "x")));
    let b = normalized(&run_stream(
        &provider,
        &request("anthropic.claude-opus-4-7", "x"),
    ));
    let strip = |v: &[Value]| -> Vec<Value> {
        v.iter()
            .filter(|e| !(e["type"] == "reasoning_delta" && e["text"] == ""))
            .map(|e| {
                if e["type"] == "tool_call_start" {
                    json!({"type": "tool_call_start", "index": "?", "name": e["name"]})
                } else if e["type"] == "usage" {
                    json!("usage")
                } else if e.get("index").is_some() {
                    let mut e = e.clone();
                    e["index"] = json!("?");
                    e
                } else {
                    e.clone()
                }
            })
            .collect()
    };
    assert_eq!(strip(&a), strip(&b));
}

#[test]
fn raw_payload_is_attached_on_request() {
    let server = MockMantle::start(None).unwrap();
    let provider = provider_for(&server, "k");
    let mut req = request("openai.gpt-oss-120b", "raw");
    req["include_raw"] = json!(true);
    let events = run_stream(&provider, &req);
    let text = events
        .iter()
        .find(|e| e.kind == EventKind::TextDelta)
        .unwrap();
    let raw: Value = serde_json::from_str(&text.raw).expect("raw is the upstream data payload");
    assert_eq!(raw["choices"][0]["delta"]["content"], text.text);
    let plain = run_stream(&provider, &request("openai.gpt-oss-120b", "raw"));
    assert!(plain.iter().all(|e| e.raw.is_empty()));
}

#[test]
fn include_json_false_leaves_only_text_and_unsigned_reasoning_without_json() {
    let server = MockMantle::start(None).unwrap();
    let provider = provider_for(&server, "k");
    for model in ["openai.gpt-oss-120b", "anthropic.claude-opus-4-7"] {
        server.push_reasoning_and_tool_streams();
        server.push_reasoning_and_tool_streams();
        let every = run_stream(&provider, &request(model, "x"));
        let mut lean_request = request(model, "x");
        lean_request["include_json"] = json!(false);
        let lean = run_stream(&provider, &lean_request);
        assert_eq!(lean.len(), every.len(), "{model}");
        let mut without = 0;
        for (lean, every) in lean.iter().zip(&every) {
            assert_eq!(
                (lean.kind, &lean.text),
                (every.kind, &every.text),
                "{model}"
            );
            let value = every.value();
            let whole_in_text = every.kind == EventKind::TextDelta
                || (every.kind == EventKind::ReasoningDelta && value.get("signature").is_none());
            if whole_in_text {
                without += 1;
                assert_eq!(lean.json, "", "{model}: {value}");
                // host-shim makes what the plugin left out from the kind and text.
                assert_eq!(lean.value(), value, "{model}");
            } else if every.kind != EventKind::Start {
                assert_eq!(lean.value(), value, "{model}");
            }
        }
        assert!(
            lean.iter().any(|e| e.kind == EventKind::TextDelta)
                && lean
                    .iter()
                    .any(|e| e.kind == EventKind::ReasoningDelta && e.json.is_empty()),
            "{model}: {without} events without JSON"
        );
        let sent = server.requests_to(match model {
            "openai.gpt-oss-120b" => "/v1/chat/completions",
            _ => "/anthropic/v1/messages",
        });
        assert!(sent.iter().all(|r| r.json().get("include_json").is_none()));
    }
    let anthropic = run_stream(&provider, &{
        server.push_reasoning_and_tool_streams();
        let mut r = request("anthropic.claude-opus-4-7", "x");
        r["include_json"] = json!(false);
        r
    });
    let signed = anthropic
        .iter()
        .find(|e| e.kind == EventKind::ReasoningDelta && !e.json.is_empty())
        .expect("the signature's reasoning delta keeps its JSON");
    assert_eq!(signed.value()["signature"], "sig==");
    let bad = {
        let mut r = request("openai.gpt-oss-120b", "x");
        r["include_json"] = json!("no");
        provider.stream(&r.to_string()).unwrap_err()
    };
    assert_eq!(
        bad.message.as_str(),
        "field `include_json`: expected true or false"
    );
    // Batch pulls (ABI 1.2) follow the stream's choice too (on the OpenAI route, whose
    // reasoning deltas have no signature).
    server.push_reasoning_and_tool_streams();
    let mut r = request("openai.gpt-oss-120b", "batch");
    r["include_json"] = json!(false);
    let mut stream = provider.stream(&r.to_string()).unwrap();
    let mut seen = Vec::new();
    while seen.last() != Some(&EventKind::Done) {
        stream
            .next_batch_with(Duration::from_secs(10), 64, |e| {
                let whole_in_text =
                    matches!(e.kind, EventKind::TextDelta | EventKind::ReasoningDelta);
                assert_eq!(e.json.is_empty(), whole_in_text, "{e:?}");
                seen.push(e.kind);
            })
            .unwrap();
    }
    assert!(
        seen.contains(&EventKind::TextDelta) && seen.contains(&EventKind::ToolCallStart),
        "{seen:?}"
    );
}

fn error_of(events: &[Event]) -> Value {
    let t = terminal(events);
    assert_eq!(t.kind, EventKind::Error, "{events:?}");
    t.value()
}

#[test]
fn upstream_error_bodies_are_classified_on_both_routes() {
    let server = MockMantle::start(None).unwrap();
    let provider = provider_for(&server, "k");
    server.push(Route::ChatCompletions, Reply::status(400, r#"{"error":{"message":"This model's maximum context length is 8192. context_length_exceeded","type":"invalid_request_error"}}"#));
    let e = error_of(&run_stream(&provider, &request("openai.gpt-oss-120b", "x")));
    assert_eq!(
        (
            e["kind"].as_str(),
            e["status"].as_u64(),
            e["retryable"].as_bool()
        ),
        (Some("context_overflow"), Some(400), Some(false))
    );
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("maximum context length"));

    server.push(
        Route::AnthropicMessages,
        Reply::status(
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"bad field"}}"#,
        ),
    );
    let e = error_of(&run_stream(
        &provider,
        &request("anthropic.claude-opus-4-7", "x"),
    ));
    assert_eq!(
        (e["kind"].as_str(), e["status"].as_u64()),
        (Some("bad_request"), Some(400))
    );
    assert!(e["message"].as_str().unwrap().contains("bad field"));

    // An Anthropic error event mid-stream.
    server.push(Route::AnthropicMessages, Reply::sse(vec![
        anthropic_event("message_start", &json!({"type": "message_start", "message": {"id": "m", "usage": {}}})),
        anthropic_event("error", &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})),
    ]));
    let e = error_of(&run_stream(
        &provider,
        &request("anthropic.claude-opus-4-7", "x"),
    ));
    assert_eq!(
        (e["kind"].as_str(), e["retryable"].as_bool()),
        (Some("overloaded"), Some(true))
    );

    // 401 from Mantle.
    server.set_token(Some("other"));
    let e = error_of(&run_stream(&provider, &request("openai.gpt-oss-120b", "x")));
    assert_eq!(
        (e["kind"].as_str(), e["status"].as_u64()),
        (Some("auth"), Some(401))
    );
}

#[test]
fn retries_before_the_first_byte_honouring_retry_after_and_the_bound() {
    let server = MockMantle::start(None).unwrap();
    let provider = provider_for(&server, "k");
    server.push(
        Route::ChatCompletions,
        Reply::Status {
            status: 429,
            body: "{\"error\":{\"message\":\"Too many requests\"}}".into(),
            headers: vec![("retry-after".into(), "1".into())],
        },
    );
    server.push(
        Route::ChatCompletions,
        Reply::status(503, "Service Unavailable"),
    );
    let started = Instant::now();
    let events = run_stream(&provider, &request("openai.gpt-oss-120b", "retry me"));
    assert_eq!(text_of(&events), "echo: retry me");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retry-after: 1 honoured"
    );
    assert_eq!(server.requests_to("/v1/chat/completions").len(), 3);

    server.clear_requests();
    server.push(
        Route::ChatCompletions,
        Reply::Status {
            status: 429,
            body: "slow down".into(),
            headers: vec![("retry-after".into(), "30".into())],
        },
    );
    let mut req = request("openai.gpt-oss-120b", "x");
    req["max_retry_delay_ms"] = json!(500);
    let e = error_of(&run_stream(&provider, &req));
    assert_eq!(
        (
            e["kind"].as_str(),
            e["status"].as_u64(),
            e["retryable"].as_bool()
        ),
        (Some("rate_limit"), Some(429), Some(true))
    );
    assert_eq!(
        server.requests_to("/v1/chat/completions").len(),
        1,
        "a retry-after above the bound is not waited for"
    );

    server.clear_requests();
    for _ in 0..3 {
        server.push(
            Route::ChatCompletions,
            Reply::status(529, "{\"error\":{\"message\":\"Overloaded\"}}"),
        );
    }
    let e = error_of(&run_stream(&provider, &request("openai.gpt-oss-120b", "x")));
    assert_eq!(e["kind"], "overloaded");
    assert_eq!(
        server.requests_to("/v1/chat/completions").len(),
        3,
        "bounded attempts"
    );

    // After the first byte: a mid-stream failure is never retried.
    server.clear_requests();
    server.push(
        Route::ChatCompletions,
        Reply::sse(vec![
            sse_data(&json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "par"}}]})),
            Step::Sleep(Duration::from_millis(100)),
            Step::Disconnect,
        ]),
    );
    let events = run_stream(&provider, &request("openai.gpt-oss-120b", "x"));
    assert_eq!(text_of(&events), "par");
    assert_eq!(error_of(&events)["kind"], "network");
    assert_eq!(server.requests_to("/v1/chat/completions").len(), 1);
}

#[test]
fn connect_errors_are_retried_then_reported_as_network_errors() {
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    // Nothing listens: all three attempts are refused (backoff 200 + 400 ms, within the bound).
    let port = free_port();
    let cfg = json!({"baseUrl": format!("http://127.0.0.1:{port}/v1"), "apiKey": "k"}).to_string();
    let provider = plugin().create_provider("", &cfg).unwrap();
    let mut req = request("openai.gpt-oss-120b", "x");
    req["max_retry_delay_ms"] = json!(5_000);
    let started = Instant::now();
    let e = error_of(&run_stream(&provider, &req));
    assert_eq!(
        (e["kind"].as_str(), e["retryable"].as_bool()),
        (Some("network"), Some(true))
    );
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "two backoffs (200 + 400 ms) were waited before giving up"
    );

    // The server appears after the first refused attempt: the retry reaches it. (Were connect
    // errors not retried, the first refusal would be the stream's error.)
    let port = free_port();
    let cfg = json!({"baseUrl": format!("http://127.0.0.1:{port}/v1"), "apiKey": "k"}).to_string();
    let provider = plugin().create_provider("", &cfg).unwrap();
    let mut stream = provider.stream(&req.to_string()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let server = MockMantle::start_on(([127, 0, 0, 1], port).into(), None).unwrap();
    let events = stream.collect(Duration::from_secs(30)).unwrap();
    assert_eq!(text_of(&events), "echo: x");
    assert_eq!(server.requests_to("/v1/chat/completions").len(), 1);
}

#[test]
fn malformed_oversized_stalled_and_slow_upstreams() {
    let server = MockMantle::start(None).unwrap();
    let provider = provider_for(&server, "k");
    server.push(
        Route::ChatCompletions,
        Reply::sse(vec![Step::Bytes(b"data: {not json\n\n".to_vec())]),
    );
    assert_eq!(
        error_of(&run_stream(&provider, &request("openai.gpt-oss-120b", "x")))["kind"],
        "protocol"
    );

    // A 2 MiB line with no newline: the stream ends with a protocol error instead of growing.
    let huge = vec![b'a'; 2 * 1024 * 1024];
    server.push(
        Route::ChatCompletions,
        Reply::sse(
            huge.chunks(64 * 1024)
                .map(|c| Step::Bytes(c.to_vec()))
                .collect(),
        ),
    );
    let e = error_of(&run_stream(&provider, &request("openai.gpt-oss-120b", "x")));
    assert_eq!(e["kind"], "protocol");
    assert!(e["message"].as_str().unwrap().contains("1048576"), "{e}");

    server.push(
        Route::ChatCompletions,
        Reply::sse(vec![
            sse_data(&json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "a"}}]})),
            Step::Stall,
        ]),
    );
    let mut req = request("openai.gpt-oss-120b", "x");
    req["timeouts"] = json!({"idle_ms": 300});
    let e = error_of(&run_stream(&provider, &req));
    assert_eq!(
        (e["kind"].as_str(), e["retryable"].as_bool()),
        (Some("timeout"), Some(true))
    );
    assert!(
        server.wait_aborted_bodies(1, Duration::from_secs(5)),
        "the stalled upstream connection is closed"
    );

    // A first-byte timeout is final: the request was sent, and a retry could run it twice.
    // The retry bound is wide (10 s) so a retry would happen if the plugin allowed one.
    server.clear_requests();
    server.push(
        Route::ChatCompletions,
        Reply::Delayed(Duration::from_secs(5), Box::new(Reply::status(200, ""))),
    );
    let mut req = request("openai.gpt-oss-120b", "x");
    req["timeouts"] = json!({"first_byte_ms": 200});
    req["max_retry_delay_ms"] = json!(10_000);
    let e = error_of(&run_stream(&provider, &req));
    assert_eq!(
        (e["kind"].as_str(), e["message"].as_str()),
        (Some("timeout"), Some("no response within 200 ms"))
    );
    assert_eq!(
        server.requests_to("/v1/chat/completions").len(),
        1,
        "not retried"
    );

    // The stream ended without [DONE] or a finish reason.
    server.push(
        Route::ChatCompletions,
        Reply::sse(vec![sse_data(
            &json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "a"}}]}),
        )]),
    );
    assert_eq!(
        error_of(&run_stream(&provider, &request("openai.gpt-oss-120b", "x")))["kind"],
        "network"
    );
}

#[test]
fn cancel_aborts_the_upstream_request_at_once() {
    let server = MockMantle::start(None).unwrap();
    let provider = provider_for(&server, "k");
    server.push(
        Route::AnthropicMessages,
        Reply::sse(vec![
            anthropic_event(
                "message_start",
                &json!({"type": "message_start", "message": {"id": "m", "usage": {}}}),
            ),
            Step::Stall,
        ]),
    );
    // Pulled raw through the module, so what is checked is the plugin, not host-shim's `Stream`.
    use abi_stable::std_types::RStr;
    use mantle_abi::FfiPoll;
    let module = provider.plugin().module();
    let text = request("anthropic.claude-opus-4-7", "x").to_string();
    let id = (module.stream_start())(provider.id(), RStr::from_str(&text))
        .into_result()
        .unwrap();
    let next = |ms: u64| (module.stream_next())(id, ms).into_result().unwrap();
    assert!(matches!(next(10_000), FfiPoll::Event(e) if e.kind == EventKind::Start));
    assert!(
        matches!(next(50), FfiPoll::Pending),
        "pending while the upstream stalls"
    );
    (module.stream_cancel())(id).into_result().unwrap();
    // Generous bounds: a loaded 2-core CI machine must not make this flaky; a cancel that did
    // not abort the request would never be seen by the server at all.
    assert!(
        server.wait_aborted_bodies(1, Duration::from_secs(10)),
        "the server sees the connection close"
    );
    match next(10_000) {
        FfiPoll::Event(e) => {
            assert_eq!(e.kind, EventKind::Error);
            let v: serde_json::Value = serde_json::from_str(e.json.as_str()).unwrap();
            assert_eq!(
                (v["kind"].as_str(), v["message"].as_str()),
                (Some("cancelled"), Some("cancelled by the host"))
            );
        }
        other => panic!("expected the cancelled event, got {other:?}"),
    }
    assert!(matches!(next(0), FfiPoll::Finished));
    // Cancelling a finished stream delivers nothing more: still Finished, no second terminal.
    (module.stream_cancel())(id).into_result().unwrap();
    assert!(matches!(next(0), FfiPoll::Finished));
    (module.stream_close())(id).into_result().unwrap();
    let events = run_stream(&provider, &request("openai.gpt-oss-120b", "after"));
    assert_eq!(text_of(&events), "echo: after");
}

#[test]
fn batch_pulls_hand_over_every_event_once_owned_or_borrowed() {
    let server = MockMantle::start(None).unwrap();
    let provider = provider_for(&server, "k");
    let text = "z".repeat(3_000);
    for _ in 0..2 {
        server.push(
            Route::ChatCompletions,
            Reply::sse(mantle_mock_server::openai_text_stream("m", &text, 1)),
        );
    }
    let req = request("openai.gpt-oss-120b", "x").to_string();
    // Borrowed: views of the plugin's buffers, one callback per event, in order.
    let mut stream = provider.stream(&req).unwrap();
    let (mut borrowed, mut borrowed_kinds) = (String::new(), Vec::new());
    let finished = loop {
        match stream.next_batch_with(Duration::from_secs(10), 256, |e| {
            borrowed.push_str(e.text);
            borrowed_kinds.push((e.kind, e.json.to_string()));
        }) {
            Ok(n) => assert!(n > 0 && n <= 256, "{n} events in one batch"),
            Err(e) => break e,
        }
    };
    assert_eq!(finished.code, mantle_host_shim::ErrorCode::StreamFinished);
    assert_eq!(borrowed, text);
    // Owned: the same events.
    let mut stream = provider.stream(&req).unwrap();
    let mut owned = Vec::new();
    while let Ok(batch) = stream.next_batch(Duration::from_secs(10), 256) {
        owned.extend(batch);
    }
    let owned_kinds: Vec<(EventKind, String)> =
        owned.iter().map(|e| (e.kind, e.json.clone())).collect();
    assert_eq!(borrowed_kinds, owned_kinds);
    let terminals: Vec<usize> = owned
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind.is_terminal())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        terminals,
        vec![owned.len() - 1],
        "one terminal event, the last"
    );
    assert_eq!(owned.last().unwrap().kind, EventKind::Done);
}

#[test]
fn dropping_a_stream_closes_the_upstream_connection() {
    let server = MockMantle::start(None).unwrap();
    let provider = provider_for(&server, "k");
    server.push(
        Route::ChatCompletions,
        Reply::sse(vec![
            sse_data(&json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "a"}}]})),
            Step::Stall,
        ]),
    );
    let mut stream = provider
        .stream(&request("openai.gpt-oss-120b", "x").to_string())
        .unwrap();
    assert!(stream.next(Duration::from_secs(5)).unwrap().is_some());
    drop(stream);
    assert!(server.wait_aborted_bodies(1, Duration::from_secs(2)));
}

#[test]
fn a_thousand_concurrent_streams_each_get_their_own_text() {
    let server = MockMantle::start(Some("k")).unwrap();
    let provider = provider_for(&server, "k");
    const N: usize = 1000;
    let mut streams: Vec<_> = (0..N)
        .map(|i| {
            let model = if i % 2 == 0 {
                "openai.gpt-oss-20b"
            } else {
                "anthropic.claude-opus-4-7"
            };
            provider
                .stream(&request(model, &format!("stream number {i}")).to_string())
                .unwrap()
        })
        .collect();
    let mut texts = vec![String::new(); N];
    let mut done = vec![false; N];
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.iter().any(|d| !d) {
        assert!(Instant::now() < deadline, "all streams finish");
        for (i, s) in streams.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            while let Some(e) = s.next(Duration::ZERO).unwrap() {
                match e.kind {
                    EventKind::TextDelta => texts[i].push_str(&e.text),
                    EventKind::Done => {
                        done[i] = true;
                        break;
                    }
                    EventKind::Error => panic!("stream {i} failed: {}", e.json),
                    _ => {}
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    for (i, t) in texts.iter().enumerate() {
        assert_eq!(t, &format!("echo: stream number {i}"));
    }
    assert_eq!(server.requests().len(), N);
}

/// One canonical request with every part (issue #5 point 1), sent to a model on each route:
/// the server's request log shows what each route made of it.
#[test]
fn one_canonical_request_form_is_routed_and_translated_by_the_models_api() {
    let server = MockMantle::start(Some("k")).unwrap();
    server.set_models(vec![json!({"id": "openai.gpt-oss-120b"})]);
    let provider = provider_for(&server, "k");
    let canonical = |model: &str| {
        json!({
            "model": model,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
                ]}
            ],
            "tools": [{"type": "function", "function": {"name": "lookup", "description": "look up", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}],
            "tool_choice": "auto",
            "temperature": 0.3,
            "max_tokens": 512,
            "stop": ["END"],
            "reasoning": "medium",
            "headers": {"x-trace-id": "trace-42"}
        })
    };

    let events = run_stream(&provider, &canonical("openai.gpt-oss-120b"));
    assert_eq!(terminal(&events).kind, EventKind::Done);
    let sent = &server.requests_to("/v1/chat/completions")[0];
    assert_eq!(sent.header("x-trace-id"), Some("trace-42"));
    let body = sent.json();
    assert_eq!(
        body["messages"],
        canonical("m")["messages"],
        "passed through"
    );
    assert_eq!(body["tools"], canonical("m")["tools"]);
    assert_eq!(body["tool_choice"], "auto");
    assert_eq!(body["temperature"], json!(0.3));
    assert_eq!(body["max_tokens"], 512);
    assert_eq!(body["stop"], json!(["END"]));
    assert_eq!(body["reasoning_effort"], "medium");
    for own_key in ["reasoning", "headers"] {
        assert!(
            body.get(own_key).is_none(),
            "{own_key} is not sent upstream"
        );
    }

    let events = run_stream(&provider, &canonical("anthropic.claude-opus-5"));
    assert_eq!(terminal(&events).kind, EventKind::Done);
    assert_eq!(
        server.requests_to("/v1/chat/completions").len(),
        1,
        "routed by api"
    );
    let sent = &server.requests_to("/anthropic/v1/messages")[0];
    assert_eq!(sent.header("x-trace-id"), Some("trace-42"));
    assert_eq!(sent.header("authorization"), Some("Bearer k"));
    assert!(sent.header("x-api-key").is_none());
    let body = sent.json();
    assert_eq!(
        body["system"],
        json!([{"type": "text", "text": "be brief"}])
    );
    assert_eq!(
        body["messages"][0]["content"][1]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="})
    );
    assert_eq!(body["tools"][0]["name"], "lookup");
    assert_eq!(
        body["tools"][0]["input_schema"]["properties"]["q"]["type"],
        "string"
    );
    assert_eq!(body["tool_choice"], json!({"type": "auto"}));
    assert_eq!(body["stop_sequences"], json!(["END"]));
    // Opus 5 is adaptive-only (spec §5): reasoning "medium" passes as the effort, the caller's
    // max_tokens is kept as given, and temperature overrides are dropped.
    assert_eq!(body["thinking"], json!({"type": "adaptive"}), "{body}");
    assert_eq!(body["output_config"], json!({"effort": "medium"}), "{body}");
    assert!(body["thinking"].get("budget_tokens").is_none());
    assert_eq!(body["max_tokens"], 512);
    assert!(body.get("temperature").is_none(), "{body}");
}
