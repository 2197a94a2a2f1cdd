//! Checking an instance's config against its connector's config schema.
//!
//! A JSON Schema subset, the keywords connector configs use: `type`, `enum`,
//! `const`, `properties`, `required`, `additionalProperties`, `items`,
//! `minItems`/`maxItems`, `minLength`/`maxLength`, `minimum`/`maximum`,
//! `exclusiveMinimum`/`exclusiveMaximum`, `allOf`/`anyOf`/`oneOf`/`not`, and
//! local `$ref`s (`#/...`). Other keywords (`pattern`, `format`, ...) are not
//! checked here; the connector's own `open` still checks the config. The
//! schema comes from an uploaded connector, so the walk is bounded in steps:
//! a schema too large or self-referential to check is reported, not followed.

use serde_json::Value;

/// Schema nodes visited at most for one config.
const MAX_STEPS: usize = 100_000;

/// Nesting followed at most (schemas, `$ref`s and values together).
const MAX_DEPTH: usize = 64;

struct Checker<'s> {
    root: &'s Value,
    steps: usize,
    depth: usize,
    gave_up: bool,
    problems: Vec<String>,
}

/// Every way `value` breaks `schema`, each naming the JSON pointer of the
/// offending field (`/csv/delimiter: ...`); empty when it conforms. A schema
/// that is not an object (or `true`) accepts everything.
pub fn validate(schema: &Value, value: &Value) -> Vec<String> {
    let mut checker = Checker {
        root: schema,
        steps: 0,
        depth: 0,
        gave_up: false,
        problems: Vec::new(),
    };
    checker.check(schema, value, "");
    checker.problems
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(value: &Value, wanted: &str) -> bool {
    let actual = type_name(value);
    actual == wanted
        || (wanted == "number" && actual == "integer")
        || (wanted == "integer" && value.as_f64().is_some_and(|f| f.fract() == 0.0))
}

fn at(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

impl Checker<'_> {
    fn problem(&mut self, path: &str, message: String) {
        self.problems.push(format!("{}: {message}", at(path)));
    }

    /// Whether `value` conforms, without recording problems (for `anyOf`, `oneOf`, `not`).
    fn conforms(&mut self, schema: &Value, value: &Value, path: &str) -> bool {
        let saved = std::mem::take(&mut self.problems);
        self.check(schema, value, path);
        let ok = self.problems.is_empty();
        let gave_up = self.gave_up;
        let inner = std::mem::replace(&mut self.problems, saved);
        if gave_up && !ok {
            // Giving up is reported once, even from inside anyOf/oneOf/not.
            self.problems.extend(
                inner
                    .into_iter()
                    .filter(|p| p.ends_with("too complex to check")),
            );
        }
        ok
    }

    fn check(&mut self, schema: &Value, value: &Value, path: &str) {
        self.steps += 1;
        if self.steps > MAX_STEPS || self.depth >= MAX_DEPTH {
            if !self.gave_up {
                self.gave_up = true;
                self.problem(
                    path,
                    "the connector's config schema is too complex to check".into(),
                );
            }
            return;
        }
        self.depth += 1;
        self.check_node(schema, value, path);
        self.depth -= 1;
    }

    fn check_node(&mut self, schema: &Value, value: &Value, path: &str) {
        let Some(schema) = schema.as_object() else {
            if schema == &Value::Bool(false) {
                self.problem(path, "no value is allowed here".into());
            }
            return;
        };
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            match reference
                .strip_prefix('#')
                .and_then(|pointer| self.root.pointer(pointer))
            {
                Some(target) => self.check(target, value, path),
                None => self.problem(
                    path,
                    format!("the schema's `$ref` `{reference}` cannot be resolved"),
                ),
            }
        }
        if let Some(types) = schema.get("type") {
            let allowed: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !allowed.is_empty() && !allowed.iter().any(|t| has_type(value, t)) {
                self.problem(
                    path,
                    format!(
                        "expected {}, found {}",
                        allowed.join(" or "),
                        type_name(value)
                    ),
                );
                return;
            }
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array) {
            if !options.contains(value) {
                let listed: Vec<String> = options.iter().map(Value::to_string).collect();
                self.problem(path, format!("must be one of {}", listed.join(", ")));
            }
        }
        if let Some(constant) = schema.get("const") {
            if constant != value {
                self.problem(path, format!("must be {constant}"));
            }
        }
        self.check_combinators(schema, value, path);
        match value {
            Value::Object(object) => self.check_object(schema, object, path),
            Value::Array(items) => self.check_array(schema, items, path),
            Value::String(text) => self.check_string(schema, text, path),
            Value::Number(_) => self.check_number(schema, value, path),
            _ => {}
        }
    }

    fn check_combinators(
        &mut self,
        schema: &serde_json::Map<String, Value>,
        value: &Value,
        path: &str,
    ) {
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(sub, value, path);
            }
        }
        if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
            if !any.iter().any(|sub| self.conforms(sub, value, path)) {
                self.problem(path, "matches none of the allowed shapes (anyOf)".into());
            }
        }
        if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
            let matched = one
                .iter()
                .filter(|sub| self.conforms(sub, value, path))
                .count();
            if matched != 1 {
                self.problem(
                    path,
                    format!("must match exactly one allowed shape (oneOf), matches {matched}"),
                );
            }
        }
        if let Some(not) = schema.get("not") {
            if self.conforms(not, value, path) {
                self.problem(path, "matches a shape that is not allowed (not)".into());
            }
        }
    }

    fn check_object(
        &mut self,
        schema: &serde_json::Map<String, Value>,
        object: &serde_json::Map<String, Value>,
        path: &str,
    ) {
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    self.problem(path, format!("missing required field `{name}`"));
                }
            }
        }
        for (name, field) in object {
            let field_path = format!("{path}/{}", name.replace('~', "~0").replace('/', "~1"));
            match properties.and_then(|p| p.get(name)) {
                Some(sub) => self.check(sub, field, &field_path),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        self.problem(&field_path, "unknown field".into());
                    }
                    Some(sub @ Value::Object(_)) => self.check(sub, field, &field_path),
                    _ => {}
                },
            }
        }
    }

    fn check_array(
        &mut self,
        schema: &serde_json::Map<String, Value>,
        items: &[Value],
        path: &str,
    ) {
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
            if (items.len() as u64) < min {
                self.problem(path, format!("expected at least {min} items"));
            }
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
            if items.len() as u64 > max {
                self.problem(path, format!("expected at most {max} items"));
            }
        }
        if let Some(item_schema) = schema
            .get("items")
            .filter(|s| s.is_object() || s.is_boolean())
        {
            for (index, item) in items.iter().enumerate() {
                self.check(item_schema, item, &format!("{path}/{index}"));
            }
        }
    }

    fn check_string(&mut self, schema: &serde_json::Map<String, Value>, text: &str, path: &str) {
        let length = text.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if length < min {
                self.problem(path, format!("expected at least {min} characters"));
            }
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if length > max {
                self.problem(path, format!("expected at most {max} characters"));
            }
        }
    }

    fn check_number(&mut self, schema: &serde_json::Map<String, Value>, value: &Value, path: &str) {
        let Some(number) = value.as_f64() else {
            return;
        };
        let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
        if let Some(min) = bound("minimum").filter(|min| number < *min) {
            self.problem(path, format!("must be at least {min}"));
        }
        if let Some(max) = bound("maximum").filter(|max| number > *max) {
            self.problem(path, format!("must be at most {max}"));
        }
        if let Some(min) = bound("exclusiveMinimum").filter(|min| number <= *min) {
            self.problem(path, format!("must be greater than {min}"));
        }
        if let Some(max) = bound("exclusiveMaximum").filter(|max| number >= *max) {
            self.problem(path, format!("must be less than {max}"));
        }
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
        let problems = validate(&file_schema(), &config);
        assert_eq!(
            problems,
            [
                "/: missing required field `root`",
                "/format: must be one of \"csv\", \"json\", \"ndjson\"",
                "/page_size: must be at least 1",
                "/csv/delimiter: expected at most 1 characters",
                "/csv/quote: unknown field",
                "/keys/people/1: expected string, found integer",
                "/extra: unknown field",
            ]
        );
    }

    #[test]
    fn wrong_types_are_named() {
        assert_eq!(
            validate(&file_schema(), &json!([])),
            ["/: expected object, found array"]
        );
        assert_eq!(
            validate(&json!({"type": ["string", "null"]}), &json!(1.5)),
            ["/: expected string or null, found number"]
        );
        assert!(validate(&json!({"type": "number"}), &json!(3)).is_empty());
        assert!(validate(&json!({"type": "integer"}), &json!(3.0)).is_empty());
    }

    #[test]
    fn combinators_and_refs() {
        let schema = json!({
            "$defs": { "port": { "type": "integer", "minimum": 1, "maximum": 65535 } },
            "oneOf": [{ "$ref": "#/$defs/port" }, { "type": "string" }]
        });
        assert!(validate(&schema, &json!(5432)).is_empty());
        assert!(validate(&schema, &json!("pg")).is_empty());
        assert_eq!(
            validate(&schema, &json!(70000)),
            ["/: must match exactly one allowed shape (oneOf), matches 0"]
        );
        assert_eq!(
            validate(&json!({"not": {"const": 0}}), &json!(0)),
            ["/: matches a shape that is not allowed (not)"]
        );
        assert_eq!(
            validate(&json!({"$ref": "#/missing"}), &json!(0)),
            ["/: the schema's `$ref` `#/missing` cannot be resolved"]
        );
    }

    #[test]
    fn hostile_schemas_are_bounded() {
        // A schema that refers to itself forever.
        let looping = json!({ "$ref": "#" });
        assert_eq!(
            validate(&looping, &json!({})),
            ["/: the connector's config schema is too complex to check"]
        );
        // No schema (or a non-object) accepts anything.
        assert!(validate(&Value::Null, &json!({"a": 1})).is_empty());
        assert_eq!(
            validate(&json!(false), &json!(1)),
            ["/: no value is allowed here"]
        );
    }
}
