//! `auth: "aws-sigv4"` (spec §2b): every request is signed with SigV4 in the `Authorization`
//! header, service `bedrock-mantle`, the provider's region, over the exact body bytes sent. No
//! bearer token exists in this mode.
//!
//! [`SigningCredentials`] caches the credentials from the chain and refreshes them as they
//! rotate: hourly, and 300 s before their own expiry (the same schedule as minted tokens, see
//! [`super::iam::schedule`]), one fetch at a time. A failed refresh keeps the current
//! credentials while they are valid and retries no sooner than 30 s later.
//! [`sign_headers`] signs one request with the credentials in hand.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, SystemTime},
};

use aws_credential_types::{
    provider::{ProvideCredentials, SharedCredentialsProvider},
    Credentials,
};
use aws_sigv4::{
    http_request::{sign, SignableBody, SignableRequest, SigningSettings},
    sign::v4,
};
use aws_smithy_runtime_api::client::identity::Identity;

use super::iam::{classify, schedule, IamError, MIN_REFRESH_GAP};
use crate::clock::SharedClock;

/// Mantle's SigV4 service name (`bedrock` is refused by Mantle).
pub const SERVICE: &str = "bedrock-mantle";

/// How far ahead credentials without an expiry count as valid (they are re-read hourly).
const NO_EXPIRY_HORIZON: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

#[derive(Debug, Clone)]
struct Cached {
    credentials: Credentials,
    /// When the credentials stop being usable (`None`: they do not expire).
    expires_at: Option<SystemTime>,
    /// When the next refresh is due.
    refresh_at: SystemTime,
}

impl Cached {
    fn valid_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }
}

/// Credentials from the chain, cached for signing and refreshed as they rotate.
pub struct SigningCredentials {
    provider: SharedCredentialsProvider,
    clock: SharedClock,
    cached: Mutex<Option<Cached>>,
    flight: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for SigningCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCredentials")
            .field("fetches", &self.fetch_count())
            .finish_non_exhaustive()
    }
}

impl SigningCredentials {
    /// Credentials from `provider` (the default chain, or what a host or test injects).
    pub fn new(provider: SharedCredentialsProvider, clock: SharedClock) -> Self {
        SigningCredentials {
            provider,
            clock,
            cached: Mutex::new(None),
            flight: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        }
    }

    /// How many times the chain was asked (tests, metrics).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    fn current(&self) -> Option<Cached> {
        self.cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The credentials to sign with now: the cached ones while no refresh is due, else fresh
    /// ones from the chain (one fetch at a time; concurrent callers share it).
    pub async fn get(&self) -> Result<Credentials, IamError> {
        let fresh = |c: &Cached, now| c.valid_at(now) && now < c.refresh_at;
        if let Some(c) = self.current().filter(|c| fresh(c, self.clock.now())) {
            return Ok(c.credentials);
        }
        let _flight = self.flight.lock().await;
        let now = self.clock.now();
        let current = self.current();
        if let Some(c) = current.as_ref().filter(|c| fresh(c, now)) {
            return Ok(c.credentials.clone());
        }
        self.fetches.fetch_add(1, Ordering::SeqCst);
        match self.provider.provide_credentials().await {
            Ok(credentials) => {
                let expiry = credentials.expiry();
                let (usable_until, refresh_at) = schedule(now, now + NO_EXPIRY_HORIZON, expiry);
                *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(Cached {
                    credentials: credentials.clone(),
                    expires_at: expiry.map(|_| usable_until),
                    refresh_at,
                });
                tracing::debug!("loaded AWS credentials for SigV4 signing");
                Ok(credentials)
            }
            Err(e) => {
                let e = classify(e);
                match current.filter(|c| c.valid_at(now)) {
                    Some(mut c) => {
                        tracing::debug!(
                            reason = e.reason(),
                            "credentials refresh failed; signing with the current ones"
                        );
                        c.refresh_at = now + MIN_REFRESH_GAP;
                        let credentials = c.credentials.clone();
                        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
                        Ok(credentials)
                    }
                    None => Err(e),
                }
            }
        }
    }
}

/// The headers that sign one request: `authorization`, `x-amz-date` and, with a session token,
/// `x-amz-security-token`. Signed: `host` (from `url`), `content-type` when given, and those two
/// `x-amz-*` headers, so that a proxy that adds or rewrites other headers does not break the
/// signature. `body` must be the exact bytes sent.
pub fn sign_headers(
    credentials: &Credentials,
    region: &str,
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: &[u8],
    now: SystemTime,
) -> Result<Vec<(&'static str, String)>, String> {
    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("SigV4 signing failed: {e}"))?
        .into();
    let signed_headers = content_type.map(|v| ("content-type", v));
    let request = SignableRequest::new(
        method,
        url,
        signed_headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("SigV4 signing failed: {e}"))?;
    // aws-sigv4 logs the canonical request (session token included) at TRACE: sign with no
    // subscriber on this thread. Signing is synchronous.
    let signed =
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            sign(request, &params)
        })
        .map_err(|e| format!("SigV4 signing failed: {e}"))?;
    let (instructions, _signature) = signed.into_parts();
    let (headers, _params) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| (h.name(), h.value().to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use aws_credential_types::provider::{error::CredentialsError, future};
    use std::sync::Arc;

    /// Hands out credentials from a list (the last repeats); `Err` entries fail.
    #[derive(Debug)]
    struct Scripted(Mutex<Vec<Result<Credentials, &'static str>>>);

    impl ProvideCredentials for Scripted {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let mut list = self.0.lock().unwrap();
            let next = if list.len() > 1 {
                list.remove(0)
            } else {
                list[0].clone()
            };
            future::ProvideCredentials::ready(next.map_err(CredentialsError::provider_error))
        }
    }

    fn setup(list: Vec<Result<Credentials, &'static str>>) -> (SigningCredentials, ManualClock) {
        let clock = ManualClock::at_unix(1_800_000_000);
        let provider = SharedCredentialsProvider::new(Scripted(Mutex::new(list)));
        (
            SigningCredentials::new(provider, Arc::new(clock.clone())),
            clock,
        )
    }

    fn creds(akid: &str, expiry: Option<SystemTime>) -> Credentials {
        Credentials::new(akid, "secret", Some("session".into()), expiry, "test")
    }

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn rotating_credentials_are_refreshed_before_they_expire() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (signing, clock) = setup(vec![
            Ok(creds("AKIDA", Some(start + Duration::from_secs(900)))),
            Ok(creds("AKIDB", Some(start + Duration::from_secs(7200)))),
        ]);
        block_on(async {
            assert_eq!(signing.get().await.unwrap().access_key_id(), "AKIDA");
            assert_eq!(signing.get().await.unwrap().access_key_id(), "AKIDA");
            assert_eq!(signing.fetch_count(), 1, "cached while no refresh is due");
            // 300 s before A expires a refresh is due: B is fetched.
            clock.advance(Duration::from_secs(600));
            assert_eq!(signing.get().await.unwrap().access_key_id(), "AKIDB");
            assert_eq!(signing.fetch_count(), 2);
        });
    }

    #[test]
    fn credentials_without_expiry_are_reread_hourly() {
        let (signing, clock) = setup(vec![Ok(creds("AKIDA", None)), Ok(creds("AKIDB", None))]);
        block_on(async {
            assert_eq!(signing.get().await.unwrap().access_key_id(), "AKIDA");
            assert_eq!(
                format!("{signing:?}"),
                "SigningCredentials { fetches: 1, .. }",
                "no key in Debug"
            );
            clock.advance(Duration::from_secs(3599));
            assert_eq!(signing.get().await.unwrap().access_key_id(), "AKIDA");
            clock.advance(Duration::from_secs(1));
            assert_eq!(signing.get().await.unwrap().access_key_id(), "AKIDB");
        });
    }

    #[test]
    fn a_failed_refresh_keeps_valid_credentials_and_waits_before_retrying() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (signing, clock) = setup(vec![
            Ok(creds("AKIDA", Some(start + Duration::from_secs(900)))),
            Err("endpoint down"),
            Ok(creds("AKIDB", None)),
        ]);
        block_on(async {
            signing.get().await.unwrap();
            clock.advance(Duration::from_secs(700));
            assert_eq!(signing.get().await.unwrap().access_key_id(), "AKIDA");
            assert_eq!(signing.fetch_count(), 2);
            clock.advance(MIN_REFRESH_GAP - Duration::from_secs(1));
            assert_eq!(signing.get().await.unwrap().access_key_id(), "AKIDA");
            assert_eq!(signing.fetch_count(), 2, "no retry inside the gap");
            clock.advance(Duration::from_secs(1));
            assert_eq!(signing.get().await.unwrap().access_key_id(), "AKIDB");
        });
    }

    #[test]
    fn expired_credentials_and_a_failing_chain_are_an_error() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let (signing, clock) = setup(vec![
            Ok(creds("AKIDA", Some(start + Duration::from_secs(900)))),
            Err("endpoint down"),
        ]);
        block_on(async {
            signing.get().await.unwrap();
            clock.advance(Duration::from_secs(900));
            let e = signing.get().await.unwrap_err();
            assert_eq!(e.reason(), "credentials-error");
            assert!(e.to_string().contains("endpoint down"), "{e}");
        });
    }

    #[test]
    fn signature_covers_host_content_type_date_and_token_with_service_bedrock_mantle() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let headers = sign_headers(
            &creds("AKIDEXAMPLE", None),
            "us-west-2",
            "POST",
            "https://bedrock-mantle.us-west-2.api.aws/v1/chat/completions",
            Some("application/json"),
            br#"{"model":"m"}"#,
            now,
        )
        .unwrap();
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-amz-date"), Some("20270115T080000Z"));
        assert_eq!(get("x-amz-security-token"), Some("session"));
        let auth = get("authorization").unwrap();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20270115/us-west-2/bedrock-mantle/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="
            ),
            "{auth}"
        );
        // The body is signed: another body gives another signature.
        let other = sign_headers(
            &creds("AKIDEXAMPLE", None),
            "us-west-2",
            "POST",
            "https://bedrock-mantle.us-west-2.api.aws/v1/chat/completions",
            Some("application/json"),
            br#"{"model":"n"}"#,
            now,
        )
        .unwrap();
        let other_auth = other.iter().find(|(k, _)| *k == "authorization").unwrap();
        assert_ne!(other_auth.1, auth);
    }
}
