//! The host `sql` capability and the `postgres` connector against the real
//! PostgreSQL on 127.0.0.1:5432, each test in a schema of its own.

use std::time::Duration;

use serde_json::{json, Value};
use sluice::capability::sql::{SqlMode, SqlPolicy, SqlUrlPolicy};
use sluice::{
    Capability, ConnectorError, Error, ExecuteRequest, FetchRequest, FilterOp, Grants, Record,
    Session, SortDirection,
};
use sluice_tests::postgres::TestSchema;
use sluice_tests::{data, postgres_connector, probe, probe_request};

pub(crate) fn grants(schema: &TestSchema, app: &str, mode: SqlMode, timeout: Duration) -> Grants {
    let mut grants = Grants::none();
    grants
        .sql
        .add("main", &schema.grant_url(app), mode, 4, timeout)
        .expect("grant parses");
    grants
}

pub(crate) async fn open(schema: &TestSchema, grants: &Grants, page_size: u32) -> Session {
    let config = json!({ "grant": "main", "schema": schema.name, "page_size": page_size });
    postgres_connector()
        .open(&config.to_string(), grants)
        .await
        .expect("postgres connector opens")
}

async fn people(schema: &TestSchema) {
    schema
        .run(
            "CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, age int, city text);
             INSERT INTO people VALUES (1, 'Ada', 36, 'London'), (2, 'Alan', 41, 'Wilmslow'),
               (3, 'Grace', 85, 'Arlington'), (4, 'Edsger', 72, NULL), (5, 'Barbara', 86, 'Boston');",
        )
        .await;
}

/// Rows in the test schema's `people` table, read directly.
async fn people_count(schema: &TestSchema) -> i64 {
    schema
        .client
        .query_one(&format!("SELECT count(*) FROM {}.people", schema.name), &[])
        .await
        .unwrap()
        .get(0)
}

async fn probe_sql(grants: &Grants, statements: Value) -> Result<Value, Error> {
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
async fn keyset_pagination_returns_every_existing_row_once_under_concurrent_inserts() {
    let schema = TestSchema::new().await;
    schema
        .run(
            "CREATE TABLE events (id bigserial PRIMARY KEY, score int NOT NULL);
              INSERT INTO events (score) SELECT (g * 7919) % 1000 FROM generate_series(1, 2000) g;",
        )
        .await;
    let existing: Vec<i64> = schema
        .client
        .query(&format!("SELECT id FROM {}.events", schema.name), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let grants = grants(
        &schema,
        "keyset",
        SqlMode::ReadOnly,
        Duration::from_secs(10),
    );
    let mut session = open(&schema, &grants, 100).await;
    let writer = {
        let table = format!("{}.events", schema.name);
        tokio::spawn(async move {
            let client = sluice_tests::postgres::admin().await;
            for i in 0..200 {
                client
                    .execute(
                        &format!("INSERT INTO {table} (score) VALUES ($1)"),
                        &[&((i * 37) % 1000)],
                    )
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let base = FetchRequest::new("events")
        .sort("score", SortDirection::Asc)
        .fields(["id", "score"]);
    let (mut seen, mut cursor, mut last_score) = (Vec::new(), None, i64::MIN);
    loop {
        let page = session
            .fetch(&base.clone().page(73, None, cursor.clone()))
            .await
            .unwrap();
        for record in data(&page.records) {
            let score = record["score"].as_i64().unwrap();
            assert!(score >= last_score, "order is kept across pages");
            last_score = score;
            seen.push(record["id"].as_i64().unwrap());
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    writer.await.unwrap();
    for id in &existing {
        assert_eq!(
            seen.iter().filter(|s| *s == id).count(),
            1,
            "row {id} seen exactly once"
        );
    }
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no row repeated");
}

/// The `id`s a stream of `req` resumed after `checkpoint` yields, to its end.
async fn ids_from(session: &mut Session, req: &FetchRequest, checkpoint: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut stream = session.stream(req, Some(checkpoint)).await.unwrap();
    while let Some(batch) = stream.next(100).await.unwrap() {
        ids.extend(
            data(&batch.records)
                .iter()
                .map(|r| r["id"].as_i64().unwrap()),
        );
    }
    stream.close().await.unwrap();
    ids
}

#[tokio::test]
async fn keyset_pages_and_streams_keep_rows_whose_sort_column_is_null() {
    let schema = TestSchema::new().await;
    schema
        .run(
            "CREATE TABLE scores (id int PRIMARY KEY, score int);
             INSERT INTO scores VALUES (1, 1), (2, NULL), (3, 2), (4, NULL), (5, 1);",
        )
        .await;
    let grants = grants(&schema, "nulls", SqlMode::ReadOnly, Duration::from_secs(10));
    // Ascending puts NULLs last, descending first; ties go by the key.
    let cases = [
        (SortDirection::Asc, vec![1, 5, 3, 2, 4]),
        (SortDirection::Desc, vec![2, 4, 3, 1, 5]),
    ];
    for (direction, expected) in cases {
        let base = FetchRequest::new("scores")
            .sort("score", direction)
            .fields(["id", "score"]);
        let mut session = open(&schema, &grants, 1).await;
        let seen = crate::postgres_fidelity::paged_ids(&mut session, &base).await;
        assert_eq!(seen, expected, "fetch pages, {direction:?}");
        // A stream in batches of one, and one resumed from each checkpoint.
        let mut checkpoints = Vec::new();
        let mut streamed = Vec::new();
        {
            let mut stream = session.stream(&base, None).await.unwrap();
            while let Some(batch) = stream.next(1).await.unwrap() {
                streamed.extend(
                    data(&batch.records)
                        .iter()
                        .map(|r| r["id"].as_i64().unwrap()),
                );
                checkpoints.extend(batch.checkpoint);
            }
        }
        assert_eq!(streamed, expected, "stream, {direction:?}");
        for (i, checkpoint) in checkpoints.iter().enumerate().take(expected.len()) {
            let rest = ids_from(&mut session, &base, checkpoint).await;
            assert_eq!(rest, expected[i + 1..], "resumed after {i}, {direction:?}");
        }
    }
}

#[tokio::test]
async fn a_table_without_a_key_pages_by_offset_and_loses_no_tied_row() {
    let schema = TestSchema::new().await;
    schema
        .run(
            "CREATE TABLE d (a int, b text, doc json);
             INSERT INTO d VALUES (1, 'x', '{}'), (1, 'x', '{}'), (2, 'y', '[]'), (1, 'w', null), (NULL, 'z', '1');",
        )
        .await;
    let grants = grants(
        &schema,
        "keyless",
        SqlMode::ReadOnly,
        Duration::from_secs(10),
    );
    let mut session = open(&schema, &grants, 2).await;
    let walk = |sort: Option<SortDirection>| {
        let mut req = FetchRequest::new("d").fields(["a", "b"]);
        if let Some(direction) = sort {
            req = req.sort("a", direction);
        }
        req
    };
    for (sort, expected) in [
        (
            None,
            vec![
                (json!(1), "w"),
                (json!(1), "x"),
                (json!(1), "x"),
                (json!(2), "y"),
                (json!(null), "z"),
            ],
        ),
        (
            Some(SortDirection::Desc),
            vec![
                (json!(null), "z"),
                (json!(2), "y"),
                (json!(1), "w"),
                (json!(1), "x"),
                (json!(1), "x"),
            ],
        ),
    ] {
        let (mut seen, mut cursor, mut pages) = (Vec::new(), None, 0);
        loop {
            let page = session
                .fetch(&walk(sort).page(2, None, cursor.clone()))
                .await
                .unwrap();
            pages += 1;
            for r in data(&page.records) {
                seen.push((r["a"].clone(), r["b"].as_str().unwrap().to_string()));
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let expected: Vec<(Value, String)> = expected
            .into_iter()
            .map(|(a, b)| (a, b.to_string()))
            .collect();
        assert_eq!(seen, expected, "{sort:?}");
        assert_eq!(
            pages, 3,
            "pages of 2, 2 and 1, each but the last with a cursor"
        );
    }
}

#[tokio::test]
async fn a_page_larger_than_the_advertised_maximum_is_refused() {
    let schema = TestSchema::new().await;
    people(&schema).await;
    let grants = grants(
        &schema,
        "maxpage",
        SqlMode::ReadOnly,
        Duration::from_secs(10),
    );
    let mut session = open(&schema, &grants, 10).await;
    let advertised = postgres_connector()
        .describe()
        .await
        .unwrap()
        .capabilities
        .max_page_size
        .expect("the connector advertises a maximum");
    let at_max = FetchRequest::new("people").page(advertised, None, None);
    assert_eq!(session.fetch(&at_max).await.unwrap().records.len(), 5);
    let err = session
        .fetch(&FetchRequest::new("people").page(advertised + 1, None, None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::InvalidRequest(ref m)) if m.contains(&format!("from 1 to {advertised}"))),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_stream_honours_the_callers_batch_size() {
    let schema = TestSchema::new().await;
    people(&schema).await;
    let grants = grants(
        &schema,
        "batches",
        SqlMode::ReadOnly,
        Duration::from_secs(10),
    );
    // The portal fetches 10 rows at a time; the caller asks for 2.
    let mut session = open(&schema, &grants, 10).await;
    let req = FetchRequest::new("people").fields(["id"]);
    let (mut sizes, mut ids, mut checkpoints) = (Vec::new(), Vec::new(), Vec::new());
    {
        let mut stream = session.stream(&req, None).await.unwrap();
        while let Some(batch) = stream.next(2).await.unwrap() {
            sizes.push(batch.records.len());
            ids.extend(
                data(&batch.records)
                    .iter()
                    .map(|r| r["id"].as_i64().unwrap()),
            );
            checkpoints.push(batch.checkpoint.unwrap());
        }
    }
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    let rest = ids_from(&mut session, &req, &checkpoints[0]).await;
    assert_eq!(rest, [3, 4, 5]);
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

#[tokio::test]
async fn offset_pagination_and_foreign_cursors() {
    let schema = TestSchema::new().await;
    people(&schema).await;
    let grants = grants(
        &schema,
        "offset",
        SqlMode::ReadOnly,
        Duration::from_secs(10),
    );
    let mut session = open(&schema, &grants, 100).await;
    let page = session
        .fetch(
            &FetchRequest::new("people")
                .sort("id", SortDirection::Asc)
                .fields(["id"])
                .page(2, Some(3), None),
        )
        .await
        .unwrap();
    assert_eq!(
        data(&page.records),
        vec![json!({"id": 4}), json!({"id": 5})]
    );
    let page = session
        .fetch(&FetchRequest::new("people").page(2, None, None))
        .await
        .unwrap();
    let cursor = page.next_cursor.expect("a next page");
    let err = session
        .fetch(
            &FetchRequest::new("people")
                .sort("age", SortDirection::Desc)
                .page(2, None, Some(cursor)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::InvalidRequest(ref m)) if m.contains("different sort")),
        "{err:?}"
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

async fn checksum(schema: &TestSchema, after: i64) -> (i64, i64) {
    let row = schema
        .client
        .query_one(
            &format!("SELECT count(*), coalesce(sum(id * 31 + length(payload)), 0)::int8 FROM {}.big WHERE id > $1::int8", schema.name),
            &[&after],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn a_terminated_backend_mid_stream_is_unavailable_and_resuming_yields_exactly_the_rest() {
    let schema = TestSchema::new().await;
    schema
        .run(
            "CREATE TABLE big (id int PRIMARY KEY, payload text NOT NULL);
              INSERT INTO big SELECT g, repeat('x', g % 50) FROM generate_series(1, 5000) g;",
        )
        .await;
    let app = format!("sluice_term_{}", schema.name);
    let grants = grants(&schema, &app, SqlMode::ReadOnly, Duration::from_secs(10));
    let mut session = open(&schema, &grants, 250).await;
    let req = FetchRequest::new("big");
    let mut last_checkpoint = None;
    let mut last_id = 0;
    {
        let mut stream = session.stream(&req, None).await.unwrap();
        for _ in 0..3 {
            let batch = stream.next(250).await.unwrap().expect("a batch");
            assert_eq!(batch.records.len(), 250);
            last_id = data(&batch.records).last().unwrap()["id"].as_i64().unwrap();
            last_checkpoint = batch.checkpoint;
        }
        let killed: i64 = schema
            .client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .await
            .unwrap()
            .len() as i64;
        assert!(killed >= 1, "the stream's backend was found");
        // The host reads one batch ahead, so at most one batch read before
        // the kill still arrives; then the stream fails as unavailable.
        let mut delivered_after_kill = 0;
        let err = loop {
            match stream.next(250).await {
                Ok(Some(batch)) => {
                    delivered_after_kill += 1;
                    last_id = data(&batch.records).last().unwrap()["id"].as_i64().unwrap();
                    last_checkpoint = batch.checkpoint;
                }
                Ok(None) => panic!("the stream ended instead of failing"),
                Err(e) => break e,
            }
        };
        assert!(
            delivered_after_kill <= 1,
            "{delivered_after_kill} batches after the kill"
        );
        assert!(
            matches!(err, Error::Connector(ConnectorError::Unavailable(_))),
            "{err:?}"
        );
    }
    assert!(last_id == 750 || last_id == 1000, "{last_id}");
    // Resume on the same session: the pool replaces the dead connection.
    let mut stream = session
        .stream(&req, last_checkpoint.as_deref())
        .await
        .unwrap();
    let (mut count, mut sum) = (0i64, 0i64);
    while let Some(batch) = stream.next(250).await.unwrap() {
        for record in data(&batch.records) {
            count += 1;
            sum += record["id"].as_i64().unwrap() * 31
                + record["payload"].as_str().unwrap().len() as i64;
        }
    }
    assert_eq!((count, sum), checksum(&schema, last_id).await);
}

#[tokio::test]
async fn execute_writes_in_one_transaction_and_a_bad_record_changes_nothing() {
    let schema = TestSchema::new().await;
    people(&schema).await;
    let grants = grants(
        &schema,
        "execute",
        SqlMode::ReadWrite,
        Duration::from_secs(10),
    );
    let mut session = open(&schema, &grants, 100).await;
    let insert = ExecuteRequest::new(
        "people",
        "insert",
        vec![
            Record::from_json(&json!({"id": 6, "name": "Ken", "age": 80})),
            Record::from_json(&json!({"id": 7, "name": "Dennis"})),
        ],
    );
    assert_eq!(session.execute(&insert).await.unwrap().affected, 2);
    let mut upsert = ExecuteRequest::new(
        "people",
        "upsert",
        vec![
            Record::from_json(&json!({"id": 7, "name": "Dennis", "age": 70})),
            Record::from_json(&json!({"id": 8, "name": "Bjarne"})),
        ],
    );
    upsert.options = Some(json!({"returning": true}).to_string());
    let result = session.execute(&upsert).await.unwrap();
    assert_eq!(result.affected, 2);
    assert_eq!(data(&result.records)[0]["age"], 70);
    let update = ExecuteRequest::new(
        "people",
        "update",
        vec![Record::from_json(&json!({"id": 1, "city": "Marylebone"}))],
    );
    assert_eq!(session.execute(&update).await.unwrap().affected, 1);
    let delete = ExecuteRequest::new(
        "people",
        "delete",
        vec![Record::from_json(&json!({"id": 8}))],
    );
    assert_eq!(session.execute(&delete).await.unwrap().affected, 1);

    let before: i64 = people_count(&schema).await;
    let batch = ExecuteRequest::new(
        "people",
        "insert",
        vec![
            Record::from_json(&json!({"id": 20, "name": "Ok"})),
            Record::from_json(&json!({"id": 21, "name": null})),
            Record::from_json(&json!({"id": 22, "name": "Never"})),
        ],
    );
    let err = session.execute(&batch).await.unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::InvalidRequest(ref m)) if m.starts_with("record 1") && m.contains("23502")),
        "{err:?}"
    );
    let after: i64 = people_count(&schema).await;
    assert_eq!(before, after);
    let city: Option<String> = schema
        .client
        .query_one(
            &format!("SELECT city FROM {}.people WHERE id = 1", schema.name),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(city.as_deref(), Some("Marylebone"));
}

#[tokio::test]
async fn the_pool_is_shared_by_sessions_and_resets_connections_between_them() {
    let schema = TestSchema::new().await;
    let grants = grants(&schema, "pool", SqlMode::ReadWrite, Duration::from_secs(10));
    let set = json!([
        ["SET application_name = 'dirty'", []],
        ["SELECT current_setting('application_name')", []]
    ]);
    let results = probe_sql(&grants, set).await.unwrap();
    assert_eq!(results[1]["rows"], json!([["dirty"]]));
    assert_eq!(grants.sql.grant("main").unwrap().idle_connections(), 1);
    let results = probe_sql(
        &grants,
        json!([[
            "SELECT current_setting('application_name'), pg_backend_pid()",
            []
        ]]),
    )
    .await
    .unwrap();
    assert_eq!(
        results[0]["rows"][0][0], "pool",
        "DISCARD ALL reset the session before reuse"
    );
    assert_eq!(
        grants.sql.grant("main").unwrap().idle_connections(),
        1,
        "the connection was reused, not replaced"
    );
}

#[tokio::test]
async fn query_stream_reads_in_bounded_batches() {
    let schema = TestSchema::new().await;
    let grants = grants(
        &schema,
        "stream",
        SqlMode::ReadOnly,
        Duration::from_secs(10),
    );
    let mut session = probe().open("{}", &grants).await.unwrap();
    let params = json!({
        "grant": "main", "stream": true, "batch": 400,
        "statements": [["SELECT g FROM generate_series(1, 1000) g", []]]
    });
    let page = session.fetch(&probe_request("sql", params)).await.unwrap();
    let batches = data(&page.records).remove(0)["results"][0]["batches"].clone();
    let sizes: Vec<usize> = batches
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [400, 400, 200]);
    assert_eq!(batches[2][199], json!([1000]));
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
