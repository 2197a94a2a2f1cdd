//! Lines of JSON (NDJSON) checked by the host at native speed.
//!
//! Hand [`scan`] a chunk of bytes read from anywhere (a file, an object, a
//! decompressor) and the top-level fields you need; the host frames the
//! chunk into lines, checks that each is one JSON object and answers where
//! each line and field is. The bytes stay yours, and checking a line this
//! way costs a fraction of parsing it in the guest.
//!
//! ```no_run
//! # fn count() -> sluice_sdk::Result<()> {
//! use sluice_sdk::json_lines;
//!
//! let chunk = b"{\"age\": 91, \"name\": \"Ada\"}\n\n{\"name\": \"Bob\"}\n";
//! let fields = ["age".to_string()];
//! let scanned = json_lines::scan(chunk, &fields, true)?;
//! for line in json_lines::lines(&scanned, fields.len()) {
//!     let age = line.field(0).map(|range| &chunk[range]);
//!     // line.text is the record's own JSON text; line.index its line (0-based).
//! }
//! if let Some(bad) = &scanned.malformed {
//!     // every line before it was handed out above
//! }
//! # Ok(())
//! # }
//! ```

use std::ops::Range;

use crate::bindings::sluice::connector::json_lines;
pub use crate::bindings::sluice::connector::json_lines::{MalformedLine, Scanned};
use crate::Result;

/// The most bytes one [`scan`] takes.
pub const MAX_CHUNK_BYTES: usize = 64 << 20;

/// The most fields one [`scan`] looks for.
pub const MAX_FIELDS: usize = 64;

/// Frame `chunk` into lines and check each, finding the top-level `fields`.
/// `last`: the chunk ends the input (its final line needs no newline);
/// otherwise the bytes after the last newline are left for the next call,
/// with what follows them. A malformed line is not an error here: the lines
/// before it are in the answer, and it is in [`Scanned::malformed`].
///
/// # Errors
///
/// `invalid-request` for a chunk over [`MAX_CHUNK_BYTES`] or more than
/// [`MAX_FIELDS`] fields.
pub fn scan(chunk: &[u8], fields: &[String], last: bool) -> Result<Scanned> {
    json_lines::scan(chunk, fields, last)
}

/// One line [`scan`] checked.
#[derive(Debug, Clone)]
pub struct Line<'s> {
    /// Its index among the chunk's lines (0-based, blank lines counted).
    pub index: u32,
    /// Where its JSON text is in the chunk (no surrounding whitespace).
    pub text: Range<usize>,
    fields: &'s [u32],
}

impl Line<'_> {
    /// Where the value of the `at`-th field asked for is in the chunk;
    /// `None` when the line does not have it.
    pub fn field(&self, at: usize) -> Option<Range<usize>> {
        let (start, end) = (self.fields[2 * at], self.fields[2 * at + 1]);
        (end > start).then_some(start as usize..end as usize)
    }
}

/// The lines of `scanned`, which looked for `fields` fields.
pub fn lines(scanned: &Scanned, fields: usize) -> impl Iterator<Item = Line<'_>> {
    scanned.spans.chunks_exact(3 + 2 * fields).map(line)
}

/// The `at`-th line of `scanned` (which looked for `fields` fields), if it has one.
pub fn line_at(scanned: &Scanned, fields: usize, at: usize) -> Option<Line<'_>> {
    let width = 3 + 2 * fields;
    scanned.spans.get(at * width..(at + 1) * width).map(line)
}

fn line(span: &[u32]) -> Line<'_> {
    Line {
        index: span[0],
        text: span[1] as usize..span[2] as usize,
        fields: &span[3..],
    }
}
