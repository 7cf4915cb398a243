//! Size and nesting limits checked before any recursive parser runs.
//!
//! `json5` has no nesting limit, and every recursive parser (serde_json included) uses stack per
//! level: a config or request nested 20,000 deep overflows a small host thread's stack, which
//! `catch_unwind` cannot catch. So every text from outside (configs, requests, state blobs,
//! upstream JSON) goes through [`check_text`] first: a flat scan, no recursion, no allocation.

/// Deepest nesting of arrays and objects accepted in any JSON or JSON5 text.
pub const MAX_NESTING: usize = 64;
/// Largest plugin or provider config text.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;
/// Largest canonical request (inline base64 images make requests large).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;
/// Largest hot-swap state blob.
pub const MAX_STATE_BYTES: usize = 64 * 1024 * 1024;

/// Why a text was refused before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// More bytes than allowed.
    #[error("is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// The text's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Nested deeper than allowed.
    #[error("is nested deeper than the limit of {limit} levels of arrays/objects")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
}

/// Checks size, then nesting depth of a JSON or JSON5 text (strings and comments skipped).
pub fn check_text(text: &str, max_bytes: usize, max_depth: usize) -> Result<(), LimitError> {
    if text.len() > max_bytes {
        return Err(LimitError::TooLarge {
            size: text.len(),
            limit: max_bytes,
        });
    }
    if nesting_depth_exceeds(text.as_bytes(), max_depth) {
        return Err(LimitError::TooDeep { limit: max_depth });
    }
    Ok(())
}

/// Parses JSON after checking its nesting against [`MAX_NESTING`] (upstream bodies and events,
/// tool-call arguments): the only way this crate parses JSON it did not write.
pub fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    if nesting_depth_exceeds(text.as_bytes(), MAX_NESTING) {
        return Err(LimitError::TooDeep { limit: MAX_NESTING }.to_string());
    }
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// Like [`parse_json`], into a type that may borrow from `text` (typed decoding of hot stream
/// events without copying their strings).
pub fn parse_json_borrowed<'a, T: serde::Deserialize<'a>>(text: &'a str) -> Result<T, String> {
    if nesting_depth_exceeds(text.as_bytes(), MAX_NESTING) {
        return Err(LimitError::TooDeep { limit: MAX_NESTING }.to_string());
    }
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// How many `[` and `{` bytes `bytes` holds. Counted into a `u8` per block of 255 bytes, a
/// shape the compiler turns into SIMD compares (the `filter().count()` form it did not: 5
/// instructions per byte, a tenth of the plugin's cost per stream event).
fn openers(bytes: &[u8]) -> usize {
    bytes
        .chunks(255)
        .map(|block| {
            block.iter().fold(0u8, |n, &b| {
                n.wrapping_add(u8::from(b == b'[' || b == b'{'))
            }) as usize
        })
        .sum()
}

/// True when `[`/`{` nest deeper than `max` outside strings (`"…"`, `'…'`) and comments
/// (`//…`, `/*…*/`). Unbalanced input is left for the parser to report.
pub fn nesting_depth_exceeds(bytes: &[u8], max: usize) -> bool {
    // Depth cannot exceed the number of openers: most texts (every stream event) are decided
    // by this count alone.
    if openers(bytes) <= max {
        return false;
    }
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Code,
        Str(u8),
        Escape(u8),
        LineComment,
        BlockComment,
    }
    let mut state = State::Code;
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        state = match state {
            State::Code => match b {
                b'[' | b'{' => {
                    depth += 1;
                    if depth > max {
                        return true;
                    }
                    State::Code
                }
                b']' | b'}' => {
                    depth = depth.saturating_sub(1);
                    State::Code
                }
                b'"' | b'\'' => State::Str(b),
                b'/' if bytes.get(i + 1) == Some(&b'/') => {
                    i += 1;
                    State::LineComment
                }
                b'/' if bytes.get(i + 1) == Some(&b'*') => {
                    i += 1;
                    State::BlockComment
                }
                _ => State::Code,
            },
            State::Str(q) if b == b'\\' => State::Escape(q),
            State::Str(q) if b == q => State::Code,
            State::Str(q) | State::Escape(q) => State::Str(q),
            State::LineComment if b == b'\n' || b == b'\r' => State::Code,
            State::LineComment => State::LineComment,
            State::BlockComment if b == b'*' && bytes.get(i + 1) == Some(&b'/') => {
                i += 1;
                State::Code
            }
            State::BlockComment => State::BlockComment,
        };
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_only_code() {
        assert!(!nesting_depth_exceeds(b"[[1]]", 2));
        assert!(nesting_depth_exceeds(b"[[[1]]]", 2));
        assert!(!nesting_depth_exceeds(br#"{"a": "[[[[[", 'b': '{{{{'}"#, 1));
        assert!(!nesting_depth_exceeds(br#"["\"[[[["]"#, 1));
        assert!(!nesting_depth_exceeds(b"{ // [[[[\n a: /* {{{{ */ 1 }", 1));
        assert!(nesting_depth_exceeds(b"{ a: [ /* x */ [ ] ] }", 2));
        // Siblings do not add up: depth is the deepest path, not the count.
        assert!(!nesting_depth_exceeds(b"[[],[],[],[]]", 2));
    }

    /// The blocked count is exact, across block boundaries and in full blocks.
    #[test]
    fn openers_are_counted_exactly() {
        for n in [0, 1, 254, 255, 256, 510, 511, 1000] {
            assert_eq!(openers("{".repeat(n).as_bytes()), n);
            let mixed: String = (0..n).map(|i| ['[', 'x', '{', ']'][i % 4]).collect();
            let want = mixed.bytes().filter(|&b| b == b'[' || b == b'{').count();
            assert_eq!(openers(mixed.as_bytes()), want, "{n}");
        }
    }

    #[test]
    fn limits_are_exact() {
        let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
        assert_eq!(
            check_text(&deep(MAX_NESTING), usize::MAX, MAX_NESTING),
            Ok(())
        );
        assert_eq!(
            check_text(&deep(MAX_NESTING + 1), usize::MAX, MAX_NESTING),
            Err(LimitError::TooDeep { limit: MAX_NESTING })
        );
        assert_eq!(
            check_text("12345", 4, MAX_NESTING),
            Err(LimitError::TooLarge { size: 5, limit: 4 })
        );
        // 20,000 deep is refused without recursion (this runs on the test thread's stack).
        assert!(check_text(&"[".repeat(20_000), usize::MAX, MAX_NESTING).is_err());
    }
}
