//! The host `sql` capability's MySQL grants and the `mysql` connector
//! against the real MariaDB on 127.0.0.1:3306, each test in a database of
//! its own.

use std::time::Duration;

use serde_json::{json, Value};
use sluice::capability::sql::SqlMode;
use sluice::{Error, FetchRequest, FilterOp, Grants, Session, SortDirection};
use sluice_tests::mysql::TestDatabase;
use sluice_tests::{data, mysql_connector, probe, probe_request};

mod guards;
mod lifecycle;
mod paging;
mod tenant;

pub(crate) fn grants(db: &TestDatabase, mode: SqlMode, timeout: Duration) -> Grants {
    let mut grants = Grants::none();
    grants
        .sql
        .add("main", &db.grant_url(), mode, 4, timeout)
        .expect("grant parses");
    grants
}

/// The mysql connector with `size` as both its page size and its stream's fetch size.
pub(crate) async fn open(grants: &Grants, size: u32) -> Session {
    let config = json!({ "grant": "main", "page_size": size, "fetch_size": size });
    mysql_connector()
        .open(&config.to_string(), grants)
        .await
        .expect("mysql connector opens")
}

pub(crate) async fn people(db: &mut TestDatabase) {
    db.run(
        "CREATE TABLE people (id int PRIMARY KEY, name varchar(40) NOT NULL, age int, city text,
           balance decimal(20,13));
         INSERT INTO people VALUES (1, 'Ada', 36, 'London', 1234567.0123456789012),
           (2, 'Alan', 41, 'Wilmslow', 1234567.0123456789013), (3, 'Grace', 85, 'Arlington', 0),
           (4, 'Edsger', 72, NULL, NULL), (5, 'Barbara', 86, 'Boston', -1);",
    )
    .await;
}

pub(crate) async fn ids(session: &mut Session, req: &FetchRequest) -> Vec<i64> {
    data(&session.fetch(req).await.unwrap().records)
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

pub(crate) async fn probe_sql(grants: &Grants, statements: Value) -> Result<Value, Error> {
    let mut session = probe().open("{}", grants).await.expect("probe opens");
    let page = session
        .fetch(&probe_request(
            "sql",
            json!({ "grant": "main", "statements": statements }),
        ))
        .await?;
    Ok(data(&page.records).remove(0)["results"].clone())
}

#[tokio::test]
async fn every_type_round_trips_exactly_as_the_mysql_client_shows_it() {
    let mut db = TestDatabase::new().await;
    db.run(
        "CREATE TABLE t (id int PRIMARY KEY, b bool, ti tinyint, si smallint, mi mediumint,
           i int, bi bigint, ub bigint unsigned, de decimal(40,20), f float, d double,
           c char(3), vc varchar(20), tx text, bn binary(3), vb varbinary(10), bl blob,
           dt date, tm time(6), ntm time, dtm datetime(6), ts timestamp(3) NULL, y year,
           en enum('red','green'), st set('a','b','c'), j json, bt bit(10), nl int)",
    )
    .await;
    // Written in the form the connector reads back, so the text must come
    // back unchanged (a JSON number beyond f64 included).
    let record = concat!(
        r#"{"id":1,"b":1,"ti":-128,"si":-32768,"mi":8388607,"i":-2147483648,"#,
        r#""bi":-9223372036854775808,"ub":18446744073709551615,"#,
        r#""de":"12345678901234567890.12345678901234567890","f":1.1,"d":2.2250738585072014e-308,"#,
        r#""c":"abc","vc":"héllo 👋","tx":"line\nbreak \"quoted\"","bn":"AAEC","vb":"/w==","#,
        r#""bl":"AAECAwQ=","dt":"2024-02-29","tm":"-838:59:59","ntm":"100:00:00","#,
        r#""dtm":"2024-02-29T13:45:00.5","ts":"2024-02-29T12:45:00.125","y":2155,"#,
        r#""en":"green","st":"a,c","j":{"big": 123456789012345678901234567890, "a": [1, "x", null]},"#,
        r#""bt":1023,"nl":null}"#
    );
    let grants = grants(&db, SqlMode::ReadWrite, Duration::from_secs(10));
    let mut session = open(&grants, 100).await;
    let insert = sluice::ExecuteRequest::new(
        "t",
        "insert",
        vec![sluice::Record {
            id: None,
            data: record.to_string(),
            metadata: None,
            timestamp: None,
        }],
    );
    assert_eq!(session.execute(&insert).await.unwrap().affected, 1);
    let page = session.fetch(&FetchRequest::new("t")).await.unwrap();
    assert_eq!(page.records[0].data, record);
    // What the server itself says it holds, through its own client.
    let shown = db.client_output(
        "SELECT b, ub, de, f, d, vc, HEX(bn), HEX(bl), tm, ntm, dtm, ts, y, st, bt+0, \
         JSON_EXTRACT(j, '$.big') FROM t",
    );
    assert_eq!(
        shown.trim_end().split('\t').collect::<Vec<_>>(),
        [
            "1",
            "18446744073709551615",
            "12345678901234567890.12345678901234567890",
            "1.1",
            "2.2250738585072014e-308",
            "héllo 👋",
            "000102",
            "0001020304",
            "-838:59:59.000000",
            "100:00:00",
            "2024-02-29 13:45:00.500000",
            "2024-02-29 12:45:00.125",
            "2155",
            "a,c",
            "1023",
            "123456789012345678901234567890",
        ]
    );
    // The types a guest reads with each column.
    let results = probe_sql(
        &grants,
        json!([["SELECT ub, de, bl, dtm, ts, j, bt FROM t", []]]),
    )
    .await
    .unwrap();
    assert_eq!(
        results[0]["types"],
        json!([
            "bigint unsigned",
            "decimal",
            "blob",
            "datetime",
            "timestamp",
            "text",
            "bit"
        ])
    );
}

#[tokio::test]
async fn fetch_filters_sorts_selects_and_counts_with_one_null_rule() {
    let mut db = TestDatabase::new().await;
    people(&mut db).await;
    let grants = grants(&db, SqlMode::ReadOnly, Duration::from_secs(10));
    let mut session = open(&grants, 100).await;
    let req = FetchRequest::new("people")
        .filter("age", FilterOp::Gt, "40")
        .filter("city", FilterOp::IsNotNull, "null")
        .sort("age", SortDirection::Desc)
        .fields(["name", "age"])
        .options(&json!({ "count": true }));
    let page = session.fetch(&req).await.unwrap();
    assert_eq!(
        data(&page.records),
        vec![
            json!({"name": "Barbara", "age": 86}),
            json!({"name": "Grace", "age": 85}),
            json!({"name": "Alan", "age": 41})
        ]
    );
    assert_eq!(page.total_count, Some(3));
    assert_eq!(page.records[0].id.as_deref(), Some("5"));
    let checks: [(&str, FilterOp, &str, Vec<i64>); 15] = [
        ("age", FilterOp::Eq, "36", vec![1]),
        ("age", FilterOp::Ne, "36", vec![2, 3, 4, 5]),
        ("age", FilterOp::Le, "41", vec![1, 2]),
        ("age", FilterOp::Ge, "85", vec![3, 5]),
        ("age", FilterOp::In, "[36, 72]", vec![1, 4]),
        ("age", FilterOp::NotIn, "[36, 72]", vec![2, 3, 5]),
        ("age", FilterOp::Like, "\"8%\"", vec![3, 5]),
        // NULL: eq null is IS NULL, ne v keeps NULL, not-in negates in exactly.
        ("city", FilterOp::Eq, "null", vec![4]),
        ("city", FilterOp::Ne, "\"London\"", vec![2, 3, 4, 5]),
        ("city", FilterOp::NotIn, "[\"London\", null]", vec![2, 3, 5]),
        ("city", FilterOp::In, "[\"Boston\", null]", vec![4, 5]),
        // A decimal is compared as a decimal, digit for digit (as a double
        // these two balances are equal).
        ("balance", FilterOp::Eq, "1234567.0123456789012", vec![1]),
        ("balance", FilterOp::Gt, "1234567.0123456789012", vec![2]),
        // Text compares as text: MySQL alone would read 'Ada' = 0 as true.
        ("name", FilterOp::Eq, "0", vec![]),
        ("city", FilterOp::NotIn, "[0]", vec![1, 2, 3, 4, 5]),
    ];
    for (field, op, value, expected) in checks {
        let req = FetchRequest::new("people")
            .filter(field, op, value)
            .sort("id", SortDirection::Asc)
            .fields(["id"]);
        assert_eq!(
            ids(&mut session, &req).await,
            expected,
            "{field} {op:?} {value}"
        );
    }
}

#[tokio::test]
async fn discover_lists_tables_and_views_with_columns_and_keys() {
    let mut db = TestDatabase::new().await;
    people(&mut db).await;
    db.run("CREATE VIEW adults AS SELECT id, name FROM people WHERE age >= 18")
        .await;
    let grants = grants(&db, SqlMode::ReadOnly, Duration::from_secs(10));
    let mut session = open(&grants, 100).await;
    session.health().await.unwrap();
    let resources = session.discover().await.unwrap();
    let names: Vec<&str> = resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["adults", "people"]);
    let people: Value = serde_json::from_str(resources[1].schema.as_deref().unwrap()).unwrap();
    assert_eq!(people["properties"]["age"]["type"], "integer");
    assert_eq!(people["properties"]["name"]["x-mysql-type"], "varchar(40)");
    assert_eq!(people["properties"]["balance"]["type"], "string");
    assert_eq!(people["x-key"], json!(["id"]));
}

#[tokio::test]
async fn each_connector_refuses_the_other_dialects_grant() {
    let db = TestDatabase::new().await;
    let grants = grants(&db, SqlMode::ReadOnly, Duration::from_secs(10));
    let config = json!({ "grant": "main", "schema": "public" });
    let err = sluice_tests::postgres_connector()
        .open(&config.to_string(), &grants)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("is a mysql database; use the mysql connector"),
        "{err}"
    );
}
