//! The thin layer between the ABIs and the safe core: a registry of handles (integer ids, so a
//! stale handle is an error code, never a use-after-free) and a panic guard used by every
//! exported function.

pub mod abi;
pub mod c;

use std::{
    collections::HashMap,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use mantle_abi::{ErrorCode, FfiError};
use once_cell::sync::Lazy;

use crate::{
    provider::{CreateError, Provider, ProviderOptions},
    stream::{Poll, StreamHandle},
};

struct Registry {
    providers: HashMap<u64, Arc<Provider>>,
    /// Streams with the provider that owns them.
    streams: HashMap<u64, (u64, Arc<StreamHandle>)>,
}

static REGISTRY: Lazy<Mutex<Registry>> = Lazy::new(|| {
    Mutex::new(Registry {
        providers: HashMap::new(),
        streams: HashMap::new(),
    })
});
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
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

/// Installs a stderr log subscriber when `MANTLE_PROVIDER_LOG` is set (e.g. `debug`).
/// The plugin has its own copy of `tracing`, so the host's subscriber does not see its logs.
fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("MANTLE_PROVIDER_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .try_init();
        }
    });
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
    registry().providers.insert(id, Arc::new(provider));
    Ok(id)
}

fn provider(id: u64) -> Result<Arc<Provider>, FfiError> {
    registry().providers.get(&id).cloned().ok_or_else(|| {
        FfiError::new(
            ErrorCode::InvalidHandle,
            format!("provider handle {id} is unknown or closed"),
        )
    })
}

fn stream(id: u64) -> Result<Arc<StreamHandle>, FfiError> {
    registry()
        .streams
        .get(&id)
        .map(|(_, s)| s.clone())
        .ok_or_else(|| {
            FfiError::new(
                ErrorCode::InvalidHandle,
                format!("stream handle {id} is unknown or closed"),
            )
        })
}

/// Closes a provider: cancels and releases its streams, shuts its runtime down.
pub fn provider_close(id: u64) -> Result<(), FfiError> {
    let (provider, streams) = {
        let mut reg = registry();
        let provider = reg.providers.remove(&id).ok_or_else(|| {
            FfiError::new(
                ErrorCode::InvalidHandle,
                format!("provider handle {id} is unknown or closed"),
            )
        })?;
        let ids: Vec<u64> = reg
            .streams
            .iter()
            .filter(|(_, (p, _))| *p == id)
            .map(|(s, _)| *s)
            .collect();
        let streams: Vec<_> = ids
            .into_iter()
            .filter_map(|s| reg.streams.remove(&s))
            .collect();
        (provider, streams)
    };
    for (_, s) in &streams {
        s.cancel();
    }
    drop(streams);
    drop(provider); // the last Arc shuts the runtime down (in the background, never blocking)
    Ok(())
}

/// The catalog's outcome and its JSON (`{outcome, provider}`).
pub fn catalog(id: u64) -> Result<(crate::discovery::Outcome, String), FfiError> {
    let result = provider(id)?.catalog();
    let json = serde_json::to_string(&result)
        .map_err(|e| FfiError::new(ErrorCode::Internal, e.to_string()))?;
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
    serde_json::to_string(&adopted).map_err(|e| FfiError::new(ErrorCode::Internal, e.to_string()))
}

/// Starts a stream.
pub fn stream_start(provider_id: u64, request_json: &str) -> Result<u64, FfiError> {
    let p = provider(provider_id)?;
    let handle = p
        .start_stream(request_json)
        .map_err(|m| FfiError::new(ErrorCode::InvalidArgument, m))?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    registry()
        .streams
        .insert(id, (provider_id, Arc::new(handle)));
    Ok(id)
}

/// Pulls the next event.
pub fn stream_next(id: u64, timeout_ms: u64) -> Result<Poll, FfiError> {
    Ok(stream(id)?.next(Duration::from_millis(timeout_ms)))
}

/// An event's JSON form (`{"type": ..., ...}`), as both ABIs hand it out.
pub fn event_json(event: &crate::stream::StreamEvent) -> Result<String, FfiError> {
    serde_json::to_string(event).map_err(|e| FfiError::new(ErrorCode::Internal, e.to_string()))
}

/// Cancels a stream.
pub fn stream_cancel(id: u64) -> Result<(), FfiError> {
    stream(id)?.cancel();
    Ok(())
}

/// Releases a stream (cancelling it if still running).
pub fn stream_close(id: u64) -> Result<(), FfiError> {
    let removed = registry().streams.remove(&id);
    match removed {
        Some((_, s)) => {
            s.cancel();
            Ok(())
        }
        None => Err(FfiError::new(
            ErrorCode::InvalidHandle,
            format!("stream handle {id} is unknown or closed"),
        )),
    }
}
