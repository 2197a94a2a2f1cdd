//! Checking an instance's config against its connector's config schema, with
//! the `jsonschema` crate: every keyword of the schema's draft (2020-12 when
//! it names none), `format`s asserted, `pattern`s compiled by the
//! linear-time `regex` engine under a size limit (an uploaded schema cannot
//! make a check backtrack forever), and no `$ref` fetched from anywhere: only
//! references inside the schema resolve. A schema is compiled once per
//! connector ([`ConfigSchema`]) and its size is capped. A connector that
//! declares no schema (an empty one) takes any config.

use serde_json::Value;

/// The largest config schema accepted, in bytes of JSON.
pub const MAX_SCHEMA_BYTES: usize = 256 << 10;

/// The largest compiled `pattern`, in bytes.
const MAX_PATTERN_BYTES: usize = 1 << 20;

/// Problems reported at most for one config.
const MAX_PROBLEMS: usize = 50;

/// A connector's config schema, compiled.
pub struct ConfigSchema(jsonschema::Validator);

impl std::fmt::Debug for ConfigSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigSchema")
    }
}

impl ConfigSchema {
    /// Compile `schema`.
    ///
    /// # Errors
    ///
    /// A sentence saying why the schema cannot be used: too large, not a
    /// schema, an unknown draft, a `$ref` outside it, a bad `pattern`.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        // A connector that declares no schema (an empty or absent one) takes any config.
        let schema = if schema.is_null() {
            &Value::Bool(true)
        } else {
            schema
        };
        let size = serde_json::to_vec(schema).map_or(usize::MAX, |bytes| bytes.len());
        if size > MAX_SCHEMA_BYTES {
            return Err(format!(
                "the config schema is {size} bytes; at most {MAX_SCHEMA_BYTES} are accepted"
            ));
        }
        jsonschema::options()
            .offline()
            .should_validate_formats(true)
            .with_pattern_options(jsonschema::PatternOptions::regex().size_limit(MAX_PATTERN_BYTES))
            .build(schema)
            .map(ConfigSchema)
            .map_err(|e| e.to_string())
    }

    /// Every way `value` breaks the schema (at most 50), each naming the JSON
    /// pointer of the offending field (`/csv/delimiter: ...`; `/` is the
    /// whole config); empty when it conforms.
    pub fn check(&self, value: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        for error in self.0.iter_errors(value) {
            let path = match error.instance_path().as_str() {
                "" => "/".to_string(),
                path => path.to_string(),
            };
            match error.kind() {
                // Each unexpected field is its own problem, at its own pointer.
                jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                    let base = path.trim_end_matches('/');
                    problems.extend(
                        unexpected.iter().map(|field| {
                            format!("{base}/{}: unknown field", escape_pointer(field))
                        }),
                    );
                }
                _ => problems.push(format!("{path}: {error}")),
            }
            if problems.len() >= MAX_PROBLEMS {
                problems.truncate(MAX_PROBLEMS);
                problems.push("...: more problems left out".into());
                break;
            }
        }
        problems
    }
}

/// `field` as a JSON pointer segment (RFC 6901).
fn escape_pointer(field: &str) -> String {
    field.replace('~', "~0").replace('/', "~1")
}

/// Every way `value` breaks `schema`, compiling the schema for this one check
/// (see [`ConfigSchema::check`]); a schema that cannot be compiled is the one
/// problem reported.
pub fn validate(schema: &Value, value: &Value) -> Vec<String> {
    match ConfigSchema::compile(schema) {
        Ok(schema) => schema.check(value),
        Err(why) => vec![format!(
            "/: the connector's config schema cannot be used: {why}"
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file_schema() -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["root"],
            "properties": {
                "root": { "type": "string" },
                "format": { "enum": ["csv", "json", "ndjson"] },
                "page_size": { "type": "integer", "minimum": 1 },
                "csv": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "delimiter": { "type": "string", "minLength": 1, "maxLength": 1 }
                    }
                },
                "keys": { "type": "object", "additionalProperties": { "type": "array", "items": { "type": "string" } } }
            }
        })
    }

    /// The pointers of the problems, in order.
    fn pointers(problems: &[String]) -> Vec<&str> {
        problems
            .iter()
            .map(|p| p.split_once(": ").map_or(p.as_str(), |(at, _)| at))
            .collect()
    }

    #[test]
    fn a_conforming_config_passes() {
        let config = json!({"root": "/data", "format": "csv", "page_size": 10,
            "csv": {"delimiter": ";"}, "keys": {"people": ["id"]}});
        assert_eq!(validate(&file_schema(), &config), Vec::<String>::new());
    }

    #[test]
    fn each_problem_names_its_field() {
        let config = json!({"format": "xml", "page_size": 0, "csv": {"delimiter": ";;", "quote": "'"},
            "keys": {"people": ["id", 7]}, "extra": true});
        let mut problems = validate(&file_schema(), &config);
        problems.sort();
        assert_eq!(
            pointers(&problems),
            [
                "/",
                "/csv/delimiter",
                "/csv/quote",
                "/extra",
                "/format",
                "/keys/people/1",
                "/page_size"
            ],
            "{problems:?}"
        );
        assert!(problems.contains(&"/extra: unknown field".to_string()));
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("/: ") && p.contains("\"root\"")),
            "{problems:?}"
        );
    }

    #[test]
    fn the_keywords_a_hand_written_subset_skipped_are_checked() {
        let cases = [
            (json!({"pattern": "^[a-z]+$"}), json!("ABC"), json!("abc")),
            (
                json!({"format": "email"}),
                json!("not an address"),
                json!("a@b.example"),
            ),
            (
                json!({"format": "uri"}),
                json!("no scheme"),
                json!("https://a.example/x"),
            ),
            (
                json!({"if": {"properties": {"kind": {"const": "s3"}}}, "then": {"required": ["bucket"]}}),
                json!({"kind": "s3"}),
                json!({"kind": "s3", "bucket": "b"}),
            ),
            (
                json!({"prefixItems": [{"type": "string"}, {"type": "integer"}]}),
                json!(["a", "b"]),
                json!(["a", 1]),
            ),
            (json!({"uniqueItems": true}), json!([1, 1]), json!([1, 2])),
            (json!({"multipleOf": 5}), json!(12), json!(15)),
            (
                json!({"type": "object", "patternProperties": {"^x_": {"type": "string"}}, "additionalProperties": false}),
                json!({"x_a": "ok", "other": 1}),
                json!({"x_a": "ok", "x_b": "ok"}),
            ),
        ];
        for (schema, bad, good) in cases {
            assert!(
                validate(&schema, &good).is_empty(),
                "{schema} should accept {good}"
            );
            let problems = validate(&schema, &bad);
            assert!(!problems.is_empty(), "{schema} should refuse {bad}");
        }
        // patternProperties with additionalProperties: false names the stray field only.
        let schema = json!({"type": "object", "patternProperties": {"^x_": {}}, "additionalProperties": false});
        assert_eq!(
            validate(&schema, &json!({"x_a": 1, "other": 1})),
            ["/other: unknown field"]
        );
    }

    #[test]
    fn hostile_schemas_are_refused_or_bounded() {
        // Nothing is fetched: a remote `$ref` makes the schema unusable.
        let remote = validate(
            &json!({"$ref": "https://example.com/schema.json"}),
            &json!(1),
        );
        assert_eq!(remote.len(), 1);
        assert!(
            remote[0].starts_with("/: the connector's config schema cannot be used"),
            "{remote:?}"
        );
        // A pattern that would backtrack forever in a backtracking engine is linear here.
        let evil = json!({"pattern": "^(a+)+$"});
        let subject = format!("{}!", "a".repeat(10_000));
        assert_eq!(validate(&evil, &json!(subject)).len(), 1);
        // Too large a schema is refused whole.
        let huge = json!({"enum": vec!["x".repeat(1000); 300]});
        assert!(ConfigSchema::compile(&huge)
            .unwrap_err()
            .contains("at most"));
        // `true`, `{}` and no schema at all accept anything; `false` nothing.
        assert!(validate(&json!(true), &json!({"a": 1})).is_empty());
        assert!(validate(&Value::Null, &json!({"a": 1})).is_empty());
        assert!(validate(&json!({}), &json!([1])).is_empty());
        assert_eq!(pointers(&validate(&json!(false), &json!(1))), ["/"]);
        // Problems are capped.
        let many: serde_json::Map<String, Value> =
            (0..200).map(|i| (format!("f{i}"), json!(i))).collect();
        let closed = json!({"properties": {"a": {}}, "additionalProperties": false});
        let problems = validate(&closed, &Value::Object(many.clone()));
        assert_eq!(problems.len(), MAX_PROBLEMS + 1);
        assert_eq!(problems[0], "/f0: unknown field");
        let strings = json!({"additionalProperties": {"type": "string"}});
        assert_eq!(
            validate(&strings, &Value::Object(many)).len(),
            MAX_PROBLEMS + 1
        );
    }
}
