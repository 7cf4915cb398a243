//! Catalog rows: defaults for discovered ids, the built-in table of known Mantle models, the
//! curated Claude rows, and the merge with the user's provider config (spec §3, §4).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::{
    clock::unix_seconds,
    config::{
        Cost, HeaderValues, ModelConfig, ProviderConfig, API_ANTHROPIC_MESSAGES,
        API_OPENAI_COMPLETIONS,
    },
};

/// Placeholder context window for unknown ids.
pub const DEFAULT_CONTEXT_WINDOW: u64 = 32000;
/// Placeholder max output for unknown ids.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// One model in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRow {
    /// Model id sent upstream.
    pub id: String,
    /// Display name.
    pub name: String,
    /// API surface when it differs from the provider's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Whether the model reasons.
    pub reasoning: bool,
    /// Input modalities.
    pub input: Vec<String>,
    /// USD per 1M tokens.
    pub cost: Cost,
    /// Context window.
    pub context_window: u64,
    /// Max output tokens.
    pub max_tokens: u64,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderValues>,
}

/// The reasoning heuristic of spec §3 (lower-cased id contains a marker).
pub fn reasoning_by_id(id: &str) -> bool {
    const MARKERS: [&str; 6] = [
        "thinking",
        "reasoner",
        "reasoning",
        "deepseek.r",
        "gpt-oss-120b",
        "gpt-oss-safeguard-120b",
    ];
    let lower = id.to_lowercase();
    MARKERS.iter().any(|m| lower.contains(m))
}

/// What we know about a Mantle model beyond the discovery placeholders.
struct Known {
    id: &'static str,
    context_window: u64,
    max_tokens: u64,
    image: bool,
    reasoning: Option<bool>,
}

/// Known Mantle models, from the vendors' published model cards (context / max output).
/// Unknown ids keep the 32000/4096 placeholders.
const KNOWN_MODELS: &[Known] = &[
    Known {
        id: "openai.gpt-oss-120b",
        context_window: 131_072,
        max_tokens: 32_768,
        image: false,
        reasoning: Some(true),
    },
    Known {
        id: "openai.gpt-oss-20b",
        context_window: 131_072,
        max_tokens: 32_768,
        image: false,
        reasoning: Some(true),
    },
    Known {
        id: "openai.gpt-oss-safeguard-120b",
        context_window: 131_072,
        max_tokens: 32_768,
        image: false,
        reasoning: Some(true),
    },
    Known {
        id: "openai.gpt-oss-safeguard-20b",
        context_window: 131_072,
        max_tokens: 32_768,
        image: false,
        reasoning: Some(true),
    },
    Known {
        id: "qwen.qwen3-32b",
        context_window: 131_072,
        max_tokens: 16_384,
        image: false,
        reasoning: None,
    },
    Known {
        id: "qwen.qwen3-235b-a22b-2507",
        context_window: 262_144,
        max_tokens: 32_768,
        image: false,
        reasoning: None,
    },
    Known {
        id: "qwen.qwen3-coder-480b-a35b",
        context_window: 262_144,
        max_tokens: 65_536,
        image: false,
        reasoning: None,
    },
    Known {
        id: "deepseek.r1",
        context_window: 128_000,
        max_tokens: 32_768,
        image: false,
        reasoning: Some(true),
    },
    Known {
        id: "deepseek.v3",
        context_window: 128_000,
        max_tokens: 8_192,
        image: false,
        reasoning: None,
    },
    // Kimi on Mantle: ids are `moonshotai.`, limits 262,143 context / 16,000 output as Mantle
    // enforces them (spec §7), not the 262,144 / 32,768 of Moonshot's own API.
    Known {
        id: "moonshotai.kimi-k2-thinking",
        context_window: 262_143,
        max_tokens: 16_000,
        image: false,
        reasoning: Some(true),
    },
    Known {
        id: "moonshotai.kimi-k2.5",
        context_window: 262_143,
        max_tokens: 16_000,
        image: false,
        reasoning: None,
    },
    Known {
        id: "zai.glm-4.6",
        context_window: 200_000,
        max_tokens: 128_000,
        image: false,
        reasoning: None,
    },
];

/// The surface a model family is served on by Mantle (spec §7), when it is not the provider's
/// default: Claude ids go to the Anthropic route; GPT-5.x, Gemma 4 and xAI to the Responses
/// surface. A row's explicit `api` still wins.
pub fn family_api(id: &str) -> Option<&'static str> {
    if id.starts_with("anthropic.") {
        Some(API_ANTHROPIC_MESSAGES)
    } else if crate::routes::responses_only_family(id) {
        Some(crate::config::API_OPENAI_RESPONSES)
    } else {
        None
    }
}

/// Known families by id prefix, for ids the exact table does not list (versions and suffixes
/// such as `-sol`/`-luna` come and go faster than this table).
const KNOWN_FAMILIES: &[Known] = &[
    // GPT-5.x on Mantle: 1,050,000 input tokens enforced (spec §7: the "272K" figure is a
    // pricing tier, not a limit); 128,000 output tokens and text+image input per OpenAI's
    // GPT-5 model cards; always a reasoning model.
    Known {
        id: "openai.gpt-5",
        context_window: 1_050_000,
        max_tokens: 128_000,
        image: true,
        reasoning: Some(true),
    },
];

/// A row for a discovered id: placeholders, then the known-model table (exact ids first, then
/// families by prefix).
pub fn discovered_row(id: &str) -> ModelRow {
    let mut row = ModelRow {
        id: id.to_string(),
        name: id.to_string(),
        api: family_api(id).map(str::to_string),
        reasoning: reasoning_by_id(id),
        input: vec!["text".into()],
        cost: Cost::default(),
        context_window: DEFAULT_CONTEXT_WINDOW,
        max_tokens: DEFAULT_MAX_TOKENS,
        headers: None,
    };
    let known = KNOWN_MODELS
        .iter()
        .find(|k| k.id == id)
        .or_else(|| KNOWN_FAMILIES.iter().find(|k| id.starts_with(k.id)));
    if let Some(k) = known {
        row.context_window = k.context_window;
        row.max_tokens = k.max_tokens;
        if k.image {
            row.input.push("image".into());
        }
        if let Some(r) = k.reasoning {
            row.reasoning = r;
        }
    }
    row
}

/// 2026-09-01T00:00:00Z: Sonnet 5's price change.
const SONNET_5_PRICE_CHANGE_UNIX: i64 = 1_788_220_800;

fn claude(id: &str, name: &str, reasoning: bool, cost: [f64; 4]) -> ModelRow {
    ModelRow {
        id: id.into(),
        name: name.into(),
        api: Some(API_ANTHROPIC_MESSAGES.into()),
        reasoning,
        input: vec!["text".into(), "image".into()],
        cost: Cost {
            input: cost[0],
            output: cost[1],
            cache_read: cost[2],
            cache_write: cost[3],
        },
        context_window: 1_000_000,
        max_tokens: 128_000,
        headers: None,
    }
}

/// The curated Claude rows, priced as of `now`.
pub fn claude_rows(now: SystemTime) -> Vec<ModelRow> {
    let sonnet_cost = if unix_seconds(now) < SONNET_5_PRICE_CHANGE_UNIX {
        [2.0, 10.0, 0.2, 2.5]
    } else {
        [3.0, 15.0, 0.3, 3.75]
    };
    vec![
        claude(
            "anthropic.claude-opus-5",
            "Claude Opus 5",
            true,
            [5.0, 25.0, 0.5, 6.25],
        ),
        claude(
            "anthropic.claude-sonnet-5",
            "Claude Sonnet 5",
            true,
            sonnet_cost,
        ),
        claude(
            "anthropic.claude-opus-4-7",
            "Claude Opus 4.7",
            false,
            [5.0, 25.0, 0.5, 6.25],
        ),
        claude(
            "anthropic.claude-mythos-5",
            "Claude Mythos 5",
            true,
            [10.0, 50.0, 1.0, 12.5],
        ),
        claude(
            "anthropic.claude-mythos-preview",
            "Claude Mythos Preview",
            true,
            [0.0, 0.0, 0.0, 0.0],
        ),
    ]
}

/// Rows from discovered ids: blank ids dropped, sorted by id, Claude rows appended (replacing
/// same-id rows) when the discovery is non-empty.
pub fn build_catalog(ids: &[String], now: SystemTime) -> Vec<ModelRow> {
    let mut ids: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|id| !id.trim().is_empty())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Vec::new();
    }
    let claude = claude_rows(now);
    let mut rows: Vec<ModelRow> = ids
        .into_iter()
        .filter(|id| !claude.iter().any(|c| c.id == *id))
        .map(discovered_row)
        .collect();
    rows.extend(claude);
    rows
}

/// A user-written model row with unset fields filled like a discovered (or curated) row.
pub fn user_row(model: &ModelConfig, now: SystemTime) -> ModelRow {
    let mut row = claude_rows(now)
        .into_iter()
        .find(|c| c.id == model.id)
        .unwrap_or_else(|| discovered_row(&model.id));
    if let Some(v) = &model.name {
        row.name = v.clone();
    }
    if model.api.is_some() {
        row.api = model.api.clone();
    }
    if let Some(v) = model.reasoning {
        row.reasoning = v;
    }
    if let Some(v) = &model.input {
        row.input = v.clone();
    }
    if let Some(v) = model.cost {
        row.cost = v;
    }
    if let Some(v) = model.context_window {
        row.context_window = v;
    }
    if let Some(v) = model.max_tokens {
        row.max_tokens = v;
    }
    if model.headers.is_some() {
        row.headers = model.headers.clone();
    }
    row
}

/// The provider entry a catalog returns to the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderEntry {
    /// `amazon-bedrock-mantle`.
    pub id: String,
    /// Human label.
    pub label: String,
    /// OpenAI-compatible base URL.
    pub base_url: String,
    /// Default API surface.
    pub api: String,
    /// Always `api-key`.
    pub auth: String,
    /// `env:NAME` or the IAM marker; never a secret.
    pub api_key: String,
    /// Extra headers the user configured (names; values are shown as `<redacted>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderValues>,
    /// Models.
    pub models: Vec<ModelRow>,
}

/// Merges the implicit provider with the user's config: user keys win; a non-empty user
/// `models` list replaces the catalog (Claude rows included); an absent or empty one keeps it.
pub fn merge(implicit: ProviderEntry, user: &ProviderConfig, now: SystemTime) -> ProviderEntry {
    let mut out = implicit;
    if let Some(api) = &user.api {
        out.api = api.clone();
    }
    if let Some(auth) = &user.auth {
        out.auth = auth.clone();
    }
    // `apiKey` is not copied from the user config: the implicit provider's marker already names
    // where the token really comes from (a blank `env:NAME` falls through to the next source,
    // and a literal key is shown as `env:AWS_BEARER_TOKEN_BEDROCK`, never as itself).
    if user.headers.is_some() {
        out.headers = user.headers.clone();
    }
    if let Some(models) = user.models.as_ref().filter(|m| !m.is_empty()) {
        out.models = models.iter().map(|m| user_row(m, now)).collect();
    }
    out
}

/// The implicit provider for a base URL, token marker and rows.
pub fn implicit_provider(
    base_url: &str,
    api_key_marker: String,
    models: Vec<ModelRow>,
) -> ProviderEntry {
    ProviderEntry {
        id: mantle_abi::PROVIDER_ID.into(),
        label: crate::PROVIDER_LABEL.into(),
        base_url: base_url.into(),
        api: API_OPENAI_COMPLETIONS.into(),
        auth: "api-key".into(),
        api_key: api_key_marker,
        headers: None,
        models,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reasoning_heuristic_exact_markers() {
        for yes in [
            "x.Thinking-1",
            "deepseek.reasoner",
            "a.reasoning",
            "deepseek.r1",
            "openai.gpt-oss-120b",
            "openai.gpt-oss-safeguard-120b",
        ] {
            assert!(reasoning_by_id(yes), "{yes}");
        }
        for no in [
            "openai.gpt-oss-20b",
            "qwen.qwen3-32b",
            "deepseek.v3",
            "think",
        ] {
            assert!(!reasoning_by_id(no), "{no}");
        }
    }

    #[test]
    fn discovered_rows_defaults_sorting_and_claude() {
        let now = ManualClock::at_unix(1_780_000_000).now();
        let rows = build_catalog(
            &ids(&[
                "zeta.model",
                " ",
                "",
                "anthropic.claude-opus-4-7",
                "alpha.m",
            ]),
            now,
        );
        let got: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            got,
            [
                "alpha.m",
                "zeta.model",
                "anthropic.claude-opus-5",
                "anthropic.claude-sonnet-5",
                "anthropic.claude-opus-4-7",
                "anthropic.claude-mythos-5",
                "anthropic.claude-mythos-preview"
            ]
        );
        let alpha = &rows[0];
        assert_eq!(
            (alpha.name.as_str(), alpha.context_window, alpha.max_tokens),
            ("alpha.m", 32000, 4096)
        );
        assert_eq!(alpha.input, vec!["text"]);
        assert_eq!(alpha.cost, Cost::default());
        let opus47 = rows
            .iter()
            .find(|r| r.id == "anthropic.claude-opus-4-7")
            .unwrap();
        assert_eq!(opus47.api.as_deref(), Some("anthropic-messages"));
        assert!(!opus47.reasoning);
        assert_eq!(
            (opus47.context_window, opus47.max_tokens),
            (1_000_000, 128_000)
        );
        assert!(
            build_catalog(&ids(&["", " "]), now).is_empty(),
            "empty discovery adds no Claude rows"
        );
    }

    #[test]
    fn sonnet_5_price_by_date() {
        let clock = ManualClock::at_unix(SONNET_5_PRICE_CHANGE_UNIX as u64 - 1);
        let sonnet = |now| {
            claude_rows(now)
                .into_iter()
                .find(|r| r.id == "anthropic.claude-sonnet-5")
                .unwrap()
                .cost
        };
        assert_eq!(
            sonnet(clock.now()),
            Cost {
                input: 2.0,
                output: 10.0,
                cache_read: 0.2,
                cache_write: 2.5
            }
        );
        clock.advance(std::time::Duration::from_secs(1));
        assert_eq!(
            sonnet(clock.now()),
            Cost {
                input: 3.0,
                output: 15.0,
                cache_read: 0.3,
                cache_write: 3.75
            }
        );
    }

    #[test]
    fn claude_ids_default_to_the_anthropic_route() {
        // Before: a discovered Claude id that is not curated went to chat completions, which
        // Mantle refuses for Claude.
        let r = discovered_row("anthropic.claude-haiku-4-5");
        assert_eq!(r.api.as_deref(), Some(API_ANTHROPIC_MESSAGES));
        assert_eq!(discovered_row("openai.gpt-oss-120b").api, None);
        assert_eq!(
            discovered_row("openai.gpt-5.5").api.as_deref(),
            Some("openai-responses")
        );
        assert_eq!(
            discovered_row("xai.grok-4").api.as_deref(),
            Some("openai-responses")
        );
        assert_eq!(
            discovered_row("us.anthropic.claude-x").api,
            None,
            "prefixed ids are not Mantle's"
        );
        // A user row's explicit api wins over the family.
        let user = ProviderConfig::parse(
            "{ models: [{ id: 'anthropic.claude-haiku-4-5', api: 'openai-completions' }] }",
        )
        .unwrap();
        let now = ManualClock::at_unix(1_780_000_000).now();
        let row = user_row(&user.models.unwrap()[0], now);
        assert_eq!(row.api.as_deref(), Some(API_OPENAI_COMPLETIONS));
    }

    #[test]
    fn gpt_5_family_rows_carry_mantle_limits() {
        for id in ["openai.gpt-5.4", "openai.gpt-5.5", "openai.gpt-5.6-sol"] {
            let r = discovered_row(id);
            assert_eq!(
                (r.context_window, r.max_tokens, r.reasoning, r.input.clone()),
                (
                    1_050_000,
                    128_000,
                    true,
                    vec!["text".to_string(), "image".to_string()]
                ),
                "{id}"
            );
        }
        // gpt-oss is not a GPT-5 family member.
        assert_eq!(
            discovered_row("openai.gpt-oss-120b").context_window,
            131_072
        );
    }

    #[test]
    fn kimi_rows_follow_the_spec() {
        // Failed before the fix: `moonshot.` ids with 262,144 / 32,768.
        for id in ["moonshotai.kimi-k2-thinking", "moonshotai.kimi-k2.5"] {
            let r = discovered_row(id);
            assert_eq!((r.context_window, r.max_tokens), (262_143, 16_000), "{id}");
        }
        assert!(discovered_row("moonshotai.kimi-k2-thinking").reasoning);
        let r = discovered_row("moonshot.kimi-k2-thinking");
        assert_eq!(
            (r.context_window, r.max_tokens),
            (DEFAULT_CONTEXT_WINDOW, DEFAULT_MAX_TOKENS),
            "not a Mantle id"
        );
    }

    #[test]
    fn known_table_overrides_placeholders() {
        let r = discovered_row("openai.gpt-oss-20b");
        assert_eq!(
            (r.context_window, r.max_tokens, r.reasoning),
            (131_072, 32_768, true)
        );
        let r = discovered_row("vendor.unknown");
        assert_eq!((r.context_window, r.max_tokens), (32000, 4096));
    }

    #[test]
    fn merge_user_keys_win_and_models_replace() {
        let now = ManualClock::at_unix(1_780_000_000).now();
        let implicit = implicit_provider(
            "https://x/v1",
            IAM_MARKER_FOR_TEST.into(),
            build_catalog(&ids(&["a.b"]), now),
        );
        let user = ProviderConfig::parse("{ api: 'anthropic-messages', models: [] }").unwrap();
        let merged = merge(implicit.clone(), &user, now);
        assert_eq!(merged.api, "anthropic-messages");
        assert_eq!(merged.models.len(), 6, "empty user list keeps the catalog");
        let user = ProviderConfig::parse(
            "{ apiKey: 'secret!', models: [{ id: 'mine', contextWindow: 5 }] }",
        )
        .unwrap();
        let merged = merge(implicit, &user, now);
        assert_eq!(merged.models.len(), 1);
        assert_eq!(
            (
                merged.models[0].id.as_str(),
                merged.models[0].context_window,
                merged.models[0].max_tokens
            ),
            ("mine", 5, 4096)
        );
        assert!(!serde_json::to_string(&merged).unwrap().contains("secret!"));
    }

    #[test]
    fn every_curated_claude_row_is_exactly_the_spec_table() {
        // Spec §3: all anthropic-messages, text+image, 1,000,000 context, 128,000 output.
        let expected = |id: &str, name: &str, reasoning: bool, cost: [f64; 4]| {
            serde_json::json!({
                "id": id, "name": name, "api": "anthropic-messages", "reasoning": reasoning,
                "input": ["text", "image"],
                "cost": {"input": cost[0], "output": cost[1], "cacheRead": cost[2], "cacheWrite": cost[3]},
                "contextWindow": 1_000_000, "maxTokens": 128_000,
            })
        };
        // 2026-09-01T00:00Z is 1,788,220,800: the Sonnet 5 price changes at that second.
        for (now, sonnet) in [
            (1_788_220_799u64, [2.0, 10.0, 0.2, 2.5]),
            (1_788_220_800u64, [3.0, 15.0, 0.3, 3.75]),
        ] {
            let rows: Vec<serde_json::Value> = claude_rows(ManualClock::at_unix(now).now())
                .iter()
                .map(|r| serde_json::to_value(r).unwrap())
                .collect();
            assert_eq!(
                rows,
                vec![
                    expected(
                        "anthropic.claude-opus-5",
                        "Claude Opus 5",
                        true,
                        [5.0, 25.0, 0.5, 6.25]
                    ),
                    expected("anthropic.claude-sonnet-5", "Claude Sonnet 5", true, sonnet),
                    expected(
                        "anthropic.claude-opus-4-7",
                        "Claude Opus 4.7",
                        false,
                        [5.0, 25.0, 0.5, 6.25]
                    ),
                    expected(
                        "anthropic.claude-mythos-5",
                        "Claude Mythos 5",
                        true,
                        [10.0, 50.0, 1.0, 12.5]
                    ),
                    expected(
                        "anthropic.claude-mythos-preview",
                        "Claude Mythos Preview",
                        true,
                        [0.0, 0.0, 0.0, 0.0]
                    ),
                ],
                "at {now}"
            );
        }
    }

    #[test]
    fn implicit_provider_shape_and_merge_of_user_keys() {
        let now = ManualClock::at_unix(1_780_000_000).now();
        let rows = build_catalog(&ids(&["a.b"]), now);
        let implicit = implicit_provider(
            "https://bedrock-mantle.us-east-1.api.aws/v1",
            IAM_MARKER_FOR_TEST.into(),
            rows.clone(),
        );
        // Spec §3: the implicit provider.
        let v = serde_json::to_value(&implicit).unwrap();
        assert_eq!(v["baseUrl"], "https://bedrock-mantle.us-east-1.api.aws/v1");
        assert_eq!(v["api"], "openai-completions");
        assert_eq!(v["auth"], "api-key");
        assert_eq!(v["apiKey"], "__amazon_bedrock_mantle_iam__");
        assert!(v.get("headers").is_none());
        assert_eq!(implicit.models, rows);
        // Keys the user sets win: api, auth, headers (names shown, values redacted); apiKey
        // stays the marker of the real token source.
        let user = ProviderConfig::parse(
            "{ api: 'anthropic-messages', auth: 'api-key', apiKey: 'lit', headers: { 'x-a': 'secret-a' } }",
        )
        .unwrap();
        let merged = serde_json::to_value(merge(implicit.clone(), &user, now)).unwrap();
        assert_eq!(merged["api"], "anthropic-messages");
        assert_eq!(merged["auth"], "api-key");
        assert_eq!(merged["headers"], serde_json::json!({"x-a": "<redacted>"}));
        assert_eq!(merged["apiKey"], "__amazon_bedrock_mantle_iam__");
        assert_eq!(
            merged["models"], v["models"],
            "no user models: the catalog stays"
        );
        // Unset user keys keep the implicit values.
        let merged =
            serde_json::to_value(merge(implicit, &ProviderConfig::default(), now)).unwrap();
        assert_eq!(merged, v);
    }

    const IAM_MARKER_FOR_TEST: &str = crate::auth::IAM_MARKER;
}
