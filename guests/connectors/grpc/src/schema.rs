//! JSON Schema of a method's messages as the proto3 JSON mapping writes
//! them: fields by their JSON name, 64-bit integers as decimal strings,
//! bytes as base64, enums by name, maps as objects, and the well-known
//! types in their own forms (Timestamp and Duration as strings, Struct as an
//! object, wrappers as their value or null). Every message is a `$defs`
//! entry, so recursive messages are described too.

use std::collections::BTreeMap;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor};
use serde_json::{json, Map, Value};

/// The schema of a method's records (its response message), with its
/// request message's schema under `x-request` and how it streams under
/// `x-streaming` (`unary`, `server`, `client` or `bidirectional`).
pub fn method_schema(name: &str, method: &MethodDescriptor) -> Value {
    let mut defs = BTreeMap::new();
    let response = message_ref(&method.output(), &mut defs);
    let request = message_ref(&method.input(), &mut defs);
    let streaming = match (method.is_client_streaming(), method.is_server_streaming()) {
        (false, false) => "unary",
        (false, true) => "server",
        (true, false) => "client",
        (true, true) => "bidirectional",
    };
    let mut schema = Map::new();
    schema.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    schema.insert("title".into(), json!(name));
    if let Value::Object(reference) = response {
        schema.extend(reference);
    }
    schema.insert("x-request".into(), request);
    schema.insert("x-streaming".into(), json!(streaming));
    schema.insert("$defs".into(), Value::Object(defs.into_iter().collect()));
    Value::Object(schema)
}

/// A reference to `message`'s schema, or the inline schema of a
/// well-known type; the message's own schema goes into `defs` once.
fn message_ref(message: &MessageDescriptor, defs: &mut BTreeMap<String, Value>) -> Value {
    if let Some(known) = well_known(message.full_name()) {
        return known;
    }
    let name = message.full_name().to_string();
    if !defs.contains_key(&name) {
        // Placed first, so a field of the message's own type finds it.
        defs.insert(name.clone(), Value::Null);
        let mut properties = Map::new();
        for field in message.fields() {
            properties.insert(field.json_name().to_string(), field_schema(&field, defs));
        }
        let oneofs: Vec<String> = message
            .oneofs()
            .filter(|o| !o.is_synthetic())
            .map(|o| {
                let fields: Vec<String> = o.fields().map(|f| f.json_name().to_string()).collect();
                format!("{} (one of {})", o.name(), fields.join(", "))
            })
            .collect();
        let mut schema =
            json!({ "type": "object", "properties": properties, "additionalProperties": false });
        if !oneofs.is_empty() {
            schema["description"] = json!(format!(
                "At most one field of each oneof: {}",
                oneofs.join("; ")
            ));
        }
        defs.insert(name.clone(), schema);
    }
    json!({ "$ref": format!("#/$defs/{name}") })
}

fn field_schema(field: &FieldDescriptor, defs: &mut BTreeMap<String, Value>) -> Value {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            return json!({ "type": "object" });
        };
        let value = kind_schema(&entry.map_entry_value_field().kind(), defs);
        return json!({ "type": "object", "additionalProperties": value });
    }
    let single = kind_schema(&field.kind(), defs);
    if field.is_list() {
        json!({ "type": "array", "items": single })
    } else {
        single
    }
}

fn kind_schema(kind: &Kind, defs: &mut BTreeMap<String, Value>) -> Value {
    match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({ "type": "integer", "minimum": i32::MIN, "maximum": i32::MAX })
        }
        Kind::Uint32 | Kind::Fixed32 => {
            json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX })
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            json!({ "type": "string", "pattern": "^-?[0-9]+$", "format": "int64" })
        }
        Kind::Uint64 | Kind::Fixed64 => {
            json!({ "type": "string", "pattern": "^[0-9]+$", "format": "uint64" })
        }
        Kind::Float | Kind::Double => json!({ "type": ["number", "string"] }),
        Kind::Bool => json!({ "type": "boolean" }),
        Kind::String => json!({ "type": "string" }),
        Kind::Bytes => json!({ "type": "string", "contentEncoding": "base64" }),
        Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => json!({ "type": "null" }),
        Kind::Enum(e) => {
            let names: Vec<String> = e.values().map(|v| v.name().to_string()).collect();
            json!({ "type": "string", "enum": names })
        }
        Kind::Message(m) => message_ref(m, defs),
    }
}

/// The JSON form of a well-known type.
fn well_known(full_name: &str) -> Option<Value> {
    let wrapper = |inner: Value| {
        let mut types = vec![inner["type"].clone(), json!("null")];
        types.dedup();
        Some(json!({ "type": types }))
    };
    match full_name {
        "google.protobuf.Timestamp" => Some(json!({ "type": "string", "format": "date-time" })),
        "google.protobuf.Duration" => {
            Some(json!({ "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$" }))
        }
        "google.protobuf.Struct" => Some(json!({ "type": "object" })),
        "google.protobuf.Value" => Some(json!({})),
        "google.protobuf.ListValue" => Some(json!({ "type": "array" })),
        "google.protobuf.Empty" => Some(json!({ "type": "object", "additionalProperties": false })),
        "google.protobuf.FieldMask" => Some(json!({ "type": "string" })),
        "google.protobuf.Any" => Some(json!({ "type": "object", "required": ["@type"] })),
        "google.protobuf.StringValue"
        | "google.protobuf.BytesValue"
        | "google.protobuf.Int64Value"
        | "google.protobuf.UInt64Value" => wrapper(json!({ "type": "string" })),
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => {
            wrapper(json!({ "type": "integer" }))
        }
        "google.protobuf.FloatValue" | "google.protobuf.DoubleValue" => {
            Some(json!({ "type": ["number", "string", "null"] }))
        }
        "google.protobuf.BoolValue" => wrapper(json!({ "type": "boolean" })),
        _ => None,
    }
}
