//! Reading an object as a stream of ranged GETs.

use std::io::{self, Read};

use sluice_sdk::http::BodyReader;
use sluice_sdk::{ConnectorError, Result};

use super::{s3_error, Object};
use crate::format::past_end;

/// An object's bytes from some offset on, fetched `chunk` bytes per GET as
/// they are read.
pub struct ObjectReader {
    object: Object,
    pos: u64,
    /// Where reading stops (the end of the range asked for, or `u64::MAX`).
    end: u64,
    chunk: u64,
    /// The object's size, once an answer said it.
    size: Option<u64>,
    /// The ETag of the version being read: later ranges must be of it.
    etag: Option<String>,
    body: Option<BodyReader>,
}

impl ObjectReader {
    /// Start reading `object` at `offset`; the first range is requested at
    /// once, so a missing object, a refusal or an offset past the end is
    /// an error here.
    pub fn new(object: Object, offset: u64, chunk: u64) -> Result<Self> {
        Self::of_version(object, offset..u64::MAX, chunk, None)
    }

    /// [`ObjectReader::new`] for the bytes of `range` only (no GET asks for
    /// more), of the version with `etag` when given (a replaced object is
    /// then an error from the first range on).
    pub fn of_version(
        object: Object,
        range: std::ops::Range<u64>,
        chunk: u64,
        etag: Option<String>,
    ) -> Result<Self> {
        let mut reader = Self {
            object,
            pos: range.start,
            end: range.end,
            chunk: chunk.max(1),
            size: None,
            etag,
            body: None,
        };
        reader.next_range()?;
        Ok(reader)
    }

    /// Request the range from `pos`: on return either a body is waiting or
    /// the size is known to end at `pos`.
    fn next_range(&mut self) -> Result<()> {
        let name = self.object.name.clone();
        let last = self.pos.saturating_add(self.chunk).min(self.end) - 1;
        let range = format!("bytes={}-{last}", self.pos);
        let mut headers = vec![("range", range.as_str())];
        if let Some(etag) = &self.etag {
            headers.push(("if-match", etag.as_str()));
        }
        let response = self.object.send("GET", "", &headers, None)?;
        match response.status {
            206 => {
                let total = response
                    .header("content-range")
                    .and_then(total_of)
                    .ok_or_else(|| {
                        ConnectorError::Unavailable(format!(
                            "S3 answered a range of `{name}` without a usable Content-Range"
                        ))
                    })?;
                self.size = Some(total);
                if self.etag.is_none() {
                    self.etag = response.header("etag").map(str::to_string);
                }
                self.body = Some(response.body);
                Ok(())
            }
            // The whole object: only usable from its start.
            200 if self.pos == 0 => {
                self.size = response
                    .header("content-length")
                    .and_then(|v| v.trim().parse().ok());
                self.etag = response.header("etag").map(str::to_string);
                self.body = Some(response.body);
                // Whatever its length, this body is the rest of the object.
                self.chunk = u64::MAX / 2;
                Ok(())
            }
            200 => Err(ConnectorError::Unavailable(format!(
                "the server ignored the byte range asked of `{name}`, so it cannot be read from byte {}",
                self.pos
            ))),
            416 => {
                let size = match response.header("content-range").and_then(total_of) {
                    Some(size) => size,
                    None => self.object.size_by_head()?.0,
                };
                if self.pos > size {
                    return Err(past_end(&name, self.pos, size));
                }
                // Exactly at the end (or an empty object): nothing is left.
                self.size = Some(size);
                Ok(())
            }
            412 => Err(ConnectorError::Unavailable(format!(
                "`{name}` was replaced while it was being read (its ETag changed); read it again from the start"
            ))),
            _ => Err(s3_error(
                &name,
                &self.object.origin(),
                &response.into_response()?,
            )),
        }
    }
}

impl ObjectReader {
    /// The ETag of the version read, once an answer said it.
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.pos).unwrap_or(usize::MAX);
        let wanted = buf.len().min(left);
        let buf = &mut buf[..wanted];
        loop {
            if let Some(body) = &mut self.body {
                let n = body.read(buf)?;
                if n > 0 || buf.is_empty() {
                    self.pos += n as u64;
                    return Ok(n);
                }
                self.body = None;
                if self.size.is_none() {
                    // A whole-object answer without a length ends the object.
                    self.size = Some(self.pos);
                }
            }
            if self.pos >= self.end || self.size.is_some_and(|size| self.pos >= size) {
                return Ok(0);
            }
            self.next_range().map_err(io::Error::other)?;
        }
    }
}

/// The total size in a `Content-Range` of `bytes A-B/TOTAL` or `bytes */TOTAL`.
fn total_of(content_range: &str) -> Option<u64> {
    content_range.rsplit_once('/')?.1.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::total_of;

    #[test]
    fn content_range_totals() {
        assert_eq!(total_of("bytes 0-9/443"), Some(443));
        assert_eq!(total_of("bytes */443"), Some(443));
        assert_eq!(total_of("bytes 0-9/*"), None);
    }
}
