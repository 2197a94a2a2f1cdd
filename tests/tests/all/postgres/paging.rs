//! Pages and streams over PostgreSQL: keyset and offset pagination, NULLs,
//! keyless tables, limits and batch sizes.

use std::time::Duration;

use super::{grants, open, people};
use serde_json::{json, Value};
use sluice::capability::sql::SqlMode;
use sluice::{ConnectorError, Error, FetchRequest, Session, SortDirection};
use sluice_tests::postgres::TestSchema;
use sluice_tests::{data, postgres_connector, probe, probe_request};

#[tokio::test]
async fn keyset_pagination_returns_every_existing_row_once_under_concurrent_inserts() {
    let schema = TestSchema::new().await;
    schema
        .run(
            "CREATE TABLE events (id bigserial PRIMARY KEY, score int NOT NULL);
              INSERT INTO events (score) SELECT (g * 7919) % 1000 FROM generate_series(1, 2000) g;",
        )
        .await;
    let existing: Vec<i64> = schema
        .client
        .query(&format!("SELECT id FROM {}.events", schema.name), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let grants = grants(
        &schema,
        "keyset",
        SqlMode::ReadOnly,
        Duration::from_secs(10),
    );
    let mut session = open(&schema, &grants, 100).await;
    let writer = {
        let table = format!("{}.events", schema.name);
        tokio::spawn(async move {
            let client = sluice_tests::postgres::admin().await;
            for i in 0..200 {
                client
                    .execute(
                        &format!("INSERT INTO {table} (score) VALUES ($1)"),
                        &[&((i * 37) % 1000)],
                    )
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let base = FetchRequest::new("events")
        .sort("score", SortDirection::Asc)
        .fields(["id", "score"]);
    let (mut seen, mut cursor, mut last_score) = (Vec::new(), None, i64::MIN);
    loop {
        let page = session
            .fetch(&base.clone().page(73, None, cursor.clone()))
            .await
            .unwrap();
        for record in data(&page.records) {
            let score = record["score"].as_i64().unwrap();
            assert!(score >= last_score, "order is kept across pages");
            last_score = score;
            seen.push(record["id"].as_i64().unwrap());
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    writer.await.unwrap();
    for id in &existing {
        assert_eq!(
            seen.iter().filter(|s| *s == id).count(),
            1,
            "row {id} seen exactly once"
        );
    }
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no row repeated");
}

/// The `id`s a stream of `req` resumed after `checkpoint` yields, to its end.
async fn ids_from(session: &mut Session, req: &FetchRequest, checkpoint: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut stream = session.stream(req, Some(checkpoint)).await.unwrap();
    while let Some(batch) = stream.next(100).await.unwrap() {
        ids.extend(
            data(&batch.records)
                .iter()
                .map(|r| r["id"].as_i64().unwrap()),
        );
    }
    stream.close().await.unwrap();
    ids
}

#[tokio::test]
async fn keyset_pages_and_streams_keep_rows_whose_sort_column_is_null() {
    let schema = TestSchema::new().await;
    schema
        .run(
            "CREATE TABLE scores (id int PRIMARY KEY, score int);
             INSERT INTO scores VALUES (1, 1), (2, NULL), (3, 2), (4, NULL), (5, 1);",
        )
        .await;
    let grants = grants(&schema, "nulls", SqlMode::ReadOnly, Duration::from_secs(10));
    // Ascending puts NULLs last, descending first; ties go by the key.
    let cases = [
        (SortDirection::Asc, vec![1, 5, 3, 2, 4]),
        (SortDirection::Desc, vec![2, 4, 3, 1, 5]),
    ];
    for (direction, expected) in cases {
        let base = FetchRequest::new("scores")
            .sort("score", direction)
            .fields(["id", "score"]);
        let mut session = open(&schema, &grants, 1).await;
        let seen = crate::postgres_fidelity::paged_ids(&mut session, &base).await;
        assert_eq!(seen, expected, "fetch pages, {direction:?}");
        // A stream in batches of one, and one resumed from each checkpoint.
        let mut checkpoints = Vec::new();
        let mut streamed = Vec::new();
        {
            let mut stream = session.stream(&base, None).await.unwrap();
            while let Some(batch) = stream.next(1).await.unwrap() {
                streamed.extend(
                    data(&batch.records)
                        .iter()
                        .map(|r| r["id"].as_i64().unwrap()),
                );
                checkpoints.extend(batch.checkpoint);
            }
        }
        assert_eq!(streamed, expected, "stream, {direction:?}");
        for (i, checkpoint) in checkpoints.iter().enumerate().take(expected.len()) {
            let rest = ids_from(&mut session, &base, checkpoint).await;
            assert_eq!(rest, expected[i + 1..], "resumed after {i}, {direction:?}");
        }
    }
}

#[tokio::test]
async fn a_table_without_a_key_pages_by_offset_and_loses_no_tied_row() {
    let schema = TestSchema::new().await;
    schema
        .run(
            "CREATE TABLE d (a int, b text, doc json);
             INSERT INTO d VALUES (1, 'x', '{}'), (1, 'x', '{}'), (2, 'y', '[]'), (1, 'w', null), (NULL, 'z', '1');",
        )
        .await;
    let grants = grants(
        &schema,
        "keyless",
        SqlMode::ReadOnly,
        Duration::from_secs(10),
    );
    let mut session = open(&schema, &grants, 2).await;
    let walk = |sort: Option<SortDirection>| {
        let mut req = FetchRequest::new("d").fields(["a", "b"]);
        if let Some(direction) = sort {
            req = req.sort("a", direction);
        }
        req
    };
    for (sort, expected) in [
        (
            None,
            vec![
                (json!(1), "w"),
                (json!(1), "x"),
                (json!(1), "x"),
                (json!(2), "y"),
                (json!(null), "z"),
            ],
        ),
        (
            Some(SortDirection::Desc),
            vec![
                (json!(null), "z"),
                (json!(2), "y"),
                (json!(1), "w"),
                (json!(1), "x"),
                (json!(1), "x"),
            ],
        ),
    ] {
        let (mut seen, mut cursor, mut pages) = (Vec::new(), None, 0);
        loop {
            let page = session
                .fetch(&walk(sort).page(2, None, cursor.clone()))
                .await
                .unwrap();
            pages += 1;
            for r in data(&page.records) {
                seen.push((r["a"].clone(), r["b"].as_str().unwrap().to_string()));
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let expected: Vec<(Value, String)> = expected
            .into_iter()
            .map(|(a, b)| (a, b.to_string()))
            .collect();
        assert_eq!(seen, expected, "{sort:?}");
        assert_eq!(
            pages, 3,
            "pages of 2, 2 and 1, each but the last with a cursor"
        );
    }
}

#[tokio::test]
async fn a_page_larger_than_the_advertised_maximum_is_refused() {
    let schema = TestSchema::new().await;
    people(&schema).await;
    let grants = grants(
        &schema,
        "maxpage",
        SqlMode::ReadOnly,
        Duration::from_secs(10),
    );
    let mut session = open(&schema, &grants, 10).await;
    let advertised = postgres_connector()
        .describe()
        .await
        .unwrap()
        .capabilities
        .max_page_size
        .expect("the connector advertises a maximum");
    let at_max = FetchRequest::new("people").page(advertised, None, None);
    assert_eq!(session.fetch(&at_max).await.unwrap().records.len(), 5);
    let err = session
        .fetch(&FetchRequest::new("people").page(advertised + 1, None, None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::InvalidRequest(ref m)) if m.contains(&format!("from 1 to {advertised}"))),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_stream_honours_the_callers_batch_size() {
    let schema = TestSchema::new().await;
    people(&schema).await;
    let grants = grants(
        &schema,
        "batches",
        SqlMode::ReadOnly,
        Duration::from_secs(10),
    );
    // The portal fetches 10 rows at a time; the caller asks for 2.
    let mut session = open(&schema, &grants, 10).await;
    let req = FetchRequest::new("people").fields(["id"]);
    let (mut sizes, mut ids, mut checkpoints) = (Vec::new(), Vec::new(), Vec::new());
    {
        let mut stream = session.stream(&req, None).await.unwrap();
        while let Some(batch) = stream.next(2).await.unwrap() {
            sizes.push(batch.records.len());
            ids.extend(
                data(&batch.records)
                    .iter()
                    .map(|r| r["id"].as_i64().unwrap()),
            );
            checkpoints.push(batch.checkpoint.unwrap());
        }
    }
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    let rest = ids_from(&mut session, &req, &checkpoints[0]).await;
    assert_eq!(rest, [3, 4, 5]);
}

#[tokio::test]
async fn offset_pagination_and_foreign_cursors() {
    let schema = TestSchema::new().await;
    people(&schema).await;
    let grants = grants(
        &schema,
        "offset",
        SqlMode::ReadOnly,
        Duration::from_secs(10),
    );
    let mut session = open(&schema, &grants, 100).await;
    let page = session
        .fetch(
            &FetchRequest::new("people")
                .sort("id", SortDirection::Asc)
                .fields(["id"])
                .page(2, Some(3), None),
        )
        .await
        .unwrap();
    assert_eq!(
        data(&page.records),
        vec![json!({"id": 4}), json!({"id": 5})]
    );
    let page = session
        .fetch(&FetchRequest::new("people").page(2, None, None))
        .await
        .unwrap();
    let cursor = page.next_cursor.expect("a next page");
    let err = session
        .fetch(
            &FetchRequest::new("people")
                .sort("age", SortDirection::Desc)
                .page(2, None, Some(cursor)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::InvalidRequest(ref m)) if m.contains("different sort")),
        "{err:?}"
    );
}

#[tokio::test]
async fn query_stream_reads_in_bounded_batches() {
    let schema = TestSchema::new().await;
    let grants = grants(
        &schema,
        "stream",
        SqlMode::ReadOnly,
        Duration::from_secs(10),
    );
    let mut session = probe().open("{}", &grants).await.unwrap();
    let params = json!({
        "grant": "main", "stream": true, "batch": 400,
        "statements": [["SELECT g FROM generate_series(1, 1000) g", []]]
    });
    let page = session.fetch(&probe_request("sql", params)).await.unwrap();
    let batches = data(&page.records).remove(0)["results"][0]["batches"].clone();
    let sizes: Vec<usize> = batches
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [400, 400, 200]);
    assert_eq!(batches[2][199], json!([1000]));
}
