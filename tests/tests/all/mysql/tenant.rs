//! A tenant reads and writes MySQL through `sluice serve`: its grant fits
//! the ceiling, the password is a write-only secret, a privileged account is
//! refused when it connects, and an unprivileged one works.

use serde_json::json;
use sluice_tests::client::api;
use sluice_tests::mysql::TestDatabase;
use sluice_tests::tempdir;

use crate::server::{new_instance, start, tenant, upload};

#[tokio::test]
async fn a_tenant_uses_an_unprivileged_account_with_a_secret_password_and_never_root() {
    let mut db = TestDatabase::new().await;
    let user = format!("{}_u", db.name);
    db.run(&format!(
        "CREATE TABLE people (id int PRIMARY KEY, name varchar(40));
         INSERT INTO people VALUES (1, 'Ada'), (2, 'Grace');
         DROP USER IF EXISTS '{user}'@'%';
         CREATE USER '{user}'@'%' IDENTIFIED BY 'hunter2';
         GRANT SELECT, INSERT ON {db}.* TO '{user}'@'%';",
        db = db.name
    ))
    .await;
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let ceiling = json!({ "sql": [{ "host": "127.0.0.1", "port": 3306, "databases": [db.name],
                                    "roles": ["root", user], "mode": "read-write" }] });
    let (_, token) = tenant(addr, json!({ "name": "my", "ceiling": ceiling })).await;
    let connector = upload(addr, &token, "sluice_mysql").await;
    let spec = |account: &str, secrets: serde_json::Value| {
        let mut grant = json!({ "name": "main", "mode": "read-write",
            "url": format!("mysql://{account}@127.0.0.1:3306/{}", db.name) });
        let mut spec = json!({ "connector": connector, "config": { "grant": "main" },
                               "grants": { "sql": [] } });
        if !secrets.is_null() {
            grant["password_secret"] = json!("db");
            spec["secrets"] = secrets;
        }
        spec["grants"]["sql"] = json!([grant]);
        spec
    };
    let fetch = json!({ "resource": "people", "sort": [{ "field": "id", "direction": "asc" }] });

    // root holds FILE, SUPER, …: refused when it connects, naming why.
    let root = new_instance(addr, &token, &spec("root", json!(null))).await;
    let reply = api(addr, Some(&token))
        .post_json(&format!("/v1/instances/{root}/fetch"), &fetch)
        .await;
    let body = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(
        reply.status == 403 && body.contains("administrative privilege"),
        "{}: {body}",
        reply.status
    );
    // Another database on the same server is outside the ceiling.
    let mut elsewhere = spec(&user, json!({ "db": "hunter2" }));
    elsewhere["grants"]["sql"][0]["url"] = json!(format!("mysql://{user}@127.0.0.1:3306/mysql"));
    let reply = api(addr, Some(&token))
        .post_json("/v1/instances", &elsewhere)
        .await;
    assert_eq!(
        reply.status,
        403,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["error"]["code"], "grant_outside_ceiling");

    // The unprivileged account, its password a secret never shown back.
    let instance = new_instance(addr, &token, &spec(&user, json!({ "db": "hunter2" }))).await;
    let shown = api(addr, Some(&token))
        .get(&format!("/v1/instances/{instance}"))
        .await;
    assert!(!String::from_utf8_lossy(&shown.body).contains("hunter2"));
    let reply = api(addr, Some(&token))
        .post_json(&format!("/v1/instances/{instance}/fetch"), &fetch)
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let names: Vec<String> = reply.json()["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["data"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["Ada", "Grace"]);
    // What the account may not do is denied, with the server's reason.
    let delete = json!({ "resource": "people", "operation": "delete", "records": [{ "id": 1 }] });
    let reply = api(addr, Some(&token))
        .post_json(&format!("/v1/instances/{instance}/execute"), &delete)
        .await;
    let body = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(
        reply.status == 403 && body.contains("DELETE command denied"),
        "{}: {body}",
        reply.status
    );
    assert!(!body.contains("hunter2"));
    assert_eq!(
        db.text("SELECT COUNT(*) FROM people").await.as_deref(),
        Some("2")
    );
    db.run(&format!("DROP USER '{user}'@'%'")).await;
}
