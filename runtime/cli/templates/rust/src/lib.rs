//! {{name}}: a sluice connector over one in-memory resource, `numbers`
//! (1 to `up_to`, each with its square and parity). Every export is
//! implemented; replace the numbers with your upstream.

use serde::Deserialize;
use serde_json::{json, Value};
use sluice_sdk::{
    config, query, Batch, Capabilities, Connector, ConnectorError, Descriptor, ExecuteRequest,
    ExecuteResponse, FetchRequest, FetchResponse, RecordBuilder, RecordStream, ResourceInfo,
    Result, Session,
};

/// The config `open` takes; `config.schema.json` is derived from it.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct Config {
    /// The last number of `numbers` (1 to 1000000).
    #[cfg_attr(test, schemars(range(min = 1, max = 1_000_000)))]
    up_to: u32,
}

/// The one resource.
const NUMBERS: &str = "numbers";

struct Numbers;

struct NumbersSession {
    up_to: u32,
}

impl Connector for Numbers {
    type Session = NumbersSession;

    fn describe() -> Descriptor {
        sluice_sdk::descriptor(
            "{{name}}",
            env!("CARGO_PKG_VERSION"),
            "Numbers from 1 to `up_to`, with their squares and parity",
        )
        .config_schema_text(include_str!("../config.schema.json"))
        .capabilities(Capabilities {
            streaming: true,
            pagination: true,
            filtering: true,
            sorting: true,
            aggregation: false,
            transactions: false,
            max_page_size: Some(1000),
        })
        .build()
    }

    fn open(config_json: &str) -> Result<NumbersSession> {
        // A wrong config is `invalid-config` naming the field.
        let config: Config = config::parse(config_json)?;
        if !(1..=1_000_000).contains(&config.up_to) {
            return Err(ConnectorError::InvalidConfig(
                "field `up_to`: from 1 to 1000000".into(),
            ));
        }
        Ok(NumbersSession {
            up_to: config.up_to,
        })
    }
}

/// The record of `n`: its data, with `n` as its id.
fn number(n: u32) -> RecordBuilder {
    let parity = if n % 2 == 0 { "even" } else { "odd" };
    RecordBuilder::new(json!({ "n": n, "square": u64::from(n) * u64::from(n), "parity": parity }))
        .id(n.to_string())
}

impl NumbersSession {
    fn check(resource: &str) -> Result<()> {
        if resource == NUMBERS {
            Ok(())
        } else {
            Err(ConnectorError::NotFound(format!(
                "no resource `{resource}` (there is `{NUMBERS}`)"
            )))
        }
    }
}

impl Session for NumbersSession {
    fn health_check(&self) -> Result<()> {
        Ok(())
    }

    fn discover(&self) -> Result<Vec<ResourceInfo>> {
        let schema = json!({
            "type": "object",
            "properties": {
                "n": { "type": "integer" },
                "square": { "type": "integer" },
                "parity": { "enum": ["even", "odd"] }
            }
        });
        Ok(vec![ResourceInfo {
            name: NUMBERS.into(),
            schema: Some(schema.to_string()),
        }])
    }

    fn fetch(&self, req: FetchRequest) -> Result<FetchResponse> {
        Self::check(&req.resource)?;
        if req.pagination.as_ref().is_some_and(|p| p.page_size > 1000) {
            return Err(ConnectorError::InvalidRequest(
                "a page holds at most 1000 records".into(),
            ));
        }
        // Filters, sort, fields and pages, by the rules every connector shares.
        query::apply(&req, (1..=self.up_to).map(number))
    }

    fn stream(
        &self,
        req: FetchRequest,
        checkpoint: Option<String>,
    ) -> Result<Box<dyn RecordStream>> {
        Self::check(&req.resource)?;
        if !req.sort.is_empty() {
            return Err(ConnectorError::Unsupported(
                "sort on a stream: it comes in order of `n`".into(),
            ));
        }
        // The checkpoint is the last number delivered.
        let after = match checkpoint {
            Some(text) => text.parse::<u32>().map_err(|_| {
                ConnectorError::InvalidRequest(format!("checkpoint `{text}`: a number"))
            })?,
            None => 0,
        };
        let predicate = query::Predicate::compile(&req.filters)?;
        Ok(Box::new(NumberStream {
            next: after + 1,
            up_to: self.up_to,
            predicate,
            fields: req.fields,
        }))
    }

    fn execute(&self, req: ExecuteRequest) -> Result<ExecuteResponse> {
        Self::check(&req.resource)?;
        if req.operation != "sum" {
            return Err(ConnectorError::Unsupported(format!(
                "operation `{}` (there is `sum`)",
                req.operation
            )));
        }
        // `sum` adds up the `n` of the records it is given.
        let mut total = 0i64;
        for (i, record) in req.records.iter().enumerate() {
            let data: Value = serde_json::from_str(&record.data).map_err(|e| {
                ConnectorError::InvalidRequest(format!("record {i}: not JSON ({e})"))
            })?;
            total += data["n"].as_i64().ok_or_else(|| {
                ConnectorError::InvalidRequest(format!("record {i}: no integer `n`"))
            })?;
        }
        Ok(ExecuteResponse {
            affected: req.records.len() as u64,
            records: vec![RecordBuilder::new(json!({ "sum": total })).build()],
        })
    }
}

/// The numbers after a checkpoint, `max` (at most) a batch.
struct NumberStream {
    next: u32,
    up_to: u32,
    predicate: query::Predicate,
    fields: Vec<String>,
}

impl RecordStream for NumberStream {
    fn next(&mut self, max: u32) -> Result<Option<Batch>> {
        if self.next > self.up_to {
            return Ok(None);
        }
        let last = self.next.saturating_add(max.max(1) - 1).min(self.up_to);
        let records = (self.next..=last)
            .map(number)
            .filter(|r| self.predicate.matches(r.data()))
            .map(|r| r.map_data(|d| query::project(d, &self.fields)).build())
            .collect();
        self.next = last + 1;
        Ok(Some(Batch {
            records,
            checkpoint: Some(last.to_string()),
        }))
    }
}

sluice_sdk::export_connector!(Numbers);

#[cfg(test)]
sluice_sdk::config_schema_test!(Config);
