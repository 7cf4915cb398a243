//! Plugin and provider configuration, parsed from JSON5 as users write it.
//!
//! Parsing goes JSON5 text -> `serde_json::Value` -> typed structs through
//! `serde_path_to_error`, so every error names the field path (`models[1].contextWindow`) and
//! what was expected. Unknown keys are rejected with their name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::secret::Secret;

/// API surface names accepted in `api` fields.
pub const API_OPENAI_COMPLETIONS: &str = "openai-completions";
/// Anthropic Messages surface.
pub const API_ANTHROPIC_MESSAGES: &str = "anthropic-messages";
/// OpenAI Responses surface (GPT-5.x, Gemma 4, xAI on Mantle; spec §7).
pub const API_OPENAI_RESPONSES: &str = "openai-responses";
const KNOWN_APIS: [&str; 3] = [
    API_OPENAI_COMPLETIONS,
    API_ANTHROPIC_MESSAGES,
    API_OPENAI_RESPONSES,
];

/// A configuration error naming the field and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{context}: {message}")]
pub struct ConfigError {
    /// Which config text: `plugin config` or `provider config`.
    pub context: &'static str,
    /// The field path and problem.
    pub message: String,
}

/// Plugin-level configuration: `{ discovery: { enabled: bool }, runtime: { workerThreads: n } }`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginConfig {
    /// Discovery settings.
    #[serde(default)]
    pub discovery: DiscoveryConfig,
    /// The provider's own runtime.
    #[serde(default)]
    pub runtime: RuntimeConfig,
}

/// `runtime` section of the plugin config.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// Lanes of each provider (1..=1024): threads, each with a single-threaded runtime and
    /// its own HTTP client (`lanes.rs`); unset: as many as the machine has cores
    /// (`available_parallelism`).
    #[serde(default)]
    pub worker_threads: Option<u32>,
}

/// Most lanes (worker threads) a provider may be given.
pub const MAX_WORKER_THREADS: u32 = 1024;

/// `discovery` section of the plugin config.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiscoveryConfig {
    /// `false`: no discovery, no token minting, no HTTP; manual models are still served.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig { enabled: true }
    }
}

fn default_true() -> bool {
    true
}

/// Per-1M-token prices in USD.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cost {
    /// Input tokens.
    pub input: f64,
    /// Output tokens.
    pub output: f64,
    /// Cache-read input tokens.
    pub cache_read: f64,
    /// Cache-write input tokens.
    pub cache_write: f64,
}

/// Extra request headers. Values can be credentials (proxy keys, tenant tokens), so they are
/// kept like secrets: `Debug` and serialization (catalogs, state blobs) show each name with
/// `<redacted>` as its value. Read the values through `Deref` only to send them.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct HeaderValues(pub BTreeMap<String, String>);

impl std::ops::Deref for HeaderValues {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'a> IntoIterator for &'a HeaderValues {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl HeaderValues {
    fn redacted(&self) -> BTreeMap<&str, &'static str> {
        self.0.keys().map(|k| (k.as_str(), "<redacted>")).collect()
    }
}

impl std::fmt::Debug for HeaderValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.redacted().fmt(f)
    }
}

impl Serialize for HeaderValues {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.redacted().serialize(s)
    }
}

/// A model row as the user writes it under `models[]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelConfig {
    /// Model id sent upstream.
    pub id: String,
    /// Display name (defaults to the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// API surface for this model (defaults to the provider's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Whether the model reasons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<bool>,
    /// Input modalities (`text`, `image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Vec<String>>,
    /// Prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
    /// Context window in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    /// Max output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Extra request headers for this model (values redacted in `Debug`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderValues>,
}

/// `models.providers["amazon-bedrock-mantle"]` as the user writes it. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProviderConfig {
    /// Replaces the derived origin for every route.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Default API surface.
    #[serde(default)]
    pub api: Option<String>,
    /// Auth mode: `api-key` (bearer token, the default) or `aws-sigv4` (spec §2b).
    #[serde(default)]
    pub auth: Option<String>,
    /// A literal key or `env:NAME`.
    #[serde(default)]
    pub api_key: Option<ApiKeySetting>,
    /// Region override.
    #[serde(default)]
    pub region: Option<String>,
    /// Regions added to the 12 built-in ones (spec §2b).
    #[serde(default)]
    pub extra_regions: Option<Vec<String>>,
    /// Extra headers on every request (values redacted in `Debug`).
    #[serde(default)]
    pub headers: Option<HeaderValues>,
    /// Manual model list; non-empty replaces the discovered catalog.
    #[serde(default)]
    pub models: Option<Vec<ModelConfig>>,
}

/// The `apiKey` setting: an environment reference or a literal secret.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ApiKeySetting {
    /// `env:NAME`: read NAME at request time.
    Env(String),
    /// A literal key (kept redacted).
    Literal(Secret),
}

impl<'de> Deserialize<'de> for ApiKeySetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        match raw.strip_prefix("env:") {
            Some(name) => {
                let name = name.trim();
                if name.is_empty() {
                    return Err(serde::de::Error::custom(
                        "`env:` needs a variable name, e.g. env:AWS_BEARER_TOKEN_BEDROCK",
                    ));
                }
                Ok(ApiKeySetting::Env(name.to_string()))
            }
            None => Ok(ApiKeySetting::Literal(Secret::new(raw))),
        }
    }
}

fn parse_json5(text: &str, context: &'static str) -> Result<Value, ConfigError> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    crate::limits::check_text(
        text,
        crate::limits::MAX_CONFIG_BYTES,
        crate::limits::MAX_NESTING,
    )
    .map_err(|e| ConfigError {
        context,
        message: format!("refused before parsing: the text {e}"),
    })?;
    let value: Value = json5::from_str(text).map_err(|e| ConfigError {
        context,
        message: format!("not valid JSON5: {e}"),
    })?;
    if !value.is_object() {
        return Err(ConfigError {
            context,
            message: format!(
                "expected an object at the top level, found {}",
                kind_of(&value)
            ),
        });
    }
    Ok(value)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn typed<T: serde::de::DeserializeOwned>(
    value: Value,
    context: &'static str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let message = if path == "." {
            inner
        } else {
            format!("field `{path}`: {inner}")
        };
        ConfigError { context, message }
    })
}

impl PluginConfig {
    /// Parses the plugin config (empty text = defaults).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: PluginConfig = typed(parse_json5(text, "plugin config")?, "plugin config")?;
        if let Some(n) = config.runtime.worker_threads {
            if !(1..=MAX_WORKER_THREADS).contains(&n) {
                return Err(ConfigError {
                    context: "plugin config",
                    message: format!("field `runtime.workerThreads`: expected 1..={MAX_WORKER_THREADS}, found {n}"),
                });
            }
        }
        Ok(config)
    }

    /// Lanes (worker threads) for a provider: the configured number, else the machine's cores.
    pub fn worker_threads(&self) -> usize {
        match self.runtime.worker_threads {
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

impl ProviderConfig {
    /// The auth mode `auth` names (validated by [`ProviderConfig::parse`]; unset is `api-key`).
    pub fn auth_mode(&self) -> crate::auth::AuthMode {
        match self.auth.as_deref() {
            Some("aws-sigv4") => crate::auth::AuthMode::SigV4,
            _ => crate::auth::AuthMode::ApiKey,
        }
    }

    /// Parses and validates the provider config (empty text = all defaults).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        const CTX: &str = "provider config";
        let config: ProviderConfig = typed(parse_json5(text, CTX)?, CTX)?;
        let err = |message: String| ConfigError {
            context: CTX,
            message,
        };
        if let Some(api) = &config.api {
            check_api(api).map_err(|m| err(format!("field `api`: {m}")))?;
        }
        if let Some(auth) = &config.auth {
            if auth != "api-key" && auth != "aws-sigv4" {
                return Err(err(format!("field `auth`: expected \"api-key\" (bearer token) or \"aws-sigv4\" (SigV4-signed requests), found {auth:?}")));
            }
        }
        if let Some(url) = &config.base_url {
            crate::routes::validate_base_url(url)
                .map_err(|m| err(format!("field `baseUrl`: {m}")))?;
        }
        if let Some(region) = &config.region {
            let region = region.trim();
            if !region.is_empty() && !crate::region::is_well_formed(region) {
                return Err(err(format!(
                    "field `region`: {region:?} is not a region name (expected something like \"us-east-1\")"
                )));
            }
        }
        for (i, region) in config.extra_regions.iter().flatten().enumerate() {
            if !crate::region::is_well_formed(region) {
                return Err(err(format!(
                    "field `extraRegions[{i}]`: {region:?} is not a region name (expected something like \"ap-southeast-2\")"
                )));
            }
        }
        for (i, model) in config.models.iter().flatten().enumerate() {
            if model.id.trim().is_empty() {
                return Err(err(format!("field `models[{i}].id`: must not be blank")));
            }
            if let Some(api) = &model.api {
                check_api(api).map_err(|m| err(format!("field `models[{i}].api`: {m}")))?;
            }
            for modality in model.input.iter().flatten() {
                if modality != "text" && modality != "image" {
                    return Err(err(format!("field `models[{i}].input`: expected \"text\" or \"image\", found {modality:?}")));
                }
            }
        }
        Ok(config)
    }
}

fn check_api(api: &str) -> Result<(), String> {
    if KNOWN_APIS.contains(&api) {
        Ok(())
    } else {
        Err(format!("expected one of {KNOWN_APIS:?}, found {api:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_config_accepts_json5_and_defaults() {
        assert!(PluginConfig::parse("").unwrap().discovery.enabled);
        let c = PluginConfig::parse("{ // comment\n discovery: { enabled: false, }, }").unwrap();
        assert!(!c.discovery.enabled);
    }

    #[test]
    fn runtime_worker_threads_default_to_the_cores_and_are_bounded() {
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(PluginConfig::parse("").unwrap().worker_threads(), cores);
        let c = PluginConfig::parse("{ runtime: { workerThreads: 7 } }").unwrap();
        assert_eq!(c.worker_threads(), 7);
        for bad in ["0", "1025"] {
            let e = PluginConfig::parse(&format!("{{ runtime: {{ workerThreads: {bad} }} }}"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("runtime.workerThreads") && e.contains("1..=1024"),
                "{e}"
            );
        }
        let e = PluginConfig::parse("{ runtime: { threads: 2 } }").unwrap_err();
        assert!(e.to_string().contains("threads"), "{e}");
    }

    #[test]
    fn plugin_config_unknown_key_is_named() {
        let e = PluginConfig::parse("{ discovery: { enabled: true, interval: 5 } }").unwrap_err();
        assert!(e.to_string().contains("interval"), "{e}");
        assert!(e.to_string().contains("discovery"), "{e}");
        let e = PluginConfig::parse("{ discovry: {} }").unwrap_err();
        assert!(e.to_string().contains("discovry"), "{e}");
    }

    #[test]
    fn provider_config_errors_name_the_field() {
        let e =
            ProviderConfig::parse("{ models: [ { id: 'a' }, { id: 'b', contextWindow: 'big' } ] }")
                .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("models[1].contextWindow"), "{s}");
        assert!(s.contains("invalid type"), "{s}");

        let e = ProviderConfig::parse("{ api: 'grpc' }").unwrap_err();
        assert!(e.to_string().contains("field `api`"), "{e}");
        let e = ProviderConfig::parse("{ region: 'us-east-1.evil.com' }").unwrap_err();
        assert!(e.to_string().contains("field `region`"), "{e}");
        let e = ProviderConfig::parse("{ baseUrl: 'http://example.com/v1' }").unwrap_err();
        assert!(e.to_string().contains("https"), "{e}");
        for url in [
            "https://user:hunter2@proxy.example/v1",
            "https://hunter2@proxy.example",
            "http://u:hunter2@127.0.0.1:8080/v1",
            "https://u:hunter2@[bad/v1",
            "u:hunter2@proxy.example/v1",
        ] {
            // Failed before the fix: the URL, password included, was echoed in the error.
            let e = ProviderConfig::parse(&format!("{{ baseUrl: '{url}' }}")).unwrap_err();
            let s = e.to_string();
            assert!(s.contains("field `baseUrl`"), "{s}");
            assert!(!s.contains("hunter2"), "{s}");
        }
        let e = ProviderConfig::parse("{ extraRegions: ['ap-southeast-2', 'x.evil.com'] }")
            .unwrap_err();
        assert!(e.to_string().contains("field `extraRegions[1]`"), "{e}");
        let e = ProviderConfig::parse("{ apiKey: 'env:' }").unwrap_err();
        assert!(e.to_string().contains("apiKey"), "{e}");
        let e = ProviderConfig::parse("{ models: [ { id: ' ' } ] }").unwrap_err();
        assert!(e.to_string().contains("models[0].id"), "{e}");
        let e = ProviderConfig::parse("[1, 2]").unwrap_err();
        assert!(e.to_string().contains("object"), "{e}");
        let e = ProviderConfig::parse("{ baseUrl: ").unwrap_err();
        assert!(e.to_string().contains("JSON5"), "{e}");
    }

    #[test]
    fn literal_api_key_never_shows_in_debug_or_errors() {
        let c =
            ProviderConfig::parse("{ apiKey: 'sekrit-value', headers: { 'x-k': 'hdr-secret' } }")
                .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("sekrit-value"), "{dbg}");
        assert!(!dbg.contains("hdr-secret"), "{dbg}");
        assert!(dbg.contains("x-k"), "header names stay visible: {dbg}");
        let e = ProviderConfig::parse("{ apiKey: 'sekrit-value', bogus: 1 }").unwrap_err();
        assert!(!e.to_string().contains("sekrit-value"));
        assert!(e.to_string().contains("bogus"));
    }

    #[test]
    fn model_header_values_never_show_in_debug_or_serialization() {
        // Failed before the fix: `ModelConfig` derived `Debug` over the plain map.
        let c = ProviderConfig::parse(
            "{ models: [ { id: 'm', headers: { 'x-tenant-key': 'model-hdr-secret' } } ] }",
        )
        .unwrap();
        let model = &c.models.as_ref().unwrap()[0];
        for shown in [
            format!("{c:?}"),
            format!("{model:?}"),
            serde_json::to_string(model).unwrap(),
        ] {
            assert!(!shown.contains("model-hdr-secret"), "{shown}");
            assert!(shown.contains("x-tenant-key"), "{shown}");
        }
        let headers = model.headers.as_ref().unwrap();
        assert_eq!(
            headers["x-tenant-key"], "model-hdr-secret",
            "the value is still sent"
        );
    }

    #[test]
    fn env_reference_is_recognised() {
        let c = ProviderConfig::parse("{ apiKey: 'env:MY_KEY' }").unwrap();
        assert_eq!(c.api_key, Some(ApiKeySetting::Env("MY_KEY".into())));
    }
}
