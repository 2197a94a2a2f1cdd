//! What the parquet crate decodes from: byte ranges already read, and the
//! pages of zstd, gzip and brotli columns decompressed here, each bounded
//! (the crate's zstd codec is C, which does not build for the guest, and
//! its gzip and brotli codecs decompress to the end whatever the page says,
//! so a small page could expand without limit).

use std::sync::{Arc, Mutex};

use std::io::Read as _;

use bytes::{Buf, Bytes};
use parquet::basic::Compression;
use parquet::bloom_filter::Sbbf;
use parquet::column::page::{Page, PageMetadata, PageReader};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ParquetMetaData, RowGroupMetaData};
use parquet::file::properties::ReaderProperties;
use parquet::file::reader::{ChunkReader, FileReader, Length, RowGroupReader};
use parquet::file::serialized_reader::SerializedRowGroupReader;
use parquet::record::reader::RowIter;
use parquet::schema::types::Type as SchemaType;

/// Byte ranges of a file, read beforehand: asking for bytes outside them
/// is an error, never I/O.
pub struct Fetched {
    size: u64,
    ranges: Mutex<Vec<(u64, Bytes)>>,
}

impl Fetched {
    /// No ranges yet, of a file of `size` bytes.
    pub fn new(size: u64) -> Self {
        Self {
            size,
            ranges: Mutex::new(Vec::new()),
        }
    }

    /// Add the bytes read from `start`.
    pub fn insert(&self, start: u64, bytes: Vec<u8>) {
        self.lock().push((start, Bytes::from(bytes)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Bytes)>> {
        self.ranges.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bytes from `start` to the end of the range holding it.
    pub fn from(&self, start: u64) -> Result<Bytes> {
        self.lock()
            .iter()
            .find(|(at, bytes)| *at <= start && start < *at + bytes.len() as u64)
            .map(|(at, bytes)| bytes.slice((start - at) as usize..))
            .ok_or_else(|| {
                ParquetError::EOF(format!(
                    "byte {start} lies outside the column chunks the metadata names"
                ))
            })
    }
}

impl Length for Fetched {
    fn len(&self) -> u64 {
        self.size
    }
}

impl ChunkReader for Fetched {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> Result<Self::T> {
        Ok(self.from(start)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes> {
        let rest = self.from(start)?;
        if length > rest.len() {
            return Err(ParquetError::EOF(format!(
                "{length} bytes at byte {start} run past the column chunk holding it"
            )));
        }
        Ok(rest.slice(..length))
    }
}

/// One row group of a file, seen as a file of that row group alone (so a
/// row iterator can own it): the file's metadata is shared, not copied.
pub struct OneGroup {
    metadata: Arc<ParquetMetaData>,
    /// Which row group of the file it is.
    index: usize,
    /// The row group's metadata with its zstd, gzip and brotli columns
    /// marked uncompressed, so the crate hands their pages over as stored.
    group: RowGroupMetaData,
    /// Per column: the codec its pages are decompressed with here and the
    /// most bytes a page may decompress to (`None`: the crate decompresses).
    taken: Vec<Option<(Taken, usize)>>,
    chunks: Arc<Fetched>,
    props: Arc<ReaderProperties>,
}

impl OneGroup {
    /// Row group `group` of the file `metadata` describes, its column
    /// chunks in `chunks`.
    pub fn new(metadata: Arc<ParquetMetaData>, index: usize, chunks: Fetched) -> Result<Self> {
        let original = metadata.row_group(index);
        let taken: Vec<_> = original
            .columns()
            .iter()
            .map(|c| {
                Taken::of(c.compression()).map(|codec| (codec, page_limit(c.uncompressed_size())))
            })
            .collect();
        let columns = original
            .columns()
            .iter()
            .zip(&taken)
            .map(|(c, taken)| match taken {
                Some(_) => c
                    .clone()
                    .into_builder()
                    .set_compression(Compression::UNCOMPRESSED)
                    .build(),
                None => Ok(c.clone()),
            })
            .collect::<Result<Vec<_>>>()?;
        let group = original
            .clone()
            .into_builder()
            .set_column_metadata(columns)
            .build()?;
        Ok(Self {
            metadata,
            index,
            group,
            taken,
            chunks: Arc::new(chunks),
            // Hadoop-framed LZ4 only: the fallback to LZ4 frames decompresses
            // to the end whatever the page says.
            props: Arc::new(
                ReaderProperties::builder()
                    .set_backward_compatible_lz4(false)
                    .build(),
            ),
        })
    }
}

/// The most bytes one page may decompress to, whatever its column says.
pub const MAX_PAGE_BYTES: usize = 64 << 20;

/// The most bytes one page of a column chunk that states
/// `total_uncompressed` bytes may decompress to.
pub fn page_limit(total_uncompressed: i64) -> usize {
    usize::try_from(total_uncompressed)
        .unwrap_or(0)
        .min(MAX_PAGE_BYTES)
}

/// A codec whose pages are decompressed here rather than by the crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taken {
    Zstd,
    Gzip,
    Brotli,
}

impl Taken {
    fn of(codec: Compression) -> Option<Self> {
        match codec {
            Compression::ZSTD(_) => Some(Self::Zstd),
            Compression::GZIP(_) => Some(Self::Gzip),
            Compression::BROTLI(_) => Some(Self::Brotli),
            _ => None,
        }
    }
}

impl FileReader for OneGroup {
    fn metadata(&self) -> &ParquetMetaData {
        &self.metadata
    }

    fn num_row_groups(&self) -> usize {
        1
    }

    fn get_row_group(&self, _: usize) -> Result<Box<dyn RowGroupReader + '_>> {
        Ok(Box::new(BoundedPages {
            inner: SerializedRowGroupReader::new(
                Arc::clone(&self.chunks),
                &self.group,
                self.metadata.page_index_for_row_group(self.index),
                Arc::clone(&self.props),
            )?,
            taken: &self.taken,
        }))
    }

    fn get_row_iter(&self, projection: Option<SchemaType>) -> Result<RowIter<'_>> {
        RowIter::from_file(projection, self)
    }
}

/// A row group whose zstd, gzip and brotli columns' pages are decompressed here.
struct BoundedPages<'a> {
    inner: SerializedRowGroupReader<'a, Fetched>,
    taken: &'a [Option<(Taken, usize)>],
}

impl RowGroupReader for BoundedPages<'_> {
    fn metadata(&self) -> &RowGroupMetaData {
        self.inner.metadata()
    }

    fn num_columns(&self) -> usize {
        self.inner.num_columns()
    }

    fn get_column_page_reader(&self, i: usize) -> Result<Box<dyn PageReader>> {
        let pages = self.inner.get_column_page_reader(i)?;
        Ok(match self.taken.get(i).copied().flatten() {
            Some((codec, limit)) => Box::new(BoundedPageReader {
                pages,
                codec,
                limit,
            }),
            None => pages,
        })
    }

    fn get_column_bloom_filter(&self, i: usize) -> Option<&Sbbf> {
        self.inner.get_column_bloom_filter(i)
    }

    fn get_row_iter(&self, projection: Option<SchemaType>) -> Result<RowIter<'_>> {
        RowIter::from_row_group(projection, self)
    }
}

/// The pages of a column, decompressed as they are read, each to at most `limit` bytes.
struct BoundedPageReader {
    pages: Box<dyn PageReader>,
    codec: Taken,
    /// The most bytes a page may decompress to.
    limit: usize,
}

impl BoundedPageReader {
    fn decompress(&self, bytes: &[u8]) -> Result<Bytes> {
        let decoder: Box<dyn std::io::Read + '_> = match self.codec {
            Taken::Zstd => crate::compression::Compression::Zstd.decoder(Box::new(bytes)),
            Taken::Gzip => crate::compression::Compression::Gzip.decoder(Box::new(bytes)),
            Taken::Brotli => Box::new(brotli_decompressor::Decompressor::new(bytes, 4096)),
        };
        let mut out = Vec::new();
        decoder
            .take(self.limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| ParquetError::General(format!("{:?} page: {e}", self.codec)))?;
        if out.len() > self.limit {
            return Err(ParquetError::General(format!(
                "a {:?} page decompresses to more than the {} bytes its column chunk allows",
                self.codec, self.limit
            )));
        }
        Ok(Bytes::from(out))
    }

    fn page(&self, mut page: Page) -> Result<Page> {
        match &mut page {
            Page::DataPage { buf, .. } | Page::DictionaryPage { buf, .. } => {
                *buf = self.decompress(buf)?;
            }
            Page::DataPageV2 {
                buf,
                def_levels_byte_len,
                rep_levels_byte_len,
                is_compressed,
                ..
            } if *is_compressed => {
                // The levels come first, stored as they are; the values after them.
                let levels =
                    (*def_levels_byte_len as usize + *rep_levels_byte_len as usize).min(buf.len());
                let values = self.decompress(&buf[levels..])?;
                let mut whole = Vec::with_capacity(levels + values.len());
                whole.extend_from_slice(&buf[..levels]);
                whole.extend_from_slice(&values);
                *buf = Bytes::from(whole);
                *is_compressed = false;
            }
            Page::DataPageV2 { .. } => {}
        }
        Ok(page)
    }
}

impl Iterator for BoundedPageReader {
    type Item = Result<Page>;

    fn next(&mut self) -> Option<Self::Item> {
        self.get_next_page().transpose()
    }
}

impl PageReader for BoundedPageReader {
    fn get_next_page(&mut self) -> Result<Option<Page>> {
        match self.pages.get_next_page()? {
            Some(page) => self.page(page).map(Some),
            None => Ok(None),
        }
    }

    fn peek_next_page(&mut self) -> Result<Option<PageMetadata>> {
        self.pages.peek_next_page()
    }

    fn skip_next_page(&mut self) -> Result<()> {
        self.pages.skip_next_page()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// A column with no pages: the decompression is what is tested.
    struct NoPages;

    impl Iterator for NoPages {
        type Item = Result<Page>;

        fn next(&mut self) -> Option<Self::Item> {
            None
        }
    }

    impl PageReader for NoPages {
        fn get_next_page(&mut self) -> Result<Option<Page>> {
            Ok(None)
        }

        fn peek_next_page(&mut self) -> Result<Option<PageMetadata>> {
            Ok(None)
        }

        fn skip_next_page(&mut self) -> Result<()> {
            Ok(())
        }
    }

    fn reader(codec: Taken, limit: usize) -> BoundedPageReader {
        BoundedPageReader {
            pages: Box::new(NoPages),
            codec,
            limit,
        }
    }

    #[test]
    fn a_page_that_expands_past_its_limit_is_an_error_not_a_bomb() {
        let zeros = vec![0u8; 8 << 20];
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gzip.write_all(&zeros).unwrap();
        let gzip = gzip.finish().unwrap();
        assert!(gzip.len() < 64 << 10, "a small page");
        let err = reader(Taken::Gzip, 1 << 20).decompress(&gzip).unwrap_err();
        assert!(
            err.to_string().contains("more than the 1048576 bytes"),
            "{err}"
        );
        let whole = reader(Taken::Gzip, 8 << 20).decompress(&gzip).unwrap();
        assert_eq!(whole.len(), 8 << 20);
    }
}
