//! The host side of `json-lines`: lines of JSON framed and checked natively.
//!
//! A connector reading NDJSON hands the host a chunk of its bytes; the host
//! splits it into lines, checks that each is one JSON object (UTF-8, then
//! serde_json, the same checks the connector would make, at native speed
//! instead of several times slower in WebAssembly) and answers where each
//! line and each named top-level field is. The connector keeps the bytes and
//! decides what to keep.
//!
//! Nothing is granted: the call reads only what the guest passed in. What it
//! may cost is bounded: a chunk is at most [`MAX_CHUNK_BYTES`] and a field
//! list at most [`MAX_FIELDS`], and a chunk larger than [`INLINE_BYTES`] is
//! scanned on tokio's blocking pool, so one connector's long lines do not
//! hold a worker thread that other sessions are waiting on.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use wasmtime::component::HasData;

use crate::bindings::sluice::connector::json_lines::{Host, MalformedLine, Scanned};
use crate::bindings::ConnectorError;

/// The most bytes one `scan` takes (the file connector's longest record, 32
/// MiB, with room for what was read after it).
pub(crate) const MAX_CHUNK_BYTES: usize = 64 << 20;

/// The most fields one `scan` looks for.
pub(crate) const MAX_FIELDS: usize = 64;

/// Chunks up to this size are scanned on the calling thread.
const INLINE_BYTES: usize = 1 << 20;

/// The `json-lines` interface of one session (it holds no state).
pub(crate) struct JsonLinesView;

/// Links [`JsonLinesView`] into `add_to_linker`.
pub(crate) struct HasJsonLines;

impl HasData for HasJsonLines {
    type Data<'a> = JsonLinesView;
}

impl Host for JsonLinesView {
    async fn scan(
        &mut self,
        chunk: Vec<u8>,
        fields: Vec<String>,
        last: bool,
    ) -> wasmtime::Result<Result<Scanned, ConnectorError>> {
        if chunk.len() > MAX_CHUNK_BYTES {
            return Ok(Err(ConnectorError::InvalidRequest(format!(
                "json-lines: a chunk may take at most {} MiB; this one is {} bytes",
                MAX_CHUNK_BYTES >> 20,
                chunk.len()
            ))));
        }
        if fields.len() > MAX_FIELDS {
            return Ok(Err(ConnectorError::InvalidRequest(format!(
                "json-lines: at most {MAX_FIELDS} fields may be looked for; {} were named",
                fields.len()
            ))));
        }
        if chunk.len() <= INLINE_BYTES {
            return Ok(Ok(scan(&chunk, &fields, last)));
        }
        let scanned = tokio::task::spawn_blocking(move || scan(&chunk, &fields, last))
            .await
            .map_err(|e| wasmtime::Error::msg(format!("json-lines scan failed: {e}")))?;
        Ok(Ok(scanned))
    }
}

/// Frame `chunk` into lines and check each (see the WIT's `scan`). The
/// chunk is at most [`MAX_CHUNK_BYTES`], so its offsets fit in `u32`.
pub(crate) fn scan(chunk: &[u8], fields: &[String], last: bool) -> Scanned {
    let mut spans = Vec::new();
    let mut values = vec![None; fields.len()];
    let (mut at, mut line) = (0usize, 0u32);
    while at < chunk.len() {
        let end = match memchr::memchr(b'\n', &chunk[at..]) {
            Some(newline) => at + newline + 1,
            None if last => chunk.len(),
            None => break,
        };
        match check_line(&chunk[at..end], fields, &mut values) {
            Ok(None) => {}
            Ok(Some(text)) => {
                spans.extend([line, offset(at + text.start), offset(at + text.end)]);
                for value in &values {
                    spans.extend(match value {
                        Some(range) => [offset(at + range.start), offset(at + range.end)],
                        None => [0, 0],
                    });
                }
            }
            Err(message) => {
                return Scanned {
                    consumed: offset(at),
                    lines: line,
                    spans,
                    malformed: Some(MalformedLine {
                        line,
                        start: offset(at),
                        message,
                    }),
                };
            }
        }
        at = end;
        line += 1;
    }
    Scanned {
        consumed: offset(at),
        lines: line,
        spans,
        malformed: None,
    }
}

fn offset(at: usize) -> u32 {
    u32::try_from(at).expect("a chunk is bounded by MAX_CHUNK_BYTES")
}

/// Check one line (its newline included): `None` when blank, else where its
/// text is, with each field's value range (`values`, by position) — all
/// relative to the line's start.
fn check_line(
    line: &[u8],
    fields: &[String],
    values: &mut [Option<std::ops::Range<usize>>],
) -> Result<Option<std::ops::Range<usize>>, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("not UTF-8: {e}"))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let lead = trimmed.as_ptr() as usize - text.as_ptr() as usize;
    values.fill(None);
    let mut parser = serde_json::Deserializer::from_str(trimmed);
    Fields {
        names: fields,
        values,
        base: text.as_ptr() as usize,
    }
    .deserialize(&mut parser)
    .and_then(|()| parser.end())
    .map_err(|e| e.to_string())?;
    Ok(Some(lead..lead + trimmed.len()))
}

/// Visits one object, noting where the named fields' values are.
struct Fields<'n, 'v> {
    names: &'n [String],
    values: &'v mut [Option<std::ops::Range<usize>>],
    /// The address of the line's first byte.
    base: usize,
}

impl<'de> DeserializeSeed<'de> for Fields<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Fields<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key>()? {
            match self.names.iter().position(|name| *name == *key) {
                Some(at) => {
                    let raw: &RawValue = map.next_value()?;
                    let start = raw.get().as_ptr() as usize - self.base;
                    self.values[at] = Some(start..start + raw.get().len());
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// An object key, borrowed from the line when it has no escapes.
#[derive(serde::Deserialize)]
struct Key<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

#[cfg(test)]
mod tests {
    use super::*;

    fn names(fields: &[&str]) -> Vec<String> {
        fields.iter().map(|f| f.to_string()).collect()
    }

    /// The text of each span of `scanned`'s lines: the line, then its fields.
    fn texts<'c>(chunk: &'c [u8], scanned: &Scanned, width: usize) -> Vec<Vec<&'c str>> {
        scanned
            .spans
            .chunks(width)
            .map(|line| {
                line[1..]
                    .chunks(2)
                    .map(|r| std::str::from_utf8(&chunk[r[0] as usize..r[1] as usize]).unwrap())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn lines_and_fields_are_found_where_they_are() {
        let chunk = b"  {\"a\": 1, \"b\" : [1, {\"a\": 9}], \"c\":\"x\"}\r\n\n\t\n{\"a\":2,\"a\":  \"last\"}\n{\"b\":null}\n{\"e\\u0073c\":true}";
        let fields = names(&["a", "esc"]);
        let scanned = scan(chunk, &fields, false);
        assert_eq!(scanned.malformed, None);
        // The unterminated last line waits for more bytes.
        let unterminated = chunk.len() - "{\"e\\u0073c\":true}".len();
        assert_eq!(scanned.consumed as usize, unterminated);
        assert_eq!(scanned.lines, 5);
        assert_eq!(
            scanned
                .spans
                .chunks(7)
                .map(|line| line[0])
                .collect::<Vec<_>>(),
            [0, 3, 4]
        );
        assert_eq!(
            texts(chunk, &scanned, 7),
            [
                vec![r#"{"a": 1, "b" : [1, {"a": 9}], "c":"x"}"#, "1", ""],
                vec![r#"{"a":2,"a":  "last"}"#, r#""last""#, ""],
                vec![r#"{"b":null}"#, "", ""],
            ]
        );
        let whole = scan(chunk, &fields, true);
        assert_eq!(whole.consumed as usize, chunk.len());
        assert_eq!(whole.lines, 6);
        assert_eq!(
            texts(chunk, &whole, 7)[3],
            [r#"{"e\u0073c":true}"#, "", "true"]
        );
    }

    #[test]
    fn the_first_malformed_line_stops_the_scan_after_the_good_ones() {
        for (bad, message) in [
            (&b"{\"a\": 1,}"[..], "trailing comma"),
            (b"[1, 2]", "expected a JSON object"),
            (b"{\"a\": 1} {}", "trailing characters"),
            (b"{\"a\": \"\xff\"}", "not UTF-8"),
            (b"{\"a\": 01}", "invalid number"),
        ] {
            let mut chunk = b"{\"a\": 1}\n\n".to_vec();
            let start = chunk.len();
            chunk.extend_from_slice(bad);
            chunk.extend_from_slice(b"\n{\"a\": 3}\n");
            let scanned = scan(&chunk, &names(&["a"]), false);
            let malformed = scanned.malformed.expect("malformed");
            assert_eq!((malformed.line, malformed.start as usize), (2, start));
            assert!(
                malformed.message.contains(message),
                "{}: {}",
                String::from_utf8_lossy(bad),
                malformed.message
            );
            assert_eq!(scanned.consumed as usize, start);
            assert_eq!(scanned.lines, 2);
            assert_eq!(scanned.spans.len(), 5, "only the first line");
        }
    }

    #[test]
    fn an_empty_or_blank_chunk_has_no_lines_to_hand_out() {
        assert_eq!(scan(b"", &[], true).spans, Vec::<u32>::new());
        let blank = scan(b" \n\r\n", &[], false);
        assert_eq!((blank.consumed, blank.lines, blank.spans.len()), (4, 2, 0));
    }
}
