//! Minting Bedrock short-term bearer tokens from AWS credentials (spec §2).
//!
//! A token is `bedrock-api-key-` + base64(presigned URL without `https://` + `&Version=1`), where
//! the URL is a SigV4 query-string presign of
//! `POST https://bedrock.amazonaws.com/?Action=CallWithBearerToken` (only `host` signed, empty
//! payload, service `bedrock`, the caller's region in the scope). The output is byte-identical
//! to AWS's official generators; see the vector test below.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::{
    http_request::{sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings},
    sign::v4,
};
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::secret::Secret;

/// Lifetime requested for minted tokens, in seconds.
pub const DEFAULT_EXPIRES_IN: u64 = 7200;
/// Largest accepted `X-Amz-Expires`.
pub const MAX_EXPIRES_IN: u64 = 43200;

const HOST: &str = "bedrock.amazonaws.com";
const PRESIGN_URL: &str = "https://bedrock.amazonaws.com/?Action=CallWithBearerToken";
const TOKEN_PREFIX: &str = "bedrock-api-key-";

/// RFC 3986 unreserved characters stay; everything else is `%XX` with upper-case hex.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Why a token could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// `expires_in` outside 1..=43200.
    #[error("token lifetime {0} s is outside the valid range 1..=43200")]
    InvalidExpiry(u64),
    /// The signer refused (malformed region or credentials).
    #[error("signing failed: {0}")]
    Signing(String),
}

/// A freshly minted token.
#[derive(Debug, Clone)]
pub struct MintedToken {
    /// The bearer token.
    pub token: Secret,
    /// When it stops being valid (signing time + lifetime).
    pub expires_at: SystemTime,
}

/// Mints a token valid for `expires_in` seconds from `now`.
pub fn mint_token(
    credentials: &Credentials,
    region: &str,
    now: SystemTime,
    expires_in: u64,
) -> Result<MintedToken, MintError> {
    if !(1..=MAX_EXPIRES_IN).contains(&expires_in) {
        return Err(MintError::InvalidExpiry(expires_in));
    }
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(expires_in));
    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("bedrock")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| MintError::Signing(e.to_string()))?
        .into();
    let request = SignableRequest::new(
        "POST",
        PRESIGN_URL,
        [("host", HOST)].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| MintError::Signing(e.to_string()))?;
    // aws-sigv4 logs the canonical request (with the session token) at TRACE: sign with no
    // subscriber on this thread so no log can carry a secret. Signing is synchronous.
    let signed =
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            sign(request, &params)
        });
    let (instructions, _signature) = signed
        .map_err(|e| MintError::Signing(e.to_string()))?
        .into_parts();
    let signed: Vec<(&str, String)> = instructions
        .params()
        .iter()
        .map(|(k, v)| (*k, v.to_string()))
        .collect();

    // The contract fixes the order of the query string, whatever order the signer used.
    const ORDER: [&str; 7] = [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
    ];
    let mut url = format!("{HOST}/?Action=CallWithBearerToken");
    for name in ORDER {
        if let Some((_, value)) = signed.iter().find(|(k, _)| *k == name) {
            url.push('&');
            url.push_str(name);
            url.push('=');
            url.push_str(&utf8_percent_encode(value, RFC3986).to_string());
        }
    }
    url.push_str("&Version=1");
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(url.as_bytes())
    );
    Ok(MintedToken {
        token: Secret::new(token),
        expires_at: now + Duration::from_secs(expires_in),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Value {
        // A verbatim copy of shared/vectors/bedrock-token-vectors.json (AWS's generators),
        // vendored so a clean clone of this repository tests on its own.
        let text = include_str!("../../tests/data/bedrock-token-vectors.json");
        serde_json::from_str(text).expect("vector JSON")
    }

    #[test]
    fn every_official_vector_matches_byte_for_byte() {
        let v = vectors();
        let list = v["vectors"].as_array().expect("vectors array");
        assert!(!list.is_empty());
        for case in list {
            let id = case["id"].as_str().unwrap();
            let inp = &case["inputs"];
            let creds = Credentials::new(
                inp["access_key_id"].as_str().unwrap(),
                inp["secret_access_key"].as_str().unwrap(),
                inp["session_token"].as_str().map(str::to_string),
                None,
                "vector",
            );
            let now = SystemTime::UNIX_EPOCH
                + Duration::from_secs(inp["signing_time_unix"].as_u64().unwrap());
            let minted = mint_token(
                &creds,
                inp["region"].as_str().unwrap(),
                now,
                inp["expires_in_seconds"].as_u64().unwrap(),
            )
            .unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(
                minted.token.expose(),
                case["expected"]["token"].as_str().unwrap(),
                "vector {id}"
            );
            assert_eq!(
                crate::clock::unix_seconds(minted.expires_at),
                case["expected"]["token_expires_at_unix"].as_i64().unwrap(),
                "vector {id} expiry"
            );
        }
    }

    #[test]
    fn expiry_outside_range_is_an_error() {
        let creds = Credentials::new("AKID", "SECRET", None, None, "t");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_736_944_496);
        for bad in [0, 43201, 100_000] {
            let e = mint_token(&creds, "us-east-1", now, bad).unwrap_err();
            assert_eq!(e, MintError::InvalidExpiry(bad));
            assert!(e.to_string().contains("1..=43200"));
        }
        assert!(mint_token(&creds, "us-east-1", now, 1).is_ok());
        assert!(mint_token(&creds, "us-east-1", now, 43200).is_ok());
    }
}
