//! `auth: "aws-sigv4"` (spec §2b) against the local server, which verifies every signature with
//! the test credentials it knows: discovery and streams on all three surfaces are signed over
//! the exact bytes sent (service `bedrock-mantle`, the provider's region), no bearer token is
//! ever minted or sent, rotated credentials are picked up, and a bad signature is refused.
//! These tests change the process environment, so they run one at a time in this binary.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use aws_credential_types::{provider::SharedCredentialsProvider, Credentials};
use mantle_mock_server::{
    ecs::{EcsCredentials, EcsEndpoint},
    sigv4::SigV4Keys,
    testkit::isolate_aws_env,
    MockMantle, RecordedRequest,
};
use mantle_provider::{
    clock::{unix_seconds, ManualClock},
    discovery::Outcome,
    errors::ErrorKind,
    provider::{Provider, ProviderOptions},
    stream::{Poll, StreamEvent},
};

const REGION: &str = "us-west-2";

fn sigv4_provider(server: &MockMantle, options: ProviderOptions) -> Provider {
    let cfg = format!(
        "{{ baseUrl: '{}', region: '{REGION}', auth: 'aws-sigv4' }}",
        server.base_url()
    );
    Provider::new("", &cfg, options).unwrap()
}

fn static_credentials(akid: &str, secret: &str) -> Option<SharedCredentialsProvider> {
    Some(SharedCredentialsProvider::new(Credentials::new(
        akid, secret, None, None, "test",
    )))
}

/// A local server that accepts only SigV4 signatures made with `AKIDSTATIC` / `static-secret`.
fn server_wanting_static_key_signatures() -> MockMantle {
    let server = MockMantle::start(None).unwrap();
    server.set_sigv4(Some(
        SigV4Keys::new(REGION, &[]).with_static("AKIDSTATIC", "static-secret"),
    ));
    server
}

/// Text and terminal event of one stream.
fn run(p: &Provider, model: &str) -> (String, StreamEvent) {
    let req = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    let s = p.start_stream(&req).unwrap();
    let mut text = String::new();
    loop {
        match s.next(Duration::from_secs(10)).unwrap() {
            Poll::Event(e) if e.event.is_terminal() => {
                assert_eq!(s.next(Duration::ZERO).unwrap(), Poll::Finished);
                return (text, e.event);
            }
            Poll::Event(e) => text.push_str(e.event.text()),
            Poll::Pending => panic!("stream stalled"),
            Poll::Finished => panic!("finished without a terminal event"),
        }
    }
}

/// The access key id of a request's SigV4 `Authorization` header.
fn signer_of(r: &RecordedRequest) -> String {
    let auth = r.header("authorization").unwrap_or_default();
    let scope = auth
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .unwrap_or_else(|| panic!("not a SigV4 header: {auth:?}"));
    scope.split('/').next().unwrap().to_string()
}

#[test]
fn discovery_and_every_surface_are_signed_and_verified() {
    let _g = isolate_aws_env();
    let server = server_wanting_static_key_signatures();
    let p = sigv4_provider(
        &server,
        ProviderOptions {
            credentials: static_credentials("AKIDSTATIC", "static-secret"),
            ..ProviderOptions::default()
        },
    );
    let c = p.catalog();
    assert_eq!(
        c.outcome,
        Outcome::Ready {
            source: "discovery".into()
        }
    );
    let entry = c.provider.unwrap();
    assert_eq!(entry.auth, "aws-sigv4");
    assert_eq!(entry.api_key, "__amazon_bedrock_mantle_iam__");
    for model in [
        "openai.gpt-oss-120b",
        "openai.gpt-5.5",
        "anthropic.claude-opus-4-7",
    ] {
        let (text, end) = run(&p, model);
        assert!(
            matches!(end, StreamEvent::Done { .. }),
            "{model}: {end:?} (text {text:?})"
        );
        assert_eq!(text, "echo: hi", "{model}");
    }
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/v1/models",
            "/v1/chat/completions",
            "/openai/v1/responses",
            "/anthropic/v1/messages"
        ]
    );
    for r in server.requests() {
        let auth = r.header("authorization").unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDSTATIC/")
                && auth.contains(&format!("/{REGION}/bedrock-mantle/aws4_request, ")),
            "{}: {auth}",
            r.path
        );
        let signed = if r.method == "GET" {
            "SignedHeaders=host;x-amz-date, "
        } else {
            "SignedHeaders=content-type;host;x-amz-date, "
        };
        assert!(auth.contains(signed), "{}: {auth}", r.path);
        assert!(r.header("x-api-key").is_none());
    }
    let e = p.bearer_token().unwrap_err();
    assert_eq!(e.reason(), "aws-sigv4");
}

#[test]
fn a_wrong_secret_is_refused_by_the_server() {
    let _g = isolate_aws_env();
    let server = server_wanting_static_key_signatures();
    let p = sigv4_provider(
        &server,
        ProviderOptions {
            credentials: static_credentials("AKIDSTATIC", "not-the-secret"),
            ..ProviderOptions::default()
        },
    );
    assert_eq!(
        p.catalog().outcome,
        Outcome::AuthRejected { http_status: 403 }
    );
    let (_, end) = run(&p, "openai.gpt-oss-120b");
    let StreamEvent::Error(e) = end else {
        panic!("{end:?}")
    };
    assert_eq!((e.kind, e.status), (ErrorKind::Auth, Some(403)));
    assert!(
        e.message.contains("signature we calculated does not match"),
        "{}",
        e.message
    );
    assert!(!e.message.contains("not-the-secret"));
}

#[test]
fn credentials_from_the_default_chain_rotate_and_no_bearer_token_is_sent() {
    let _g = isolate_aws_env();
    let now = SystemTime::now();
    let first = EcsCredentials::new("AKIDSIGN1", now + Duration::from_secs(1200));
    let second = EcsCredentials::new("AKIDSIGN2", now + Duration::from_secs(7200));
    let ecs = EcsEndpoint::start(vec![first.clone(), second.clone()]).unwrap();
    std::env::set_var("AWS_CONTAINER_CREDENTIALS_FULL_URI", ecs.uri());
    let server = MockMantle::start(None).unwrap();
    server.set_sigv4(Some(SigV4Keys::new(REGION, &[first, second])));
    let clock = ManualClock::at_unix(unix_seconds(now) as u64);
    let p = sigv4_provider(
        &server,
        ProviderOptions {
            clock: Arc::new(clock.clone()),
            ..ProviderOptions::default()
        },
    );
    assert_eq!(run(&p, "openai.gpt-oss-120b").0, "echo: hi");
    assert_eq!(run(&p, "openai.gpt-oss-120b").0, "echo: hi");
    assert_eq!(ecs.calls(), 1, "credentials cached between requests");
    // 15 min + 1 s in: 300 s before the first credentials expire, they are refreshed.
    clock.advance(Duration::from_secs(901));
    assert_eq!(run(&p, "openai.gpt-oss-120b").0, "echo: hi");
    assert_eq!(ecs.calls(), 2);
    let signers: Vec<String> = server.requests().iter().map(signer_of).collect();
    assert_eq!(signers, ["AKIDSIGN1", "AKIDSIGN1", "AKIDSIGN2"]);
    for r in server.requests() {
        assert_eq!(
            r.header("x-amz-security-token"),
            Some(format!("{}-session", signer_of(&r)).as_str()),
            "the session token is sent (and signed)"
        );
        assert!(r
            .header("authorization")
            .unwrap()
            .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, "));
    }
}

#[test]
fn the_bearer_path_is_refused_by_a_server_that_wants_signatures() {
    // The check the server makes is real: a bearer request fails it.
    let _g = isolate_aws_env();
    let server = server_wanting_static_key_signatures();
    let cfg = format!(
        "{{ baseUrl: '{}', region: '{REGION}', apiKey: 'bedrock-api-key-literal' }}",
        server.base_url()
    );
    let p = Provider::new("", &cfg, ProviderOptions::default()).unwrap();
    let (_, end) = run(&p, "openai.gpt-oss-120b");
    let StreamEvent::Error(e) = end else {
        panic!("{end:?}")
    };
    assert_eq!(e.status, Some(403));
    assert!(e.message.contains("AWS4-HMAC-SHA256"), "{}", e.message);
}
