//! The `mantle` CLI as a user runs it: `models list` reports why Mantle was skipped, and `chat`
//! shows reasoning, the answer and tool calls apart, on both routes (issues #4 and #5).

mod common;

use std::{path::PathBuf, process::Command};

use common::*;
use mantle_mock_server::{testkit::isolate_aws_command, MockMantle, Reply, Route};
use once_cell::sync::Lazy;
use serde_json::json;

static MANTLE: Lazy<PathBuf> = Lazy::new(|| build_bin("mantle-host-shim", "mantle"));

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `mantle --config <file with config_text> args…` with the AWS environment isolated.
fn mantle(config_text: &str, args: &[&str]) -> Run {
    let dir = tempdir();
    let config = dir.join("mantle.json5");
    std::fs::write(&config, config_text).unwrap();
    let mut command = Command::new(&*MANTLE);
    isolate_aws_command(&mut command)
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("MANTLE_LOG", "off")
        .arg("--plugin")
        .arg(plugin_path())
        .arg("--config")
        .arg(&config)
        .args(args);
    let out = command.output().expect("run mantle");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A JSON5 CLI config (unquoted keys, single quotes) for the local server with a literal key.
fn local_config(server: &MockMantle, key: &str) -> String {
    format!(
        "{{ provider: {{ baseUrl: '{}', apiKey: '{key}' }} }}",
        server.base_url()
    )
}

#[test]
fn models_list_shows_each_skip_reason() {
    let cases = [
        // JSON5 as users write it: comments, unquoted keys, trailing commas.
        (
            "{ plugin: { discovery: { enabled: false, }, }, // off\n provider: {} }",
            "skipped: disabled",
        ),
        (
            "{ provider: { region: 'ca-central-1' } }",
            "skipped: unsupported-region",
        ),
        (
            "{ provider: { region: 'us-west-2' } }",
            "skipped: no-credentials",
        ),
    ];
    for (config, expected) in cases {
        let run = mantle(config, &["models", "list"]);
        assert!(run.ok, "{config}: exit status; stderr: {}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("amazon-bedrock-mantle: {expected}")),
            "{config}: stderr names the outcome: {}",
            run.stderr
        );
        assert_eq!(run.stdout.trim(), "(no models)", "{config}");
    }
}

#[test]
fn models_list_reports_rejection_and_lists_a_ready_catalog() {
    let server = MockMantle::start(Some("right")).unwrap();
    server.set_models(vec![
        json!({"id": "openai.gpt-oss-120b"}),
        json!({"id": "vendor.unknown-model"}),
    ]);
    let config = |key: &str| local_config(&server, key);

    let rejected = mantle(&config("wrong"), &["models", "list"]);
    assert!(rejected.ok, "a rejected key is an outcome, not a failure");
    assert!(
        rejected.stderr.contains("auth-rejected") && rejected.stderr.contains("401"),
        "{}",
        rejected.stderr
    );
    assert!(!rejected.stderr.contains("wrong") && !rejected.stdout.contains("wrong"));

    let ready = mantle(&config("right"), &["models", "list"]);
    assert!(ready.ok, "{}", ready.stderr);
    assert!(!ready.stderr.contains("skipped"), "{}", ready.stderr);
    let lines: Vec<&str> = ready.stdout.lines().collect();
    assert!(lines[0].starts_with("MODEL"), "{}", ready.stdout);
    let row = |id: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("amazon-bedrock-mantle/{id} ")))
            .unwrap_or_else(|| panic!("row for {id} in {}", ready.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    // Known model: its table values, not the placeholders. Unknown: the defaults.
    assert_eq!(row("openai.gpt-oss-120b").last(), Some(&"131072"));
    assert_eq!(row("vendor.unknown-model").last(), Some(&"32000"));
    // Curated Claude rows follow a non-empty discovery, on the Anthropic route.
    let claude = lines
        .iter()
        .find(|l| l.contains("anthropic.claude"))
        .expect("a curated Claude row");
    assert!(claude.contains("anthropic-messages"), "{claude}");

    let json_run = mantle(&config("right"), &["models", "list", "--json"]);
    let catalog: serde_json::Value = serde_json::from_str(&json_run.stdout).unwrap();
    assert_eq!(catalog["outcome"]["status"], "ready");
}

/// The chat layout: a `[reasoning]` section, an `[answer]` section, then one `[tool call …]`
/// line with the arguments as streamed.
fn assert_chat_layout(stdout: &str, route: &str) {
    let expected = "[reasoning]\nthink more\n[answer]\nHi\n[tool call get id=";
    assert!(
        stdout.starts_with(expected),
        "{route}: reasoning, then the answer, then the tool call:\n{stdout}"
    );
    let tool_line = stdout
        .lines()
        .find(|l| l.starts_with("[tool call get"))
        .unwrap();
    assert!(tool_line.ends_with("] {\"a\":1}"), "{route}: {tool_line}");
}

#[test]
fn chat_shows_reasoning_answer_and_tool_calls_apart_on_both_routes() {
    let server = MockMantle::start(Some("k")).unwrap();
    server.set_models(vec![json!({"id": "openai.gpt-oss-120b"})]);
    server.push_reasoning_and_tool_streams();
    let config = local_config(&server, "k");
    for (model, route) in [
        (
            "amazon-bedrock-mantle/openai.gpt-oss-120b",
            "openai-completions",
        ),
        ("anthropic.claude-opus-4-7", "anthropic-messages"),
    ] {
        let run = mantle(
            &config,
            &["chat", "--model", model, "--reasoning", "high", "hello"],
        );
        assert!(run.ok, "{route}: {}", run.stderr);
        assert_chat_layout(&run.stdout, route);
        assert!(
            run.stderr.contains("[usage] input="),
            "{route}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("[done] stop_reason=tool_use"),
            "{route}: {}",
            run.stderr
        );
    }
    assert_eq!(server.requests_to("/v1/chat/completions").len(), 1);
    assert_eq!(server.requests_to("/anthropic/v1/messages").len(), 1);
}

#[test]
fn chat_reports_an_upstream_error_with_its_classification() {
    let server = MockMantle::start(Some("k")).unwrap();
    server.set_models(vec![json!({"id": "openai.gpt-oss-120b"})]);
    server.push(
        Route::ChatCompletions,
        Reply::status(
            400,
            r#"{"error":{"message":"bad tool schema","type":"invalid_request_error"}}"#,
        ),
    );
    let config = local_config(&server, "k");
    let run = mantle(&config, &["chat", "--model", "openai.gpt-oss-120b", "hi"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains(
            "stream failed: upstream HTTP 400: bad tool schema (kind=bad_request, status=400, retryable=false)"
        ),
        "{}",
        run.stderr
    );
    // A 429 whose text says "tokens ... exceeded" is still a rate limit (the status decides).
    server.push(
        Route::ChatCompletions,
        Reply::status(
            429,
            r#"{"error":{"message":"max tokens per minute exceeded"}}"#,
        ),
    );
    server.push(
        Route::ChatCompletions,
        Reply::status(
            429,
            r#"{"error":{"message":"max tokens per minute exceeded"}}"#,
        ),
    );
    server.push(
        Route::ChatCompletions,
        Reply::status(
            429,
            r#"{"error":{"message":"max tokens per minute exceeded"}}"#,
        ),
    );
    let run = mantle(&config, &["chat", "--model", "openai.gpt-oss-120b", "hi"]);
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("(kind=rate_limit, status=429, retryable=true)"),
        "{}",
        run.stderr
    );
}
