//! Compression: gzip, zstd and bzip2, detected by extension and by magic
//! bytes, decoded as a stream and encoded for writes.
//!
//! Every format is read as the concatenation of all its members (gzip
//! members, zstd frames, bzip2 streams), as their command-line tools write
//! and read them: a file made by `cat a.gz b.gz` is both files, never
//! silently the first. Memory stays bounded: a zstd frame asking for a
//! window over [`MAX_ZSTD_WINDOW_BYTES`] is refused, not allocated.

use std::cell::RefCell;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{FrameDecoder, StreamingDecoder};

/// How a file's stored bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Bzip2,
}

/// The largest zstd window decoded (zstd's levels 1 to 19 use at most
/// 8 MiB; only `--long` asks for more).
pub const MAX_ZSTD_WINDOW_BYTES: u64 = 32 << 20;

/// The compressed input is read this much at a time (an S3 body, a file).
const INPUT_BUFFER_BYTES: usize = 64 * 1024;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const BZIP2_MAGIC: &[u8] = b"BZh";

impl Compression {
    /// The compression a (lower-case) name's extension says, and the name
    /// without that extension.
    pub fn by_extension(name: &str) -> (Self, &str) {
        for (ext, compression) in [
            (".gz", Self::Gzip),
            (".gzip", Self::Gzip),
            (".zst", Self::Zstd),
            (".zstd", Self::Zstd),
            (".bz2", Self::Bzip2),
        ] {
            if let Some(stem) = name.strip_suffix(ext) {
                return (compression, stem);
            }
        }
        (Self::None, name)
    }

    /// The compression the first bytes announce.
    pub fn by_magic(head: &[u8]) -> Self {
        if head.starts_with(GZIP_MAGIC) {
            Self::Gzip
        } else if head.starts_with(ZSTD_MAGIC) {
            Self::Zstd
        } else if head.len() >= 4
            && head.starts_with(BZIP2_MAGIC)
            && (b'1'..=b'9').contains(&head[3])
        {
            Self::Bzip2
        } else {
            Self::None
        }
    }

    /// The decoded bytes of `raw` (which need not be buffered: the decoder
    /// buffers it).
    pub fn decoder<'a>(self, raw: Box<dyn Read + 'a>) -> Box<dyn Read + 'a> {
        match self {
            Self::None => raw,
            Self::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(
                BufReader::with_capacity(INPUT_BUFFER_BYTES, raw),
            )),
            Self::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(
                BufReader::with_capacity(INPUT_BUFFER_BYTES, raw),
            )),
            Self::Zstd => Box::new(ZstdFrames::new(raw)),
        }
    }

    /// `bytes` compressed (for writes).
    pub fn encode(self, bytes: &[u8]) -> io::Result<Vec<u8>> {
        use std::io::Write as _;
        match self {
            Self::None => Ok(bytes.to_vec()),
            Self::Gzip => {
                let mut out =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                out.write_all(bytes)?;
                out.finish()
            }
            Self::Bzip2 => {
                let mut out =
                    bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
                out.write_all(bytes)?;
                out.finish()
            }
            Self::Zstd => Ok(ruzstd::encoding::compress_to_vec(
                bytes,
                ruzstd::encoding::CompressionLevel::Fastest,
            )),
        }
    }
}

/// One input shared by the frame decoders that read it in turn.
#[derive(Clone)]
struct Shared<'a>(Rc<RefCell<BufReader<Box<dyn Read + 'a>>>>);

impl Read for Shared<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

/// Every zstd frame of an input, decoded one after the other; skippable
/// frames are skipped.
struct ZstdFrames<'a> {
    input: Shared<'a>,
    frame: Option<StreamingDecoder<Shared<'a>, FrameDecoder>>,
}

impl<'a> ZstdFrames<'a> {
    fn new(raw: Box<dyn Read + 'a>) -> Self {
        Self {
            input: Shared(Rc::new(RefCell::new(BufReader::with_capacity(
                INPUT_BUFFER_BYTES,
                raw,
            )))),
            frame: None,
        }
    }

    /// Start the next frame; `false` at the end of the input.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.input.0.borrow_mut().fill_buf()?.is_empty() {
                return Ok(false);
            }
            match StreamingDecoder::new_with_max_window_size(
                self.input.clone(),
                MAX_ZSTD_WINDOW_BYTES,
            ) {
                Ok(frame) => {
                    self.frame = Some(frame);
                    return Ok(true);
                }
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = io::copy(
                        &mut (&mut self.input).take(u64::from(length)),
                        &mut io::sink(),
                    )?;
                    if skipped < u64::from(length) {
                        return Err(invalid("a skippable zstd frame is cut short"));
                    }
                }
                Err(FrameDecoderError::WindowSizeTooBig { requested, max }) => {
                    return Err(invalid(format!(
                        "a zstd frame needs a {requested}-byte window, over the {max} bytes this connector decodes with"
                    )))
                }
                Err(err) => return Err(invalid(format!("not zstd: {err}"))),
            }
        }
    }
}

impl Read for ZstdFrames<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(frame) = &mut self.frame {
                let n = frame.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                let decoder = self.frame.take().map(StreamingDecoder::into_frame_decoder);
                if decoder.is_some_and(|d| !d.is_finished()) {
                    return Err(invalid("the zstd data ends inside a frame"));
                }
            }
            if !self.next_frame()? {
                return Ok(0);
            }
        }
    }
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(compression: Compression, bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        compression
            .decoder(Box::new(io::Cursor::new(bytes)))
            .read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn every_compression_round_trips_and_reads_all_its_members() {
        let (a, b) = (b"first member\n".repeat(1000), b"second\n".repeat(10));
        for compression in [
            Compression::Gzip,
            Compression::Zstd,
            Compression::Bzip2,
            Compression::None,
        ] {
            let mut both = compression.encode(&a).unwrap();
            assert_eq!(
                Compression::by_magic(&both),
                compression,
                "{compression:?}: magic bytes"
            );
            both.extend(compression.encode(&b).unwrap());
            let expected = [a.clone(), b.clone()].concat();
            assert_eq!(
                decode(compression, both).unwrap(),
                expected,
                "{compression:?}"
            );
        }
    }

    #[test]
    fn truncated_or_corrupt_data_is_an_error_not_a_short_read() {
        let data = b"{\"n\":1}\n".repeat(5000);
        for compression in [Compression::Gzip, Compression::Zstd, Compression::Bzip2] {
            let whole = compression.encode(&data).unwrap();
            let cut = whole[..whole.len() / 2].to_vec();
            assert!(
                decode(compression, cut).is_err(),
                "{compression:?}: truncated"
            );
            let mut flipped = whole.clone();
            let middle = flipped.len() / 2;
            flipped[middle] ^= 0xff;
            // gzip and bzip2 carry a CRC; a zstd frame without a checksum
            // may decode to other bytes, which the format's parser then meets.
            match (compression, decode(compression, flipped)) {
                (_, Err(_)) => {}
                (Compression::Zstd, Ok(decoded)) => assert_ne!(decoded, data),
                (_, Ok(_)) => panic!("{compression:?}: a corrupt byte went unnoticed"),
            }
        }
    }

    #[test]
    fn extensions_and_magic_bytes_name_the_compression() {
        assert_eq!(
            Compression::by_extension("a.csv.gz"),
            (Compression::Gzip, "a.csv")
        );
        assert_eq!(
            Compression::by_extension("a.ndjson.zst"),
            (Compression::Zstd, "a.ndjson")
        );
        assert_eq!(
            Compression::by_extension("a.json.bz2"),
            (Compression::Bzip2, "a.json")
        );
        assert_eq!(
            Compression::by_extension("a.csv"),
            (Compression::None, "a.csv")
        );
        assert_eq!(Compression::by_magic(b"BZh9rest"), Compression::Bzip2);
        assert_eq!(Compression::by_magic(b"BZhx"), Compression::None);
        assert_eq!(Compression::by_magic(b"{\"a\":1}"), Compression::None);
    }
}
