//! An incremental parser for `text/event-stream` (server-sent events), as LLM servers stream
//! tokens: fed the body's byte chunks as they arrive, with boundaries anywhere (inside a line,
//! inside `\r\n`, inside a UTF-8 character), it calls back once per dispatched event.
//!
//! It follows the WHATWG HTML "event stream interpretation" rules: lines end with `\r\n`, `\n`
//! or `\r`; a leading BOM is dropped; `:` starts a comment; `field: value` loses one space after
//! the colon; several `data` lines join with `\n`; a blank line dispatches the event, but only if
//! it had a `data` field; `id` persists across events; an unfinished event at the end of the
//! body is discarded. It does not reconnect (`retry` is only remembered) and knows nothing of
//! what the data means: [`super::backend`] does.
//!
//! The hot path allocates nothing once warm: an event whose single `data` line lies inside one
//! chunk is handed out borrowed from that chunk; only lines split across chunks and multi-line
//! data are copied, into buffers that keep their capacity.

use std::borrow::Cow;

use memchr::{memchr, memchr2};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One dispatched event. Borrowed from the parser or the chunk: copy what you keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event` field, or `message` when the event had none.
    pub event: &'a str,
    /// The `data` lines joined with `\n` (no trailing newline). Empty for `data:` alone.
    pub data: &'a str,
    /// The last `id` the stream set (it persists across events), or empty.
    pub id: &'a str,
}

/// The incremental parser of one response body. [`SseParser::reset`] makes it ready for the
/// next body while keeping its buffers.
#[derive(Debug, Default)]
pub struct SseParser {
    /// The unfinished last line of the previous chunk(s).
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` opening the next one belongs to that line end.
    skip_lf: bool,
    /// Whether the start of the body has been checked for a BOM.
    bom_done: bool,
    /// How many bytes of a possible leading BOM have been matched so far.
    bom_matched: usize,
    /// The pending event's data, when it could not stay borrowed (lines joined with `\n`).
    data: Vec<u8>,
    /// How many `data` lines the pending event has (0: no data field, nothing to dispatch).
    data_lines: u32,
    /// The pending event's type, when it could not stay borrowed; see `has_event`.
    event: Vec<u8>,
    has_event: bool,
    /// The last event ID buffer: persists across events, as the spec says.
    last_id: String,
    /// The last valid `retry` value, in ms (we never reconnect; kept for completeness).
    retry: Option<u64>,
}

/// Where a pending field's bytes live while a chunk is being parsed.
#[derive(Clone, Copy)]
enum Field<'c> {
    /// Not set.
    Unset,
    /// In the chunk being parsed (zero-copy).
    Chunk(&'c [u8]),
    /// In the parser's own buffer.
    Owned,
}

/// A line being processed: from the chunk (may be kept borrowed) or from the carried buffer.
#[derive(Clone, Copy)]
enum Line<'c, 'o> {
    Chunk(&'c [u8]),
    Carried(&'o [u8]),
}

impl<'c> Line<'c, '_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Line::Chunk(b) | Line::Carried(b) => b,
        }
    }
}

impl SseParser {
    /// A parser at the start of a body.
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Forget everything (including the last event ID) for a new body; keeps the buffers.
    pub fn reset(&mut self) {
        self.line.clear();
        self.skip_lf = false;
        self.bom_done = false;
        self.bom_matched = 0;
        self.data.clear();
        self.data_lines = 0;
        self.event.clear();
        self.has_event = false;
        self.last_id.clear();
        self.retry = None;
    }

    /// The reconnection time the stream asked for, in ms, if any.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Whether the body so far ended cleanly: no unfinished line, no undispatched event. At the
    /// end of a body, `false` means it was cut in the middle of an event (which is discarded).
    pub fn is_idle(&self) -> bool {
        self.line.is_empty() && self.data_lines == 0 && !self.has_event
    }

    /// Parse one chunk, calling `on_event` for each event it completes. An error from
    /// `on_event` stops parsing and is returned; the parser must then be [`reset`](Self::reset)
    /// before it is used again.
    pub fn feed<E>(
        &mut self,
        chunk: &[u8],
        mut on_event: impl FnMut(SseEvent<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rest = self.strip_bom(chunk);
        if rest.is_empty() {
            return Ok(());
        }
        if self.skip_lf {
            self.skip_lf = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        let mut data = if self.data_lines > 0 {
            Field::Owned
        } else {
            Field::Unset
        };
        let mut event = if self.has_event {
            Field::Owned
        } else {
            Field::Unset
        };
        // Finish the line carried over from the previous chunk, if any.
        if !self.line.is_empty() {
            let Some(end) = memchr2(b'\n', b'\r', rest) else {
                self.line.extend_from_slice(rest);
                return Ok(());
            };
            self.line.extend_from_slice(&rest[..end]);
            rest = self.skip_terminator(rest, end);
            let carried = std::mem::take(&mut self.line);
            let r = self.line_done(
                Line::Carried(&carried),
                &mut data,
                &mut event,
                &mut on_event,
            );
            self.line = carried;
            self.line.clear();
            r?;
        }
        while let Some(end) = memchr2(b'\n', b'\r', rest) {
            let line = &rest[..end];
            rest = self.skip_terminator(rest, end);
            self.line_done(Line::Chunk(line), &mut data, &mut event, &mut on_event)?;
        }
        self.line.extend_from_slice(rest);
        // What is still borrowed from this chunk must be copied before it goes away.
        if let Field::Chunk(d) = data {
            self.data.clear();
            self.data.extend_from_slice(d);
        }
        if let Field::Chunk(e) = event {
            self.event.clear();
            self.event.extend_from_slice(e);
            self.has_event = true;
        }
        Ok(())
    }

    /// Drop a leading BOM, even one split across chunks.
    fn strip_bom<'c>(&mut self, chunk: &'c [u8]) -> &'c [u8] {
        if self.bom_done {
            return chunk;
        }
        let matched = self.bom_matched;
        let want = &BOM[matched..];
        let n = want.len().min(chunk.len());
        if chunk[..n] == want[..n] {
            self.bom_matched += n;
            self.bom_done = self.bom_matched == BOM.len();
            return &chunk[n..];
        }
        // Not a BOM after all: the bytes matched so far were content.
        self.bom_done = true;
        if matched > 0 {
            self.line.extend_from_slice(&BOM[..matched]);
        }
        chunk
    }

    /// Skip the line terminator at `rest[end]`; a `\r` at the very end may pair with a `\n`
    /// in the next chunk.
    fn skip_terminator<'c>(&mut self, rest: &'c [u8], end: usize) -> &'c [u8] {
        if rest[end] == b'\r' {
            match rest.get(end + 1) {
                Some(b'\n') => &rest[end + 2..],
                Some(_) => &rest[end + 1..],
                None => {
                    self.skip_lf = true;
                    &rest[end + 1..]
                }
            }
        } else {
            &rest[end + 1..]
        }
    }

    /// Interpret one complete line.
    fn line_done<'c, E>(
        &mut self,
        line: Line<'c, '_>,
        data: &mut Field<'c>,
        event: &mut Field<'c>,
        on_event: &mut impl FnMut(SseEvent<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let bytes = line.bytes();
        if bytes.is_empty() {
            return self.dispatch(data, event, on_event);
        }
        if bytes[0] == b':' {
            return Ok(());
        }
        let (name, value_at) = match memchr(b':', bytes) {
            Some(colon) => {
                let v = colon + 1;
                let v = if bytes.get(v) == Some(&b' ') {
                    v + 1
                } else {
                    v
                };
                (&bytes[..colon], v)
            }
            None => (bytes, bytes.len()),
        };
        match name {
            b"data" => {
                match (*data, line) {
                    (Field::Unset, Line::Chunk(l)) => *data = Field::Chunk(&l[value_at..]),
                    (Field::Unset, Line::Carried(l)) => {
                        self.data.clear();
                        self.data.extend_from_slice(&l[value_at..]);
                        *data = Field::Owned;
                    }
                    (Field::Chunk(first), _) => {
                        self.data.clear();
                        self.data.extend_from_slice(first);
                        self.data.push(b'\n');
                        self.data.extend_from_slice(&bytes[value_at..]);
                        *data = Field::Owned;
                    }
                    (Field::Owned, _) => {
                        self.data.push(b'\n');
                        self.data.extend_from_slice(&bytes[value_at..]);
                    }
                }
                self.data_lines += 1;
            }
            b"event" => match line {
                Line::Chunk(l) => *event = Field::Chunk(&l[value_at..]),
                Line::Carried(l) => {
                    self.event.clear();
                    self.event.extend_from_slice(&l[value_at..]);
                    self.has_event = true;
                    *event = Field::Owned;
                }
            },
            b"id" => {
                let value = &bytes[value_at..];
                if memchr(0, value).is_none() {
                    self.last_id.clear();
                    self.last_id.push_str(&String::from_utf8_lossy(value));
                }
            }
            b"retry" => {
                let value = &bytes[value_at..];
                if !value.is_empty() && value.iter().all(u8::is_ascii_digit) {
                    // All ASCII digits, so valid UTF-8; only an overflow can fail.
                    self.retry = std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .or(self.retry);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A blank line: hand out the pending event (if it has data) and start a new one.
    fn dispatch<'c, E>(
        &mut self,
        data: &mut Field<'c>,
        event: &mut Field<'c>,
        on_event: &mut impl FnMut(SseEvent<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let result = if self.data_lines > 0 {
            let data_bytes: &[u8] = match *data {
                Field::Chunk(d) => d,
                Field::Owned => &self.data,
                Field::Unset => &[],
            };
            let event_bytes: &[u8] = match *event {
                Field::Chunk(e) => e,
                Field::Owned => &self.event,
                Field::Unset => &[],
            };
            let data_text = String::from_utf8_lossy(data_bytes);
            let event_text = match String::from_utf8_lossy(event_bytes) {
                t if t.is_empty() => Cow::Borrowed("message"),
                t => t,
            };
            on_event(SseEvent {
                event: &event_text,
                data: &data_text,
                id: &self.last_id,
            })
        } else {
            Ok(())
        };
        *data = Field::Unset;
        *event = Field::Unset;
        self.data.clear();
        self.data_lines = 0;
        self.event.clear();
        self.has_event = false;
        result
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// An owned copy of an event, for comparisons.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Owned {
        event: String,
        data: String,
        id: String,
    }

    fn owned(e: SseEvent<'_>) -> Owned {
        Owned {
            event: e.event.to_string(),
            data: e.data.to_string(),
            id: e.id.to_string(),
        }
    }

    fn parse_chunks(chunks: &[&[u8]]) -> (Vec<Owned>, bool) {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, |e| {
                out.push(owned(e));
                Ok::<_, ()>(())
            })
            .unwrap();
        }
        (out, p.is_idle())
    }

    fn parse(s: &str) -> Vec<Owned> {
        parse_chunks(&[s.as_bytes()]).0
    }

    fn ev(event: &str, data: &str, id: &str) -> Owned {
        Owned {
            event: event.into(),
            data: data.into(),
            id: id.into(),
        }
    }

    /// A deliberately naive reading of the spec over the whole text, to check the real parser.
    fn reference(bytes: &[u8]) -> Vec<Owned> {
        let text = String::from_utf8_lossy(bytes);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut lines = Vec::new();
        let mut cur = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    lines.push(std::mem::take(&mut cur));
                }
                '\n' => lines.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        let (mut data, mut event, mut id) = (String::new(), String::new(), String::new());
        let mut has_data = false;
        let mut out = Vec::new();
        for line in lines {
            if line.is_empty() {
                if has_data {
                    let name = if event.is_empty() { "message" } else { &event };
                    out.push(ev(name, data.strip_suffix('\n').unwrap_or(&data), &id));
                }
                data.clear();
                event.clear();
                has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (name, value) = match line.split_once(':') {
                Some((n, v)) => (n.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()),
                None => (line.clone(), String::new()),
            };
            match name.as_str() {
                "data" => {
                    data.push_str(&value);
                    data.push('\n');
                    has_data = true;
                }
                "event" => event = value,
                "id" if !value.contains('\0') => id = value,
                _ => {}
            }
        }
        out
    }

    #[test]
    fn openai_style_stream() {
        let s = "data: {\"a\":1}\n\ndata: {\"a\":2}\n\ndata: [DONE]\n\n";
        assert_eq!(
            parse(s),
            vec![
                ev("message", "{\"a\":1}", ""),
                ev("message", "{\"a\":2}", ""),
                ev("message", "[DONE]", "")
            ]
        );
    }

    #[test]
    fn data_without_space_and_with_two_spaces() {
        assert_eq!(parse("data:x\n\n"), vec![ev("message", "x", "")]);
        assert_eq!(parse("data:  x\n\n"), vec![ev("message", " x", "")]);
    }

    #[test]
    fn multi_line_data_joins_with_newline() {
        assert_eq!(
            parse("data: a\ndata: b\ndata:\n\n"),
            vec![ev("message", "a\nb\n", "")]
        );
    }

    #[test]
    fn all_line_endings() {
        let want = vec![ev("message", "a", ""), ev("message", "b", "")];
        assert_eq!(parse("data: a\r\n\r\ndata: b\r\n\r\n"), want);
        assert_eq!(parse("data: a\r\rdata: b\r\r"), want);
        assert_eq!(parse("data: a\n\ndata: b\r\n\r"), want);
    }

    #[test]
    fn comments_names_ids_and_empty_events() {
        let s = ": keep-alive\n\nevent: error\nid: 7\ndata: boom\n\ndata: after\n\nevent: x\n\n";
        assert_eq!(
            parse(s),
            vec![ev("error", "boom", "7"), ev("message", "after", "7")]
        );
    }

    #[test]
    fn data_field_without_colon_is_an_empty_line_of_data() {
        assert_eq!(parse("data\n\n"), vec![ev("message", "", "")]);
    }

    #[test]
    fn id_with_nul_is_ignored_and_retry_is_kept() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(
            b"id: 1\nretry: 250\ndata: a\n\nid: x\0y\nretry: 1s\ndata: b\n\n",
            |e| {
                out.push(owned(e));
                Ok::<_, ()>(())
            },
        )
        .unwrap();
        assert_eq!(out, vec![ev("message", "a", "1"), ev("message", "b", "1")]);
        assert_eq!(p.retry(), Some(250));
    }

    #[test]
    fn bom_is_dropped_even_when_split() {
        let mut d = SseParser::default();
        let mut n = 0;
        d.feed(b"\xEF\xBB\xBFdata: a\n\n", |_| {
            n += 1;
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(n, 1, "default() is new()");
        let (out, _) = parse_chunks(&[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"]);
        assert_eq!(out, vec![ev("message", "a", "")]);
        // A lone leading 0xEF that is not a BOM stays content.
        let (out, _) = parse_chunks(&[b"\xEF", b"data: a\n\n"]);
        assert_eq!(out.len(), 0, "`\\u{{fffd}}data` is not a data field");
    }

    #[test]
    fn crlf_split_between_chunks() {
        let (out, idle) = parse_chunks(&[b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(out, vec![ev("message", "a", ""), ev("message", "b", "")]);
        assert!(idle);
    }

    #[test]
    fn utf8_char_split_between_chunks() {
        let s = "data: héllo ✓\n\n".as_bytes();
        for cut in 0..s.len() {
            let (out, _) = parse_chunks(&[&s[..cut], &s[cut..]]);
            assert_eq!(out, vec![ev("message", "héllo ✓", "")], "cut at {cut}");
        }
    }

    #[test]
    fn unfinished_event_is_not_dispatched() {
        let (out, idle) = parse_chunks(&[b"data: a\n\ndata: b\n"]);
        assert_eq!(out, vec![ev("message", "a", "")]);
        assert!(!idle);
        let (_, idle) = parse_chunks(&[b"data: a\n\ndat"]);
        assert!(!idle);
    }

    #[test]
    fn callback_error_stops_parsing() {
        let mut p = SseParser::new();
        let mut n = 0;
        let r = p.feed(b"data: a\n\ndata: b\n\n", |_| {
            n += 1;
            Err("stop")
        });
        assert_eq!(r, Err("stop"));
        assert_eq!(n, 1);
    }

    #[test]
    fn reset_forgets_the_last_id() {
        let mut p = SseParser::new();
        p.feed(b"id: 5\ndata: a\n\ndata: b", |_| Ok::<_, ()>(()))
            .unwrap();
        p.reset();
        let mut out = Vec::new();
        p.feed(b"data: c\n\n", |e| {
            out.push(owned(e));
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(out, vec![ev("message", "c", "")]);
    }

    /// Pieces that stress every rule: terminators, comments, fields, odd bytes.
    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "data: ",
            "data:",
            "data",
            "event: ",
            "event:tok",
            "id: ",
            "id:9",
            "retry: 5",
            ":",
            ": ping",
            "x",
            "{\"t\":\"é\"}",
            "✓",
            " ",
            "\n",
            "\r",
            "\r\n",
            "\n\n",
            "\r\n\r\n",
            "\u{feff}",
            "\0",
            "[DONE]",
        ])
    }

    proptest! {
        #[test]
        fn any_split_gives_the_events_of_the_whole(
            pieces in prop::collection::vec(piece(), 0..40),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let whole: Vec<u8> = pieces.concat().into_bytes();
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(whole.len() + 1)).collect();
            at.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut prev = 0;
            for c in at {
                chunks.push(&whole[prev..c]);
                prev = c;
            }
            chunks.push(&whole[prev..]);
            let (all, idle_all) = parse_chunks(&[&whole]);
            let (split, idle_split) = parse_chunks(&chunks);
            prop_assert_eq!(&all, &split);
            prop_assert_eq!(idle_all, idle_split);
            prop_assert_eq!(&all, &reference(&whole));
        }

        #[test]
        fn byte_by_byte_equals_whole(pieces in prop::collection::vec(piece(), 0..30)) {
            let whole: Vec<u8> = pieces.concat().into_bytes();
            let chunks: Vec<&[u8]> = whole.chunks(1).collect();
            prop_assert_eq!(parse_chunks(&[&whole]).0, parse_chunks(&chunks).0);
        }
    }
}
