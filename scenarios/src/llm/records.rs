//! An incremental splitter for streams of JSON records separated by a delimiter byte: vLLM's
//! legacy `api_server.py` (`/generate` with `"stream": true`) and newline-delimited JSON.
//!
//! vLLM's demo server wrote each record as `json.dumps(ret) + "\0"` until mid-2024 and as
//! `json.dumps(ret) + "\n"` since (vllm/entrypoints/api_server.py); JSON text never holds a raw
//! NUL or newline, so treating both bytes as delimiters reads either version, and NDJSON too.
//! A `\r` before the delimiter is dropped and empty records are skipped. Like
//! [`super::sse::SseParser`], records inside one chunk are handed out borrowed from it.

use memchr::memchr2;

/// The splitter of one response body.
#[derive(Debug, Default)]
pub struct RecordSplitter {
    /// The unfinished last record of the previous chunk(s).
    partial: Vec<u8>,
}

impl RecordSplitter {
    /// A splitter at the start of a body.
    pub fn new() -> RecordSplitter {
        RecordSplitter::default()
    }

    /// Forget any unfinished record; keeps the buffer.
    pub fn reset(&mut self) {
        self.partial.clear();
    }

    /// Whether no unfinished record is pending.
    pub fn is_idle(&self) -> bool {
        self.partial.is_empty()
    }

    /// Split one chunk, calling `on_record` for each complete record. An error from
    /// `on_record` stops splitting and is returned; [`reset`](Self::reset) before reuse.
    pub fn feed<E>(
        &mut self,
        chunk: &[u8],
        mut on_record: impl FnMut(&str) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rest = chunk;
        if !self.partial.is_empty() {
            let Some(end) = memchr2(b'\0', b'\n', rest) else {
                self.partial.extend_from_slice(rest);
                return Ok(());
            };
            self.partial.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let r = emit(&self.partial, &mut on_record);
            self.partial.clear();
            r?;
        }
        while let Some(end) = memchr2(b'\0', b'\n', rest) {
            emit(&rest[..end], &mut on_record)?;
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    /// The body ended: a last record without a delimiter (allowed in NDJSON) is handed out.
    pub fn finish<E>(&mut self, mut on_record: impl FnMut(&str) -> Result<(), E>) -> Result<(), E> {
        let r = emit(&self.partial, &mut on_record);
        self.partial.clear();
        r
    }
}

fn emit<E>(record: &[u8], on_record: &mut impl FnMut(&str) -> Result<(), E>) -> Result<(), E> {
    let record = record.strip_suffix(b"\r").unwrap_or(record);
    if record.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    on_record(&String::from_utf8_lossy(record))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = RecordSplitter::new();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |r| {
                out.push(r.to_string());
                Ok::<_, ()>(())
            })
            .unwrap();
        }
        s.finish(|r| {
            out.push(r.to_string());
            Ok::<_, ()>(())
        })
        .unwrap();
        out
    }

    #[test]
    fn nul_and_newline_delimiters() {
        let want = vec![
            r#"{"text":["a"]}"#.to_string(),
            r#"{"text":["ab"]}"#.to_string(),
        ];
        assert_eq!(split(&[b"{\"text\":[\"a\"]}\0{\"text\":[\"ab\"]}\0"]), want);
        assert_eq!(split(&[b"{\"text\":[\"a\"]}\n{\"text\":[\"ab\"]}\n"]), want);
        assert_eq!(
            split(&[b"{\"text\":[\"a\"]}\r\n\r\n{\"text\":[\"ab\"]}"]),
            want
        );
    }

    #[test]
    fn record_split_inside_a_utf8_char() {
        let s = "{\"t\":\"✓\"}\0".as_bytes();
        for cut in 0..s.len() {
            assert_eq!(
                split(&[&s[..cut], &s[cut..]]),
                vec!["{\"t\":\"✓\"}"],
                "cut {cut}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_split_gives_the_records_of_the_whole(
            pieces in prop::collection::vec(
                prop::sample::select(vec!["{\"a\":1}", "é", "x", "\0", "\n", "\r\n", " "]), 0..40),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let whole = pieces.concat().into_bytes();
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(whole.len() + 1)).collect();
            at.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut prev = 0;
            for c in at {
                chunks.push(&whole[prev..c]);
                prev = c;
            }
            chunks.push(&whole[prev..]);
            prop_assert_eq!(split(&[&whole]), split(&chunks));
        }
    }
}
