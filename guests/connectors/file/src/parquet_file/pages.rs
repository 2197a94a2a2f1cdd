//! Page headers checked before the parquet crate decodes a column chunk.
//!
//! The crate sizes its decompression buffer from each page header's
//! `uncompressed_page_size` (a 32-bit number the file chooses) and trusts
//! each `compressed_page_size`: a corrupt or hostile file could make it
//! allocate gigabytes, which in the guest is a trap, not an error. So every
//! page header of a chunk is read here first (Thrift compact protocol, the
//! two sizes kept, everything else skipped) and the chunk is refused, naming
//! the byte, unless each page lies inside the chunk and states at most
//! `limit` uncompressed bytes.

/// How deep Thrift structs may nest in a page header (they nest 3 deep).
const MAX_DEPTH: usize = 8;

/// Check the pages of one column chunk, `chunk`, which starts at byte
/// `start` of the file: the error is the file offset and what is wrong.
pub fn check(chunk: &[u8], start: u64, limit: u64) -> Result<(), (u64, String)> {
    let mut at = 0;
    while at < chunk.len() {
        let offset = start + at as u64;
        let mut header = Cursor {
            bytes: &chunk[at..],
            at: 0,
        };
        let (uncompressed, compressed) = header
            .page_sizes()
            .ok_or_else(|| (offset, "unreadable page header".to_string()))?;
        let (Ok(uncompressed), Ok(compressed)) =
            (u64::try_from(uncompressed), usize::try_from(compressed))
        else {
            return Err((offset, "a page header states a negative size".into()));
        };
        if uncompressed > limit {
            return Err((
                offset,
                format!("a page states {uncompressed} bytes uncompressed, more than the {limit} its column chunk allows"),
            ));
        }
        match (at + header.at).checked_add(compressed) {
            Some(next) if next <= chunk.len() => at = next,
            _ => {
                return Err((
                    offset,
                    format!("a page of {compressed} bytes runs past the end of its column chunk"),
                ))
            }
        }
    }
    Ok(())
}

/// A reader of Thrift's compact protocol over bytes; `None` when they end
/// early or hold something the protocol does not.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    fn skip(&mut self, len: u64) -> Option<()> {
        let end = self.at.checked_add(usize::try_from(len).ok()?)?;
        (end <= self.bytes.len()).then(|| self.at = end)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn zigzag(&mut self) -> Option<i64> {
        let v = self.varint()?;
        Some((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// A `PageHeader` struct: its `uncompressed_page_size` (field 2) and
    /// `compressed_page_size` (field 3), both required.
    fn page_sizes(&mut self) -> Option<(i64, i64)> {
        let (mut uncompressed, mut compressed) = (None, None);
        let mut field = 0i64;
        loop {
            let head = self.byte()?;
            if head == 0 {
                break;
            }
            let kind = head & 0x0f;
            field = match head >> 4 {
                0 => self.zigzag()?,
                delta => field + i64::from(delta),
            };
            match (field, kind) {
                (2, 5) => uncompressed = Some(self.zigzag()?),
                (3, 5) => compressed = Some(self.zigzag()?),
                _ => self.value(kind, MAX_DEPTH)?,
            }
        }
        Some((uncompressed?, compressed?))
    }

    /// Skip one value of compact type `kind`.
    fn value(&mut self, kind: u8, depth: usize) -> Option<()> {
        match kind {
            // Booleans live in the field header.
            1 | 2 => Some(()),
            3 => self.skip(1),
            4..=6 => self.varint().map(drop),
            7 => self.skip(8),
            8 => {
                let len = self.varint()?;
                self.skip(len)
            }
            9 | 10 => {
                let head = self.byte()?;
                let count = match u64::from(head >> 4) {
                    15 => self.varint()?,
                    short => short,
                };
                (0..count).try_for_each(|_| self.element(head & 0x0f, depth))
            }
            11 => {
                let count = self.varint()?;
                if count == 0 {
                    return Some(());
                }
                let kinds = self.byte()?;
                (0..count).try_for_each(|_| {
                    self.element(kinds >> 4, depth)?;
                    self.element(kinds & 0x0f, depth)
                })
            }
            12 => self.structure(depth.checked_sub(1)?),
            _ => None,
        }
    }

    /// Skip one element of a list, set or map (a boolean takes a byte there).
    fn element(&mut self, kind: u8, depth: usize) -> Option<()> {
        match kind {
            1 | 2 => self.skip(1),
            _ => self.value(kind, depth),
        }
    }

    /// Skip a struct's fields up to its stop byte.
    fn structure(&mut self, depth: usize) -> Option<()> {
        loop {
            let head = self.byte()?;
            if head == 0 {
                return Some(());
            }
            if head >> 4 == 0 {
                self.zigzag()?;
            }
            self.value(head & 0x0f, depth)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data page header as writers lay it out: type, the two sizes, then
    /// a nested `DataPageHeader` with a statistics struct holding binaries.
    fn header(uncompressed: i32, compressed: i32) -> Vec<u8> {
        let zigzag = |v: i64| ((v << 1) ^ (v >> 63)) as u64;
        let varint = |mut v: u64, out: &mut Vec<u8>| loop {
            if v < 0x80 {
                out.push(v as u8);
                break;
            }
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        };
        let mut out = vec![0x15];
        varint(zigzag(0), &mut out); // type: DATA_PAGE
        out.push(0x15);
        varint(zigzag(uncompressed.into()), &mut out);
        out.push(0x15);
        varint(zigzag(compressed.into()), &mut out);
        out.push(0x2c); // field 5, struct: DataPageHeader
        out.push(0x15);
        varint(zigzag(3), &mut out); // num_values
        out.push(0x15);
        varint(zigzag(0), &mut out); // encoding
        out.push(0x15);
        varint(zigzag(3), &mut out);
        out.push(0x15);
        varint(zigzag(3), &mut out);
        out.push(0x1c); // field 5, struct: Statistics
        out.extend_from_slice(&[0x18, 2, b'z', b'z', 0x18, 1, b'a', 0x00]);
        out.extend_from_slice(&[0x00, 0x00]);
        out
    }

    fn chunk(pages: &[(i32, i32, usize)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(uncompressed, compressed, body) in pages {
            out.extend(header(uncompressed, compressed));
            out.extend(std::iter::repeat_n(7u8, body));
        }
        out
    }

    #[test]
    fn well_formed_pages_pass() {
        let bytes = chunk(&[(10, 4, 4), (20, 6, 6)]);
        assert_eq!(check(&bytes, 100, 1 << 20), Ok(()));
    }

    #[test]
    fn a_page_stating_a_huge_size_is_refused_at_its_offset() {
        let bytes = chunk(&[(10, 4, 4), (i32::MAX, 6, 6)]);
        let second = 100 + header(10, 4).len() as u64 + 4;
        let (at, why) = check(&bytes, 100, 1 << 20).unwrap_err();
        assert_eq!(at, second);
        assert!(why.contains("2147483647 bytes uncompressed"), "{why}");
    }

    #[test]
    fn a_page_running_past_its_chunk_or_a_torn_header_is_refused() {
        let bytes = chunk(&[(10, 40, 4)]);
        assert!(check(&bytes, 0, 1 << 20)
            .unwrap_err()
            .1
            .contains("runs past"));
        let torn = &chunk(&[(10, 4, 4)])[..5];
        assert_eq!(
            check(torn, 0, 1 << 20).unwrap_err().1,
            "unreadable page header"
        );
        let negative = chunk(&[(-1, 4, 4)]);
        assert!(check(&negative, 0, 1 << 20)
            .unwrap_err()
            .1
            .contains("negative"));
    }

    #[test]
    fn nesting_is_bounded() {
        // A header that is nothing but structs inside structs.
        let mut bytes = vec![0x1c; 10_000];
        bytes.push(0);
        assert_eq!(
            check(&bytes, 0, 1 << 20).unwrap_err().1,
            "unreadable page header"
        );
    }
}
