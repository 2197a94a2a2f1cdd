//! Connections over time: a backend killed mid-stream, transactions of a
//! batch, and the pool shared by sessions.

use std::time::Duration;

use super::{grants, open, people, people_count, probe_sql};
use serde_json::json;
use sluice::capability::sql::SqlMode;
use sluice::{ConnectorError, Error, ExecuteRequest, FetchRequest, Record};
use sluice_tests::data;
use sluice_tests::postgres::TestSchema;

async fn checksum(schema: &TestSchema, after: i64) -> (i64, i64) {
    let row = schema
        .client
        .query_one(
            &format!("SELECT count(*), coalesce(sum(id * 31 + length(payload)), 0)::int8 FROM {}.big WHERE id > $1::int8", schema.name),
            &[&after],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn a_terminated_backend_mid_stream_is_unavailable_and_resuming_yields_exactly_the_rest() {
    let schema = TestSchema::new().await;
    schema
        .run(
            "CREATE TABLE big (id int PRIMARY KEY, payload text NOT NULL);
              INSERT INTO big SELECT g, repeat('x', g % 50) FROM generate_series(1, 5000) g;",
        )
        .await;
    let app = format!("sluice_term_{}", schema.name);
    let grants = grants(&schema, &app, SqlMode::ReadOnly, Duration::from_secs(10));
    let mut session = open(&schema, &grants, 250).await;
    let req = FetchRequest::new("big");
    let mut last_checkpoint = None;
    let mut last_id = 0;
    {
        let mut stream = session.stream(&req, None).await.unwrap();
        for _ in 0..3 {
            let batch = stream.next(250).await.unwrap().expect("a batch");
            assert_eq!(batch.records.len(), 250);
            last_id = data(&batch.records).last().unwrap()["id"].as_i64().unwrap();
            last_checkpoint = batch.checkpoint;
        }
        let killed: i64 = schema
            .client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .await
            .unwrap()
            .len() as i64;
        assert!(killed >= 1, "the stream's backend was found");
        // The host reads one batch ahead, so at most one batch read before
        // the kill still arrives; then the stream fails as unavailable.
        let mut delivered_after_kill = 0;
        let err = loop {
            match stream.next(250).await {
                Ok(Some(batch)) => {
                    delivered_after_kill += 1;
                    last_id = data(&batch.records).last().unwrap()["id"].as_i64().unwrap();
                    last_checkpoint = batch.checkpoint;
                }
                Ok(None) => panic!("the stream ended instead of failing"),
                Err(e) => break e,
            }
        };
        assert!(
            delivered_after_kill <= 1,
            "{delivered_after_kill} batches after the kill"
        );
        assert!(
            matches!(err, Error::Connector(ConnectorError::Unavailable(_))),
            "{err:?}"
        );
    }
    assert!(last_id == 750 || last_id == 1000, "{last_id}");
    // Resume on the same session: the pool replaces the dead connection.
    let mut stream = session
        .stream(&req, last_checkpoint.as_deref())
        .await
        .unwrap();
    let (mut count, mut sum) = (0i64, 0i64);
    while let Some(batch) = stream.next(250).await.unwrap() {
        for record in data(&batch.records) {
            count += 1;
            sum += record["id"].as_i64().unwrap() * 31
                + record["payload"].as_str().unwrap().len() as i64;
        }
    }
    assert_eq!((count, sum), checksum(&schema, last_id).await);
}

#[tokio::test]
async fn execute_writes_in_one_transaction_and_a_bad_record_changes_nothing() {
    let schema = TestSchema::new().await;
    people(&schema).await;
    let grants = grants(
        &schema,
        "execute",
        SqlMode::ReadWrite,
        Duration::from_secs(10),
    );
    let mut session = open(&schema, &grants, 100).await;
    let insert = ExecuteRequest::new(
        "people",
        "insert",
        vec![
            Record::from_json(&json!({"id": 6, "name": "Ken", "age": 80})),
            Record::from_json(&json!({"id": 7, "name": "Dennis"})),
        ],
    );
    assert_eq!(session.execute(&insert).await.unwrap().affected, 2);
    let mut upsert = ExecuteRequest::new(
        "people",
        "upsert",
        vec![
            Record::from_json(&json!({"id": 7, "name": "Dennis", "age": 70})),
            Record::from_json(&json!({"id": 8, "name": "Bjarne"})),
        ],
    );
    upsert.options = Some(json!({"returning": true}).to_string());
    let result = session.execute(&upsert).await.unwrap();
    assert_eq!(result.affected, 2);
    assert_eq!(data(&result.records)[0]["age"], 70);
    let update = ExecuteRequest::new(
        "people",
        "update",
        vec![Record::from_json(&json!({"id": 1, "city": "Marylebone"}))],
    );
    assert_eq!(session.execute(&update).await.unwrap().affected, 1);
    let delete = ExecuteRequest::new(
        "people",
        "delete",
        vec![Record::from_json(&json!({"id": 8}))],
    );
    assert_eq!(session.execute(&delete).await.unwrap().affected, 1);

    let before: i64 = people_count(&schema).await;
    let batch = ExecuteRequest::new(
        "people",
        "insert",
        vec![
            Record::from_json(&json!({"id": 20, "name": "Ok"})),
            Record::from_json(&json!({"id": 21, "name": null})),
            Record::from_json(&json!({"id": 22, "name": "Never"})),
        ],
    );
    let err = session.execute(&batch).await.unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::InvalidRequest(ref m)) if m.starts_with("record 1") && m.contains("23502")),
        "{err:?}"
    );
    let after: i64 = people_count(&schema).await;
    assert_eq!(before, after);
    let city: Option<String> = schema
        .client
        .query_one(
            &format!("SELECT city FROM {}.people WHERE id = 1", schema.name),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(city.as_deref(), Some("Marylebone"));
}

#[tokio::test]
async fn the_pool_is_shared_by_sessions_and_resets_connections_between_them() {
    let schema = TestSchema::new().await;
    let grants = grants(&schema, "pool", SqlMode::ReadWrite, Duration::from_secs(10));
    let set = json!([
        ["SET application_name = 'dirty'", []],
        ["SELECT current_setting('application_name')", []]
    ]);
    let results = probe_sql(&grants, set).await.unwrap();
    assert_eq!(results[1]["rows"], json!([["dirty"]]));
    assert_eq!(grants.sql.grant("main").unwrap().idle_connections(), 1);
    let results = probe_sql(
        &grants,
        json!([[
            "SELECT current_setting('application_name'), pg_backend_pid()",
            []
        ]]),
    )
    .await
    .unwrap();
    assert_eq!(
        results[0]["rows"][0][0], "pool",
        "DISCARD ALL reset the session before reuse"
    );
    assert_eq!(
        grants.sql.grant("main").unwrap().idle_connections(),
        1,
        "the connection was reused, not replaced"
    );
}
