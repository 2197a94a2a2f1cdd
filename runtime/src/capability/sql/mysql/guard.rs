//! What a read-only MySQL grant lets through: one plain query per statement.
//!
//! A read-only grant runs each statement in `START TRANSACTION READ ONLY`,
//! but that alone is not a boundary: `LOCK TABLES`, `SET GLOBAL`, DDL and
//! `COMMIT` end the transaction implicitly or act outside it, `SELECT … INTO
//! OUTFILE` writes the server's files, `LOAD_FILE` reads them, locking reads
//! (`FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE`) and named locks
//! (`GET_LOCK`) hold other sessions up, and MariaDB sequences advance on
//! read. So a statement sent through a read-only grant must start with a
//! query keyword (`SELECT`, `WITH`, `VALUES`, `TABLE`, `SHOW`, `EXPLAIN`,
//! `DESCRIBE`), be a single statement, and hold none of `INTO`, `UPDATE`,
//! `DELETE`, `LOCK IN`, `FOR SHARE`, `NEXT VALUE`, or the functions in
//! [`REFUSED_FUNCTIONS`]. Executable comments (`/*! … */`, `/*M! … */`) are
//! refused outright: the server runs what they hold.
//!
//! The lexer knows comments (`#`, `-- `, `/* */`), strings (`'…'`, `"…"`) and
//! backquoted identifiers. Whether a backslash escapes a quote depends on the
//! server's `sql_mode` (`NO_BACKSLASH_ESCAPES`), which the guest cannot see
//! from here, so the statement is read both ways and must pass both.

use crate::capability::sql::lex::{find, line_end, word_end};

/// The statements a read-only grant may start with.
const QUERY_KEYWORDS: &[&str] = &[
    "select", "with", "values", "table", "show", "explain", "describe", "desc",
];

/// Functions refused through a read-only grant, by name (any quoting).
pub const REFUSED_FUNCTIONS: &[&str] = &[
    // The server's files.
    "load_file",
    // Named locks that outlive the statement.
    "get_lock",
    "release_lock",
    "release_all_locks",
    // MariaDB sequences advance when read.
    "nextval",
    "setval",
    // Waiting on replication.
    "master_pos_wait",
    "master_gtid_wait",
    "source_pos_wait",
    // Common UDFs that run programs on the server.
    "sys_exec",
    "sys_eval",
];

/// Words a read-only statement never holds, bare.
const REFUSED_WORDS: &[&str] = &["into", "update", "delete"];

/// One token of SQL text.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    /// A keyword or unquoted identifier, lower-cased.
    Word(String),
    /// A backquoted identifier, lower-cased.
    Quoted(String),
    /// `;`
    Semicolon,
    /// Anything else: operators, punctuation, numbers, strings, parameters.
    Other,
}

/// Why a statement was refused (the caller adds the grant's name).
pub fn check_read_only(statement: &str) -> Result<(), String> {
    check(&tokens(statement, true)?)?;
    check(&tokens(statement, false)?)
}

fn check(tokens: &[Token]) -> Result<(), String> {
    let words: Vec<&str> = tokens
        .iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w.as_str()),
            _ => None,
        })
        .collect();
    match tokens.iter().find(|t| **t != Token::Other) {
        Some(Token::Word(first)) if QUERY_KEYWORDS.contains(&first.as_str()) => {}
        Some(Token::Word(first)) => {
            return Err(format!(
                "`{}` statements are not allowed (only SELECT, WITH, VALUES, TABLE, SHOW, EXPLAIN and DESCRIBE)",
                first.to_uppercase()
            ))
        }
        Some(_) | None => return Err("an empty statement is not allowed".into()),
    }
    let mut ended = false;
    for token in tokens {
        match token {
            Token::Semicolon => ended = true,
            _ if ended => return Err("only one statement may be sent at a time".into()),
            Token::Word(word) | Token::Quoted(word)
                if REFUSED_FUNCTIONS.contains(&word.as_str()) =>
            {
                return Err(format!("`{word}` is not allowed"));
            }
            Token::Word(word) if REFUSED_WORDS.contains(&word.as_str()) => {
                return Err(format!(
                    "`{}` is not allowed (no INTO, locking reads or writes)",
                    word.to_uppercase()
                ));
            }
            _ => {}
        }
    }
    for pair in words.windows(2) {
        match pair {
            ["lock", "in"] | ["for", "share"] => return Err("locking reads are not allowed".into()),
            ["next" | "previous", "value"] => return Err("sequence values are not allowed".into()),
            _ => {}
        }
    }
    Ok(())
}

/// The tokens of `sql`, with a backslash escaping the next character in
/// strings when `backslashes`.
fn tokens(sql: &str, backslashes: bool) -> Result<Vec<Token>, String> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b if b.is_ascii_whitespace() => i += 1,
            b'#' => i = line_end(bytes, i),
            b'-' if bytes.get(i + 1) == Some(&b'-')
                && bytes
                    .get(i + 2)
                    .is_none_or(|b| b.is_ascii_whitespace() || *b < 0x20) =>
            {
                i = line_end(bytes, i)
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                if bytes.get(i + 2) == Some(&b'!')
                    || bytes[i + 2..].starts_with(b"M!")
                    || bytes[i + 2..].starts_with(b"m!")
                {
                    return Err("executable comments (`/*! … */`) are not allowed".into());
                }
                let end = find(bytes, i + 2, b"*/").ok_or("an unterminated comment")?;
                i = end + 2;
            }
            b'\'' | b'"' => {
                i = quoted_end(bytes, i + 1, c, backslashes)
                    .ok_or("an unterminated string constant")?;
                out.push(Token::Other);
            }
            b'`' => {
                let end = quoted_end(bytes, i + 1, b'`', false)
                    .ok_or("an unterminated quoted identifier")?;
                let name = sql[i + 1..end - 1].replace("``", "`").to_ascii_lowercase();
                out.push(Token::Quoted(name));
                i = end;
            }
            b';' => {
                out.push(Token::Semicolon);
                i += 1;
            }
            b if b.is_ascii_alphabetic() || b == b'_' || b == b'$' || b >= 0x80 => {
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

/// The index after the closing `quote` of a quoted text whose body starts
/// at `i` (a doubled quote is one quote character).
fn quoted_end(bytes: &[u8], mut i: usize, quote: u8, backslashes: bool) -> Option<usize> {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslashes => i += 2,
            b if b == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return Some(i + 1);
                }
            }
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::check_read_only;

    #[test]
    fn plain_queries_pass() {
        for sql in [
            "SELECT * FROM t WHERE a = ? ORDER BY `b` LIMIT ?",
            "select 'it''s; fine', \"update\" from t",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "SHOW TABLES",
            "DESCRIBE t",
            "EXPLAIN SELECT 1",
            "SELECT `update` FROM t -- a comment; DELETE\n",
            "SELECT 1 # into outfile\n",
            "SELECT CAST(a AS CHAR CHARACTER SET utf8mb4) FROM t;",
            "SELECT REPLACE(a, 'x', 'y'), INSERT(a, 1, 1, 'z') FROM t",
            "SELECT SLEEP(1)",
        ] {
            assert_eq!(check_read_only(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn everything_that_writes_locks_or_leaves_the_transaction_is_refused() {
        for sql in [
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "DELETE FROM t",
            "LOCK TABLES t WRITE",
            "SET GLOBAL max_connections = 1",
            "SET SESSION TRANSACTION READ WRITE",
            "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t",
            "SELECT * FROM t INTO OUTFILE '/tmp/x'",
            "SELECT 1 INTO DUMPFILE '/tmp/x'",
            "SELECT 1 INTO @v",
            "SELECT * FROM t FOR UPDATE",
            "SELECT * FROM t FOR SHARE",
            "SELECT * FROM t LOCK IN SHARE MODE",
            "SELECT LOAD_FILE('/etc/passwd')",
            "SELECT `get_lock`('x', 0)",
            "SELECT NEXT VALUE FOR s",
            "SELECT NEXTVAL(s)",
            "COMMIT",
            "START TRANSACTION",
            "SELECT 1; DELETE FROM t",
            "SELECT 1 /*!50000 INTO OUTFILE '/tmp/x' */",
            "SELECT 1 /*M!100000 ; DROP TABLE t */",
            "WITH x AS (SELECT 1) DELETE FROM t",
            "CALL p()",
            "DO SLEEP(1)",
            "HANDLER t OPEN",
            "",
            "   -- only a comment\n",
        ] {
            assert!(check_read_only(sql).is_err(), "{sql}");
        }
    }

    #[test]
    fn a_backslash_is_read_both_ways() {
        // With backslash escapes the string ends at the last quote; without
        // them it ends early and `INTO OUTFILE` is code: refused either way.
        let sql = r"SELECT 'a\' INTO OUTFILE '/tmp/x' -- '";
        assert!(check_read_only(sql).is_err());
        let sql = r"SELECT 'a\'; DELETE FROM t; -- '";
        assert!(check_read_only(sql).is_err());
        assert_eq!(check_read_only(r"SELECT 'a\\b', 'c'"), Ok(()));
    }
}
