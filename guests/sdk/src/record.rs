//! Builders for records and descriptors, and the I/O error mapping.

use serde_json::Value;

use crate::{Capabilities, ConnectorError, Descriptor, Record};

/// Builds a [`Record`] from a JSON value.
#[derive(Debug, Clone)]
pub struct RecordBuilder {
    data: Value,
    id: Option<String>,
    metadata: Option<Value>,
    timestamp: Option<i64>,
}

impl RecordBuilder {
    /// Start a record whose data is `data` (normally a JSON object).
    pub fn new(data: Value) -> Self {
        Self {
            data,
            id: None,
            metadata: None,
            timestamp: None,
        }
    }

    /// Set the record's id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Set the record's metadata object.
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Set the record's event time, in milliseconds since the Unix epoch.
    pub fn timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }

    /// The record's data.
    pub fn data(&self) -> &Value {
        &self.data
    }

    /// Replace the record's data with `f(data)`.
    pub fn map_data(mut self, f: impl FnOnce(Value) -> Value) -> Self {
        self.data = f(self.data);
        self
    }

    /// Finish the record.
    pub fn build(self) -> Record {
        Record {
            id: self.id,
            data: self.data.to_string(),
            metadata: self.metadata.map(|m| m.to_string()),
            timestamp: self.timestamp,
        }
    }
}

/// Start a [`Descriptor`] with every capability off and an empty-object config schema.
pub fn descriptor(name: &str, version: &str, description: &str) -> DescriptorBuilder {
    DescriptorBuilder(Descriptor {
        name: name.into(),
        version: version.into(),
        description: description.into(),
        config_schema: r#"{"type":"object"}"#.into(),
        capabilities: Capabilities {
            streaming: false,
            pagination: false,
            filtering: false,
            sorting: false,
            aggregation: false,
            transactions: false,
            max_page_size: None,
        },
    })
}

/// Builds a [`Descriptor`]; see [`descriptor`].
#[derive(Debug, Clone)]
pub struct DescriptorBuilder(Descriptor);

impl DescriptorBuilder {
    /// Set the JSON Schema of the config.
    pub fn config_schema(mut self, schema: Value) -> Self {
        self.0.config_schema = schema.to_string();
        self
    }

    /// Set the JSON Schema of the config from its JSON text, e.g.
    /// `include_str!("../config.schema.json")`: a file derived from the
    /// config type and kept equal to it by a test (see `schema`, feature
    /// `schema`), so the component carries no schema generator.
    pub fn config_schema_text(mut self, schema: &str) -> Self {
        self.0.config_schema = schema.to_string();
        self
    }

    /// Set the capabilities.
    pub fn capabilities(mut self, capabilities: Capabilities) -> Self {
        self.0.capabilities = capabilities;
        self
    }

    /// Finish the descriptor.
    pub fn build(self) -> Descriptor {
        self.0
    }
}

/// Turn an I/O error on `path` into a typed error.
///
/// Permission errors (including paths outside every mount, `..` escapes and
/// writes to read-only mounts) become `denied`, naming the grant that would
/// allow the access; a missing file becomes `not-found`; anything else
/// `unavailable`.
pub fn io_error(path: &str, err: std::io::Error) -> ConnectorError {
    use std::io::ErrorKind;
    if let Some(typed) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ConnectorError>())
    {
        // Already typed where it happened (an HTTP body read, say).
        return typed.clone();
    }
    if err.kind() == ErrorKind::NotFound && !inside_a_mount(path) {
        // WASI reports paths outside every preopen as missing; say why.
        return ConnectorError::Denied(format!(
            "`{path}` is outside every mounted directory: grant a directory holding it (a `files` grant; CLI: `--mount HOST:GUEST`)"
        ));
    }
    match err.kind() {
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => ConnectorError::Denied(
            format!("writing `{path}` is not permitted (permission denied): its mount is read-only; grant it read-write (`\"mode\": \"rw\"` in the `files` grant; CLI: `--mount HOST:GUEST:rw`)"),
        ),
        ErrorKind::NotFound => ConnectorError::NotFound(format!("`{path}`: no such file or directory")),
        _ => ConnectorError::Unavailable(format!("`{path}`: {}", plain(&err))),
    }
}

/// An I/O error in words, without the platform's error number (WASI's
/// numbers mean nothing to the person reading).
fn plain(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_lowercase(),
        None => text,
    }
}

/// Whether an absolute `path` lies under one of the guest's mounts (relative paths always do).
fn inside_a_mount(path: &str) -> bool {
    if !path.starts_with('/') {
        return true;
    }
    crate::bindings::wasi::filesystem::preopens::get_directories()
        .iter()
        .any(|(_, mount)| {
            let mount = mount.trim_end_matches('/');
            mount.is_empty()
                || path == mount
                || path
                    .strip_prefix(mount)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
}
