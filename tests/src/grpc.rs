//! A real gRPC server for the grpc connector's tests: grpcio (from `make
//! pytools`) serving `tests/grpc/lab.proto`'s `lab.v1.Lab` with server
//! reflection, h2c on a free loopback port. It logs every call it takes.

use base64::Engine;
use serde_json::Value;
use sluice::Grants;

use crate::{pytools_python, root, Daemon};

/// A running Lab server; killed when dropped.
pub struct GrpcServer {
    daemon: Daemon,
    dir: tempfile::TempDir,
}

impl GrpcServer {
    /// Start a server.
    ///
    /// # Panics
    ///
    /// When grpcio is missing (`make pytools` installs it) or the server does not start.
    pub fn start() -> Self {
        let dir = crate::tempdir();
        let python = pytools_python();
        let script = root().join("tests/grpc/lab_server.py");
        let log = dir.path().join("calls.jsonl");
        let descriptors = dir.path().join("lab.pb");
        let daemon = Daemon::start(
            python.to_str().expect("a UTF-8 path"),
            &[
                script.to_str().expect("a UTF-8 path"),
                "{port}",
                log.to_str().expect("a UTF-8 path"),
                descriptors.to_str().expect("a UTF-8 path"),
            ],
        );
        Self { daemon, dir }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.daemon.address)
    }

    /// Grants that reach the server over h2c.
    pub fn grants(&self) -> Grants {
        Grants::none()
            .allow_http_h2c(&self.origin())
            .expect("a valid origin")
    }

    /// The compiled `FileDescriptorSet` of lab.proto (imports included), in base64.
    pub fn descriptor_set(&self) -> String {
        let bytes = std::fs::read(self.dir.path().join("lab.pb")).expect("the server wrote it");
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Every call the server took, in order: `{method, requests, metadata, deadline}`,
    /// each request as the proto3 JSON mapping writes it (Python's `json_format`).
    pub fn calls(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("calls.jsonl")).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    /// The calls of `method` (`Echo`, `Count`, ...).
    pub fn calls_of(&self, method: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c["method"] == method)
            .collect()
    }
}
