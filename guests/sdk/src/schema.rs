//! Config schemas derived from config types (feature `schema`, for tests).
//!
//! A connector keeps its config schema as `config.schema.json`, included in
//! the component with [`DescriptorBuilder::config_schema_text`]
//! (crate::DescriptorBuilder::config_schema_text), and one test asserts that
//! the file is exactly the schema `schemars` derives from the config type.
//! So the schema the server checks configs against and the type `open`
//! parses cannot disagree, and the component carries no schema generator.
//! serde's `deny_unknown_fields`, `default` and `rename` carry over; limits
//! go in `#[schemars(...)]` attributes (`range(min = 1)`, `length(max = 1)`).
//!
//! ```ignore
//! #[cfg_attr(test, derive(schemars::JsonSchema))]
//! struct Config { /* ... */ }
//!
//! #[cfg(test)]
//! sluice_sdk::config_schema_test!(Config);
//! ```

/// The environment variable that makes [`assert_config_schema`] write the
/// derived schema instead of comparing.
pub const UPDATE_VARIABLE: &str = "SLUICE_UPDATE_SCHEMAS";

/// The JSON Schema (draft 2020-12) derived from `T`, as pretty JSON text.
pub fn derived<T: schemars::JsonSchema>() -> String {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

/// Assert that the file at `path` holds the schema derived from `T`; with
/// `SLUICE_UPDATE_SCHEMAS=1`, write it there instead.
///
/// # Panics
///
/// When the file differs from the derived schema (or cannot be read or
/// written), saying how to regenerate it.
pub fn assert_config_schema<T: schemars::JsonSchema>(path: &str) {
    let derived = derived::<T>();
    if std::env::var_os(UPDATE_VARIABLE).is_some() {
        std::fs::write(path, &derived).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        return;
    }
    let kept = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        kept == derived,
        "{path} is not the schema derived from the config type; regenerate it with \
         `{UPDATE_VARIABLE}=1 make guest-tests`, and review the difference"
    );
}

/// The test that keeps a connector's `config.schema.json` (beside its
/// `Cargo.toml`) equal to the schema derived from its config type `$config`:
/// `#[cfg(test)] sluice_sdk::config_schema_test!(Config);`
#[macro_export]
macro_rules! config_schema_test {
    ($config:ident) => {
        mod config_schema {
            #[test]
            fn the_config_schema_is_the_one_derived_from_config() {
                $crate::schema::assert_config_schema::<super::$config>(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/config.schema.json"
                ));
            }
        }
    };
}
