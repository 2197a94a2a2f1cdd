//! The `graphql` connector against a fake GraphQL server: Relay and offset
//! pagination, filters as variables, `errors` arrays, mutations.

use serde_json::{json, Value};
use sluice::{
    ConnectorError, Error, ExecuteRequest, FetchRequest, FilterOp, Grants, Record, Session,
};
use sluice_tests::upstream::Upstream;
use sluice_tests::{connector, data};

const ITEMS: &str = "query($first: Int, $after: String, $status: String) { items(first: $first, after: $after, status: $status) { edges { node { id name status } cursor } pageInfo { hasNextPage endCursor } } }";

fn expected(status: Option<&str>) -> Vec<Value> {
    (1..=25)
        .map(|i| json!({ "id": i, "name": format!("item-{i}"), "status": if i % 2 == 0 { "even" } else { "odd" } }))
        .filter(|item| status.is_none_or(|s| item["status"] == s))
        .collect()
}

async fn open(upstream: &Upstream) -> Session {
    let config = json!({
        "endpoint": upstream.url("/graphql"),
        "resources": {
            "items": {
                "query": ITEMS, "records_path": "/data/items/edges", "node_path": "/node", "id_field": "id",
                "pagination": { "type": "relay", "page_info_path": "/data/items/pageInfo", "page_size": 10 },
                "filters": { "status": "status" }
            },
            "list": {
                "query": "query($offset: Int, $limit: Int) { list(offset: $offset, limit: $limit) { id name status } }",
                "records_path": "/data/list",
                "pagination": { "type": "offset", "page_size": 10 }
            },
            "broken": { "query": "{ boom }", "records_path": "/data/boom" },
            "forbidden": { "query": "{ secret }", "records_path": "/data/secret" }
        },
        "mutations": {
            "create": { "query": "mutation($input: ItemInput!) { createItem(input: $input) { id name } }", "result_path": "/data/createItem" }
        }
    });
    let grants = Grants::none().allow_http(&upstream.origin()).unwrap();
    connector("sluice_graphql")
        .open(&config.to_string(), &grants)
        .await
        .expect("graphql opens")
}

async fn walk(session: &mut Session, req: FetchRequest) -> (Vec<Value>, usize) {
    let (mut seen, mut cursor, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = session
            .fetch(&req.clone().page(10, None, cursor.clone()))
            .await
            .unwrap();
        pages += 1;
        seen.extend(data(&page.records));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return (seen, pages),
        }
    }
}

#[tokio::test]
async fn relay_and_offset_pagination_walk_every_page() {
    let upstream = Upstream::start().await;
    let mut session = open(&upstream).await;
    assert_eq!(
        walk(&mut session, FetchRequest::new("items")).await,
        (expected(None), 3)
    );
    assert_eq!(
        walk(&mut session, FetchRequest::new("list")).await,
        (expected(None), 3)
    );
    let odd = FetchRequest::new("items").filter("status", FilterOp::Eq, "\"odd\"");
    assert_eq!(walk(&mut session, odd).await.0, expected(Some("odd")));
    let page = session
        .fetch(&FetchRequest::new("items").page(3, None, None))
        .await
        .unwrap();
    assert_eq!(page.records[2].id.as_deref(), Some("3"));
}

#[tokio::test]
async fn a_relay_stream_resumes_from_its_checkpoint() {
    let upstream = Upstream::start().await;
    let mut session = open(&upstream).await;
    let req = FetchRequest::new("items");
    let mut checkpoints = Vec::new();
    let mut all = Vec::new();
    {
        let mut stream = session.stream(&req, None).await.unwrap();
        while let Some(batch) = stream.next(100).await.unwrap() {
            all.extend(data(&batch.records));
            checkpoints.push(batch.checkpoint.unwrap());
        }
    }
    assert_eq!(all, expected(None));
    let mut stream = session.stream(&req, Some(&checkpoints[1])).await.unwrap();
    let mut rest = Vec::new();
    while let Some(batch) = stream.next(100).await.unwrap() {
        rest.extend(data(&batch.records));
    }
    assert_eq!(rest, expected(None)[20..].to_vec());
}

#[tokio::test]
async fn graphql_errors_become_typed_errors_with_the_messages() {
    let upstream = Upstream::start().await;
    let mut session = open(&upstream).await;
    match session
        .fetch(&FetchRequest::new("broken"))
        .await
        .unwrap_err()
    {
        Error::Connector(ConnectorError::InvalidRequest(message)) => {
            assert!(
                message.contains("Cannot query field `boom`") && message.contains("second problem"),
                "{message}"
            )
        }
        other => panic!("expected invalid-request, got {other:?}"),
    }
    let err = session
        .fetch(&FetchRequest::new("forbidden"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::Denied(ref m)) if m.contains("not allowed")),
        "{err:?}"
    );
    let err = session
        .fetch(&FetchRequest::new("items").filter("name", FilterOp::Eq, "\"x\""))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::Unsupported(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn execute_runs_mutations() {
    let upstream = Upstream::start().await;
    let mut session = open(&upstream).await;
    let result = session
        .execute(&ExecuteRequest::new(
            "create",
            "create",
            vec![Record::from_json(&json!({"name": "new"}))],
        ))
        .await
        .unwrap();
    assert_eq!(
        data(&result.records),
        vec![json!({"name": "new", "id": 100})]
    );
    let err = session
        .execute(&ExecuteRequest::new("x", "destroy", Vec::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::Unsupported(_))),
        "{err:?}"
    );
}
