//! A real S3-API server for the S3 tests: s3s-fs (crates.io; `make setup`
//! installs it), one process per test on a free loopback port, serving a
//! temporary directory (a bucket is a directory, an object a file under it)
//! and checking every request's AWS Signature Version 4 against its own
//! access key and secret key.

use std::path::PathBuf;

use serde_json::json;
use sluice::Grants;

use crate::Daemon;

/// The program the tests start (`make setup` installs it when missing).
pub const PROGRAM: &str = "s3s-fs";
/// The server's access key id.
pub const ACCESS_KEY_ID: &str = "AKIASLUICETEST0000001";
/// The server's secret access key (with `/` and `+`, as AWS keys have).
pub const SECRET_ACCESS_KEY: &str = "sluice/S3+secret-key-that-stays-in-the-host";

/// An s3s-fs server of this test's own.
pub struct S3Server {
    daemon: Daemon,
    root: tempfile::TempDir,
}

impl S3Server {
    /// Start one on a free port with an empty directory.
    ///
    /// # Panics
    ///
    /// When s3s-fs is not installed (saying how to install it) or does not listen.
    pub fn start() -> Self {
        let installed = crate::installed(PROGRAM, "--version");
        assert!(
            installed,
            "the S3-API server `s3s-fs` is not installed: run `make setup` \
             (it runs `cargo install s3s-fs --version 0.14.1 --features binary`, about 5 minutes)"
        );
        let root = crate::tempdir();
        let dir = root.path().display().to_string();
        let daemon = Daemon::start(
            PROGRAM,
            &[
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
                "--access-key",
                ACCESS_KEY_ID,
                "--secret-key",
                SECRET_ACCESS_KEY,
                &dir,
            ],
        );
        Self { daemon, root }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.daemon.address)
    }

    /// Create `bucket`.
    pub fn create_bucket(&self, bucket: &str) {
        std::fs::create_dir_all(self.root.path().join(bucket)).expect("bucket directory");
    }

    /// Where the server keeps `key` of `bucket`.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.path().join(bucket).join(key)
    }

    /// Store `bytes` as `key` of `bucket` (creating the bucket).
    pub fn put(&self, bucket: &str, key: &str, bytes: impl AsRef<[u8]>) {
        let path = self.object_path(bucket, key);
        std::fs::create_dir_all(path.parent().expect("a key has a parent")).expect("key directory");
        std::fs::write(path, bytes).expect("object written");
    }

    /// Every file the server keeps, relative to its root (objects and its
    /// own upload and metadata files).
    pub fn stored_files(&self) -> Vec<String> {
        fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else if let Ok(relative) = path.strip_prefix(base) {
                    out.push(relative.display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(self.root.path(), self.root.path(), &mut out);
        out.sort();
        out
    }

    /// An http grant for the server with `aws-sigv4` auth whose secret
    /// access key is `secret_access_key`.
    pub fn grants(&self, secret_access_key: &str) -> Grants {
        sigv4_grants(&self.endpoint(), secret_access_key)
    }

    /// [`S3Server::grants`] whose responses may be at most `max_response_bytes`.
    pub fn grants_capped(&self, max_response_bytes: u64) -> Grants {
        sigv4_grants_capped(
            &self.endpoint(),
            SECRET_ACCESS_KEY,
            Some(max_response_bytes),
        )
    }

    /// The file connector's config for `s3://BUCKET/PREFIX` on this server,
    /// with `extra` S3 options.
    pub fn config(&self, root: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut s3 = json!({ "endpoint": self.endpoint() });
        if let (Some(s3), Some(extra)) = (s3.as_object_mut(), extra.as_object()) {
            s3.extend(extra.clone());
        }
        json!({ "root": root, "s3": s3 })
    }
}

/// A TCP relay in front of a server that cuts any connection on which the
/// client sends `marker` (a request line, say), before those bytes reach
/// the server; everything else passes through untouched. For failing one
/// chosen request of a real server at a chosen point.
pub struct CuttingRelay {
    /// `127.0.0.1:PORT` to connect to instead of the server.
    pub address: String,
}

impl CuttingRelay {
    /// Relay to `upstream` (`HOST:PORT`), cutting on `marker`.
    ///
    /// # Panics
    ///
    /// When no loopback port is free.
    pub fn start(upstream: &str, marker: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let address = listener.local_addr().expect("bound").to_string();
        let upstream = upstream.to_string();
        let marker = marker.as_bytes().to_vec();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let marker = marker.clone();
                std::thread::spawn(move || relay(client, server, &marker));
            }
        });
        Self { address }
    }
}

fn relay(client: std::net::TcpStream, server: std::net::TcpStream, marker: &[u8]) {
    use std::io::{Read, Write};
    let (Ok(mut from_server), Ok(mut to_client)) = (server.try_clone(), client.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(std::net::Shutdown::Both);
    });
    let (mut from_client, mut to_server) = (client, server);
    let mut window: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from_client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // The marker may straddle two reads: look at the tail of the last one too.
        let tail = window.len().saturating_sub(marker.len().saturating_sub(1));
        window.drain(..tail);
        window.extend_from_slice(&buf[..n]);
        if window.windows(marker.len()).any(|w| w == marker) {
            break;
        }
        if to_server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from_client.shutdown(std::net::Shutdown::Both);
    let _ = to_server.shutdown(std::net::Shutdown::Both);
}

impl S3Server {
    /// An http grant like [`S3Server::grants`] for `origin` (a relay in
    /// front of the server).
    pub fn grants_via(&self, origin: &str) -> Grants {
        sigv4_grants(origin, SECRET_ACCESS_KEY)
    }

    /// `HOST:PORT` of the server.
    pub fn address(&self) -> &str {
        &self.daemon.address
    }
}

/// An http grant for `origin` with `aws-sigv4` auth: the server's access key
/// id and `secret_access_key`.
fn sigv4_grants(origin: &str, secret_access_key: &str) -> Grants {
    sigv4_grants_capped(origin, secret_access_key, None)
}

fn sigv4_grants_capped(
    origin: &str,
    secret_access_key: &str,
    max_response_bytes: Option<u64>,
) -> Grants {
    let mut grants = json!({ "http": {
        "origins": [origin],
        "auth": [{
            "origin": origin,
            "kind": "aws-sigv4",
            "access_key_id_secret": "s3_key_id",
            "secret_access_key_secret": "s3_secret",
            "region": "us-east-1",
        }],
    }});
    if let Some(cap) = max_response_bytes {
        grants["http"]["max_response_bytes"] = json!(cap);
    }
    Grants::from_json(&grants.to_string())
        .expect("grants parse")
        .secret("s3_key_id", ACCESS_KEY_ID)
        .secret("s3_secret", secret_access_key)
}
