//! An incremental Server-Sent Events parser with bounded memory.
//!
//! Bytes are fed as they arrive; complete events come out. Lines end with LF, CRLF or CR (a CR
//! at the end of a read waits for the next byte). `data:` lines of one event are joined with
//! `\n`; comment lines (`:`) are ignored; `event:` names the event. A line or an event larger
//! than the limit is an error instead of unbounded growth.

/// Default limit for one line or one event's data.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// One parsed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any (shared with the previous event of the same name: most
    /// streams repeat a few names, so naming an event costs no allocation).
    pub event: Option<std::sync::Arc<str>>,
    /// The joined `data:` lines.
    pub data: String,
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
    event: Option<std::sync::Arc<str>>,
    /// The last event name seen, reused while names repeat.
    last_name: Option<std::sync::Arc<str>>,
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
            event: None,
            last_name: None,
            data: String::new(),
            has_data: false,
            max,
        }
    }

    /// Feeds bytes; appends complete events to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let (start, i) = if self.buf.is_empty() {
            // Nothing pending: read the lines straight from the chunk and keep only its
            // unfinished last line (a stream between reads holds no copy of what it read).
            let (start, i) = self.lines(bytes, out)?;
            self.buf.extend_from_slice(&bytes[start..]);
            (start, i)
        } else {
            self.buf.extend_from_slice(bytes);
            // Lines are read in place (no copy per line): the buffer is moved out while they
            // are.
            let buf = std::mem::take(&mut self.buf);
            let scanned = self.lines(&buf, out);
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

    /// Handles every complete line of `buf` from `self.scanned` on; returns where the
    /// unconsumed rest starts and how far the buffer was searched.
    fn lines(&mut self, buf: &[u8], out: &mut Vec<SseEvent>) -> Result<(usize, usize), SseError> {
        let mut start = 0;
        let mut i = self.scanned;
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
            let line = std::str::from_utf8(&buf[start..line_end]).map_err(|_| SseError::Utf8)?;
            self.line(line, out)?;
            start = i + 1;
            i += 1;
        }
        Ok((start, buf.len()))
    }

    /// Ends the input: a final event without its blank line is still delivered.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.scanned = 0;
            let line = std::str::from_utf8(&rest)
                .map_err(|_| SseError::Utf8)?
                .trim_end_matches('\r')
                .to_string();
            self.line(&line, out)?;
        }
        self.dispatch(out);
        Ok(())
    }

    fn line(&mut self, line: &str, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.find(':') {
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
                let name = match &self.last_name {
                    Some(last) if **last == *value => last.clone(),
                    _ => {
                        let name: std::sync::Arc<str> = value.into();
                        self.last_name = Some(name.clone());
                        name
                    }
                };
                self.event = Some(name);
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.has_data {
            out.push(SseEvent {
                event: self.event.take(),
                data: std::mem::take(&mut self.data),
            });
        }
        self.event = None;
        self.has_data = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut p = SseParser::default();
        assert_eq!(
            p.feed(b"data: \xff\n", &mut Vec::new()),
            Err(SseError::Utf8)
        );
    }
}
