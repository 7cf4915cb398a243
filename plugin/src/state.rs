//! The hot-swap state blob: what a new version of the plugin adopts from the old one, so an
//! upgrade causes no burst of discovery or token-minting requests (ABI 1.1).
//!
//! The blob is JSON with a format number. It carries the discovery cache (rows per endpoint and
//! credential identity, with their fetch time, so the one-hour TTL keeps counting) and the IAM
//! token cache (tokens with their expiry and refresh schedule). **It contains bearer tokens**:
//! a host passes it from one version to the next in memory and never logs or stores it.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::{auth::iam::CachedToken, clock::unix_seconds, discovery::CachedRows, secret::Secret};

/// The blob format this version writes and reads.
pub const STATE_FORMAT: u32 = 1;

/// Everything handed over from one version to the next.
#[derive(Debug, Serialize, Deserialize)]
pub struct StateBlob {
    /// [`STATE_FORMAT`] of the writer.
    pub format: u32,
    /// The region the IAM tokens were minted for (tokens are region-bound).
    pub region: String,
    /// Discovery cache entries.
    pub discovery: Vec<DiscoveryEntry>,
    /// IAM token cache entries; the current token last.
    pub tokens: Vec<TokenEntry>,
    /// What Mantle's refusals taught per model (absent in blobs of older versions).
    #[serde(default)]
    pub learned: Vec<LearnedEntry>,
}

/// The route and the dropped parameters learned for one model (spec §7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedEntry {
    /// The model id.
    pub model: String,
    /// The surface that worked after a route refusal.
    #[serde(default)]
    pub route: Option<String>,
    /// Top-level parameters the model refused.
    #[serde(default)]
    pub dropped: Vec<String>,
}

/// One discovery cache entry.
#[derive(Debug, Serialize, Deserialize)]
pub struct DiscoveryEntry {
    /// The region, or the base URL when one is configured.
    pub endpoint: String,
    /// The non-secret credential identity the rows were fetched with.
    pub identity: String,
    /// The rows and their fetch time.
    pub cached: CachedRows,
}

/// One cached IAM token (Debug output redacts the token).
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenEntry {
    /// The bearer token.
    #[serde(with = "exposed")]
    pub token: Secret,
    /// Access key id of the credentials that signed it (not secret).
    pub identity: String,
    /// Expiry, Unix seconds.
    pub expires_at_unix: i64,
    /// When a background refresh becomes due, Unix seconds.
    pub refresh_at_unix: i64,
}

/// What an import adopted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Adopted {
    /// Discovery cache entries adopted.
    pub discovery_entries: usize,
    /// IAM tokens adopted.
    pub tokens: usize,
    /// Models with a learned route or dropped parameters adopted.
    pub learned: usize,
}

/// Serializes a [`Secret`] as its plain value: only for the in-memory blob.
mod exposed {
    use super::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(secret.expose())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

fn from_unix(secs: i64) -> SystemTime {
    crate::clock::from_unix_seconds(secs)
}

impl TokenEntry {
    /// From the token cache's form.
    pub fn from_cached(t: CachedToken) -> Self {
        TokenEntry {
            token: t.token,
            identity: t.identity,
            expires_at_unix: unix_seconds(t.expires_at),
            refresh_at_unix: unix_seconds(t.refresh_at),
        }
    }

    /// Into the token cache's form.
    pub fn into_cached(self) -> CachedToken {
        CachedToken {
            token: self.token,
            identity: self.identity,
            expires_at: from_unix(self.expires_at_unix),
            refresh_at: from_unix(self.refresh_at_unix),
        }
    }
}

impl StateBlob {
    /// Parses a blob, refusing other formats with a message naming both.
    pub fn parse(text: &str) -> Result<Self, String> {
        crate::limits::check_text(
            text,
            crate::limits::MAX_STATE_BYTES,
            crate::limits::MAX_NESTING,
        )
        .map_err(|e| format!("state blob refused before parsing: the text {e}"))?;
        let format = serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| format!("state blob is not JSON: {e}"))?
            .get("format")
            .and_then(|f| f.as_u64())
            .ok_or("state blob has no `format` number")?;
        if format != u64::from(STATE_FORMAT) {
            return Err(format!(
                "state blob format {format} is not supported (this version reads {STATE_FORMAT})"
            ));
        }
        serde_json::from_str(text).map_err(|e| format!("state blob: {e}"))
    }

    /// The blob as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_times_and_hides_the_token_in_debug() {
        let blob = StateBlob {
            format: STATE_FORMAT,
            region: "us-west-2".into(),
            discovery: vec![DiscoveryEntry {
                endpoint: "us-west-2".into(),
                identity: "iam:AKID".into(),
                cached: CachedRows {
                    rows: Vec::new(),
                    fetched_at_unix: 1_800_000_000,
                },
            }],
            tokens: vec![TokenEntry {
                token: Secret::new("bedrock-api-key-SECRET"),
                identity: "AKID".into(),
                expires_at_unix: 1_800_043_200,
                refresh_at_unix: 1_800_003_600,
            }],
            learned: vec![LearnedEntry {
                model: "openai.gpt-5.5".into(),
                route: Some("openai-responses".into()),
                dropped: vec!["temperature".into()],
            }],
        };
        assert!(!format!("{blob:?}").contains("SECRET"));
        let back = StateBlob::parse(&blob.to_json()).unwrap();
        assert_eq!(back.discovery[0].cached.fetched_at_unix, 1_800_000_000);
        let token = back.tokens.into_iter().next().unwrap().into_cached();
        assert_eq!(token.token.expose(), "bedrock-api-key-SECRET");
        assert_eq!(unix_seconds(token.expires_at), 1_800_043_200);
        assert_eq!(unix_seconds(token.refresh_at), 1_800_003_600);
        assert_eq!(back.learned[0].dropped, ["temperature"]);
        // A blob from a version without `learned` still reads.
        let old = r#"{"format": 1, "region": "us-west-2", "discovery": [], "tokens": []}"#;
        assert!(StateBlob::parse(old).unwrap().learned.is_empty());
    }

    #[test]
    fn extreme_imported_times_are_clamped_not_overflowed() {
        // Failed before the fix: `UNIX_EPOCH + i64::MAX seconds` overflowed SystemTime (panic).
        for (expires, refresh) in [(i64::MAX, i64::MIN), (i64::MIN, i64::MAX), (-1, 0)] {
            let entry = TokenEntry {
                token: Secret::new("t"),
                identity: "AKID".into(),
                expires_at_unix: expires,
                refresh_at_unix: refresh,
            };
            let cached = entry.into_cached();
            for (t, raw) in [(cached.expires_at, expires), (cached.refresh_at, refresh)] {
                assert_eq!(
                    unix_seconds(t),
                    raw.clamp(0, crate::clock::MAX_UNIX_SECONDS),
                    "{raw}"
                );
            }
        }
    }

    #[test]
    fn deep_blobs_are_refused_before_parsing() {
        let deep = format!(r#"{{"format": 1, "x": {}}}"#, "[".repeat(20_000));
        let e = StateBlob::parse(&deep).unwrap_err();
        assert!(e.contains("nested deeper than the limit of 64"), "{e}");
    }

    #[test]
    fn other_formats_and_garbage_are_refused_by_name() {
        let e = StateBlob::parse(r#"{"format": 2}"#).unwrap_err();
        assert!(e.contains("format 2") && e.contains("reads 1"), "{e}");
        assert!(StateBlob::parse("nope").unwrap_err().contains("not JSON"));
        assert!(StateBlob::parse("{}").unwrap_err().contains("`format`"));
        assert!(StateBlob::parse(r#"{"format": 1, "region": 5}"#)
            .unwrap_err()
            .contains("state blob"));
    }
}
