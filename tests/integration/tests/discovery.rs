//! Discovery and the catalog over the ABI (spec §3, §4; issue #4 point 8): the hour-long cache
//! is visible in the server's request log, and disabled discovery sends nothing at all.

mod common;

use common::*;
use mantle_mock_server::MockMantle;
use serde_json::json;

#[test]
fn a_second_catalog_within_the_hour_makes_no_request() {
    let server = MockMantle::start(Some("tok")).unwrap();
    server.set_models(vec![json!({"id": "openai.gpt-oss-20b"})]);
    let provider = provider_for(&server, "tok");

    let first = provider.catalog().unwrap();
    assert_eq!(first["outcome"]["status"], "ready", "{first}");
    assert_eq!(server.requests_to("/v1/models").len(), 1);

    // The server now lists something else: a cached catalog does not see it.
    server.set_models(vec![json!({"id": "other.model"})]);
    let second = provider.catalog().unwrap();
    assert_eq!(
        server.requests_to("/v1/models").len(),
        1,
        "the second call was served from the cache"
    );
    assert_eq!(second["provider"], first["provider"]);

    // A provider instance of its own has its own cache, and sees the new listing.
    let other = provider_for(&server, "tok");
    let fresh = other.catalog().unwrap();
    assert_eq!(server.requests_to("/v1/models").len(), 2);
    assert_eq!(fresh["provider"]["models"][0]["id"], "other.model");
}

#[test]
fn disabled_discovery_sends_no_request_and_says_why() {
    let server = MockMantle::start(Some("tok")).unwrap();
    server.set_models(vec![json!({"id": "openai.gpt-oss-20b"})]);
    let provider_config = json!({"baseUrl": server.base_url(), "apiKey": "tok"}).to_string();
    let provider = plugin()
        .create_provider("{discovery: {enabled: false}}", &provider_config)
        .unwrap();
    let catalog = provider.catalog().unwrap();
    assert_eq!(catalog["outcome"]["status"], "skipped");
    assert_eq!(catalog["outcome"]["reason"], "disabled");
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}
