//! Events per second through the ABI for a long stream: the built cdylib (release profile)
//! loaded through host-shim, streaming from the local server over loopback. This is the whole
//! path a host sees: HTTP, SSE parsing, decoding, the channel, and one `stream_next` call per
//! event across the ABI.
//!
//! `cargo bench -p mantle-integration-tests --bench abi_stream`

use std::time::Duration;

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mantle_host_shim::{EventKind, Plugin};
use mantle_mock_server::MockMantle;
use serde_json::json;

/// Text deltas per stream: the server echoes the prompt 8 characters per delta.
const DELTAS: usize = 20_000;

fn bench(c: &mut Criterion) {
    let plugin = Plugin::load(common::release_plugin(None)).expect("load plugin");
    let server = MockMantle::start(Some("bench")).unwrap();
    let config = json!({"baseUrl": server.base_url(), "apiKey": "bench"}).to_string();
    let provider = plugin.create_provider("", &config).unwrap();
    // "echo: " + prompt, split every 8 characters.
    let prompt = "x".repeat(DELTAS * 8 - "echo: ".len());
    let mut group = c.benchmark_group("abi");
    group.sample_size(10);
    for (route, model) in [
        ("openai", "openai.gpt-oss-120b"),
        ("anthropic", "anthropic.claude-opus-4-7"),
    ] {
        let request =
            json!({"model": model, "messages": [{"role": "user", "content": prompt}]}).to_string();
        group.throughput(Throughput::Elements(DELTAS as u64));
        group.bench_function(format!("long_stream_text_deltas_{route}"), |b| {
            b.iter(|| {
                let mut stream = provider.stream(&request).unwrap();
                let events = stream.collect(Duration::from_secs(60)).unwrap();
                let deltas = events
                    .iter()
                    .filter(|e| e.kind == EventKind::TextDelta)
                    .count();
                assert_eq!(deltas, DELTAS);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
