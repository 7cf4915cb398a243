//! The provider gets the lane threads the plugin config asks for (issue #13), spreads its
//! streams over them, and gives them all back on close.

use std::time::Duration;

use mantle_mock_server::MockMantle;
use mantle_provider::{
    provider::{Provider, ProviderOptions},
    stream::{Poll, StreamEvent},
};

/// Threads of this process named like the provider's runtime workers.
fn provider_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "mantle-provider")
        .count()
}

/// The provider thread count once it has settled: workers name themselves once running, which
/// can be after the create returned.
fn settled_provider_threads(expected: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while provider_threads() != expected && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // Any extra thread would have had time to appear by now.
    std::thread::sleep(std::time::Duration::from_millis(50));
    provider_threads()
}

/// The tests here count this process's lane threads: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn worker_threads_follow_the_plugin_config() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let before = provider_threads();
    let p = Provider::new(
        "{ discovery: { enabled: false }, runtime: { workerThreads: 5 } }",
        "",
        ProviderOptions::default(),
    )
    .unwrap();
    assert_eq!(settled_provider_threads(before + 5) - before, 5);
    drop(p);
    assert_eq!(provider_threads(), before, "closing joins every worker");
}

/// Streams on each lane, once the counts have settled (a finished stream's task ends on its
/// lane's thread, just after its terminal event is handed out).
fn settled_lanes(p: &Provider, expected: &[usize]) -> Vec<usize> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while p.lane_streams() != expected && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    p.lane_streams()
}

#[test]
fn streams_spread_over_the_lanes_and_each_reads_to_its_end() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let server = MockMantle::start(None).unwrap();
    let config = format!(
        "{{ baseUrl: '{}', apiKey: 'k-123456789' }}",
        server.base_url()
    );
    let p = Provider::new(
        "{ discovery: { enabled: false }, runtime: { workerThreads: 2 } }",
        &config,
        ProviderOptions::default(),
    )
    .unwrap();
    assert_eq!(p.lane_streams(), [0, 0]);
    // Held open: every step of a reply waits 10 minutes, so only the first chunk arrives.
    server.set_step_delay(Duration::from_secs(600));
    let request = |text: &str| {
        serde_json::json!({
            "model": "anthropic.claude-opus-4-7",
            "messages": [{"role": "user", "content": text}],
        })
        .to_string()
    };
    let held: Vec<_> = (0..4)
        .map(|i| p.start_stream(&request(&format!("held {i}"))).unwrap())
        .collect();
    assert_eq!(p.lane_streams(), [2, 2], "two streams on each lane");
    // Each request reached the server (so its reply is held) once its first event is here.
    for (i, s) in held.iter().enumerate() {
        let first = s.next(Duration::from_secs(30)).unwrap();
        assert!(
            matches!(&first, Poll::Event(e) if matches!(e.event, StreamEvent::Start { .. })),
            "stream {i}: {first:?}"
        );
    }
    let fifth = p.start_stream(&request("fifth")).unwrap();
    let mut counts = p.lane_streams();
    counts.sort();
    assert_eq!(counts, [2, 3], "the fifth on either lane");
    drop(fifth);
    assert_eq!(
        settled_lanes(&p, &[2, 2]),
        [2, 2],
        "a cancelled stream leaves its lane"
    );
    drop(held);
    assert_eq!(settled_lanes(&p, &[0, 0]), [0, 0]);

    // Streams started now read their whole replies, and leave their lanes once ended.
    server.set_step_delay(Duration::ZERO);
    let streams: Vec<_> = (0..2)
        .map(|i| {
            p.start_stream(&request(&format!("to the end {i}")))
                .unwrap()
        })
        .collect();
    for (i, s) in streams.iter().enumerate() {
        let mut text = String::new();
        loop {
            match s.next(Duration::from_secs(30)).unwrap() {
                Poll::Event(e) => match e.event {
                    StreamEvent::TextDelta { text: t } => text.push_str(&t),
                    StreamEvent::Done { .. } => break,
                    StreamEvent::Error(e) => panic!("stream {i} failed: {e:?}"),
                    _ => {}
                },
                Poll::Pending => panic!("stream {i}: no event within 30 s"),
                Poll::Finished => panic!("stream {i} finished before its done event"),
            }
        }
        assert_eq!(text, format!("echo: to the end {i}"));
    }
    assert_eq!(settled_lanes(&p, &[0, 0]), [0, 0]);
}
