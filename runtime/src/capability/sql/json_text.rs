//! JSON text the database server wrote (PostgreSQL json/jsonb, MySQL json),
//! passed on as it is, and text written as a JSON string.

use std::fmt::Write as _;

/// Append the server's JSON text on one line: a raw line break can only sit
/// between tokens (inside a string the server requires it escaped), so it
/// becomes a space and NDJSON stays one line per record.
pub(super) fn push_json_text(text: &str, out: &mut String) {
    if text.contains(['\n', '\r']) {
        out.extend(
            text.chars()
                .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
        );
    } else {
        out.push_str(text);
    }
}

/// `text` as a JSON string, escaped exactly as serde_json escapes it.
pub(super) fn push_json_string(text: &str, out: &mut String) {
    out.reserve(text.len() + 2);
    out.push('"');
    let mut start = 0;
    for (at, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[start..at]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escape);
        }
        start = at + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let mut every_ascii: String = (0u8..=0x7f).map(char::from).collect();
        every_ascii.push_str("é ü 中 \u{2028} \u{1f600} \"q\" \\b");
        for text in [every_ascii.as_str(), "", "plain", "\u{0}", "end\\"] {
            let mut out = String::new();
            push_json_string(text, &mut out);
            assert_eq!(out, serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }
}
