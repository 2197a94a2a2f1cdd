//! SFTP grants through `sluice serve`: a tenant reaches only the SSH servers
//! its ceiling lists, its key is a write-only secret never shown back, and
//! pointing a grant at another server needs the secret again (a password
//! would otherwise be sent to whatever server the tenant names).

use serde_json::{json, Value};
use sluice::capability::sftp::SftpMode;
use sluice_tests::sftp::{SftpServer, KEY_SECRET};
use sluice_tests::tempdir;

use crate::server::{new_instance, start, tenant, upload};
use sluice_tests::client::api;

fn grants(server: &SftpServer, address: &str) -> Value {
    let mut grant = serde_json::to_value(server.grant("drop", SftpMode::ReadOnly)).unwrap();
    grant["url"] = json!(format!(
        "sftp://{}@{address}{}",
        server.user,
        server.files().display()
    ));
    json!({ "sftp": [grant] })
}

#[tokio::test]
async fn a_tenant_reaches_only_the_ceilings_servers_and_its_key_is_never_shown() {
    let server = SftpServer::start();
    server.put("in/a.ndjson", "{\"a\": 1}\n");
    let dir = tempdir();
    let (addr, _sluice) = start(dir.path()).await;
    let ceiling = json!({ "sftp": [server.address()] });
    let (_, token) = tenant(addr, json!({ "name": "s", "ceiling": ceiling })).await;
    let connector = upload(addr, &token, "sluice_file").await;
    let config = json!({ "root": "sftp://drop/in" });

    // A server outside the ceiling: refused when the instance is written.
    let outside = json!({ "connector": connector, "config": config,
                          "grants": grants(&server, "127.0.0.1:22"),
                          "secrets": { KEY_SECRET: server.key } });
    let reply = api(addr, Some(&token))
        .post_json("/v1/instances", &outside)
        .await;
    assert_eq!(
        reply.status,
        403,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["error"]["code"], "grant_outside_ceiling");
    assert_eq!(reply.json()["error"]["details"]["capability"], "sftp");

    // Inside it, with the key as a secret: it reads, and the key is never shown.
    let spec = json!({ "connector": connector, "config": config,
                       "grants": grants(&server, server.address()),
                       "secrets": { KEY_SECRET: server.key } });
    let instance = new_instance(addr, &token, &spec).await;
    let path = format!("/v1/instances/{instance}");
    let page = api(addr, Some(&token))
        .post_json(&format!("{path}/fetch"), &json!({ "resource": "a.ndjson" }))
        .await;
    assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
    assert_eq!(page.json()["records"], json!([{ "data": { "a": 1 } }]));
    let shown = api(addr, Some(&token)).get(&path).await;
    let body = String::from_utf8_lossy(&shown.body);
    let key_body = server.key.lines().nth(1).expect("a key body line");
    assert!(!body.contains(key_body), "{body}");

    // Pointing the grant at another server (still in the ceiling) needs the secret again.
    let elsewhere = json!({ "sftp": [{
        "name": "drop", "key_secret": KEY_SECRET, "known_hosts": server.known_host,
        "url": format!("sftp://someone-else@{}/tmp", server.address()) }] });
    let update = json!({ "connector": connector, "config": config, "grants": elsewhere });
    let reply = api(addr, Some(&token)).put_json(&path, &update).await;
    assert_eq!(
        reply.status,
        422,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.json()["error"]["code"], "secrets_required");
}
