//! Amazon Bedrock Mantle provider plugin for LLM gateways.
//!
//! Built as a `cdylib` exporting an `abi_stable` root module ([`ffi::abi`]); also usable as an
//! `rlib` (the safe core: [`provider::Provider`]). One module per concern:
//! [`config`], [`region`], [`routes`], [`auth`], [`discovery`], [`catalog`], [`request`],
//! [`stream`], [`errors`], [`state`] (hot-swap handover), [`ffi`].

pub mod auth;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod discovery;
pub mod errors;
pub mod ffi;
pub mod lanes;
pub mod limits;
pub mod provider;
pub mod region;
pub mod request;
pub mod routes;
pub mod secret;
pub mod state;
pub mod stream;
mod tls;

/// Human label of the provider.
pub const PROVIDER_LABEL: &str = "Amazon Bedrock Mantle (OpenAI-compatible)";

/// Build tag set with `MANTLE_BUILD_TAG` at compile time (tells builds apart), else "".
pub const BUILD_TAG: &str = match option_env!("MANTLE_BUILD_TAG") {
    Some(t) => t,
    None => "",
};

/// The `user-agent` sent upstream: `mantle-provider/<version>`, plus `+<build tag>` when the
/// build has one (so a server log tells plugin versions apart, e.g. during a hot-swap).
pub fn user_agent() -> String {
    match BUILD_TAG {
        "" => format!("mantle-provider/{}", env!("CARGO_PKG_VERSION")),
        tag => format!("mantle-provider/{}+{tag}", env!("CARGO_PKG_VERSION")),
    }
}
