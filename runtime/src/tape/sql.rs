//! `sql` calls on tape, at the sql host's interface: each call (its
//! statement and parameters) and its result, recorded in order; replayed
//! from the recording with no database, the call compared first.

use serde_json::{json, Value};

use super::event::{Event, SqlCall};
use super::player::describe_sql;
use super::Tape;
use crate::bindings::sluice::connector::sql::{Column, DbError, RowSet, SqlError};

/// A result as a `sql` call returns it.
pub(crate) type SqlAnswer<T> = Result<T, SqlError>;

/// A value a `sql` call returns, as recorded.
pub(crate) trait Taped: Sized {
    fn to_json(&self) -> Value;
    fn from_json(value: &Value) -> Option<Self>;
}

impl Taped for () {
    fn to_json(&self) -> Value {
        Value::Null
    }

    fn from_json(_: &Value) -> Option<Self> {
        Some(())
    }
}

impl Taped for u64 {
    fn to_json(&self) -> Value {
        json!(self)
    }

    fn from_json(value: &Value) -> Option<Self> {
        value.as_u64()
    }
}

impl Taped for String {
    fn to_json(&self) -> Value {
        json!(self)
    }

    fn from_json(value: &Value) -> Option<Self> {
        value.as_str().map(str::to_string)
    }
}

impl Taped for Vec<Column> {
    fn to_json(&self) -> Value {
        Value::Array(self.iter().map(|c| json!([c.name, c.type_name])).collect())
    }

    fn from_json(value: &Value) -> Option<Self> {
        value
            .as_array()?
            .iter()
            .map(|pair| {
                Some(Column {
                    name: pair.get(0)?.as_str()?.to_string(),
                    type_name: pair.get(1)?.as_str()?.to_string(),
                })
            })
            .collect()
    }
}

impl Taped for Option<Vec<String>> {
    fn to_json(&self) -> Value {
        json!(self)
    }

    fn from_json(value: &Value) -> Option<Self> {
        serde_json::from_value(value.clone()).ok()
    }
}

impl Taped for RowSet {
    fn to_json(&self) -> Value {
        json!({ "columns": self.columns.to_json(), "rows": self.rows })
    }

    fn from_json(value: &Value) -> Option<Self> {
        Some(RowSet {
            columns: Vec::<Column>::from_json(value.get("columns")?)?,
            rows: serde_json::from_value(value.get("rows")?.clone()).ok()?,
        })
    }
}

fn error_json(error: &SqlError) -> Value {
    match error {
        SqlError::Denied(m) => json!({ "denied": m }),
        SqlError::QueryFailed(e) => {
            json!({ "query_failed": { "sqlstate": e.sqlstate, "message": e.message } })
        }
        SqlError::Unavailable(m) => json!({ "unavailable": m }),
        SqlError::Timeout => json!("timeout"),
        SqlError::InvalidValue(m) => json!({ "invalid_value": m }),
    }
}

fn error_from_json(value: &Value) -> Option<SqlError> {
    if value.as_str() == Some("timeout") {
        return Some(SqlError::Timeout);
    }
    let text = |key: &str| value.get(key)?.as_str().map(str::to_string);
    if let Some(m) = text("denied") {
        return Some(SqlError::Denied(m));
    }
    if let Some(m) = text("unavailable") {
        return Some(SqlError::Unavailable(m));
    }
    if let Some(m) = text("invalid_value") {
        return Some(SqlError::InvalidValue(m));
    }
    let failed = value.get("query_failed")?;
    Some(SqlError::QueryFailed(DbError {
        sqlstate: failed
            .get("sqlstate")
            .and_then(Value::as_str)
            .map(str::to_string),
        message: failed.get("message")?.as_str()?.to_string(),
    }))
}

/// A call as recorded.
pub(crate) fn call(call: &str, text: &str, params: &[String]) -> SqlCall {
    SqlCall {
        call: call.to_string(),
        text: text.to_string(),
        params: params.to_vec(),
    }
}

/// The recorded answer to `call`, when replaying: `Some` with the answer
/// (or the divergence as an error), `None` when not replaying.
pub(crate) fn replayed<T: Taped>(tape: Option<&Tape>, call: &SqlCall) -> Option<SqlAnswer<T>> {
    let player = tape?.player()?;
    let made = redacted(tape, call);
    let refuse = |what: String| {
        player.diverge(what.clone());
        Err(SqlError::Unavailable(format!("replay diverged: {what}")))
    };
    Some(match player.next_sql() {
        None => refuse(format!(
            "the connector made the sql call {}, and the recorded run made no more",
            describe_sql(&made)
        )),
        Some((recorded, _)) if recorded != made => refuse(format!(
            "the connector made the sql call {}; the recording has {} next",
            describe_sql(&made),
            describe_sql(&recorded)
        )),
        Some((_, answer)) => {
            player.matched();
            match answer.get("ok") {
                Some(ok) => T::from_json(ok).ok_or_else(|| {
                    SqlError::Unavailable(format!(
                        "replay: a recorded answer to {} is unreadable",
                        describe_sql(&made)
                    ))
                }),
                None => Err(answer
                    .get("error")
                    .and_then(error_from_json)
                    .unwrap_or_else(|| {
                        SqlError::Unavailable("replay: an unreadable recorded error".into())
                    })),
            }
        }
    })
}

/// Write `call` and its `answer` when recording.
pub(crate) fn record<T: Taped>(tape: Option<&Tape>, call: &SqlCall, answer: &SqlAnswer<T>) {
    let Some(recorder) = tape.and_then(Tape::recorder) else {
        return;
    };
    let redactor = recorder.redactor();
    let answer = match answer {
        Ok(value) => json!({ "ok": value.to_json() }),
        Err(error) => json!({ "error": error_json(error) }),
    };
    let answer: Value = serde_json::from_str(&redactor.text(&answer.to_string())).unwrap_or(answer);
    recorder.write(Event::Sql {
        call: redacted(tape, call),
        answer,
    });
}

/// `call` with secret values redacted (a statement may carry one inline).
fn redacted(tape: Option<&Tape>, call: &SqlCall) -> SqlCall {
    let redactor = match tape {
        Some(Tape::Record(recorder)) => recorder.redactor(),
        Some(Tape::Replay(player)) => &player.redactor,
        None => return call.clone(),
    };
    SqlCall {
        call: call.call.clone(),
        text: redactor.text(&call.text),
        params: call.params.iter().map(|p| redactor.text(p)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_errors_read_back_as_themselves() {
        let rows = RowSet {
            columns: vec![Column {
                name: "id".into(),
                type_name: "int8".into(),
            }],
            rows: vec!["[1]".into(), "[2]".into()],
        };
        let back = RowSet::from_json(&rows.to_json()).unwrap();
        assert_eq!(
            (back.columns[0].name.as_str(), back.rows),
            ("id", rows.rows)
        );
        for error in [
            SqlError::Denied("d".into()),
            SqlError::QueryFailed(DbError {
                sqlstate: Some("42P01".into()),
                message: "no table".into(),
            }),
            SqlError::Unavailable("u".into()),
            SqlError::Timeout,
            SqlError::InvalidValue("v".into()),
        ] {
            let json = error_json(&error);
            assert_eq!(error_json(&error_from_json(&json).unwrap()), json);
        }
    }
}
