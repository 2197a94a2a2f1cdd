//! `sluice run` consuming Redis: acknowledged after each batch is written,
//! and nothing lost when the process is killed mid-stream.

use std::process::Command;

use serde_json::{json, Value};
use sluice_tests::redis::{TestStream, ADDRESS};
use sluice_tests::{guest, kill_mid_stream, sluice_bin};

use super::{config, drain, grants, open};

/// `sluice run` with `options` (before the operation) streaming the key with `extra`.
fn run(stream: &TestStream, cfg: &str, options: &[&str], extra: &[&str]) -> Command {
    let mut command = Command::new(sluice_bin());
    command
        .args(["run", &guest("sluice_redis").display().to_string()])
        .args(["--allow-tcp", ADDRESS, "--config", cfg])
        .args(options)
        .args(["stream", &stream.key])
        .args(extra);
    command
}

fn records(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter_map(|line| line.get("record").cloned())
        .collect()
}

#[tokio::test]
async fn sluice_run_acks_each_written_batch_and_max_stops_there() {
    let mut stream = TestStream::new();
    let user = stream.user("pw-from-the-environment");
    let added: Vec<String> = (0..10)
        .map(|n| stream.add(&[("n", &n.to_string())]))
        .collect();
    let cfg = config(json!({ "username": user, "password_secret": "redis_password" }));
    let secret = ["--socket-secret", "redis_password=env:SLUICE_TEST_REDIS_PW"];
    let out = run(&stream, &cfg, &secret, &["--batch-size", "4", "--max", "6"])
        .env("SLUICE_TEST_REDIS_PW", "pw-from-the-environment")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<&str> = records(&out.stdout)
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .map(|id| added.iter().find(|a| *a == id).unwrap().as_str())
        .collect();
    assert_eq!(got, added[..6]);
    assert_eq!(
        stream.pending("g"),
        0,
        "every written record was acknowledged"
    );
    // --no-ack leaves what it wrote pending.
    let secret = ["--socket-secret", "redis_password=pw-from-the-environment"];
    let out = run(&stream, &cfg, &secret, &["--max", "2", "--no-ack"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(records(&out.stdout).len(), 2);
    assert_eq!(stream.pending("g"), 2);
}

#[tokio::test]
async fn a_killed_sluice_run_loses_nothing_the_next_consumer_gets_every_unacked_entry() {
    let stream = TestStream::new();
    let added: Vec<(String, String)> = (0..200)
        .map(|n| {
            // 1 KiB each: more than a pipe holds, so the writer blocks mid-stream.
            let body = format!("message {n} {}", "x".repeat(1024));
            (stream.add(&[("body", &body)]), body)
        })
        .collect();
    let cfg = config(json!({}));
    let printed: Vec<String> =
        kill_mid_stream(&mut run(&stream, &cfg, &[], &["--batch-size", "7"]), 50)
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
    let pending = stream.pending("g");
    assert!(pending > 0, "the kill landed mid-stream");
    let mut session = open(&cfg, &grants()).await.unwrap();
    let redelivered = drain(&mut session, &stream).await;
    let again = redelivered.iter().filter(|(_, _, again)| *again).count();
    assert_eq!(
        again as u64, pending,
        "every pending entry comes back, marked redelivered"
    );
    let back: Vec<&str> = redelivered.iter().map(|(id, _, _)| id.as_str()).collect();
    for (id, body) in &added {
        if !printed.contains(id) {
            assert!(
                back.contains(&id.as_str()),
                "{id} was never written and did not come back"
            );
        }
        if let Some((_, data, _)) = redelivered.iter().find(|(rid, _, _)| rid == id) {
            assert_eq!(data, &json!({ "body": body }), "{id} came back whole");
        }
    }
    // Those written and acknowledged before the kill do not come back.
    assert!(back.len() < added.len(), "acks before the kill held");
    assert!(
        printed.len() < added.len(),
        "the kill landed before the end"
    );
}
