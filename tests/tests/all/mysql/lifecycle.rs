//! MySQL connections over time: a connection killed mid-stream, batches
//! written in one transaction, the pool reset between sessions.

use std::time::Duration;

use super::{grants, open, people, probe_sql};
use serde_json::json;
use sluice::capability::sql::SqlMode;
use sluice::{ConnectorError, Error, ExecuteRequest, FetchRequest, Record};
use sluice_tests::data;
use sluice_tests::mysql::TestDatabase;

#[tokio::test]
async fn a_connection_killed_mid_stream_is_unavailable_and_resuming_yields_exactly_the_rest() {
    let mut db = TestDatabase::new().await;
    // Large enough that the socket cannot hold the rest when the kill lands.
    db.run(
        "CREATE TABLE big (id int PRIMARY KEY, payload varchar(200) NOT NULL);
         INSERT INTO big SELECT seq, REPEAT('x', 100 + seq % 50) FROM seq_1_to_200000;",
    )
    .await;
    let grants = grants(&db, SqlMode::ReadOnly, Duration::from_secs(30));
    let mut session = open(&grants, 500).await;
    let req = FetchRequest::new("big");
    let mut last_checkpoint = None;
    let mut last_id = 0;
    {
        let mut stream = session.stream(&req, None).await.unwrap();
        for _ in 0..3 {
            let batch = stream.next(500).await.unwrap().expect("a batch");
            assert_eq!(batch.records.len(), 500);
            last_id = data(&batch.records).last().unwrap()["id"].as_i64().unwrap();
            last_checkpoint = batch.checkpoint;
        }
        let id = db
            .text(&format!(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{}' \
                 AND INFO LIKE 'SELECT%big%' AND INFO NOT LIKE '%PROCESSLIST%'",
                db.name
            ))
            .await
            .expect("the stream's connection is found");
        db.run(&format!("KILL CONNECTION {id}")).await;
        // Rows already in flight may still arrive; then the stream fails.
        let err = loop {
            match stream.next(500).await {
                Ok(Some(batch)) => {
                    last_id = data(&batch.records).last().unwrap()["id"].as_i64().unwrap();
                    last_checkpoint = batch.checkpoint;
                }
                Ok(None) => panic!("the stream ended instead of failing"),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(err, Error::Connector(ConnectorError::Unavailable(_))),
            "{err:?}"
        );
    }
    assert!((1500..200_000).contains(&last_id), "{last_id}");
    // Resume on the same session: the pool replaces the dead connection.
    let mut stream = session
        .stream(&req, last_checkpoint.as_deref())
        .await
        .unwrap();
    let (mut count, mut next_id) = (0i64, last_id + 1);
    while let Some(batch) = stream.next(5000).await.unwrap() {
        for record in data(&batch.records) {
            assert_eq!(
                record["id"].as_i64().unwrap(),
                next_id,
                "no row skipped or repeated"
            );
            assert_eq!(
                record["payload"].as_str().unwrap().len() as i64,
                100 + next_id % 50
            );
            next_id += 1;
            count += 1;
        }
    }
    assert_eq!(count, 200_000 - last_id);
}

#[tokio::test]
async fn execute_writes_in_one_transaction_and_a_bad_record_changes_nothing() {
    let mut db = TestDatabase::new().await;
    people(&mut db).await;
    let grants = grants(&db, SqlMode::ReadWrite, Duration::from_secs(10));
    let mut session = open(&grants, 100).await;
    let batch = ExecuteRequest::new(
        "people",
        "insert",
        vec![
            Record::from_json(&json!({"id": 10, "name": "Ken"})),
            Record::from_json(&json!({"id": 11, "name": "Dennis"})),
            // NOT NULL name: the server refuses this one.
            Record::from_json(&json!({"id": 12, "name": null})),
        ],
    );
    let err = session.execute(&batch).await.unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::InvalidRequest(ref m)) if m.contains("record 2")),
        "{err:?}"
    );
    assert_eq!(
        db.text("SELECT COUNT(*) FROM people").await.as_deref(),
        Some("5")
    );
    // Upsert: an existing key updates, a new key inserts.
    let upsert = ExecuteRequest::new(
        "people",
        "upsert",
        vec![
            Record::from_json(&json!({"id": 1, "name": "Ada Lovelace", "age": 37})),
            Record::from_json(&json!({"id": 6, "name": "Niklaus"})),
        ],
    );
    session.execute(&upsert).await.unwrap();
    assert_eq!(
        db.text("SELECT CONCAT(name, '/', age) FROM people WHERE id = 1")
            .await
            .as_deref(),
        Some("Ada Lovelace/37")
    );
    let update = ExecuteRequest::new(
        "people",
        "update",
        vec![Record::from_json(&json!({"id": 6, "city": "Zürich"}))],
    );
    assert_eq!(session.execute(&update).await.unwrap().affected, 1);
    let delete = ExecuteRequest::new(
        "people",
        "delete",
        vec![Record::from_json(&json!({"id": 2}))],
    );
    assert_eq!(session.execute(&delete).await.unwrap().affected, 1);
    let names: Vec<String> = data(
        &session
            .fetch(&FetchRequest::new("people").fields(["name", "city"]))
            .await
            .unwrap()
            .records,
    )
    .iter()
    .map(|r| format!("{}@{}", r["name"].as_str().unwrap(), r["city"]))
    .collect();
    assert_eq!(
        names,
        [
            "Ada Lovelace@\"London\"",
            "Grace@\"Arlington\"",
            "Edsger@null",
            "Barbara@\"Boston\"",
            "Niklaus@\"Zürich\""
        ]
    );
}

#[tokio::test]
async fn connections_are_reset_between_uses() {
    let db = TestDatabase::new().await;
    let mut grants = sluice::Grants::none();
    // One connection, so the second use is the first's connection again.
    grants
        .sql
        .add(
            "main",
            &db.grant_url(),
            SqlMode::ReadWrite,
            1,
            Duration::from_secs(10),
        )
        .unwrap();
    probe_sql(
        &grants,
        json!([
            ["SET @leak = 'secret', SESSION sql_mode = 'ANSI_QUOTES'", []],
            ["CREATE TEMPORARY TABLE scratch (x int)", []],
            ["SET time_zone = '+05:00'", []]
        ]),
    )
    .await
    .unwrap();
    let results = probe_sql(
        &grants,
        json!([[
            "SELECT @leak, @@session.sql_mode LIKE '%ANSI_QUOTES%', @@session.time_zone",
            []
        ]]),
    )
    .await
    .unwrap();
    assert_eq!(results[0]["rows"], json!([[null, 0, "+00:00"]]));
    let err = probe_sql(&grants, json!([["SELECT * FROM scratch", []]]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("doesn't exist"), "{err}");
}
