//! Files on SSH servers by grant name (SFTP). The host holds the login and
//! pins the server's host key; a connector names a grant and paths relative
//! to its root, and never sees the key or the server's address.
//!
//! [`Session::open`] connects through a grant; every call returns a typed
//! [`ConnectorError`] (`denied`, `not-found`, `unavailable`, `timeout`).
//! [`FileReader`] reads a file as [`std::io::Read`] from any offset, and
//! [`Upload`] writes one as [`std::io::Write`]: the bytes go to a temporary
//! name, renamed over the target by [`Upload::finish`]; an upload dropped
//! unfinished leaves nothing behind.
//!
//! ```no_run
//! # fn copy() -> sluice_sdk::Result<()> {
//! use std::io::Read;
//! let session = sluice_sdk::sftp::Session::open("drop")?;
//! let mut text = String::new();
//! sluice_sdk::sftp::FileReader::open(&session, "in/orders.csv", 0)?
//!     .read_to_string(&mut text)
//!     .map_err(|e| sluice_sdk::io_error("in/orders.csv", e))?;
//! # Ok(())
//! # }
//! ```

use std::io;

pub use crate::bindings::sluice::connector::sftp::{Entry, Reader, Session, Upload as HostUpload};
use crate::{ConnectorError, Result};

/// Bytes asked of the host per read.
const READ_CHUNK: u32 = 1 << 20;

/// Bytes buffered before they are sent to the host.
const WRITE_CHUNK: usize = 1 << 20;

/// A file read as [`io::Read`] from an offset, a megabyte per host call.
/// An error reaches the caller as an [`io::Error`] carrying the typed
/// [`ConnectorError`] (which [`crate::io_error`] gives back).
pub struct FileReader {
    reader: Reader,
    offset: u64,
    buffer: Vec<u8>,
    at: usize,
    done: bool,
}

impl FileReader {
    /// Open `path` and read from `offset` on.
    ///
    /// # Errors
    ///
    /// As the host's `open-read`.
    pub fn open(session: &Session, path: &str, offset: u64) -> Result<Self> {
        Ok(Self {
            reader: session.open_read(path)?,
            offset,
            buffer: Vec::new(),
            at: 0,
            done: false,
        })
    }

    /// Exactly `len` bytes from `offset`, or fewer when the file ends first.
    ///
    /// # Errors
    ///
    /// As the host's `read`.
    pub fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        while (bytes.len() as u64) < len {
            let want = (len - bytes.len() as u64).min(u64::from(4u32 << 20)) as u32;
            let chunk = self.reader.read(offset + bytes.len() as u64, want)?;
            if chunk.is_empty() {
                break;
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

impl io::Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buffer.len() && !self.done {
            self.buffer = self
                .reader
                .read(self.offset, READ_CHUNK)
                .map_err(io::Error::other)?;
            self.offset += self.buffer.len() as u64;
            self.at = 0;
            self.done = self.buffer.is_empty();
        }
        let n = buf.len().min(self.buffer.len() - self.at);
        buf[..n].copy_from_slice(&self.buffer[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A file written as [`io::Write`], a megabyte per host call, that appears
/// under its name only when [`Upload::finish`] succeeds.
pub struct Upload {
    upload: Option<HostUpload>,
    buffer: Vec<u8>,
}

impl Upload {
    /// Start writing `path` (the grant must be read-write).
    ///
    /// # Errors
    ///
    /// As the host's `create`.
    pub fn create(session: &Session, path: &str) -> Result<Self> {
        Ok(Self {
            upload: Some(session.create(path)?),
            buffer: Vec::with_capacity(WRITE_CHUNK),
        })
    }

    fn send(&mut self) -> Result<()> {
        if let (Some(upload), false) = (&self.upload, self.buffer.is_empty()) {
            upload.write(&self.buffer)?;
        }
        self.buffer.clear();
        Ok(())
    }

    /// Send what is buffered and rename the file into place: the bytes written.
    ///
    /// # Errors
    ///
    /// As the host's `write` and `finish`; the temporary file is removed then.
    pub fn finish(mut self) -> Result<u64> {
        self.send()?;
        let upload = self
            .upload
            .take()
            .ok_or_else(|| ConnectorError::Internal("upload finished twice".into()))?;
        HostUpload::finish(upload)
    }
}

impl io::Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= WRITE_CHUNK {
            self.send().map_err(io::Error::other)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send().map_err(io::Error::other)
    }
}
