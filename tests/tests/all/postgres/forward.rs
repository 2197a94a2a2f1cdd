//! `row-stream.forward-records`: rows the host renders as records and passes
//! to the caller of `record-stream.next` itself — bounded by that call's
//! `max` whatever the guest asks, and refused outside such a call.

use std::time::Duration;

use serde_json::json;
use sluice::capability::sql::SqlMode;
use sluice::{ConnectorError, Error, FetchRequest, Session};
use sluice_tests::postgres::TestSchema;
use sluice_tests::{data, probe, probe_request};

use super::grants;

/// A schema with `rows` numbered rows, a probe session with a read-only
/// grant on it, and the statement that reads them in order.
async fn numbered(rows: u32) -> (TestSchema, Session, String) {
    let schema = TestSchema::new().await;
    schema
        .run(&format!(
            "CREATE TABLE numbered AS SELECT g AS id, 'value \"' || g || '\"' AS v
               FROM generate_series(1, {rows}) g"
        ))
        .await;
    let grants = grants(
        &schema,
        "forward",
        SqlMode::ReadOnly,
        Duration::from_secs(10),
    );
    let session = probe().open("{}", &grants).await.unwrap();
    let statement = format!("SELECT id, v FROM {}.numbered ORDER BY id", schema.name);
    (schema, session, statement)
}

#[tokio::test]
async fn a_greedy_guest_forwards_at_most_the_callers_max_and_loses_no_row() {
    let (_schema, mut session, statement) = numbered(25).await;
    let options = json!({ "grant": "main", "statements": [[statement, []]], "batch": 10 });
    let request = FetchRequest::new("sql-forward").options(&options);
    let mut stream = session.stream(&request, None).await.unwrap();
    let (mut ids, mut refusals, mut checkpoints) = (Vec::new(), 0, Vec::new());
    while let Some(batch) = stream.next(4).await.unwrap() {
        let (own, forwarded) = batch
            .records
            .split_last()
            .expect("the guest's own record last");
        assert!(
            forwarded.len() <= 4,
            "{} records for a max of 4",
            forwarded.len()
        );
        for record in forwarded {
            let id: u32 = record.id.as_deref().unwrap().parse().unwrap();
            assert_eq!(
                record.data,
                format!(r#"{{"id":{id},"v":"value \"{id}\""}}"#),
                "rendered by the host, names and values exact"
            );
            ids.push(id);
        }
        let second: serde_json::Value = serde_json::from_str(&own.data).unwrap();
        if second["second"]
            .as_str()
            .is_some_and(|s| s.contains("max is reached"))
        {
            refusals += 1;
        }
        checkpoints.extend(batch.checkpoint);
    }
    stream.close().await.unwrap();
    assert_eq!(
        ids,
        (1..=25).collect::<Vec<_>>(),
        "every row once, in order"
    );
    assert!(
        refusals >= 5,
        "the greedy second ask was refused ({refusals} times)"
    );
    assert_eq!(checkpoints.last().map(String::as_str), Some("[25]"));
}

#[tokio::test]
async fn forwarding_outside_a_stream_call_is_refused() {
    let (_schema, mut session, statement) = numbered(3).await;
    let err = session
        .fetch(&probe_request(
            "sql",
            json!({ "grant": "main", "statements": [[statement, []]], "forward": true }),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Connector(ConnectorError::InvalidRequest(m)) if m.contains("only possible inside record-stream.next")),
        "{err:?}"
    );
    // The session is fine afterwards, and nothing forwarded leaks into a stream.
    let page = session
        .fetch(&probe_request(
            "sql",
            json!({ "grant": "main", "statements": [["SELECT 1 AS one", []]] }),
        ))
        .await
        .unwrap();
    assert_eq!(data(&page.records)[0]["results"][0]["rows"], json!([[1]]));
}
