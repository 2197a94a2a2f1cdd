//! Streams answer with the right status: a stream that fails before it
//! streamed anything is an error answer, not a 200 with an error inside
//! (issue 19); one that fails later ends with an error line.

use serde_json::json;
use sluice_tests::client::api;
use sluice_tests::tempdir;

use super::start_with;
use crate::server::{data_instance, new_instance, tenant, upload};

#[tokio::test]
async fn a_stream_that_fails_before_its_first_record_answers_with_the_error_status() {
    let dir = tempdir();
    let (addr, _server) = start_with(dir.path(), |_| {}).await;
    let (tenant_id, token) =
        tenant(addr, json!({ "name": "s", "ceiling": { "files": true } })).await;
    let files = dir.path().join("files").join(&tenant_id).join("data");
    std::fs::create_dir_all(&files).unwrap();
    let rows: String = (1..=5).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    std::fs::write(files.join("n.ndjson"), rows).unwrap();
    // Two good lines, then one that is not JSON.
    std::fs::write(files.join("broken.ndjson"), "{\"n\":1}\n{\"n\":2}\n{oops\n").unwrap();
    let instance = data_instance(addr, &token).await;
    let path = format!("/v1/instances/{instance}/stream");
    let missing = api(addr, Some(&token))
        .post(&path, br#"{"resource": "nope.ndjson"}"#.to_vec())
        .await;
    assert_eq!(
        missing.status,
        404,
        "{}",
        String::from_utf8_lossy(&missing.body)
    );
    assert_eq!(missing.json()["error"]["code"], "not_found");
    let bad = api(addr, Some(&token))
        .post(
            &path,
            br#"{"resource": "n.ndjson", "checkpoint": "not a checkpoint"}"#.to_vec(),
        )
        .await;
    assert!(
        (400..500).contains(&bad.status),
        "{}: {}",
        bad.status,
        String::from_utf8_lossy(&bad.body)
    );
    // A good stream still answers 200 with its records and checkpoints.
    let good = api(addr, Some(&token))
        .post(
            &path,
            br#"{"resource": "n.ndjson", "batch_size": 2}"#.to_vec(),
        )
        .await;
    assert_eq!(good.status, 200);
    let lines = good.lines();
    let records: Vec<_> = lines
        .iter()
        .filter(|l| l["record"]["data"].get("n").is_some())
        .collect();
    assert_eq!(records.len(), 5);

    // A stream that fails after its first batch ends with a typed error
    // line, after the records and checkpoint that did arrive.
    let broken = api(addr, Some(&token))
        .post(
            &path,
            br#"{"resource": "broken.ndjson", "batch_size": 2}"#.to_vec(),
        )
        .await;
    assert_eq!(broken.status, 200);
    let lines = broken.lines();
    let kinds: Vec<&str> = lines
        .iter()
        .map(|l| {
            let keys: Vec<&String> = l.as_object().unwrap().keys().collect();
            assert_eq!(keys.len(), 1, "one kind per line: {l}");
            keys[0].as_str()
        })
        .collect();
    assert_eq!(
        kinds,
        ["record", "record", "checkpoint", "error"],
        "{lines:?}"
    );
    let error = &lines[3]["error"];
    assert!(
        error["code"].is_string() && error["message"].as_str().unwrap().contains("line 3"),
        "{error}"
    );
}

#[tokio::test]
async fn a_stream_acknowledges_its_batches_only_when_asked_to() {
    let dir = tempdir();
    let (addr, _server) = start_with(dir.path(), |_| {}).await;
    let (tenant_id, token) =
        tenant(addr, json!({ "name": "q", "ceiling": { "files": true } })).await;
    let connector = upload(addr, &token, "sluice_probe").await;
    let instance = new_instance(
        addr,
        &token,
        &json!({ "connector": connector,
                 "grants": { "files": [{ "host": "q", "guest": "/d", "mode": "rw" }] } }),
    )
    .await;
    let path = format!("/v1/instances/{instance}/stream");
    let acks = dir.path().join("files").join(&tenant_id).join("q/acks");
    let body = |ack: Option<&str>| {
        let mut body = json!({ "resource": "queue", "batch_size": 2,
                               "options": { "path": "/d/acks", "count": 5 } });
        if let Some(mode) = ack {
            body["ack"] = json!(mode);
        }
        body
    };
    // By default nothing is acknowledged: a queue would redeliver it all.
    let plain = api(addr, Some(&token)).post_json(&path, &body(None)).await;
    assert_eq!(
        plain.status,
        200,
        "{}",
        String::from_utf8_lossy(&plain.body)
    );
    assert_eq!(plain.lines().len(), 5 + 3, "5 records, 3 checkpoints");
    assert!(!acks.exists(), "nothing was acknowledged");
    // `auto`: each batch once it was handed to the response.
    let auto = api(addr, Some(&token))
        .post_json(&path, &body(Some("auto")))
        .await;
    assert_eq!(auto.status, 200, "{}", String::from_utf8_lossy(&auto.body));
    assert_eq!(auto.lines().len(), 5 + 3);
    assert_eq!(
        std::fs::read_to_string(&acks).unwrap(),
        "ack 1,2\nack 3,4\nack 5\n"
    );
    // An unknown mode is refused, and `ack` belongs to streams only.
    let bad = api(addr, Some(&token))
        .post_json(&path, &body(Some("sometimes")))
        .await;
    assert_eq!(bad.status, 422);
    let fetch = api(addr, Some(&token))
        .post_json(
            &format!("/v1/instances/{instance}/fetch"),
            &json!({ "resource": "queue", "ack": "auto" }),
        )
        .await;
    assert_eq!(fetch.status, 422);
    assert!(
        fetch.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`ack` is not used by `fetch`"),
        "{:?}",
        fetch.json()
    );
}
