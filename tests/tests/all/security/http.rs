//! Findings 3, 9 and 11: where the host sends a tenant's secrets, what it
//! reads on a tenant's behalf, and which headers a credential may name.

use serde_json::json;
use sluice::{Error, Grants};
use sluice_tests::client::api;
use sluice_tests::upstream::Upstream;
use sluice_tests::{probe, probe_request, tempdir};

use crate::server::{new_instance, start, tenant, upload};

fn oauth_grants(origins: &[String], token_url: &str) -> serde_json::Value {
    json!({ "http": { "origins": origins, "auth": [{
        "origin": origins[0], "kind": "oauth2-client-credentials", "token_url": token_url,
        "client_id": "app", "client_secret": "client"
    }] } })
}

#[test]
fn a_token_url_outside_the_granted_origins_is_refused() {
    let grants = oauth_grants(
        &["https://api.example.com".into()],
        "http://127.0.0.1:9/token",
    );
    let err = Grants::from_json(&grants.to_string())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("token_url") && err.contains("origins"),
        "{err}"
    );
}

#[tokio::test]
async fn the_server_refuses_a_token_url_outside_the_tenant_ceiling() {
    // Something on loopback the tenant would like the host to talk to.
    let internal = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal_url = format!("http://{}/token", internal.local_addr().unwrap());
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let ceiling = json!({ "http": ["https://api.example.com"] });
    let (_, token) = tenant(addr, json!({ "name": "t", "ceiling": ceiling })).await;
    let connector = upload(addr, &token, "sluice_probe").await;
    // Only the api origin granted: the token URL is not among the grant's origins.
    let only_api = oauth_grants(&["https://api.example.com".into()], &internal_url);
    // The token URL's origin added to the grant: outside the ceiling.
    let origin = internal_url.trim_end_matches("/token").to_string();
    let both = oauth_grants(
        &["https://api.example.com".into(), origin.clone()],
        &internal_url,
    );
    for grants in [only_api, both] {
        let spec =
            json!({ "connector": connector, "grants": grants, "secrets": { "client": "s3cret" } });
        let reply = api(addr, Some(&token))
            .post_json("/v1/instances", &spec)
            .await;
        assert!(
            reply.status == 422 || reply.status == 403,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert!(!String::from_utf8_lossy(&reply.body).contains("s3cret"));
    }
    // Nothing ever connected to the internal address.
    let accepted =
        tokio::time::timeout(std::time::Duration::from_millis(200), internal.accept()).await;
    assert!(accepted.is_err(), "the host contacted the token URL");
}

#[tokio::test]
async fn changing_where_a_secret_goes_requires_supplying_it_again() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let ceiling = json!({ "http": ["https://api.example.com", "https://attacker.example.com"] });
    let (_, token) = tenant(addr, json!({ "name": "t", "ceiling": ceiling })).await;
    let connector = upload(addr, &token, "sluice_probe").await;
    let origins = [
        "https://api.example.com".to_string(),
        "https://attacker.example.com".to_string(),
    ];
    let first = oauth_grants(&origins, "https://api.example.com/token");
    let id = new_instance(
        addr,
        &token,
        &json!({ "connector": connector, "grants": first, "secrets": { "client": "s3cret" } }),
    )
    .await;
    let path = format!("/v1/instances/{id}");
    let redirected = [
        oauth_grants(&origins, "https://attacker.example.com/token"),
        json!({ "http": { "origins": origins, "auth": [{
            "origin": "https://attacker.example.com", "kind": "bearer", "secret": "client" }] } }),
        json!({ "http": { "origins": origins, "auth": [{
            "origin": "https://api.example.com", "kind": "api-key", "header": "X-Echo", "secret": "client" }] } }),
    ];
    for grants in &redirected {
        let reply = api(addr, Some(&token))
            .put_json(&path, &json!({ "connector": connector, "grants": grants }))
            .await;
        assert_eq!(
            reply.status,
            422,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["error"]["code"], "secrets_required");
    }
    // The same auth with other changes keeps the stored secrets.
    let reply = api(addr, Some(&token))
        .put_json(
            &path,
            &json!({ "connector": connector, "grants": first, "config": { "note": 1 } }),
        )
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // Supplying the secret again makes the change.
    let spec =
        json!({ "connector": connector, "grants": redirected[0], "secrets": { "client": "new" } });
    let reply = api(addr, Some(&token)).put_json(&path, &spec).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

#[tokio::test]
async fn an_oversized_token_response_is_cut_off() {
    let upstream = Upstream::start().await;
    // 1 GiB, chunked, with no declared length.
    let grants = oauth_grants(&[upstream.origin()], &upstream.url("/chunked?n=1073741824"));
    let grants = Grants::from_json(&grants.to_string())
        .unwrap()
        .secret("client", "x");
    let mut session = probe().open("{}", &grants).await.unwrap();
    let request = probe_request("http", json!({ "url": upstream.url("/auth/oauth") }));
    let err = session.fetch(&request).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, Error::Connector(_)) && text.contains("larger than"),
        "{text}"
    );
}

#[test]
fn a_credential_cannot_name_a_routing_framing_or_hop_by_hop_header() {
    for header in [
        "Host",
        "host",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "Upgrade",
        "TE",
        "Trailer",
        "Proxy-Authorization",
        ":authority",
        "Bad Header",
    ] {
        let grants = json!({ "http": { "origins": ["https://api.example.com"], "auth": [{
            "origin": "https://api.example.com", "kind": "api-key", "header": header, "secret": "k" }] } });
        let err = Grants::from_json(&grants.to_string());
        assert!(err.is_err(), "`{header}` was accepted");
    }
    let fine = json!({ "http": { "origins": ["https://api.example.com"], "auth": [{
        "origin": "https://api.example.com", "kind": "api-key", "header": "X-Api-Key", "secret": "k" }] } });
    assert!(Grants::from_json(&fine.to_string()).is_ok());
}

async fn get_status(grants: &Grants, url: String) -> Result<serde_json::Value, Error> {
    let mut session = probe().open("{}", grants).await.unwrap();
    let page = session
        .fetch(&probe_request("http", json!({ "url": url })))
        .await?;
    Ok(sluice_tests::data(&page.records).remove(0)["status"].clone())
}

#[tokio::test]
async fn a_granted_name_that_resolves_to_loopback_is_denied_unless_the_grant_opts_in() {
    let upstream = Upstream::start().await;
    let port = upstream.origin().rsplit(':').next().unwrap().to_string();
    let origin = format!("http://localhost:{port}");
    let url = format!("{origin}/hello");
    let grants = Grants::none().allow_http(&origin).unwrap();
    let err = get_status(&grants, url.clone()).await.unwrap_err();
    match &err {
        Error::Denied(denial) => {
            assert!(denial.attempted.contains("resolves to"), "{denial}");
            assert!(denial.grant.contains("allow_private_addresses"), "{denial}");
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    let mut opted_in = Grants::none().allow_http(&origin).unwrap();
    opted_in.http.allow_private_addresses = true;
    assert_eq!(get_status(&opted_in, url).await.unwrap(), 200);
    // An address written in the grant was granted on purpose.
    let literal = Grants::none().allow_http(&upstream.origin()).unwrap();
    assert_eq!(
        get_status(&literal, upstream.url("/hello")).await.unwrap(),
        200
    );
}

#[tokio::test]
async fn a_tenant_cannot_opt_into_private_addresses_without_the_ceiling() {
    let dir = tempdir();
    let (addr, _server) = start(dir.path()).await;
    let ceiling = json!({ "http": ["https://api.example.com"] });
    let (_, token) = tenant(addr, json!({ "name": "t", "ceiling": ceiling })).await;
    let connector = upload(addr, &token, "sluice_probe").await;
    let spec = json!({ "connector": connector, "grants": { "http": {
        "origins": ["https://api.example.com"], "allow_private_addresses": true } } });
    let reply = api(addr, Some(&token))
        .post_json("/v1/instances", &spec)
        .await;
    assert_eq!(
        reply.status,
        403,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply.json()["error"]["details"]["grant"],
        "allow_private_addresses"
    );
}

/// Whether `text`, or `text` read as base64, holds `secret`.
fn holds(text: &str, secret: &str) -> bool {
    use base64::Engine as _;
    let decoded = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
    ]
    .iter()
    .filter_map(|engine| {
        engine
            .decode(text.trim_end_matches('='))
            .ok()
            .or_else(|| engine.decode(text).ok())
    })
    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    .collect::<Vec<_>>();
    text.contains(secret) || decoded.iter().any(|d| d.contains(secret))
}

#[tokio::test]
async fn an_injected_secret_never_comes_back_through_response_headers() {
    use sluice_tests::upstream::{API_KEY, BASIC_PASSWORD, BEARER_TOKEN};
    let upstream = Upstream::start().await;
    let cases = [
        (
            json!({ "kind": "api-key", "query": "api_key", "secret": "s" }),
            API_KEY,
        ),
        (
            json!({ "kind": "api-key", "header": "X-Api-Key", "secret": "s" }),
            API_KEY,
        ),
        (json!({ "kind": "bearer", "secret": "s" }), BEARER_TOKEN),
        (
            json!({ "kind": "basic", "username": "alice", "password_secret": "s" }),
            BASIC_PASSWORD,
        ),
    ];
    for (mut auth, secret) in cases {
        auth["origin"] = json!(upstream.origin());
        let grants = json!({ "http": { "origins": [upstream.origin()], "auth": [auth.clone()] } });
        let grants = Grants::from_json(&grants.to_string())
            .unwrap()
            .secret("s", secret);
        // Link paging through the rest connector: every record, no secret in any checkpoint.
        let config = json!({ "base_url": upstream.origin(), "resources": { "items": {
            "path": "/api/echo-items", "records_path": "/data", "id_field": "id",
            "pagination": { "type": "link", "size_param": "limit", "page_size": 7 } } } });
        let mut session = sluice_tests::connector("sluice_rest")
            .open(&config.to_string(), &grants)
            .await
            .unwrap();
        let request = sluice::FetchRequest::new("items");
        let mut records = 0;
        {
            let mut stream = session.stream(&request, None).await.unwrap();
            while let Some(batch) = stream.next(7).await.unwrap() {
                records += batch.records.len();
                for record in &batch.records {
                    assert!(!record.data.contains(secret), "{auth}: {}", record.data);
                }
                if let Some(checkpoint) = &batch.checkpoint {
                    assert!(
                        !holds(checkpoint, secret),
                        "{auth}: checkpoint {checkpoint}"
                    );
                }
            }
        }
        assert_eq!(records, 25, "{auth}: paging went on to the end");
        let page = session
            .fetch(&request.clone().page(7, None, None))
            .await
            .unwrap();
        let cursor = page.next_cursor.expect("a next page");
        assert!(!holds(&cursor, secret), "{auth}: cursor {cursor}");
        // A probe reading the echoed headers: not in what it got, not in its memory.
        let mut probe_session = probe().open("{}", &grants).await.unwrap();
        let got = probe_session
            .fetch(&probe_request(
                "http",
                json!({ "url": upstream.url("/api/echo-items?limit=7") }),
            ))
            .await
            .unwrap();
        let seen = sluice_tests::data(&got.records).remove(0);
        assert!(!seen.to_string().contains(secret), "{auth}: {seen}");
        let reversed: String = secret.chars().rev().collect();
        let scan = probe_session
            .fetch(&probe_request("memscan", json!({ "text": reversed })))
            .await
            .unwrap();
        assert_eq!(
            sluice_tests::data(&scan.records)[0]["found"],
            false,
            "{auth}"
        );
    }
}

#[tokio::test]
async fn a_key_the_url_already_carries_is_replaced_not_added_again() {
    use sluice_tests::upstream::API_KEY;
    let upstream = Upstream::start().await;
    let auth = json!({ "origin": upstream.origin(), "kind": "api-key", "query": "api_key", "secret": "s" });
    let grants = json!({ "http": { "origins": [upstream.origin()], "auth": [auth] } });
    let grants = Grants::from_json(&grants.to_string())
        .unwrap()
        .secret("s", API_KEY);
    let mut session = probe().open("{}", &grants).await.unwrap();
    // The guest sends a stale copy of the parameter: the host sends exactly one, its own.
    let url = upstream.url("/auth/query?api_key=stale&x=1");
    let got = session
        .fetch(&probe_request("http", json!({ "url": url })))
        .await
        .unwrap();
    assert_eq!(sluice_tests::data(&got.records)[0]["status"], 200);
}
