//! Writing an object: one PUT, or a multipart upload that is completed only
//! when everything arrived and aborted on any failure, so a failed write
//! leaves no object (and no billed parts) behind.

use std::io::{self, Write};

use sha2::{Digest, Sha256};
use sluice_sdk::{ConnectorError, Result};

use super::{s3_error, xml, Object};

/// An object being written; nothing is visible until [`Upload::finish`].
pub struct Upload {
    object: Object,
    part_size: usize,
    buffer: Vec<u8>,
    /// Set once the multipart upload was created.
    upload_id: Option<String>,
    /// Part numbers and ETags uploaded so far.
    parts: Vec<(u32, String)>,
    finished: bool,
}

impl Upload {
    pub(super) fn new(object: Object, part_size: u64) -> Self {
        Self {
            object,
            part_size: usize::try_from(part_size).unwrap_or(usize::MAX),
            buffer: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
            finished: false,
        }
    }

    /// Make the object visible: one PUT when it fits in a part, else the
    /// last part and the completion of the multipart upload.
    ///
    /// # Errors
    ///
    /// As S3 answered; the multipart upload is aborted first.
    pub fn finish(mut self) -> Result<()> {
        if self.upload_id.is_none() {
            let body = std::mem::take(&mut self.buffer);
            self.put(&body)?;
            self.finished = true;
            return Ok(());
        }
        if !self.buffer.is_empty() || self.parts.is_empty() {
            self.upload_part()?;
        }
        self.complete()?;
        self.finished = true;
        Ok(())
    }

    fn put(&self, body: &[u8]) -> Result<()> {
        let hash = sha256_hex(body);
        let response = self
            .object
            .send("PUT", "", &[("x-amz-content-sha256", &hash)], Some(body))?
            .into_response()?;
        if response.status != 200 {
            return Err(self.failed(&response));
        }
        Ok(())
    }

    fn upload_part(&mut self) -> Result<()> {
        if self.upload_id.is_none() {
            let response = self
                .object
                .send("POST", "uploads=", &[], Some(b""))?
                .into_response()?;
            if response.status != 200 {
                return Err(self.failed(&response));
            }
            let found = xml::elements(&response.body).map_err(|e| self.not_xml(&e))?;
            let id = xml::first(&found, "InitiateMultipartUploadResult/UploadId")
                .filter(|id| !id.is_empty())
                .ok_or_else(|| self.not_xml("no UploadId"))?;
            self.upload_id = Some(id.to_string());
        }
        let number = self.parts.len() as u32 + 1;
        let query = format!(
            "partNumber={number}&uploadId={}",
            sluice_sdk::http::encode_component(self.upload_id.as_deref().unwrap_or_default())
        );
        let body = std::mem::take(&mut self.buffer);
        let hash = sha256_hex(&body);
        let response = self
            .object
            .send(
                "PUT",
                &query,
                &[("x-amz-content-sha256", &hash)],
                Some(&body),
            )?
            .into_response()?;
        if response.status != 200 {
            return Err(self.failed(&response));
        }
        let etag = response
            .header("etag")
            .ok_or_else(|| {
                ConnectorError::Unavailable(format!(
                    "S3 accepted part {number} of `{}` without an ETag",
                    self.object.name
                ))
            })?
            .to_string();
        self.parts.push((number, etag));
        Ok(())
    }

    fn complete(&mut self) -> Result<()> {
        let mut body = String::from("<CompleteMultipartUpload>");
        for (number, etag) in &self.parts {
            body.push_str(&format!(
                "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
                escape(etag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        let query = format!(
            "uploadId={}",
            sluice_sdk::http::encode_component(self.upload_id.as_deref().unwrap_or_default())
        );
        let response = self
            .object
            .send(
                "POST",
                &query,
                &[("content-type", "application/xml")],
                Some(body.as_bytes()),
            )?
            .into_response()?;
        // S3 can answer 200 and still fail, with an `<Error>` body.
        let failed_late = xml::elements(&response.body)
            .map(|found| xml::first(&found, "Error/Code").is_some())
            .unwrap_or(false);
        if response.status != 200 || failed_late {
            return Err(self.failed(&response));
        }
        // Completed: nothing is left to abort.
        self.upload_id = None;
        Ok(())
    }

    /// Abort the multipart upload, if one was started and not completed.
    fn abort(&mut self) {
        let Some(id) = self.upload_id.take() else {
            return;
        };
        let query = format!("uploadId={}", sluice_sdk::http::encode_component(&id));
        // Best effort: the write already failed with its own error.
        if let Ok(response) = self.object.send("DELETE", &query, &[], None) {
            let _ = response.into_response();
        }
    }

    fn failed(&self, response: &sluice_sdk::http::Response) -> ConnectorError {
        s3_error(&self.object.name, &self.object.origin(), response)
    }

    fn not_xml(&self, why: &str) -> ConnectorError {
        ConnectorError::Unavailable(format!(
            "S3's answer about the upload of `{}` is not what S3 sends: {why}",
            self.object.name
        ))
    }
}

impl Write for Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= self.part_size {
            self.upload_part().map_err(io::Error::other)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.finished {
            self.abort();
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Text for an XML element.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
