//! What a postgres grant refuses: injection, writes through read-only,
//! unknown grants, slow statements, unreachable servers, URLs a policy forbids.

use std::time::Duration;

use super::{grants, open, people, people_count, probe_sql};
use serde_json::json;
use sluice::capability::sql::{SqlMode, SqlPolicy, SqlUrlPolicy};
use sluice::{
    Capability, ConnectorError, Error, ExecuteRequest, FetchRequest, FilterOp, Grants, Record,
    SortDirection,
};
use sluice_tests::postgres::TestSchema;
use sluice_tests::postgres_connector;

#[tokio::test]
async fn injection_attempts_fail_safely_and_leave_the_data_intact() {
    let schema = TestSchema::new().await;
    people(&schema).await;
    let grants = grants(
        &schema,
        "inject",
        SqlMode::ReadWrite,
        Duration::from_secs(10),
    );
    let mut session = open(&schema, &grants, 100).await;
    let evil = "people; DROP TABLE people; --";
    let attempts = [
        FetchRequest::new(evil),
        FetchRequest::new("people\" ; DROP TABLE people; --"),
        FetchRequest::new("people").fields(["name\" FROM people; DROP TABLE people; --"]),
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
    let req = FetchRequest::new("people").filter(
        "name",
        FilterOp::Eq,
        "\"x' OR '1'='1'; DROP TABLE people; --\"",
    );
    assert!(session.fetch(&req).await.unwrap().records.is_empty());
    let delete = ExecuteRequest::new(
        "people",
        "delete",
        vec![Record::from_json(&json!({"id": "1 OR 1=1"}))],
    );
    assert!(session.execute(&delete).await.is_err());
    let count: i64 = people_count(&schema).await;
    assert_eq!(count, 5);
}

#[tokio::test]
async fn a_write_through_a_read_only_grant_is_denied() {
    let schema = TestSchema::new().await;
    people(&schema).await;
    let grants = grants(
        &schema,
        "readonly",
        SqlMode::ReadOnly,
        Duration::from_secs(10),
    );
    let mut session = open(&schema, &grants, 100).await;
    let insert = ExecuteRequest::new(
        "people",
        "insert",
        vec![Record::from_json(&json!({"id": 9, "name": "Ken"}))],
    );
    let err = session.execute(&insert).await.unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::Denied(ref m)) if m.contains("read-only")),
        "{err:?}"
    );
    // Raw SQL cannot escape: every statement runs in a read-only transaction of its own.
    let delete = format!("DELETE FROM {}.people", schema.name);
    for statements in [
        json!([[delete, []]]),
        json!([["SET TRANSACTION READ WRITE", []], [delete, []]]),
        json!([
            ["SET default_transaction_read_only = off", []],
            [delete, []]
        ]),
        json!([["COMMIT", []], [delete, []]]),
    ] {
        let err = probe_sql(&grants, statements.clone()).await.unwrap_err();
        assert!(
            matches!(err, Error::Connector(ConnectorError::Denied(ref m)) if m.contains("read-only")),
            "{statements}: {err:?}"
        );
    }
    let count: i64 = people_count(&schema).await;
    assert_eq!(count, 5);
}

#[tokio::test]
async fn an_unknown_grant_is_denied_naming_it() {
    let schema = TestSchema::new().await;
    let config = json!({ "grant": "reports", "schema": schema.name });
    let err = postgres_connector()
        .open(&config.to_string(), &Grants::none())
        .await
        .unwrap_err();
    match err {
        Error::Denied(denial) => {
            assert_eq!(denial.capability, Capability::Sql);
            assert!(denial.grant.contains("`reports`"), "{denial}");
        }
        other => panic!("expected a sql denial, got {other:?}"),
    }
}

#[tokio::test]
async fn statement_timeout_stops_pg_sleep() {
    let schema = TestSchema::new().await;
    schema
        .run("CREATE VIEW slow AS SELECT 1 AS id, pg_sleep(30) IS NULL AS nap")
        .await;
    let grants = grants(
        &schema,
        "slow",
        SqlMode::ReadOnly,
        Duration::from_millis(300),
    );
    let mut config = json!({ "grant": "main", "schema": schema.name, "keys": { "slow": ["id"] } });
    config["page_size"] = json!(10);
    let mut session = postgres_connector()
        .open(&config.to_string(), &grants)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = session.fetch(&FetchRequest::new("slow")).await.unwrap_err();
    assert_statement_timeout(&err, "main");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped long before pg_sleep(30) ended"
    );
    // A guest that turns the server-side timeout off (a read-write grant may
    // SET; a read-only one may not) is still stopped by the host.
    let writable = self::grants(
        &schema,
        "slow-rw",
        SqlMode::ReadWrite,
        Duration::from_millis(300),
    );
    let statements = json!([
        ["SET statement_timeout = 0", []],
        ["SELECT pg_sleep(30)", []]
    ]);
    let err = probe_sql(&writable, statements).await.unwrap_err();
    assert_statement_timeout(&err, "main");
}

/// The error names the sql grant's statement timeout (300 ms), not the connector.
fn assert_statement_timeout(err: &Error, grant: &str) {
    match err {
        Error::GrantTimeout(expired) => {
            assert_eq!(expired.capability, sluice::Capability::Sql);
            assert_eq!(expired.setting, "statement_timeout_ms");
            assert_eq!(expired.limit, Duration::from_millis(300));
            assert_eq!(
                expired.waited_for,
                format!("a statement's result on sql grant `{grant}`")
            );
            assert!(
                err.to_string()
                    .contains("the sql grant's statement_timeout_ms of 300 ms"),
                "{err}"
            );
        }
        other => panic!("expected the grant's statement timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn a_connection_error_says_the_servers_reason() {
    let base = sluice_tests::postgres::url();
    let base = base.split('?').next().unwrap_or_default();
    let (server, _) = base.rsplit_once('/').expect("a database in the test URL");
    let url = format!("{server}/sluice_no_such_database");
    let grants = Grants::none()
        .allow_sql("main", &url, SqlMode::ReadOnly)
        .unwrap();
    let config = json!({ "grant": "main", "schema": "public" }).to_string();
    let err = postgres_connector()
        .open(&config, &grants)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("database \"sluice_no_such_database\" does not exist")
            && err.contains("SQLSTATE 3D000"),
        "{err}"
    );
}

#[test]
fn grant_urls_are_checked_against_the_url_policy() {
    let mut policy = SqlPolicy::default();
    policy
        .add(
            "socket",
            "host=/var/run/postgresql user=app",
            SqlMode::ReadOnly,
            1,
            Duration::from_secs(1),
        )
        .unwrap();
    assert!(policy.check_urls(&SqlUrlPolicy::PERMISSIVE).is_ok());
    assert!(policy
        .check_urls(&SqlUrlPolicy::STRICT)
        .unwrap_err()
        .to_string()
        .contains("Unix-socket"));
    let mut policy = SqlPolicy::default();
    policy
        .add(
            "multi",
            "postgres://app@db1:5432,db2:5432/app",
            SqlMode::ReadOnly,
            1,
            Duration::from_secs(1),
        )
        .unwrap();
    assert!(policy
        .check_urls(&SqlUrlPolicy::STRICT)
        .unwrap_err()
        .to_string()
        .contains("multi-host"));
    let mut policy = SqlPolicy::default();
    policy
        .add(
            "addr",
            "host=db hostaddr=10.0.0.5 user=app",
            SqlMode::ReadOnly,
            1,
            Duration::from_secs(1),
        )
        .unwrap();
    assert!(policy
        .check_urls(&SqlUrlPolicy::STRICT)
        .unwrap_err()
        .to_string()
        .contains("hostaddr"));
    let err = SqlPolicy::default()
        .add(
            "bad",
            "postgres://app:s3cret@db:notaport/app",
            SqlMode::ReadOnly,
            1,
            Duration::from_secs(1),
        )
        .unwrap_err()
        .to_string();
    assert!(
        !err.contains("s3cret"),
        "the password never appears in errors: {err}"
    );
}
