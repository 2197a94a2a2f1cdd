//! A real FTP server for the file connector's FTP tests: pyftpdlib (from
//! `make pytools`) serving a temporary directory on free loopback ports,
//! with a login and a small range of passive data ports.

use serde_json::json;
use sluice::Grants;

use crate::{pytools_python, Daemon};

/// The login the server accepts.
pub const USER: &str = "sluice";
/// Its password.
pub const PASSWORD: &str = "ftp-pw-3b1d";
/// The socket secret that holds it.
pub const PASSWORD_SECRET: &str = "ftp_password";

/// Passive data ports the server offers.
const PASSIVE_PORTS: u16 = 4;

/// A running pyftpdlib server; killed when dropped.
pub struct FtpServer {
    daemon: Daemon,
    /// The directory it serves (read-write for [`USER`]).
    pub root: tempfile::TempDir,
    /// Its passive data ports.
    pub passive: Vec<u16>,
}

impl FtpServer {
    /// Start a server.
    ///
    /// # Panics
    ///
    /// When pyftpdlib is missing (`make pytools` installs it) or does not start.
    pub fn start() -> Self {
        let root = crate::tempdir();
        let passive = free_port_range(PASSIVE_PORTS);
        let python = pytools_python();
        let range = format!("{}-{}", passive[0], passive[passive.len() - 1]);
        let daemon = Daemon::start(
            python.to_str().expect("a UTF-8 path"),
            &[
                "-m",
                "pyftpdlib",
                "-i",
                "127.0.0.1",
                "-p",
                "{port}",
                "-w",
                "-d",
                root.path().to_str().expect("a UTF-8 path"),
                "-u",
                USER,
                "-P",
                PASSWORD,
                "-r",
                &range,
            ],
        );
        Self {
            daemon,
            root,
            passive,
        }
    }

    /// Kill the server (its connections close at once) and remove its files.
    pub fn kill(self) {
        drop(self.daemon);
    }

    /// `127.0.0.1:PORT` of the control connection.
    pub fn address(&self) -> &str {
        &self.daemon.address
    }

    /// Grants for the control port, the passive data ports (as a range)
    /// when `data_ports`, and the password secret.
    pub fn grants(&self, data_ports: bool, password: &str) -> Grants {
        let mut grants = Grants::none()
            .allow_tcp(self.address())
            .unwrap()
            .secret(PASSWORD_SECRET, password)
            .allow_socket_secret(PASSWORD_SECRET)
            .unwrap();
        if data_ports {
            let range = format!(
                "127.0.0.1:{}-{}",
                self.passive[0],
                self.passive[self.passive.len() - 1]
            );
            grants = grants.allow_tcp(&range).unwrap();
        }
        grants
    }

    /// The file connector's config for `dir` on this server.
    pub fn config(&self, dir: &str) -> serde_json::Value {
        json!({
            "root": format!("ftp://{}/{dir}", self.address()),
            "ftp": {"user": USER, "password_secret": PASSWORD_SECRET},
        })
    }

    /// Put `bytes` at `path` (relative to the served directory).
    pub fn put(&self, path: &str, bytes: impl AsRef<[u8]>) {
        let path = self.root.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("directory");
        std::fs::write(path, bytes).expect("file written");
    }
}

/// `count` consecutive ports that are free now.
fn free_port_range(count: u16) -> Vec<u16> {
    for _ in 0..100 {
        let base = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if base > u16::MAX - count {
            continue;
        }
        let ports: Vec<u16> = (base..base + count).collect();
        let held: Vec<_> = ports
            .iter()
            .map_while(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).ok())
            .collect();
        if held.len() == ports.len() {
            return ports;
        }
    }
    panic!("no {count} consecutive free loopback ports");
}
