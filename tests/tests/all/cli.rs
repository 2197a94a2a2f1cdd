//! The `sluice` binary: JSON and NDJSON on stdout, actionable errors on stderr.

use std::process::{Command, Output};

use serde_json::{json, Value};
use sluice_tests::{guest, root, sluice, sluice_bin, tempdir};

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "sluice failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn file_wasm() -> String {
    guest("sluice_file").display().to_string()
}

#[test]
fn fetch_prints_a_json_page() {
    let out = sluice(&[
        "run",
        &file_wasm(),
        "--mount",
        "examples/data:/data:ro",
        "--config",
        r#"{"root": "/data", "csv": {"infer_types": true}}"#,
        "fetch",
        "people.csv",
        "--filter",
        "age=gt:80",
        "--sort",
        "age:desc",
        "--fields",
        "name,age",
        "--page-size",
        "2",
    ]);
    let page = stdout_json(&out);
    assert_eq!(
        page["records"],
        json!([
            {"data": {"name": "Barbara Liskov", "age": 86}},
            {"data": {"name": "Grace Hopper", "age": 85}}
        ])
    );
    assert_eq!(page["total_count"], 3);
    assert_eq!(page["next_cursor"], "offset:2");
}

#[test]
fn stream_prints_ndjson_and_resumes_from_a_checkpoint() {
    let base = [
        "run",
        &file_wasm(),
        "--mount",
        "examples/data:/data:ro",
        "--config",
        r#"{"root": "/data"}"#,
    ];
    let mut args = base.to_vec();
    args.extend(["stream", "people.ndjson", "--batch-size", "4"]);
    let out = sluice(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 6 + 2, "six records and two checkpoints");
    assert_eq!(lines[0]["record"]["data"]["name"], "Ada Lovelace");
    let checkpoint = lines[4]["checkpoint"]
        .as_str()
        .expect("checkpoint after the first batch")
        .to_string();
    let mut args = base.to_vec();
    args.extend(["stream", "people.ndjson", "--checkpoint", &checkpoint]);
    let out = sluice(&args);
    let names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["record"]["data"]["name"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(names, ["Barbara Liskov", "Ken Thompson"]);
}

#[test]
fn execute_writes_through_a_rw_mount() {
    let dir = tempdir();
    let mount = format!("{}:/out:rw", dir.path().display());
    let out = sluice(&[
        "run",
        &file_wasm(),
        "--mount",
        &mount,
        "--config",
        r#"{"root": "/out"}"#,
        "execute",
        "new.ndjson",
        "write",
        "--records",
        r#"[{"a": 1}, {"a": 2}]"#,
    ]);
    assert_eq!(stdout_json(&out)["affected"], 2);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("new.ndjson")).unwrap(),
        "{\"a\":1}\n{\"a\":2}\n"
    );
}

#[test]
fn describe_and_inspect_report_the_connector() {
    let described = stdout_json(&sluice(&["describe", &file_wasm()]));
    assert_eq!(described["name"], "file");
    let inspected = stdout_json(&sluice(&["inspect", &file_wasm()]));
    assert_eq!(
        inspected["exports"],
        json!(["sluice:connector/connector-api@0.1.0"])
    );
    assert_eq!(inspected["sha256"].as_str().unwrap().len(), 64);
    assert!(inspected["imports"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["provided"] == true));
    assert_eq!(
        inspected["size"],
        std::fs::metadata(file_wasm()).unwrap().len()
    );
}

#[test]
fn a_denied_access_fails_with_an_actionable_message() {
    let out = sluice(&[
        "run",
        &guest("sluice_probe").display().to_string(),
        "fetch",
        "tcp",
        "--options",
        r#"{"addr": "127.0.0.1:9"}"#,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--allow-tcp 127.0.0.1:9"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_input_fails_with_a_message_a_person_can_act_on() {
    let cases: [(&[&str], &str); 4] = [
        (&["run", "Cargo.toml", "health"], "not a WebAssembly file"),
        (
            &[
                "run",
                &file_wasm(),
                "--mount",
                "no/such/dir:/data",
                "health",
            ],
            "no/such/dir",
        ),
        (
            &["run", &file_wasm(), "--config", "{not json", "health"],
            "--config",
        ),
        (
            &["run", &file_wasm(), "fetch", "x.csv", "--filter", "age>3"],
            "FIELD=OP:VALUE",
        ),
    ];
    for (args, needle) in cases {
        let out = sluice(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr `{stderr}` should mention `{needle}`"
        );
    }
}

#[test]
fn help_documents_every_run_option() {
    let out = sluice(&["run", "--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--config",
        "--grants",
        "--allow-http",
        "--mount",
        "--allow-tcp",
        "--memory-mib",
        "--cpu-ms",
        "--timeout-ms",
    ] {
        assert!(help.contains(flag), "run --help lacks {flag}");
    }
    let out = sluice(&["run", "x.wasm", "fetch", "--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--filter",
        "--sort",
        "--fields",
        "--page-size",
        "--cursor",
        "--offset",
    ] {
        assert!(help.contains(flag), "fetch --help lacks {flag}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grants_file_auth_entry_may_name_an_origin_granted_by_allow_http() {
    let upstream = sluice_tests::upstream::Upstream::start().await;
    let dir = tempdir();
    let grants = dir.path().join("grants.json");
    let auth = json!({ "http": { "auth": [
        { "origin": upstream.origin(), "kind": "bearer", "secret": "token" }
    ] } });
    std::fs::write(&grants, auth.to_string()).unwrap();
    let probe = guest("sluice_probe").display().to_string();
    let options = json!({ "url": upstream.url("/auth/bearer") }).to_string();
    let secret = format!("token={}", sluice_tests::upstream::BEARER_TOKEN);
    let origin = upstream.origin();
    let grants = grants.display().to_string();
    let (with_flag, without_flag) = tokio::task::spawn_blocking(move || {
        let run = |extra: &[&str]| {
            let mut args = vec!["run", &probe, "--grants", &grants, "--secret", &secret];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["fetch", "http", "--options", &options]);
            sluice(&args)
        };
        (run(&["--allow-http", &origin]), run(&[]))
    })
    .await
    .unwrap();
    let page = stdout_json(&with_flag);
    assert_eq!(page["records"][0]["data"]["status"], 200, "{page}");
    // Without the flag the file alone does not grant the origin, and says how to.
    assert!(!without_flag.status.success());
    let stderr = String::from_utf8_lossy(&without_flag.stderr);
    assert!(
        stderr.contains("names an origin this grant does not allow")
            && stderr.contains("--allow-http"),
        "{stderr}"
    );
}

#[test]
fn trace_logs_show_the_runtime_and_leave_out_the_compiler_internals() {
    let run = |filter: &str| {
        Command::new(sluice_bin())
            .args(["run", &file_wasm(), "--mount", "examples/data:/data:ro"])
            .args(["--config", r#"{"root": "/data"}"#, "--no-cache", "health"])
            .current_dir(root())
            .env("SLUICE_LOG", filter)
            .output()
            .expect("sluice runs")
    };
    let out = run("trace");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("connector loaded"), "{stderr}");
    assert!(stderr.contains("session opened"), "{stderr}");
    let noisy: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("cranelift") || l.contains("regalloc"))
        .take(3)
        .collect();
    assert!(noisy.is_empty(), "compiler internals at trace: {noisy:?}");
    // Asked for by name, they are there.
    let out = run("warn,cranelift_codegen=debug");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cranelift_codegen"),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
}

#[test]
fn a_closed_stdout_ends_a_stream_quietly_with_status_zero() {
    // A file far larger than a pipe's buffer, so the stream is still writing
    // when the reader goes away.
    let dir = tempdir();
    let mut csv = String::from("id,name\n");
    for i in 0..60_000 {
        csv.push_str(&format!("{i},name-{i}\n"));
    }
    std::fs::write(dir.path().join("big.csv"), csv).unwrap();
    let mount = format!("{}:/data:ro", dir.path().display());
    let mut child = Command::new(sluice_bin())
        .args(["run", &file_wasm(), "--mount", &mount])
        .args(["--config", r#"{"root": "/data"}"#, "stream", "big.csv"])
        .current_dir(root())
        .env_remove("SLUICE_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sluice runs");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(first.contains("name-0"), "{first}");
    drop(stdout); // `| head -1`
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "a closed stdout is not an error to report"
    );
    assert!(out.status.success(), "{:?}", out.status);
}

#[test]
fn a_busy_listen_port_is_reported_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempdir();
    let out = sluice(&[
        "serve",
        "--listen",
        &addr,
        "--data-dir",
        &dir.path().display().to_string(),
        "--admin-token",
        "t",
        "--pooling-instances",
        "0",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("another process is listening there"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("in use").count(), 1, "{stderr}");
}

#[test]
fn an_unknown_mount_mode_is_named_on_the_command_line() {
    let out = sluice(&[
        "run",
        &file_wasm(),
        "--mount",
        "examples/data:/data:xx",
        "health",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown mode `xx`"), "{stderr}");
}

#[test]
fn runs_reuse_the_compiled_connector_cache() {
    let cache = tempdir();
    let describe = || {
        Command::new(sluice_bin())
            .args(["describe", &file_wasm(), "--cache-dir"])
            .arg(cache.path())
            .current_dir(root())
            .env("SLUICE_LOG", "info")
            .output()
            .expect("sluice runs")
    };
    let first = describe();
    let second = describe();
    for out in [&first, &second] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout_json(out)["name"], "file");
    }
    let first = String::from_utf8_lossy(&first.stderr);
    let second = String::from_utf8_lossy(&second.stderr);
    assert!(
        first.contains("artifact=\"compiled and cached\""),
        "{first}"
    );
    assert!(second.contains("artifact=\"cached\""), "{second}");
}

/// `sluice run` of the postgres connector on `schema`, read-write.
fn postgres_run(schema: &sluice_tests::postgres::TestSchema) -> Command {
    let mut command = Command::new(sluice_bin());
    command
        .arg("run")
        .arg(guest("sluice_postgres"))
        .arg("--allow-sql-write")
        .arg(format!("main={}", schema.grant_url("cli-pipe")))
        .arg("--config")
        .arg(json!({ "grant": "main", "schema": schema.name }).to_string())
        .current_dir(root())
        .env_remove("SLUICE_LOG");
    command
}

async fn count(schema: &sluice_tests::postgres::TestSchema, sql: &str) -> i64 {
    schema
        .client
        .query_one(&sql.replace("{s}", &schema.name), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_stream_piped_into_execute_copies_a_table_batch_by_batch() {
    let schema = sluice_tests::postgres::TestSchema::new().await;
    schema
        .run(
            r#"CREATE TABLE src (id int PRIMARY KEY, "_id" text, name text);
               INSERT INTO src SELECT n, 'own-' || n, 'name-' || n FROM generate_series(1, 2500) n;
               CREATE TABLE dst (LIKE src INCLUDING ALL);"#,
        )
        .await;
    let mut stream = postgres_run(&schema)
        .args(["stream", "src", "--batch-size", "1000"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let execute = postgres_run(&schema)
        .args(["execute", "dst", "upsert", "--records", "-"])
        .stdin(stream.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(stream.wait().unwrap().success());
    let result = stdout_json(&execute);
    assert_eq!(result["affected"], 2500, "{result}");
    assert!(result["batches"].as_u64().unwrap() >= 3, "{result}");
    // Every row arrived whole, its own `_id` column included.
    let same = r#"SELECT count(*) FROM {s}.src JOIN {s}.dst USING (id, "_id", name)"#;
    assert_eq!(count(&schema, same).await, 2500);
}

#[tokio::test]
async fn an_error_line_in_the_input_stops_the_write_at_the_last_checkpoint() {
    let schema = sluice_tests::postgres::TestSchema::new().await;
    schema
        .run("CREATE TABLE dst (id int PRIMARY KEY, name text);")
        .await;
    let input = [
        json!({ "record": { "id": "1", "data": { "id": 1, "name": "a" } } }),
        json!({ "record": { "data": { "id": 2, "name": "b" } } }),
        json!({ "id": 3, "name": "c" }),
        json!({ "checkpoint": "after-3" }),
        json!({ "record": { "data": { "id": 4, "name": "d" } } }),
        json!({ "record": { "data": { "id": 5, "name": "e" } } }),
        json!({ "error": { "code": "upstream_unavailable", "message": "the source went away", "details": null } }),
    ];
    let dir = tempdir();
    let file = dir.path().join("in.ndjson");
    let text: Vec<String> = input.iter().map(Value::to_string).collect();
    std::fs::write(&file, text.join("\n")).unwrap();
    let out = postgres_run(&schema)
        .args(["execute", "dst", "upsert", "--records"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the source went away")
            && stderr.contains("3 record(s) written up to checkpoint \"after-3\"")
            && stderr.contains("2 after it not written"),
        "{stderr}"
    );
    assert_eq!(count(&schema, "SELECT count(*) FROM {s}.dst").await, 3);
}

#[test]
fn a_stream_that_cannot_start_still_tells_the_reader_of_stdout() {
    let out = sluice(&[
        "run",
        &file_wasm(),
        "--mount",
        "examples/data:/data:ro",
        "--config",
        r#"{"root": "/data"}"#,
        "stream",
        "nope.ndjson",
    ]);
    assert!(!out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(lines[0]["error"]["code"], "not_found", "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nope.ndjson"), "{stderr}");
}

#[test]
fn make_run_serves_a_release_build_on_the_port_given() {
    let out = Command::new("make")
        .args(["-n", "run", "PORT=9999"])
        .current_dir(root())
        .output()
        .expect("make runs");
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("cargo build --release -p sluice-cli --bin sluice"),
        "{plan}"
    );
    assert!(
        plan.contains("target/release/sluice serve --listen 127.0.0.1:9999")
            && plan.contains("--connectors target/bundled"),
        "{plan}"
    );
}

/// `sluice run` of the probe's ack-logging stream of `count` records, its
/// log in a mount of `dir` with `mode` (`rw`, or `ro` so that acks fail).
fn run_ack_stream(dir: &std::path::Path, mode: &str, count: u32, extra: &[&str]) -> Output {
    let mount = format!("{}:/d:{mode}", dir.display());
    let options = json!({ "path": "/d/acks", "count": count }).to_string();
    let probe = guest("sluice_probe").display().to_string();
    let mut args = vec![
        "run",
        &probe,
        "--mount",
        &mount,
        "stream",
        "queue",
        "--options",
        &options,
    ];
    args.extend_from_slice(extra);
    sluice(&args)
}

/// The probe's ack-logging stream, which must succeed: stdout's lines and the ack log.
fn stream_acks(count: u32, extra: &[&str]) -> (Vec<Value>, String) {
    let dir = tempdir();
    let out = run_ack_stream(dir.path(), "rw", count, extra);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let log = std::fs::read_to_string(dir.path().join("acks")).unwrap_or_default();
    (lines, log)
}

#[test]
fn stream_acknowledges_each_batch_after_writing_it() {
    let (lines, log) = stream_acks(5, &["--batch-size", "2"]);
    assert_eq!(lines.len(), 5 + 3, "5 records and 3 checkpoints");
    assert_eq!(log, "ack 1,2\nack 3,4\nack 5\n");
}

#[test]
fn stream_no_ack_leaves_every_record_unacknowledged() {
    let (lines, log) = stream_acks(5, &["--batch-size", "2", "--no-ack"]);
    assert_eq!(lines.len(), 5 + 3);
    assert_eq!(log, "", "nothing was acknowledged");
}

#[test]
fn stream_max_stops_after_that_many_records_and_acks_only_those() {
    let (lines, log) = stream_acks(10, &["--batch-size", "4", "--max", "6"]);
    let ids: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["record"]["id"].as_str())
        .collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6"]);
    assert_eq!(lines.last().unwrap(), &json!({ "checkpoint": "6" }));
    assert_eq!(log, "ack 1,2,3,4\nack 5,6\n");
}

#[test]
fn stream_says_so_when_written_records_cannot_be_acknowledged() {
    let dir = tempdir();
    // A read-only mount: the probe cannot log the ack, so the ack fails.
    let out = run_ack_stream(dir.path(), "ro", 3, &[]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(r#"{"record":{"id":"1","data":{"n":1}}}"#),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("3 record(s) were written but could not be acknowledged"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learn_mode_finds_the_grants_a_run_needs_and_they_suffice() {
    let upstream = sluice_tests::upstream::Upstream::start().await;
    let probe = guest("sluice_probe").display().to_string();
    let redis = guest("sluice_redis").display().to_string();
    let options = json!({ "url": upstream.url("/hello") }).to_string();
    let dir = tempdir();
    let learned_file = dir.path().join("learned.json");
    let learned_path = learned_file.display().to_string();
    let (learned, rerun, tcp, execute, sql) = tokio::task::spawn_blocking(move || {
        let learned = sluice(&[
            "run",
            &probe,
            "--learn",
            "fetch",
            "http",
            "--options",
            &options,
        ]);
        std::fs::write(&learned_file, &learned.stdout).unwrap();
        let rerun = sluice(&[
            "run",
            &probe,
            "--grants",
            &learned_path,
            "fetch",
            "http",
            "--options",
            &options,
        ]);
        let config = json!({ "address": "127.0.0.1:6379" }).to_string();
        let tcp = sluice(&["run", &redis, "--config", &config, "--learn", "health"]);
        // A queue's stream ends the learning run once it has nothing more, not never.
        let key = format!("sluice-learn-{}", std::process::id());
        let xadd = Command::new("redis-cli")
            .args(["XADD", &key, "*", "n", "1"])
            .output();
        assert!(xadd.is_ok_and(|o| o.status.success()), "redis-cli XADD");
        let queue = sluice(&[
            "run", &redis, "--config", &config, "--learn", "stream", &key,
        ]);
        let _ = Command::new("redis-cli").args(["DEL", &key]).output();
        assert_eq!(
            stdout_json(&queue),
            json!({ "sockets": { "tcp": ["127.0.0.1:6379"] } })
        );
        let execute = sluice(&["run", &probe, "--learn", "execute", "x", "append"]);
        let sql_options = json!({ "grant": "main", "statements": [["SELECT 1", []]] }).to_string();
        let sql = sluice(&[
            "run",
            &probe,
            "--learn",
            "fetch",
            "sql",
            "--options",
            &sql_options,
        ]);
        (learned, rerun, tcp, execute, sql)
    })
    .await
    .unwrap();
    // The HTTP origin was denied, granted, and the second round succeeded.
    assert_eq!(
        stdout_json(&learned),
        json!({ "http": { "origins": [upstream.origin()] } })
    );
    let stderr = String::from_utf8_lossy(&learned.stderr);
    assert!(
        stderr.contains("use it only on a connector you trust"),
        "{stderr}"
    );
    assert!(stderr.contains("succeeded in round 2"), "{stderr}");
    // What it printed is a grants file that lets the run through.
    assert_eq!(stdout_json(&rerun)["records"][0]["data"]["status"], 200);
    // A TCP address, learned the same way.
    assert_eq!(
        stdout_json(&tcp),
        json!({ "sockets": { "tcp": ["127.0.0.1:6379"] } })
    );
    // Writes are never run again and again; a sql grant cannot be guessed.
    assert!(!execute.status.success());
    assert!(String::from_utf8_lossy(&execute.stderr).contains("--learn runs reads only"));
    assert!(!sql.status.success());
    let stderr = String::from_utf8_lossy(&sql.stderr);
    assert!(stderr.contains("--learn cannot grant this"), "{stderr}");
    assert!(stderr.contains("a sql grant named `main`"), "{stderr}");
}

#[test]
fn test_connector_passes_the_file_connector_and_names_each_failed_check() {
    let wasm = file_wasm();
    let good = sluice(&[
        "test-connector",
        &wasm,
        "--mount",
        "examples/data:/data:ro",
        "--config",
        r#"{"root": "/data", "csv": {"infer_types": true}}"#,
        "--resource",
        "people.csv",
    ]);
    let report = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&good.stderr)
    );
    for check in [
        "ok    describe is pure",
        "ok    the config schema is a JSON Schema",
        "ok    a config breaking the schema is invalid-config",
        "ok    fetch honours fields",
        "ok    fetch honours filters",
        "ok    fetch honours sort",
        "ok    pages cover the records once, in order",
        "ok    a stream resumes from a checkpoint exactly",
        "ok    an unknown resource is a typed error",
    ] {
        assert!(
            report.lines().any(|l| l == check),
            "no `{check}` in:\n{report}"
        );
    }
    assert!(report.trim_end().ends_with("passed, 0 failed"), "{report}");

    // A config the connector's schema refuses: each failed check says why.
    let bad = sluice(&[
        "test-connector",
        &wasm,
        "--mount",
        "examples/data:/data:ro",
        "--config",
        r#"{"root": "/data", "bogus": true}"#,
    ]);
    assert!(!bad.status.success());
    let report = String::from_utf8_lossy(&bad.stdout);
    assert!(
        report.contains("FAIL  the given config fits the schema: /bogus: unknown field"),
        "{report}"
    );
    assert!(report.contains("FAIL  open: "), "{report}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("check(s) failed"));

    // A queue that advertises neither filters nor sort passes too: it
    // answers them `unsupported`, and its stream is not resumed by position.
    let key = format!("sluice-conformance-{}", std::process::id());
    let redis_cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(args)
            .output()
            .expect("redis-cli runs");
        assert!(out.status.success(), "redis-cli {args:?}");
    };
    for n in 1..=7 {
        redis_cli(&["XADD", &key, "*", "n", &n.to_string()]);
    }
    let redis = guest("sluice_redis").display().to_string();
    let queue = sluice(&[
        "test-connector",
        &redis,
        "--allow-tcp",
        "127.0.0.1:6379",
        "--config",
        r#"{"address": "127.0.0.1:6379"}"#,
        "--resource",
        &key,
    ]);
    redis_cli(&["DEL", &key]);
    let report = String::from_utf8_lossy(&queue.stdout);
    assert!(
        queue.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&queue.stderr)
    );
    assert!(report.contains("ok    fetch honours filters"), "{report}");
    assert!(
        report.contains("ok    pages cover the records once, in order"),
        "{report}"
    );
    assert!(
        report.contains("skip  a stream resumes from a checkpoint exactly: a queue"),
        "{report}"
    );
}

#[test]
fn sluice_new_makes_a_rust_connector_that_builds_and_passes_the_conformance_suite() {
    let dir = tempdir();
    let project = dir.path().join("acme-numbers");
    let project_arg = project.display().to_string();
    let made = sluice(&["new", "acme-numbers", "--dir", &project_arg]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(String::from_utf8_lossy(&made.stdout).contains("make && make check"));
    // The project's one build command, into the guests' target directory so
    // the dependencies the guests compiled are reused.
    let target = root().join("guests/target");
    let built = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("cargo runs");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let wasm = target
        .join("wasm32-wasip2/release/acme_numbers.wasm")
        .display()
        .to_string();
    the_numbers_example_works(&wasm);

    let again = sluice(&["new", "acme-numbers", "--dir", &project_arg]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    let bad = sluice(&[
        "new",
        "Acme",
        "--dir",
        &dir.path().join("x").display().to_string(),
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("lower-case letters"));
}

/// The `numbers` example `sluice new` makes, in any language: it passes the
/// conformance suite, `execute` sums, a config out of bounds is refused.
fn the_numbers_example_works(wasm: &str) {
    let checked = sluice(&["test-connector", wasm, "--config", r#"{"up_to": 9}"#]);
    let report = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{report}");
    assert!(
        report.trim_end().ends_with("17 passed, 0 failed"),
        "{report}"
    );
    let summed = sluice(&[
        "run",
        wasm,
        "--config",
        r#"{"up_to": 3}"#,
        "execute",
        "numbers",
        "sum",
        "--records",
        r#"[{"n": 1}, {"n": 2}]"#,
    ]);
    assert_eq!(
        stdout_json(&summed)["records"][0]["data"],
        json!({ "sum": 3 })
    );
    let refused = sluice(&["run", wasm, "--config", r#"{"up_to": 0}"#, "health"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("invalid config: field `up_to`: "),
        "{stderr}"
    );
}

/// `sluice new NAME --lang LANG`, `make` (which installs the language's
/// componentizer into the project), the conformance suite, an `execute`, a
/// config the schema refuses, and an exception thrown by `health_check`
/// after `original` is replaced by `broken` in `source`: a traceback, not a crash.
fn kit_project_builds_and_passes(
    lang: &str,
    name: &str,
    source: &str,
    original: &str,
    broken: &str,
    exception: &str,
) {
    let dir = tempdir();
    let project = dir.path().join(name);
    let project_arg = project.display().to_string();
    let made = sluice(&["new", name, "--lang", lang, "--dir", &project_arg]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let make = |project: &std::path::Path| {
        let built = Command::new("make")
            .current_dir(project)
            .output()
            .expect("make runs");
        assert!(
            built.status.success(),
            "{}{}",
            String::from_utf8_lossy(&built.stdout),
            String::from_utf8_lossy(&built.stderr)
        );
    };
    make(&project);
    let wasm = project
        .join(format!("{}.wasm", name.replace('-', "_")))
        .display()
        .to_string();
    the_numbers_example_works(&wasm);

    // An uncaught exception is `internal` with its traceback, not a crash.
    let path = project.join(source);
    let text = std::fs::read_to_string(&path).unwrap();
    let changed = text.replacen(original, broken, 1);
    assert_ne!(text, changed, "the template's health_check moved");
    std::fs::write(&path, changed).unwrap();
    make(&project);
    let failed = sluice(&["run", &wasm, "--config", r#"{"up_to": 3}"#, "health"]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(stderr.contains("connector bug: "), "{stderr}");
    assert!(stderr.contains(exception), "{stderr}");
    assert!(
        stderr.contains(source),
        "the traceback names the file: {stderr}"
    );
}

#[test]
fn sluice_new_makes_a_python_connector_that_builds_and_passes_the_conformance_suite() {
    kit_project_builds_and_passes(
        "python",
        "py-numbers",
        "connector_api.py",
        "    def health_check(self):\n        return None",
        "    def health_check(self):\n        raise ValueError(\"the upstream said no\")",
        "ValueError: the upstream said no",
    );
}

#[test]
fn sluice_new_makes_a_javascript_connector_that_builds_and_passes_the_conformance_suite() {
    kit_project_builds_and_passes(
        "js",
        "js-numbers",
        "app.js",
        "  healthCheck() {}",
        "  healthCheck() {\n    throw new TypeError(\"the upstream said no\");\n  }",
        "TypeError: the upstream said no",
    );
}
