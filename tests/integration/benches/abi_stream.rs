//! Events per second through the ABI for a long stream: the built cdylib (release profile)
//! loaded through host-shim, streaming from the local server over loopback. This is the whole
//! path a host sees: HTTP, SSE parsing, decoding, the channel, and one `stream_next` call per
//! event across the ABI.
//!
//! `cargo bench -p mantle-integration-tests --bench abi_stream`

use std::{path::PathBuf, process::Command, time::Duration};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mantle_host_shim::{EventKind, Plugin};
use mantle_mock_server::MockMantle;
use serde_json::json;

/// Text deltas per stream: the server echoes the prompt 8 characters per delta.
const DELTAS: usize = 20_000;

fn release_plugin() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--release", "-p", "mantle-provider"])
        .current_dir(&root)
        .status()
        .expect("cargo build");
    assert!(status.success());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("release").join(format!(
        "{}mantle_provider{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

fn bench(c: &mut Criterion) {
    let plugin = Plugin::load(release_plugin()).expect("load plugin");
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
