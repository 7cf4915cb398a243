//! Property tests (proptest, stable toolchain): the SSE parser is independent of how bytes are
//! split into reads; no input panics the config, request, SSE or decoder code; every translated
//! Anthropic body keeps the thinking invariants of spec §5.

use mantle_provider::{
    catalog::{claude_rows, discovered_row},
    config::{PluginConfig, ProviderConfig},
    request::{anthropic_body, claude_limits, openai_body, CanonicalRequest, Thinking},
    stream::{
        anthropic::AnthropicDecoder,
        openai::OpenAiDecoder,
        sse::{SseEvent, SseParser},
        Decoder,
    },
};
use proptest::prelude::*;
use serde_json::{json, Value};

/// One SSE event as a writer would produce it: an optional name, data lines, a comment.
#[derive(Debug, Clone)]
struct Written {
    event: Option<String>,
    data: Vec<String>,
    comment: bool,
}

fn written() -> impl Strategy<Value = Written> {
    (
        proptest::option::of("[a-z_]{1,12}"),
        // Any characters but line ends, multi-byte ones included (splits inside UTF-8).
        proptest::collection::vec("[^\r\n]{0,24}", 1..4),
        any::<bool>(),
    )
        .prop_map(|(event, data, comment)| Written {
            event,
            data,
            comment,
        })
}

/// Serializes events with the given line ends (LF, CRLF or CR per line). A CR line end is
/// never followed by an LF one: that pair would read as one CRLF end.
fn serialize(events: &[Written], ends: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut n = 0;
    let mut end = |out: &mut Vec<u8>| {
        let mut choice = ends[n % ends.len()] % 3;
        if choice == 0 && out.last() == Some(&b'\r') {
            choice = 2;
        }
        out.extend_from_slice(match choice {
            0 => b"\n".as_slice(),
            1 => b"\r\n",
            _ => b"\r",
        });
        n += 1;
    };
    for e in events {
        if e.comment {
            out.extend_from_slice(b": keep-alive");
            end(&mut out);
        }
        if let Some(name) = &e.event {
            out.extend_from_slice(format!("event: {name}").as_bytes());
            end(&mut out);
        }
        for line in &e.data {
            out.extend_from_slice(format!("data: {line}").as_bytes());
            end(&mut out);
        }
        end(&mut out);
    }
    out
}

fn parse_split(bytes: &[u8], cuts: &[usize]) -> Result<Vec<SseEvent>, String> {
    let mut parser = SseParser::default();
    let mut out = Vec::new();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut start = 0;
    for p in points.into_iter().chain([bytes.len()]) {
        parser
            .feed(&bytes[start..p], &mut out)
            .map_err(|e| e.to_string())?;
        start = p;
    }
    parser.finish(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn sse_events_do_not_depend_on_how_the_bytes_are_split(
        events in proptest::collection::vec(written(), 1..6),
        ends in proptest::collection::vec(any::<u8>(), 1..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..24),
    ) {
        let bytes = serialize(&events, &ends);
        let whole = parse_split(&bytes, &[]).unwrap();
        let expected: Vec<SseEvent> = events
            .iter()
            .map(|e| SseEvent { event: e.event.as_deref().map(Into::into), data: e.data.join("\n") })
            .collect();
        prop_assert_eq!(&whole, &expected);
        prop_assert_eq!(parse_split(&bytes, &cuts).unwrap(), whole);
        // Every single-byte split too, for a small input.
        if bytes.len() < 200 {
            let all: Vec<usize> = (0..bytes.len()).collect();
            prop_assert_eq!(parse_split(&bytes, &all).unwrap(), expected);
        }
    }

    #[test]
    fn random_bytes_never_panic_the_sse_parser_or_the_decoders(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
        names in proptest::collection::vec(proptest::option::of("[a-z_]{1,20}"), 1..4),
    ) {
        let mut parser = SseParser::new(256);
        let mut out = Vec::new();
        for c in &chunks {
            if parser.feed(c, &mut out).is_err() {
                break;
            }
        }
        let _ = parser.finish(&mut out);
        let mut openai = OpenAiDecoder::default();
        let mut anthropic = AnthropicDecoder::default();
        let mut events = Vec::new();
        for (i, data) in chunks.iter().enumerate() {
            let ev = SseEvent {
                event: names[i % names.len()].as_deref().map(Into::into),
                data: String::from_utf8_lossy(data).into_owned(),
            };
            openai.on_event(ev.view(), &mut events);
            anthropic.on_event(ev.view(), &mut events);
        }
        openai.on_eof(&mut events);
        anthropic.on_eof(&mut events);
    }

    #[test]
    fn random_text_never_panics_config_or_request_parsing(text in "\\PC{0,200}") {
        let _ = PluginConfig::parse(&text);
        let _ = ProviderConfig::parse(&text);
        let _ = CanonicalRequest::parse(&text);
    }

    #[test]
    fn random_json5_shapes_never_panic_config_parsing(v in json_value()) {
        let text = v.to_string();
        let _ = ProviderConfig::parse(&text);
        let _ = ProviderConfig::parse(&format!("{{ models: [{text}], headers: {text} }}"));
        let _ = PluginConfig::parse(&format!("{{ discovery: {text} }}"));
    }

    #[test]
    fn random_json_requests_never_panic_parsing_or_translation(
        messages in proptest::collection::vec(json_value(), 1..4),
        extra in proptest::collection::vec(("[a-z_]{1,12}", json_value()), 0..6),
        model in prop::sample::select(vec![
            "m", "anthropic.claude-opus-5", "anthropic.claude-opus-4-1", "openai.gpt-oss-120b",
        ]),
    ) {
        let mut body = json!({"model": model, "messages": messages});
        for (k, v) in extra {
            body[k] = v;
        }
        if let Ok(req) = CanonicalRequest::parse(&body.to_string()) {
            let row = claude_rows(std::time::SystemTime::UNIX_EPOCH)
                .into_iter()
                .find(|r| r.id == model)
                .unwrap_or_else(|| discovered_row(model));
            let _ = anthropic_body(&req, &row);
            let _ = openai_body(&req, &row);
        }
    }

    #[test]
    fn translated_anthropic_bodies_keep_the_thinking_invariants(
        max_tokens in prop_oneof![Just(None), (0u64..200_000).prop_map(Some), Just(Some(u64::MAX))],
        budget in prop_oneof![Just(None), (0u64..200_000).prop_map(Some), Just(Some(u64::MAX))],
        level in prop::sample::select(vec![None, Some("off"), Some("minimal"), Some("low"), Some("medium"), Some("high"), Some("xhigh"), Some("max")]),
        model_max in 1u64..300_000,
        temperature in proptest::option::of(prop_oneof![Just(1.0f64), 0.0f64..1.0]),
        top_p in proptest::option::of(prop_oneof![Just(1.0f64), 0.0f64..1.0]),
        tool_choice in proptest::option::of(prop::sample::select(vec![
            json!("auto"), json!("none"), json!("required"), json!({"type": "function", "function": {"name": "f"}}),
        ])),
        id in prop::sample::select(vec![
            "anthropic.claude-opus-4-1", "anthropic.claude-sonnet-4-5", "anthropic.claude-opus-4-7",
            "anthropic.claude-opus-5", "anthropic.claude-sonnet-5", "anthropic.claude-mythos-5",
            "anthropic.claude-mythos-preview", "anthropic.claude-haiku-4-5",
        ]),
    ) {
        let mut body = json!({"model": id, "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f"}}]});
        if let Some(t) = temperature { body["temperature"] = json!(t); }
        if let Some(t) = top_p { body["top_p"] = json!(t); }
        if let Some(c) = tool_choice { body["tool_choice"] = c; }
        if let Some(m) = max_tokens { body["max_tokens"] = json!(m); }
        if let Some(b) = budget { body["reasoning_budget"] = json!(b); }
        if let Some(l) = level { body["reasoning"] = json!(l); }
        let req = CanonicalRequest::parse(&body.to_string()).unwrap();
        let mut row = claude_rows(std::time::SystemTime::UNIX_EPOCH)
            .into_iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| discovered_row(id));
        row.max_tokens = model_max;
        let (max, thinking) = claude_limits(&req, &row);
        let translated = anthropic_body(&req, &row);
        prop_assert_eq!(&translated["max_tokens"], &json!(max));
        match thinking {
            Thinking::Budget(b) => {
                prop_assert!(b >= 1024, "budget {} below 1024", b);
                prop_assert!(b < max, "budget {} not below max_tokens {}", b, max);
                prop_assert_eq!(&translated["thinking"], &json!({"type": "enabled", "budget_tokens": b}));
            }
            Thinking::Adaptive(_) => {
                prop_assert_eq!(&translated["thinking"], &json!({"type": "adaptive"}));
                prop_assert!(translated["output_config"]["effort"].is_string());
            }
            Thinking::None => prop_assert!(translated.get("thinking").is_none()),
        }
        // What the Messages API refuses next to thinking never goes out with it.
        if translated.get("thinking").is_some() {
            prop_assert!(translated.get("temperature").is_none_or(|t| t == &json!(1.0)), "{}", translated);
            prop_assert!(translated.get("top_p").is_none_or(|p| p.as_f64().unwrap() >= 0.95), "{}", translated);
            let forced = ["any", "tool"].contains(&translated["tool_choice"]["type"].as_str().unwrap_or(""));
            prop_assert!(!forced, "{}", translated);
        }
    }
}

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,16}".prop_map(Value::String),
        prop::sample::select(vec![
            "user",
            "assistant",
            "tool",
            "system",
            "text",
            "image_url",
            "thinking"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop::sample::select(vec![
                    "role",
                    "content",
                    "type",
                    "text",
                    "tool_calls",
                    "function",
                    "arguments",
                    "name",
                    "id",
                    "image_url",
                    "url",
                    "tool_call_id",
                    "signature",
                    "thinking",
                    "reasoning_content",
                    "data",
                    "models",
                    "headers",
                    "api",
                    "baseUrl",
                ])
                .prop_map(str::to_string),
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
