//! Consumer groups: ack commits, a new session without a checkpoint starts
//! from the group's committed offsets — through the library, the CLI (a
//! killed process) and the server.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::json;
use sluice_tests::client::api;
use sluice_tests::kafka::Broker;
use sluice_tests::{guest, kill_mid_stream, sluice_bin, tempdir};

use super::{config, drain_ids, draining, ids, numbered, open, placed_ids, topic};
use crate::server::{lease_ids, new_instance, next, open_lease, start, tenant, upload};

fn offset_of(id: &str) -> (i64, i64) {
    let mut parts = id.rsplitn(3, '/');
    let offset = parts.next().unwrap().parse().unwrap();
    let partition = parts.next().unwrap().parse().unwrap();
    (partition, offset)
}

#[tokio::test]
async fn acks_commit_to_the_group_and_a_new_session_continues_after_them() {
    let broker = Broker::start();
    let name = topic("group");
    broker.create_topic(&name, 2);
    let placed = broker.produce(&name, &numbered(20));
    let group = json!({ "group_id": "sluice-readers" });
    let mut session = open(&broker, group.clone()).await.unwrap();
    let mut records = session.stream(&draining(&name), None).await.unwrap();
    let first = records.next(8).await.unwrap().unwrap();
    let delivered = ids(&first);
    assert_eq!(delivered.len(), 8);
    // Acking out of order commits only up to the first record still out.
    records.ack(&delivered[4..]).await.unwrap();
    let committed = broker.committed("sluice-readers", &name);
    let (p0, o0) = offset_of(&delivered[0]);
    assert!(
        committed[p0.to_string()].is_null() || committed[p0.to_string()] == json!(o0),
        "nothing past an unacknowledged record is committed: {committed}"
    );
    records.ack(&delivered[..4]).await.unwrap();
    let err = records.ack(&delivered[..1]).await.unwrap_err();
    assert!(err.to_string().contains("settled already"), "{err}");
    let committed = broker.committed("sluice-readers", &name);
    let mut expected_next: std::collections::BTreeMap<i64, i64> = Default::default();
    for id in &delivered {
        let (p, o) = offset_of(id);
        let next = expected_next.entry(p).or_insert(0);
        *next = (*next).max(o + 1);
    }
    for (p, next) in &expected_next {
        assert_eq!(
            committed[p.to_string()],
            json!(next),
            "kafka-python sees the commit: {committed}"
        );
    }
    drop(records);

    // A new session of the group, without a checkpoint, starts after the commit.
    let mut session = open(&broker, group).await.unwrap();
    let mut records = session.stream(&draining(&name), None).await.unwrap();
    let rest = drain_ids(&mut records, 50).await;
    let all: BTreeSet<String> = placed_ids(&name, &placed);
    let mut union: Vec<String> = delivered.clone();
    union.extend(rest.iter().cloned());
    assert_eq!(rest.len(), 12, "{rest:?}");
    assert_eq!(union.iter().cloned().collect::<BTreeSet<_>>(), all);
}

#[tokio::test]
async fn a_nacked_record_comes_again_with_everything_after_it_in_its_partition() {
    let broker = Broker::start();
    let name = topic("nack");
    broker.create_topic(&name, 1);
    broker.produce(&name, &numbered(6));
    let mut session = open(&broker, json!({ "group_id": "nackers" }))
        .await
        .unwrap();
    let mut records = session.stream(&draining(&name), None).await.unwrap();
    let first = ids(&records.next(6).await.unwrap().unwrap());
    records.ack(&first[..2]).await.unwrap();
    records.nack(&first[3..4]).await.unwrap();
    let again = ids(&records.next(6).await.unwrap().unwrap());
    assert_eq!(again, first[3..], "offset 3 and after come again");
    // Record 2 is still out: the commit stays before it.
    records.ack(&again).await.unwrap();
    assert_eq!(broker.committed("nackers", &name)["0"], json!(2));
}

#[tokio::test]
async fn a_killed_cli_stream_restarted_with_its_group_delivers_every_record_and_no_acked_one_again()
{
    let broker = Broker::start();
    let name = topic("killed");
    broker.create_topic(&name, 2);
    let placed = broker.produce(&name, &numbered(400));
    let cfg = config(&broker, json!({ "group_id": "cli-readers" }));
    let mut run = Command::new(sluice_bin());
    run.args(["run", &guest("sluice_kafka").display().to_string()])
        .args(["--allow-tcp", broker.address(), "--config", &cfg])
        .args(["stream", &name, "--batch-size", "7"]);
    let printed: Vec<String> = kill_mid_stream(&mut run, 30)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        printed.len() < placed.len(),
        "the kill landed before the end"
    );
    let committed = broker.committed("cli-readers", &name);
    let committed_at = |p: i64| committed[p.to_string()].as_i64().unwrap_or(0);
    assert!(
        (0..2).map(committed_at).sum::<i64>() > 0,
        "the CLI acknowledged what it flushed: {committed}"
    );

    let mut session = open(&broker, json!({ "group_id": "cli-readers" }))
        .await
        .unwrap();
    let mut records = session.stream(&draining(&name), None).await.unwrap();
    let back = drain_ids(&mut records, 100).await;
    for id in &back {
        let (p, o) = offset_of(id);
        assert!(o >= committed_at(p), "{id} was acknowledged and came again");
    }
    let seen: BTreeSet<String> = printed.iter().chain(&back).cloned().collect();
    let all: BTreeSet<String> = placed_ids(&name, &placed);
    assert_eq!(seen, all, "every record at least once");
}

#[tokio::test]
async fn a_server_consumer_lease_commits_its_acks_and_the_next_lease_continues_after_them() {
    let broker = Broker::start();
    let name = topic("server");
    broker.create_topic(&name, 1);
    broker.produce(&name, &numbered(5));
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (_, token) = tenant(
        addr,
        json!({ "name": "kafka", "ceiling": { "tcp": [broker.address()] } }),
    )
    .await;
    let connector = upload(addr, &token, "sluice_kafka").await;
    let spec = json!({
        "connector": connector,
        "config": { "bootstrap": [broker.address()], "group_id": "web", "block_ms": 100 },
        "grants": { "sockets": { "tcp": [broker.address()] } },
    });
    let instance = new_instance(addr, &token, &spec).await;
    let first = open_lease(addr, &token, &instance, json!({ "resource": name })).await;
    let (status, batch) = next(addr, &token, &instance, &first, 10).await;
    assert_eq!(status, 200, "{batch}");
    let delivered = lease_ids(&batch);
    assert_eq!(delivered.len(), 5);
    let acked = api(addr, Some(&token))
        .post_json(
            &format!("/v1/instances/{instance}/consumers/{first}/ack"),
            &json!({ "ids": delivered[..3] }),
        )
        .await;
    assert_eq!(acked.json(), json!({ "acked": 3 }));
    api(addr, Some(&token))
        .delete(&format!("/v1/instances/{instance}/consumers/{first}"))
        .await;
    assert_eq!(broker.committed("web", &name)["0"], json!(3));
    let second = open_lease(addr, &token, &instance, json!({ "resource": name })).await;
    let (_, batch) = next(addr, &token, &instance, &second, 10).await;
    assert_eq!(
        lease_ids(&batch),
        delivered[3..],
        "the unacknowledged ones, and nothing acked"
    );
}
