//! JSON text the database server wrote (PostgreSQL json/jsonb, MySQL json),
//! passed on as it is.

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
