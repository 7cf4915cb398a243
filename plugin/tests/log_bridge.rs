//! `MANTLE_PROVIDER_LOG` also shows what dependencies log through the `log` crate (reqwest,
//! rustls-platform-verifier): the plugin's subscriber installs the `log` bridge. Its own test
//! binary, since the subscriber is process-wide.

#[test]
fn the_plugin_subscriber_takes_the_log_crates_records_at_the_asked_level() {
    assert_eq!(
        log::max_level(),
        log::LevelFilter::Off,
        "nothing installed yet"
    );
    std::env::set_var("MANTLE_PROVIDER_LOG", "debug");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let id = mantle_provider::ffi::provider_create(
        "",
        r#"{"baseUrl": "http://127.0.0.1:9/v1", "apiKey": "test-key-0123456789"}"#,
    )
    .unwrap();
    // The bridge lets `log` records through up to the subscriber's level.
    assert_eq!(log::max_level(), log::LevelFilter::Debug);
    mantle_provider::ffi::provider_close(id).unwrap();
}
