//! An incremental Server-Sent Events parser with bounded memory.
//!
//! Bytes are fed as they arrive; complete events come out. Lines end with LF, CRLF or CR (a CR
//! at the end of a read waits for the next byte). `data:` lines of one event are joined with
//! `\n`; comment lines (`:`) are ignored; `event:` names the event. A line or an event larger
//! than the limit is an error instead of unbounded growth.
//!
//! Events are handed out as views of the parser's own buffers ([`SseEventRef`]), which are
//! reused from one event to the next within a read: parsing an event allocates nothing.

/// Default limit for one line or one event's data.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// One parsed event, owned (what [`SseParser::feed`] collects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The joined `data:` lines.
    pub data: String,
}

impl SseEvent {
    /// The borrowed view the decoders read.
    pub fn view(&self) -> SseEventRef<'_> {
        SseEventRef {
            event: self.event.as_deref(),
            data: &self.data,
        }
    }
}

/// One parsed event, borrowed from the parser until the next one (what
/// [`SseParser::feed_each`] hands out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEventRef<'a> {
    /// The `event:` field, if any.
    pub event: Option<&'a str>,
    /// The joined `data:` lines.
    pub data: &'a str,
}

impl SseEventRef<'_> {
    /// An owned copy.
    pub fn to_owned(self) -> SseEvent {
        SseEvent {
            event: self.event.map(str::to_string),
            data: self.data.to_string(),
        }
    }
}

/// Why parsing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line or event exceeded the limit.
    #[error("SSE line or event exceeds {0} bytes")]
    TooLarge(usize),
    /// A line was not UTF-8.
    #[error("SSE line is not valid UTF-8")]
    Utf8,
}

/// The text of `buf` up to its last line end, as far as it is valid UTF-8 (a line reaching
/// past the valid part is the caller's error to report, after the lines before it).
fn complete_lines(buf: &[u8]) -> &str {
    let end = memchr::memrchr2(b'\n', b'\r', buf).map_or(0, |i| i + 1);
    // SIMD-checked: this runs over every byte of the body.
    match simdutf8::compat::from_utf8(&buf[..end]) {
        Ok(text) => text,
        Err(e) => simdutf8::compat::from_utf8(&buf[..e.valid_up_to()]).unwrap_or_default(),
    }
}

/// The parser state.
#[derive(Debug)]
pub struct SseParser {
    buf: Vec<u8>,
    /// How far `buf` was already searched for a line end (so a long line arriving in small
    /// chunks is scanned once, not from its start on every chunk).
    scanned: usize,
    /// Bytes examined in total (tests check that a long line is not rescanned).
    #[cfg(test)]
    examined: usize,
    /// The current event's name (`has_event`) and data (`has_data`): buffers reused from one
    /// event to the next within a read, and released between reads unless an event is still
    /// arriving (a stream waiting for its next read holds no buffer).
    event: String,
    has_event: bool,
    data: String,
    has_data: bool,
    max: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser with a size limit for lines and events.
    pub fn new(max: usize) -> Self {
        SseParser {
            buf: Vec::new(),
            scanned: 0,
            #[cfg(test)]
            examined: 0,
            event: String::new(),
            has_event: false,
            data: String::new(),
            has_data: false,
            max,
        }
    }

    /// Feeds bytes; appends owned copies of the complete events to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        self.feed_each(bytes, |e| out.push(e.to_owned()))
    }

    /// Feeds bytes; hands each complete event to `each`, in order, as a view that is valid
    /// until `each` returns. The events before an error are handed out first.
    pub fn feed_each(
        &mut self,
        bytes: &[u8],
        mut each: impl FnMut(SseEventRef<'_>),
    ) -> Result<(), SseError> {
        let fed = self.feed_lines(bytes, &mut each);
        self.release_idle_buffers();
        fed
    }

    fn feed_lines(
        &mut self,
        bytes: &[u8],
        each: &mut impl FnMut(SseEventRef<'_>),
    ) -> Result<(), SseError> {
        let (start, i) = if self.buf.is_empty() {
            // Nothing pending: read the lines straight from the chunk and keep only its
            // unfinished last line (a stream between reads holds no copy of what it read).
            let (start, i) = self.lines(bytes, each)?;
            self.buf.extend_from_slice(&bytes[start..]);
            (start, i)
        } else {
            self.buf.extend_from_slice(bytes);
            // Lines are read in place (no copy per line): the buffer is moved out while they
            // are.
            let buf = std::mem::take(&mut self.buf);
            let scanned = self.lines(&buf, each);
            self.buf = buf;
            let (start, i) = scanned?;
            self.buf.drain(..start);
            if self.buf.is_empty() {
                // Drop the capacity a large read left behind.
                self.buf = Vec::new();
            }
            (start, i)
        };
        #[cfg(test)]
        {
            self.examined += i - self.scanned.min(i);
        }
        self.scanned = i - start;
        if self.buf.len() > self.max {
            return Err(SseError::TooLarge(self.max));
        }
        Ok(())
    }

    /// Between reads, keeps only the buffers of an event still arriving.
    fn release_idle_buffers(&mut self) {
        if !self.has_data {
            self.data = String::new();
        }
        if !self.has_event {
            self.event = String::new();
        }
    }

    /// Handles every complete line of `buf` from `self.scanned` on; returns where the
    /// unconsumed rest starts and how far the buffer was searched.
    fn lines(
        &mut self,
        buf: &[u8],
        each: &mut impl FnMut(SseEventRef<'_>),
    ) -> Result<(usize, usize), SseError> {
        let mut start = 0;
        let mut i = self.scanned;
        // The complete lines' text, checked as UTF-8 once for the read rather than per line.
        let mut text: Option<&str> = None;
        while let Some(found) = memchr::memchr2(b'\n', b'\r', &buf[i..]) {
            i += found;
            let line_end = i;
            if buf[i] == b'\r' {
                if i + 1 == buf.len() {
                    // CR at the end: wait to see whether LF follows.
                    return Ok((start, i));
                }
                if buf[i + 1] == b'\n' {
                    i += 1;
                }
            }
            let text = *text.get_or_insert_with(|| complete_lines(buf));
            // Outside the valid text (or not on a character boundary): not UTF-8.
            let line = text.get(start..line_end).ok_or(SseError::Utf8)?;
            self.line(line, each)?;
            start = i + 1;
            i += 1;
        }
        Ok((start, buf.len()))
    }

    /// Ends the input: a final event without its blank line is still delivered.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        self.finish_each(|e| out.push(e.to_owned()))
    }

    /// Like [`SseParser::finish`], handing the last event to `each` as a view.
    pub fn finish_each(&mut self, mut each: impl FnMut(SseEventRef<'_>)) -> Result<(), SseError> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.scanned = 0;
            let line = std::str::from_utf8(&rest)
                .map_err(|_| SseError::Utf8)?
                .trim_end_matches('\r');
            self.line(line, &mut each)?;
        }
        self.dispatch(&mut each);
        self.release_idle_buffers();
        Ok(())
    }

    fn line(&mut self, line: &str, each: &mut impl FnMut(SseEventRef<'_>)) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(each);
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.bytes().position(|b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                if self.data.len() > self.max {
                    return Err(SseError::TooLarge(self.max));
                }
            }
            "event" => {
                self.event.clear();
                self.event.push_str(value);
                self.has_event = true;
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, each: &mut impl FnMut(SseEventRef<'_>)) {
        if self.has_data {
            each(SseEventRef {
                event: self.has_event.then_some(self.event.as_str()),
                data: &self.data,
            });
            self.data.clear();
        }
        self.has_event = false;
        self.has_data = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    fn parse_in_pieces(input: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            p.feed(chunk, &mut out).unwrap();
        }
        p.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn split_reads_crlf_comments_multiline_and_done() {
        let input = b": keep-alive\r\nevent: message_start\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata: x\rdata: y\r\rdata: [DONE]\n\n";
        for piece in 1..input.len() {
            let out = parse_in_pieces(input, piece);
            assert_eq!(
                out,
                vec![
                    SseEvent {
                        event: Some("message_start".into()),
                        data: "{\"a\":\n1}".into()
                    },
                    SseEvent {
                        event: None,
                        data: "x\ny".into()
                    },
                    SseEvent {
                        event: None,
                        data: "[DONE]".into()
                    },
                ],
                "piece size {piece}"
            );
        }
    }

    #[test]
    fn final_event_without_blank_line() {
        assert_eq!(
            parse_in_pieces(b"data: last", 3),
            vec![SseEvent {
                event: None,
                data: "last".into()
            }]
        );
    }

    #[test]
    fn oversized_line_or_event_is_an_error() {
        let mut p = SseParser::new(16);
        let mut out = Vec::new();
        assert_eq!(p.feed(&[b'a'; 17], &mut out), Err(SseError::TooLarge(16)));
        let mut p = SseParser::new(16);
        let r = p.feed(b"data: 0123456789\ndata: 0123456789\n", &mut out);
        assert_eq!(r, Err(SseError::TooLarge(16)));
    }

    #[test]
    fn a_long_line_in_small_chunks_is_scanned_once() {
        // Failed before the fix: every chunk rescanned the partial line from its start
        // (about n^2/2 bytes examined for an n-byte line).
        let line = format!("data: {}\n\n", "x".repeat(256 * 1024));
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for chunk in line.as_bytes().chunks(7) {
            p.feed(chunk, &mut out).unwrap();
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data.len(), 256 * 1024);
        assert!(
            p.examined <= line.len(),
            "examined {} of {}",
            p.examined,
            line.len()
        );
    }

    #[test]
    fn the_limit_is_exact() {
        // Surviving mutants: `*` for `+` in the default, `>=` for `>` in both checks.
        assert_eq!(DEFAULT_MAX_EVENT_BYTES, 1_048_576);
        let mut p = SseParser::new(16);
        let mut out = Vec::new();
        // A partial line of exactly the limit waits for more; one byte more is refused.
        assert_eq!(p.feed(&[b'a'; 16], &mut out), Ok(()));
        assert_eq!(p.feed(b"a", &mut out), Err(SseError::TooLarge(16)));
        // Event data of exactly the limit is delivered.
        let mut p = SseParser::new(16);
        assert_eq!(p.feed(b"data: 0123456789abcdef\n\n", &mut out), Ok(()));
        assert_eq!(
            out.last().map(|e| e.data.as_str()),
            Some("0123456789abcdef")
        );
        assert_eq!(
            p.feed(b"data: 0123456789abcdefg\n\n", &mut out),
            Err(SseError::TooLarge(16))
        );
    }

    /// Within a read the event buffers are reused (each view is gone before the next event is
    /// parsed into the same buffer); between reads the parser keeps only an event still
    /// arriving.
    #[test]
    fn buffers_are_reused_within_a_read_and_released_between_reads() {
        let mut p = SseParser::default();
        let mut seen = Vec::new();
        p.feed_each(
            b"event: a\ndata: one\n\nevent: b\ndata: two\n\ndata: three\n",
            |e| seen.push((e.event.map(str::to_string), e.data.to_string())),
        )
        .unwrap();
        assert_eq!(
            seen,
            [
                (Some("a".to_string()), "one".to_string()),
                (Some("b".to_string()), "two".to_string())
            ]
        );
        // "three" is still arriving (no blank line yet): its data buffer is kept; no name is
        // pending, so no name buffer is.
        assert!(p.data.capacity() > 0);
        assert_eq!((p.event.capacity(), p.buf.capacity()), (0, 0));
        seen.clear();
        p.feed_each(b"\n", |e| {
            seen.push((e.event.map(str::to_string), e.data.to_string()))
        })
        .unwrap();
        assert_eq!(seen, [(None, "three".to_string())]);
        assert_eq!(
            (p.data.capacity(), p.event.capacity(), p.buf.capacity()),
            (0, 0, 0)
        );
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut p = SseParser::default();
        assert_eq!(
            p.feed(b"data: \xff\n", &mut Vec::new()),
            Err(SseError::Utf8)
        );
    }

    /// The read is checked as UTF-8 once, yet each line is judged on its own: the events
    /// before a bad line come out, a character split between reads is whole, and a bad byte in
    /// a line still arriving fails only once that line is complete.
    #[test]
    fn utf8_is_judged_per_line() {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        assert_eq!(
            p.feed(b"data: a\n\ndata: b\xff\n\ndata: c\n\n", &mut out),
            Err(SseError::Utf8)
        );
        assert_eq!(data(&out), ["a"]);

        let mut p = SseParser::default();
        let mut out = Vec::new();
        let snow = "data: \u{2603}\n\n".as_bytes();
        p.feed(&snow[..7], &mut out).unwrap();
        p.feed(&snow[7..], &mut out).unwrap();
        assert_eq!(data(&out), ["\u{2603}"]);

        let mut p = SseParser::default();
        let mut out = Vec::new();
        p.feed(b"data: a\n\ndata: \xff", &mut out).unwrap();
        assert_eq!(data(&out), ["a"]);
        assert_eq!(p.feed(b"x\n", &mut out), Err(SseError::Utf8));
    }
}
