//! Foundation: the built cdylib loaded through host-shim, discovery + streams against the local
//! server, ABI refusal, config errors across the ABI.

mod common;

use common::*;
use mantle_host_shim::{ErrorCode, EventKind, LoadError, Plugin};
use mantle_mock_server::MockMantle;

#[test]
fn plugin_reports_its_identity_and_abi() {
    let p = plugin();
    let f = p.facts();
    assert_eq!(f.provider_id, "amazon-bedrock-mantle");
    assert_eq!(f.label, "Amazon Bedrock Mantle (OpenAI-compatible)");
    assert_eq!(
        (f.abi_major, f.abi_minor),
        (mantle_abi::ABI_MAJOR, mantle_abi::ABI_MINOR)
    );
    assert_ne!(p.loaded_from(), p.source(), "loaded from a unique copy");
}

#[test]
fn discovery_and_streams_on_both_routes_end_to_end() {
    let server = MockMantle::start(Some("tok-123")).unwrap();
    let provider = provider_for(&server, "tok-123");
    let catalog = provider.catalog().unwrap();
    assert_eq!(catalog["outcome"]["status"], "ready", "{catalog}");
    let ids: Vec<&str> = catalog["provider"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"openai.gpt-oss-120b"), "{ids:?}");
    assert!(
        ids.contains(&"anthropic.claude-sonnet-5"),
        "curated rows appended: {ids:?}"
    );
    assert_eq!(catalog["provider"]["baseUrl"], server.base_url());
    assert!(
        !catalog.to_string().contains("tok-123"),
        "the key never appears in the catalog"
    );

    let events = run_stream(&provider, &request("openai.gpt-oss-120b", "one"));
    assert_eq!(text_of(&events), "echo: one");
    assert_eq!(events[0].kind, EventKind::Start);
    assert_eq!(terminal(&events).value()["stop_reason"], "stop");

    let events = run_stream(&provider, &request("anthropic.claude-opus-4-7", "two"));
    assert_eq!(text_of(&events), "echo: two");
    assert_eq!(terminal(&events).kind, EventKind::Done);

    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/v1/models",
            "/v1/chat/completions",
            "/anthropic/v1/messages"
        ]
    );
    for r in server.requests() {
        assert_eq!(
            r.header("authorization"),
            Some("Bearer tok-123"),
            "{}",
            r.path
        );
    }
}

#[test]
fn incompatible_abi_is_refused_with_a_clear_message() {
    let fake = build_cdylib("mantle-fake-plugin-abi2", "mantle_fake_plugin_abi2");
    let err = Plugin::load(&fake).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::AbiMismatch { .. }), "{msg}");
    assert!(msg.contains("incompatible ABI"), "{msg}");
    let host_abi = format!(
        "host ABI {}.{}",
        mantle_abi::ABI_MAJOR,
        mantle_abi::ABI_MINOR
    );
    assert!(msg.contains(&host_abi), "{msg}");
    assert!(msg.contains("2.0.0"), "names the plugin's version: {msg}");
    // The real plugin still loads afterwards.
    assert!(Plugin::load(plugin_path()).is_ok());
}

#[test]
fn a_library_that_is_not_a_plugin_is_refused() {
    let dir = tempdir();
    let bogus = dir.join("libbogus.so");
    std::fs::write(&bogus, b"not an ELF file").unwrap();
    let err = Plugin::load(&bogus).unwrap_err();
    assert!(matches!(err, LoadError::Open { .. }), "{err}");
    let err = Plugin::load(dir.join("missing.so")).unwrap_err();
    assert!(err.to_string().contains("no such file"), "{err}");
}

#[test]
fn config_errors_cross_the_abi_as_values_naming_the_field() {
    let p = plugin();
    let err = p
        .create_provider("{ discovery: { enabled: 'yes' } }", "")
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidConfig);
    assert!(err.message.contains("discovery.enabled"), "{}", err.message);
    let err = p
        .create_provider("", "{ models: [{ id: 'x', maxTokens: -1 }] }")
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidConfig);
    assert!(
        err.message.contains("models[0].maxTokens"),
        "{}",
        err.message
    );
    let err = p.create_provider("", "{ unknownKey: 1 }").unwrap_err();
    assert!(err.message.contains("unknownKey"), "{}", err.message);
    let err = p.create_provider("", "{ not json5").unwrap_err();
    assert!(err.message.contains("JSON5"), "{}", err.message);
}

#[test]
fn bad_requests_and_closed_handles_are_errors_not_crashes() {
    let server = MockMantle::start(None).unwrap();
    let provider = provider_for(&server, "k");
    let err = provider.stream("{ nope").unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    let err = provider
        .stream(r#"{"model": "", "messages": []}"#)
        .unwrap_err();
    assert!(err.message.contains("model"), "{}", err.message);
    // Raw module access with a handle that never existed.
    let m = plugin().module();
    let r = (m.catalog())(987_654_321).into_result().unwrap_err();
    assert_eq!(r.code, ErrorCode::InvalidHandle);
    let r = (m.stream_next())(987_654_321, 0).into_result().unwrap_err();
    assert_eq!(r.code, ErrorCode::InvalidHandle);
    assert!(server.requests().is_empty());
}
