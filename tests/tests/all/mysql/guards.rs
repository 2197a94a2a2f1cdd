//! What a mysql grant refuses: injection, every write form through a
//! read-only grant, `LOAD DATA LOCAL`, slow statements, privileged accounts
//! and Unix sockets where a policy forbids them.

use std::time::Duration;

use super::{grants, open, people, probe_sql};
use serde_json::json;
use sluice::capability::sql::{SqlMode, SqlPolicy, SqlUrlPolicy};
use sluice::{
    ConnectorError, Error, ExecuteRequest, FetchRequest, FilterOp, Record, SortDirection,
};
use sluice_tests::mysql::TestDatabase;

async fn count(db: &mut TestDatabase, table: &str) -> String {
    db.text(&format!("SELECT COUNT(*) FROM {table}"))
        .await
        .unwrap()
}

#[tokio::test]
async fn injection_attempts_fail_safely_and_leave_the_data_intact() {
    let mut db = TestDatabase::new().await;
    people(&mut db).await;
    let grants = grants(&db, SqlMode::ReadWrite, Duration::from_secs(10));
    let mut session = open(&grants, 100).await;
    let attempts = [
        FetchRequest::new("people; DROP TABLE people; --"),
        FetchRequest::new("people` ; DROP TABLE people; --"),
        FetchRequest::new("people").fields(["name` FROM people; DROP TABLE people; --"]),
        FetchRequest::new("people").sort("age; DROP TABLE people", SortDirection::Asc),
        FetchRequest::new("people").filter("1=1 OR age", FilterOp::Eq, "1"),
    ];
    for req in &attempts {
        let err = session.fetch(req).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Connector(ConnectorError::NotFound(_) | ConnectorError::InvalidRequest(_))
            ),
            "{req:?}: {err:?}"
        );
    }
    // A value is always a bound parameter: it matches nothing and runs nothing.
    for value in [
        "\"x' OR '1'='1'; DROP TABLE people; --\"",
        "\"x\\\\' OR 1=1 -- \"",
    ] {
        let req = FetchRequest::new("people").filter("name", FilterOp::Eq, value);
        assert!(session.fetch(&req).await.unwrap().records.is_empty());
    }
    let delete = ExecuteRequest::new(
        "people",
        "delete",
        vec![Record::from_json(&json!({"id": "1 OR 1=1"}))],
    );
    // MySQL would read '1 OR 1=1' as the integer 1: refused before it runs.
    let err = session.execute(&delete).await.unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::InvalidRequest(ref m)) if m.contains("is not an integer")),
        "{err:?}"
    );
    let req = FetchRequest::new("people").filter("id", FilterOp::Eq, "\"1 OR 1=1\"");
    assert!(session.fetch(&req).await.is_err());
    assert_eq!(count(&mut db, "people").await, "5");
}

#[tokio::test]
async fn a_read_only_grant_denies_every_write_form() {
    let mut db = TestDatabase::new().await;
    people(&mut db).await;
    db.run("CREATE SEQUENCE s").await;
    let grants = grants(&db, SqlMode::ReadOnly, Duration::from_secs(10));
    let outfile = format!("/tmp/sluice_outfile_{}", db.name);
    for statement in [
        "INSERT INTO people (id, name) VALUES (9, 'Ken')".to_string(),
        "UPDATE people SET age = 0".into(),
        "DELETE FROM people".into(),
        "SELECT * FROM people FOR UPDATE".into(),
        "SELECT * FROM people LOCK IN SHARE MODE".into(),
        "LOCK TABLES people WRITE".into(),
        "SET GLOBAL max_connections = 1".into(),
        "SET SESSION TRANSACTION READ WRITE".into(),
        "LOAD DATA INFILE '/etc/hostname' INTO TABLE people".into(),
        format!("SELECT * FROM people INTO OUTFILE '{outfile}'"),
        format!("SELECT 1 /*!50000 INTO OUTFILE '{outfile}' */"),
        "SELECT NEXT VALUE FOR s".into(),
        "SELECT GET_LOCK('sluice', 0)".into(),
        "SELECT LOAD_FILE('/etc/hostname')".into(),
        "COMMIT".into(),
        "DROP TABLE people".into(),
        "SELECT 1; DELETE FROM people".into(),
    ] {
        let err = probe_sql(&grants, json!([[statement, []]]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Connector(ConnectorError::Denied(ref m)) if m.contains("read-only")),
            "{statement}: {err:?}"
        );
    }
    assert!(!std::path::Path::new(&outfile).exists());
    // Through the connector too, and nothing changed.
    let mut session = open(&grants, 100).await;
    let insert = ExecuteRequest::new(
        "people",
        "insert",
        vec![Record::from_json(&json!({"id": 9, "name": "Ken"}))],
    );
    let err = session.execute(&insert).await.unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::Denied(_))),
        "{err:?}"
    );
    assert_eq!(count(&mut db, "people").await, "5");
    assert_eq!(db.text("SELECT NEXTVAL(s)").await.as_deref(), Some("1"));
    // Reads still work, and a plain query runs in a read-only transaction.
    let rows = probe_sql(&grants, json!([["SELECT COUNT(*) FROM people", []]]))
        .await
        .unwrap();
    assert_eq!(rows[0]["rows"], json!([[5]]));
}

#[tokio::test]
async fn load_data_local_never_reads_a_host_file() {
    let mut db = TestDatabase::new().await;
    db.run("CREATE TABLE loaded (l text)").await;
    let grants = grants(&db, SqlMode::ReadWrite, Duration::from_secs(10));
    let err = probe_sql(
        &grants,
        json!([[
            "LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE loaded",
            []
        ]]),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::Denied(ref m)) if m.contains("LOAD DATA LOCAL")),
        "{err:?}"
    );
    assert_eq!(count(&mut db, "loaded").await, "0");
    // The grant keeps working afterwards.
    let rows = probe_sql(&grants, json!([["SELECT COUNT(*) FROM loaded", []]]))
        .await
        .unwrap();
    assert_eq!(rows[0]["rows"], json!([[0]]));
}

#[tokio::test]
async fn the_statement_timeout_stops_a_slow_query_on_the_server() {
    let mut db = TestDatabase::new().await;
    let marker = format!("sluice_sleep_{}", db.name);
    let grants = grants(&db, SqlMode::ReadOnly, Duration::from_millis(1000));
    let statement = format!("SELECT SLEEP(10) AS {marker}");
    let err = probe_sql(&grants, json!([[statement, []]]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::GrantTimeout(ref t) if t.setting == "statement_timeout_ms"),
        "{err:?}"
    );
    // And the server is no longer running it.
    let mut running = String::new();
    for _ in 0..50 {
        running = db
            .text(&format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%{marker}%' \
                 AND INFO NOT LIKE '%PROCESSLIST%'"
            ))
            .await
            .unwrap();
        if running == "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(running, "0", "the slow query still runs on the server");
    // Changing the session's timeout buys nothing: the guard refuses SET,
    // and a read-write grant's host timeout still applies.
    let grants = super::grants(&db, SqlMode::ReadWrite, Duration::from_millis(1000));
    let err = probe_sql(
        &grants,
        json!([
            ["SET SESSION max_statement_time = 0", []],
            [format!("SELECT SLEEP(10) AS {marker}"), []]
        ]),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::GrantTimeout(ref t) if t.setting == "statement_timeout_ms"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_strict_policy_refuses_sockets_and_privileged_accounts() {
    let db = TestDatabase::new().await;
    let mut policy = SqlPolicy::default();
    policy
        .add(
            "sock",
            "mysql://app@localhost/app?socket=/run/mysqld/mysqld.sock",
            SqlMode::ReadOnly,
            1,
            Duration::from_secs(1),
        )
        .unwrap();
    assert!(policy
        .check_urls(&SqlUrlPolicy::STRICT)
        .unwrap_err()
        .to_string()
        .contains("Unix-socket"));
    // root holds FILE, SUPER and the rest: refused when it connects.
    let grants = super::grants(&db, SqlMode::ReadOnly, Duration::from_secs(5));
    grants.sql.check_urls(&SqlUrlPolicy::STRICT).unwrap();
    let err = probe_sql(&grants, json!([["SELECT 1", []]]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::Denied(ref m)) if m.contains("administrative privilege")),
        "{err:?}"
    );
    // A password never appears in an error.
    let err = SqlPolicy::default()
        .add(
            "bad",
            "mysql://app:s3cret@db:notaport/app",
            SqlMode::ReadOnly,
            1,
            Duration::from_secs(1),
        )
        .unwrap_err()
        .to_string();
    assert!(!err.contains("s3cret"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_or_unknown_database_is_unavailable_with_the_reason() {
    let mut grants = sluice::Grants::none();
    grants
        .sql
        .add(
            "main",
            "mysql://root@127.0.0.1:3306/sluice_no_such_database",
            SqlMode::ReadOnly,
            1,
            Duration::from_secs(5),
        )
        .unwrap();
    let err = probe_sql(&grants, json!([["SELECT 1", []]]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::Unavailable(ref m)) if m.contains("Unknown database")),
        "{err:?}"
    );
}
