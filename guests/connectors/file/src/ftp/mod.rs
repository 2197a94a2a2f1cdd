//! Files on an FTP server (`root: ftp://HOST[:PORT]/DIR`), over TCP the
//! host granted: the control connection's address, and each passive data
//! port the server offers (`--allow-tcp HOST:PORT`, one per port; a port not
//! granted is `denied` naming the grant to add).
//!
//! Each operation logs in on its own control connection (user and password
//! from `ftp.user` and the secret `ftp.password_secret` names; anonymous
//! without them) and moves data in binary mode over a passive data
//! connection to the control connection's host (an address the server
//! names in its `PASV` answer is ignored, as curl does by default: a
//! hostile server cannot point the connector elsewhere). Reads start where
//! asked with `REST`; a transfer counts only when the server confirms it
//! (`226`), so a cut transfer is an error, never a short file. Writes go to
//! `NAME.sluice-partial` and are renamed over `NAME` once stored; deletes
//! are `DELE`. Plain FTP only: FTPS would need TLS inside the guest.

mod control;

use std::io::Read;

use serde::Deserialize;
use sluice_sdk::net::{Connection, Deadlines};
use sluice_sdk::{ConnectorError, Result};

use crate::format::Source;
use control::Control;

/// FTP settings, used when `root` is an `ftp://` URL.
#[derive(Debug, Clone, Deserialize, Default)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(default, deny_unknown_fields)]
pub struct FtpOptions {
    /// The login name (default `anonymous`).
    pub user: Option<String>,
    /// The name of the secret holding the password (granted with
    /// `--socket-secret NAME=…`); none for an anonymous login.
    pub password_secret: Option<String>,
}

/// Directories `discover` descends at most.
const MAX_DEPTH: usize = 16;
/// Entries `discover` lists at most.
const MAX_ENTRIES: usize = 100_000;

/// An FTP server and the directory `root` names on it.
#[derive(Debug, Clone)]
pub struct FtpStore {
    /// `HOST:PORT` of the control connection.
    address: String,
    host: String,
    dir: String,
    options: FtpOptions,
}

impl FtpStore {
    /// The store for `root`, when it is an `ftp://` URL.
    ///
    /// # Errors
    ///
    /// `invalid-config` for a URL without a host, with a user or password
    /// in it, or with characters a command line cannot carry.
    pub fn from_root(root: &str, options: &FtpOptions) -> Result<Option<Self>> {
        let Some(rest) = root.strip_prefix("ftp://") else {
            if root.starts_with("ftps://") {
                return Err(ConnectorError::InvalidConfig(format!(
                    "field `root`: `{root}`: the file connector speaks plain FTP (`ftp://`); FTPS is not supported"
                )));
            }
            return Ok(None);
        };
        let (authority, dir) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() || authority.contains('@') {
            return Err(ConnectorError::InvalidConfig(format!(
                "field `root`: `{root}` must be ftp://HOST[:PORT]/DIR (the login goes in `ftp.user` and `ftp.password_secret`)"
            )));
        }
        let address = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:21")
        };
        let host = address
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_default();
        let dir = format!("/{}", dir.trim_end_matches('/'));
        check_path(&dir).map_err(|e| match e {
            ConnectorError::InvalidRequest(m) => {
                ConnectorError::InvalidConfig(format!("field `root`: {m}"))
            }
            other => other,
        })?;
        Ok(Some(Self {
            address,
            host,
            dir,
            options: options.clone(),
        }))
    }

    /// The file a resource names: a path relative to the root's directory,
    /// or absolute on the server.
    ///
    /// # Errors
    ///
    /// `invalid-request` for an empty path or one with line breaks.
    pub fn file(&self, resource: &str) -> Result<FtpFile> {
        let path = if let Some(absolute) = resource.strip_prefix(&format!("ftp://{}", self.address))
        {
            absolute.to_string()
        } else if resource.starts_with('/') {
            resource.to_string()
        } else {
            format!("{}/{resource}", self.dir.trim_end_matches('/'))
        };
        if resource.is_empty() || path.ends_with('/') {
            return Err(ConnectorError::InvalidRequest(format!(
                "resource `{resource}` names no file"
            )));
        }
        check_path(&path)?;
        Ok(FtpFile {
            name: format!("ftp://{}{path}", self.address),
            store: self.clone(),
            path,
        })
    }

    /// Log in on a new control connection, in binary mode.
    fn login(&self) -> Result<Control> {
        let password = sluice_sdk::secrets::optional(self.options.password_secret.as_deref())?;
        let user = self.options.user.as_deref().unwrap_or("anonymous");
        let password =
            password
                .as_deref()
                .unwrap_or(if user == "anonymous" { "sluice@" } else { "" });
        Control::login(
            &self.address,
            user,
            password,
            self.options.password_secret.as_deref(),
        )
    }

    /// Open a passive data connection announced on `control`.
    fn data(&self, control: &mut Control) -> Result<Connection> {
        let port = control.passive_port()?;
        let address = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        };
        Connection::open(&address, Deadlines::default())
    }

    /// Check that the server takes the login and has the directory.
    ///
    /// # Errors
    ///
    /// As the server answered.
    pub fn health_check(&self) -> Result<()> {
        let mut control = self.login()?;
        control.expect(&format!("CWD {}", self.dir), &[250], &self.dir)?;
        control.quit();
        Ok(())
    }

    /// Every file under the root's directory, as `ftp://HOST:PORT/PATH`.
    ///
    /// # Errors
    ///
    /// As the server answered; `unsupported` when it cannot list with `MLSD`.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut control = self.login()?;
        let mut found = Vec::new();
        let mut pending = vec![(self.dir.clone(), 0)];
        while let Some((dir, depth)) = pending.pop() {
            for (name, is_dir) in self.list_dir(&mut control, &dir)? {
                let path = format!("{}/{name}", dir.trim_end_matches('/'));
                if is_dir {
                    if depth < MAX_DEPTH {
                        pending.push((path, depth + 1));
                    }
                } else {
                    found.push(format!("ftp://{}{path}", self.address));
                }
                if found.len() >= MAX_ENTRIES {
                    return Err(ConnectorError::InvalidRequest(format!(
                        "more than {MAX_ENTRIES} files under `ftp://{}{}`: set `root` to a smaller directory",
                        self.address, self.dir
                    )));
                }
            }
        }
        control.quit();
        Ok(found)
    }

    /// One directory's entries by `MLSD`: names and whether each is a directory.
    fn list_dir(&self, control: &mut Control, dir: &str) -> Result<Vec<(String, bool)>> {
        let mut data = self.data(control)?;
        let started = control.command(&format!("MLSD {dir}"))?;
        match started.code {
            125 | 150 => {}
            500 | 502 | 504 => {
                return Err(ConnectorError::Unsupported(format!(
                    "ftp://{}: the server cannot list with MLSD ({})",
                    self.address, started.text
                )))
            }
            _ => {
                return Err(control::refused(
                    &started,
                    &format!("ftp://{}{dir}", self.address),
                ))
            }
        }
        let mut entries = Vec::new();
        loop {
            let line = match data.read_line(8192) {
                Ok(line) => line,
                Err(ConnectorError::Unavailable(_)) => break,
                Err(e) => return Err(e),
            };
            let line = String::from_utf8_lossy(&line);
            // `fact=value;fact=value; name`
            let Some((facts, name)) = line.split_once(' ') else {
                continue;
            };
            let kind = facts.split(';').find_map(|fact| {
                fact.to_ascii_lowercase()
                    .strip_prefix("type=")
                    .map(str::to_string)
            });
            match kind.as_deref() {
                Some("file") => entries.push((name.to_string(), false)),
                Some("dir") => entries.push((name.to_string(), true)),
                _ => {}
            }
        }
        control.finish(&format!("ftp://{}{dir}", self.address))?;
        Ok(entries)
    }
}

/// A `/`-separated path as FTP commands carry it: no line breaks (which
/// would smuggle a second command), no NUL.
fn check_path(path: &str) -> Result<()> {
    if path.contains(['\r', '\n', '\0']) {
        return Err(ConnectorError::InvalidRequest(format!(
            "`{}` has a line break or NUL, which an FTP command cannot carry",
            path.escape_debug()
        )));
    }
    Ok(())
}

/// One file on the server.
#[derive(Debug, Clone)]
pub struct FtpFile {
    store: FtpStore,
    path: String,
    name: String,
}

impl FtpFile {
    /// Start a download from `offset`: the control connection waiting for
    /// the transfer's end, and the data connection.
    fn retrieve(&self, offset: u64) -> Result<(Control, Connection)> {
        let mut control = self.store.login()?;
        if offset > 0 {
            let size = self.size_on(&mut control)?;
            if offset > size {
                return Err(crate::format::past_end(&self.name, offset, size));
            }
        }
        let data = self.store.data(&mut control)?;
        if offset > 0 {
            control.expect(&format!("REST {offset}"), &[350], &self.name)?;
        }
        let started = control.command(&format!("RETR {}", self.path))?;
        if !matches!(started.code, 125 | 150) {
            return Err(control::refused(&started, &self.name));
        }
        Ok((control, data))
    }

    fn size_on(&self, control: &mut Control) -> Result<u64> {
        let reply = control.expect(&format!("SIZE {}", self.path), &[213], &self.name)?;
        reply.text.trim().parse().map_err(|_| {
            ConnectorError::Unavailable(format!(
                "{}: the server answered SIZE with `{}`",
                self.name, reply.text
            ))
        })
    }

    /// Store `bytes` as this file: under a temporary name, then renamed.
    ///
    /// # Errors
    ///
    /// As the server answered; the temporary file is deleted on failure.
    pub fn store(&self, bytes: &[u8]) -> Result<()> {
        let temporary = format!("{}.sluice-partial", self.path);
        let mut control = self.store.login()?;
        let stored = (|| {
            let mut data = self.store.data(&mut control)?;
            let started = control.command(&format!("STOR {temporary}"))?;
            if !matches!(started.code, 125 | 150) {
                return Err(control::refused(&started, &self.name));
            }
            for chunk in bytes.chunks(64 << 10) {
                data.send(chunk)?;
            }
            drop(data);
            control.finish(&self.name)?;
            control.expect(&format!("RNFR {temporary}"), &[350], &self.name)?;
            control.expect(&format!("RNTO {}", self.path), &[250], &self.name)?;
            Ok(())
        })();
        if stored.is_err() {
            // Best effort: a new connection, the old one may be out of step.
            if let Ok(mut again) = self.store.login() {
                let _ = again.command(&format!("DELE {temporary}"));
                again.quit();
            }
        } else {
            control.quit();
        }
        stored
    }

    /// Delete the file.
    ///
    /// # Errors
    ///
    /// `not-found` when it does not exist; as the server answered otherwise.
    pub fn delete(&self) -> Result<()> {
        let mut control = self.store.login()?;
        control.expect(&format!("DELE {}", self.path), &[250], &self.name)?;
        control.quit();
        Ok(())
    }
}

impl Source for FtpFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn head(&self, len: usize) -> Result<Vec<u8>> {
        let (_, mut data) = self.retrieve(0)?;
        let mut head = vec![0; len];
        let n = crate::format::read_up_to(&mut data, &mut head)
            .map_err(|e| sluice_sdk::io_error(&self.name, e))?;
        head.truncate(n);
        // Dropping both connections abandons the rest of the transfer.
        Ok(head)
    }

    fn open_at(&self, offset: u64) -> Result<Box<dyn Read>> {
        let (control, data) = self.retrieve(offset)?;
        Ok(Box::new(Download {
            control: Some(control),
            data,
            name: self.name.clone(),
        }))
    }

    fn size(&self) -> Result<u64> {
        let mut control = self.store.login()?;
        let size = self.size_on(&mut control)?;
        control.quit();
        Ok(size)
    }

    fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let (_, data) = self.retrieve(offset)?;
        crate::format::read_exactly(&self.name, data, offset, len)
    }

    fn clone_box(&self) -> Box<dyn Source> {
        Box::new(self.clone())
    }
}

/// A download in progress: its end counts only once the server confirms
/// the transfer on the control connection.
struct Download {
    control: Option<Control>,
    data: Connection,
    name: String,
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.data.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(mut control) = self.control.take() {
                control.finish(&self.name).map_err(std::io::Error::other)?;
                control.quit();
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_name_host_port_and_directory() {
        let store = FtpStore::from_root("ftp://127.0.0.1:2121/pub/data/", &FtpOptions::default())
            .unwrap()
            .unwrap();
        assert_eq!(store.address, "127.0.0.1:2121");
        assert_eq!(store.dir, "/pub/data");
        assert_eq!(store.file("a.csv").unwrap().path, "/pub/data/a.csv");
        assert_eq!(
            store.file("/x/b.csv").unwrap().name,
            "ftp://127.0.0.1:2121/x/b.csv"
        );
        let default_port = FtpStore::from_root("ftp://files.example", &FtpOptions::default())
            .unwrap()
            .unwrap();
        assert_eq!(default_port.address, "files.example:21");
        assert_eq!(default_port.dir, "/");
    }

    #[test]
    fn a_line_break_cannot_smuggle_a_command() {
        let store = FtpStore::from_root("ftp://127.0.0.1:21/", &FtpOptions::default())
            .unwrap()
            .unwrap();
        assert!(matches!(
            store.file("a.csv\r\nDELE b.csv"),
            Err(ConnectorError::InvalidRequest(_))
        ));
        assert!(matches!(
            FtpStore::from_root("ftp://user:pw@host/", &FtpOptions::default()),
            Err(ConnectorError::InvalidConfig(_))
        ));
    }
}
