//! Objects in S3 and S3-compatible stores, reached through the http grant.
//!
//! The connector never holds credentials: the grant's `aws-sigv4` auth
//! makes the host sign every request after it left the guest. Reads are
//! ranged GETs of `read_chunk_bytes`, each streamed as it arrives (bounded
//! memory; a checkpoint resumes with a range from its byte); every GET after
//! the first carries `If-Match` with the object's ETag, so an object
//! replaced mid-read ends the read with an error instead of mixing two
//! versions. Writes go up in one PUT, or by multipart upload in parts of
//! `part_size_bytes`, aborted on any failure so no partial object appears.

mod error;
mod reader;
mod upload;
mod xml;

use std::sync::OnceLock;

use serde::Deserialize;
use sluice_sdk::http::{self, encode_component, StreamingResponse};
use sluice_sdk::{ConnectorError, Result};

pub use error::s3_error;
pub use upload::Upload;

use crate::format::Source;
use reader::ObjectReader;

/// How a bucket appears in URLs: `path` (`ENDPOINT/BUCKET/KEY`) or
/// `virtual-host` (`BUCKET.ENDPOINT-HOST/KEY`).
// No doc comments on the variants: with them, the derived schema would be a
// `oneOf` of constants, whose error names no allowed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Addressing {
    Path,
    VirtualHost,
}

/// S3 settings, used when `root` is an `s3://BUCKET/PREFIX` URL.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(default, deny_unknown_fields)]
pub struct S3Options {
    /// The S3 API endpoint, e.g. `http://127.0.0.1:9000` for an
    /// S3-compatible store. Default: AWS, `https://s3.REGION.amazonaws.com`.
    pub endpoint: Option<String>,
    /// The bucket's region, for AWS's default endpoint (the signature's
    /// region is the grant's). Default `us-east-1`.
    pub region: String,
    /// `path` or `virtual-host`. Default: `virtual-host` on AWS, `path`
    /// with an `endpoint`.
    #[cfg_attr(test, schemars(with = "Addressing"))]
    pub addressing: Option<Addressing>,
    /// Bytes per ranged GET while reading (default 8 MiB, at least 64 KiB).
    pub read_chunk_bytes: u64,
    /// Bytes per part of a multipart upload (default 8 MiB, at least 5 MiB,
    /// S3's minimum); a smaller object goes up in one PUT.
    pub part_size_bytes: u64,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: "us-east-1".into(),
            addressing: None,
            read_chunk_bytes: 8 << 20,
            part_size_bytes: 8 << 20,
        }
    }
}

/// S3's smallest part but the last.
const MIN_PART_BYTES: u64 = 5 << 20;
/// The smallest read chunk.
const MIN_READ_CHUNK_BYTES: u64 = 64 << 10;
/// Keys asked for per ListObjectsV2 page.
const LIST_PAGE_KEYS: u32 = 1000;

/// The bucket and prefix of an `s3://` root, and how to reach them.
#[derive(Debug, Clone)]
pub struct S3Store {
    scheme: &'static str,
    host: String,
    addressing: Addressing,
    bucket: String,
    prefix: String,
    read_chunk_bytes: u64,
    part_size_bytes: u64,
}

impl S3Store {
    /// The store for `root`, when it is an `s3://` URL.
    ///
    /// # Errors
    ///
    /// `invalid-config` naming the field for a bad bucket, endpoint or size.
    pub fn from_root(root: &str, options: &S3Options) -> Result<Option<Self>> {
        let Some(rest) = root.strip_prefix("s3://") else {
            return Ok(None);
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket)?;
        let endpoint = options
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", options.region));
        let (scheme, host) = if let Some(host) = endpoint.strip_prefix("https://") {
            ("https", host)
        } else if let Some(host) = endpoint.strip_prefix("http://") {
            ("http", host)
        } else {
            return Err(ConnectorError::InvalidConfig(format!(
                "field `s3.endpoint`: `{endpoint}` must start with http:// or https://"
            )));
        };
        let host = host.trim_end_matches('/');
        if host.is_empty() || host.contains(['/', '?', '#', '@']) {
            return Err(ConnectorError::InvalidConfig(format!(
                "field `s3.endpoint`: `{endpoint}` must be scheme://host[:port] only"
            )));
        }
        let addressing = options.addressing.unwrap_or(if options.endpoint.is_some() {
            Addressing::Path
        } else {
            Addressing::VirtualHost
        });
        if addressing == Addressing::VirtualHost && bucket.contains('.') && scheme == "https" {
            return Err(ConnectorError::InvalidConfig(format!(
                "field `root`: the bucket `{bucket}` has dots, which break TLS with virtual-host addressing; set `s3.addressing` to `path`"
            )));
        }
        if options.part_size_bytes < MIN_PART_BYTES {
            return Err(ConnectorError::InvalidConfig(format!(
                "field `s3.part_size_bytes`: at least {MIN_PART_BYTES} (S3's smallest part)"
            )));
        }
        if options.read_chunk_bytes < MIN_READ_CHUNK_BYTES {
            return Err(ConnectorError::InvalidConfig(format!(
                "field `s3.read_chunk_bytes`: at least {MIN_READ_CHUNK_BYTES}"
            )));
        }
        Ok(Some(Self {
            scheme,
            host: host.to_string(),
            addressing,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            read_chunk_bytes: options.read_chunk_bytes,
            part_size_bytes: options.part_size_bytes,
        }))
    }

    /// The object a resource names: an `s3://BUCKET/KEY` URL, or a key
    /// relative to the root's prefix.
    ///
    /// # Errors
    ///
    /// `invalid-request` for an empty key or a bad bucket.
    pub fn object(&self, resource: &str) -> Result<Object> {
        let (bucket, key) = match resource.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                check_bucket(bucket).map_err(|e| match e {
                    ConnectorError::InvalidConfig(m) => ConnectorError::InvalidRequest(m),
                    other => other,
                })?;
                (bucket.to_string(), key.to_string())
            }
            None => (self.bucket.clone(), self.join(resource)),
        };
        if key.is_empty() || key.ends_with('/') {
            return Err(ConnectorError::InvalidRequest(format!(
                "resource `{resource}` names no object (a key is needed, not a prefix)"
            )));
        }
        Ok(Object {
            store: self.clone(),
            name: format!("s3://{bucket}/{key}"),
            bucket,
            key,
            version: OnceLock::new(),
        })
    }

    fn join(&self, relative: &str) -> String {
        if self.prefix.is_empty() || self.prefix.ends_with('/') {
            format!("{}{relative}", self.prefix)
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }

    /// `scheme://authority` of a bucket.
    fn origin(&self, bucket: &str) -> String {
        match self.addressing {
            Addressing::Path => format!("{}://{}", self.scheme, self.host),
            Addressing::VirtualHost => format!("{}://{bucket}.{}", self.scheme, self.host),
        }
    }

    /// The URL of `key` in `bucket` (the bucket itself for an empty key),
    /// with `query` (already encoded) when not empty.
    fn url(&self, bucket: &str, key: &str, query: &str) -> String {
        let mut url = self.origin(bucket);
        if self.addressing == Addressing::Path {
            url.push('/');
            url.push_str(bucket);
        }
        url.push('/');
        url.push_str(
            &key.split('/')
                .map(encode_component)
                .collect::<Vec<_>>()
                .join("/"),
        );
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// Send a request about an object of this store.
    fn send(
        &self,
        method: &str,
        bucket: &str,
        key: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<StreamingResponse> {
        http::send(method, &self.url(bucket, key, query), headers, body)
    }

    /// Check that the bucket answers a listing of the prefix.
    ///
    /// # Errors
    ///
    /// As S3 answered (see [`s3_error`]).
    pub fn health_check(&self) -> Result<()> {
        self.list_page(None, 1).map(|_| ())
    }

    /// Every object under the prefix, as `s3://BUCKET/KEY`, in key order.
    ///
    /// # Errors
    ///
    /// As S3 answered (see [`s3_error`]); `unavailable` for a listing that
    /// is not S3's XML.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let page = self.list_page(token.as_deref(), LIST_PAGE_KEYS)?;
            names.extend(
                page.keys
                    .iter()
                    .filter(|key| !key.ends_with('/'))
                    .map(|key| format!("s3://{}/{key}", self.bucket)),
            );
            match page.next {
                Some(next) if page.truncated => token = Some(next),
                _ => return Ok(names),
            }
        }
    }

    /// One ListObjectsV2 page.
    fn list_page(&self, token: Option<&str>, max_keys: u32) -> Result<ListPage> {
        let mut query = format!(
            "list-type=2&max-keys={max_keys}&prefix={}",
            encode_component(&self.prefix)
        );
        if let Some(token) = token {
            query.push_str("&continuation-token=");
            query.push_str(&encode_component(token));
        }
        let name = format!("s3://{}/{}", self.bucket, self.prefix);
        let response = self
            .send("GET", &self.bucket, "", &query, &[], None)?
            .into_response()?;
        if response.status != 200 {
            return Err(s3_error(&name, &self.origin(&self.bucket), &response));
        }
        let found = xml::elements(&response.body).map_err(|e| {
            ConnectorError::Unavailable(format!("the listing of `{name}` is not S3's XML: {e}"))
        })?;
        let keys = found
            .iter()
            .filter(|(path, _)| path == "ListBucketResult/Contents/Key")
            .map(|(_, key)| key.clone())
            .collect();
        Ok(ListPage {
            keys,
            truncated: xml::first(&found, "ListBucketResult/IsTruncated") == Some("true"),
            next: xml::first(&found, "ListBucketResult/NextContinuationToken").map(str::to_string),
        })
    }
}

struct ListPage {
    keys: Vec<String>,
    truncated: bool,
    next: Option<String>,
}

/// Bucket names as S3 allows them: 3–63 of `a-z 0-9 . -`.
fn check_bucket(bucket: &str) -> Result<()> {
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(ConnectorError::InvalidConfig(format!(
            "field `root`: `{bucket}` is not a bucket name (3 to 63 of a-z, 0-9, `.` and `-`)"
        )))
    }
}

/// One object.
#[derive(Debug, Clone)]
pub struct Object {
    store: S3Store,
    bucket: String,
    key: String,
    name: String,
    /// The ETag of the version that [`Source::size`] and
    /// [`Source::read_range`] read, once one of them learnt it: later
    /// ranges ask for that version only.
    version: OnceLock<String>,
}

impl Object {
    fn send(
        &self,
        method: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<StreamingResponse> {
        self.store
            .send(method, &self.bucket, &self.key, query, headers, body)
    }

    fn origin(&self) -> String {
        self.store.origin(&self.bucket)
    }

    /// The object's size and ETag from a HEAD.
    fn size_by_head(&self) -> Result<(u64, Option<String>)> {
        let response = self.send("HEAD", "", &[], None)?.into_response()?;
        if response.status != 200 {
            return Err(s3_error(&self.name, &self.origin(), &response));
        }
        let size = response
            .header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                ConnectorError::Unavailable(format!(
                    "S3 answered a HEAD of `{}` without its length",
                    self.name
                ))
            })?;
        Ok((size, response.header("etag").map(str::to_string)))
    }

    /// Delete the object (S3 answers alike whether or not it existed).
    ///
    /// # Errors
    ///
    /// As S3 answered (see [`s3_error`]).
    pub fn delete(&self) -> Result<()> {
        let response = self.send("DELETE", "", &[], None)?.into_response()?;
        if !matches!(response.status, 200 | 204) {
            return Err(s3_error(&self.name, &self.origin(), &response));
        }
        Ok(())
    }

    /// A multipart-capable upload that replaces this object when finished.
    pub fn upload(&self) -> Upload {
        Upload::new(self.clone(), self.store.part_size_bytes)
    }
}

impl Source for Object {
    fn name(&self) -> &str {
        &self.name
    }

    fn head(&self, len: usize) -> Result<Vec<u8>> {
        let mut head = vec![0; len];
        let mut reader = ObjectReader::new(self.clone(), 0, len as u64)?;
        let n = crate::format::read_up_to(&mut reader, &mut head)
            .map_err(|e| sluice_sdk::io_error(&self.name, e))?;
        head.truncate(n);
        Ok(head)
    }

    fn open_at(&self, offset: u64) -> Result<Box<dyn std::io::Read>> {
        Ok(Box::new(ObjectReader::new(
            self.clone(),
            offset,
            self.store.read_chunk_bytes,
        )?))
    }

    fn size(&self) -> Result<u64> {
        let (size, etag) = self.size_by_head()?;
        if let Some(etag) = etag {
            let _ = self.version.set(etag);
        }
        Ok(size)
    }

    fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut reader = ObjectReader::of_version(
            self.clone(),
            offset..offset.saturating_add(len),
            self.store.read_chunk_bytes,
            self.version.get().cloned(),
        )?;
        let bytes = crate::format::read_exactly(&self.name, &mut reader, offset, len)?;
        if let Some(etag) = reader.etag() {
            let _ = self.version.set(etag.to_string());
        }
        Ok(bytes)
    }

    fn clone_box(&self) -> Box<dyn Source> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(root: &str, options: S3Options) -> Result<S3Store> {
        S3Store::from_root(root, &options).map(|store| store.expect("an s3:// root"))
    }

    #[test]
    fn keys_become_path_style_or_virtual_host_urls() {
        let local = S3Options {
            endpoint: Some("http://127.0.0.1:9000/".into()),
            ..S3Options::default()
        };
        let path_style = store("s3://my-bucket/data", local).unwrap();
        let object = path_style.object("a b/c+d.csv").unwrap();
        assert_eq!(object.name, "s3://my-bucket/data/a b/c+d.csv");
        assert_eq!(
            path_style.url(&object.bucket, &object.key, ""),
            "http://127.0.0.1:9000/my-bucket/data/a%20b/c%2Bd.csv"
        );
        assert_eq!(
            path_style.object("s3://other/k").unwrap().name,
            "s3://other/k",
            "an s3:// resource names its own bucket"
        );
        let aws = S3Options {
            region: "eu-west-1".into(),
            ..S3Options::default()
        };
        let aws = store("s3://my-bucket", aws).unwrap();
        assert_eq!(
            aws.url("my-bucket", "k.csv", "x=1"),
            "https://my-bucket.s3.eu-west-1.amazonaws.com/k.csv?x=1"
        );
        assert!(S3Store::from_root("/data", &S3Options::default())
            .unwrap()
            .is_none());
    }

    #[test]
    fn bad_settings_name_their_field() {
        let field_of = |root: &str, options: S3Options| match store(root, options) {
            Err(ConnectorError::InvalidConfig(m)) => m,
            other => panic!("{root}: expected invalid-config, got {other:?}"),
        };
        assert!(field_of("s3://No_Caps", S3Options::default()).contains("`root`"));
        assert!(field_of("s3://a.b.c", S3Options::default()).contains("s3.addressing"));
        let small = S3Options {
            part_size_bytes: 1 << 20,
            ..S3Options::default()
        };
        assert!(field_of("s3://bucket", small).contains("s3.part_size_bytes"));
        let with_path = S3Options {
            endpoint: Some("http://h:1/base".into()),
            ..S3Options::default()
        };
        assert!(field_of("s3://bucket", with_path).contains("s3.endpoint"));
        let prefixed = store("s3://bucket/p/", S3Options::default()).unwrap();
        assert!(matches!(
            prefixed.object("dir/"),
            Err(ConnectorError::InvalidRequest(_))
        ));
    }
}
