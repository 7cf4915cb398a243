//! The auth entry point over the ABI: {token, expires_at, source}, by the resolution order.
//! Changes the process environment (which the cdylib reads too), so tests run one at a time.

mod common;

use common::*;
use mantle_mock_server::{testkit::isolate_aws_env, MockMantle};

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn explicit_keys_report_their_source_and_no_expiry() {
    let _g = isolate_aws_env();
    let server = MockMantle::start(None).unwrap();
    let t = provider_for(&server, "  literal-key ")
        .bearer_token()
        .unwrap();
    assert_eq!(
        (t.token.as_str(), t.source.as_str(), t.expires_at_unix),
        ("literal-key", "config", 0)
    );
    assert!(
        !format!("{t:?}").contains("literal-key"),
        "Debug hides the token"
    );

    std::env::set_var("MY_MANTLE_KEY", "from-my-env");
    let cfg = serde_json::json!({"baseUrl": server.base_url(), "apiKey": "env:MY_MANTLE_KEY"})
        .to_string();
    let p = plugin().create_provider("", &cfg).unwrap();
    let t = p.bearer_token().unwrap();
    assert_eq!(
        (t.token.as_str(), t.source.as_str()),
        ("from-my-env", "config-env")
    );
    std::env::set_var("MY_MANTLE_KEY", "rotated");
    assert_eq!(
        p.bearer_token().unwrap().token,
        "rotated",
        "env: references are read at request time"
    );

    std::env::set_var("AWS_BEARER_TOKEN_BEDROCK", "bearer-env");
    std::env::set_var("MY_MANTLE_KEY", "   ");
    let t = p.bearer_token().unwrap();
    assert_eq!(
        (t.token.as_str(), t.source.as_str()),
        ("bearer-env", "env"),
        "a blank env reference falls through"
    );
}

#[test]
fn iam_minted_token_over_the_abi() {
    let _g = isolate_aws_env();
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDABITEST");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "abi-secret");
    let server = MockMantle::start(None).unwrap();
    let cfg = serde_json::json!({"baseUrl": server.base_url(), "region": "eu-west-2"}).to_string();
    let p = plugin().create_provider("", &cfg).unwrap();
    let t = p.bearer_token().unwrap();
    assert_eq!(t.source, "iam");
    assert!(t.token.starts_with("bedrock-api-key-"));
    let now = unix_now();
    assert!(
        (now + 7190..=now + 7201).contains(&t.expires_at_unix),
        "expires about 7200 s from now: {}",
        t.expires_at_unix
    );
    let events = run_stream(&p, &request("openai.gpt-oss-120b", "minted"));
    assert_eq!(text_of(&events), "echo: minted");
    let auth = server.requests_to("/v1/chat/completions")[0]
        .header("authorization")
        .unwrap()
        .to_string();
    assert_eq!(
        auth,
        format!("Bearer {}", t.token),
        "requests carry the minted token"
    );
}

#[test]
fn no_credentials_is_an_error_value_and_a_skip() {
    let _g = isolate_aws_env();
    let server = MockMantle::start(None).unwrap();
    let cfg = serde_json::json!({"baseUrl": server.base_url()}).to_string();
    let p = plugin().create_provider("", &cfg).unwrap();
    let e = p.bearer_token().unwrap_err();
    assert_eq!(e.code, mantle_host_shim::ErrorCode::AuthUnavailable);
    assert!(e.message.starts_with("no-credentials"), "{}", e.message);
    let c = p.catalog().unwrap();
    assert_eq!(c["outcome"]["status"], "skipped");
    assert_eq!(c["outcome"]["reason"], "no-credentials");
    let events = run_stream(&p, &request("openai.gpt-oss-120b", "x"));
    assert_eq!(terminal(&events).value()["kind"], "auth");
    assert!(server.requests().is_empty());
}
