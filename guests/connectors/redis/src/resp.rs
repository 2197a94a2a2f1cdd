//! RESP2 over a granted socket: commands out, replies in, every length
//! bounded so a hostile or broken server gets an error, never unbounded
//! memory or a trap.

use sluice_sdk::net::{Connection, Deadlines};
use sluice_sdk::{ConnectorError, Result};

/// Longest status, error or length line accepted.
const MAX_LINE: usize = 64 * 1024;
/// Most elements of one array reply.
const MAX_ARRAY: usize = 1 << 20;
/// Deepest nesting of array replies (stream replies need four).
const MAX_DEPTH: usize = 8;

/// One reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`.
    Status(String),
    /// `-ERR …`: the server refused the command.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$n` bytes, or nil.
    Bulk(Option<Vec<u8>>),
    /// `*n` replies, or nil.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The elements of an array reply (nil is empty).
    pub fn into_array(self, what: &str) -> Result<Vec<Reply>> {
        match self {
            Reply::Array(items) => Ok(items.unwrap_or_default()),
            other => Err(unexpected(what, &other)),
        }
    }

    /// The text of a bulk or status reply.
    pub fn into_text(self, what: &str) -> Result<String> {
        match self {
            Reply::Bulk(Some(bytes)) => String::from_utf8(bytes).map_err(|_| {
                ConnectorError::Unsupported(format!(
                    "{what}: the server sent text that is not UTF-8"
                ))
            }),
            Reply::Status(text) => Ok(text),
            other => Err(unexpected(what, &other)),
        }
    }

    /// Whether it is a nil bulk or array.
    pub fn is_nil(&self) -> bool {
        matches!(self, Reply::Bulk(None) | Reply::Array(None))
    }
}

/// The error for a reply of the wrong shape.
pub fn unexpected(what: &str, reply: &Reply) -> ConnectorError {
    let shape = match reply {
        Reply::Status(_) => "a status",
        Reply::Error(_) => "an error",
        Reply::Int(_) => "an integer",
        Reply::Bulk(_) => "a string",
        Reply::Array(_) => "an array",
    };
    ConnectorError::Unavailable(format!(
        "{what}: the server answered with {shape}, which this connector does not expect"
    ))
}

/// A connection speaking RESP2.
#[derive(Debug)]
pub struct Client {
    conn: Connection,
    max_reply_bytes: usize,
}

impl Client {
    /// Connect to `address`.
    pub fn open(address: &str, deadlines: Deadlines, max_reply_bytes: usize) -> Result<Self> {
        Ok(Self {
            conn: Connection::open(address, deadlines)?,
            max_reply_bytes,
        })
    }

    /// The server's address.
    pub fn address(&self) -> &str {
        self.conn.address()
    }

    /// Run one command; a server error becomes a typed error.
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Reply> {
        self.conn.send(&encode(args))?;
        let reply = self.read_reply()?;
        self.check(reply)
    }

    /// Send several commands at once, then read their replies in order;
    /// a refused command is a [`Reply::Error`] (see [`Client::check`]).
    pub fn pipeline(&mut self, commands: &[Vec<Vec<u8>>]) -> Result<Vec<Reply>> {
        let mut bytes = Vec::new();
        for command in commands {
            let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
            bytes.extend_from_slice(&encode(&args));
        }
        self.conn.send(&bytes)?;
        commands.iter().map(|_| self.read_reply()).collect()
    }

    /// A reply, or the typed error a refused command is.
    pub fn check(&self, reply: Reply) -> Result<Reply> {
        match reply {
            Reply::Error(message) => Err(server_error(self.address(), &message)),
            reply => Ok(reply),
        }
    }

    /// Read one reply.
    fn read_reply(&mut self) -> Result<Reply> {
        let mut budget = self.max_reply_bytes;
        self.read(0, &mut budget)
    }

    fn read(&mut self, depth: usize, budget: &mut usize) -> Result<Reply> {
        let line = self.conn.read_line(MAX_LINE)?;
        let Some((&kind, rest)) = line.split_first() else {
            return Err(self.garbage("an empty line"));
        };
        let text =
            std::str::from_utf8(rest).map_err(|_| self.garbage("a line that is not UTF-8"))?;
        match kind {
            b'+' => Ok(Reply::Status(text.to_string())),
            b'-' => Ok(Reply::Error(text.to_string())),
            b':' => text
                .parse()
                .map(Reply::Int)
                .map_err(|_| self.garbage("an integer that does not parse")),
            b'$' => {
                let Some(len) = self.length(text)? else {
                    return Ok(Reply::Bulk(None));
                };
                if len > *budget {
                    return Err(self.too_large());
                }
                *budget -= len;
                let mut bytes = self.conn.read_exact(len + 2)?;
                if !bytes.ends_with(b"\r\n") {
                    return Err(self.garbage("a string not followed by CRLF"));
                }
                bytes.truncate(len);
                Ok(Reply::Bulk(Some(bytes)))
            }
            b'*' => {
                let Some(len) = self.length(text)? else {
                    return Ok(Reply::Array(None));
                };
                if depth >= MAX_DEPTH {
                    return Err(self.garbage("arrays nested too deep"));
                }
                if len > MAX_ARRAY || len > *budget {
                    return Err(self.too_large());
                }
                let mut items = Vec::with_capacity(len.min(1024));
                for _ in 0..len {
                    // Each element costs at least its header, so a reply of
                    // many empty elements is bounded too.
                    *budget = budget.checked_sub(4).ok_or_else(|| self.too_large())?;
                    items.push(self.read(depth + 1, budget)?);
                }
                Ok(Reply::Array(Some(items)))
            }
            _ => Err(self.garbage("a reply of unknown type")),
        }
    }

    /// A `$`/`*` length: `None` for -1 (nil).
    fn length(&self, text: &str) -> Result<Option<usize>> {
        if text == "-1" {
            return Ok(None);
        }
        text.parse::<usize>()
            .map(Some)
            .map_err(|_| self.garbage("a length that does not parse"))
    }

    fn garbage(&self, what: &str) -> ConnectorError {
        ConnectorError::Unavailable(format!(
            "{} does not speak RESP: it sent {what}",
            self.address()
        ))
    }

    fn too_large(&self) -> ConnectorError {
        ConnectorError::Unavailable(format!(
            "{} sent a reply larger than max_reply_bytes ({} bytes); raise it in the config if the data is that large",
            self.address(),
            self.max_reply_bytes
        ))
    }
}

/// One command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A server error reply as a typed error: logins and permissions are
/// `denied`, a missing group `not-found`, a server not ready `unavailable`,
/// everything else a wrong request.
pub fn server_error(address: &str, message: &str) -> ConnectorError {
    let code = message.split(' ').next().unwrap_or_default();
    let said = format!("{address}: {message}");
    match code {
        "NOAUTH" | "WRONGPASS" | "NOPERM" => ConnectorError::Denied(said),
        "NOGROUP" => ConnectorError::NotFound(said),
        "LOADING" | "BUSY" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN" | "READONLY" => {
            ConnectorError::Unavailable(said)
        }
        _ if message.contains("AUTH") && message.contains("without any password configured") => {
            ConnectorError::Denied(said)
        }
        _ => ConnectorError::InvalidRequest(said),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            encode(&[b"XACK", b"s", b"1-0"]),
            b"*3\r\n$4\r\nXACK\r\n$1\r\ns\r\n$3\r\n1-0\r\n".to_vec()
        );
    }

    #[test]
    fn server_errors_are_typed() {
        assert!(matches!(
            server_error("r:1", "WRONGPASS invalid username-password pair"),
            ConnectorError::Denied(m) if m.contains("WRONGPASS")
        ));
        assert!(matches!(
            server_error("r:1", "NOGROUP No such key"),
            ConnectorError::NotFound(_)
        ));
        assert!(matches!(
            server_error("r:1", "ERR syntax error"),
            ConnectorError::InvalidRequest(_)
        ));
    }
}
