//! The PostgreSQL store under the same isolation tests as the data
//! directory: tenants apart, quotas atomic across racing requests (and
//! across nodes: the quota lock is an advisory lock in the database), mounts
//! contained.

use sluice_tests::postgres::TestSchema;
use sluice_tests::tempdir;

use super::files::assert_mount_swap_contained;
use super::server::assert_quotas_hold_under_concurrency;
use super::start_with;
use crate::server::assert_tenants_isolated;
use sluice_tests::client::api;

#[tokio::test]
async fn the_postgres_store_keeps_tenants_apart_quotas_atomic_and_mounts_contained() {
    let schema = TestSchema::new().await;
    let dir = tempdir();
    let store = schema.store_url();
    let (addr, _server) = start_with(dir.path(), |config| {
        config.store_url = Some(store);
        config.warm_sessions = 0;
    })
    .await;
    assert_tenants_isolated(addr).await;
    assert_quotas_hold_under_concurrency(addr).await;
    assert_mount_swap_contained(addr, dir.path()).await;
}

#[tokio::test]
async fn two_nodes_on_one_postgres_store_share_one_quota() {
    let schema = TestSchema::new().await;
    let store = schema.store_url();
    let (dir_a, dir_b) = (tempdir(), tempdir());
    let (a, _node_a) = start_with(dir_a.path(), |c| c.store_url = Some(store.clone())).await;
    let (b, _node_b) = start_with(dir_b.path(), |c| c.store_url = Some(store.clone())).await;
    let quotas = serde_json::json!({ "max_instances": 1 });
    let (_, token) =
        crate::server::tenant(a, serde_json::json!({ "name": "t", "quotas": quotas })).await;
    let connector = crate::server::upload(a, &token, "sluice_probe").await;
    let creations: Vec<_> = (0..10)
        .map(|i| {
            let node = if i % 2 == 0 { a } else { b };
            let token = token.clone();
            let spec = serde_json::json!({ "connector": connector });
            tokio::spawn(async move {
                api(node, Some(&token))
                    .post_json("/v1/instances", &spec)
                    .await
                    .status
            })
        })
        .collect();
    let mut made = 0;
    for creation in creations {
        if creation.await.unwrap() == 201 {
            made += 1;
        }
    }
    assert_eq!(made, 1, "one instance across both nodes");
}
