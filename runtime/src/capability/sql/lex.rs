//! What the dialects' read-only guards lex alike: words, line comments,
//! and searching the text.

/// The index after the word (keyword or unquoted identifier: letters,
/// digits, `_`, `$`, any non-ASCII) that starts at `i`.
pub(super) fn word_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len()
        && (bytes[i].is_ascii_alphanumeric()
            || bytes[i] == b'_'
            || bytes[i] == b'$'
            || bytes[i] >= 0x80)
    {
        i += 1;
    }
    i
}

/// The index of the line break ending a comment that starts at `i`.
pub(super) fn line_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i] != b'\n' {
        i += 1;
    }
    i
}

/// Where `needle` first occurs in `haystack` from `from` on.
pub(super) fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}
