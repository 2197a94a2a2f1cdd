//! `execute`: `append` and `write` of NDJSON and CSV files.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};

use serde_json::Value;
use sluice_sdk::{io_error, ConnectorError, ExecuteRequest, ExecuteResponse, Result};

use crate::format::{self, CsvOptions, Format};

/// Run an `append` or `write` of `req.records` to `path`.
pub fn execute(
    path: &str,
    req: &ExecuteRequest,
    forced: Option<Format>,
    csv: &CsvOptions,
) -> Result<ExecuteResponse> {
    let append = match req.operation.as_str() {
        "append" => true,
        "write" => false,
        other => {
            return Err(ConnectorError::Unsupported(format!(
                "operation `{other}`; the file connector supports `append` and `write`"
            )))
        }
    };
    if path.to_ascii_lowercase().ends_with(".gz") {
        return Err(ConnectorError::Unsupported(format!(
            "writing compressed files (`{path}`)"
        )));
    }
    let format = forced.unwrap_or(if path.to_ascii_lowercase().ends_with(".csv") {
        Format::Csv
    } else {
        Format::Ndjson
    });
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
    // Validate everything before touching the file, so a bad record writes nothing.
    let existing_header = match (format, append) {
        (Format::Csv, true) => read_csv_header(path, csv)?,
        _ => None,
    };
    let header: Vec<String> = match (&existing_header, rows.first()) {
        (Some(header), _) => header.clone(),
        (None, Some(first)) => first.keys().cloned().collect(),
        (None, None) => Vec::new(),
    };
    if format == Format::Json {
        return Err(ConnectorError::Unsupported(
            "writing JSON arrays; write NDJSON (`.ndjson`) or CSV".into(),
        ));
    }
    if format == Format::Csv {
        for (i, row) in rows.iter().enumerate() {
            if let Some(extra) = row.keys().find(|k| !header.contains(k)) {
                return Err(ConnectorError::InvalidRequest(format!(
                    "record {i}: field `{extra}` is not a column of `{path}` ({})",
                    header.join(", ")
                )));
            }
        }
    }
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    let mut out = BufWriter::new(file);
    let fail = |e: std::io::Error| io_error(path, e);
    match format {
        Format::Ndjson | Format::Json => {
            for row in &rows {
                serde_json::to_writer(&mut out, row)
                    .map_err(|e| ConnectorError::Internal(e.to_string()))?;
                out.write_all(b"\n").map_err(fail)?;
            }
        }
        Format::Csv => {
            let mut writer = csv::WriterBuilder::new()
                .delimiter(csv.delimiter_byte()?)
                .from_writer(&mut out);
            let write_err = |e: csv::Error| ConnectorError::Unavailable(format!("{path}: {e}"));
            if existing_header.is_none() && !header.is_empty() {
                writer.write_record(&header).map_err(write_err)?;
            }
            for row in &rows {
                writer
                    .write_record(header.iter().map(|h| format::cell(row.get(h))))
                    .map_err(write_err)?;
            }
            writer.flush().map_err(fail)?;
        }
    }
    out.flush().map_err(fail)?;
    out.get_ref().sync_data().map_err(fail)?;
    Ok(ExecuteResponse {
        affected: rows.len() as u64,
        records: Vec::new(),
    })
}

/// The header of an existing, non-empty CSV file; `None` when it is absent or empty.
fn read_csv_header(path: &str, csv: &CsvOptions) -> Result<Option<Vec<String>>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    };
    let mut first = String::new();
    BufReader::new(file)
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
