//! PostgreSQL values to JSON and back.
//!
//! | PostgreSQL | JSON |
//! |---|---|
//! | bool | true/false |
//! | int2, int4, int8, oid | number |
//! | float4, float8 | number (`"NaN"`, `"Infinity"`, `"-Infinity"` as strings) |
//! | numeric | exact decimal string, e.g. `"12345.6700"` |
//! | text, varchar, char, name, enums | string |
//! | bytea | base64 string |
//! | date, time, timestamp | `2024-01-31`, `13:45:00.5` (`24:00:00` too), `2024-01-31T13:45:00.5` |
//! | timestamptz | RFC 3339 in UTC, `2024-01-31T13:45:00.5Z` |
//! | infinite date, timestamp(tz) | `"infinity"`, `"-infinity"` |
//! | interval | ISO 8601 duration, `P1Y2M3DT4H5M6.5S` |
//! | uuid | string |
//! | json, jsonb | the JSON value, in the server's own text (every digit kept) |
//! | domains | as their base type |
//! | arrays of these | arrays (one dimension, starting at index 1; others are an error) |
//! | NULL | null |
//!
//! Parameters go the other way, by the type the server inferred for each
//! placeholder, from the parameter's exact JSON text (a number never passes
//! through f64). A parameter of any other type (inet, ranges, money, …) is
//! sent in text form and parsed by the server; a result column of one is an
//! error naming the cast (`col::text`).

mod decode;
mod encode;
mod scalar;

use std::error::Error as StdError;

use tokio_postgres::types::{Kind, Type};

pub use decode::{write_json, RawColumn};
pub use encode::JsonParam;

type BoxError = Box<dyn StdError + Sync + Send>;

fn unsupported(ty: &Type) -> BoxError {
    format!(
        "PostgreSQL type `{}` has no JSON mapping; cast it in the query, e.g. `col::text`",
        ty.name()
    )
    .into()
}

/// Microseconds in a day: `time '24:00:00'`, which PostgreSQL allows.
pub(super) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Whether values of `ty` travel in PostgreSQL's binary form (the types in
/// the module's table); any other type's parameters are sent in its text form
/// and parsed by the server.
pub fn binary_mapped(ty: &Type) -> bool {
    match ty.kind() {
        Kind::Array(member) => binary_mapped(member),
        Kind::Domain(base) => binary_mapped(base),
        Kind::Enum(_) => true,
        _ => matches!(
            *ty,
            Type::BOOL
                | Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::OID
                | Type::FLOAT4
                | Type::FLOAT8
                | Type::NUMERIC
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
                | Type::BYTEA
                | Type::DATE
                | Type::TIME
                | Type::TIMESTAMP
                | Type::TIMESTAMPTZ
                | Type::INTERVAL
                | Type::UUID
                | Type::JSON
                | Type::JSONB
        ),
    }
}
