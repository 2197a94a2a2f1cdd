//! The recording's file format: one JSON object per line, a
//! [`RecordingHeader`] first, then [`Event`]s in the order the host
//! answered, then an [`Event::End`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The first line of a recording: what was run, with secrets redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingHeader {
    /// The format version ([`FORMAT_VERSION`]).
    pub sluice_recording: u32,
    /// The sluice version that wrote it.
    pub sluice: String,
    /// The connector's name.
    pub connector: String,
    /// The sha256 of the connector's `.wasm` (a replay may use another build).
    pub connector_sha256: String,
    /// The connector config as the connector received it, secret-looking
    /// values redacted.
    pub config: Value,
    /// What was run, in the recorder's own terms (the command line records
    /// the operation's arguments). Not interpreted by the library.
    pub invocation: Value,
    /// The directories mounted, as the connector saw them, and whether writable.
    #[serde(default)]
    pub mounts: Vec<RecordedMount>,
    /// Capabilities granted for the run whose traffic is not in the
    /// recording (raw TCP sockets, SFTP): a replay refuses them.
    #[serde(default)]
    pub unrecorded: Vec<String>,
}

/// A directory the recorded run had mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedMount {
    /// Where the connector saw it (`/data`).
    pub guest: String,
    /// Whether the connector could write to it.
    pub writable: bool,
}

/// A header line `name: value`, value redacted where it is a secret.
pub(crate) type HeaderLine = (String, String);

/// One host answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    /// An HTTP request the connector sent and the head of the answer.
    Http {
        /// Numbers the exchange; its body events carry it.
        id: u64,
        request: HttpRequest,
        answer: HttpAnswer,
    },
    /// A piece of a response body, as the connector read it.
    HttpBody {
        id: u64,
        /// Base64.
        data: String,
    },
    /// The end of a response body: its trailers or the error that cut it short.
    HttpEnd {
        id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trailers: Option<Vec<HeaderLine>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<HttpFailure>,
    },
    /// A call of the `sql` interface and its result.
    Sql { call: SqlCall, answer: Value },
    /// A file the connector opened (or failed to) and, for a file opened
    /// to read, its contents then.
    FileOpen {
        /// The path as the connector saw it (`/data/people.ndjson`).
        path: String,
        /// `ok` or the WASI error code (`no-entry`, `not-permitted`, ...).
        answer: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        directory: Option<bool>,
        /// Base64, for a regular file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contents: Option<String>,
    },
    /// The entries of a directory the connector listed.
    DirList {
        path: String,
        entries: Vec<DirEntry>,
    },
    /// Clock readings, in the order they were taken since the last event.
    Clock {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        wall: Vec<(u64, u32)>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        monotonic: Vec<u64>,
    },
    /// Random bytes handed out since the last event (base64).
    Random {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        secure: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        insecure: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seed: Option<String>,
    },
    /// How the run ended.
    End { outcome: Outcome },
}

/// An HTTP request as the connector sent it (before the host added credentials).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct HttpRequest {
    pub method: String,
    pub uri: String,
    pub headers: Vec<HeaderLine>,
    /// Base64.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
}

/// The head of an HTTP answer, or why there was none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HttpAnswer {
    Response {
        status: u16,
        headers: Vec<HeaderLine>,
    },
    Failed(HttpFailure),
}

/// A `wasi:http` error code and its detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HttpFailure {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For a request the host denied, what it said (so a replay names the same grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial: Option<RecordedDenial>,
}

/// A host denial as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecordedDenial {
    pub attempted: String,
    pub grant: String,
    pub api_grant: String,
}

/// A directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DirEntry {
    pub name: String,
    pub directory: bool,
    pub size: u64,
}

/// A call of the `sql` interface: what is compared on replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SqlCall {
    /// `open`, `query`, `execute`, `query-stream`, `next`, `begin`,
    /// `tx-query`, `tx-execute`, `commit`, `rollback`.
    pub call: String,
    /// The grant name (`open`) or the statement.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
}

/// How a recorded run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// It failed with this message (secrets redacted).
    Failed(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ok => f.write_str("success"),
            Outcome::Failed(message) => write!(f, "the error `{message}`"),
        }
    }
}
