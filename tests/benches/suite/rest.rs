//! Paging through 100k records (1000 pages) of a local JSON API through the
//! `rest` connector, against a native hyper client doing the same.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use sluice::{FetchRequest, Grants, Limits};
use tokio::net::TcpListener;

use crate::report::{Report, Row, Target};
use crate::Scale;

const PAGE: usize = 100;

/// Every page body, rendered up front, by offset.
fn pages(records: usize) -> HashMap<usize, Bytes> {
    let mut pages = HashMap::new();
    for offset in (0..=records).step_by(PAGE) {
        let data: Vec<serde_json::Value> = (offset..(offset + PAGE).min(records))
            .map(|i| serde_json::json!({ "id": i, "name": format!("item-{i}"), "price": i as f64 * 0.25, "tags": ["a", "b"], "in_stock": i % 2 == 0 }))
            .collect();
        pages.insert(
            offset,
            Bytes::from(serde_json::json!({ "data": data }).to_string()),
        );
    }
    pages
}

fn offset_of(query: Option<&str>) -> usize {
    query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("offset="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A keep-alive HTTP/1 API on loopback serving the pages.
async fn serve(pages: Arc<HashMap<usize, Bytes>>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let pages = Arc::clone(&pages);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let body = pages
                            .get(&offset_of(req.uri().query()))
                            .cloned()
                            .unwrap_or_else(|| Bytes::from_static(br#"{"data":[]}"#));
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(body))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Native: one keep-alive connection, GET each page, parse, one JSON line per
/// record. The sender is awaited `ready` before each request, and a
/// connection the server closed is opened again (as a pooled client would).
async fn native(addr: std::net::SocketAddr) -> u64 {
    let (mut offset, mut count) = (0usize, 0u64);
    let mut out = Vec::with_capacity(1 << 16);
    let mut sender = connect(addr).await;
    loop {
        let req = || {
            hyper::Request::get(format!("http://{addr}/items?offset={offset}&limit={PAGE}"))
                .header("host", addr.to_string())
                .body(Empty::<Bytes>::new())
                .expect("a request")
        };
        let res = match sender.ready().await {
            Ok(()) => sender.send_request(req()).await,
            Err(e) => Err(e),
        };
        let res = match res {
            Ok(res) => res,
            Err(_) => {
                sender = connect(addr).await;
                sender.ready().await.expect("a fresh connection is ready");
                sender
                    .send_request(req())
                    .await
                    .expect("the page, on a fresh connection")
            }
        };
        let body = res
            .into_body()
            .collect()
            .await
            .expect("the body")
            .to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&body).expect("a JSON page");
        let data = value["data"].as_array().cloned().unwrap_or_default();
        out.clear();
        for record in &data {
            serde_json::to_writer(&mut out, record).expect("a JSON line");
            out.push(b'\n');
        }
        std::hint::black_box(&out);
        count += data.len() as u64;
        offset += data.len();
        if data.len() < PAGE {
            return count;
        }
    }
}

/// A new HTTP/1 connection to `addr`, driven by its own task.
async fn connect(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the page server");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("an HTTP/1 handshake");
    tokio::spawn(connection);
    sender
}

pub async fn run(scale: Scale, report: &mut Report) {
    let records = scale.pick(100_000, 20_000);
    let addr = serve(Arc::new(pages(records))).await;
    let origin = format!("http://{addr}");
    let config = serde_json::json!({
        "base_url": origin,
        "resources": { "items": {
            "path": "/items", "records_path": "/data", "id_field": "id",
            "pagination": { "type": "offset", "page_size": PAGE }
        } }
    });
    let grants = Grants::none().allow_http(&origin).unwrap();
    let limits = Limits {
        wall_clock_per_call: std::time::Duration::from_secs(600),
        ..Limits::default()
    };
    let mut session = sluice_tests::connector("sluice_rest")
        .open_with_limits(&config.to_string(), &grants, &limits)
        .await
        .expect("rest connector opens");
    let began = Instant::now();
    let mut stream = session
        .stream(&FetchRequest::new("items"), None)
        .await
        .expect("stream");
    let mut count = 0u64;
    while let Some(batch) = stream.next(PAGE as u32).await.expect("batch") {
        std::hint::black_box(&batch.records);
        count += batch.records.len() as u64;
    }
    let took = began.elapsed();
    stream.close().await.unwrap();

    let began = Instant::now();
    let native_count = native(addr).await;
    let native_took = began.elapsed();
    assert_eq!(count, records as u64);
    assert_eq!(native_count, records as u64);
    report.add(Row {
        metric: format!("rest: page through {records} records ({} pages)", records / PAGE),
        unit: "records/s",
        sluice: count as f64 / took.as_secs_f64(),
        baseline: native_count as f64 / native_took.as_secs_f64(),
        target: Target::RatioAtLeast(0.8),
        note: "offset pagination, 100 per page, local hyper API; native: one keep-alive hyper connection, serde_json parse, a JSON line per record".into(),
    });
}
