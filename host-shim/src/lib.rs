//! Loads the Mantle provider plugin, checks its ABI, and exposes a safe Rust API over it.
//!
//! Loading never uses `RootModule::load_from_file` (it caches one module per type for the whole
//! process, so a second version would silently be the first). Each load copies the file into a
//! private directory of its own (`dlopen` of a path already loaded returns the old handle; a
//! directory only this user can write cannot have the copy swapped under it), opens it with
//! `libloading`, and initialises the root module with `LibHeader::init_root_module`, which checks
//! the ABI without caching. A library is never unloaded: a Rust cdylib that ran a tokio runtime or
//! has thread-local destructors cannot be `dlclose`d safely, so the mapping stays (its runtimes are
//! shut down when its providers close).
//!
//! A hot-swap can copy into a warm spare instead ([`spare`], Linux): a sealed memory file written
//! in advance, opened as `/proc/self/fd/N`, so a new version does not wait for memory.

pub mod dir_events;
pub mod spare;
pub mod swap;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use abi_stable::{
    library::{AbiHeaderRef, ROOT_MODULE_LOADER_NAME_WITH_NUL},
    std_types::{RResult, RStr},
};
pub use mantle_abi::{ErrorCode, EventKind, FfiError, FfiEvent, FfiPoll};
use mantle_abi::{MantleModuleRef, ABI_MAJOR, ABI_MINOR};

/// Why a plugin file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read or copied.
    #[error("cannot read plugin {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `dlopen` failed (not a shared library, missing symbols, wrong architecture).
    #[error("cannot open plugin {path}: {detail}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The loader's message.
        detail: String,
    },
    /// The library does not export an `abi_stable` root module.
    #[error("{path} is not a Mantle provider plugin: {detail}")]
    NotAPlugin {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The plugin's ABI does not match this host's.
    #[error(
        "plugin {path} is refused: incompatible ABI (host ABI {host_major}.{host_minor}): {detail}"
    )]
    AbiMismatch {
        /// The file.
        path: PathBuf,
        /// Host major.
        host_major: u32,
        /// Host minor.
        host_minor: u32,
        /// What differs.
        detail: String,
    },
}

/// Facts a plugin reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFacts {
    /// Provider id.
    pub provider_id: String,
    /// Label.
    pub label: String,
    /// Crate version.
    pub plugin_version: String,
    /// Build tag (`MANTLE_BUILD_TAG` at build time).
    pub build_tag: String,
    /// ABI major.
    pub abi_major: u32,
    /// ABI minor.
    pub abi_minor: u32,
}

/// A loaded plugin version. Never unloaded (see the crate docs).
pub struct Plugin {
    module: MantleModuleRef,
    facts: PluginFacts,
    source: PathBuf,
    loaded_from: PathBuf,
    fingerprint: Fingerprint,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("facts", &self.facts)
            .field("source", &self.source)
            .finish()
    }
}

/// The platform's file name for the plugin (`libmantle_provider.so` on Linux).
pub fn plugin_file_name() -> String {
    format!(
        "{}mantle_provider{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// A plugin file's identity: its length and XXH3-128 hash. The file is hashed at every load
/// and hot-swap, and XXH3 is about ten times faster than BLAKE3 here (0.5-0.9 against
/// 6.6-7.3 ms for the 11.5 MiB release file, side by side on a busy machine). It need not be
/// cryptographic: it only tells whether a dropped file's bytes equal a version already mapped,
/// so that mapping is reused. A collision, which would take deliberate crafting, could only make a new file be
/// taken for a loaded version (that version is what runs), never get anything loaded; and
/// whoever can write the plugins directory can run code in the host anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// Length in bytes.
    pub len: u64,
    /// XXH3-128 of the bytes.
    pub xxh3: u128,
}

/// What [`Plugin::load_unless_mapped`] did.
#[derive(Debug)]
pub enum Loaded {
    /// Opened the file as a new version.
    Opened(Arc<Plugin>),
    /// The bytes are those of this version, already loaded.
    Mapped(Arc<Plugin>),
    /// A new version, not opened (the caller did not allow it).
    NotOpened,
}

/// Size of one read while hashing a plugin file: small enough to stay in the CPU cache.
const HASH_CHUNK: usize = 1 << 16;

/// Copies `source` to `target` (when given) and fingerprints the bytes `target` now holds,
/// the ones `dlopen` will map; without a target, fingerprints `source`.
///
/// The copy is the kernel's (`std::io::copy` between two files is `copy_file_range` on
/// Linux), which writes the new file's page cache in pieces of a pipe buffer. A loop of 1 MiB
/// reads and writes, which hashed as it went, took 31-43 ms a load (median of 10) in session
/// 16's bench runs on a VM that hands freed memory back to its host, against 4.2-5.0 ms for a
/// plain copy and `dlopen` of the same file timed beside it; this copy takes 6.8-7.4 ms there,
/// reading the copy back to hash it included. (Our reading, not measured: a 1 MiB write makes
/// the kernel allocate large page-cache folios, which such a VM serves from memory the host
/// has taken back.)
fn copy_and_fingerprint(source: &Path, target: Option<&Path>) -> std::io::Result<Fingerprint> {
    use std::io::{Seek, SeekFrom};
    let mut input = std::fs::File::open(source)?;
    let Some(target) = target else {
        return fingerprint_of(&mut input);
    };
    // `create_new`: the copy never writes through a file or link that was there before.
    let mut output = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(target)?;
    // The kernel's copy (`copy_file_range` on Linux), as `std::fs::copy` does.
    std::io::copy(&mut input, &mut output)?;
    output.seek(SeekFrom::Start(0))?;
    fingerprint_of(&mut output)
}

/// Length and XXH3-128 of what `file` holds from its current position to its end.
fn fingerprint_of(file: &mut std::fs::File) -> std::io::Result<Fingerprint> {
    fingerprint_pieces(file, |_| Ok(()))
}

/// Reads `input` to its end in pieces of [`HASH_CHUNK`], handing each piece to `each` once it
/// is hashed; returns the length and XXH3-128 of all of them.
pub(crate) fn fingerprint_pieces(
    input: &mut impl std::io::Read,
    mut each: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<Fingerprint> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buffer = vec![0u8; HASH_CHUNK];
    let mut len = 0u64;
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        each(&buffer[..n])?;
        len += n as u64;
    }
    Ok(Fingerprint {
        len,
        xxh3: hasher.digest128(),
    })
}

/// The fingerprint of a plugin file (to compare with [`Plugin::fingerprint`]).
pub fn fingerprint(path: &Path) -> std::io::Result<Fingerprint> {
    copy_and_fingerprint(path, None)
}

/// A private copy of a plugin file: the only file in a fresh directory that only this user
/// can write (mode 0700, a random name, created by `mkdir`, which fails where anything already
/// is). Nothing can be planted there beforehand (a link for the copy to write through) or
/// swapped in between the copy and `dlopen`, as in a shared directory with a predictable name.
/// Dropping it removes the file and the directory, so a host leaves nothing behind;
/// [`PrivateCopy::keep`] leaves both.
struct PrivateCopy {
    dir: tempfile::TempDir,
    path: PathBuf,
    fingerprint: Fingerprint,
}

/// Refuses anything but a file (a directory, a missing path) before any copy is made.
fn check_is_file(source: &Path) -> Result<(), LoadError> {
    if source.is_file() {
        return Ok(());
    }
    Err(LoadError::Io {
        path: source.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
    })
}

/// The bytes a load opens: a private copy of the file, or a warm spare filled and sealed.
enum LoadCopy {
    Private(PrivateCopy),
    Sealed(spare::SealedCopy),
}

impl LoadCopy {
    /// Copies `source` into `spare` when one is given and that works, else into a private
    /// directory.
    fn make(source: &Path, spare: Option<spare::SpareCopy>) -> Result<LoadCopy, LoadError> {
        // Profilers and debuggers want a file to read symbols from (see `Plugin::open`).
        let spare = spare.filter(|_| !keep_copies());
        if let Some(spare) = spare {
            check_is_file(source)?;
            match spare.fill(source) {
                Ok(sealed) => return Ok(LoadCopy::Sealed(sealed)),
                Err(e) => {
                    tracing::debug!(path = %source.display(), error = %e, "cannot copy into the spare; copying into a private directory")
                }
            }
        }
        PrivateCopy::make(source, &std::env::temp_dir()).map(LoadCopy::Private)
    }

    fn path(&self) -> &Path {
        match self {
            LoadCopy::Private(copy) => &copy.path,
            LoadCopy::Sealed(copy) => copy.path(),
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        match self {
            LoadCopy::Private(copy) => copy.fingerprint,
            LoadCopy::Sealed(copy) => copy.fingerprint(),
        }
    }
}

/// `MANTLE_KEEP_PLUGIN_COPY=1`: keep each private copy (and use no spare), so profilers and
/// debuggers can read the loaded library's symbols from a file.
fn keep_copies() -> bool {
    std::env::var_os("MANTLE_KEEP_PLUGIN_COPY").is_some_and(|v| v == "1")
}

impl PrivateCopy {
    /// Checks that `source` is a file, then copies it into a fresh directory under `parent`
    /// (the host's temp directory, `$TMPDIR`), fingerprinting the bytes copied.
    fn make(source: &Path, parent: &Path) -> Result<Self, LoadError> {
        let io = |e| LoadError::Io {
            path: source.to_path_buf(),
            source: e,
        };
        check_is_file(source)?;
        let mut builder = tempfile::Builder::new();
        builder.prefix("mantle-host-shim-");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o700));
        }
        let dir = builder.tempdir_in(parent).map_err(io)?;
        let name = source
            .file_name()
            .filter(|n| !n.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(plugin_file_name()));
        let path = dir.path().join(name);
        let fingerprint = copy_and_fingerprint(source, Some(&path)).map_err(io)?;
        Ok(PrivateCopy {
            dir,
            path,
            fingerprint,
        })
    }

    /// Leaves the copy and its directory in place (for profilers and debuggers, and on
    /// Windows, which cannot delete a loaded DLL).
    fn keep(self) {
        let _ = self.dir.keep();
    }
}

impl Plugin {
    /// Loads a plugin file: copies it into a private directory of its own (removed once
    /// mapped, on Unix), opens it, checks its ABI.
    pub fn load(path: impl AsRef<Path>) -> Result<Arc<Plugin>, LoadError> {
        let source = path.as_ref().to_path_buf();
        let copy = PrivateCopy::make(&source, &std::env::temp_dir())?;
        Plugin::open(source, LoadCopy::Private(copy))
    }

    /// Like [`Plugin::load`], but once the file is copied and fingerprinted, asks `mapped`
    /// whether a version with those exact bytes is loaded already: then the copy is removed and
    /// that version is returned, without opening anything. When none is and `may_open` is
    /// false, the copy is removed and nothing is opened. The file is read once in every case,
    /// by the copy (the hot-swap watcher uses it, so a new version is not hashed and then
    /// copied).
    pub fn load_unless_mapped(
        path: impl AsRef<Path>,
        mapped: impl FnOnce(&Fingerprint) -> Option<Arc<Plugin>>,
        may_open: bool,
    ) -> Result<Loaded, LoadError> {
        Plugin::load_unless_mapped_into(path, None, mapped, may_open)
    }

    /// [`Plugin::load_unless_mapped`], copying into `spare` when one is given (Linux): the
    /// copy then needs no new memory, is sealed, and is opened as `/proc/self/fd/N`. The spare
    /// is used up either way. Where it cannot be used (no procfs, a library already loaded
    /// under that name, `MANTLE_KEEP_PLUGIN_COPY=1`), the file is copied into a private
    /// directory as without one.
    pub fn load_unless_mapped_into(
        path: impl AsRef<Path>,
        spare: Option<spare::SpareCopy>,
        mapped: impl FnOnce(&Fingerprint) -> Option<Arc<Plugin>>,
        may_open: bool,
    ) -> Result<Loaded, LoadError> {
        let source = path.as_ref().to_path_buf();
        let mut copy = LoadCopy::make(&source, spare)?;
        // Dropping the copy removes it (and a private copy's directory).
        if let Some(plugin) = mapped(&copy.fingerprint()) {
            return Ok(Loaded::Mapped(plugin));
        }
        if !may_open {
            return Ok(Loaded::NotOpened);
        }
        if let LoadCopy::Sealed(sealed) = &copy {
            if !sealed.name_is_free() {
                tracing::debug!(name = %sealed.path().display(), "a library is already loaded under the spare's name; copying into a private directory");
                copy = LoadCopy::make(&source, None)?;
            }
        }
        Plugin::open(source, copy).map(Loaded::Opened)
    }

    /// Opens the copy of `source` and checks its ABI.
    fn open(source: PathBuf, copy: LoadCopy) -> Result<Arc<Plugin>, LoadError> {
        // SAFETY: opening a library runs its initialisers. We only open files the operator put
        // in place as provider plugins; the private copy (or the sealed spare) guarantees a
        // fresh mapping of exactly the bytes fingerprinted.
        let opened = unsafe { libloading::Library::new(copy.path()) };
        let (loaded_from, fingerprint) = (copy.path().to_path_buf(), copy.fingerprint());
        match copy {
            // The mapping does not need the file: remove the copy and its directory at once, so
            // a long-running host that swaps often does not fill its temp directory (Windows
            // cannot delete a loaded DLL; the copy stays there). `MANTLE_KEEP_PLUGIN_COPY=1`
            // keeps it, so profilers and debuggers can read its symbols.
            LoadCopy::Private(copy) if opened.is_ok() && (keep_copies() || !cfg!(unix)) => {
                copy.keep()
            }
            LoadCopy::Private(copy) => drop(copy),
            // Its descriptor's number must stay taken while the mapping lives (forever).
            LoadCopy::Sealed(copy) if opened.is_ok() => copy.keep_for_mapping(),
            LoadCopy::Sealed(copy) => drop(copy),
        }
        let library = opened.map_err(|e| LoadError::Open {
            path: source.clone(),
            detail: error_chain(&e),
        })?;
        // SAFETY: abi_stable exports its header under this name as a static `AbiHeaderRef`;
        // `upgrade` below checks that it really is an abi_stable header before using it.
        let header_ref: AbiHeaderRef = unsafe {
            match library.get::<AbiHeaderRef>(ROOT_MODULE_LOADER_NAME_WITH_NUL.as_bytes()) {
                Ok(symbol) => *symbol,
                Err(e) => {
                    return Err(LoadError::NotAPlugin {
                        path: source,
                        detail: format!("no abi_stable root module ({e})"),
                    })
                }
            }
        };
        // The mapping is kept for the life of the process: never dlclose a Rust cdylib that ran
        // tokio (see crate docs). Leaking the handle makes that explicit.
        std::mem::forget(library);
        let mismatch = |detail: String| LoadError::AbiMismatch {
            path: source.clone(),
            host_major: ABI_MAJOR,
            host_minor: ABI_MINOR,
            detail,
        };
        let header = header_ref
            .upgrade()
            .map_err(|e| mismatch(format!("abi_stable header: {e}")))?;
        let module = header
            .init_root_module::<MantleModuleRef>()
            .map_err(|e| mismatch(one_line(&e.to_string())))?;
        let info = (module.info())();
        let facts = PluginFacts {
            provider_id: info.provider_id.to_string(),
            label: info.label.to_string(),
            plugin_version: info.plugin_version.to_string(),
            build_tag: info.build_tag.to_string(),
            abi_major: info.abi_major,
            abi_minor: info.abi_minor,
        };
        if !mantle_abi::abi_compatible(facts.abi_major, facts.abi_minor) {
            return Err(mismatch(format!(
                "plugin implements ABI {}.{}",
                facts.abi_major, facts.abi_minor
            )));
        }
        if facts.provider_id != mantle_abi::PROVIDER_ID {
            return Err(LoadError::NotAPlugin {
                path: source,
                detail: format!("provider id is {:?}", facts.provider_id),
            });
        }
        tracing::info!(path = %source.display(), version = %facts.plugin_version, tag = %facts.build_tag, "loaded provider plugin");
        Ok(Arc::new(Plugin {
            module,
            facts,
            source,
            loaded_from,
            fingerprint,
        }))
    }

    /// What the plugin says about itself.
    pub fn facts(&self) -> &PluginFacts {
        &self.facts
    }

    /// The file it was loaded from (before copying).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The unique copy that was actually opened: a private copy (removed right after opening on
    /// Unix), or `/proc/self/fd/N` for a sealed spare (open for the life of the process).
    pub fn loaded_from(&self) -> &Path {
        &self.loaded_from
    }

    /// Length and XXH3-128 hash of the bytes that were loaded.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Creates a provider instance from JSON5 config texts.
    pub fn create_provider(
        self: &Arc<Self>,
        plugin_config: &str,
        provider_config: &str,
    ) -> Result<Provider, FfiError> {
        let id = result((self.module.provider_create())(
            RStr::from_str(plugin_config),
            RStr::from_str(provider_config),
        ))?;
        Ok(Provider {
            inner: Arc::new(ProviderInner {
                plugin: self.clone(),
                id,
            }),
        })
    }

    /// The root module (for hosts that need raw access, e.g. to probe newer entry points).
    pub fn module(&self) -> MantleModuleRef {
        self.module
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn result<T>(r: RResult<T, FfiError>) -> Result<T, FfiError> {
    r.into_result()
}

/// The shared part of a provider: the plugin version and the handle. Streams keep it alive.
struct ProviderInner {
    plugin: Arc<Plugin>,
    id: u64,
}

impl Drop for ProviderInner {
    fn drop(&mut self) {
        let _ = result((self.plugin.module.provider_close())(self.id));
    }
}

/// A provider instance inside a plugin. Closed when it and all its streams are dropped.
#[derive(Clone)]
pub struct Provider {
    inner: Arc<ProviderInner>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("id", &self.inner.id)
            .field("plugin", &self.inner.plugin.facts.build_tag)
            .finish()
    }
}

/// A bearer token from the plugin. Debug output hides it.
#[derive(Clone)]
pub struct Token {
    /// The secret.
    pub token: String,
    /// Unix expiry; 0 when unknown.
    pub expires_at_unix: i64,
    /// `config`, `config-env`, `env` or `iam`.
    pub source: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("token", &"<redacted>")
            .field("expires_at_unix", &self.expires_at_unix)
            .field("source", &self.source)
            .finish()
    }
}

impl Provider {
    /// The plugin version serving this provider.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.inner.plugin
    }

    /// The raw handle id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Discovery + catalog as JSON `{outcome, provider}`.
    pub fn catalog(&self) -> Result<serde_json::Value, FfiError> {
        let text = result((self.inner.plugin.module.catalog())(self.inner.id))?;
        serde_json::from_str(text.as_str())
            .map_err(|e| FfiError::new(ErrorCode::Internal, format!("catalog is not JSON: {e}")))
    }

    /// The bearer token the provider would use now.
    pub fn bearer_token(&self) -> Result<Token, FfiError> {
        let t = result((self.inner.plugin.module.bearer_token())(self.inner.id))?;
        Ok(Token {
            token: t.token.into_string(),
            expires_at_unix: t.expires_at_unix,
            source: t.source.into_string(),
        })
    }

    /// Exports the hot-swap state blob (ABI 1.1); `None` when the plugin lacks the entry point.
    pub fn export_state(&self) -> Result<Option<StateBlob>, FfiError> {
        let Some(export) = self.inner.plugin.module.state_export() else {
            return Ok(None);
        };
        let text = result(export(self.inner.id))?;
        Ok(Some(StateBlob(text.into_string())))
    }

    /// Adopts a state blob from another version (ABI 1.1): returns what was adopted
    /// (`{"discovery_entries": n, "tokens": n}`), or `None` when the plugin lacks the entry
    /// point.
    pub fn import_state(&self, blob: &StateBlob) -> Result<Option<serde_json::Value>, FfiError> {
        let Some(import) = self.inner.plugin.module.state_import() else {
            return Ok(None);
        };
        let text = result(import(self.inner.id, RStr::from_str(&blob.0)))?;
        Ok(serde_json::from_str(text.as_str()).ok())
    }

    /// A handle that tells when this provider instance was closed (it and all its streams
    /// dropped), without keeping it open.
    pub fn watch(&self) -> ProviderWatch {
        ProviderWatch(Arc::downgrade(&self.inner))
    }

    /// Starts a stream for a canonical request (JSON text).
    pub fn stream(&self, request_json: &str) -> Result<Stream, FfiError> {
        let id = result((self.inner.plugin.module.stream_start())(
            self.inner.id,
            RStr::from_str(request_json),
        ))?;
        Ok(Stream {
            provider: self.inner.clone(),
            id,
            finished: false,
        })
    }
}

/// A provider's hot-swap state: discovery and token caches as JSON. It holds bearer tokens,
/// so its Debug output is redacted; hand it to the next version in memory, never log it.
#[derive(Clone)]
pub struct StateBlob(String);

impl StateBlob {
    /// Size of the blob in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the blob is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for StateBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateBlob(<{} bytes, redacted>)", self.0.len())
    }
}

/// Observes a provider instance without keeping it open.
#[derive(Debug, Clone)]
pub struct ProviderWatch(std::sync::Weak<ProviderInner>);

impl ProviderWatch {
    /// True once the provider and all its streams were dropped (its runtime is shut down).
    pub fn is_closed(&self) -> bool {
        self.0.strong_count() == 0
    }
}

/// One event, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Kind.
    pub kind: EventKind,
    /// Text delta, if any.
    pub text: String,
    /// The event as JSON.
    pub json: String,
    /// Upstream payload when requested.
    pub raw: String,
}

/// An event borrowed from the plugin's buffers (see [`Stream::next_batch_with`]).
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    /// Kind.
    pub kind: EventKind,
    /// Text delta, if any.
    pub text: &'a str,
    /// The event as JSON.
    pub json: &'a str,
    /// Upstream payload when requested.
    pub raw: &'a str,
}

impl EventRef<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> Event {
        Event {
            kind: self.kind,
            text: self.text.to_owned(),
            json: self.json.to_owned(),
            raw: self.raw.to_owned(),
        }
    }
}

/// The error of a pull after the terminal event.
fn finished_error() -> FfiError {
    FfiError::new(
        ErrorCode::StreamFinished,
        "the stream already delivered its terminal event",
    )
}

impl Event {
    fn from_ffi(e: FfiEvent) -> Event {
        Event {
            kind: e.kind,
            text: e.text.into_string(),
            json: e.json.into_string(),
            raw: e.raw.into_string(),
        }
    }

    /// A borrowed view.
    pub fn view(&self) -> EventRef<'_> {
        EventRef {
            kind: self.kind,
            text: &self.text,
            json: &self.json,
            raw: &self.raw,
        }
    }

    /// The JSON parsed. A text or reasoning delta the plugin handed out without its JSON
    /// (the request set `include_json: false`) gets `{"type", "text"}` from its kind and text,
    /// which is all that event is.
    pub fn value(&self) -> serde_json::Value {
        let text_only = |kind: &str| serde_json::json!({"type": kind, "text": self.text});
        match self.kind {
            EventKind::TextDelta if self.json.is_empty() => text_only("text_delta"),
            EventKind::ReasoningDelta if self.json.is_empty() => text_only("reasoning_delta"),
            _ => serde_json::from_str(&self.json).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// A running stream. Dropping it closes the handle (cancelling if still running).
pub struct Stream {
    provider: Arc<ProviderInner>,
    id: u64,
    finished: bool,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("finished", &self.finished)
            .finish()
    }
}

impl Stream {
    /// Pulls the next event: `Ok(Some(event))`, `Ok(None)` on timeout, or
    /// `Err(StreamFinished)` after the terminal event.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Event>, FfiError> {
        if self.finished {
            return Err(finished_error());
        }
        let millis = timeout.as_millis().min(u64::MAX as u128) as u64;
        match result((self.provider.plugin.module.stream_next())(self.id, millis))? {
            FfiPoll::Event(e) => {
                if e.kind.is_terminal() {
                    self.finished = true;
                }
                Ok(Some(Event::from_ffi(e)))
            }
            FfiPoll::Pending => Ok(None),
            FfiPoll::Finished => {
                self.finished = true;
                Err(finished_error())
            }
        }
    }

    /// Pulls up to `max` events in one crossing (ABI 1.2), waiting at most `timeout` for the
    /// first: an empty vector when none arrived in time, `Err(StreamFinished)` after the
    /// terminal event (which is the last of its batch). Against a plugin without the batch
    /// entry point it pulls one event.
    pub fn next_batch(&mut self, timeout: Duration, max: u32) -> Result<Vec<Event>, FfiError> {
        let mut events = Vec::new();
        self.next_batch_with(timeout, max, |e| events.push(e.to_owned()))?;
        Ok(events)
    }

    /// Like [`Stream::next_batch`], without copying: hands each event to `each` as views of
    /// the plugin's own buffers, which are freed when `each` returns (copy what you keep).
    /// Returns how many events were handed over (0: none arrived in time).
    pub fn next_batch_with(
        &mut self,
        timeout: Duration,
        max: u32,
        mut each: impl FnMut(EventRef<'_>),
    ) -> Result<usize, FfiError> {
        let Some(batch) = self.provider.plugin.module.stream_next_batch() else {
            let event = self.next(timeout)?;
            return Ok(event.map_or(0, |e| {
                each(e.view());
                1
            }));
        };
        if self.finished {
            return Err(finished_error());
        }
        let millis = timeout.as_millis().min(u64::MAX as u128) as u64;
        let pulled = result(batch(self.id, millis, max.max(1)))?;
        if pulled.events.is_empty() {
            if pulled.finished {
                self.finished = true;
                return Err(finished_error());
            }
            return Ok(0);
        }
        if pulled.events.last().is_some_and(|e| e.kind.is_terminal()) {
            self.finished = true;
        }
        for e in pulled.events.iter() {
            each(EventRef {
                kind: e.kind,
                text: &e.text,
                json: &e.json,
                raw: &e.raw,
            });
        }
        Ok(pulled.events.len())
    }

    /// Pulls events until the terminal one (or `deadline` passes); returns them all.
    pub fn collect(&mut self, deadline: Duration) -> Result<Vec<Event>, FfiError> {
        let end = std::time::Instant::now() + deadline;
        let mut out = Vec::new();
        while !self.finished {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(FfiError::new(
                    ErrorCode::Internal,
                    "stream did not finish before the deadline",
                ));
            }
            if let Some(e) = self.next(left.min(Duration::from_millis(500)))? {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Cancels the upstream request now.
    pub fn cancel(&self) -> Result<(), FfiError> {
        result((self.provider.plugin.module.stream_cancel())(self.id))
    }

    /// True after the terminal event.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The plugin version serving this stream.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.provider.plugin
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = result((self.provider.plugin.module.stream_close())(self.id));
    }
}

/// Where the CLI and tests look for the plugin: `MANTLE_PLUGIN`, else next to the executable
/// (and its parent, for test binaries under `target/*/deps`).
pub fn default_plugin_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MANTLE_PLUGIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [
        dir.join(plugin_file_name()),
        dir.parent()?.join(plugin_file_name()),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_byte_exact_and_fingerprinted_like_its_source() {
        let dir = tempfile::tempdir().unwrap();
        // Empty, under one chunk, exactly two chunks, and not a multiple of the chunk.
        for len in [0, 1000, 2 * HASH_CHUNK, 3 * HASH_CHUNK + 12_345] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let source = dir.path().join(format!("source-{len}"));
            let target = dir.path().join(format!("copy-{len}"));
            std::fs::write(&source, &bytes).unwrap();
            let copied = copy_and_fingerprint(&source, Some(&target)).unwrap();
            assert_eq!(std::fs::read(&target).unwrap(), bytes, "{len} bytes");
            assert_eq!(copied, fingerprint(&source).unwrap());
            assert_eq!(copied.len, len as u64);
            assert_eq!(copied.xxh3, xxhash_rust::xxh3::xxh3_128(&bytes));
        }
    }

    /// Every entry of `dir`, sorted.
    fn entries(dir: &Path) -> Vec<PathBuf> {
        let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        all.sort();
        all
    }

    #[cfg(unix)]
    #[test]
    fn a_load_copies_into_a_fresh_private_directory_never_through_a_planted_link() {
        use std::os::unix::fs::PermissionsExt;
        let temp = tempfile::tempdir().unwrap();
        let source = temp.path().join("libmantle_provider.so");
        std::fs::write(&source, b"plugin bytes").unwrap();
        // What a local user could plant in a shared temp directory: the directory a load used
        // to reuse (`mantle-host-shim-<pid>`), with links named as its copies to a file of ours.
        let victim = temp.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let planted = temp
            .path()
            .join(format!("mantle-host-shim-{}", std::process::id()));
        std::fs::create_dir(&planted).unwrap();
        for name in ["libmantle_provider.so", "libmantle_provider-0.so"] {
            std::os::unix::fs::symlink(&victim, planted.join(name)).unwrap();
        }
        let copy = PrivateCopy::make(&source, temp.path()).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let dir = copy.path.parent().unwrap().to_path_buf();
        assert_ne!(dir, planted);
        assert_eq!(dir.parent().unwrap(), temp.path());
        assert_eq!(std::fs::read(&copy.path).unwrap(), b"plugin bytes");
        assert_eq!(copy.fingerprint, fingerprint(&source).unwrap());
        let mode = std::fs::symlink_metadata(&dir)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the copy's directory is {mode:o}");
        assert_eq!(entries(&dir), vec![copy.path.clone()]);
        // A second copy of the same file gets a directory of its own.
        let again = PrivateCopy::make(&source, temp.path()).unwrap();
        assert_ne!(again.path, copy.path);
    }

    #[test]
    fn a_refused_file_leaves_nothing_in_the_temp_directory() {
        let temp = tempfile::tempdir().unwrap();
        let source = temp.path().join("libmantle_provider.so");
        std::fs::write(&source, b"not a library").unwrap();
        let before = entries(temp.path());
        let copy = PrivateCopy::make(&source, temp.path()).unwrap();
        assert_eq!(entries(temp.path()).len(), before.len() + 1);
        let refused = Plugin::open(source.clone(), LoadCopy::Private(copy)).unwrap_err();
        assert!(matches!(refused, LoadError::Open { .. }), "{refused}");
        assert_eq!(entries(temp.path()), before);
        // A copy dropped unopened (the hot-swap watcher's fingerprint-only path) too.
        drop(PrivateCopy::make(&source, temp.path()).unwrap());
        assert_eq!(entries(temp.path()), before);
    }

    #[test]
    fn a_missing_file_is_refused_before_any_directory_is_made() {
        let temp = tempfile::tempdir().unwrap();
        let missing = temp.path().join("nothing-here.so");
        let err = PrivateCopy::make(&missing, temp.path()).err().unwrap();
        assert!(err.to_string().contains("nothing-here.so"), "{err}");
        assert!(entries(temp.path()).is_empty());
    }

    #[test]
    fn a_copy_into_a_missing_directory_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        std::fs::write(&source, vec![7u8; HASH_CHUNK + 1]).unwrap();
        let target = dir.path().join("no-such-dir").join("copy");
        assert!(copy_and_fingerprint(&source, Some(&target)).is_err());
    }
}
