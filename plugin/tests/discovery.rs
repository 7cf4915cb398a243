//! Discovery, cache, outcome and config merge against the local Mantle-compatible server, with an
//! injected clock and environment (spec §1, §3, §4).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use mantle_mock_server::{MockMantle, Reply, Route, Step};
use mantle_provider::{
    clock::ManualClock,
    discovery::{Limits, Outcome},
    provider::{CatalogResult, Provider, ProviderOptions},
};
use serde_json::json;

type Env = Arc<Mutex<HashMap<String, String>>>;

fn options(clock: &ManualClock, env: &Env) -> ProviderOptions {
    let env = env.clone();
    ProviderOptions {
        env: Arc::new(move |k| env.lock().unwrap().get(k).cloned()),
        clock: Arc::new(clock.clone()),
        ..ProviderOptions::default()
    }
}

fn env_with(pairs: &[(&str, &str)]) -> Env {
    Arc::new(Mutex::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    ))
}

fn provider(
    server: &MockMantle,
    extra: serde_json::Value,
    clock: &ManualClock,
    env: &Env,
) -> Provider {
    let mut cfg = json!({"baseUrl": server.base_url(), "apiKey": "env:MANTLE_KEY"});
    cfg.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    Provider::new("", &cfg.to_string(), options(clock, env)).unwrap()
}

/// Credentials that count how often they are asked for.
fn counting_credentials() -> (
    aws_credential_types::provider::SharedCredentialsProvider,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    use aws_credential_types::{
        provider::{future, ProvideCredentials, SharedCredentialsProvider},
        Credentials,
    };
    #[derive(Debug)]
    struct Counting(Arc<std::sync::atomic::AtomicUsize>);
    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            future::ProvideCredentials::ready(Ok(Credentials::new("AKIDC", "s", None, None, "t")))
        }
    }
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    (
        SharedCredentialsProvider::new(Counting(calls.clone())),
        calls,
    )
}

fn ids(c: &CatalogResult) -> Vec<String> {
    c.provider
        .as_ref()
        .map(|p| p.models.iter().map(|m| m.id.clone()).collect())
        .unwrap_or_default()
}

fn model_requests(server: &MockMantle) -> usize {
    server.requests_to("/v1/models").len()
}

#[test]
fn request_shape_rows_and_one_hour_cache() {
    let server = MockMantle::start(Some("k1")).unwrap();
    server.set_models(vec![
        json!({"id": "zeta.m"}),
        json!({"id": " "}),
        json!({"object": "model"}),
        json!({"id": "alpha.m"}),
    ]);
    let clock = ManualClock::at_unix(1_780_000_000);
    let env = env_with(&[("MANTLE_KEY", " k1 ")]);
    let p = provider(&server, json!({}), &clock, &env);

    let c = p.catalog();
    assert_eq!(
        c.outcome,
        Outcome::Ready {
            source: "discovery".into()
        }
    );
    let got = ids(&c);
    assert_eq!(
        &got[..2],
        ["alpha.m", "zeta.m"],
        "blank ids dropped, sorted"
    );
    assert_eq!(got.len(), 7, "5 curated Claude rows appended");
    let entry = c.provider.as_ref().unwrap();
    assert_eq!(entry.api_key, "env:MANTLE_KEY");
    assert_eq!(entry.base_url, server.base_url());
    let req = &server.requests_to("/v1/models")[0];
    assert_eq!(req.method, "GET");
    assert_eq!(req.header("authorization"), Some("Bearer k1"));
    assert_eq!(req.header("accept"), Some("application/json"));

    clock.advance(Duration::from_secs(3599));
    assert_eq!(
        p.catalog().outcome,
        Outcome::Ready {
            source: "cache".into()
        }
    );
    assert_eq!(
        model_requests(&server),
        1,
        "a second call within the hour makes no HTTP request"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        p.catalog().outcome,
        Outcome::Ready {
            source: "discovery".into()
        }
    );
    assert_eq!(model_requests(&server), 2, "age >= 3600 s refetches");
}

#[test]
fn failure_serves_last_good_rows_for_the_same_credential_only() {
    let server = MockMantle::start(None).unwrap();
    let clock = ManualClock::at_unix(1_780_000_000);
    let env = env_with(&[("MANTLE_KEY", "cred-a")]);
    let p = provider(&server, json!({}), &clock, &env);
    let first = p.catalog();
    assert!(!ids(&first).is_empty());

    clock.advance(Duration::from_secs(7200));
    server.push(
        Route::Models,
        Reply::status(500, "{\"error\":{\"message\":\"boom\"}}"),
    );
    let stale = p.catalog();
    assert_eq!(
        stale.outcome,
        Outcome::Ready {
            source: "stale-cache".into()
        }
    );
    assert_eq!(ids(&stale), ids(&first), "stale rows served on failure");

    env.lock()
        .unwrap()
        .insert("MANTLE_KEY".into(), "cred-b".into());
    server.push(Route::Models, Reply::status(502, "bad gateway"));
    let other = p.catalog();
    assert!(
        matches!(&other.outcome, Outcome::Unavailable { detail } if detail.contains("502")),
        "{:?}",
        other.outcome
    );
    assert!(
        other.provider.is_none(),
        "another credential never sees cred-a's rows"
    );
    let auths: Vec<_> = server
        .requests_to("/v1/models")
        .iter()
        .map(|r| r.header("authorization").unwrap().to_string())
        .collect();
    assert_eq!(auths, ["Bearer cred-a", "Bearer cred-a", "Bearer cred-b"]);
}

#[test]
fn auth_rejected_and_invalid_bodies_are_outcomes_not_errors() {
    let server = MockMantle::start(Some("right")).unwrap();
    let clock = ManualClock::at_unix(1_780_000_000);
    let env = env_with(&[("MANTLE_KEY", "wrong")]);
    let p = provider(&server, json!({}), &clock, &env);
    let c = p.catalog();
    assert_eq!(c.outcome, Outcome::AuthRejected { http_status: 401 });
    assert!(c.provider.is_none());

    env.lock()
        .unwrap()
        .insert("MANTLE_KEY".into(), "right".into());
    server.push(Route::Models, Reply::status(403, "{}"));
    assert_eq!(
        p.catalog().outcome,
        Outcome::AuthRejected { http_status: 403 }
    );

    let cases: Vec<(Reply, &str)> = vec![
        (
            Reply::json(&json!({"data": {"id": "x"}})),
            "no `data` array",
        ),
        (Reply::status(200, "<html>"), "not JSON"),
        (
            Reply::Stream {
                content_type: "application/json".into(),
                steps: vec![Step::Bytes(b"{\"data\":[{\"id\":\"\xff\"}]}".to_vec())],
            },
            "not UTF-8",
        ),
        (
            Reply::status(
                200,
                format!(
                    "{{\"data\":[{{\"id\":\"{}\"}}]}}",
                    "x".repeat(4 * 1024 * 1024)
                ),
            ),
            "larger than 4194304 bytes",
        ),
    ];
    for (reply, expected) in cases {
        server.push(Route::Models, reply);
        let c = p.catalog();
        assert!(
            matches!(&c.outcome, Outcome::Unavailable { detail } if detail.contains(expected)),
            "{expected}: {:?}",
            c.outcome
        );
        assert!(c.provider.is_none());
    }
}

/// A model list of exactly 4 MiB (the body cap): one model, `big`, and padding.
fn exactly_4_mib_model_list() -> String {
    let prefix = "{\"data\":[{\"id\":\"big\"}],\"pad\":\"";
    let body = format!(
        "{prefix}{}\"}}",
        "x".repeat(4 * 1024 * 1024 - prefix.len() - 2)
    );
    assert_eq!(body.len(), 4_194_304);
    body
}

#[test]
fn body_cap_is_exact_4_mib_with_a_content_length() {
    let server = MockMantle::start(None).unwrap();
    let clock = ManualClock::at_unix(1_780_000_000);
    let env = env_with(&[("MANTLE_KEY", "k")]);
    let p = provider(&server, json!({}), &clock, &env);
    let exact = exactly_4_mib_model_list();
    // A declared length of exactly 4 MiB: accepted.
    server.push(Route::Models, Reply::status(200, exact.clone()));
    assert_eq!(ids(&p.catalog())[0], "big");
    // One byte more, declared: refused before reading it.
    clock.advance(Duration::from_secs(3600));
    server.push(Route::Models, Reply::status(200, format!("{exact} ")));
    assert_eq!(
        p.catalog().outcome,
        Outcome::Ready {
            source: "stale-cache".into()
        },
        "over the cap is a failed discovery"
    );
}

#[test]
fn body_cap_is_exact_4_mib_when_streamed_without_length() {
    let server = MockMantle::start(None).unwrap();
    let clock = ManualClock::at_unix(1_780_000_000);
    let env = env_with(&[("MANTLE_KEY", "k")]);
    let p = provider(&server, json!({}), &clock, &env);
    // Exactly 4 MiB, chunked (no content-length): accepted.
    let body = exactly_4_mib_model_list().into_bytes();
    let steps: Vec<Step> = body
        .chunks(65536)
        .map(|c| Step::Bytes(c.to_vec()))
        .collect();
    server.push(
        Route::Models,
        Reply::Stream {
            content_type: "application/json".into(),
            steps: steps.clone(),
        },
    );
    assert_eq!(ids(&p.catalog())[0], "big");
    // One byte more: refused.
    clock.advance(Duration::from_secs(3600));
    let mut over = steps;
    over.push(Step::Bytes(b" ".to_vec()));
    server.push(
        Route::Models,
        Reply::Stream {
            content_type: "application/json".into(),
            steps: over,
        },
    );
    let c = p.catalog();
    assert_eq!(
        c.outcome,
        Outcome::Ready {
            source: "stale-cache".into()
        },
        "over the cap is a failed discovery"
    );
}

#[test]
fn deadline_and_idle_limits() {
    // Each limit is tested on its own provider, the other limit set far away (60 s), so a slow
    // machine cannot make one fire in place of the other.
    let server = MockMantle::start(None).unwrap();
    let clock = ManualClock::at_unix(1_780_000_000);
    let env = env_with(&[("MANTLE_KEY", "k")]);
    let cfg = json!({"baseUrl": server.base_url(), "apiKey": "env:MANTLE_KEY"}).to_string();
    let with_limits = |deadline_ms: u64, idle_ms: u64| {
        let mut opts = options(&clock, &env);
        opts.discovery_limits = Limits {
            deadline: Duration::from_millis(deadline_ms),
            chunk_idle: Duration::from_millis(idle_ms),
            body_cap: 4 << 20,
        };
        Provider::new("", &cfg, opts).unwrap()
    };

    server.push(
        Route::Models,
        Reply::Delayed(
            Duration::from_secs(30),
            Box::new(Reply::json(&json!({"data": []}))),
        ),
    );
    let c = with_limits(400, 60_000).catalog();
    assert!(
        matches!(&c.outcome, Outcome::Unavailable { detail } if detail == "network error: timed out after 400 ms"),
        "{:?}",
        c.outcome
    );

    server.push(
        Route::Models,
        Reply::Stream {
            content_type: "application/json".into(),
            steps: vec![Step::Bytes(b"{\"data\":[".to_vec()), Step::Stall],
        },
    );
    let c = with_limits(60_000, 200).catalog();
    assert!(
        matches!(&c.outcome, Outcome::Unavailable { detail } if detail.contains("no body data for 200 ms")),
        "{:?}",
        c.outcome
    );
}

#[test]
fn empty_discovery_is_skipped_and_cached() {
    let server = MockMantle::start(None).unwrap();
    server.set_models(vec![]);
    let clock = ManualClock::at_unix(1_780_000_000);
    let env = env_with(&[("MANTLE_KEY", "k")]);
    let p = provider(&server, json!({}), &clock, &env);
    let c = p.catalog();
    assert!(matches!(&c.outcome, Outcome::Skipped { reason, .. } if reason == "empty"));
    assert!(
        c.provider.is_none(),
        "no Claude rows after an empty discovery"
    );
    p.catalog();
    assert_eq!(model_requests(&server), 1, "empty results are cached too");
}

#[test]
fn curated_claude_rows_replace_discovered_rows_with_the_same_id() {
    let server = MockMantle::start(None).unwrap();
    server.set_models(vec![
        json!({"id": "anthropic.claude-opus-5"}),
        json!({"id": "openai.gpt-oss-20b"}),
    ]);
    let clock = ManualClock::at_unix(1_780_000_000);
    let env = env_with(&[("MANTLE_KEY", "k")]);
    let c = provider(&server, json!({}), &clock, &env).catalog();
    let models = &c.provider.unwrap().models;
    let opus: Vec<_> = models
        .iter()
        .filter(|m| m.id == "anthropic.claude-opus-5")
        .collect();
    assert_eq!(opus.len(), 1);
    assert_eq!(opus[0].name, "Claude Opus 5");
    assert_eq!(opus[0].api.as_deref(), Some("anthropic-messages"));
    let oss = models
        .iter()
        .find(|m| m.id == "openai.gpt-oss-20b")
        .unwrap();
    assert_eq!(
        (oss.context_window, oss.max_tokens),
        (131_072, 32_768),
        "known-model table applied"
    );
}

#[test]
fn disabled_discovery_makes_no_http_and_serves_manual_models() {
    let server = MockMantle::start(None).unwrap();
    let clock = ManualClock::at_unix(1_780_000_000);
    let env = env_with(&[]);
    let cfg = json!({"baseUrl": server.base_url(), "models": [{"id": "mine.m", "name": "Mine"}]})
        .to_string();
    // No key anywhere: the IAM path would mint. A counting credentials provider proves it does
    // not even ask for credentials.
    let (credentials, calls) = counting_credentials();
    let p = Provider::new(
        "{ discovery: { enabled: false } }",
        &cfg,
        ProviderOptions {
            credentials: Some(credentials),
            ..options(&clock, &env)
        },
    )
    .unwrap();
    let c = p.catalog();
    assert!(matches!(&c.outcome, Outcome::Skipped { reason, .. } if reason == "disabled"));
    assert_eq!(ids(&c), ["mine.m"]);
    assert!(server.requests().is_empty(), "no HTTP at all");
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no token minting: credentials were never asked for"
    );
    assert_eq!(c.provider.unwrap().api_key, "__amazon_bedrock_mantle_iam__");
    let p = Provider::new(
        "{ discovery: { enabled: false } }",
        "",
        options(&clock, &env),
    )
    .unwrap();
    assert!(p.catalog().provider.is_none());
}

#[test]
fn user_models_replace_the_catalog_and_user_keys_win() {
    let server = MockMantle::start(None).unwrap();
    let clock = ManualClock::at_unix(1_780_000_000);
    let env = env_with(&[("MANTLE_KEY", "k")]);
    let p = provider(
        &server,
        json!({"api": "anthropic-messages", "models": [{"id": "x.y", "maxTokens": 99}]}),
        &clock,
        &env,
    );
    let entry = p.catalog().provider.unwrap();
    assert_eq!(entry.api, "anthropic-messages");
    assert_eq!(entry.models.len(), 1);
    assert_eq!(
        (
            entry.models[0].id.as_str(),
            entry.models[0].max_tokens,
            entry.models[0].context_window
        ),
        ("x.y", 99, 32000)
    );
    let p = provider(&server, json!({"models": []}), &clock, &env);
    assert_eq!(
        ids(&p.catalog()).len(),
        mantle_mock_server::DEFAULT_MODELS.len() - 1 + 5,
        "an empty list keeps the discovered catalog (the server's ids, Opus 4.7 replaced by its \
         curated row, + 5 curated)"
    );
}

#[test]
fn region_resolution_and_unsupported_regions() {
    let clock = ManualClock::at_unix(1_780_000_000);
    let env = env_with(&[
        ("AWS_REGION", "ca-central-1"),
        ("AWS_BEARER_TOKEN_BEDROCK", "k"),
    ]);
    let p = Provider::new("", "", options(&clock, &env)).unwrap();
    let c = p.catalog();
    assert!(
        matches!(&c.outcome, Outcome::Skipped { reason, detail: Some(d) } if reason == "unsupported-region" && d.contains("ca-central-1")),
        "{:?}",
        c.outcome
    );

    let env = env_with(&[("AWS_REGION", "us-east-1.attacker.example")]);
    let err = Provider::new("", "", options(&clock, &env))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("AwsRegion") && err.contains("not a region name"),
        "{err}"
    );

    let err = Provider::new("", "{ region: 'EU-WEST-1' }", options(&clock, &env))
        .unwrap_err()
        .to_string();
    assert!(err.contains("field `region`"), "{err}");
}

#[test]
fn catalog_api_key_names_the_source_the_token_really_comes_from() {
    use aws_credential_types::{provider::SharedCredentialsProvider, Credentials};
    let server = MockMantle::start(None).unwrap();
    let clock = ManualClock::at_unix(1_780_000_000);
    let iam =
        SharedCredentialsProvider::new(Credentials::new("AKIDCAT", "secret", None, None, "t"));
    let cases = [
        // (apiKey, environment, expected catalog apiKey)
        (
            Some("literal-secret-key"),
            vec![],
            "env:AWS_BEARER_TOKEN_BEDROCK",
        ),
        (Some("env:MY_KEY"), vec![("MY_KEY", "k")], "env:MY_KEY"),
        (
            Some("env:MY_KEY"),
            vec![("MY_KEY", "  "), ("AWS_BEARER_TOKEN_BEDROCK", "k")],
            "env:AWS_BEARER_TOKEN_BEDROCK",
        ),
        (
            Some("env:MY_KEY"),
            vec![("MY_KEY", "")],
            "__amazon_bedrock_mantle_iam__",
        ),
        (
            None,
            vec![("AWS_BEARER_TOKEN_BEDROCK", "k")],
            "env:AWS_BEARER_TOKEN_BEDROCK",
        ),
        (None, vec![], "__amazon_bedrock_mantle_iam__"),
    ];
    for (api_key, env, expected) in cases {
        let mut cfg = json!({"baseUrl": server.base_url()});
        if let Some(k) = api_key {
            cfg["apiKey"] = json!(k);
        }
        let options = ProviderOptions {
            credentials: Some(iam.clone()),
            ..options(&clock, &env_with(&env))
        };
        let p = Provider::new("", &cfg.to_string(), options).unwrap();
        let c = p.catalog();
        let entry = c.provider.expect("a catalog");
        // Failed before the fix: `<configured>` for a literal, `env:MY_KEY` for a blank one.
        assert_eq!(entry.api_key, expected, "apiKey {api_key:?}, env {env:?}");
        let text = serde_json::to_string(&entry).unwrap();
        assert!(!text.contains("literal-secret-key"), "{text}");
    }
}

#[test]
fn discovery_sends_provider_headers_and_catalogs_hide_header_values() {
    let server = MockMantle::start(Some("k")).unwrap();
    let clock = ManualClock::at_unix(1_780_000_000);
    let env = env_with(&[("MANTLE_KEY", "k")]);
    let p = provider(
        &server,
        json!({
            "headers": {"x-team": "blue", "x-proxy-key": "hdr-secret-1", "authorization": "Bearer evil"},
            "models": [{"id": "m.x", "headers": {"x-tenant": "hdr-secret-2"}}],
        }),
        &clock,
        &env,
    );
    let c = p.catalog();
    // Failed before the fix: discovery sent no provider headers.
    let sent = &server.requests_to("/v1/models")[0];
    assert_eq!(sent.header("x-team"), Some("blue"));
    assert_eq!(sent.header("x-proxy-key"), Some("hdr-secret-1"));
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer k"),
        "never overridden"
    );
    let text = serde_json::to_string(&c.provider.unwrap()).unwrap();
    for secret in ["blue", "hdr-secret-1", "hdr-secret-2", "evil"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(
        text.contains("x-proxy-key") && text.contains("x-tenant"),
        "{text}"
    );
}

#[test]
fn the_sdk_endpoint_variable_replaces_the_derived_origin_and_extra_regions_extend_the_list() {
    let server = MockMantle::start(Some("k")).unwrap();
    let clock = ManualClock::at_unix(1_780_000_000);
    // AWS_ENDPOINT_URL_BEDROCK_MANTLE with no baseUrl: discovery goes there, in a region the
    // built-in list lacks (an endpoint that is configured never skips for the region).
    let env = env_with(&[
        ("AWS_BEARER_TOKEN_BEDROCK", "k"),
        ("AWS_REGION", "ap-southeast-2"),
        ("AWS_ENDPOINT_URL_BEDROCK_MANTLE", &server.origin()),
    ]);
    let p = Provider::new("", "", options(&clock, &env)).unwrap();
    let c = p.catalog();
    assert!(
        matches!(c.outcome, Outcome::Ready { .. }),
        "{:?}",
        c.outcome
    );
    assert_eq!(
        c.provider.unwrap().base_url,
        format!("{}/v1", server.origin())
    );
    assert_eq!(server.requests_to("/v1/models").len(), 1);
    // A configured baseUrl still wins over the variable.
    let other = MockMantle::start(Some("k")).unwrap();
    let cfg = json!({"baseUrl": other.base_url()}).to_string();
    let p = Provider::new("", &cfg, options(&clock, &env)).unwrap();
    assert_eq!(p.catalog().provider.unwrap().base_url, other.base_url());
    assert_eq!(other.requests_to("/v1/models").len(), 1);
    assert_eq!(
        server.requests_to("/v1/models").len(),
        1,
        "not the variable's endpoint"
    );
    // The variable is checked like baseUrl: plain http only to loopback.
    let bad = env_with(&[(
        "AWS_ENDPOINT_URL_BEDROCK_MANTLE",
        "http://mantle.example.com",
    )]);
    let e = Provider::new("", "", options(&clock, &bad))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("AWS_ENDPOINT_URL_BEDROCK_MANTLE") && e.contains("https"),
        "{e}"
    );

    // Without an endpoint, ap-southeast-2 is skipped unless extraRegions lists it.
    let env = env_with(&[
        ("AWS_BEARER_TOKEN_BEDROCK", "k"),
        ("AWS_REGION", "ap-southeast-2"),
    ]);
    let c = Provider::new("", "", options(&clock, &env))
        .unwrap()
        .catalog();
    assert!(
        matches!(&c.outcome, Outcome::Skipped { reason, .. } if reason == "unsupported-region"),
        "{:?}",
        c.outcome
    );
    // With extraRegions the region is served (region::tests checks the choice); discovery is
    // disabled here so the test never reaches for the real host.
    let p = Provider::new(
        "{ discovery: { enabled: false } }",
        "{ extraRegions: ['ap-southeast-2'], models: [{ id: 'x.y' }] }",
        options(&clock, &env),
    )
    .unwrap();
    let entry = p.catalog().provider.expect("manual models served");
    assert_eq!(
        entry.base_url,
        "https://bedrock-mantle.ap-southeast-2.api.aws/v1"
    );
}
