//! The `file` connector: CSV, JSON arrays and NDJSON, optionally compressed
//! (gzip, zstd, bzip2), and Parquet,
//! read from and written to directories the host mounted, objects in S3 and
//! S3-compatible stores (`root: s3://BUCKET/PREFIX`, see [`s3`]), files
//! on an FTP server (`root: ftp://HOST/DIR`, see [`ftp`]) or on an SSH
//! server through an sftp grant (`root: sftp://GRANT/DIR`, see [`sftp`]).
//!
//! A resource is a path inside a mount, absolute or relative to `root` (with
//! S3: a key relative to the prefix, or an `s3://BUCKET/KEY` URL; with FTP:
//! a path relative to the root's directory, or absolute on the server; with
//! SFTP: relative to the root's directory, or absolute under the grant's root).
//! `fetch` filters, sorts, selects fields and paginates (offset and cursor);
//! `stream` reads incrementally with bounded memory and emits checkpoints
//! (byte offsets; a row group and row for Parquet); `discover` lists the files under the mounts with their
//! inferred fields; `execute` supports `append` and `write` (NDJSON/CSV),
//! `write` (Parquet) and `delete`.

mod compression;
mod format;
mod ftp;
mod local;
mod ndjson;
mod parquet_file;
mod s3;
mod sftp;
mod write;

use std::collections::BTreeMap;

use format::{CsvOptions, Encoding, Format, RowReader, Source};
use ftp::{FtpOptions, FtpStore};
use local::LocalFile;
use s3::{S3Options, S3Store};
use serde::Deserialize;
use serde_json::{json, Value};
use sftp::SftpStore;
use sluice_sdk::query::{self, Predicate};
use sluice_sdk::{
    config, io_error, Batch, Capabilities, Connector, ConnectorError, Descriptor, ExecuteRequest,
    ExecuteResponse, FetchRequest, FetchResponse, Record, RecordBuilder, RecordStream,
    ResourceInfo, Result, Session,
};

/// The connector's config.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct Config {
    /// Directory that relative resource paths start from, an
    /// `s3://BUCKET/PREFIX` URL for objects in S3 (see `s3`), or an
    /// `ftp://HOST[:PORT]/DIR` URL for files on an FTP server (see `ftp`), or
    /// an `sftp://GRANT/DIR` URL for files on an SSH server through the sftp
    /// grant named GRANT (which holds the server and the login).
    #[serde(default = "default_root")]
    root: String,
    /// Force a format instead of detecting it from the extension and content.
    #[serde(default)]
    #[cfg_attr(test, schemars(with = "Format"))]
    format: Option<Format>,
    /// CSV options.
    #[serde(default)]
    csv: CsvOptions,
    /// S3 options, used when `root` is an `s3://` URL.
    #[serde(default)]
    s3: S3Options,
    /// FTP options, used when `root` is an `ftp://` URL.
    #[serde(default)]
    ftp: FtpOptions,
}

fn default_root() -> String {
    "/".into()
}

struct FileConnector;

struct FileSession {
    config: Config,
    /// The bucket, when `root` is an `s3://` URL.
    store: Option<S3Store>,
    /// The server, when `root` is an `ftp://` URL.
    ftp: Option<FtpStore>,
    /// The grant's server, when `root` is an `sftp://` URL.
    sftp: Option<SftpStore>,
}

/// Rows a stream reads at most per `next` call.
const MAX_ROWS_SCANNED_PER_BATCH: usize = 65_536;

/// Records read for `discover` to infer a file's fields.
const DISCOVER_SAMPLE: usize = 100;

/// Files `discover` infers fields for; the ones after them are listed by name.
const DISCOVER_SCHEMAS: usize = 200;

impl Connector for FileConnector {
    type Session = FileSession;

    fn describe() -> Descriptor {
        sluice_sdk::descriptor(
            "file",
            env!("CARGO_PKG_VERSION"),
            "CSV, JSON, NDJSON (optionally gzip, zstd or bzip2) and Parquet files in mounted directories, S3 buckets, or on FTP and SFTP servers",
        )
        .config_schema_text(include_str!("../config.schema.json"))
        .capabilities(Capabilities {
            streaming: true,
            pagination: true,
            filtering: true,
            sorting: true,
            aggregation: false,
            transactions: false,
            max_page_size: None,
        })
        .build()
    }

    fn open(config_json: &str) -> Result<FileSession> {
        let config: Config = config::parse(config_json)?;
        config.csv.delimiter_byte()?;
        let store = S3Store::from_root(&config.root, &config.s3)?;
        let ftp = FtpStore::from_root(&config.root, &config.ftp)?;
        let sftp = SftpStore::from_root(&config.root)?;
        Ok(FileSession {
            config,
            store,
            ftp,
            sftp,
        })
    }
}

impl FileSession {
    fn path(&self, resource: &str) -> Result<String> {
        if resource.is_empty() {
            return Err(ConnectorError::InvalidRequest(
                "resource must be a file path".into(),
            ));
        }
        Ok(if resource.starts_with('/') {
            resource.to_string()
        } else {
            format!("{}/{resource}", self.config.root.trim_end_matches('/'))
        })
    }

    /// Where a resource's bytes come from.
    fn source(&self, resource: &str) -> Result<Box<dyn Source>> {
        Ok(match (&self.store, &self.ftp, &self.sftp) {
            (Some(store), _, _) => Box::new(store.object(resource)?),
            (_, Some(ftp), _) => Box::new(ftp.file(resource)?),
            (_, _, Some(sftp)) => Box::new(sftp.file(resource)?),
            _ => Box::new(LocalFile::new(self.path(resource)?)),
        })
    }

    fn encoding(&self, source: &dyn Source) -> Result<Encoding> {
        format::detect(source, self.config.format)
    }

    /// A reader of `source` from `checkpoint` (or the start) that needs
    /// only `fields` (all when empty).
    fn rows(
        &self,
        source: &dyn Source,
        checkpoint: Option<&str>,
        fields: Vec<String>,
    ) -> Result<Box<dyn RowReader>> {
        let mut rows =
            format::reader(source, self.encoding(source)?, &self.config.csv, checkpoint)?;
        if !fields.is_empty() {
            rows.project(fields);
        }
        Ok(rows)
    }

    /// Without a sort, read only as far as the page needs.
    fn fetch_unsorted(&self, req: &FetchRequest, source: &dyn Source) -> Result<FetchResponse> {
        let predicate = Predicate::compile(&req.filters)?;
        let (start, page_size) = query::page_window(req)?;
        let mut rows = self.rows(source, None, needed(&req.fields, &predicate, &[]))?;
        let mut records = Vec::new();
        let mut matched: u64 = 0;
        while let Some(row) = rows.next_row()? {
            if !predicate.matches(&row) {
                continue;
            }
            matched += 1;
            if matched <= start {
                continue;
            }
            if page_size.is_some_and(|size| records.len() as u64 == size) {
                // One more match exists: there is a next page.
                return Ok(FetchResponse {
                    records,
                    total_count: None,
                    next_cursor: Some(query::offset_cursor(matched - 1)),
                });
            }
            records.push(RecordBuilder::new(query::project(row, &req.fields)).build());
        }
        Ok(FetchResponse {
            records,
            total_count: Some(matched),
            next_cursor: None,
        })
    }
}

impl Session for FileSession {
    fn health_check(&self) -> Result<()> {
        if let Some(store) = &self.store {
            return store.health_check();
        }
        if let Some(ftp) = &self.ftp {
            return ftp.health_check();
        }
        if let Some(sftp) = &self.sftp {
            return sftp.health_check();
        }
        let root = &self.config.root;
        std::fs::metadata(root)
            .map_err(|e| io_error(root, e))
            .and_then(|m| {
                if m.is_dir() {
                    Ok(())
                } else {
                    Err(ConnectorError::InvalidConfig(format!(
                        "field `root`: `{root}` is not a directory"
                    )))
                }
            })
    }

    fn discover(&self) -> Result<Vec<ResourceInfo>> {
        let mut found = Vec::new();
        match (&self.store, &self.ftp, &self.sftp) {
            (Some(store), _, _) => found = store.list()?,
            (_, Some(ftp), _) => found = ftp.list()?,
            (_, _, Some(sftp)) => found = sftp.list()?,
            _ => {
                for (_, mount) in
                    sluice_sdk::bindings::wasi::filesystem::preopens::get_directories()
                {
                    local::collect_files(&mount, &mut found)?;
                }
            }
        }
        found.sort();
        // The first files are read for their fields (one that cannot be read
        // as records is left out); past them, names only, so discovering a
        // bucket of many objects costs one listing, not a read of each.
        let rest = found.split_off(found.len().min(DISCOVER_SCHEMAS));
        let sampled = found.into_iter().filter_map(|path| {
            let schema = self.infer_schema(&*self.source(&path).ok()?).ok()?;
            Some(ResourceInfo {
                name: path,
                schema: Some(schema.to_string()),
            })
        });
        let named = rest
            .into_iter()
            .map(|name| ResourceInfo { name, schema: None });
        Ok(sampled.chain(named).collect())
    }

    fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        let source = self.source(&req.resource)?;
        if req.sort.is_empty() {
            return self.fetch_unsorted(&req, &*source);
        }
        let predicate = Predicate::compile(&req.filters)?;
        let sorted: Vec<String> = req.sort.iter().map(|s| s.field.clone()).collect();
        let mut rows = self.rows(&*source, None, needed(&req.fields, &predicate, &sorted))?;
        let mut matching = Vec::new();
        while let Some(row) = rows.next_row()? {
            if predicate.matches(&row) {
                matching.push(RecordBuilder::new(row));
            }
        }
        let matched_only = FetchRequest {
            filters: Vec::new(),
            ..req
        };
        query::apply(&matched_only, matching)
    }

    fn stream(
        &self,
        req: FetchRequest,
        checkpoint: Option<String>,
    ) -> Result<Box<dyn RecordStream>> {
        if !req.sort.is_empty() {
            return Err(ConnectorError::InvalidRequest(
                "stream reads in file order and cannot sort; use fetch to sort".into(),
            ));
        }
        let source = self.source(&req.resource)?;
        let predicate = Predicate::compile(&req.filters)?;
        let needed = needed(&req.fields, &predicate, &[]);
        let mut rows = self.rows(&*source, checkpoint.as_deref(), needed)?;
        if req.fields.is_empty() {
            // Whole records travel as their source text: only the filtered fields need parsing.
            rows.keep_only(predicate.top_level_fields());
        }
        Ok(Box::new(FileStream {
            rows,
            predicate,
            fields: req.fields,
            done: false,
            failed: None,
        }))
    }

    fn execute(&self, req: ExecuteRequest) -> Result<ExecuteResponse> {
        if req.operation == "delete" {
            if !req.records.is_empty() {
                return Err(ConnectorError::InvalidRequest(
                    "`delete` removes the resource and takes no records".into(),
                ));
            }
            match (&self.store, &self.ftp, &self.sftp) {
                (Some(store), _, _) => store.object(&req.resource)?.delete()?,
                (_, Some(ftp), _) => ftp.file(&req.resource)?.delete()?,
                (_, _, Some(sftp)) => sftp.file(&req.resource)?.delete()?,
                _ => {
                    let path = self.path(&req.resource)?;
                    std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
                }
            }
            return Ok(ExecuteResponse {
                affected: 1,
                records: Vec::new(),
            });
        }
        if let Some(store) = &self.store {
            let object = store.object(&req.resource)?;
            return write::execute_object(&object, &req, self.config.format, &self.config.csv);
        }
        if let Some(ftp) = &self.ftp {
            let file = ftp.file(&req.resource)?;
            return write::execute_ftp(&file, &req, self.config.format, &self.config.csv);
        }
        if let Some(sftp) = &self.sftp {
            let file = sftp.file(&req.resource)?;
            return write::execute_sftp(&file, &req, self.config.format, &self.config.csv);
        }
        let path = self.path(&req.resource)?;
        write::execute(&path, &req, self.config.format, &self.config.csv)
    }
}

impl FileSession {
    fn infer_schema(&self, source: &dyn Source) -> Result<Value> {
        if self.encoding(source)?.format == Format::Parquet {
            return Ok(parquet_file::ParquetReader::open(source, None)?.json_schema());
        }
        let mut rows = self.rows(source, None, Vec::new())?;
        let mut fields: BTreeMap<String, &'static str> = BTreeMap::new();
        for _ in 0..DISCOVER_SAMPLE {
            let Some(Value::Object(row)) = rows.next_row()? else {
                break;
            };
            for (name, value) in row {
                let kind = match value {
                    Value::Null => continue,
                    Value::Bool(_) => "boolean",
                    Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
                    Value::Number(_) => "number",
                    Value::String(_) => "string",
                    Value::Array(_) => "array",
                    Value::Object(_) => "object",
                };
                fields
                    .entry(name)
                    .and_modify(|k| {
                        if *k != kind {
                            *k = if (*k, kind) == ("integer", "number") {
                                "number"
                            } else {
                                "string"
                            };
                        }
                    })
                    .or_insert(kind);
            }
        }
        let properties: serde_json::Map<String, Value> = fields
            .into_iter()
            .map(|(name, kind)| (name, json!({ "type": kind })))
            .collect();
        Ok(json!({ "type": "object", "properties": properties }))
    }
}

/// The top-level fields a request reads: those it returns, filters on and
/// sorts by; empty (all) when it returns whole records.
fn needed(fields: &[String], predicate: &Predicate, sort: &[String]) -> Vec<String> {
    if fields.is_empty() {
        return Vec::new();
    }
    let mut needed: Vec<String> = fields
        .iter()
        .chain(&predicate.top_level_fields())
        .chain(sort)
        .flat_map(|field| {
            // `a.b` is a field of that name, or `b` in the field `a`.
            let top = field.split('.').next().unwrap_or(field);
            [field.clone(), top.to_string()]
        })
        .collect();
    needed.sort();
    needed.dedup();
    needed
}

struct FileStream {
    rows: Box<dyn RowReader>,
    predicate: Predicate,
    fields: Vec<String>,
    done: bool,
    /// What stopped an in-place reader after records of the batch being
    /// filled: those go out first, then this ends the stream.
    failed: Option<ConnectorError>,
}

/// The records read before `error`, kept by setting `failed` when there
/// are any; the error itself when there are none.
fn keep_read(
    records: &[Record],
    failed: &mut Option<ConnectorError>,
    error: ConnectorError,
) -> Result<()> {
    if records.is_empty() {
        return Err(error);
    }
    *failed = Some(error);
    Ok(())
}

impl RecordStream for FileStream {
    fn next(&mut self, max: u32) -> Result<Option<Batch>> {
        if let Some(error) = self.failed.take() {
            self.done = true;
            return Err(error);
        }
        if self.done {
            return Ok(None);
        }
        let max = max.max(1) as usize;
        let mut records = Vec::with_capacity(max.min(1024));
        // Bound the work of one call when the filter rejects long runs of rows:
        // an empty batch still carries the checkpoint, so progress is kept.
        let mut scanned = 0;
        if self.fields.is_empty() && self.rows.matches_in_place() {
            // Whole records that are their own lines: only the filtered
            // fields are built, and a kept line is the record as it is. The
            // reader's checkpoint stays after the last good line when one
            // fails, so the lines before it go out before the error.
            while records.len() < max && scanned < MAX_ROWS_SCANNED_PER_BATCH {
                scanned += 1;
                let matched = match self.rows.next_matches(&self.predicate) {
                    Ok(matched) => matched,
                    Err(error) => {
                        keep_read(&records, &mut self.failed, error)?;
                        break;
                    }
                };
                match matched {
                    Some(true) => records.push(Record {
                        id: None,
                        data: self.rows.source_text().unwrap_or_default().to_string(),
                        metadata: None,
                        timestamp: None,
                    }),
                    Some(false) => {}
                    None => {
                        self.done = true;
                        break;
                    }
                }
            }
        }
        while !self.done
            && self.failed.is_none()
            && records.len() < max
            && scanned < MAX_ROWS_SCANNED_PER_BATCH
        {
            scanned += 1;
            match self.rows.next_row()? {
                Some(row) if self.predicate.matches(&row) => {
                    let record = match self.rows.source_text() {
                        // Whole records: the line as read is already the record's JSON.
                        Some(text) if self.fields.is_empty() => Record {
                            id: None,
                            data: text.to_string(),
                            metadata: None,
                            timestamp: None,
                        },
                        _ => RecordBuilder::new(query::project(row, &self.fields)).build(),
                    };
                    records.push(record);
                }
                Some(_) => {}
                None => {
                    self.done = true;
                    break;
                }
            }
        }
        if records.is_empty() && self.done {
            return Ok(None);
        }
        Ok(Some(Batch {
            records,
            checkpoint: Some(self.rows.checkpoint()),
        }))
    }
}

sluice_sdk::export_connector!(FileConnector);

#[cfg(test)]
sluice_sdk::config_schema_test!(Config);
