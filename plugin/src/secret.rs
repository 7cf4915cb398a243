//! A string that must never be shown: Debug and Display print `<redacted>`.

use std::{fmt, sync::Arc};

/// A secret value (bearer token, secret key). Read it only with [`Secret::expose`].
///
/// Shared, not copied, by `clone`: every open stream holds the token it was sent with (to
/// scrub it from upstream error text), and a minted token is 444-648 bytes or more, so copies
/// would cost each stream that much again.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into().into())
    }

    /// The secret itself, for putting on the wire. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("bedrock-api-key-abc");
        assert!(!format!("{s:?}").contains("abc"));
        assert!(!format!("{s}").contains("abc"));
        assert_eq!(s.expose(), "bedrock-api-key-abc");
    }

    #[test]
    fn a_clone_shares_the_bytes() {
        let s = Secret::new("bedrock-api-key-abc");
        let c = s.clone();
        assert_eq!(c, s);
        assert!(std::ptr::eq(c.expose(), s.expose()));
    }
}
