//! The file connector on FTP, against a real server (pyftpdlib, from
//! `make pytools`) with a login and passive data ports that must be granted.

use serde_json::{json, Value};
use sluice::{ConnectorError, Error, ExecuteRequest, FetchRequest, FilterOp, Record, Session};
use sluice_tests::ftp::{FtpServer, PASSWORD, PASSWORD_SECRET};
use sluice_tests::{
    assert_every_checkpoint_resumes_exactly, data, fetch_all, file_connector, gzip, ndjson,
    read_on_after_a_cut, stream_all,
};

async fn open(server: &FtpServer, dir: &str) -> Session {
    file_connector()
        .open(
            &server.config(dir).to_string(),
            &server.grants(true, PASSWORD),
        )
        .await
        .expect("the file connector opens on FTP")
}

fn people() -> Vec<Value> {
    (1..=40)
        .map(|i| json!({"id": i, "name": format!("person {i}"), "age": 20 + i % 60}))
        .collect()
}

#[tokio::test]
async fn files_in_every_format_are_listed_read_and_resumed() {
    let server = FtpServer::start();
    let rows = people();
    server.put("in/people.ndjson", ndjson(&rows));
    server.put("in/deep/people.ndjson.gz", gzip(ndjson(&rows).as_bytes()));
    server.put("in/people.csv", "id,name\n1,Ada\n2,Alan\n");
    let mut session = open(&server, "in").await;
    session.health().await.expect("healthy");

    let mut names: Vec<String> = session
        .discover()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    names.sort();
    let base = format!("ftp://{}/in", server.address());
    assert_eq!(
        names,
        vec![
            format!("{base}/deep/people.ndjson.gz"),
            format!("{base}/people.csv"),
            format!("{base}/people.ndjson"),
        ]
    );
    assert_eq!(fetch_all(&mut session, "people.ndjson").await, rows);
    assert_eq!(fetch_all(&mut session, "deep/people.ndjson.gz").await, rows);
    assert_eq!(
        fetch_all(&mut session, "people.csv").await,
        vec![
            json!({"id": "1", "name": "Ada"}),
            json!({"id": "2", "name": "Alan"})
        ]
    );

    // Streams resume with REST from every checkpoint.
    let req = FetchRequest::new("people.ndjson").filter("age", FilterOp::Ge, "40");
    let kept: Vec<Value> = rows
        .iter()
        .filter(|r| r["age"].as_i64().unwrap() >= 40)
        .cloned()
        .collect();
    let batches = stream_all(&mut session, &req, None, 3).await;
    let all: Vec<Value> = batches.iter().flat_map(|(r, _)| r.clone()).collect();
    assert_eq!(all, kept);
    assert_every_checkpoint_resumes_exactly(&mut session, &req, &batches, &kept, 4, "ftp").await;
}

#[tokio::test]
async fn writes_land_whole_under_their_name_and_deletes_remove_them() {
    let server = FtpServer::start();
    server.put("out/.keep", "");
    let mut session = open(&server, "out").await;
    let records: Vec<Record> = people().iter().map(Record::from_json).collect();
    let written = session
        .execute(&ExecuteRequest::new("people.csv", "write", records.clone()))
        .await
        .unwrap();
    assert_eq!(written.affected, 40);
    let stored = std::fs::read_to_string(server.root.path().join("out/people.csv")).unwrap();
    assert!(
        stored.starts_with("id,name,age\n1,person 1,21\n"),
        "{stored}"
    );
    assert_eq!(stored.lines().count(), 41);
    let left: Vec<String> = std::fs::read_dir(server.root.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("sluice-partial"))
        .collect();
    assert!(left.is_empty(), "no temporary file left: {left:?}");

    // Parquet written over FTP reads back the same.
    session
        .execute(&ExecuteRequest::new("people.parquet", "write", records))
        .await
        .unwrap();
    assert_eq!(fetch_all(&mut session, "people.parquet").await, people());

    let deleted = session
        .execute(&ExecuteRequest::new("people.csv", "delete", Vec::new()))
        .await
        .unwrap();
    assert_eq!(deleted.affected, 1);
    assert!(!server.root.path().join("out/people.csv").exists());
    let err = session
        .fetch(&FetchRequest::new("people.csv"))
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
async fn a_wrong_password_and_an_ungranted_data_port_are_denied_naming_the_grant() {
    let server = FtpServer::start();
    server.put("in/a.ndjson", "{\"a\": 1}\n");
    let config = server.config("in").to_string();

    let wrong = file_connector()
        .open(&config, &server.grants(true, "not-the-password"))
        .await
        .unwrap();
    let mut wrong = wrong;
    match wrong.fetch(&FetchRequest::new("a.ndjson")).await {
        Err(Error::Connector(ConnectorError::Denied(message))) => {
            assert!(message.contains(PASSWORD_SECRET), "{message}");
            assert!(!message.contains("not-the-password"), "{message}");
        }
        other => panic!("expected denied, got {other:?}"),
    }

    let mut no_data = file_connector()
        .open(&config, &server.grants(false, PASSWORD))
        .await
        .unwrap();
    match no_data.fetch(&FetchRequest::new("a.ndjson")).await {
        Err(Error::Denied(denial)) => {
            let names_a_port = server
                .passive
                .iter()
                .any(|p| denial.grant == format!("--allow-tcp 127.0.0.1:{p}"));
            assert!(names_a_port, "{denial:?}");
        }
        other => panic!("expected the host's denial, got {other:?}"),
    }
}

#[tokio::test]
async fn a_line_break_in_a_path_cannot_smuggle_a_command() {
    let server = FtpServer::start();
    server.put("in/keep.ndjson", "{\"a\": 1}\n");
    let mut session = open(&server, "in").await;
    let err = session
        .fetch(&FetchRequest::new("x.ndjson\r\nDELE keep.ndjson"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::InvalidRequest(_))),
        "{err:?}"
    );
    assert!(server.root.path().join("in/keep.ndjson").exists());
    assert_eq!(
        data(
            &session
                .fetch(&FetchRequest::new("keep.ndjson"))
                .await
                .unwrap()
                .records
        ),
        vec![json!({"a": 1})]
    );
}

#[tokio::test]
async fn a_transfer_cut_midway_ends_the_stream_with_an_error_not_a_short_file() {
    let server = FtpServer::start();
    let line = format!("{{\"pad\": \"{}\"}}\n", "x".repeat(1000));
    server.put("in/big.ndjson", line.repeat(60_000));
    let mut session = open(&server, "in").await;
    let mut stream = session
        .stream(&FetchRequest::new("big.ndjson"), None)
        .await
        .unwrap();
    let first = stream.next(100).await.unwrap().expect("a first batch");
    assert_eq!(first.records.len(), 100);
    server.kill();
    let (read, ended) = read_on_after_a_cut(&mut stream, 100).await;
    assert!(
        read < 60_000,
        "the server was killed before it sent everything"
    );
    match ended {
        Some(Error::Connector(ConnectorError::Unavailable(message))) => {
            assert!(
                message.contains("big.ndjson") || message.contains("127.0.0.1"),
                "{message}"
            )
        }
        other => panic!("after {read} of 60000 records: expected unavailable, got {other:?}"),
    }
}
