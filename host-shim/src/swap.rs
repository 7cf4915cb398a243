//! Hot-swap: upgrade (or roll back) the provider plugin at runtime without dropping a stream.
//!
//! - [`HotSwap`] holds the *current* version: a loaded [`Plugin`] and one provider instance
//!   created from the gateway's config. [`HotSwap::provider`] hands it to new requests.
//! - [`HotSwap::swap_to`] creates a provider on another version, hands it the old one's state
//!   blob (discovery and token caches, ABI 1.1), and makes it current in one step. Streams
//!   already running keep their own reference to the old provider and finish on it; when the
//!   last one ends the old provider closes and its runtime shuts down. If anything fails before
//!   the switch, the current version keeps serving and the error says what went wrong.
//! - [`HotSwap::rollback`] swaps back to the previous version the same way (the library is
//!   still mapped, so no new copy is loaded).
//! - [`PluginDir`] scans a plugins directory: the newest valid file at start, then files that
//!   appear or change. [`HotSwap::watch`] watches it on a thread and swaps to each new
//!   version: at once for a file renamed into place or closed after writing (OS file events,
//!   [`crate::dir_events`]), at the next poll for anything else.
//!
//! Libraries are never unloaded (a Rust cdylib that ran tokio cannot be `dlclose`d safely), so
//! each *distinct* file loaded costs one mapping for the life of the process. A file whose bytes
//! equal an already loaded version reuses that mapping, and the number of distinct versions
//! is capped ([`MAX_LOADED_VERSIONS`]): past it, a new version is refused until a restart.
//!
//! A watching swap keeps a warm spare for the next version's copy ([`crate::spare`], Linux): one
//! memory file of the current library's size plus an eighth, written in advance on a thread of
//! its own after the watch starts and after each swap, so a new version's copy does not wait
//! for the machine to supply memory. [`HotSwap::set_warm_spare`] turns it off (or on without a
//! watcher).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, RwLock,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use crate::{
    spare::SpareSlot, FfiError, LoadError, Loaded, Plugin, PluginFacts, Provider, ProviderWatch,
};

/// At most this many distinct plugin files are mapped in one process.
pub const MAX_LOADED_VERSIONS: usize = 16;

/// Why a swap (or the initial load) did not happen. The current version keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// The file could not be loaded or its ABI is incompatible.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The new version refused the configuration or could not start.
    #[error("the new version {tag} could not create a provider: {error}")]
    Create {
        /// Build tag and version of the refused plugin.
        tag: String,
        /// The plugin's error.
        error: FfiError,
    },
    /// There is no previous version to roll back to.
    #[error("no previous version to roll back to")]
    NoPrevious,
    /// The directory has no loadable plugin (each refusal is listed).
    #[error("no loadable provider plugin in {dir}{}", refusals_text(.refused))]
    NoPlugin {
        /// The directory.
        dir: PathBuf,
        /// Files tried, with why each was refused.
        refused: Vec<(PathBuf, String)>,
    },
    /// The cap on distinct mapped versions was reached.
    #[error("refusing to load {path}: {MAX_LOADED_VERSIONS} distinct plugin versions are already mapped in this process (restart the gateway to reclaim them)")]
    TooManyVersions {
        /// The file.
        path: PathBuf,
    },
}

fn refusals_text(refused: &[(PathBuf, String)]) -> String {
    refused
        .iter()
        .map(|(p, e)| format!("; {}: {e}", p.display()))
        .collect()
}

/// A short name for a version in logs and reports: `0.1.0+v2`, or `0.1.0`.
pub fn version_label(facts: &PluginFacts) -> String {
    match facts.build_tag.as_str() {
        "" => facts.plugin_version.clone(),
        tag => format!("{}+{tag}", facts.plugin_version),
    }
}

/// What a swap did.
#[derive(Debug, Clone)]
pub struct SwapReport {
    /// The version that was current before.
    pub from: String,
    /// The version that is current now.
    pub to: String,
    /// What the new version adopted from the old one's state blob
    /// (`{"discovery_entries": n, "tokens": n}`), or why it adopted nothing.
    pub adopted: Result<serde_json::Value, String>,
    /// From the start of the swap to the new version being current.
    pub took: Duration,
}

/// Something the hot-swap machinery did, kept for operators and tests.
#[derive(Debug, Clone)]
pub enum SwapEvent {
    /// A new version became current.
    Swapped(SwapReport),
    /// A file or a swap was refused; the current version keeps serving.
    Refused {
        /// The file, when one was involved.
        path: Option<PathBuf>,
        /// Why.
        error: String,
    },
}

struct Current {
    plugin: Arc<Plugin>,
    provider: Provider,
}

/// The provider a gateway uses, swappable at runtime. Cheap to share (`Arc<HotSwap>`).
pub struct HotSwap {
    plugin_config: String,
    provider_config: String,
    current: RwLock<Current>,
    /// Serializes swaps (the watcher and an operator's rollback may race).
    swapping: Mutex<()>,
    /// The version before the current one (for [`HotSwap::rollback`]).
    previous: Mutex<Option<Arc<Plugin>>>,
    /// Old provider instances, observed until their last stream ends.
    retired: Mutex<Vec<(String, ProviderWatch)>>,
    /// Every distinct library mapped so far (never unloaded), to reuse identical files.
    loaded: Mutex<Vec<Arc<Plugin>>>,
    /// The warm spare the next new version is copied into, when kept.
    spare: Arc<SpareSlot>,
    events: Mutex<Vec<SwapEvent>>,
}

impl std::fmt::Debug for HotSwap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotSwap")
            .field("current", &self.current_label())
            .finish_non_exhaustive()
    }
}

impl HotSwap {
    /// Starts with `plugin` as the current version, creating its provider from the config
    /// texts (kept for every later version).
    pub fn new(
        plugin: Arc<Plugin>,
        plugin_config: &str,
        provider_config: &str,
    ) -> Result<Arc<HotSwap>, SwapError> {
        let provider = create(&plugin, plugin_config, provider_config)?;
        Ok(Arc::new(HotSwap {
            plugin_config: plugin_config.to_string(),
            provider_config: provider_config.to_string(),
            current: RwLock::new(Current {
                plugin: plugin.clone(),
                provider,
            }),
            swapping: Mutex::new(()),
            previous: Mutex::new(None),
            retired: Mutex::new(Vec::new()),
            loaded: Mutex::new(vec![plugin]),
            spare: SpareSlot::new(),
            events: Mutex::new(Vec::new()),
        }))
    }

    /// Starts from the newest valid plugin file in `dir` (files that fail to load or are
    /// ABI-incompatible are skipped and reported). Returns the swap and the directory scanner,
    /// which already knows every file seen.
    pub fn from_dir(
        dir: impl AsRef<Path>,
        plugin_config: &str,
        provider_config: &str,
    ) -> Result<(Arc<HotSwap>, PluginDir), SwapError> {
        let mut scanner = PluginDir::new(dir.as_ref());
        let candidates = scanner.scan_all();
        let mut refused = Vec::new();
        for path in candidates {
            match Plugin::load(&path) {
                Ok(plugin) => match HotSwap::new(plugin, plugin_config, provider_config) {
                    Ok(swap) => {
                        for (path, error) in refused {
                            swap.record(SwapEvent::Refused {
                                path: Some(path),
                                error,
                            });
                        }
                        return Ok((swap, scanner));
                    }
                    Err(e) => refused.push((path, e.to_string())),
                },
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "plugin refused");
                    refused.push((path, e.to_string()));
                }
            }
        }
        Err(SwapError::NoPlugin {
            dir: dir.as_ref().to_path_buf(),
            refused,
        })
    }

    /// The provider for a new request: always the current version.
    pub fn provider(&self) -> Provider {
        self.read().provider.clone()
    }

    /// The current plugin version.
    pub fn current_plugin(&self) -> Arc<Plugin> {
        self.read().plugin.clone()
    }

    /// `version+tag` of the current version.
    pub fn current_label(&self) -> String {
        version_label(self.read().plugin.facts())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, event: SwapEvent) {
        match &event {
            SwapEvent::Swapped(r) => {
                tracing::info!(from = %r.from, to = %r.to, took_ms = r.took.as_millis() as u64, "provider swapped")
            }
            SwapEvent::Refused { path, error } => {
                tracing::warn!(path = ?path, error = %error, "provider swap refused; the current version keeps serving")
            }
        }
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.push(event);
        // Bounded: keep the most recent 256.
        let excess = events.len().saturating_sub(256);
        events.drain(..excess);
    }

    /// Swap and refusal events so far (the most recent 256).
    pub fn events(&self) -> Vec<SwapEvent> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Loads `path` (reusing an already mapped identical file) and swaps to it. On error the
    /// current version keeps serving; the refusal is also recorded in [`HotSwap::events`].
    pub fn swap_to_file(&self, path: &Path) -> Result<SwapReport, SwapError> {
        let outcome = self.load_distinct(path).and_then(|p| self.swap_to(p));
        // After the swap, so preparing the next spare does not compete with it.
        self.spare.refill(self.current_plugin().fingerprint().len);
        if let Err(e) = &outcome {
            if !matches!(e, SwapError::Create { .. }) {
                self.record(SwapEvent::Refused {
                    path: Some(path.to_path_buf()),
                    error: e.to_string(),
                });
            }
        }
        outcome
    }

    /// Makes `plugin` the current version: a provider is created on it with the same config,
    /// adopts the current provider's state blob, and then serves every new request. In-flight
    /// streams finish on the old provider, which closes after its last stream.
    pub fn swap_to(&self, plugin: Arc<Plugin>) -> Result<SwapReport, SwapError> {
        let _one_at_a_time = self.swapping.lock().unwrap_or_else(|p| p.into_inner());
        self.swap_locked(plugin)
    }

    /// [`HotSwap::swap_to`], with the swap lock already held.
    fn swap_locked(&self, plugin: Arc<Plugin>) -> Result<SwapReport, SwapError> {
        let started = Instant::now();
        let provider = match create(&plugin, &self.plugin_config, &self.provider_config) {
            Ok(p) => p,
            Err(e) => {
                self.record(SwapEvent::Refused {
                    path: Some(plugin.source().to_path_buf()),
                    error: e.to_string(),
                });
                return Err(e);
            }
        };
        let adopted = hand_over(&self.provider(), &provider);
        let to = version_label(plugin.facts());
        let old = {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *current, Current { plugin, provider })
        };
        let from = version_label(old.plugin.facts());
        *self.previous.lock().unwrap_or_else(|p| p.into_inner()) = Some(old.plugin.clone());
        {
            let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
            retired.retain(|(_, w)| !w.is_closed());
            retired.push((from.clone(), old.provider.watch()));
        }
        drop(old); // closes the old provider now if no stream holds it
        let report = SwapReport {
            from,
            to,
            adopted,
            took: started.elapsed(),
        };
        self.record(SwapEvent::Swapped(report.clone()));
        Ok(report)
    }

    /// Swaps back to the version that was current before the last swap.
    pub fn rollback(&self) -> Result<SwapReport, SwapError> {
        let _one_at_a_time = self.swapping.lock().unwrap_or_else(|p| p.into_inner());
        let previous = self
            .previous
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(SwapError::NoPrevious)?;
        self.swap_locked(previous)
    }

    /// Old versions whose provider is still open because streams are running on it.
    pub fn draining(&self) -> Vec<String> {
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        retired.retain(|(_, w)| !w.is_closed());
        retired.iter().map(|(label, _)| label.clone()).collect()
    }

    /// Keeps (or stops keeping and frees) a warm spare for the next new version's copy
    /// ([`crate::spare`]). [`HotSwap::watch`] turns it on; without Linux memory files it
    /// stays empty and new versions are copied into a private directory.
    pub fn set_warm_spare(&self, keep: bool) {
        if keep {
            self.spare.enable(self.current_plugin().fingerprint().len);
        } else {
            self.spare.disable();
        }
    }

    /// Whether a warm spare is prepared and waiting for the next new version.
    pub fn warm_spare_ready(&self) -> bool {
        self.spare.is_ready()
    }

    /// Number of distinct plugin libraries mapped by this swap (never unloaded).
    pub fn mapped_versions(&self) -> usize {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Loads a file, or returns the already mapped plugin with identical bytes.
    fn load_distinct(&self, path: &Path) -> Result<Arc<Plugin>, SwapError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        // The file is read once, by its copy, which is fingerprinted; then it is either an
        // already mapped version with the same bytes, or opened as a new one (while the cap
        // allows).
        let may_open = loaded.len() < MAX_LOADED_VERSIONS;
        let found = |fingerprint: &crate::Fingerprint| {
            loaded
                .iter()
                .find(|p| p.fingerprint() == *fingerprint)
                .cloned()
        };
        match Plugin::load_unless_mapped_into(path, self.spare.take(), found, may_open)? {
            Loaded::Mapped(plugin) => Ok(plugin),
            Loaded::Opened(plugin) => {
                loaded.push(plugin.clone());
                Ok(plugin)
            }
            Loaded::NotOpened => Err(SwapError::TooManyVersions {
                path: path.to_path_buf(),
            }),
        }
    }

    /// Watches `dir` on a thread and swaps to each new or changed plugin file (the newest,
    /// when several arrive at once): at once when the OS reports a file renamed into the
    /// directory or closed after writing, else at the next poll (every `interval`), once the
    /// file has settled. Refusals are recorded in [`HotSwap::events`] and the current version
    /// keeps serving. Keeps a warm spare ([`HotSwap::set_warm_spare`]). Stops when the returned
    /// [`Watcher`] is dropped (at once, unless a swap is running: then after it).
    pub fn watch(self: &Arc<Self>, mut dir: PluginDir, interval: Duration) -> Watcher {
        use crate::dir_events::{DirEvents, Wait};
        self.set_warm_spare(true);
        let stop = Arc::new(AtomicBool::new(false));
        let swap = Arc::downgrade(self);
        let stop_flag = stop.clone();
        let events = DirEvents::new(dir.dir());
        let stopper = events.stopper();
        let thread = std::thread::Builder::new()
            .name("mantle-plugin-watch".into())
            .spawn(move || {
                let mut next_poll = Instant::now() + interval;
                while !stop_flag.load(Ordering::Relaxed) {
                    let wait = next_poll.saturating_duration_since(Instant::now());
                    let ready = match events.wait(wait) {
                        Wait::Completed(paths) => dir.poll_completed(&paths),
                        Wait::TimedOut => {
                            next_poll = Instant::now() + interval;
                            dir.poll_newest(interval)
                        }
                        Wait::Stopped => return,
                    };
                    let Some(swap) = swap.upgrade() else { return };
                    if let Some(path) = ready {
                        let _ = swap.swap_to_file(&path);
                    }
                }
            })
            .expect("spawn the plugin watcher thread");
        Watcher {
            stop,
            stopper,
            thread: Some(thread),
        }
    }
}

fn create(
    plugin: &Arc<Plugin>,
    plugin_config: &str,
    provider_config: &str,
) -> Result<Provider, SwapError> {
    plugin
        .create_provider(plugin_config, provider_config)
        .map_err(|error| SwapError::Create {
            tag: version_label(plugin.facts()),
            error,
        })
}

/// Moves the old provider's state into the new one. A failure here is not fatal: the new
/// version starts cold (it rediscovers and mints on demand), and the report says why.
fn hand_over(old: &Provider, new: &Provider) -> Result<serde_json::Value, String> {
    let blob = old
        .export_state()
        .map_err(|e| format!("export failed: {e}"))?
        .ok_or("the old version has no state export (ABI < 1.1)")?;
    new.import_state(&blob)
        .map_err(|e| format!("import failed: {e}"))?
        .ok_or_else(|| "the new version has no state import (ABI < 1.1)".to_string())
}

/// Stops the watcher thread when dropped.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<AtomicBool>,
    stopper: crate::dir_events::Stopper,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A file's identity for change detection.
type Stamp = (u64, SystemTime);

/// Scans a plugins directory for provider files (`*.so` on Linux; hidden files are ignored, so
/// write a new version as `.name.tmp` and rename it into place).
#[derive(Debug)]
pub struct PluginDir {
    dir: PathBuf,
    /// Files already handled (loaded or refused), with the stamp they had then.
    seen: HashMap<PathBuf, Stamp>,
    /// Files seen changing at the last poll, not handled yet.
    settling: HashMap<PathBuf, Stamp>,
}

impl PluginDir {
    /// A scanner for `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PluginDir {
            dir: dir.into(),
            seen: HashMap::new(),
            settling: HashMap::new(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn list(&self) -> Vec<(PathBuf, Stamp)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<(PathBuf, Stamp)> = entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                !name.starts_with('.') && name.ends_with(std::env::consts::DLL_SUFFIX)
            })
            .filter_map(|e| {
                // Follows symlinks, so a plugin may be linked into the directory.
                let meta = std::fs::metadata(e.path()).ok().filter(|m| m.is_file())?;
                Some((e.path(), (meta.len(), meta.modified().ok()?)))
            })
            .collect();
        // Newest first; the name breaks ties so the order is stable.
        files.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then_with(|| b.0.cmp(&a.0)));
        files
    }

    /// Every plugin file, newest first, all marked as seen (used at start).
    pub fn scan_all(&mut self) -> Vec<PathBuf> {
        let files = self.list();
        for (path, stamp) in &files {
            self.seen.insert(path.clone(), *stamp);
        }
        files.into_iter().map(|(p, _)| p).collect()
    }

    /// The newest of `completed` (files the OS reported renamed into place or closed after
    /// writing: complete, no settling needed) that is a plugin file, new or changed since it was
    /// last handled. Older ones of the same batch are skipped (marked seen), as in
    /// [`PluginDir::poll_newest`]; files not in `completed` are left to the next poll.
    pub fn poll_completed(&mut self, completed: &[PathBuf]) -> Option<PathBuf> {
        let ready: Vec<(PathBuf, Stamp)> = self
            .list()
            .into_iter()
            .filter(|(path, stamp)| completed.contains(path) && self.seen.get(path) != Some(stamp))
            .collect();
        self.take_newest(ready)
    }

    /// The newest file that is new or changed since it was last handled and has settled:
    /// unchanged since the previous poll, or last modified at least `settle` ago. Older new
    /// files found in the same poll are skipped (marked seen): only the newest is loaded.
    pub fn poll_newest(&mut self, settle: Duration) -> Option<PathBuf> {
        let now = SystemTime::now();
        let mut ready = Vec::new();
        let mut settling = HashMap::new();
        for (path, stamp) in self.list() {
            if self.seen.get(&path) == Some(&stamp) {
                continue;
            }
            let old_enough = now
                .duration_since(stamp.1)
                .map(|age| age >= settle)
                .unwrap_or(false);
            if old_enough || self.settling.get(&path) == Some(&stamp) {
                ready.push((path, stamp));
            } else {
                settling.insert(path, stamp);
            }
        }
        self.settling = settling;
        self.take_newest(ready)
    }

    /// Marks every file of `ready` (newest first) handled with its stamp, and returns the
    /// newest: the one to load.
    fn take_newest(&mut self, ready: Vec<(PathBuf, Stamp)>) -> Option<PathBuf> {
        for (path, stamp) in &ready {
            self.seen.insert(path.clone(), *stamp);
            self.settling.remove(path);
        }
        ready.into_iter().next().map(|(p, _)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str, bytes: &[u8], age: Duration) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
        path
    }

    fn so(name: &str) -> String {
        format!("{name}{}", std::env::consts::DLL_SUFFIX)
    }

    #[test]
    fn start_lists_plugin_files_newest_first_ignoring_hidden_and_others() {
        let dir = tempfile::tempdir().unwrap();
        let old = touch(dir.path(), &so("old"), b"1", Duration::from_secs(60));
        let new = touch(dir.path(), &so("new"), b"2", Duration::from_secs(1));
        touch(dir.path(), &so(".hidden"), b"3", Duration::ZERO);
        touch(dir.path(), "notes.txt", b"4", Duration::ZERO);
        let mut scanner = PluginDir::new(dir.path());
        assert_eq!(scanner.scan_all(), vec![new, old]);
        assert_eq!(
            scanner.poll_newest(Duration::from_millis(10)),
            None,
            "all seen"
        );
    }

    #[test]
    fn a_new_file_is_taken_once_settled_and_only_the_newest_of_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut scanner = PluginDir::new(dir.path());
        scanner.scan_all();
        let settle = Duration::from_secs(5);
        // Just written: not settled yet (it may still be growing).
        let fresh = touch(dir.path(), &so("fresh"), b"v2", Duration::ZERO);
        assert_eq!(scanner.poll_newest(settle), None);
        // Unchanged at the next poll: settled.
        assert_eq!(scanner.poll_newest(settle), Some(fresh.clone()));
        assert_eq!(scanner.poll_newest(settle), None, "handled once");
        // Changed in place: taken again once settled.
        touch(dir.path(), &so("fresh"), b"v3!", Duration::from_secs(10));
        assert_eq!(scanner.poll_newest(settle), Some(fresh));
        // Two old-enough files at once: the newest wins, the other is marked seen.
        touch(dir.path(), &so("a"), b"a", Duration::from_secs(30));
        let b = touch(dir.path(), &so("b"), b"b", Duration::from_secs(20));
        assert_eq!(scanner.poll_newest(settle), Some(b));
        assert_eq!(scanner.poll_newest(settle), None);
    }

    #[test]
    fn a_completed_file_is_taken_at_once_and_others_are_left_to_the_poll() {
        let dir = tempfile::tempdir().unwrap();
        let mut scanner = PluginDir::new(dir.path());
        scanner.scan_all();
        // Just written, so a poll would wait for it to settle; completed, it is taken now.
        let done = touch(dir.path(), &so("done"), b"v2", Duration::ZERO);
        let growing = touch(dir.path(), &so("growing"), b"v", Duration::ZERO);
        let hidden = touch(dir.path(), ".next.so.tmp", b"v", Duration::ZERO);
        assert_eq!(
            scanner.poll_completed(&[hidden.clone(), done.clone()]),
            Some(done.clone())
        );
        assert_eq!(
            scanner.poll_completed(std::slice::from_ref(&done)),
            None,
            "handled once"
        );
        assert_eq!(
            scanner.poll_completed(&[hidden]),
            None,
            "hidden files are not plugins"
        );
        // The file that was not reported complete still settles through the polls.
        assert_eq!(scanner.poll_newest(Duration::from_secs(5)), None);
        assert_eq!(scanner.poll_newest(Duration::from_secs(5)), Some(growing));
        // Completed again after a change in place: taken again.
        touch(dir.path(), &so("done"), b"v3!", Duration::ZERO);
        assert_eq!(
            scanner.poll_completed(std::slice::from_ref(&done)),
            Some(done)
        );
    }

    #[test]
    fn version_labels_carry_the_build_tag() {
        let mut facts = PluginFacts {
            provider_id: "amazon-bedrock-mantle".into(),
            label: String::new(),
            plugin_version: "0.1.0".into(),
            build_tag: String::new(),
            abi_major: 1,
            abi_minor: 1,
        };
        assert_eq!(version_label(&facts), "0.1.0");
        facts.build_tag = "v2".into();
        assert_eq!(version_label(&facts), "0.1.0+v2");
    }
}
