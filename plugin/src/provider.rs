//! One provider instance: its config, lanes (runtimes and HTTP clients), auth, discovery cache
//! and streams.
//! This is the safe Rust core the ABI layers wrap.

use std::{sync::Arc, time::Duration};

use aws_credential_types::provider::SharedCredentialsProvider;
use serde::Serialize;

use crate::{
    auth::{Auth, Authorization, Authorized, EnvReader, ResolvedToken, TokenSource, IAM_MARKER},
    catalog::{self, ModelRow, ProviderEntry},
    clock::{SharedClock, SystemClock},
    config::{
        ConfigError, PluginConfig, ProviderConfig, API_ANTHROPIC_MESSAGES, API_OPENAI_COMPLETIONS,
        API_OPENAI_RESPONSES,
    },
    discovery::{self, DiscoveryCache, Outcome},
    errors::{ErrorKind, StreamError},
    lanes::Lanes,
    region::{self, RegionChoice},
    request::{self, CanonicalRequest},
    routes::Endpoints,
    state::{Adopted, DiscoveryEntry, LearnedEntry, StateBlob, TokenEntry, STATE_FORMAT},
    stream::{
        recover::{Recover, Recovery, Refusal},
        Route, StreamHandle, Timeouts, UpstreamRequest,
    },
};

/// The AWS SDKs' per-service endpoint variable for Mantle: replaces the derived origin when
/// the config has no `baseUrl`.
pub const ENDPOINT_URL_ENV: &str = "AWS_ENDPOINT_URL_BEDROCK_MANTLE";

/// Connect timeout for every upstream request.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Options a host (or a test) may inject; defaults are the process environment, the system
/// clock and the AWS default credential chain.
#[derive(Clone)]
pub struct ProviderOptions {
    /// Environment reader.
    pub env: EnvReader,
    /// Clock.
    pub clock: SharedClock,
    /// Credentials provider overriding the AWS default chain.
    pub credentials: Option<SharedCredentialsProvider>,
    /// Stream timeouts.
    pub timeouts: Timeouts,
    /// The instance's lanes (threads, each with a single-threaded runtime); `None`: the plugin
    /// config's `runtime.workerThreads`, else the machine's cores.
    pub worker_threads: Option<usize>,
    /// Discovery limits (deadline, idle per chunk, body cap).
    pub discovery_limits: discovery::Limits,
}

impl Default for ProviderOptions {
    fn default() -> Self {
        ProviderOptions {
            env: crate::auth::process_env(),
            clock: Arc::new(SystemClock),
            credentials: None,
            timeouts: Timeouts::default(),
            worker_threads: None,
            discovery_limits: discovery::Limits::default(),
        }
    }
}

/// Why a provider could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Bad config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Runtime or HTTP client could not start.
    #[error("cannot start the provider: {0}")]
    Startup(String),
}

/// The catalog result: the outcome, and the provider entry when there is one.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogResult {
    /// What happened.
    pub outcome: Outcome,
    /// The merged provider, or `None` when skipped with nothing to serve.
    pub provider: Option<ProviderEntry>,
}

/// The async core shared by the runtime tasks.
pub struct Core {
    plugin: PluginConfig,
    config: ProviderConfig,
    region: RegionChoice,
    endpoints: Endpoints,
    /// Cache key part: the region, or the base URL when one is configured.
    endpoint_key: String,
    /// The endpoint came from `baseUrl` or `AWS_ENDPOINT_URL_BEDROCK_MANTLE`, not the region.
    endpoint_configured: bool,
    auth: Auth,
    http: reqwest::Client,
    clock: SharedClock,
    cache: DiscoveryCache,
    timeouts: Timeouts,
    discovery_limits: discovery::Limits,
    /// Per model: the route and the dropped parameters Mantle's refusals taught (spec §7).
    learned: std::sync::Mutex<std::collections::HashMap<String, Learned>>,
}

/// What Mantle's refusals taught about one model.
#[derive(Debug, Clone, Default)]
struct Learned {
    /// The surface that worked after a route refusal.
    route: Option<String>,
    /// Top-level parameters the model refused.
    dropped: Vec<String>,
}

/// Rebuilds a refused request (one per stream, see [`crate::stream::recover`]).
struct Recoverer {
    core: std::sync::Weak<Core>,
    request: CanonicalRequest,
    model: ModelRow,
    api: String,
}

impl Recover for Recoverer {
    fn recover(&self, refusal: &Refusal, refused: &UpstreamRequest) -> Option<UpstreamRequest> {
        let core = self.core.upgrade()?;
        let id = self.request.model.as_str();
        match refusal {
            Refusal::WrongRoute => {
                let other = match self.api.as_str() {
                    API_OPENAI_COMPLETIONS => API_OPENAI_RESPONSES,
                    API_OPENAI_RESPONSES => API_OPENAI_COMPLETIONS,
                    _ => return None,
                };
                core.learn(
                    id,
                    |l| l.route.replace(other.to_string()).as_deref() != Some(other),
                    other,
                );
                let mut next = core.build(&self.request, &self.model, other, refused.auth.clone());
                next.recovery = refused.recovery.clone();
                for param in core.learned_for(id).dropped {
                    if let Some(body) = next.body.as_object_mut() {
                        body.remove(&param);
                    }
                }
                Some(next)
            }
            Refusal::Parameter(name) => {
                let mut next = refused.clone();
                next.body.as_object_mut()?.remove(name)?;
                core.learn(
                    id,
                    |l| {
                        let new = !l.dropped.contains(name);
                        if new {
                            l.dropped.push(name.clone());
                        }
                        new
                    },
                    &format!("drop {name}"),
                );
                Some(next)
            }
        }
    }
}

/// A provider instance with its own lanes (threads, runtimes and HTTP clients).
pub struct Provider {
    lanes: Lanes,
    core: Arc<Core>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("endpoint", &self.core.endpoint_key)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// Creates a provider from the plugin and provider config texts (JSON5; empty = defaults).
    pub fn new(
        plugin_config: &str,
        provider_config: &str,
        options: ProviderOptions,
    ) -> Result<Self, CreateError> {
        let plugin = PluginConfig::parse(plugin_config)?;
        let config = ProviderConfig::parse(provider_config)?;
        let env = options.env.clone();
        let extra_regions = config.extra_regions.clone().unwrap_or_default();
        let region = region::resolve(config.region.as_deref(), &extra_regions, |k| env(k));
        let region_name = match &region {
            RegionChoice::Supported(r, _) | RegionChoice::Unsupported(r, _) => r.clone(),
            RegionChoice::Malformed(r, source) if *source != region::RegionSource::Config => {
                // A malformed AWS_REGION is refused like a malformed config value, naming its source.
                return Err(ConfigError {
                    context: "environment",
                    message: format!("{source:?} region {r:?} is not a region name (expected something like \"us-east-1\")"),
                }
                .into());
            }
            RegionChoice::Malformed(r, _) => r.clone(),
        };
        // A configured `baseUrl` wins; else the AWS SDKs' per-service endpoint variable; else
        // the origin derived from the region (spec §2b). Either URL is used exactly as given.
        let endpoint_url = match &config.base_url {
            Some(url) => Some(url.clone()),
            None => env(ENDPOINT_URL_ENV)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .map(|url| {
                    crate::routes::validate_base_url(&url)
                        .map(|()| url)
                        .map_err(|m| ConfigError {
                            context: "environment",
                            message: format!("{ENDPOINT_URL_ENV}: {m}"),
                        })
                })
                .transpose()?,
        };
        let endpoints = Endpoints::new(endpoint_url.as_deref(), &region_name);
        let endpoint_key = match &endpoint_url {
            Some(_) => endpoints.openai_base.clone(),
            None => region_name.clone(),
        };
        // The system's CA roots load on a short-lived thread of their own, not here (tls.rs);
        // only a provider that may speak TLS loads them before its first handshake.
        let verifier = crate::tls::platform_verifier();
        if endpoints.may_use_tls() {
            crate::tls::warm_in_background(&verifier);
        }
        let tls = crate::tls::client_config(verifier)
            .map_err(|e| CreateError::Startup(format!("TLS config: {e}")))?;
        let make_client = move || {
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls.clone())
                .user_agent(crate::user_agent())
                .connect_timeout(CONNECT_TIMEOUT)
                .pool_idle_timeout(Duration::from_secs(60))
                .build()
                .map_err(|e| format!("HTTP client: {e}"))
        };
        let http = make_client().map_err(CreateError::Startup)?;
        // Each lane pays the wake-ups of waiting pulls when it goes idle (stream/wake.rs).
        let lanes = Lanes::start(
            options
                .worker_threads
                .unwrap_or_else(|| plugin.worker_threads())
                .max(1),
            http.clone(),
            Box::new(make_client),
        )
        .map_err(|e| CreateError::Startup(format!("runtime: {e}")))?;
        let auth = Auth::new(
            config.auth_mode(),
            config.api_key.clone(),
            &region_name,
            options.env,
            options.clock.clone(),
            options.credentials,
        );
        let core = Core {
            plugin,
            config,
            region,
            endpoints,
            endpoint_key,
            endpoint_configured: endpoint_url.is_some(),
            auth,
            http,
            clock: options.clock,
            cache: DiscoveryCache::default(),
            timeouts: options.timeouts,
            discovery_limits: options.discovery_limits,
            learned: Default::default(),
        };
        Ok(Provider {
            lanes,
            core: Arc::new(core),
        })
    }

    /// Runs `fut` in this provider's control lane and waits for it on the calling thread. From
    /// a plain thread the calling thread polls it (`Handle::block_on`: the lane's own thread
    /// drives its timers and sockets); from inside a tokio runtime (a Rust gateway calling an
    /// entry point from an async task), where `block_on` would panic, the future is spawned on
    /// the lane and the thread waits on a channel. A panic in `fut` resumes on the calling
    /// thread, where the ABI guard turns it into an `Internal` error.
    fn run_blocking<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.lanes.control().block_on(fut);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.lanes.control().spawn(async move {
            let result =
                futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(fut)).await;
            let _ = tx.send(result);
        });
        match rx.recv() {
            Ok(Ok(value)) => value,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!("the provider runtime dropped a blocking call (shutting down)"),
        }
    }

    /// The async core.
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The control lane's runtime handle (discovery, token refresh, blocking calls).
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.lanes.control().clone()
    }

    /// Streams on each lane now.
    pub fn lane_streams(&self) -> Vec<usize> {
        self.lanes.streams()
    }

    /// Discovery + merge (blocking the calling thread; call from a host thread).
    pub fn catalog(&self) -> CatalogResult {
        let core = self.core.clone();
        self.run_blocking(async move { core.catalog().await })
    }

    /// The bearer token the provider would use now.
    pub fn bearer_token(&self) -> Result<ResolvedToken, crate::auth::AuthError> {
        let core = self.core.clone();
        self.run_blocking(async move { core.auth.resolve().await })
    }

    /// The hot-swap state blob (JSON; contains bearer tokens, never log it): the discovery
    /// cache and the IAM token cache.
    pub fn export_state(&self) -> String {
        let core = &self.core;
        StateBlob {
            format: STATE_FORMAT,
            region: core.auth.region().to_string(),
            discovery: core
                .cache
                .export()
                .into_iter()
                .map(|(endpoint, identity, cached)| DiscoveryEntry {
                    endpoint,
                    identity,
                    cached,
                })
                .collect(),
            tokens: core
                .auth
                .export_tokens()
                .into_iter()
                .map(TokenEntry::from_cached)
                .collect(),
            learned: core
                .learned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(model, l)| LearnedEntry {
                    model: model.clone(),
                    route: l.route.clone(),
                    dropped: l.dropped.clone(),
                })
                .collect(),
        }
        .to_json()
    }

    /// Adopts a state blob exported by another instance (typically the previous version of
    /// the plugin). Tokens minted for another region are skipped; discovery entries are keyed
    /// by endpoint and credential identity, so they never leak across credentials.
    pub fn import_state(&self, blob: &str) -> Result<Adopted, String> {
        let blob = StateBlob::parse(blob)?;
        let core = self.core.clone();
        let discovery_entries = blob.discovery.len();
        core.cache.import(
            blob.discovery
                .into_iter()
                .map(|d| (d.endpoint, d.identity, d.cached))
                .collect(),
        );
        let tokens: Vec<_> = if blob.region == core.auth.region() {
            blob.tokens
                .into_iter()
                .map(TokenEntry::into_cached)
                .collect()
        } else {
            Vec::new()
        };
        let learned = blob.learned.len();
        {
            let mut all = core.learned.lock().unwrap_or_else(|p| p.into_inner());
            for entry in blob.learned {
                let known = [
                    "openai-completions",
                    "openai-responses",
                    "anthropic-messages",
                ];
                let mine = all.entry(entry.model).or_default();
                if let Some(route) = entry.route.filter(|r| known.contains(&r.as_str())) {
                    mine.route = Some(route);
                }
                for param in entry.dropped {
                    if !mine.dropped.contains(&param) {
                        mine.dropped.push(param);
                    }
                }
            }
        }
        let adopted = Adopted {
            discovery_entries,
            tokens: tokens.len(),
            learned,
        };
        self.run_blocking(async move { core.auth.import_tokens(tokens).await });
        tracing::debug!(
            discovery_entries = adopted.discovery_entries,
            tokens = adopted.tokens,
            "adopted state from another instance"
        );
        Ok(adopted)
    }

    /// Starts a stream for a canonical request. Request errors are returned at once; upstream
    /// failures arrive as the stream's terminal error event.
    pub fn start_stream(&self, request_json: &str) -> Result<StreamHandle, String> {
        let request = CanonicalRequest::parse(request_json)?;
        let event_json = request.event_json;
        let core = self.core.clone();
        let prepared = self.run_blocking(async move { core.prepare(&request).await });
        let (lane, client) = self.lanes.pick();
        let handle = match prepared {
            Ok(upstream) => StreamHandle::start(lane, client, upstream),
            Err(e) => StreamHandle::failed(lane, e),
        };
        Ok(handle.with_event_json(event_json))
    }
}

/// The longest a provider close waits for its lane threads to exit.
const RUNTIME_SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Drop for Provider {
    fn drop(&mut self) {
        // Tasks are dropped either way. From a plain host thread, wait (bounded) for the lane
        // threads to exit, so a closed provider leaves no thread behind; inside a runtime,
        // blocking is not allowed, so let them exit in the background.
        let wait = match tokio::runtime::Handle::try_current() {
            Ok(_) => None,
            Err(_) => Some(RUNTIME_SHUTDOWN_WAIT),
        };
        self.lanes.stop(wait);
    }
}

impl Core {
    fn token_marker(&self, source: Option<&TokenSource>) -> String {
        match source {
            Some(s) => s.catalog_api_key(),
            None => IAM_MARKER.to_string(),
        }
    }

    /// The provider-level `headers` of the config, in order.
    fn provider_headers(&self) -> Vec<(String, String)> {
        self.config
            .headers
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn user_models(&self) -> Option<&Vec<crate::config::ModelConfig>> {
        self.config.models.as_ref().filter(|m| !m.is_empty())
    }

    fn entry(&self, rows: Vec<ModelRow>, source: Option<&TokenSource>) -> ProviderEntry {
        let implicit = catalog::implicit_provider(
            &self.endpoints.openai_base,
            self.token_marker(source),
            rows,
        );
        let mut entry = catalog::merge(implicit, &self.config, self.clock.now());
        // Every row shows the surface it is served on (spec §7): its own, else the provider's.
        for row in &mut entry.models {
            if row.api.is_none() {
                row.api = Some(entry.api.clone());
            }
        }
        entry
    }

    /// Manual models only (discovery skipped): a provider when the user listed models.
    fn manual_only(&self, outcome: Outcome) -> CatalogResult {
        let provider = self.user_models().map(|_| {
            self.entry(
                Vec::new(),
                self.auth.explicit_token().as_ref().map(|t| &t.source),
            )
        });
        CatalogResult { outcome, provider }
    }

    /// Runs discovery (or serves the cache) and merges with the user config.
    pub async fn catalog(&self) -> CatalogResult {
        if !self.plugin.discovery.enabled {
            return self.manual_only(Outcome::skipped("disabled", None));
        }
        match &self.region {
            RegionChoice::Supported(..) => {}
            RegionChoice::Unsupported(r, _) | RegionChoice::Malformed(r, _)
                if !self.endpoint_configured =>
            {
                return self.manual_only(Outcome::skipped(
                    "unsupported-region",
                    Some(format!("Mantle is not served in {r}")),
                ));
            }
            _ => {}
        }
        let token = match self.auth.authorize().await {
            Ok(t) => t,
            Err(e) => return self.manual_only(Outcome::skipped(e.reason(), Some(e.to_string()))),
        };
        let now = self.clock.now();
        let (rows, outcome) = if let Some(rows) =
            self.cache.fresh(&self.endpoint_key, &token.identity, now)
        {
            (
                rows,
                Outcome::Ready {
                    source: "cache".into(),
                },
            )
        } else {
            match discovery::fetch_ids(
                &self.http,
                &self.endpoints.models_url(),
                &token.authorization,
                &self.provider_headers(),
                self.discovery_limits,
            )
            .await
            {
                Ok(ids) => {
                    let rows = catalog::build_catalog(&ids, self.clock.now());
                    self.cache.store(
                        &self.endpoint_key,
                        &token.identity,
                        rows.clone(),
                        self.clock.now(),
                    );
                    (
                        rows,
                        Outcome::Ready {
                            source: "discovery".into(),
                        },
                    )
                }
                Err(e) => {
                    tracing::debug!(endpoint = %self.endpoint_key, error = %e, "Mantle discovery failed");
                    match self.cache.last_good(&self.endpoint_key, &token.identity) {
                        Some(rows) if !rows.is_empty() => (
                            rows,
                            Outcome::Ready {
                                source: "stale-cache".into(),
                            },
                        ),
                        _ => return self.failed_catalog(e.outcome(), &token),
                    }
                }
            }
        };
        if rows.is_empty() && self.user_models().is_none() {
            return CatalogResult {
                outcome: Outcome::skipped("empty", Some("discovery returned no models".into())),
                provider: None,
            };
        }
        let outcome = if rows.is_empty() {
            Outcome::Ready {
                source: "config".into(),
            }
        } else {
            outcome
        };
        CatalogResult {
            outcome,
            provider: Some(self.entry(rows, Some(&token.source))),
        }
    }

    fn failed_catalog(&self, outcome: Outcome, token: &Authorized) -> CatalogResult {
        let provider = self
            .user_models()
            .map(|_| self.entry(Vec::new(), Some(&token.source)));
        CatalogResult { outcome, provider }
    }

    /// The bearer token (async).
    pub async fn bearer_token(&self) -> Result<ResolvedToken, crate::auth::AuthError> {
        self.auth.resolve().await
    }

    /// The row describing a model id: user config, cached catalog, curated or defaults.
    fn model_row(&self, id: &str) -> ModelRow {
        let now = self.clock.now();
        if let Some(models) = self.user_models() {
            if let Some(m) = models.iter().find(|m| m.id == id) {
                return catalog::user_row(m, now);
            }
        }
        for (_, _, cached) in self.cache.export() {
            if let Some(row) = cached.rows.into_iter().find(|r| r.id == id) {
                return row;
            }
        }
        catalog::claude_rows(now)
            .into_iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| catalog::discovered_row(id))
    }

    /// Headers of the OpenAI-shaped routes: `accept: text/event-stream`, then the provider's,
    /// the model's and the caller's (later wins).
    fn openai_headers(&self, model: &ModelRow, req: &CanonicalRequest) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        request::set_header(&mut headers, "accept".into(), "text/event-stream".into());
        let later = self
            .config
            .headers
            .iter()
            .flatten()
            .chain(model.headers.iter().flatten());
        for (k, v) in later
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(req.headers.iter().cloned())
        {
            request::set_header(&mut headers, k, v);
        }
        headers
    }

    /// Builds the upstream request: route, URL, headers, body, token.
    pub async fn prepare(
        self: &Arc<Self>,
        req: &CanonicalRequest,
    ) -> Result<UpstreamRequest, StreamError> {
        let auth = self
            .auth
            .authorize()
            .await
            .map_err(|e| StreamError::new(ErrorKind::Auth, None, e.to_string()))?;
        let model = self.model_row(&req.model);
        let learned = self.learned_for(&req.model);
        let api = learned
            .route
            .clone()
            .or_else(|| model.api.clone())
            .or_else(|| self.config.api.clone())
            .unwrap_or_else(|| API_OPENAI_COMPLETIONS.into());
        let mut upstream = self.build(req, &model, &api, auth.authorization);
        for param in &learned.dropped {
            if let Some(body) = upstream.body.as_object_mut() {
                body.remove(param);
            }
        }
        upstream.recovery = Some(Recovery(Arc::new(Recoverer {
            core: Arc::downgrade(self),
            request: req.clone(),
            model,
            api,
        })));
        Ok(upstream)
    }

    /// The upstream request for `req` on surface `api`: route, URL, headers, body.
    fn build(
        &self,
        req: &CanonicalRequest,
        model: &ModelRow,
        api: &str,
        auth: Authorization,
    ) -> UpstreamRequest {
        let (route, url, body, mut headers) = match api {
            API_ANTHROPIC_MESSAGES => {
                let mut model_headers = std::collections::BTreeMap::new();
                for (k, v) in self.config.headers.iter().flatten() {
                    model_headers.insert(k.clone(), v.clone());
                }
                for (k, v) in model.headers.iter().flatten() {
                    model_headers.insert(k.clone(), v.clone());
                }
                (
                    Route::Anthropic,
                    self.endpoints.anthropic_messages_url(),
                    request::anthropic_body(req, model),
                    request::anthropic_headers(Some(&model_headers), &req.headers),
                )
            }
            API_OPENAI_RESPONSES => (
                Route::Responses,
                self.endpoints.responses_url(&req.model),
                request::responses::responses_body(req, model),
                self.openai_headers(model, req),
            ),
            _ => (
                Route::OpenAi,
                self.endpoints.chat_completions_url(),
                request::openai_body(req, model),
                self.openai_headers(model, req),
            ),
        };
        // Nobody may override the authorization or send a token as an Anthropic API key.
        headers.retain(|(k, _)| {
            !k.eq_ignore_ascii_case("authorization") && !k.eq_ignore_ascii_case("x-api-key")
        });
        UpstreamRequest {
            route,
            url,
            headers,
            body,
            auth,
            include_raw: req.include_raw,
            max_retry_delay: Duration::from_millis(req.max_retry_delay_ms),
            timeouts: Timeouts {
                first_byte: req
                    .first_byte_timeout_ms
                    .map(Duration::from_millis)
                    .unwrap_or(self.timeouts.first_byte),
                idle: req
                    .idle_timeout_ms
                    .map(Duration::from_millis)
                    .unwrap_or(self.timeouts.idle),
            },
            recovery: None,
        }
    }

    /// What refusals taught this provider about `model`.
    fn learned_for(&self, model: &str) -> Learned {
        self.learned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(model)
            .cloned()
            .unwrap_or_default()
    }

    /// Remembers a route or a dropped parameter for `model` (logged once, at info).
    fn learn(&self, model: &str, change: impl FnOnce(&mut Learned) -> bool, what: &str) {
        let mut all = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        if change(all.entry(model.to_string()).or_default()) {
            tracing::info!(
                model,
                change = what,
                "Mantle refused a request; remembering for this model"
            );
        }
    }

    /// The discovery cache (state handover).
    pub fn discovery_cache(&self) -> &DiscoveryCache {
        &self.cache
    }
}
