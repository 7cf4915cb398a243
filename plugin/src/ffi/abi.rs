//! The `abi_stable` root module: each entry point converts types and defers to [`super`],
//! inside the panic guard.

use abi_stable::{
    export_root_module,
    prefix_type::PrefixTypeTrait,
    std_types::{RResult, RStr, RString, RVec},
};
use mantle_abi::{
    FfiBatch, FfiError, FfiEvent, FfiPoll, FfiToken, FfiUnit, MantleModule, MantleModuleRef,
    PluginInfo,
};

use crate::stream::Poll;

/// Static plugin facts.
pub fn plugin_info() -> PluginInfo {
    PluginInfo {
        provider_id: RStr::from_str(mantle_abi::PROVIDER_ID),
        label: RStr::from_str(crate::PROVIDER_LABEL),
        plugin_version: RStr::from_str(env!("CARGO_PKG_VERSION")),
        build_tag: RStr::from_str(crate::BUILD_TAG),
        abi_major: mantle_abi::ABI_MAJOR,
        abi_minor: reported_abi_minor(),
    }
}

/// The ABI minor version `info()` reports: [`mantle_abi::ABI_MINOR`], unless the build set
/// `MANTLE_TEST_REPORTED_ABI_MINOR` (tests build such a plugin to check that a host refuses
/// a plugin older than itself; release builds never set it).
fn reported_abi_minor() -> u32 {
    option_env!("MANTLE_TEST_REPORTED_ABI_MINOR")
        .and_then(|v| v.parse().ok())
        .unwrap_or(mantle_abi::ABI_MINOR)
}

fn rresult<T>(r: Result<T, FfiError>) -> RResult<T, FfiError> {
    r.into()
}

extern "C" fn info() -> PluginInfo {
    plugin_info()
}

extern "C" fn provider_create(
    plugin_config: RStr<'_>,
    provider_config: RStr<'_>,
) -> RResult<u64, FfiError> {
    rresult(super::guard("provider_create", || {
        super::provider_create(plugin_config.as_str(), provider_config.as_str())
    }))
}

extern "C" fn provider_close(provider: u64) -> FfiUnit {
    rresult(super::guard("provider_close", || {
        super::provider_close(provider)
    }))
}

extern "C" fn catalog(provider: u64) -> RResult<RString, FfiError> {
    rresult(super::guard("catalog", || {
        super::catalog(provider).map(|(_, json)| RString::from(json))
    }))
}

extern "C" fn bearer_token(provider: u64) -> RResult<FfiToken, FfiError> {
    rresult(super::guard("bearer_token", || {
        super::bearer_token(provider).map(|t| FfiToken {
            token: RString::from(t.token.expose()),
            expires_at_unix: t.expires_at.map(crate::clock::unix_seconds).unwrap_or(0),
            source: RString::from(t.source.as_str()),
        })
    }))
}

extern "C" fn stream_start(provider: u64, request_json: RStr<'_>) -> RResult<u64, FfiError> {
    rresult(super::guard("stream_start", || {
        super::stream_start(provider, request_json.as_str())
    }))
}

/// Converts a core event into the ABI event, with its JSON if `json` says it carries it.
pub fn to_ffi_event(
    e: crate::stream::Emitted,
    json: crate::stream::EventJson,
) -> Result<FfiEvent, FfiError> {
    let json = if e.event.carries_json(json) {
        e.event
            .to_json()
            .map_err(|err| FfiError::new(mantle_abi::ErrorCode::Internal, err.to_string()))?
    } else {
        String::new()
    };
    let raw = e.raw.as_deref().map(RString::from).unwrap_or_default();
    Ok(FfiEvent {
        kind: e.event.kind(),
        // Moved, not copied: the event is the caller's to give away.
        text: RString::from(e.event.into_text()),
        json: RString::from(json),
        raw,
    })
}

extern "C" fn stream_next(stream: u64, timeout_ms: u64) -> RResult<FfiPoll, FfiError> {
    rresult(super::guard("stream_next", || {
        let slot = super::stream_slot(stream)?;
        Ok(match super::pull(stream, &slot, timeout_ms)? {
            Poll::Event(e) => FfiPoll::Event(to_ffi_event(e, slot.handle.event_json())?),
            Poll::Pending => FfiPoll::Pending,
            Poll::Finished => FfiPoll::Finished,
        })
    }))
}

extern "C" fn stream_next_batch(
    stream: u64,
    timeout_ms: u64,
    max_events: u32,
) -> RResult<FfiBatch, FfiError> {
    rresult(super::guard("stream_next_batch", || {
        let slot = super::stream_slot(stream)?;
        let mut pulled = Vec::new();
        let batch = super::pull_batch(stream, &slot, timeout_ms, max_events as usize, &mut pulled)?;
        let json = slot.handle.event_json();
        let events = pulled
            .into_iter()
            .map(|e| to_ffi_event(e, json))
            .collect::<Result<RVec<_>, _>>()?;
        Ok(FfiBatch {
            events,
            finished: batch == crate::stream::Batch::Finished,
        })
    }))
}

extern "C" fn stream_cancel(stream: u64) -> FfiUnit {
    rresult(super::guard("stream_cancel", || {
        super::stream_cancel(stream)
    }))
}

extern "C" fn stream_close(stream: u64) -> FfiUnit {
    rresult(super::guard("stream_close", || super::stream_close(stream)))
}

extern "C" fn state_export(provider: u64) -> RResult<RString, FfiError> {
    rresult(super::guard("state_export", || {
        super::state_export(provider).map(RString::from)
    }))
}

extern "C" fn state_import(provider: u64, blob: RStr<'_>) -> RResult<RString, FfiError> {
    rresult(super::guard("state_import", || {
        super::state_import(provider, blob.as_str()).map(RString::from)
    }))
}

/// The exported root module (found by hosts through `abi_stable`'s loader symbol).
#[export_root_module]
pub fn get_root_module() -> MantleModuleRef {
    MantleModule {
        info,
        provider_create,
        provider_close,
        catalog,
        bearer_token,
        stream_start,
        stream_next,
        stream_cancel,
        stream_close,
        state_export,
        state_import,
        stream_next_batch,
    }
    .leak_into_prefix()
}
