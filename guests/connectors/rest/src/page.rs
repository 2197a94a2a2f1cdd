//! Pagination strategies and the opaque positions (cursors, checkpoints) that walk them.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_sdk::{http, link, ConnectorError, Result};

const DEFAULT_PAGE_SIZE: u32 = 100;

fn default_page_size() -> u32 {
    DEFAULT_PAGE_SIZE
}
fn offset_param() -> String {
    "offset".into()
}
fn limit_param() -> String {
    "limit".into()
}
fn page_param() -> String {
    "page".into()
}
fn per_page_param() -> String {
    "per_page".into()
}
fn cursor_param() -> String {
    "cursor".into()
}
fn first_page() -> u64 {
    1
}

/// How a resource's pages are walked.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Pagination {
    /// One response holds everything.
    #[default]
    None,
    /// `?offset=N&limit=M`.
    Offset {
        #[serde(default = "offset_param")]
        offset_param: String,
        #[serde(default = "limit_param")]
        limit_param: String,
        #[serde(default = "default_page_size")]
        page_size: u32,
    },
    /// `?page=N&per_page=M`, pages counted from `first_page` (default 1).
    Page {
        #[serde(default = "page_param")]
        page_param: String,
        #[serde(default = "per_page_param")]
        size_param: String,
        #[serde(default = "first_page")]
        first_page: u64,
        #[serde(default = "default_page_size")]
        page_size: u32,
    },
    /// The next token comes from a JSON pointer or a header and goes back as `cursor_param`.
    Cursor {
        #[serde(default = "cursor_param")]
        cursor_param: String,
        next_pointer: Option<String>,
        next_header: Option<String>,
        size_param: Option<String>,
        #[serde(default = "default_page_size")]
        page_size: u32,
    },
    /// RFC 8288 `Link: <url>; rel="next"`.
    Link {
        size_param: Option<String>,
        #[serde(default = "default_page_size")]
        page_size: u32,
    },
}

/// Where the next page starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Position {
    /// The first page.
    Start,
    /// An item offset.
    Offset(u64),
    /// A page number.
    Page(u64),
    /// An upstream cursor token.
    Cursor(String),
    /// A full URL from a `Link` header.
    Url(String),
    /// Past the last page.
    End,
    /// The walk cannot go on past here, and why: asking for this position
    /// fails with `unavailable` (the records before it were delivered).
    Stuck(String),
}

impl Position {
    /// Opaque text for `next-cursor` and checkpoints.
    pub fn encode(&self) -> String {
        let body = match self {
            Position::Start => json!({ "start": true }),
            Position::Offset(n) => json!({ "offset": n }),
            Position::Page(n) => json!({ "page": n }),
            Position::Cursor(c) => json!({ "cursor": c }),
            Position::Url(u) => json!({ "url": u }),
            Position::End => json!({ "end": true }),
            Position::Stuck(why) => json!({ "stuck": why }),
        };
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body.to_string())
    }

    /// Decode [`Position::encode`] text.
    pub fn decode(text: &str) -> Result<Self> {
        let bad = || {
            ConnectorError::InvalidRequest(format!(
                "cursor/checkpoint `{text}` was not issued by the rest connector"
            ))
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| bad())?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        Ok(if body["start"] == true {
            Position::Start
        } else if body["end"] == true {
            Position::End
        } else if let Some(n) = body["offset"].as_u64() {
            Position::Offset(n)
        } else if let Some(n) = body["page"].as_u64() {
            Position::Page(n)
        } else if let Some(c) = body["cursor"].as_str() {
            Position::Cursor(c.to_string())
        } else if let Some(u) = body["url"].as_str() {
            Position::Url(u.to_string())
        } else if let Some(why) = body["stuck"].as_str() {
            Position::Stuck(why.to_string())
        } else {
            return Err(bad());
        })
    }
}

/// The `rel="next"` target of a response's `Link` fields, resolved against
/// `url` (the request's). `None` when the response lists its links and none
/// is `next`.
///
/// # Errors
///
/// `unavailable` for a `Link` header that does not parse, and for a full
/// page that carries no `Link` header at all: ending there could drop
/// records without a word.
pub fn link_next(res: &http::Response, url: &str, full: bool) -> Result<Option<String>> {
    let fields = res.headers_named("link");
    if fields.is_empty() {
        if full {
            return Err(ConnectorError::Unavailable(format!(
                "a full page from {url} carries no `Link` header, so the walk cannot go on; stopping here instead of ending as if there were no more"
            )));
        }
        return Ok(None);
    }
    let links = link::parse(&fields).map_err(|why| {
        ConnectorError::Unavailable(format!(
            "the `Link` header from {url} does not parse: {why}"
        ))
    })?;
    Ok(links
        .into_iter()
        .find(|l| l.has_rel("next"))
        .map(|l| link::resolve(url, &l.target)))
}

impl Pagination {
    pub fn default_page_size(&self) -> u32 {
        match self {
            Pagination::None => DEFAULT_PAGE_SIZE,
            Pagination::Offset { page_size, .. }
            | Pagination::Page { page_size, .. }
            | Pagination::Cursor { page_size, .. }
            | Pagination::Link { page_size, .. } => *page_size,
        }
    }

    /// Query parameters that ask for the page at `position`.
    pub fn params(&self, position: &Position, page_size: u32) -> Vec<(String, String)> {
        let size = page_size.to_string();
        match (self, position) {
            (
                Pagination::Offset {
                    offset_param,
                    limit_param,
                    ..
                },
                _,
            ) => {
                let offset = if let Position::Offset(n) = position {
                    *n
                } else {
                    0
                };
                vec![
                    (offset_param.clone(), offset.to_string()),
                    (limit_param.clone(), size),
                ]
            }
            (
                Pagination::Page {
                    page_param,
                    size_param,
                    first_page,
                    ..
                },
                _,
            ) => {
                let page = if let Position::Page(n) = position {
                    *n
                } else {
                    *first_page
                };
                vec![
                    (page_param.clone(), page.to_string()),
                    (size_param.clone(), size),
                ]
            }
            (
                Pagination::Cursor {
                    cursor_param,
                    size_param,
                    ..
                },
                _,
            ) => {
                let mut params: Vec<(String, String)> = size_param
                    .iter()
                    .map(|p| (p.clone(), size.clone()))
                    .collect();
                if let Position::Cursor(token) = position {
                    params.push((cursor_param.clone(), token.clone()));
                }
                params
            }
            (Pagination::Link { size_param, .. }, _) => size_param
                .iter()
                .map(|p| (p.clone(), size.clone()))
                .collect(),
            (Pagination::None, _) => Vec::new(),
        }
    }

    /// The position of item `offset` (for `--offset`).
    pub fn at_offset(&self, offset: u64, page_size: u32) -> Result<Position> {
        match self {
            Pagination::Offset { .. } => Ok(Position::Offset(offset)),
            Pagination::Page { first_page, .. }
                if offset.is_multiple_of(u64::from(page_size.max(1))) =>
            {
                Ok(Position::Page(
                    first_page + offset / u64::from(page_size.max(1)),
                ))
            }
            Pagination::Page { .. } => Err(ConnectorError::Unsupported(
                "an offset that is not a multiple of the page size on a page-numbered API".into(),
            )),
            _ if offset == 0 => Ok(Position::Start),
            _ => Err(ConnectorError::Unsupported(
                "offset pagination on a cursor or link API; use the cursor".into(),
            )),
        }
    }

    /// Whether finding the next page reads inside the records at `records_path`
    /// (a cursor pointer into them), so the page must be parsed whole.
    pub fn reads_records(&self, records_path: &str) -> bool {
        match self {
            Pagination::Cursor {
                next_pointer: Some(pointer),
                ..
            } => pointer == records_path || pointer.starts_with(&format!("{records_path}/")),
            _ => false,
        }
    }

    /// The position after a page of `count` items.
    pub fn next(
        &self,
        position: &Position,
        count: usize,
        page_size: u32,
        body: &Value,
        res: &http::Response,
        url: &str,
    ) -> Result<Option<Position>> {
        let full = count as u64 >= u64::from(page_size) && count > 0;
        Ok(match self {
            Pagination::None => None,
            Pagination::Offset { .. } => {
                let at = if let Position::Offset(n) = position {
                    *n
                } else {
                    0
                };
                full.then(|| Position::Offset(at + count as u64))
            }
            Pagination::Page { first_page, .. } => {
                let at = if let Position::Page(n) = position {
                    *n
                } else {
                    *first_page
                };
                full.then(|| Position::Page(at + 1))
            }
            Pagination::Cursor {
                next_pointer,
                next_header,
                ..
            } => {
                let token = match (next_pointer, next_header) {
                    (Some(pointer), _) => body.pointer(pointer).and_then(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    }),
                    (None, Some(header)) => res.header(header).map(str::to_string),
                    (None, None) => {
                        return Err(ConnectorError::InvalidConfig(
                            "cursor pagination needs `next_pointer` or `next_header`".into(),
                        ))
                    }
                };
                token.filter(|t| !t.is_empty()).map(Position::Cursor)
            }
            // The records of this page are delivered; the walk then says why it stops.
            Pagination::Link { .. } => match link_next(res, url, full) {
                Ok(next) => next.map(Position::Url),
                Err(ConnectorError::Unavailable(why)) => Some(Position::Stuck(why)),
                Err(other) => return Err(other),
            },
        })
    }
}
