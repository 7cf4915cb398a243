//! Recovering from Mantle's refusals before any byte reached the caller (spec §7): a model sent
//! to a route Mantle does not serve it on, and a parameter the model does not take. A stream
//! recovers at most once from each kind; what worked is remembered per model by the provider,
//! so the next request goes right the first time.

use std::sync::Arc;

use super::UpstreamRequest;
use crate::errors::StreamError;

/// What a refusal asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The model is not served on this route.
    WrongRoute,
    /// The model does not take this top-level parameter.
    Parameter(String),
}

/// Reads a refusal from an upstream error, or `None` for any other failure. Only 400, 404 and
/// 401 answers can be refusals (Mantle sometimes answers a wrong route with a misleading 401).
pub fn refusal(error: &StreamError) -> Option<Refusal> {
    if !matches!(error.status, Some(400) | Some(401) | Some(404)) {
        return None;
    }
    let message = error.message.as_str();
    let lower = message.to_ascii_lowercase();
    if lower.contains("does not support the '")
        || lower.contains("isn't supported on this route")
        || lower.contains("is not supported on this route")
    {
        return Some(Refusal::WrongRoute);
    }
    if error.status != Some(400) {
        return None;
    }
    parameter_name(message).map(Refusal::Parameter)
}

/// The parameter a 400 names: `Unsupported parameter: 'top_p' ...`,
/// `` `temperature` is deprecated for this model ``, `unsupported service_tier 'flex'`.
fn parameter_name(message: &str) -> Option<String> {
    let is_name = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    };
    if let Some(rest) = message.split("Unsupported parameter: '").nth(1) {
        let name = rest.split('\'').next().unwrap_or_default();
        return is_name(name).then(|| name.to_string());
    }
    if let Some((before, _)) = message.split_once("` is deprecated") {
        let name = before.rsplit('`').next().unwrap_or_default();
        return is_name(name).then(|| name.to_string());
    }
    let lower = message.to_ascii_lowercase();
    if let Some(rest) = lower.split("unsupported ").nth(1) {
        let name = rest.split_whitespace().next().unwrap_or_default();
        if rest[name.len()..].trim_start().starts_with('\'') && is_name(name) {
            return Some(name.to_string());
        }
    }
    None
}

/// Builds the request to try after a refusal (the provider implements it: it knows the
/// canonical request, the other routes and what to remember).
pub trait Recover: Send + Sync {
    /// The request to send instead of `refused_request`, or `None` to give up.
    fn recover(
        &self,
        refusal: &Refusal,
        refused_request: &UpstreamRequest,
    ) -> Option<UpstreamRequest>;
}

/// A [`Recover`] carried by an [`UpstreamRequest`].
#[derive(Clone)]
pub struct Recovery(pub Arc<dyn Recover>);

impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recovery")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::ErrorKind;

    struct NoRecovery;

    impl Recover for NoRecovery {
        fn recover(&self, _: &Refusal, _: &UpstreamRequest) -> Option<UpstreamRequest> {
            None
        }
    }

    fn err(status: u16, message: &str) -> StreamError {
        StreamError::new(ErrorKind::BadRequest, Some(status), message)
    }

    #[test]
    fn refusals_are_read_from_mantles_messages() {
        let route = "upstream HTTP 400: The model 'openai.gpt-5.5' does not support the '/v1/chat/completions' API";
        assert_eq!(refusal(&err(400, route)), Some(Refusal::WrongRoute));
        assert_eq!(
            refusal(&err(
                400,
                "upstream HTTP 400: model `x` isn't supported on this route"
            )),
            Some(Refusal::WrongRoute)
        );
        assert_eq!(
            refusal(&err(401, route)),
            Some(Refusal::WrongRoute),
            "a misleading 401"
        );
        for (message, name) in [
            ("upstream HTTP 400: Unsupported parameter: 'top_p' is not supported with this model.", "top_p"),
            ("upstream HTTP 400: `temperature` is deprecated for this model", "temperature"),
            ("upstream HTTP 400: unsupported service_tier 'flex'", "service_tier"),
        ] {
            assert_eq!(refusal(&err(400, message)), Some(Refusal::Parameter(name.into())), "{message}");
        }
        assert_eq!(
            refusal(&err(400, "upstream HTTP 400: bad tool schema")),
            None
        );
        assert_eq!(
            refusal(&err(401, "Unsupported parameter: 'top_p'")),
            None,
            "only a 400"
        );
        // Only a plain name is taken as the refused parameter.
        for (message, name) in [
            ("Unsupported parameter: 'a.b_c1' here", Some("a.b_c1")),
            ("Unsupported parameter: '' here", None),
            ("Unsupported parameter: 'top p' here", None),
            ("Unsupported parameter: 'top-p' here", None),
            ("`top p` is deprecated for this model", None),
            ("unsupported top-p 'x'", None),
            ("unsupported model version", None),
        ] {
            assert_eq!(parameter_name(message).as_deref(), name, "{message}");
        }
        assert_eq!(format!("{:?}", Recovery(Arc::new(NoRecovery))), "Recovery");
        assert_eq!(refusal(&err(500, route)), None);
        assert_eq!(
            refusal(&StreamError::new(ErrorKind::Network, None, route)),
            None
        );
    }
}
