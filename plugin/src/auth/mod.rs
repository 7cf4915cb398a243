//! Bearer-token resolution (spec §2): config `apiKey` (literal or `env:NAME`), then
//! `AWS_BEARER_TOKEN_BEDROCK`, then a token minted from the AWS default credential chain.

pub mod iam;
pub mod mint;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use aws_credential_types::provider::SharedCredentialsProvider;
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
}

impl TokenSource {
    /// Short name: `config`, `config-env`, `env`, `iam`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TokenSource::Config => "config",
            TokenSource::ConfigEnv(_) => "config-env",
            TokenSource::Env => "env",
            TokenSource::Iam => "iam",
        }
    }

    /// The `apiKey` value a catalog shows for this source (never the secret).
    pub fn catalog_api_key(&self) -> String {
        match self {
            TokenSource::ConfigEnv(name) => format!("env:{name}"),
            TokenSource::Env | TokenSource::Config => format!("env:{BEARER_ENV}"),
            TokenSource::Iam => IAM_MARKER.to_string(),
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

/// Why no token could be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub IamError);

impl AuthError {
    /// `no-credentials` or `credentials-error`.
    pub fn reason(&self) -> &'static str {
        self.0.reason()
    }
}

/// Resolves tokens for one provider instance.
pub struct Auth {
    api_key: Option<ApiKeySetting>,
    env: EnvReader,
    region: String,
    clock: SharedClock,
    credentials: Option<SharedCredentialsProvider>,
    iam: tokio::sync::OnceCell<Arc<IamTokens>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
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
    /// bring their own); `None` builds the default chain lazily on the first mint.
    pub fn new(
        api_key: Option<ApiKeySetting>,
        region: &str,
        env: EnvReader,
        clock: SharedClock,
        credentials: Option<SharedCredentialsProvider>,
    ) -> Self {
        Auth {
            api_key,
            env,
            region: region.to_string(),
            clock,
            credentials,
            iam: tokio::sync::OnceCell::new(),
        }
    }

    /// The explicit (non-IAM) token, if any, by the resolution order. Never does I/O.
    pub fn explicit_token(&self) -> Option<ResolvedToken> {
        let found = match &self.api_key {
            Some(ApiKeySetting::Literal(s)) => {
                non_blank(Some(s.expose().to_string())).map(|t| (t, TokenSource::Config))
            }
            Some(ApiKeySetting::Env(name)) => {
                non_blank((self.env)(name)).map(|t| (t, TokenSource::ConfigEnv(name.clone())))
            }
            None => None,
        };
        let found =
            found.or_else(|| non_blank((self.env)(BEARER_ENV)).map(|t| (t, TokenSource::Env)));
        found.map(|(t, source)| ResolvedToken {
            identity: key_identity(&t),
            token: Secret::new(t),
            expires_at: None,
            source,
        })
    }

    /// The IAM token manager, built on first use.
    pub async fn iam(&self) -> Arc<IamTokens> {
        self.iam
            .get_or_init(|| async {
                let provider = match &self.credentials {
                    Some(p) => p.clone(),
                    None => SharedCredentialsProvider::new(
                        aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                            .region(aws_config::Region::new(self.region.clone()))
                            .build()
                            .await,
                    ),
                };
                IamTokens::new(&self.region, provider, self.clock.clone())
            })
            .await
            .clone()
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

    /// Resolves the token to use now.
    pub async fn resolve(&self) -> Result<ResolvedToken, AuthError> {
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
                Err(AuthError(e))
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
        Auth::new(key, "us-east-1", env, Arc::new(SystemClock), None)
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
