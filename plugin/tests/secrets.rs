//! A whole session with tracing at TRACE (every crate, hyper and reqwest included): no bearer
//! token, secret key or session token may appear in the logs, errors, catalogs or Debug output.

use std::time::Duration;

use mantle_mock_server::{testkit::capture_logs, MockMantle, Reply, Route};
use mantle_provider::{
    config::ProviderConfig,
    provider::{Provider, ProviderOptions},
    stream::{Poll, StreamHandle},
};

fn drain(stream: &StreamHandle, seen: &mut Vec<String>) {
    loop {
        match stream.next(Duration::from_secs(10)).expect("one puller") {
            Poll::Event(e) => {
                seen.push(format!("{:?}", e));
                seen.push(serde_json::to_string(&e.event).unwrap());
                if e.event.is_terminal() {
                    return;
                }
            }
            Poll::Pending => panic!("stream stalled"),
            Poll::Finished => return,
        }
    }
}

#[test]
fn no_secret_reaches_logs_errors_or_debug_output() {
    let buffer = capture_logs(tracing::Level::TRACE);

    const LITERAL_KEY: &str = "literal-key-5f1e9a";
    const SECRET_KEY: &str = "wJalrXUtnFEMI/SECRET/bPxRfiCYSECRETKEY";
    const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjSESSIONTOKENxyz";
    let mut seen: Vec<String> = Vec::new();

    // 1. A literal key: discovery, a good stream, a rejected stream, a failed discovery.
    let server = MockMantle::start(Some(LITERAL_KEY)).unwrap();
    let cfg = format!(
        "{{ baseUrl: '{}', apiKey: '{LITERAL_KEY}' }}",
        server.base_url()
    );
    seen.push(format!("{:?}", ProviderConfig::parse(&cfg).unwrap()));
    let p = Provider::new("", &cfg, ProviderOptions::default()).unwrap();
    seen.push(format!("{p:?}"));
    let catalog = p.catalog();
    seen.push(serde_json::to_string(&catalog).unwrap());
    seen.push(format!("{catalog:?}"));
    let req =
        r#"{"model":"anthropic.claude-opus-4-7","messages":[{"role":"user","content":"hi"}]}"#;
    let s = p.start_stream(req).unwrap();
    drain(&s, &mut seen);
    server.set_token(Some("another-token"));
    let s = p.start_stream(req).unwrap();
    drain(&s, &mut seen);
    server.push(Route::Models, Reply::status(500, "boom"));
    seen.push(format!("{:?}", p.bearer_token().unwrap()));
    drop(p);
    let bad = Provider::new(
        "",
        &format!("{{ apiKey: '{LITERAL_KEY}', bogus: 1 }}"),
        ProviderOptions::default(),
    )
    .unwrap_err();
    seen.push(bad.to_string());

    // 2. IAM: static credentials with a session token mint a token.
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::remove_var("AWS_BEARER_TOKEN_BEDROCK");
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDSECRETSTEST");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    std::env::set_var("AWS_SESSION_TOKEN", SESSION_TOKEN);
    let server = MockMantle::start(None).unwrap();
    let cfg = format!("{{ baseUrl: '{}' }}", server.base_url());
    let p = Provider::new("", &cfg, ProviderOptions::default()).unwrap();
    let minted = p.bearer_token().unwrap();
    let minted_token = minted.token.expose().to_string();
    assert!(minted_token.starts_with("bedrock-api-key-"));
    seen.push(format!("{minted:?}"));
    let catalog = p.catalog();
    seen.push(serde_json::to_string(&catalog).unwrap());
    let s = p
        .start_stream(
            r#"{"model":"openai.gpt-oss-120b","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
    drain(&s, &mut seen);
    server.set_token(Some("nope"));
    let s = p
        .start_stream(
            r#"{"model":"openai.gpt-oss-120b","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
    drain(&s, &mut seen);
    seen.push(format!("{p:?}"));
    drop(p);

    let logs = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("TRACE"),
        "TRACE logging was really on ({} bytes)",
        logs.len()
    );
    // The minted token's base64 body contains the session token URL-encoded, so check the raw
    // and the encoded forms of every secret.
    let secrets = [
        LITERAL_KEY,
        SECRET_KEY,
        SESSION_TOKEN,
        &minted_token,
        &minted_token["bedrock-api-key-".len()..],
    ];
    for secret in secrets {
        if let Some(at) = logs.find(secret) {
            let line = logs[..at].rsplit('\n').next().unwrap_or("");
            panic!(
                "a secret appeared in the logs, after: {}",
                &line[..line.len().min(300)]
            );
        }
        for s in &seen {
            assert!(!s.contains(secret), "a secret appeared in: {s}");
        }
    }
    assert!(
        seen.iter().any(|s| s.contains("\"kind\":\"auth\"")),
        "the rejected streams were really exercised"
    );
}
