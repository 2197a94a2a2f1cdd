//! NDJSON, one object per line, read two ways: a whole record per line
//! (parsed here, for a projection or a sort), or — when the line itself is
//! the record and only a filter's fields are needed — a chunk at a time,
//! checked by the host at native speed (`json-lines.scan`), with only the
//! filtered fields built here.

use std::io::{BufRead, Read};
use std::ops::Range;

use serde_json::{Map, Value};
use sluice_sdk::json_lines::{self, Scanned};
use sluice_sdk::query::Predicate;
use sluice_sdk::Result;

use crate::format::{
    malformed, read_failed, record_too_long, Position, RowReader, MAX_RECORD_BYTES,
};

/// How many bytes are read for each chunk the host checks: small enough
/// that the chunk is read, copied to the host and scanned while it is still
/// in the core's cache (chunks of 1 MiB measured about a fifth slower).
const READ_AHEAD: usize = 64 << 10;

pub struct NdjsonReader {
    path: String,
    input: Box<dyn BufRead>,
    /// Where the line after the last one handed out starts.
    pos: Position,
    /// The line `next_row` read last (whole records).
    buf: String,
    /// When set, lines are checked by the host a chunk at a time and only
    /// these fields are built, into `slots` (by position; `None` when the
    /// line does not have the field), reused from line to line.
    keep: Option<Vec<String>>,
    slots: Vec<Option<Value>>,
    chunk: Chunk,
}

/// Bytes read ahead of the lines handed out, and what the host found in them.
struct Chunk {
    bytes: Vec<u8>,
    /// Where `bytes[0]` is in the input.
    base: Position,
    scanned: Scanned,
    /// The next of `scanned`'s lines to hand out.
    next: usize,
    /// Where the text of the line handed out last is in `bytes`.
    current: Range<usize>,
    /// The input has no more bytes.
    ended: bool,
}

fn nothing_scanned() -> Scanned {
    Scanned {
        consumed: 0,
        lines: 0,
        spans: Vec::new(),
        malformed: None,
    }
}

impl NdjsonReader {
    pub fn new(path: &str, input: Box<dyn BufRead>, from: Position) -> Self {
        Self {
            path: path.to_string(),
            input,
            pos: from,
            buf: String::new(),
            keep: None,
            slots: Vec::new(),
            chunk: Chunk {
                bytes: Vec::new(),
                base: from,
                scanned: nothing_scanned(),
                next: 0,
                current: 0..0,
                ended: false,
            },
        }
    }

    /// Read the next line that is not blank into `buf`; where it starts, or
    /// `None` at the end.
    fn next_line(&mut self) -> Result<Option<Position>> {
        loop {
            self.buf.clear();
            let n = (&mut self.input)
                .take(MAX_RECORD_BYTES + 1)
                .read_line(&mut self.buf)
                .map_err(|e| read_failed(&self.path, self.pos, e))?;
            if n == 0 {
                return Ok(None);
            }
            if n as u64 > MAX_RECORD_BYTES {
                return Err(record_too_long(&self.path, self.pos));
            }
            let line = self.pos;
            self.pos.offset += n as u64;
            self.pos.line += 1;
            if !self.buf.trim().is_empty() {
                return Ok(Some(line));
            }
        }
    }

    /// Hand out the next line the host checked: its kept fields built into
    /// `slots`, `pos` moved past it. `false` at the end of the input; the
    /// malformed line's error once the good lines before it are handed out.
    fn next_scanned(&mut self) -> Result<bool> {
        let kept = self.slots.len();
        loop {
            let chunk = &mut self.chunk;
            if let Some(line) = json_lines::line_at(&chunk.scanned, kept, chunk.next) {
                chunk.next += 1;
                let at = Position {
                    offset: chunk.base.offset + line.text.start as u64,
                    line: chunk.base.line + u64::from(line.index),
                };
                if line.text.len() as u64 > MAX_RECORD_BYTES {
                    return Err(record_too_long(&self.path, at));
                }
                // The next line starts past this one's newline.
                let consumed = chunk.scanned.consumed as usize;
                let after = chunk.bytes[line.text.end..consumed]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(consumed, |newline| line.text.end + newline + 1);
                for (field, slot) in self.slots.iter_mut().enumerate() {
                    *slot = match line.field(field) {
                        Some(range) => Some(
                            field_value(&chunk.bytes[range])
                                .map_err(|e| malformed(&self.path, at, e))?,
                        ),
                        None => None,
                    };
                }
                // Past the line only once it is good: a checkpoint never skips a bad one.
                self.pos = Position {
                    offset: chunk.base.offset + after as u64,
                    line: at.line + 1,
                };
                chunk.current = line.text.clone();
                return Ok(true);
            }
            if let Some(bad) = &chunk.scanned.malformed {
                let at = Position {
                    offset: chunk.base.offset + u64::from(bad.start),
                    line: chunk.base.line + u64::from(bad.line),
                };
                return Err(malformed(&self.path, at, &bad.message));
            }
            if !self.refill()? {
                return Ok(false);
            }
        }
    }

    /// Drop the lines handed out, read more and have the host check the
    /// whole lines read so far; `false` at the end of the input.
    fn refill(&mut self) -> Result<bool> {
        let Self {
            chunk,
            input,
            keep,
            path,
            pos,
            ..
        } = self;
        let fields = keep.as_deref().unwrap_or_default();
        let consumed = chunk.scanned.consumed as usize;
        chunk.bytes.drain(..consumed);
        chunk.base = Position {
            offset: chunk.base.offset + consumed as u64,
            line: chunk.base.line + u64::from(chunk.scanned.lines),
        };
        chunk.scanned = nothing_scanned();
        chunk.next = 0;
        *pos = chunk.base;
        loop {
            if chunk.ended {
                if chunk.bytes.is_empty() {
                    return Ok(false);
                }
                chunk.scanned = json_lines::scan(&chunk.bytes, fields, true)?;
                return Ok(true);
            }
            // What is kept from before holds no newline: look only in what is new.
            let searched = chunk.bytes.len();
            // Straight into the chunk: a read as large as the input's own
            // buffer passes it by once it is empty, saving a copy of each byte.
            let mut filled = searched;
            chunk.bytes.resize(searched + READ_AHEAD, 0);
            while filled < chunk.bytes.len() {
                match input.read(&mut chunk.bytes[filled..]) {
                    Ok(0) => {
                        chunk.ended = true;
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        chunk.bytes.truncate(filled);
                        return Err(read_failed(path, chunk.base, e));
                    }
                }
            }
            chunk.bytes.truncate(filled);
            if chunk.ended {
                continue;
            }
            match chunk.bytes[searched..].iter().rposition(|&b| b == b'\n') {
                Some(newline) => {
                    let whole = searched + newline + 1;
                    chunk.scanned = json_lines::scan(&chunk.bytes[..whole], fields, false)?;
                    return Ok(true);
                }
                None if chunk.bytes.len() as u64 > MAX_RECORD_BYTES => {
                    return Err(record_too_long(path, chunk.base));
                }
                None => {}
            }
        }
    }
}

/// A kept field's value from its JSON text, which the host checked: small
/// integers directly, the rest through serde_json.
fn field_value(text: &[u8]) -> serde_json::Result<Value> {
    match small_integer(text) {
        Some(n) => Ok(Value::from(n)),
        None => serde_json::from_slice(text),
    }
}

/// `text` as an integer when it is one of at most 18 digits (no `-0`, which
/// JSON reads as a float).
fn small_integer(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0i64, |n, digit| n * 10 + i64::from(digit - b'0'));
    match (negative, n) {
        (true, 0) => None,
        (true, n) => Some(-n),
        (false, n) => Some(n),
    }
}

impl RowReader for NdjsonReader {
    fn next_row(&mut self) -> Result<Option<Value>> {
        if self.keep.is_some() {
            if !self.next_scanned()? {
                return Ok(None);
            }
            let keep = self.keep.as_deref().unwrap_or_default();
            let object: Map<String, Value> = keep
                .iter()
                .zip(self.slots.iter_mut())
                .filter_map(|(name, value)| Some((name.clone(), value.take()?)))
                .collect();
            return Ok(Some(Value::Object(object)));
        }
        let Some(line) = self.next_line()? else {
            return Ok(None);
        };
        let value: Value =
            serde_json::from_str(self.buf.trim()).map_err(|e| malformed(&self.path, line, e))?;
        if !value.is_object() {
            return Err(malformed(&self.path, line, "expected a JSON object"));
        }
        Ok(Some(value))
    }

    fn checkpoint(&self) -> String {
        self.pos.to_checkpoint()
    }

    fn source_text(&self) -> Option<&str> {
        if self.keep.is_some() {
            // The host checked that the line is UTF-8.
            return std::str::from_utf8(&self.chunk.bytes[self.chunk.current.clone()]).ok();
        }
        Some(self.buf.trim())
    }

    /// Lines are checked by the host from here on, and only `fields` are
    /// built (each once). More fields than the host looks for at once leave
    /// the reader parsing whole lines itself.
    fn keep_only(&mut self, mut fields: Vec<String>) {
        fields.sort();
        fields.dedup();
        if fields.len() > json_lines::MAX_FIELDS {
            return;
        }
        self.slots = vec![None; fields.len()];
        self.keep = Some(fields);
    }

    fn matches_in_place(&self) -> bool {
        self.keep.is_some()
    }

    /// Only the kept fields are built, into slots reused from line to line.
    fn next_matches(&mut self, predicate: &Predicate) -> Result<Option<bool>> {
        if self.keep.is_none() {
            return Ok(self.next_row()?.map(|row| predicate.matches(&row)));
        }
        if !self.next_scanned()? {
            return Ok(None);
        }
        let (keep, slots) = (self.keep.as_deref().unwrap_or_default(), &self.slots);
        Ok(Some(predicate.matches_fields(|field| {
            keep.iter()
                .position(|kept| kept == field)
                .and_then(|at| slots[at].as_ref())
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_integers_are_read_as_json_reads_them() {
        for text in [
            "0",
            "7",
            "-12",
            "123456789012345678",
            "-0",
            "1234567890123456789",
            "1.5",
            "1e3",
            "\"9\"",
        ] {
            let fast = small_integer(text.as_bytes()).map(Value::from);
            let parsed: Value = serde_json::from_str(text).unwrap();
            if let Some(fast) = fast {
                assert_eq!(fast, parsed, "{text}");
            }
            assert_eq!(field_value(text.as_bytes()).unwrap(), parsed, "{text}");
        }
        assert_eq!(small_integer(b"-0"), None);
        assert_eq!(small_integer(b"1234567890123456789"), None);
    }
}
