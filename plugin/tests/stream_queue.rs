//! The bound on what an unpulled stream holds, against the local server, through the safe core.

use std::time::{Duration, Instant};

use mantle_mock_server::{openai_text_stream, MockMantle, Reply, Route};
use mantle_provider::{
    provider::{Provider, ProviderOptions},
    stream::{
        queue::{MAX_QUEUED_BYTES, MAX_QUEUED_EVENTS},
        Poll, StreamEvent,
    },
};
use serde_json::json;

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
    let (events, bytes) = settled(&stream);
    // Before the fix the bound was 256 events of any size (here 2 MiB and more).
    assert!(bytes <= MAX_QUEUED_BYTES, "{bytes} bytes queued");
    let per_event = 8192 + 64;
    assert!(
        bytes > MAX_QUEUED_BYTES - 2 * per_event,
        "the queue fills up to its bound: {bytes}"
    );
    assert!(events < MAX_QUEUED_EVENTS, "{events} events");
    let (got, terminals) = pull_all(&stream);
    assert_eq!(got.len(), text.len(), "nothing lost");
    assert_eq!(terminals, 1);
}

#[test]
fn an_unpulled_stream_of_small_events_holds_at_most_the_event_bound() {
    let server = MockMantle::start(None).unwrap();
    let text = "z".repeat(5_000);
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
    let (events, bytes) = settled(&stream);
    assert_eq!(events, MAX_QUEUED_EVENTS);
    assert!(bytes <= MAX_QUEUED_BYTES);
    let (got, terminals) = pull_all(&stream);
    assert_eq!(got, text, "nothing lost");
    assert_eq!(terminals, 1);
}
