//! HTTP API conventions of `sluice serve`: methods, authentication headers,
//! tokens with names and expiry, and request bodies checked field by field.

use serde_json::json;
use sluice_tests::client::{api, send_with};
use sluice_tests::tempdir;

use crate::server::{new_instance, start, tenant, upload, ADMIN};

/// A server on `dir` with a tenant and an instance of the probe: its
/// address, task, the tenant's token and the instance id.
async fn probe_instance(
    dir: &std::path::Path,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<()>,
    String,
    String,
) {
    let (addr, server) = start(dir).await;
    let (_, token) = tenant(addr, json!({ "name": "t" })).await;
    let connector = upload(addr, &token, "sluice_probe").await;
    let instance = new_instance(addr, &token, &json!({ "connector": connector })).await;
    (addr, server, token, instance)
}

#[tokio::test]
async fn a_wrong_method_on_a_known_path_is_405_with_allow() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let cases = [
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/v1/connectors", "GET, HEAD, POST"),
        ("PATCH", "/v1/instances/abc", "GET, HEAD, PUT, DELETE"),
        ("GET", "/v1/instances/abc/fetch", "POST"),
        ("PUT", "/v1/tenants/abc/tokens", "GET, HEAD, POST"),
    ];
    for (method, path, allow) in cases {
        let reply = api(addr, Some(ADMIN)).request(method, path, vec![]).await;
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.headers["allow"], allow, "{method} {path}");
        assert_eq!(reply.json()["error"]["code"], "method_not_allowed");
    }
    // An unknown path is still 404, and HEAD answers where GET does.
    let (_, token) = tenant(addr, json!({ "name": "t" })).await;
    let reply = api(addr, Some(&token)).get("/v1/nothing").await;
    assert_eq!(reply.status, 404);
    let reply = api(addr, Some(&token))
        .request("HEAD", "/v1/connectors", vec![])
        .await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());
}

#[tokio::test]
async fn bearer_is_matched_case_insensitively_and_401_says_how_to_authenticate() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let header = format!("{scheme} {ADMIN}");
        let reply = send_with(
            addr,
            "GET",
            "/v1/tenants",
            &[("authorization", &header)],
            vec![],
        )
        .await;
        assert_eq!(reply.status, 200, "{scheme}");
    }
    for header in [None, Some("Basic YWRtaW4="), Some("Bearer wrong")] {
        let headers: Vec<(&str, &str)> = header.map(|h| ("authorization", h)).into_iter().collect();
        let reply = send_with(addr, "GET", "/v1/tenants", &headers, vec![]).await;
        assert_eq!(reply.status, 401, "{header:?}");
        assert_eq!(reply.headers["www-authenticate"], "Bearer realm=\"sluice\"");
    }
}

#[tokio::test]
async fn tokens_are_named_listed_without_secrets_and_expire() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (id, _) = tenant(addr, json!({ "name": "t" })).await;
    let tokens = format!("/v1/tenants/{id}/tokens");
    let created = api(addr, Some(ADMIN))
        .post_json(&tokens, &json!({ "name": "ci", "expires_in_s": 1 }))
        .await;
    assert_eq!(created.status, 201);
    let created = created.json();
    assert_eq!(created["name"], "ci");
    assert_eq!(
        created["expires_at"].as_u64().unwrap(),
        created["created_at"].as_u64().unwrap() + 1
    );
    let secret = created["token"].as_str().unwrap().to_string();
    // An empty body still makes a token (no name, no expiry).
    let plain = api(addr, Some(ADMIN)).post(&tokens, vec![]).await;
    assert_eq!(plain.status, 201);
    assert_eq!(plain.json()["expires_at"], json!(null));

    let listed = api(addr, Some(ADMIN)).get(&tokens).await.json();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        3,
        "the one `tenant` made, and two here: {listed}"
    );
    assert!(items
        .iter()
        .any(|t| t["name"] == "ci" && t["id"] == created["id"]));
    let text = listed.to_string();
    assert!(!text.contains(&secret) && !text.contains("hash"), "{text}");

    assert_eq!(
        api(addr, Some(&secret)).get("/v1/connectors").await.status,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let expired = api(addr, Some(&secret)).get("/v1/connectors").await;
    assert_eq!(expired.status, 401);
    assert_eq!(expired.json()["error"]["code"], "token_expired");

    let zero = api(addr, Some(ADMIN))
        .post_json(&tokens, &json!({ "expires_in_s": 0 }))
        .await;
    assert_eq!(zero.status, 422);
    let unknown = api(addr, Some(ADMIN))
        .post_json(&tokens, &json!({ "ttl": 5 }))
        .await;
    assert_eq!(unknown.status, 422);
    assert!(unknown.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown field `ttl`"));
}

#[tokio::test]
async fn request_bodies_are_checked_field_by_field() {
    let dir = tempdir();
    let (addr, _server, token, instance) = probe_instance(dir.path()).await;
    let fetch = format!("/v1/instances/{instance}/fetch");
    let execute = format!("/v1/instances/{instance}/execute");
    let cases = [
        (
            &fetch,
            json!({ "resource": "x", "limit": 3 }),
            "unknown field `limit`",
        ),
        (
            &fetch,
            json!({ "resource": "x", "filters": [{ "field": "a", "op": "gt" }] }),
            "filters[0]: `value` is missing",
        ),
        (
            &fetch,
            json!({ "resource": "x", "filters": [{ "field": "a", "op": "around", "value": 1 }] }),
            "filters[0]: unknown filter operator `around`",
        ),
        (
            &fetch,
            json!({ "resource": "x", "records": [{ "a": 1 }] }),
            "`records` is not used by `fetch`",
        ),
        (
            &execute,
            json!({ "resource": "x", "operation": "w", "records": [[1]] }),
            "records[0]: every record must be a JSON object",
        ),
        (
            &execute,
            json!({ "resource": "x", "operation": "w", "records": [{ "checkpoint": "c" }] }),
            "records[0]: a stream's checkpoint or error line is not a record",
        ),
    ];
    for (path, body, needle) in cases {
        let reply = api(addr, Some(&token)).post_json(path, &body).await;
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            reply.status == 422 && message.contains(needle),
            "{body}: {} {message}",
            reply.status
        );
    }
    // Not JSON at all is 400; JSON of the wrong shape is 422.
    let reply = api(addr, Some(&token))
        .post(&fetch, b"{not json".to_vec())
        .await;
    assert_eq!(reply.status, 400);
    let reply = api(addr, Some(&token))
        .post_json(&fetch, &json!({ "resource": "x", "limit": 3 }))
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.json()["error"]["code"], "invalid_body");
    // A filter that needs no value is fine without one.
    let reply = api(addr, Some(&token))
        .post_json(
            &fetch,
            &json!({ "resource": "echo", "filters": [{ "field": "a", "op": "is-null" }] }),
        )
        .await;
    assert_ne!(reply.status, 422, "{:?}", reply.body);
}

#[tokio::test]
async fn instances_name_a_connector_by_name_at_version_and_take_a_name() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (_, token) = tenant(addr, json!({ "name": "t" })).await;
    let id = upload(addr, &token, "sluice_file").await;
    let meta = api(addr, Some(&token))
        .get(&format!("/v1/connectors/{id}"))
        .await
        .json();
    let version = meta["version"].as_str().unwrap().to_string();
    let created = api(addr, Some(&token))
        .post_json(
            "/v1/instances",
            &json!({ "connector": format!("file@{version}"), "name": "people" }),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let view = created.json();
    // Pinned to the bytes the reference named.
    assert_eq!(view["connector"], id);
    assert_eq!(view["name"], "people");
    let listed = api(addr, Some(&token)).get("/v1/instances").await.json();
    assert_eq!(listed["items"][0]["name"], "people");

    let cases = [
        (
            json!({ "connector": "file@9.9.9" }),
            404,
            format!("versions: {version}"),
        ),
        (
            json!({ "connector": "nope@1.0.0" }),
            404,
            "no connector named `nope`".to_string(),
        ),
        (
            json!({ "connector": id, "name": "" }),
            422,
            "`name` must be".to_string(),
        ),
    ];
    for (body, status, needle) in cases {
        let reply = api(addr, Some(&token))
            .post_json("/v1/instances", &body)
            .await;
        assert_eq!(reply.status, status, "{body}");
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains(&needle), "{body}: {message}");
    }
}

#[tokio::test]
async fn a_ceiling_entry_that_can_match_nothing_is_refused_when_written() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let cases = [
        (
            json!({ "http": ["api.example.com"] }),
            "`http` entry `api.example.com`",
        ),
        (json!({ "tcp": ["127.0.0.1"] }), "`tcp` entry `127.0.0.1`"),
        (
            json!({ "tcp": ["10.0.0.0/33:80"] }),
            "bad CIDR `10.0.0.0/33`",
        ),
        (json!({ "tcp": ["db:http"] }), "bad port `http`"),
        (
            json!({ "sql_hosts": ["db:99999"] }),
            "`sql_hosts` entry `db:99999`",
        ),
        (
            json!({ "sql_hosts": ["postgres://db"] }),
            "`sql_hosts` entry `postgres://db`",
        ),
        (json!({ "sql_hosts": ["::1:5432"] }), "in brackets"),
        (
            json!({ "sql": [{ "host": "db", "databases": [], "roles": ["app"] }] }),
            "need at least one name",
        ),
    ];
    for (ceiling, needle) in cases {
        let body = json!({ "name": "t", "ceiling": ceiling });
        let reply = api(addr, Some(ADMIN)).post_json("/v1/tenants", &body).await;
        assert_eq!(reply.status, 422, "{body}");
        assert_eq!(reply.json()["error"]["code"], "invalid_ceiling");
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let good = json!({ "name": "t", "ceiling": {
        "http": ["https://*.example.com"], "tcp": ["127.0.0.1:6379", "10.0.0.0/8:*", "[::1]:4222"],
        "sql_hosts": ["db", "db2:5433", "[::1]:5432"]
    } });
    let created = api(addr, Some(ADMIN)).post_json("/v1/tenants", &good).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    // The same check guards an update.
    let id = created.json()["id"].as_str().unwrap().to_string();
    let bad = json!({ "name": "t", "ceiling": { "tcp": ["nowhere"] } });
    let updated = api(addr, Some(ADMIN))
        .put_json(&format!("/v1/tenants/{id}"), &bad)
        .await;
    assert_eq!(updated.status, 422);
}

#[test]
fn sql_hosts_take_a_host_or_a_host_and_port() {
    use sluice::capability::Ceiling;
    use sluice::GrantsConfig;
    let ceiling: Ceiling =
        serde_json::from_value(json!({ "sql_hosts": ["any-port.test", "one-port.test:5433"] }))
            .unwrap();
    let grant = |url: &str| -> GrantsConfig {
        serde_json::from_value(json!({ "sql": [{ "name": "main", "url": url }] })).unwrap()
    };
    for url in [
        "postgres://app@any-port.test:5432/db",
        "postgres://app@any-port.test:6000/db",
        "postgres://app@one-port.test:5433/db",
    ] {
        assert!(grant(url).within(&ceiling).is_ok(), "{url}");
    }
    for url in [
        "postgres://app@one-port.test:5432/db",
        "postgres://app@other.test:5433/db",
    ] {
        let outside = grant(url).within(&ceiling).unwrap_err();
        assert_eq!(outside.capability, sluice::Capability::Sql, "{url}");
    }
}

/// Validates an OpenAPI document from stdin with openapi-spec-validator.
const OPENAPI_VALIDATE: &str = "
import json, sys
from openapi_spec_validator import validate
validate(json.load(sys.stdin))
print('valid')
";

#[tokio::test]
async fn the_openapi_document_is_valid_and_describes_bodies_ids_and_statuses() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let reply = api(addr, None).get("/openapi.json").await;
    assert_eq!(
        crate::server::python_check(OPENAPI_VALIDATE, &reply.body).trim(),
        "valid"
    );
    let doc = reply.json();
    let mut ids = Vec::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            assert!(!ids.contains(&id.to_string()), "{id} twice");
            ids.push(id.to_string());
        }
    }
    let created = &doc["paths"]["/v1/instances"]["post"];
    assert!(created["responses"]["201"].is_object(), "{created}");
    assert_eq!(
        created["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/InstanceSpec"
    );
    // The request types are the ones the server parses: unknown fields refused.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["InvokeSpec"]["additionalProperties"], false);
    assert!(schemas["InvokeSpec"]["properties"]["checkpoint"].is_object());
    assert!(schemas["TenantSpec"]["required"]
        .as_array()
        .unwrap()
        .contains(&json!("name")));
    let stream = &doc["paths"]["/v1/instances/{instance}/stream"]["post"]["responses"]["200"];
    assert!(
        stream["content"]["application/x-ndjson"].is_object(),
        "{stream}"
    );
}

#[tokio::test]
async fn a_denial_names_the_grant_in_the_apis_terms_not_the_command_lines() {
    let dir = tempdir();
    let (addr, _server, token, instance) = probe_instance(dir.path()).await;
    let fetch = format!("/v1/instances/{instance}/fetch");
    let cases = [
        (
            json!({ "resource": "http", "options": { "url": "http://127.0.0.1:9/x" } }),
            "`http://127.0.0.1:9` to the instance's `grants.http.origins`",
        ),
        (
            json!({ "resource": "tcp", "options": { "addr": "127.0.0.1:9" } }),
            "`127.0.0.1:9` to the instance's `grants.sockets.tcp`",
        ),
    ];
    for (body, grant) in cases {
        let reply = api(addr, Some(&token)).post_json(&fetch, &body).await;
        assert_eq!(reply.status, 403, "{body}");
        let error = &reply.json()["error"];
        assert_eq!(error["details"]["grant"], grant, "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains(grant) && !message.contains("--"),
            "{message}"
        );
    }
}

/// A little-endian `(ptr, len)` pair as WAT data text.
fn string_at(ptr: u32, len: u32) -> String {
    ptr.to_le_bytes()
        .iter()
        .chain(len.to_le_bytes().iter())
        .map(|b| format!("\\{b:02x}"))
        .collect()
}

/// A hand-made connector whose `describe` names it `bad` and declares
/// `schema` (JSON text without `"` or `\`) as its config schema.
fn declaring_schema(schema: &str) -> Vec<u8> {
    use sluice_tests::components::{api_export, component, dummy_wat, with_body, with_memory};
    let quoted = schema.replace('\'', "\\22");
    let len = u32::try_from(schema.len()).unwrap();
    let descriptor = format!(
        "\"{}{}{}{}\"",
        string_at(64, 3),
        string_at(0, 0).repeat(2),
        string_at(96, len),
        "\\00".repeat(32)
    );
    let data = format!(
        "(data (i32.const 0) {descriptor}) (data (i32.const 64) \"bad\") (data (i32.const 96) \"{quoted}\")"
    );
    let wat = with_memory(&dummy_wat(), 1, &data);
    component(&with_body(&wat, &api_export("describe"), "i32.const 0"))
}

#[tokio::test]
async fn an_upload_whose_config_schema_cannot_be_compiled_is_refused() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let (_, token) = tenant(addr, json!({ "name": "t" })).await;
    // A `$ref` out of the schema: nothing is fetched, so it cannot be used.
    let remote = declaring_schema("{'$ref': 'https://schemas.example/config.json'}");
    let refused = api(addr, Some(&token)).post("/v1/connectors", remote).await;
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    assert_eq!(refused.json()["error"]["code"], "invalid_config_schema");
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("connector `bad`"), "{message}");
    let listed = api(addr, Some(&token)).get("/v1/connectors").await.json();
    assert_eq!(listed["items"], json!([]), "nothing was stored");
    // The same connector declaring a usable schema is taken.
    let fine = declaring_schema("{'type': 'object'}");
    let taken = api(addr, Some(&token)).post("/v1/connectors", fine).await;
    assert_eq!(taken.status, 201, "{:?}", taken.body);
    assert_eq!(taken.json()["config_schema"], json!({ "type": "object" }));
}
