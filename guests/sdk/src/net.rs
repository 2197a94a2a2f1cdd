//! TCP for connectors that speak a protocol of their own (brokers, caches,
//! legacy servers): a buffered [`Connection`] to a granted address, with a
//! deadline on every connect, read and write.
//!
//! The host decides which addresses are reachable (`--allow-tcp HOST:PORT`
//! on the command line, `grants.sockets.tcp` on the server); a refused
//! connect comes back as `denied` naming the grant to add. A peer that stays
//! silent past the read deadline is a `timeout`, one that closes or resets
//! the connection is `unavailable` with the reason, and a line longer than
//! the caller's bound is `invalid-request`: no call waits forever and no
//! peer can make the guest buffer without bound. (The host's per-call wall
//! clock stops the call anyway; the deadlines make it end with an error the
//! connector can act on, such as [`Connection::reconnect`].)
//!
//! ```no_run
//! use sluice_sdk::net::{Connection, Deadlines};
//!
//! # fn ping() -> sluice_sdk::Result<()> {
//! let mut redis = Connection::open("127.0.0.1:6379", Deadlines::default())?;
//! redis.send(b"PING\r\n")?;
//! let reply = redis.read_line(512)?; // b"+PONG"
//! # Ok(())
//! # }
//! ```

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::{ConnectorError, Result};

/// How long each step may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Establishing the connection (each resolved address in turn). Default 10 s.
    pub connect: Duration,
    /// Waiting for the next bytes from the peer. Default 30 s.
    pub read: Duration,
    /// Handing bytes to the peer. Default 30 s.
    pub write: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(30),
            write: Duration::from_secs(30),
        }
    }
}

/// A buffered TCP connection to one address.
#[derive(Debug)]
pub struct Connection {
    address: String,
    deadlines: Deadlines,
    stream: BufReader<TcpStream>,
}

impl Connection {
    /// Connect to `address` (`HOST:PORT`; a host name needs the DNS grant).
    ///
    /// # Errors
    ///
    /// `denied` naming the grant when the host refuses the address;
    /// `timeout` past the connect deadline; `unavailable` when the peer
    /// refuses or cannot be reached; `invalid-config` for a malformed address.
    pub fn open(address: &str, deadlines: Deadlines) -> Result<Self> {
        let stream = connect(address, deadlines)?;
        Ok(Self {
            address: address.to_string(),
            deadlines,
            stream: BufReader::new(stream),
        })
    }

    /// The address it connects to, as given.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Drop the connection (and anything buffered) and connect again.
    ///
    /// # Errors
    ///
    /// As [`Connection::open`].
    pub fn reconnect(&mut self) -> Result<()> {
        self.stream = BufReader::new(connect(&self.address, self.deadlines)?);
        Ok(())
    }

    /// Write all of `bytes` to the peer.
    ///
    /// # Errors
    ///
    /// `timeout` past the write deadline; `unavailable` when the connection broke.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let stream = self.stream.get_mut();
        stream
            .write_all(bytes)
            .and_then(|()| stream.flush())
            .map_err(|e| failure(&self.address, "writing to", e))
    }

    /// The next line, without its `\n` (or `\r\n`), at most `max` bytes long.
    ///
    /// # Errors
    ///
    /// `invalid-request` for a longer line (the connection is then out of
    /// step: reconnect); `unavailable` when the peer closed before a whole
    /// line; `timeout` past the read deadline.
    pub fn read_line(&mut self, max: usize) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            let available = self
                .stream
                .fill_buf()
                .map_err(|e| failure(&self.address, "reading from", e))?;
            if available.is_empty() {
                return Err(closed(&self.address));
            }
            let (taken, done) = match available.iter().position(|&b| b == b'\n') {
                Some(at) => (at + 1, true),
                None => (available.len(), false),
            };
            if line.len() + taken > max + 2 {
                return Err(ConnectorError::InvalidRequest(format!(
                    "{} sent a line longer than {max} bytes",
                    self.address
                )));
            }
            line.extend_from_slice(&available[..taken]);
            self.stream.consume(taken);
            if done {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > max {
                    return Err(ConnectorError::InvalidRequest(format!(
                        "{} sent a line longer than {max} bytes",
                        self.address
                    )));
                }
                return Ok(line);
            }
        }
    }

    /// Exactly `len` bytes (check `len` against your protocol's frame limit first).
    ///
    /// # Errors
    ///
    /// `unavailable` when the peer closed first; `timeout` past the read deadline.
    pub fn read_exact(&mut self, len: usize) -> Result<Vec<u8>> {
        let mut bytes = vec![0; len];
        self.stream
            .read_exact(&mut bytes)
            .map_err(|e| match e.kind() {
                ErrorKind::UnexpectedEof => closed(&self.address),
                _ => failure(&self.address, "reading from", e),
            })?;
        Ok(bytes)
    }
}

/// The peer's bytes as a stream (what is buffered first), for protocols
/// whose payload is not lines, such as a file transfer's data connection.
/// Errors carry the typed [`ConnectorError`] (see [`crate::io_error`]).
impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream
            .read(buf)
            .map_err(|e| std::io::Error::other(failure(&self.address, "reading from", e)))
    }
}

/// Connect to the first address `address` resolves to that answers.
fn connect(address: &str, deadlines: Deadlines) -> Result<TcpStream> {
    let targets: Vec<SocketAddr> = match address.parse::<SocketAddr>() {
        Ok(addr) => vec![addr],
        Err(_) => address
            .to_socket_addrs()
            .map_err(|e| match e.kind() {
                ErrorKind::PermissionDenied => denied(address),
                _ => ConnectorError::InvalidConfig(format!(
                    "address `{address}`: {e}; write HOST:PORT, e.g. 127.0.0.1:6379"
                )),
            })?
            .collect(),
    };
    let mut last = None;
    for target in targets {
        match TcpStream::connect_timeout(&target, deadlines.connect) {
            Ok(stream) => {
                // On wasip2 a refused connect can come back as Ok; the
                // refusal shows when asking for the peer, so ask now rather
                // than at the first read.
                if let Err(e) = stream.peer_addr() {
                    last = Some(stream.take_error().ok().flatten().unwrap_or(e));
                    continue;
                }
                let configured = stream
                    .set_read_timeout(Some(deadlines.read))
                    .and_then(|()| stream.set_write_timeout(Some(deadlines.write)))
                    .and_then(|()| stream.set_nodelay(true));
                configured.map_err(|e| failure(address, "configuring", e))?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => failure(address, "connecting to", e),
        None => ConnectorError::InvalidConfig(format!("address `{address}` resolves to nothing")),
    })
}

fn denied(address: &str) -> ConnectorError {
    ConnectorError::Denied(format!(
        "connect to {address} is not granted; grant it with `--allow-tcp {address}` (server: `grants.sockets.tcp`)"
    ))
}

fn closed(address: &str) -> ConnectorError {
    ConnectorError::Unavailable(format!("{address} closed the connection"))
}

/// The typed error for an I/O failure while `doing` something with `address`.
fn failure(address: &str, doing: &str, err: std::io::Error) -> ConnectorError {
    match err.kind() {
        ErrorKind::PermissionDenied => denied(address),
        ErrorKind::WouldBlock | ErrorKind::TimedOut => ConnectorError::Timeout,
        _ => ConnectorError::Unavailable(format!("{doing} {address}: {err}")),
    }
}
