//! The AWS default credential chain, offline: environment keys, a shared credentials file, a
//! local ECS-style endpoint that rotates credentials, and no credentials at all. These tests
//! change the process environment, so they run one at a time in this binary.

use std::{
    io::Write,
    sync::Arc,
    time::{Duration, SystemTime},
};

use base64::Engine;
use mantle_mock_server::{
    ecs::{EcsCredentials, EcsEndpoint},
    testkit::{capture_logs, isolate_aws_env},
    MockMantle,
};
use mantle_provider::{
    clock::{unix_seconds, ManualClock},
    discovery::Outcome,
    provider::{Provider, ProviderOptions},
};

/// The access key id inside a minted token.
fn akid_of(token: &str) -> String {
    let b64 = token
        .strip_prefix("bedrock-api-key-")
        .expect("minted token prefix");
    let url = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap();
    let cred = url
        .split('&')
        .find_map(|kv| kv.strip_prefix("X-Amz-Credential="))
        .unwrap();
    cred.split("%2F").next().unwrap().to_string()
}

fn provider(server: &MockMantle, options: ProviderOptions) -> Provider {
    let cfg = format!(
        "{{ baseUrl: '{}', region: 'us-west-2' }}",
        server.base_url()
    );
    Provider::new("", &cfg, options).unwrap()
}

#[test]
fn environment_keys_mint_a_token_used_on_every_request() {
    let _g = isolate_aws_env();
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDENVKEYS");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "env-secret");
    let server = MockMantle::start(None).unwrap();
    let p = provider(&server, ProviderOptions::default());
    let c = p.catalog();
    assert_eq!(
        c.outcome,
        Outcome::Ready {
            source: "discovery".into()
        }
    );
    assert_eq!(
        c.provider.unwrap().api_key,
        "__amazon_bedrock_mantle_iam__",
        "the catalog carries the IAM marker"
    );
    let t = p.bearer_token().unwrap();
    assert_eq!(t.source.as_str(), "iam");
    assert_eq!(akid_of(t.token.expose()), "AKIDENVKEYS");
    let expires = unix_seconds(t.expires_at.unwrap());
    let now = unix_seconds(SystemTime::now());
    assert!(
        (now + 7190..=now + 7200).contains(&expires),
        "7200 s lifetime"
    );
    let auth = server.requests_to("/v1/models")[0]
        .header("authorization")
        .unwrap()
        .to_string();
    assert_eq!(auth, format!("Bearer {}", t.token.expose()));
}

#[test]
fn bearer_env_wins_over_aws_credentials() {
    let _g = isolate_aws_env();
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDENVKEYS");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "env-secret");
    std::env::set_var("AWS_BEARER_TOKEN_BEDROCK", "  explicit-bearer  ");
    let server = MockMantle::start(Some("explicit-bearer")).unwrap();
    let p = provider(&server, ProviderOptions::default());
    let c = p.catalog();
    assert_eq!(c.provider.unwrap().api_key, "env:AWS_BEARER_TOKEN_BEDROCK");
    assert_eq!(p.bearer_token().unwrap().source.as_str(), "env");
}

#[test]
fn shared_credentials_file() {
    let _g = isolate_aws_env();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(
        f,
        "[default]\naws_access_key_id = AKIDFROMFILE\naws_secret_access_key = file-secret"
    )
    .unwrap();
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &path);
    let server = MockMantle::start(None).unwrap();
    let p = provider(&server, ProviderOptions::default());
    assert_eq!(
        akid_of(p.bearer_token().unwrap().token.expose()),
        "AKIDFROMFILE"
    );
}

#[test]
fn ecs_endpoint_rotation_is_picked_up_by_the_refresh() {
    let _g = isolate_aws_env();
    let now = SystemTime::now();
    let creds = EcsCredentials::new;
    // The first credentials expire in 20 minutes: the token must refresh 5 minutes before that.
    let ecs = EcsEndpoint::start(vec![
        creds("AKIDROTATE1", now + Duration::from_secs(1200)),
        creds("AKIDROTATE2", now + Duration::from_secs(7200)),
    ])
    .unwrap();
    std::env::set_var("AWS_CONTAINER_CREDENTIALS_FULL_URI", ecs.uri());
    let server = MockMantle::start(None).unwrap();
    let clock = ManualClock::at_unix(unix_seconds(now) as u64);
    let p = provider(
        &server,
        ProviderOptions {
            clock: Arc::new(clock.clone()),
            ..ProviderOptions::default()
        },
    );

    let first = p.bearer_token().unwrap();
    assert_eq!(akid_of(first.token.expose()), "AKIDROTATE1");
    assert_eq!(ecs.calls(), 1);
    clock.advance(Duration::from_secs(600));
    assert_eq!(
        p.bearer_token().unwrap().token,
        first.token,
        "10 min in: cached, no refresh"
    );
    assert_eq!(ecs.calls(), 1);

    clock.advance(Duration::from_secs(301)); // 15 min + 1 s: refresh due (credentials expire at 20 min)
    let during = p.bearer_token().unwrap();
    assert_eq!(
        during.token, first.token,
        "the caller does not wait for the refresh"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let rotated = loop {
        let t = p.bearer_token().unwrap();
        if akid_of(t.token.expose()) == "AKIDROTATE2" {
            break t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the background refresh picked up the rotated credentials"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(ecs.calls(), 2);
    assert!(rotated.expires_at.unwrap() > first.expires_at.unwrap());
}

#[test]
fn no_credentials_skips_the_provider_with_a_reason_logged_once() {
    let _g = isolate_aws_env();
    let logs = capture_logs(tracing::Level::DEBUG);
    let server = MockMantle::start(None).unwrap();
    let cfg = format!(
        "{{ baseUrl: '{}', region: 'eu-north-1' }}",
        server.base_url()
    );
    let p = Provider::new("", &cfg, ProviderOptions::default()).unwrap();
    for _ in 0..3 {
        let c = p.catalog();
        assert!(
            matches!(&c.outcome, Outcome::Skipped { reason, .. } if reason == "no-credentials"),
            "{:?}",
            c.outcome
        );
        assert!(c.provider.is_none());
    }
    let p2 = Provider::new("", &cfg, ProviderOptions::default()).unwrap();
    p2.catalog();
    assert!(server.requests().is_empty(), "no HTTP without a token");
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("skipped: no bearer token") && l.contains("eu-north-1"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "logged once per distinct reason per region: {text}"
    );
    assert!(
        lines[0].contains("no-credentials") && lines[0].contains("DEBUG"),
        "{}",
        lines[0]
    );
}

#[test]
fn failing_credentials_skip_the_provider_as_credentials_error() {
    let _g = isolate_aws_env();
    // A container credentials endpoint that answers, but not with credentials.
    let broken = MockMantle::start(None).unwrap();
    std::env::set_var(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        format!("{}/not-credentials", broken.origin()),
    );
    let server = MockMantle::start(None).unwrap();
    let p = provider(&server, ProviderOptions::default());
    let c = p.catalog();
    assert!(
        matches!(&c.outcome, Outcome::Skipped { reason, detail: Some(d) }
            if reason == "credentials-error" && d.contains("AWS credentials error")),
        "{:?}",
        c.outcome
    );
    assert!(c.provider.is_none());
    assert!(
        server.requests().is_empty(),
        "no Mantle request without a token"
    );
    let e = p.bearer_token().unwrap_err();
    assert_eq!(e.reason(), "credentials-error");
}
