//! Contract clauses of spec §4–§6 on the stream path that had no test: routing by the
//! provider's and a row's `api`, provider and model `headers` on stream requests, every stop
//! reason on both routes, the OpenAI in-stream `error` chunk, ids kept exactly as given.

mod common;

use common::*;
use mantle_host_shim::EventKind;
use mantle_mock_server::{anthropic_event, sse_data, MockMantle, Reply, Route, Step};
use serde_json::{json, Value};

fn provider_with(server: &MockMantle, extra: Value) -> mantle_host_shim::Provider {
    let mut cfg = json!({"baseUrl": server.base_url(), "apiKey": "k"});
    cfg.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    plugin().create_provider("", &cfg.to_string()).unwrap()
}

fn done_reason(events: &[mantle_host_shim::Event]) -> String {
    let t = terminal(events);
    assert_eq!(t.kind, EventKind::Done, "{events:?}");
    t.value()["stop_reason"].as_str().unwrap().to_string()
}

#[test]
fn the_providers_api_and_a_rows_api_choose_the_route() {
    let server = MockMantle::start(None).unwrap();
    server.add_models(&["plain.model", "pinned.model", "some.model", "other.model"]);
    // Provider-level api: every model without its own goes to the Anthropic route.
    let p = provider_with(
        &server,
        json!({"api": "anthropic-messages", "models": [
            {"id": "plain.model"},
            {"id": "pinned.model", "api": "openai-completions"},
        ]}),
    );
    for (model, path) in [
        ("plain.model", "/anthropic/v1/messages"),
        ("pinned.model", "/v1/chat/completions"),
    ] {
        server.clear_requests();
        let events = run_stream(&p, &request(model, "route"));
        assert_eq!(text_of(&events), "echo: route", "{model}");
        assert_eq!(server.requests().len(), 1, "{model}");
        assert_eq!(server.requests()[0].path, path, "{model}");
        assert_eq!(server.requests()[0].json()["model"], model, "{model}");
    }
    // Row-level api without a provider api: a Claude-named row pinned to chat completions, and
    // an arbitrary row pinned to the Anthropic route.
    let p = provider_with(
        &server,
        json!({"models": [
            {"id": "anthropic.claude-opus-5", "api": "openai-completions"},
            {"id": "some.model", "api": "anthropic-messages"},
            {"id": "other.model"},
        ]}),
    );
    for (model, path) in [
        ("anthropic.claude-opus-5", "/v1/chat/completions"),
        ("some.model", "/anthropic/v1/messages"),
        ("other.model", "/v1/chat/completions"),
    ] {
        server.clear_requests();
        run_stream(&p, &request(model, "route"));
        assert_eq!(server.requests()[0].path, path, "{model}");
    }
}

#[test]
fn provider_and_model_headers_reach_stream_requests_in_order() {
    let server = MockMantle::start(None).unwrap();
    let p = provider_with(
        &server,
        json!({
            "headers": {"x-provider": "p", "x-shared": "from-provider", "authorization": "Bearer evil"},
            "models": [
                {"id": "openai.gpt-oss-120b", "headers": {"x-model": "m", "x-shared": "from-model"}},
                {"id": "anthropic.claude-opus-5", "api": "anthropic-messages",
                 "headers": {"x-model": "m", "x-shared": "from-model", "anthropic-version": "2099-01-01"}},
            ],
        }),
    );
    for (model, path) in [
        ("openai.gpt-oss-120b", "/v1/chat/completions"),
        ("anthropic.claude-opus-5", "/anthropic/v1/messages"),
    ] {
        server.clear_requests();
        let mut req = request(model, "h");
        req["headers"] = json!({"x-shared": "from-caller"});
        run_stream(&p, &req);
        let sent = &server.requests_to(path)[0];
        assert_eq!(sent.header("x-provider"), Some("p"), "{model}");
        assert_eq!(sent.header("x-model"), Some("m"), "{model}");
        assert_eq!(
            sent.header("x-shared"),
            Some("from-caller"),
            "later wins: {model}"
        );
        assert_eq!(
            sent.header("authorization"),
            Some("Bearer k"),
            "never overridden: {model}"
        );
    }
    // The model's headers come after the fixed Anthropic ones and win over them.
    let sent = &server.requests_to("/anthropic/v1/messages")[0];
    assert_eq!(sent.header("anthropic-version"), Some("2099-01-01"));
    assert_eq!(
        sent.header("anthropic-beta"),
        Some("fine-grained-tool-streaming-2025-05-14")
    );
    assert_eq!(sent.header("accept"), Some("application/json"));
}

#[test]
fn every_stop_reason_on_both_routes() {
    let server = MockMantle::start(None).unwrap();
    let p = provider_with(&server, json!({}));
    let openai = |finish: &str| {
        vec![
            sse_data(&json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "a"}}]})),
            sse_data(
                &json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}),
            ),
            Step::Bytes(b"data: [DONE]\n\n".to_vec()),
        ]
    };
    for (finish, expected) in [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_use"),
        ("content_filter", "content_filter"),
        ("something_new", "other"),
    ] {
        server.push(Route::ChatCompletions, Reply::sse(openai(finish)));
        let events = run_stream(&p, &request("openai.gpt-oss-120b", "x"));
        assert_eq!(done_reason(&events), expected, "openai {finish}");
    }
    let anthropic = |stop: &str| {
        vec![
            anthropic_event(
                "message_start",
                &json!({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 1}}}),
            ),
            anthropic_event(
                "message_delta",
                &json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 1}}),
            ),
            anthropic_event("message_stop", &json!({"type": "message_stop"})),
        ]
    };
    for (stop, expected) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_use"),
        ("refusal", "content_filter"),
        ("something_new", "other"),
    ] {
        server.push(Route::AnthropicMessages, Reply::sse(anthropic(stop)));
        let events = run_stream(&p, &request("anthropic.claude-opus-5", "x"));
        assert_eq!(done_reason(&events), expected, "anthropic {stop}");
    }
}

#[test]
fn an_openai_in_stream_error_chunk_is_a_classified_error_event() {
    let server = MockMantle::start(None).unwrap();
    let p = provider_with(&server, json!({}));
    for (message, kind, retryable) in [
        ("rate_limit_exceeded: slow down", "rate_limit", true),
        (
            "Rate limit reached (no pattern matches a space)",
            "internal",
            false,
        ),
        ("The server is overloaded", "overloaded", true),
        (
            "context_length_exceeded: too long",
            "context_overflow",
            false,
        ),
        ("something odd happened", "internal", false),
    ] {
        server.push(
            Route::ChatCompletions,
            Reply::sse(vec![
                sse_data(
                    &json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "par"}}]}),
                ),
                sse_data(&json!({"error": {"message": message, "type": "server_error"}})),
            ]),
        );
        let events = run_stream(&p, &request("openai.gpt-oss-120b", "x"));
        assert_eq!(text_of(&events), "par", "{message}");
        let t = terminal(&events);
        assert_eq!(t.kind, EventKind::Error);
        let v = t.value();
        assert_eq!(
            (
                v["kind"].as_str(),
                v["retryable"].as_bool(),
                v["message"].as_str()
            ),
            (Some(kind), Some(retryable), Some(message)),
            "{message}"
        );
        assert!(
            v.get("status").is_none(),
            "no HTTP status for an in-stream error"
        );
    }
}

#[test]
fn ids_are_kept_exactly_as_given() {
    let server = MockMantle::start(None).unwrap();
    let odd = [
        "Mixed.Case-Model",
        "vendor.model:v1:0",
        " spaced.model",
        "a/b.model",
    ];
    server.set_models(odd.iter().map(|id| json!({"id": id})).collect());
    let p = provider_with(&server, json!({}));
    let catalog = p.catalog().unwrap();
    let ids: Vec<&str> = catalog["provider"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .filter(|id| !id.starts_with("anthropic."))
        .collect();
    let mut expected = odd.to_vec();
    expected.sort_unstable();
    assert_eq!(
        ids, expected,
        "kept as given (case, colons, spaces), sorted"
    );
    for id in ["Mixed.Case-Model", "vendor.model:v1:0"] {
        server.clear_requests();
        run_stream(&p, &request(id, "x"));
        assert_eq!(server.requests()[0].json()["model"], id);
    }
}

#[test]
fn budget_thinking_requests_are_valid_for_the_messages_api() {
    // The local server refuses what the Anthropic API refuses: with thinking on, `temperature`
    // other than 1, `top_p` below 0.95 and a forced tool choice.
    let server = MockMantle::start(None).unwrap();
    let p = provider_with(
        &server,
        json!({"models": [{"id": "anthropic.claude-opus-4-1", "api": "anthropic-messages", "maxTokens": 32000}]}),
    );
    let tools =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let mut req = request("anthropic.claude-opus-4-1", "think");
    req["reasoning"] = json!("high");
    req["temperature"] = json!(0.3);
    req["top_p"] = json!(0.5);
    req["tools"] = tools.clone();
    req["tool_choice"] = json!("auto");
    let events = run_stream(&p, &req);
    assert_eq!(text_of(&events), "echo: think", "{events:?}");
    let body = server.requests_to("/anthropic/v1/messages")[0].json();
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 16384})
    );
    assert_eq!(body["max_tokens"], 32000);
    assert!(body.get("temperature").is_none(), "{body}");
    assert!(body.get("top_p").is_none(), "{body}");

    // A forced tool choice wins over thinking: the caller asked for that tool call.
    server.clear_requests();
    req["tool_choice"] = json!("required");
    let events = run_stream(&p, &req);
    // Forced to use a tool, the local server's model calls it (with the user's text).
    let call: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::ToolCallStart || e.kind == EventKind::ToolCallDelta)
        .map(|e| (e.value()["name"].clone(), e.text.clone()))
        .collect();
    assert_eq!(
        call,
        [
            (json!("f"), String::new()),
            (Value::Null, r#"{"text":"think"}"#.to_string())
        ],
        "{events:?}"
    );
    assert_eq!(terminal(&events).value()["stop_reason"], "tool_use");
    let body = server.requests_to("/anthropic/v1/messages")[0].json();
    assert!(body.get("thinking").is_none(), "{body}");
    assert_eq!(body["tool_choice"], json!({"type": "any"}));
    assert_eq!(
        body["temperature"],
        json!(0.3),
        "no thinking: sampling is the caller's"
    );

    // Without reasoning the caller's sampling is passed through.
    server.clear_requests();
    let mut req = request("anthropic.claude-opus-4-1", "plain");
    req["temperature"] = json!(0.3);
    req["top_p"] = json!(0.5);
    run_stream(&p, &req);
    let body = server.requests_to("/anthropic/v1/messages")[0].json();
    assert_eq!(
        (body["temperature"].clone(), body["top_p"].clone()),
        (json!(0.3), json!(0.5))
    );
}

#[test]
fn a_discovered_claude_id_streams_on_the_anthropic_route() {
    // Spec §7: Mantle serves `anthropic.` ids on the Messages API only. A Claude id that is not
    // one of the curated rows still goes there (the family table), not to chat completions.
    let server = MockMantle::start(None).unwrap();
    server.set_models(vec![
        json!({"id": "anthropic.claude-haiku-4-5"}),
        json!({"id": "qwen.qwen3-32b"}),
    ]);
    let p = provider_with(&server, json!({}));
    let catalog = p.catalog().unwrap();
    let row = catalog["provider"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "anthropic.claude-haiku-4-5")
        .cloned()
        .unwrap();
    assert_eq!(row["api"], "anthropic-messages", "{row}");
    for (model, path) in [
        ("anthropic.claude-haiku-4-5", "/anthropic/v1/messages"),
        ("qwen.qwen3-32b", "/v1/chat/completions"),
    ] {
        server.clear_requests();
        let events = run_stream(&p, &request(model, "family"));
        assert_eq!(text_of(&events), "echo: family", "{model}");
        assert_eq!(server.requests_to(path).len(), 1, "{model}");
    }
}

#[test]
fn every_row_of_the_default_catalog_is_callable() {
    // Discovers the local server's whole default catalog (curated Claude rows included) and
    // streams a short reply from every row on whatever route the plugin picks. The local server
    // refuses a model on a route Mantle does not serve it on, as Mantle does.
    let server = MockMantle::start(None).unwrap();

    let p = provider_with(&server, json!({}));
    let catalog = p.catalog().unwrap();
    let rows = catalog["provider"]["models"].as_array().unwrap().clone();
    assert!(rows.len() >= 10, "{catalog}");
    let mut surfaces = std::collections::BTreeSet::new();
    for row in rows {
        let id = row["id"].as_str().unwrap();
        surfaces.insert(
            row["api"]
                .as_str()
                .unwrap_or("openai-completions")
                .to_string(),
        );
        let events = run_stream(&p, &request(id, "callable"));
        assert_eq!(text_of(&events), "echo: callable", "{id}: {events:?}");
        assert_eq!(terminal(&events).kind, EventKind::Done, "{id}");
    }
    assert_eq!(
        surfaces.into_iter().collect::<Vec<_>>(),
        [
            "anthropic-messages",
            "openai-completions",
            "openai-responses"
        ]
    );
}

#[test]
fn gpt_5_streams_on_the_responses_api() {
    let server = MockMantle::start(None).unwrap();
    let p = provider_with(&server, json!({}));
    let mut req = request("openai.gpt-5.5", "hello");
    req["messages"] = json!([
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
    ]);
    req["reasoning"] = json!("low");
    req["max_tokens"] = json!(300);
    let events = run_stream(&p, &req);
    assert_eq!(text_of(&events), "echo: hello");
    let usage = events
        .iter()
        .find(|e| e.kind == EventKind::Usage)
        .unwrap()
        .value();
    assert_eq!(
        (usage["input"].as_u64(), usage["output"].as_u64()),
        (Some(11), Some(7))
    );
    let sent = &server.requests_to("/openai/v1/responses")[0];
    let body = sent.json();
    assert_eq!(body["instructions"], "be brief");
    assert_eq!(
        body["input"],
        json!([{"role": "user", "content": [{"type": "input_text", "text": "hello"}]}])
    );
    assert_eq!(body["reasoning"], json!({"effort": "low"}));
    assert_eq!(body["max_output_tokens"], 300);
    assert_eq!(body["stream"], true);
    assert_eq!(sent.header("authorization"), Some("Bearer k"));
    // The raw payload option works on this surface too.
    let mut raw_req = request("openai.gpt-5.5", "raw");
    raw_req["include_raw"] = json!(true);
    let events = run_stream(&p, &raw_req);
    let delta = events
        .iter()
        .find(|e| e.kind == EventKind::TextDelta)
        .unwrap();
    let raw: Value = serde_json::from_str(&delta.raw).unwrap();
    assert_eq!(raw["type"], "response.output_text.delta", "{raw}");
    // Every catalog row shows its surface.
    let catalog = p.catalog().unwrap();
    for row in catalog["provider"]["models"].as_array().unwrap() {
        assert!(row["api"].is_string(), "{row}");
    }
    // Pinned elsewhere, Mantle (and the local server) refuse it: see
    // a_model_refused_on_its_route_is_retried_once_on_the_other_and_remembered.
}

#[test]
fn a_model_refused_on_its_route_is_retried_once_on_the_other_and_remembered() {
    let server = MockMantle::start(None).unwrap();
    // Pinned to chat completions, where Mantle refuses GPT-5.x before any byte.
    let p = provider_with(
        &server,
        json!({"models": [{"id": "openai.gpt-5.5", "api": "openai-completions"}]}),
    );
    let events = run_stream(&p, &request("openai.gpt-5.5", "first"));
    assert_eq!(text_of(&events), "echo: first", "{events:?}");
    assert_eq!(server.requests_to("/v1/chat/completions").len(), 1);
    assert_eq!(server.requests_to("/openai/v1/responses").len(), 1);
    // Remembered: the next request goes to the Responses API at once.
    let events = run_stream(&p, &request("openai.gpt-5.5", "second"));
    assert_eq!(text_of(&events), "echo: second");
    assert_eq!(
        server.requests_to("/v1/chat/completions").len(),
        1,
        "not tried again"
    );
    assert_eq!(server.requests_to("/openai/v1/responses").len(), 2);
}

#[test]
fn a_refused_parameter_is_dropped_retried_once_and_remembered() {
    let server = MockMantle::start(None).unwrap();
    let p = provider_with(&server, json!({}));
    let mut req = request("openai.gpt-5.5", "sampled");
    req["temperature"] = json!(0.3);
    let events = run_stream(&p, &req);
    assert_eq!(text_of(&events), "echo: sampled", "{events:?}");
    let sent = server.requests_to("/openai/v1/responses");
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].json()["temperature"], json!(0.3));
    assert!(sent[1].json().get("temperature").is_none());
    // Remembered: the next request leaves it out from the start.
    server.clear_requests();
    run_stream(&p, &req);
    let sent = server.requests_to("/openai/v1/responses");
    assert_eq!(sent.len(), 1);
    assert!(sent[0].json().get("temperature").is_none());
}

#[test]
fn a_second_refusal_ends_the_stream_naming_what_was_refused() {
    let server = MockMantle::start(None).unwrap();
    let p = provider_with(&server, json!({}));
    let refuse = |message: &str| {
        Reply::status(
            400,
            json!({"error": {"message": message, "type": "invalid_request_error"}}).to_string(),
        )
    };
    // Two different parameters refused: one recovery per stream, then a bad_request naming it.
    server.push(
        Route::ChatCompletions,
        refuse("Unsupported parameter: 'top_p' is not supported with this model."),
    );
    server.push(
        Route::ChatCompletions,
        refuse("Unsupported parameter: 'seed' is not supported with this model."),
    );
    let mut req = request("qwen.qwen3-32b", "x");
    req["top_p"] = json!(0.5);
    req["seed"] = json!(7);
    let e = terminal(&run_stream(&p, &req)).value();
    assert_eq!(e["kind"], "bad_request");
    assert!(e["message"].as_str().unwrap().contains("'seed'"), "{e}");
    assert_eq!(server.requests_to("/v1/chat/completions").len(), 2);
    // Refused on both routes: one error naming both.
    server.clear_requests();
    server.push(
        Route::ChatCompletions,
        refuse("The model 'qwen.qwen3-32b' does not support the '/v1/chat/completions' API"),
    );
    server.push(
        Route::Responses,
        refuse("The model 'qwen.qwen3-32b' does not support the '/v1/responses' API"),
    );
    let e = terminal(&run_stream(&p, &request("qwen.qwen3-32b", "x"))).value();
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "tried {}/chat/completions and {}/responses",
            server.base_url(),
            server.base_url()
        )),
        "{message}"
    );
    assert_eq!(server.requests_to("/v1/chat/completions").len(), 1);
    assert_eq!(server.requests_to("/v1/responses").len(), 1);
}

#[test]
fn what_refusals_taught_is_handed_over_in_the_state_blob() {
    let server = MockMantle::start(None).unwrap();
    let config = json!({"models": [{"id": "openai.gpt-5.5", "api": "openai-completions"}]});
    let old = provider_with(&server, config.clone());
    let mut req = request("openai.gpt-5.5", "learn");
    req["temperature"] = json!(0.3);
    // The route is refused, then the parameter: one stream recovers from both, in turn.
    let events = run_stream(&old, &req);
    assert_eq!(text_of(&events), "echo: learn", "{events:?}");
    assert_eq!(server.requests_to("/v1/chat/completions").len(), 1);
    assert_eq!(server.requests_to("/openai/v1/responses").len(), 2);
    let blob = old.export_state().unwrap().expect("ABI 1.1");
    // A new instance (as after a hot-swap) adopts it and goes right the first time.
    let new = provider_with(&server, config);
    let adopted = new.import_state(&blob).unwrap().expect("ABI 1.1");
    assert_eq!(adopted["learned"], 1, "{adopted}");
    server.clear_requests();
    let events = run_stream(&new, &req);
    assert_eq!(text_of(&events), "echo: learn");
    assert!(
        server.requests_to("/v1/chat/completions").is_empty(),
        "route remembered"
    );
    let sent = server.requests_to("/openai/v1/responses");
    assert_eq!(sent.len(), 1, "nothing refused");
    assert!(
        sent[0].json().get("temperature").is_none(),
        "parameter remembered"
    );
}

#[test]
fn an_unknown_model_is_a_bad_request_naming_it() {
    let server = MockMantle::start(None).unwrap();

    let p = provider_with(&server, json!({}));
    let e = terminal(&run_stream(&p, &request("vendor.no-such-model", "x"))).value();
    assert_eq!(
        (
            e["kind"].as_str(),
            e["status"].as_u64(),
            e["retryable"].as_bool()
        ),
        (Some("bad_request"), Some(404), Some(false))
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("The model 'vendor.no-such-model' does not exist"),
        "{e}"
    );
    assert_eq!(
        server.requests_to("/v1/chat/completions").len(),
        1,
        "not retried"
    );
}
