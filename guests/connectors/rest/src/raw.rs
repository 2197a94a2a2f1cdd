//! The fast way through a page: the record array at `records_path` is split
//! out as each record's JSON text, which becomes the record's data as it is
//! (only line breaks between tokens become spaces), instead of building every
//! record as values and printing it again. The rest of the page is parsed as
//! usual (pagination reads it). Whatever this path cannot do — a pointer
//! through an array, a page whose shape does not match — the caller does the
//! usual way, so results and errors stay the same.

use std::borrow::Cow;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sluice_sdk::fields::read_fields;
use sluice_sdk::query::value_text;
use sluice_sdk::Record;

/// The page without its record array (a null in its place), and each
/// record's JSON text; `None` when the page is not shaped for this path.
pub fn split<'b>(body: &'b [u8], pointer: &str) -> Option<(Value, Vec<&'b RawValue>)> {
    let path: Vec<String> = pointer
        .strip_prefix('/')?
        .split('/')
        .map(|segment| segment.replace("~1", "/").replace("~0", "~"))
        .collect();
    let mut found = None;
    let mut parser = serde_json::Deserializer::from_slice(body);
    let rest = Split {
        path: &path,
        found: &mut found,
    }
    .deserialize(&mut parser)
    .ok()?;
    parser.end().ok()?;
    found.map(|records| (rest, records))
}

/// One record from its JSON text: the text is its data; `id_field`, when
/// the record is an object holding it, is its id.
pub fn record(raw: &RawValue, id_field: Option<&str>) -> Record {
    let text = raw.get();
    let data = if text.contains(['\n', '\r']) {
        // Raw line breaks can only sit between tokens: JSON strings escape them.
        text.replace(['\n', '\r'], " ")
    } else {
        text.to_string()
    };
    let id = id_field.and_then(|field| {
        // Anything but an object holding the field has no id.
        let mut slots = Vec::new();
        read_fields(text, &[field], &mut slots).ok()?;
        slots.pop().flatten().map(|value| value_text(&value))
    });
    Record {
        id,
        data,
        metadata: None,
        timestamp: None,
    }
}

/// Walks `path` through objects; at its end takes the array's elements as
/// raw JSON text. Everything else is built as values.
struct Split<'s, 'b> {
    path: &'s [String],
    found: &'s mut Option<Vec<&'b RawValue>>,
}

impl<'b> DeserializeSeed<'b> for Split<'_, 'b> {
    type Value = Value;

    fn deserialize<D: Deserializer<'b>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.path.is_empty() {
            *self.found = Some(Vec::<&'b RawValue>::deserialize(deserializer)?);
            return Ok(Value::Null);
        }
        deserializer.deserialize_map(self)
    }
}

impl<'b> Visitor<'b> for Split<'_, 'b> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object on the way to the records")
    }

    fn visit_map<A: MapAccess<'b>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<Cow<'b, str>>()? {
            let value = if key == self.path[0].as_str() && self.found.is_none() {
                map.next_value_seed(Split {
                    path: &self.path[1..],
                    found: &mut *self.found,
                })?
            } else {
                map.next_value::<Value>()?
            };
            object.insert(key.into_owned(), value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_are_split_out_as_text_and_the_rest_is_kept() {
        let body = br#"{"meta": {"next": "c2"}, "page": {"items": [{"id": 1, "n": "a"},
            {"n": "b", "id": "x/y"}, 7]}, "after": true}"#;
        let (rest, records) = split(body, "/page/items").expect("split");
        assert_eq!(
            rest,
            json!({"meta": {"next": "c2"}, "page": {"items": null}, "after": true})
        );
        let made: Vec<Record> = records.iter().map(|r| record(r, Some("id"))).collect();
        assert_eq!(made[0].data, r#"{"id": 1, "n": "a"}"#);
        assert_eq!(made[0].id.as_deref(), Some("1"));
        assert_eq!(made[1].data, r#"{"n": "b", "id": "x/y"}"#, "one line");
        assert_eq!(made[1].id.as_deref(), Some("x/y"));
        assert_eq!((made[2].data.as_str(), made[2].id.as_deref()), ("7", None));
    }

    #[test]
    fn pages_this_path_cannot_take_are_left_to_the_usual_one() {
        // The pointer goes through an array, or to no array, or nowhere.
        assert!(split(br#"{"pages": [{"items": []}]}"#, "/pages/0/items").is_none());
        assert!(split(br#"{"items": {"a": 1}}"#, "/items").is_none());
        assert!(split(br#"{"other": []}"#, "/items").is_none());
        assert!(split(br#"{"items": [1, 2"#, "/items").is_none());
        // Escaped pointer segments.
        let (_, records) = split(br#"{"a/b": {"~c": [1]}}"#, "/a~1b/~0c").expect("split");
        assert_eq!(records[0].get(), "1");
    }
}
