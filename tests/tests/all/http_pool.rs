//! The host's keep-alive connections: reused within a grant, never across
//! grants, never after a response that was not read to its end, and never
//! trusted after the upstream closed them.

use serde_json::json;
use sluice::{ConnectorError, Error, Grants, Session};
use sluice_tests::upstream::Upstream;
use sluice_tests::{data, probe, probe_request};

async fn call(
    session: &mut Session,
    method: &str,
    url: String,
) -> Result<serde_json::Value, Error> {
    let page = session
        .fetch(&probe_request(
            "http",
            json!({ "url": url, "method": method, "text": if method == "POST" { "{}" } else { "" } }),
        ))
        .await?;
    Ok(data(&page.records).remove(0))
}

#[tokio::test]
async fn requests_of_a_grant_share_one_connection_across_its_sessions() {
    let upstream = Upstream::start().await;
    let grants = Grants::none().allow_http(&upstream.origin()).unwrap();
    let mut session = probe().open("{}", &grants).await.unwrap();
    for _ in 0..10 {
        let out = call(&mut session, "GET", upstream.url("/hello"))
            .await
            .unwrap();
        assert_eq!(out["body"], "hello");
    }
    session.close().await.unwrap();
    let mut other = probe().open("{}", &grants).await.unwrap();
    let out = call(&mut other, "GET", upstream.url("/api/items?limit=2"))
        .await
        .unwrap();
    assert_eq!(out["status"], 200);
    assert_eq!(
        upstream.connections(),
        1,
        "eleven requests from two sessions of one grant, one connection"
    );
}

#[tokio::test]
async fn two_grants_never_share_a_connection_even_to_the_same_origin() {
    let upstream = Upstream::start().await;
    let first = Grants::none().allow_http(&upstream.origin()).unwrap();
    let second = Grants::none().allow_http(&upstream.origin()).unwrap();
    for grants in [&first, &second, &first, &second] {
        let mut session = probe().open("{}", grants).await.unwrap();
        call(&mut session, "GET", upstream.url("/hello"))
            .await
            .unwrap();
    }
    assert_eq!(
        upstream.connections(),
        2,
        "one connection per grant, each reused by its own grant only"
    );
}

#[tokio::test]
async fn a_response_not_read_to_its_end_closes_its_connection() {
    let upstream = Upstream::start().await;
    let mut grants = Grants::none().allow_http(&upstream.origin()).unwrap();
    // The cap stops the guest's read half way through a chunked body.
    grants.http.max_response_bytes = 1000;
    let mut session = probe().open("{}", &grants).await.unwrap();
    let err = call(&mut session, "GET", upstream.url("/chunked?n=100000"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Connector(ConnectorError::Unavailable(m)) if m.contains("cap")),
        "{err:?}"
    );
    // The rest of that body must not become the start of the next answer.
    let out = call(&mut session, "GET", upstream.url("/hello"))
        .await
        .unwrap();
    assert_eq!(
        (out["status"].as_u64(), out["body"].as_str()),
        (Some(200), Some("hello"))
    );
    assert_eq!(
        upstream.connections(),
        2,
        "the half-read connection was not reused"
    );
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_replaced_for_any_method() {
    let upstream = Upstream::start().await;
    let grants = Grants::none().allow_http(&upstream.origin()).unwrap();
    let mut session = probe().open("{}", &grants).await.unwrap();
    for round in 0..3 {
        let out = call(&mut session, "GET", upstream.url("/close"))
            .await
            .unwrap();
        assert_eq!(out["body"], "bye", "round {round}");
        // A POST is never retried by the host, so it must never meet the
        // closed connection.
        let out = call(&mut session, "POST", upstream.url("/api/items"))
            .await
            .unwrap();
        assert_eq!(out["status"], 201, "round {round}: {out}");
    }
    assert_eq!(
        upstream.connections(),
        4,
        "each `Connection: close` ends its connection; the POST after it opens the next"
    );
}
