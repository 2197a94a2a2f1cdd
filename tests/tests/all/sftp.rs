//! The file connector on SFTP through the host's sftp capability, against
//! a real server: Debian's OpenSSH `sshd` on a loopback port, with its own
//! config and keys (`make setup` installs `openssh-server`).

use std::process::Command;

use serde_json::{json, Value};
use sluice::capability::sftp::SftpMode;
use sluice::{
    ConnectorError, Error, ExecuteRequest, FetchRequest, FilterOp, Grants, Record, Session,
};
use sluice_tests::sftp::{key_pair, SftpServer};
use sluice_tests::{
    assert_every_checkpoint_resumes_exactly, fetch_all, file_connector, gzip, ndjson,
    read_on_after_a_cut, root, sluice_bin, stream_all,
};

async fn open(server: &SftpServer, dir: &str, mode: SftpMode) -> Session {
    file_connector()
        .open(&server.config(dir).to_string(), &server.grants(mode))
        .await
        .expect("the file connector opens on SFTP")
}

fn people() -> Vec<Value> {
    (1..=40)
        .map(|i| json!({"id": i, "name": format!("person {i}"), "age": 20 + i % 60}))
        .collect()
}

/// Files in the served `dir` whose name holds `part`.
fn named(server: &SftpServer, dir: &str, part: &str) -> Vec<String> {
    std::fs::read_dir(server.files().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(part))
        .collect()
}

#[tokio::test]
async fn files_in_every_format_are_listed_read_and_resumed() {
    let server = SftpServer::start();
    let rows = people();
    server.put("in/people.ndjson", ndjson(&rows));
    server.put("in/deep/people.ndjson.gz", gzip(ndjson(&rows).as_bytes()));
    server.put("in/people.csv", "id,name\n1,Ada\n2,Alan\n");
    let mut session = open(&server, "in", SftpMode::ReadOnly).await;
    session.health().await.expect("healthy");

    let mut names: Vec<String> = session
        .discover()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "sftp://drop/in/deep/people.ndjson.gz",
            "sftp://drop/in/people.csv",
            "sftp://drop/in/people.ndjson",
        ]
    );
    assert_eq!(fetch_all(&mut session, "people.ndjson").await, rows);
    assert_eq!(fetch_all(&mut session, "deep/people.ndjson.gz").await, rows);
    assert_eq!(fetch_all(&mut session, "/in/people.ndjson").await, rows);
    assert_eq!(
        fetch_all(&mut session, "sftp://drop/in/people.csv").await,
        [
            json!({"id": "1", "name": "Ada"}),
            json!({"id": "2", "name": "Alan"})
        ]
    );

    // Streams resume by offset from every checkpoint.
    let req = FetchRequest::new("people.ndjson").filter("age", FilterOp::Ge, "40");
    let kept: Vec<Value> = rows
        .iter()
        .filter(|r| r["age"].as_i64().unwrap() >= 40)
        .cloned()
        .collect();
    let batches = stream_all(&mut session, &req, None, 3).await;
    let all: Vec<Value> = batches.iter().flat_map(|(r, _)| r.clone()).collect();
    assert_eq!(all, kept);
    assert_every_checkpoint_resumes_exactly(&mut session, &req, &batches, &kept, 4, "sftp").await;

    let err = session
        .fetch(&FetchRequest::new("missing.ndjson"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Connector(ConnectorError::NotFound(m)) if m.contains("missing.ndjson")),
        "{err:?}"
    );
}

#[tokio::test]
async fn writes_land_whole_under_their_name_replace_old_files_and_deletes_remove_them() {
    let server = SftpServer::start();
    server.put("out/people.csv", "an old file\n");
    let mut session = open(&server, "out", SftpMode::ReadWrite).await;
    let records: Vec<Record> = people().iter().map(Record::from_json).collect();
    let written = session
        .execute(&ExecuteRequest::new("people.csv", "write", records.clone()))
        .await
        .unwrap();
    assert_eq!(written.affected, 40);
    let stored = std::fs::read_to_string(server.files().join("out/people.csv")).unwrap();
    assert!(
        stored.starts_with("id,name,age\n1,person 1,21\n"),
        "{stored}"
    );
    assert_eq!(stored.lines().count(), 41);
    assert!(named(&server, "out", "sluice-partial").is_empty());

    // Big enough to take several host writes; Parquet reads back the same.
    let many: Vec<Record> = (0..30_000)
        .map(|i| Record::from_json(&json!({"id": i, "pad": "x".repeat(60)})))
        .collect();
    session
        .execute(&ExecuteRequest::new("many.ndjson", "write", many))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(server.files().join("out/many.ndjson"))
            .unwrap()
            .lines()
            .count(),
        30_000
    );
    session
        .execute(&ExecuteRequest::new("people.parquet", "write", records))
        .await
        .unwrap();
    assert_eq!(fetch_all(&mut session, "people.parquet").await, people());

    // A record the format cannot hold writes nothing, not even a temporary file.
    let bad = vec![
        Record::from_json(&json!({"id": 1})),
        Record::from_json(&json!([1])),
    ];
    let err = session
        .execute(&ExecuteRequest::new("bad.ndjson", "write", bad))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::InvalidRequest(_))),
        "{err:?}"
    );
    assert!(named(&server, "out", "bad").is_empty());

    let deleted = session
        .execute(&ExecuteRequest::new("people.csv", "delete", Vec::new()))
        .await
        .unwrap();
    assert_eq!(deleted.affected, 1);
    assert!(!server.files().join("out/people.csv").exists());
    let err = session
        .execute(&ExecuteRequest::new("people.csv", "delete", Vec::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::NotFound(_))),
        "{err:?}"
    );
    let err = session
        .execute(&ExecuteRequest::new("people.csv", "append", Vec::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::Unsupported(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_read_only_grant_refuses_writes_and_deletes_before_the_server_sees_them() {
    let server = SftpServer::start();
    server.put("in/keep.ndjson", "{\"a\": 1}\n");
    let mut session = open(&server, "in", SftpMode::ReadOnly).await;
    for req in [
        ExecuteRequest::new(
            "new.ndjson",
            "write",
            vec![Record::from_json(&json!({"a": 2}))],
        ),
        ExecuteRequest::new(
            "keep.ndjson",
            "write",
            vec![Record::from_json(&json!({"a": 2}))],
        ),
        ExecuteRequest::new("keep.ndjson", "delete", Vec::new()),
    ] {
        match session.execute(&req).await {
            Err(Error::Connector(ConnectorError::Denied(message))) => {
                assert!(
                    message.contains("sftp grant `drop` is read-only"),
                    "{message}"
                );
            }
            other => panic!(
                "{} {}: expected denied, got {other:?}",
                req.operation, req.resource
            ),
        }
    }
    assert_eq!(
        std::fs::read_to_string(server.files().join("in/keep.ndjson")).unwrap(),
        "{\"a\": 1}\n"
    );
    assert_eq!(named(&server, "in", ""), ["keep.ndjson"]);
}

#[tokio::test]
async fn a_host_key_the_grant_does_not_pin_is_refused_before_logging_in() {
    let server = SftpServer::start();
    server.put("in/a.ndjson", "{\"a\": 1}\n");
    let (_, other_public) = key_pair(server.dir.path(), "impostor");
    let pinned_elsewhere = server.grant_pinning("drop", SftpMode::ReadOnly, &other_public);
    let mut session = file_connector()
        .open(
            &server.config("in").to_string(),
            &server.grants_with(&pinned_elsewhere, &server.key),
        )
        .await
        .unwrap();
    match session.fetch(&FetchRequest::new("a.ndjson")).await {
        Err(Error::Connector(ConnectorError::Denied(message))) => {
            assert!(message.contains("does not pin"), "{message}");
            assert!(
                message.contains("SHA256:"),
                "names the offered key: {message}"
            );
            assert!(message.contains("before logging in"), "{message}");
        }
        other => panic!("expected denied, got {other:?}"),
    }
}

#[tokio::test]
async fn a_key_the_server_does_not_authorize_is_denied_and_never_shown() {
    let server = SftpServer::start();
    server.put("in/a.ndjson", "{\"a\": 1}\n");
    let (stranger, _) = key_pair(server.dir.path(), "stranger");
    let mut session = file_connector()
        .open(
            &server.config("in").to_string(),
            &server.grants_with(&server.grant("drop", SftpMode::ReadOnly), &stranger),
        )
        .await
        .unwrap();
    match session.fetch(&FetchRequest::new("a.ndjson")).await {
        Err(Error::Connector(ConnectorError::Denied(message))) => {
            assert!(message.contains("refused the login"), "{message}");
            let body = stranger.lines().nth(1).expect("a key body line");
            assert!(!message.contains(body), "{message}");
        }
        other => panic!("expected denied, got {other:?}"),
    }
}

#[tokio::test]
async fn paths_never_leave_the_grants_root_and_an_ungranted_name_is_denied() {
    let server = SftpServer::start();
    server.put("in/a.ndjson", "{\"a\": 1}\n");
    std::fs::write(server.dir.path().join("secret.ndjson"), "{\"secret\": 1}\n").unwrap();
    let mut session = open(&server, "in", SftpMode::ReadWrite).await;
    for path in [
        "../../secret.ndjson",
        "/../secret.ndjson",
        "sftp://drop/../secret.ndjson",
        "deep/../../../secret.ndjson",
    ] {
        match session.fetch(&FetchRequest::new(path)).await {
            Err(Error::Connector(ConnectorError::Denied(message))) => {
                assert!(
                    message.contains("within the grant's root"),
                    "{path}: {message}"
                );
            }
            other => panic!("{path}: expected denied, got {other:?}"),
        }
    }
    let err = session
        .execute(&ExecuteRequest::new(
            "../../x.ndjson",
            "write",
            vec![Record::from_json(&json!({"a": 1}))],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::Denied(_))),
        "{err:?}"
    );
    assert!(!server.dir.path().join("x.ndjson").exists());

    let mut other = file_connector()
        .open(
            &json!({"root": "sftp://elsewhere/in"}).to_string(),
            &server.grants(SftpMode::ReadOnly),
        )
        .await
        .unwrap();
    match other.fetch(&FetchRequest::new("a.ndjson")).await {
        Err(Error::Denied(denial)) => {
            assert!(
                denial.grant.contains("--allow-sftp elsewhere="),
                "{denial:?}"
            );
        }
        other => panic!("expected the host's denial, got {other:?}"),
    }
}

#[tokio::test]
async fn a_server_killed_midway_ends_the_stream_with_an_error_not_a_short_file() {
    let mut server = SftpServer::start();
    let line = format!("{{\"pad\": \"{}\"}}\n", "x".repeat(1000));
    server.put("in/big.ndjson", line.repeat(20_000));
    let mut session = open(&server, "in", SftpMode::ReadOnly).await;
    let mut stream = session
        .stream(&FetchRequest::new("big.ndjson"), None)
        .await
        .unwrap();
    let first = stream.next(100).await.unwrap().expect("a first batch");
    assert_eq!(first.records.len(), 100);
    server.kill();
    let (read, ended) = read_on_after_a_cut(&mut stream, 100).await;
    assert!(
        read < 20_000,
        "the server was killed before it sent everything"
    );
    match ended {
        Some(Error::Connector(ConnectorError::Unavailable(message))) => {
            assert!(message.contains("sftp grant `drop`"), "{message}")
        }
        other => panic!("after {read} of 20000 records: expected unavailable, got {other:?}"),
    }
}

#[test]
fn the_command_line_grants_a_server_with_a_key_file_and_a_known_hosts_file() {
    let server = SftpServer::start();
    server.put("in/people.ndjson", ndjson(&people()));
    let key_file = server.dir.path().join("client_key");
    let known_hosts = server.dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", server.known_host)).unwrap();
    let wasm = root().join("guests/target/wasm32-wasip2/release/sluice_file.wasm");
    let run = |known_hosts: &std::path::Path| {
        Command::new(sluice_bin())
            .arg("run")
            .arg(&wasm)
            .args(["--config", r#"{"root": "sftp://drop/in"}"#])
            .arg("--allow-sftp")
            .arg(format!(
                "drop=sftp://{}@{}{}",
                server.user,
                server.address(),
                server.files().display()
            ))
            .arg("--sftp-key")
            .arg(format!("drop=@{}", key_file.display()))
            .arg("--sftp-known-hosts")
            .arg(known_hosts)
            .args(["--no-cache", "fetch", "people.ndjson", "--fields", "id"])
            .current_dir(root())
            .env_remove("SLUICE_LOG")
            .output()
            .expect("sluice runs")
    };
    let out = run(&known_hosts);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).expect("JSON out");
    let ids: Vec<Value> = shown["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["data"]["id"].clone())
        .collect();
    assert_eq!(ids, (1..=40).map(|i| json!(i)).collect::<Vec<_>>());

    // A known_hosts file without the server's line refuses to start, saying how to pin it.
    let empty = server.dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let out = run(&empty);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ssh-keyscan -p"), "{stderr}");
    assert!(
        !stderr.contains(server.key.lines().nth(1).unwrap()),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_directory_listing_past_the_hosts_bound_is_refused_not_held() {
    let server = SftpServer::start();
    let many = server.files().join("many");
    std::fs::create_dir_all(&many).unwrap();
    for i in 0..=100_000 {
        std::fs::File::create(many.join(format!("{i}"))).unwrap();
    }
    let mut session = open(&server, "many", SftpMode::ReadOnly).await;
    match session.discover().await {
        Err(Error::Connector(ConnectorError::InvalidRequest(message))) => {
            assert!(message.contains("more than 100000 entries"), "{message}")
        }
        other => panic!("expected invalid-request, got {:?}", other.map(|r| r.len())),
    }
}

#[tokio::test]
async fn a_password_login_the_server_refuses_is_denied_without_the_password() {
    let server = SftpServer::start();
    server.put("in/a.ndjson", "{\"a\": 1}\n");
    // This server takes keys only: the password is refused, and never shown.
    let mut grant = server.grant("drop", SftpMode::ReadOnly);
    grant.key_secret = None;
    grant.password_secret = Some("drop_password".into());
    let grants = Grants::none()
        .allow_sftp(&grant)
        .unwrap()
        .secret("drop_password", "hunter2-sftp");
    let mut session = file_connector()
        .open(&server.config("in").to_string(), &grants)
        .await
        .unwrap();
    match session.fetch(&FetchRequest::new("a.ndjson")).await {
        Err(Error::Connector(ConnectorError::Denied(message))) => {
            assert!(message.contains("refused the login"), "{message}");
            assert!(message.contains("with the grant's password"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        other => panic!("expected denied, got {other:?}"),
    }
}

#[tokio::test]
async fn a_closed_session_closes_its_ssh_connection() {
    let server = SftpServer::start();
    server.put("in/a.ndjson", "{\"a\": 1}\n");
    let mut session = open(&server, "in", SftpMode::ReadOnly).await;
    assert_eq!(fetch_all(&mut session, "a.ndjson").await, [json!({"a": 1})]);
    assert!(
        server.connections() > 0,
        "sshd serves the session's connection"
    );
    session.close().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.connections() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the SSH connection outlived its session by 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
