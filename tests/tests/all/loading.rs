//! Loading: each kind of bad `.wasm` gets its own typed error.

use sluice::{Error, CONNECTOR_EXPORT};
use sluice_tests::{file_connector, runtime, tempdir};

#[test]
fn a_non_wasm_file_is_rejected() {
    let err = runtime().load(b"#!/bin/sh\necho not wasm\n").unwrap_err();
    assert!(matches!(err, Error::NotWasm(_)), "{err:?}");
    assert!(runtime()
        .load(b"")
        .unwrap_err()
        .to_string()
        .contains("empty"));
}

#[test]
fn a_core_module_is_rejected() {
    let module = wat::parse_str("(module (func (export \"run\")))").unwrap();
    let err = runtime().load(&module).unwrap_err();
    assert!(matches!(err, Error::CoreModule), "{err:?}");
    assert!(err.to_string().contains("wasm32-wasip2"));
}

#[test]
fn a_component_without_the_connector_export_is_rejected() {
    let component = wat::parse_str("(component)").unwrap();
    let err = runtime().load(&component).unwrap_err();
    match err {
        Error::WrongWorld { expected, exports } => {
            assert_eq!(expected, CONNECTOR_EXPORT);
            assert!(exports.is_empty());
        }
        other => panic!("expected WrongWorld, got {other:?}"),
    }
}

#[test]
fn a_component_importing_what_the_host_lacks_is_rejected_naming_it() {
    let component = wat::parse_str(format!(
        r#"(component
            (import "wasi:keyvalue/store@0.2.0" (instance))
            (instance $api)
            (export "{CONNECTOR_EXPORT}" (instance $api)))"#
    ))
    .unwrap();
    let err = runtime().load(&component).unwrap_err();
    match err {
        Error::UnsupportedImport(what) => {
            assert!(what.contains("wasi:keyvalue/store@0.2.0"), "{what}")
        }
        other => panic!("expected UnsupportedImport, got {other:?}"),
    }
}

#[test]
fn a_truncated_component_is_rejected() {
    let bytes = std::fs::read(sluice_tests::guest("sluice_file")).unwrap();
    let err = runtime().load(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(err, Error::InvalidComponent(_)), "{err:?}");
}

#[test]
fn a_missing_file_is_an_io_error_naming_the_path() {
    let dir = tempdir();
    let path = dir.path().join("absent.wasm");
    let err = runtime().load_file(&path).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("absent.wasm"));
}

#[test]
fn a_connector_lists_its_imports_and_digest() {
    let connector = file_connector();
    assert!(connector
        .imports()
        .iter()
        .any(|i| i.starts_with("wasi:filesystem/preopens@")));
    assert!(connector.imports().iter().all(|i| sluice::host_provides(i)));
    assert_eq!(connector.exports(), [CONNECTOR_EXPORT]);
    assert_eq!(connector.sha256().len(), 64);
    assert_eq!(connector.name(), "sluice_file");
}

#[tokio::test]
async fn describe_reports_the_descriptor() {
    let descriptor = file_connector().describe().await.unwrap();
    assert_eq!(descriptor.name, "file");
    assert!(descriptor.capabilities.streaming);
    let schema: serde_json::Value = serde_json::from_str(&descriptor.config_schema).unwrap();
    assert_eq!(schema["properties"]["root"]["type"], "string");
}
