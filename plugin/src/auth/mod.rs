//! How upstream requests are authorized. `auth: "api-key"` (the default) resolves a bearer
//! token (spec §2): config `apiKey` (literal or `env:NAME`), then `AWS_BEARER_TOKEN_BEDROCK`,
//! then a token minted from the AWS default credential chain. `auth: "aws-sigv4"` (spec §2b)
//! signs every request with SigV4 instead, and no bearer token exists.

pub mod iam;
pub mod mint;
pub mod sigv4;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use aws_credential_types::{provider::SharedCredentialsProvider, Credentials};
use once_cell::sync::Lazy;
use sha2::{Digest, Sha256};

use crate::{clock::SharedClock, config::ApiKeySetting, secret::Secret};
use iam::{IamError, IamTokens};

/// Environment variable holding a Bedrock API key.
pub const BEARER_ENV: &str = "AWS_BEARER_TOKEN_BEDROCK";
/// What catalogs carry instead of a secret when the token is minted from IAM credentials.
pub const IAM_MARKER: &str = "__amazon_bedrock_mantle_iam__";

/// Reads an environment variable (injectable for tests).
pub type EnvReader = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment.
pub fn process_env() -> EnvReader {
    Arc::new(|name| std::env::var(name).ok())
}

/// Where a token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A literal `apiKey` in the provider config.
    Config,
    /// `apiKey: "env:NAME"`.
    ConfigEnv(String),
    /// `AWS_BEARER_TOKEN_BEDROCK`.
    Env,
    /// Minted from AWS credentials.
    Iam,
    /// No token: requests are signed with SigV4 (`auth: "aws-sigv4"`).
    SigV4,
}

impl TokenSource {
    /// Short name: `config`, `config-env`, `env`, `iam`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TokenSource::Config => "config",
            TokenSource::ConfigEnv(_) => "config-env",
            TokenSource::Env => "env",
            TokenSource::Iam => "iam",
            TokenSource::SigV4 => "aws-sigv4",
        }
    }

    /// The `apiKey` value a catalog shows for this source (never the secret).
    pub fn catalog_api_key(&self) -> String {
        match self {
            TokenSource::ConfigEnv(name) => format!("env:{name}"),
            TokenSource::Env | TokenSource::Config => format!("env:{BEARER_ENV}"),
            TokenSource::Iam | TokenSource::SigV4 => IAM_MARKER.to_string(),
        }
    }
}

/// A token ready to put in `Authorization: Bearer`.
#[derive(Debug, Clone)]
pub struct ResolvedToken {
    /// The secret.
    pub token: Secret,
    /// Expiry when known (minted tokens).
    pub expires_at: Option<SystemTime>,
    /// Where it came from.
    pub source: TokenSource,
    /// A non-secret identity for cache keys: `key:<sha256 prefix>` or `iam:<access key id>`.
    pub identity: String,
}

/// Why no token (or no signing credentials) could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The credential chain gave nothing usable.
    #[error("{0}")]
    Credentials(IamError),
    /// A bearer token was asked of a provider that signs with SigV4.
    #[error(
        "this provider signs its requests with SigV4 (auth: \"aws-sigv4\"); it has no bearer token"
    )]
    NoBearerInSigV4,
}

impl AuthError {
    /// `no-credentials`, `credentials-error`, or `aws-sigv4` (no bearer token in that mode).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Credentials(e) => e.reason(),
            AuthError::NoBearerInSigV4 => "aws-sigv4",
        }
    }
}

/// The provider config's `auth`: how requests are authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// `api-key`: `Authorization: Bearer <token>` (spec §2).
    #[default]
    ApiKey,
    /// `aws-sigv4`: every request signed with SigV4, service `bedrock-mantle` (spec §2b).
    SigV4,
}

/// What authorizes one upstream request. `Debug` never shows a secret.
#[derive(Clone)]
pub enum Authorization {
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// A SigV4 signature over the request, made with these credentials for this region.
    SigV4 {
        /// The signing credentials (their own `Debug` is redacted).
        credentials: Credentials,
        /// Region of the credential scope.
        region: String,
    },
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Authorization::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Authorization::SigV4 { region, .. } => write!(f, "SigV4({region})"),
        }
    }
}

impl Authorization {
    /// The headers that authorize a request with exactly these parts (`body` is the bytes
    /// sent; a SigV4 signature covers them, so call this after the body is final).
    pub fn headers(
        &self,
        method: &str,
        url: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Vec<(&'static str, String)>, String> {
        match self {
            Authorization::Bearer(token) => Ok(vec![(
                "authorization",
                format!("Bearer {}", token.expose()),
            )]),
            Authorization::SigV4 {
                credentials,
                region,
            } => sigv4::sign_headers(
                credentials,
                region,
                method,
                url,
                content_type,
                body,
                SystemTime::now(),
            ),
        }
    }

    /// `text` with the bearer token, or the signing credentials' secret key and session
    /// token, replaced by `<redacted>` (an upstream may echo what it was sent).
    pub fn scrub(&self, text: &str) -> String {
        match self {
            Authorization::Bearer(token) => crate::stream::scrub(text, token),
            Authorization::SigV4 { credentials, .. } => {
                let text =
                    crate::stream::scrub(text, &Secret::new(credentials.secret_access_key()));
                match credentials.session_token() {
                    Some(session) => crate::stream::scrub(&text, &Secret::new(session)),
                    None => text,
                }
            }
        }
    }
}

/// An [`Authorization`] with what catalogs and caches need to know of it.
#[derive(Debug, Clone)]
pub struct Authorized {
    /// What goes on the request.
    pub authorization: Authorization,
    /// A non-secret identity for cache keys (see [`ResolvedToken::identity`]; `sigv4:<access
    /// key id>` for signing credentials).
    pub identity: String,
    /// Where the token or credentials came from.
    pub source: TokenSource,
}

/// Resolves tokens (or signing credentials) for one provider instance.
pub struct Auth {
    mode: AuthMode,
    api_key: Option<ApiKeySetting>,
    env: EnvReader,
    region: String,
    clock: SharedClock,
    credentials: Option<SharedCredentialsProvider>,
    iam: tokio::sync::OnceCell<Arc<IamTokens>>,
    signing: tokio::sync::OnceCell<Arc<sigv4::SigningCredentials>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("mode", &self.mode)
            .field("api_key", &self.api_key)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

fn non_blank(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn key_identity(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("key:{hex}")
}

impl Auth {
    /// Auth for one provider. `credentials` overrides the AWS default chain (tests, hosts that
    /// bring their own); `None` builds the default chain lazily on the first mint or signature.
    pub fn new(
        mode: AuthMode,
        api_key: Option<ApiKeySetting>,
        region: &str,
        env: EnvReader,
        clock: SharedClock,
        credentials: Option<SharedCredentialsProvider>,
    ) -> Self {
        Auth {
            mode,
            api_key,
            env,
            region: region.to_string(),
            clock,
            credentials,
            iam: tokio::sync::OnceCell::new(),
            signing: tokio::sync::OnceCell::new(),
        }
    }

    /// The explicit (non-IAM) token, if any, by the resolution order. Never does I/O. `None`
    /// in `aws-sigv4` mode, which uses no token.
    pub fn explicit_token(&self) -> Option<ResolvedToken> {
        if self.mode == AuthMode::SigV4 {
            return None;
        }
        let from_env = |name: &str| non_blank((self.env)(name)).map(Secret::new);
        let found = match &self.api_key {
            Some(ApiKeySetting::Literal(s)) => {
                let trimmed = s.expose().trim();
                // The configured secret itself, shared, when there is nothing to trim (the
                // usual case): every stream keeps its token, and a copy each would cost
                // every open stream the token's length again.
                let token = match trimmed.len() {
                    0 => None,
                    n if n == s.expose().len() => Some(s.clone()),
                    _ => Some(Secret::new(trimmed)),
                };
                token.map(|t| (t, TokenSource::Config))
            }
            Some(ApiKeySetting::Env(name)) => {
                from_env(name).map(|t| (t, TokenSource::ConfigEnv(name.clone())))
            }
            None => None,
        };
        let found = found.or_else(|| from_env(BEARER_ENV).map(|t| (t, TokenSource::Env)));
        found.map(|(token, source)| ResolvedToken {
            identity: key_identity(token.expose()),
            token,
            expires_at: None,
            source,
        })
    }

    /// The injected credentials provider, else the AWS default chain for this region.
    async fn credentials_provider(&self) -> SharedCredentialsProvider {
        match &self.credentials {
            Some(p) => p.clone(),
            None => SharedCredentialsProvider::new(
                aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                    .region(aws_config::Region::new(self.region.clone()))
                    .build()
                    .await,
            ),
        }
    }

    /// The IAM token manager, built on first use.
    pub async fn iam(&self) -> Arc<IamTokens> {
        self.iam
            .get_or_init(|| async {
                IamTokens::new(
                    &self.region,
                    self.credentials_provider().await,
                    self.clock.clone(),
                )
            })
            .await
            .clone()
    }

    /// The SigV4 signing credentials, built on first use.
    pub async fn signing(&self) -> Arc<sigv4::SigningCredentials> {
        self.signing
            .get_or_init(|| async {
                Arc::new(sigv4::SigningCredentials::new(
                    self.credentials_provider().await,
                    self.clock.clone(),
                ))
            })
            .await
            .clone()
    }

    /// What authorizes a request now: the bearer token, or the credentials to sign with.
    pub async fn authorize(&self) -> Result<Authorized, AuthError> {
        if self.mode == AuthMode::SigV4 {
            let credentials = self.signing().await.get().await.map_err(|e| {
                log_once(&self.region, e.reason(), &e.to_string());
                AuthError::Credentials(e)
            })?;
            return Ok(Authorized {
                identity: format!("sigv4:{}", credentials.access_key_id()),
                authorization: Authorization::SigV4 {
                    credentials,
                    region: self.region.clone(),
                },
                source: TokenSource::SigV4,
            });
        }
        let token = self.resolve().await?;
        Ok(Authorized {
            authorization: Authorization::Bearer(token.token),
            identity: token.identity,
            source: token.source,
        })
    }

    /// The region tokens are minted for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Every cached IAM token (none when no token was minted yet), for the state blob.
    pub fn export_tokens(&self) -> Vec<iam::CachedToken> {
        self.iam.get().map(|iam| iam.export()).unwrap_or_default()
    }

    /// Adopts IAM tokens from another instance (expired ones are ignored). Nothing to do, and
    /// no credentials chain built, when `tokens` is empty.
    pub async fn import_tokens(&self, tokens: Vec<iam::CachedToken>) {
        if !tokens.is_empty() {
            self.iam().await.import(tokens);
        }
    }

    /// Resolves the bearer token to use now (an error in `aws-sigv4` mode).
    pub async fn resolve(&self) -> Result<ResolvedToken, AuthError> {
        if self.mode == AuthMode::SigV4 {
            return Err(AuthError::NoBearerInSigV4);
        }
        if let Some(explicit) = self.explicit_token() {
            return Ok(explicit);
        }
        let iam = self.iam().await;
        match iam.token().await {
            Ok(t) => Ok(ResolvedToken {
                token: t.token,
                expires_at: Some(t.expires_at),
                source: TokenSource::Iam,
                identity: format!("iam:{}", t.identity),
            }),
            Err(e) => {
                log_once(&self.region, e.reason(), &e.to_string());
                Err(AuthError::Credentials(e))
            }
        }
    }
}

static LOGGED_REASONS: Lazy<Mutex<HashSet<(String, &'static str)>>> = Lazy::new(Default::default);

/// Logs a skip reason at debug once per distinct (region, reason) in this process.
fn log_once(region: &str, reason: &'static str, detail: &str) {
    let first = LOGGED_REASONS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert((region.to_string(), reason));
    if first {
        tracing::debug!(
            region,
            reason,
            detail,
            "amazon-bedrock-mantle skipped: no bearer token"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    fn env_of(pairs: Vec<(&'static str, &'static str)>) -> EnvReader {
        Arc::new(move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    fn auth(key: Option<ApiKeySetting>, env: EnvReader) -> Auth {
        Auth::new(
            AuthMode::ApiKey,
            key,
            "us-east-1",
            env,
            Arc::new(SystemClock),
            None,
        )
    }

    #[tokio::test]
    async fn minted_tokens_are_exported_and_adopted_by_another_instance() {
        let make = |secret: &'static str| {
            let credentials = Credentials::new("AKIDSAME", secret, None, None, "test");
            Auth::new(
                AuthMode::ApiKey,
                None,
                "us-east-1",
                env_of(vec![]),
                Arc::new(SystemClock),
                Some(SharedCredentialsProvider::new(credentials)),
            )
        };
        let old = make("secret-one");
        assert!(old.export_tokens().is_empty(), "nothing minted yet");
        let minted = old.resolve().await.unwrap();
        let exported = old.export_tokens();
        assert_eq!(exported.len(), 1);
        let adopted = make("secret-two");
        adopted.import_tokens(exported).await;
        assert_eq!(
            adopted.resolve().await.unwrap().token.expose(),
            minted.token.expose(),
            "the adopted token is served"
        );
        // Without the import, the other secret mints another token.
        let cold = make("secret-two");
        cold.import_tokens(Vec::new()).await;
        assert_ne!(
            cold.resolve().await.unwrap().token.expose(),
            minted.token.expose()
        );
    }

    #[test]
    fn debug_output_names_the_mode_and_region_but_no_secret() {
        let a = auth(
            Some(ApiKeySetting::Literal(Secret::new("sekrit-key"))),
            env_of(vec![]),
        );
        assert_eq!(a.region(), "us-east-1");
        let shown = format!("{a:?}");
        assert!(
            shown.starts_with("Auth { mode: ApiKey, api_key: ")
                && shown.ends_with("region: \"us-east-1\", .. }"),
            "{shown}"
        );
        assert!(!shown.contains("sekrit"), "{shown}");
        let bearer = Authorization::Bearer(Secret::new("sekrit-key"));
        assert_eq!(format!("{bearer:?}"), "Bearer(<redacted>)");
        let signed = Authorization::SigV4 {
            credentials: Credentials::new("AKIDEXAMPLE", "sekrit", None, None, "test"),
            region: "eu-west-1".into(),
        };
        assert_eq!(format!("{signed:?}"), "SigV4(eu-west-1)");
    }

    #[test]
    fn order_config_literal_then_env_reference_then_bearer_env() {
        let env = env_of(vec![
            (BEARER_ENV, " from-env "),
            ("MINE", "  mine  "),
            ("BLANK", "   "),
        ]);
        let t = auth(
            Some(ApiKeySetting::Literal(Secret::new(" lit "))),
            env.clone(),
        )
        .explicit_token()
        .unwrap();
        assert_eq!((t.token.expose(), t.source.as_str()), ("lit", "config"));
        let t = auth(Some(ApiKeySetting::Env("MINE".into())), env.clone())
            .explicit_token()
            .unwrap();
        assert_eq!(
            (t.token.expose(), t.source.as_str()),
            ("mine", "config-env")
        );
        assert_eq!(t.source.catalog_api_key(), "env:MINE");
        // A blank env reference means no key: fall through to AWS_BEARER_TOKEN_BEDROCK.
        let t = auth(Some(ApiKeySetting::Env("BLANK".into())), env.clone())
            .explicit_token()
            .unwrap();
        assert_eq!((t.token.expose(), t.source.as_str()), ("from-env", "env"));
        let t = auth(None, env).explicit_token().unwrap();
        assert_eq!(t.source.catalog_api_key(), "env:AWS_BEARER_TOKEN_BEDROCK");
        assert!(auth(None, env_of(vec![(BEARER_ENV, "  ")]))
            .explicit_token()
            .is_none());
    }

    #[test]
    fn a_literal_key_is_shared_by_every_resolve_not_copied() {
        let key = Secret::new("bedrock-api-key-shared");
        let a = auth(Some(ApiKeySetting::Literal(key.clone())), env_of(vec![]));
        let (first, second) = (a.explicit_token().unwrap(), a.explicit_token().unwrap());
        // Every open stream keeps its token: one copy each would cost each its length.
        assert!(std::ptr::eq(first.token.expose(), key.expose()));
        assert!(std::ptr::eq(second.token.expose(), key.expose()));
        // A key with blanks around it is still trimmed (then it is a copy).
        let padded = auth(
            Some(ApiKeySetting::Literal(Secret::new(" k1 "))),
            env_of(vec![]),
        );
        assert_eq!(padded.explicit_token().unwrap().token.expose(), "k1");
    }

    #[test]
    fn identity_is_not_the_secret() {
        let t = auth(
            Some(ApiKeySetting::Literal(Secret::new("top-secret"))),
            env_of(vec![]),
        )
        .explicit_token()
        .unwrap();
        assert!(t.identity.starts_with("key:"));
        assert!(!t.identity.contains("top-secret"));
        assert!(!format!("{t:?}").contains("top-secret"));
    }
}
