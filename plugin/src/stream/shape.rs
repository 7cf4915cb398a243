//! What the shape readers of hot events ([`super::anthropic_text`], [`super::responses_text`],
//! [`super::openai_text`]) share: reading a compact JSON string, key, plain value, object or
//! list where one starts, moving past it; `None` for anything else.

use std::borrow::Cow;

use super::borrowed::Borrowed;

/// Reads the JSON string at the start of `rest` and moves past it; `None` when none starts
/// there or it is not valid JSON. A string with no escape and no control character (JSON's
/// rule for those) is borrowed as it stands, found with one `memchr`; one with a backslash is
/// read by `serde_json` (escapes, surrogate pairs, control characters refused).
pub fn string<'a>(rest: &mut &'a str) -> Option<Cow<'a, str>> {
    let body = rest.strip_prefix('"')?;
    let end = memchr::memchr2(b'"', b'\\', body.as_bytes())?;
    if body.as_bytes()[end] == b'"' {
        let text = &body[..end];
        if text.bytes().any(|b| b < 0x20) {
            return None;
        }
        *rest = &body[end + 1..];
        return Some(Cow::Borrowed(text));
    }
    let mut strings = serde_json::Deserializer::from_str(rest).into_iter::<Borrowed<'a>>();
    let text = strings.next()?.ok()?.0;
    *rest = &rest[strings.byte_offset()..];
    Some(text)
}

/// Moves past the value at the start of `rest`: a string, an integer, a literal or `[]`.
pub fn skip_value(rest: &mut &str) -> Option<()> {
    let literal = match rest.as_bytes().first()? {
        b'"' => return string(rest).map(drop),
        b't' => "true",
        b'f' => "false",
        b'n' => "null",
        b'[' => "[]",
        _ => return skip_integer(rest),
    };
    *rest = rest.strip_prefix(literal)?;
    Some(())
}

/// Moves past the integer at the start of `rest` (JSON's: no leading zeros); a fraction or
/// an exponent is not taken here.
fn skip_integer(rest: &mut &str) -> Option<()> {
    let unsigned = rest.strip_prefix('-').unwrap_or(rest);
    let digits = unsigned.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || (digits > 1 && unsigned.starts_with('0')) {
        return None;
    }
    let after = &unsigned[digits..];
    if after.starts_with(['.', 'e', 'E']) {
        return None;
    }
    *rest = after;
    Some(())
}

/// Reads the key at the start of `rest` (`"name":`, the name of plain ASCII letters, digits and
/// `_`) and moves past its colon; `None` for any other key (an escape, an empty name).
pub fn key<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let body = rest.strip_prefix('"')?;
    let len = body
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    if len == 0 {
        return None;
    }
    *rest = body[len..].strip_prefix("\":")?;
    Some(&body[..len])
}

/// A string or `null` (`None`), as the typed decoders' optional strings read.
pub fn opt_string<'a>(rest: &mut &'a str) -> Option<Option<Cow<'a, str>>> {
    match rest.strip_prefix("null") {
        Some(after) => {
            *rest = after;
            Some(None)
        }
        None => string(rest).map(Some),
    }
}

/// Marks a key as read; `None` if it was already (the typed decoders refuse a repeated key
/// they read).
pub fn once(seen: &mut bool) -> Option<()> {
    (!std::mem::replace(seen, true)).then_some(())
}

/// Reads the compact object at the start of `rest`, handing each member's key to `each`,
/// which must move past its value; moves past the closing brace.
pub fn members<'a>(
    rest: &mut &'a str,
    mut each: impl FnMut(&'a str, &mut &'a str) -> Option<()>,
) -> Option<()> {
    sequence(rest, b'{', b'}', |rest| {
        let name = key(rest)?;
        each(name, rest)
    })
}

/// Reads the compact list at the start of `rest`, `each` moving past one item at a time;
/// moves past the closing bracket.
pub fn items<'a>(rest: &mut &'a str, each: impl FnMut(&mut &'a str) -> Option<()>) -> Option<()> {
    sequence(rest, b'[', b']', each)
}

/// `open`, then nothing or items that `each` reads separated by commas, then `close`.
fn sequence<'a>(
    rest: &mut &'a str,
    open: u8,
    close: u8,
    mut each: impl FnMut(&mut &'a str) -> Option<()>,
) -> Option<()> {
    let (&first, after) = rest.as_bytes().split_first()?;
    if first != open {
        return None;
    }
    *rest = &rest[1..];
    if after.first() == Some(&close) {
        *rest = &rest[1..];
        return Some(());
    }
    loop {
        each(rest)?;
        match *rest.as_bytes().first()? {
            b',' => *rest = &rest[1..],
            b if b == close => {
                *rest = &rest[1..];
                return Some(());
            }
            _ => return None,
        }
    }
}

/// What the shape readers' property tests share: the values they build events from and the
/// one-byte edits they make to them.
#[cfg(test)]
pub(crate) mod strategies {
    use proptest::prelude::*;

    /// A plain JSON value: a short string (quotes, backslashes, a control character and a
    /// non-ASCII letter among its characters), an integer, a literal or `[]`.
    pub fn plain_value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z\"\\\u{1}é]{0,4}".prop_map(|s| serde_json::Value::from(s).to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            prop::sample::select(vec!["true", "false", "null", "[]"]).prop_map(String::from),
        ]
    }

    /// None, or one byte removed, doubled or replaced by one that matters to JSON.
    #[derive(Debug, Clone)]
    pub struct Edit {
        at: prop::sample::Index,
        how: u8,
        byte: u8,
    }

    impl Edit {
        /// `data` edited; `None` when the edit left it no longer UTF-8.
        pub fn apply(&self, data: &str) -> Option<String> {
            let mut data = data.as_bytes().to_vec();
            let at = self.at.index(data.len());
            match self.how {
                0 => {}
                1 => {
                    data.remove(at);
                }
                2 => data.insert(at, data[at]),
                _ => data[at] = self.byte,
            }
            String::from_utf8(data).ok()
        }
    }

    /// Any [`Edit`].
    pub fn edit() -> impl Strategy<Value = Edit> {
        (
            any::<prop::sample::Index>(),
            0u8..4,
            prop::sample::select(b" 0123456789\"\\{}[]:,-.enul".to_vec()),
        )
            .prop_map(|(at, how, byte)| Edit { at, how, byte })
    }
}

/// Each event of a scripted stream of the local server, whole and its `data:` (for the shape
/// readers' tests).
#[cfg(test)]
pub(crate) fn scripted_events(steps: Vec<mantle_mock_server::Step>) -> Vec<(String, String)> {
    steps
        .into_iter()
        .map(|step| {
            let mantle_mock_server::Step::Bytes(bytes) = step else {
                panic!("a text stream is bytes")
            };
            let event = String::from_utf8(bytes).unwrap();
            let data = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap()
                .to_string();
            (event, data)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &str) -> Option<(Cow<'_, str>, &str)> {
        let mut rest = input;
        string(&mut rest).map(|s| (s, rest))
    }

    #[test]
    fn plain_strings_borrow_and_escaped_ones_are_decoded() {
        assert_eq!(read(r#""abc"}"#), Some((Cow::Borrowed("abc"), "}")));
        assert_eq!(read(r#""""#), Some((Cow::Borrowed(""), "")));
        assert_eq!(read("\"é😀\",1"), Some((Cow::Borrowed("é😀"), ",1")));
        let (s, rest) = read(r#""a\"b\\c\n\u00e9\ud83d\ude00"]"#).unwrap();
        assert!(matches!(s, Cow::Owned(_)));
        assert_eq!((s.as_ref(), rest), ("a\"b\\c\né😀", "]"));
    }

    /// The keys of the object at the start of `input` and what follows it.
    fn keys(input: &str) -> Option<(Vec<&str>, &str)> {
        let mut rest = input;
        let mut names = Vec::new();
        members(&mut rest, |name, rest| {
            names.push(name);
            skip_value(rest)
        })?;
        Some((names, rest))
    }

    #[test]
    fn objects_and_lists_are_read_to_their_closer() {
        assert_eq!(keys("{}"), Some((vec![], "")));
        assert_eq!(
            keys(r#"{"a":1,"b_2":"x","c":[]},"#),
            Some((vec!["a", "b_2", "c"], ","))
        );
        for refused in [
            "",
            "[]",
            "{",
            r#"{"a":1,}"#,
            r#"{"a":1]"#,
            r#"{"a":1 }"#,
            r#"{,"a":1}"#,
            r#"{"a" :1}"#,
        ] {
            assert_eq!(keys(refused), None, "{refused:?}");
        }
        let mut count = 0;
        let mut rest = "[1,-2,true]!";
        assert_eq!(
            items(&mut rest, |rest| {
                count += 1;
                skip_value(rest)
            }),
            Some(())
        );
        assert_eq!((count, rest), (3, "!"));
        for refused in ["[1,]", "[1}", "{1]", "[1 ,2]"] {
            let mut rest = refused;
            assert_eq!(items(&mut rest, skip_value), None, "{refused:?}");
        }
    }

    #[test]
    fn what_json_refuses_is_refused() {
        for input in [
            "abc\"",
            "\"abc",
            "\"a\u{1}b\"",
            "\"a\tb\"",
            r#""a\qb""#,
            r#""\ud800""#,
            r#""a\"#,
        ] {
            assert_eq!(read(input), None, "{input:?}");
        }
    }
}
