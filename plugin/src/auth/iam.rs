//! Bearer tokens minted from the AWS credential chain, cached and refreshed in the background.
//!
//! One [`IamTokens`] serves one region. Tokens are cached per credential identity (the access
//! key id). A token is refreshed hourly, and in any case 300 s before the earlier of its own
//! expiry and the signing credentials' expiry. Once a token exists no request waits: a due
//! refresh runs in the background while callers keep the current token. Mints are single-flight
//! (concurrent cold callers share one), and a failed refresh keeps serving the still-valid token
//! and retries with exponential backoff. The clock is injected, so all of this is testable
//! without sleeping.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};

use aws_credential_types::provider::{
    error::CredentialsError, ProvideCredentials, SharedCredentialsProvider,
};

use super::mint::{mint_token, MintedToken, DEFAULT_EXPIRES_IN};
use crate::{clock::SharedClock, secret::Secret};

/// Refresh cadence for a token that is otherwise still good.
pub const REFRESH_EVERY: Duration = Duration::from_secs(3600);
/// Refresh this long before the token or the credentials expire.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// First retry delay after a failed refresh; doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay after failed refreshes.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The shortest wait before a refresh when the signing credentials expire within
/// [`REFRESH_MARGIN`]: such credentials would otherwise schedule a refresh "now" after every
/// mint, and each request would mint again.
pub const MIN_REFRESH_GAP: Duration = Duration::from_secs(30);

/// `(expires_at, refresh_at)` of a token minted at `now`: it is usable until the earlier of its
/// own expiry and its credentials' expiry; it is refreshed hourly, and [`REFRESH_MARGIN`] before
/// that usable end, but never sooner than [`MIN_REFRESH_GAP`] (or half the remaining life, when
/// that is shorter) after the mint.
pub fn schedule(
    now: SystemTime,
    token_expiry: SystemTime,
    credentials_expiry: Option<SystemTime>,
) -> (SystemTime, SystemTime) {
    let expires_at = credentials_expiry.map_or(token_expiry, |c| c.min(token_expiry));
    let life = expires_at.duration_since(now).unwrap_or(Duration::ZERO);
    let wanted = (now + REFRESH_EVERY).min(expires_at.checked_sub(REFRESH_MARGIN).unwrap_or(now));
    let earliest = now + MIN_REFRESH_GAP.min(life / 2);
    (expires_at, wanted.max(earliest))
}

/// Why no IAM token is available; `reason()` is the skip reason of spec §2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IamError {
    /// The chain found no credentials at all.
    #[error("no AWS credentials found: {0}")]
    NoCredentials(String),
    /// Credentials exist but could not be loaded or used.
    #[error("AWS credentials error: {0}")]
    CredentialsError(String),
}

impl IamError {
    /// `no-credentials` or `credentials-error`.
    pub fn reason(&self) -> &'static str {
        match self {
            IamError::NoCredentials(_) => "no-credentials",
            IamError::CredentialsError(_) => "credentials-error",
        }
    }
}

/// A cached token with its schedule.
#[derive(Debug, Clone)]
pub struct CachedToken {
    /// The bearer token.
    pub token: Secret,
    /// Token expiry.
    pub expires_at: SystemTime,
    /// When a background refresh becomes due.
    pub refresh_at: SystemTime,
    /// Access key id of the credentials that signed it (not secret).
    pub identity: String,
}

#[derive(Default)]
struct State {
    /// Tokens by credential identity.
    by_identity: HashMap<String, CachedToken>,
    /// Identity of the newest token.
    current: Option<String>,
    /// Consecutive failed refreshes.
    failures: u32,
    /// No refresh attempt before this time (backoff).
    retry_not_before: Option<SystemTime>,
    /// A background refresh is running.
    refreshing: bool,
}

/// IAM-minted tokens for one region.
pub struct IamTokens {
    region: String,
    clock: SharedClock,
    credentials: SharedCredentialsProvider,
    expires_in: u64,
    state: Mutex<State>,
    mint_lock: tokio::sync::Mutex<()>,
    mints: AtomicU64,
}

impl std::fmt::Debug for IamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IamTokens")
            .field("region", &self.region)
            .field("mints", &self.mint_count())
            .finish_non_exhaustive()
    }
}

impl IamTokens {
    /// Tokens for `region` signed with credentials from `credentials`.
    pub fn new(
        region: &str,
        credentials: SharedCredentialsProvider,
        clock: SharedClock,
    ) -> Arc<Self> {
        Arc::new(IamTokens {
            region: region.to_string(),
            clock,
            credentials,
            expires_in: DEFAULT_EXPIRES_IN,
            state: Mutex::new(State::default()),
            mint_lock: tokio::sync::Mutex::new(()),
            mints: AtomicU64::new(0),
        })
    }

    /// How many tokens were minted so far (tests, metrics).
    pub fn mint_count(&self) -> u64 {
        self.mints.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn current_valid(&self, now: SystemTime) -> Option<CachedToken> {
        let state = self.lock();
        let id = state.current.as_ref()?;
        state
            .by_identity
            .get(id)
            .filter(|t| now < t.expires_at)
            .cloned()
    }

    /// The token to use now. Waits only when no valid token exists (cold start or expired);
    /// otherwise returns at once and, when a refresh is due, starts it in the background.
    pub async fn token(self: &Arc<Self>) -> Result<CachedToken, IamError> {
        let now = self.clock.now();
        if let Some(token) = self.current_valid(now) {
            if now >= token.refresh_at {
                self.spawn_refresh_if_due(now);
            }
            return Ok(token);
        }
        let _flight = self.mint_lock.lock().await;
        // Another caller may have minted while we waited for the lock.
        if let Some(token) = self.current_valid(self.clock.now()) {
            return Ok(token);
        }
        self.mint_now().await
    }

    fn spawn_refresh_if_due(self: &Arc<Self>, now: SystemTime) {
        {
            let mut state = self.lock();
            if state.refreshing || state.retry_not_before.is_some_and(|t| now < t) {
                return;
            }
            state.refreshing = true;
        }
        let this = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    this.refresh().await;
                });
            }
            Err(_) => self.lock().refreshing = false,
        }
    }

    /// Runs one refresh now (the background task's body; tests call it directly).
    pub async fn refresh(self: &Arc<Self>) {
        let result = {
            let _flight = self.mint_lock.lock().await;
            self.mint_now().await
        };
        let now = self.clock.now();
        let mut state = self.lock();
        state.refreshing = false;
        match result {
            Ok(_) => {
                state.failures = 0;
                state.retry_not_before = None;
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1 << state.failures.saturating_sub(1).min(16))
                    .min(MAX_BACKOFF);
                state.retry_not_before = Some(now + backoff);
                tracing::debug!(region = %self.region, reason = e.reason(), failures = state.failures,
                    retry_in_ms = backoff.as_millis() as u64, "token refresh failed; keeping the current token");
            }
        }
    }

    /// When the next refresh attempt may run (after backoff), if one is scheduled.
    pub fn retry_not_before(&self) -> Option<SystemTime> {
        self.lock().retry_not_before
    }

    async fn mint_now(&self) -> Result<CachedToken, IamError> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(classify)?;
        let now = self.clock.now();
        let MintedToken { token, expires_at } =
            mint_token(&credentials, &self.region, now, self.expires_in)
                .map_err(|e| IamError::CredentialsError(e.to_string()))?;
        self.mints.fetch_add(1, Ordering::SeqCst);
        let (expires_at, refresh_at) = schedule(now, expires_at, credentials.expiry());
        let identity = credentials.access_key_id().to_string();
        let cached = CachedToken {
            token,
            expires_at,
            refresh_at,
            identity: identity.clone(),
        };
        let mut state = self.lock();
        // Identities that rotated away keep nothing once their tokens expired.
        state.by_identity.retain(|_, t| now < t.expires_at);
        state.by_identity.insert(identity.clone(), cached.clone());
        state.current = Some(identity);
        tracing::debug!(region = %self.region, "minted a Bedrock bearer token from AWS credentials");
        Ok(cached)
    }

    /// Every cached token (for the hot-swap state blob).
    pub fn export(&self) -> Vec<CachedToken> {
        let state = self.lock();
        let mut all: Vec<CachedToken> = state.by_identity.values().cloned().collect();
        // The current token goes last so an import makes it current again.
        if let Some(cur) = &state.current {
            all.sort_by_key(|t| &t.identity == cur);
        }
        all
    }

    /// Adopts tokens exported by another instance (expired ones are ignored).
    pub fn import(&self, tokens: Vec<CachedToken>) {
        let now = self.clock.now();
        let mut state = self.lock();
        state.by_identity.retain(|_, t| now < t.expires_at);
        for t in tokens.into_iter().filter(|t| now < t.expires_at) {
            state.current = Some(t.identity.clone());
            state.by_identity.insert(t.identity.clone(), t);
        }
    }
}

pub(crate) fn classify(e: CredentialsError) -> IamError {
    let detail = crate::errors::error_chain(&e);
    match e {
        CredentialsError::CredentialsNotLoaded(_) => IamError::NoCredentials(detail),
        _ => IamError::CredentialsError(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use aws_credential_types::{provider::future, Credentials};
    use std::sync::atomic::AtomicUsize;

    /// Hands out credentials from a list (last one repeats), counting calls; optionally failing.
    #[derive(Debug)]
    struct Scripted {
        creds: Mutex<Vec<Result<Credentials, &'static str>>>,
        calls: AtomicUsize,
        delay: Duration,
    }

    impl ProvideCredentials for Scripted {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::new(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                let mut list = self.creds.lock().unwrap();
                let next = if list.len() > 1 {
                    list.remove(0)
                } else {
                    list[0].clone()
                };
                next.map_err(CredentialsError::provider_error)
            })
        }
    }

    fn creds(akid: &str, expiry: Option<SystemTime>) -> Credentials {
        Credentials::new(akid, "secret-key-value", None, expiry, "test")
    }

    fn setup(
        list: Vec<Result<Credentials, &'static str>>,
        delay_ms: u64,
    ) -> (Arc<IamTokens>, ManualClock, Arc<Scripted>) {
        let clock = ManualClock::at_unix(1_800_000_000);
        let scripted = Arc::new(Scripted {
            creds: Mutex::new(list),
            calls: AtomicUsize::new(0),
            delay: Duration::from_millis(delay_ms),
        });
        let provider = SharedCredentialsProvider::new(ScriptedRef(scripted.clone()));
        (
            IamTokens::new("us-east-1", provider, Arc::new(clock.clone())),
            clock,
            scripted,
        )
    }

    #[derive(Debug)]
    struct ScriptedRef(Arc<Scripted>);
    impl ProvideCredentials for ScriptedRef {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.0.provide_credentials()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hundred_concurrent_cold_callers_share_one_mint() {
        let (tokens, _clock, scripted) = setup(vec![Ok(creds("AKIDONE", None))], 50);
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let t = tokens.clone();
            tasks.push(tokio::spawn(async move {
                t.token().await.map(|c| c.token.expose().to_string())
            }));
        }
        let mut seen = std::collections::HashSet::new();
        for t in tasks {
            seen.insert(t.await.unwrap().unwrap());
        }
        assert_eq!(seen.len(), 1);
        assert_eq!(tokens.mint_count(), 1);
        assert_eq!(scripted.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refresh_schedule_hourly_and_before_credential_expiry() {
        let (tokens, clock, _) = setup(vec![Ok(creds("AKIDONE", None))], 0);
        let t = tokens.token().await.unwrap();
        assert_eq!(t.refresh_at, clock.now() + REFRESH_EVERY);
        assert_eq!(t.expires_at, clock.now() + Duration::from_secs(7200));

        // Credentials expiring in 20 minutes: refresh 5 minutes before that.
        let (tokens, clock, _) = setup(
            vec![Ok(creds(
                "AKIDTWO",
                Some(ManualClock::at_unix(1_800_001_200).now()),
            ))],
            0,
        );
        let t = tokens.token().await.unwrap();
        assert_eq!(t.refresh_at, clock.now() + Duration::from_secs(900));
    }

    #[tokio::test]
    async fn token_expiry_is_the_earlier_of_its_own_and_the_credentials() {
        // Failed before the fix: the cached (and reported) expiry was the token's 7200 s even
        // though the credentials that signed it expired after 1200 s.
        let cred_expiry = ManualClock::at_unix(1_800_001_200).now();
        let (tokens, clock, _) = setup(vec![Ok(creds("AKIDTWO", Some(cred_expiry)))], 0);
        let t = tokens.token().await.unwrap();
        assert_eq!(t.expires_at, cred_expiry);
        assert_eq!(t.refresh_at, clock.now() + Duration::from_secs(900));
        clock.set_unix(1_800_001_200);
        assert!(
            tokens.current_valid(clock.now()).is_none(),
            "never served past the credentials' expiry"
        );
    }

    #[tokio::test]
    async fn credentials_expiring_within_the_margin_do_not_mint_on_every_request() {
        // Failed before the fix: refresh_at was "now", so every request spawned a mint.
        let cred_expiry = ManualClock::at_unix(1_800_000_200).now();
        let (tokens, clock, _) = setup(vec![Ok(creds("AKIDSOON", Some(cred_expiry)))], 0);
        let first = tokens.token().await.unwrap();
        assert_eq!(first.expires_at, cred_expiry);
        assert_eq!(first.refresh_at, clock.now() + MIN_REFRESH_GAP);
        for _ in 0..100 {
            tokens.token().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(tokens.mint_count(), 1);
        clock.advance(MIN_REFRESH_GAP);
        tokens.token().await.unwrap();
        for _ in 0..100 {
            if tokens.mint_count() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(tokens.mint_count(), 2, "one refresh after the gap");
        for _ in 0..100 {
            tokens.token().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(tokens.mint_count(), 2);
    }

    #[test]
    fn schedule_edges() {
        let now = ManualClock::at_unix(1_800_000_000).now();
        let secs = Duration::from_secs;
        // No credential expiry: hourly, token's own expiry.
        assert_eq!(
            schedule(now, now + secs(7200), None),
            (now + secs(7200), now + secs(3600))
        );
        // Credentials expiring in 40 s: usable 40 s, refresh after half of it.
        assert_eq!(
            schedule(now, now + secs(7200), Some(now + secs(40))),
            (now + secs(40), now + secs(20))
        );
        // Already expired credentials: expiry now, refresh now.
        assert_eq!(
            schedule(now, now + secs(7200), Some(now - secs(5))),
            (now - secs(5), now)
        );
    }

    #[tokio::test]
    async fn an_import_drops_expired_tokens_and_keeps_valid_ones() {
        let (tokens, clock, _) = setup(vec![], 0);
        let token = |identity: &str, valid_for: u64| {
            let now = clock.now();
            CachedToken {
                token: Secret::new(format!("token-of-{identity}")),
                expires_at: now + Duration::from_secs(valid_for),
                refresh_at: now,
                identity: identity.into(),
            }
        };
        tokens.import(vec![token("AKIDA", 200), token("AKIDD", 5000)]);
        // AKIDA's token expires exactly now (expired), AKIDD's later; AKIDX's arrives expired.
        clock.advance(Duration::from_secs(200));
        tokens.import(vec![token("AKIDB", 7200), token("AKIDX", 0)]);
        let mut ids: Vec<String> = tokens.export().into_iter().map(|t| t.identity).collect();
        ids.sort();
        assert_eq!(ids, vec!["AKIDB".to_string(), "AKIDD".to_string()]);
    }

    #[tokio::test]
    async fn rotated_identities_are_evicted_once_expired() {
        let list = (0..5)
            .map(|i| Ok(creds(&format!("AKID{i}"), None)))
            .collect();
        let (tokens, clock, _) = setup(list, 0);
        for i in 0..5 {
            tokens.token().await.unwrap();
            // The mint at the previous token's exact expiry dropped that token.
            let ids: Vec<String> = tokens.export().into_iter().map(|t| t.identity).collect();
            assert_eq!(ids, vec![format!("AKID{i}")]);
            // Exactly at expiry the token is expired: the next call mints, and the old one goes.
            clock.advance(Duration::from_secs(7200));
        }
        tokens.token().await.unwrap();
        let ids: Vec<String> = tokens.export().into_iter().map(|t| t.identity).collect();
        assert_eq!(
            ids,
            vec!["AKID4".to_string()],
            "only the live identity is kept"
        );
    }

    #[tokio::test]
    async fn cached_token_is_served_without_minting_and_refresh_picks_new_credentials() {
        let (tokens, clock, scripted) = setup(
            vec![Ok(creds("AKIDONE", None)), Ok(creds("AKIDTWO", None))],
            0,
        );
        let first = tokens.token().await.unwrap();
        clock.advance(Duration::from_secs(1800));
        let again = tokens.token().await.unwrap();
        assert_eq!(again.token, first.token);
        assert_eq!(tokens.mint_count(), 1);

        clock.advance(Duration::from_secs(1801)); // past the hourly refresh, token still valid
        let served = tokens.token().await.unwrap();
        assert_eq!(
            served.token, first.token,
            "a due refresh never makes the caller wait"
        );
        // Let the background refresh run.
        for _ in 0..100 {
            if tokens.mint_count() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(tokens.mint_count(), 2);
        let fresh = tokens.token().await.unwrap();
        assert_eq!(fresh.identity, "AKIDTWO");
        assert_ne!(fresh.token, first.token);
        assert_eq!(scripted.calls.load(Ordering::SeqCst), 2);
        // The rotated-away identity keeps its token while it is valid; the current one is last.
        let ids: Vec<String> = tokens.export().into_iter().map(|t| t.identity).collect();
        assert_eq!(ids, vec!["AKIDONE".to_string(), "AKIDTWO".to_string()]);
        assert_eq!(
            format!("{tokens:?}"),
            "IamTokens { region: \"us-east-1\", mints: 2, .. }"
        );
    }

    #[tokio::test]
    async fn failed_refresh_keeps_valid_token_and_backs_off() {
        let (tokens, clock, _) = setup(
            vec![
                Ok(creds("AKIDONE", None)),
                Err("boom"),
                Err("boom"),
                Ok(creds("AKIDONE", None)),
            ],
            0,
        );
        let first = tokens.token().await.unwrap();
        clock.advance(Duration::from_secs(3601));
        tokens.refresh().await;
        assert_eq!(
            tokens.retry_not_before(),
            Some(clock.now() + Duration::from_secs(1))
        );
        assert_eq!(
            tokens.token().await.unwrap().token,
            first.token,
            "old token still served"
        );
        tokens.refresh().await;
        assert_eq!(
            tokens.retry_not_before(),
            Some(clock.now() + Duration::from_secs(2)),
            "backoff doubles"
        );
        tokens.refresh().await;
        assert_eq!(tokens.retry_not_before(), None);
        assert_eq!(tokens.mint_count(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_refreshes_honour_the_backoff() {
        let (tokens, clock, scripted) = setup(
            vec![
                Ok(creds("AKIDONE", None)),
                Err("boom"),
                Err("boom"),
                Ok(creds("AKIDTWO", None)),
            ],
            0,
        );
        let calls = || scripted.calls.load(Ordering::SeqCst);
        async fn wait_calls(tokens: &IamTokens, scripted: &Scripted, n: usize) {
            for _ in 0..2000 {
                if scripted.calls.load(Ordering::SeqCst) >= n && !tokens.lock().refreshing {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("expected {n} credential calls");
        }
        let first = tokens.token().await.unwrap();
        clock.advance(Duration::from_secs(3601)); // refresh due, token still valid
        assert_eq!(tokens.token().await.unwrap().token, first.token);
        wait_calls(&tokens, &scripted, 2).await; // the background refresh ran and failed
        assert_eq!(tokens.retry_not_before(), Some(clock.now() + FIRST_BACKOFF));
        for _ in 0..50 {
            assert_eq!(tokens.token().await.unwrap().token, first.token);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(calls(), 2, "no refresh before the backoff passed");
        clock.advance(FIRST_BACKOFF);
        tokens.token().await.unwrap();
        wait_calls(&tokens, &scripted, 3).await; // second failure: the backoff doubles
        assert_eq!(
            tokens.retry_not_before(),
            Some(clock.now() + FIRST_BACKOFF * 2)
        );
        clock.advance(FIRST_BACKOFF);
        tokens.token().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(calls(), 3, "still inside the doubled backoff");
        clock.advance(FIRST_BACKOFF);
        tokens.token().await.unwrap();
        wait_calls(&tokens, &scripted, 4).await;
        assert_eq!(
            tokens.retry_not_before(),
            None,
            "a success clears the backoff"
        );
        assert_eq!(tokens.token().await.unwrap().identity, "AKIDTWO");
    }

    #[tokio::test]
    async fn expired_token_is_never_served() {
        let (tokens, clock, _) = setup(vec![Ok(creds("AKIDONE", None)), Err("down")], 0);
        tokens.token().await.unwrap();
        clock.advance(Duration::from_secs(7200));
        let e = tokens.token().await.unwrap_err();
        assert_eq!(e.reason(), "credentials-error");
    }

    #[tokio::test]
    async fn no_credentials_reason() {
        let clock = ManualClock::at_unix(1_800_000_000);
        #[derive(Debug)]
        struct Nothing;
        impl ProvideCredentials for Nothing {
            fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
                    "no providers in chain provided credentials",
                )))
            }
        }
        let tokens = IamTokens::new(
            "us-east-1",
            SharedCredentialsProvider::new(Nothing),
            Arc::new(clock),
        );
        assert_eq!(tokens.token().await.unwrap_err().reason(), "no-credentials");
    }
}
