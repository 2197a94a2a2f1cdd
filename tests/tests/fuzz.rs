//! Fuzz targets for what a tenant hands the server: uploaded components,
//! grants against a ceiling, and configs against a connector's schema.
//!
//! Each target generates inputs with proptest strategies (biased towards the
//! shapes the code expects, so they get past the first check) for a time
//! budget: `SLUICE_FUZZ_SECONDS` per target (default 3, the smoke run of
//! `make test`; `make fuzz` runs each for 10 minutes). A target fails on a
//! panic or a broken invariant and prints the input that did it; each run
//! prints how many cases it tried. `make fuzz` runs them in release: the
//! debug profile keeps cranelift's own consistency checks on, which makes
//! every compile of a mutated component many times slower.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};
use sluice::capability::files::Mount;
use sluice::capability::http::HostPattern;
use sluice::capability::Ceiling;
use sluice::{Grants, GrantsConfig, Runtime};
use sluice_server::schema::validate;

fn budget() -> Duration {
    let seconds = std::env::var("SLUICE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    Duration::from_secs(seconds)
}

/// Run `check` on values of `strategy` until the budget is spent.
fn fuzz<T: std::fmt::Debug>(name: &str, strategy: impl Strategy<Value = T>, check: impl Fn(&T)) {
    let mut runner = TestRunner::new(Config::default());
    let deadline = Instant::now() + budget();
    let mut cases = 0u64;
    while Instant::now() < deadline {
        let value = strategy
            .new_tree(&mut runner)
            .expect("the strategy generates")
            .current();
        if catch_unwind(AssertUnwindSafe(|| check(&value))).is_err() {
            panic!("fuzz target `{name}` failed on input: {value:#?}");
        }
        cases += 1;
    }
    eprintln!(
        "fuzz target `{name}`: {cases} cases in {} s, no failure",
        budget().as_secs()
    );
}

/// Words the grant, ceiling and schema code looks for, so generated objects
/// reach past the first check.
const KEYS: &[&str] = &[
    "files",
    "host",
    "guest",
    "mode",
    "sockets",
    "tcp",
    "udp",
    "dns",
    "http",
    "origins",
    "auth",
    "origin",
    "kind",
    "header",
    "query",
    "secret",
    "token_url",
    "client_id",
    "client_secret",
    "allow_private_addresses",
    "rate_limit",
    "rps",
    "burst",
    "retry",
    "breaker",
    "sql",
    "name",
    "url",
    "max_connections",
    "statement_timeout_ms",
    "sql_hosts",
    "databases",
    "roles",
    "port",
    "type",
    "properties",
    "required",
    "items",
    "enum",
    "const",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "$ref",
    "additionalProperties",
    "exclusiveMinimum",
    "$defs",
];

const WORDS: &[&str] = &[
    "",
    ".",
    "..",
    "/",
    "data",
    "data/sub",
    "../other",
    "a/../../b",
    "/etc",
    "/data",
    "ro",
    "rw",
    "read-only",
    "read-write",
    "http://127.0.0.1:1",
    "https://api.example.com",
    "https://*.example.com",
    "http://[::1]:80",
    "http://169.254.169.254",
    "https://*.",
    "*",
    "postgres://u@127.0.0.1/db",
    "postgres://u:p@h:notaport/db",
    "host=/tmp user=x",
    "10.0.0.0/8:443",
    "127.0.0.1:5432",
    "localhost:*",
    "bearer",
    "basic",
    "api-key",
    "jwt-hs256",
    "oauth2-client-credentials",
    "Host",
    "X-Api-Key",
    "Transfer-Encoding",
    "object",
    "string",
    "integer",
    "number",
    "array",
    "boolean",
    "null",
    "#",
    "#/properties",
    "#/$defs/a",
    "#/$defs/loop",
    "%00",
    "\u{0}",
    "é",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(WORDS).prop_map(str::to_string),
        1 => ".{0,24}",
    ]
}

/// JSON values shaped like grants, ceilings, schemas and configs.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|n| json!(n)),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    proptest::sample::select(KEYS).prop_map(str::to_string),
                    inner
                ),
                0..6
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

#[test]
fn fuzz_grant_and_ceiling_parsing() {
    fuzz(
        "grants",
        (json_value(), json_value()),
        |(grants, ceiling)| {
            let _ = Grants::from_json(&grants.to_string());
            if let Some(text) = grants.as_str() {
                let _ = HostPattern::parse(text);
                let _ = Mount::parse(text);
            }
            let Ok(ceiling) = serde_json::from_value::<Ceiling>(ceiling.clone()) else {
                return;
            };
            let Ok(declared) = serde_json::from_value::<GrantsConfig>(grants.clone()) else {
                return;
            };
            if declared.within(&ceiling).is_err() {
                return;
            }
            // What passed the ceiling is inside it.
            for origin in &declared.http.origins {
                assert!(
                    ceiling.http.iter().any(|allowed| origin.within(allowed)),
                    "{origin} passed outside the ceiling"
                );
            }
            assert!(
                !declared.http.allow_private_addresses || ceiling.http_private_addresses,
                "private addresses without the ceiling"
            );
            for mount in &declared.files {
                assert!(ceiling.files, "a mount without the files ceiling");
                assert!(
                    sluice::capability::files::is_plain_relative(&mount.host),
                    "mount `{}` is not a plain relative path",
                    mount.host.display()
                );
            }
            // The typed form survives a round trip through JSON unchanged.
            let again: GrantsConfig =
                serde_json::from_value(serde_json::to_value(&declared).unwrap()).unwrap();
            assert_eq!(again, declared);
        },
    );
}

#[test]
fn fuzz_config_schema_checker() {
    fuzz(
        "schema",
        (json_value(), json_value()),
        |(schema, config)| {
            let _ = validate(schema, config);
            // A schema accepting everything accepts this config.
            assert!(validate(&json!({}), config).is_empty());
            assert!(validate(&json!(true), config).is_empty());
            // A value always conforms to a `const` of itself.
            assert!(validate(&json!({ "const": config }), config).is_empty());
        },
    );
}

/// Seeds for mutation: real components (the small hand-made connector
/// several times, so most cases compile fast), a core module, and nonsense.
fn seeds() -> Vec<Vec<u8>> {
    let dummy = sluice_tests::components::component(&sluice_tests::components::dummy_wat());
    let mut seeds = vec![
        dummy.clone(),
        dummy.clone(),
        dummy,
        wat::parse_str("(module (memory 1))").unwrap(),
        wat::parse_str("(component (core module $m (memory 1)) (core instance (instantiate $m)))")
            .unwrap(),
        b"\0asm\x0d\0\x01\0".to_vec(),
        Vec::new(),
    ];
    seeds.push(b"\x7fELF\x02\x01\x01\0".to_vec());
    // A real connector compiles in about a second in release, and for
    // minutes with the debug profile's checks: only in release runs.
    if !cfg!(debug_assertions) {
        seeds.push(std::fs::read(sluice_tests::guest("sluice_probe")).expect("probe"));
    }
    seeds
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Duplicate(usize, usize),
}

fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let len = bytes.len().max(1);
    match mutation {
        Mutation::Flip(at, bits) => {
            if let Some(byte) = bytes.get_mut(at % len) {
                *byte ^= bits;
            }
        }
        Mutation::Truncate(at) => bytes.truncate(at % len),
        Mutation::Insert(at, new) => {
            let at = (at % len).min(bytes.len());
            bytes.splice(at..at, new.iter().copied());
        }
        Mutation::Duplicate(from, count) => {
            let from = (from % len).min(bytes.len());
            let end = (from + count % 256).min(bytes.len());
            let copy = bytes[from..end].to_vec();
            bytes.splice(end..end, copy);
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => (any::<usize>(), 1..=255u8).prop_map(|(at, bits)| Mutation::Flip(at, bits)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(from, n)| Mutation::Duplicate(from, n)),
    ]
}

#[test]
fn fuzz_upload_validation() {
    let runtime = Runtime::new().expect("runtime");
    let seeds = seeds();
    let count = seeds.len();
    fuzz(
        "upload",
        (0..count, proptest::collection::vec(mutation(), 0..6)),
        |(seed, mutations)| {
            let mut bytes = seeds[*seed].clone();
            for m in mutations {
                mutate(&mut bytes, m);
            }
            // Anything a tenant uploads gets a typed answer; nothing panics.
            if let Ok(connector) = runtime.load(&bytes) {
                assert_eq!(connector.size(), bytes.len());
            }
        },
    );
}
