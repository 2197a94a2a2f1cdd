//! What the review could not reach: a hand-written component that breaks the
//! canonical ABI. Each break traps that session; the host carries on.

use sluice::{Error, Grants};
use sluice_tests::components::{api_export, component, dummy_wat, with_body, with_memory};
use sluice_tests::{probe, probe_request, runtime};

/// A `describe` that returns the descriptor whose name is `name` (the
/// other strings empty), with `at_64` placed at address 64.
fn describe_returning(name: (u32, u32), at_64: &str) -> Vec<u8> {
    let (ptr, len) = name;
    let descriptor = format!("\"{}{}\"", string_at(ptr, len), "\\00".repeat(56));
    let data = format!("(data (i32.const 0) {descriptor}) (data (i32.const 64) \"{at_64}\")");
    let wat = with_memory(&dummy_wat(), 1, &data);
    component(&with_body(&wat, &api_export("describe"), "i32.const 0"))
}

/// A little-endian `(ptr, len)` pair as WAT data text.
fn string_at(ptr: u32, len: u32) -> String {
    let bytes: Vec<String> = ptr
        .to_le_bytes()
        .iter()
        .chain(len.to_le_bytes().iter())
        .map(|b| format!("\\{b:02x}"))
        .collect();
    bytes.concat()
}

async fn host_still_serves() {
    let mut session = probe().open("{}", &Grants::none()).await.unwrap();
    session
        .fetch(&probe_request("env", serde_json::json!({})))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_well_formed_hand_written_describe_is_read() {
    // Control for the tests below: name "ok" at 64, the other strings empty.
    let connector = runtime().load(&describe_returning((64, 2), "ok")).unwrap();
    let descriptor = connector.describe().await.unwrap();
    assert_eq!(descriptor.name, "ok");
}

#[tokio::test]
async fn a_string_returned_as_invalid_utf8_traps() {
    let connector = runtime()
        .load(&describe_returning((64, 2), "\\ff\\fe"))
        .unwrap();
    let err = connector.describe().await.unwrap_err();
    assert!(matches!(err, Error::Trap(_)), "{err:?}");
    host_still_serves().await;
}

#[tokio::test]
async fn a_string_pointer_out_of_bounds_traps() {
    let connector = runtime()
        .load(&describe_returning((0xffff_0000, 64), ""))
        .unwrap();
    let err = connector.describe().await.unwrap_err();
    assert!(matches!(err, Error::Trap(_)), "{err:?}");
    // A length that runs past the end of memory, from a pointer inside it.
    let connector = runtime()
        .load(&describe_returning((64, 0x7fff_ffff), ""))
        .unwrap();
    let err = connector.describe().await.unwrap_err();
    assert!(matches!(err, Error::Trap(_)), "{err:?}");
    host_still_serves().await;
}

#[tokio::test]
async fn a_lying_realloc_traps_when_the_host_passes_a_string() {
    let wat = with_memory(&dummy_wat(), 1, "");
    // Hands the host an address past the end of memory for the config string.
    let wat = with_body(&wat, "cabi_realloc", "i32.const -16");
    let connector = runtime().load(&component(&wat)).unwrap();
    let err = connector
        .open("{\"x\": 1}", &Grants::none())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Trap(_)), "{err:?}");
    host_still_serves().await;
}
