//! MySQL pages and checkpoints: keyset order with NULLs (which MySQL sorts
//! first), tables without a key, and rows inserted while paging.

use std::time::Duration;

use super::{grants, open};
use sluice::capability::sql::SqlMode;
use sluice::{FetchRequest, Session, SortDirection};
use sluice_tests::data;
use sluice_tests::mysql::TestDatabase;

/// Every id of `req`, a page of `size` at a time, following the cursors.
async fn paged_ids(session: &mut Session, req: &FetchRequest, size: u32) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = session
            .fetch(&req.clone().page(size, None, cursor.clone()))
            .await
            .unwrap();
        ids.extend(
            data(&page.records)
                .iter()
                .map(|r| r["id"].as_i64().unwrap()),
        );
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

/// Every id of a stream of `req`, resumed from each checkpoint in turn.
async fn streamed_ids(session: &mut Session, req: &FetchRequest) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut checkpoint: Option<String> = None;
    loop {
        let mut stream = session.stream(req, checkpoint.as_deref()).await.unwrap();
        match stream.next(1).await.unwrap() {
            Some(batch) => {
                ids.extend(
                    data(&batch.records)
                        .iter()
                        .map(|r| r["id"].as_i64().unwrap()),
                );
                checkpoint = batch.checkpoint;
            }
            None => return ids,
        }
    }
}

#[tokio::test]
async fn keyset_pages_and_checkpoints_keep_rows_whose_sort_column_is_null() {
    let mut db = TestDatabase::new().await;
    db.run(
        "CREATE TABLE scores (id int PRIMARY KEY, score int);
         INSERT INTO scores VALUES (1, 1), (2, NULL), (3, 2), (4, NULL), (5, 1);",
    )
    .await;
    let grants = grants(&db, SqlMode::ReadOnly, Duration::from_secs(10));
    let mut session = open(&grants, 100).await;
    let ascending = FetchRequest::new("scores").sort("score", SortDirection::Asc);
    let descending = FetchRequest::new("scores").sort("score", SortDirection::Desc);
    // MySQL sorts NULLs first ascending, last descending; ties by id.
    assert_eq!(
        paged_ids(&mut session, &ascending, 1).await,
        [2, 4, 1, 5, 3]
    );
    assert_eq!(
        paged_ids(&mut session, &descending, 1).await,
        [3, 1, 5, 2, 4]
    );
    assert_eq!(
        paged_ids(&mut session, &ascending, 2).await,
        [2, 4, 1, 5, 3]
    );
    assert_eq!(
        streamed_ids(&mut session, &ascending).await,
        [2, 4, 1, 5, 3]
    );
    assert_eq!(
        streamed_ids(&mut session, &descending).await,
        [3, 1, 5, 2, 4]
    );
}

#[tokio::test]
async fn a_table_without_a_key_pages_by_offset_and_loses_no_tied_row() {
    let mut db = TestDatabase::new().await;
    db.run(
        "CREATE TABLE loose (id int, tag varchar(5));
         INSERT INTO loose VALUES (1, 'a'), (2, 'a'), (3, 'a');",
    )
    .await;
    let grants = grants(&db, SqlMode::ReadOnly, Duration::from_secs(10));
    let mut session = open(&grants, 100).await;
    let req = FetchRequest::new("loose").sort("tag", SortDirection::Asc);
    let first = session
        .fetch(&req.clone().page(2, None, None))
        .await
        .unwrap();
    assert_eq!(first.records.len(), 2);
    assert!(first.next_cursor.is_some(), "a third row remains");
    assert_eq!(paged_ids(&mut session, &req, 2).await, [1, 2, 3]);
}

#[tokio::test]
async fn keyset_paging_under_concurrent_inserts_returns_every_earlier_row_once() {
    let mut db = TestDatabase::new().await;
    db.run(
        "CREATE TABLE items (id int PRIMARY KEY, v int);
         INSERT INTO items SELECT seq * 10, seq FROM seq_1_to_300;",
    )
    .await;
    let grants = grants(&db, SqlMode::ReadOnly, Duration::from_secs(10));
    let mut session = open(&grants, 100).await;
    let req = FetchRequest::new("items").sort("id", SortDirection::Asc);
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut inserted = 0;
    loop {
        let page = session
            .fetch(&req.clone().page(25, None, cursor.clone()))
            .await
            .unwrap();
        seen.extend(
            data(&page.records)
                .iter()
                .map(|r| r["id"].as_i64().unwrap()),
        );
        // Between pages, rows land before, inside and after the position.
        inserted += 1;
        db.run(&format!(
            "INSERT INTO items VALUES ({}, 0), ({}, 0), ({}, 0)",
            inserted * 2 - 1,
            inserted * 10 * 25 + 5,
            100_000 + inserted * 10 + 3
        ))
        .await;
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let earlier: Vec<i64> = seen.iter().copied().filter(|id| id % 10 == 0).collect();
    assert_eq!(earlier, (1..=300).map(|i| i * 10).collect::<Vec<_>>());
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no row came twice");
}
