//! `sluice run --record` and `sluice replay`: a run recorded against a real
//! upstream (HTTP, PostgreSQL, files) replays with the upstream gone and
//! prints the same thing; secrets stay out of the recording; a replay that
//! makes another call names the first one that differs.

use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};
use sluice_tests::upstream::{Upstream, API_KEY, BEARER_TOKEN};
use sluice_tests::{guest, sluice, tempdir};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The recording's events of one kind.
fn events(recording: &Path, kind: &str) -> Vec<Value> {
    std::fs::read_to_string(recording)
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|event| event["event"] == kind)
        .collect()
}

fn replay(recording: &Path, wasm: &str) -> Output {
    sluice(&["replay", &recording.display().to_string(), wasm])
}

/// The rest connector over the test API's `/api/echo-items` (which echoes
/// the request's credentials back in response headers), paged by 10.
fn rest_config(upstream: &Upstream, page_size: u32) -> Value {
    json!({
        "base_url": upstream.origin(),
        "headers": { "X-Api-Key": API_KEY },
        "resources": {
            "items": { "path": "/api/echo-items", "records_path": "/data", "id_field": "id",
                       "pagination": { "type": "link", "size_param": "limit", "page_size": page_size } },
            "broken": { "path": "/api/err/503", "records_path": "/data" }
        }
    })
}

/// Record `stream items` of the rest connector with a bearer token the host
/// adds; the upstream is gone when this returns.
async fn recorded_rest_stream(dir: &Path, resource: &str) -> (Output, std::path::PathBuf) {
    let upstream = Upstream::start().await;
    let grants = dir.join("grants.json");
    let auth = json!({ "http": {
        "origins": [upstream.origin()],
        "allow_private_addresses": true,
        "auth": [{ "origin": upstream.origin(), "kind": "bearer", "secret": "token" }]
    } });
    std::fs::write(&grants, auth.to_string()).unwrap();
    let recording = dir.join("run.tape");
    let args: Vec<String> = vec![
        "run".into(),
        guest("sluice_rest").display().to_string(),
        "--grants".into(),
        grants.display().to_string(),
        "--secret".into(),
        format!("token={BEARER_TOKEN}"),
        "--config".into(),
        rest_config(&upstream, 10).to_string(),
        "--record".into(),
        recording.display().to_string(),
        "stream".into(),
        resource.into(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        sluice(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    drop(upstream);
    (out, recording)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_run_replays_with_the_upstream_gone_and_no_secret_in_the_recording() {
    let dir = tempdir();
    let (recorded, recording) = recorded_rest_stream(dir.path(), "items").await;
    assert!(recorded.status.success(), "{}", stderr(&recorded));
    let lines = String::from_utf8_lossy(&recorded.stdout);
    assert_eq!(lines.matches("\"record\"").count(), 25, "{lines}");

    // Three pages of 10, 10 and 5, each exchange with its body.
    let exchanges = events(&recording, "http");
    assert_eq!(exchanges.len(), 3, "{exchanges:?}");
    assert!(exchanges[0]["request"]["uri"]
        .as_str()
        .unwrap()
        .ends_with("/api/echo-items?limit=10"));
    assert_eq!(exchanges[0]["answer"]["response"]["status"], 200);
    assert!(!events(&recording, "http_body").is_empty());
    assert_eq!(events(&recording, "end")[0]["outcome"], "ok");

    // Neither the host-held token nor the key from the config is anywhere in
    // it, though the upstream echoed both back.
    let text = std::fs::read_to_string(&recording).unwrap();
    assert!(
        !text.contains(BEARER_TOKEN) && !text.contains(API_KEY),
        "{text}"
    );
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["config"]["headers"]["X-Api-Key"], "***");
    let sent = &exchanges[0]["request"]["headers"];
    assert!(
        sent.as_array()
            .unwrap()
            .contains(&json!(["x-api-key", "***"])),
        "{sent}"
    );

    // The upstream is gone: the replay prints exactly what the run printed.
    let replayed = replay(&recording, &guest("sluice_rest").display().to_string());
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    assert_eq!(
        String::from_utf8_lossy(&replayed.stdout),
        lines,
        "{}",
        stderr(&replayed)
    );
    assert!(
        stderr(&replayed).contains("replay matched the recording: 3 of 3 recorded calls"),
        "{}",
        stderr(&replayed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_sends_another_request_names_the_first_difference() {
    let dir = tempdir();
    let (recorded, recording) = recorded_rest_stream(dir.path(), "items").await;
    assert!(recorded.status.success(), "{}", stderr(&recorded));
    // The same connector with pages of 7: its first request already differs.
    let text = std::fs::read_to_string(&recording).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    let mut header: Value = serde_json::from_str(first).unwrap();
    header["config"]["resources"]["items"]["pagination"]["page_size"] = json!(7);
    std::fs::write(&recording, format!("{header}\n{rest}")).unwrap();

    let replayed = replay(&recording, &guest("sluice_rest").display().to_string());
    assert!(!replayed.status.success());
    let why = stderr(&replayed);
    assert!(
        why.contains(
            "replay diverged after 0 matching call(s) of 3: HTTP request 1: the connector sent GET"
        ) && why.contains("/api/echo-items?limit=7; the recording has GET")
            && why.contains("/api/echo-items?limit=10"),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_failure_replays_as_the_same_failure() {
    let dir = tempdir();
    let (recorded, recording) = recorded_rest_stream(dir.path(), "broken").await;
    assert!(!recorded.status.success());
    let failure = stderr(&recorded);
    assert!(failure.contains("503"), "{failure}");
    let end = &events(&recording, "end")[0]["outcome"];
    assert!(end["failed"].as_str().unwrap().contains("503"), "{end}");

    let replayed = replay(&recording, &guest("sluice_rest").display().to_string());
    let why = stderr(&replayed);
    assert!(replayed.status.success(), "{why}");
    assert!(
        why.contains("the replayed run failed") && why.contains("503"),
        "{why}"
    );
    assert!(why.contains("replay matched the recording"), "{why}");
}

#[tokio::test]
async fn sql_results_replay_without_the_database() {
    let schema = sluice_tests::postgres::TestSchema::new().await;
    schema
        .run(
            "CREATE TABLE people (id int PRIMARY KEY, name text, born date);
             INSERT INTO people SELECT n, 'name-' || n, DATE '1990-01-01' + n FROM generate_series(1, 1200) n;",
        )
        .await;
    let dir = tempdir();
    let recording = dir.path().join("sql.tape");
    let wasm = guest("sluice_postgres").display().to_string();
    let config = json!({ "grant": "main", "schema": schema.name }).to_string();
    let grant = format!("main={}", schema.grant_url("tape"));
    let recording_arg = recording.display().to_string();
    let run = |args: &[&str]| {
        let mut all = vec!["run", &wasm, "--allow-sql", &grant, "--config", &config];
        all.extend_from_slice(args);
        sluice(&all)
    };
    let recorded = run(&[
        "--record",
        &recording_arg,
        "stream",
        "people",
        "--batch-size",
        "500",
    ]);
    assert!(recorded.status.success(), "{}", stderr(&recorded));
    let streamed = String::from_utf8_lossy(&recorded.stdout).into_owned();
    assert_eq!(streamed.matches("\"record\"").count(), 1200);
    let calls = events(&recording, "sql");
    assert_eq!(calls[0]["call"]["call"], "open");
    assert!(calls.iter().any(|c| c["call"]["call"] == "query-stream"));
    // Dropping the table leaves only the recording.
    schema.run("DROP TABLE people").await;

    let replayed = replay(&recording, &wasm);
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    assert_eq!(String::from_utf8_lossy(&replayed.stdout), streamed);
    assert!(
        stderr(&replayed).contains(&format!(
            "replay matched the recording: {0} of {0} recorded calls",
            calls.len()
        )),
        "{}",
        stderr(&replayed)
    );
}

#[test]
fn files_read_and_listed_replay_from_the_recording_alone() {
    let data = tempdir();
    std::fs::write(
        data.path().join("people.ndjson"),
        "{\"id\":1,\"name\":\"Ada\"}\n{\"id\":2,\"name\":\"Grace\"}\n",
    )
    .unwrap();
    std::fs::write(data.path().join("other.csv"), "a,b\n1,2\n").unwrap();
    let dir = tempdir();
    let wasm = guest("sluice_file").display().to_string();
    let mount = format!("{}:/data:ro", data.path().display());
    let record = |name: &str, operation: &[&str]| {
        let recording = dir.path().join(name);
        let mut args = vec![
            "run".to_string(),
            wasm.clone(),
            "--mount".into(),
            mount.clone(),
            "--config".into(),
            r#"{"root": "/data"}"#.into(),
            "--record".into(),
            recording.display().to_string(),
        ];
        args.extend(operation.iter().map(|s| s.to_string()));
        let out = sluice(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}", stderr(&out));
        (recording, out.stdout)
    };
    let (fetched, fetch_out) = record("fetch.tape", &["fetch", "people.ndjson"]);
    let (listed, discover_out) = record("discover.tape", &["discover"]);
    let opens = events(&fetched, "file_open");
    assert!(
        opens
            .iter()
            .any(|o| o["path"] == "/data/people.ndjson" && o["contents"].is_string()),
        "{opens:?}"
    );
    assert!(!events(&listed, "dir_list").is_empty());
    drop(data);

    for (recording, printed) in [(fetched, fetch_out), (listed, discover_out)] {
        let replayed = replay(&recording, &wasm);
        assert!(replayed.status.success(), "{}", stderr(&replayed));
        assert_eq!(
            String::from_utf8_lossy(&replayed.stdout),
            String::from_utf8_lossy(&printed)
        );
        assert!(
            stderr(&replayed).contains("replay matched the recording"),
            "{}",
            stderr(&replayed)
        );
    }
}

#[test]
fn a_file_that_is_not_a_recording_is_refused_with_its_line() {
    let dir = tempdir();
    let bogus = dir.path().join("bogus.tape");
    std::fs::write(&bogus, "{\"hello\": 1}\n").unwrap();
    let out = replay(&bogus, &guest("sluice_file").display().to_string());
    assert!(!out.status.success());
    let why = stderr(&out);
    assert!(
        why.contains("bad recording") && why.contains("line 1: not a sluice recording header"),
        "{why}"
    );
}

/// The probe's `entropy`: both clocks, every random source.
async fn entropy(tape: Option<sluice::tape::Tape>) -> Value {
    let probe = sluice_tests::connector("sluice_probe");
    let limits = sluice::Limits::default();
    let grants = sluice::Grants::none();
    let mut session = match tape {
        Some(tape) => probe.open_taped("{}", &grants, &limits, tape).await,
        None => probe.open_with_limits("{}", &grants, &limits).await,
    }
    .unwrap();
    let page = session
        .fetch(&sluice::FetchRequest::new("entropy"))
        .await
        .unwrap();
    page.records[0].to_json().unwrap()["data"].clone()
}

#[tokio::test]
async fn clock_readings_and_random_bytes_replay_exactly_through_the_library() {
    use sluice::tape::{Player, Recorder, Tape};
    use std::sync::Arc;
    let dir = tempdir();
    let path = dir.path().join("entropy.tape");
    let probe = sluice_tests::connector("sluice_probe");
    let recorder = Arc::new(
        Recorder::create(
            &path,
            &probe,
            "{}",
            &sluice::Grants::none(),
            json!("entropy"),
        )
        .unwrap(),
    );
    let recorded = entropy(Some(Tape::Record(Arc::clone(&recorder)))).await;
    recorder.finish(None).unwrap();
    // Another run sees other values; the replay, the recorded ones.
    assert_ne!(entropy(None).await, recorded);
    let player = Arc::new(Player::open(&path).unwrap());
    assert_eq!(player.header().invocation, json!("entropy"));
    let replayed = entropy(Some(Tape::Replay(Arc::clone(&player)))).await;
    assert_eq!(replayed, recorded);
    assert!(player.finish(None).is_faithful());
    assert!(!events(&path, "clock").is_empty() && !events(&path, "random").is_empty());
}

#[test]
fn tcp_traffic_is_not_recorded_and_says_so_and_its_replay_is_refused_it() {
    let dir = tempdir();
    let recording = dir.path().join("redis.tape");
    let redis = guest("sluice_redis").display().to_string();
    let recorded = sluice(&[
        "run",
        &redis,
        "--allow-tcp",
        "127.0.0.1:6379",
        "--config",
        r#"{"address": "127.0.0.1:6379"}"#,
        "--record",
        &recording.display().to_string(),
        "health",
    ]);
    let said = stderr(&recorded);
    assert!(
        recorded.status.success(),
        "redis must run on 127.0.0.1:6379: {said}"
    );
    assert!(
        said.contains("--record does not capture TCP sockets traffic"),
        "{said}"
    );
    let header: Value = serde_json::from_str(
        std::fs::read_to_string(&recording)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["unrecorded"], json!(["tcp"]));

    let replayed = replay(&recording, &redis);
    let why = stderr(&replayed);
    assert!(!replayed.status.success());
    assert!(
        why.contains("the recorded run also used tcp, which the recording does not hold")
            && why.contains("the recorded run ended with success; the replay ended with the error"),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_the_connector_makes_itself_leaves_no_secret_in_the_recording() {
    let upstream = Upstream::start().await;
    let dir = tempdir();
    let recording = dir.path().join("login.tape");
    let login = json!({
        "url": upstream.url("/token"),
        "method": "POST",
        "text": format!("grant_type=client_credentials&client_id=app&client_secret={}", sluice_tests::upstream::CLIENT_SECRET),
    })
    .to_string();
    let probe = guest("sluice_probe").display().to_string();
    let args = vec![
        "run".to_string(),
        probe.clone(),
        "--allow-http".into(),
        upstream.origin(),
        "--allow-http-private".into(),
        "--record".into(),
        recording.display().to_string(),
        "fetch".into(),
        "http".into(),
        "--options".into(),
        login,
    ];
    let recorded = tokio::task::spawn_blocking(move || {
        sluice(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    assert!(recorded.status.success(), "{}", stderr(&recorded));
    drop(upstream);
    // The live run got its token; the recording has neither it nor the client secret.
    let page: Value = serde_json::from_slice(&recorded.stdout).unwrap();
    let body: Value =
        serde_json::from_str(page["records"][0]["data"]["body"].as_str().unwrap()).unwrap();
    let token = body["access_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("tok-"), "{body}");
    let text = std::fs::read_to_string(&recording).unwrap();
    let exchange = &events(&recording, "http")[0];
    use base64::Engine as _;
    let sent = base64::engine::general_purpose::STANDARD
        .decode(exchange["request"]["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(sent).unwrap(),
        "grant_type=client_credentials&client_id=app&client_secret=***"
    );
    assert!(!text.contains(sluice_tests::upstream::CLIENT_SECRET));
    let answered = events(&recording, "http_body")
        .iter()
        .map(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b["data"].as_str().unwrap())
                .unwrap()
        })
        .collect::<Vec<_>>()
        .concat();
    let answered = String::from_utf8(answered).unwrap();
    assert!(
        answered.contains(r#""access_token":"***""#) && !answered.contains(&token),
        "{answered}"
    );
    // The replay sends the same (redacted) login and gets the redacted token.
    let replayed = replay(&recording, &probe);
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    let page: Value = serde_json::from_slice(&replayed.stdout).unwrap();
    assert!(page["records"][0]["data"]["body"]
        .as_str()
        .unwrap()
        .contains(r#""access_token":"***""#));
}

#[test]
fn a_recorded_denial_replays_naming_the_same_grant() {
    let dir = tempdir();
    let recording = dir.path().join("denied.tape");
    let probe = guest("sluice_probe").display().to_string();
    let options = json!({ "url": "http://127.0.0.1:9/x" }).to_string();
    let recorded = sluice(&[
        "run",
        &probe,
        "--record",
        &recording.display().to_string(),
        "fetch",
        "http",
        "--options",
        &options,
    ]);
    assert!(!recorded.status.success());
    let denied = stderr(&recorded);
    assert!(
        denied.contains("--allow-http http://127.0.0.1:9"),
        "{denied}"
    );
    let exchange = &events(&recording, "http")[0];
    assert_eq!(
        exchange["answer"]["failed"]["denial"]["grant"],
        "--allow-http http://127.0.0.1:9"
    );

    let replayed = replay(&recording, &probe);
    let why = stderr(&replayed);
    assert!(replayed.status.success(), "{why}");
    assert!(
        why.contains("the replayed run failed")
            && why.contains("--allow-http http://127.0.0.1:9")
            && why.contains(
                "replay matched the recording: 1 of 1 recorded calls, ending the same way"
            ),
        "{why}"
    );
}
