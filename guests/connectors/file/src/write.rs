//! `execute`: `append` and `write` of NDJSON and CSV, plain or compressed
//! (by the name's extension: `.gz`, `.zst`, `.bz2`), and `write` of Parquet
//! (`.parquet`, see [`crate::parquet_file::write`]), to a mounted file or
//! (`write` only) to an object. A Parquet file is written whole under a
//! temporary name and then renamed, so readers never see half of one. An append to a compressed file adds a new
//! member (gzip member, zstd frame, bzip2 stream), which every reader of
//! these formats, this connector's included, reads as one file.

use std::fs::OpenOptions;
use std::io::{BufRead, BufWriter, Write};

use serde_json::{Map, Value};
use sluice_sdk::{io_error, ConnectorError, ExecuteRequest, ExecuteResponse, Result};

use crate::compression::Compression;
use crate::format::{self, CsvOptions, Encoding, Format};
use crate::ftp::FtpFile;
use crate::local::LocalFile;
use crate::parquet_file::write as parquet_write;
use crate::s3::Object;
use crate::sftp::SftpFile;

/// Records checked and ready to encode: nothing was written yet.
struct Plan {
    append: bool,
    format: Format,
    compression: Compression,
    header: Vec<String>,
    /// Whether the CSV header row is written (a new or emptied file).
    write_header: bool,
    rows: Vec<Map<String, Value>>,
    /// The whole file, for Parquet (encoded before anything is touched).
    parquet: Option<Vec<u8>>,
}

impl Plan {
    /// Check the operation and every record of `req` for `name`;
    /// `existing_header` reads the header of a CSV file being appended to.
    fn new(
        name: &str,
        req: &ExecuteRequest,
        forced: Option<Format>,
        existing_header: impl FnOnce(Compression) -> Result<Option<Vec<String>>>,
    ) -> Result<Self> {
        let append = match req.operation.as_str() {
            "append" => true,
            "write" => false,
            other => {
                return Err(ConnectorError::Unsupported(format!(
                "operation `{other}`; the file connector supports `append`, `write` and `delete`"
            )))
            }
        };
        let lower = name.to_ascii_lowercase();
        let (compression, stem) = Compression::by_extension(&lower);
        let format = forced.unwrap_or(if stem.ends_with(".csv") || stem.ends_with(".tsv") {
            Format::Csv
        } else if stem.ends_with(".parquet") || stem.ends_with(".parq") {
            Format::Parquet
        } else {
            Format::Ndjson
        });
        if format == Format::Json {
            return Err(ConnectorError::Unsupported(
                "writing JSON arrays; write NDJSON (`.ndjson`) or CSV".into(),
            ));
        }
        let rows = req
            .records
            .iter()
            .enumerate()
            .map(
                |(i, record)| match serde_json::from_str::<Value>(&record.data) {
                    Ok(Value::Object(map)) => Ok(map),
                    Ok(_) => Err(ConnectorError::InvalidRequest(format!(
                        "record {i}: data is not a JSON object"
                    ))),
                    Err(e) => Err(ConnectorError::InvalidRequest(format!(
                        "record {i}: data is not JSON: {e}"
                    ))),
                },
            )
            .collect::<Result<Vec<_>>>()?;
        let parquet = match format {
            Format::Parquet if append => {
                return Err(ConnectorError::Unsupported(format!(
                    "`append` to the Parquet file `{name}`: `write` replaces it with the records"
                )))
            }
            Format::Parquet if compression != Compression::None => {
                return Err(ConnectorError::Unsupported(format!(
                    "`{name}`: Parquet compresses its own pages; write it without a compression extension"
                )))
            }
            Format::Parquet => {
                let options = match req.options.as_deref() {
                    Some(text) => Some(serde_json::from_str::<Value>(text).map_err(|e| {
                        ConnectorError::InvalidRequest(format!("options are not JSON: {e}"))
                    })?),
                    None => None,
                };
                let columns = parquet_write::columns(&rows, options.as_ref())?;
                Some(parquet_write::encode(&rows, &columns)?)
            }
            _ => None,
        };
        let existing = match (format, append) {
            (Format::Csv, true) => existing_header(compression)?,
            _ => None,
        };
        let header: Vec<String> = match (&existing, rows.first()) {
            (Some(header), _) => header.clone(),
            (None, Some(first)) => first.keys().cloned().collect(),
            (None, None) => Vec::new(),
        };
        if format == Format::Csv {
            for (i, row) in rows.iter().enumerate() {
                if let Some(extra) = row.keys().find(|k| !header.contains(k)) {
                    return Err(ConnectorError::InvalidRequest(format!(
                        "record {i}: field `{extra}` is not a column of `{name}` ({})",
                        header.join(", ")
                    )));
                }
            }
        }
        Ok(Self {
            append,
            format,
            compression,
            write_header: existing.is_none() && !header.is_empty(),
            header,
            rows,
            parquet,
        })
    }

    /// Encode the rows into `out`, compressed when the name says so.
    fn write_to(&self, name: &str, csv: &CsvOptions, out: &mut dyn Write) -> Result<()> {
        if self.compression == Compression::None {
            return self.encode(name, csv, out);
        }
        let mut plain = Vec::new();
        self.encode(name, csv, &mut plain)?;
        let packed = self
            .compression
            .encode(&plain)
            .map_err(|e| ConnectorError::Internal(format!("compressing `{name}`: {e}")))?;
        out.write_all(&packed).map_err(|e| io_error(name, e))
    }

    /// Encode the rows into `out`.
    fn encode(&self, name: &str, csv: &CsvOptions, out: &mut dyn Write) -> Result<()> {
        let fail = |e: std::io::Error| io_error(name, e);
        match self.format {
            Format::Parquet => {
                out.write_all(self.parquet.as_deref().unwrap_or_default())
                    .map_err(fail)?;
            }
            Format::Ndjson | Format::Json => {
                for row in &self.rows {
                    serde_json::to_writer(&mut *out, row).map_err(|e| match e.io_error_kind() {
                        Some(_) => fail(e.into()),
                        None => ConnectorError::Internal(e.to_string()),
                    })?;
                    out.write_all(b"\n").map_err(fail)?;
                }
            }
            Format::Csv => {
                let mut writer = csv::WriterBuilder::new()
                    .delimiter(csv.delimiter_byte()?)
                    .from_writer(&mut *out);
                let write_err = |e: csv::Error| match e.into_kind() {
                    csv::ErrorKind::Io(io) => fail(io),
                    other => ConnectorError::Unavailable(format!("{name}: {other:?}")),
                };
                if self.write_header {
                    writer.write_record(&self.header).map_err(write_err)?;
                }
                for row in &self.rows {
                    writer
                        .write_record(self.header.iter().map(|h| format::cell(row.get(h))))
                        .map_err(write_err)?;
                }
                writer.flush().map_err(fail)?;
            }
        }
        Ok(())
    }

    fn response(&self) -> ExecuteResponse {
        ExecuteResponse {
            affected: self.rows.len() as u64,
            records: Vec::new(),
        }
    }
}

/// Run an `append` or `write` of `req.records` to the mounted file `path`.
pub fn execute(
    path: &str,
    req: &ExecuteRequest,
    forced: Option<Format>,
    csv: &CsvOptions,
) -> Result<ExecuteResponse> {
    // Everything is checked before the file is touched, so a bad record writes nothing.
    let plan = Plan::new(path, req, forced, |compression| {
        read_csv_header(path, compression, csv)
    })?;
    if plan.format == Format::Parquet {
        return write_whole(path, &plan, csv);
    }
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(plan.append)
        .truncate(!plan.append)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    let mut out = BufWriter::new(file);
    plan.write_to(path, csv, &mut out)?;
    let fail = |e: std::io::Error| io_error(path, e);
    out.flush().map_err(fail)?;
    out.get_ref().sync_data().map_err(fail)?;
    Ok(plan.response())
}

/// Write the file under a temporary name beside `path`, then rename it.
fn write_whole(path: &str, plan: &Plan, csv: &CsvOptions) -> Result<ExecuteResponse> {
    let temporary = format!("{path}.sluice-partial");
    let written = (|| {
        let fail = |e: std::io::Error| io_error(path, e);
        let mut out = BufWriter::new(std::fs::File::create(&temporary).map_err(fail)?);
        plan.write_to(path, csv, &mut out)?;
        out.flush().map_err(fail)?;
        out.get_ref().sync_data().map_err(fail)?;
        std::fs::rename(&temporary, path).map_err(fail)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.map(|()| plan.response())
}

/// Run a `write` of `req.records` to `object` (objects cannot be appended to).
pub fn execute_object(
    object: &Object,
    req: &ExecuteRequest,
    forced: Option<Format>,
    csv: &CsvOptions,
) -> Result<ExecuteResponse> {
    use crate::format::Source as _;
    let name = object.name();
    if req.operation == "append" {
        return Err(ConnectorError::Unsupported(format!(
            "`append` to `{name}`: S3 objects cannot be appended to; `write` replaces the object"
        )));
    }
    let plan = Plan::new(name, req, forced, |_| Ok(None))?;
    let mut upload = object.upload();
    plan.write_to(name, csv, &mut upload)?;
    upload.finish()?;
    Ok(plan.response())
}

/// Run a `write` of `req.records` to `file` on an FTP server (stored under
/// a temporary name, then renamed over it).
pub fn execute_ftp(
    file: &FtpFile,
    req: &ExecuteRequest,
    forced: Option<Format>,
    csv: &CsvOptions,
) -> Result<ExecuteResponse> {
    use crate::format::Source as _;
    execute_replacing(file.name(), "FTP", req, forced, csv, |encode| {
        let mut bytes = Vec::new();
        encode(&mut bytes)?;
        file.store(&bytes)
    })
}

/// Run a `write` of `req.records` to `file` on an SSH server (streamed to a
/// temporary name, renamed over it by the host once complete).
pub fn execute_sftp(
    file: &SftpFile,
    req: &ExecuteRequest,
    forced: Option<Format>,
    csv: &CsvOptions,
) -> Result<ExecuteResponse> {
    use crate::format::Source as _;
    execute_replacing(file.name(), "SFTP", req, forced, csv, |encode| {
        file.store(|out| encode(out))
    })
}

/// Run a `write` of `req.records` to the file `name` on a server over
/// `protocol`, where only whole files are replaced: `store` is given the
/// encoder of the records and puts what it writes under the file's name.
fn execute_replacing(
    name: &str,
    protocol: &str,
    req: &ExecuteRequest,
    forced: Option<Format>,
    csv: &CsvOptions,
    store: impl FnOnce(&dyn Fn(&mut dyn Write) -> Result<()>) -> Result<()>,
) -> Result<ExecuteResponse> {
    if req.operation == "append" {
        return Err(ConnectorError::Unsupported(format!(
            "`append` to `{name}`: on {protocol}, `write` replaces the file"
        )));
    }
    let plan = Plan::new(name, req, forced, |_| Ok(None))?;
    store(&|out| plan.write_to(name, csv, out))?;
    Ok(plan.response())
}

/// The header of an existing, non-empty CSV file; `None` when it is absent or empty.
fn read_csv_header(
    path: &str,
    compression: Compression,
    csv: &CsvOptions,
) -> Result<Option<Vec<String>>> {
    let encoding = Encoding {
        format: Format::Csv,
        compression,
    };
    let mut reader = match format::open(&LocalFile::new(path.to_string()), encoding, 0) {
        Ok(reader) => reader,
        Err(ConnectorError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut first = String::new();
    reader
        .read_line(&mut first)
        .map_err(|e| io_error(path, e))?;
    if first.trim().is_empty() {
        return Ok(None);
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(csv.delimiter_byte()?)
        .has_headers(false)
        .from_reader(first.as_bytes());
    let mut record = csv::StringRecord::new();
    reader
        .read_record(&mut record)
        .map_err(|e| ConnectorError::InvalidRequest(format!("{path}: line 1: {e}")))?;
    Ok(Some(record.iter().map(str::to_string).collect()))
}
