//! The `rest` connector against the test API: every pagination strategy,
//! filter mapping, typed upstream errors, streaming with checkpoints, writes.

use serde_json::{json, Value};
use sluice::{
    ConnectorError, Error, ExecuteRequest, FetchRequest, FilterOp, Grants, Record, Session,
};
use sluice_tests::upstream::Upstream;
use sluice_tests::{connector, data};

fn expected(status: Option<&str>) -> Vec<Value> {
    (1..=25)
        .map(|i| json!({ "id": i, "name": format!("item-{i}"), "status": if i % 2 == 0 { "even" } else { "odd" } }))
        .filter(|item| status.is_none_or(|s| item["status"] == s))
        .collect()
}

async fn open(upstream: &Upstream, pagination: Value) -> Session {
    let config = json!({
        "base_url": upstream.origin(),
        "resources": {
            "items": { "path": "/api/items", "records_path": "/data", "id_field": "id",
                       "pagination": pagination, "filters": { "status": "status" } },
            "broken": { "path": "/api/err/500", "records_path": "/data" }
        }
    });
    let grants = Grants::none().allow_http(&upstream.origin()).unwrap();
    connector("sluice_rest")
        .open(&config.to_string(), &grants)
        .await
        .expect("rest opens")
}

fn strategies() -> Vec<Value> {
    vec![
        json!({ "type": "offset", "page_size": 10 }),
        json!({ "type": "page", "page_size": 10 }),
        json!({ "type": "cursor", "next_pointer": "/next", "size_param": "limit", "page_size": 10 }),
        json!({ "type": "cursor", "next_header": "X-Next-Cursor", "size_param": "limit", "page_size": 10 }),
        json!({ "type": "link", "size_param": "limit", "page_size": 10 }),
    ]
}

#[tokio::test]
async fn every_pagination_strategy_walks_every_page_record_by_record() {
    let upstream = Upstream::start().await;
    for pagination in strategies() {
        let mut session = open(&upstream, pagination.clone()).await;
        let (mut seen, mut cursor, mut pages) = (Vec::new(), None, 0);
        loop {
            let page = session
                .fetch(&FetchRequest::new("items").page(10, None, cursor.clone()))
                .await
                .unwrap();
            pages += 1;
            assert_eq!(
                page.records[0].id.as_deref(),
                Some(seen.len().saturating_add(1).to_string().as_str())
            );
            seen.extend(data(&page.records));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, expected(None), "{pagination}");
        assert_eq!(pages, 3, "{pagination}");
    }
}

#[tokio::test]
async fn streams_walk_pages_lazily_and_resume_from_a_checkpoint() {
    let upstream = Upstream::start().await;
    for pagination in strategies() {
        let mut session = open(&upstream, pagination.clone()).await;
        let req = FetchRequest::new("items").filter("status", FilterOp::Eq, "\"odd\"");
        let mut batches = Vec::new();
        {
            let mut stream = session.stream(&req, None).await.unwrap();
            while let Some(batch) = stream.next(100).await.unwrap() {
                batches.push((data(&batch.records), batch.checkpoint.unwrap()));
            }
        }
        let all: Vec<Value> = batches.iter().flat_map(|(r, _)| r.clone()).collect();
        assert_eq!(all, expected(Some("odd")), "{pagination}");
        assert_eq!(
            batches.len(),
            2,
            "13 odd items in pages of 10: {pagination}"
        );
        let mut stream = session.stream(&req, Some(&batches[0].1)).await.unwrap();
        let mut rest = Vec::new();
        while let Some(batch) = stream.next(100).await.unwrap() {
            rest.extend(data(&batch.records));
        }
        assert_eq!(
            rest,
            expected(Some("odd"))[10..].to_vec(),
            "resume: {pagination}"
        );
    }
}

#[tokio::test]
async fn mapped_filters_and_offsets_go_upstream_and_unmapped_ones_are_unsupported() {
    let upstream = Upstream::start().await;
    let mut session = open(&upstream, json!({ "type": "offset", "page_size": 10 })).await;
    let page = session
        .fetch(
            &FetchRequest::new("items")
                .filter("status", FilterOp::Eq, "\"even\"")
                .page(5, Some(5), None)
                .fields(["id"]),
        )
        .await
        .unwrap();
    assert_eq!(
        data(&page.records),
        vec![
            json!({"id": 12}),
            json!({"id": 14}),
            json!({"id": 16}),
            json!({"id": 18}),
            json!({"id": 20})
        ]
    );
    for req in [
        FetchRequest::new("items").filter("name", FilterOp::Eq, "\"item-1\""),
        FetchRequest::new("items").filter("status", FilterOp::Ne, "\"even\""),
    ] {
        let err = session.fetch(&req).await.unwrap_err();
        assert!(
            matches!(err, Error::Connector(ConnectorError::Unsupported(_))),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn upstream_errors_are_typed() {
    let upstream = Upstream::start().await;
    let cases = [
        (400, "invalid-request"),
        (422, "invalid-request"),
        (401, "denied"),
        (403, "denied"),
        (404, "not-found"),
        (429, "rate-limited"),
        (503, "unavailable"),
    ];
    for (code, kind) in cases {
        let config = json!({
            "base_url": upstream.origin(),
            "resources": { "r": { "path": format!("/api/err/{code}"), "records_path": "/data" } }
        });
        let grants = Grants::none().allow_http(&upstream.origin()).unwrap();
        let mut session = connector("sluice_rest")
            .open(&config.to_string(), &grants)
            .await
            .unwrap();
        let err = session.fetch(&FetchRequest::new("r")).await.unwrap_err();
        let connector_error = err
            .connector_error()
            .unwrap_or_else(|| panic!("{code}: {err:?}"));
        assert_eq!(connector_error.code(), kind, "{code}: {err:?}");
        if code == 429 {
            assert_eq!(*connector_error, ConnectorError::RateLimited(Some(7)));
        }
        if code == 400 {
            assert!(err.to_string().contains("bad thing happened"), "{err}");
        }
    }
}

#[tokio::test]
async fn execute_posts_json_records() {
    let upstream = Upstream::start().await;
    let mut session = open(&upstream, json!({ "type": "none" })).await;
    let result = session
        .execute(&ExecuteRequest::new(
            "items",
            "post",
            vec![Record::from_json(&json!({"name": "new"}))],
        ))
        .await
        .unwrap();
    assert_eq!(result.affected, 1);
    assert_eq!(
        data(&result.records),
        vec![json!({"name": "new", "created": true})]
    );
    let err = session
        .execute(&ExecuteRequest::new("items", "merge", Vec::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::Unsupported(_))),
        "{err:?}"
    );
}

async fn open_path(upstream: &Upstream, path: &str) -> Session {
    let config = json!({
        "base_url": upstream.origin(),
        "resources": { "items": { "path": path, "records_path": "/data", "id_field": "id",
            "pagination": { "type": "link", "size_param": "limit", "page_size": 10 } } }
    });
    let grants = Grants::none().allow_http(&upstream.origin()).unwrap();
    connector("sluice_rest")
        .open(&config.to_string(), &grants)
        .await
        .expect("rest opens")
}

#[tokio::test]
async fn link_paging_reads_rfc_8288_as_servers_write_it() {
    // Relative targets with commas in the query, `rel="next last"`, a quoted
    // parameter holding a comma, and a second `Link` field.
    let upstream = Upstream::start().await;
    let mut session = open_path(&upstream, "/api/rel-items").await;
    let mut records = Vec::new();
    let mut stream = session
        .stream(&FetchRequest::new("items"), None)
        .await
        .unwrap();
    while let Some(batch) = stream.next(10).await.unwrap() {
        records.extend(data(&batch.records));
    }
    assert_eq!(
        records,
        expected(None),
        "every record, not the first page only"
    );
}

#[tokio::test]
async fn a_full_page_without_a_link_header_is_an_error_not_the_end() {
    let upstream = Upstream::start().await;
    let mut session = open_path(&upstream, "/api/rel-items?nolink=1").await;
    let mut stream = session
        .stream(&FetchRequest::new("items"), None)
        .await
        .unwrap();
    let first = stream.next(10).await.unwrap().expect("the first page");
    assert_eq!(first.records.len(), 10);
    let err = loop {
        match stream.next(10).await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended as if there were no more records"),
            Err(err) => break err,
        }
    };
    assert!(
        matches!(&err, Error::Connector(ConnectorError::Unavailable(m)) if m.contains("Link")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_records_path_that_finds_no_array_is_a_config_error() {
    let upstream = Upstream::start().await;
    let config = json!({
        "base_url": upstream.origin(),
        "resources": { "items": { "path": "/api/items", "records_path": "/items" } }
    });
    let grants = Grants::none().allow_http(&upstream.origin()).unwrap();
    let mut session = connector("sluice_rest")
        .open(&config.to_string(), &grants)
        .await
        .unwrap();
    let err = session
        .fetch(&FetchRequest::new("items"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Connector(ConnectorError::InvalidConfig(m))
            if m.contains("records_path") && m.contains("data")),
        "{err:?}"
    );
}
