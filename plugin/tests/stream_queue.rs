//! The bound on what an unpulled stream holds, against the local server, through the safe core.
//! The task queues upstream reads as they came (the pull decodes them), so the bound is on
//! bytes read and not yet pulled.

use std::time::{Duration, Instant};

use mantle_mock_server::{openai_text_stream, MockMantle, Reply, Route};
use mantle_provider::{
    provider::{Provider, ProviderOptions},
    stream::{queue::MAX_QUEUED_BYTES, Poll, StreamEvent},
};
use serde_json::json;

/// Most bytes the HTTP client (hyper) reads at once: the queue always lets one read in, and
/// stops the task at the first read that does not fit.
const MAX_READ: usize = 8192 + 4096 * 100;
/// What the queue counts per read on top of its bytes.
const PER_INPUT: usize = 64;

/// Waits until the queue stops growing (the task is blocked on a full queue).
fn settled(stream: &mantle_provider::stream::StreamHandle) -> (usize, usize) {
    let end = Instant::now() + Duration::from_secs(20);
    let mut last = stream.queued();
    let mut stable_since = Instant::now();
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
        let now = stream.queued();
        if now != last {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() > Duration::from_millis(300) && now.0 > 0 {
            break;
        }
    }
    last
}

/// Pulls everything; returns the text and the number of terminal events.
fn pull_all(stream: &mantle_provider::stream::StreamHandle) -> (String, usize) {
    let (mut text, mut terminals) = (String::new(), 0);
    loop {
        match stream.next(Duration::from_secs(10)).unwrap() {
            Poll::Event(e) => match e.event {
                StreamEvent::TextDelta { text: t } => text.push_str(&t),
                ev if ev.is_terminal() => terminals += 1,
                _ => {}
            },
            Poll::Pending => panic!("stalled"),
            Poll::Finished => return (text, terminals),
        }
    }
}

fn provider(server: &MockMantle) -> Provider {
    let cfg = json!({"baseUrl": server.base_url(), "apiKey": "k"}).to_string();
    Provider::new("", &cfg, ProviderOptions::default()).unwrap()
}

#[test]
fn an_unpulled_stream_holds_at_most_the_byte_bound_and_loses_nothing() {
    let server = MockMantle::start(None).unwrap();
    // 2,000 deltas of 8 KiB: 16 MiB the host has not pulled yet.
    let text = "y".repeat(2_000 * 8192);
    server.push(
        Route::ChatCompletions,
        Reply::sse(openai_text_stream("m", &text, 8192)),
    );
    let p = provider(&server);
    let stream = p
        .start_stream(
            r#"{"model":"openai.gpt-oss-20b","messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
    let (reads, bytes) = settled(&stream);
    // Before the hardening issue the bound was 256 events of any size (here 2 MiB and more).
    assert!(bytes <= MAX_QUEUED_BYTES, "{bytes} bytes queued");
    assert!(
        bytes + MAX_READ + PER_INPUT > MAX_QUEUED_BYTES,
        "the queue fills up to one read short of its bound: {bytes}"
    );
    assert!(reads > 1, "{reads} reads");
    let (got, terminals) = pull_all(&stream);
    assert_eq!(got.len(), text.len(), "nothing lost");
    assert_eq!(terminals, 1);
}

#[test]
fn an_unpulled_stream_of_small_events_holds_at_most_the_byte_bound() {
    let server = MockMantle::start(None).unwrap();
    // 40,000 one-character deltas, each its own write: about 4 MiB on the wire.
    let text = "z".repeat(40_000);
    server.push(
        Route::ChatCompletions,
        Reply::sse(openai_text_stream("m", &text, 1)),
    );
    let p = provider(&server);
    let stream = p
        .start_stream(
            r#"{"model":"openai.gpt-oss-20b","messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
    let (reads, bytes) = settled(&stream);
    assert!(bytes <= MAX_QUEUED_BYTES, "{bytes} bytes queued");
    assert!(
        bytes + MAX_READ + PER_INPUT > MAX_QUEUED_BYTES,
        "the queue fills up to one read short of its bound: {bytes}"
    );
    // Each read is counted with its overhead, so many small reads cannot pass the bound.
    assert!(reads * PER_INPUT <= bytes, "{reads} reads");
    let (got, terminals) = pull_all(&stream);
    assert_eq!(got, text, "nothing lost");
    assert_eq!(terminals, 1);
}
