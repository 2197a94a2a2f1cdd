//! What the parquet crate decodes from: byte ranges already read, and
//! zstd pages decompressed here (the crate's zstd codec is C, which does
//! not build for the guest).

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
    fn from(&self, start: u64) -> Result<Bytes> {
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
    /// The row group's metadata with its zstd columns marked uncompressed,
    /// so the crate hands their pages over as stored.
    group: RowGroupMetaData,
    /// Per column: the most bytes a zstd page of it may decompress to
    /// (`None`: not zstd).
    zstd: Vec<Option<usize>>,
    chunks: Arc<Fetched>,
    props: Arc<ReaderProperties>,
}

impl OneGroup {
    /// Row group `group` of the file `metadata` describes, its column
    /// chunks in `chunks`.
    pub fn new(metadata: Arc<ParquetMetaData>, index: usize, chunks: Fetched) -> Result<Self> {
        let original = metadata.row_group(index);
        let zstd = original
            .columns()
            .iter()
            .map(|c| {
                matches!(c.compression(), Compression::ZSTD(_)).then(|| {
                    usize::try_from(c.uncompressed_size())
                        .unwrap_or(0)
                        .min(MAX_PAGE_BYTES)
                })
            })
            .collect();
        let columns = original
            .columns()
            .iter()
            .map(|c| match c.compression() {
                Compression::ZSTD(_) => c
                    .clone()
                    .into_builder()
                    .set_compression(Compression::UNCOMPRESSED)
                    .build(),
                _ => Ok(c.clone()),
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
            zstd,
            chunks: Arc::new(chunks),
            props: Arc::new(ReaderProperties::builder().build()),
        })
    }
}

/// The most bytes one zstd page may decompress to.
const MAX_PAGE_BYTES: usize = 128 << 20;

impl FileReader for OneGroup {
    fn metadata(&self) -> &ParquetMetaData {
        &self.metadata
    }

    fn num_row_groups(&self) -> usize {
        1
    }

    fn get_row_group(&self, _: usize) -> Result<Box<dyn RowGroupReader + '_>> {
        Ok(Box::new(ZstdPages {
            inner: SerializedRowGroupReader::new(
                Arc::clone(&self.chunks),
                &self.group,
                self.metadata.page_index_for_row_group(self.index),
                Arc::clone(&self.props),
            )?,
            zstd: &self.zstd,
        }))
    }

    fn get_row_iter(&self, projection: Option<SchemaType>) -> Result<RowIter<'_>> {
        RowIter::from_file(projection, self)
    }
}

/// A row group whose zstd columns' pages are decompressed here.
struct ZstdPages<'a> {
    inner: SerializedRowGroupReader<'a, Fetched>,
    zstd: &'a [Option<usize>],
}

impl RowGroupReader for ZstdPages<'_> {
    fn metadata(&self) -> &RowGroupMetaData {
        self.inner.metadata()
    }

    fn num_columns(&self) -> usize {
        self.inner.num_columns()
    }

    fn get_column_page_reader(&self, i: usize) -> Result<Box<dyn PageReader>> {
        let pages = self.inner.get_column_page_reader(i)?;
        Ok(match self.zstd.get(i).copied().flatten() {
            Some(limit) => Box::new(ZstdPageReader { pages, limit }),
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

/// The pages of a zstd column, decompressed as they are read.
struct ZstdPageReader {
    pages: Box<dyn PageReader>,
    /// The most bytes a page may decompress to.
    limit: usize,
}

impl ZstdPageReader {
    fn decompress(&self, bytes: &[u8]) -> Result<Bytes> {
        let mut out = Vec::new();
        let decoder = crate::compression::Compression::Zstd.decoder(Box::new(bytes));
        decoder
            .take(self.limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| ParquetError::General(format!("zstd page: {e}")))?;
        if out.len() > self.limit {
            return Err(ParquetError::General(format!(
                "a zstd page decompresses to more than {} bytes",
                self.limit
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

impl Iterator for ZstdPageReader {
    type Item = Result<Page>;

    fn next(&mut self) -> Option<Self::Item> {
        self.get_next_page().transpose()
    }
}

impl PageReader for ZstdPageReader {
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
