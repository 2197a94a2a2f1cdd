//! The grants of `sluice run`: flags and a grants file, with secrets.

use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use sluice::capability::sftp::{KnownHosts, SftpGrantConfig, SftpMode, SftpUrl};
use sluice::capability::sql::SqlMode;
use sluice::Grants;

use crate::args::GrantArgs;

pub(crate) fn grants(args: &GrantArgs) -> Result<Grants> {
    let mut grants = match &args.grants {
        Some(path) => grants_file(path, &args.allow_http)?,
        None => Grants::none(),
    };
    if args.allow_http_private {
        grants.http.allow_private_addresses = true;
    }
    for origin in &args.allow_http {
        grants = grants.allow_http(origin)?;
    }
    for origin in &args.allow_http_h2c {
        grants = grants.allow_http_h2c(origin)?;
    }
    for mount in &args.mount {
        grants = grants.mount(mount)?;
    }
    for entry in &args.allow_tcp {
        grants = grants.allow_tcp(entry)?;
    }
    for entry in &args.secrets {
        let (name, value) = secret_arg("--secret", entry)?;
        grants = grants.secret(&name, &value);
    }
    for entry in &args.socket_secrets {
        let (name, value) = secret_arg("--socket-secret", entry)?;
        grants = grants.allow_socket_secret(&name)?.secret(&name, &value);
    }
    let sql = args.allow_sql.iter().map(|e| (e, SqlMode::ReadOnly));
    let sql_write = args.allow_sql_write.iter().map(|e| (e, SqlMode::ReadWrite));
    for (entry, mode) in sql.chain(sql_write) {
        let (name, url) = entry.split_once('=').ok_or_else(|| {
            anyhow!("sql grant: write NAME=URL, e.g. `main=postgres://user@127.0.0.1/db`")
        })?;
        grants = grants.allow_sql(name, url, mode)?;
    }
    sftp_grants(args, grants)
}

/// The `--allow-sftp` grants, each logging in with its `--sftp-key` or
/// `--sftp-password` (held by the host as the secret `sftp-key:NAME` or `sftp-password:NAME`) and pinned
/// by its lines of the known_hosts file.
fn sftp_grants(args: &GrantArgs, mut grants: Grants) -> Result<Grants> {
    let read_only = args.allow_sftp.iter().map(|e| (e, SftpMode::ReadOnly));
    let read_write = args
        .allow_sftp_write
        .iter()
        .map(|e| (e, SftpMode::ReadWrite));
    let logins = |flag: &str, entries: &[String]| -> Result<Vec<(String, String)>> {
        entries.iter().map(|e| secret_arg(flag, e)).collect()
    };
    let keys = logins("--sftp-key", &args.sftp_keys)?;
    let passwords = logins("--sftp-password", &args.sftp_passwords)?;
    let mut known_hosts_file: Option<(std::path::PathBuf, String)> = None;
    for (entry, mode) in read_only.chain(read_write) {
        let (name, url) = entry.split_once('=').ok_or_else(|| {
            anyhow!("sftp grant: write NAME=sftp://USER@HOST[:PORT]/DIR, e.g. `drop=sftp://etl@127.0.0.1:2222/upload`")
        })?;
        let url = SftpUrl::parse(url).with_context(|| format!("sftp grant `{name}`"))?;
        let key = keys.iter().find(|(n, _)| n == name);
        let password = passwords.iter().find(|(n, _)| n == name);
        let (login, secret) = match (key, password) {
            (Some((_, key)), None) => (format!("sftp-key:{name}"), key),
            (None, Some((_, password))) => (format!("sftp-password:{name}"), password),
            _ => {
                return Err(anyhow!(
                    "sftp grant `{name}`: give exactly one of --sftp-key {name}=@FILE and --sftp-password {name}=…"
                ))
            }
        };
        if known_hosts_file.is_none() {
            let path = match &args.sftp_known_hosts {
                Some(path) => path.clone(),
                None => std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                    .join(".ssh/known_hosts"),
            };
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("sftp grant `{name}`: cannot read the known_hosts file `{}` (--sftp-known-hosts)", path.display())
            })?;
            known_hosts_file = Some((path, text));
        }
        let (path, text) = known_hosts_file.as_ref().expect("read above");
        let lines = known_host_lines(text, &url);
        if lines.is_empty() {
            return Err(anyhow!(
                "sftp grant `{name}`: `{}` has no plain line for {} (hashed lines are not read); pin the server's key: ssh-keyscan -p {} {} >> {}",
                path.display(),
                host_field(&url),
                url.port,
                url.host,
                path.display()
            ));
        }
        let known_hosts = KnownHosts::parse(&lines.join("\n"))
            .with_context(|| format!("sftp grant `{name}`: `{}`", path.display()))?;
        let (key_secret, password_secret) = match key {
            Some(_) => (Some(login.clone()), None),
            None => (None, Some(login.clone())),
        };
        grants = grants.allow_sftp(&SftpGrantConfig {
            name: name.to_string(),
            url,
            known_hosts,
            key_secret,
            password_secret,
            mode,
            max_connections: None,
            timeout_ms: None,
        })?;
        grants = grants.secret(&login, secret);
    }
    Ok(grants)
}

/// How known_hosts names the server: `HOST` on port 22, else `[HOST]:PORT`.
fn host_field(url: &SftpUrl) -> String {
    match url.port {
        22 if !url.host.contains(':') => url.host.clone(),
        port => format!("[{}]:{port}", url.host),
    }
}

/// The lines of a known_hosts text whose host list names `url`'s server.
fn known_host_lines<'a>(text: &'a str, url: &SftpUrl) -> Vec<&'a str> {
    let wanted = host_field(url);
    text.lines()
        .map(str::trim)
        .filter(|line| {
            line.split_whitespace().next().is_some_and(|hosts| {
                hosts
                    .split(',')
                    .any(|host| host.eq_ignore_ascii_case(&wanted))
            })
        })
        .collect()
}

/// One `--secret` (or `--socket-secret`, the `flag`): `NAME=VALUE`,
/// `NAME=@FILE` or `NAME=env:VAR`. Errors name the secret, the file or the
/// variable, never a value.
pub(crate) fn secret_arg(flag: &str, entry: &str) -> Result<(String, String)> {
    let (name, value) = entry
        .split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| anyhow!("{flag}: write NAME=VALUE, NAME=@FILE or NAME=env:VAR"))?;
    let value = if let Some(path) = value.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{flag} {name}: cannot read `{path}`"))?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        text.strip_suffix('\r').unwrap_or(text).to_string()
    } else if let Some(var) = value.strip_prefix("env:") {
        std::env::var(var).map_err(|_| {
            anyhow!("{flag} {name}: the environment variable `{var}` is not set (or not UTF-8)")
        })?
    } else {
        value.to_string()
    };
    Ok((name.to_string(), value))
}

/// The grants file, with the `--allow-http` origins added to its http
/// `origins` before it is checked (flags add to the file), so an `auth` entry
/// in the file may name an origin granted on the command line.
pub(crate) fn grants_file(path: &std::path::Path, allow_http: &[String]) -> Result<Grants> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--grants: cannot read `{}`", path.display()))?;
    let mut spec: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow!("--grants `{}`: not JSON ({e})", path.display()))?;
    if !allow_http.is_empty() {
        let origins = spec
            .as_object_mut()
            .ok_or_else(|| anyhow!("--grants `{}`: expected a JSON object", path.display()))?
            .entry("http")
            .or_insert_with(|| serde_json::json!({}))
            .as_object_mut()
            .ok_or_else(|| anyhow!("--grants `{}`: `http` must be an object", path.display()))?
            .entry("origins")
            .or_insert_with(|| serde_json::json!([]));
        let origins = origins.as_array_mut().ok_or_else(|| {
            anyhow!(
                "--grants `{}`: `http.origins` must be a list",
                path.display()
            )
        })?;
        origins.extend(allow_http.iter().map(|o| Value::String(o.clone())));
    }
    Grants::from_json(&spec.to_string()).with_context(|| format!("--grants `{}`", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_lines_are_picked_by_host_and_port() {
        let text = "\
[127.0.0.1]:2222 ssh-ed25519 AAAA1
127.0.0.1 ssh-ed25519 AAAA2
files.example.com,10.0.0.9 ssh-rsa AAAA3
|1|hashed= ssh-ed25519 AAAA4
";
        let url = |u: &str| SftpUrl::parse(u).unwrap();
        assert_eq!(
            known_host_lines(text, &url("sftp://u@127.0.0.1:2222/d")),
            ["[127.0.0.1]:2222 ssh-ed25519 AAAA1"]
        );
        assert_eq!(
            known_host_lines(text, &url("sftp://u@127.0.0.1/d")),
            ["127.0.0.1 ssh-ed25519 AAAA2"]
        );
        assert_eq!(
            known_host_lines(text, &url("sftp://u@Files.Example.com/")),
            ["files.example.com,10.0.0.9 ssh-rsa AAAA3"]
        );
        assert!(known_host_lines(text, &url("sftp://u@10.0.0.9:2200/")).is_empty());
    }

    #[test]
    fn secrets_come_from_values_files_and_the_environment() {
        let dir = std::env::temp_dir().join(format!("sluice-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(
            secret_arg("--secret", "a=plain").unwrap(),
            ("a".into(), "plain".into())
        );
        assert_eq!(
            secret_arg("--secret", &format!("a=@{}", file.display())).unwrap(),
            ("a".into(), "from-file".into())
        );
        let path = std::env::var("PATH").unwrap();
        assert_eq!(
            secret_arg("--secret", "a=env:PATH").unwrap(),
            ("a".into(), path)
        );
        let missing = secret_arg("--secret", "a=env:SLUICE_NO_SUCH_VARIABLE").unwrap_err();
        assert!(missing
            .to_string()
            .contains("`SLUICE_NO_SUCH_VARIABLE` is not set"));
        let unreadable = secret_arg("--secret", "a=@/no/such/file").unwrap_err();
        assert!(format!("{unreadable:#}").contains("cannot read `/no/such/file`"));
        assert!(secret_arg("--secret", "=x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
