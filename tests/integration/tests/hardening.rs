//! Hostile input and host misuse through the Rust ABI (the plugin's `abi_stable` module, pulled
//! raw, not through host-shim's `Stream`): nothing takes the host down, every misuse is an error
//! code, every stream ends with exactly one terminal event.

mod common;

use std::time::Duration;

use abi_stable::std_types::RStr;
use common::{raw, LISTED_MODEL};
use mantle_abi::{ErrorCode, EventKind, FfiPoll};
use mantle_mock_server::{openai_text_stream, MockMantle, Reply, Route, Step};
use serde_json::json;

/// 20,000 levels of `[` in a JSON5 value.
fn deep_json5() -> String {
    format!("{{ a: {}1{} }}", "[".repeat(20_000), "]".repeat(20_000))
}

fn deep_request() -> String {
    format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":{}"x"{}}}]}}"#,
        "[".repeat(20_000),
        "]".repeat(20_000)
    )
}

#[test]
fn deep_config_request_and_state_blob_are_refused_on_a_256_kib_stack() {
    let server = MockMantle::start(None).unwrap();
    let cfg = json!({"baseUrl": server.base_url(), "apiKey": "k"}).to_string();
    let provider = raw::provider_create("", &cfg).unwrap();
    let worker = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            for (plugin_cfg, provider_cfg) in
                [(deep_json5(), String::new()), (String::new(), deep_json5())]
            {
                let e = raw::provider_create(&plugin_cfg, &provider_cfg).unwrap_err();
                assert_eq!(e.code, ErrorCode::InvalidConfig, "{e:?}");
                assert!(
                    e.message.contains("nested deeper than the limit of 64"),
                    "{}",
                    e.message
                );
            }
            let e = raw::stream_start(provider, &deep_request()).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{e:?}");
            assert!(e.message.contains("limit of 64"), "{}", e.message);
            let import = raw::module().state_import().expect("ABI 1.1");
            let blob = format!(
                r#"{{"format":1,"x":{}{}}}"#,
                "[".repeat(20_000),
                "]".repeat(20_000)
            );
            let e = import(provider, RStr::from_str(&blob))
                .into_result()
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{e:?}");
            assert!(e.message.contains("limit of 64"), "{}", e.message);
        })
        .unwrap();
    worker.join().expect("the small-stack thread survived");
    raw::provider_close(provider);
}

/// A stream that sends one text chunk and then stalls with the connection open.
fn stalled_stream(server: &MockMantle) {
    let mut steps = openai_text_stream("m", "first", 16);
    steps.truncate(2);
    steps.push(Step::Stall);
    server.push(Route::ChatCompletions, Reply::sse(steps));
}

#[test]
fn a_second_puller_is_refused_and_closing_the_provider_wakes_the_first_with_one_cancelled_event() {
    let server = MockMantle::start(None).unwrap();
    stalled_stream(&server);
    let cfg = json!({"baseUrl": server.base_url(), "apiKey": "k"}).to_string();
    let provider = raw::provider_create("", &cfg).unwrap();
    let stream =
        raw::stream_start(provider, &common::request(LISTED_MODEL, "x").to_string()).unwrap();
    // Pull until the stall: start, then the first text.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match raw::next(stream, 5_000).unwrap() {
            FfiPoll::Event(e) => seen.push(e.kind),
            FfiPoll::Finished => panic!("the stream ended before the stall: {seen:?}"),
            FfiPoll::Pending => {}
        }
    }
    assert_eq!(seen, [EventKind::Start, EventKind::TextDelta]);

    // The waiter retries while the main thread's own probing pull happens to hold the stream
    // (either thread may be the one refused); once in, it waits up to 60 s.
    let waiter = std::thread::spawn(move || loop {
        match raw::next(stream, 60_000) {
            Err(e) if e.code == ErrorCode::InvalidArgument => std::thread::yield_now(),
            first => break (first, raw::next(stream, 0)),
        }
    });
    // Another thread's pull is refused while the waiter is inside its pull (no sleeps: try until
    // the waiter is in; the waiter's 60 s timeout is far beyond this loop's 10 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let busy = loop {
        match raw::next(stream, 0) {
            Err(e) => break e,
            Ok(FfiPoll::Pending) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the waiter never started pulling"
                );
                std::thread::yield_now();
            }
            Ok(other) => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(busy.code, ErrorCode::InvalidArgument);
    assert!(busy.message.contains("another thread"), "{}", busy.message);

    raw::provider_close(provider);
    let (first, after) = waiter.join().unwrap();
    match first.expect("the waiting pull gets an event, not an error") {
        FfiPoll::Event(e) => {
            assert_eq!(e.kind, EventKind::Error);
            let v: serde_json::Value = serde_json::from_str(e.json.as_str()).unwrap();
            assert_eq!(v["kind"], "cancelled");
            assert_eq!(v["message"], "cancelled: the provider was closed");
        }
        other => panic!("expected the cancelled event, got {other:?}"),
    }
    let after = after.unwrap_err();
    assert_eq!(
        after.code,
        ErrorCode::InvalidHandle,
        "the stream closed with its provider"
    );
    assert!(
        server.wait_aborted_bodies(1, Duration::from_secs(10)),
        "the upstream request was dropped"
    );
}

#[test]
fn cancel_after_the_terminal_event_changes_nothing() {
    let server = MockMantle::start(None).unwrap();
    let cfg = json!({"baseUrl": server.base_url(), "apiKey": "k"}).to_string();
    let provider = raw::provider_create("", &cfg).unwrap();
    let stream = raw::stream_start(
        provider,
        &common::request(LISTED_MODEL, "hello").to_string(),
    )
    .unwrap();
    let events = raw::drain(stream, Duration::from_secs(30));
    assert_eq!(raw::only_terminal(&events).0, EventKind::Done);
    (raw::module().stream_cancel())(stream)
        .into_result()
        .unwrap();
    assert!(matches!(raw::next(stream, 0), Ok(FfiPoll::Finished)));
    (raw::module().stream_close())(stream)
        .into_result()
        .unwrap();
    raw::provider_close(provider);
}

#[test]
fn upstream_error_text_is_scrubbed_of_the_bearer_token() {
    let token = "sk-live-TOKEN-value-1234";
    let server = MockMantle::start(Some(token)).unwrap();
    // An HTTP error body and an in-stream error chunk that both echo the token back.
    server.push(
        Route::ChatCompletions,
        Reply::status(
            400,
            json!({"error": {"message": format!("bad header Authorization: Bearer {token}")}})
                .to_string(),
        ),
    );
    server.push(
        Route::ChatCompletions,
        Reply::sse(vec![Step::Bytes(
            format!(
                "data: {}\n\n",
                json!({"error": {"message": format!("key {token} revoked")}})
            )
            .into_bytes(),
        )]),
    );
    let cfg = json!({"baseUrl": server.base_url(), "apiKey": token}).to_string();
    let provider = raw::provider_create("", &cfg).unwrap();
    for _ in 0..2 {
        let stream =
            raw::stream_start(provider, &common::request(LISTED_MODEL, "x").to_string()).unwrap();
        let events = raw::drain(stream, Duration::from_secs(30));
        let (kind, _, json) = raw::only_terminal(&events);
        assert_eq!(*kind, EventKind::Error);
        let message = json["message"].as_str().unwrap();
        assert!(!message.contains(token), "{message}");
        assert!(message.contains("<redacted>"), "{message}");
        (raw::module().stream_close())(stream)
            .into_result()
            .unwrap();
    }
    raw::provider_close(provider);
}

/// A Rust gateway calls the plugin from its own async tasks: no entry point may `block_on`.
async fn every_entry_point_from_async_code() {
    let server = MockMantle::start(None).unwrap();
    server.set_models(vec![json!({"id": "openai.gpt-oss-120b"})]);
    let provider = common::provider_for(&server, "k");
    let catalog = provider.catalog().expect("catalog inside a runtime");
    assert_eq!(catalog["outcome"]["status"], "ready", "{catalog}");
    assert_eq!(provider.bearer_token().unwrap().source, "config");
    let blob = provider.export_state().unwrap().expect("ABI 1.1");
    assert!(provider.import_state(&blob).unwrap().is_some());
    for model in ["openai.gpt-oss-120b", "anthropic.claude-opus-5"] {
        let mut stream = provider
            .stream(&common::request(model, "inside").to_string())
            .unwrap();
        let events = stream
            .collect(Duration::from_secs(30))
            .expect("pulls inside a runtime");
        assert_eq!(common::text_of(&events), "echo: inside", "{model}");
        assert_eq!(common::terminal(&events).kind, EventKind::Done);
    }
    drop(provider); // provider_close inside a runtime
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_points_work_inside_a_multi_thread_host_runtime() {
    every_entry_point_from_async_code().await;
}

#[tokio::test(flavor = "current_thread")]
async fn entry_points_work_inside_a_current_thread_host_runtime() {
    every_entry_point_from_async_code().await;
}

#[test]
fn events_parsed_before_a_parse_error_in_the_same_chunk_are_delivered() {
    // Failed before the fix: the parse error returned before the chunk's good events went out.
    let server = MockMantle::start(None).unwrap();
    let mut chunk = Vec::new();
    for piece in ["one ", "two"] {
        chunk.extend_from_slice(
            format!(
                "data: {}\n\n",
                json!({"choices": [{"index": 0, "delta": {"content": piece}}]})
            )
            .as_bytes(),
        );
    }
    chunk.extend_from_slice(b"data: \xff\n\n");
    server.push(Route::ChatCompletions, Reply::sse(vec![Step::Bytes(chunk)]));
    let cfg = json!({"baseUrl": server.base_url(), "apiKey": "k"}).to_string();
    let provider = raw::provider_create("", &cfg).unwrap();
    let stream =
        raw::stream_start(provider, &common::request(LISTED_MODEL, "x").to_string()).unwrap();
    let events = raw::drain(stream, Duration::from_secs(30));
    let texts: Vec<&str> = events
        .iter()
        .filter(|e| e.0 == EventKind::TextDelta)
        .map(|e| e.1.as_str())
        .collect();
    assert_eq!(texts, ["one ", "two"]);
    let (kind, _, json) = raw::only_terminal(&events);
    assert_eq!(
        (*kind, json["kind"].as_str()),
        (EventKind::Error, Some("protocol"))
    );
    raw::provider_close(provider);
}
