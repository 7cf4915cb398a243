//! URLs for each route, derived from the region or a configured `baseUrl` (spec §1, §5).

use reqwest::Url;

/// Mantle origin for a region.
pub fn origin_for_region(region: &str) -> String {
    format!("https://bedrock-mantle.{region}.api.aws")
}

/// Checks a configured `baseUrl`: absolute, `https` (or `http` to a loopback host only), and
/// without `user:password@` (credentials belong in `apiKey` or `headers`, which are kept
/// secret; a URL is echoed in errors and catalogs). Errors never echo the userinfo part.
pub fn validate_base_url(raw: &str) -> Result<(), String> {
    let shown = redact_userinfo(raw);
    let url =
        Url::parse(raw.trim()).map_err(|e| format!("{shown:?} is not an absolute URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{shown:?} carries credentials (user:password@); put a key in `apiKey` or `headers` instead"
        ));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&url) => Ok(()),
        "http" => Err(format!(
            "{shown:?} must use https (plain http is allowed for loopback hosts only)"
        )),
        other => Err(format!("{shown:?} has scheme {other:?}; expected https")),
    }
    .and_then(|_| {
        if url.host_str().is_some() {
            Ok(())
        } else {
            Err(format!("{shown:?} has no host"))
        }
    })
}

/// `raw` with anything before an `@` in its authority replaced by `<redacted>`, so a URL can be
/// shown in a message even when it is malformed.
pub fn redact_userinfo(raw: &str) -> String {
    let after_scheme = raw.find("://").map_or(0, |i| i + 3);
    let authority_end = raw[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(raw.len(), |i| after_scheme + i);
    match raw[after_scheme..authority_end].rfind('@') {
        Some(at) => format!(
            "{}<redacted>{}",
            &raw[..after_scheme],
            &raw[after_scheme + at..]
        ),
        None => raw.to_string(),
    }
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The resolved endpoints of one provider instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// OpenAI-compatible base (`{origin}/v1`), also the catalog's `baseUrl`.
    pub openai_base: String,
}

impl Endpoints {
    /// Endpoints from a `baseUrl` override or the region's origin.
    ///
    /// A `baseUrl` with no path (an origin) gets `/v1` appended; one with a path is taken as the
    /// OpenAI-compatible base as given (trailing `/` removed).
    pub fn new(base_url: Option<&str>, region: &str) -> Self {
        let openai_base = match base_url.map(str::trim).filter(|s| !s.is_empty()) {
            Some(raw) => {
                let trimmed = raw.trim_end_matches('/');
                match Url::parse(trimmed) {
                    Ok(u) if u.path() == "/" || u.path().is_empty() => format!("{trimmed}/v1"),
                    _ => trimmed.to_string(),
                }
            }
            None => format!("{}/v1", origin_for_region(region)),
        };
        Endpoints { openai_base }
    }

    /// Whether requests may need TLS: every endpoint but a plain `http://` one (a redirect to
    /// `https` still works then, its roots loaded at that handshake).
    pub fn may_use_tls(&self) -> bool {
        !self.openai_base.to_ascii_lowercase().starts_with("http://")
    }

    /// `GET` discovery URL.
    pub fn models_url(&self) -> String {
        format!("{}/models", self.openai_base)
    }

    /// OpenAI Chat Completions URL.
    pub fn chat_completions_url(&self) -> String {
        format!("{}/chat/completions", self.openai_base)
    }

    /// Anthropic Messages URL by the rewrite rule of spec §5.
    pub fn anthropic_messages_url(&self) -> String {
        format!("{}/v1/messages", anthropic_base(&self.openai_base))
    }

    /// OpenAI Responses URL for `model` (spec §7): `{origin}/openai/v1/responses` for the
    /// families Mantle serves only there (GPT-5.x, Gemma 4, xAI), else `{base}/responses`
    /// (e.g. gpt-oss pinned to the Responses surface).
    pub fn responses_url(&self, model: &str) -> String {
        if responses_only_family(model) {
            format!("{}/responses", openai_responses_base(&self.openai_base))
        } else {
            format!("{}/responses", self.openai_base.trim_end_matches('/'))
        }
    }
}

/// Model families Mantle serves on the Responses API under `/openai/v1` only (spec §7).
pub fn responses_only_family(model: &str) -> bool {
    ["openai.gpt-5", "google.gemma-4", "xai."]
        .iter()
        .any(|prefix| model.starts_with(prefix))
}

/// The `/openai/v1` base next to the provider's `/v1` base, derived like the Anthropic base:
/// trailing `/` removed; ends with `/openai/v1` kept; ends with `/v1` replaced by `/openai/v1`;
/// else `/openai/v1` appended.
pub fn openai_responses_base(provider_base: &str) -> String {
    let base = provider_base.trim_end_matches('/');
    if base.ends_with("/openai/v1") {
        base.to_string()
    } else if let Some(stem) = base.strip_suffix("/v1") {
        format!("{stem}/openai/v1")
    } else {
        format!("{base}/openai/v1")
    }
}

/// The Anthropic base: trailing `/` removed; ends with `/anthropic` kept; ends with `/v1`
/// replaced by `/anthropic`; else `/anthropic` appended.
pub fn anthropic_base(provider_base: &str) -> String {
    let base = provider_base.trim_end_matches('/');
    if base.ends_with("/anthropic") {
        base.to_string()
    } else if let Some(stem) = base.strip_suffix("/v1") {
        format!("{stem}/anthropic")
    } else {
        format!("{base}/anthropic")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_endpoints() {
        let e = Endpoints::new(None, "eu-west-1");
        assert_eq!(e.openai_base, "https://bedrock-mantle.eu-west-1.api.aws/v1");
        assert_eq!(
            e.models_url(),
            "https://bedrock-mantle.eu-west-1.api.aws/v1/models"
        );
        assert_eq!(
            e.chat_completions_url(),
            "https://bedrock-mantle.eu-west-1.api.aws/v1/chat/completions"
        );
        assert_eq!(
            e.anthropic_messages_url(),
            "https://bedrock-mantle.eu-west-1.api.aws/anthropic/v1/messages"
        );
    }

    #[test]
    fn only_a_plain_http_endpoint_never_needs_tls() {
        assert!(Endpoints::new(None, "eu-west-1").may_use_tls());
        assert!(Endpoints::new(Some("https://gateway.internal/mantle"), "eu-west-1").may_use_tls());
        assert!(!Endpoints::new(Some("http://127.0.0.1:8080"), "eu-west-1").may_use_tls());
        assert!(!Endpoints::new(Some("HTTP://127.0.0.1:8080/v1"), "eu-west-1").may_use_tls());
    }

    #[test]
    fn anthropic_rewrite_rule() {
        assert_eq!(
            anthropic_base("https://h/anthropic/"),
            "https://h/anthropic"
        );
        assert_eq!(anthropic_base("https://h/v1/"), "https://h/anthropic");
        assert_eq!(
            anthropic_base("https://h/proxy"),
            "https://h/proxy/anthropic"
        );
    }

    #[test]
    fn responses_urls_per_family() {
        let e = Endpoints::new(None, "us-west-2");
        let origin = "https://bedrock-mantle.us-west-2.api.aws";
        for model in [
            "openai.gpt-5.5",
            "openai.gpt-5.6-sol",
            "google.gemma-4-27b",
            "xai.grok-4",
        ] {
            assert_eq!(
                e.responses_url(model),
                format!("{origin}/openai/v1/responses"),
                "{model}"
            );
        }
        assert_eq!(
            e.responses_url("openai.gpt-oss-120b"),
            format!("{origin}/v1/responses")
        );
        assert_eq!(
            openai_responses_base("http://127.0.0.1:9/v1/"),
            "http://127.0.0.1:9/openai/v1"
        );
        assert_eq!(
            openai_responses_base("https://p.example/openai/v1"),
            "https://p.example/openai/v1"
        );
        assert_eq!(
            openai_responses_base("https://p.example/mantle"),
            "https://p.example/mantle/openai/v1"
        );
    }

    #[test]
    fn vpc_endpoint_hosts_are_used_as_given() {
        let vpce = "https://vpce-0a1b2c3d-4e5f.bedrock-mantle.us-west-2.vpce.amazonaws.com";
        // The provider's region (us-east-1) is not guessed from, nor written into, the host.
        let e = Endpoints::new(Some(vpce), "us-east-1");
        assert_eq!(e.openai_base, format!("{vpce}/v1"));
        assert_eq!(e.models_url(), format!("{vpce}/v1/models"));
        assert_eq!(
            e.chat_completions_url(),
            format!("{vpce}/v1/chat/completions")
        );
        assert_eq!(
            e.anthropic_messages_url(),
            format!("{vpce}/anthropic/v1/messages")
        );
        assert_eq!(validate_base_url(vpce), Ok(()));
    }

    #[test]
    fn base_url_override() {
        let e = Endpoints::new(Some("http://127.0.0.1:9/v1/"), "us-east-1");
        assert_eq!(e.openai_base, "http://127.0.0.1:9/v1");
        let e = Endpoints::new(Some("https://vpce.example.com"), "us-east-1");
        assert_eq!(e.openai_base, "https://vpce.example.com/v1");
        assert!(validate_base_url("http://localhost:8080/v1").is_ok());
        assert!(validate_base_url("http://[::1]:8080/v1").is_ok());
        assert!(validate_base_url("http://10.0.0.1/v1").is_err());
        assert!(validate_base_url("ftp://127.0.0.1/").is_err());
        assert!(validate_base_url("not a url").is_err());
    }
}
