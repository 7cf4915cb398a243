//! Shared helpers: build the plugin cdylib once, load it through host-shim, start the local server.

#![allow(dead_code)]

pub mod c_api;
pub mod external;

use std::{
    path::PathBuf,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use mantle_host_shim::{Event, EventKind, Plugin, Provider};
use once_cell::sync::Lazy;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

static BUILD_LOCK: Lazy<Mutex<()>> = Lazy::new(|| Mutex::new(()));

/// Runs `cargo build --quiet` (debug profile) in the workspace with extra arguments.
fn cargo_build(args: &[&str]) {
    cargo_build_with_tag(args, None)
}

/// Like `cargo_build`, with `MANTLE_BUILD_TAG` set (or explicitly unset).
fn cargo_build_with_tag(args: &[&str], tag: Option<&str>) {
    cargo_build_with_env(args, &[("MANTLE_BUILD_TAG", tag)]);
}

/// Like `cargo_build`, with build-time variables set (`Some`) or explicitly unset (`None`).
fn cargo_build_with_env(args: &[&str], vars: &[(&str, Option<&str>)]) {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    for (name, value) in vars {
        match value {
            Some(v) => command.env(name, v),
            None => command.env_remove(name),
        };
    }
    let status = command
        .args(["build", "--quiet", "--locked"])
        .args(args)
        .current_dir(workspace_root())
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build {args:?} failed");
}

/// Builds a workspace cdylib package (debug profile) and returns its file.
pub fn build_cdylib(package: &str, file_stem: &str) -> PathBuf {
    cargo_build(&["-p", package]);
    let file = target_dir().join("debug").join(format!(
        "{}{file_stem}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(file.is_file(), "{} was not built", file.display());
    file
}

fn plugin_file_name() -> String {
    format!(
        "{}mantle_provider{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Builds the plugin with `MANTLE_BUILD_TAG=tag` (a distinguishable version: its build tag and
/// upstream `user-agent` carry the tag), copies it to `target/tagged-plugins/<tag>/`, and
/// rebuilds the untagged plugin so `target/debug` is left as other tests expect.
pub fn build_tagged_plugin(tag: &str) -> PathBuf {
    cargo_build_with_tag(&["-p", "mantle-provider"], Some(tag));
    let dir = target_dir().join("tagged-plugins").join(tag);
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join(plugin_file_name());
    std::fs::copy(target_dir().join("debug").join(plugin_file_name()), &copy).unwrap();
    cargo_build_with_tag(&["-p", "mantle-provider"], None);
    copy
}

/// Builds the plugin reporting ABI minor `minor` (`MANTLE_TEST_REPORTED_ABI_MINOR`), copies it
/// to `target/abi-minor-plugins/<minor>/`, and rebuilds the normal plugin. Only for a test
/// binary of its own: between the two builds `target/debug` holds the odd plugin.
pub fn build_plugin_reporting_abi_minor(minor: u32) -> PathBuf {
    let minor = minor.to_string();
    let var = "MANTLE_TEST_REPORTED_ABI_MINOR";
    cargo_build_with_env(
        &["-p", "mantle-provider"],
        &[(var, Some(&minor)), ("MANTLE_BUILD_TAG", None)],
    );
    let dir = target_dir().join("abi-minor-plugins").join(&minor);
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join(plugin_file_name());
    std::fs::copy(target_dir().join("debug").join(plugin_file_name()), &copy).unwrap();
    cargo_build_with_env(
        &["-p", "mantle-provider"],
        &[(var, None), ("MANTLE_BUILD_TAG", None)],
    );
    copy
}

/// For the benches: builds the plugin in the release profile (tagged when `tag` is given) and
/// returns a copy in `target/tagged-plugins-release/<tag or "untagged">/`.
pub fn release_plugin(tag: Option<&str>) -> PathBuf {
    cargo_build_with_tag(&["--release", "-p", "mantle-provider"], tag);
    let dir = target_dir()
        .join("tagged-plugins-release")
        .join(tag.unwrap_or("untagged"));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join(plugin_file_name());
    std::fs::copy(target_dir().join("release").join(plugin_file_name()), &copy).unwrap();
    copy
}

/// Builds a workspace binary (debug profile) and returns its file.
pub fn build_bin(package: &str, bin: &str) -> PathBuf {
    cargo_build(&["-p", package, "--bin", bin]);
    let file = target_dir()
        .join("debug")
        .join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    assert!(file.is_file(), "{} was not built", file.display());
    file
}

static PLUGIN_PATH: Lazy<PathBuf> =
    Lazy::new(|| build_cdylib("mantle-provider", "mantle_provider"));

/// The built plugin file.
pub fn plugin_path() -> PathBuf {
    PLUGIN_PATH.clone()
}

static PLUGIN: Lazy<Arc<Plugin>> = Lazy::new(|| Plugin::load(plugin_path()).expect("load plugin"));

/// The plugin, loaded once per test binary.
pub fn plugin() -> Arc<Plugin> {
    PLUGIN.clone()
}

/// A provider pointed at a local server with an explicit key.
pub fn provider_for(server: &mantle_mock_server::MockMantle, token: &str) -> Provider {
    let cfg = serde_json::json!({"baseUrl": server.base_url(), "apiKey": token}).to_string();
    plugin().create_provider("", &cfg).expect("create provider")
}

/// A model the local server lists (it answers 404 for ids it does not list, as Mantle does),
/// served on chat completions, with no special rules: for tests about something else.
#[allow(dead_code)]
pub const LISTED_MODEL: &str = "openai.gpt-oss-20b";

/// A canonical request with one user message.
pub fn request(model: &str, prompt: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": prompt}]})
}

/// Runs a stream to its end through the provider's own module, pulled raw (not through
/// host-shim's `Stream`, which stops at the first terminal event by itself): every event the
/// plugin delivers until it reports `Finished`, which it must report again on the next pull.
/// So [`terminal`]'s "exactly one terminal event" checks the plugin, not the shim.
pub fn run_stream(provider: &Provider, request: &serde_json::Value) -> Vec<Event> {
    use abi_stable::std_types::RStr;
    use mantle_abi::FfiPoll;
    let module = provider.plugin().module();
    let text = request.to_string();
    let id = (module.stream_start())(provider.id(), RStr::from_str(&text))
        .into_result()
        .expect("stream start");
    let end = std::time::Instant::now() + Duration::from_secs(30);
    let mut events = Vec::new();
    loop {
        assert!(
            std::time::Instant::now() < end,
            "stream did not finish: {events:?}"
        );
        match (module.stream_next())(id, 500)
            .into_result()
            .expect("stream_next")
        {
            FfiPoll::Event(e) => events.push(Event {
                kind: e.kind,
                text: e.text.into_string(),
                json: e.json.into_string(),
                raw: e.raw.into_string(),
            }),
            FfiPoll::Pending => {}
            FfiPoll::Finished => break,
        }
    }
    assert!(
        matches!(
            (module.stream_next())(id, 0).into_result(),
            Ok(FfiPoll::Finished)
        ),
        "Finished stays Finished"
    );
    (module.stream_close())(id)
        .into_result()
        .expect("stream_close");
    events
}

/// The concatenated text deltas.
pub fn text_of(events: &[Event]) -> String {
    events
        .iter()
        .filter(|e| e.kind == EventKind::TextDelta)
        .map(|e| e.text.as_str())
        .collect()
}

/// The terminal event.
pub fn terminal(events: &[Event]) -> &Event {
    let last = events.last().expect("at least one event");
    assert!(last.kind.is_terminal(), "last event is terminal: {last:?}");
    assert_eq!(
        events.iter().filter(|e| e.kind.is_terminal()).count(),
        1,
        "exactly one terminal event"
    );
    last
}

/// A scratch directory for this process and test thread, under the system temp dir.
pub fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "mantle-it-{}-{}",
        std::process::id(),
        std::thread::current()
            .name()
            .unwrap_or("t")
            .replace("::", "-")
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Raw access to the plugin's `abi_stable` module, bypassing host-shim's `Stream` (which keeps
/// its own "finished" flag): what the plugin itself does is what these helpers observe.
pub mod raw {
    use abi_stable::std_types::RStr;
    use mantle_abi::{EventKind, FfiError, FfiPoll, MantleModuleRef};
    use std::time::{Duration, Instant};

    /// The loaded plugin's module.
    pub fn module() -> MantleModuleRef {
        super::plugin().module()
    }

    /// `provider_create` through the module.
    pub fn provider_create(plugin_cfg: &str, provider_cfg: &str) -> Result<u64, FfiError> {
        (module().provider_create())(RStr::from_str(plugin_cfg), RStr::from_str(provider_cfg))
            .into_result()
    }

    /// `stream_start` through the module.
    pub fn stream_start(provider: u64, request: &str) -> Result<u64, FfiError> {
        (module().stream_start())(provider, RStr::from_str(request)).into_result()
    }

    /// `stream_next` through the module.
    pub fn next(stream: u64, timeout_ms: u64) -> Result<FfiPoll, FfiError> {
        (module().stream_next())(stream, timeout_ms).into_result()
    }

    /// One pulled event, as (kind, text, json).
    pub type RawEvent = (EventKind, String, serde_json::Value);

    /// Pulls until `Finished` (one more pull after the terminal event, and one after that,
    /// both must say `Finished`), or panics after `deadline`. Returns every event pulled.
    pub fn drain(stream: u64, deadline: Duration) -> Vec<RawEvent> {
        let end = Instant::now() + deadline;
        let mut events = Vec::new();
        loop {
            assert!(
                Instant::now() < end,
                "stream {stream} did not finish: {events:?}"
            );
            match next(stream, 200).expect("stream_next") {
                FfiPoll::Event(e) => events.push((
                    e.kind,
                    e.text.into_string(),
                    serde_json::from_str(e.json.as_str()).expect("event JSON"),
                )),
                FfiPoll::Pending => {}
                FfiPoll::Finished => break,
            }
        }
        assert!(
            matches!(next(stream, 0), Ok(FfiPoll::Finished)),
            "Finished stays Finished"
        );
        events
    }

    /// Like [`drain`], through the batch pull (ABI 1.2), `max` events at a time: every batch
    /// holds at most `max` events and ends with the terminal event if it holds one; after it,
    /// batches are empty and `finished`, twice.
    pub fn drain_batch(stream: u64, max: u32, deadline: Duration) -> Vec<RawEvent> {
        let batch = module()
            .stream_next_batch()
            .expect("the plugin has the batch entry point (ABI 1.2)");
        let end = Instant::now() + deadline;
        let mut events = Vec::new();
        loop {
            assert!(
                Instant::now() < end,
                "stream {stream} did not finish: {events:?}"
            );
            let pulled = batch(stream, 200, max)
                .into_result()
                .expect("stream_next_batch");
            if pulled.events.is_empty() {
                if pulled.finished {
                    break;
                }
                continue;
            }
            assert!(!pulled.finished, "a batch with events is not `finished`");
            assert!(pulled.events.len() <= max as usize, "at most {max} events");
            let n = pulled.events.len();
            for (i, e) in pulled.events.into_iter().enumerate() {
                assert!(
                    !e.kind.is_terminal() || i == n - 1,
                    "a terminal event ends its batch"
                );
                events.push((
                    e.kind,
                    e.text.into_string(),
                    serde_json::from_str(e.json.as_str()).expect("event JSON"),
                ));
            }
        }
        let again = batch(stream, 0, max).into_result().expect("batch");
        assert!(
            again.events.is_empty() && again.finished,
            "finished stays finished"
        );
        events
    }

    /// Asserts exactly one terminal event, last, and returns it.
    pub fn only_terminal(events: &[RawEvent]) -> &RawEvent {
        let terminals: Vec<_> = events.iter().filter(|e| e.0.is_terminal()).collect();
        assert_eq!(terminals.len(), 1, "exactly one terminal event: {events:?}");
        let last = events.last().unwrap();
        assert!(
            last.0.is_terminal(),
            "the terminal event is the last: {events:?}"
        );
        last
    }

    /// Closes a provider through the module.
    pub fn provider_close(provider: u64) {
        (module().provider_close())(provider)
            .into_result()
            .expect("provider_close");
    }
}

/// Threads of this process now (Linux: `/proc/self/task`).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits until the process has at most `n` threads (runtimes shut down in the background);
/// returns the last count seen.
pub fn wait_threads_at_most(n: usize, deadline: Duration) -> usize {
    let end = std::time::Instant::now() + deadline;
    loop {
        let now = thread_count();
        if now <= n || std::time::Instant::now() >= end {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
