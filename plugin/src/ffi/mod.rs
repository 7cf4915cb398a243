//! The thin layer between the ABIs and the safe core: a registry of handles (integer ids, so a
//! stale handle is an error code, never a use-after-free) and a panic guard used by every
//! exported function.

pub mod abi;
pub mod c;
mod c_buffers;

use std::{
    collections::HashMap,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock, RwLock,
    },
    time::Duration,
};

use mantle_abi::{ErrorCode, FfiError};
use once_cell::sync::Lazy;

use crate::{
    provider::{CreateError, Provider, ProviderOptions},
    stream::{Poll, StreamHandle, CANCELLED_BY_HOST, CANCELLED_PROVIDER_CLOSED},
};

/// One registered stream: its handle, the provider that owns it, and the C API's buffers for
/// the last event it handed out (`mantle_event` points into them).
pub struct StreamSlot {
    /// The owning provider's handle id.
    provider: u64,
    /// The stream.
    pub handle: StreamHandle,
    /// The C API's buffers of the last pull's events (one, or a batch); locked for the whole of
    /// a C pull, so a second C pull of the same stream is refused instead of freeing the
    /// buffers under the first one.
    pub(crate) c_buffers: Mutex<c_buffers::EventBuffers>,
    /// Why the stream was closed, set (before cancelling) when it is freed or its provider
    /// closed; a pull that is still running then hands out that static terminal event instead
    /// of the buffers.
    pub(crate) closed: OnceLock<&'static str>,
}

/// Stream shards: a pull looks its stream up under one shard's read lock, so pulls of
/// different streams on different threads do not contend on one lock's cache line.
const STREAM_SHARDS: usize = 64;

type Shard = RwLock<HashMap<u64, Arc<StreamSlot>>>;

/// Handles to objects. Lookups take a read lock (providers) or one shard's read lock
/// (streams); only create/close take a write lock.
static PROVIDERS: Lazy<RwLock<HashMap<u64, Arc<Provider>>>> = Lazy::new(Default::default);
static STREAMS: Lazy<[Shard; STREAM_SHARDS]> =
    Lazy::new(|| std::array::from_fn(|_| RwLock::new(HashMap::new())));
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

fn shard(id: u64) -> &'static Shard {
    &STREAMS[(id % STREAM_SHARDS as u64) as usize]
}

/// Runs `f`, turning a panic into an `Internal` error so nothing unwinds across the ABI.
pub fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, FfiError>) -> Result<T, FfiError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(entry_point = what, panic = %msg, "panic caught at the ABI boundary");
            Err(FfiError::new(
                ErrorCode::Internal,
                format!("{what}: internal error (panic: {msg})"),
            ))
        }
    }
}

/// Installs a stderr log subscriber when `MANTLE_PROVIDER_LOG` is set: comma-separated
/// `level` or `target=level` directives (e.g. `debug` or `warn,mantle_provider=trace`).
/// The plugin has its own copy of `tracing`, so the host's subscriber does not see its logs.
fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("MANTLE_PROVIDER_LOG") {
            install_log_subscriber(&filter);
        }
    });
}

/// The stderr subscriber for a `MANTLE_PROVIDER_LOG` value (see [`log_filter`]); a value
/// that does not parse logs warnings, and says so.
fn install_log_subscriber(value: &str) {
    use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};
    let (targets, refused) = log_filter(value);
    let installed = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .finish()
        .with(targets)
        .try_init()
        .is_ok();
    if let (true, Some(e)) = (installed, refused) {
        tracing::warn!(error = %e, "MANTLE_PROVIDER_LOG is not a list of [target=]level directives; logging warnings only");
    }
}

/// The filter a `MANTLE_PROVIDER_LOG` value asks for, or warnings only and why not. `Targets`
/// rather than `EnvFilter`: no span or field directives, and no regex engine in the library
/// (about half a MiB of what every load copies).
fn log_filter(
    value: &str,
) -> (
    tracing_subscriber::filter::Targets,
    Option<tracing_subscriber::filter::ParseError>,
) {
    use tracing_subscriber::filter::Targets;
    match value.parse::<Targets>() {
        Ok(targets) => (targets, None),
        Err(e) => (Targets::new().with_default(tracing::Level::WARN), Some(e)),
    }
}

/// Creates a provider and registers it.
pub fn provider_create(plugin_config: &str, provider_config: &str) -> Result<u64, FfiError> {
    init_logging();
    let provider = Provider::new(plugin_config, provider_config, ProviderOptions::default())
        .map_err(|e| match e {
            CreateError::Config(c) => FfiError::new(ErrorCode::InvalidConfig, c.to_string()),
            CreateError::Startup(s) => FfiError::new(ErrorCode::Internal, s),
        })?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    write(&PROVIDERS).insert(id, Arc::new(provider));
    Ok(id)
}

fn provider(id: u64) -> Result<Arc<Provider>, FfiError> {
    read(&PROVIDERS).get(&id).cloned().ok_or_else(|| {
        FfiError::new(
            ErrorCode::InvalidHandle,
            format!("provider handle {id} is unknown or closed"),
        )
    })
}

/// The registered stream `id`.
pub fn stream_slot(id: u64) -> Result<Arc<StreamSlot>, FfiError> {
    read(shard(id)).get(&id).cloned().ok_or_else(|| {
        FfiError::new(
            ErrorCode::InvalidHandle,
            format!("stream handle {id} is unknown or closed"),
        )
    })
}

impl StreamSlot {
    /// Marks the slot closed, cancels the stream (waking a pull that waits on it, which then
    /// delivers one `cancelled` terminal event) and frees the C buffers once no C pull runs.
    fn close(&self, reason: &'static str) {
        let _ = self.closed.set(reason);
        self.handle.cancel_with(reason);
        self.c_buffers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .release();
    }
}

/// Closes a provider: cancels and releases its streams (a pull waiting on one of them gets a
/// `cancelled` terminal event), frees their buffers, shuts its runtime down.
pub fn provider_close(id: u64) -> Result<(), FfiError> {
    let provider = write(&PROVIDERS).remove(&id).ok_or_else(|| {
        FfiError::new(
            ErrorCode::InvalidHandle,
            format!("provider handle {id} is unknown or closed"),
        )
    })?;
    // A stream_start racing with this close either registers before its shard is swept (and
    // is closed here) or finds the provider gone after registering (and closes itself).
    let mut streams = Vec::new();
    for shard in STREAMS.iter() {
        write(shard).retain(|_, slot| {
            let mine = slot.provider == id;
            if mine {
                streams.push(slot.clone());
            }
            !mine
        });
    }
    for slot in &streams {
        slot.close(CANCELLED_PROVIDER_CLOSED);
    }
    drop(streams);
    drop(provider); // the last Arc shuts the runtime down
    Ok(())
}

/// The catalog's outcome and its JSON (`{outcome, provider}`).
pub fn catalog(id: u64) -> Result<(crate::discovery::Outcome, String), FfiError> {
    let result = provider(id)?.catalog();
    let json = to_json(&result)?;
    Ok((result.outcome, json))
}

/// The resolved bearer token.
pub fn bearer_token(id: u64) -> Result<crate::auth::ResolvedToken, FfiError> {
    provider(id)?
        .bearer_token()
        .map_err(|e| FfiError::new(ErrorCode::AuthUnavailable, format!("{}: {e}", e.reason())))
}

/// The provider's hot-swap state blob (contains secrets; never log it).
pub fn state_export(id: u64) -> Result<String, FfiError> {
    Ok(provider(id)?.export_state())
}

/// Adopts a state blob; returns what was adopted, as JSON.
pub fn state_import(id: u64, blob: &str) -> Result<String, FfiError> {
    let adopted = provider(id)?
        .import_state(blob)
        .map_err(|m| FfiError::new(ErrorCode::InvalidArgument, m))?;
    to_json(&adopted)
}

/// Starts a stream.
pub fn stream_start(provider_id: u64, request_json: &str) -> Result<u64, FfiError> {
    let p = provider(provider_id)?;
    let handle = p
        .start_stream(request_json)
        .map_err(|m| FfiError::new(ErrorCode::InvalidArgument, m))?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let slot = StreamSlot {
        provider: provider_id,
        handle,
        c_buffers: Mutex::default(),
        closed: OnceLock::new(),
    };
    write(shard(id)).insert(id, Arc::new(slot));
    if !read(&PROVIDERS).contains_key(&provider_id) {
        if let Some(slot) = write(shard(id)).remove(&id) {
            slot.close(CANCELLED_PROVIDER_CLOSED);
        }
        return Err(FfiError::new(
            ErrorCode::InvalidHandle,
            format!("provider handle {provider_id} was closed while the stream started"),
        ));
    }
    Ok(id)
}

/// Pulls the next event of a slot (both ABIs); a concurrent pull is an `InvalidArgument`.
pub fn pull(id: u64, slot: &StreamSlot, timeout_ms: u64) -> Result<Poll, FfiError> {
    slot.handle
        .next(Duration::from_millis(timeout_ms))
        .map_err(|e| FfiError::new(ErrorCode::InvalidArgument, format!("stream {id}: {e}")))
}

/// Pulls the next event.
pub fn stream_next(id: u64, timeout_ms: u64) -> Result<Poll, FfiError> {
    pull(id, &*stream_slot(id)?, timeout_ms)
}

/// Most events one batch pull hands out, whatever the caller asks.
pub const MAX_BATCH_EVENTS: usize = 1024;

/// Pulls up to `max` events of a stream into `out`, waiting at most `timeout_ms` for the first.
pub fn pull_batch(
    id: u64,
    slot: &StreamSlot,
    timeout_ms: u64,
    max: usize,
    out: &mut Vec<crate::stream::Emitted>,
) -> Result<crate::stream::Batch, FfiError> {
    slot.handle
        .next_batch(
            Duration::from_millis(timeout_ms),
            max.clamp(1, MAX_BATCH_EVENTS),
            out,
        )
        .map_err(|e| FfiError::new(ErrorCode::InvalidArgument, format!("stream {id}: {e}")))
}

/// JSON text of a value handed across either ABI (catalogs, events, import reports).
pub fn to_json(value: &impl serde::Serialize) -> Result<String, FfiError> {
    serde_json::to_string(value).map_err(|e| FfiError::new(ErrorCode::Internal, e.to_string()))
}

/// Cancels a stream.
pub fn stream_cancel(id: u64) -> Result<(), FfiError> {
    stream_slot(id)?.handle.cancel();
    Ok(())
}

/// Releases a stream (cancelling it if still running; a pull waiting on it gets the
/// `cancelled` terminal event) and its C buffers.
pub fn stream_close(id: u64) -> Result<(), FfiError> {
    let removed = write(shard(id)).remove(&id);
    match removed {
        Some(slot) => {
            slot.close(CANCELLED_BY_HOST);
            Ok(())
        }
        None => Err(FfiError::new(
            ErrorCode::InvalidHandle,
            format!("stream handle {id} is unknown or closed"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing::Level;

    #[test]
    fn the_log_filter_takes_levels_and_target_directives_and_refuses_the_rest() {
        let (all_debug, refused) = log_filter("debug");
        assert!(refused.is_none());
        assert!(all_debug.would_enable("mantle_provider::stream", &Level::DEBUG));
        assert!(!all_debug.would_enable("mantle_provider::stream", &Level::TRACE));

        let (mixed, refused) = log_filter("warn,mantle_provider=trace");
        assert!(refused.is_none());
        assert!(mixed.would_enable("mantle_provider::auth", &Level::TRACE));
        assert!(mixed.would_enable("hyper", &Level::WARN));
        assert!(!mixed.would_enable("hyper", &Level::INFO));

        // Span and field directives are EnvFilter's, not ours: warnings only, and the error.
        let (fallback, refused) = log_filter("mantle_provider[stream{id=1}]=debug");
        assert!(refused.is_some());
        assert!(fallback.would_enable("mantle_provider", &Level::WARN));
        assert!(!fallback.would_enable("mantle_provider", &Level::INFO));
    }
}
