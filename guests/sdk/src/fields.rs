//! A few top-level fields of a JSON object, read without building the rest:
//! the object is still checked whole, and every other value is skipped.

use std::borrow::Cow;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

/// Parse `text` as one JSON object and put the value of each field `names`
/// holds into `slots`, by position (`None` when the object does not have
/// it; a field given twice keeps its last value, as a parsed object does).
/// `slots` is cleared first and can be reused from call to call.
///
/// # Errors
///
/// serde_json's error when `text` is not one JSON object.
pub fn read_fields<N: AsRef<str>>(
    text: &str,
    names: &[N],
    slots: &mut Vec<Option<Value>>,
) -> serde_json::Result<()> {
    slots.clear();
    slots.resize(names.len(), None);
    let mut parser = serde_json::Deserializer::from_str(text);
    Fields { names, slots }.deserialize(&mut parser)?;
    parser.end()
}

struct Fields<'n, 's, N> {
    names: &'n [N],
    slots: &'s mut [Option<Value>],
}

impl<'de, N: AsRef<str>> DeserializeSeed<'de> for Fields<'_, '_, N> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, N: AsRef<str>> Visitor<'de> for Fields<'_, '_, N> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key>()? {
            match self.names.iter().position(|name| name.as_ref() == key) {
                Some(at) => self.slots[at] = Some(map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// An object key, borrowed from the input when it has no escapes.
#[derive(serde::Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_named_fields_are_built_and_the_rest_is_still_checked() {
        let mut slots = Vec::new();
        read_fields(
            r#"{"a": {"b": 1}, "skip": [1, {"x": "y"}], "c": "t", "a": 2, "e\u0073c": true}"#,
            &["a", "missing", "esc"],
            &mut slots,
        )
        .unwrap();
        assert_eq!(slots, [Some(json!(2)), None, Some(json!(true))]);
        assert!(read_fields(r#"{"a": 1, "skip": oops}"#, &["a"], &mut slots).is_err());
        assert!(read_fields("[1, 2]", &["a"], &mut slots).is_err());
        assert!(read_fields(r#"{"a": 1} trailing"#, &["a"], &mut slots).is_err());
    }
}
