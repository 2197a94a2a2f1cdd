//! [`Dialect`]: where PostgreSQL's and MySQL's SQL differ for the statements
//! the connectors build.

/// The SQL a statement is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `"ident"`, `$n`, NULLs sort last ascending.
    Postgres,
    /// MySQL and MariaDB: `` `ident` ``, `?`, NULLs sort first ascending.
    Mysql,
}

impl Dialect {
    /// The dialect a host sql connection reports (`postgres`, `mysql`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "postgres" => Some(Dialect::Postgres),
            "mysql" => Some(Dialect::Mysql),
            _ => None,
        }
    }

    /// Its name, as the host reports it.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
        }
    }

    /// Quote an identifier (it has been validated against the catalogue too).
    pub fn quote(self, ident: &str) -> String {
        match self {
            Dialect::Postgres => format!("\"{}\"", ident.replace('"', "\"\"")),
            Dialect::Mysql => format!("`{}`", ident.replace('`', "``")),
        }
    }

    /// The placeholder of the `n`th parameter (from 1).
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::Mysql => "?".to_string(),
        }
    }

    /// Whether NULLs sort before every value in an ascending order (and so
    /// after every value descending): MySQL's rule. PostgreSQL's is the
    /// opposite, and [`Dialect::order_suffix`] says so explicitly.
    pub fn nulls_first_ascending(self) -> bool {
        self == Dialect::Mysql
    }

    /// The `ORDER BY` suffix of one key, with where NULLs go.
    pub fn order_suffix(self, descending: bool) -> &'static str {
        match (self, descending) {
            (Dialect::Postgres, false) => "ASC NULLS LAST",
            (Dialect::Postgres, true) => "DESC NULLS FIRST",
            (Dialect::Mysql, false) => "ASC",
            (Dialect::Mysql, true) => "DESC",
        }
    }

    /// `column` is not `value`, where NULL is not any value.
    pub fn distinct_from(self, column: &str, value: &str) -> String {
        match self {
            Dialect::Postgres => format!("{column} IS DISTINCT FROM {value}"),
            Dialect::Mysql => format!("NOT ({column} <=> {value})"),
        }
    }

    /// The text of `column`, for `like`.
    pub fn as_text(self, column: &str) -> String {
        match self {
            Dialect::Postgres => format!("{column}::text"),
            Dialect::Mysql => format!("CAST({column} AS CHAR)"),
        }
    }
}
