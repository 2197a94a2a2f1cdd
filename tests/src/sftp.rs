//! A real SSH server for the SFTP tests: Debian's OpenSSH `sshd` (package
//! `openssh-server`, which `make setup` installs) on a free loopback port,
//! with its own config, host key and authorized key in a temporary
//! directory, serving SFTP only (`internal-sftp`) to the user running the
//! tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use sluice::capability::sftp::{KnownHosts, SftpGrantConfig, SftpMode, SftpUrl};
use sluice::Grants;

use crate::Daemon;

/// Where Debian installs the server.
const SSHD: &str = "/usr/sbin/sshd";

/// The name of the secret the grants log in with.
pub const KEY_SECRET: &str = "sftp_key";

/// A running `sshd`; killed when dropped.
pub struct SftpServer {
    /// `None` once killed.
    daemon: Option<Daemon>,
    address: String,
    /// Its config, keys and the served directory (`files/`).
    pub dir: tempfile::TempDir,
    /// The user it lets in (the one running the tests).
    pub user: String,
    /// The client's private key (OpenSSH text), authorized for [`SftpServer::user`].
    pub key: String,
    /// The server's host key, as a `known_hosts` line.
    pub known_host: String,
}

/// Make an unencrypted ed25519 key pair at `path` (and `path.pub`) with `ssh-keygen`.
fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "sluice-test", "-f"])
        .arg(path)
        .status()
        .unwrap_or_else(|e| {
            panic!("ssh-keygen cannot start ({e}): install openssh-client (make setup)")
        });
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

/// A new key pair: the private key's text and the public key's line.
pub fn key_pair(dir: &Path, name: &str) -> (String, String) {
    let path = dir.join(name);
    keygen(&path);
    let private = std::fs::read_to_string(&path).expect("private key");
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
    (private, public.trim().to_string())
}

impl SftpServer {
    /// Start a server.
    ///
    /// # Panics
    ///
    /// When OpenSSH's server is missing (`make setup` installs
    /// `openssh-server`) or does not start.
    pub fn start() -> Self {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: the SFTP tests run Debian's OpenSSH server; install it with `make setup` (apt-get install openssh-server)"
        );
        let user = String::from_utf8(
            Command::new("id")
                .arg("-un")
                .output()
                .expect("id runs")
                .stdout,
        )
        .expect("a UTF-8 user name")
        .trim()
        .to_string();
        if Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
        {
            // sshd started as root wants its privilege separation directory,
            // which systemd would make; it holds nothing.
            std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        }
        let dir = crate::tempdir();
        std::fs::create_dir_all(dir.path().join("files")).expect("served directory");
        keygen(&dir.path().join("host_key"));
        let (key, public) = key_pair(dir.path(), "client_key");
        std::fs::write(dir.path().join("authorized_keys"), format!("{public}\n"))
            .expect("authorized_keys");
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\n\
                 HostKey {dir}/host_key\n\
                 PidFile none\n\
                 AuthorizedKeysFile {dir}/authorized_keys\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 AllowUsers {user}\n\
                 Subsystem sftp internal-sftp\n\
                 ForceCommand internal-sftp\n\
                 LogLevel ERROR\n",
                dir = dir.path().display()
            ),
        )
        .expect("sshd_config");
        let daemon = Daemon::start(
            SSHD,
            &[
                "-D",
                "-e",
                "-f",
                config.to_str().expect("a UTF-8 path"),
                "-p",
                "{port}",
            ],
        );
        let host_public =
            std::fs::read_to_string(dir.path().join("host_key.pub")).expect("host key");
        let port = daemon.address.rsplit_once(':').expect("HOST:PORT").1;
        let known_host = format!("[127.0.0.1]:{port} {}", host_public.trim());
        Self {
            address: daemon.address.clone(),
            daemon: Some(daemon),
            dir,
            user,
            key,
            known_host,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The served directory: the root of [`SftpServer::grant`]s.
    pub fn files(&self) -> PathBuf {
        self.dir.path().join("files")
    }

    /// How many connections it serves now (the processes it forked for them).
    pub fn connections(&self) -> usize {
        self.daemon
            .as_ref()
            .map_or(0, |daemon| children(daemon.pid()).len())
    }

    /// Kill the server and the processes it forked for each connection
    /// (their connections close at once).
    pub fn kill(&mut self) {
        let Some(daemon) = self.daemon.take() else {
            return;
        };
        let mut doomed = vec![daemon.pid()];
        let mut at = 0;
        while at < doomed.len() {
            doomed.extend(children(doomed[at]));
            at += 1;
        }
        for pid in doomed.into_iter().skip(1) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        drop(daemon);
    }

    /// The grant `name` for the served directory, pinning `known_host`, in `mode`.
    pub fn grant_pinning(&self, name: &str, mode: SftpMode, known_host: &str) -> SftpGrantConfig {
        SftpGrantConfig {
            name: name.into(),
            url: SftpUrl::parse(&format!(
                "sftp://{}@{}{}",
                self.user,
                self.address(),
                self.files().display()
            ))
            .expect("a valid URL"),
            known_hosts: KnownHosts::parse(known_host).expect("a known_hosts line"),
            key_secret: Some(KEY_SECRET.into()),
            password_secret: None,
            mode,
            max_connections: None,
            timeout_ms: Some(10_000),
        }
    }

    /// The grant `name` for the served directory, pinning this server's key.
    pub fn grant(&self, name: &str, mode: SftpMode) -> SftpGrantConfig {
        self.grant_pinning(name, mode, &self.known_host)
    }

    /// Grants with `grant`, logging in with `key`.
    pub fn grants_with(&self, grant: &SftpGrantConfig, key: &str) -> Grants {
        Grants::none()
            .allow_sftp(grant)
            .expect("a valid grant")
            .secret(KEY_SECRET, key)
    }

    /// Grants with the grant `drop` in `mode`, logging in with the authorized key.
    pub fn grants(&self, mode: SftpMode) -> Grants {
        self.grants_with(&self.grant("drop", mode), &self.key)
    }

    /// The file connector's config for `dir` under the grant `drop`.
    pub fn config(&self, dir: &str) -> serde_json::Value {
        json!({ "root": format!("sftp://drop/{dir}") })
    }

    /// Put `bytes` at `path` (relative to the served directory).
    pub fn put(&self, path: &str, bytes: impl AsRef<[u8]>) {
        let path = self.files().join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("directory");
        std::fs::write(path, bytes).expect("file written");
    }
}

/// The processes whose parent is `pid`, from `/proc`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|candidate| {
            // `pid (name) state ppid …`; the name may hold spaces, so count from its `)`.
            std::fs::read_to_string(format!("/proc/{candidate}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .is_some_and(|ppid| ppid == pid.to_string())
            })
        })
        .collect()
}
