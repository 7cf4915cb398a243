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

/// The provider thread count once it has settled: workers name themselves once running, which
/// can be after the create returned.
fn settled_provider_threads(expected: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while provider_threads() != expected && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // Any extra thread would have had time to appear by now.
    std::thread::sleep(std::time::Duration::from_millis(50));
    provider_threads()
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
    assert_eq!(settled_provider_threads(before + 5) - before, 5);
    drop(p);
    assert_eq!(provider_threads(), before, "closing joins every worker");
}
