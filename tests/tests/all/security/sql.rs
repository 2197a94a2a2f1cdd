//! Findings 4 and 5: nothing sent through a read-only grant writes or leaves
//! its read-only transaction, and a tenant cannot pick a privileged role or
//! a database outside its ceiling.

use std::time::Duration;

use serde_json::{json, Value};
use sluice::capability::sql::SqlMode;
use sluice::{ConnectorError, Error, Grants};
use sluice_tests::postgres::{admin, TestSchema};
use sluice_tests::{data, probe, probe_request, tempdir};

use super::files::probe as invoke_probe;
use crate::server::{new_instance, start, tenant, upload};
use sluice_tests::client::api;

fn read_only(schema: &TestSchema) -> Grants {
    let mut grants = Grants::none();
    grants
        .sql
        .add(
            "main",
            &schema.grant_url("security"),
            SqlMode::ReadOnly,
            2,
            Duration::from_secs(10),
        )
        .expect("grant parses");
    grants
}

/// Run `statements` through the probe: `mode` is "query", "execute" or "transaction".
async fn run(grants: &Grants, mode: &str, statements: Value) -> Result<Value, Error> {
    let mut session = probe().open("{}", grants).await.expect("probe opens");
    let params = json!({
        "grant": "main", "statements": statements,
        "execute": mode == "execute", "transaction": mode == "transaction",
    });
    let page = session.fetch(&probe_request("sql", params)).await?;
    Ok(data(&page.records).remove(0)["results"].clone())
}

async fn count(schema: &TestSchema, sql: &str) -> i64 {
    schema.client.query_one(sql, &[]).await.unwrap().get(0)
}

fn denied_read_only(result: &Result<Value, Error>) -> bool {
    matches!(result, Err(Error::Connector(ConnectorError::Denied(m))) if m.contains("read-only"))
}

#[tokio::test]
async fn no_statement_through_a_read_only_grant_writes_in_any_order_or_function() {
    let schema = TestSchema::new().await;
    schema.run("CREATE TABLE t (id int)").await;
    let grants = read_only(&schema);
    let insert = format!("INSERT INTO {}.t VALUES (1)", schema.name);
    let escapes = [
        "SET TRANSACTION READ WRITE",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "SET default_transaction_read_only = off",
        "SET LOCAL transaction_read_only = off",
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        "RESET ALL",
        "COMMIT",
        "commit /* and go on */",
        "END",
        "ROLLBACK",
        "ABORT",
        "BEGIN",
        "START TRANSACTION READ WRITE",
        "SAVEPOINT s",
        "PREPARE TRANSACTION 'x'",
        "DISCARD ALL",
    ];
    for mode in ["query", "execute", "transaction"] {
        for escape in escapes {
            let result = run(&grants, mode, json!([[escape, []], [insert, []]])).await;
            assert!(denied_read_only(&result), "{mode} `{escape}`: {result:?}");
        }
        // Two statements in one string never pass either.
        let joined = format!("SELECT 1; {insert}");
        let result = run(&grants, mode, json!([[joined, []]])).await;
        assert!(denied_read_only(&result), "{mode}: {result:?}");
    }
    assert_eq!(
        count(&schema, &format!("SELECT count(*) FROM {}.t", schema.name)).await,
        0
    );
    // Plain reads still work.
    let rows = run(
        &grants,
        "query",
        json!([[
            format!("SELECT count(*)::int AS n FROM {}.t", schema.name),
            []
        ]]),
    )
    .await
    .unwrap();
    assert_eq!(rows[0]["rows"], json!([[0]]));
}

#[tokio::test]
async fn large_objects_copy_lock_and_session_advisory_locks_are_refused_read_only() {
    let schema = TestSchema::new().await;
    schema.run("CREATE TABLE t (id int)").await;
    let grants = read_only(&schema);
    let objects = "SELECT count(*) FROM pg_largeobject_metadata";
    let before = count(&schema, objects).await;
    let file = tempdir();
    let target = file.path().join("copied");
    let refused = [
        "SELECT lo_from_bytea(0, 'x'::bytea)".to_string(),
        "SELECT lo_create(0)".to_string(),
        "SELECT pg_catalog.lo_creat(-1)".to_string(),
        "SELECT \"lo_import\"('/etc/hostname')".to_string(),
        format!("COPY (SELECT 1) TO '{}'", target.display()),
        "COPY (SELECT 1) TO PROGRAM 'true'".to_string(),
        format!("COPY {}.t TO STDOUT", schema.name),
        format!("LOCK TABLE {}.t IN ACCESS EXCLUSIVE MODE", schema.name),
        "SELECT pg_advisory_lock(4242)".to_string(),
        "SELECT pg_try_advisory_lock_shared(4242)".to_string(),
    ];
    for mode in ["query", "execute", "transaction"] {
        for statement in &refused {
            let result = run(&grants, mode, json!([[statement, []]])).await;
            assert!(
                denied_read_only(&result),
                "{mode} `{statement}`: {result:?}"
            );
        }
    }
    assert_eq!(
        count(&schema, objects).await,
        before,
        "no large object was made"
    );
    assert!(!target.exists());
    // Nobody holds the advisory lock: another connection takes it at once.
    let taken: bool = schema
        .client
        .query_one("SELECT pg_try_advisory_lock(4242)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(taken);
    schema
        .client
        .execute("SELECT pg_advisory_unlock(4242)", &[])
        .await
        .unwrap();
    // The transaction-scoped form, released with the transaction, is fine.
    let xact = run(
        &grants,
        "query",
        json!([["SELECT pg_advisory_xact_lock(4242)::text", []]]),
    )
    .await;
    assert!(xact.is_ok(), "{xact:?}");
}

/// An unprivileged login role, dropped at the end of the test.
struct Role(String);

impl Role {
    async fn new(tag: &str) -> Self {
        let name = format!("sluice_{tag}_{}", std::process::id());
        let client = admin().await;
        client
            .batch_execute(&format!(
                "DROP ROLE IF EXISTS {name}; CREATE ROLE {name} LOGIN NOSUPERUSER"
            ))
            .await
            .unwrap();
        Self(name)
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                admin()
                    .await
                    .batch_execute(&format!("DROP ROLE IF EXISTS {name}"))
                    .await
            })
            .map_err(std::io::Error::other)
        })
        .join();
    }
}

#[tokio::test]
async fn a_tenant_grant_refuses_a_superuser_role_and_databases_outside_the_ceiling() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let reader = Role::new("reader").await;
    let ceiling = json!({ "sql": [
        { "host": "127.0.0.1", "databases": ["test"], "roles": ["postgres", reader.0], "mode": "read-only" }
    ] });
    let (_, token) = tenant(addr, json!({ "name": "db", "ceiling": ceiling })).await;
    let connector = upload(addr, &token, "sluice_probe").await;
    let grant = |user: &str, db: &str, port: u16, mode: &str| {
        json!({ "connector": connector, "grants": { "sql": [
            { "name": "main", "url": format!("postgres://{user}@127.0.0.1:{port}/{db}"), "mode": mode }
        ] } })
    };
    // Outside the ceiling: another database, port, role, or a higher mode.
    for spec in [
        grant("postgres", "postgres", 5432, "read-only"),
        grant("postgres", "test", 5433, "read-only"),
        grant("someone", "test", 5432, "read-only"),
        grant(&reader.0, "test", 5432, "read-write"),
    ] {
        let reply = api(addr, Some(&token))
            .post_json("/v1/instances", &spec)
            .await;
        assert_eq!(
            reply.status,
            403,
            "{spec}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["error"]["code"], "grant_outside_ceiling");
    }
    // Inside it, a superuser is refused when it connects, before any statement runs.
    let superuser = new_instance(addr, &token, &grant("postgres", "test", 5432, "read-only")).await;
    let program = json!({ "grant": "main", "statements": [["SELECT 1", []]] });
    let reply = invoke_probe(addr, &token, &superuser, "sql", program.clone()).await;
    assert_eq!(
        reply.status,
        403,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("`postgres`") && message.contains("superuser"),
        "{message}"
    );
    // An unprivileged role works.
    let plain = new_instance(addr, &token, &grant(&reader.0, "test", 5432, "read-only")).await;
    let reply = invoke_probe(addr, &token, &plain, "sql", program).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // What the role may not read is denied (SQLSTATE 42501), with the server's reason.
    let forbidden =
        json!({ "grant": "main", "statements": [["SELECT rolpassword FROM pg_authid", []]] });
    let reply = invoke_probe(addr, &token, &plain, "sql", forbidden).await;
    let body = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(
        reply.status == 403 && body.contains("permission denied for table pg_authid"),
        "{}: {body}",
        reply.status
    );
}

#[tokio::test]
async fn a_sql_password_is_a_write_only_secret_never_part_of_a_grant() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let reader = Role::new("secret").await;
    let ceiling = json!({ "sql": [{ "host": "127.0.0.1", "databases": ["test"], "roles": [reader.0] }],
                          "http": ["https://api.example.com"] });
    let (_, token) = tenant(addr, json!({ "name": "db", "ceiling": ceiling })).await;
    let connector = upload(addr, &token, "sluice_probe").await;
    // A password in the URL would be shown back with the grant: refused.
    let url = format!("postgres://{}:hunter2@127.0.0.1:5432/test", reader.0);
    let spec = json!({ "connector": connector,
                       "grants": { "sql": [{ "name": "main", "url": url }] } });
    let reply = api(addr, Some(&token))
        .post_json("/v1/instances", &spec)
        .await;
    assert_eq!(
        reply.status,
        422,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["error"]["code"], "secret_in_grant");
    assert!(!String::from_utf8_lossy(&reply.body).contains("hunter2"));
    // The password goes in `secrets`, named by `password_secret`.
    let url = format!("postgres://{}@127.0.0.1:5432/test", reader.0);
    let grants = json!({ "sql": [{ "name": "main", "url": url, "password_secret": "db" }] });
    let missing = json!({ "connector": connector, "grants": grants });
    let reply = api(addr, Some(&token))
        .post_json("/v1/instances", &missing)
        .await;
    assert_eq!(
        reply.status,
        422,
        "a missing secret: {}",
        String::from_utf8_lossy(&reply.body)
    );
    let spec = json!({ "connector": connector, "grants": grants, "secrets": { "db": "hunter2" } });
    let instance = new_instance(addr, &token, &spec).await;
    let path = format!("/v1/instances/{instance}");
    let shown = api(addr, Some(&token)).get(&path).await;
    assert!(!String::from_utf8_lossy(&shown.body).contains("hunter2"));
    let query = json!({ "grant": "main", "statements": [["SELECT current_user::text", []]] });
    let reply = invoke_probe(addr, &token, &instance, "sql", query).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // Pointing the password at another database needs the secret again.
    let elsewhere = json!({ "sql": [{ "name": "main", "password_secret": "db",
        "url": format!("postgres://{}@127.0.0.1:5432/postgres", reader.0) }] });
    let update = json!({ "connector": connector, "grants": elsewhere });
    let reply = api(addr, Some(&token)).put_json(&path, &update).await;
    assert_eq!(
        reply.status,
        422,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["error"]["code"], "secrets_required");
}
