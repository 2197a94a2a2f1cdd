//! The postgres connector returns what the database holds, exactly, or a
//! clear error: infinite dates, the end of the day, numbers beyond f64, array
//! bounds, types without a JSON mapping, and one NULL rule for filters.

use std::time::Duration;

use serde_json::{json, Value};
use sluice::capability::sql::SqlMode;
use sluice::{ExecuteRequest, FetchRequest, FilterOp, Record, Session, SortDirection};
use sluice_tests::data;
use sluice_tests::postgres::TestSchema;

use crate::postgres::{grants, open};

/// The ids a fetch returns, in order.
async fn ids(session: &mut Session, req: &FetchRequest) -> Vec<i64> {
    data(&session.fetch(req).await.unwrap().records)
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

/// Every page of `req` at one row per page, following the cursors.
pub(crate) async fn paged_ids(session: &mut Session, req: &FetchRequest) -> Vec<i64> {
    let (mut seen, mut cursor) = (Vec::new(), None);
    loop {
        let page = session
            .fetch(&req.clone().page(1, None, cursor.clone()))
            .await
            .unwrap();
        seen.extend(
            data(&page.records)
                .iter()
                .map(|r| r["id"].as_i64().unwrap()),
        );
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return seen,
        }
    }
}

/// One value of one row, as PostgreSQL itself prints it.
async fn server_text(schema: &TestSchema, expr: &str, table: &str, id: i64) -> Option<String> {
    schema
        .client
        .query_one(
            &format!(
                "SELECT ({expr})::text FROM {}.{table} WHERE id = $1",
                schema.name
            ),
            &[&(id as i32)],
        )
        .await
        .unwrap()
        .get(0)
}

fn raw_record(data: &str) -> Record {
    Record {
        id: None,
        data: data.to_string(),
        metadata: None,
        timestamp: None,
    }
}

#[tokio::test]
async fn infinite_dates_and_timestamps_sort_page_filter_and_write() {
    let schema = TestSchema::new().await;
    schema
        .run(
            "CREATE TABLE events (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz);
             INSERT INTO events VALUES
               (1, 'infinity', 'infinity', 'infinity'),
               (2, '2024-01-01', '2024-01-01 00:00', '2024-01-01 00:00+00'),
               (3, '-infinity', '-infinity', '-infinity');",
        )
        .await;
    let grants = grants(&schema, "inf", SqlMode::ReadWrite, Duration::from_secs(10));
    let mut session = open(&schema, &grants, 100).await;
    for column in ["d", "ts", "tz"] {
        // Keyset pages carry the infinite value in the cursor to the next page.
        let asc = FetchRequest::new("events").sort(column, SortDirection::Asc);
        assert_eq!(
            paged_ids(&mut session, &asc).await,
            [3, 2, 1],
            "{column} asc"
        );
        let desc = FetchRequest::new("events").sort(column, SortDirection::Desc);
        assert_eq!(
            paged_ids(&mut session, &desc).await,
            [1, 2, 3],
            "{column} desc"
        );
        let eq = FetchRequest::new("events").filter(column, FilterOp::Eq, "\"infinity\"");
        assert_eq!(ids(&mut session, &eq).await, [1], "{column} eq infinity");
        let lt = FetchRequest::new("events").filter(column, FilterOp::Lt, "\"infinity\"");
        assert_eq!(
            ids(&mut session, &lt.sort("id", SortDirection::Asc)).await,
            [2, 3]
        );
    }
    let page = session.fetch(&FetchRequest::new("events")).await.unwrap();
    assert_eq!(
        data(&page.records)[0],
        json!({"id": 1, "d": "infinity", "ts": "infinity", "tz": "infinity"})
    );
    let insert = ExecuteRequest::new(
        "events",
        "insert",
        vec![Record::from_json(
            &json!({"id": 4, "d": "-infinity", "ts": "infinity", "tz": "-infinity"}),
        )],
    );
    assert_eq!(session.execute(&insert).await.unwrap().affected, 1);
    for (column, expected) in [("d", "-infinity"), ("ts", "infinity"), ("tz", "-infinity")] {
        assert_eq!(
            server_text(&schema, column, "events", 4).await.as_deref(),
            Some(expected)
        );
    }
}

#[tokio::test]
async fn values_come_back_and_go_in_exactly_as_the_database_holds_them() {
    let schema = TestSchema::new().await;
    schema
        .run(
            "CREATE TABLE exact (id int PRIMARY KEY, t time, n numeric, j json, jb jsonb, _id text);
             INSERT INTO exact VALUES
               (1, '24:00:00', 1234567.0123456789012,
                '{\"big\": 123456789012345678901234567890,\n \"f\": 0.1000000000000000055511151231257827}',
                '{\"big\": 123456789012345678901234567890}', 'own'),
               (2, '23:59:59.999999', 1234567.0123456789, '[]', '{}', NULL);",
        )
        .await;
    let grants = grants(
        &schema,
        "exact",
        SqlMode::ReadWrite,
        Duration::from_secs(10),
    );
    let mut session = open(&schema, &grants, 100).await;
    let page = session
        .fetch(&FetchRequest::new("exact").sort("id", SortDirection::Asc))
        .await
        .unwrap();
    let first = &page.records[0];
    // The record's data is the server's text, digit for digit, on one line.
    assert_eq!(
        first.data,
        r#"{"id":1,"t":"24:00:00","n":"1234567.0123456789012","j":{"big": 123456789012345678901234567890,  "f": 0.1000000000000000055511151231257827},"jb":{"big": 123456789012345678901234567890},"_id":"own"}"#
    );
    // A column named _id is the table's, the record id the key's.
    assert_eq!(first.id.as_deref(), Some("1"));
    assert_eq!(
        data(&page.records)[1]["t"],
        json!("23:59:59.999999"),
        "the fraction is kept"
    );
    // A numeric filter is bound from its text, not through f64.
    let exact = FetchRequest::new("exact").filter("n", FilterOp::Eq, "1234567.0123456789012");
    assert_eq!(ids(&mut session, &exact).await, [1]);
    let listed = FetchRequest::new("exact").filter("n", FilterOp::In, "[1234567.0123456789012, 5]");
    assert_eq!(ids(&mut session, &listed).await, [1]);
    let time = FetchRequest::new("exact").filter("t", FilterOp::Eq, "\"24:00:00\"");
    assert_eq!(ids(&mut session, &time).await, [1]);

    // Writes keep every digit: a numeric, a json number, the end of the day.
    let insert = ExecuteRequest::new(
        "exact",
        "insert",
        vec![raw_record(
            r#"{"id": 3, "t": "24:00:00", "n": 0.12345678901234567890, "jb": {"big": 123456789012345678901234567890.5}, "j": [1e400]}"#,
        )],
    );
    assert_eq!(session.execute(&insert).await.unwrap().affected, 1);
    assert_eq!(
        server_text(&schema, "n", "exact", 3).await.as_deref(),
        Some("0.12345678901234567890")
    );
    assert_eq!(
        server_text(&schema, "t", "exact", 3).await.as_deref(),
        Some("24:00:00")
    );
    assert_eq!(
        server_text(&schema, "jb", "exact", 3).await.as_deref(),
        Some(r#"{"big": 123456789012345678901234567890.5}"#)
    );
    assert_eq!(
        server_text(&schema, "j", "exact", 3).await.as_deref(),
        Some("[1e400]")
    );
    // The rows an upsert returns carry the same exact text.
    let mut upsert = ExecuteRequest::new(
        "exact",
        "upsert",
        vec![raw_record(
            r#"{"id": 3, "n": 98765432109876543210.0123456789}"#,
        )],
    );
    upsert.options = Some(json!({"returning": true}).to_string());
    let returned = session.execute(&upsert).await.unwrap();
    // (serde_json itself cannot hold the json column's 1e400: compare text.)
    let data = &returned.records[0].data;
    assert!(
        data.contains(r#""n":"98765432109876543210.0123456789""#),
        "{data}"
    );
    assert!(data.contains(r#""j":[1e400]"#), "{data}");
}

#[tokio::test]
async fn an_array_that_does_not_start_at_one_is_a_clear_error_not_a_shifted_array() {
    let schema = TestSchema::new().await;
    schema
        .run(
            "CREATE TABLE arrays (id int PRIMARY KEY, a int[]);
             INSERT INTO arrays VALUES (1, '{1,2}'), (2, '[0:2]={7,8,9}');",
        )
        .await;
    let grants = grants(
        &schema,
        "arrays",
        SqlMode::ReadOnly,
        Duration::from_secs(10),
    );
    let mut session = open(&schema, &grants, 100).await;
    let first = FetchRequest::new("arrays").filter("id", FilterOp::Eq, "1");
    assert_eq!(
        data(&session.fetch(&first).await.unwrap().records),
        [json!({"id": 1, "a": [1, 2]})]
    );
    let err = session
        .fetch(&FetchRequest::new("arrays"))
        .await
        .expect_err("an array starting at 0 is refused")
        .to_string();
    assert!(err.contains("column `a`"), "{err}");
    assert!(err.contains("starting at index 0"), "{err}");
    assert!(err.contains("col::text"), "{err}");
}

#[tokio::test]
async fn types_without_a_json_mapping_are_read_and_written_in_their_text_form() {
    let schema = TestSchema::new().await;
    schema
        .run(
            "CREATE TYPE pair AS (a int, b text);
             CREATE DOMAIN positive AS int CHECK (VALUE > 0);
             CREATE TABLE odd (id int PRIMARY KEY, tz timetz, addr inet, net cidr, mac macaddr,
               cash money, span int4range, during tsrange, p pair, doc xml, bits bit(3),
               vbits varbit, words tsvector, pt point, flag \"char\", addrs inet[], pos positive);
             INSERT INTO odd VALUES
               (1, '13:45:00+02', '192.168.0.1', '10.0.0.0/8', '08:00:2b:01:02:03', 12.34,
                '[1,5)', '[2024-01-01 00:00,2024-02-01 00:00)', ROW(1, 'x,y'), '<a>1</a>', B'101',
                B'1', 'fat cat', '(1.5,2)', 'x', '{10.0.0.1,10.0.0.2}', 7),
               (2, '00:00:00-05:30', '10.0.0.1/32', '192.168.0.0/16', 'ff:ff:ff:ff:ff:ff', -1,
                'empty', NULL, ROW(NULL, NULL), NULL, B'000', B'', '', '(0,0)', 'y', '{}', 1);",
        )
        .await;
    let grants = grants(&schema, "odd", SqlMode::ReadWrite, Duration::from_secs(10));
    let mut session = open(&schema, &grants, 100).await;
    let page = session
        .fetch(&FetchRequest::new("odd").sort("id", SortDirection::Asc))
        .await
        .unwrap();
    let rows = data(&page.records);
    let columns = [
        "tz", "addr", "net", "mac", "cash", "span", "during", "p", "doc", "bits", "vbits", "words",
        "pt", "flag", "addrs",
    ];
    for (row, id) in rows.iter().zip([1, 2]) {
        for column in columns {
            let expected = server_text(&schema, column, "odd", id).await;
            assert_eq!(row[column], json!(expected), "{column} of row {id}");
        }
        // A domain over a mapped type keeps the base type's mapping.
        assert!(row["pos"].is_number(), "{row}");
    }
    // Filters and sorts use the column's own type, not its text.
    let exact = FetchRequest::new("odd").filter("addr", FilterOp::Eq, "\"192.168.0.1/32\"");
    assert_eq!(ids(&mut session, &exact).await, [1]);
    let listed = FetchRequest::new("odd").filter("mac", FilterOp::In, "[\"FF-FF-FF-FF-FF-FF\"]");
    assert_eq!(ids(&mut session, &listed).await, [2]);
    // Keyset pages carry the text form in the cursor; the server compares
    // it as the column's type.
    let by_net = FetchRequest::new("odd").sort("net", SortDirection::Desc);
    assert_eq!(paged_ids(&mut session, &by_net).await, [2, 1]);
    let by_cash = FetchRequest::new("odd").sort("cash", SortDirection::Asc);
    assert_eq!(paged_ids(&mut session, &by_cash).await, [2, 1]);
    // Writes go in as text for the server to parse.
    let insert = ExecuteRequest::new(
        "odd",
        "insert",
        vec![Record::from_json(&json!({
            "id": 3, "addr": "::1", "span": "[3,4]", "p": "(2,\"q\")", "bits": "011",
            "pt": "(3,4)", "flag": "z", "addrs": ["1.2.3.4", null], "pos": 9
        }))],
    );
    assert_eq!(session.execute(&insert).await.unwrap().affected, 1);
    for (column, expected) in [
        // inet's text form always carries the mask length.
        ("addr", "::1/128"),
        ("span", "[3,5)"),
        ("p", "(2,q)"),
        ("bits", "011"),
        ("pt", "(3,4)"),
        ("flag", "z"),
        ("addrs", "{1.2.3.4,NULL}"),
    ] {
        assert_eq!(
            server_text(&schema, column, "odd", 3).await.as_deref(),
            Some(expected),
            "{column}"
        );
    }
    // discover says these columns hold strings.
    let resources = session.discover().await.unwrap();
    let odd = resources.iter().find(|r| r.name == "odd").unwrap();
    let described: Value = serde_json::from_str(odd.schema.as_deref().unwrap()).unwrap();
    assert_eq!(described["properties"]["addrs"]["type"], "string");
    assert_eq!(described["properties"]["pos"]["type"], "integer");
}

#[tokio::test]
async fn null_follows_the_same_rule_in_sql_as_in_the_sdks_filters() {
    let schema = TestSchema::new().await;
    schema
        .run(
            "CREATE TABLE scores (id int PRIMARY KEY, score int);
             INSERT INTO scores VALUES (1, 1), (2, NULL), (3, 2);",
        )
        .await;
    let grants = grants(
        &schema,
        "nullrule",
        SqlMode::ReadOnly,
        Duration::from_secs(10),
    );
    let mut session = open(&schema, &grants, 100).await;
    // The same table the SDK's unit test (`query::tests`) filters in memory.
    let cases: [(FilterOp, &str, &[i64]); 13] = [
        (FilterOp::Eq, "null", &[2]),
        (FilterOp::Ne, "null", &[1, 3]),
        (FilterOp::Eq, "1", &[1]),
        (FilterOp::Ne, "1", &[2, 3]),
        (FilterOp::In, "[1]", &[1]),
        (FilterOp::NotIn, "[1]", &[2, 3]),
        (FilterOp::In, "[1, null]", &[1, 2]),
        (FilterOp::NotIn, "[1, null]", &[3]),
        (FilterOp::In, "[]", &[]),
        (FilterOp::NotIn, "[]", &[1, 2, 3]),
        (FilterOp::Le, "2", &[1, 3]),
        (FilterOp::Ge, "null", &[]),
        (FilterOp::Like, "\"%\"", &[1, 3]),
    ];
    for (op, value, expected) in cases {
        let req = FetchRequest::new("scores")
            .filter("score", op, value)
            .sort("id", SortDirection::Asc);
        assert_eq!(ids(&mut session, &req).await, expected, "{op:?} {value}");
    }
}
