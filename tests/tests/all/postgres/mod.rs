//! The host `sql` capability and the `postgres` connector against the real
//! PostgreSQL on 127.0.0.1:5432, each test in a schema of its own.

use std::time::Duration;

use serde_json::{json, Value};
use sluice::capability::sql::SqlMode;
use sluice::{Error, FetchRequest, FilterOp, Grants, Session, SortDirection};
use sluice_tests::postgres::TestSchema;
use sluice_tests::{data, postgres_connector, probe, probe_request};

mod forward;
mod guards;
mod lifecycle;
mod paging;

pub(crate) fn grants(schema: &TestSchema, app: &str, mode: SqlMode, timeout: Duration) -> Grants {
    let mut grants = Grants::none();
    grants
        .sql
        .add("main", &schema.grant_url(app), mode, 4, timeout)
        .expect("grant parses");
    grants
}

/// The postgres connector with `size` as both its page size and its stream's fetch size.
pub(crate) async fn open(schema: &TestSchema, grants: &Grants, size: u32) -> Session {
    let config =
        json!({ "grant": "main", "schema": schema.name, "page_size": size, "fetch_size": size });
    postgres_connector()
        .open(&config.to_string(), grants)
        .await
        .expect("postgres connector opens")
}

pub(crate) async fn people(schema: &TestSchema) {
    schema
        .run(
            "CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, age int, city text);
             INSERT INTO people VALUES (1, 'Ada', 36, 'London'), (2, 'Alan', 41, 'Wilmslow'),
               (3, 'Grace', 85, 'Arlington'), (4, 'Edsger', 72, NULL), (5, 'Barbara', 86, 'Boston');",
        )
        .await;
}

/// Rows in the test schema's `people` table, read directly.
pub(crate) async fn people_count(schema: &TestSchema) -> i64 {
    schema
        .client
        .query_one(&format!("SELECT count(*) FROM {}.people", schema.name), &[])
        .await
        .unwrap()
        .get(0)
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
async fn every_type_round_trips_between_json_and_postgres() {
    let schema = TestSchema::new().await;
    schema
        .run(
            "CREATE TABLE t (b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric(20,6),
               t text, vc varchar(10), c char(3), nm name, by bytea, d date, tm time, ts timestamp,
               tz timestamptz, iv interval, u uuid, j json, jb jsonb, ai int4[], at text[], nl int4)",
        )
        .await;
    let row = json!([
        true, 12, 123456, 9007199254740993i64, 1.5, 2.25, "12345678901234.567890",
        "héllo", "short", "abc", "a_name", "AAEC/w==", "2024-02-29", "13:45:00.5",
        "2024-02-29T13:45:00.5", "2024-02-29T12:45:00.5Z", "P1Y2M3DT4H5M6.5S",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", {"k": [1, "x"]}, {"nested": {"ok": true}},
        [1, null, 3], ["x", "y"], null
    ]);
    let grants = grants(
        &schema,
        "types",
        SqlMode::ReadWrite,
        Duration::from_secs(10),
    );
    let insert = format!(
        "INSERT INTO {}.t VALUES ({})",
        schema.name,
        (1..=23)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let select = format!("SELECT * FROM {}.t", schema.name);
    let results = probe_sql(&grants, json!([[insert, row], [select, []]]))
        .await
        .unwrap();
    assert_eq!(results[1]["rows"], json!([row]));
    assert_eq!(results[1]["types"][6], "numeric");
    // What the server itself says the values are.
    let direct = schema
        .client
        .query_one(
            &format!("SELECT n::text, i8::text, encode(by, 'hex'), tz = '2024-02-29 12:45:00.5+00', iv = '1 year 2 mons 3 days 04:05:06.5' FROM {}.t", schema.name),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(direct.get::<_, String>(0), "12345678901234.567890");
    assert_eq!(direct.get::<_, String>(1), "9007199254740993");
    assert_eq!(direct.get::<_, String>(2), "000102ff");
    assert!(direct.get::<_, bool>(3));
    assert!(direct.get::<_, bool>(4));
}

#[tokio::test]
async fn fetch_filters_sorts_selects_and_counts() {
    let schema = TestSchema::new().await;
    people(&schema).await;
    let grants = grants(&schema, "fetch", SqlMode::ReadOnly, Duration::from_secs(10));
    let mut session = open(&schema, &grants, 100).await;
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
    let checks: [(FilterOp, &str, Vec<i64>); 8] = [
        (FilterOp::Eq, "36", vec![1]),
        (FilterOp::Ne, "36", vec![2, 3, 4, 5]),
        (FilterOp::Le, "41", vec![1, 2]),
        (FilterOp::Ge, "85", vec![3, 5]),
        (FilterOp::Lt, "41", vec![1]),
        (FilterOp::In, "[36, 72]", vec![1, 4]),
        (FilterOp::NotIn, "[36, 72]", vec![2, 3, 5]),
        (FilterOp::Like, "\"8%\"", vec![3, 5]),
    ];
    for (op, value, expected) in checks {
        let req = FetchRequest::new("people")
            .filter("age", op, value)
            .sort("id", SortDirection::Asc)
            .fields(["id"]);
        let ids: Vec<i64> = data(&session.fetch(&req).await.unwrap().records)
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, expected, "{op:?} {value}");
    }
    let nulls = FetchRequest::new("people")
        .filter("city", FilterOp::IsNull, "null")
        .fields(["id"]);
    assert_eq!(
        data(&session.fetch(&nulls).await.unwrap().records),
        vec![json!({"id": 4})]
    );
}

#[tokio::test]
async fn discover_lists_tables_and_views_with_columns() {
    let schema = TestSchema::new().await;
    people(&schema).await;
    schema
        .run("CREATE VIEW adults AS SELECT id, name FROM people WHERE age >= 18")
        .await;
    let grants = grants(
        &schema,
        "discover",
        SqlMode::ReadOnly,
        Duration::from_secs(10),
    );
    let mut session = open(&schema, &grants, 100).await;
    let resources = session.discover().await.unwrap();
    let names: Vec<&str> = resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["adults", "people"]);
    let people: Value = serde_json::from_str(resources[1].schema.as_deref().unwrap()).unwrap();
    assert_eq!(people["properties"]["age"]["type"], "integer");
    assert_eq!(people["properties"]["name"]["x-postgres-type"], "text");
    assert_eq!(people["x-key"], json!(["id"]));
}

#[tokio::test]
async fn a_fetch_size_out_of_range_is_refused_naming_it() {
    let schema = TestSchema::new().await;
    let grants = grants(
        &schema,
        "fetchsize",
        SqlMode::ReadOnly,
        Duration::from_secs(10),
    );
    for size in [0, 100_001] {
        let config = json!({ "grant": "main", "schema": schema.name, "fetch_size": size });
        let err = postgres_connector()
            .open(&config.to_string(), &grants)
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, Error::Connector(sluice::ConnectorError::InvalidConfig(m)) if m.contains("fetch_size")),
            "{size}: {err:?}"
        );
    }
}
