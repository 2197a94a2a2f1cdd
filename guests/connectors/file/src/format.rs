//! File formats: detection, incremental decoding with byte-offset positions, encoding.

use std::io::{self, BufRead, BufReader, Read};

use serde::Deserialize;
use serde_json::{Map, Value};
use sluice_sdk::query::Predicate;
use sluice_sdk::{io_error, ConnectorError, Result};

use crate::compression::Compression;

/// The record encodings the connector reads and writes: `csv` (comma- or
/// `delimiter`-separated values with a header row), `json` (an array of
/// objects), `ndjson` (one object per line) and `parquet`.
// The variants carry no doc comments: with them, the derived schema would be a
// `oneOf` of constants, whose error names no allowed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Json,
    Ndjson,
    Parquet,
}

/// CSV options from the config.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(default, deny_unknown_fields)]
pub struct CsvOptions {
    /// Field delimiter, one ASCII character.
    pub delimiter: char,
    /// Turn numbers, booleans and empty cells into typed JSON instead of strings.
    pub infer_types: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: ',',
            infer_types: false,
        }
    }
}

impl CsvOptions {
    pub fn delimiter_byte(&self) -> Result<u8> {
        u8::try_from(self.delimiter)
            .ok()
            .filter(u8::is_ascii)
            .ok_or_else(|| {
                ConnectorError::InvalidConfig(format!(
                    "field `csv.delimiter`: `{}` is not a single ASCII character",
                    self.delimiter
                ))
            })
    }
}

/// How a file is encoded: its format and its compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    pub format: Format,
    pub compression: Compression,
}

/// Where a file's bytes come from: a file in a mount, or an object in a
/// bucket. Offsets count the stored (possibly compressed) bytes.
pub trait Source {
    /// How errors name it (`/data/a.csv`, `s3://bucket/a.csv`).
    fn name(&self) -> &str;
    /// Up to `len` bytes from the start, for detecting the encoding.
    fn head(&self, len: usize) -> Result<Vec<u8>>;
    /// The stored bytes from `offset` on; an offset past the end is
    /// `invalid-request` ([`past_end`]).
    fn open_at(&self, offset: u64) -> Result<Box<dyn Read>>;
    /// The stored size in bytes.
    fn size(&self) -> Result<u64>;
    /// Exactly `len` bytes from `offset` (which with `len` must lie within
    /// the size); every range read from one source is of the same version.
    fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// The same source, owned.
    fn clone_box(&self) -> Box<dyn Source>;
}

/// The error for a checkpoint beyond the end of `name` (`size` bytes).
pub fn past_end(name: &str, offset: u64, size: u64) -> ConnectorError {
    ConnectorError::InvalidRequest(format!(
        "checkpoint at byte {offset} is past the end of `{name}` ({size} bytes)"
    ))
}

/// The `len` bytes `reader` yields, which start at `offset` of `name`;
/// fewer is the [`past_end`] error.
pub fn read_exactly(name: &str, reader: impl Read, offset: u64, len: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    reader
        .take(len)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(name, e))?;
    let got = bytes.len() as u64;
    if got < len {
        return Err(past_end(name, offset + len, offset + got));
    }
    Ok(bytes)
}

/// Work out a file's encoding from its extension, then from its first bytes.
pub fn detect(source: &dyn Source, forced: Option<Format>) -> Result<Encoding> {
    let lower = source.name().to_ascii_lowercase();
    let (by_name, stem) = Compression::by_extension(&lower);
    let head = source.head(512)?;
    let compression = match by_name {
        Compression::None => Compression::by_magic(&head),
        named => named,
    };
    let by_ext = if stem.ends_with(".csv") || stem.ends_with(".tsv") {
        Some(Format::Csv)
    } else if stem.ends_with(".parquet") || stem.ends_with(".parq") {
        Some(Format::Parquet)
    } else if stem.ends_with(".ndjson") || stem.ends_with(".jsonl") {
        Some(Format::Ndjson)
    } else if stem.ends_with(".json") {
        Some(Format::Json)
    } else {
        None
    };
    let format = match forced.or(by_ext) {
        Some(format) => format,
        None if compression == Compression::None
            && head.starts_with(crate::parquet_file::MAGIC) =>
        {
            Format::Parquet
        }
        None => sniff(compression, &head),
    };
    if format == Format::Parquet && compression != Compression::None {
        return Err(ConnectorError::Unsupported(format!(
            "`{}` is a {compression:?}-compressed Parquet file; Parquet compresses its own pages, so store it uncompressed",
            source.name()
        )));
    }
    Ok(Encoding {
        format,
        compression,
    })
}

/// Fill `buf` from `reader` as far as it goes; how many bytes it holds.
pub fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn sniff(compression: Compression, head: &[u8]) -> Format {
    let mut decoded = [0u8; 512];
    let n = read_up_to(&mut compression.decoder(Box::new(head)), &mut decoded).unwrap_or(0);
    let bytes = &decoded[..n];
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => Format::Json,
        Some(b'{') => Format::Ndjson,
        _ => Format::Csv,
    }
}

/// Open `source` for reading from `offset` in the decoded bytes,
/// decompressing when needed (a compressed file is decoded from its start).
pub fn open(source: &dyn Source, encoding: Encoding, offset: u64) -> Result<Box<dyn BufRead>> {
    if encoding.compression == Compression::None {
        return Ok(Box::new(BufReader::with_capacity(
            64 * 1024,
            source.open_at(offset)?,
        )));
    }
    // Each decoder buffers its compressed input itself.
    let mut reader: Box<dyn BufRead> = Box::new(BufReader::with_capacity(
        64 * 1024,
        encoding.compression.decoder(source.open_at(0)?),
    ));
    skip(source.name(), &mut reader, offset)?;
    Ok(reader)
}

/// A position in the decoded byte stream: the offset of the next unread
/// record and its line number (1-based). Encoded as a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub offset: u64,
    pub line: u64,
}

impl Position {
    pub const START: Position = Position { offset: 0, line: 1 };

    pub fn to_checkpoint(self) -> String {
        format!("byte:{}:line:{}", self.offset, self.line)
    }

    pub fn from_checkpoint(text: &str) -> Result<Self> {
        let bad = || {
            ConnectorError::InvalidRequest(format!(
                "checkpoint `{text}` was not issued by the file connector"
            ))
        };
        let rest = text.strip_prefix("byte:").ok_or_else(bad)?;
        let (offset, line) = rest.split_once(":line:").ok_or_else(bad)?;
        Ok(Self {
            offset: offset.parse().map_err(|_| bad())?,
            line: line.parse().map_err(|_| bad())?,
        })
    }
}

/// Reads one record at a time and knows the position after it.
pub trait RowReader {
    /// The next record, or `None` at the end of the file.
    fn next_row(&mut self) -> Result<Option<Value>>;
    /// The checkpoint just after the last record returned.
    fn checkpoint(&self) -> String;
    /// Records need only these top-level fields (a projection): readers
    /// that store columns apart read only these. Others ignore it.
    fn project(&mut self, _fields: Vec<String>) {}
    /// The last record's own JSON text, when it stands for the record as is
    /// (an NDJSON line): passing it on saves serializing the record again.
    fn source_text(&self) -> Option<&str> {
        None
    }
    /// Read only these top-level fields of each record (plus `source_text`
    /// for the whole): enough to filter, much less to build. Readers that
    /// cannot skip fields ignore it.
    fn keep_only(&mut self, _fields: Vec<String>) {}
    /// Whether [`RowReader::next_matches`] decides without building the
    /// record, whose `source_text` then stands for it.
    fn matches_in_place(&self) -> bool {
        false
    }
    /// Read the next record and say whether it matches `predicate`; `None`
    /// at the end of the file.
    fn next_matches(&mut self, predicate: &Predicate) -> Result<Option<bool>> {
        Ok(self.next_row()?.map(|row| predicate.matches(&row)))
    }
}

/// Open a reader for `source` that starts at `checkpoint` (or the start).
pub fn reader(
    source: &dyn Source,
    encoding: Encoding,
    csv: &CsvOptions,
    checkpoint: Option<&str>,
) -> Result<Box<dyn RowReader>> {
    let from = match checkpoint {
        Some(text) if encoding.format != Format::Parquet => Position::from_checkpoint(text)?,
        _ => Position::START,
    };
    Ok(match encoding.format {
        Format::Parquet => Box::new(crate::parquet_file::ParquetReader::open(
            source, checkpoint,
        )?),
        Format::Csv => Box::new(CsvReader::new(source, encoding, csv, from)?),
        Format::Ndjson => {
            let input = open(source, encoding, from.offset)?;
            Box::new(crate::ndjson::NdjsonReader::new(source.name(), input, from))
        }
        Format::Json => Box::new(JsonArrayReader::new(source, encoding, from)?),
    })
}

fn skip(path: &str, input: &mut dyn BufRead, bytes: u64) -> Result<()> {
    let mut skipped = 0;
    while skipped < bytes {
        let at = Position {
            offset: skipped,
            line: 0,
        };
        let available = input
            .fill_buf()
            .map_err(|e| read_failed(path, at, e))?
            .len();
        if available == 0 {
            return Err(past_end(path, bytes, skipped));
        }
        let take = available.min(usize::try_from(bytes - skipped).unwrap_or(usize::MAX));
        input.consume(take);
        skipped += take as u64;
    }
    Ok(())
}

/// `invalid-request` naming the file, the line (when known: not 0) and the
/// byte offset in the decoded content where the bad record starts.
pub(crate) fn malformed(path: &str, at: Position, what: impl std::fmt::Display) -> ConnectorError {
    if at.line == 0 {
        return malformed_at(path, at.offset, what);
    }
    ConnectorError::InvalidRequest(format!(
        "{path}: line {} (byte {}): {what}",
        at.line, at.offset
    ))
}

/// `invalid-request` naming the file and the byte offset of what is wrong
/// there (for content without lines, such as Parquet).
pub fn malformed_at(path: &str, offset: u64, what: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::InvalidRequest(format!("{path}: byte {offset}: {what}"))
}

/// A failed read: the typed error it carries (a dropped connection, a
/// timeout), else the content is malformed there (bad UTF-8, bad compressed data).
pub(crate) fn read_failed(path: &str, at: Position, err: io::Error) -> ConnectorError {
    if err
        .get_ref()
        .is_some_and(|inner| inner.is::<ConnectorError>())
    {
        return io_error(path, err);
    }
    malformed(path, at, err)
}

/// The most bytes one record (an NDJSON line, a JSON array element, a CSV
/// row) may take: a longer one (a file without line breaks, or a small
/// compressed file that expands to one endless line) is `invalid-request`
/// naming where it starts, not memory growing until the guest traps.
pub const MAX_RECORD_BYTES: u64 = 32 << 20;

pub(crate) fn record_too_long(path: &str, at: Position) -> ConnectorError {
    malformed(
        path,
        at,
        format!("a record longer than {MAX_RECORD_BYTES} bytes starts here (is the format right?)"),
    )
}

/// CSV input that fails once the csv parser has been handed more than
/// [`MAX_RECORD_BYTES`] (plus its buffer) past the start of the row it is
/// reading, which [`CsvReader`] marks before each row.
struct RecordBound {
    inner: Box<dyn BufRead>,
    /// Bytes handed out so far.
    read: u64,
    /// Where the row being read starts, in the same count.
    start: std::rc::Rc<std::cell::Cell<u64>>,
}

/// The csv parser's own read-ahead, allowed on top of a row's bound.
const CSV_BUFFER: u64 = 64 << 10;

impl io::Read for RecordBound {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let used = self.read.saturating_sub(self.start.get());
        let left = (MAX_RECORD_BYTES + CSV_BUFFER).saturating_sub(used);
        if left == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, TOO_LONG));
        }
        let len = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..len])?;
        self.read += n as u64;
        Ok(n)
    }
}

/// The message of [`RecordBound`]'s error, recognised by [`CsvReader`].
const TOO_LONG: &str = "record too long";

/// Splits a JSON array into its elements without holding more than one.
struct JsonArrayReader {
    path: String,
    input: Box<dyn BufRead>,
    pos: Position,
    done: bool,
    element: Vec<u8>,
}

impl JsonArrayReader {
    fn new(source: &dyn Source, encoding: Encoding, from: Position) -> Result<Self> {
        let path = source.name();
        let mut reader = Self {
            path: path.to_string(),
            input: open(source, encoding, from.offset)?,
            pos: Position::START,
            done: false,
            element: Vec::new(),
        };
        if from == Position::START {
            match reader.next_significant()? {
                Some(b'[') => {}
                Some(other) => {
                    return Err(malformed(
                        path,
                        Position {
                            offset: reader.pos.offset - 1,
                            line: reader.pos.line,
                        },
                        format!("expected `[`, found `{}`", other as char),
                    ))
                }
                None => reader.done = true,
            }
        } else {
            reader.pos = from;
        }
        Ok(reader)
    }

    fn next_byte(&mut self) -> Result<Option<u8>> {
        let buf = self
            .input
            .fill_buf()
            .map_err(|e| read_failed(&self.path, self.pos, e))?;
        let Some(&byte) = buf.first() else {
            return Ok(None);
        };
        self.input.consume(1);
        self.pos.offset += 1;
        if byte == b'\n' {
            self.pos.line += 1;
        }
        Ok(Some(byte))
    }

    fn next_significant(&mut self) -> Result<Option<u8>> {
        while let Some(byte) = self.next_byte()? {
            if !byte.is_ascii_whitespace() {
                return Ok(Some(byte));
            }
        }
        Ok(None)
    }
}

impl RowReader for JsonArrayReader {
    fn next_row(&mut self) -> Result<Option<Value>> {
        if self.done {
            return Ok(None);
        }
        let first = loop {
            match self.next_significant()? {
                Some(b',') => continue,
                Some(b']') | None => {
                    self.done = true;
                    return Ok(None);
                }
                Some(byte) => break byte,
            }
        };
        // Where the element starts (its first byte was just read).
        let line = Position {
            offset: self.pos.offset - 1,
            line: self.pos.line,
        };
        self.element.clear();
        self.element.push(first);
        let (mut depth, mut in_string, mut escaped) = (0i32, first == b'"', false);
        if first == b'{' || first == b'[' {
            depth = 1;
        }
        while depth > 0 || in_string {
            let byte = self.next_byte()?.ok_or_else(|| {
                malformed(&self.path, line, "unexpected end of file inside an element")
            })?;
            self.element.push(byte);
            if self.element.len() as u64 > MAX_RECORD_BYTES {
                return Err(record_too_long(&self.path, line));
            }
            if in_string {
                match (escaped, byte) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
            } else {
                match byte {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => depth -= 1,
                    _ => {}
                }
            }
        }
        let value: Value =
            serde_json::from_slice(&self.element).map_err(|e| malformed(&self.path, line, e))?;
        if !value.is_object() {
            return Err(malformed(
                &self.path,
                line,
                "array element is not a JSON object",
            ));
        }
        Ok(Some(value))
    }

    fn checkpoint(&self) -> String {
        self.pos.to_checkpoint()
    }
}

struct CsvReader {
    path: String,
    reader: csv::Reader<RecordBound>,
    /// Where the row being read starts, for [`RecordBound`].
    row_start: std::rc::Rc<std::cell::Cell<u64>>,
    headers: Vec<String>,
    base: Position,
    infer_types: bool,
    record: csv::StringRecord,
}

impl CsvReader {
    fn new(
        source: &dyn Source,
        encoding: Encoding,
        options: &CsvOptions,
        from: Position,
    ) -> Result<Self> {
        let path = source.name();
        let delimiter = options.delimiter_byte()?;
        let mut builder = csv::ReaderBuilder::new();
        builder
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(false);
        // Read the header row from the start of the file in every case.
        let mut header_reader = builder.from_reader(RecordBound {
            inner: open(source, encoding, 0)?,
            read: 0,
            start: std::rc::Rc::default(),
        });
        let mut header = csv::StringRecord::new();
        let has_header = header_reader
            .read_record(&mut header)
            .map_err(|e| csv_failed(path, Position::START, e))?;
        let header_end = header_reader.position().clone();
        drop(header_reader);
        if !has_header {
            return Err(malformed(
                path,
                Position::START,
                "empty CSV file: expected a header row",
            ));
        }
        let headers: Vec<String> = header.iter().map(str::to_string).collect();
        // The header reader may have buffered past the header, so reopen there.
        let base = if from == Position::START {
            Position {
                offset: header_end.byte(),
                line: header_end.line(),
            }
        } else {
            from
        };
        let row_start = std::rc::Rc::default();
        let reader = builder.from_reader(RecordBound {
            inner: open(source, encoding, base.offset)?,
            read: 0,
            start: std::rc::Rc::clone(&row_start),
        });
        Ok(Self {
            path: path.to_string(),
            reader,
            row_start,
            headers,
            base,
            infer_types: options.infer_types,
            record: csv::StringRecord::new(),
        })
    }
}

impl CsvReader {
    fn position(&self) -> Position {
        let p = self.reader.position();
        Position {
            offset: self.base.offset + p.byte(),
            line: self.base.line + p.line() - 1,
        }
    }
}

impl RowReader for CsvReader {
    fn next_row(&mut self) -> Result<Option<Value>> {
        let line = self.position();
        self.row_start.set(self.reader.position().byte());
        let more = self.reader.read_record(&mut self.record).map_err(|e| {
            let at = e.position().map_or(line, |p| Position {
                offset: self.base.offset + p.byte(),
                line: self.base.line + p.line() - 1,
            });
            csv_failed(&self.path, at, e)
        })?;
        if !more {
            return Ok(None);
        }
        if self.record.len() != self.headers.len() {
            return Err(malformed(
                &self.path,
                line,
                format!(
                    "{} fields, but the header has {}",
                    self.record.len(),
                    self.headers.len()
                ),
            ));
        }
        let mut object = Map::with_capacity(self.headers.len());
        for (name, cell) in self.headers.iter().zip(self.record.iter()) {
            let value = if self.infer_types {
                infer(cell)
            } else {
                Value::String(cell.to_string())
            };
            object.insert(name.clone(), value);
        }
        Ok(Some(Value::Object(object)))
    }

    fn checkpoint(&self) -> String {
        self.position().to_checkpoint()
    }
}

/// A CSV read error: an I/O failure keeps its type, anything else is malformed content.
fn csv_failed(path: &str, at: Position, err: csv::Error) -> ConnectorError {
    if matches!(err.kind(), csv::ErrorKind::Io(io) if io.to_string() == TOO_LONG) {
        return record_too_long(path, at);
    }
    if !matches!(err.kind(), csv::ErrorKind::Io(_)) {
        return malformed(path, at, err);
    }
    match err.into_kind() {
        csv::ErrorKind::Io(io) => read_failed(path, at, io),
        other => malformed(path, at, format!("{other:?}")),
    }
}

/// Type a CSV cell: empty → null, integers, floats, booleans, else text.
pub fn infer(cell: &str) -> Value {
    if cell.is_empty() {
        return Value::Null;
    }
    if let Ok(n) = cell.parse::<i64>() {
        return Value::from(n);
    }
    if let Ok(f) = cell.parse::<f64>() {
        if f.is_finite() {
            return Value::from(f);
        }
    }
    match cell {
        "true" | "TRUE" | "True" => Value::Bool(true),
        "false" | "FALSE" | "False" => Value::Bool(false),
        _ => Value::String(cell.to_string()),
    }
}

/// Render a JSON value as a CSV cell.
pub fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}
