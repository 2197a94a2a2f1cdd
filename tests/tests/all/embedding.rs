//! The crate-docs embedding example, run as a test.

use sluice::{FetchRequest, Grants, Runtime};
use sluice_tests::{guest, root};

#[tokio::test]
async fn the_crate_docs_example_runs() -> Result<(), sluice::Error> {
    let runtime = Runtime::new()?;
    let connector = runtime.load_file(guest("sluice_file"))?;
    let grants = Grants::none().mount(&format!(
        "{}:/data:ro",
        root().join("examples/data").display()
    ))?;
    let mut session = connector.open(r#"{"root": "/data"}"#, &grants).await?;

    let mut names = Vec::new();
    let mut last_checkpoint = None;
    let mut stream = session
        .stream(&FetchRequest::new("people.ndjson"), None)
        .await?;
    while let Some(batch) = stream.next(100).await? {
        for record in &batch.records {
            names.push(
                record.to_json()?["data"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        last_checkpoint = batch.checkpoint;
    }
    stream.close().await?;
    session.close().await?;

    assert_eq!(names.len(), 6);
    assert_eq!(names[0], "Ada Lovelace");
    assert!(last_checkpoint.is_some());
    Ok(())
}
