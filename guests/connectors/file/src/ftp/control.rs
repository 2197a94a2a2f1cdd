//! The FTP control connection: commands, replies and what they mean.

use sluice_sdk::net::{Connection, Deadlines};
use sluice_sdk::{ConnectorError, Result};

/// The longest reply line read.
const MAX_LINE: usize = 8192;
/// The most lines one (multi-line) reply may have.
const MAX_LINES: usize = 1000;

/// A server reply: its code and its (last line's) text.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

/// A logged-in control connection.
pub struct Control {
    connection: Connection,
}

impl Control {
    /// Connect to `address`, log in and switch to binary mode.
    /// `secret` names the password's secret, for the error of a refused login.
    pub fn login(address: &str, user: &str, password: &str, secret: Option<&str>) -> Result<Self> {
        if user.contains(['\r', '\n']) || password.contains(['\r', '\n']) {
            return Err(ConnectorError::InvalidConfig(
                "the FTP user or password has a line break, which a command cannot carry".into(),
            ));
        }
        let mut control = Self {
            connection: Connection::open(address, Deadlines::default())?,
        };
        let greeting = control.reply()?;
        if greeting.code != 220 {
            return Err(refused(&greeting, &format!("ftp://{address}")));
        }
        let mut answer = control.command(&format!("USER {user}"))?;
        if answer.code == 331 {
            answer = control.command(&format!("PASS {password}"))?;
        }
        match answer.code {
            230 | 202 => {}
            530 | 331 | 332 => {
                let grant = match secret {
                    Some(name) => format!("the password in the secret `{name}`"),
                    None if user == "anonymous" => {
                        "no password (set `ftp.user` and `ftp.password_secret`)".into()
                    }
                    None => "no password (set `ftp.password_secret`)".into(),
                };
                return Err(ConnectorError::Denied(format!(
                    "ftp://{address} refused the login of `{user}` with {grant}: {}",
                    answer.text
                )));
            }
            _ => return Err(refused(&answer, &format!("ftp://{address}"))),
        }
        control.expect("TYPE I", &[200], &format!("ftp://{address}"))?;
        Ok(control)
    }

    /// Send `command` and read its reply.
    pub fn command(&mut self, command: &str) -> Result<Reply> {
        self.connection.send(format!("{command}\r\n").as_bytes())?;
        self.reply()
    }

    /// Send `command`; its reply must be one of `codes` (else the typed
    /// error for `name`).
    pub fn expect(&mut self, command: &str, codes: &[u16], name: &str) -> Result<Reply> {
        let reply = self.command(command)?;
        if codes.contains(&reply.code) {
            Ok(reply)
        } else {
            Err(refused(&reply, name))
        }
    }

    /// The reply that ends a transfer: it must say the transfer completed.
    pub fn finish(&mut self, name: &str) -> Result<()> {
        let reply = self.reply()?;
        match reply.code {
            226 | 250 => Ok(()),
            _ => Err(ConnectorError::Unavailable(format!(
                "{name}: the transfer did not complete: {} {}",
                reply.code, reply.text
            ))),
        }
    }

    /// The port of a passive data connection: `EPSV`, else `PASV` (whose
    /// address is ignored: data goes to the control connection's host).
    pub fn passive_port(&mut self) -> Result<u16> {
        let reply = self.command("EPSV")?;
        if reply.code == 229 {
            // `229 Entering Extended Passive Mode (|||PORT|)`
            let port = reply
                .text
                .split('|')
                .filter_map(|part| part.parse::<u16>().ok())
                .next_back();
            return port.ok_or_else(|| bad_reply(&reply));
        }
        let reply = self.command("PASV")?;
        if reply.code != 227 {
            return Err(refused(&reply, "a passive data connection"));
        }
        // `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)`
        let numbers: Vec<u16> = reply
            .text
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        match numbers[..] {
            [.., p1, p2] if numbers.len() >= 6 && p1 < 256 && p2 < 256 => Ok(p1 * 256 + p2),
            _ => Err(bad_reply(&reply)),
        }
    }

    /// Say goodbye (best effort).
    pub fn quit(mut self) {
        let _ = self.command("QUIT");
    }

    /// Read one reply, single- or multi-line (`123-…` up to `123 …`).
    fn reply(&mut self) -> Result<Reply> {
        let first = self.line()?;
        let code = code_of(&first).ok_or_else(|| bad_line(&first))?;
        if first.as_bytes().get(3) != Some(&b'-') {
            return Ok(Reply {
                code,
                text: first[3..].trim().to_string(),
            });
        }
        for _ in 0..MAX_LINES {
            let line = self.line()?;
            if code_of(&line) == Some(code) && line.as_bytes().get(3) == Some(&b' ') {
                return Ok(Reply {
                    code,
                    text: line[3..].trim().to_string(),
                });
            }
        }
        Err(ConnectorError::Unavailable(format!(
            "{}: a reply of more than {MAX_LINES} lines",
            self.connection.address()
        )))
    }

    fn line(&mut self) -> Result<String> {
        let line = self.connection.read_line(MAX_LINE)?;
        Ok(String::from_utf8_lossy(&line).into_owned())
    }
}

fn code_of(line: &str) -> Option<u16> {
    let digits = line.get(..3)?;
    digits
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| digits.parse().ok())
        .flatten()
}

fn bad_line(line: &str) -> ConnectorError {
    ConnectorError::Unavailable(format!(
        "the FTP server sent `{}`, which is not a reply",
        line.chars().take(80).collect::<String>()
    ))
}

fn bad_reply(reply: &Reply) -> ConnectorError {
    ConnectorError::Unavailable(format!(
        "the FTP server's passive-mode answer `{} {}` names no port",
        reply.code, reply.text
    ))
}

/// The typed error for a refusal about `name`: 550 (no such file, or not
/// allowed: the server does not say which) is `not-found` with its words,
/// 530/532 (login needed) and 553 `denied`, 421/425/426 `unavailable`,
/// 450/451/452 `unavailable` too (temporary), anything else `unavailable`.
pub fn refused(reply: &Reply, name: &str) -> ConnectorError {
    let said = format!("{name}: {} {}", reply.code, reply.text);
    match reply.code {
        550 => ConnectorError::NotFound(said),
        530 | 532 | 553 => ConnectorError::Denied(said),
        _ => ConnectorError::Unavailable(said),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_are_three_digits() {
        assert_eq!(code_of("226 Transfer complete"), Some(226));
        assert_eq!(code_of("22x"), None);
        assert_eq!(code_of("2"), None);
    }

    #[test]
    fn refusals_are_typed() {
        let reply = |code| Reply {
            code,
            text: "no".into(),
        };
        assert!(matches!(
            refused(&reply(550), "f"),
            ConnectorError::NotFound(_)
        ));
        assert!(matches!(
            refused(&reply(530), "f"),
            ConnectorError::Denied(_)
        ));
        assert!(matches!(
            refused(&reply(421), "f"),
            ConnectorError::Unavailable(_)
        ));
    }
}
