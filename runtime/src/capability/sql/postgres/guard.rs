//! What a read-only grant lets through: one plain query per statement.
//!
//! A read-only grant runs each statement in a `READ ONLY` transaction, but
//! that alone is not a boundary: `SET TRANSACTION READ WRITE` as the first
//! statement, or `COMMIT` followed by a write, leaves the read-only
//! transaction; `COPY … TO`, `LOCK`, large objects and session advisory locks
//! change state even inside one. So a statement sent through a read-only
//! grant, by any function (query, execute, stream, or inside `begin()`), must
//! start with a query keyword (`SELECT`, `WITH`, `VALUES`, `TABLE`, `SHOW`,
//! `EXPLAIN`), be a single statement, and call none of the functions that
//! write or change the session ([`REFUSED_FUNCTIONS`]). Everything else —
//! transaction control, `SET`/`RESET`, `COPY`, `LOCK`, DDL, DML, `CALL`, `DO`
//! — is refused before it reaches the server. The read-only transaction
//! stays as a second line (a data-modifying `WITH` fails there), and the
//! database role's privileges are the real boundary (see the README).
//!
//! The lexer knows comments (nested `/* */`), string constants (`'…'`,
//! `E'…'` with backslash escapes, dollar quoting) and quoted identifiers, so
//! a keyword hidden in a comment or a string is neither missed nor invented.

use crate::capability::sql::lex::{find, word_end};

/// The statements a read-only grant may start with.
const QUERY_KEYWORDS: &[&str] = &["select", "with", "values", "table", "show", "explain"];

/// Functions refused through a read-only grant, by name (any schema, any quoting).
pub const REFUSED_FUNCTIONS: &[&str] = &[
    // Session settings, including `default_transaction_read_only`.
    "set_config",
    // Persistent large objects (allowed even for a role with SELECT only).
    "lo_create",
    "lo_creat",
    "lo_from_bytea",
    "lo_import",
    "lo_export",
    "lo_unlink",
    "lo_put",
    "lo_open",
    "lo_truncate",
    "lo_truncate64",
    "lowrite",
    // Advisory locks that outlive the transaction (the `_xact_` forms are fine).
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    // Other sessions, the server, and other databases.
    "pg_notify",
    "pg_cancel_backend",
    "pg_terminate_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_logical_emit_message",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    "pg_stat_reset",
    "pg_stat_reset_shared",
    "pg_stat_reset_single_table_counters",
    "pg_stat_reset_single_function_counters",
    "pg_stat_reset_slru",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_replication_origin_create",
    "pg_replication_origin_drop",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "dblink_connect_u",
    "dblink_send_query",
];

/// One token of SQL text.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    /// A keyword or unquoted identifier, lower-cased; or a quoted identifier as written.
    Word(String),
    /// `;`
    Semicolon,
    /// Anything else: operators, punctuation, numbers, strings, parameters.
    Other,
}

/// Why a statement was refused (the caller adds the grant's name).
pub fn check_read_only(statement: &str) -> Result<(), String> {
    let tokens = tokens(statement)?;
    let mut words = tokens.iter().filter(|t| **t != Token::Other);
    match words.next() {
        Some(Token::Word(first)) if QUERY_KEYWORDS.contains(&first.as_str()) => {}
        Some(Token::Word(first)) => {
            return Err(format!(
            "`{}` statements are not allowed (only SELECT, WITH, VALUES, TABLE, SHOW and EXPLAIN)",
            first.to_uppercase()
        ))
        }
        Some(_) | None => return Err("an empty statement is not allowed".into()),
    }
    let mut ended = false;
    for token in &tokens {
        match token {
            Token::Semicolon => ended = true,
            _ if ended => return Err("only one statement may be sent at a time".into()),
            Token::Word(word) if REFUSED_FUNCTIONS.contains(&word.as_str()) => {
                return Err(format!("`{word}` is not allowed"));
            }
            _ => {}
        }
    }
    Ok(())
}

fn tokens(sql: &str) -> Result<Vec<Token>, String> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b if b.is_ascii_whitespace() => i += 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = block_comment_end(bytes, i)?,
            b'\'' => {
                i = string_end(bytes, i + 1, false)?;
                out.push(Token::Other);
            }
            b'E' | b'e' if bytes.get(i + 1) == Some(&b'\'') => {
                i = string_end(bytes, i + 2, true)?;
                out.push(Token::Other);
            }
            b'"' => {
                let (name, end) = quoted_identifier(bytes, i + 1)?;
                out.push(Token::Word(name));
                i = end;
            }
            b'$' => match dollar_tag(bytes, i) {
                Some(tag) => {
                    let body = i + tag.len();
                    let close = find(bytes, body, tag.as_bytes())
                        .ok_or("an unterminated dollar-quoted string")?;
                    i = close + tag.len();
                    out.push(Token::Other);
                }
                None => {
                    // `$1`: a parameter.
                    i += 1;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                    out.push(Token::Other);
                }
            },
            b';' => {
                out.push(Token::Semicolon);
                i += 1;
            }
            b if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 => {
                let start = i;
                i = word_end(bytes, i);
                out.push(Token::Word(sql[start..i].to_ascii_lowercase()));
            }
            _ => {
                i += 1;
                out.push(Token::Other);
            }
        }
    }
    Ok(out)
}

/// The index after a (nested) block comment starting at `start`.
fn block_comment_end(bytes: &[u8], start: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => i += 1,
        }
    }
    Err("an unterminated comment".into())
}

/// The index after a string constant whose body starts at `i`.
fn string_end(bytes: &[u8], mut i: usize, backslashes: bool) -> Result<usize, String> {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslashes => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err("an unterminated string".into())
}

/// A quoted identifier's name and the index after it.
fn quoted_identifier(bytes: &[u8], mut i: usize) -> Result<(String, usize), String> {
    let mut name = Vec::new();
    while i < bytes.len() {
        match bytes[i] {
            b'"' if bytes.get(i + 1) == Some(&b'"') => {
                name.push(b'"');
                i += 2;
            }
            b'"' => return Ok((String::from_utf8_lossy(&name).into_owned(), i + 1)),
            b => {
                name.push(b);
                i += 1;
            }
        }
    }
    Err("an unterminated quoted identifier".into())
}

/// The `$tag$` opening a dollar-quoted string at `start`, if there is one.
fn dollar_tag(bytes: &[u8], start: usize) -> Option<String> {
    let mut i = start + 1;
    if bytes.get(i).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    while i < bytes.len()
        && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] >= 0x80)
    {
        i += 1;
    }
    (bytes.get(i) == Some(&b'$')).then(|| String::from_utf8_lossy(&bytes[start..=i]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::check_read_only;

    #[test]
    fn plain_queries_pass() {
        for sql in [
            "SELECT 1",
            "  select * from t where a = $1",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "(SELECT 1) UNION (SELECT 2)",
            "VALUES (1), (2)",
            "TABLE people",
            "SHOW server_version",
            "EXPLAIN SELECT 1",
            "SELECT 'COMMIT; lo_create(0)' AS text -- lo_import",
            "SELECT $$ pg_advisory_lock(1) $$, $tag$ ; DELETE $tag$",
            "SELECT 1;",
            "/* a /* nested */ comment */ SELECT \"Name\" FROM t",
            "SELECT pg_advisory_xact_lock(1)",
        ] {
            assert_eq!(check_read_only(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn everything_that_writes_or_leaves_the_transaction_is_refused() {
        for sql in [
            "",
            "-- only a comment",
            "COMMIT",
            "commit",
            "END",
            "ROLLBACK",
            "ABORT",
            "BEGIN",
            "START TRANSACTION READ WRITE",
            "SAVEPOINT s",
            "RELEASE SAVEPOINT s",
            "PREPARE TRANSACTION 'x'",
            "COMMIT PREPARED 'x'",
            "SET TRANSACTION READ WRITE",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
            "SET default_transaction_read_only = off",
            "SET transaction_read_only = off",
            "RESET ALL",
            "DISCARD ALL",
            "/* hide */ COMMIT",
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "DELETE FROM t",
            "MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE",
            "TRUNCATE t",
            "CREATE TABLE t (a int)",
            "DROP TABLE t",
            "ALTER ROLE me SUPERUSER",
            "GRANT ALL ON t TO public",
            "COPY t TO '/tmp/x'",
            "COPY (SELECT 1) TO PROGRAM 'id'",
            "LOCK TABLE t IN ACCESS EXCLUSIVE MODE",
            "CALL p()",
            "DO $$ BEGIN COMMIT; END $$",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "LISTEN x",
            "NOTIFY x",
            "VACUUM t",
            "SELECT 1; COMMIT",
            "SELECT 1; DELETE FROM t",
            "SELECT set_config('default_transaction_read_only', 'off', false)",
            "SELECT lo_from_bytea(0, 'x')",
            "SELECT pg_catalog.lo_create(0)",
            "SELECT \"lo_create\"(0)",
            "SELECT lo_import('/etc/passwd')",
            "SELECT pg_advisory_lock(1)",
            "SELECT PG_TRY_ADVISORY_LOCK(1)",
            "SELECT pg_terminate_backend(1)",
            "SELECT 'unterminated",
            "SELECT /* unterminated",
        ] {
            assert!(check_read_only(sql).is_err(), "{sql} passed");
        }
    }
}
