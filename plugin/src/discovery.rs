//! Discovery of Mantle models (`GET {base}/models`), its cache and its outcome (spec §3).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};

use crate::{auth::Authorization, catalog::ModelRow};

/// Whole-request deadline.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// Longest wait for the next body chunk.
pub const CHUNK_IDLE_LIMIT: Duration = Duration::from_secs(30);
/// Largest accepted body.
pub const BODY_CAP: usize = 4 * 1024 * 1024;
/// How long a cached discovery is fresh.
pub const CACHE_TTL: Duration = Duration::from_secs(3600);

/// Discovery request limits (the spec's values by default; tests shorten them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole-request deadline.
    pub deadline: Duration,
    /// Longest wait for the next body chunk.
    pub chunk_idle: Duration,
    /// Largest accepted body.
    pub body_cap: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: REQUEST_DEADLINE,
            chunk_idle: CHUNK_IDLE_LIMIT,
            body_cap: BODY_CAP,
        }
    }
}

/// What happened to the provider in this catalog call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome {
    /// Models are available.
    Ready {
        /// `discovery`, `cache`, `stale-cache` or `config`.
        source: String,
    },
    /// The provider is skipped on purpose: `disabled`, `unsupported-region`,
    /// `no-credentials`, `credentials-error`, `empty`.
    Skipped {
        /// Why.
        reason: String,
        /// Details (never secrets).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Mantle refused the token (401/403).
    AuthRejected {
        /// The HTTP status.
        http_status: u16,
    },
    /// Mantle could not be reached or answered badly.
    Unavailable {
        /// What went wrong.
        detail: String,
    },
}

impl Outcome {
    /// A skip with a reason.
    pub fn skipped(reason: &str, detail: Option<String>) -> Self {
        Outcome::Skipped {
            reason: reason.to_string(),
            detail,
        }
    }
}

/// Why one discovery request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// 401 or 403.
    #[error("Mantle rejected the request's credentials (HTTP {0})")]
    AuthRejected(u16),
    /// Another HTTP error status.
    #[error("Mantle answered HTTP {0}")]
    Status(u16),
    /// Connect, TLS, timeout or read failure.
    #[error("network error: {0}")]
    Network(String),
    /// Body over the cap, not UTF-8, not JSON, or no `data` array.
    #[error("invalid discovery response: {0}")]
    Invalid(String),
}

impl DiscoveryError {
    /// The outcome this failure reports.
    pub fn outcome(&self) -> Outcome {
        match self {
            DiscoveryError::AuthRejected(s) => Outcome::AuthRejected { http_status: *s },
            other => Outcome::Unavailable {
                detail: other.to_string(),
            },
        }
    }
}

fn network(e: reqwest::Error) -> DiscoveryError {
    // reqwest errors carry the URL, never the headers, so no token can appear here.
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connect failed"
    } else {
        "request failed"
    };
    DiscoveryError::Network(format!("{kind}: {}", crate::errors::error_chain(&e)))
}

/// Fetches and parses `GET {models_url}`; returns the raw ids (unsorted, blanks kept).
/// `headers` are the provider-level extra headers (they go on every request, discovery too);
/// none of them can replace `authorization`.
pub async fn fetch_ids(
    client: &reqwest::Client,
    models_url: &str,
    auth: &Authorization,
    headers: &[(String, String)],
    limits: Limits,
) -> Result<Vec<String>, DiscoveryError> {
    let deadline = limits.deadline;
    tokio::time::timeout(
        deadline,
        fetch_ids_inner(client, models_url, auth, headers, limits),
    )
    .await
    .unwrap_or_else(|_| {
        Err(DiscoveryError::Network(format!(
            "timed out after {} ms",
            deadline.as_millis()
        )))
    })
}

async fn fetch_ids_inner(
    client: &reqwest::Client,
    models_url: &str,
    auth: &Authorization,
    headers: &[(String, String)],
    limits: Limits,
) -> Result<Vec<String>, DiscoveryError> {
    let mut request = client.get(models_url).header("accept", "application/json");
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("authorization") && !name.eq_ignore_ascii_case("x-api-key") {
            request = request.header(name, value);
        }
    }
    let auth_headers = auth
        .headers("GET", models_url, None, &[])
        .map_err(DiscoveryError::Network)?;
    for (name, value) in auth_headers {
        request = request.header(name, value);
    }
    let mut response = request.send().await.map_err(network)?;
    let status = response.status().as_u16();
    if status == 401 || status == 403 {
        return Err(DiscoveryError::AuthRejected(status));
    }
    if !(200..300).contains(&status) {
        return Err(DiscoveryError::Status(status));
    }
    let cap = limits.body_cap;
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(DiscoveryError::Invalid(format!(
            "body larger than {cap} bytes"
        )));
    }
    let mut body = Vec::new();
    loop {
        let chunk = tokio::time::timeout(limits.chunk_idle, response.chunk())
            .await
            .map_err(|_| {
                let idle = limits.chunk_idle.as_millis();
                DiscoveryError::Network(format!("no body data for {idle} ms"))
            })?
            .map_err(network)?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > cap {
            return Err(DiscoveryError::Invalid(format!(
                "body larger than {cap} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    parse_ids(&body)
}

/// Parses a discovery body: strict UTF-8, JSON, a `data` array of rows with `id`.
pub fn parse_ids(body: &[u8]) -> Result<Vec<String>, DiscoveryError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| DiscoveryError::Invalid(format!("body is not UTF-8 ({e})")))?;
    let value: serde_json::Value = crate::limits::parse_json(text)
        .map_err(|e| DiscoveryError::Invalid(format!("body is not JSON ({e})")))?;
    let data = value
        .get("data")
        .and_then(|d| d.as_array())
        .ok_or_else(|| DiscoveryError::Invalid("no `data` array".to_string()))?;
    Ok(data
        .iter()
        .filter_map(|row| row.get("id").and_then(|id| id.as_str()))
        .map(str::to_string)
        .collect())
}

/// A cached discovery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedRows {
    /// Rows built from the discovery (empty allowed).
    pub rows: Vec<ModelRow>,
    /// When it was fetched (Unix seconds).
    pub fetched_at_unix: i64,
}

/// Discovery cache keyed by (region or baseUrl, credential identity).
#[derive(Debug, Default)]
pub struct DiscoveryCache {
    entries: Mutex<HashMap<(String, String), CachedRows>>,
}

impl DiscoveryCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), CachedRows>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rows younger than the TTL for this key.
    pub fn fresh(&self, endpoint: &str, identity: &str, now: SystemTime) -> Option<Vec<ModelRow>> {
        let now = crate::clock::unix_seconds(now);
        self.lock()
            .get(&(endpoint.to_string(), identity.to_string()))
            .filter(|c| {
                now >= c.fetched_at_unix
                    && now.saturating_sub(c.fetched_at_unix) < CACHE_TTL.as_secs() as i64
            })
            .map(|c| c.rows.clone())
    }

    /// The last good rows for this key, however old.
    pub fn last_good(&self, endpoint: &str, identity: &str) -> Option<Vec<ModelRow>> {
        self.lock()
            .get(&(endpoint.to_string(), identity.to_string()))
            .map(|c| c.rows.clone())
    }

    /// Stores a successful discovery. Entries of other credentials older than the TTL are
    /// dropped (identities that rotated away), and at most [`MAX_CACHE_ENTRIES`] are kept
    /// (the oldest go first).
    pub fn store(&self, endpoint: &str, identity: &str, rows: Vec<ModelRow>, now: SystemTime) {
        let now = crate::clock::unix_seconds(now);
        let entry = CachedRows {
            rows,
            fetched_at_unix: now,
        };
        let mut map = self.lock();
        map.retain(|(_, id), c| {
            id == identity || now.saturating_sub(c.fetched_at_unix) < CACHE_TTL.as_secs() as i64
        });
        map.insert((endpoint.to_string(), identity.to_string()), entry);
        cap_entries(&mut map);
    }

    /// Every entry (for the hot-swap state blob).
    pub fn export(&self) -> Vec<(String, String, CachedRows)> {
        self.lock()
            .iter()
            .map(|((e, i), c)| (e.clone(), i.clone(), c.clone()))
            .collect()
    }

    /// Adopts entries exported by another instance (at most [`MAX_CACHE_ENTRIES`] are kept).
    pub fn import(&self, entries: Vec<(String, String, CachedRows)>) {
        let mut map = self.lock();
        for (e, i, c) in entries {
            map.insert((e, i), c);
        }
        cap_entries(&mut map);
    }
}

/// Most discovery cache entries one provider keeps.
pub const MAX_CACHE_ENTRIES: usize = 16;

fn cap_entries(map: &mut HashMap<(String, String), CachedRows>) {
    while map.len() > MAX_CACHE_ENTRIES {
        let oldest = map
            .iter()
            .min_by_key(|(_, c)| c.fetched_at_unix)
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => map.remove(&k),
            None => break,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    #[test]
    fn parse_rules() {
        assert_eq!(
            parse_ids(br#"{"data":[{"id":"b"},{"id":""},{"x":1},{"id":"a"}]}"#).unwrap(),
            vec!["b", "", "a"]
        );
        assert!(
            matches!(parse_ids(b"{\"data\":{}}"), Err(DiscoveryError::Invalid(m)) if m.contains("data"))
        );
        assert!(matches!(parse_ids(b"{}"), Err(DiscoveryError::Invalid(_))));
        assert!(
            matches!(parse_ids(b"not json"), Err(DiscoveryError::Invalid(m)) if m.contains("JSON"))
        );
        assert!(
            matches!(parse_ids(b"{\"data\":[\"\xff\"]}"), Err(DiscoveryError::Invalid(m)) if m.contains("UTF-8"))
        );
    }

    #[test]
    fn cache_ttl_and_credential_isolation() {
        let clock = ManualClock::at_unix(1_780_000_000);
        let cache = DiscoveryCache::default();
        cache.store("https://x/v1", "key:a", vec![], clock.now());
        assert_eq!(
            cache.fresh("https://x/v1", "key:a", clock.now()),
            Some(vec![]),
            "empty results are cached"
        );
        assert_eq!(
            cache.fresh("https://x/v1", "key:b", clock.now()),
            None,
            "no cross-credential hits"
        );
        clock.advance(Duration::from_secs(3599));
        assert!(cache.fresh("https://x/v1", "key:a", clock.now()).is_some());
        clock.advance(Duration::from_secs(1));
        assert!(
            cache.fresh("https://x/v1", "key:a", clock.now()).is_none(),
            "a hit needs age < 3600 s"
        );
        assert!(cache.last_good("https://x/v1", "key:a").is_some());
    }

    #[test]
    fn imported_entries_are_served_and_capped() {
        let clock = ManualClock::at_unix(1_780_000_000);
        let old = DiscoveryCache::default();
        old.store("https://x/v1", "key:a", vec![], clock.now());
        let new = DiscoveryCache::default();
        new.import(old.export());
        assert_eq!(
            new.fresh("https://x/v1", "key:a", clock.now()),
            Some(vec![])
        );
        assert_eq!(new.export().len(), 1);
        let many = (0..MAX_CACHE_ENTRIES + 3)
            .map(|i| {
                let at = 1_780_000_000 + i as i64;
                let rows = CachedRows {
                    rows: vec![],
                    fetched_at_unix: at,
                };
                ("us-east-1".to_string(), format!("key:{i:02}"), rows)
            })
            .collect();
        new.import(many);
        assert_eq!(
            new.export().len(),
            MAX_CACHE_ENTRIES,
            "capped, oldest first"
        );
        assert!(new.last_good("https://x/v1", "key:a").is_none());
    }

    #[test]
    fn rotated_identities_are_evicted() {
        let clock = ManualClock::at_unix(1_780_000_000);
        let cache = DiscoveryCache::default();
        for i in 0..40 {
            cache.store("us-east-1", &format!("iam:AKID{i}"), vec![], clock.now());
            clock.advance(Duration::from_secs(600));
        }
        let mut left: Vec<String> = cache.export().into_iter().map(|(_, i, _)| i).collect();
        left.sort();
        // Six entries are younger than the hour (600 s apart, the newest just stored).
        assert_eq!(
            left,
            (34..40).map(|i| format!("iam:AKID{i}")).collect::<Vec<_>>()
        );
        // Fresh entries of many identities at once are capped, oldest first.
        let cache = DiscoveryCache::default();
        for i in 0..(MAX_CACHE_ENTRIES + 4) {
            cache.store("us-east-1", &format!("key:{i:02}"), vec![], clock.now());
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(cache.export().len(), MAX_CACHE_ENTRIES);
        assert!(cache.last_good("us-east-1", "key:00").is_none());
        assert!(cache
            .last_good("us-east-1", &format!("key:{:02}", MAX_CACHE_ENTRIES + 3))
            .is_some());
    }

    #[test]
    fn imported_extreme_fetch_times_do_not_overflow() {
        // Failed before the fix: `now - i64::MIN` overflowed (a panic in debug builds).
        let clock = ManualClock::at_unix(1_780_000_000);
        let cache = DiscoveryCache::default();
        for (i, t) in [i64::MIN, i64::MAX, -1].into_iter().enumerate() {
            let id = format!("key:{i}");
            cache.import(vec![(
                "e".into(),
                id.clone(),
                CachedRows {
                    rows: vec![],
                    fetched_at_unix: t,
                },
            )]);
            assert!(cache.fresh("e", &id, clock.now()).is_none(), "{t}");
        }
        cache.store("e", "key:new", vec![], clock.now());
    }
}
