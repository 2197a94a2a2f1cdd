//! The `rest` connector: JSON APIs described by config.
//!
//! Each resource names a path, the JSON pointer of its records, an id field,
//! a pagination strategy (offset/limit, page/per_page, cursor from a JSON
//! pointer or a header, RFC 8288 `Link: rel="next"`) and which filters map to
//! which query parameters. An unmapped filter is `unsupported`, never
//! silently ignored. Rate limits, retries, breakers and credentials are the
//! host's business (the http grant); this connector only understands the API.

mod page;
mod raw;

use std::collections::BTreeMap;

use page::{Pagination, Position};
use serde::Deserialize;
use serde_json::Value;
use sluice_sdk::{
    config, http, query, Batch, Capabilities, Connector, ConnectorError, Descriptor,
    ExecuteRequest, ExecuteResponse, FetchRequest, FetchResponse, Record, RecordBuilder,
    RecordStream, ResourceInfo, Result, Session,
};

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct Config {
    /// `scheme://host[:port][/prefix]`, no trailing slash needed.
    base_url: String,
    /// Headers sent with every request.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Resources by name.
    resources: BTreeMap<String, Resource>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct Resource {
    /// Path below `base_url`, e.g. `/v1/users`.
    path: String,
    /// HTTP method of reads. Default GET.
    #[serde(default = "default_method")]
    method: String,
    /// JSON pointer of the record array in a response (`""` = the body itself).
    #[serde(default)]
    records_path: String,
    /// Field holding each record's id.
    id_field: Option<String>,
    /// How pages are walked.
    #[serde(default)]
    pagination: Pagination,
    /// Record field → query parameter, for `eq` filters.
    #[serde(default)]
    filters: BTreeMap<String, String>,
    /// Query parameter taking the comma-separated field selection, if the API has one.
    fields_param: Option<String>,
}

fn default_method() -> String {
    "GET".into()
}

struct Rest;

struct RestSession {
    config: Config,
}

impl Connector for Rest {
    type Session = RestSession;

    fn describe() -> Descriptor {
        sluice_sdk::descriptor(
            "rest",
            env!("CARGO_PKG_VERSION"),
            "JSON REST APIs: configured resources, pagination and filter mapping",
        )
        .config_schema_text(include_str!("../config.schema.json"))
        .capabilities(Capabilities {
            streaming: true,
            pagination: true,
            filtering: true,
            sorting: false,
            aggregation: false,
            transactions: false,
            max_page_size: None,
        })
        .build()
    }

    fn open(config_json: &str) -> Result<RestSession> {
        let config: Config = config::parse(config_json)?;
        if !config.base_url.starts_with("http://") && !config.base_url.starts_with("https://") {
            return Err(ConnectorError::InvalidConfig(
                "field `base_url`: must start with http:// or https://".into(),
            ));
        }
        for (name, resource) in &config.resources {
            if !resource.records_path.is_empty() && !resource.records_path.starts_with('/') {
                return Err(ConnectorError::InvalidConfig(format!(
                    "field `resources.{name}.records_path`: a JSON pointer starts with `/`"
                )));
            }
        }
        Ok(RestSession { config })
    }
}

impl RestSession {
    fn resource(&self, name: &str) -> Result<&Resource> {
        self.config.resources.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.config.resources.keys().map(String::as_str).collect();
            ConnectorError::NotFound(format!(
                "no resource `{name}` (configured: {})",
                known.join(", ")
            ))
        })
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        let mut headers: Vec<(&str, &str)> = self
            .config
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if !self
            .config
            .headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("accept"))
        {
            headers.push(("accept", "application/json"));
        }
        headers
    }

    fn send(&self, method: &str, url: &str, body: Option<&[u8]>) -> Result<http::Response> {
        let mut headers = self.headers();
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        http::request(method, url, &headers, body)?.error_for_status()
    }

    /// Query parameters for the request's filters and fields.
    fn request_params(resource: &Resource, req: &FetchRequest) -> Result<Vec<(String, String)>> {
        let mut params: Vec<(String, String)> =
            query::mapped_equalities(&req.filters, &resource.filters)?
                .into_iter()
                .map(|(param, value)| (param, query::value_text(&value)))
                .collect();
        if let (Some(param), false) = (&resource.fields_param, req.fields.is_empty()) {
            params.push((param.clone(), req.fields.join(",")));
        }
        if !req.sort.is_empty() {
            return Err(ConnectorError::Unsupported(
                "sorting: the rest connector does not sort".into(),
            ));
        }
        Ok(params)
    }

    /// Fetch one page at `position`; returns the records and the next position.
    fn page(
        &self,
        resource: &Resource,
        req: &FetchRequest,
        position: &Position,
        page_size: u32,
    ) -> Result<(Vec<Record>, Option<Position>)> {
        if *position == Position::End {
            return Ok((Vec::new(), None));
        }
        if let Position::Stuck(why) = position {
            return Err(ConnectorError::Unavailable(why.clone()));
        }
        let base = format!(
            "{}{}",
            self.config.base_url.trim_end_matches('/'),
            resource.path
        );
        let mut params = Self::request_params(resource, req)?;
        let url = match position {
            Position::Url(url) => url.clone(),
            other => {
                params.extend(resource.pagination.params(other, page_size));
                http::with_query(&base, &params)
            }
        };
        let res = self.send(&resource.method, &url, None)?;
        // Whole records pass on as the upstream wrote them, never parsed into
        // values and printed again, when nothing needs their values.
        if req.fields.is_empty() && !resource.pagination.reads_records(&resource.records_path) {
            if let Some((body, items)) = raw::split(&res.body, &resource.records_path) {
                let id_field = resource.id_field.as_deref();
                let records = items
                    .iter()
                    .map(|item| raw::record(item, id_field))
                    .collect();
                let next = resource.pagination.next(
                    position,
                    items.len(),
                    page_size,
                    &body,
                    &res,
                    &url,
                )?;
                return Ok((records, next));
            }
        }
        let body: Value = serde_json::from_slice(&res.body)
            .map_err(|e| ConnectorError::Unavailable(format!("upstream sent invalid JSON: {e}")))?;
        let items = body
            .pointer(&resource.records_path)
            .and_then(Value::as_array)
            .ok_or_else(|| {
                // The upstream answered 2xx with JSON: the pointer is what is wrong.
                let keys = body
                    .as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default();
                ConnectorError::InvalidConfig(format!(
                    "field `records_path`: no record array at `{}` in the upstream response (top-level keys: {keys})",
                    resource.records_path
                ))
            })?;
        let records: Vec<Record> = items
            .iter()
            .map(|item| query::api_record(item, &req.fields, resource.id_field.as_deref()))
            .collect();
        let next = resource
            .pagination
            .next(position, items.len(), page_size, &body, &res, &url)?;
        Ok((records, next))
    }
}

impl Session for RestSession {
    fn discover(&self) -> Result<Vec<ResourceInfo>> {
        Ok(self
            .config
            .resources
            .keys()
            .map(|name| ResourceInfo {
                name: name.clone(),
                schema: None,
            })
            .collect())
    }

    fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        let resource = self.resource(&req.resource)?;
        let page_size = req
            .pagination
            .as_ref()
            .map_or(resource.pagination.default_page_size(), |p| p.page_size);
        let position = match req.pagination.as_ref() {
            Some(p) if p.cursor.is_some() => {
                Position::decode(p.cursor.as_deref().unwrap_or_default())?
            }
            Some(p) if p.offset.is_some() => resource
                .pagination
                .at_offset(p.offset.unwrap_or(0), page_size)?,
            _ => Position::Start,
        };
        let (records, next) = self.page(resource, &req, &position, page_size)?;
        Ok(FetchResponse {
            records,
            total_count: None,
            next_cursor: next.map(|n| n.encode()),
        })
    }

    fn stream(
        &self,
        req: FetchRequest,
        checkpoint: Option<String>,
    ) -> Result<Box<dyn RecordStream>> {
        let resource = self.resource(&req.resource)?.clone();
        Self::request_params(&resource, &req)?;
        let position = match checkpoint {
            Some(text) => Some(Position::decode(&text)?),
            None => Some(Position::Start),
        };
        Ok(Box::new(RestStream {
            session: RestSession {
                config: self.config.clone(),
            },
            page_size: resource.pagination.default_page_size(),
            resource,
            req,
            position,
        }))
    }

    fn execute(&self, req: ExecuteRequest) -> Result<ExecuteResponse> {
        let resource = self.resource(&req.resource)?;
        let method = req.operation.to_ascii_uppercase();
        if !matches!(method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE") {
            return Err(ConnectorError::Unsupported(format!(
                "operation `{}`; use post, put, patch or delete",
                req.operation
            )));
        }
        let base = format!(
            "{}{}",
            self.config.base_url.trim_end_matches('/'),
            resource.path
        );
        let mut records = Vec::new();
        for (i, record) in req.records.iter().enumerate() {
            let data: Value = serde_json::from_str(&record.data).map_err(|e| {
                ConnectorError::InvalidRequest(format!("record {i}: not JSON ({e})"))
            })?;
            let url = if method == "POST" {
                base.clone()
            } else {
                let id = record
                    .id
                    .clone()
                    .or_else(|| {
                        resource
                            .id_field
                            .as_ref()
                            .and_then(|f| data.get(f))
                            .map(query::value_text)
                    })
                    .ok_or_else(|| {
                        ConnectorError::InvalidRequest(format!("record {i}: no id for {method}"))
                    })?;
                format!("{base}/{}", http::encode_component(&id))
            };
            let body = (method != "DELETE").then(|| data.to_string());
            let res = self.send(&method, &url, body.as_deref().map(str::as_bytes))?;
            if let Ok(value) = serde_json::from_slice::<Value>(&res.body) {
                records.push(RecordBuilder::new(value).build());
            }
        }
        Ok(ExecuteResponse {
            affected: req.records.len() as u64,
            records,
        })
    }
}

/// Walks pages lazily: one batch per page, the next page's position as checkpoint.
struct RestStream {
    session: RestSession,
    resource: Resource,
    req: FetchRequest,
    page_size: u32,
    position: Option<Position>,
}

impl RecordStream for RestStream {
    fn next(&mut self, _max: u32) -> Result<Option<Batch>> {
        let Some(position) = self.position.take() else {
            return Ok(None);
        };
        let (records, next) =
            self.session
                .page(&self.resource, &self.req, &position, self.page_size)?;
        let checkpoint = next
            .as_ref()
            .map_or_else(|| Position::End.encode(), Position::encode);
        self.position = next;
        if records.is_empty() && self.position.is_none() {
            return Ok(None);
        }
        Ok(Some(Batch {
            records,
            checkpoint: Some(checkpoint),
        }))
    }
}

sluice_sdk::export_connector!(Rest);

#[cfg(test)]
sluice_sdk::config_schema_test!(Config);
