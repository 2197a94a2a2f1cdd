//! [`Table`]: one table or view as its database's catalogue describes it.
//! Every identifier a request names is checked here before it reaches SQL.

use serde_json::{json, Value};
use sluice_sdk::{ConnectorError, Result};

use crate::dialect::Dialect;
use crate::select::Statement;

/// How a column is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// As the host maps its type.
    Plain,
    /// In the database's text form (`col::text`): a type the host has no
    /// JSON mapping for.
    Text,
    /// A text column holding JSON (MariaDB's `json`): its text is the value.
    JsonText,
}

/// How a value is bound for a column, in a filter, a cursor or a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// The placeholder as it is.
    Plain,
    /// The placeholder inside an expression: `{}` is replaced by it (a
    /// decimal compared exactly, `CAST({} AS DECIMAL(65,30))`; base64 to
    /// bytes, `FROM_BASE64({})`).
    Wrap(String),
    /// The value's JSON text, bound as a string (a JSON column stored as
    /// text).
    JsonText,
    /// A string as it is, any other value as its JSON text in a string: a
    /// text column compared with `5` compares with `'5'` (MySQL would
    /// compare both as numbers, and `'abc' = 0` is true there).
    Text,
}

/// What a value bound for a column must be, checked before the statement
/// runs: MySQL reads `'1 OR 1=1'` as the integer 1 when it compares it with
/// an integer column, so a value that is not a number is refused rather
/// than left to the server's conversion (PostgreSQL's host mapping refuses
/// it already).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// Whatever the host and the server accept.
    Any,
    /// An integer (a JSON number or string of digits, with a sign), a
    /// boolean, or null.
    Integer,
    /// A decimal number (a JSON number, or a string holding one), a
    /// boolean, or null.
    Number,
}

impl Accept {
    fn admits(self, raw: &str) -> bool {
        let raw = raw.trim();
        if self == Accept::Any || matches!(raw, "null" | "true" | "false") {
            return true;
        }
        let text = if raw.starts_with('"') {
            match serde_json::from_str::<String>(raw) {
                Ok(text) => text,
                Err(_) => return false,
            }
        } else {
            raw.to_string()
        };
        let text = text.trim();
        let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
        match self {
            Accept::Integer => !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
            _ => {
                let (mantissa, exponent) = digits.split_once(['e', 'E']).unwrap_or((digits, "0"));
                let exponent = exponent.strip_prefix(['-', '+']).unwrap_or(exponent);
                let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
                !(whole.is_empty() && fraction.is_empty())
                    && whole.bytes().all(|b| b.is_ascii_digit())
                    && fraction.bytes().all(|b| b.is_ascii_digit())
                    && !exponent.is_empty()
                    && exponent.bytes().all(|b| b.is_ascii_digit())
            }
        }
    }
}

/// One column.
#[derive(Debug, Clone)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type as the database writes it (`integer`, `varchar(20)`).
    pub sql_type: String,
    /// The JSON type of its values, for `discover`.
    pub json_type: &'static str,
    /// How it is read.
    pub read: Read,
    /// How values are bound for it.
    pub bind: Bind,
    /// What a value bound for it must be.
    pub accept: Accept,
    /// Whether it can take part in an `ORDER BY`.
    pub orderable: bool,
}

/// One table or view.
#[derive(Debug, Clone)]
pub struct Table {
    /// The SQL it is read with.
    pub dialect: Dialect,
    /// Its schema (PostgreSQL) or database (MySQL).
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Its columns, in table order.
    pub columns: Vec<Column>,
    /// Primary key (or the configured key), possibly empty for views.
    pub key: Vec<String>,
}

impl Table {
    /// The column called `field`, or `invalid-request` listing the real ones.
    pub fn column(&self, field: &str) -> Result<&str> {
        self.info(field).map(|c| c.name.as_str()).ok_or_else(|| {
            let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
            ConnectorError::InvalidRequest(format!(
                "no column `{field}` in `{}.{}` (columns: {})",
                self.schema,
                self.name,
                names.join(", ")
            ))
        })
    }

    /// The column called `name`, if any.
    pub fn info(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The key: `configured` (each checked) or else `primary`.
    ///
    /// # Errors
    ///
    /// `invalid-request` for a configured key column that does not exist.
    pub fn with_key(mut self, configured: Option<&[String]>, primary: Vec<String>) -> Result<Self> {
        self.key = match configured {
            Some(key) => key
                .iter()
                .map(|k| self.column(k).map(str::to_string))
                .collect::<Result<_>>()?,
            None => primary,
        };
        Ok(self)
    }

    /// Quote an identifier in the table's dialect.
    pub fn quote(&self, ident: &str) -> String {
        self.dialect.quote(ident)
    }

    /// `"schema"."name"` (`` `db`.`name` ``).
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.quote(&self.schema), self.quote(&self.name))
    }

    /// The expression that reads `column`.
    pub fn select_expr(&self, column: &str) -> String {
        match self.info(column).map(|c| &c.read) {
            Some(Read::Text) => self.dialect.as_text(&self.quote(column)),
            _ => self.quote(column),
        }
    }

    /// Bind `raw` (a value's JSON text) for `column` and return the
    /// expression that stands for it.
    ///
    /// # Errors
    ///
    /// `invalid-request` when the column's [`Accept`] refuses the value.
    pub fn bind(&self, stmt: &mut Statement, column: &str, raw: &str) -> Result<String> {
        let Some(info) = self.info(column) else {
            return Ok(stmt.bind_raw(raw));
        };
        if !info.accept.admits(raw) {
            let what = match info.accept {
                Accept::Integer => "an integer",
                _ => "a number",
            };
            return Err(ConnectorError::InvalidRequest(format!(
                "value {raw} for column `{column}` is not {what}"
            )));
        }
        Ok(match &info.bind {
            Bind::Plain => stmt.bind_raw(raw),
            Bind::Wrap(template) => template.replace("{}", &stmt.bind_raw(raw)),
            Bind::JsonText | Bind::Text if raw.trim() == "null" => stmt.bind_raw(raw),
            Bind::Text if raw.trim_start().starts_with('"') => stmt.bind_raw(raw),
            Bind::JsonText | Bind::Text => stmt.bind(&Value::String(raw.trim().to_string())),
        })
    }

    /// JSON Schema of the table's records.
    pub fn schema_json(&self) -> Value {
        let type_key = format!("x-{}-type", self.dialect.name());
        let properties: serde_json::Map<String, Value> = self
            .columns
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    json!({ "type": c.json_type, type_key.as_str(): c.sql_type }),
                )
            })
            .collect();
        json!({ "type": "object", "properties": properties, "x-key": self.key })
    }
}

#[cfg(test)]
mod tests {
    use super::Accept;

    #[test]
    fn numbers_are_checked_before_the_server_converts_them() {
        for raw in ["1", "-5", "\"12\"", "null", "true", "18446744073709551615"] {
            assert!(Accept::Integer.admits(raw), "{raw}");
        }
        for raw in ["1.5", "\"1 OR 1=1\"", "\"\"", "\"0x10\"", "[1]", "\"1e3\""] {
            assert!(!Accept::Integer.admits(raw), "{raw}");
        }
        for raw in ["1.5", "-0.25e-3", "\"1234567.0123456789012\"", ".5", "7."] {
            assert!(Accept::Number.admits(raw), "{raw}");
        }
        for raw in [
            "\"1 OR 1=1\"",
            "\"NaN\"",
            "\"inf\"",
            "\"1e\"",
            "\".\"",
            "{}",
        ] {
            assert!(!Accept::Number.admits(raw), "{raw}");
        }
        assert!(Accept::Any.admits("\"anything\""));
    }
}
