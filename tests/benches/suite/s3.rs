//! Streaming a large NDJSON object from a real S3-API server (s3s-fs,
//! checking every signature) through the `file` connector with a filter,
//! against a native Rust reader of the same server doing the same work.

use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use sluice::capability::http::sigv4::{self, Credentials, Scope};
use sluice::Limits;
use sluice_tests::s3::{S3Server, ACCESS_KEY_ID, SECRET_ACCESS_KEY};

use crate::report::{Report, Row, Target};
use crate::Scale;

/// The one field the filter reads; serde skips (and still checks) the rest.
#[derive(serde::Deserialize)]
struct Filtered {
    age: Option<serde_json::Value>,
}

/// Whether an NDJSON line is kept by `age >= 90` (the line is validated whole).
fn keeps(line: &[u8]) -> bool {
    let row: Filtered = serde_json::from_slice(line).expect("a JSON line");
    row.age
        .and_then(|age| age.as_f64())
        .is_some_and(|age| age >= 90.0)
}

/// `builder` for the server at `address` with `body`, signed with the
/// server's credentials (`body_sha256` or an unsigned payload).
fn signed<B>(
    builder: hyper::http::request::Builder,
    address: &str,
    body_sha256: Option<String>,
    body: B,
) -> hyper::Request<B> {
    let mut request = builder
        .header(hyper::header::HOST, address)
        .body(body)
        .unwrap();
    let credentials = Credentials {
        access_key_id: ACCESS_KEY_ID,
        secret_access_key: SECRET_ACCESS_KEY,
        session_token: None,
    };
    let scope = Scope {
        region: "us-east-1",
        service: "s3",
    };
    sigv4::sign(
        &mut request,
        &credentials,
        &scope,
        body_sha256,
        SystemTime::now(),
    )
    .expect("signed");
    request
}

/// Send `request` on a new HTTP/1 connection to `address`.
async fn send<B>(
    address: &str,
    request: hyper::Request<B>,
) -> hyper::Response<hyper::body::Incoming>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to the S3 server");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("an HTTP/1 handshake");
    tokio::spawn(connection);
    sender.send_request(request).await.expect("an answer")
}

/// Native, the way a careful Rust program reads an object: one signed GET
/// on a hyper connection, the body split into lines as it arrives, each
/// parsed for the filtered field and kept as the record.
async fn native_count(address: &str, path: &str) -> u64 {
    let request = signed(
        hyper::Request::get(path),
        address,
        Some(sigv4::sha256_hex(b"")),
        Empty::<Bytes>::new(),
    );
    let response = send(address, request).await;
    assert_eq!(response.status(), 200, "the server accepted the signature");
    let mut body = response.into_body();
    let (mut pending, mut kept) = (Vec::<u8>::new(), 0u64);
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("body frame");
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
            let line = &pending[start..start + end];
            if keeps(line) {
                std::hint::black_box(String::from_utf8_lossy(line).into_owned());
                kept += 1;
            }
            start += end + 1;
        }
        pending.drain(..start);
    }
    kept
}

/// PUT `body` as the object at `path` (`/BUCKET/KEY`), signed.
pub async fn upload(server: &S3Server, path: &str, body: Bytes) {
    let put = signed(
        hyper::Request::put(path),
        server.address(),
        None,
        Full::new(body),
    );
    let status = send(server.address(), put).await.status();
    assert_eq!(status, 200, "the object was uploaded");
}

/// The whole object at `path` (`/BUCKET/KEY`), by one signed GET.
#[cfg_attr(not(feature = "bench-parquet"), allow(dead_code))]
pub async fn download(server: &S3Server, path: &str) -> Bytes {
    let request = signed(
        hyper::Request::get(path),
        server.address(),
        Some(sigv4::sha256_hex(b"")),
        Empty::<Bytes>::new(),
    );
    let response = send(server.address(), request).await;
    assert_eq!(response.status(), 200, "the server accepted the signature");
    response
        .into_body()
        .collect()
        .await
        .expect("the object")
        .to_bytes()
}

pub async fn run(scale: Scale, report: &mut Report) {
    let bytes = scale.pick(1u64 << 30, 128 << 20);
    let data = crate::file::data_file(bytes);
    let size = std::fs::metadata(&data).unwrap().len();
    let server = S3Server::start();
    server.create_bucket("bench");
    // Uploaded, as objects are: s3s-fs then keeps the ETag, where for a
    // file put in its directory by hand it would hash the whole file on
    // every GET (each ranged GET of the connector included).
    let body = Bytes::from(std::fs::read(&data).expect("the data file"));
    upload(&server, "/bench/people.ndjson", body).await;

    let config = server
        .config("s3://bench", serde_json::json!({}))
        .to_string();
    let limits = Limits {
        wall_clock_per_call: std::time::Duration::from_secs(600),
        ..Limits::default()
    };
    let mut session = sluice_tests::file_connector()
        .open_with_limits(&config, &server.grants(SECRET_ACCESS_KEY), &limits)
        .await
        .expect("file connector opens on S3");
    let (kept, took, peak) = crate::file::stream_filtered(&mut session, "people.ndjson").await;

    let began = Instant::now();
    let native_kept = native_count(server.address(), "/bench/people.ndjson").await;
    let native_took = began.elapsed();
    assert_eq!(kept, native_kept, "both kept the same records");

    let mb = size as f64 / 1e6;
    report.add(Row {
        metric: format!(
            "s3: stream {} MB NDJSON object with a filter",
            size / 1_000_000
        ),
        unit: "MB/s",
        sluice: mb / took.as_secs_f64(),
        baseline: mb / native_took.as_secs_f64(),
        target: Target::RatioAtLeast(0.7),
        note: format!("s3s-fs on loopback checking SigV4; {kept} records kept (age >= 90); sluice: ranged GETs of 8 MiB signed by the host; native: one signed hyper GET, lines parsed as they arrive, the same filter"),
    });
    report.add(Row {
        metric: "s3: host peak RSS while streaming".into(),
        unit: "MB",
        sluice: peak as f64 / 1e6,
        baseline: f64::NAN,
        target: Target::AtMost(256.0),
        note: format!(
            "whole-process VmHWM during the sluice stream of a {} MB object (the server is its own process)",
            size / 1_000_000
        ),
    });
}
