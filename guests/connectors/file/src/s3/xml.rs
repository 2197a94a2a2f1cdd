//! The little XML S3 answers with: element texts by path, entities resolved.

use quick_xml::events::Event;
use quick_xml::Reader;

/// Every element of `xml` that ended, in document order, as `(path, text)`:
/// the path is the local names from the root joined by `/`
/// (`ListBucketResult/Contents/Key`), the text its own character data with
/// entities resolved (empty for an element holding only elements).
pub fn elements(xml: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut reader = Reader::from_reader(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    let mut out = Vec::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("malformed XML at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(start) => {
                stack.push(String::from_utf8_lossy(start.local_name().as_ref()).into_owned());
                texts.push(String::new());
            }
            Event::Empty(empty) => {
                let name = String::from_utf8_lossy(empty.local_name().as_ref()).into_owned();
                let mut path = stack.join("/");
                if !path.is_empty() {
                    path.push('/');
                }
                path.push_str(&name);
                out.push((path, String::new()));
            }
            Event::End(_) => {
                let path = stack.join("/");
                stack.pop();
                let text = texts.pop().unwrap_or_default();
                out.push((path, text));
            }
            Event::Text(text) => {
                if let Some(current) = texts.last_mut() {
                    let decoded = text.decode().map_err(|e| format!("malformed XML: {e}"))?;
                    current.push_str(&decoded);
                }
            }
            Event::CData(data) => {
                if let Some(current) = texts.last_mut() {
                    current.push_str(&String::from_utf8_lossy(&data));
                }
            }
            Event::GeneralRef(reference) => {
                let Some(current) = texts.last_mut() else {
                    continue;
                };
                if let Some(c) = reference
                    .resolve_char_ref()
                    .map_err(|e| format!("malformed XML: {e}"))?
                {
                    current.push(c);
                    continue;
                }
                let name = reference
                    .decode()
                    .map_err(|e| format!("malformed XML: {e}"))?;
                let resolved = quick_xml::escape::resolve_predefined_entity(&name)
                    .ok_or_else(|| format!("malformed XML: unknown entity `&{name};`"))?;
                current.push_str(resolved);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// The text of the first element at `path`, if any.
pub fn first<'a>(elements: &'a [(String, String)], path: &str) -> Option<&'a str> {
    elements
        .iter()
        .find(|(p, _)| p == path)
        .map(|(_, text)| text.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_come_with_their_paths_and_entities_resolved() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Contents><Key>a &amp; b&#x2F;c.csv</Key><Size>12</Size></Contents>
  <IsTruncated>false</IsTruncated><Empty/>
</ListBucketResult>"#;
        let found = elements(xml).unwrap();
        assert_eq!(
            first(&found, "ListBucketResult/Contents/Key"),
            Some("a & b/c.csv")
        );
        assert_eq!(first(&found, "ListBucketResult/Contents/Size"), Some("12"));
        assert_eq!(first(&found, "ListBucketResult/IsTruncated"), Some("false"));
        assert_eq!(first(&found, "ListBucketResult/Empty"), Some(""));
        assert!(elements(b"<a><b></a>").is_err());
    }
}
