//! `mantle serve --listen` (issue #14, point 3) seen from a plain HTTP client, against a local
//! server in this process (so scripts and aborted bodies can be observed): client disconnect
//! cancels the upstream, upstream errors keep their status in each API's shape, and a stream
//! that breaks mid-way ends with the API's own in-stream error. The official SDKs judge the
//! formats themselves in `hosts/python/tests/test_sdk_judges.py`.

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use common::*;
use mantle_mock_server::{
    anthropic_event, openai_text_stream, testkit::isolate_aws_command, MockMantle, Reply, Route,
    Step,
};
use serde_json::{json, Value};

const TOKEN: &str = "front-test-key";

/// A running `mantle serve --listen`, killed on drop.
struct Front {
    child: Child,
    base_url: String,
}

impl Front {
    fn start(server: &MockMantle) -> Front {
        let dir = tempdir().join("front");
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::copy(plugin_path(), plugins.join("libmantle_provider.so")).unwrap();
        let config = dir.join("mantle.json5");
        let cfg = json!({"provider": {"baseUrl": server.base_url(), "apiKey": TOKEN}});
        std::fs::write(&config, cfg.to_string()).unwrap();
        let mut child = isolate_aws_command(
            Command::new(build_bin("mantle-host-shim", "mantle"))
                .arg("--config")
                .arg(&config)
                .args(["serve", "--plugins-dir"])
                .arg(&plugins)
                .args(["--listen", "127.0.0.1:0"]),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mantle serve --listen");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let base_url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("mantle serve printed its address");
        Front { child, base_url }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(b"quit\n");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn post(url: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request to the front")
}

#[test]
fn client_disconnect_cancels_the_upstream_request() {
    let server = MockMantle::start(Some(TOKEN)).unwrap();
    server.set_step_delay(Duration::from_millis(100));
    let front = Front::start(&server);
    let long = "a long prompt ".repeat(20);
    let cases = [
        (
            "/v1/chat/completions",
            json!({"model": "openai.gpt-oss-120b", "stream": true,
                "messages": [{"role": "user", "content": long}]}),
        ),
        (
            "/v1/messages",
            json!({"model": "anthropic.claude-opus-4-7", "stream": true, "max_tokens": 100,
                "messages": [{"role": "user", "content": long}]}),
        ),
        (
            "/v1/responses",
            json!({"model": "openai.gpt-5.5", "stream": true, "input": long}),
        ),
    ];
    for (n, (path, body)) in cases.iter().enumerate() {
        runtime().block_on(async {
            let mut response = post(&format!("{}{path}", front.base_url), body).await;
            assert_eq!(response.status(), 200, "{path}");
            let first = response.chunk().await.unwrap().expect("a first chunk");
            assert!(!first.is_empty());
            // The client goes away mid-stream.
        });
        assert!(
            server.wait_aborted_bodies(n + 1, Duration::from_secs(10)),
            "{path}: the upstream body was not cancelled ({} aborted)",
            server.aborted_bodies()
        );
    }
}

#[test]
fn upstream_errors_keep_their_status_in_each_api_shape() {
    let server = MockMantle::start(Some(TOKEN)).unwrap();
    let front = Front::start(&server);
    server.push(
        Route::ChatCompletions,
        Reply::status(
            400,
            json!({"error": {"message": "bad thing here", "type": "invalid_request_error"}})
                .to_string(),
        ),
    );
    server.push(
        Route::AnthropicMessages,
        Reply::status(
            401,
            json!({"type": "error", "error": {"type": "authentication_error", "message": "who are you"}})
                .to_string(),
        ),
    );
    runtime().block_on(async {
        let r = post(
            &format!("{}/v1/chat/completions", front.base_url),
            &json!({"model": "openai.gpt-oss-120b", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
        assert_eq!(r.status(), 400);
        assert!(r.headers().contains_key("x-mantle-plugin-version"));
        let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("bad thing here"),
            "{body}"
        );

        let r = post(
            &format!("{}/v1/messages", front.base_url),
            &json!({"model": "anthropic.claude-opus-4-7", "max_tokens": 5, "stream": true,
                "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
        // A stream that fails before its first event is answered with a status, not a 200.
        assert_eq!(r.status(), 401);
        let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "authentication_error");
        assert!(
            !body.to_string().contains(TOKEN),
            "the upstream key never reaches a client"
        );

        // Malformed JSON: a 400 naming the body, in the surface's shape.
        let r = reqwest::Client::new()
            .post(format!("{}/v1/messages", front.base_url))
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"));

        let r = reqwest::get(format!("{}/v2/nothing", front.base_url))
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    });
}

#[test]
fn a_stream_broken_mid_way_ends_with_the_api_in_stream_error() {
    let server = MockMantle::start(Some(TOKEN)).unwrap();
    let front = Front::start(&server);
    let mut steps = openai_text_stream("openai.gpt-oss-120b", "partial answer", 7);
    steps.truncate(2);
    // A pause lets the partial body reach the wire before the connection is cut.
    steps.push(Step::Sleep(Duration::from_millis(100)));
    steps.push(Step::Disconnect);
    server.push(Route::ChatCompletions, Reply::sse(steps));
    server.push(
        Route::AnthropicMessages,
        Reply::sse(vec![
            anthropic_event(
                "message_start",
                &json!({"type": "message_start", "message": {"id": "msg_1", "model": "m",
                    "usage": {"input_tokens": 1, "output_tokens": 1}}}),
            ),
            anthropic_event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            anthropic_event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "partial"}}),
            ),
            Step::Sleep(Duration::from_millis(100)),
            Step::Disconnect,
        ]),
    );
    runtime().block_on(async {
        let r = post(
            &format!("{}/v1/chat/completions", front.base_url),
            &json!({"model": "openai.gpt-oss-120b", "stream": true,
                "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let frames: Vec<&str> = text.split("\n\n").filter(|f| !f.is_empty()).collect();
        assert!(text.contains(r#""content":"partial"#), "{text}");
        let last: Value =
            serde_json::from_str(frames.last().unwrap().strip_prefix("data: ").unwrap()).unwrap();
        assert!(last["error"]["message"].is_string(), "{text}");
        assert!(
            !text.contains("[DONE]"),
            "a failed stream has no [DONE]: {text}"
        );

        let r = post(
            &format!("{}/v1/messages", front.base_url),
            &json!({"model": "anthropic.claude-opus-4-7", "max_tokens": 5, "stream": true,
                "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let last = text.split("\n\n").filter(|f| !f.is_empty()).last().unwrap();
        assert!(last.starts_with("event: error\n"), "{text}");
        assert!(!text.contains("message_stop"), "{text}");
    });
}
