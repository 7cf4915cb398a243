//! The provider's runtime gets the worker threads the plugin config asks for (issue #13),
//! and gives them all back on close.

use mantle_provider::provider::{Provider, ProviderOptions};

/// Threads of this process named like the provider's runtime workers.
fn provider_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "mantle-provider")
        .count()
}

#[test]
fn worker_threads_follow_the_plugin_config() {
    let before = provider_threads();
    let p = Provider::new(
        "{ discovery: { enabled: false }, runtime: { workerThreads: 5 } }",
        "",
        ProviderOptions::default(),
    )
    .unwrap();
    assert_eq!(provider_threads() - before, 5);
    drop(p);
    assert_eq!(provider_threads(), before, "closing joins every worker");
}
