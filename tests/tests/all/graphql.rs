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
            "users": {
                "query": "query($page: Int, $perPage: Int) { allUsers(page: $page, perPage: $perPage) { id name team } }",
                "records_path": "/data/allUsers", "id_field": "id",
                "pagination": { "type": "page", "page_var": "page", "size_var": "perPage", "first_page": 0 }
            },
            "users_from_one": {
                "query": "query($page: Int, $perPage: Int) { allUsers(page: $page, perPage: $perPage) { id name team } }",
                "records_path": "/data/allUsers",
                "pagination": { "type": "page", "page_size": 50 }
            },
            "misplaced": { "query": "query($offset: Int, $limit: Int) { list(offset: $offset, limit: $limit) { id } }", "records_path": "/data/items" },
            "broken": { "query": "{ boom }", "records_path": "/data/boom" },
            "forbidden": { "query": "{ secret }", "records_path": "/data/secret" }
        },
        "mutations": {
            "create": { "query": "mutation($input: ItemInput!) { createItem(input: $input) { id name } }", "result_path": "/data/createItem" },
            "create_user": {
                "query": "mutation($name: String!, $team: String!) { createUser(name: $name, team: $team) { id name team } }",
                "bind": "fields", "result_path": "/data/createUser"
            }
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
    assert_eq!(result.records[0].id.as_deref(), Some("100"));
    let err = session
        .execute(&ExecuteRequest::new("x", "destroy", Vec::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::Unsupported(_))),
        "{err:?}"
    );
}

fn users(range: std::ops::RangeInclusive<u32>) -> Vec<Value> {
    range
        .map(|i| json!({ "id": i.to_string(), "name": format!("user-{i}"), "team": format!("t{}", i % 3) }))
        .collect()
}

#[tokio::test]
async fn page_number_pagination_walks_pages_of_the_configured_size() {
    let upstream = Upstream::start().await;
    let mut session = open(&upstream).await;
    // 0-based pages of 50 (json-graphql-server's `allUsers(page, perPage)`).
    let req = FetchRequest::new("users");
    let (mut sizes, mut checkpoints, mut all) = (Vec::new(), Vec::new(), Vec::new());
    {
        let mut stream = session.stream(&req, None).await.unwrap();
        while let Some(batch) = stream.next(1000).await.unwrap() {
            sizes.push(batch.records.len());
            all.extend(data(&batch.records));
            checkpoints.push(batch.checkpoint.unwrap());
        }
    }
    assert_eq!(sizes, vec![50, 50, 20]);
    assert_eq!(all, users(1..=120));
    assert_eq!(checkpoints, vec!["page:1", "page:2", "end"]);
    let mut rest = Vec::new();
    {
        let mut stream = session.stream(&req, Some(&checkpoints[0])).await.unwrap();
        while let Some(batch) = stream.next(1000).await.unwrap() {
            rest.extend(data(&batch.records));
        }
    }
    assert_eq!(rest, users(51..=120));

    // Fetch: the cursor walks pages; an offset on a page boundary is that page.
    let page = session
        .fetch(&req.clone().page(50, None, None))
        .await
        .unwrap();
    assert_eq!(page.records.len(), 50);
    assert_eq!(page.records[0].id.as_deref(), Some("1"));
    assert_eq!(page.next_cursor.as_deref(), Some("page:1"));
    let page = session
        .fetch(&req.clone().page(50, Some(100), None))
        .await
        .unwrap();
    assert_eq!(data(&page.records), users(101..=120));
    assert_eq!(page.next_cursor, None);
    let err = session
        .fetch(&req.clone().page(50, Some(30), None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::Unsupported(ref m)) if m.contains("multiples of the page size (50)")),
        "{err:?}"
    );

    // 1-based (the default): the first request asks for page 1, which this
    // 0-based server answers with its second page.
    let page = session
        .fetch(&FetchRequest::new("users_from_one"))
        .await
        .unwrap();
    assert_eq!(data(&page.records), users(51..=100));
    assert_eq!(page.next_cursor.as_deref(), Some("page:2"));
}

#[tokio::test]
async fn a_mutation_binds_each_record_field_to_its_own_variable_and_returns_ids() {
    let upstream = Upstream::start().await;
    let mut session = open(&upstream).await;
    let result = session
        .execute(&ExecuteRequest::new(
            "users",
            "create_user",
            vec![Record::from_json(&json!({"name": "ada", "team": "core"}))],
        ))
        .await
        .unwrap();
    assert_eq!(result.affected, 1);
    assert_eq!(
        data(&result.records),
        vec![json!({"id": "200", "name": "ada", "team": "core"})]
    );
    assert_eq!(result.records[0].id.as_deref(), Some("200"));
    // A record that is not an object cannot be spread into variables.
    let err = session
        .execute(&ExecuteRequest::new(
            "users",
            "create_user",
            vec![Record::from_json(&json!(["ada"]))],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Connector(ConnectorError::InvalidRequest(ref m)) if m.contains("`bind: fields` needs a JSON object")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_records_path_that_finds_nothing_is_a_config_error_naming_the_field() {
    let upstream = Upstream::start().await;
    let mut session = open(&upstream).await;
    let err = session
        .fetch(&FetchRequest::new("misplaced"))
        .await
        .unwrap_err();
    match err {
        Error::Connector(ConnectorError::InvalidConfig(message)) => assert!(
            message.contains("field `records_path` of resource `misplaced`")
                && message.contains("keys under /data: list"),
            "{message}"
        ),
        other => panic!("expected invalid-config, got {other:?}"),
    }
}
