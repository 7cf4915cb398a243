//! The ABI shared by the Mantle provider plugin and the hosts that load it.
//!
//! The plugin exports one `abi_stable` root module, [`MantleModule`], reached through the
//! prefix reference [`MantleModuleRef`]. It is a *prefix type*: a minor ABI version may append
//! entry points after the last prefix field, and a host built against an older minor version
//! keeps working. A host built against a newer minor version can ask for the appended entry
//! points and gets `None` from an older plugin instead of undefined behaviour.
//!
//! Everything crossing the boundary is `#[repr(C)]` + `StableAbi`. Handles are plain integer
//! ids looked up in a registry inside the plugin, so a stale or closed handle yields an error
//! code instead of a use-after-free. Errors cross as values ([`FfiError`]); the plugin catches
//! every panic at the boundary.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr, RString, RVec},
    StableAbi,
};

/// Major ABI version. Hosts refuse a plugin whose major version differs from theirs.
pub const ABI_MAJOR: u32 = 1;
/// Minor ABI version. A plugin with a minor version >= the host's is accepted.
pub const ABI_MINOR: u32 = 3;

/// Whether a plugin implementing ABI `major.minor` can serve a host built for
/// [`ABI_MAJOR`].[`ABI_MINOR`]: same major, and at least the host's minor.
pub fn abi_compatible(major: u32, minor: u32) -> bool {
    major == ABI_MAJOR && minor >= ABI_MINOR
}

/// Provider id, as the gateway names it in `models.providers`.
pub const PROVIDER_ID: &str = "amazon-bedrock-mantle";

/// Result codes shared by the Rust ABI and the C ABI (same numbers in `mantle_provider.h`).
#[repr(u32)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Success (never carried inside an [`FfiError`]).
    Ok = 0,
    /// An argument was wrong: a null pointer, invalid UTF-8, malformed request JSON.
    InvalidArgument = 1,
    /// The configuration text was rejected; the message names the field.
    InvalidConfig = 2,
    /// The handle is unknown: never created, or already closed.
    InvalidHandle = 3,
    /// No bearer token could be resolved (no key, no credentials, minting failed).
    AuthUnavailable = 4,
    /// The plugin hit an internal error (including a caught panic).
    Internal = 5,
    /// The stream already delivered its terminal event; nothing more will come.
    StreamFinished = 6,
    /// The supplied buffer was too small (C ABI only).
    BufferTooSmall = 7,
}

/// An error crossing the ABI: a code plus a readable message (never containing a secret).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiError {
    /// What kind of failure this is.
    pub code: ErrorCode,
    /// A readable explanation naming what was wrong.
    pub message: RString,
}

impl FfiError {
    /// Builds an error from a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        FfiError {
            code,
            message: RString::from(message.into()),
        }
    }
}

impl std::fmt::Display for FfiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for FfiError {}

/// Static facts about a loaded plugin.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct PluginInfo {
    /// Always [`PROVIDER_ID`].
    pub provider_id: RStr<'static>,
    /// Human label of the provider.
    pub label: RStr<'static>,
    /// The plugin crate's semver version.
    pub plugin_version: RStr<'static>,
    /// A free-form build tag (set at build time with `MANTLE_BUILD_TAG`), to tell builds apart.
    pub build_tag: RStr<'static>,
    /// ABI major version the plugin implements.
    pub abi_major: u32,
    /// ABI minor version the plugin implements.
    pub abi_minor: u32,
}

/// A bearer token resolved by the plugin, for hosts that call Mantle themselves.
///
/// The token is a secret: hosts must not log it.
#[repr(C)]
#[derive(StableAbi, Clone)]
pub struct FfiToken {
    /// The bearer token (without the `Bearer ` prefix).
    pub token: RString,
    /// Unix seconds at which the token stops being valid; 0 when unknown (explicit keys).
    pub expires_at_unix: i64,
    /// Where it came from: `config`, `config-env`, `env`, or `iam`.
    pub source: RString,
}

impl std::fmt::Debug for FfiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FfiToken")
            .field("token", &"<redacted>")
            .field("expires_at_unix", &self.expires_at_unix)
            .field("source", &self.source)
            .finish()
    }
}

/// Kinds of normalized stream events (same numbers in the C header).
#[repr(u32)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The upstream accepted the request; `json` has `{id, model}` when known.
    Start = 1,
    /// Assistant text; `text` holds the delta.
    TextDelta = 2,
    /// Reasoning text; `text` holds the delta, `json` may carry a `signature`.
    ReasoningDelta = 3,
    /// A tool call begins; `json` has `{index, id, name}`.
    ToolCallStart = 4,
    /// Tool call arguments; `text` holds the JSON fragment, `json` has `{index}`.
    ToolCallDelta = 5,
    /// A tool call is complete; `json` has `{index}`.
    ToolCallEnd = 6,
    /// Token usage; `json` has `{input, output, cache_read, cache_write, reasoning}`.
    Usage = 7,
    /// Terminal: the stream finished; `json` has `{stop_reason}`.
    Done = 8,
    /// Terminal: the stream failed; `json` has `{kind, status, retryable, message}`.
    Error = 9,
}

impl EventKind {
    /// True for the two terminal kinds.
    pub fn is_terminal(self) -> bool {
        matches!(self, EventKind::Done | EventKind::Error)
    }
}

/// One normalized stream event.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiEvent {
    /// What happened.
    pub kind: EventKind,
    /// The text delta for text, reasoning and tool-argument events; empty otherwise.
    pub text: RString,
    /// The whole event as JSON (`{"type": ..., ...}`). Always present, except (ABI 1.3) when
    /// the request set `include_json` to false: then text deltas and reasoning deltas without
    /// a signature, whose `kind` and `text` are the whole event, have it empty.
    pub json: RString,
    /// The upstream's raw `data:` payload when the request asked for it; empty otherwise.
    pub raw: RString,
}

/// What one pull on a stream produced.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone)]
pub enum FfiPoll {
    /// The next event.
    Event(FfiEvent),
    /// Nothing arrived within the timeout; pull again.
    Pending,
    /// The terminal event was already delivered; close the stream.
    Finished,
}

/// What one batch pull produced (ABI 1.2): some events, or none with `finished` telling
/// whether the terminal event was already delivered (`false`: nothing arrived in time).
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiBatch {
    /// The events, in order; a terminal event is the last of its batch.
    pub events: RVec<FfiEvent>,
    /// With no events: true when the stream already delivered its terminal event.
    pub finished: bool,
}

/// Outcome of a call that returns nothing on success.
pub type FfiUnit = RResult<(), FfiError>;

/// The plugin's root module (prefix type; append new entry points after the last prefix field).
///
/// Ownership: every `RString` returned is owned by the caller (dropped with the value).
/// Handles are `u64` ids owned by the plugin: `provider_close` / `stream_close` release them;
/// using one afterwards yields [`ErrorCode::InvalidHandle`].
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = MantleModuleRef)))]
#[sabi(missing_field(option))]
pub struct MantleModule {
    /// Static plugin facts (id, versions, ABI version).
    pub info: extern "C" fn() -> PluginInfo,
    /// Creates a provider instance from JSON5 texts: the plugin config (`{discovery: {enabled}}`)
    /// and the provider config (`models.providers["amazon-bedrock-mantle"]`). Either may be empty.
    pub provider_create:
        extern "C" fn(plugin_config: RStr<'_>, provider_config: RStr<'_>) -> RResult<u64, FfiError>,
    /// Closes a provider: cancels its streams and shuts its runtime down.
    pub provider_close: extern "C" fn(provider: u64) -> FfiUnit,
    /// Runs (or serves from cache) discovery; returns the catalog JSON with its outcome.
    pub catalog: extern "C" fn(provider: u64) -> RResult<RString, FfiError>,
    /// Resolves the bearer token the provider would use now.
    pub bearer_token: extern "C" fn(provider: u64) -> RResult<FfiToken, FfiError>,
    /// Starts a streaming request (canonical JSON request); returns a stream handle.
    pub stream_start:
        extern "C" fn(provider: u64, request_json: RStr<'_>) -> RResult<u64, FfiError>,
    /// Pulls the next event, waiting at most `timeout_ms` (0 = try without waiting).
    pub stream_next: extern "C" fn(stream: u64, timeout_ms: u64) -> RResult<FfiPoll, FfiError>,
    /// Cancels a stream: aborts the upstream request at once; the next pull yields a
    /// `cancelled` error event unless a terminal event was already delivered.
    pub stream_cancel: extern "C" fn(stream: u64) -> FfiUnit,
    /// Releases a stream handle (cancelling it if still running).
    #[sabi(last_prefix_field)]
    pub stream_close: extern "C" fn(stream: u64) -> FfiUnit,
    /// ABI 1.1. Exports the provider's hot-swap state blob: JSON with the discovery cache and
    /// the IAM token cache. It contains bearer tokens: pass it to the next version in memory,
    /// never log or store it. Read through `MantleModuleRef::state_export()`, an `Option`.
    pub state_export: extern "C" fn(provider: u64) -> RResult<RString, FfiError>,
    /// ABI 1.1. Adopts a state blob exported by another version (same config expected).
    /// Returns `{"discovery_entries": n, "tokens": n}`; a blob of an unknown format is an
    /// `InvalidArgument` error and changes nothing.
    pub state_import: extern "C" fn(provider: u64, blob: RStr<'_>) -> RResult<RString, FfiError>,
    /// ABI 1.2. Pulls up to `max_events` events in one call, waiting at most `timeout_ms` for
    /// the first: the same rules as `stream_next` (exactly one terminal event, then
    /// `finished`), with one crossing and one lock per batch instead of per event. Read
    /// through `MantleModuleRef::stream_next_batch()`, an `Option`.
    pub stream_next_batch:
        extern "C" fn(stream: u64, timeout_ms: u64, max_events: u32) -> RResult<FfiBatch, FfiError>,
}

impl RootModule for MantleModuleRef {
    declare_root_module_statics! {MantleModuleRef}
    const BASE_NAME: &'static str = "mantle_provider";
    const NAME: &'static str = "mantle_provider";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_constants_match_the_crate_version() {
        assert_eq!(
            env!("CARGO_PKG_VERSION_MAJOR").parse::<u32>().unwrap(),
            ABI_MAJOR
        );
        assert_eq!(
            env!("CARGO_PKG_VERSION_MINOR").parse::<u32>().unwrap(),
            ABI_MINOR
        );
    }

    #[test]
    fn compatibility_rule() {
        assert!(abi_compatible(ABI_MAJOR, ABI_MINOR));
        assert!(abi_compatible(ABI_MAJOR, ABI_MINOR + 1));
        assert!(!abi_compatible(ABI_MAJOR + 1, ABI_MINOR));
        assert!(!abi_compatible(ABI_MAJOR - 1, ABI_MINOR));
        // A plugin older than the host (minor below the host's) lacks entry points it needs.
        assert!(!abi_compatible(ABI_MAJOR, ABI_MINOR - 1));
    }
}
