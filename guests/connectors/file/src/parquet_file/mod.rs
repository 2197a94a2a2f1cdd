//! Parquet: read row group by row group with only the columns asked for,
//! and written from records (schema inferred or given).
//!
//! Reading never hands the parquet crate a way to do I/O: the footer and,
//! per row group, the byte ranges of the projected column chunks are read
//! from the [`Source`] here (each checked against the file's size and a
//! budget), and the crate decodes from those bytes ([`chunks`]). So a
//! truncated or corrupt file is an `invalid-request` naming the file and the
//! byte offset, and memory holds one row group's projected columns.
//! Checkpoints name a row group and a row in it.

mod chunks;
mod json;
mod pages;
pub mod write;

use std::sync::Arc;

use parquet::basic::Type as PhysicalType;
use parquet::basic::{Compression as Codec, ConvertedType};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::record::reader::RowIter;
use parquet::schema::types::{SchemaDescriptor, Type as SchemaType};
use serde_json::Value;
use sluice_sdk::{ConnectorError, Result};

use crate::format::{malformed_at, RowReader, Source};
use chunks::{Fetched, OneGroup};
use json::Hints;

/// The four bytes that start and end every Parquet file.
pub const MAGIC: &[u8] = b"PAR1";

/// The most footer (file metadata) a file may have.
const MAX_FOOTER_BYTES: u64 = 64 << 20;

/// The most bytes one row group's projected column chunks may take: they
/// are held in memory while the row group is read.
const MAX_ROW_GROUP_BYTES: u64 = 128 << 20;

/// Bytes read from the end of the file at first: footers usually fit, so
/// the metadata costs one read.
const TAIL_GUESS: u64 = 64 << 10;

/// Column chunks closer than this are fetched in one read.
const COALESCE_GAP: u64 = 1 << 20;

/// Reads a Parquet file's rows as JSON objects.
pub struct ParquetReader {
    source: Box<dyn Source>,
    metadata: Arc<ParquetMetaData>,
    size: u64,
    /// Top-level fields to read (`None`: all).
    projection: Option<Vec<String>>,
    /// The row group being read and the rows of it returned so far.
    group: usize,
    row: u64,
    rows: Option<RowIter<'static>>,
    /// Rows to skip in the first row group read (a resumed checkpoint).
    skip: u64,
    hints: Hints,
}

impl ParquetReader {
    /// Read the footer of `source` and start at `checkpoint` (or the start).
    pub fn open(source: &dyn Source, checkpoint: Option<&str>) -> Result<Self> {
        let name = source.name();
        let size = source.size()?;
        if size < 12 {
            return Err(malformed_at(
                name,
                0,
                format!("not a Parquet file ({size} bytes)"),
            ));
        }
        let tail_len = size.min(TAIL_GUESS);
        let tail = source.read_range(size - tail_len, tail_len)?;
        let end = &tail[tail.len() - 8..];
        if &end[4..] != MAGIC {
            let what = if &end[4..] == b"PARE" {
                "an encrypted Parquet file (not supported)"
            } else {
                "not a Parquet file: it does not end with `PAR1` (truncated?)"
            };
            return Err(malformed_at(name, size - 4, what));
        }
        let footer_len = u64::from(u32::from_le_bytes([end[0], end[1], end[2], end[3]]));
        if footer_len + 12 > size {
            return Err(malformed_at(
                name,
                size - 8,
                format!("the footer says it is {footer_len} bytes, more than the file holds (truncated?)"),
            ));
        }
        if footer_len > MAX_FOOTER_BYTES {
            return Err(malformed_at(
                name,
                size - 8,
                format!("a {footer_len}-byte footer is more than the {MAX_FOOTER_BYTES} read"),
            ));
        }
        let footer_at = size - 8 - footer_len;
        let footer = if footer_len + 8 <= tail_len {
            tail[(tail.len() - 8 - footer_len as usize)..tail.len() - 8].to_vec()
        } else {
            source.read_range(footer_at, footer_len)?
        };
        let metadata = ParquetMetaDataReader::decode_metadata(&footer)
            .map_err(|e| malformed_at(name, footer_at, format!("unreadable footer: {e}")))?;
        check_columns(name, metadata.file_metadata().schema_descr())?;
        let hints = Hints::of(metadata.file_metadata().schema());
        let mut reader = Self {
            source: source.clone_box(),
            metadata: Arc::new(metadata),
            size,
            projection: None,
            group: 0,
            row: 0,
            rows: None,
            skip: 0,
            hints,
        };
        if let Some(text) = checkpoint {
            let (group, row) = parse_checkpoint(text)?;
            let groups = reader.metadata.num_row_groups();
            let fits = group < groups
                && row <= reader.metadata.row_group(group).num_rows().max(0) as u64
                || group == groups && row == 0;
            if !fits {
                return Err(ConnectorError::InvalidRequest(format!(
                    "checkpoint `{text}` is past the end of `{name}` ({groups} row groups)"
                )));
            }
            (reader.group, reader.skip) = (group, row);
        }
        Ok(reader)
    }

    /// The JSON Schema of the rows, from the footer alone.
    pub fn json_schema(&self) -> Value {
        let properties: serde_json::Map<String, Value> = self
            .metadata
            .file_metadata()
            .schema()
            .get_fields()
            .iter()
            .map(|field| (field.name().to_string(), json::schema_of(field)))
            .collect();
        serde_json::json!({ "type": "object", "properties": properties })
    }

    /// Start reading row group `self.group`: fetch its projected column
    /// chunks and open a row iterator over them.
    fn load_group(&mut self) -> Result<()> {
        let name = self.source.name().to_string();
        let schema = self.metadata.file_metadata().schema_descr_ptr();
        let fields = self.projected_fields(&schema);
        let group = self.metadata.row_group(self.group);
        let mut ranges = Vec::new();
        let mut chunks = Vec::new();
        for (i, column) in schema.columns().iter().enumerate() {
            if !fields.iter().any(|f| f.name() == column.path().parts()[0]) {
                continue;
            }
            let chunk = group.column(i);
            let codec = chunk.compression();
            if !matches!(
                codec,
                Codec::UNCOMPRESSED
                    | Codec::SNAPPY
                    | Codec::GZIP(_)
                    | Codec::LZ4
                    | Codec::LZ4_RAW
                    | Codec::BROTLI(_)
                    | Codec::ZSTD(_)
            ) {
                return Err(ConnectorError::Unsupported(format!(
                    "column `{}` of `{name}` is compressed with {codec}; Parquet is read with snappy, gzip, lz4, brotli, zstd or no compression",
                    column.path()
                )));
            }
            let (start, len) = chunk.byte_range();
            if start.checked_add(len).is_none_or(|end| end > self.size) {
                return Err(malformed_at(
                    &name,
                    start,
                    format!(
                        "column `{}` of row group {} ends past the end of the file (truncated?)",
                        column.path(),
                        self.group
                    ),
                ));
            }
            ranges.push((start, len));
            chunks.push((
                column.path().string(),
                start,
                len,
                chunks::page_limit(chunk.uncompressed_size()),
            ));
        }
        let ranges = coalesce(ranges);
        let total: u64 = ranges.iter().map(|(_, len)| len).sum();
        if total > MAX_ROW_GROUP_BYTES {
            return Err(ConnectorError::InvalidRequest(format!(
                "row group {} of `{name}` takes {total} bytes for the columns read, more than the {MAX_ROW_GROUP_BYTES} held at once: ask for fewer `fields`, or write the file with smaller row groups",
                self.group
            )));
        }
        let fetched = Fetched::new(self.size);
        for (start, len) in ranges {
            fetched.insert(start, self.source.read_range(start, len)?);
        }
        for (column, start, len, limit) in chunks {
            let bytes = fetched
                .from(start)
                .map_err(|e| ConnectorError::Internal(format!("`{name}`: {e}")))?;
            let chunk = &bytes[..usize::try_from(len).unwrap_or(usize::MAX).min(bytes.len())];
            pages::check(chunk, start, limit as u64).map_err(|(at, why)| {
                let group = self.group;
                malformed_at(
                    &name,
                    at,
                    format!("row group {group}, column `{column}`: {why}"),
                )
            })?;
        }
        let projection = SchemaType::group_type_builder(schema.root_schema().name())
            .with_fields(fields)
            .build()
            .map_err(|e| ConnectorError::Internal(format!("projecting `{name}`: {e}")))?;
        let file = OneGroup::new(Arc::clone(&self.metadata), self.group, fetched)
            .map_err(|e| self.corrupt(e))?;
        let mut rows = RowIter::from_file_into(Box::new(file))
            .project(Some(projection))
            .map_err(|e| ConnectorError::Internal(format!("projecting `{name}`: {e}")))?;
        for _ in 0..std::mem::take(&mut self.skip) {
            match rows.next() {
                Some(Ok(_)) => self.row += 1,
                Some(Err(e)) => return Err(self.corrupt(e)),
                None => break,
            }
        }
        self.rows = Some(rows);
        Ok(())
    }

    /// The top-level fields of the projection (at least one: a file's rows
    /// are counted through a column).
    fn projected_fields(&self, schema: &SchemaDescriptor) -> Vec<Arc<SchemaType>> {
        let all = schema.root_schema().get_fields();
        let Some(wanted) = &self.projection else {
            return all.to_vec();
        };
        let kept: Vec<_> = all
            .iter()
            .filter(|f| wanted.iter().any(|w| w == f.name()))
            .cloned()
            .collect();
        if kept.is_empty() {
            all.iter().take(1).cloned().collect()
        } else {
            kept
        }
    }

    /// A decoding error: the content of the current row group is corrupt.
    fn corrupt(&self, err: parquet::errors::ParquetError) -> ConnectorError {
        let group = self.metadata.row_group(self.group);
        let at = group
            .columns()
            .iter()
            .map(|c| c.byte_range().0)
            .min()
            .unwrap_or(0);
        malformed_at(
            self.source.name(),
            at,
            format!("row group {}, row {}: {err}", self.group, self.row),
        )
    }
}

impl RowReader for ParquetReader {
    fn next_row(&mut self) -> Result<Option<Value>> {
        loop {
            if let Some(rows) = &mut self.rows {
                match rows.next() {
                    Some(Ok(row)) => {
                        self.row += 1;
                        return Ok(Some(self.hints.row_to_json(&row)));
                    }
                    Some(Err(e)) => return Err(self.corrupt(e)),
                    None => {
                        self.rows = None;
                        self.group += 1;
                        self.row = 0;
                    }
                }
            }
            if self.group >= self.metadata.num_row_groups() {
                return Ok(None);
            }
            self.load_group()?;
        }
    }

    fn checkpoint(&self) -> String {
        format!("parquet:group:{}:row:{}", self.group, self.row + self.skip)
    }

    fn project(&mut self, fields: Vec<String>) {
        self.projection = Some(fields);
    }
}

fn parse_checkpoint(text: &str) -> Result<(usize, u64)> {
    let bad = || {
        ConnectorError::InvalidRequest(format!(
            "checkpoint `{text}` was not issued by the file connector for a Parquet file"
        ))
    };
    let rest = text.strip_prefix("parquet:group:").ok_or_else(bad)?;
    let (group, row) = rest.split_once(":row:").ok_or_else(bad)?;
    Ok((
        group.parse().map_err(|_| bad())?,
        row.parse().map_err(|_| bad())?,
    ))
}

/// Merge byte ranges that overlap or lie close, in file order.
fn coalesce(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (start, len) in ranges {
        match merged.last_mut() {
            Some((at, size)) if start <= *at + *size + COALESCE_GAP => {
                *size = (*size).max(start + len - *at);
            }
            _ => merged.push((start, len)),
        }
    }
    merged
}

/// Refuse up front a column whose type the row decoder cannot convert.
fn check_columns(name: &str, schema: &SchemaDescriptor) -> Result<()> {
    for column in schema.columns() {
        use ConvertedType as C;
        let converted = column.converted_type();
        let ok = match column.physical_type() {
            PhysicalType::BOOLEAN | PhysicalType::FLOAT | PhysicalType::DOUBLE => true,
            PhysicalType::INT96 => true,
            PhysicalType::INT32 => matches!(
                converted,
                C::NONE
                    | C::INT_8
                    | C::INT_16
                    | C::INT_32
                    | C::UINT_8
                    | C::UINT_16
                    | C::UINT_32
                    | C::DATE
                    | C::TIME_MILLIS
                    | C::DECIMAL
            ),
            PhysicalType::INT64 => matches!(
                converted,
                C::NONE
                    | C::INT_64
                    | C::UINT_64
                    | C::TIME_MICROS
                    | C::TIMESTAMP_MILLIS
                    | C::TIMESTAMP_MICROS
                    | C::DECIMAL
            ),
            PhysicalType::BYTE_ARRAY => matches!(
                converted,
                C::NONE | C::UTF8 | C::ENUM | C::JSON | C::BSON | C::DECIMAL
            ),
            PhysicalType::FIXED_LEN_BYTE_ARRAY => matches!(converted, C::NONE | C::DECIMAL),
        };
        if !ok {
            return Err(ConnectorError::Unsupported(format!(
                "column `{}` of `{name}` is {} ({converted}), which is not read",
                column.path(),
                column.physical_type()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_ranges_are_read_together() {
        assert_eq!(
            coalesce(vec![(100, 10), (0, 50), (50, 10), (5 << 20, 1)]),
            vec![(0, 110), (5 << 20, 1)]
        );
    }

    #[test]
    fn checkpoints_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(parse_checkpoint("parquet:group:3:row:17").unwrap(), (3, 17));
        assert!(matches!(
            parse_checkpoint("byte:10:line:2"),
            Err(ConnectorError::InvalidRequest(_))
        ));
    }
}
