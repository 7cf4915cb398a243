//! SSE parse throughput (MB/s): the incremental parser alone, and parser plus each route's
//! decoder into normalized events, over a long stream fed in 16 KiB reads like a socket.
//!
//! `cargo bench -p mantle-provider --bench stream`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mantle_mock_server::{anthropic_text_stream, openai_text_stream, Step};
use mantle_provider::stream::{
    anthropic::AnthropicDecoder, openai::OpenAiDecoder, sse::SseParser, Decoder, StreamEvent,
};

const READ: usize = 16 * 1024;

/// The concatenated body of a scripted stream.
fn body(steps: Vec<Step>) -> Vec<u8> {
    steps
        .into_iter()
        .flat_map(|s| match s {
            Step::Bytes(b) => b,
            other => panic!("unexpected step {other:?}"),
        })
        .collect()
}

/// About 4 MiB of text deltas of 16 characters each.
fn long_text() -> String {
    "The quick brown fox jumps over the lazy dog. ".repeat(4 * 1024 * 1024 / 64)
}

/// Parses the whole body; returns the number of SSE events.
fn parse(body: &[u8]) -> usize {
    let mut parser = SseParser::default();
    let mut events = 0;
    for chunk in body.chunks(READ) {
        parser.feed_each(chunk, |_| events += 1).unwrap();
    }
    parser.finish_each(|_| events += 1).unwrap();
    events
}

/// Parses and decodes the whole body; returns the number of normalized events.
fn decode(body: &[u8], mut decoder: impl Decoder) -> usize {
    let mut parser = SseParser::default();
    let mut events: Vec<StreamEvent> = Vec::with_capacity(64);
    let mut count = 0;
    for chunk in body.chunks(READ) {
        parser
            .feed_each(chunk, |ev| {
                decoder.on_event(ev, &mut events);
            })
            .unwrap();
        count += events.len();
        events.clear();
    }
    count
}

fn bench(c: &mut Criterion) {
    let text = long_text();
    let openai = body(openai_text_stream("m", &text, 16));
    let anthropic = body(anthropic_text_stream("m", &text, 16));

    let mut group = c.benchmark_group("sse");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(openai.len() as u64));
    group.bench_function("parse_openai_body", |b| b.iter(|| parse(&openai)));
    group.bench_function("parse_and_decode_openai", |b| {
        b.iter(|| decode(&openai, OpenAiDecoder::default()))
    });
    group.throughput(Throughput::Bytes(anthropic.len() as u64));
    group.bench_function("parse_and_decode_anthropic", |b| {
        b.iter(|| decode(&anthropic, AnthropicDecoder::default()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
